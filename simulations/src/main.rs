//! `interlink-sim`: run a scenario of many real Interlink nodes in this process and report.
#![allow(clippy::print_stdout)]

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use interlink_node::local_network::LocalTransport;
use interlink_node::lock::LockExt;
use interlink_simulations::scenario::{
    DiscoveryChoice, LinkModelChoice, NAMED, Scenario, Security,
};
use interlink_simulations::{Phase, measure, report, run_scenario};

/// Simulate an Interlink network: thousands of real nodes (the node's own libp2p
/// behaviours, record validation, publisher and discovery) in one process, with callers
/// looking gateways up while nodes join, leave and crash.
/// Thousands of nodes in one process allocate and free on every message from two worker
/// threads; glibc's malloc spent a fifth of the CPU of a 300-node run.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Parser)]
#[command(name = "interlink-sim", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a scenario and write its report.
    Run(Box<RunArgs>),
    /// List the named scenarios.
    List,
}

#[derive(Debug, clap::Args)]
struct RunArgs {
    /// A named scenario (see `list`) [default: small].
    scenario: Option<String>,
    /// Read the scenario from this TOML file instead.
    #[arg(long, conflicts_with = "scenario")]
    config: Option<PathBuf>,
    /// DHT nodes (replaces a node sweep).
    #[arg(long)]
    nodes: Option<usize>,
    #[arg(long)]
    gateways: Option<usize>,
    #[arg(long)]
    callers: Option<usize>,
    /// Seconds of load after the warm-up.
    #[arg(long, value_name = "SECONDS")]
    duration: Option<u64>,
    /// Joins and leaves per minute each (replaces a churn sweep).
    #[arg(long, value_name = "PER_MINUTE")]
    churn: Option<f64>,
    #[arg(long)]
    seed: Option<u64>,
    /// Nodes started per second while the network is built.
    #[arg(long, value_name = "PER_SECOND")]
    join_rate: Option<f64>,
    /// Peers each new node joins through: the bootstrap node and DHT nodes already up.
    #[arg(long, value_name = "COUNT")]
    bootstrap_peers: Option<usize>,
    /// How often every node refreshes its routing table (a Kademlia bootstrap).
    #[arg(long, value_name = "SECONDS")]
    bootstrap_interval: Option<u64>,
    /// Close a connection after this long without use.
    #[arg(long, value_name = "SECONDS")]
    idle_timeout: Option<u64>,
    /// How in-memory connections are secured: noise, as on the network, or plaintext
    /// (no key exchange, no encryption) for thousands of nodes on a few cores.
    #[arg(long, value_enum)]
    security: Option<Security>,
    /// memory (libp2p's in-memory transport) or tcp (sockets on 127.0.0.1).
    #[arg(long, value_enum)]
    transport: Option<Transport>,
    /// Also run every point with libp2p's default Kademlia settings.
    #[arg(long)]
    compare_default: bool,
    /// How callers discover: index (one walk of the offer index), providers (the first
    /// design: provider records, then one lookup per provider) or both (each in a run of
    /// its own, compared).
    #[arg(long, value_enum)]
    discovery: Option<DiscoveryChoice>,
    /// Round-trip times between nodes: none (in-memory, at once) or regions (six cloud
    /// regions and a last mile per node, 6 to 260 ms).
    #[arg(long, value_enum, value_name = "MODEL")]
    links: Option<LinkModelChoice>,
    /// The best offers each lookup asks for (1 to 256; 256 asks for every covering one).
    #[arg(long, value_name = "N")]
    results: Option<u16>,
    /// Where to write the report [default: sim-out/NAME].
    #[arg(long)]
    out: Option<PathBuf>,
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum Transport {
    Memory,
    Tcp,
}

fn scenario(args: &RunArgs) -> anyhow::Result<Scenario> {
    let mut scenario = match (&args.config, &args.scenario) {
        (Some(path), _) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            Scenario::parse(&text).with_context(|| path.display().to_string())?
        }
        (None, name) => Scenario::named(name.as_deref().unwrap_or("small"))?,
    };
    if let Some(nodes) = args.nodes {
        scenario.nodes = nodes;
        scenario.sweep.nodes.clear();
    }
    if let Some(gateways) = args.gateways {
        scenario.gateways = gateways;
    }
    if let Some(callers) = args.callers {
        scenario.callers = callers;
    }
    if let Some(duration) = args.duration {
        scenario.duration_secs = duration;
    }
    if let Some(rate) = args.churn {
        scenario.churn.joins_per_minute = rate;
        scenario.churn.leaves_per_minute = rate;
        scenario.sweep.churn_per_minute.clear();
    }
    if let Some(seed) = args.seed {
        scenario.seed = seed;
    }
    if let Some(rate) = args.join_rate {
        scenario.join_rate = rate;
    }
    if let Some(count) = args.bootstrap_peers {
        scenario.bootstrap_peers = count;
    }
    if let Some(secs) = args.bootstrap_interval {
        scenario.bootstrap_interval_secs = secs;
    }
    if let Some(secs) = args.idle_timeout {
        scenario.idle_connection_timeout_secs = secs;
    }
    if let Some(transport) = args.transport {
        scenario.transport = match transport {
            Transport::Memory => LocalTransport::Memory,
            Transport::Tcp => LocalTransport::Tcp,
        };
    }
    if let Some(security) = args.security {
        scenario.security = security;
    }
    scenario.compare_default |= args.compare_default;
    if let Some(discovery) = args.discovery {
        scenario.discovery = discovery;
    }
    if let Some(model) = args.links {
        scenario.links.model = model;
    }
    if let Some(results) = args.results {
        scenario.results = results;
    }
    scenario.validate()?;
    Ok(scenario)
}

/// This process's resident memory, for people.
fn rss() -> String {
    format!(
        "{:.0} MiB resident",
        interlink_simulations::measure::rss_bytes() as f64 / (1024.0 * 1024.0)
    )
}

/// Prints `phase` as a line if it differs in kind from the last one printed, or 10 s
/// have passed.
fn plain_progress(last: &Mutex<(Instant, Option<String>)>, prefix: &str, phase: &Phase) {
    let (kind, detail) = match phase {
        Phase::Building {
            started,
            of,
            connections,
        } => (
            "starting nodes",
            format!(
                "{started}/{of}, {connections:.0} connections per node, {}",
                rss()
            ),
        ),
        Phase::Settling => (
            "waiting for the gateways' offers and the warm-up",
            String::new(),
        ),
        Phase::Running {
            elapsed,
            of,
            lookups,
        } => (
            "load running",
            format!(
                "{}/{} s, {lookups} lookups",
                elapsed.as_secs(),
                of.as_secs()
            ),
        ),
        Phase::TearingDown => ("stopping the nodes", String::new()),
    };
    let key = format!("{prefix} {kind}");
    let mut last = last.locked();
    if last.1.as_deref() != Some(key.as_str()) || last.0.elapsed() >= Duration::from_secs(10) {
        eprintln!("{key} {detail}");
        *last = (Instant::now(), Some(key));
    }
}

async fn run(args: RunArgs) -> anyhow::Result<()> {
    let scenario = scenario(&args)?;
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from("sim-out").join(&scenario.name));
    let bar = ProgressBar::new(100);
    bar.set_style(
        ProgressStyle::with_template("{spinner} [{elapsed_precise}] {prefix} {bar:30} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.enable_steady_tick(Duration::from_millis(200));
    // Without a terminal the bar is hidden: a plain line every 10 s (and at each new phase)
    // goes to stderr instead, for logs and CI.
    let plain = (!std::io::stderr().is_terminal()).then(|| Mutex::new((Instant::now(), None)));
    let progress = {
        let bar = bar.clone();
        move |run: usize, runs: usize, label: &str, phase: Phase| {
            let prefix = format!("run {}/{runs} ({label})", run + 1);
            if let Some(plain) = &plain {
                plain_progress(plain, &prefix, &phase);
            }
            bar.set_prefix(prefix);
            match phase {
                Phase::Building {
                    started,
                    of,
                    connections,
                } => {
                    bar.set_length(of as u64);
                    bar.set_position(started as u64);
                    bar.set_message(format!(
                        "starting nodes {started}/{of}, {connections:.0} connections per node, {}",
                        rss()
                    ));
                }
                Phase::Settling => {
                    bar.set_message("waiting for the gateways' offers and the warm-up")
                }
                Phase::Running {
                    elapsed,
                    of,
                    lookups,
                } => {
                    bar.set_length(of.as_secs().max(1));
                    bar.set_position(elapsed.as_secs());
                    bar.set_message(format!("load running: {lookups} lookups"));
                }
                Phase::TearingDown => bar.set_message("stopping the nodes"),
            }
        }
    };
    let mut write_error = None;
    let results = run_scenario(&scenario, &progress, &mut |so_far| {
        if let Err(e) = report::write(&out, &scenario, so_far) {
            write_error.get_or_insert(e);
        }
    })
    .await?;
    bar.finish_and_clear();
    if let Some(e) = write_error {
        return Err(e).with_context(|| format!("cannot write the report in {}", out.display()));
    }
    println!("{}", scenario.description);
    println!("{}", report::table(&results));
    for line in report::comparison(&results) {
        println!("{line}");
    }
    let path = report::write(&out, &scenario, &results)?;
    println!("Report: {}", path.display());
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Command::List = cli.command {
        for (name, text) in NAMED {
            let description = Scenario::parse(text)
                .map(|s| s.description)
                .unwrap_or_default();
            println!("{name:<8} {description}");
        }
        return ExitCode::SUCCESS;
    }
    let Command::Run(args) = cli.command else {
        return ExitCode::SUCCESS;
    };
    interlink_node::logging::init(interlink_node::logging::LogFormat::Human, "error");
    if let Err(e) = measure::disable_huge_pages() {
        eprintln!("warning: transparent huge pages stay on ({e}): memory per node will be higher");
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(*args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
