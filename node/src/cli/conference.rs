//! `interlink conference`: reserve a room on the best bridge of a region, join one with a
//! token, end it, list the room receipts.
//!
//! `reserve` holds the room while it runs: it prints the join token, shows joins and leaves
//! on stderr, and ends the room after `--duration`, on Ctrl-C or when `end` asks the
//! bridge from another process with the same identity, printing the settled receipt. `join` sends a tone into the room and reports the tones it hears.

use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use comfy_table::presets::UTF8_FULL_CONDENSED;
use comfy_table::{Cell, CellAlignment, ContentArrangement, Table};
use interlink_gateway_plugin::audio::{SAMPLE_RATE, goertzel_power};
use interlink_gateway_plugin::webrtc_leg::MediaSettings;
use interlink_node::conference::discovery::discover_bridges;
use interlink_node::conference::organiser::{self, RoomRequest};
use interlink_node::conference::participant::{self, OfferedParticipant};
use interlink_node::config::Config;
use interlink_node::identity;
use interlink_node::listing::short_peer_id;
use interlink_node::node::{Node, NodeSpec};
use interlink_node::store::Store;
use interlink_protocol::conference::ranking::rank_conferences;
use interlink_protocol::conference::{Region, RoomEvent, SignedJoinToken};
use interlink_protocol::ranking::PolicyKind;
use interlink_protocol::{Money, ProviderId};
use libp2p::Multiaddr;

use super::{EXIT_FAILURE, EXIT_NOT_COVERED, EXIT_UNREACHABLE, Failure};

/// How long `join` and `end` look for the bridge's offer in the DHT.
const OFFER_LOOKUP_DEADLINE: Duration = Duration::from_secs(10);

#[derive(Debug, clap::Subcommand)]
pub(crate) enum Command {
    /// Reserve a room on the best bridge of a region and hold it: prints the join token,
    /// shows joins and leaves, ends the room after --duration or on Ctrl-C and prints the
    /// settled receipt.
    Reserve(ReserveArgs),
    /// Join a room with its token: send a tone, report the tones heard, leave.
    Join(JoinArgs),
    /// End a room from another process than the `reserve` holding it (same identity):
    /// `reserve` then prints the settled receipt and exits.
    End(EndArgs),
    /// List the room receipts this node holds.
    List(ListArgs),
}

#[derive(Debug, clap::Args)]
pub(crate) struct NetworkArgs {
    /// Join the network through this peer (repeatable; ends in /p2p/PEER_ID)
    /// [default: network.bootstrap of the config].
    #[arg(long, value_name = "MULTIADDR")]
    bootstrap: Vec<Multiaddr>,
    /// Config file [default: $INTERLINK_HOME/config.toml if it exists].
    #[arg(long)]
    config: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
pub(crate) struct ReserveArgs {
    #[command(flatten)]
    network: NetworkArgs,
    /// The region whose bridges to consider, e.g. eu-west.
    #[arg(long)]
    region: Region,
    /// The most participants in the room at once.
    #[arg(long, default_value_t = 4)]
    size: u32,
    /// How to rank: cheapest, best-quality or balanced [default: balanced].
    #[arg(long, value_name = "POLICY")]
    policy: Option<PolicyKind>,
    /// Leave out bridges above this price per participant-minute, e.g. "0.02 EUR".
    #[arg(long, value_name = "AMOUNT")]
    max_price: Option<String>,
    /// End the room after this many seconds (Ctrl-C ends it sooner).
    #[arg(long, default_value_t = 600)]
    duration: u64,
}

#[derive(Debug, clap::Args)]
pub(crate) struct JoinArgs {
    #[command(flatten)]
    network: NetworkArgs,
    /// The join token `reserve` printed (hex).
    token: String,
    /// The tone to send, in Hz (300 to 3400).
    #[arg(long, default_value_t = 440.0)]
    tone: f64,
    /// Leave after this many seconds.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
}

#[derive(Debug, clap::Args)]
pub(crate) struct EndArgs {
    #[command(flatten)]
    network: NetworkArgs,
    /// The room's join token `reserve` printed (hex): it names the room and the bridge.
    token: String,
}

#[derive(Debug, clap::Args)]
pub(crate) struct ListArgs {
    /// The node's config file [default: $INTERLINK_HOME/config.toml].
    #[arg(long)]
    config: Option<PathBuf>,
    /// Print a JSON array.
    #[arg(long)]
    json: bool,
}

pub(crate) async fn run(command: Command) -> Result<(), Failure> {
    match command {
        Command::Reserve(args) => reserve(args).await,
        Command::Join(args) => join(args).await,
        Command::End(args) => end(args).await,
        Command::List(args) => list(args).await,
    }
}

fn load_config(path: Option<&PathBuf>) -> Result<Config, Failure> {
    let default_path = super::default_config_path();
    match path {
        Some(path) => Config::load(path),
        None if default_path.exists() => Config::load(&default_path),
        None => Ok(Config::default()),
    }
    .map_err(|e| Failure::new(EXIT_FAILURE, e))
}

/// Starts this side's short-lived node from the config and flags.
async fn start_node(network: &NetworkArgs) -> Result<(Node, Config), Failure> {
    let config = load_config(network.config.as_ref())?;
    let bootstrap = if network.bootstrap.is_empty() {
        config.network.bootstrap.clone()
    } else {
        network.bootstrap.clone()
    };
    if bootstrap.is_empty() {
        return Err(Failure::new(
            EXIT_UNREACHABLE,
            "no bootstrap peer: pass --bootstrap MULTIADDR (ending in /p2p/PEER_ID) or set network.bootstrap in --config",
        ));
    }
    let keypair =
        identity::load(&config.node.data_dir).map_err(|e| Failure::new(EXIT_FAILURE, e))?;
    let node = Node::start(NodeSpec::client(&config, bootstrap), keypair)
        .await
        .map_err(|e| Failure::new(EXIT_UNREACHABLE, format!("no peer could be reached: {e}")))?;
    Ok((node, config))
}

fn say(started: Instant, line: &str) {
    let _ = writeln!(
        std::io::stderr(),
        "[{:>6} ms] {line}",
        started.elapsed().as_millis()
    );
}

async fn reserve(args: ReserveArgs) -> Result<(), Failure> {
    let started = Instant::now();
    let (node, config) = start_node(&args.network).await?;
    let result = hold_room(&node, &config, &args, started).await;
    let _ = node.shutdown().await;
    result
}

async fn hold_room(
    node: &Node,
    config: &Config,
    args: &ReserveArgs,
    started: Instant,
) -> Result<(), Failure> {
    let mut policy = config
        .caller_policy()
        .map_err(|e| Failure::new(EXIT_FAILURE, e))?;
    if let Some(kind) = args.policy {
        policy.kind = kind;
    }
    if let Some(max) = &args.max_price {
        let limit = Money::parse(max, policy.currency)
            .map_err(|e| Failure::new(EXIT_FAILURE, format!("invalid --max-price {max:?}: {e}")))?;
        policy.max_price_per_minute = Some(limit);
    }
    let (offers, measurements) = discover_bridges(node.client(), args.region, true)
        .await
        .map_err(|e| Failure::new(EXIT_UNREACHABLE, e))?;
    let history = node
        .metrics()
        .store_result_or_default("history", node.store().history().await);
    let ranking = rank_conferences(&offers, args.size, &measurements, &history, &policy);
    for (offer, reason) in &ranking.excluded {
        say(
            started,
            &format!("left out {}: {reason}", offer.offer().display_name),
        );
    }
    let Some(best) = ranking.candidates.first() else {
        return Err(Failure::new(
            EXIT_NOT_COVERED,
            format!(
                "no conference bridge in {} takes a room of {}",
                args.region, args.size
            ),
        ));
    };
    say(
        started,
        &format!(
            "reserving on {} ({})",
            best.offer.offer().display_name,
            best.reasons().join("; ")
        ),
    );
    let mut room = organiser::reserve(
        &node.caller(),
        best.offer,
        RoomRequest {
            max_participants: args.size,
            lifetime: Duration::from_secs(args.duration.saturating_add(60)),
        },
    )
    .await
    .map_err(|e| Failure::new(EXIT_FAILURE, e))?;
    let token = participant::token_text(room.token());
    say(started, &format!("room {} reserved", room.room_id()));
    println!("{token}");
    let _ = std::io::stdout().flush();
    let until = tokio::time::sleep(Duration::from_secs(args.duration));
    tokio::pin!(until);
    loop {
        tokio::select! {
            event = room.next_event() => match event {
                Some(RoomEvent::Joined { participant, present, .. }) => {
                    say(started, &format!("{} joined ({present} in the room)", who(&participant)));
                }
                Some(RoomEvent::Left { participant, present, .. }) => {
                    say(started, &format!("{} left ({present} in the room)", who(&participant)));
                }
                None => break,
            },
            () = &mut until => break,
            _ = tokio::signal::ctrl_c() => break,
        }
    }
    say(started, "ending the room");
    let settled = room
        .end()
        .await
        .map_err(|e| Failure::new(EXIT_FAILURE, e))?;
    let receipt = settled.receipt();
    println!(
        "receipt: {} stay(s), {} participant-seconds, {} (settled)",
        receipt.attendances.len(),
        receipt.participant_seconds,
        receipt.amount
    );
    for stay in &receipt.attendances {
        println!(
            "  {}  {:.1} s  billed {} s",
            who(&stay.participant),
            stay.duration().as_secs_f64(),
            stay.billed_seconds
        );
    }
    Ok(())
}

fn who(participant: &ProviderId) -> String {
    identity::peer_id(participant)
        .map(|p| short_peer_id(&p.to_string()))
        .unwrap_or_else(|| participant.to_string())
}

/// The tones in `samples`: frequencies from 300 to 3400 Hz (10 Hz steps) whose power is a
/// local peak above a tenth of the strongest and above a floor.
pub(crate) fn tones_heard(samples: &[i16]) -> Vec<u32> {
    let powers: Vec<(u32, f64)> = (30..=340)
        .map(|step| {
            let freq = step * 10;
            (freq, goertzel_power(samples, f64::from(freq), SAMPLE_RATE))
        })
        .collect();
    let strongest = powers.iter().map(|&(_, p)| p).fold(0.0, f64::max);
    powers
        .windows(3)
        .filter(|w| w[1].1 > w[0].1 && w[1].1 >= w[2].1)
        .filter(|w| w[1].1 > strongest / 10.0 && w[1].1 > 1.0e5)
        .map(|w| w[1].0)
        .collect()
}

async fn join(args: JoinArgs) -> Result<(), Failure> {
    let started = Instant::now();
    if !(300.0..=3400.0).contains(&args.tone) {
        return Err(Failure::new(
            EXIT_FAILURE,
            "--tone must be between 300 and 3400 Hz",
        ));
    }
    if !(args.duration.is_finite() && args.duration > 0.0) {
        return Err(Failure::new(
            EXIT_FAILURE,
            "--duration must be a positive number of seconds",
        ));
    }
    let token = read_token(&args.token)?;
    let (node, config) = start_node(&args.network).await?;
    let result = take_part(&node, &token, &args, config.media.settings(), started).await;
    let _ = node.shutdown().await;
    result
}

async fn take_part(
    node: &Node,
    token: &SignedJoinToken,
    args: &JoinArgs,
    media: MediaSettings,
    started: Instant,
) -> Result<(), Failure> {
    // The token names its bridge; its offer in the DHT says where to dial it.
    let (peer, addresses) = locate(node, token).await?;
    let (offered, sdp) = OfferedParticipant::offer(&media)
        .await
        .map_err(|e| Failure::new(EXIT_FAILURE, e))?;
    let joined = participant::join(node.client(), peer, addresses, token.as_bytes(), sdp).await;
    let (answer, mut membership) = match joined {
        Ok(joined) => joined,
        Err(e) => {
            offered.close().await;
            return Err(Failure::new(EXIT_FAILURE, e));
        }
    };
    let media = offered
        .accept_answer(&answer, Some(args.tone))
        .await
        .map_err(|e| Failure::new(EXIT_FAILURE, e))?;
    say(started, &format!("joined; sending {} Hz", args.tone));
    let closed = tokio::select! {
        () = tokio::time::sleep(Duration::from_secs_f64(args.duration)) => false,
        _ = membership.closed() => true,
        _ = tokio::signal::ctrl_c() => false,
    };
    let heard = tones_heard(&media.heard_since(Instant::now() - Duration::from_secs(1)));
    let (received, sent) = media.packets();
    media.close().await;
    if closed {
        say(started, "the organiser ended the room");
    } else {
        membership.leave().await;
        say(started, "left");
    }
    let tones: Vec<String> = heard.iter().map(|f| format!("{f} Hz")).collect();
    println!(
        "sent {sent} packets, received {received}; heard in the last second: {}",
        if tones.is_empty() {
            "silence".to_owned()
        } else {
            tones.join(", ")
        }
    );
    Ok(())
}

async fn end(args: EndArgs) -> Result<(), Failure> {
    let started = Instant::now();
    let token = read_token(&args.token)?;
    let room_id = token.token().room_id;
    let (node, _config) = start_node(&args.network).await?;
    let result = async {
        let (peer, addresses) = locate(&node, &token).await?;
        organiser::end_room(&node.caller(), peer, addresses, room_id)
            .await
            .map_err(|e| Failure::new(EXIT_FAILURE, e))?;
        say(
            started,
            &format!("room {room_id} is ending; the `reserve` holding it prints the receipt",),
        );
        Ok(())
    }
    .await;
    let _ = node.shutdown().await;
    result
}

/// The token of `text`, verified.
fn read_token(text: &str) -> Result<SignedJoinToken, Failure> {
    participant::parse_token(text, interlink_node::clock::now())
        .map_err(|e| Failure::new(EXIT_FAILURE, e))
}

/// The token's bridge and its addresses, from its offer in the DHT.
async fn locate(
    node: &Node,
    token: &SignedJoinToken,
) -> Result<(libp2p::PeerId, Vec<Multiaddr>), Failure> {
    let (peer, offer) = participant::locate_bridge(node.client(), token, OFFER_LOOKUP_DEADLINE)
        .await
        .map_err(|e| Failure::new(EXIT_UNREACHABLE, e))?;
    Ok((peer, offer.offer().addresses.clone()))
}

async fn list(args: ListArgs) -> Result<(), Failure> {
    let path = args.config.unwrap_or_else(super::default_config_path);
    let config = Config::load(&path).map_err(|e| Failure::new(EXIT_FAILURE, e))?;
    let store = Store::open(&config.node.data_dir).map_err(|e| Failure::new(EXIT_FAILURE, e))?;
    let rows = store
        .room_receipts()
        .await
        .map_err(|e| Failure::new(EXIT_FAILURE, e))?;
    if args.json {
        let json =
            serde_json::to_string_pretty(&rows).map_err(|e| Failure::new(EXIT_FAILURE, e))?;
        println!("{json}");
        return Ok(());
    }
    if rows.is_empty() {
        println!("No room receipts yet.");
        return Ok(());
    }
    let mut table = Table::new();
    table
        .load_style(UTF8_FULL_CONDENSED)
        .set_content_arrangement(ContentArrangement::Dynamic)
        .set_header([
            "Opened (UTC)",
            "Room",
            "Role",
            "Status",
            "Bridge",
            "Organiser",
            "Stays",
            "Billed",
            "Amount",
        ]);
    for row in &rows {
        let opened = std::time::UNIX_EPOCH + Duration::from_millis(row.opened_at_ms);
        table.add_row(vec![
            Cell::new(humantime::format_rfc3339_seconds(opened)),
            Cell::new(row.room_id.get(..8).unwrap_or(&row.room_id)),
            Cell::new(row.role),
            Cell::new(row.status),
            Cell::new(short_peer_id(&row.bridge)),
            Cell::new(short_peer_id(&row.organiser)),
            Cell::new(row.attendances).set_alignment(CellAlignment::Right),
            Cell::new(format!("{} s", row.participant_seconds)).set_alignment(CellAlignment::Right),
            Cell::new(format!("{} {}", row.amount, row.currency))
                .set_alignment(CellAlignment::Right),
        ]);
    }
    println!("{table}");
    Ok(())
}

/// The demo's conference: a room for three on the bridge of `region`, each participant
/// sending its own tone; each reports the tones it hears, then the organiser ends the room
/// and prints the receipt.
pub(crate) async fn demo_room(
    network: &interlink_node::local_network::LocalNetwork,
    organiser_node: &Node,
    region: Region,
) -> anyhow::Result<()> {
    use anyhow::Context;
    const TONES: [f64; 3] = [440.0, 660.0, 990.0];
    let deadline = Instant::now() + Duration::from_secs(15);
    let (offers, measurements) = loop {
        let found = discover_bridges(organiser_node.client(), region, true).await?;
        if !found.0.is_empty() || Instant::now() >= deadline {
            break found;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let policy = interlink_protocol::ranking::Policy::default();
    let ranking = rank_conferences(
        &offers,
        3,
        &measurements,
        &interlink_protocol::ranking::History::new(),
        &policy,
    );
    let best = ranking
        .candidates
        .first()
        .context("no conference bridge found")?;
    println!(
        "\nA conference: Alice's node finds {} bridge(s) in {region} and reserves a room for three on {} ({}).",
        offers.len(),
        best.offer.offer().display_name,
        best.reasons().join("; ")
    );
    let mut room = organiser::reserve(
        &organiser_node.caller(),
        best.offer,
        RoomRequest {
            max_participants: 3,
            lifetime: Duration::from_secs(120),
        },
    )
    .await?;
    let peer = identity::peer_id(&best.offer.provider()).context("bridge peer id")?;
    let mut members = Vec::new();
    for tone in TONES {
        let node = network.caller().await?;
        let (offered, sdp) = OfferedParticipant::offer(&MediaSettings::loopback()).await?;
        let (answer, membership) = participant::join(
            node.client(),
            peer,
            best.offer.offer().addresses.clone(),
            room.token().as_bytes(),
            sdp,
        )
        .await?;
        let media = offered.accept_answer(&answer, Some(tone)).await?;
        if let Some(RoomEvent::Joined { present, .. }) = room.next_event().await {
            println!(
                "  {} joins with a {tone} Hz tone ({present} in the room)",
                short_peer_id(&node.peer_id().to_string())
            );
        }
        members.push((node, membership, media, tone));
    }
    // Let them talk for two seconds.
    tokio::time::sleep(Duration::from_secs(2)).await;
    for (node, _, media, tone) in &members {
        let heard = tones_heard(&media.heard_since(Instant::now() - Duration::from_secs(1)));
        let heard: Vec<String> = heard.iter().map(|f| format!("{f} Hz")).collect();
        println!(
            "  {} sends {tone} Hz and hears {}",
            short_peer_id(&node.peer_id().to_string()),
            heard.join(" and ")
        );
    }
    let settled = room.end().await?;
    let receipt = settled.receipt();
    println!(
        "Alice ends the room. Receipt signed by the bridge and countersigned by Alice: {} stays, {} participant-seconds, {} ({} per room + {} per participant-minute).",
        receipt.attendances.len(),
        receipt.participant_seconds,
        receipt.amount,
        receipt.tariff.per_room_money(),
        receipt.tariff.per_participant_minute_money()
    );
    for (node, membership, media, _) in members {
        drop(membership);
        media.close().await;
        let _ = node.shutdown().await;
    }
    Ok(())
}
