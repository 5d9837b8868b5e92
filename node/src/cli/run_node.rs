//! `interlink node`: run until SIGINT or SIGTERM, then withdraw and stop; on SIGHUP, reload
//! the gateway's prices from the config file.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use interlink_node::api::{ApiServer, ApiSettings};
use interlink_node::config::Config;
use interlink_node::identity;
use interlink_node::metrics::MetricsServer;
use interlink_node::node::{Node, NodeSpec};
use interlink_node::reload::{self, Reloaded};
use libp2p::Multiaddr;
use tokio::signal::unix::{SignalKind, signal};

/// How long a clean shutdown (withdrawing the offer) may take.
const SHUTDOWN_DEADLINE: Duration = Duration::from_secs(15);

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Configuration file [default: $INTERLINK_HOME/config.toml, else
    /// ~/.local/share/interlink/config.toml].
    #[arg(long)]
    config: Option<PathBuf>,
    /// Listen on this address instead of the configured ones (repeatable).
    #[arg(long, value_name = "MULTIADDR")]
    listen: Vec<Multiaddr>,
    /// Join through this peer as well as the configured ones (repeatable; ends in /p2p/ID).
    #[arg(long, value_name = "MULTIADDR")]
    bootstrap: Vec<Multiaddr>,
    /// Serve the web page and HTTP API on this loopback address instead of api.listen
    /// (port 0: any free port).
    #[arg(long, value_name = "ADDR", conflicts_with = "no_api")]
    api_listen: Option<SocketAddr>,
    /// Serve no web page or HTTP API.
    #[arg(long)]
    no_api: bool,
    /// Serve Prometheus metrics at http://ADDR/metrics instead of metrics.listen, even if
    /// metrics.enabled is false (port 0: any free port).
    #[arg(long, value_name = "ADDR", conflicts_with = "no_metrics")]
    metrics_listen: Option<SocketAddr>,
    /// Serve no metrics, whatever the configuration says.
    #[arg(long)]
    no_metrics: bool,
}

pub(crate) async fn run(args: Args) -> anyhow::Result<()> {
    // Watched from the start: a signal that arrives while the node starts (once its
    // addresses are logged, say) stops it cleanly instead of killing it.
    let mut terminate = signal(SignalKind::terminate()).context("cannot watch SIGTERM")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("cannot watch SIGINT")?;
    // SIGHUP would end the process too: watched from the start, it reloads prices instead.
    let mut hangup = signal(SignalKind::hangup()).context("cannot watch SIGHUP")?;
    let path = args.config.unwrap_or_else(super::default_config_path);
    let mut config = Config::load(&path)?;
    if !args.listen.is_empty() {
        config.network.listen = args.listen;
    }
    config.network.bootstrap.extend(args.bootstrap);
    if let Some(address) = args.api_listen {
        config.api.listen = address;
        config.api.enabled = true;
    }
    if args.no_api {
        config.api.enabled = false;
    }
    if let Some(address) = args.metrics_listen {
        config.metrics.listen = address;
        config.metrics.enabled = true;
    }
    if args.no_metrics {
        config.metrics.enabled = false;
    }
    config.validate()?;
    let api_settings = ApiSettings::from_config(&config)?;
    let keypair = identity::load(&config.node.data_dir)?;
    let spec = NodeSpec::from_config(&config)?;
    let mut running_plan = spec.gateway.clone();
    let role = if spec.gateway.is_some() {
        "gateway"
    } else {
        "DHT node"
    };
    let node = Node::start(spec, keypair)
        .await
        .context("cannot start the node")?;
    let metrics = if config.metrics.enabled {
        match MetricsServer::start(config.metrics.listen, node.metrics().clone()).await {
            Ok(server) => {
                let url = server.url();
                tracing::info!(url = %url, "metrics at {url}");
                Some(server)
            }
            Err(e) => {
                let _ = node.shutdown().await;
                return Err(e.into());
            }
        }
    } else {
        None
    };
    let api = if config.api.enabled {
        match ApiServer::start(api_settings, node.caller()).await {
            Ok(api) => Some(api),
            Err(e) => {
                let _ = node.shutdown().await;
                return Err(e.into());
            }
        }
    } else {
        None
    };
    if let Some(api) = &api {
        let url = api.url();
        tracing::info!(url = %url, "web page and API at {url}");
    }
    tracing::info!(peer_id = %node.peer_id(), config = %path.display(), "{role} running; stop with Ctrl-C or SIGTERM, reload prices with SIGHUP");

    let mut node = node;
    loop {
        tokio::select! {
            _ = interrupt.recv() => {
                tracing::info!("SIGINT received; shutting down");
                break;
            }
            _ = terminate.recv() => {
                tracing::info!("SIGTERM received; shutting down");
                break;
            }
            _ = hangup.recv() => {
                tracing::info!(config = %path.display(), "SIGHUP received; reloading prices");
                // A stop signal during the reload (publishing can take a while) wins.
                let reloaded = tokio::select! {
                    result = reload::reload_prices(&path, running_plan.as_mut(), node.publisher()) => Some(result),
                    _ = interrupt.recv() => None,
                    _ = terminate.recv() => None,
                };
                match reloaded {
                    Some(result) => log_reload(result),
                    None => {
                        tracing::info!("stop signal received during the reload; shutting down");
                        break;
                    }
                }
            }
            reason = node.failed() => {
                // Better to exit and be restarted than to look alive and serve nothing.
                tracing::error!(%reason, "stopping");
                anyhow::bail!("{reason}");
            }
        }
    }
    if let Some(api) = api {
        // Calls placed from the page end on every leg, with receipts, before the node goes.
        api.shutdown().await;
    }
    if let Some(metrics) = metrics {
        metrics.shutdown().await;
    }
    match tokio::time::timeout(SHUTDOWN_DEADLINE, node.shutdown()).await {
        Ok(Ok(())) => tracing::info!("stopped cleanly"),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "stopped, but the offer may not have been withdrawn everywhere")
        }
        Err(_) => tracing::warn!(
            "shutdown took longer than {}s; stopping anyway",
            SHUTDOWN_DEADLINE.as_secs()
        ),
    }
    Ok(())
}

fn log_reload(result: Result<Reloaded, reload::ReloadError>) {
    let restart_needed = match result {
        Ok(Reloaded::Published {
            seq,
            routes,
            replicated,
            restart_needed,
        }) => {
            tracing::info!(
                seq,
                routes,
                replicated,
                "prices reloaded; new offer published"
            );
            restart_needed
        }
        Ok(Reloaded::Unchanged { restart_needed }) => {
            tracing::info!("prices unchanged; the running offer stays");
            restart_needed
        }
        Ok(_) => Vec::new(),
        Err(e) => {
            tracing::error!(error = %e, "reload refused; the running offer stays: {e}");
            return;
        }
    };
    if !restart_needed.is_empty() {
        let fields = restart_needed.join(", ");
        tracing::warn!(%fields, "only prices are reloaded; restart the node to apply the changes to {fields}");
    }
}
