//! Call setup through an echo gateway that answers at once, on 127.0.0.1 with real
//! libp2p and WebRTC: `Invite` → `Answer`, command → answer (discovery included) and
//! command → first media packet, over many calls. Prints percentiles.
//!
//! `cargo bench -p interlink-node --bench call_setup [-- CALLS]`
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    missing_docs
)]

mod common;

use std::time::{Duration, Instant};

use common::report;
use interlink_gateway_plugin::echo::EchoConfig;
use interlink_node::calls::caller::{self, CallOptions};
use interlink_node::config::{BackendSpec, DhtSection, GatewayPlan};
use interlink_node::local_network::LocalNetwork;
use interlink_protocol::offer::{Route, Tariff};
use interlink_protocol::{Currency, E164, Prefix};

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let calls: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(60);
    let route = Route {
        prefix: Prefix::new("+44").unwrap(),
        tariff: Tariff {
            currency: Currency::new("GBP").unwrap(),
            setup_fee: 0,
            per_minute: 2,
            billing_increment_secs: 60,
        },
    };
    let gateway = GatewayPlan {
        backend: BackendSpec::Echo(EchoConfig {
            ring_ms: 0,
            ..EchoConfig::default()
        }),
        ..GatewayPlan::new("Instant Echo", vec![route])
    };
    let network = LocalNetwork::start(3, vec![gateway], &DhtSection::default())
        .await
        .unwrap();
    network
        .wait_published(Duration::from_secs(20))
        .await
        .unwrap();
    let caller = network.caller().await.unwrap();
    let options = CallOptions {
        hold_for: Duration::from_millis(200),
        ..CallOptions::new(E164::parse("+447700900123").unwrap())
    };
    println!(
        "{calls} calls through an echo gateway that answers at once, 6 nodes on 127.0.0.1, each held 200 ms"
    );

    let (mut invite_to_answer, mut command_to_answer, mut command_to_media) =
        (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..calls {
        let report = caller::place_call(&caller.caller(), &options, &|_| {})
            .await
            .unwrap();
        assert_eq!(report.receipt.status, "settled");
        let ms = |v: f64| Duration::from_secs_f64(v / 1000.0);
        invite_to_answer.push(ms(report.invite_to_answer_ms));
        command_to_answer.push(ms(report.command_to_answer_ms));
        command_to_media.push(ms(report.command_to_first_media_ms.expect("media")));
    }
    report("Invite → Answer", invite_to_answer);
    report("command → Answer (discovery included)", command_to_answer);
    report("command → first media packet", command_to_media);
    let started = Instant::now();
    caller.shutdown().await.unwrap();
    network.shutdown().await.unwrap();
    println!("shut down in {:.1} s", started.elapsed().as_secs_f64());
}
