//! The SIP trunk bridge against real sipp processes on 127.0.0.1: `interlink node`
//! processes with the `sip` back-end, sipp playing the callee's network, and
//! `interlink call --json` as the caller.
//!
//! - sipp's built-in `uas` with `-rtp_echo`: the call is answered, the caller's audio comes
//!   back byte for byte through both legs, the caller hangs up and sipp sees the BYE.
//! - `sipp/callee_hangs_up.xml`: the INVITE carries the caller's identity, the 200 the
//!   callee's; the callee hangs up first and the caller is told so.
//! - `sipp/busy.xml` (486): the caller fails over to a second gateway.
//! - `sipp/no_route.xml` (404): "no route", and no gateway that does not cover the number
//!   is tried.
//! - `sipp/ring_until_cancel.xml`: the caller gives up while it rings; sipp gets CANCEL.
//!
//! Needs `sipp` (Debian's `sip-tester`; `scripts/test.sh` installs it).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::node_process::{self, NodeProcess, init_node, network_section};
use support::sipp::{Sipp, SippRun};

mod support;

const BIN: &str = env!("CARGO_BIN_EXE_interlink");
const UK_MOBILE: &str = "+447700900123";

fn interlink(args: &[&str], home: Option<&Path>) -> Output {
    let mut command = Command::new(BIN);
    command.args(args);
    if let Some(home) = home {
        command.env("INTERLINK_HOME", home);
    }
    command.output().expect("run interlink")
}

/// A bootstrap node process and its dialable address.
fn start_bootstrap(root: &Path) -> (NodeProcess, String) {
    node_process::start_bootstrap(&init_node(&root.join("boot"), &network_section(None)))
}

fn gateway_section(name: &str, backend: &str, prefix: &str, per_minute: &str) -> String {
    format!(
        "[gateway]\nname = \"{name}\"\nbackend = \"{backend}\"\noffer_ttl_secs = 600\n\
         [[gateway.routes]]\nprefix = \"{prefix}\"\ncurrency = \"GBP\"\nper_minute = \"{per_minute}\"\n"
    )
}

/// A gateway whose back-end bridges to the SIP trunk `sipp` plays, covering +44;
/// `trunk` is more of its `[gateway.sip]` section.
fn start_sip_gateway(
    root: &Path,
    bootstrap: &str,
    name: &str,
    sipp: &Sipp,
    trunk: &str,
) -> NodeProcess {
    let config = network_section(Some(bootstrap))
        + &gateway_section(name, "sip", "+44", "0.01")
        + &format!(
            "[gateway.sip]\nhost = \"127.0.0.1\"\nport = {}\nlocal_address = \"127.0.0.1:0\"\n\
             from_domain = \"gateway.test\"\n{trunk}\n",
            sipp.port
        );
    let gateway = NodeProcess::start(name, &init_node(&root.join(name), &config));
    assert_eq!(gateway.wait_log("offer published")["replicated"], true);
    gateway
}

/// A gateway whose back-end is the echo test callee, covering `prefix`.
fn start_echo_gateway(root: &Path, bootstrap: &str, name: &str, prefix: &str) -> NodeProcess {
    let config = network_section(Some(bootstrap))
        + &gateway_section(name, "echo", prefix, "0.02")
        + "[gateway.echo]\nring_ms = 100\n";
    let gateway = NodeProcess::start(name, &init_node(&root.join(name), &config));
    assert_eq!(gateway.wait_log("offer published")["replicated"], true);
    gateway
}

/// A caller's data directory with its identity.
fn caller_home(root: &Path) -> PathBuf {
    let home = root.join("alice");
    let output = interlink(&["init", "--dir", home.to_str().unwrap()], None);
    assert!(output.status.success());
    home
}

/// `interlink call --json` to the UK mobile with `args`; the output and the report.
fn call(home: &Path, bootstrap: &str, args: &[&str]) -> (Output, Value) {
    let mut all = vec![
        "call",
        "--bootstrap",
        bootstrap,
        "--media-ip",
        "127.0.0.1",
        "--policy",
        "cheapest",
        "--json",
    ];
    all.extend_from_slice(args);
    all.push(UK_MOBILE);
    let output = interlink(&all, Some(home));
    let report = serde_json::from_slice(&output.stdout).unwrap_or(Value::Null);
    (output, report)
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// The caller's provider key in hex, as the gateway puts it in `P-Asserted-Identity`.
fn provider_key(home: &Path) -> String {
    let keypair = interlink_node::identity::load(home).unwrap();
    interlink_node::identity::secret_key(&keypair)
        .unwrap()
        .provider_id()
        .to_string()
}

/// A call through the sip gateway to sipp's built-in `uas` with `-rtp_echo`, the trunk
/// reached over `transport`: the echo must come back byte for byte and sipp must see the
/// caller's BYE. Returns the caller's identity and what sipp saw.
fn call_sipps_echo(transport: &str) -> (String, SippRun) {
    let root = tempfile::tempdir().unwrap();
    let sipp_transport = if transport == "tcp" { "t1" } else { "u1" };
    let sipp = Sipp::start(
        &root.path().join("sipp"),
        "uas",
        &["-rtp_echo", "-t", sipp_transport],
    );
    let (_boot, bootstrap) = start_bootstrap(root.path());
    let trunk = format!("transport = \"{transport}\"");
    let _gateway = start_sip_gateway(root.path(), &bootstrap, "Trunk", &sipp, &trunk);
    let alice = caller_home(root.path());

    let (output, report) = call(&alice, &bootstrap, &["--duration", "2"]);
    assert!(output.status.success(), "call failed: {}", stderr(&output));
    assert_eq!(report["gateway"], "Trunk");
    assert_eq!(report["ended_by"], "caller");
    assert_eq!(report["receipt"]["status"], "settled");
    // The To of sipp's 200: the number as the trunk was asked for it.
    let answered_by = report["answered_by"].as_str().unwrap_or_default();
    assert!(
        answered_by.starts_with(&format!("sip:{UK_MOBILE}@127.0.0.1:{}", sipp.port)),
        "{answered_by}"
    );
    let media = &report["media"];
    let sent = media["packets_sent"].as_u64().unwrap();
    let matched = media["echo_matches"].as_u64().unwrap();
    // 2 s of 20 ms frames; only the last few can still be on their way at the hang-up.
    assert!(sent >= 80, "{media}");
    assert!(matched * 100 >= sent * 95, "{media}");
    assert!(media["packets_received"].as_u64().unwrap() >= matched);
    assert_eq!(media["echo_mismatches"], 0, "{media}");

    let sipp = sipp.finish();
    assert!(sipp.status.success(), "sipp: {:?}", sipp.status);
    assert_eq!((sipp.successful_calls, sipp.failed_calls), (1, 0));
    assert!(sipp.messages.contains("BYE sip:"), "sipp saw no BYE");
    (provider_key(&alice), sipp)
}

#[test]
fn a_call_through_the_sip_gateway_to_sipps_echo_comes_back_byte_for_byte() {
    let (key, sipp) = call_sipps_echo("udp");
    // The caller's identity went to the SIP side.
    assert!(
        sipp.messages
            .contains(&format!("P-Asserted-Identity: <sip:{key}@gateway.test>")),
        "{}",
        sipp.messages
    );
    assert!(
        sipp.messages
            .contains(&format!("From: \"{key}\" <sip:interlink@gateway.test>"))
    );
    // Call-IDs are the gateway's own.
    assert!(sipp.messages.lines().any(|line| {
        line.starts_with("Call-ID: ") && line.trim_end().ends_with("@gateway.test")
    }));
}

#[test]
fn a_trunk_reached_over_tcp_carries_the_call_too() {
    let (_, sipp) = call_sipps_echo("tcp");
    assert!(sipp.messages.contains("INVITE sip:+447700900123@127.0.0.1"));
    assert!(sipp.messages.contains("SIP/2.0/TCP"));
}

#[test]
fn a_trunk_that_challenges_gets_the_digest_credentials() {
    let root = tempfile::tempdir().unwrap();
    let sipp = Sipp::start(&root.path().join("sipp"), "digest_challenge.xml", &[]);
    let (_boot, bootstrap) = start_bootstrap(root.path());
    let credentials = "[gateway.sip.credentials]\nusername = \"gateway\"\npassword = \"s3cret\"";
    let _trunk = start_sip_gateway(root.path(), &bootstrap, "Trunk", &sipp, credentials);
    let alice = caller_home(root.path());

    // The scenario answers only an INVITE with the right digest (403 otherwise).
    let (output, report) = call(&alice, &bootstrap, &["--duration", "1"]);
    assert!(output.status.success(), "call failed: {}", stderr(&output));
    assert_eq!(report["gateway"], "Trunk");
    let sipp = sipp.finish();
    assert!(sipp.status.success(), "sipp: {:?}", sipp.status);
    assert!(
        sipp.messages
            .contains("Authorization: Digest username=\"gateway\"")
    );
    assert!(sipp.messages.contains("BYE sip:"));
}

#[test]
fn the_callee_hanging_up_first_reaches_the_caller_with_the_cause() {
    let root = tempfile::tempdir().unwrap();
    let sipp = Sipp::start(&root.path().join("sipp"), "callee_hangs_up.xml", &[]);
    let (_boot, bootstrap) = start_bootstrap(root.path());
    let _gateway = start_sip_gateway(root.path(), &bootstrap, "Trunk", &sipp, "");
    let alice = caller_home(root.path());

    let started = Instant::now();
    let (output, report) = call(&alice, &bootstrap, &["--duration", "20"]);
    assert!(output.status.success(), "call failed: {}", stderr(&output));
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "the caller held on for {:?}",
        started.elapsed()
    );
    assert_eq!(report["ended_by"], "gateway");
    assert_eq!(report["cause"], "the callee hung up");
    assert_eq!(report["receipt"]["status"], "settled");
    // The answering identity from the 200's P-Asserted-Identity.
    assert_eq!(
        report["answered_by"],
        format!("sip:{UK_MOBILE}@127.0.0.1:{}", sipp.port)
    );
    assert!(
        stderr(&output).contains(&format!("answered via Trunk by sip:{UK_MOBILE}@")),
        "{}",
        stderr(&output)
    );
    // The scenario checks the caller's identity in From and P-Asserted-Identity.
    let sipp = sipp.finish();
    assert!(sipp.status.success(), "sipp: {:?}", sipp.status);
    assert_eq!((sipp.successful_calls, sipp.failed_calls), (1, 0));
}

#[test]
fn a_busy_callee_makes_the_caller_fail_over_to_the_next_gateway() {
    let root = tempfile::tempdir().unwrap();
    let sipp = Sipp::start(&root.path().join("sipp"), "busy.xml", &[]);
    let (_boot, bootstrap) = start_bootstrap(root.path());
    // The SIP gateway is the cheaper one: the caller tries it first.
    let _trunk = start_sip_gateway(root.path(), &bootstrap, "Trunk", &sipp, "");
    let _echo = start_echo_gateway(root.path(), &bootstrap, "Fallback", "+44");
    let alice = caller_home(root.path());

    let (output, report) = call(&alice, &bootstrap, &["--duration", "1"]);
    assert!(output.status.success(), "call failed: {}", stderr(&output));
    assert_eq!(report["gateway"], "Fallback");
    assert_eq!(report["failovers"][0]["gateway"], "Trunk");
    assert_eq!(report["failovers"][0]["outcome"], "busy");
    assert!(stderr(&output).contains("Trunk failed (busy); trying the next"));

    let sipp = sipp.finish();
    assert!(sipp.status.success(), "sipp: {:?}", sipp.status);
    assert!(sipp.messages.contains("SIP/2.0 486 Busy Here"));
}

#[test]
fn a_number_the_trunk_does_not_know_is_no_route_without_failover_elsewhere() {
    let root = tempfile::tempdir().unwrap();
    let sipp = Sipp::start(&root.path().join("sipp"), "no_route.xml", &[]);
    let (_boot, bootstrap) = start_bootstrap(root.path());
    let _trunk = start_sip_gateway(root.path(), &bootstrap, "Trunk", &sipp, "");
    // Another gateway in the network, but for France only.
    let _france = start_echo_gateway(root.path(), &bootstrap, "Gallia", "+33");
    let alice = caller_home(root.path());

    let (output, _) = call(&alice, &bootstrap, &["--duration", "1"]);
    let progress = stderr(&output);
    // Exit status 6: no gateway answered.
    assert_eq!(output.status.code(), Some(6), "{progress}");
    assert!(progress.contains("found 1 gateway(s)"), "{progress}");
    assert!(
        progress.contains("Trunk failed (no route to the destination)"),
        "{progress}"
    );
    assert!(!progress.contains("Gallia"), "{progress}");

    let sipp = sipp.finish();
    assert!(sipp.status.success(), "sipp: {:?}", sipp.status);
    assert!(sipp.messages.contains("SIP/2.0 404 Not Found"));
}

#[test]
fn a_caller_who_gives_up_while_it_rings_cancels_the_sip_call() {
    let root = tempfile::tempdir().unwrap();
    let sipp = Sipp::start(&root.path().join("sipp"), "ring_until_cancel.xml", &[]);
    let (_boot, bootstrap) = start_bootstrap(root.path());
    let _trunk = start_sip_gateway(root.path(), &bootstrap, "Trunk", &sipp, "");
    let alice = caller_home(root.path());

    // The caller gives up 3 s after the command, while the callee rings.
    let (output, _) = call(&alice, &bootstrap, &["--timeout", "3"]);
    let progress = stderr(&output);
    assert_eq!(output.status.code(), Some(6), "{progress}");
    assert!(progress.contains("ringing via Trunk"), "{progress}");

    // sipp's scenario completes only once the CANCEL came (and its 487 was ACKed).
    let sipp = sipp.finish();
    assert!(sipp.status.success(), "sipp: {:?}", sipp.status);
    assert_eq!((sipp.successful_calls, sipp.failed_calls), (1, 0));
    assert!(sipp.messages.contains("CANCEL sip:"));
}
