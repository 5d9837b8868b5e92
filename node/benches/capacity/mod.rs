//! What the gateway capacity benchmarks share: a gateway process pinned to CPU 0, the load
//! generator (this process) pinned to CPU 1, and the ramp that places N calls at a fixed
//! rate, holds them so that all N overlap, and reports loss and each process's CPU.
#![allow(
    unreachable_pub,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout
)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use interlink_node::calls::caller::{self, CallOptions};
use interlink_node::calls::media::MediaReport;
use interlink_node::node::Node;
use interlink_protocol::E164;
use interlink_protocol::ranking::{Policy, PolicyKind};

const BIN: &str = env!("CARGO_BIN_EXE_interlink");
/// New calls per second while a load ramps up.
pub const CALL_RATE: u32 = 100;

/// A child process, killed when dropped.
pub struct Process(pub Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

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

/// Pins this process (every thread) to CPU 1 and returns how long calls are held: the
/// first numeric argument, 20 s by default.
pub fn pin_load_generator() -> u64 {
    let pinned = Command::new("taskset")
        .args(["-a", "-p", "-c", "1", &std::process::id().to_string()])
        .output();
    assert!(
        pinned.is_ok_and(|o| o.status.success()),
        "taskset could not pin the load generator to CPU 1"
    );
    std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(20)
}

/// Starts `interlink node` on CPU 0 with a config of a loopback network joined through
/// `bootstrap` plus `gateway` (its `[gateway]` sections), with `RUST_LOG` set to `log` if
/// given; returns it and its peer id once its offer is published.
pub fn start_gateway(
    dir: &Path,
    bootstrap: &str,
    gateway: &str,
    log: Option<&str>,
) -> (Process, String) {
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
             [media]\nip = \"127.0.0.1\"\n{gateway}"
        ),
    )
    .unwrap();
    let mut command = Command::new("taskset");
    command
        .args([
            "-c",
            "0",
            BIN,
            "--log-format",
            "json",
            "node",
            "--no-api",
            "--config",
        ])
        .arg(&config);
    if let Some(filter) = log {
        command.env("RUST_LOG", filter);
    }
    let mut child = command
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
    assert!(!peer_id.is_empty(), "the gateway never logged its peer id");
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

/// Places `n` calls for each `n` of `steps` through the gateway `peer_id`, at
/// [`CALL_RATE`], each held `hold` seconds, until the loss reaches 1 % or a call fails.
/// Prints a row per step: packets sent, `received` (what counts as back), loss, failures,
/// and the CPU share of each of `processes` (name, pid) while all `n` calls were up.
pub async fn ramp(
    caller: &Node,
    peer_id: &str,
    hold: u64,
    steps: &[usize],
    processes: &[(&str, u32)],
    received: fn(&MediaReport) -> u64,
) {
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
    print!(
        "{:>6} {:>10} {:>10} {:>8} {:>8}",
        "calls", "sent", "received", "loss %", "failed"
    );
    for (name, _) in processes {
        print!(" {:>12}", format!("{name} CPU"));
    }
    println!("\n(CPU: share of one core while all calls are up)");

    let mut best = None;
    for &n in steps {
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
        let before: Vec<f64> = processes.iter().map(|&(_, pid)| cpu_seconds(pid)).collect();
        let window = Instant::now();
        tokio::time::sleep(Duration::from_secs(hold / 2)).await;
        let seconds = window.elapsed().as_secs_f64();
        let shares: Vec<f64> = processes
            .iter()
            .zip(before)
            .map(|(&(_, pid), before)| (cpu_seconds(pid) - before) / seconds * 100.0)
            .collect();
        let (mut sent, mut back, mut failed) = (0u64, 0u64, 0usize);
        for call in calls {
            match call.await.unwrap() {
                Ok(report) => {
                    sent += report.media.packets_sent;
                    back += received(&report.media).min(report.media.packets_sent);
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
            (sent - back) as f64 / sent as f64 * 100.0
        };
        print!("{n:>6} {sent:>10} {back:>10} {loss:>8.2} {failed:>8}");
        for share in shares {
            print!(" {share:>11.0}%");
        }
        println!();
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
}
