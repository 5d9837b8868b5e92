//! The built `interlink` binary, as operators and scripts run it: `init`, `node` processes
//! started from config files on loopback, `gateways --json`, clean shutdown on SIGTERM,
//! the exit statuses, the web page's address and its checks, and `demo` (with `--serve`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::http::Api;
use support::node_process::{self, NodeProcess, clock_moved, init_home, libfaketime, receipts_at};
use support::wait_for_blocking;

mod support;

const BIN: &str = env!("CARGO_BIN_EXE_interlink");

fn interlink(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .output()
        .expect("run interlink")
}

/// `interlink init --dir DIR`, then `extra` appended to the generated config. A
/// `[network]` table in `extra` replaces the template's (which holds only comments).
fn init_node(dir: &Path, extra: &str) -> PathBuf {
    let output = interlink(&["init", "--dir", dir.to_str().unwrap()]);
    assert!(
        output.status.success(),
        "init: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let config = dir.join("config.toml");
    let mut text = std::fs::read_to_string(&config).unwrap();
    if extra.contains("[network]") {
        text = text.replacen("[network]", "", 1);
    }
    std::fs::write(&config, format!("{text}\n{extra}")).unwrap();
    config
}

fn network_section(bootstrap: Option<&str>) -> String {
    let bootstrap = bootstrap
        .map(|b| format!("bootstrap = [\"{b}\"]"))
        .unwrap_or_default();
    format!("[network]\nlisten = [\"/ip4/127.0.0.1/tcp/0\"]\n{bootstrap}\n")
}

fn gateway_section(name: &str, routes: &[(&str, &str)], mos: f64) -> String {
    let mut text = format!(
        "[gateway]\nname = \"{name}\"\nregion = \"test\"\noffer_ttl_secs = 600\n\
         [gateway.quality]\nanswer_seizure_ratio = 0.5\npost_dial_delay_ms = 2000\nmos = {mos}\n"
    );
    for (prefix, price) in routes {
        text += &format!(
            "[[gateway.routes]]\nprefix = \"{prefix}\"\ncurrency = \"GBP\"\nper_minute = \"{price}\"\n"
        );
    }
    text
}

fn gateways_json(bootstrap: &str, destination: &str) -> (Output, Vec<Value>) {
    let output = interlink(&[
        "gateways",
        "--bootstrap",
        bootstrap,
        "--json",
        "--no-rtt",
        "--timeout",
        "10",
        destination,
    ]);
    let rows = serde_json::from_slice::<Vec<Value>>(&output.stdout).unwrap_or_default();
    (output, rows)
}

/// A bootstrap node process and its dialable address.
fn start_bootstrap(root: &Path) -> (NodeProcess, String) {
    node_process::start_bootstrap(&init_node(&root.join("boot"), &network_section(None)))
}

fn names(rows: &[Value]) -> Vec<&str> {
    rows.iter().map(|r| r["name"].as_str().unwrap()).collect()
}

#[test]
fn five_node_processes_from_config_files_serve_gateways_json() {
    let root = tempfile::tempdir().unwrap();
    let (boot, bootstrap) = start_bootstrap(root.path());

    let gateways = [
        ("Anglia", vec![("+44", "0.02")], 4.2),
        ("Mobile Max", vec![("+447", "0.01")], 3.8),
        ("Londoner", vec![("+4420", "0.01")], 4.4),
        ("Gallia", vec![("+33", "0.01")], 4.4),
    ];
    let mut processes = Vec::new();
    for (name, routes, mos) in &gateways {
        let dir = root.path().join(name.replace(' ', "-"));
        let config = init_node(
            &dir,
            &(network_section(Some(&bootstrap)) + &gateway_section(name, routes, *mos)),
        );
        processes.push(NodeProcess::start(name, &config));
    }
    let mut peer_ids = Vec::new();
    for process in &processes {
        // Log lines come in order: the listener binds before the offer is published.
        let listening = process.wait_log("listening on");
        peer_ids.push(listening["peer_id"].as_str().unwrap().to_owned());
        let published = process.wait_log("offer published");
        assert_eq!(
            published["replicated"], true,
            "{} published to peers",
            process.name
        );
    }

    let (output, rows) = gateways_json(&bootstrap, "tel:+44 7700 900123");
    assert!(
        output.status.success(),
        "gateways: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    // Balanced policy: Mobile Max is half the price of Anglia, Anglia sounds better.
    assert_eq!(names(&rows), ["Mobile Max", "Anglia"]);
    assert_eq!(rows[0]["prefix"], "+447");
    assert_eq!(rows[0]["price_per_minute"], "0.01");
    assert_eq!(rows[0]["currency"], "GBP");
    assert_eq!(rows[0]["peer_id"], peer_ids[1].as_str());
    assert_eq!(rows[1]["peer_id"], peer_ids[0].as_str());
    assert!(
        rows.iter().all(|r| r["score"].as_f64().is_some()
            && r["reasons"].as_array().is_some_and(|a| !a.is_empty()))
    );

    let cheapest = interlink(&[
        "gateways",
        "--bootstrap",
        &bootstrap,
        "--json",
        "--no-rtt",
        "--policy",
        "best-quality",
        "+447700900123",
    ]);
    let rows: Vec<Value> = serde_json::from_slice(&cheapest.stdout).unwrap();
    assert_eq!(names(&rows), ["Anglia", "Mobile Max"]);

    // A clean stop withdraws the offer: the gateway disappears from the list.
    let mobile_max = processes.remove(1);
    let status = mobile_max.terminate();
    assert!(status.success(), "SIGTERM gives a clean exit, got {status}");
    let (_, rows) = gateways_json(&bootstrap, "+447700900123");
    assert_eq!(names(&rows), ["Anglia"]);

    // A London number is covered by the more specific Londoner route too.
    let (_, rows) = gateways_json(&bootstrap, "+442079460000");
    let mut london = names(&rows);
    london.sort();
    assert_eq!(london, ["Anglia", "Londoner"]);
    drop(boot);
}

/// `interlink node --config CONFIG` whose wall clock is `offset` off (`+180s`, say);
/// monotonic time (timers, timeouts) stays real.
fn start_with_clock(name: &str, config: &Path, libfaketime: &Path, offset: &str) -> NodeProcess {
    NodeProcess::start_with_env(name, config, &clock_moved(libfaketime, offset))
}

/// A bootstrap node and the config of a gateway `name` joining through it, covering +44.
fn one_gateway(name: &str) -> (tempfile::TempDir, NodeProcess, String, PathBuf) {
    let root = tempfile::tempdir().unwrap();
    let (boot, bootstrap) = start_bootstrap(root.path());
    let config = init_node(
        &root.path().join("gateway"),
        &(network_section(Some(&bootstrap)) + &gateway_section(name, &[("+44", "0.02")], 4.0)),
    );
    (root, boot, bootstrap, config)
}

/// A gateway whose clock runs ten minutes fast, past the skew holders tolerate, signs
/// offers issued in the future: every holder refuses them, and the refusal reaches the
/// gateway, which logs why and does not claim its offer was replicated. Callers see
/// nothing rather than an offer they cannot trust.
#[test]
fn a_gateway_whose_clock_runs_ten_minutes_fast_is_told_why_its_offer_is_refused() {
    let Some(libfaketime) = libfaketime() else {
        return;
    };
    let (_root, boot, bootstrap, config) = one_gateway("Far Ahead");
    let ahead = start_with_clock("ten minutes ahead", &config, &libfaketime, "+600s");
    let refused = ahead.wait_log("a holder refused the offer");
    assert!(
        refused["reason"]
            .as_str()
            .is_some_and(|r| r.contains("in the future")),
        "{refused}"
    );
    // The gateway does not claim it was replicated.
    let published = ahead.wait_log("offer published");
    assert_eq!(published["replicated"], false, "{published}");
    let (_, rows) = gateways_json(&bootstrap, "+447700900123");
    assert!(
        rows.is_empty(),
        "an offer from the future was shown: {rows:?}"
    );
    drop((ahead, boot));
}

/// A gateway whose clock ran three minutes fast (under `faketime`) publishes, withdraws
/// on a clean stop, and starts again with the right time: its offer is visible again at
/// once, because its `seq` never goes below one it published (holders would refuse it as
/// stale, and the withdrawal would hide it until its offers caught up with the clock).
#[test]
fn a_gateway_restarted_with_its_clock_moved_back_is_visible_again_at_once() {
    let Some(libfaketime) = libfaketime() else {
        return;
    };
    let (_root, boot, bootstrap, config) = one_gateway("Fast Clock");

    let fast = start_with_clock("fast clock", &config, &libfaketime, "+180s");
    let fast_seq = node_process::published_ahead(&fast);
    let (_, rows) = gateways_json(&bootstrap, "+447700900123");
    assert_eq!(names(&rows), ["Fast Clock"]);
    assert!(fast.terminate().success());
    let (_, rows) = gateways_json(&bootstrap, "+447700900123");
    assert!(rows.is_empty(), "withdrawn: {rows:?}");

    // The clock corrected, the same data directory: published above the withdrawal.
    let corrected = NodeProcess::start("corrected clock", &config);
    let published = corrected.wait_log("offer published");
    assert_eq!(published["replicated"], true, "{published}");
    assert!(published["seq"].as_u64().unwrap() > fast_seq, "{published}");
    let (output, rows) = gateways_json(&bootstrap, "+447700900123");
    assert_eq!(
        names(&rows),
        ["Fast Clock"],
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    drop(corrected);
    drop(boot);
}

#[test]
fn exit_statuses_tell_scripts_what_went_wrong() {
    let root = tempfile::tempdir().unwrap();
    let (boot, bootstrap) = start_bootstrap(root.path());

    let invalid = interlink(&["gateways", "--bootstrap", &bootstrap, "07700900123"]);
    assert_eq!(invalid.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&invalid.stderr).contains("international format"));

    let uncovered = interlink(&[
        "gateways",
        "--bootstrap",
        &bootstrap,
        "--no-rtt",
        "+81312345678",
    ]);
    assert_eq!(
        uncovered.status.code(),
        Some(4),
        "{}",
        String::from_utf8_lossy(&uncovered.stderr)
    );
    assert!(
        String::from_utf8_lossy(&uncovered.stderr)
            .contains("no gateway covers +81312345678 (Japan)")
    );

    let nobody = "/ip4/127.0.0.1/tcp/9/p2p/12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA";
    let unreachable = interlink(&["gateways", "--bootstrap", nobody, "+447700900123"]);
    assert_eq!(unreachable.status.code(), Some(5));
    assert!(String::from_utf8_lossy(&unreachable.stderr).contains("no peer could be reached"));

    let no_bootstrap = interlink(&["gateways", "+447700900123"]);
    assert_eq!(no_bootstrap.status.code(), Some(5));
    drop(boot);
}

/// `interlink call` builds its node from the config file, `[limits]` included: given a
/// bootstrap peer that takes the TCP connection and never answers the handshake, it gives
/// up after the config's `handshake_timeout_secs` (1 s), not after the default 10 s (which
/// is also how long it would wait to join at all).
#[test]
fn interlink_call_takes_its_limits_from_the_config_file() {
    let root = tempfile::tempdir().unwrap();
    let home = root.path().join("alice");
    node_process::init_node(&home, "[limits]\nhandshake_timeout_secs = 1\n");
    // The kernel completes the TCP handshake of a listener nobody accepts from.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let bootstrap = format!(
        "/ip4/127.0.0.1/tcp/{port}/p2p/12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA"
    );

    let started = Instant::now();
    let output = Command::new(BIN)
        .args(["call", "--bootstrap", &bootstrap, "+447700900123"])
        .env("INTERLINK_HOME", &home)
        .output()
        .unwrap();
    let took = started.elapsed();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(5), "{stderr}");
    // The dial itself gave up ("cannot reach PEER: ... Timeout"), not the join deadline
    // ("timed out"), which the default would have left to decide.
    assert!(
        stderr.contains("no peer could be reached: cannot reach"),
        "{stderr}"
    );
    assert!(
        took < Duration::from_secs(6),
        "gave up after {took:?}, not after the config's 1 s: {stderr}"
    );
    drop(silent);
}

#[test]
fn init_writes_an_owner_only_key_and_refuses_to_overwrite_it() {
    use std::os::unix::fs::PermissionsExt;
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("node");
    let first = interlink(&["init", "--dir", dir.to_str().unwrap()]);
    assert!(first.status.success());
    let mode = std::fs::metadata(dir.join("identity.key"))
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
    assert!(
        std::fs::read_to_string(dir.join("config.toml"))
            .unwrap()
            .contains("[gateway]")
    );
    let key = std::fs::read(dir.join("identity.key")).unwrap();

    let second = interlink(&["init", "--dir", dir.to_str().unwrap()]);
    assert!(!second.status.success());
    assert!(String::from_utf8_lossy(&second.stderr).contains("refusing to overwrite"));
    assert_eq!(
        std::fs::read(dir.join("identity.key")).unwrap(),
        key,
        "the key is untouched"
    );
}

#[test]
fn a_bad_config_names_the_field() {
    let root = tempfile::tempdir().unwrap();
    let config = init_node(
        &root.path().join("n"),
        &gateway_section("Bad", &[("+4x", "0.01")], 4.0),
    );
    let output = interlink(&["node", "--config", config.to_str().unwrap()]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("gateway.routes[0].prefix"), "{stderr}");
}

#[test]
fn the_page_listens_where_it_is_told_and_only_on_loopback() {
    let root = tempfile::tempdir().unwrap();
    let config = init_node(&root.path().join("a"), &network_section(None));
    let first = NodeProcess::start("first", &config);
    let url = first.api_url();
    let api = Api::new(&url);
    let node = api.get("/api/node");
    assert_eq!(node.status, 200);
    let page = api.get("/");
    assert_eq!(
        page.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    assert!(String::from_utf8_lossy(&page.body).contains("Number to call"));
    assert!(
        page.header("content-security-policy")
            .is_some_and(|p| p.starts_with("default-src 'self'"))
    );

    // A second node on the same address stops at start and says what to change.
    let taken = api.address.to_string();
    let config = init_node(&root.path().join("b"), &network_section(None));
    let second = NodeProcess::start_with("second", &config, &["--api-listen", &taken]);
    let (status, messages) = second.wait_exit();
    assert!(!status.success());
    let said = messages.join("\n");
    assert!(
        said.contains(&format!("cannot serve the web page and API on {taken}"))
            && said.contains("api.listen"),
        "{said}"
    );

    // Anything but loopback is refused: the API has no authentication.
    let third = NodeProcess::start_with("third", &config, &["--api-listen", "0.0.0.0:0"]);
    let (status, messages) = third.wait_exit();
    assert!(!status.success());
    let said = messages.join("\n");
    assert!(said.contains("invalid `api.listen`"), "{said}");

    // And --no-api serves nothing: the node runs without the line.
    let quiet = NodeProcess::start_with("quiet", &config, &["--no-api"]);
    let said = quiet.messages_until("DHT node running");
    assert!(
        !said.iter().any(|m| m.starts_with("web page and API at")),
        "{said:?}"
    );
    drop(first);
}

#[test]
fn the_demo_serves_alices_page_until_told_to_stop() {
    let mut demo = Command::new(BIN)
        .args(["demo", "--serve"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (lines_tx, lines) = std::sync::mpsc::channel();
    let stdout = demo.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = lines_tx.send(line);
        }
    });
    let deadline = Duration::from_secs(30);
    let next = || {
        lines
            .recv_timeout(deadline)
            .expect("the demo keeps talking")
    };
    let url = loop {
        let line = next();
        if let Some(rest) = line.strip_prefix("Alice's web page: ") {
            break rest.split(' ').next().unwrap().to_owned();
        }
    };
    while !next().starts_with("The network keeps running.") {}

    // The scripted call is over; the page and its API still answer.
    let api = Api::new(&url);
    let listed = api.get("/api/gateways?destination=%2B447700900123");
    assert_eq!(listed.status, 200, "{}", listed.json());
    let mut names: Vec<String> = listed.json()["gateways"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["name"].as_str().unwrap().to_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["Budget Voice", "Inter Telecom", "Premium Connect"]);
    assert_eq!(api.get("/").status, 200);

    let pid = demo.id().to_string();
    Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    let status = wait_for_blocking("the demo to stop on SIGTERM", deadline, || {
        demo.try_wait().unwrap()
    });
    assert!(status.success(), "{status}");
    // The reader ends with the demo's stdout.
    let rest: Vec<String> = std::iter::from_fn(|| lines.recv_timeout(deadline).ok()).collect();
    assert!(
        rest.iter()
            .any(|l| l.starts_with("Gateways withdrew their offers")),
        "{rest:?}"
    );
}

#[test]
fn the_demo_shows_the_ranked_gateways_and_exits_cleanly_within_30_seconds() {
    let started = Instant::now();
    let output = interlink(&["demo"]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "demo failed: {}\n{stdout}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "the demo took {:?}",
        started.elapsed()
    );
    let recommended = stdout
        .lines()
        .find(|l| l.contains("(recommended)"))
        .expect("a recommendation");
    assert!(recommended.starts_with("1. Inter Telecom"), "{recommended}");
    for line in [
        "Alice's web page: http://127.0.0.1:",
        "2. Budget Voice",
        "3. Premium Connect",
        "Left out: London Local: no route covers the destination",
        "Not found: Paris Interconnect",
        "answered via Inter Telecom",
        "first media packet received",
        "ended by           caller (the caller hung up)",
        "receipt            settled: 60 s billed, 0.03 GBP, signed by both sides",
    ] {
        assert!(stdout.contains(line), "missing {line:?} in:\n{stdout}");
    }
}

/// A gateway's config: loopback media, an echo back-end ringing for `ring_ms`.
fn echo_gateway_config(
    dir: &Path,
    bootstrap: &str,
    name: &str,
    per_minute: &str,
    ring_ms: u64,
) -> PathBuf {
    let extra = network_section(Some(bootstrap))
        + "[media]\nip = \"127.0.0.1\"\n"
        + &gateway_section(name, &[("+44", per_minute)], 4.2)
        + &format!("[gateway.echo]\nring_ms = {ring_ms}\n");
    // The template has commented [media] and [calls] tables: drop its [media] header.
    let config = init_node(dir, &extra);
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replacen("[media]", "", 1);
    std::fs::write(&config, text).unwrap();
    config
}

/// A bootstrap node; a cheap gateway named `slow` that rings for 20 s (the one a caller
/// with the cheapest policy tries first); Steady, dearer, answering at once; both
/// published; and a caller's home, Alice's.
struct TwoGateways {
    root: tempfile::TempDir,
    boot: NodeProcess,
    bootstrap: String,
    slow: NodeProcess,
    steady: NodeProcess,
    alice: PathBuf,
}

fn two_gateways(slow: &str) -> TwoGateways {
    let root = tempfile::tempdir().unwrap();
    let (boot, bootstrap) = start_bootstrap(root.path());
    let gateway = |name: &str, price: &str, ring_ms: u64| {
        let dir = root.path().join(name.to_lowercase());
        let config = echo_gateway_config(&dir, &bootstrap, name, price, ring_ms);
        NodeProcess::start(name, &config)
    };
    let slow = gateway(slow, "0.01", 20_000);
    let steady = gateway("Steady", "0.02", 100);
    for gateway in [&slow, &steady] {
        assert_eq!(gateway.wait_log("offer published")["replicated"], true);
    }
    let alice = root.path().join("alice");
    init_home(&alice);
    TwoGateways {
        root,
        boot,
        bootstrap,
        slow,
        steady,
        alice,
    }
}

#[test]
fn a_gateway_killed_while_ringing_fails_over_to_the_next_within_the_deadline() {
    // The cheap gateway rings for a long time; it is the one the caller tries first.
    let TwoGateways {
        root: _root,
        boot,
        bootstrap,
        slow: doomed,
        steady,
        alice,
    } = two_gateways("Doomed");
    let started = Instant::now();
    let mut call = Command::new(BIN)
        .args([
            "call",
            "--bootstrap",
            &bootstrap,
            "--media-ip",
            "127.0.0.1",
            "--policy",
            "cheapest",
        ])
        .args(["--duration", "1", "--json", "+447700900123"])
        .env("INTERLINK_HOME", &alice)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let progress = BufReader::new(call.stderr.take().unwrap());
    let mut lines = Vec::new();
    for line in progress.lines().map_while(Result::ok) {
        lines.push(line.clone());
        if line.contains("ringing via Doomed") {
            doomed.kill();
            break;
        }
    }
    assert!(
        lines.iter().any(|l| l.contains("ringing via Doomed")),
        "{lines:?}"
    );
    let output = call.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "call failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["gateway"], "Steady");
    assert_eq!(report["failovers"][0]["gateway"], "Doomed");
    assert_eq!(report["failovers"][0]["outcome"], "connection lost");
    assert_eq!(report["receipt"]["status"], "settled");
    assert!(report["media"]["packets_received"].as_u64().unwrap() > 0);
    // Far inside the default 90 s setup deadline, and the 20 s the doomed gateway rang for.
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "took {:?}",
        started.elapsed()
    );

    // The caller keeps the receipt: listed as JSON and exported as CSV.
    let receipts = |format: &str| {
        let output = Command::new(BIN)
            .args(["receipts", format])
            .env("INTERLINK_HOME", &alice)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap()
    };
    let rows: Vec<Value> = serde_json::from_str(&receipts("--json")).unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["call_id"], report["call_id"]);
    assert_eq!(
        (rows[0]["role"].as_str(), rows[0]["status"].as_str()),
        (Some("caller"), Some("settled"))
    );
    assert_eq!(rows[0]["gateway"], report["gateway_peer_id"]);
    let csv = receipts("--csv");
    let mut lines = csv.lines();
    assert!(
        lines
            .next()
            .unwrap()
            .starts_with("call_id,role,status,gateway,caller,destination,prefix")
    );
    let row = lines.next().unwrap();
    assert!(
        row.starts_with(&format!(
            "{},caller,settled,",
            report["call_id"].as_str().unwrap()
        )),
        "{row}"
    );
    assert!(row.contains(",+447700900123,+44,"), "{row}");

    // The dead gateway's offer is still in the index (it could not withdraw it), but it
    // cannot be reached: the cheapest policy ranks it last, and says why.
    let output = interlink(&[
        "gateways",
        "--bootstrap",
        &bootstrap,
        "--json",
        "--policy",
        "cheapest",
        "+447700900123",
    ]);
    let rows: Vec<Value> = serde_json::from_slice(&output.stdout).unwrap_or_default();
    assert_eq!(
        names(&rows),
        ["Steady", "Doomed"],
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        rows[1]["reasons"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r.as_str().unwrap().contains("could not be reached")),
        "{}",
        rows[1]
    );
    drop((steady, boot));
}

/// A gateway that hangs while ringing (SIGSTOP: its connections stay open and nothing
/// closes them, as when a host freezes or a path dies) stops sending keep-alives: the
/// caller gives it up after `calls.silence_ms` and the next gateway answers.
#[test]
fn a_gateway_that_hangs_while_ringing_is_given_up_after_its_silence() {
    let TwoGateways {
        root: _root,
        boot,
        bootstrap,
        slow: frozen,
        steady,
        alice,
    } = two_gateways("Frozen");
    let mut call = Command::new(BIN)
        .args(["call", "--bootstrap", &bootstrap, "--media-ip", "127.0.0.1"])
        .args([
            "--policy",
            "cheapest",
            "--duration",
            "1",
            "--json",
            "+447700900123",
        ])
        .env("INTERLINK_HOME", &alice)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_progress(&mut call, "ringing via Frozen");
    frozen.signal("STOP");
    let output = call.wait_with_output().unwrap();
    assert!(output.status.success(), "exit {}", output.status);
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["gateway"], "Steady", "{report}");
    assert_eq!(report["failovers"][0]["gateway"], "Frozen", "{report}");
    assert_eq!(
        report["failovers"][0]["outcome"], "the gateway fell silent while ringing",
        "{report}"
    );
    assert_eq!(report["receipt"]["status"], "settled", "{report}");
    drop((frozen, steady, boot));
}

/// `interlink call` to Bob through the one gateway, held long, with `home` as its home.
fn long_call(bootstrap: &str, home: &Path) -> std::process::Child {
    Command::new(BIN)
        .args(["call", "--bootstrap", bootstrap, "--media-ip", "127.0.0.1"])
        .args(["--duration", "600", "--json", "+447700900123"])
        .env("INTERLINK_HOME", home)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Reads `child`'s progress on stderr until a line contains `what`; the rest is drained
/// in the background so the child never blocks on a full pipe.
fn wait_progress(child: &mut std::process::Child, what: &str) {
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    wait_line(&mut lines, what);
    std::thread::spawn(move || lines.for_each(drop));
}

/// Reads progress lines until one contains `what`.
fn wait_line(lines: &mut impl Iterator<Item = std::io::Result<String>>, what: &str) {
    let mut seen = Vec::new();
    for line in lines.map_while(Result::ok) {
        let found = line.contains(what);
        seen.push(line);
        if found {
            return;
        }
    }
    panic!("the call ended before {what:?}: {seen:?}");
}

#[test]
fn ctrl_c_during_an_answered_call_settles_it_on_both_sides_and_twice_exits_at_once() {
    let root = tempfile::tempdir().unwrap();
    let (boot, bootstrap) = start_bootstrap(root.path());
    let gateway_home = root.path().join("echo");
    let gateway = NodeProcess::start(
        "Echo",
        &echo_gateway_config(&gateway_home, &bootstrap, "Echo", "0.01", 50),
    );
    assert_eq!(gateway.wait_log("offer published")["replicated"], true);
    let alice = root.path().join("alice");
    init_home(&alice);

    // Ctrl-C once media flows: Bye, the receipt countersigned, the report, exit 0.
    let mut call = long_call(&bootstrap, &alice);
    wait_progress(&mut call, "first media packet received");
    let pid = call.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-INT", &pid])
            .status()
            .unwrap()
            .success()
    );
    let output = call.wait_with_output().unwrap();
    assert!(output.status.success(), "exit {}", output.status);
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["ended_by"], "caller", "{report}");
    assert_eq!(report["receipt"]["status"], "settled", "{report}");
    let at_caller = receipts_at(&alice);
    assert_eq!(at_caller.len(), 1);
    let at_gateway = support::wait_for_blocking(
        "the gateway's settled receipt",
        Duration::from_secs(30),
        || {
            let rows = receipts_at(&gateway_home);
            (rows.len() == 1 && rows[0]["status"] == "settled").then_some(rows)
        },
    );
    assert_eq!(at_gateway[0]["call_id"], report["call_id"]);
    assert_eq!(
        at_caller[0]["signed_bytes_hex"],
        at_gateway[0]["signed_bytes_hex"]
    );

    // Twice: out at once, as interrupted. The gateway is frozen so that the hang-up the
    // first Ctrl-C starts is still waiting when the second comes, and the second is sent
    // once the first was seen: signals that arrive together count as one.
    let mut call = long_call(&bootstrap, &alice);
    let mut lines = BufReader::new(call.stderr.take().unwrap()).lines();
    wait_line(&mut lines, "answered via Echo");
    gateway.signal("STOP");
    let interrupt = || {
        assert!(
            Command::new("kill")
                .args(["-INT", &call.id().to_string()])
                .status()
                .unwrap()
                .success()
        );
    };
    interrupt();
    wait_line(&mut lines, "hanging up");
    interrupt();
    wait_line(&mut lines, "interrupted again: exiting now");
    let status = call.wait().unwrap();
    gateway.signal("CONT");
    assert_eq!(status.code(), Some(130), "{status}");
    drop((gateway, boot));
}

#[test]
fn a_gateway_keeps_serving_when_the_reader_of_its_log_goes_away() {
    let root = tempfile::tempdir().unwrap();
    let (boot, bootstrap) = start_bootstrap(root.path());
    let config = echo_gateway_config(&root.path().join("gw"), &bootstrap, "Orphan", "0.01", 0);
    let mut gateway = Command::new(BIN)
        .args([
            "--log-format",
            "json",
            "node",
            "--config",
            config.to_str().unwrap(),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut log = BufReader::new(gateway.stderr.take().unwrap());
    let mut line = String::new();
    while !line.contains("offer published") {
        line.clear();
        assert!(
            log.read_line(&mut line).unwrap() > 0,
            "the gateway stopped before publishing"
        );
    }
    // Whoever read the log (a terminal, a pipe to a collector) is gone: every log line the
    // gateway writes from now on fails.
    drop(log);

    let alice = root.path().join("alice");
    init_home(&alice);
    let call = Command::new(BIN)
        .args([
            "call",
            "--bootstrap",
            &bootstrap,
            "--media-ip",
            "127.0.0.1",
            "--duration",
            "1",
            "--json",
            "+447700900123",
        ])
        .env("INTERLINK_HOME", &alice)
        .output()
        .unwrap();
    assert!(
        call.status.success(),
        "{}",
        String::from_utf8_lossy(&call.stderr)
    );
    let report: Value = serde_json::from_slice(&call.stdout).unwrap();
    assert_eq!(report["receipt"]["status"], "settled");
    assert_eq!(
        gateway.try_wait().unwrap(),
        None,
        "the gateway is still running"
    );
    let _ = gateway.kill();
    let _ = gateway.wait();
    drop(boot);
}
