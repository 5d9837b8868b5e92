//! The `interlink` command line.
#![allow(clippy::print_stdout)]

mod call;
mod choice;
mod conference;
mod demo;
mod gateways;
mod init;
mod receipts;
mod run_node;
mod store_writer;

use std::fmt::Display;
use std::path::PathBuf;

use clap::{Parser, Subcommand};
use interlink_node::logging::{self, LogFormat};

/// Exit status: something else went wrong.
pub(crate) const EXIT_FAILURE: u8 = 1;
/// Exit status: the destination is not a valid E.164 number.
pub(crate) const EXIT_INVALID_DESTINATION: u8 = 3;
/// Exit status: no gateway covers the destination.
pub(crate) const EXIT_NOT_COVERED: u8 = 4;
/// Exit status: no peer of the network could be reached.
pub(crate) const EXIT_UNREACHABLE: u8 = 5;
/// Exit status: no gateway answered the call.
pub(crate) const EXIT_NO_ANSWER: u8 = 6;
/// Exit status: the user interrupted the command (Ctrl-C) before it was done, as shells
/// report a process ended by SIGINT.
pub(crate) const EXIT_INTERRUPTED: u8 = 130;

const AFTER_HELP: &str = "\
Exit status: 0 success; 1 error; 2 bad arguments; 3 invalid destination;
4 no gateway covers the destination; 5 no peer of the network could be reached;
6 no gateway answered the call.

Quick start:
  interlink demo                                   a whole network on 127.0.0.1
  interlink demo --serve                           the same, kept up to call from a browser
  interlink init --dir ./node                      identity key and config.toml
  interlink node --config ./node/config.toml       run the node
  interlink gateways +447700900123 --bootstrap /ip4/…/tcp/4001/p2p/12D3…
  interlink call +447700900123 --duration 10       call through the best gateway
  interlink receipts --csv                         receipts for settlement
  interlink conference reserve --region eu-west --size 3 --duration 60
  interlink conference join TOKEN --tone 660       join a room with the printed token
  interlink conference end TOKEN                   end it (the reserve prints the receipt)";

/// Interlink: a peer-to-peer market for call interconnection.
///
/// Gateway operators publish signed offers (destinations, prices, quality) into a Kademlia
/// DHT; callers find them, rank them by price and quality, and call through the one they
/// choose.
#[derive(Debug, Parser)]
#[command(name = "interlink", version, after_help = AFTER_HELP)]
pub(crate) struct Cli {
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Human)]
    log_format: LogFormat,
    /// Log more (debug level); RUST_LOG overrides.
    #[arg(long, short, global = true)]
    verbose: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create a node's identity key (mode 0600) and a commented config.toml.
    Init(init::Args),
    /// Run a node: join the DHT, serve it, and publish offers if configured as a gateway.
    Node(run_node::Args),
    /// Find, verify and rank the gateways that can reach a destination.
    Gateways(gateways::Args),
    /// Call a destination through the best gateway (a tone), with failover, and settle.
    Call(call::Args),
    /// List the signed receipts of this node's calls, or export them (--json, --csv).
    Receipts(receipts::Args),
    /// Conference rooms on a bridge found by region: reserve (and hold), join, end, list
    /// the room receipts.
    #[command(subcommand)]
    Conference(conference::Command),
    /// Start a small network on 127.0.0.1 and show what a caller sees for a UK number;
    /// Alice's web page is served meanwhile (--serve keeps it up).
    Demo(demo::Args),
    /// For the crash-safety test: write receipts into a database until killed.
    #[command(hide = true)]
    StoreWriter(store_writer::Args),
}

/// A command's failure: the message for stderr and the exit status.
#[derive(Debug)]
pub(crate) struct Failure {
    pub(crate) code: u8,
    pub(crate) message: String,
}

impl Failure {
    pub(crate) fn new(code: u8, message: impl Display) -> Failure {
        Failure {
            code,
            message: message.to_string(),
        }
    }
}

impl From<anyhow::Error> for Failure {
    fn from(e: anyhow::Error) -> Failure {
        Failure::new(EXIT_FAILURE, format!("{e:#}"))
    }
}

/// Runs the command `args` names.
pub(crate) async fn run(args: Cli) -> Result<(), Failure> {
    let level = |quiet: &str| if args.verbose { "debug" } else { quiet }.to_owned();
    match args.command {
        Command::Init(init) => {
            logging::init(args.log_format, &level("warn"));
            init::run(init).map_err(Failure::from)
        }
        Command::Node(node) => {
            logging::init(args.log_format, &level("info"));
            run_node::run(node).await.map_err(Failure::from)
        }
        Command::Gateways(gateways) => {
            logging::init(args.log_format, &level("warn"));
            gateways::run(gateways).await
        }
        Command::Call(call) => {
            logging::init(args.log_format, &level("warn"));
            call::run(call).await
        }
        Command::Receipts(receipts) => {
            logging::init(args.log_format, &level("warn"));
            receipts::run(receipts).await.map_err(Failure::from)
        }
        Command::Conference(command) => {
            logging::init(args.log_format, &level("warn"));
            conference::run(command).await
        }
        Command::Demo(demo) => {
            logging::init(args.log_format, &level("warn"));
            demo::run(demo).await.map_err(Failure::from)
        }
        Command::StoreWriter(writer) => {
            logging::init(args.log_format, &level("warn"));
            store_writer::run(writer).await.map_err(Failure::from)
        }
    }
}

/// Where a node keeps its files unless told otherwise: `$INTERLINK_HOME`, else
/// `$XDG_DATA_HOME/interlink`, else `~/.local/share/interlink`.
pub(crate) fn default_data_dir() -> PathBuf {
    if let Some(home) = std::env::var_os("INTERLINK_HOME") {
        return PathBuf::from(home);
    }
    if let Some(data) = std::env::var_os("XDG_DATA_HOME") {
        return PathBuf::from(data).join("interlink");
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."));
    home.join(".local/share/interlink")
}

/// The config file used when `--config` is not given.
pub(crate) fn default_config_path() -> PathBuf {
    default_data_dir().join("config.toml")
}
