//! A participant joins a conference room from a real browser through her node's page:
//! Debian's `chromium`, driven by `playwright-core` from npm
//! (`tests/browser/conference_page.mjs`), with a fake microphone that plays a 1300 Hz tone.
//!
//! Behind it, in-process nodes on 127.0.0.1, each with its own libp2p swarm: a conference
//! bridge, an organiser who reserves a room for three, two node participants with real
//! WebRTC endpoints sending 500 Hz and 900 Hz, and the browser's node serving the page
//! and API. The browser's offer goes to the bridge over libp2p; its media goes to the
//! bridge directly. The test checks that a forged token is refused on the page with the
//! reason; that in the room the browser hears both node participants and not itself
//! (Goertzel over an `AnalyserNode` on the received track) while both node participants
//! hear its tone; that a fourth participant is refused with the bridge's reason (the room
//! is full); that once the browser leaves its tone is no longer heard and the organiser
//! is told; that the page shows the room's end when the organiser ends it; and that the
//! ended room's token is then refused as a room that is not open.
//!
//! Needs `/usr/bin/chromium`, Node.js and `npm ci` in `tests/browser/`; `scripts/test.sh`
//! installs them.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use interlink_gateway_plugin::webrtc_leg::MediaSettings;
use interlink_node::api::ApiServer;
use interlink_node::conference::organiser::{self, OrganisedRoom, RoomRequest};
use interlink_node::conference::participant::{
    self, Membership, MembershipEnd, OfferedParticipant, ToneParticipant,
};
use interlink_node::identity;
use interlink_node::local_network::LocalNetwork;
use interlink_node::node::Node;
use interlink_protocol::conference::RoomEvent;
use interlink_protocol::{ProviderId, SignedOffer};
use serde_json::{Value, json};
use support::browser::{artifacts_dir, browser_dir, check_tools};
use support::conference::{api_settings, bridge_plan, find_bridge, hears, network};
use support::http::Api;
use support::{poll_blocking, wait_for_blocking};
use tokio::runtime::Runtime;

const DEADLINE: Duration = Duration::from_secs(30);
/// The longest the browser script may run.
const SCRIPT_DEADLINE: Duration = Duration::from_secs(180);
/// The node participants' tones.
const OTHERS: [f64; 2] = [500.0, 900.0];
/// The browser's microphone.
const BROWSER_TONE: f64 = 1300.0;

/// A participant from a node of its own, sending a tone.
struct Member {
    node: Node,
    membership: Membership,
    media: ToneParticipant,
    tone: f64,
}

impl Member {
    /// Whether it heard, over the last 400 ms since `since`, every tone of `present` and
    /// none of `absent`.
    fn hears(&self, since: Instant, present: &[f64], absent: &[f64]) -> bool {
        let window = Instant::now() - Duration::from_millis(400);
        let samples = self.media.heard_since(window.max(since));
        samples.len() >= 2400 && hears(&samples, present, absent)
    }
}

/// A WAV file of a second of `freq` (whole Hz) at 48 kHz, 16-bit mono: what the fake
/// microphone plays, looped (whole cycles, so the loop has no click).
#[allow(clippy::cast_possible_truncation)] // peaks at ±8000
fn write_tone(path: &Path, freq: f64) {
    const RATE: u32 = 48_000;
    let samples: Vec<i16> = (0..RATE)
        .map(|n| {
            let t = f64::from(n) / f64::from(RATE);
            (8000.0 * (2.0 * std::f64::consts::PI * freq * t).sin()) as i16
        })
        .collect();
    let data_len = u32::try_from(samples.len() * 2).unwrap();
    let mut wav = Vec::new();
    wav.extend(b"RIFF");
    wav.extend((36 + data_len).to_le_bytes());
    wav.extend(b"WAVEfmt ");
    wav.extend(16u32.to_le_bytes());
    wav.extend(1u16.to_le_bytes()); // PCM
    wav.extend(1u16.to_le_bytes()); // mono
    wav.extend(RATE.to_le_bytes());
    wav.extend((RATE * 2).to_le_bytes());
    wav.extend(2u16.to_le_bytes());
    wav.extend(16u16.to_le_bytes());
    wav.extend(b"data");
    wav.extend(data_len.to_le_bytes());
    for sample in samples {
        wav.extend(sample.to_le_bytes());
    }
    std::fs::write(path, wav).unwrap();
}

/// A node participant sending `tone` into the room of `token`.
async fn member(network: &LocalNetwork, bridge: &SignedOffer, token: &[u8], tone: f64) -> Member {
    let node = network.caller().await.unwrap();
    let (offered, sdp) = OfferedParticipant::offer(&MediaSettings::loopback())
        .await
        .unwrap();
    let peer = identity::peer_id(&bridge.provider()).unwrap();
    let (answer, membership) = participant::join(
        node.client(),
        peer,
        bridge.offer().addresses.clone(),
        token,
        sdp,
    )
    .await
    .unwrap();
    let media = offered.accept_answer(&answer, Some(tone)).await.unwrap();
    Member {
        node,
        membership,
        media,
        tone,
    }
}

/// The next join or leave the organiser is told of.
fn next_event(runtime: &Runtime, room: &mut OrganisedRoom) -> RoomEvent {
    runtime
        .block_on(async { tokio::time::timeout(DEADLINE, room.next_event()).await })
        .expect("a room event in time")
        .expect("the room's stream is open")
}

/// The browser script: its stdin, and its stdout's lines as JSON.
struct Script {
    child: Child,
    stdin: ChildStdin,
    lines: mpsc::Receiver<String>,
    started: Instant,
}

impl Script {
    fn start(url: &str, wav: &Path, expect: &Value) -> Script {
        let mut child = Command::new("node")
            .arg(browser_dir().join("conference_page.mjs"))
            .current_dir(browser_dir())
            .env("INTERLINK_URL", url)
            .env("INTERLINK_ARTIFACTS", artifacts())
            .env("INTERLINK_WAV", wav)
            .env("INTERLINK_EXPECT", expect.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("node (Node.js)");
        let stdin = child.stdin.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        Script {
            child,
            stdin,
            lines,
            started: Instant::now(),
        }
    }

    /// The script's next step, which must be `step`.
    fn step(&mut self, step: &str) -> Value {
        let left = SCRIPT_DEADLINE.saturating_sub(self.started.elapsed());
        match self.lines.recv_timeout(left) {
            Ok(line) => {
                let value: Value = serde_json::from_str(&line)
                    .unwrap_or_else(|e| panic!("{e}: the script printed {line}"));
                assert_eq!(value["step"], step, "{value}");
                value
            }
            Err(e) => self.fail(&format!("no step {step} from the browser script ({e})")),
        }
    }

    fn say(&mut self, command: &str) {
        writeln!(self.stdin, "{command}").unwrap();
        self.stdin.flush().unwrap();
    }

    /// Stops the script and panics with `why` and what it wrote on stderr.
    fn fail(&mut self, why: &str) -> ! {
        let _ = self.child.kill();
        let mut stderr = String::new();
        if let Some(mut pipe) = self.child.stderr.take() {
            let _ = std::io::Read::read_to_string(&mut pipe, &mut stderr);
        }
        panic!(
            "{why}; screenshots in {}; the script's stderr:\n{stderr}",
            artifacts().display()
        );
    }

    /// Waits for the script to exit, successfully.
    fn finish(mut self) {
        let left = SCRIPT_DEADLINE.saturating_sub(self.started.elapsed());
        match poll_blocking(left, || self.child.try_wait().unwrap()) {
            Ok(status) if status.success() => {}
            Ok(status) => self.fail(&format!("the browser script exited with {status}")),
            Err(_) => self.fail(&format!(
                "the browser script ran longer than {SCRIPT_DEADLINE:?}"
            )),
        }
    }
}

#[test]
fn a_browser_joins_a_room_through_its_nodes_page_hears_the_others_and_is_heard() {
    check_tools();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let root = tempfile::tempdir().unwrap();
    let wav = root.path().join("tone.wav");
    write_tone(&wav, BROWSER_TONE);

    // The bridge, the organiser's room for three, two node participants in it, and the
    // browser's node with its page; a fourth node with its API to be refused.
    let (network, organiser_node, mut room, members, browser_node, page, fourth) = runtime
        .block_on(async {
            let network = network(vec![bridge_plan("Mixer", "eu-west")]).await;
            let organiser_node = network.caller().await.unwrap();
            let bridge = find_bridge(&organiser_node, "eu-west").await;
            let room = organiser::reserve(
                &organiser_node.caller(),
                &bridge,
                RoomRequest {
                    max_participants: 3,
                    lifetime: Duration::from_secs(600),
                },
            )
            .await
            .unwrap();
            let token = room.token().as_bytes().to_vec();
            let mut members = Vec::new();
            for tone in OTHERS {
                members.push(member(&network, &bridge, &token, tone).await);
            }
            let browser_node = network.caller().await.unwrap();
            let page = ApiServer::start(
                api_settings(&network, 2, Some(Duration::from_secs(30))),
                browser_node.caller(),
            )
            .await
            .unwrap();
            let fourth_node = network.caller().await.unwrap();
            let fourth_api = ApiServer::start(
                api_settings(&network, 2, Some(Duration::from_secs(30))),
                fourth_node.caller(),
            )
            .await
            .unwrap();
            (
                network,
                organiser_node,
                room,
                members,
                browser_node,
                page,
                (fourth_node, fourth_api),
            )
        });
    for _ in &members {
        assert!(matches!(
            next_event(&runtime, &mut room),
            RoomEvent::Joined { .. }
        ));
    }
    let browser_id: ProviderId = identity::provider_id(&browser_node.peer_id()).unwrap();
    let token = participant::token_text(room.token());
    let mut forged = room.token().as_bytes().to_vec();
    let last = forged.len() - 1;
    forged[last] ^= 1;
    let forged: String = forged.iter().map(|b| format!("{b:02x}")).collect();
    let api = Api::new(&page.url());

    let _ = std::fs::remove_dir_all(artifacts());
    let expect = json!({
        "token": token,
        "bad_token": forged,
        "others": OTHERS,
        "own": BROWSER_TONE,
    });
    let mut script = Script::start(&page.url(), &wav, &expect);

    // In the room: the organiser is told, and both node participants hear the browser's
    // tone besides each other's, and not their own.
    let joined = script.step("joined");
    let membership_id = joined["membership_id"].as_str().unwrap().to_owned();
    match next_event(&runtime, &mut room) {
        RoomEvent::Joined {
            participant,
            present,
            ..
        } => assert_eq!((participant, present), (browser_id, 3)),
        other => panic!("{other:?}"),
    }
    let in_room = Instant::now();
    for (i, member) in members.iter().enumerate() {
        let other = OTHERS[1 - i];
        wait_for_blocking("a node participant to hear the browser", DEADLINE, || {
            member.hears(in_room, &[BROWSER_TONE, other], &[member.tone])
        });
    }
    let listed = api.get("/api/conferences/memberships").json();
    assert_eq!(
        listed["memberships"][0]["membership_id"],
        membership_id.as_str()
    );
    assert_eq!(listed["memberships"][0]["state"], "joined");
    assert_eq!(listed["memberships"][0]["bridge"]["name"], "Mixer");

    // A fourth is refused, with the bridge's reason: the room was reserved for three.
    let (offered, sdp) = runtime
        .block_on(OfferedParticipant::offer(&MediaSettings::loopback()))
        .unwrap();
    let refused = Api::new(&fourth.1.url()).post(
        "/api/conferences/join",
        &json!({"token": token, "sdp_offer": sdp}),
    );
    runtime.block_on(offered.close());
    assert_eq!(refused.status, 409, "{}", refused.json());
    assert_eq!(refused.json()["code"], "room_full");
    assert_eq!(
        refused.json()["message"],
        "Mixer refused to let you in: the room is full (3 participants reserved)"
    );

    // The browser leaves: the organiser is told, and its tone is heard no more.
    script.say("leave");
    script.step("left");
    match next_event(&runtime, &mut room) {
        RoomEvent::Left {
            participant,
            present,
            ..
        } => assert_eq!((participant, present), (browser_id, 2)),
        other => panic!("{other:?}"),
    }
    let gone = Instant::now();
    for (i, member) in members.iter().enumerate() {
        let other = OTHERS[1 - i];
        wait_for_blocking("the browser's tone to fall silent", DEADLINE, || {
            member.hears(gone, &[other], &[member.tone, BROWSER_TONE])
        });
    }

    // In again; the organiser ends the room, and the page shows it.
    script.say("rejoin");
    script.step("rejoined");
    assert!(matches!(
        next_event(&runtime, &mut room),
        RoomEvent::Joined { present: 3, .. }
    ));
    let settled = runtime.block_on(room.end()).unwrap();
    let done = script.step("done");
    script.finish();
    eprintln!(
        "conference browser test: click to in the room {} ms, leave to left {} ms",
        done["joined"]["click_to_in_room_ms"], done["left"]["click_to_left_ms"]
    );

    // The page: nothing from elsewhere, no error but the forged token's refusal.
    assert_eq!(done["outside_requests"], json!([]), "{done}");
    assert_eq!(done["console_errors"], json!([]), "{done}");
    assert_eq!(
        done["failed_responses"],
        json!(["400 POST /api/conferences/join"]),
        "{done}"
    );
    let refused = &done["refused"];
    assert_eq!(
        refused["message"],
        "You could not join: the join token is not valid: the signature does not verify",
        "{refused}"
    );
    assert_eq!(refused["room_hidden"], true);
    assert_eq!(refused["memberships"], 0);
    assert_eq!(done["message_cleared"], true);

    // In the room: the others heard, not itself; media both ways.
    let joined = &done["joined"];
    assert_eq!(joined["bridge"], "Mixer");
    assert_eq!(
        joined["room_id"],
        room_id_prefix(&listed["memberships"][0]["room_id"])
    );
    assert!(
        joined["people"]
            .as_str()
            .unwrap()
            .starts_with("Up to 3 participants"),
        "{joined}"
    );
    assert_eq!(
        joined["node_memberships"],
        json!([{"state": "joined", "bridge": "Mixer", "room_id": listed["memberships"][0]["room_id"]}])
    );
    let powers = &joined["heard"]["powers"];
    eprintln!("the browser heard (Goertzel power): {powers}");
    let power = |f: f64| powers[format!("{f}")].as_f64().unwrap();
    let weakest = power(OTHERS[0]).min(power(OTHERS[1]));
    assert!(weakest > 1e-6, "{powers}");
    assert!(power(BROWSER_TONE) < weakest / 100.0, "{powers}");
    assert!(joined["media"]["packetsReceived"].as_u64().unwrap() > 25);
    assert!(joined["media"]["packetsSent"].as_u64().unwrap() > 25);

    // Left: the page's connection closed, the node holds no membership, and it says why.
    let left = &done["left"];
    assert_eq!(left["conference"]["connectionState"], "closed", "{left}");
    assert_eq!(left["conference"]["ended"], true);
    assert_eq!(left["join_visible"], true);
    assert_eq!(left["node_memberships"], json!([]));
    assert_eq!(left["after"]["state"], "ended");
    assert_eq!(left["after"]["ended"]["outcome"], "left");

    // Ended by the organiser: the page says so.
    let ended = &done["ended"];
    assert_eq!(ended["state"], "Ended: the room has ended.", "{ended}");
    assert_eq!(ended["conference"]["connectionState"], "closed");
    assert_eq!(ended["join_visible"], true);

    // The receipt counts the browser's two stays besides the node participants'.
    let receipt = settled.receipt();
    assert_eq!(receipt.attendances.len(), 4, "{receipt:?}");
    assert_eq!(
        receipt
            .attendances
            .iter()
            .filter(|a| a.participant == browser_id)
            .count(),
        2
    );

    // The ended room's token: refused with the bridge's reason.
    let (offered, sdp) = runtime
        .block_on(OfferedParticipant::offer(&MediaSettings::loopback()))
        .unwrap();
    let closed = api.post(
        "/api/conferences/join",
        &json!({"token": token, "sdp_offer": sdp}),
    );
    runtime.block_on(offered.close());
    assert_eq!(closed.status, 404, "{}", closed.json());
    assert_eq!(closed.json()["code"], "room_closed");
    assert_eq!(
        closed.json()["message"],
        "Mixer refused to let you in: the room is not open"
    );
    assert_eq!(
        api.get("/api/conferences/memberships").json(),
        json!({"memberships": []})
    );

    runtime.block_on(async {
        for mut member in members {
            let end = tokio::time::timeout(DEADLINE, member.membership.closed())
                .await
                .unwrap();
            assert_eq!(end, MembershipEnd::RoomEnded);
            member.media.close().await;
            member.node.shutdown().await.unwrap();
        }
        page.shutdown().await;
        fourth.1.shutdown().await;
        browser_node.shutdown().await.unwrap();
        fourth.0.shutdown().await.unwrap();
        organiser_node.shutdown().await.unwrap();
        network.shutdown().await.unwrap();
    });
    for name in [
        "conference-refused",
        "conference-joined",
        "conference-ended",
    ] {
        assert!(artifacts().join(format!("{name}.png")).exists(), "{name}");
    }
}

/// Where this test's screenshots go.
fn artifacts() -> std::path::PathBuf {
    artifacts_dir().join("conference")
}

/// The first 8 characters of a room id, as the page shows it.
fn room_id_prefix(room_id: &Value) -> String {
    room_id.as_str().unwrap().chars().take(8).collect()
}
