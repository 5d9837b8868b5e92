//! `interlink call`: find a gateway, call through it with a tone, hang up, settle.

use std::io::Write;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use anyhow::Context;
use interlink_node::calls::caller::{self, CallError, CallOptions, CallReport, Kept, Progress};
use interlink_node::discovery::DiscoveryError;
use interlink_node::identity;
use interlink_node::listing::short_peer_id;
use interlink_node::node::{Node, NodeError, NodeSpec};
use libp2p::PeerId;

use super::choice::{CallerArgs, Choice};
use super::{
    EXIT_FAILURE, EXIT_INTERRUPTED, EXIT_NO_ANSWER, EXIT_NOT_COVERED, EXIT_UNREACHABLE, Failure,
};

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    #[command(flatten)]
    caller: CallerArgs,
    /// Call through this gateway only.
    #[arg(long, value_name = "PEER_ID")]
    via: Option<PeerId>,
    /// Hold the answered call this long, then hang up.
    #[arg(long, default_value_t = 5.0, value_name = "SECONDS")]
    duration: f64,
    /// Give up finding a gateway that answers after this long, failovers included
    /// [default: calls.setup_deadline_secs of the config, 90].
    #[arg(long, value_name = "SECONDS")]
    timeout: Option<u64>,
    /// The address this side's WebRTC media binds to [default: media.ip of the config].
    #[arg(long, value_name = "IP")]
    media_ip: Option<IpAddr>,
    /// Print the report as JSON on stdout (progress still goes to stderr).
    #[arg(long)]
    json: bool,
}

pub(crate) async fn run(args: Args) -> Result<(), Failure> {
    let Choice {
        destination,
        config,
        policy,
        kinds,
        bootstrap,
    } = args.caller.resolve()?;
    if !(args.duration.is_finite() && args.duration >= 0.0) {
        return Err(Failure::new(
            EXIT_FAILURE,
            "--duration must be a number of seconds, 0 or more",
        ));
    }
    let keypair =
        identity::load(&config.node.data_dir).map_err(|e| Failure::new(EXIT_FAILURE, e))?;
    let mut spec = NodeSpec::client(&config, bootstrap);
    if let Some(ip) = args.media_ip {
        spec.media.bind_ip = ip;
    }
    let options = CallOptions {
        hang_up: Some(hang_up_on_signal()?),
        kinds,
        policy,
        via: args.via,
        hold_for: Duration::from_secs_f64(args.duration),
        setup_deadline: Duration::from_secs(
            args.timeout.unwrap_or(config.calls.setup_deadline_secs),
        ),
        timers: spec.timers,
        ..CallOptions::new(destination)
    };

    let started = Instant::now();
    let node = Node::start(spec, keypair).await.map_err(|e| match e {
        NodeError::Network(e) => {
            Failure::new(EXIT_UNREACHABLE, format!("no peer could be reached: {e}"))
        }
        other => Failure::new(EXIT_FAILURE, other),
    })?;
    let result = caller::place_call(&node.caller(), &options, &show_progress(started)).await;
    let _ = node.shutdown().await;
    let report = result.map_err(|e| match e {
        CallError::Discovery(DiscoveryError::NoPeers) => Failure::new(EXIT_UNREACHABLE, e),
        CallError::NotCovered { .. } | CallError::ViaNotFound(_) => {
            Failure::new(EXIT_NOT_COVERED, e)
        }
        CallError::NoAnswer { .. } => Failure::new(EXIT_NO_ANSWER, e),
        CallError::Cancelled { .. } => Failure::new(EXIT_INTERRUPTED, e),
        other => Failure::new(EXIT_FAILURE, other),
    })?;
    if args.json {
        let json = serde_json::to_string_pretty(&report).context("cannot write the report")?;
        println!("{json}");
    } else {
        print_report(&report);
    }
    Ok(())
}

/// Turns true on the first SIGINT (Ctrl-C) or SIGTERM: the call hangs up as a user would,
/// `Bye`, receipt, countersignature and report, so that both sides hold the same record.
/// A second signal exits at once.
fn hang_up_on_signal() -> Result<tokio::sync::watch::Receiver<bool>, Failure> {
    use tokio::signal::unix::{SignalKind, signal};
    let watch = |kind| {
        signal(kind).map_err(|e| Failure::new(EXIT_FAILURE, format!("cannot watch signals: {e}")))
    };
    let (mut interrupt, mut terminate) = (
        watch(SignalKind::interrupt())?,
        watch(SignalKind::terminate())?,
    );
    let (tx, rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        for time in 0.. {
            tokio::select! {
                _ = interrupt.recv() => {}
                _ = terminate.recv() => {}
            }
            if time > 0 {
                let _ = writeln!(std::io::stderr(), "interrupted again: exiting now");
                std::process::exit(i32::from(EXIT_INTERRUPTED));
            }
            let _ = writeln!(
                std::io::stderr(),
                "hanging up: waiting for the receipt (Ctrl-C again to exit at once)"
            );
            tx.send_replace(true);
        }
    });
    Ok(rx)
}

/// Progress lines on stderr, as the call goes.
pub(crate) fn show_progress(started: Instant) -> impl Fn(Progress) + Send + Sync {
    move |progress| {
        if let Some(line) = progress_line(started, &progress) {
            let _ = writeln!(std::io::stderr(), "{line}");
        }
    }
}

/// One progress event as a line, stamped with the time since `started`.
pub(crate) fn progress_line(started: Instant, progress: &Progress) -> Option<String> {
    let line = match progress {
        Progress::Found { candidates, lookup } => {
            format!("found {candidates} gateway(s) in {} ms", lookup.as_millis())
        }
        Progress::Inviting { gateway, .. } => format!("inviting {gateway}"),
        Progress::Trying { gateway } => format!("trying via {gateway}"),
        Progress::Ringing { gateway } => format!("ringing via {gateway}"),
        Progress::Answered {
            gateway,
            answered_by: Some(who),
            ..
        } => format!("answered via {gateway} by {who}"),
        Progress::Answered { gateway, .. } => format!("answered via {gateway}"),
        Progress::MediaStarted { .. } => "first media packet received".to_owned(),
        Progress::FailedOver { gateway, reason } => {
            format!("{gateway} failed ({reason}); trying the next")
        }
        Progress::Repricing {
            gateway,
            per_minute,
        } => {
            format!("{gateway} now charges {per_minute}/min, within your limit: inviting again")
        }
        Progress::HangingUp => "hanging up".to_owned(),
        _ => return None,
    };
    Some(format!("[{:>6} ms] {line}", started.elapsed().as_millis()))
}

/// The report for people.
pub(crate) fn print_report(report: &CallReport) {
    let media = &report.media;
    let ms = |d: Option<Duration>| {
        d.map_or_else(
            || "–".to_owned(),
            |d| format!("{:.1} ms", d.as_secs_f64() * 1000.0),
        )
    };
    println!(
        "Call {} to {} via {} ({}), route {} at {} {}/min, setup {} {}",
        &report.call_id[..8],
        report.destination,
        report.gateway,
        short_peer_id(&report.gateway_peer_id),
        report.prefix,
        report.price_per_minute,
        report.currency,
        report.setup_fee,
        report.currency
    );
    let failovers = if report.failovers.is_empty() {
        "none".to_owned()
    } else {
        report
            .failovers
            .iter()
            .map(|a| format!("{} ({})", a.gateway, a.outcome))
            .collect::<Vec<_>>()
            .join(", ")
    };
    println!("  failovers          {failovers}");
    println!(
        "  command → answer   {:.0} ms (invite → answer {:.0} ms)",
        report.command_to_answer_ms, report.invite_to_answer_ms
    );
    if let Some(who) = &report.answered_by {
        println!("  answered by        {who}");
    }
    match report.command_to_first_media_ms {
        Some(ms) => println!("  command → media    {ms:.0} ms"),
        None => println!("  command → media    no media arrived"),
    }
    println!(
        "  media              {} packets sent, {} received, {:.1} % loss, {} echoes matched, {} mismatched",
        media.packets_sent,
        media.packets_received,
        media.loss * 100.0,
        media.echo_matches,
        media.echo_mismatches
    );
    println!(
        "  round trip         {} (echo), {} (ICE)",
        ms(media.echo_rtt),
        ms(media.ice_rtt)
    );
    println!(
        "  ended by           {} ({})",
        report.ended_by, report.cause
    );
    let receipt = &report.receipt;
    match (receipt.status, &receipt.amount, receipt.billed_seconds) {
        (Kept::Settled, _, _) if receipt.not_charged.is_some() => println!(
            "  receipt            settled: not charged, media never flowed both ways ({}), signed by both sides",
            receipt.not_charged.as_deref().unwrap_or_default()
        ),
        (Kept::Settled, Some(amount), Some(seconds)) => {
            println!(
                "  receipt            settled: {seconds} s billed, {amount}, signed by both sides"
            )
        }
        (Kept::Disputed, _, _) => println!(
            "  receipt            REFUSED: {}",
            receipt
                .dispute
                .as_deref()
                .unwrap_or("does not match the call")
        ),
        _ => println!("  receipt            none received"),
    }
}
