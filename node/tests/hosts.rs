//! Hosts apart, as on the internet: each node a process of the built binary in its own
//! network namespace, the caller at home behind a router that masquerades, links with
//! ~80 ms round trips and loss (`support/lab.rs`). Where namespaces cannot be made the
//! tests skip with the reason; under `CI=true` they fail instead.
//!
//! Every call here dials +447700900123 through echo gateways, so that media received by
//! the caller is its own, sent to the gateway and back: both directions at once.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::lab::{Firewall, Host, Lab, Link};
use support::node_process::{self, NodeProcess, init_home, receipts_at};

mod support;

const BIN: &str = env!("CARGO_BIN_EXE_interlink");
const NUMBER: &str = "+447700900123";
/// One way between the caller's home and the internet: 80 ms round trips to everyone.
const HOME_LINK: Link = Link {
    delay_ms: 40,
    ..Link::DIRECT
};

/// A config for a node on `host` listening on its address (TCP, and QUIC for gateways),
/// joined through `bootstrap`, with `extra` after it.
fn config(dir: &Path, host: &Host, bootstrap: Option<&str>, extra: &str) -> PathBuf {
    let ip = host.ip;
    // The bootstrap node is on the internet at a known address, as its operator says;
    // the others learn whether they can be reached (AutoNAT).
    let network = match bootstrap {
        Some(b) => format!(
            "listen = [\"/ip4/{ip}/tcp/0\", \"/ip4/{ip}/udp/0/quic-v1\"]\nbootstrap = [\"{b}\"]\n"
        ),
        None => format!(
            "listen = [\"/ip4/{ip}/tcp/4001\"]\nexternal_addresses = [\"/ip4/{ip}/tcp/4001\"]\n"
        ),
    };
    node_process::init_node(
        dir,
        &format!("[network]\n{network}[media]\nip = \"{ip}\"\n{extra}"),
    )
}

/// An echo gateway covering +44 at `per_minute`, ringing for `ring_ms`.
fn echo_gateway(name: &str, per_minute: &str, echo: &str) -> String {
    format!(
        "[gateway]\nname = \"{name}\"\nregion = \"test\"\noffer_ttl_secs = 600\n\
         [gateway.quality]\nanswer_seizure_ratio = 0.5\npost_dial_delay_ms = 2000\nmos = 4.2\n\
         [[gateway.routes]]\nprefix = \"+44\"\ncurrency = \"GBP\"\nper_minute = \"{per_minute}\"\n\
         [gateway.echo]\n{echo}\n"
    )
}

struct Gateway {
    process: NodeProcess,
    home: PathBuf,
    peer_id: String,
}

/// The internet of a test: a bootstrap node, gateways on public hosts, Alice at home.
struct Scene {
    _boot: NodeProcess,
    bootstrap: String,
    alice: Host,
    alice_home: PathBuf,
    // Dropped before the lab, which takes their namespaces away.
    gateways: Vec<Gateway>,
    lab: Lab,
    root: tempfile::TempDir,
}

impl Scene {
    /// `gateways` as (name, price a minute, its `[gateway.echo]` lines), each on a host of its own
    /// with no delay; Alice's home joined by `home` and filtered by `firewall`.
    fn new(gateways: &[(&str, &str, &str)], home: Link, firewall: Firewall) -> Option<Scene> {
        let mut lab = Lab::new()?;
        let root = tempfile::tempdir().unwrap();
        let boot_host = lab.public("boot", 1, Link::DIRECT);
        let (boot, bootstrap) = {
            let config = config(&root.path().join("boot"), &boot_host, None, "");
            let boot = NodeProcess::start_on(&boot_host, "bootstrap", &config);
            let listening = boot.wait_log("listening on");
            let address = format!(
                "{}/p2p/{}",
                listening["address"].as_str().unwrap(),
                listening["peer_id"].as_str().unwrap()
            );
            (boot, address)
        };
        let mut started = Vec::new();
        for (last, &(name, price, echo)) in (11u8..).zip(gateways) {
            let host = lab.public(name, last, Link::DIRECT);
            let dir = root.path().join(name.to_lowercase());
            let config = config(
                &dir,
                &host,
                Some(&bootstrap),
                &echo_gateway(name, price, echo),
            );
            let process = NodeProcess::start_on(&host, name, &config);
            let peer_id = process.wait_log("listening on")["peer_id"]
                .as_str()
                .unwrap()
                .to_owned();
            started.push(Gateway {
                process,
                home: dir,
                peer_id,
            });
        }
        for gateway in &started {
            assert_eq!(
                gateway.process.wait_log("offer published")["replicated"],
                true
            );
        }
        let alice = lab.at_home("alice", 20, home, firewall);
        let alice_home = init_home(&root.path().join("alice"));
        Some(Scene {
            _boot: boot,
            bootstrap,
            alice,
            alice_home,
            gateways: started,
            lab,
            root,
        })
    }

    /// `interlink call` from Alice's host, holding the answered call `seconds`.
    fn call(&self, seconds: &str, extra: &[&str]) -> Command {
        self.call_from(&self.alice_home, seconds, extra)
    }

    /// [`Scene::call`] by another caller on Alice's host, whose home is `home`.
    fn call_from(&self, home: &Path, seconds: &str, extra: &[&str]) -> Command {
        let mut command = self.alice.command(BIN);
        command
            .args(["call", "--bootstrap", &self.bootstrap])
            .args(["--media-ip", &self.alice.ip.to_string()])
            .args(["--duration", seconds, "--json"])
            .args(extra)
            .arg(NUMBER)
            .env("INTERLINK_HOME", home)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        command
    }

    /// The names `interlink gateways` from Alice's home lists for [`NUMBER`], sorted.
    fn gateways_seen(&self) -> Vec<String> {
        let output = self
            .alice
            .command(BIN)
            .args(["gateways", "--bootstrap", &self.bootstrap, "--json", NUMBER])
            .env("INTERLINK_HOME", &self.alice_home)
            .output()
            .unwrap();
        let rows: Vec<Value> = serde_json::from_slice(&output.stdout).unwrap_or_else(|_| {
            panic!("{}", String::from_utf8_lossy(&output.stderr));
        });
        let mut names: Vec<String> = rows
            .iter()
            .filter_map(|r| r["name"].as_str().map(str::to_owned))
            .collect();
        names.sort();
        names
    }

    fn gateway_home(&self, name: &str) -> &Path {
        &self
            .gateways
            .iter()
            .find(|g| g.process.name == name)
            .expect("a gateway of the scene")
            .home
    }
}

/// A running `interlink call`: its progress lines (stderr) as they come, with the time
/// each arrived.
struct Caller {
    child: Child,
    progress: mpsc::Receiver<(Instant, String)>,
    seen: Vec<String>,
}

impl Caller {
    fn spawn(mut command: Command) -> Caller {
        let mut child = command.spawn().expect("run interlink call");
        let stderr = child.stderr.take().unwrap();
        let (tx, progress) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = tx.send((Instant::now(), line));
            }
        });
        Caller {
            child,
            progress,
            seen: Vec::new(),
        }
    }

    /// Waits (30 s at most) for a progress line containing `what`; when it came.
    fn wait(&mut self, what: &str) -> Instant {
        let give_up = Instant::now() + Duration::from_secs(30);
        loop {
            let left = give_up.saturating_duration_since(Instant::now());
            match self.progress.recv_timeout(left) {
                Ok((at, line)) => {
                    let found = line.contains(what);
                    self.seen.push(line);
                    if found {
                        return at;
                    }
                }
                Err(_) => panic!("no progress line with {what:?}; saw {:?}", self.seen),
            }
        }
    }

    fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([&format!("-{name}"), &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// The report on stdout once the command exits with success.
    fn report(self) -> Value {
        let output = self.child.wait_with_output().unwrap();
        let rest: Vec<String> = self.progress.try_iter().map(|(_, l)| l).collect();
        assert!(
            output.status.success(),
            "exit {}: {:?} {rest:?}",
            output.status,
            self.seen
        );
        serde_json::from_slice(&output.stdout).expect("a JSON report")
    }
}

/// Waits until the gateway at `home` holds `call_id`'s receipt as settled, and returns it.
fn settled_at_gateway(home: &Path, call_id: &Value) -> Value {
    support::wait_for_blocking(
        "the gateway's settled receipt",
        Duration::from_secs(30),
        || {
            receipts_at(home)
                .into_iter()
                .find(|r| r["call_id"] == *call_id && r["status"] == "settled")
        },
    )
}

/// The caller's receipt of `call_id` and the gateway's are the same signed bytes.
fn assert_both_sides_agree(scene: &Scene, gateway: &str, report: &Value) {
    let at_gateway = settled_at_gateway(scene.gateway_home(gateway), &report["call_id"]);
    let at_caller = receipts_at(&scene.alice_home)
        .into_iter()
        .find(|r| r["call_id"] == report["call_id"])
        .expect("the caller keeps the receipt");
    assert_eq!(at_caller["status"], "settled", "{at_caller}");
    assert_eq!(
        at_caller["signed_bytes_hex"], at_gateway["signed_bytes_hex"],
        "both sides hold the same countersigned receipt"
    );
}

/// Media both ways: the echo gateway returned what the caller sent.
fn assert_media_both_ways(report: &Value) {
    assert!(
        report["media"]["echo_matches"].as_u64().unwrap_or(0) > 0,
        "no echoed media: {report}"
    );
    assert_eq!(report["receipt"]["status"], "settled", "{report}");
    assert!(
        report["receipt"]["not_charged"].is_null(),
        "a call with media must be charged: {report}"
    );
}

#[test]
fn a_call_from_behind_a_nat_to_a_gateway_80_ms_away_has_media_both_ways_and_one_receipt() {
    // Both ring half a second; Late answers the caller's media only at the answer, as
    // gateways did before the early answer.
    let Some(scene) = Scene::new(
        &[
            ("Far", "0.01", "ring_ms = 500"),
            ("Late", "0.02", "ring_ms = 500\nearly_answer = false"),
        ],
        HOME_LINK,
        Firewall::Open,
    ) else {
        return;
    };
    let far = scene.gateways[0].peer_id.clone();
    let report = Caller::spawn(scene.call("2", &["--via", &far])).report();
    assert_eq!(report["gateway"], "Far", "{report}");
    assert_media_both_ways(&report);
    // The echo crossed the home link twice: the link's delay is really there.
    let echo_rtt = report["media"]["echo_rtt_ms"].as_f64().unwrap();
    assert!(
        echo_rtt >= 75.0,
        "echo round trip {echo_rtt} ms on an 80 ms link"
    );
    assert_both_sides_agree(&scene, "Far", &report);
    let phases = &report["phases"];
    let ms = |key: &str| {
        phases[key]
            .as_f64()
            .unwrap_or_else(|| panic!("no {key}: {phases}"))
    };
    assert!(
        ms("invite_to_early_answer_ms") <= ms("invite_to_ringing_ms"),
        "the media is answered before the callee rings: {phases}"
    );
    // ICE and DTLS ran while the callee rang: the connection was up before the answer.
    assert!(
        ms("invite_to_early_answer_ms") + ms("sdp_answer_to_ice_ms") + ms("ice_to_dtls_ms")
            < ms("invite_to_answer_ms"),
        "the connection is up before the answer: {phases}"
    );

    let late = scene.gateways[1].peer_id.clone();
    let before = Caller::spawn(scene.call("2", &["--via", &late])).report();
    assert_eq!(before["gateway"], "Late", "{before}");
    assert_media_both_ways(&before);
    assert_both_sides_agree(&scene, "Late", &before);
    assert!(before["phases"]["invite_to_early_answer_ms"].is_null());
    assert!(before["phases"]["ice_to_dtls_ms"].is_f64(), "{before}");

    for (design, report) in [
        ("answered at the answer", &before),
        ("early answer", &report),
    ] {
        let phases = &report["phases"];
        let rtt = report["media"]["echo_rtt_ms"].as_f64().unwrap();
        let round_trips = |key: &str| {
            phases[key].as_f64().map_or("-".to_owned(), |ms| {
                format!("{ms:.0} ms = {:.1} RTT", ms / rtt)
            })
        };
        eprintln!(
            "80 ms link, 500 ms ringing, {design}: command → answer {:.0} ms, command → first media {:.0} ms, \
             echo rtt {rtt:.1} ms; lookup {}, stream {}, invite → trying {}, → early answer {}, \
             → ringing {}, → answer {}, answer → first media {}; SDP answer → ICE {}, ICE → DTLS {}",
            report["command_to_answer_ms"].as_f64().unwrap(),
            report["command_to_first_media_ms"].as_f64().unwrap(),
            round_trips("lookup_ms"),
            round_trips("stream_ms"),
            round_trips("invite_to_trying_ms"),
            round_trips("invite_to_early_answer_ms"),
            round_trips("invite_to_ringing_ms"),
            round_trips("invite_to_answer_ms"),
            round_trips("answer_to_first_media_ms"),
            round_trips("sdp_answer_to_ice_ms"),
            round_trips("ice_to_dtls_ms"),
        );
    }
}

#[test]
fn twenty_calls_under_five_percent_loss_each_way_all_get_media() {
    let lossy = Link {
        loss: 0.05,
        ..HOME_LINK
    };
    let Some(scene) = Scene::new(&[("Far", "0.01", "ring_ms = 0")], lossy, Firewall::Open) else {
        return;
    };
    let mut first_media = Vec::new();
    // Four callers on Alice's host, each with its own home and identity.
    let homes: Vec<PathBuf> = (0..4)
        .map(|i| init_home(&scene.alice_home.with_file_name(format!("caller{i}"))))
        .collect();
    // Four at a time, 20 in all: each its own `interlink call` process and WebRTC session.
    for round in 0..5 {
        let callers: Vec<Caller> = homes
            .iter()
            .map(|home| Caller::spawn(scene.call_from(home, "4", &[])))
            .collect();
        for (i, caller) in callers.into_iter().enumerate() {
            let report = caller.report();
            assert!(
                report["media"]["echo_matches"].as_u64().unwrap_or(0) > 0,
                "call {} of 20 got no media: {report}",
                round * 4 + i + 1
            );
            assert_eq!(report["receipt"]["status"], "settled", "{report}");
            first_media.push(report["command_to_first_media_ms"].as_f64().unwrap());
        }
    }
    first_media.sort_by(f64::total_cmp);
    eprintln!(
        "5 % loss each way, 80 ms: 20/20 calls with media; command → first media p50 {} ms, max {} ms",
        first_media[10], first_media[19]
    );
}

#[test]
fn a_dtls_flight_lost_twice_on_the_way_still_connects() {
    // Alice's home link loses the first two copies of her node's DTLS flight 4 (the caller,
    // the offerer, is the DTLS server; its flight opens with the ServerHello). With
    // webrtc-rs 0.21.1 as released this handshake never completes.
    let link = Link {
        drop_server_hellos: 2,
        ..HOME_LINK
    };
    let Some(scene) = Scene::new(&[("Far", "0.01", "ring_ms = 0")], link, Firewall::Open) else {
        return;
    };
    let report = Caller::spawn(scene.call("2", &[])).report();
    assert_media_both_ways(&report);
    assert_both_sides_agree(&scene, "Far", &report);
    // The flight was lost twice: the handshake waited for two retransmissions (the
    // gateway's ClientHello again after 500 ms, then after 1 s more).
    let dtls = report["phases"]["ice_to_dtls_ms"].as_f64().unwrap();
    eprintln!("DTLS flight 4 lost twice on an 80 ms link: ICE → DTLS connected {dtls:.0} ms");
    assert!(
        dtls > 1_000.0,
        "DTLS took {dtls} ms: were the flights lost?"
    );
}

#[test]
fn the_ringing_gateway_killed_the_next_answers_with_media_within_a_second_and_one_setup() {
    // Doomed is cheaper and rings long: the cheapest policy tries it first.
    let Some(mut scene) = Scene::new(
        &[
            ("Doomed", "0.01", "ring_ms = 20_000"),
            ("Steady", "0.02", "ring_ms = 0"),
        ],
        HOME_LINK,
        Firewall::Open,
    ) else {
        return;
    };
    // One setup on this link, measured: a call straight to Steady.
    let steady = scene.gateways[1].peer_id.clone();
    let report = Caller::spawn(scene.call("1", &["--via", &steady])).report();
    let setup =
        Duration::from_secs_f64(report["command_to_first_media_ms"].as_f64().unwrap() / 1000.0);

    let mut caller = Caller::spawn(scene.call("1", &["--policy", "cheapest"]));
    caller.wait("ringing via Doomed");
    let doomed = scene.gateways.remove(0);
    let killed = Instant::now();
    doomed.process.kill();
    let media = caller.wait("first media packet received");
    let failover = media - killed;
    let report = caller.report();
    assert_eq!(report["gateway"], "Steady", "{report}");
    assert_eq!(report["failovers"][0]["gateway"], "Doomed", "{report}");
    assert_media_both_ways(&report);
    eprintln!("failover: kill → media from the next {failover:?}; one setup {setup:?}");
    assert!(
        failover < Duration::from_secs(1) + setup,
        "kill → media from the next took {failover:?}, one setup is {setup:?}"
    );
    assert_both_sides_agree(&scene, "Steady", &report);
}

#[test]
fn a_call_whose_media_cannot_flow_is_settled_at_no_charge_on_both_sides() {
    // Alice's network passes TCP only: signalling reaches the gateway, media never does.
    let Some(scene) = Scene::new(
        &[("Far", "0.01", "ring_ms = 0")],
        HOME_LINK,
        Firewall::TcpOnly,
    ) else {
        return;
    };
    let output = scene.call("2", &[]).output().unwrap();
    let report: Value = serde_json::from_slice(&output.stdout).unwrap_or_else(|_| {
        panic!(
            "exit {}: {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        )
    });
    assert_eq!(report["media"]["packets_received"], 0, "{report}");
    assert_eq!(report["receipt"]["status"], "settled", "{report}");
    assert_eq!(report["receipt"]["amount_minor"], 0, "{report}");
    assert!(
        report["receipt"]["not_charged"].is_string(),
        "the cause is given: {report}"
    );
    let at_gateway = settled_at_gateway(scene.gateway_home("Far"), &report["call_id"]);
    assert_eq!(at_gateway["amount_minor"], 0, "{at_gateway}");
    assert_both_sides_agree(&scene, "Far", &report);
}

#[test]
fn ctrl_c_during_a_call_80_ms_away_leaves_the_same_settled_receipt_on_both_sides() {
    let Some(scene) = Scene::new(&[("Far", "0.01", "ring_ms = 0")], HOME_LINK, Firewall::Open)
    else {
        return;
    };
    let mut caller = Caller::spawn(scene.call("600", &[]));
    caller.wait("first media packet received");
    caller.signal("INT");
    let report = caller.report();
    assert_eq!(report["ended_by"], "caller", "{report}");
    assert_media_both_ways(&report);
    assert_both_sides_agree(&scene, "Far", &report);
}

#[test]
fn a_gateway_behind_a_nat_publishes_nothing_says_so_and_slows_no_lookup() {
    let Some(mut scene) = Scene::new(&[("Far", "0.02", "ring_ms = 0")], HOME_LINK, Firewall::Open)
    else {
        return;
    };
    // Cheaper, but at home behind its router, with nothing forwarded to it.
    let host = scene
        .lab
        .at_home("hidden", 30, Link::DIRECT, Firewall::Open);
    let dir = scene.root.path().join("hidden");
    let config = config(
        &dir,
        &host,
        Some(&scene.bootstrap),
        &(echo_gateway("Hidden", "0.01", "ring_ms = 0")
            + "[metrics]\nenabled = true\nlisten = \"127.0.0.1:9464\"\n"),
    );
    let hidden = NodeProcess::start_on(&host, "Hidden", &config);
    hidden.wait_log("waiting for a peer to confirm");
    for _ in 0..3 {
        let started = Instant::now();
        let names = scene.gateways_seen();
        let took = started.elapsed();
        assert_eq!(
            names,
            ["Far"],
            "only the gateway others can reach is offered"
        );
        // A dial into the hole of a private address would cost 10 s.
        assert!(took < Duration::from_secs(5), "the lookup took {took:?}");
        eprintln!("lookup with a gateway behind NAT in the network: {took:?}");
    }
    let warning = hidden.wait_log("this gateway is not reachable");
    assert_eq!(warning["level"], "WARN", "{warning}");
    // And its metrics say so.
    let scrape = host
        .command("python3")
        .args([
            "-c",
            "import urllib.request; print(urllib.request.urlopen('http://127.0.0.1:9464/metrics').read().decode())",
        ])
        .output()
        .unwrap();
    let metrics = String::from_utf8_lossy(&scrape.stdout);
    assert!(
        metrics.lines().any(|l| l == "interlink_reachable 0"),
        "{metrics}"
    );
}

/// A gateway on the internet whose clock ran three minutes fast publishes, withdraws on a
/// clean stop and starts again with the right time: Alice, 80 ms away behind her NAT, sees
/// it again at once, because its `seq` never goes below one it published.
#[test]
fn a_gateway_restarted_with_its_clock_moved_back_is_visible_again_at_once() {
    let Some(faketime) = node_process::libfaketime() else {
        return;
    };
    let Some(mut scene) = Scene::new(&[("Far", "0.02", "ring_ms = 0")], HOME_LINK, Firewall::Open)
    else {
        return;
    };
    let host = scene.lab.public("fast", 40, Link::DIRECT);
    let config = config(
        &scene.root.path().join("fast"),
        &host,
        Some(&scene.bootstrap),
        &echo_gateway("Fast Clock", "0.01", "ring_ms = 0"),
    );

    let fast = NodeProcess::start_on_with_env(
        &host,
        "fast clock",
        &config,
        &node_process::clock_moved(&faketime, "+180s"),
    );
    let fast_seq = node_process::published_ahead(&fast);
    assert_eq!(scene.gateways_seen(), ["Far", "Fast Clock"]);
    assert!(fast.terminate().success());
    assert_eq!(scene.gateways_seen(), ["Far"], "withdrawn");

    let corrected = NodeProcess::start_on(&host, "corrected clock", &config);
    let published = corrected.wait_log("offer published");
    assert_eq!(published["replicated"], true, "{published}");
    assert!(published["seq"].as_u64().unwrap() > fast_seq, "{published}");
    assert_eq!(scene.gateways_seen(), ["Far", "Fast Clock"]);
}

/// A DHT node dies without a word (its host drops everything, so a dial to it hangs as on
/// the internet) while every routing table still lists it. A gateway that starts then
/// publishes without waiting for it: its Kademlia query gives a silent peer 2 s, not 10.
#[test]
fn a_dead_peer_in_the_routing_tables_does_not_hold_a_publication_up() {
    let Some(mut scene) = Scene::new(&[("Far", "0.02", "ring_ms = 0")], HOME_LINK, Firewall::Open)
    else {
        return;
    };
    let host = scene.lab.public("doomed", 50, Link::DIRECT);
    let doomed_config = config(
        &scene.root.path().join("doomed"),
        &host,
        Some(&scene.bootstrap),
        "",
    );
    let doomed = NodeProcess::start_on(&host, "doomed", &doomed_config);
    // A server others list once a peer dialled it back.
    doomed.wait_log("reachable at");
    scene.lab.pull_plug(&host);

    let late_host = scene.lab.public("late", 41, Link::DIRECT);
    let late_config = config(
        &scene.root.path().join("late"),
        &late_host,
        Some(&scene.bootstrap),
        &echo_gateway("Late", "0.01", "ring_ms = 0"),
    );
    let started = Instant::now();
    let late = NodeProcess::start_on(&late_host, "Late", &late_config);
    let published = late.wait_log("offer published");
    let took = started.elapsed();
    assert_eq!(published["replicated"], true, "{published}");
    eprintln!("a gateway's start → offer published with a dead peer in the tables: {took:?}");
    // libp2p's fixed 10 s per silent peer would hold it past this.
    assert!(
        took < Duration::from_secs(8),
        "publishing took {took:?} with a dead peer in the routing tables"
    );
    assert_eq!(scene.gateways_seen(), ["Far", "Late"]);
    drop(doomed);
}
