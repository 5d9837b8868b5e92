//! Call media over real WebRTC on 127.0.0.1, without libp2p: the node's tone call against a
//! gateway leg that echoes every packet, and the offers a gateway must refuse.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use interlink_gateway_plugin::webrtc_leg::{LegStats, MediaError, MediaSettings, WebRtcLeg};
use interlink_node::calls::media::ToneCall;
use interlink_protocol::Codec;
use support::wait_for;
use tokio::sync::oneshot;

mod support;

/// Generous: a loaded two-core machine builds and connects peers slowly.
const MEDIA_DEADLINE: Duration = Duration::from_secs(20);
/// How much of the tone the call plays once media flows: 3 s of 20 ms frames, echoed.
const AUDIO_FRAMES: u64 = 150;

/// Waits, within a deadline, for every task of this test's runtime to end, and returns how
/// many are left: a closed call must leave none (webrtc-rs runs a driver task per connection).
async fn tasks_left() -> usize {
    let metrics = tokio::runtime::Handle::current().metrics();
    let _ = support::poll(Duration::from_secs(5), || async {
        metrics.num_alive_tasks() == 0
    })
    .await;
    metrics.num_alive_tasks()
}

/// Echoes every packet the leg receives until told to stop; returns the leg.
fn spawn_echo(mut leg: WebRtcLeg) -> (oneshot::Sender<()>, tokio::task::JoinHandle<WebRtcLeg>) {
    let (stop, mut stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = &mut stopped => break,
                packet = leg.recv() => match packet {
                    Some(packet) => leg.send(&packet).await.expect("echo"),
                    None => break,
                },
            }
        }
        leg
    });
    (stop, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tone_call_against_an_echo_gateway() {
    let settings = MediaSettings::loopback();
    let (mut call, offer) = ToneCall::offer(&settings, 440.0).await.unwrap();
    assert!(
        offer.contains("127.0.0.1"),
        "no loopback candidate:\n{offer}"
    );
    let (leg, answer) = WebRtcLeg::answer(&offer, &settings).await.unwrap();
    assert_eq!(leg.codec(), Codec::Pcmu);
    assert!(answer.contains("a=candidate"), "no candidate:\n{answer}");
    let (stop_echo, echo) = spawn_echo(leg);

    let answered = Instant::now();
    call.accept_answer(&answer).await.unwrap();
    let first_echo = call.wait_first_packet(MEDIA_DEADLINE).await.unwrap();
    let waited = answered.elapsed();
    wait_for("3 s of the tone echoed", MEDIA_DEADLINE, || async {
        let report = call.report();
        if report.echo_matches >= AUDIO_FRAMES {
            Ok(())
        } else {
            Err(format!("{report:?}"))
        }
    })
    .await;
    let report = call.close().await;

    let _ = stop_echo.send(());
    let leg = echo.await.unwrap();
    let started = leg.media_started();
    let leg_stats: LegStats = leg.stats();
    leg.close().await;

    let gateway_media = started.map(|at| at.saturating_duration_since(answered));
    eprintln!(
        "first echo {first_echo:?} after the answer (waited {waited:?}); gateway media \
         {gateway_media:?} after it; report: {report:?}; gateway leg: {leg_stats:?}"
    );
    assert_eq!(tasks_left().await, 0);
    let sent = report.packets_sent;
    // 3 s of 20 ms frames, less what a starved scheduler might delay.
    assert!(sent >= 100, "only {sent} packets sent");
    assert!(
        report.packets_received * 10 > sent * 9,
        "received {} of {sent}",
        report.packets_received
    );
    assert!(
        report.echo_matches * 10 > sent * 9,
        "{} echoes matched of {sent}",
        report.echo_matches
    );
    assert_eq!(report.echo_mismatches, 0);
    assert!(report.loss < 0.1, "loss {}", report.loss);
    assert_eq!(report.first_packet_after_answer, Some(first_echo));
    assert!(first_echo <= waited);
    assert!(
        report
            .echo_rtt
            .is_some_and(|rtt| rtt < Duration::from_secs(1))
    );
    assert!(gateway_media.is_some_and(|at| at <= first_echo));
    // The gateway sent back all it received, and what it received is what the call counts
    // as sent, less packets still in flight when the call closed.
    assert_eq!(leg_stats.packets_sent, leg_stats.packets_received);
    assert_eq!(leg_stats.bytes_sent, leg_stats.packets_sent * 160);
    assert!(leg_stats.packets_received <= sent && leg_stats.packets_received + 10 >= sent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_leg_is_closed_in_the_background() {
    let settings = MediaSettings::loopback();
    let (call, offer) = ToneCall::offer(&settings, 440.0).await.unwrap();
    let (leg, _answer) = WebRtcLeg::answer(&offer, &settings).await.unwrap();
    assert!(
        tokio::runtime::Handle::current()
            .metrics()
            .num_alive_tasks()
            > 0
    );
    drop(leg);
    drop(call);
    assert_eq!(tasks_left().await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_offer_without_g711_is_refused() {
    let settings = MediaSettings::loopback();
    let (call, offer) = ToneCall::offer(&settings, 440.0).await.unwrap();
    let _ = call.close().await;
    // The same offer with opus in place of PCMU.
    let opus_only: String = offer
        .lines()
        .map(|line| {
            if line.starts_with("m=audio ") {
                let fields: Vec<&str> = line.split(' ').collect();
                format!("{} 111", fields[..3].join(" "))
            } else if line == "a=rtpmap:0 PCMU/8000" {
                "a=rtpmap:111 opus/48000/2".to_owned()
            } else {
                line.to_owned()
            }
        })
        .map(|line| line + "\r\n")
        .collect();
    assert_ne!(opus_only, offer);
    match WebRtcLeg::answer(&opus_only, &settings).await {
        Err(MediaError::NoCommonCodec { offered }) => assert_eq!(offered, ["opus"]),
        other => panic!("expected no common codec, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_sdp_is_refused() {
    let settings = MediaSettings::loopback();
    for garbage in ["", "hello", "v=0\r\nm=audio nonsense\r\n"] {
        match WebRtcLeg::answer(garbage, &settings).await {
            Err(MediaError::BadSdp(_)) => {}
            other => panic!("expected bad SDP for {garbage:?}, got {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_prefers_pcmu_whatever_the_offer_order() {
    let settings = MediaSettings::loopback();
    for (offered, expected) in [
        (vec![Codec::Pcma, Codec::Pcmu], Codec::Pcmu),
        (vec![Codec::Pcma, Codec::TelephoneEvent], Codec::Pcma),
    ] {
        let (caller, offer) = WebRtcLeg::offer(&settings, &offered).await.unwrap();
        let (leg, answer) = WebRtcLeg::answer(&offer, &settings).await.unwrap();
        assert_eq!(leg.codec(), expected, "offer {offered:?}:\n{answer}");
        let caller = caller.accept_answer(&answer).await.unwrap();
        assert_eq!(caller.codec(), expected);
        assert_eq!(
            caller.telephone_event_payload_type(),
            leg.telephone_event_payload_type()
        );
        leg.close().await;
        caller.close().await;
    }
}

/// Rewrites the audio formats of an offer: `formats` replaces the `m=audio` payload types,
/// `rtpmap` lines replace the offer's `a=rtpmap` and `a=fmtp` lines.
fn with_formats(offer: &str, formats: &str, rtpmap: &[&str]) -> String {
    let mut out = String::new();
    for line in offer.lines() {
        if line.starts_with("m=audio ") {
            let fields: Vec<&str> = line.split(' ').collect();
            out += &format!("{} {formats}\r\n", fields[..3].join(" "));
        } else if line.starts_with("a=rtpmap:") || line.starts_with("a=fmtp:") {
            continue;
        } else if line.starts_with("a=mid:") {
            out += line;
            out += "\r\n";
            for attribute in rtpmap {
                out += attribute;
                out += "\r\n";
            }
        } else {
            out += line;
            out += "\r\n";
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_offer_gets_g711_and_its_telephone_event() {
    let settings = MediaSettings::loopback();
    let (caller, offer) = WebRtcLeg::offer(&settings, &[Codec::Pcmu]).await.unwrap();
    caller.close().await;
    // The audio formats of Chromium's offer.
    let chromium = with_formats(
        &offer,
        "111 63 9 0 8 13 110 126",
        &[
            "a=rtpmap:111 opus/48000/2",
            "a=fmtp:111 minptime=10;useinbandfec=1",
            "a=rtpmap:63 red/48000/2",
            "a=fmtp:63 111/111",
            "a=rtpmap:9 G722/8000",
            "a=rtpmap:0 PCMU/8000",
            "a=rtpmap:8 PCMA/8000",
            "a=rtpmap:13 CN/8000",
            "a=rtpmap:110 telephone-event/48000",
            "a=rtpmap:126 telephone-event/8000",
        ],
    );
    let (leg, answer) = WebRtcLeg::answer(&chromium, &settings).await.unwrap();
    assert_eq!(leg.codec(), Codec::Pcmu);
    assert_eq!(leg.payload_type(), 0);
    assert_eq!(leg.telephone_event_payload_type(), Some(126));
    let m_line = answer.lines().find(|l| l.starts_with("m=audio")).unwrap();
    assert!(m_line.ends_with(" 0 8 126"), "{m_line}");
    assert!(
        answer.contains("a=rtpmap:126 telephone-event/8000"),
        "{answer}"
    );
    leg.close().await;
}
