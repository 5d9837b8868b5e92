//! Call setup through the SIP trunk bridge, on 127.0.0.1 with real libp2p, WebRTC and a
//! real SIP callee: sipp's built-in `uas` (180 then 200 at once, RTP echoed). Measures
//! `Invite` → `Answer` (the gateway's INVITE → 200 → WebRTC answer included), command →
//! answer (discovery included) and command → first media packet (the caller's first
//! packet back from sipp through both legs), over many calls. Prints percentiles.
//!
//! `cargo bench -p interlink-node --bench sip_call_setup [-- CALLS]` (needs `sipp`)
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    missing_docs
)]

mod common;

use std::net::UdpSocket;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::report;
use interlink_gateway_plugin::sip::SipConfig;
use interlink_node::calls::caller::{self, CallOptions};
use interlink_node::config::{BackendSpec, DhtSection, GatewayPlan};
use interlink_node::local_network::LocalNetwork;
use interlink_protocol::offer::{Route, Tariff};
use interlink_protocol::{Currency, E164, Prefix};

/// sipp, killed when dropped.
struct Sipp(Child);

impl Drop for Sipp {
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

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let calls: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(60);
    let (sip_port, media_port) = (free_port(), free_port());
    let _sipp = Sipp(
        Command::new("sipp")
            .args(["-sn", "uas", "-rtp_echo", "-nostdin"])
            .args(["-i", "127.0.0.1", "-mi", "127.0.0.1"])
            .args(["-p", &sip_port.to_string(), "-mp", &media_port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("sipp (Debian package sip-tester)"),
    );
    let route = Route {
        prefix: Prefix::new("+44").unwrap(),
        tariff: Tariff {
            currency: Currency::new("GBP").unwrap(),
            setup_fee: 0,
            per_minute: 2,
            billing_increment_secs: 60,
        },
    };
    let mut trunk = SipConfig::new("127.0.0.1", sip_port);
    trunk.local_address = "127.0.0.1:0".parse().unwrap();
    let gateway = GatewayPlan {
        backend: BackendSpec::Sip(Box::new(trunk)),
        ..GatewayPlan::new("SIP Trunk", vec![route])
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
        "{calls} calls through a SIP gateway to sipp's uas (answers at once, echoes RTP), \
         6 nodes on 127.0.0.1, each held 200 ms"
    );

    let (mut invite_to_answer, mut command_to_answer, mut command_to_media) =
        (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..calls {
        let report = caller::place_call(&caller.caller(), &options, &|_| {})
            .await
            .unwrap();
        assert_eq!(report.receipt.status, "settled");
        assert_eq!(report.media.echo_mismatches, 0);
        let ms = |v: f64| Duration::from_secs_f64(v / 1000.0);
        invite_to_answer.push(ms(report.invite_to_answer_ms));
        command_to_answer.push(ms(report.command_to_answer_ms));
        command_to_media.push(ms(report.command_to_first_media_ms.expect("media")));
    }
    report(
        "Invite → Answer (SIP INVITE → 200 inside)",
        invite_to_answer,
    );
    report("command → Answer (discovery included)", command_to_answer);
    report("command → first echoed media packet", command_to_media);
    let started = Instant::now();
    caller.shutdown().await.unwrap();
    network.shutdown().await.unwrap();
    println!("shut down in {:.1} s", started.elapsed().as_secs_f64());
}
