//! The SIP trunk bridge: a WebRTC caller reaches a SIP callee through the gateway.
//!
//! Each admitted call becomes an outbound SIP call to the operator's trunk, and the
//! caller's WebRTC audio (SRTP) is relayed to and from the trunk's plain RTP. The parts:
//!
//! - [`trunk`]: the `[gateway.sip]` settings, checked into a [`Trunk`], and the rewriting
//!   of E.164 destinations into the numbers the trunk expects.
//! - `endpoint`: one rsipstack SIP endpoint per back-end, shared by its calls, bound to
//!   the configured local address, answering requests that belong to no call.
//! - `call`: the task of one bridged call: INVITE (with the caller's identity), ringing,
//!   the answer, BYE either way, CANCEL when the caller gives up first.
//! - `responses`: what each SIP response means for the call protocol.
//! - `sdp`: the SIP leg's SDP (RTP/AVP; PCMU, PCMA, telephone-event), written and read.
//! - `rtp_relay`: the media between the legs: payload types remapped, G.711 passed
//!   through (or converted between μ-law and A-law when the legs differ).
//!
//! [`SipGateway::start`] binds the endpoint; [`Gateway::start_call`] spawns a call task.
//! Dropping the gateway stops the endpoint once the calls in progress are over.

mod call;
mod endpoint;
pub(crate) mod responses;
mod rtp_relay;
pub(crate) mod sdp;
pub mod trunk;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use interlink_protocol::{Codec, ServiceKind};
use tokio::sync::oneshot;

use crate::gateway::{Gateway, IncomingCall, LegHandle};
use crate::webrtc_leg::MediaSettings;
use crate::{Capabilities, CapabilityError};

pub use trunk::{Credentials, NumberPlan, NumberRule, SipConfig, Transport, Trunk, TrunkError};

use endpoint::SipEndpoint;

/// Why the SIP back-end cannot start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SipError {
    #[error(transparent)]
    Config(#[from] TrunkError),
    #[error(transparent)]
    Capabilities(#[from] CapabilityError),
    #[error("cannot bind the SIP endpoint to {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: rsipstack::Error,
    },
    #[error("cannot resolve the trunk `{host}`: {source}")]
    Resolve {
        host: String,
        source: std::io::Error,
    },
    #[error("the SIP stack failed to start: {0}")]
    Stack(#[source] rsipstack::Error),
}

/// What the calls of one SIP back-end share.
#[derive(Debug)]
struct Shared {
    trunk: Trunk,
    endpoint: SipEndpoint,
    /// Where RTP toward the trunk binds, and what the SDP announces.
    media_ip: IpAddr,
    /// Where the callers' WebRTC media binds.
    webrtc: MediaSettings,
}

/// A gateway whose far end is a SIP trunk.
#[derive(Debug)]
pub struct SipGateway {
    capabilities: Capabilities,
    shared: Arc<Shared>,
}

impl SipGateway {
    /// Checks `config`, binds the SIP endpoint and starts it: a `kind` gateway for
    /// `max_calls` calls, its WebRTC media on `webrtc`.
    pub async fn start(
        kind: ServiceKind,
        max_calls: u32,
        config: &SipConfig,
        webrtc: MediaSettings,
    ) -> Result<SipGateway, SipError> {
        let capabilities = SipGateway::capabilities(kind, max_calls)?;
        let trunk = config.check()?;
        let endpoint = SipEndpoint::start(&trunk).await?;
        let media_ip = trunk.media_ip.unwrap_or(endpoint.advertised.ip());
        Ok(SipGateway {
            capabilities,
            shared: Arc::new(Shared {
                trunk,
                endpoint,
                media_ip,
                webrtc,
            }),
        })
    }

    /// What a SIP gateway advertises: G.711 both ways and DTMF as telephone events.
    pub fn capabilities(
        kind: ServiceKind,
        max_calls: u32,
    ) -> Result<Capabilities, CapabilityError> {
        Capabilities::new(
            kind,
            vec![Codec::Pcmu, Codec::Pcma, Codec::TelephoneEvent],
            max_calls,
        )
    }

    /// The address the SIP endpoint is bound to (its port, when configured as 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.shared.endpoint.local_addr
    }

    /// The address the endpoint puts in Via and Contact.
    pub fn advertised_addr(&self) -> SocketAddr {
        self.shared.endpoint.advertised
    }
}

impl Gateway for SipGateway {
    fn capabilities(&self) -> &Capabilities {
        &self.capabilities
    }

    fn start_call(&self, call: IncomingCall) -> LegHandle {
        let (hang_up, hung_up) = oneshot::channel();
        let task = tokio::spawn(call::run(call, Arc::clone(&self.shared), hung_up));
        LegHandle::new(hang_up, task)
    }
}
