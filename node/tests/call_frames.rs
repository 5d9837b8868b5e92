//! Malformed, truncated and oversized frames on the call stream of a gateway on 127.0.0.1,
//! from a peer that opens `/interlink/call/2` streams and writes bytes of its choosing:
//! each stream is closed with the error named in the gateway's metrics, and a normal call
//! goes through afterwards.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::{Duration, Instant};

use futures::{AsyncReadExt, AsyncWriteExt};
use interlink_gateway_plugin::echo::EchoConfig;
use interlink_gateway_plugin::webrtc_leg::MediaSettings;
use interlink_node::calls::caller::{self, CallOptions};
use interlink_node::calls::media::ToneCall;
use interlink_node::calls::wire::{self, CALL_PROTOCOL};
use interlink_node::clock;
use interlink_node::config::{BackendSpec, DhtSection, GatewayPlan};
use interlink_node::local_network::LocalNetwork;
use interlink_node::metrics::MetricsServer;
use interlink_node::node::Node;
use interlink_protocol::call::messages::MAX_FRAME_BYTES;
use interlink_protocol::call::{CallId, Frame, Invite, OfferRef, RejectReason, SignedInvite};
use support::scrape::{count, scrape};
use support::{plan, uk_mobile, wait_for};

const DEADLINE: Duration = Duration::from_secs(30);
/// The gateway waits 5 s for an invite; a silent stream is closed soon after.
const CLOSED_WITHIN: Duration = Duration::from_secs(8);

fn framed(frame: &Frame) -> Vec<u8> {
    let body = frame.encode().unwrap();
    let mut bytes = u32::try_from(body.len()).unwrap().to_be_bytes().to_vec();
    bytes.extend(body);
    bytes
}

/// Opens a call stream from `from` to `gateway`, writes `bytes` (then closes its sending
/// side if `finish`), and returns what the gateway sent back before the stream closed.
async fn exchange(from: &Node, gateway: &Node, bytes: Vec<u8>, finish: bool) -> Vec<u8> {
    from.client()
        .dial(gateway.peer_id(), gateway.dialable_addrs().await)
        .await
        .unwrap();
    let mut stream = from
        .client()
        .streams()
        .open_stream(gateway.peer_id(), CALL_PROTOCOL)
        .await
        .unwrap();
    let started = Instant::now();
    stream.write_all(&bytes).await.unwrap();
    stream.flush().await.unwrap();
    if finish {
        stream.close().await.unwrap();
    }
    let mut answer = Vec::new();
    // The end of the stream, or a reset: either way the gateway closed it.
    let _ = tokio::time::timeout(CLOSED_WITHIN, stream.read_to_end(&mut answer))
        .await
        .unwrap_or_else(|_| panic!("the gateway left the stream open after {CLOSED_WITHIN:?}"));
    assert!(started.elapsed() < CLOSED_WITHIN);
    answer
}

async fn sturdy_network() -> LocalNetwork {
    let gateway_plan = GatewayPlan {
        backend: BackendSpec::Echo(EchoConfig {
            ring_ms: 0,
            ..EchoConfig::default()
        }),
        ..plan("Sturdy", &[("+44", 2)], 420, 600)
    };
    LocalNetwork::start(2, vec![gateway_plan], &DhtSection::default())
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_frames_close_their_stream_with_a_named_error_and_calls_go_on() {
    let network = sturdy_network().await;
    network.wait_published(DEADLINE).await.unwrap();
    let gateway = &network.gateways[0];
    let metrics = MetricsServer::start("127.0.0.1:0".parse().unwrap(), gateway.metrics().clone())
        .await
        .unwrap();
    let bad = network.caller().await.unwrap();

    let over_the_limit = u32::try_from(MAX_FRAME_BYTES + 1).unwrap().to_be_bytes();
    let mut cut_short = 100u32.to_be_bytes().to_vec();
    cut_short.extend([0u8; 10]);
    let cases: Vec<(&str, Vec<u8>, bool)> = vec![
        ("garbage", vec![0, 0, 0, 2, 250, 250], false),
        ("a length over the limit", over_the_limit.to_vec(), false),
        ("a length of 4 GiB", u32::MAX.to_be_bytes().to_vec(), false),
        ("a body cut short", cut_short, true),
        ("a length cut short", vec![0, 0], true),
        (
            "a frame other than an invite",
            framed(&Frame::Trying),
            false,
        ),
        ("nothing at all", Vec::new(), false),
    ];
    let answers = futures::future::join_all(
        cases
            .iter()
            .map(|(_, bytes, finish)| exchange(&bad, gateway, bytes.clone(), *finish)),
    )
    .await;
    for ((case, _, _), answer) in cases.iter().zip(&answers) {
        assert!(
            answer.is_empty(),
            "{case}: closed without a word: {answer:?}"
        );
    }

    // An invite that is not a signed invite is answered: unauthorised.
    let answer = exchange(&bad, gateway, framed(&Frame::Invite(vec![1, 2, 3])), false).await;
    let reply = wire::read_frame(&mut futures::io::Cursor::new(answer))
        .await
        .unwrap();
    assert_eq!(reply, Some(Frame::Reject(RejectReason::Unauthorised)));

    let (_, _, text) = scrape(&metrics.url()).await;
    let errors = |error: &str| {
        count(
            &text,
            &format!("interlink_call_stream_errors_total{{error=\"{error}\"}}"),
        )
    };
    assert_eq!(errors("malformed"), 1.0, "{text}");
    assert_eq!(errors("too_large"), 2.0);
    assert_eq!(errors("truncated"), 2.0);
    assert_eq!(errors("not_an_invite"), 1.0);
    assert_eq!(errors("no_invite"), 1.0);
    assert_eq!(errors("invalid_invite"), 1.0);
    assert_eq!(
        count(
            &text,
            "interlink_limit_refusals_total{limit=\"call_frame_size\"}"
        ),
        2.0
    );
    assert_eq!(
        count(&text, "interlink_calls_active{role=\"gateway\"}"),
        0.0
    );

    // The gateway is unaffected: a normal call, from the same peer, is answered and settled.
    let options = CallOptions {
        hold_for: Duration::from_millis(300),
        ..CallOptions::new(uk_mobile())
    };
    let report = caller::place_call(&bad.caller(), &options, &|_| {})
        .await
        .unwrap();
    assert_eq!(
        (report.gateway.as_str(), report.receipt.status.as_str()),
        ("Sturdy", "settled")
    );
    wait_for("the gateway's receipt", DEADLINE, || async {
        let (_, _, text) = scrape(&metrics.url()).await;
        (count(
            &text,
            "interlink_receipts_written_total{role=\"gateway\",status=\"settled\"}",
        ) == 1.0)
            .then_some(())
    })
    .await;

    metrics.shutdown().await;
    bad.shutdown().await.unwrap();
    network.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_in_an_answered_call_ends_it_with_a_receipt_the_caller_never_signed() {
    let network = sturdy_network().await;
    network.wait_published(DEADLINE).await.unwrap();
    let gateway = &network.gateways[0];
    let metrics = MetricsServer::start("127.0.0.1:0".parse().unwrap(), gateway.metrics().clone())
        .await
        .unwrap();
    let bad = network.caller().await.unwrap();

    // A genuine invite, with a real WebRTC offer, so that the echo back-end answers.
    let offer = gateway.publisher().unwrap().latest().unwrap().offer;
    let route = offer.offer().best_route(&uk_mobile()).unwrap().clone();
    let (tone, sdp_offer) = ToneCall::offer(&MediaSettings::loopback(), 440.0)
        .await
        .unwrap();
    let key = bad.caller().key;
    let invite = Invite {
        call_id: CallId::from_bytes(rand::random()),
        destination: uk_mobile(),
        offer: OfferRef {
            provider: offer.provider(),
            seq: offer.seq(),
        },
        prefix: route.prefix,
        tariff: route.tariff,
        caller: key.provider_id(),
        sdp_offer,
        sent_at: clock::now(),
    };
    let invite = SignedInvite::sign(invite, &key).unwrap();
    bad.client()
        .dial(gateway.peer_id(), gateway.dialable_addrs().await)
        .await
        .unwrap();
    let mut stream = bad
        .client()
        .streams()
        .open_stream(gateway.peer_id(), CALL_PROTOCOL)
        .await
        .unwrap();
    stream
        .write_all(&framed(&Frame::Invite(invite.as_bytes().to_vec())))
        .await
        .unwrap();
    stream.flush().await.unwrap();
    tokio::time::timeout(DEADLINE, async {
        loop {
            match wire::read_frame(&mut stream).await.unwrap() {
                Some(Frame::Answer { .. }) => return,
                Some(_) => continue,
                None => panic!("the gateway closed the stream before answering"),
            }
        }
    })
    .await
    .expect("an answer");
    let (_, _, text) = scrape(&metrics.url()).await;
    assert_eq!(
        count(&text, "interlink_calls_active{role=\"gateway\"}"),
        1.0
    );

    stream.write_all(&[0, 0, 0, 2, 250, 250]).await.unwrap();
    stream.flush().await.unwrap();
    let mut rest = Vec::new();
    tokio::time::timeout(CLOSED_WITHIN, stream.read_to_end(&mut rest))
        .await
        .expect("the gateway closes the stream")
        .ok();
    tone.close().await;

    // The gateway writes the receipt, then completes the call's record and only then
    // counts the call as over: wait for both.
    let text = wait_for(
        "the gateway's receipt and the call's end",
        DEADLINE,
        || async {
            let (_, _, text) = scrape(&metrics.url()).await;
            (count(
                &text,
                "interlink_receipts_written_total{role=\"gateway\",status=\"unacknowledged\"}",
            ) == 1.0
                && count(&text, "interlink_calls_active{role=\"gateway\"}") == 0.0)
                .then_some(text)
        },
    )
    .await;
    assert_eq!(
        count(
            &text,
            "interlink_call_stream_errors_total{error=\"malformed\"}"
        ),
        1.0
    );
    assert_eq!(
        count(&text, "interlink_calls_active{role=\"gateway\"}"),
        0.0
    );
    let receipts = gateway.store().receipts().await.unwrap();
    assert_eq!(
        receipts.len(),
        1,
        "the gateway kept the receipt of the answered time"
    );

    metrics.shutdown().await;
    bad.shutdown().await.unwrap();
    network.shutdown().await.unwrap();
}
