//! Logs with `tracing`: readable lines by default, one JSON object per line on request.
//! Logs go to stderr; stdout is for a command's own output.

use tracing_subscriber::EnvFilter;

/// How log lines are written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Lines for people.
    #[default]
    Human,
    /// One JSON object per line, for log collectors.
    Json,
}

/// Starts logging at `default_level` (`info`, `warn`, …) unless `RUST_LOG` says otherwise.
pub fn init(format: LogFormat, default_level: &str) {
    // webrtc's sans-IO core warns about states that are normal with one-shot offer/answer
    // signalling (a connectivity check before the answer is applied, say): errors only.
    // libp2p-kad's connection handler warns once per stream a peer opens beyond its 32:
    // errors only, or one peer could fill the log (the node logs its own refusals once per
    // peer and interval).
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        EnvFilter::new(format!(
            "{default_level},libp2p_kad=warn,libp2p_kad::handler=error,libp2p_swarm=warn,{}",
            [
                "rtc",
                "rtc_dtls",
                "rtc_ice",
                "rtc_srtp",
                "rtc_sctp",
                "rtc_interceptor"
            ]
            .map(|t| format!("{t}=error"))
            .join(",")
        ))
    });
    // A log line that cannot be written (stderr closed, its pipe's reader gone) is lost,
    // and nothing else: tracing-subscriber would report it with `eprintln!`, which panics on
    // a broken pipe and takes down whatever task was logging.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .log_internal_errors(false);
    let _ = match format {
        LogFormat::Human => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}
