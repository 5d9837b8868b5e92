//! What survives a crash: a node's database killed (SIGKILL) in the middle of its writes,
//! and a gateway process killed during an answered call, seen from both sides.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use interlink_node::store::{INTERRUPTED, Store};
use interlink_protocol::call::SettledReceipt;
use serde_json::Value;
use support::node_process::{self, NodeProcess};

mod support;

const BIN: &str = env!("CARGO_BIN_EXE_interlink");

/// SQLite's own check of the whole file, on a connection of its own.
fn integrity(dir: &Path) -> (String, String) {
    let connection = rusqlite::Connection::open(dir.join("interlink.db")).unwrap();
    let check: String = connection
        .query_row("PRAGMA integrity_check", [], |row| row.get(0))
        .unwrap();
    let mode: String = connection
        .query_row("PRAGMA journal_mode", [], |row| row.get(0))
        .unwrap();
    (check, mode)
}

/// The number in the first 8 bytes of a call id written by `interlink store-writer`.
fn call_number(call_id: &str) -> u64 {
    u64::from_str_radix(&call_id[..16], 16).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn receipts_reported_committed_survive_sigkill_at_any_point() {
    let dir = tempfile::tempdir().unwrap();
    let mut committed = BTreeSet::new();
    let mut next = 0u64;
    // Kill points: before the database is even open, then after more and more commits.
    for (round, kill_after) in [0usize, 1, 7, 23, 60, 3, 41].into_iter().enumerate() {
        let mut writer = Command::new(BIN)
            .args(["store-writer", "--dir"])
            .arg(dir.path())
            .args(["--first", &next.to_string()])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(writer.stdout.take().unwrap()).lines();
        let mut seen = 0;
        while seen < kill_after {
            let line = lines.next().expect("the writer stopped").unwrap();
            committed.insert(
                line.strip_prefix("committed ")
                    .unwrap()
                    .parse::<u64>()
                    .unwrap(),
            );
            seen += 1;
        }
        writer.kill().unwrap();
        // Whatever it printed before it died was committed too.
        for line in lines.map_while(Result::ok) {
            committed.insert(
                line.strip_prefix("committed ")
                    .unwrap()
                    .parse::<u64>()
                    .unwrap(),
            );
        }
        let status = writer.wait().unwrap();
        assert!(!status.success(), "round {round}: the writer was killed");
        next = committed.last().map_or(0, |n| n + 1);

        // The file is sound after every kill, and still in WAL mode. (Killed at once, the
        // writer may not have created it yet.)
        let exists = dir.path().join("interlink.db").exists();
        assert!(exists || kill_after == 0, "round {round}: no database");
        if exists {
            let (check, journal) = integrity(dir.path());
            assert_eq!(check, "ok", "round {round}");
            // Killed at once, the writer may have created the file before it switched it
            // to WAL; the next open switches it.
            assert!(
                journal == "wal" || kill_after == 0,
                "round {round}: journal mode {journal}"
            );
        }
    }
    assert!(committed.len() >= 130, "{} commits", committed.len());
    eprintln!("{} calls reported committed over 7 kills", committed.len());

    let store = Store::open(dir.path()).unwrap();
    assert_eq!(integrity(dir.path()), ("ok".to_owned(), "wal".to_owned()));
    let receipts = store.receipts().await.unwrap();
    let stored: BTreeSet<u64> = receipts.iter().map(|r| call_number(&r.call_id)).collect();
    let lost: Vec<&u64> = committed.difference(&stored).collect();
    assert!(
        lost.is_empty(),
        "receipts reported committed but lost: {lost:?}"
    );
    // What is stored is whole: both signatures verify, and the figures match the bytes.
    for row in &receipts {
        let bytes: Vec<u8> = (0..row.signed_bytes_hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&row.signed_bytes_hex[i..i + 2], 16).unwrap())
            .collect();
        let settled = SettledReceipt::decode(&bytes).unwrap();
        assert_eq!(settled.receipt().call_id.to_string(), row.call_id);
        assert_eq!(
            (row.status.as_str(), row.amount_minor),
            ("settled", settled.receipt().amount.minor_units)
        );
    }
    let calls: BTreeSet<u64> = store
        .calls()
        .await
        .unwrap()
        .iter()
        .filter(|c| c.receipt == "settled" && c.ending.is_some())
        .map(|c| call_number(&c.call_id))
        .collect();
    let lost: Vec<&u64> = committed.difference(&calls).collect();
    assert!(
        lost.is_empty(),
        "call records reported committed but lost: {lost:?}"
    );
    let history = store.history().await.unwrap();
    let attempts: u32 = history.values().map(|h| h.answered).sum();
    assert!(attempts as usize >= committed.len());
}

/// An echo gateway listening on `listen` (a TCP or a QUIC address on loopback).
fn gateway_config(bootstrap: &str, listen: &str) -> String {
    let network =
        node_process::network_section(Some(bootstrap)).replace("/ip4/127.0.0.1/tcp/0", listen);
    format!(
        "{network}[gateway]\nname = \"Doomed\"\nregion = \"test\"\noffer_ttl_secs = 600\n\
         [gateway.echo]\nring_ms = 100\n\
         [[gateway.routes]]\nprefix = \"+44\"\ncurrency = \"GBP\"\nper_minute = \"0.02\"\n"
    )
}

/// How soon the caller must know the gateway is gone. Over TCP the dead process's kernel
/// closes the connection at once; over QUIC nothing is sent, and the connection's idle
/// timeout (3 s, `network::QUIC_IDLE_TIMEOUT_MS`) decides.
const TOLD_WITHIN: Duration = Duration::from_secs(5);

#[tokio::test(flavor = "multi_thread")]
async fn a_gateway_killed_during_an_answered_call_leaves_both_sides_agreeing_no_receipt_was_issued()
{
    gateway_killed_during_a_call("/ip4/127.0.0.1/tcp/0").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_gateway_killed_during_an_answered_call_over_quic_is_noticed_within_its_idle_timeout() {
    gateway_killed_during_a_call("/ip4/127.0.0.1/udp/0/quic-v1").await;
}

async fn gateway_killed_during_a_call(listen: &str) {
    let root = tempfile::tempdir().unwrap();
    let (boot, bootstrap) = node_process::start_bootstrap(&node_process::init_node(
        &root.path().join("boot"),
        &node_process::network_section(None),
    ));
    let gateway_dir = root.path().join("doomed");
    let gateway_config = node_process::init_node(&gateway_dir, &gateway_config(&bootstrap, listen));
    let gateway = NodeProcess::start("Doomed", &gateway_config);
    gateway.wait_logs(&["gateway running", "offer published"]);

    let alice = root.path().join("alice");
    node_process::init_node(&alice, &node_process::network_section(None));
    let mut call = Command::new(BIN)
        .args(["call", "--bootstrap", &bootstrap, "--media-ip", "127.0.0.1"])
        .args(["--duration", "60", "--json", "+447700900123"])
        .env("INTERLINK_HOME", &alice)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut progress = BufReader::new(call.stderr.take().unwrap()).lines();
    let mut said = Vec::new();
    // When the caller had heard of the answer, at the latest.
    let mut answered = None;
    for line in progress.by_ref().map_while(Result::ok) {
        said.push(line.clone());
        if line.contains("answered via") {
            answered.get_or_insert_with(Instant::now);
        }
        if line.contains("first media packet received") {
            break;
        }
    }
    assert!(
        said.iter().any(|l| l.contains("answered via Doomed")),
        "{said:?}"
    );
    // Media flows both ways (the caller hears the gateway's echo of its tone) and the
    // gateway has the call on record as answered (it records it before it answers), while
    // the call is held for 60 s: the gateway dies now.
    let killed_at = Instant::now();
    let talked = answered.map_or(Duration::ZERO, |at| killed_at - at);
    gateway.kill();
    let output = call.wait_with_output().unwrap();
    let told_after = killed_at.elapsed();
    let rest: Vec<String> = progress.map_while(Result::ok).collect();
    assert!(
        told_after < TOLD_WITHIN,
        "the caller took {told_after:?} to notice: {rest:?}"
    );
    eprintln!("the caller was told {told_after:?} after the gateway was killed");
    let report: Value = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&output.stdout)));
    assert_eq!(
        (
            report["gateway"].as_str(),
            report["ended_by"].as_str(),
            report["cause"].as_str(),
            report["receipt"]["status"].as_str()
        ),
        (
            Some("Doomed"),
            Some("gateway"),
            Some("the connection was lost"),
            Some("missing")
        ),
        "{report}"
    );
    let call_id = report["call_id"].as_str().unwrap().to_owned();

    // The caller: the call on record, ended by the lost connection, and no receipt.
    let caller_store = Store::open(&alice).unwrap();
    let caller_calls = caller_store.calls().await.unwrap();
    assert_eq!(caller_calls.len(), 1, "{caller_calls:?}");
    let caller_call = &caller_calls[0];
    assert_eq!(
        (
            caller_call.call_id.as_str(),
            caller_call.ending.as_deref(),
            caller_call.receipt.as_str()
        ),
        (
            call_id.as_str(),
            Some("the connection was lost (by the gateway)"),
            "none"
        )
    );
    assert!(caller_store.receipts().await.unwrap().is_empty());
    let answered_for = caller_call.ended_at_ms.unwrap() - caller_call.answered_at_ms;
    assert!(
        u128::from(answered_for) >= talked.as_millis(),
        "the caller's record says {answered_for} ms, it talked {talked:?}"
    );
    drop(caller_store);

    // The gateway's database, as the crash left it: sound, the call open, no receipt.
    assert_eq!(integrity(&gateway_dir), ("ok".to_owned(), "wal".to_owned()));
    let gateway_calls = Store::open(&gateway_dir).unwrap().calls().await.unwrap();
    assert_eq!(gateway_calls.len(), 1, "{gateway_calls:?}");
    assert_eq!(
        (
            gateway_calls[0].call_id.as_str(),
            gateway_calls[0].ending.as_deref(),
            gateway_calls[0].receipt.as_str()
        ),
        (call_id.as_str(), None, "none")
    );
    // Both sides saw the same answer (one host, one clock: within a second).
    assert!(
        gateway_calls[0]
            .answered_at_ms
            .abs_diff(caller_call.answered_at_ms)
            < 1000
    );

    // Restarted, the gateway records the call as interrupted with no receipt: both sides
    // now hold the same account of it.
    let restarted = NodeProcess::start("Doomed again", &gateway_config);
    let cut = restarted.wait_log("1 call(s) were cut");
    assert_eq!(cut["calls"], 1);
    restarted.wait_log("gateway running");
    assert!(restarted.terminate().success());
    let gateway_store = Store::open(&gateway_dir).unwrap();
    let gateway_calls = gateway_store.calls().await.unwrap();
    assert_eq!(
        (
            gateway_calls[0].call_id.as_str(),
            gateway_calls[0].ending.as_deref(),
            gateway_calls[0].receipt.as_str()
        ),
        (call_id.as_str(), Some(INTERRUPTED), "none")
    );
    assert!(gateway_store.receipts().await.unwrap().is_empty());
    drop(boot);
}
