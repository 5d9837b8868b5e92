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

mod capacity;

use std::net::UdpSocket;
use std::process::{Command, Stdio};

use interlink_node::config::DhtSection;
use interlink_node::local_network::LocalNetwork;

use capacity::{CALL_RATE, Process};

const STEPS: &[usize] = &[100, 200, 300, 400, 500, 600, 700, 800, 900];

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

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    interlink_node::logging::init(interlink_node::logging::LogFormat::Human, "error");
    let hold = capacity::pin_load_generator();
    let (sipp, sip_port) = start_sipp();
    let network = LocalNetwork::start(0, vec![], &DhtSection::default())
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    // The node's default log filter, and rsipstack's warnings only: it logs every SIP
    // message at info, which would cost the gateway CPU here.
    let (gateway, peer_id) = capacity::start_gateway(
        dir.path(),
        &network.bootstrap_addr.to_string(),
        &format!(
            "[gateway]\nname = \"SIP\"\ncapacity = 10000\nbackend = \"sip\"\n\
             [gateway.sip]\nhost = \"127.0.0.1\"\nport = {sip_port}\nlocal_address = \"127.0.0.1:0\"\n\
             [[gateway.routes]]\nprefix = \"+44\"\ncurrency = \"GBP\"\nper_minute = \"0.01\"\n"
        ),
        Some(
            "info,rsipstack=warn,libp2p_kad=warn,libp2p_swarm=warn,rtc=error,rtc_dtls=error,\
             rtc_ice=error,rtc_srtp=error,rtc_sctp=error,rtc_interceptor=error",
        ),
    );
    let caller = network.caller().await.unwrap();
    println!(
        "SIP gateway pinned to CPU 0; callers and sipp (uas, -rtp_echo) pinned to CPU 1; \
         calls arrive at {CALL_RATE}/s and are held {hold} s; 50 packets/s each way per call, \
         WebRTC (SRTP) caller ↔ gateway, plain RTP gateway ↔ sipp"
    );
    capacity::ramp(
        &caller,
        &peer_id,
        hold,
        STEPS,
        &[
            ("gateway", gateway.0.id()),
            ("caller", std::process::id()),
            ("sipp", sipp.0.id()),
        ],
        |media| media.echo_matches,
    )
    .await;
    drop((gateway, sipp));
    caller.shutdown().await.unwrap();
    network.shutdown().await.unwrap();
}
