//! `interlink gateways`: join the network as a client, find, verify and rank gateways.

use std::time::{Duration, Instant};

use interlink_node::config::Config;
use interlink_node::discovery::{self, Discovery, DiscoveryError, Query};
use interlink_node::listing::{self, GatewayRow};
use interlink_node::network::NetworkError;
use interlink_node::node::{Node, NodeError, NodeSpec};
use interlink_protocol::E164;
use interlink_protocol::discovery::query::MAX_LIMIT;
use interlink_protocol::ranking::{self, History, PolicyKind};
use libp2p::Multiaddr;
use libp2p::identity::Keypair;

use super::choice::{CallerArgs, Choice};
use super::{EXIT_FAILURE, EXIT_NOT_COVERED, EXIT_UNREACHABLE, Failure};

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    #[command(flatten)]
    caller: CallerArgs,
    /// Print a JSON array instead of a table.
    #[arg(long)]
    json: bool,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 15, value_name = "SECONDS")]
    timeout: u64,
    /// Skip measuring the round trip to each gateway.
    #[arg(long)]
    no_rtt: bool,
    /// Ask for the best N offers (and as many long-standing ones) [default: the config's
    /// discovery.results, 10].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=256))]
    limit: Option<u16>,
    /// Ask for every offer that covers the number (up to 256).
    #[arg(long, conflicts_with = "limit")]
    all: bool,
}

pub(crate) async fn run(args: Args) -> Result<(), Failure> {
    let Choice {
        destination,
        config,
        policy,
        kinds,
        bootstrap,
    } = args.caller.resolve()?;
    let query = Query {
        policy: policy.clone(),
        limit: if args.all {
            Some(MAX_LIMIT)
        } else {
            args.limit
        },
        measure_rtt: !args.no_rtt,
        ..Query::new(destination.clone(), kinds)
    };
    let started = Instant::now();
    let deadline = Duration::from_secs(args.timeout);
    let found = tokio::time::timeout(deadline, find(bootstrap, &config, &query))
        .await
        .map_err(|_| {
            Failure::new(
                EXIT_UNREACHABLE,
                format!("no answer from the network within {}s", args.timeout),
            )
        })??;

    let ranking = ranking::rank(
        &found.offers,
        &destination,
        &found.measurements,
        &History::new(),
        &policy,
    );
    let rows = listing::rows(&ranking);
    if args.json {
        let json =
            serde_json::to_string_pretty(&rows).map_err(|e| Failure::new(EXIT_FAILURE, e))?;
        println!("{json}");
    } else if !rows.is_empty() {
        print_human(
            &destination,
            policy.kind,
            &rows,
            &listing::excluded(&ranking),
            started.elapsed(),
        );
    }
    if !rows.is_empty() && found.stats.cut(rows.len()) {
        eprintln!(
            "These are the best {} of {} offers that can carry the call; --limit N or --all for more.",
            rows.len(),
            found.stats.matching
        );
    }
    if rows.is_empty() {
        let country = destination.country_code();
        let detail = match found.stats.held {
            0 => format!("no offers are published under +{country}"),
            n => format!("{n} offers under +{country}, none covers it within the limits"),
        };
        return Err(Failure::new(
            EXIT_NOT_COVERED,
            format!(
                "no gateway covers {destination} ({}): {detail}",
                country.name()
            ),
        ));
    }
    Ok(())
}

/// Joins as a short-lived client, discovers, and leaves.
async fn find(
    bootstrap: Vec<Multiaddr>,
    config: &Config,
    query: &Query,
) -> Result<Discovery, Failure> {
    let unreachable = |e: &dyn std::fmt::Display| {
        Failure::new(EXIT_UNREACHABLE, format!("no peer could be reached: {e}"))
    };
    // A throwaway identity and no database: listing gateways leaves nothing behind.
    let spec = NodeSpec {
        data_dir: None,
        ..NodeSpec::client(config, bootstrap)
    };
    let caller = Node::start(spec, Keypair::generate_ed25519())
        .await
        .map_err(|e| match e {
            NodeError::Network(e) => unreachable(&e),
            other => Failure::new(EXIT_FAILURE, other),
        })?;
    let found = discovery::discover(caller.client(), query).await;
    let _ = caller.shutdown().await;
    found.map_err(|e| match e {
        DiscoveryError::NoPeers | DiscoveryError::Network(NetworkError::NoPeers) => unreachable(&e),
        other => Failure::new(EXIT_FAILURE, other),
    })
}

fn print_human(
    destination: &E164,
    policy: PolicyKind,
    rows: &[GatewayRow],
    excluded: &[listing::ExcludedRow],
    elapsed: Duration,
) {
    println!(
        "Gateways for {destination} ({}), policy {policy}: {} found in {} ms",
        destination.country_code().name(),
        rows.len(),
        elapsed.as_millis()
    );
    println!("{}", listing::table(rows));
    print_reasons(rows);
    if !excluded.is_empty() {
        println!("Left out:");
        for row in excluded {
            println!(
                "  {} ({}): {}",
                row.name,
                listing::short_peer_id(&row.peer_id),
                row.reason
            );
        }
    }
}

/// Why each gateway ranks where it does.
pub(crate) fn print_reasons(rows: &[GatewayRow]) {
    for row in rows {
        let note = if row.rank == 1 { " (recommended)" } else { "" };
        println!(
            "{}. {}{note}: {}",
            row.rank,
            row.name,
            row.reasons.join("; ")
        );
        println!("   score: {}", row.breakdown);
    }
}
