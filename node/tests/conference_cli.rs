//! `interlink conference` as people run it: a bridge `interlink node` started from its
//! config file, an organiser's `reserve` that holds the room, participants' `join`, a
//! participant refused from a full room, `end` from another process (refused to a
//! participant), and `list` on both sides afterwards.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::Value;
use support::node_process::{self, NodeProcess, init_node, network_section, start_bootstrap};

const BIN: &str = env!("CARGO_BIN_EXE_interlink");
const DEADLINE: Duration = Duration::from_secs(30);

const BRIDGE: &str = "[gateway]\nname = \"Mixer\"\nkind = \"conference\"\nbackend = \"conference\"\n\
region = \"eu-west\"\ncapacity = 10\noffer_ttl_secs = 600\n\
[gateway.conference]\nrooms = 2\nparticipants_per_room = 4\ncurrency = \"EUR\"\n\
per_room = \"0.10\"\nper_participant_minute = \"0.02\"\nbilling_increment_secs = 1\n";

/// Lines of a child's pipe, on a channel.
fn lines(pipe: impl std::io::Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    rx
}

fn wait_line(lines: &mpsc::Receiver<String>, what: &str, matches: impl Fn(&str) -> bool) -> String {
    try_wait_line(lines, matches)
        .unwrap_or_else(|seen| panic!("no line {what}; the lines before: {seen:#?}"))
}

/// The first line that `matches`, or the lines seen before the deadline or the end.
fn try_wait_line(
    lines: &mpsc::Receiver<String>,
    matches: impl Fn(&str) -> bool,
) -> Result<String, Vec<String>> {
    let mut seen = Vec::new();
    loop {
        match lines.recv_timeout(DEADLINE) {
            Ok(line) if matches(&line) => return Ok(line),
            Ok(line) => seen.push(line),
            Err(e) => {
                seen.push(format!("({e})"));
                return Err(seen);
            }
        }
    }
}

fn join(config: &Path, token: &str, tone: &str) -> Child {
    Command::new(BIN)
        .args(["conference", "join", "--config"])
        .arg(config)
        .args(["--tone", tone, "--duration", "3", token])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("join")
}

fn list(config: &Path) -> Vec<Value> {
    let rows = node_process::json_output(
        Command::new(BIN)
            .args(["conference", "list", "--json", "--config"])
            .arg(config),
    );
    serde_json::from_value(rows).unwrap()
}

#[test]
fn a_room_reserved_joined_and_ended_from_the_command_line() {
    let root = tempfile::tempdir().unwrap();
    let (boot, bootstrap) = start_bootstrap(&init_node(
        &root.path().join("boot"),
        &network_section(None),
    ));
    let bridge_config = init_node(
        &root.path().join("bridge"),
        &(network_section(Some(&bootstrap)) + BRIDGE),
    );
    let bridge = NodeProcess::start("bridge", &bridge_config);
    bridge.wait_log("offer published");
    let config =
        |name: &str| init_node(&root.path().join(name), &network_section(Some(&bootstrap)));
    let (organiser, alice, bob, carol) = (
        config("organiser"),
        config("alice"),
        config("bob"),
        config("carol"),
    );

    let mut reserve = Command::new(BIN)
        .args([
            "conference",
            "reserve",
            "--region",
            "eu-west",
            "--size",
            "2",
            "--duration",
            "120",
            "--config",
        ])
        .arg(&organiser)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("reserve");
    let out = lines(reserve.stdout.take().unwrap());
    let err = lines(reserve.stderr.take().unwrap());
    let token = wait_line(&out, "with the token", |l| {
        l.len() > 100 && l.bytes().all(|b| b.is_ascii_hexdigit())
    });

    let first = join(&alice, &token, "500");
    let second = join(&bob, &token, "900");
    if let Err(seen) = try_wait_line(&err, |l| l.contains("(2 in the room)")) {
        let outputs: Vec<String> = [first, second]
            .into_iter()
            .map(|child| {
                let output = child.wait_with_output().unwrap();
                format!(
                    "{}: {}{}",
                    output.status,
                    String::from_utf8_lossy(&output.stdout),
                    String::from_utf8_lossy(&output.stderr)
                )
            })
            .collect();
        panic!("not two in the room; organiser: {seen:#?}; participants: {outputs:#?}");
    }
    // The room was reserved for two: a third is refused with the reason.
    let third = Command::new(BIN)
        .args(["conference", "join", "--config"])
        .arg(&carol)
        .args(["--duration", "1", &token])
        .output()
        .unwrap();
    assert!(!third.status.success());
    assert!(
        String::from_utf8_lossy(&third.stderr)
            .contains("the room is full (2 participants reserved)"),
        "{}",
        String::from_utf8_lossy(&third.stderr)
    );
    for (child, hears) in [(first, "900 Hz"), (second, "500 Hz")] {
        let output = child.wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(
            stdout.contains(&format!("heard in the last second: {hears}")),
            "{stdout}"
        );
    }
    // A participant may not end the room; the organiser may, from another process.
    let end = |config: &Path| {
        Command::new(BIN)
            .args(["conference", "end", "--config"])
            .arg(config)
            .arg(&token)
            .output()
            .unwrap()
    };
    let refused = end(&alice);
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("unauthorised"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    let ended = end(&organiser);
    assert!(
        ended.status.success(),
        "{}",
        String::from_utf8_lossy(&ended.stderr)
    );
    let receipt = wait_line(&out, "the receipt", |l| l.starts_with("receipt:"));
    assert!(receipt.starts_with("receipt: 2 stay(s)"), "{receipt}");
    assert!(receipt.ends_with("(settled)"), "{receipt}");
    assert!(reserve.wait().unwrap().success());

    let ours = list(&organiser);
    assert_eq!(ours.len(), 1, "{ours:?}");
    assert_eq!(ours[0]["status"], "settled");
    assert_eq!(ours[0]["role"], "organiser");
    assert_eq!(ours[0]["attendances"], 2);
    let theirs = list(&bridge_config);
    assert_eq!(theirs.len(), 1, "{theirs:?}");
    assert_eq!(theirs[0]["role"], "bridge");
    assert_eq!(theirs[0]["amount_minor"], ours[0]["amount_minor"]);
    drop(bridge);
    drop(boot);
}
