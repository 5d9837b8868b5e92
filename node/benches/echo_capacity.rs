//! How many concurrent echo calls one gateway core carries with under 1 % loss.
//!
//! The gateway is a real `interlink node` process with the echo back-end, pinned to CPU 0
//! (`taskset -c 0`). This process, pinned to CPU 1, is the bootstrap node and the caller:
//! it places N calls through the gateway at 100 new calls a second, each sending a 50
//! packet/s G.711 tone over WebRTC (SRTP) and checking the echo, holds them (20 s, so all
//! N overlap), hangs up and sums the loss
//! (`1 − received / sent`). N grows until the loss passes 1 % or calls fail. For each N it
//! prints the loss and the CPU each side used while all N calls were up, so it is clear
//! which side ran out first.
//!
//! `cargo bench -p interlink-node --bench echo_capacity [-- HOLD_SECONDS]`
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    missing_docs
)]

mod capacity;

use interlink_node::config::DhtSection;
use interlink_node::local_network::LocalNetwork;

use capacity::CALL_RATE;

const STEPS: &[usize] = &[100, 300, 500, 600, 700, 800, 900, 1000];

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    interlink_node::logging::init(interlink_node::logging::LogFormat::Human, "error");
    let hold = capacity::pin_load_generator();
    let network = LocalNetwork::start(0, vec![], &DhtSection::default())
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (gateway, peer_id) = capacity::start_gateway(
        dir.path(),
        &network.bootstrap_addr.to_string(),
        "[gateway]\nname = \"Echo\"\ncapacity = 10000\n[gateway.echo]\nring_ms = 0\n\
         [[gateway.routes]]\nprefix = \"+44\"\ncurrency = \"GBP\"\nper_minute = \"0.01\"\n",
        None,
    );
    let caller = network.caller().await.unwrap();
    println!(
        "echo gateway pinned to CPU 0, callers pinned to CPU 1; calls arrive at {CALL_RATE}/s \
         and are held {hold} s; 50 packets/s each way per call"
    );
    capacity::ramp(
        &caller,
        &peer_id,
        hold,
        STEPS,
        &[("gateway", gateway.0.id()), ("caller", std::process::id())],
        |media| media.packets_received,
    )
    .await;
    drop(gateway);
    caller.shutdown().await.unwrap();
    network.shutdown().await.unwrap();
}
