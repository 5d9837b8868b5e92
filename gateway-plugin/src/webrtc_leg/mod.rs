//! The WebRTC leg of a call: one G.711 audio stream over ICE, DTLS and SRTP.
//!
//! A gateway answers the caller's SDP offer with [`WebRtcLeg::answer`]; a node that places a
//! call itself makes the offer with [`WebRtcLeg::offer`] and completes it with
//! [`OfferedLeg::accept_answer`]. Signalling is a single offer/answer exchange over our own
//! protocol, so ICE is not trickled: each side waits for candidate gathering to finish and
//! sends a description that already lists its candidates. Once connected, the leg hands out
//! the peer's RTP packets ([`WebRtcLeg::recv`]) and sends RTP to it ([`WebRtcLeg::send`]);
//! the back-end (echo, SIP bridge, conference) decides what to do with them. Only PCMU and
//! PCMA are negotiated, with telephone-event for DTMF, so audio passes to the telephone
//! network without transcoding.
//!
//! Built on webrtc-rs 0.21 (`webrtc`, over the sans-IO `rtc` core): a background driver task
//! owns the sockets of each connection. [`WebRtcLeg::close`] stops it; a leg dropped without
//! `close` is closed on a spawned task, because the driver of a dropped connection would
//! otherwise run on. The SDP the leg reads and rewrites itself is in `webrtc_leg/sdp.rs`.

pub(crate) mod sdp;

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use interlink_protocol::Codec;
use rtc::peer_connection::configuration::media_engine::{
    MIME_TYPE_PCMA, MIME_TYPE_PCMU, MIME_TYPE_TELEPHONE_EVENT,
};
use rtc::rtp_transceiver::rtp_sender::{
    RTCRtpCodec, RTCRtpCodecParameters, RTCRtpCodingParameters, RTCRtpEncodingParameters,
    RtpCodecKind,
};
use rtc::statistics::report::RTCStatsReportEntry;
use serde::Serialize;
use tokio::sync::{mpsc, watch};
use webrtc::media_stream::MediaStreamTrack;
use webrtc::media_stream::track_local::TrackLocal;
use webrtc::media_stream::track_local::static_rtp::TrackLocalStaticRTP;
use webrtc::media_stream::track_remote::{TrackRemote, TrackRemoteEvent};
use webrtc::peer_connection::{
    MediaEngine, PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler,
    RTCConfigurationBuilder, RTCIceConnectionState, RTCIceGatheringState, RTCPeerConnectionState,
    RTCSessionDescription, Registry, SettingEngineBuilder, StatsSelector, configure_rtcp_reports,
};
use webrtc::rtp_transceiver::RtpSender;

/// The RTP types of the leg's packets (webrtc-rs does not re-export them).
pub use rtc::rtp;

use rtp::packet::Packet;

use self::sdp::{
    CLOCK_RATE, PCMA_STATIC_PAYLOAD_TYPE, PCMU_STATIC_PAYLOAD_TYPE, PayloadFormat, answer_formats,
    is_audio, keep_audio_formats, negotiated_formats, parse_sdp,
};

/// The longest wait for ICE candidate gathering; host candidates alone take milliseconds.
pub const GATHER_TIMEOUT: Duration = Duration::from_secs(5);

/// Pacing of ICE connectivity checks, and how many a candidate pair gets.
const ICE_CHECK_INTERVAL: Duration = Duration::from_millis(50);
const ICE_CHECK_ATTEMPTS: u16 = 40;
/// The payload type offered for telephone-event/8000 when this side makes the offer.
const TELEPHONE_EVENT_PAYLOAD_TYPE: u8 = 101;

/// Where the leg's media sockets live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MediaSettings {
    /// ICE host candidates bind `bind_ip:0` exactly: a wildcard would be expanded to the
    /// interfaces and skip loopback.
    pub bind_ip: IpAddr,
}

impl MediaSettings {
    /// Media on 127.0.0.1, for tests and demos on one machine.
    pub fn loopback() -> MediaSettings {
        MediaSettings {
            bind_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
        }
    }
}

/// Why a WebRTC leg could not be set up or used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MediaError {
    #[error("bad SDP: {0}")]
    BadSdp(#[source] SdpFault),
    #[error("the offer has no active audio stream")]
    NoAudio,
    #[error("no common codec: the peer has [{}], this leg takes PCMU or PCMA", offered.join(", "))]
    NoCommonCodec { offered: Vec<String> },
    #[error("codec {0} cannot be offered on a WebRTC leg (PCMU, PCMA and telephone-event can)")]
    UnsupportedCodec(Codec),
    #[error("RTP payload type {0} is not negotiated on this leg")]
    PayloadType(u8),
    #[error("ICE candidate gathering did not complete within {0:?}")]
    GatheringTimeout(Duration),
    #[error("the connection failed (ICE or DTLS)")]
    ConnectionFailed,
    #[error("not connected within {0:?}")]
    ConnectTimeout(Duration),
    #[error("no media within {0:?}")]
    NoMedia(Duration),
    #[error("the connection is closed")]
    Closed,
    #[error("WebRTC failed to {during}: {source}")]
    WebRtc {
        during: &'static str,
        source: webrtc::error::Error,
    },
}

/// What is wrong with an SDP a leg was given.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SdpFault {
    #[error(transparent)]
    Unreadable(webrtc::error::Error),
    #[error("{what} refused: {source}")]
    Refused {
        what: &'static str,
        source: webrtc::error::Error,
    },
    #[error("the answer has {codec} as payload type {payload_type}, which was not offered")]
    NotOffered { codec: Codec, payload_type: u8 },
}

/// Wraps a webrtc-rs error with the step that failed.
fn webrtc_error(during: &'static str) -> impl FnOnce(webrtc::error::Error) -> MediaError {
    move |source| MediaError::WebRtc { during, source }
}

/// Packets and RTP payload bytes through a leg, counted at [`WebRtcLeg::recv`] and
/// [`WebRtcLeg::send`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct LegStats {
    pub packets_received: u64,
    pub bytes_received: u64,
    pub packets_sent: u64,
    pub bytes_sent: u64,
}

/// Round-trip times webrtc-rs measured on a connection.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RoundTrip {
    /// From RTCP receiver reports. webrtc-rs 0.21.1 records RTCP RTT as 0 (it does not compute
    /// it), so this stays `None` until a version that does.
    pub rtcp: Option<Duration>,
    /// From ICE connectivity checks (STUN) on the selected candidate pair.
    pub ice: Option<Duration>,
}

/// When a leg's connection got through each step of its handshake.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Handshake {
    /// ICE found a working candidate pair (its first `connected`).
    pub ice_connected: Option<Instant>,
    /// DTLS completed over that pair: the connection is up (its first `connected`).
    pub dtls_connected: Option<Instant>,
}

/// What the driver tells us through the event handler.
struct Events {
    state: watch::Sender<RTCPeerConnectionState>,
    handshake: watch::Sender<Handshake>,
    gathering: watch::Sender<RTCIceGatheringState>,
    media_started: watch::Sender<Option<Instant>>,
    tracks: mpsc::Sender<Arc<dyn TrackRemote>>,
}

#[async_trait::async_trait]
impl PeerConnectionEventHandler for Events {
    async fn on_ice_gathering_state_change(&self, state: RTCIceGatheringState) {
        self.gathering.send_replace(state);
    }

    async fn on_ice_connection_state_change(&self, state: RTCIceConnectionState) {
        if state == RTCIceConnectionState::Connected {
            self.handshake
                .send_if_modified(|h| first(&mut h.ice_connected, Instant::now()));
        }
    }

    async fn on_connection_state_change(&self, state: RTCPeerConnectionState) {
        tracing::debug!(%state, "WebRTC connection state");
        if state == RTCPeerConnectionState::Connected {
            self.handshake
                .send_if_modified(|h| first(&mut h.dtls_connected, Instant::now()));
        }
        self.state.send_replace(state);
    }

    async fn on_track(&self, track: Arc<dyn TrackRemote>) {
        // webrtc-rs opens a remote track when its first RTP packet arrives.
        self.media_started
            .send_if_modified(|started| first(started, Instant::now()));
        if self.tracks.try_send(track).is_err() {
            tracing::debug!("ignoring a second remote track: a leg carries one audio stream");
        }
    }
}

/// Sets `slot` to `at` unless it already holds a time; whether it did.
fn first(slot: &mut Option<Instant>, at: Instant) -> bool {
    let empty = slot.is_none();
    if empty {
        *slot = Some(at);
    }
    empty
}

/// One peer connection with its local audio track and the receiving ends of its events.
struct Peer {
    /// `None` once closed.
    pc: Option<Arc<dyn PeerConnection>>,
    track: Arc<TrackLocalStaticRTP>,
    ssrc: u32,
    state: watch::Receiver<RTCPeerConnectionState>,
    handshake: watch::Receiver<Handshake>,
    gathering: watch::Receiver<RTCIceGatheringState>,
    media_started: watch::Receiver<Option<Instant>>,
    tracks: mpsc::Receiver<Arc<dyn TrackRemote>>,
}

impl Peer {
    /// A connection whose media engine knows `formats`, and its audio track, not yet added:
    /// an answerer adds it only after applying the offer, so that it reuses that transceiver.
    async fn build(
        settings: &MediaSettings,
        formats: &[PayloadFormat],
    ) -> Result<Peer, MediaError> {
        let mut media_engine = MediaEngine::default();
        for format in formats {
            media_engine
                .register_codec(codec_parameters(*format), RtpCodecKind::Audio)
                .map_err(webrtc_error("register a codec"))?;
        }
        // Sender and receiver reports: the far end (a browser) derives its round trip,
        // jitter and loss figures from them.
        let registry = configure_rtcp_reports(Registry::new());
        // ICE checks every 50 ms (RFC 8445's Ta) rather than webrtc-rs's 200 ms, which alone
        // held media back some 200 ms after the answer; 40 attempts keep about 2 s per pair.
        let setting_engine = SettingEngineBuilder::new()
            .with_ice_connection_attempts(Some(ICE_CHECK_INTERVAL), Some(ICE_CHECK_ATTEMPTS))
            .build();

        let (state_tx, state) = watch::channel(RTCPeerConnectionState::New);
        let (handshake_tx, handshake) = watch::channel(Handshake::default());
        let (gathering_tx, gathering) = watch::channel(RTCIceGatheringState::New);
        let (media_started_tx, media_started) = watch::channel(None);
        let (tracks_tx, tracks) = mpsc::channel(1);
        let events = Arc::new(Events {
            state: state_tx,
            handshake: handshake_tx,
            gathering: gathering_tx,
            media_started: media_started_tx,
            tracks: tracks_tx,
        });

        // The builder's future is some 20 kB: boxed, so that every future awaiting a leg
        // does not carry it.
        let pc = Box::pin(
            PeerConnectionBuilder::new()
                .with_configuration(RTCConfigurationBuilder::new().build())
                .with_media_engine(media_engine)
                .with_interceptor_registry(registry)
                .with_setting_engine(setting_engine)
                .with_handler(events)
                .with_udp_addrs(vec![SocketAddr::new(settings.bind_ip, 0)])
                .build(),
        )
        .await
        .map_err(webrtc_error("create the peer connection"))?;
        let pc: Arc<dyn PeerConnection> = Arc::new(pc);

        // No SSRC and no codec on the track: the connection mints the SSRC, and a codec here
        // would restrict the offer to that one codec.
        let track = Arc::new(TrackLocalStaticRTP::new(MediaStreamTrack::new(
            "interlink".to_owned(),
            "interlink-audio".to_owned(),
            "audio".to_owned(),
            RtpCodecKind::Audio,
            vec![RTCRtpEncodingParameters {
                rtp_coding_parameters: RTCRtpCodingParameters::default(),
                codec: RTCRtpCodec::default(),
                ..Default::default()
            }],
        )));
        Ok(Peer {
            pc: Some(pc),
            track,
            ssrc: 0,
            state,
            handshake,
            gathering,
            media_started,
            tracks,
        })
    }

    fn pc(&self) -> Result<&Arc<dyn PeerConnection>, MediaError> {
        self.pc.as_ref().ok_or(MediaError::Closed)
    }

    /// Adds the audio track and learns the SSRC the connection gave it.
    async fn add_track(&mut self) -> Result<Arc<dyn RtpSender>, MediaError> {
        let track: Arc<dyn TrackLocal> = Arc::clone(&self.track) as Arc<dyn TrackLocal>;
        let sender = self
            .pc()?
            .add_track(track)
            .await
            .map_err(webrtc_error("add the audio track"))?;
        let parameters = sender
            .get_parameters()
            .await
            .map_err(webrtc_error("read the sender parameters"))?;
        self.ssrc = parameters
            .encodings
            .first()
            .and_then(|encoding| encoding.rtp_coding_parameters.ssrc)
            .ok_or(MediaError::WebRtc {
                during: "read the sender SSRC",
                source: webrtc::error::Error::ErrSenderWithNoSSRCs,
            })?;
        Ok(sender)
    }

    /// Applies `description` locally and returns it again once it lists every candidate.
    async fn set_local_and_gather(
        &mut self,
        description: RTCSessionDescription,
    ) -> Result<String, MediaError> {
        let pc = Arc::clone(self.pc()?);
        pc.set_local_description(description)
            .await
            .map_err(webrtc_error("apply the local description"))?;
        tokio::time::timeout(
            GATHER_TIMEOUT,
            self.gathering
                .wait_for(|state| *state == RTCIceGatheringState::Complete),
        )
        .await
        .map_err(|_| MediaError::GatheringTimeout(GATHER_TIMEOUT))?
        .map_err(|_| MediaError::Closed)?;
        let description = pc.local_description().await.ok_or(MediaError::Closed)?;
        Ok(description.sdp)
    }

    async fn close(&mut self) {
        if let Some(pc) = self.pc.take()
            && let Err(error) = pc.close().await
        {
            tracing::debug!(%error, "closing the peer connection");
        }
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        // The driver of a dropped, unclosed connection keeps running with its sockets open.
        if let Some(pc) = self.pc.take() {
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                runtime.spawn(async move {
                    let _ = pc.close().await;
                });
            } else {
                tracing::warn!("a WebRTC leg was dropped outside a runtime and left open");
            }
        }
    }
}

/// A leg whose SDP offer is out, waiting for the answer.
pub struct OfferedLeg {
    peer: Peer,
    offered: Vec<PayloadFormat>,
}

impl fmt::Debug for OfferedLeg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OfferedLeg")
            .field("ssrc", &self.peer.ssrc)
            .field("offered", &self.offered)
            .finish_non_exhaustive()
    }
}

impl OfferedLeg {
    /// Applies the peer's SDP answer; media flows once ICE and DTLS complete.
    ///
    /// On error the connection is closed.
    pub async fn accept_answer(mut self, answer_sdp: &str) -> Result<WebRtcLeg, MediaError> {
        match self.apply_answer(answer_sdp).await {
            Ok(formats) => Ok(WebRtcLeg::new(self.peer, formats)),
            Err(error) => {
                self.peer.close().await;
                Err(error)
            }
        }
    }

    /// Withdraws the offer and closes the connection.
    pub async fn close(mut self) {
        self.peer.close().await;
    }

    async fn apply_answer(&mut self, answer_sdp: &str) -> Result<Vec<PayloadFormat>, MediaError> {
        let parsed = parse_sdp(answer_sdp)?;
        let formats = negotiated_formats(&parsed)?;
        if let Some(unknown) = formats.iter().find(|f| !self.offered.contains(f)) {
            return Err(MediaError::BadSdp(SdpFault::NotOffered {
                codec: unknown.codec,
                payload_type: unknown.payload_type,
            }));
        }
        let description = RTCSessionDescription::answer(answer_sdp.to_owned())
            .map_err(|error| MediaError::BadSdp(SdpFault::Unreadable(error)))?;
        self.peer
            .pc()?
            .set_remote_description(description)
            .await
            .map_err(|source| {
                MediaError::BadSdp(SdpFault::Refused {
                    what: "answer",
                    source,
                })
            })?;
        Ok(formats)
    }
}

/// The WebRTC side of a call, connected (or connecting) to one peer.
pub struct WebRtcLeg {
    peer: Peer,
    /// The negotiated formats, the audio codec first.
    formats: Vec<PayloadFormat>,
    remote: Option<Arc<dyn TrackRemote>>,
    packets_received: AtomicU64,
    bytes_received: AtomicU64,
    packets_sent: AtomicU64,
    bytes_sent: AtomicU64,
}

impl fmt::Debug for WebRtcLeg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebRtcLeg")
            .field("ssrc", &self.peer.ssrc)
            .field("formats", &self.formats)
            .field("state", &*self.peer.state.borrow())
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl WebRtcLeg {
    /// Makes an SDP offer for one audio stream with `codecs` (PCMU, PCMA, telephone-event)
    /// in order of preference; the returned SDP lists the gathered candidates.
    pub async fn offer(
        settings: &MediaSettings,
        codecs: &[Codec],
    ) -> Result<(OfferedLeg, String), MediaError> {
        let mut formats: Vec<PayloadFormat> = Vec::new();
        for &codec in codecs {
            let payload_type = match codec {
                Codec::Pcmu => PCMU_STATIC_PAYLOAD_TYPE,
                Codec::Pcma => PCMA_STATIC_PAYLOAD_TYPE,
                Codec::TelephoneEvent => TELEPHONE_EVENT_PAYLOAD_TYPE,
                other => return Err(MediaError::UnsupportedCodec(other)),
            };
            if !formats.iter().any(|f| f.codec == codec) {
                formats.push(PayloadFormat {
                    codec,
                    payload_type,
                });
            }
        }
        if !formats.iter().any(|f| is_audio(f.codec)) {
            return Err(MediaError::NoCommonCodec {
                offered: codecs.iter().map(ToString::to_string).collect(),
            });
        }
        let mut peer = Peer::build(settings, &formats).await?;
        match Self::make_offer(&mut peer).await {
            Ok(sdp) => Ok((
                OfferedLeg {
                    peer,
                    offered: formats,
                },
                sdp,
            )),
            Err(error) => {
                peer.close().await;
                Err(error)
            }
        }
    }

    async fn make_offer(peer: &mut Peer) -> Result<String, MediaError> {
        peer.add_track().await?;
        let offer = peer
            .pc()?
            .create_offer(None)
            .await
            .map_err(webrtc_error("create the offer"))?;
        peer.set_local_and_gather(offer).await
    }

    /// Answers a caller's SDP offer: one audio stream, PCMU preferred, then PCMA, with
    /// telephone-event/8000 when offered. Returns the leg and the answer SDP, which lists the
    /// gathered candidates.
    pub async fn answer(
        offer_sdp: &str,
        settings: &MediaSettings,
    ) -> Result<(WebRtcLeg, String), MediaError> {
        let parsed = parse_sdp(offer_sdp)?;
        let formats = answer_formats(&parsed)?;
        let payload_types: Vec<u8> = formats.iter().map(|f| f.payload_type).collect();
        let description =
            RTCSessionDescription::offer(keep_audio_formats(offer_sdp, &payload_types))
                .map_err(|error| MediaError::BadSdp(SdpFault::Unreadable(error)))?;
        let mut peer = Peer::build(settings, &formats).await?;
        match Self::make_answer(&mut peer, description, &formats).await {
            Ok((formats, sdp)) => Ok((WebRtcLeg::new(peer, formats), sdp)),
            Err(error) => {
                peer.close().await;
                Err(error)
            }
        }
    }

    async fn make_answer(
        peer: &mut Peer,
        offer: RTCSessionDescription,
        formats: &[PayloadFormat],
    ) -> Result<(Vec<PayloadFormat>, String), MediaError> {
        let pc = Arc::clone(peer.pc()?);
        pc.set_remote_description(offer).await.map_err(|source| {
            MediaError::BadSdp(SdpFault::Refused {
                what: "offer",
                source,
            })
        })?;
        // Added after the offer is applied, the track takes over the transceiver the offer
        // created, which then sends as well as receives.
        let sender = peer.add_track().await?;
        // The answer would list the codecs in the offer's order; ours decides.
        for transceiver in pc.get_transceivers().await {
            let ours = transceiver
                .sender()
                .await
                .ok()
                .flatten()
                .is_some_and(|s| s.id() == sender.id());
            if ours {
                transceiver
                    .set_codec_preferences(formats.iter().copied().map(codec_parameters).collect())
                    .await
                    .map_err(webrtc_error("set the codec preferences"))?;
            }
        }
        let answer = pc
            .create_answer(None)
            .await
            .map_err(webrtc_error("create the answer"))?;
        let sdp = peer.set_local_and_gather(answer).await?;
        let negotiated = negotiated_formats(&parse_sdp(&sdp)?)?;
        Ok((negotiated, sdp))
    }

    fn new(peer: Peer, formats: Vec<PayloadFormat>) -> WebRtcLeg {
        WebRtcLeg {
            peer,
            formats,
            remote: None,
            packets_received: AtomicU64::new(0),
            bytes_received: AtomicU64::new(0),
            packets_sent: AtomicU64::new(0),
            bytes_sent: AtomicU64::new(0),
        }
    }

    /// The negotiated audio codec (PCMU or PCMA).
    pub fn codec(&self) -> Codec {
        self.audio_format().codec
    }

    /// The RTP payload type of [`WebRtcLeg::codec`] on this leg.
    pub fn payload_type(&self) -> u8 {
        self.audio_format().payload_type
    }

    /// The payload type of telephone events, if they were negotiated.
    pub fn telephone_event_payload_type(&self) -> Option<u8> {
        self.formats
            .iter()
            .find(|f| f.codec == Codec::TelephoneEvent)
            .map(|f| f.payload_type)
    }

    /// The negotiated audio codec with its payload type on this leg.
    pub(crate) fn audio_format(&self) -> PayloadFormat {
        // Negotiation keeps only formats with an audio codec among them; PCMU is the
        // fallback only for the type system.
        self.formats
            .iter()
            .copied()
            .find(|f| is_audio(f.codec))
            .unwrap_or(PayloadFormat {
                codec: Codec::Pcmu,
                payload_type: PCMU_STATIC_PAYLOAD_TYPE,
            })
    }

    /// The SSRC of the packets this leg sends.
    pub fn ssrc(&self) -> u32 {
        self.peer.ssrc
    }

    /// The connection's current state.
    pub fn state(&self) -> RTCPeerConnectionState {
        *self.peer.state.borrow()
    }

    /// Waits until ICE and DTLS are up.
    pub async fn wait_connected(&self, deadline: Duration) -> Result<(), MediaError> {
        let mut state = self.peer.state.clone();
        let reached = tokio::time::timeout(
            deadline,
            state.wait_for(|s| {
                matches!(
                    s,
                    RTCPeerConnectionState::Connected
                        | RTCPeerConnectionState::Failed
                        | RTCPeerConnectionState::Closed
                )
            }),
        )
        .await
        .map_err(|_| MediaError::ConnectTimeout(deadline))?
        .map(|s| *s)
        .map_err(|_| MediaError::Closed)?;
        match reached {
            RTCPeerConnectionState::Connected => Ok(()),
            RTCPeerConnectionState::Failed => Err(MediaError::ConnectionFailed),
            _ => Err(MediaError::Closed),
        }
    }

    /// When ICE and then DTLS got through, so far.
    pub fn handshake(&self) -> Handshake {
        *self.peer.handshake.borrow()
    }

    /// When the peer's first RTP packet arrived, if one has.
    pub fn media_started(&self) -> Option<Instant> {
        *self.peer.media_started.borrow()
    }

    /// Waits for the peer's first RTP packet and returns when it arrived.
    pub async fn wait_media_started(&self, deadline: Duration) -> Result<Instant, MediaError> {
        let mut started = self.peer.media_started.clone();
        let mut state = self.peer.state.clone();
        let wait = async {
            tokio::select! {
                started = started.wait_for(Option::is_some) => {
                    started.ok().and_then(|s| *s).ok_or(MediaError::Closed)
                }
                _ = wait_ended(&mut state) => Err(MediaError::Closed),
            }
        };
        tokio::time::timeout(deadline, wait)
            .await
            .map_err(|_| MediaError::NoMedia(deadline))?
    }

    /// The peer's next RTP packet; `None` once the connection is closed or has failed.
    ///
    /// Cancel-safe: a packet is taken only when this returns it, so it can race other
    /// futures in `select!`. Read continuously: webrtc-rs queues 256 packets per track and
    /// drops the rest.
    pub async fn recv(&mut self) -> Option<Packet> {
        let mut state = self.peer.state.clone();
        loop {
            let remote = match &self.remote {
                Some(remote) => Arc::clone(remote),
                None => {
                    let track = tokio::select! {
                        track = self.peer.tracks.recv() => track,
                        _ = wait_ended(&mut state) => None,
                    };
                    let track = track?;
                    self.remote = Some(Arc::clone(&track));
                    track
                }
            };
            let event = tokio::select! {
                event = remote.poll() => event,
                _ = wait_ended(&mut state) => None,
            };
            match event {
                Some(TrackRemoteEvent::OnRtpPacket(packet)) => {
                    self.packets_received.fetch_add(1, Ordering::Relaxed);
                    self.bytes_received
                        .fetch_add(packet.payload.len() as u64, Ordering::Relaxed);
                    return Some(packet);
                }
                Some(TrackRemoteEvent::OnEnded) | None => return None,
                Some(_) => {}
            }
        }
    }

    /// Sends an RTP packet to the peer.
    ///
    /// webrtc-rs's `write_rtp` rewrites nothing: it drops (with only a log line) a packet
    /// whose SSRC is not the track's or whose payload type is not negotiated, or that carries
    /// a header extension that is not. So this sets the SSRC to the leg's own, refuses a
    /// payload type this leg did not negotiate, and strips header extensions. Sequence
    /// number, timestamp, marker and payload go out as given. A packet sent before the
    /// connection is up (see [`WebRtcLeg::wait_connected`]) is dropped by webrtc-rs.
    pub async fn send(&self, packet: &Packet) -> Result<(), MediaError> {
        if !self
            .formats
            .iter()
            .any(|f| f.payload_type == packet.header.payload_type)
        {
            return Err(MediaError::PayloadType(packet.header.payload_type));
        }
        if matches!(
            self.state(),
            RTCPeerConnectionState::Closed | RTCPeerConnectionState::Failed
        ) {
            return Err(MediaError::Closed);
        }
        let mut packet = packet.clone();
        packet.header.ssrc = self.peer.ssrc;
        packet.header.extension = false;
        packet.header.extensions.clear();
        packet.header.extensions_padding = 0;
        let bytes = packet.payload.len() as u64;
        self.peer
            .track
            .write_rtp(packet)
            .await
            .map_err(|_| MediaError::Closed)?;
        self.packets_sent.fetch_add(1, Ordering::Relaxed);
        self.bytes_sent.fetch_add(bytes, Ordering::Relaxed);
        Ok(())
    }

    /// Packets and bytes received and sent so far.
    pub fn stats(&self) -> LegStats {
        LegStats {
            packets_received: self.packets_received.load(Ordering::Relaxed),
            bytes_received: self.bytes_received.load(Ordering::Relaxed),
            packets_sent: self.packets_sent.load(Ordering::Relaxed),
            bytes_sent: self.bytes_sent.load(Ordering::Relaxed),
        }
    }

    /// The round-trip times webrtc-rs has measured on this connection.
    pub async fn round_trip(&self) -> RoundTrip {
        let Ok(pc) = self.peer.pc() else {
            return RoundTrip::default();
        };
        let report = pc.get_stats(Instant::now(), StatsSelector::None).await;
        let mut round_trip = RoundTrip::default();
        for entry in report.iter() {
            match entry {
                RTCStatsReportEntry::RemoteInboundRtp(stats)
                    if stats.round_trip_time_measurements > 0 =>
                {
                    round_trip.rtcp = round_trip.rtcp.or(seconds(stats.round_trip_time));
                }
                RTCStatsReportEntry::IceCandidatePair(pair) if pair.nominated => {
                    round_trip.ice = round_trip.ice.or(seconds(pair.current_round_trip_time));
                }
                _ => {}
            }
        }
        round_trip
    }

    /// Closes the connection and stops its driver.
    pub async fn close(mut self) {
        self.remote = None;
        self.peer.close().await;
    }
}

/// A positive time in seconds as a duration; webrtc-rs reports 0 for "not measured".
fn seconds(value: f64) -> Option<Duration> {
    (value > 0.0)
        .then(|| Duration::try_from_secs_f64(value).ok())
        .flatten()
}

/// Resolves once the connection is closed or has failed (or its driver is gone).
async fn wait_ended(state: &mut watch::Receiver<RTCPeerConnectionState>) {
    let _ = state
        .wait_for(|s| {
            matches!(
                s,
                RTCPeerConnectionState::Closed | RTCPeerConnectionState::Failed
            )
        })
        .await;
}

fn codec_parameters(format: PayloadFormat) -> RTCRtpCodecParameters {
    let mime_type = match format.codec {
        Codec::Pcma => MIME_TYPE_PCMA,
        Codec::TelephoneEvent => MIME_TYPE_TELEPHONE_EVENT,
        _ => MIME_TYPE_PCMU,
    };
    RTCRtpCodecParameters {
        rtp_codec: RTCRtpCodec {
            mime_type: mime_type.to_owned(),
            clock_rate: CLOCK_RATE,
            channels: 0,
            // RFC 4733: the events a telephone keypad sends.
            sdp_fmtp_line: if format.codec == Codec::TelephoneEvent {
                "0-16".to_owned()
            } else {
                String::new()
            },
            rtcp_feedback: vec![],
        },
        payload_type: format.payload_type,
    }
}
