//! A participant's side: read a join token as `interlink conference reserve` prints it,
//! find its bridge, join the room, and a WebRTC endpoint that sends a tone (or silence) and
//! keeps what it hears.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use interlink_gateway_plugin::audio::{ToneGenerator, ulaw_decode, ulaw_encode};
use interlink_gateway_plugin::conference::mixer::FRAME_SAMPLES;
use interlink_gateway_plugin::webrtc_leg::rtp::header::Header;
use interlink_gateway_plugin::webrtc_leg::rtp::packet::Packet;
use interlink_gateway_plugin::webrtc_leg::{MediaError, MediaSettings, OfferedLeg, WebRtcLeg};
use interlink_protocol::conference::{
    ConferenceError, ConferenceFrame, RefusalReason, SignedJoinToken,
};
use interlink_protocol::{Codec, ProviderId, SignedOffer, Timestamp};
use libp2p::{Multiaddr, PeerId};
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

use crate::conference::wire::{self, CONFERENCE_PROTOCOL, FrameWriter, Frames};
use crate::lock::LockExt;
use crate::network::Client;

/// How long the bridge may take to admit (dialling and its media set-up included).
const JOIN_DEADLINE: Duration = Duration::from_secs(10);
/// The longest wait for ICE and DTLS after the answer.
const CONNECT_DEADLINE: Duration = Duration::from_secs(10);
/// Received frames kept: 10 s of audio.
const HEARD_FRAMES: usize = 500;
/// Peak of the test tone, about 18 dB below full scale so that four mix without clipping.
const TONE_AMPLITUDE: i16 = 4000;
/// The longest token text taken: a signed token is a few hundred bytes.
const MAX_TOKEN_TEXT: usize = 4096;
/// How long to wait between two looks for the bridge's offer.
const OFFER_RETRY: Duration = Duration::from_millis(200);
/// How long a `Leave` may take to go out.
const LEAVE_DEADLINE: Duration = Duration::from_secs(5);

/// Why a join token's text was not taken.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    #[error("the join token is empty")]
    Empty,
    #[error("the join token is not hexadecimal text (as `interlink conference reserve` prints it)")]
    NotHex,
    #[error("the join token is too short to name a bridge")]
    TooShort,
    #[error("the join token is not valid: {0}")]
    Invalid(#[from] ConferenceError),
}

/// A join token as text: hexadecimal, as `interlink conference reserve` prints it.
pub fn token_text(token: &SignedJoinToken) -> String {
    token
        .as_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Reads a join token from its text and verifies it at `now`: the signature of the bridge
/// it names, and its expiry.
pub fn parse_token(text: &str, now: Timestamp) -> Result<SignedJoinToken, TokenError> {
    let text = text.trim();
    if text.is_empty() {
        return Err(TokenError::Empty);
    }
    if !text.len().is_multiple_of(2) || text.len() > MAX_TOKEN_TEXT {
        return Err(TokenError::NotHex);
    }
    let bytes = (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect::<Option<Vec<u8>>>()
        .ok_or(TokenError::NotHex)?;
    // The token starts with its signer's key; the signature then proves it.
    let bridge = bytes
        .first_chunk::<32>()
        .map(|key| ProviderId::from_bytes(*key))
        .ok_or(TokenError::TooShort)?;
    Ok(SignedJoinToken::decode(&bytes, bridge, now)?)
}

/// Why a token's bridge was not found.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LocateError {
    #[error("the token's bridge is not a peer id")]
    NotAPeer,
    #[error("the bridge's offer was not found in the network within {}s", .0.as_secs())]
    NoOffer(Duration),
}

/// The token's bridge: its peer id and its offer from the DHT, which says where to dial
/// it. A node that has just joined may not reach the nodes holding the offer at once, so
/// it looks again until `deadline`.
pub async fn locate_bridge(
    client: &Client,
    token: &SignedJoinToken,
    deadline: Duration,
) -> Result<(PeerId, SignedOffer), LocateError> {
    let peer = crate::identity::peer_id(&token.token().bridge).ok_or(LocateError::NotAPeer)?;
    let give_up = Instant::now() + deadline;
    loop {
        if let Ok(Some(offer)) = client.get_offer(peer).await {
            return Ok((peer, offer));
        }
        if Instant::now() >= give_up {
            return Err(LocateError::NoOffer(deadline));
        }
        tokio::time::sleep(OFFER_RETRY).await;
    }
}

/// How a membership ended without the participant leaving.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MembershipEnd {
    /// The bridge closed the room: the organiser ended it, or its time ran out.
    RoomEnded,
    /// The stream to the bridge broke or closed (the bridge stopped, or dropped the
    /// participant whose media ended).
    Lost,
}

/// Why a join failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum JoinError {
    #[error("cannot reach the bridge: {0}")]
    Unreachable(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("the bridge refused: {0}")]
    Refused(RefusalReason),
    #[error("the bridge did not answer in time")]
    Timeout,
    #[error("the bridge broke the protocol: {0}")]
    Protocol(String),
}

/// A participant's place in a room: its conference stream.
#[derive(Debug)]
pub struct Membership {
    writer: FrameWriter,
    frames: Frames,
}

impl Membership {
    /// Leaves the room.
    pub async fn leave(mut self) {
        let _ = tokio::time::timeout(LEAVE_DEADLINE, async {
            let _ = self.writer.send(&ConferenceFrame::Leave).await;
            self.writer.close().await;
        })
        .await;
    }

    /// Resolves when the bridge ends the room, or the stream breaks.
    pub async fn closed(&mut self) -> MembershipEnd {
        loop {
            match self.frames.recv().await {
                Some(Ok(ConferenceFrame::Closed)) => return MembershipEnd::RoomEnded,
                Some(Err(_)) | None => return MembershipEnd::Lost,
                Some(Ok(_)) => {}
            }
        }
    }
}

/// Joins the room of `token` on `bridge` (dialled at `addresses`) with `sdp_offer`;
/// returns the bridge's SDP answer and the membership.
///
/// A join the bridge never answered is sent once more on a new stream: the bridge's stream
/// acceptor holds one stream at a time and drops one that arrives while it is taken, as
/// when participants join at once; a bridge that reads a join answers it.
pub async fn join(
    client: &Client,
    bridge: PeerId,
    addresses: Vec<Multiaddr>,
    token: &[u8],
    sdp_offer: String,
) -> Result<(String, Membership), JoinError> {
    // Unreachable covers everything before the bridge's answer: the stream not opening,
    // the join not going out, the stream closing unanswered.
    let join_once = || async {
        let stream = client
            .open_stream(bridge, addresses.clone(), CONFERENCE_PROTOCOL)
            .await
            .map_err(|e| JoinError::Unreachable(e.into()))?;
        let (mut writer, mut frames) = wire::split(stream);
        writer
            .send(&ConferenceFrame::Join {
                token: token.to_vec(),
                sdp_offer: sdp_offer.clone(),
            })
            .await
            .map_err(|e| JoinError::Unreachable(e.into()))?;
        match frames.recv().await {
            Some(Ok(ConferenceFrame::Joined { sdp_answer })) => {
                Ok((sdp_answer, Membership { writer, frames }))
            }
            Some(Ok(ConferenceFrame::Refused(reason))) => Err(JoinError::Refused(reason)),
            Some(Ok(other)) => Err(JoinError::Protocol(format!(
                "{} in answer to Join",
                other.name()
            ))),
            Some(Err(e)) => Err(JoinError::Unreachable(
                format!("before the bridge answered: {e}").into(),
            )),
            None => Err(JoinError::Unreachable(
                "the stream closed before the bridge answered".into(),
            )),
        }
    };
    let attempt = || tokio::time::timeout(JOIN_DEADLINE, join_once());
    match attempt().await.map_err(|_| JoinError::Timeout)? {
        Err(JoinError::Unreachable(reason)) => {
            tracing::info!(%bridge, %reason, "the bridge did not read the join; joining again");
            attempt().await.map_err(|_| JoinError::Timeout)?
        }
        joined => joined,
    }
}

/// What a tone participant heard and sent.
#[derive(Debug, Default)]
struct Book {
    heard: VecDeque<(Instant, [i16; FRAME_SAMPLES])>,
    packets_received: u64,
    packets_sent: u64,
}

/// A participant's WebRTC endpoint: sends a tone (or silence) in 20 ms PCMU frames and
/// keeps the last 10 s of what it hears.
#[derive(Debug)]
pub struct ToneParticipant {
    tone: watch::Sender<Option<f64>>,
    book: Arc<Mutex<Book>>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

/// A participant's offer, waiting for the bridge's answer.
#[derive(Debug)]
pub struct OfferedParticipant {
    leg: OfferedLeg,
}

impl OfferedParticipant {
    /// Makes a PCMU offer; returns it and its SDP.
    pub async fn offer(media: &MediaSettings) -> Result<(OfferedParticipant, String), MediaError> {
        let (leg, sdp) = WebRtcLeg::offer(media, &[Codec::Pcmu]).await?;
        Ok((OfferedParticipant { leg }, sdp))
    }

    /// Applies the bridge's answer and starts sending `tone` (silence if `None`).
    pub async fn accept_answer(
        self,
        sdp_answer: &str,
        tone: Option<f64>,
    ) -> Result<ToneParticipant, MediaError> {
        let leg = self.leg.accept_answer(sdp_answer).await?;
        let (tone_tx, tone_rx) = watch::channel(tone);
        let book = Arc::new(Mutex::new(Book::default()));
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(run(leg, tone_rx, Arc::clone(&book), stopped));
        Ok(ToneParticipant {
            tone: tone_tx,
            book,
            stop: Some(stop),
            task: Some(task),
        })
    }

    /// Withdraws the offer.
    pub async fn close(self) {
        self.leg.close().await;
    }
}

impl ToneParticipant {
    fn book(&self) -> MutexGuard<'_, Book> {
        self.book.locked()
    }

    /// Sends `tone` from now on (silence if `None`).
    pub fn set_tone(&self, tone: Option<f64>) {
        self.tone.send_replace(tone);
    }

    /// The samples of the frames heard since `since`, in order of arrival.
    pub fn heard_since(&self, since: Instant) -> Vec<i16> {
        self.book()
            .heard
            .iter()
            .filter(|(at, _)| *at >= since)
            .flat_map(|(_, frame)| frame.iter().copied())
            .collect()
    }

    /// When the frames heard since `since` arrived, with their samples.
    pub fn frames_since(&self, since: Instant) -> Vec<(Instant, [i16; FRAME_SAMPLES])> {
        self.book()
            .heard
            .iter()
            .filter(|(at, _)| *at >= since)
            .copied()
            .collect()
    }

    /// Packets received and sent so far.
    pub fn packets(&self) -> (u64, u64) {
        let book = self.book();
        (book.packets_received, book.packets_sent)
    }

    /// Stops sending and closes the connection.
    pub async fn close(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

async fn run(
    mut leg: WebRtcLeg,
    tone: watch::Receiver<Option<f64>>,
    book: Arc<Mutex<Book>>,
    mut stopped: oneshot::Receiver<()>,
) {
    let connected = tokio::select! {
        connected = leg.wait_connected(CONNECT_DEADLINE) => connected,
        _ = &mut stopped => Err(MediaError::Closed),
    };
    if connected.is_ok() {
        let payload_type = leg.payload_type();
        let mut generator: Option<(f64, ToneGenerator)> = None;
        let mut sequence: u16 = 1;
        let mut timestamp: u32 = 0;
        let mut pacing = tokio::time::interval(Duration::from_millis(20));
        pacing.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        loop {
            tokio::select! {
                _ = pacing.tick() => {
                    let wanted = *tone.borrow();
                    let samples = match wanted {
                        Some(freq) => {
                            if generator.as_ref().is_none_or(|(f, _)| *f != freq) {
                                generator = Some((freq, ToneGenerator::new(freq, TONE_AMPLITUDE)));
                            }
                            generator
                                .as_mut()
                                .map(|(_, g)| g.next_frame(FRAME_SAMPLES))
                                .unwrap_or_default()
                        }
                        None => {
                            generator = None;
                            vec![0; FRAME_SAMPLES]
                        }
                    };
                    let packet = Packet {
                        header: Header {
                            version: 2,
                            payload_type,
                            sequence_number: sequence,
                            timestamp,
                            ..Header::default()
                        },
                        payload: samples.iter().map(|&s| ulaw_encode(s)).collect::<Vec<u8>>().into(),
                    };
                    sequence = sequence.wrapping_add(1);
                    timestamp = timestamp.wrapping_add(160);
                    if leg.send(&packet).await.is_err() {
                        break;
                    }
                    book.locked().packets_sent += 1;
                }
                packet = leg.recv() => match packet {
                    Some(packet) if packet.payload.len() == FRAME_SAMPLES => {
                        let mut frame = [0i16; FRAME_SAMPLES];
                        for (sample, &byte) in frame.iter_mut().zip(packet.payload.iter()) {
                            *sample = ulaw_decode(byte);
                        }
                        let mut book = book.locked();
                        book.packets_received += 1;
                        if book.heard.len() == HEARD_FRAMES {
                            book.heard.pop_front();
                        }
                        book.heard.push_back((Instant::now(), frame));
                    }
                    Some(_) => {}
                    None => break,
                },
                _ = &mut stopped => break,
            }
        }
    }
    leg.close().await;
}

#[cfg(test)]
mod tests {
    use interlink_protocol::conference::{JoinToken, RoomId};
    use interlink_protocol::envelope;

    use super::*;

    fn token(expires_at: Timestamp) -> SignedJoinToken {
        let key = crate::identity::secret_key(&libp2p::identity::Keypair::generate_ed25519())
            .unwrap_or_else(|| panic!("an ed25519 key"));
        SignedJoinToken::sign(
            JoinToken {
                room_id: RoomId::from_bytes([7; 16]),
                bridge: key.provider_id(),
                organiser: key.provider_id(),
                max_participants: 3,
                expires_at,
            },
            &key,
        )
        .unwrap()
    }

    #[test]
    fn a_token_reads_back_from_its_text_and_bad_ones_say_why() {
        let now = Timestamp(1_000_000);
        let signed = token(Timestamp(2_000_000));
        let text = token_text(&signed);
        let read = parse_token(&format!("  {text}\n"), now).unwrap();
        assert_eq!(read, signed);

        assert!(matches!(parse_token(" ", now), Err(TokenError::Empty)));
        assert!(matches!(parse_token("abc", now), Err(TokenError::NotHex)));
        assert!(matches!(parse_token("zz", now), Err(TokenError::NotHex)));
        assert!(matches!(
            parse_token(&"ab".repeat(MAX_TOKEN_TEXT), now),
            Err(TokenError::NotHex)
        ));
        assert!(matches!(
            parse_token("abcd", now),
            Err(TokenError::TooShort)
        ));
        let mut tampered = text.clone().into_bytes();
        let last = tampered.len() - 1;
        tampered[last] = if tampered[last] == b'0' { b'1' } else { b'0' };
        let tampered = String::from_utf8(tampered).unwrap_or_default();
        let error = parse_token(&tampered, now).err();
        assert!(
            matches!(
                error,
                Some(TokenError::Invalid(ConferenceError::Envelope(
                    envelope::Error::BadSignature
                )))
            ),
            "{error:?}"
        );
        assert_eq!(
            error.map(|e| e.to_string()).unwrap_or_default(),
            "the join token is not valid: the signature does not verify"
        );
        assert!(matches!(
            parse_token(&text, Timestamp(2_000_000)),
            Err(TokenError::Invalid(ConferenceError::Expired { .. }))
        ));
    }
}
