//! Calls on 127.0.0.1 between in-process nodes, each with its own libp2p swarm and real
//! WebRTC media: echo calls, failover, price changes, capacity, tampered receipts, and
//! receipts that outlive a restart.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use interlink_gateway_plugin::echo::{Answering, EchoConfig};
use interlink_gateway_plugin::webrtc_leg::{MediaSettings, WebRtcLeg};
use interlink_node::calls::caller::{self, CallError, CallOptions, Progress};
use interlink_node::calls::wire::{self, CALL_PROTOCOL};
use interlink_node::clock;
use interlink_node::config::{BackendSpec, DhtSection, GatewayPlan};
use interlink_node::local_network::{LocalNetwork, caller_spec, loopback_spec};
use interlink_node::network::Placement;
use interlink_node::node::Node;
use interlink_protocol::call::{
    Frame, GatewayCall, ReceiptDispute, SignedInvite, SignedReceipt, Timers,
};
use interlink_protocol::discovery::IndexKey;
use interlink_protocol::offer::ServiceOffer;
use interlink_protocol::ranking::{Policy, PolicyKind};
use interlink_protocol::{Money, SignedOffer};
use libp2p::identity::Keypair;
use support::{free_uk_service_offer, plan, route, uk_mobile, wait_for};

const DEADLINE: Duration = Duration::from_secs(30);

fn echo(plan: GatewayPlan, config: EchoConfig) -> GatewayPlan {
    GatewayPlan {
        backend: BackendSpec::Echo(config),
        ..plan
    }
}

fn quick_echo(name: &str, per_minute: u64) -> GatewayPlan {
    echo(
        plan(name, &[("+44", per_minute)], 420, 600),
        EchoConfig {
            ring_ms: 100,
            ..EchoConfig::default()
        },
    )
}

async fn network(gateways: Vec<GatewayPlan>) -> LocalNetwork {
    let network = LocalNetwork::start(3, gateways, &DhtSection::default())
        .await
        .expect("network");
    network.wait_published(DEADLINE).await.expect("published");
    network
}

/// Cheapest first, so the test decides the order of attempts by price.
fn options(hold: Duration) -> CallOptions {
    CallOptions {
        policy: Policy {
            kind: PolicyKind::Cheapest,
            ..Policy::default()
        },
        hold_for: hold,
        ..CallOptions::new(uk_mobile())
    }
}

/// Collects progress events.
#[derive(Default, Clone)]
struct Log(Arc<Mutex<Vec<Progress>>>);

impl Log {
    fn sink(&self) -> impl Fn(Progress) + Send + Sync + use<> {
        let events = Arc::clone(&self.0);
        move |p| events.lock().unwrap().push(p)
    }

    fn events(&self) -> Vec<Progress> {
        self.0.lock().unwrap().clone()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_echo_call_carries_rtp_both_ways_and_settles_the_same_receipt_on_both_sides() {
    let network = network(vec![quick_echo("Echo", 2)]).await;
    let caller = network.caller().await.unwrap();
    let log = Log::default();
    let report = caller::place_call(
        &caller.caller(),
        &options(Duration::from_secs(3)),
        &log.sink(),
    )
    .await
    .unwrap();

    let media = &report.media;
    assert!(media.packets_sent >= 100, "3 s of 20 ms packets: {media:?}");
    assert!(
        media.packets_received * 10 > media.packets_sent * 9,
        "more than 90 % came back: {media:?}"
    );
    assert!(
        media.echo_matches * 10 > media.packets_sent * 9,
        "payloads match: {media:?}"
    );
    assert_eq!(media.echo_mismatches, 0);
    assert!(report.command_to_first_media_ms.is_some());
    assert_eq!(
        (report.ended_by.as_str(), report.receipt.status.as_str()),
        ("caller", "settled")
    );
    assert_eq!(
        report.receipt.billed_seconds,
        Some(60),
        "3 s in 60 s increments"
    );
    assert_eq!(report.receipt.amount_minor, Some(2));

    let names: Vec<&str> = log
        .events()
        .iter()
        .map(|p| match p {
            Progress::Found { .. } => "found",
            Progress::Inviting { .. } => "inviting",
            Progress::Trying { .. } => "trying",
            Progress::SessionProgress { .. } => "early answer",
            Progress::Ringing { .. } => "ringing",
            Progress::Answered { .. } => "answered",
            Progress::MediaStarted { .. } => "media",
            Progress::HangingUp => "hanging up",
            _ => "other",
        })
        .collect();
    // The media is answered (and connects) before the callee rings.
    assert_eq!(
        names,
        [
            "found",
            "inviting",
            "trying",
            "early answer",
            "ringing",
            "answered",
            "media",
            "hanging up"
        ]
    );

    // The gateway stores the receipt once the countersignature arrives: the same bytes.
    let caller_rows = caller.store().receipts().await.unwrap();
    let gateway = &network.gateways[0];
    let gateway_rows = wait_for("the gateway's receipt", DEADLINE, || async {
        let rows = gateway.store().receipts().await.ok()?;
        (!rows.is_empty()).then_some(rows)
    })
    .await;
    assert_eq!(caller_rows.len(), 1);
    assert_eq!(
        gateway_rows[0].signed_bytes_hex,
        caller_rows[0].signed_bytes_hex
    );
    assert_eq!(
        (caller_rows[0].role.as_str(), gateway_rows[0].role.as_str()),
        ("caller", "gateway")
    );
    caller.shutdown().await.unwrap();
    network.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_gateway_fails_over_to_the_next() {
    let busy = echo(
        plan("Busy Cheap", &[("+44", 1)], 420, 600),
        EchoConfig {
            ring_ms: 50,
            answering: Answering::Busy,
            ..EchoConfig::default()
        },
    );
    let network = network(vec![busy, quick_echo("Answers", 3)]).await;
    let caller = network.caller().await.unwrap();
    let log = Log::default();
    let report = caller::place_call(
        &caller.caller(),
        &options(Duration::from_millis(500)),
        &log.sink(),
    )
    .await
    .unwrap();
    assert_eq!(report.gateway, "Answers");
    assert_eq!(report.failovers.len(), 1);
    assert_eq!(
        (
            report.failovers[0].gateway.as_str(),
            report.failovers[0].outcome.as_str()
        ),
        ("Busy Cheap", "busy")
    );
    assert!(log.events().contains(&Progress::FailedOver {
        gateway: "Busy Cheap".into(),
        reason: "busy".into()
    }));
    // The failure is in the caller's history, which now ranks the busy gateway lower.
    let history = caller.store().history().await.unwrap();
    let busy_id = network.gateways[0]
        .publisher()
        .unwrap()
        .latest()
        .unwrap()
        .offer
        .provider();
    assert_eq!(
        history.get(&busy_id).map(|h| (h.attempts, h.answered)),
        Some((1, 0))
    );
    caller.shutdown().await.unwrap();
    network.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_price_changed_after_discovery_is_refused_and_paid_only_within_the_limit() {
    let network = network(vec![quick_echo("Changer", 2), quick_echo("Steady", 4)]).await;
    let caller = network.caller().await.unwrap();
    let context = caller.caller();

    // Discovery sees 0.02 GBP; then the gateway raises its price to 0.03 GBP.
    let stale = caller::plan_call(&context, &options(Duration::from_millis(300)))
        .await
        .unwrap();
    assert_eq!(stale.candidates[0].route.tariff.per_minute, 2);
    network.gateways[0]
        .publisher()
        .unwrap()
        .set_routes(vec![route("+44", 3)])
        .await
        .unwrap();

    // Without a price limit the caller will not pay the new price: it fails over.
    let report = caller::run_call(
        &context,
        &options(Duration::from_millis(300)),
        &stale,
        Instant::now(),
        &|_| {},
    )
    .await
    .unwrap();
    assert_eq!(report.gateway, "Steady");
    assert!(
        report.failovers[0]
            .outcome
            .starts_with("price changed (now 0.03 GBP/min"),
        "{:?}",
        report.failovers
    );

    // With a limit of 0.03 GBP it takes the new price from the same gateway.
    let mut within = options(Duration::from_millis(300));
    within.policy.max_price_per_minute = Some(Money::parse("0.03 GBP", None).unwrap());
    let log = Log::default();
    let report = caller::run_call(&context, &within, &stale, Instant::now(), &log.sink())
        .await
        .unwrap();
    assert_eq!(
        (report.gateway.as_str(), report.price_per_minute.as_str()),
        ("Changer", "0.03")
    );
    assert!(report.failovers.is_empty());
    assert!(
        log.events()
            .iter()
            .any(|p| matches!(p, Progress::Repricing { .. }))
    );
    assert_eq!(report.receipt.status, "settled");
    caller.shutdown().await.unwrap();
    network.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_at_capacity_refuses_with_over_capacity() {
    let single = GatewayPlan {
        capacity: 1,
        ..quick_echo("Single", 2)
    };
    let network = network(vec![single]).await;
    let first = network.caller().await.unwrap();
    let second = network.caller().await.unwrap();
    let log = Log::default();
    let sink = log.sink();
    let first_context = first.caller();
    let long_call = tokio::spawn(async move {
        caller::place_call(&first_context, &options(Duration::from_secs(4)), &sink).await
    });
    wait_for("the first call to be answered", DEADLINE, || async {
        log.events()
            .iter()
            .any(|p| matches!(p, Progress::Answered { .. }))
            .then_some(())
    })
    .await;
    let refused =
        caller::place_call(&second.caller(), &options(Duration::from_secs(1)), &|_| {}).await;
    match refused {
        Err(CallError::NoAnswer { attempts }) => assert_eq!(attempts[0].outcome, "over capacity"),
        other => panic!("expected over capacity, got {other:?}"),
    }
    assert_eq!(
        long_call.await.unwrap().unwrap().receipt.status,
        "settled",
        "the first call is unharmed"
    );
    first.shutdown().await.unwrap();
    second.shutdown().await.unwrap();
    network.shutdown().await.unwrap();
}

/// A gateway that follows the protocol but bills double: its offer is real and signed, its
/// media a real echo, its receipt signed by its key with twice the amount.
async fn run_overcharging_gateway(node: &Node, refusals: Arc<Mutex<Vec<ReceiptDispute>>>) {
    let key = node.caller().key;
    let client = node.client().clone();
    let status = client.status().await.unwrap();
    let offer = ServiceOffer {
        routes: vec![route("+44", 1)],
        quality: interlink_protocol::offer::ClaimedQuality {
            answer_seizure_ratio: interlink_protocol::offer::Permille(900),
            post_dial_delay_ms: 500,
            mos: interlink_protocol::offer::Mos(450),
        },
        capacity: 10,
        addresses: status.listen_addrs,
        ..free_uk_service_offer(key.provider_id(), "Double Billing")
    };
    let offer = SignedOffer::sign(offer, &key).unwrap();
    client
        .put_offer(offer.clone(), Placement::Find)
        .await
        .unwrap();
    let indexed = client
        .index_offer(offer, IndexKey::of_number(&uk_mobile()), Placement::Find)
        .await
        .unwrap();
    assert!(indexed.stored > 0, "{indexed:?}");

    let mut incoming = client.streams().accept(CALL_PROTOCOL).unwrap();
    tokio::spawn(async move {
        let (_, stream) = incoming.next().await.unwrap();
        let (mut writer, mut frames) = wire::split(stream);
        let Some(Ok(Frame::Invite(bytes))) = frames.recv().await else {
            panic!("no invite")
        };
        let invite = SignedInvite::decode(&bytes, clock::now()).unwrap();
        let (mut leg, answer) =
            WebRtcLeg::answer(&invite.invite().sdp_offer, &MediaSettings::loopback())
                .await
                .unwrap();
        let mut call = GatewayCall::new(invite, key.clone(), Timers::default());
        call.admit(clock::now());
        call.answered(answer, clock::now());
        // Its leg echoes whatever comes: it counts the caller's media as arriving (the
        // caller's `MediaReceived` then makes the call chargeable).
        call.media_started(clock::now());
        let echo = tokio::spawn(async move {
            while let Some(packet) = leg.recv().await {
                let _ = leg.send(&packet).await;
            }
        });
        loop {
            while let Some(frame) = call.poll_transmit() {
                let frame = match frame {
                    Frame::Receipt(bytes) => {
                        let mut receipt = SignedReceipt::decode(&bytes).unwrap().receipt().clone();
                        receipt.amount.minor_units *= 2;
                        Frame::Receipt(
                            SignedReceipt::sign(receipt, &key)
                                .unwrap()
                                .as_bytes()
                                .to_vec(),
                        )
                    }
                    other => other,
                };
                writer.send(&frame).await.unwrap();
            }
            match frames.recv().await {
                Some(Ok(Frame::ReceiptRefused(dispute))) => {
                    refusals.lock().unwrap().push(dispute);
                    break;
                }
                Some(Ok(frame)) => call.handle_frame(frame, clock::now()),
                _ => break,
            }
        }
        echo.abort();
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tampered_receipt_is_refused_by_the_caller() {
    let network = network(vec![]).await;
    let refusals = Arc::new(Mutex::new(Vec::new()));
    run_overcharging_gateway(&network.peers[0], Arc::clone(&refusals)).await;
    let caller = network.caller().await.unwrap();
    let report = caller::place_call(&caller.caller(), &options(Duration::from_secs(1)), &|_| {})
        .await
        .unwrap();
    assert_eq!(report.gateway, "Double Billing");
    assert_eq!(report.receipt.status, "disputed");
    assert!(
        report
            .receipt
            .dispute
            .as_deref()
            .unwrap()
            .contains("minor units"),
        "{:?}",
        report.receipt
    );
    let refused = wait_for("the refusal at the gateway", DEADLINE, || async {
        refusals.lock().unwrap().first().cloned()
    })
    .await;
    assert!(
        matches!(
            refused,
            ReceiptDispute::WrongAmount {
                claimed: 2,
                expected: 1
            }
        ),
        "{refused:?}"
    );
    let rows = caller.store().receipts().await.unwrap();
    assert_eq!((rows.len(), rows[0].status.as_str()), (1, "disputed"));
    caller.shutdown().await.unwrap();
    network.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receipts_are_in_both_databases_after_both_nodes_restart() {
    let dirs = tempfile::tempdir().unwrap();
    let (gateway_dir, caller_dir) = (dirs.path().join("gateway"), dirs.path().join("caller"));
    let network = network(vec![]).await;
    let gateway_key = Keypair::generate_ed25519();
    let caller_key = Keypair::generate_ed25519();
    let start_gateway = || {
        let mut spec = loopback_spec(
            Some(network.bootstrap_addr.clone()),
            Some(quick_echo("Durable", 2)),
            &DhtSection::default(),
        );
        spec.data_dir = Some(gateway_dir.clone());
        Node::start(spec, gateway_key.clone())
    };
    let start_caller = || {
        let mut spec = caller_spec(vec![network.bootstrap_addr.clone()], &DhtSection::default());
        spec.data_dir = Some(caller_dir.clone());
        Node::start(spec, caller_key.clone())
    };
    let gateway = start_gateway().await.unwrap();
    gateway
        .publisher()
        .unwrap()
        .wait_replicated(DEADLINE)
        .await
        .unwrap();
    let caller = start_caller().await.unwrap();
    let report = caller::place_call(&caller.caller(), &options(Duration::from_secs(1)), &|_| {})
        .await
        .unwrap();
    assert_eq!(report.receipt.status, "settled");
    wait_for("the gateway's receipt", DEADLINE, || async {
        (!gateway.store().receipts().await.ok()?.is_empty()).then_some(())
    })
    .await;
    caller.shutdown().await.unwrap();
    gateway.shutdown().await.unwrap();

    let gateway = start_gateway().await.unwrap();
    let caller = start_caller().await.unwrap();
    let at_gateway = gateway.store().receipts().await.unwrap();
    let at_caller = caller.store().receipts().await.unwrap();
    assert_eq!((at_gateway.len(), at_caller.len()), (1, 1));
    assert_eq!(at_gateway[0].call_id, report.call_id);
    assert_eq!(
        at_gateway[0].signed_bytes_hex,
        at_caller[0].signed_bytes_hex
    );
    let settled = interlink_protocol::call::SettledReceipt::decode(
        &(0..at_caller[0].signed_bytes_hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&at_caller[0].signed_bytes_hex[i..i + 2], 16).unwrap())
            .collect::<Vec<_>>(),
    )
    .unwrap();
    assert_eq!(settled.receipt().billed_seconds, 60);
    // Both sides hold a complete record of the call (the restart marked nothing as
    // interrupted), each with its settled receipt.
    let records = |calls: Vec<interlink_node::store::CallRow>| {
        calls
            .into_iter()
            .map(|c| (c.call_id, c.ending, c.receipt, c.ended_at_ms.is_some()))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        records(gateway.store().calls().await.unwrap()),
        vec![(
            report.call_id.clone(),
            Some("settled".to_owned()),
            "settled".to_owned(),
            true
        )]
    );
    assert_eq!(
        records(caller.store().calls().await.unwrap()),
        vec![(
            report.call_id.clone(),
            Some("the caller hung up (by the caller)".to_owned()),
            "settled".to_owned(),
            true
        )]
    );
    caller.shutdown().await.unwrap();
    gateway.shutdown().await.unwrap();
    network.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_echo_callee_that_hangs_up_ends_the_call_with_the_cause() {
    let quitter = echo(
        plan("Quitter", &[("+44", 2)], 420, 600),
        EchoConfig {
            ring_ms: 50,
            hang_up_after_secs: 1,
            ..EchoConfig::default()
        },
    );
    let network = network(vec![quitter]).await;
    let caller = network.caller().await.unwrap();
    let started = Instant::now();
    // The caller would hold for a minute; the callee hangs up after a second.
    let report = caller::place_call(&caller.caller(), &options(Duration::from_secs(60)), &|_| {})
        .await
        .unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "ended by the callee, not the hold: {:?}",
        started.elapsed()
    );
    assert_eq!(
        (report.ended_by.as_str(), report.cause.as_str()),
        ("gateway", "the callee hung up")
    );
    assert_eq!(report.receipt.status, "settled");
    caller.shutdown().await.unwrap();
    network.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_callee_that_never_answers_times_out_and_the_next_gateway_answers() {
    let silent = echo(
        plan("Silent", &[("+44", 1)], 420, 600),
        EchoConfig {
            answering: Answering::NeverAnswer,
            ..EchoConfig::default()
        },
    );
    let network = network(vec![silent, quick_echo("Answers", 2)]).await;
    let caller = network.caller().await.unwrap();
    let mut options = options(Duration::from_millis(300));
    options.timers.answer = Duration::from_secs(2);
    let report = caller::place_call(&caller.caller(), &options, &|_| {})
        .await
        .unwrap();
    assert_eq!(report.gateway, "Answers");
    assert_eq!(report.failovers[0].gateway, "Silent");
    assert_eq!(report.failovers[0].outcome, "timed out waiting for answer");
    assert!(
        report.command_to_answer_ms > 2000.0,
        "the silent gateway rang for the answer deadline first"
    );
    caller.shutdown().await.unwrap();
    network.shutdown().await.unwrap();
}
