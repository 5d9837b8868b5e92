//! The caller's own WebRTC endpoint for `interlink call`: it sends a test tone and checks
//! what comes back.
//!
//! [`ToneCall::offer`] makes a PCMU offer (a [`WebRtcLeg`] in the offering role);
//! [`ToneCall::accept_answer`] applies the gateway's answer and starts one task that, once
//! ICE and DTLS are up, sends a tone in 20 ms G.711 frames paced in real time and reads
//! every packet the gateway sends back. Against an echo service each packet should return
//! unchanged: the task remembers what it sent recently, matches echoes by sequence number,
//! compares payloads and measures the send → echo delay. [`ToneCall::report`] sums it up;
//! [`ToneCall::close`] stops the task and closes the connection.

use std::collections::VecDeque;
use std::hash::{BuildHasher, RandomState};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use interlink_gateway_plugin::audio::{ToneGenerator, alaw_encode, ulaw_encode};
use interlink_gateway_plugin::webrtc_leg::rtp::header::Header;
use interlink_gateway_plugin::webrtc_leg::rtp::packet::Packet;
use interlink_gateway_plugin::webrtc_leg::{
    Handshake, MediaError, MediaSettings, OfferedLeg, WebRtcLeg,
};
use interlink_protocol::Codec;
use serde::{Serialize, Serializer};
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

use crate::lock::LockExt;

/// Audio is sent in frames of this length.
pub const FRAME: Duration = Duration::from_millis(20);
/// Samples in one frame at 8 kHz.
pub const FRAME_SAMPLES: usize = 160;
/// The RTP timestamp advance per frame: G.711's clock ticks once per sample.
const FRAME_TICKS: u32 = 160;
/// Sent frames remembered to check echoes against: 20 s of audio, far beyond any echo delay.
pub const SENT_MEMORY: usize = 1000;
/// The longest wait for ICE and DTLS after the answer.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Peak of the test tone, about 12 dB below full scale.
const TONE_AMPLITUDE: i16 = 8000;

/// What a call's media did, for the caller's report (all zero when the media was not the
/// node's own).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct MediaReport {
    pub packets_sent: u64,
    pub packets_received: u64,
    /// Echoes whose payload is what was sent with that sequence number.
    pub echo_matches: u64,
    /// Packets that are not the echo of a recently sent one (another payload, an unknown or
    /// repeated sequence number).
    pub echo_mismatches: u64,
    /// `1 − received / sent`, as an echo call should return everything; never negative.
    pub loss: f64,
    /// From applying the answer to the first packet received.
    #[serde(rename = "first_packet_after_answer_ms", serialize_with = "millis")]
    pub first_packet_after_answer: Option<Duration>,
    /// Median send → echo delay of the last [`SENT_MEMORY`] matched echoes.
    #[serde(rename = "echo_rtt_ms", serialize_with = "millis")]
    pub echo_rtt: Option<Duration>,
    /// From RTCP reports, if webrtc-rs measured it (0.21.1 does not); read at close.
    #[serde(rename = "rtcp_rtt_ms", serialize_with = "millis")]
    pub rtcp_rtt: Option<Duration>,
    /// From ICE connectivity checks on the selected pair; read at close.
    #[serde(rename = "ice_rtt_ms", serialize_with = "millis")]
    pub ice_rtt: Option<Duration>,
    /// From applying the gateway's SDP answer to ICE connected, and from there to DTLS
    /// connected: the handshake's two steps (the call report shows them in its phases).
    #[serde(skip)]
    pub sdp_answer_to_ice: Option<Duration>,
    #[serde(skip)]
    pub ice_to_dtls: Option<Duration>,
}

/// Durations go out as milliseconds, a number scripts can compare.
fn millis<S: Serializer>(value: &Option<Duration>, serializer: S) -> Result<S::Ok, S::Error> {
    match value {
        Some(duration) => serializer.serialize_some(&(duration.as_secs_f64() * 1000.0)),
        None => serializer.serialize_none(),
    }
}

/// Where the media of a call stands, for [`ToneCall::wait_first_packet`].
#[derive(Debug, Clone, Copy, PartialEq)]
enum Progress {
    Waiting,
    FirstPacket(Duration),
    Failed,
    Stopped,
}

/// A frame sent and not yet echoed.
#[derive(Debug)]
struct SentFrame {
    sequence: u16,
    sent_at: Instant,
    payload: Vec<u8>,
}

/// The counts and memory the media task keeps; read by [`ToneCall::report`].
#[derive(Debug, Default)]
struct EchoBook {
    answered_at: Option<Instant>,
    packets_sent: u64,
    packets_received: u64,
    echo_matches: u64,
    echo_mismatches: u64,
    first_packet_after_answer: Option<Duration>,
    unechoed: VecDeque<SentFrame>,
    delays: VecDeque<Duration>,
    rtcp_rtt: Option<Duration>,
    ice_rtt: Option<Duration>,
    sdp_answer_applied_at: Option<Instant>,
    handshake: Handshake,
}

impl EchoBook {
    fn remember(&mut self, frame: SentFrame) {
        if self.unechoed.len() == SENT_MEMORY {
            self.unechoed.pop_front();
        }
        self.unechoed.push_back(frame);
    }

    /// Counts a received packet; returns the delay since the answer if it is the first.
    fn on_packet(&mut self, packet: &Packet, now: Instant) -> Option<Duration> {
        self.packets_received += 1;
        let first = if self.first_packet_after_answer.is_none() {
            let delay = self.answered_at.map(|at| now.saturating_duration_since(at));
            self.first_packet_after_answer = delay;
            delay
        } else {
            None
        };
        let sequence = packet.header.sequence_number;
        let sent = self
            .unechoed
            .iter()
            .position(|frame| frame.sequence == sequence)
            .and_then(|index| self.unechoed.remove(index));
        match sent {
            Some(frame) if frame.payload[..] == packet.payload[..] => {
                self.echo_matches += 1;
                if self.delays.len() == SENT_MEMORY {
                    self.delays.pop_front();
                }
                self.delays
                    .push_back(now.saturating_duration_since(frame.sent_at));
            }
            _ => self.echo_mismatches += 1,
        }
        first
    }

    fn report(&self) -> MediaReport {
        let loss = if self.packets_sent == 0 {
            0.0
        } else {
            (1.0 - self.packets_received as f64 / self.packets_sent as f64).max(0.0)
        };
        let mut delays: Vec<Duration> = self.delays.iter().copied().collect();
        delays.sort_unstable();
        MediaReport {
            packets_sent: self.packets_sent,
            packets_received: self.packets_received,
            echo_matches: self.echo_matches,
            echo_mismatches: self.echo_mismatches,
            loss,
            first_packet_after_answer: self.first_packet_after_answer,
            echo_rtt: delays.get(delays.len() / 2).copied(),
            rtcp_rtt: self.rtcp_rtt,
            ice_rtt: self.ice_rtt,
            sdp_answer_to_ice: self
                .sdp_answer_applied_at
                .zip(self.handshake.ice_connected)
                .map(|(applied, ice)| ice.saturating_duration_since(applied)),
            ice_to_dtls: self
                .handshake
                .ice_connected
                .zip(self.handshake.dtls_connected)
                .map(|(ice, dtls)| dtls.saturating_duration_since(ice)),
        }
    }
}

/// What the call and its media task share.
#[derive(Debug)]
struct Shared {
    book: Mutex<EchoBook>,
    progress: watch::Sender<Progress>,
    /// Turns true at the answer: the tone starts then, not while the callee rings.
    answered: watch::Sender<bool>,
}

impl Shared {
    fn book(&self) -> MutexGuard<'_, EchoBook> {
        // The book holds counters only, consistent after every statement: a panic elsewhere
        // while it was locked leaves nothing half-done worth refusing.
        self.book.locked()
    }
}

/// Where the call is.
#[derive(Debug)]
enum Stage {
    Offered(OfferedLeg),
    Running {
        /// Dropping it stops the media task too.
        stop: oneshot::Sender<()>,
        task: JoinHandle<WebRtcLeg>,
    },
    Ended,
}

/// A call whose media is a generated tone, checked against its echo.
#[derive(Debug)]
pub struct ToneCall {
    tone_hz: f64,
    stage: Stage,
    shared: Arc<Shared>,
}

impl ToneCall {
    /// Makes the SDP offer (one PCMU audio stream, candidates included) for a call that
    /// will send a tone of `tone_hz`.
    pub async fn offer(
        settings: &MediaSettings,
        tone_hz: f64,
    ) -> Result<(ToneCall, String), MediaError> {
        let (leg, sdp) = WebRtcLeg::offer(settings, &[Codec::Pcmu]).await?;
        let (progress, _) = watch::channel(Progress::Waiting);
        let call = ToneCall {
            tone_hz,
            stage: Stage::Offered(leg),
            shared: Arc::new(Shared {
                book: Mutex::new(EchoBook::default()),
                progress,
                answered: watch::Sender::new(false),
            }),
        };
        Ok((call, sdp))
    }

    /// Applies the gateway's SDP answer sent while the callee rings: the connection (ICE,
    /// DTLS) is set up now, and the tone waits for [`ToneCall::accept_answer`].
    ///
    /// Fails with [`MediaError::Closed`] if an answer was already applied.
    pub async fn accept_early_answer(&mut self, sdp_answer: &str) -> Result<(), MediaError> {
        let Stage::Offered(offered) = std::mem::replace(&mut self.stage, Stage::Ended) else {
            return Err(MediaError::Closed);
        };
        self.shared.book().sdp_answer_applied_at = Some(Instant::now());
        let leg = match offered.accept_answer(sdp_answer).await {
            Ok(leg) => leg,
            Err(error) => {
                self.shared.progress.send_replace(Progress::Failed);
                return Err(error);
            }
        };
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(run(leg, Arc::clone(&self.shared), self.tone_hz, stopped));
        self.stage = Stage::Running { stop, task };
        Ok(())
    }

    /// The callee answered with `sdp_answer`: applies it unless an early answer was, and
    /// starts the tone as soon as the connection is up.
    pub async fn accept_answer(&mut self, sdp_answer: &str) -> Result<(), MediaError> {
        let answered_at = Instant::now();
        if matches!(self.stage, Stage::Offered(_)) {
            self.accept_early_answer(sdp_answer).await?;
        }
        self.shared.book().answered_at = Some(answered_at);
        self.shared.answered.send_replace(true);
        Ok(())
    }

    /// Waits for the first packet from the gateway and returns how long after the answer
    /// it came.
    pub async fn wait_first_packet(&self, deadline: Duration) -> Result<Duration, MediaError> {
        let mut progress = self.shared.progress.subscribe();
        let reached =
            tokio::time::timeout(deadline, progress.wait_for(|p| *p != Progress::Waiting))
                .await
                .map_err(|_| MediaError::NoMedia(deadline))?
                .map(|p| *p)
                .map_err(|_| MediaError::Closed)?;
        match reached {
            Progress::FirstPacket(delay) => Ok(delay),
            Progress::Failed => Err(MediaError::ConnectionFailed),
            Progress::Waiting | Progress::Stopped => Err(MediaError::Closed),
        }
    }

    /// What the media has done so far.
    pub fn report(&self) -> MediaReport {
        self.shared.book().report()
    }

    /// Stops the tone, closes the connection and returns the final report.
    pub async fn close(self) -> MediaReport {
        match self.stage {
            Stage::Offered(offered) => offered.close().await,
            Stage::Running { stop, task } => {
                let _ = stop.send(());
                match task.await {
                    Ok(leg) => {
                        let round_trip = leg.round_trip().await;
                        {
                            let mut book = self.shared.book();
                            book.rtcp_rtt = round_trip.rtcp;
                            book.ice_rtt = round_trip.ice;
                            book.handshake = leg.handshake();
                        }
                        leg.close().await;
                    }
                    Err(error) => tracing::warn!(%error, "the media task of a call failed"),
                }
            }
            Stage::Ended => {}
        }
        self.shared.book().report()
    }
}

/// The media task: waits for the connection, then sends the tone and reads the echo until
/// told to stop or the connection ends. Returns the leg for closing.
async fn run(
    mut leg: WebRtcLeg,
    shared: Arc<Shared>,
    tone_hz: f64,
    mut stop: oneshot::Receiver<()>,
) -> WebRtcLeg {
    let connected = tokio::select! {
        connected = leg.wait_connected(CONNECT_TIMEOUT) => connected,
        _ = &mut stop => return end(leg, &shared, Progress::Stopped),
    };
    if let Err(error) = connected {
        tracing::debug!(%error, "call media did not connect");
        return end(leg, &shared, Progress::Failed);
    }
    let mut answered = shared.answered.subscribe();
    tokio::select! {
        _ = answered.wait_for(|answered| *answered) => {}
        _ = &mut stop => return end(leg, &shared, Progress::Stopped),
    }

    let encode: fn(i16) -> u8 = match leg.codec() {
        Codec::Pcma => alaw_encode,
        _ => ulaw_encode,
    };
    let payload_type = leg.payload_type();
    let mut tone = ToneGenerator::new(tone_hz, TONE_AMPLITUDE);
    // RFC 3550: random initial sequence number and timestamp.
    let (mut sequence, mut timestamp) = random_start();
    let mut first = true;
    let mut ticker = tokio::time::interval(FRAME);
    loop {
        tokio::select! {
            _ = &mut stop => break,
            _ = ticker.tick() => {
                let payload: Vec<u8> = tone
                    .next_frame(FRAME_SAMPLES)
                    .into_iter()
                    .map(encode)
                    .collect();
                let packet = Packet {
                    header: Header {
                        version: 2,
                        // The start of a talk spurt (RFC 3551).
                        marker: first,
                        payload_type,
                        sequence_number: sequence,
                        timestamp,
                        ..Header::default()
                    },
                    payload: payload.clone().into(),
                };
                // Remembered before sending, so that even an instant echo finds it.
                shared.book().remember(SentFrame {
                    sequence,
                    sent_at: Instant::now(),
                    payload,
                });
                if let Err(error) = leg.send(&packet).await {
                    tracing::debug!(%error, "call media stopped sending");
                    break;
                }
                shared.book().packets_sent += 1;
                first = false;
                sequence = sequence.wrapping_add(1);
                timestamp = timestamp.wrapping_add(FRAME_TICKS);
            }
            packet = leg.recv() => match packet {
                Some(packet) => {
                    let first_packet = shared.book().on_packet(&packet, Instant::now());
                    if let Some(delay) = first_packet {
                        shared.progress.send_replace(Progress::FirstPacket(delay));
                    }
                }
                None => break,
            },
        }
    }
    end(leg, &shared, Progress::Stopped)
}

/// Records why the media ended unless a first packet already came, and hands the leg back.
fn end(leg: WebRtcLeg, shared: &Shared, outcome: Progress) -> WebRtcLeg {
    shared.progress.send_if_modified(|progress| {
        let waiting = *progress == Progress::Waiting;
        if waiting {
            *progress = outcome;
        }
        waiting
    });
    leg
}

/// An unpredictable RTP sequence number and timestamp.
fn random_start() -> (u16, u32) {
    let bits = RandomState::new().hash_one(Instant::now()).to_le_bytes();
    (
        u16::from_le_bytes([bits[0], bits[1]]),
        u32::from_le_bytes([bits[2], bits[3], bits[4], bits[5]]),
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn packet(sequence: u16, payload: &[u8]) -> Packet {
        Packet {
            header: Header {
                sequence_number: sequence,
                ..Header::default()
            },
            payload: payload.to_vec().into(),
        }
    }

    fn frame(sequence: u16, sent_at: Instant, payload: &[u8]) -> SentFrame {
        SentFrame {
            sequence,
            sent_at,
            payload: payload.to_vec(),
        }
    }

    #[test]
    fn echoes_are_matched_by_sequence_and_payload() {
        let start = Instant::now();
        let mut book = EchoBook {
            answered_at: Some(start),
            packets_sent: 4,
            ..EchoBook::default()
        };
        for (sequence, payload) in [(1, b"a"), (2, b"b"), (3, b"c"), (4, b"d")] {
            book.remember(frame(sequence, start, payload));
        }
        let later = start + Duration::from_millis(30);
        assert_eq!(
            book.on_packet(&packet(2, b"b"), later),
            Some(Duration::from_millis(30))
        );
        assert_eq!(book.on_packet(&packet(1, b"a"), later), None);
        // Another payload, a repeat and an unknown sequence number are all mismatches.
        book.on_packet(&packet(3, b"x"), later);
        book.on_packet(&packet(2, b"b"), later);
        book.on_packet(&packet(9, b"d"), later);
        let report = book.report();
        assert_eq!(report.packets_received, 5);
        assert_eq!(report.echo_matches, 2);
        assert_eq!(report.echo_mismatches, 3);
        assert_eq!(report.loss, 0.0);
        assert_eq!(report.echo_rtt, Some(Duration::from_millis(30)));
    }

    #[test]
    fn memory_and_loss_are_bounded() {
        let start = Instant::now();
        let mut book = EchoBook::default();
        for sequence in 0..=u16::try_from(SENT_MEMORY).unwrap() {
            book.remember(frame(sequence, start, b"x"));
        }
        assert_eq!(book.unechoed.len(), SENT_MEMORY);
        // The oldest frame was forgotten.
        book.on_packet(&packet(0, b"x"), start);
        assert_eq!(book.echo_mismatches, 1);
        // More received than sent (duplicates) is not negative loss.
        assert_eq!(book.report().loss, 0.0);
        book.packets_sent = 4;
        assert_eq!(book.report().loss, 0.75);
        assert_eq!(book.report().first_packet_after_answer, None);
    }

    #[test]
    fn the_handshake_is_timed_from_the_sdp_answer_to_ice_and_on_to_dtls() {
        let applied = Instant::now();
        let mut book = EchoBook {
            sdp_answer_applied_at: Some(applied),
            ..EchoBook::default()
        };
        assert_eq!(book.report().sdp_answer_to_ice, None);
        book.handshake = Handshake {
            ice_connected: Some(applied + Duration::from_millis(90)),
            dtls_connected: Some(applied + Duration::from_millis(250)),
        };
        let report = book.report();
        assert_eq!(report.sdp_answer_to_ice, Some(Duration::from_millis(90)));
        assert_eq!(report.ice_to_dtls, Some(Duration::from_millis(160)));
    }

    #[test]
    fn report_serialises_durations_as_milliseconds() {
        let report = MediaReport {
            packets_sent: 10,
            packets_received: 9,
            echo_matches: 9,
            echo_mismatches: 0,
            loss: 0.1,
            first_packet_after_answer: Some(Duration::from_millis(250)),
            echo_rtt: Some(Duration::from_micros(1500)),
            ..MediaReport::default()
        };
        let json = serde_json::to_value(report).unwrap();
        assert_eq!(json["first_packet_after_answer_ms"], 250.0);
        assert_eq!(json["echo_rtt_ms"], 1.5);
        assert!(json["rtcp_rtt_ms"].is_null());
    }
}
