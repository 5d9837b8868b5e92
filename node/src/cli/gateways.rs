//! `interlink gateways`: join the network as a client, find, verify and rank gateways.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use interlink_node::config::Config;
use interlink_node::discovery::{self, Discovery, DiscoveryError, Query};
use interlink_node::listing::{self, GatewayRow};
use interlink_node::local_network::caller_spec;
use interlink_node::network::NetworkError;
use interlink_node::node::{Node, NodeError};
use interlink_protocol::ranking::{self, History, PolicyKind};
use interlink_protocol::{Codec, Currency, E164, Money, ServiceKind};
use libp2p::Multiaddr;
use libp2p::identity::Keypair;

use super::{EXIT_FAILURE, EXIT_INVALID_DESTINATION, EXIT_NOT_COVERED, EXIT_UNREACHABLE, Failure};

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The number to reach: +447700900123, 00447700900123, tel:+44 7700 900123 or
    /// sip:+447700900123@host.
    destination: String,
    /// Join the network through this peer (repeatable; ends in /p2p/PEER_ID)
    /// [default: network.bootstrap of the config].
    #[arg(long, value_name = "MULTIADDR")]
    bootstrap: Vec<Multiaddr>,
    /// Read bootstrap peers and the [caller] policy from this config file.
    #[arg(long)]
    config: Option<PathBuf>,
    /// How to rank: cheapest, best-quality or balanced [default: balanced].
    #[arg(long, value_name = "POLICY")]
    policy: Option<PolicyKind>,
    /// Leave out offers above this price per minute, e.g. "0.05 GBP" (or "0.05" with
    /// --currency).
    #[arg(long, value_name = "AMOUNT")]
    max_price: Option<String>,
    /// Leave out offers priced in other currencies (ISO 4217, e.g. GBP).
    #[arg(long)]
    currency: Option<Currency>,
    /// Leave out offers without this codec (PCMU, PCMA, G722, opus).
    #[arg(long)]
    codec: Option<Codec>,
    /// Service kinds to consider (repeatable) [default: webrtc-pstn and webrtc-sip].
    #[arg(long = "kind", value_name = "KIND")]
    kinds: Vec<ServiceKind>,
    /// Print a JSON array instead of a table.
    #[arg(long)]
    json: bool,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 15, value_name = "SECONDS")]
    timeout: u64,
    /// Skip measuring the round trip to each gateway.
    #[arg(long)]
    no_rtt: bool,
}

pub(crate) async fn run(args: Args) -> Result<(), Failure> {
    let destination = E164::parse(&args.destination).map_err(|e| {
        Failure::new(
            EXIT_INVALID_DESTINATION,
            format!("invalid destination {:?}: {e}", args.destination),
        )
    })?;
    let config = match &args.config {
        Some(path) => Config::load(path).map_err(|e| Failure::new(EXIT_FAILURE, e))?,
        None => Config::default(),
    };
    let mut policy = config
        .caller_policy()
        .map_err(|e| Failure::new(EXIT_FAILURE, e))?;
    if let Some(kind) = args.policy {
        policy.kind = kind;
    }
    if let Some(currency) = args.currency {
        policy.currency = Some(currency);
    }
    if let Some(max) = &args.max_price {
        let limit = Money::parse(max, policy.currency)
            .map_err(|e| Failure::new(EXIT_FAILURE, format!("invalid --max-price {max:?}: {e}")))?;
        policy.max_price_per_minute = Some(limit);
    }
    if let Some(codec) = args.codec {
        policy.required_codec = Some(codec);
    }
    let kinds = if args.kinds.is_empty() {
        ServiceKind::WEBRTC_TO_NUMBERS.to_vec()
    } else {
        args.kinds.clone()
    };
    let bootstrap = if args.bootstrap.is_empty() {
        config.network.bootstrap.clone()
    } else {
        args.bootstrap.clone()
    };
    if bootstrap.is_empty() {
        return Err(Failure::new(
            EXIT_UNREACHABLE,
            "no bootstrap peer: pass --bootstrap MULTIADDR (ending in /p2p/PEER_ID) or set network.bootstrap in --config",
        ));
    }

    let query = Query {
        destination: destination.clone(),
        kinds,
        measure_rtt: !args.no_rtt,
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
    if rows.is_empty() {
        let country = destination.country_code();
        let detail = match found.offers.len() {
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
    let caller = Node::start(
        caller_spec(bootstrap, &config.dht),
        Keypair::generate_ed25519(),
    )
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
