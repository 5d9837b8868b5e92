//! Alice's button, end to end in a real browser: Debian's `chromium`, driven by
//! `playwright-core` from npm (`tests/browser/caller_page.mjs`), at the page Alice's
//! `interlink node` process serves on a free loopback port.
//!
//! Behind it, real processes on 127.0.0.1: a bootstrap node, two gateways with the echo
//! back-end and one with the SIP back-end bridged to `sipp -sn uas -rtp_echo`. The script
//! asks for a number no service covers (a clear message, no call), lists the services for
//! a UK mobile ranked cheapest first, calls through the recommended echo gateway from the
//! keyboard and then through the SIP gateway picked by hand; both calls must bring audio
//! back (`getStats()`: inbound packets and `totalAudioEnergy` above 0, the remote track
//! playing in an `<audio>` element), show the timer and the running cost, and end on
//! every leg at the hang-up button: the page's connection closes, the node's call list
//! empties, the gateway settles a receipt, and sipp sees the BYE.
//!
//! Screenshots of the recommendations and of the calls in progress are kept in
//! `$CARGO_TARGET_TMPDIR/browser-artifacts/` (`target/tmp/browser-artifacts/` by default).
//!
//! Needs `/usr/bin/chromium`, `sipp`, Node.js and `npm ci` in `tests/browser/`;
//! `scripts/test.sh` installs them.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::browser::{artifacts_dir, browser_dir, check_tools};
use support::http::Api;
use support::node_process::{
    NodeProcess, init_node, network_section, receipts_at, start_bootstrap,
};
use support::sipp::Sipp;
use support::{poll_blocking, wait_for_blocking};

const DEADLINE: Duration = Duration::from_secs(30);
/// The longest the browser script may run.
const SCRIPT_DEADLINE: Duration = Duration::from_secs(150);
const BOB: &str = "+44 7700 900123";
const NOBODY: &str = "+1 202 555 0100";

/// A gateway covering `prefix` at `price` (GBP a minute, with `setup` and `increment`),
/// claiming `mos`, with `backend`.
fn gateway_section(
    name: &str,
    prefix: &str,
    (price, setup, increment): (&str, &str, u32),
    mos: f64,
    backend: &str,
) -> String {
    format!(
        "[gateway]\nname = \"{name}\"\nregion = \"test\"\nbackend = \"{backend}\"\noffer_ttl_secs = 600\n\
         [gateway.quality]\nanswer_seizure_ratio = 0.6\npost_dial_delay_ms = 1500\nmos = {mos}\n\
         [[gateway.routes]]\nprefix = \"{prefix}\"\ncurrency = \"GBP\"\nper_minute = \"{price}\"\n\
         setup_fee = \"{setup}\"\nbilling_increment_secs = {increment}\n"
    )
}

fn start_gateway(root: &Path, name: &str, config: String) -> (NodeProcess, String) {
    let dir = root.join(name.replace(' ', "-"));
    let gateway = NodeProcess::start(name, &init_node(&dir, &config));
    let listening = gateway.wait_log("listening on");
    let peer_id = listening["peer_id"].as_str().unwrap().to_owned();
    assert_eq!(gateway.wait_log("offer published")["replicated"], true);
    (gateway, peer_id)
}

#[test]
fn alice_calls_bob_from_the_page_through_echo_and_sip_gateways() {
    check_tools();
    let started = Instant::now();
    let root = tempfile::tempdir().unwrap();
    let sipp = Sipp::start(
        &root.path().join("sipp"),
        "uas",
        &["-rtp_echo", "-timeout", "180s"],
    );

    let (_boot, bootstrap) = start_bootstrap(&init_node(
        &root.path().join("boot"),
        &network_section(None),
    ));
    let network = network_section(Some(&bootstrap));
    let (_budget, budget_id) = start_gateway(
        root.path(),
        "Budget Echo",
        network.clone()
            + &gateway_section("Budget Echo", "+447", ("0.01", "0", 60), 3.4, "echo")
            + "[gateway.echo]\nring_ms = 200\n",
    );
    let (_thames, _) = start_gateway(
        root.path(),
        "Thames Echo",
        network.clone()
            + &gateway_section("Thames Echo", "+44", ("0.02", "0", 60), 4.4, "echo")
            + "[gateway.echo]\nring_ms = 200\n",
    );
    let (_trunk, trunk_id) = start_gateway(
        root.path(),
        "Trunk SIP",
        network.clone()
            + &gateway_section("Trunk SIP", "+447", ("0.60", "0.05", 1), 4.2, "sip")
            + &format!(
                "[gateway.sip]\nhost = \"127.0.0.1\"\nport = {}\nlocal_address = \"127.0.0.1:0\"\n\
                 from_domain = \"gateway.test\"\n",
                sipp.port
            ),
    );
    let alice = NodeProcess::start(
        "alice",
        &init_node(
            &root.path().join("alice"),
            &(network + "[caller]\npolicy = \"balanced\"\n"),
        ),
    );
    let url = alice.api_url();
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");
    let api = Api::new(&url);

    // Alice's node sees all three before Alice looks.
    wait_for_blocking("Alice's node to find the gateways", DEADLINE, || {
        let listed = api.get("/api/gateways?destination=%2B447700900123&policy=cheapest");
        if listed.json()["gateways"]
            .as_array()
            .is_some_and(|g| g.len() == 3)
        {
            Ok(())
        } else {
            Err(listed.json())
        }
    });
    let setup = started.elapsed();

    let artifacts = artifacts_dir();
    let _ = std::fs::remove_dir_all(&artifacts);
    let expect = json!({
        "destination": BOB,
        "uncovered": NOBODY,
        "echo": {"name": "Budget Echo", "peer_id": budget_id},
        "sip": {"name": "Trunk SIP", "peer_id": trunk_id},
    });
    let script_started = Instant::now();
    let mut child = Command::new("node")
        .arg(browser_dir().join("caller_page.mjs"))
        .current_dir(browser_dir())
        .env("INTERLINK_URL", &url)
        .env("INTERLINK_ARTIFACTS", &artifacts)
        .env("INTERLINK_EXPECT", expect.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("node (Node.js)");
    let left = SCRIPT_DEADLINE.saturating_sub(script_started.elapsed());
    let status = poll_blocking(left, || child.try_wait().unwrap()).unwrap_or_else(|_| {
        let _ = child.kill();
        panic!("the browser script ran longer than {SCRIPT_DEADLINE:?}");
    });
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        status.success(),
        "the browser script failed (screenshots in {}):\n{stderr}",
        artifacts.display()
    );
    let seen: Value = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&output.stdout)));
    eprintln!(
        "browser test: network up in {:.1} s, browser script {:.1} s; screenshots in {}",
        setup.as_secs_f64(),
        script_started.elapsed().as_secs_f64(),
        artifacts.display()
    );

    // Nothing came from anywhere but the node, the page logged no error, and the only
    // request refused is the lookup of the number nobody covers.
    assert_eq!(seen["outside_requests"], json!([]), "{seen}");
    assert_eq!(seen["console_errors"], json!([]), "{seen}");
    assert_eq!(
        seen["failed_responses"],
        // (Asked with the node's own policy, which the page starts from.)
        json!(["404 GET /api/gateways?destination=%2B1+202+555+0100&policy=balanced"]),
        "{seen}"
    );

    // A number nobody covers: a clear message, no list, no call.
    let uncovered = &seen["not_covered"];
    let message = uncovered["message"].as_str().unwrap();
    assert!(
        message.starts_with("No service can reach +12025550100"),
        "{message}"
    );
    assert_eq!(uncovered["choice_hidden"], true);
    assert_eq!(uncovered["call_hidden"], true);
    assert_eq!(uncovered["calls"], 0);
    assert_eq!(seen["message_cleared"], true);

    // The list: every service, cheapest first as the policy says, the first recommended.
    let listed = &seen["listed"];
    let expected_order = json!(["Budget Echo", "Thames Echo", "Trunk SIP"]);
    assert_eq!(listed["names"], expected_order, "{listed}");
    assert_eq!(listed["api_order"], expected_order, "{listed}");
    assert_eq!(
        listed["prices"],
        json!(["0.01 GBP", "0.02 GBP", "0.60 GBP"]),
        "{listed}"
    );
    assert_eq!(listed["badge_row"], json!(["Budget Echo"]));
    let recommendation = listed["recommendation"].as_str().unwrap();
    assert!(
        recommendation.starts_with("Recommended: Budget Echo (ranked by lowest price)"),
        "{recommendation}"
    );
    assert!(
        recommendation.contains("cheapest 3-minute call"),
        "{recommendation}"
    );
    assert_eq!(listed["accept"], "Call via Budget Echo");
    assert_eq!(listed["accept_focused"], true, "keyboard: Enter calls");
    let trunk_row = listed["row_texts"][2].as_str().unwrap();
    for shown in ["0.05 GBP", "1 s", "MOS 4.2", "60 %", "ms"] {
        assert!(trunk_row.contains(shown), "{shown:?} not in {trunk_row:?}");
    }

    // Through the echo gateway.
    let echo = &seen["echo"];
    let during = &echo["during"];
    assert!(during["media"]["packetsReceived"].as_u64().unwrap() > 0);
    assert!(during["media"]["totalAudioEnergy"].as_f64().unwrap() > 0.0);
    assert_eq!(during["gateway"], "Budget Echo");
    assert_eq!(
        during["price"],
        "0.01 GBP/min, setup 0.00 GBP, billed per 60 s"
    );
    assert_eq!(during["cost"], "0.01 GBP");
    assert_eq!(
        during["node_calls"],
        json!([{"state": "active", "gateway": "Budget Echo"}])
    );
    assert_ended(&echo["end"], "0.01 GBP");
    assert_eq!(echo["after"]["calls"], json!([]));

    // Through the SIP gateway to sipp, which echoes the RTP.
    let sip = &seen["sip"];
    let during = &sip["during"];
    assert!(during["media"]["packetsReceived"].as_u64().unwrap() > 0);
    assert!(during["media"]["totalAudioEnergy"].as_f64().unwrap() > 0.0);
    assert_eq!(during["gateway"], "Trunk SIP");
    assert_eq!(
        during["node_calls"],
        json!([{"state": "active", "gateway": "Trunk SIP"}])
    );
    let (first, later) = (
        pence(during["first_cost"].as_str().unwrap()),
        pence(during["later_cost"].as_str().unwrap()),
    );
    assert!(first >= 6 && later > first, "{during}");
    let end = &sip["end"];
    let log = end["log"].as_str().unwrap();
    let billed = log
        .split("Cost ")
        .nth(1)
        .and_then(|rest| rest.split(',').next())
        .unwrap_or_else(|| panic!("no cost in {log}"));
    assert_ended(end, billed);
    // The cost the page counted is what the receipt bills.
    assert_eq!(sip["displayed_cost"], billed);
    assert!(pence(billed) >= later, "{billed} after {later}p");
    assert_eq!(sip["after"]["calls"], json!([]));

    // sipp answered one call and got the BYE.
    let sipp = sipp.finish();
    assert!(sipp.status.success(), "sipp: {:?}", sipp.status);
    assert_eq!((sipp.successful_calls, sipp.failed_calls), (1, 0));
    assert!(sipp.messages.contains("BYE sip:"), "{}", sipp.messages);

    // The tab closed mid-call: the call ended as Alice's hang-up, and every call she made
    // (this one too) left the same settled receipt at her node and at the gateway.
    let closed = &seen["closed"];
    assert_eq!(closed["after"]["calls"], json!([]), "{closed}");
    assert_eq!(closed["call"]["ended"]["ended_by"], "caller", "{closed}");
    let at_alice = receipts_at(&root.path().join("alice"));
    assert_eq!(at_alice.len(), 3, "{at_alice:?}");
    for receipt in &at_alice {
        let gateway = if receipt["gateway"] == budget_id.as_str() {
            "Budget-Echo"
        } else {
            "Trunk-SIP"
        };
        let at_gateway = support::wait_for_blocking("the gateway's receipt", DEADLINE, || {
            receipts_at(&root.path().join(gateway))
                .into_iter()
                .find(|r| r["call_id"] == receipt["call_id"] && r["status"] == "settled")
        });
        assert_eq!(receipt["status"], "settled", "{receipt}");
        assert_eq!(
            receipt["signed_bytes_hex"], at_gateway["signed_bytes_hex"],
            "both sides hold the same countersigned receipt"
        );
    }

    // And the node lists no call.
    assert_eq!(api.get("/api/calls").json(), json!({"calls": []}));
    for name in ["recommendations", "call-echo", "call-sip"] {
        assert!(
            artifacts.join(format!("{name}.png")).exists(),
            "screenshot {name}"
        );
    }
    for call in ["echo", "sip"] {
        eprintln!(
            "{call} call: click → 'Connected' {} ms; ms from the click to each step: {}",
            seen[call]["during"]["click_to_connected_ms"], seen[call]["during"]["media"]["marks"]
        );
    }
}

/// The page after a hang-up: the call ended by the caller, the receipt settled for
/// `cost`, the browser's connection closed.
fn assert_ended(end: &Value, cost: &str) {
    let state = end["state"].as_str().unwrap();
    assert!(state.starts_with("Ended: the caller hung up."), "{state}");
    assert!(
        state.contains(&format!("Cost {cost}, receipt settled.")),
        "{state}"
    );
    assert_eq!(end["call"]["connectionState"], "closed", "{end}");
    assert_eq!(end["call"]["ended"], true);
}

/// "0.07 GBP" in pence.
fn pence(money: &str) -> u64 {
    let number = money.split(' ').next().unwrap();
    let (pounds, pence) = number.split_once('.').unwrap();
    pounds.parse::<u64>().unwrap() * 100 + pence.parse::<u64>().unwrap()
}
