//! Media between the two legs of a bridged call: the caller's WebRTC leg (SRTP) and the
//! trunk's plain RTP over one UDP socket.
//!
//! Every packet crosses unchanged in payload when both legs use the same G.711 law; only
//! its header is rewritten:
//! - the payload type is mapped between the legs' numbers ([`PayloadMap`]): audio to the
//!   other leg's audio type, telephone-event to the other leg's telephone-event type (or
//!   dropped if that leg has none), anything else (comfort noise, say) dropped;
//! - the SSRC becomes the sending leg's own;
//! - sequence numbers and timestamps pass through as they are while the source stays the
//!   same, and when it changes (a new SSRC from the trunk after a transfer, say) they are
//!   shifted to continue where the last source left off ([`Resequencer`]). Passing them
//!   through is what lets the caller match an echo from the trunk to what it sent.
//!
//! When the legs chose different laws (the caller offered only PCMA, the trunk answered
//! PCMU) the payload is converted sample by sample through G.711's linear form: the
//! same packet size and timing, a table lookup per byte.
//!
//! RTP from the trunk is taken only from the address its SDP names (any port, for
//! symmetric RTP behind NAT); the relay sends no RTCP on the SIP leg.

use std::net::SocketAddr;
use std::sync::LazyLock;
use std::time::Duration;

use interlink_protocol::Codec;
use rtc::shared::marshal::{Marshal, Unmarshal};
use tokio::net::UdpSocket;
use tokio::time::Instant;

use crate::audio::{alaw_decode, alaw_encode, ulaw_decode, ulaw_encode};
use crate::sip::sdp::{PayloadFormat, RemoteMedia};
use crate::webrtc_leg::WebRtcLeg;
use crate::webrtc_leg::rtp::packet::Packet;

/// Largest RTP datagram read from the trunk; G.711 at 20 ms is 172 bytes.
const MAX_DATAGRAM: usize = 1500;
/// The timestamp step between two 20 ms G.711 frames, to join a new source to the last.
const FRAME_TICKS: u32 = 160;

/// A payload conversion between the two G.711 laws.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Transcode {
    UlawToAlaw,
    AlawToUlaw,
}

static ULAW_TO_ALAW: LazyLock<[u8; 256]> =
    LazyLock::new(|| table(|byte| alaw_encode(ulaw_decode(byte))));
static ALAW_TO_ULAW: LazyLock<[u8; 256]> =
    LazyLock::new(|| table(|byte| ulaw_encode(alaw_decode(byte))));

fn table(convert: impl Fn(u8) -> u8) -> [u8; 256] {
    let mut table = [0; 256];
    for byte in 0..=u8::MAX {
        table[usize::from(byte)] = convert(byte);
    }
    table
}

impl Transcode {
    /// The conversion from `from` to `to`, if they differ.
    fn between(from: Codec, to: Codec) -> Option<Transcode> {
        match (from, to) {
            (Codec::Pcmu, Codec::Pcma) => Some(Transcode::UlawToAlaw),
            (Codec::Pcma, Codec::Pcmu) => Some(Transcode::AlawToUlaw),
            _ => None,
        }
    }

    /// `payload` in the other law.
    pub(crate) fn apply(self, payload: &[u8]) -> Vec<u8> {
        let table = match self {
            Transcode::UlawToAlaw => &*ULAW_TO_ALAW,
            Transcode::AlawToUlaw => &*ALAW_TO_ULAW,
        };
        payload.iter().map(|&b| table[usize::from(b)]).collect()
    }
}

/// Where a packet of one leg goes on the other.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Mapped {
    pub(crate) payload_type: u8,
    pub(crate) transcode: Option<Transcode>,
}

/// The payload types of the two legs, and how one maps to the other.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct PayloadMap {
    webrtc_audio: PayloadFormat,
    webrtc_events: Option<u8>,
    sip_audio: PayloadFormat,
    sip_events: Option<u8>,
}

impl PayloadMap {
    /// The map between what the WebRTC leg negotiated and what the trunk answered.
    pub(crate) fn new(
        webrtc_audio: PayloadFormat,
        webrtc_events: Option<u8>,
        sip: &RemoteMedia,
    ) -> PayloadMap {
        PayloadMap {
            webrtc_audio,
            webrtc_events,
            sip_audio: sip.audio,
            sip_events: sip.telephone_event,
        }
    }

    /// A packet from the caller, toward the trunk; `None` drops it.
    pub(crate) fn toward_trunk(&self, payload_type: u8) -> Option<Mapped> {
        map(
            payload_type,
            (self.webrtc_audio, self.webrtc_events),
            (self.sip_audio, self.sip_events),
        )
    }

    /// A packet from the trunk, toward the caller; `None` drops it.
    pub(crate) fn toward_caller(&self, payload_type: u8) -> Option<Mapped> {
        map(
            payload_type,
            (self.sip_audio, self.sip_events),
            (self.webrtc_audio, self.webrtc_events),
        )
    }

    /// The trunk's audio format in use.
    pub(crate) fn trunk_audio(&self) -> PayloadFormat {
        self.sip_audio
    }

    /// The trunk's telephone-event payload type, if it takes them.
    pub(crate) fn trunk_events(&self) -> Option<u8> {
        self.sip_events
    }

    /// Whether audio crosses without conversion.
    pub(crate) fn passes_through(&self) -> bool {
        self.webrtc_audio.codec == self.sip_audio.codec
    }

    /// The trunk side after it sent a new SDP.
    pub(crate) fn set_trunk(&mut self, sip: &RemoteMedia) {
        self.sip_audio = sip.audio;
        self.sip_events = sip.telephone_event;
    }
}

fn map(
    payload_type: u8,
    (from_audio, from_events): (PayloadFormat, Option<u8>),
    (to_audio, to_events): (PayloadFormat, Option<u8>),
) -> Option<Mapped> {
    if payload_type == from_audio.payload_type {
        Some(Mapped {
            payload_type: to_audio.payload_type,
            transcode: Transcode::between(from_audio.codec, to_audio.codec),
        })
    } else if Some(payload_type) == from_events {
        to_events.map(|payload_type| Mapped {
            payload_type,
            transcode: None,
        })
    } else {
        None
    }
}

/// Rewrites the sequence numbers and timestamps of one direction so that they stay
/// continuous across a change of source, and unchanged while the source is the first.
#[derive(Clone, Debug, Default)]
pub(crate) struct Resequencer {
    source: Option<u32>,
    sequence_offset: u16,
    timestamp_offset: u32,
    /// The last sequence number and timestamp sent.
    last: Option<(u16, u32)>,
}

impl Resequencer {
    /// The sequence number and timestamp to send for a packet of `ssrc`.
    pub(crate) fn rewrite(&mut self, ssrc: u32, sequence: u16, timestamp: u32) -> (u16, u32) {
        if self.source != Some(ssrc) {
            if let Some((last_sequence, last_timestamp)) = self.last {
                self.sequence_offset = last_sequence.wrapping_add(1).wrapping_sub(sequence);
                self.timestamp_offset = last_timestamp
                    .wrapping_add(FRAME_TICKS)
                    .wrapping_sub(timestamp);
            }
            self.source = Some(ssrc);
        }
        let rewritten = (
            sequence.wrapping_add(self.sequence_offset),
            timestamp.wrapping_add(self.timestamp_offset),
        );
        self.last = Some(rewritten);
        rewritten
    }
}

/// Packets through a bridged call, for its log line and tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct RelayStats {
    pub(crate) from_caller: u64,
    pub(crate) to_trunk: u64,
    pub(crate) from_trunk: u64,
    pub(crate) to_caller: u64,
    /// Packets of a payload type the other leg does not take, or from a stranger.
    pub(crate) dropped: u64,
    /// Packets converted between μ-law and A-law.
    pub(crate) transcoded: u64,
}

/// Why the relay stopped relaying.
#[derive(Debug)]
pub(crate) enum RelayEvent {
    /// The caller's first packet arrived (the relay goes on when called again).
    MediaStarted,
    /// The caller's WebRTC connection closed or failed.
    CallerGone,
    /// No RTP from the trunk for this long.
    TrunkSilent(Duration),
    /// The RTP socket failed.
    SocketFailed(std::io::Error),
}

/// The media of one bridged call.
#[derive(Debug)]
pub(crate) struct RtpRelay {
    leg: WebRtcLeg,
    socket: UdpSocket,
    trunk: SocketAddr,
    map: PayloadMap,
    /// The SSRC of what this side sends to the trunk.
    ssrc: u32,
    toward_trunk: Resequencer,
    toward_caller: Resequencer,
    silence_limit: Option<Duration>,
    last_heard: Instant,
    media_started: bool,
    stats: RelayStats,
    buffer: Box<[u8; MAX_DATAGRAM]>,
}

impl RtpRelay {
    /// Relays between `leg` and the trunk's RTP at `trunk.addr` through `socket`; ends the
    /// call (see [`RelayEvent::TrunkSilent`]) after `silence_limit` without RTP from it.
    pub(crate) fn new(
        leg: WebRtcLeg,
        socket: UdpSocket,
        trunk: &RemoteMedia,
        ssrc: u32,
        silence_limit: Option<Duration>,
    ) -> RtpRelay {
        let map = PayloadMap::new(
            leg.audio_format(),
            leg.telephone_event_payload_type(),
            trunk,
        );
        RtpRelay {
            leg,
            socket,
            trunk: trunk.addr,
            map,
            ssrc,
            toward_trunk: Resequencer::default(),
            toward_caller: Resequencer::default(),
            silence_limit,
            last_heard: Instant::now(),
            media_started: false,
            stats: RelayStats::default(),
            buffer: Box::new([0; MAX_DATAGRAM]),
        }
    }

    /// The payload map in use.
    pub(crate) fn map(&self) -> &PayloadMap {
        &self.map
    }

    /// The trunk announced new media (a re-INVITE or UPDATE).
    pub(crate) fn set_trunk(&mut self, trunk: &RemoteMedia) {
        self.trunk = trunk.addr;
        self.map.set_trunk(trunk);
    }

    /// Relays both ways until something the call must act on happens.
    ///
    /// Cancel-safe at packet granularity: dropping the future loses at most the packet
    /// being forwarded.
    pub(crate) async fn run(&mut self) -> RelayEvent {
        loop {
            let silent_at = self.silence_limit.map(|limit| self.last_heard + limit);
            tokio::select! {
                packet = self.leg.recv() => match packet {
                    Some(packet) => {
                        self.stats.from_caller += 1;
                        self.forward_to_trunk(packet).await;
                        if !self.media_started {
                            self.media_started = true;
                            return RelayEvent::MediaStarted;
                        }
                    }
                    None => return RelayEvent::CallerGone,
                },
                received = self.socket.recv_from(&mut self.buffer[..]) => match received {
                    Ok((length, from)) => self.forward_to_caller(length, from).await,
                    Err(error) => return RelayEvent::SocketFailed(error),
                },
                () = sleep_until(silent_at) => {
                    return RelayEvent::TrunkSilent(self.silence_limit.unwrap_or_default());
                }
            }
        }
    }

    async fn forward_to_trunk(&mut self, mut packet: Packet) {
        let Some(mapped) = self.map.toward_trunk(packet.header.payload_type) else {
            self.stats.dropped += 1;
            return;
        };
        let header = &mut packet.header;
        let (sequence, timestamp) =
            self.toward_trunk
                .rewrite(header.ssrc, header.sequence_number, header.timestamp);
        header.sequence_number = sequence;
        header.timestamp = timestamp;
        header.payload_type = mapped.payload_type;
        header.ssrc = self.ssrc;
        // A plain RTP peer gets the fixed header only.
        header.padding = false;
        header.extension = false;
        header.extensions.clear();
        header.extensions_padding = 0;
        header.csrc.clear();
        if let Some(transcode) = mapped.transcode {
            packet.payload = transcode.apply(&packet.payload).into();
            self.stats.transcoded += 1;
        }
        let mut datagram = [0u8; MAX_DATAGRAM];
        let length = match packet.marshal_to(&mut datagram) {
            Ok(length) => length,
            Err(error) => {
                tracing::debug!(%error, "an RTP packet from the caller does not fit a datagram");
                self.stats.dropped += 1;
                return;
            }
        };
        match self.socket.send_to(&datagram[..length], self.trunk).await {
            Ok(_) => self.stats.to_trunk += 1,
            Err(error) => {
                tracing::debug!(%error, trunk = %self.trunk, "RTP to the trunk not sent");
                self.stats.dropped += 1;
            }
        }
    }

    async fn forward_to_caller(&mut self, length: usize, from: SocketAddr) {
        self.stats.from_trunk += 1;
        if from.ip() != self.trunk.ip() {
            self.stats.dropped += 1;
            return;
        }
        let Ok(mut packet) = Packet::unmarshal(&mut &self.buffer[..length]) else {
            self.stats.dropped += 1;
            return;
        };
        self.last_heard = Instant::now();
        let Some(mapped) = self
            .map
            .toward_caller(packet.header.payload_type)
            .filter(|_| packet.header.version == 2)
        else {
            self.stats.dropped += 1;
            return;
        };
        let header = &mut packet.header;
        let (sequence, timestamp) =
            self.toward_caller
                .rewrite(header.ssrc, header.sequence_number, header.timestamp);
        header.sequence_number = sequence;
        header.timestamp = timestamp;
        header.payload_type = mapped.payload_type;
        header.padding = false;
        header.csrc.clear();
        if let Some(transcode) = mapped.transcode {
            packet.payload = transcode.apply(&packet.payload).into();
            self.stats.transcoded += 1;
        }
        match self.leg.send(&packet).await {
            Ok(()) => self.stats.to_caller += 1,
            Err(error) => {
                tracing::debug!(%error, "RTP to the caller not sent");
                self.stats.dropped += 1;
            }
        }
    }

    /// Closes the WebRTC leg and returns what went through.
    pub(crate) async fn close(self) -> RelayStats {
        self.leg.close().await;
        self.stats
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn format(codec: Codec, payload_type: u8) -> PayloadFormat {
        PayloadFormat {
            codec,
            payload_type,
        }
    }

    fn trunk(audio: PayloadFormat, events: Option<u8>) -> RemoteMedia {
        RemoteMedia {
            addr: "127.0.0.1:6000".parse().unwrap(),
            audio,
            telephone_event: events,
        }
    }

    #[test]
    fn payload_types_map_between_the_legs() {
        // A browser: PCMU 0 and telephone-event 126; the trunk: PCMU 0 and events as 101.
        let map = PayloadMap::new(
            format(Codec::Pcmu, 0),
            Some(126),
            &trunk(format(Codec::Pcmu, 0), Some(101)),
        );
        assert!(map.passes_through());
        let audio = Some(Mapped {
            payload_type: 0,
            transcode: None,
        });
        assert_eq!(map.toward_trunk(0), audio);
        assert_eq!(map.toward_caller(0), audio);
        assert_eq!(
            map.toward_trunk(126),
            Some(Mapped {
                payload_type: 101,
                transcode: None
            })
        );
        assert_eq!(
            map.toward_caller(101),
            Some(Mapped {
                payload_type: 126,
                transcode: None
            })
        );
        // Comfort noise, an unknown type, or the other leg's number: dropped.
        assert_eq!(map.toward_caller(13), None);
        assert_eq!(map.toward_trunk(101), None);
        assert_eq!(map.toward_caller(126), None);
    }

    #[test]
    fn events_are_dropped_toward_a_leg_without_them() {
        let map = PayloadMap::new(
            format(Codec::Pcmu, 0),
            None,
            &trunk(format(Codec::Pcmu, 0), Some(101)),
        );
        assert_eq!(map.toward_caller(101), None);
        let mut map = PayloadMap::new(
            format(Codec::Pcmu, 0),
            Some(126),
            &trunk(format(Codec::Pcmu, 0), None),
        );
        assert_eq!(map.toward_trunk(126), None);
        // A re-INVITE that adds them.
        map.set_trunk(&trunk(format(Codec::Pcmu, 0), Some(96)));
        assert_eq!(map.toward_trunk(126).map(|m| m.payload_type), Some(96));
    }

    #[test]
    fn different_laws_are_transcoded_both_ways() {
        let map = PayloadMap::new(
            format(Codec::Pcmu, 0),
            None,
            &trunk(format(Codec::Pcma, 8), None),
        );
        assert!(!map.passes_through());
        assert_eq!(
            map.toward_trunk(0),
            Some(Mapped {
                payload_type: 8,
                transcode: Some(Transcode::UlawToAlaw)
            })
        );
        assert_eq!(
            map.toward_caller(8),
            Some(Mapped {
                payload_type: 0,
                transcode: Some(Transcode::AlawToUlaw)
            })
        );
        // Both laws code silence and a tone the same way up to G.711's own rounding.
        let tone: Vec<u8> = crate::audio::ToneGenerator::new(440.0, 8000)
            .next_frame(160)
            .into_iter()
            .map(ulaw_encode)
            .collect();
        let alaw = Transcode::UlawToAlaw.apply(&tone);
        assert_eq!(alaw.len(), tone.len());
        let back = Transcode::AlawToUlaw.apply(&alaw);
        for (original, round_trip) in tone.iter().zip(&back) {
            let (a, b) = (ulaw_decode(*original), ulaw_decode(*round_trip));
            assert!(
                (i32::from(a) - i32::from(b)).abs() <= i32::from(a).abs() / 8 + 16,
                "{a} became {b}"
            );
        }
        assert_eq!(
            Transcode::UlawToAlaw.apply(&[ulaw_encode(0)]),
            [alaw_encode(0)]
        );
    }

    #[test]
    fn the_first_source_passes_through_and_a_new_one_continues_it() {
        let mut resequencer = Resequencer::default();
        assert_eq!(resequencer.rewrite(7, 1000, 50_000), (1000, 50_000));
        assert_eq!(resequencer.rewrite(7, 1001, 50_160), (1001, 50_160));
        // A gap within a source stays a gap (it is loss, for the receiver to see).
        assert_eq!(resequencer.rewrite(7, 1005, 50_800), (1005, 50_800));
        // A new source starts anywhere; the output carries on from the last packet.
        assert_eq!(resequencer.rewrite(9, 3, 123), (1006, 50_960));
        assert_eq!(resequencer.rewrite(9, 4, 283), (1007, 51_120));
        // Wrapping around is fine.
        let mut wrapping = Resequencer::default();
        wrapping.rewrite(1, u16::MAX, u32::MAX - 10);
        assert_eq!(wrapping.rewrite(2, 500, 0), (0, 149));
    }
}
