//! `interlink demo`: the use case on one machine, with no setup.
//!
//! Starts a bootstrap node, three DHT nodes and five gateways on 127.0.0.1, each with its
//! own prices, quality and prefixes; waits until their signed offers are in the DHT; then
//! shows what Alice sees when she calls Bob on a UK mobile: the gateways that can reach
//! him, ranked, with the reasons. Gateways that do not cover the number are left out
//! with the reason, or never found because they serve another country. Then Alice calls
//! through the recommended gateway: real WebRTC media to its echo back-end, a hang-up
//! after a few seconds, and the receipt both sides signed. Last, a conference: Alice
//! reserves a room for three on the bridge of eu-west, three participants join with their
//! own tones and each hears the two others, and the room's receipt is settled.
//!
//! Alice's node serves her web page meanwhile, and prints its address. With `--serve` the
//! network stays up after the scripted call, until Ctrl-C, so that a person can call from
//! a browser.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use anyhow::Context;
use interlink_node::api::{ApiServer, ApiSettings};
use interlink_node::calls::caller::{self, CallOptions, Progress};
use interlink_node::config::{BackendSpec, ConferenceBackend, DhtSection, GatewayPlan};
use interlink_node::discovery::{self, Discovery, Query};
use interlink_node::listing;
use interlink_node::local_network::LocalNetwork;
use interlink_node::network::CacheUse;
use interlink_protocol::call::Timers;
use interlink_protocol::conference::{ConferenceTariff, ConferenceTerms, Region};
use interlink_protocol::offer::{ClaimedQuality, Mos, Permille, Route, Tariff};
use interlink_protocol::ranking::{self, History, Policy};
use interlink_protocol::{Currency, E164, Prefix, ServiceKind};
use tokio::signal::unix::{SignalKind, signal};

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Keep the network and Alice's web page running after the scripted call, until
    /// Ctrl-C or SIGTERM, to call from a browser.
    #[arg(long)]
    serve: bool,
    /// Where Alice's node serves the web page and API (a loopback address; port 0: any
    /// free port).
    #[arg(long, value_name = "ADDR", default_value_t = SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))]
    api_listen: SocketAddr,
}

/// Bob's number: a UK mobile in Ofcom's range for drama.
const BOB: &str = "+44 7700 900123";
/// DHT nodes besides the bootstrap node and the gateways.
const DHT_NODES: usize = 3;
/// How long Alice and Bob talk.
const CALL_LENGTH: Duration = Duration::from_secs(3);
/// How long the network may take to publish and find the offers.
const SETTLE_DEADLINE: Duration = Duration::from_secs(15);

struct DemoGateway {
    name: &'static str,
    region: &'static str,
    routes: &'static [(&'static str, u64)],
    mos: u16,
    asr: u16,
    pdd_ms: u32,
}

impl DemoGateway {
    fn prefixes(&self) -> impl Iterator<Item = Prefix> + '_ {
        self.routes
            .iter()
            .filter_map(|(prefix, _)| Prefix::new(prefix).ok())
    }
}

const GATEWAYS: &[DemoGateway] = &[
    DemoGateway {
        name: "Inter Telecom",
        region: "eu-west",
        routes: &[("+44", 1), ("+447", 3)],
        mos: 430,
        asr: 620,
        pdd_ms: 1800,
    },
    DemoGateway {
        name: "Budget Voice",
        region: "eu-west",
        routes: &[("+44", 2)],
        mos: 310,
        asr: 350,
        pdd_ms: 4500,
    },
    DemoGateway {
        name: "Premium Connect",
        region: "eu-west",
        routes: &[("+44", 6), ("+447", 8)],
        mos: 450,
        asr: 750,
        pdd_ms: 1200,
    },
    DemoGateway {
        name: "London Local",
        region: "uk-london",
        routes: &[("+4420", 1)],
        mos: 420,
        asr: 600,
        pdd_ms: 2000,
    },
    DemoGateway {
        name: "Paris Interconnect",
        region: "eu-central",
        routes: &[("+33", 1)],
        mos: 430,
        asr: 600,
        pdd_ms: 1500,
    },
];

fn plan(gateway: &DemoGateway) -> anyhow::Result<GatewayPlan> {
    let gbp = Currency::new("GBP")?;
    let eur = Currency::new("EUR")?;
    let routes = gateway
        .routes
        .iter()
        .map(|&(prefix, per_minute)| {
            let currency = if prefix.starts_with("+33") { eur } else { gbp };
            Ok(Route {
                prefix: Prefix::new(prefix)?,
                tariff: Tariff {
                    currency,
                    setup_fee: 0,
                    per_minute,
                    billing_increment_secs: 60,
                },
            })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok(GatewayPlan {
        region: gateway.region.into(),
        capacity: 50,
        quality: ClaimedQuality {
            answer_seizure_ratio: Permille(gateway.asr),
            post_dial_delay_ms: gateway.pdd_ms,
            mos: Mos(gateway.mos),
        },
        offer_ttl: Duration::from_secs(600),
        ..GatewayPlan::new(gateway.name, routes)
    })
}

pub(crate) async fn run(args: Args) -> anyhow::Result<()> {
    let started = Instant::now();
    let mut plans = GATEWAYS
        .iter()
        .map(plan)
        .collect::<anyhow::Result<Vec<_>>>()?;
    plans.push(bridge_plan()?);
    println!(
        "Interlink demo: {} nodes on 127.0.0.1, each with its own libp2p swarm.",
        1 + DHT_NODES + plans.len()
    );
    let dht = DhtSection::default();
    let network = LocalNetwork::start(DHT_NODES, plans, &dht)
        .await
        .context("cannot start the local network")?;
    println!("  bootstrap node    {}", network.bootstrap_addr);
    for (gateway, node) in GATEWAYS.iter().zip(&network.gateways) {
        let routes: Vec<String> = gateway
            .routes
            .iter()
            .map(|(prefix, pence)| {
                format!(
                    "{prefix} at {pence} {}/min",
                    if prefix.starts_with("+33") { "c" } else { "p" }
                )
            })
            .collect();
        println!(
            "  gateway           {:<19} {}  {}",
            gateway.name,
            listing::short_peer_id(&node.peer_id().to_string()),
            routes.join(", ")
        );
    }
    if let Some(bridge) = network.gateways.get(GATEWAYS.len()) {
        println!(
            "  conference bridge {:<19} {}  eu-west, rooms of up to 8 at 0.10 EUR + 0.02 EUR/participant-min",
            "Mixer",
            listing::short_peer_id(&bridge.peer_id().to_string())
        );
    }
    network
        .wait_published(SETTLE_DEADLINE)
        .await
        .context("the gateways could not publish their offers")?;
    println!(
        "All {} offers are signed, stored in the DHT and announced ({:.1} s).\n",
        GATEWAYS.len(),
        started.elapsed().as_secs_f64()
    );

    let caller = network.caller().await.context("Alice's node cannot join")?;
    let page = ApiServer::start(
        ApiSettings {
            listen: args.api_listen,
            max_calls: 8,
            max_memberships: 4,
            orphan_call_after: Some(Duration::from_secs(30)),
            policy: Policy::default(),
            kinds: ServiceKind::WEBRTC_TO_NUMBERS.to_vec(),
            timers: Timers::default(),
            setup_deadline: Duration::from_secs(30),
            bootstrap: vec![network.bootstrap_addr.clone()],
        },
        caller.caller(),
    )
    .await
    .context("Alice's web page")?;
    let while_it_runs = if args.serve {
        "it stays up after the call below"
    } else {
        "while the demo runs; `interlink demo --serve` keeps it up"
    };
    println!("Alice's web page: {} ({while_it_runs}).\n", page.url());
    let bob = E164::parse(BOB)?;
    let expected = GATEWAYS
        .iter()
        .filter(|g| g.prefixes().any(|p| p.covers(&bob)))
        .count();
    let query = Query {
        measure_rtt: true,
        cache: CacheUse::Bypass,
        ..Query::new(bob.clone(), vec![ServiceKind::WEBRTC_TO_PSTN])
    };
    let found = find_all(&caller, &query, expected).await?;

    let policy = Policy::default();
    let ranking = ranking::rank(
        &found.offers,
        &bob,
        &found.measurements,
        &History::new(),
        &policy,
    );
    let rows = listing::rows(&ranking);
    println!(
        "Alice presses Call for Bob at {bob} ({}). Her node found {} offers under +{} in {} ms and ranks them ({}):",
        bob.country_code().name(),
        found.offers.len(),
        bob.country_code(),
        found.stats.lookup_time.as_millis(),
        policy.kind
    );
    println!("{}", listing::table(&rows));
    super::gateways::print_reasons(&rows);
    for row in listing::excluded(&ranking) {
        println!("Left out: {}: {}", row.name, row.reason);
    }
    let found_names: Vec<&str> = found
        .offers
        .iter()
        .map(|o| o.offer().display_name.as_str())
        .collect();
    for gateway in GATEWAYS.iter().filter(|g| !found_names.contains(&g.name)) {
        let prefixes: Vec<&str> = gateway.routes.iter().map(|(p, _)| *p).collect();
        let prefixes = prefixes.join(", ");
        let same_country = gateway
            .prefixes()
            .any(|p| p.country_code() == Some(bob.country_code()));
        if same_country {
            println!(
                "Left out: {}: no route covers the destination ({prefixes} only; the index's holders return only offers that cover the number).",
                gateway.name
            );
        } else {
            println!(
                "Not found: {}, which serves {prefixes} only, is indexed under another country's key.",
                gateway.name
            );
        }
    }
    let Some(best) = rows.first() else {
        anyhow::bail!("no gateway covers Bob's number");
    };
    println!(
        "\nAlice picks {} at {} {}/min and calls. Its echo back-end answers and plays her audio back:",
        best.name, best.price_per_minute, best.currency
    );
    let options = CallOptions {
        hold_for: CALL_LENGTH,
        ..CallOptions::new(bob.clone())
    };
    let call_started = Instant::now();
    let show = move |progress: Progress| {
        if let Some(line) = super::call::progress_line(call_started, &progress) {
            println!("  {line}");
        }
    };
    let report = caller::place_call(&caller.caller(), &options, &show)
        .await
        .context("Alice's call failed")?;
    super::call::print_report(&report);
    super::conference::demo_room(&network, &caller, bridge_region()?)
        .await
        .context("the conference failed")?;

    if args.serve {
        println!(
            "\nThe network keeps running. Open {} in Chromium or Chrome, call {BOB} \
             (or +1 202 555 0100, which no service covers), and talk to the echo. \
             Ctrl-C stops everything.",
            page.url()
        );
        let mut terminate = signal(SignalKind::terminate()).context("cannot watch SIGTERM")?;
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = terminate.recv() => {}
        }
        println!("Stopping: calls from the page hang up, gateways withdraw their offers.");
    }
    page.shutdown().await;
    caller.shutdown().await?;
    network
        .shutdown()
        .await
        .context("a gateway could not withdraw its offer")?;
    println!(
        "Gateways withdrew their offers; the demo took {:.1} s.",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

fn bridge_region() -> anyhow::Result<Region> {
    Ok(Region::new("eu-west")?)
}

/// The demo's conference bridge: rooms of up to 8 in eu-west, 0.10 EUR a room and
/// 0.02 EUR a participant-minute, billed by the second.
fn bridge_plan() -> anyhow::Result<GatewayPlan> {
    Ok(GatewayPlan {
        kind: ServiceKind::Conference,
        region: bridge_region()?.to_string(),
        capacity: 24,
        routes: Vec::new(),
        backend: BackendSpec::Conference(ConferenceBackend::default()),
        conference: Some(ConferenceTerms {
            rooms: 3,
            participants_per_room: 8,
            tariff: ConferenceTariff {
                currency: Currency::new("EUR")?,
                per_room: 10,
                per_participant_minute: 2,
                billing_increment_secs: 1,
            },
        }),
        ..GatewayPlan::new("Mixer", Vec::new())
    })
}

/// Looks up until the `expected` offers are all found (they were acknowledged, so this
/// is normally the first try), or the deadline passes.
async fn find_all(
    caller: &interlink_node::node::Node,
    query: &Query,
    expected: usize,
) -> anyhow::Result<Discovery> {
    let deadline = Instant::now() + SETTLE_DEADLINE;
    loop {
        let found = discovery::discover(caller.client(), query).await?;
        if found.offers.len() >= expected || Instant::now() >= deadline {
            return Ok(found);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
