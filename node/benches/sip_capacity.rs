//! How many concurrent bridged calls one SIP gateway core carries with under 1 % loss.
//!
//! The gateway is a real `interlink node` process with the `sip` back-end, pinned to CPU 0
//! (`taskset -c 0`). Its trunk is sipp's built-in `uas` with `-rtp_echo` (answers at once,
//! returns every RTP packet), pinned to CPU 1. This process, also on CPU 1, is the
//! bootstrap node and the caller: it places N calls through the gateway at a fixed rate of
//! new calls a second, each sending a 50 packet/s G.711 tone over WebRTC (SRTP), which the
//! gateway relays as plain RTP to sipp and back, and checks every echoed packet. It holds
//! them (20 s, so all N overlap), hangs up and sums the loss (`1 − received / sent`). N
//! grows until the loss passes 1 % or calls fail. For each N it prints the loss and the CPU
//! each process used while all N calls were up, so it is clear which side ran out first.
//!
//! `cargo bench -p interlink-node --bench sip_capacity [-- HOLD_SECONDS]` (needs `sipp`)
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    missing_docs
)]

use std::io::{BufRead, BufReader};
use std::net::UdpSocket;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use interlink_node::calls::caller::{self, CallOptions};
use interlink_node::config::DhtSection;
use interlink_node::local_network::LocalNetwork;
use interlink_protocol::E164;
use interlink_protocol::ranking::{Policy, PolicyKind};

const BIN: &str = env!("CARGO_BIN_EXE_interlink");
/// New calls per second while a load ramps up.
const CALL_RATE: u32 = 100;
const STEPS: &[usize] = &[100, 200, 300, 400, 500, 600, 700, 800, 900];

/// CPU seconds (user + system) a process has used, from /proc.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name, which is in parentheses and may hold spaces.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / 100.0
}

/// A child process, killed when dropped.
struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .unwrap()
        .port()
}

/// sipp's `uas` with RTP echo on CPU 1; returns it and its SIP port.
fn start_sipp() -> (Process, u16) {
    let (sip_port, media_port) = (free_port(), free_port());
    let child = Command::new("taskset")
        .args(["-c", "1", "sipp", "-sn", "uas", "-rtp_echo", "-nostdin"])
        .args(["-i", "127.0.0.1", "-mi", "127.0.0.1"])
        .args(["-p", &sip_port.to_string(), "-mp", &media_port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("taskset and sipp (Debian package sip-tester)");
    (Process(child), sip_port)
}

/// The gateway on CPU 0; returns it and its peer id once its offer is published.
fn start_gateway(dir: &std::path::Path, bootstrap: &str, sip_port: u16) -> (Process, String) {
    assert!(
        Command::new(BIN)
            .args(["init", "--dir", dir.to_str().unwrap()])
            .output()
            .unwrap()
            .status
            .success()
    );
    let config = dir.join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[network]\nlisten = [\"/ip4/127.0.0.1/tcp/0\"]\nbootstrap = [\"{bootstrap}\"]\n\
             [media]\nip = \"127.0.0.1\"\n\
             [gateway]\nname = \"SIP\"\ncapacity = 10000\nbackend = \"sip\"\n\
             [gateway.sip]\nhost = \"127.0.0.1\"\nport = {sip_port}\nlocal_address = \"127.0.0.1:0\"\n\
             [[gateway.routes]]\nprefix = \"+44\"\ncurrency = \"GBP\"\nper_minute = \"0.01\"\n"
        ),
    )
    .unwrap();
    // The node's default log filter, and rsipstack's warnings only: it logs every SIP
    // message at info, which would cost the gateway CPU here.
    let mut child = Command::new("taskset")
        .args([
            "-c",
            "0",
            BIN,
            "--log-format",
            "json",
            "node",
            "--config",
            config.to_str().unwrap(),
        ])
        .env(
            "RUST_LOG",
            "info,rsipstack=warn,libp2p_kad=warn,libp2p_swarm=warn,rtc=error,rtc_dtls=error,\
             rtc_ice=error,rtc_srtp=error,rtc_sctp=error,rtc_interceptor=error",
        )
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("taskset and the interlink binary");
    let mut peer_id = String::new();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    for line in lines.by_ref().map_while(Result::ok) {
        let value: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
        if let Some(id) = value["peer_id"].as_str() {
            peer_id = id.to_owned();
        }
        if value["message"] == "offer published" {
            break;
        }
    }
    // Keep reading the gateway's log, or it blocks once the pipe is full.
    std::thread::spawn(move || {
        for line in lines.map_while(Result::ok) {
            if std::env::var_os("GATEWAY_LOG").is_some() {
                println!("gateway: {line}");
            }
        }
    });
    (Process(child), peer_id)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    interlink_node::logging::init(interlink_node::logging::LogFormat::Human, "error");
    let hold: u64 = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(20);
    let pinned = Command::new("taskset")
        .args(["-a", "-p", "-c", "1", &std::process::id().to_string()])
        .output();
    assert!(
        pinned.is_ok_and(|o| o.status.success()),
        "taskset could not pin the load generator to CPU 1"
    );

    let (sipp, sip_port) = start_sipp();
    let network = LocalNetwork::start(0, vec![], &DhtSection::default())
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (gateway, peer_id) =
        start_gateway(dir.path(), &network.bootstrap_addr.to_string(), sip_port);
    assert!(!peer_id.is_empty(), "the gateway never logged its peer id");
    let caller = network.caller().await.unwrap();
    let options = CallOptions {
        via: Some(peer_id.parse().unwrap()),
        policy: Policy {
            kind: PolicyKind::Cheapest,
            ..Policy::default()
        },
        hold_for: Duration::from_secs(hold),
        setup_deadline: Duration::from_secs(60),
        ..CallOptions::new(E164::parse("+447700900123").unwrap())
    };
    println!(
        "SIP gateway pinned to CPU 0; callers and sipp (uas, -rtp_echo) pinned to CPU 1; \
         calls arrive at {CALL_RATE}/s and are held {hold} s; 50 packets/s each way per call, \
         WebRTC (SRTP) caller ↔ gateway, plain RTP gateway ↔ sipp"
    );
    println!(
        "{:>6} {:>10} {:>10} {:>8} {:>8} {:>12} {:>11} {:>9}",
        "calls", "sent", "received", "loss %", "failed", "gateway CPU", "caller CPU", "sipp CPU"
    );
    println!("(CPU: share of one core while all calls are up)");

    let mut best = None;
    for &n in STEPS {
        // Calls arrive at CALL_RATE, as real load does, and all overlap once the last is up.
        let mut calls = Vec::with_capacity(n);
        for _ in 0..n {
            let context = caller.caller();
            let options = options.clone();
            calls.push(tokio::spawn(async move {
                caller::place_call(&context, &options, &|_| {}).await
            }));
            tokio::time::sleep(Duration::from_secs(1) / CALL_RATE).await;
        }
        // CPU while all N calls are up: from 1 s after the last was placed, for half the hold.
        tokio::time::sleep(Duration::from_secs(1)).await;
        let pids = [gateway.0.id(), std::process::id(), sipp.0.id()];
        let before = pids.map(cpu_seconds);
        let window = Instant::now();
        tokio::time::sleep(Duration::from_secs(hold / 2)).await;
        let seconds = window.elapsed().as_secs_f64();
        let shares: Vec<f64> = pids
            .iter()
            .zip(before)
            .map(|(&pid, before)| (cpu_seconds(pid) - before) / seconds * 100.0)
            .collect();
        let (mut sent, mut received, mut failed) = (0u64, 0u64, 0usize);
        for call in calls {
            match call.await.unwrap() {
                Ok(report) => {
                    sent += report.media.packets_sent;
                    received += report.media.echo_matches.min(report.media.packets_sent);
                }
                Err(e) => {
                    if failed == 0 {
                        println!("first failure: {e}");
                    }
                    failed += 1;
                }
            }
        }
        let loss = if sent == 0 {
            100.0
        } else {
            (sent - received) as f64 / sent as f64 * 100.0
        };
        println!(
            "{n:>6} {sent:>10} {received:>10} {loss:>8.2} {failed:>8} {:>11.0}% {:>10.0}% {:>8.0}%",
            shares[0], shares[1], shares[2]
        );
        if loss >= 1.0 || failed > 0 {
            break;
        }
        best = Some(n);
    }
    match best {
        Some(n) => {
            println!("largest load with under 1 % loss and no failed call: {n} concurrent calls")
        }
        None => println!("even the smallest load lost 1 % or more"),
    }
    drop((gateway, sipp));
    caller.shutdown().await.unwrap();
    network.shutdown().await.unwrap();
}
