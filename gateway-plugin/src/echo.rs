//! The echo back-end: a callee that answers and plays the caller's own audio back.
//!
//! It stands in for a far network in tests and the demo. It answers the caller's media at
//! once (an early SDP answer, so that ICE and DTLS run while it rings), rings for a
//! configured time, then answers; its WebRTC leg returns every RTP packet it receives
//! unchanged (same payload, timestamp and sequence number), so the caller can check what
//! comes back byte for byte. It can be told to answer busy, never to answer, or to hang up by itself
//! after some seconds.

use std::time::Duration;

use interlink_protocol::call::{ByeCause, RejectReason};
use interlink_protocol::{Codec, ServiceKind};
use serde::Deserialize;
use tokio::sync::{mpsc, oneshot};

use crate::gateway::{Gateway, IncomingCall, LegEvent, LegHandle};
use crate::webrtc_leg::{MediaSettings, WebRtcLeg};
use crate::{Capabilities, CapabilityError};

/// How the echo callee behaves.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Answering {
    /// Answer after the ring time.
    #[default]
    Answer,
    /// Refuse as busy after the ring time.
    Busy,
    /// Ring until the caller gives up.
    NeverAnswer,
}

/// The echo back-end's settings (`[gateway.echo]` in the node's config).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EchoConfig {
    /// How long the callee rings before answering (or refusing).
    pub ring_ms: u64,
    pub answering: Answering,
    /// Hang up by itself this long after answering; 0 never does.
    pub hang_up_after_secs: u64,
    /// Answer the caller's media before the callee answers, so that ICE and DTLS run while
    /// it rings (the default). `false` answers it only at the answer, as releases before
    /// the early answer did: for comparisons.
    pub early_answer: bool,
}

impl Default for EchoConfig {
    fn default() -> Self {
        EchoConfig {
            ring_ms: 500,
            answering: Answering::Answer,
            hang_up_after_secs: 0,
            early_answer: true,
        }
    }
}

/// A gateway whose far end is an echo.
#[derive(Debug)]
pub struct EchoGateway {
    capabilities: Capabilities,
    config: EchoConfig,
    media: MediaSettings,
}

impl EchoGateway {
    /// An echo gateway of `kind` for `max_calls` calls, its media on `media`.
    pub fn new(
        kind: ServiceKind,
        max_calls: u32,
        config: EchoConfig,
        media: MediaSettings,
    ) -> Result<EchoGateway, CapabilityError> {
        let capabilities = EchoGateway::capabilities(kind, max_calls)?;
        Ok(EchoGateway {
            capabilities,
            config,
            media,
        })
    }

    /// What an echo gateway advertises: G.711 both ways.
    pub fn capabilities(
        kind: ServiceKind,
        max_calls: u32,
    ) -> Result<Capabilities, CapabilityError> {
        Capabilities::new(kind, vec![Codec::Pcmu, Codec::Pcma], max_calls)
    }
}

impl Gateway for EchoGateway {
    fn capabilities(&self) -> &Capabilities {
        &self.capabilities
    }

    fn start_call(&self, call: IncomingCall) -> LegHandle {
        let (hang_up, hung_up) = oneshot::channel();
        let task = tokio::spawn(run_leg(call, self.config.clone(), self.media, hung_up));
        LegHandle::new(hang_up, task)
    }
}

async fn run_leg(
    call: IncomingCall,
    config: EchoConfig,
    media: MediaSettings,
    mut hung_up: oneshot::Receiver<ByeCause>,
) {
    let events = call.events;
    let answer_media = || async {
        let answered = WebRtcLeg::answer(&call.sdp_offer, &media).await;
        if let Err(e) = &answered {
            tracing::warn!(call = %call.call_id, error = %e, "cannot answer the caller's media");
            let _ = events
                .send(LegEvent::Failed(RejectReason::Unavailable))
                .await;
        }
        answered.ok()
    };
    // The media is answered first, so that it connects while the callee rings.
    let mut early = None;
    if config.early_answer {
        let Some((leg, sdp_answer)) = answer_media().await else {
            return;
        };
        let _ = events
            .send(LegEvent::SessionProgress {
                sdp_answer: sdp_answer.clone(),
            })
            .await;
        early = Some((leg, sdp_answer));
    }
    let _ = events.send(LegEvent::Ringing).await;
    let mut leg = early.as_mut().map(|(leg, _)| leg);
    let rang = tokio::select! {
        () = ring(leg.as_deref_mut(), Duration::from_millis(config.ring_ms)) => true,
        _ = &mut hung_up => false,
    };
    let answer = match config.answering {
        _ if !rang => false,
        Answering::Answer => true,
        Answering::Busy => {
            let _ = events.send(LegEvent::Failed(RejectReason::Busy)).await;
            false
        }
        Answering::NeverAnswer => {
            tokio::select! {
                () = ring(leg, Duration::MAX) => {}
                _ = &mut hung_up => {}
            }
            false
        }
    };
    if !answer {
        if let Some((leg, _)) = early {
            leg.close().await;
        }
        return;
    }
    let (leg, sdp_answer) = match early {
        Some(early) => early,
        None => match answer_media().await {
            Some(answered) => answered,
            None => return,
        },
    };
    let _ = events
        .send(LegEvent::Answered {
            sdp_answer,
            answered_by: None,
        })
        .await;
    echo(leg, &events, config.hang_up_after_secs, hung_up).await;
}

/// Rings for `ring_for`, dropping what the caller sends meanwhile on `leg`: nothing is
/// played or reported before the answer.
async fn ring(mut leg: Option<&mut WebRtcLeg>, ring_for: Duration) {
    let rang = tokio::time::sleep(ring_for);
    tokio::pin!(rang);
    loop {
        let Some(media) = leg.as_deref_mut() else {
            return rang.await;
        };
        tokio::select! {
            () = &mut rang => return,
            packet = media.recv() => if packet.is_none() {
                leg = None;
            },
        }
    }
}

/// Returns the caller's packets until either side hangs up or the media dies.
async fn echo(
    mut leg: WebRtcLeg,
    events: &mpsc::Sender<LegEvent>,
    hang_up_after_secs: u64,
    mut hung_up: oneshot::Receiver<ByeCause>,
) {
    let limit = (hang_up_after_secs > 0).then(|| Duration::from_secs(hang_up_after_secs));
    let deadline = async {
        match limit {
            Some(limit) => tokio::time::sleep(limit).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(deadline);
    let mut started = false;
    loop {
        tokio::select! {
            packet = leg.recv() => match packet {
                Some(packet) => {
                    if !started {
                        started = true;
                        let _ = events.send(LegEvent::MediaStarted).await;
                    }
                    if let Err(e) = leg.send(&packet).await {
                        tracing::debug!(error = %e, "echo packet not sent");
                    }
                }
                None => {
                    let _ = events.send(LegEvent::HungUp).await;
                    break;
                }
            },
            () = &mut deadline => {
                let _ = events.send(LegEvent::HungUp).await;
                break;
            }
            _ = &mut hung_up => break,
        }
    }
    leg.close().await;
}
