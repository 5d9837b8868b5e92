//! The conference bridge at run time: rooms, each mixed by one task, and a WebRTC leg per
//! participant.
//!
//! [`ConferenceBridge::open_room`] starts a room's task, which owns its [`Mixer`] and
//! ticks every 20 ms. [`Room::join`] answers a participant's SDP offer with a
//! [`WebRtcLeg`] and starts the participant's task: it decodes the G.711 frames it
//! receives and hands them to the room, and encodes and sends the mix the room hands back.
//! Channels between them are bounded; a full one drops a frame (counted) rather than
//! stalling the room. Admission (tokens, room size) is the node's job; the bridge only
//! mixes.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use interlink_protocol::{Codec, ServiceKind};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use crate::audio::{alaw_decode, alaw_encode, ulaw_decode, ulaw_encode};
use crate::conference::mixer::{FRAME_SAMPLES, Frame, JitterStats, Mixer};
use crate::webrtc_leg::rtp::header::Header;
use crate::webrtc_leg::rtp::packet::Packet;
use crate::webrtc_leg::{MediaError, MediaSettings, WebRtcLeg};
use crate::{Capabilities, CapabilityError};

/// The RTP timestamp advance per frame: G.711's clock ticks once per sample.
const FRAME_TICKS: u32 = 160;
/// The mixer's tick: one G.711 frame.
pub const TICK: Duration = Duration::from_millis(20);
/// The jitter buffers' default delay, in 20 ms frames.
pub const DEFAULT_JITTER_FRAMES: u16 = 3;
/// Frames queued from all participants to a room between two ticks.
const ROOM_INPUTS: usize = 4096;
/// Mixed frames queued to one participant's sender.
const PARTICIPANT_OUTPUTS: usize = 8;
/// The longest wait for a participant's ICE and DTLS.
const CONNECT_DEADLINE: Duration = Duration::from_secs(10);
/// A tick that runs this much after its time counts as late (the bridge is overloaded).
const LATE_TICK: Duration = Duration::from_millis(10);

/// A participant's number within its room.
pub type ParticipantKey = u32;

/// The bridge's settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BridgeSettings {
    pub media: MediaSettings,
    /// Jitter buffer delay in 20 ms frames.
    pub jitter_frames: u16,
}

/// A room's figures.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RoomStats {
    /// Jitter figures of each participant present, and of those who left.
    pub participants: BTreeMap<ParticipantKey, JitterStats>,
    pub ticks: u64,
    /// Ticks that ran more than 10 ms after their time.
    pub late_ticks: u64,
    /// Frames from participants dropped because the room's queue was full.
    pub dropped_inputs: u64,
    /// Mixed frames dropped because a participant's queue was full.
    pub dropped_outputs: u64,
}

impl RoomStats {
    /// The sum of every participant's jitter figures.
    pub fn total(&self) -> JitterStats {
        self.participants
            .values()
            .fold(JitterStats::default(), |mut sum, s| {
                sum.received += s.received;
                sum.played += s.played;
                sum.late += s.late;
                sum.duplicates += s.duplicates;
                sum.missing += s.missing;
                sum.resyncs += s.resyncs;
                sum
            })
    }
}

enum RoomInput {
    Frame {
        participant: ParticipantKey,
        seq: u16,
        frame: Box<Frame>,
    },
    Join {
        participant: ParticipantKey,
        mix: mpsc::Sender<Frame>,
    },
    Leave(ParticipantKey),
    Stats(oneshot::Sender<RoomStats>),
}

/// A conference back-end: runs rooms and mixes them.
#[derive(Debug)]
pub struct ConferenceBridge {
    capabilities: Capabilities,
    settings: BridgeSettings,
}

impl ConferenceBridge {
    /// A bridge for `max_participants` participants in all, its media on `settings`.
    pub fn new(
        max_participants: u32,
        settings: BridgeSettings,
    ) -> Result<ConferenceBridge, CapabilityError> {
        Ok(ConferenceBridge {
            capabilities: ConferenceBridge::capabilities(max_participants)?,
            settings,
        })
    }

    /// What a bridge advertises: G.711 both ways, participants in all.
    pub fn capabilities(max_participants: u32) -> Result<Capabilities, CapabilityError> {
        Capabilities::new(
            ServiceKind::Conference,
            vec![Codec::Pcmu, Codec::Pcma],
            max_participants,
        )
    }

    /// The bridge's advertised capabilities.
    pub fn advertised(&self) -> &Capabilities {
        &self.capabilities
    }

    /// Starts a room.
    pub fn open_room(&self) -> Room {
        let (inputs, inputs_rx) = mpsc::channel(ROOM_INPUTS);
        let dropped = Arc::new(AtomicU64::new(0));
        let task = tokio::spawn(run_room(
            inputs_rx,
            self.settings.jitter_frames,
            Arc::clone(&dropped),
        ));
        Room {
            inputs,
            task,
            next_key: AtomicU32::new(1),
            dropped_inputs: dropped,
            media: self.settings.media,
        }
    }
}

/// A running room.
#[derive(Debug)]
pub struct Room {
    inputs: mpsc::Sender<RoomInput>,
    task: JoinHandle<()>,
    next_key: AtomicU32,
    dropped_inputs: Arc<AtomicU64>,
    media: MediaSettings,
}

impl Room {
    /// Answers a participant's SDP offer and adds the participant to the mix; returns the
    /// SDP answer and the participant's leg.
    pub async fn join(&self, sdp_offer: &str) -> Result<(String, Participant), MediaError> {
        let (leg, sdp_answer) = WebRtcLeg::answer(sdp_offer, &self.media).await?;
        let key = self.next_key.fetch_add(1, Ordering::Relaxed);
        let (mix_tx, mix_rx) = mpsc::channel(PARTICIPANT_OUTPUTS);
        if self
            .inputs
            .send(RoomInput::Join {
                participant: key,
                mix: mix_tx,
            })
            .await
            .is_err()
        {
            leg.close().await;
            return Err(MediaError::Closed);
        }
        let (stop, stopped) = oneshot::channel();
        let (ended_tx, ended) = watch::channel(false);
        let task = tokio::spawn(run_participant(
            leg,
            key,
            self.inputs.clone(),
            mix_rx,
            stopped,
            ended_tx,
            Arc::clone(&self.dropped_inputs),
        ));
        Ok((
            sdp_answer,
            Participant {
                key,
                stop: Some(stop),
                ended,
                task,
            },
        ))
    }

    /// The room's figures so far.
    pub async fn stats(&self) -> RoomStats {
        let (reply, answer) = oneshot::channel();
        if self.inputs.send(RoomInput::Stats(reply)).await.is_err() {
            return RoomStats::default();
        }
        answer.await.unwrap_or_default()
    }

    /// Stops mixing; returns the room's figures. Participants' legs end with their
    /// [`Participant::leave`].
    pub async fn close(&self) -> RoomStats {
        let stats = self.stats().await;
        self.task.abort();
        stats
    }
}

/// A participant's leg in a room.
#[derive(Debug)]
pub struct Participant {
    key: ParticipantKey,
    stop: Option<oneshot::Sender<()>>,
    ended: watch::Receiver<bool>,
    task: JoinHandle<()>,
}

impl Participant {
    /// The participant's number in the room.
    pub fn key(&self) -> ParticipantKey {
        self.key
    }

    /// Resolves when the participant's media has ended by itself (the connection closed or
    /// failed, or never came up).
    pub async fn media_ended(&mut self) {
        let _ = self.ended.wait_for(|ended| *ended).await;
    }

    /// Takes the participant out of the mix and closes its connection.
    pub async fn leave(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = (&mut self.task).await;
    }
}

async fn run_room(mut inputs: mpsc::Receiver<RoomInput>, depth: u16, dropped: Arc<AtomicU64>) {
    let mut mixer: Mixer<ParticipantKey> = Mixer::new(depth);
    let mut outputs: BTreeMap<ParticipantKey, mpsc::Sender<Frame>> = BTreeMap::new();
    let mut stats = RoomStats::default();
    let mut ticks = tokio::time::interval(TICK);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    loop {
        tokio::select! {
            biased;
            at = ticks.tick() => {
                stats.ticks += 1;
                if at.elapsed() > LATE_TICK {
                    stats.late_ticks += 1;
                }
                mixer.tick(|participant, mix| {
                    if let Some(out) = outputs.get(&participant)
                        && out.try_send(*mix).is_err()
                    {
                        stats.dropped_outputs += 1;
                    }
                });
            }
            input = inputs.recv() => match input {
                Some(RoomInput::Frame { participant, seq, frame }) => {
                    mixer.push(participant, seq, *frame);
                }
                Some(RoomInput::Join { participant, mix }) => {
                    mixer.add(participant);
                    outputs.insert(participant, mix);
                }
                Some(RoomInput::Leave(participant)) => {
                    outputs.remove(&participant);
                    if let Some(left) = mixer.remove(participant) {
                        stats.participants.insert(participant, left);
                    }
                }
                Some(RoomInput::Stats(reply)) => {
                    let mut now = stats.clone();
                    for &participant in outputs.keys() {
                        if let Some(s) = mixer.stats(participant) {
                            now.participants.insert(participant, s);
                        }
                    }
                    now.dropped_inputs = dropped.load(Ordering::Relaxed);
                    let _ = reply.send(now);
                }
                None => return,
            },
        }
    }
}

/// Decodes a G.711 payload of one frame; `None` for any other size.
fn decode(codec: Codec, payload: &[u8]) -> Option<Frame> {
    if payload.len() != FRAME_SAMPLES {
        return None;
    }
    let mut frame = [0i16; FRAME_SAMPLES];
    let decode = if codec == Codec::Pcma {
        alaw_decode
    } else {
        ulaw_decode
    };
    for (sample, &byte) in frame.iter_mut().zip(payload) {
        *sample = decode(byte);
    }
    Some(frame)
}

fn encode(codec: Codec, frame: &Frame) -> Vec<u8> {
    let encode = if codec == Codec::Pcma {
        alaw_encode
    } else {
        ulaw_encode
    };
    frame.iter().map(|&s| encode(s)).collect()
}

async fn run_participant(
    mut leg: WebRtcLeg,
    key: ParticipantKey,
    room: mpsc::Sender<RoomInput>,
    mut mix: mpsc::Receiver<Frame>,
    mut stopped: oneshot::Receiver<()>,
    ended: watch::Sender<bool>,
    dropped: Arc<AtomicU64>,
) {
    let connected = tokio::select! {
        connected = leg.wait_connected(CONNECT_DEADLINE) => connected,
        _ = &mut stopped => Err(MediaError::Closed),
    };
    if let Err(e) = connected {
        tracing::info!(participant = key, error = %e, "participant's media did not come up");
    } else {
        let codec = leg.codec();
        let payload_type = leg.payload_type();
        let mut sequence: u16 = rand_start();
        let mut timestamp: u32 = u32::from(rand_start());
        let started = Instant::now();
        loop {
            tokio::select! {
                packet = leg.recv() => match packet {
                    Some(packet) if packet.header.payload_type == payload_type => {
                        if let Some(frame) = decode(codec, &packet.payload) {
                            let input = RoomInput::Frame {
                                participant: key,
                                seq: packet.header.sequence_number,
                                frame: Box::new(frame),
                            };
                            if room.try_send(input).is_err() {
                                dropped.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    }
                    Some(_) => {}
                    None => break,
                },
                frame = mix.recv() => match frame {
                    Some(frame) => {
                        let packet = Packet {
                            header: Header {
                                version: 2,
                                marker: sequence == 0 && started.elapsed() < TICK,
                                payload_type,
                                sequence_number: sequence,
                                timestamp,
                                ..Header::default()
                            },
                            payload: encode(codec, &frame).into(),
                        };
                        sequence = sequence.wrapping_add(1);
                        timestamp = timestamp.wrapping_add(FRAME_TICKS);
                        if leg.send(&packet).await.is_err() {
                            break;
                        }
                    }
                    None => break,
                },
                _ = &mut stopped => break,
            }
        }
    }
    let _ = room.send(RoomInput::Leave(key)).await;
    leg.close().await;
    let _ = ended.send(true);
}

/// A starting sequence number that differs between legs (RFC 3550 wants it random); the
/// clock's nanoseconds are random enough for that.
fn rand_start() -> u16 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    u16::try_from((nanos >> 8) & 0xffff).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn g711_frames_round_trip_through_both_laws() {
        let frame: Frame = std::array::from_fn(|i| (i16::try_from(i).unwrap_or(0) - 80) * 100);
        for codec in [Codec::Pcmu, Codec::Pcma] {
            let back = decode(codec, &encode(codec, &frame)).unwrap_or_else(|| panic!("size"));
            for (a, b) in frame.iter().zip(back.iter()) {
                // G.711 keeps about 8 bits of precision.
                assert!((i32::from(*a) - i32::from(*b)).abs() <= 256, "{a} vs {b}");
            }
        }
        assert_eq!(decode(Codec::Pcmu, &[0; 80]), None);
    }
}
