//! The messages of a call: the signed invite and the frames of a call stream.
//!
//! One call is one stream between the caller and the gateway. The caller sends a signed
//! [`Invite`]; the gateway answers `Trying`, `Ringing`, `Answer` or `Reject`; either side
//! ends with `Bye`; the gateway then sends a signed receipt, which the caller accepts
//! (countersigned) or refuses. Every frame is bincode with a hard size limit.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::codec::{self, CodecError, Limit};
use crate::destination::{E164, Prefix};
use crate::envelope::{self, Signable, Signed};
use crate::identity::ProviderId;
use crate::offer::Tariff;
use crate::time::Timestamp;

/// Largest frame on a call stream.
pub const MAX_FRAME_BYTES: usize = 64 * 1024;
/// Largest SDP offer or answer.
pub const MAX_SDP_BYTES: usize = 32 * 1024;
/// Longest answering identity a caller accepts in an `Answer`; a longer one is ignored.
pub const MAX_ANSWERED_BY_BYTES: usize = 256;
/// An invite sent further than this from the gateway's `now` is refused as a replay.
pub const MAX_INVITE_SKEW: Duration = Duration::from_secs(300);
/// Prepended to an invite's body before signing.
pub const INVITE_DOMAIN: &[u8] = b"interlink/invite/v1\0";

/// A call's identity, chosen at random by the caller.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct CallId([u8; 16]);

impl CallId {
    /// The call id with these bytes (the caller's driver draws them at random).
    pub fn from_bytes(bytes: [u8; 16]) -> CallId {
        CallId(bytes)
    }

    /// The 16 bytes of the id.
    pub fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }
}

impl fmt::Display for CallId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

impl fmt::Debug for CallId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CallId({self})")
    }
}

/// Which offer a call was placed under: the provider and the `seq` the caller saw.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct OfferRef {
    pub provider: ProviderId,
    pub seq: u64,
}

/// What the caller asks of the gateway, and the terms it accepts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Invite {
    pub call_id: CallId,
    pub destination: E164,
    pub offer: OfferRef,
    /// The route of the offer the call goes by.
    pub prefix: Prefix,
    /// The price accepted: the route's tariff as the caller read it.
    pub tariff: Tariff,
    /// Who calls (and will countersign the receipt).
    pub caller: ProviderId,
    pub sdp_offer: String,
    pub sent_at: Timestamp,
}

/// Why an invite cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InviteError {
    /// Size, encoding, signature, or a signer that is not the invite's caller.
    #[error(transparent)]
    Envelope(#[from] envelope::Error),
    #[error("invalid invite field `{field}`: {reason}")]
    InvalidField { field: &'static str, reason: String },
    #[error(
        "the invite was sent at {sent_at}, too far from now ({now}): a replay or a wrong clock"
    )]
    Stale { sent_at: Timestamp, now: Timestamp },
}

impl Invite {
    fn check_fields(&self) -> Result<(), InviteError> {
        let invalid = |field, reason: String| Err(InviteError::InvalidField { field, reason });
        if self.sdp_offer.len() > MAX_SDP_BYTES {
            return invalid(
                "sdp_offer",
                format!("{} bytes, at most {MAX_SDP_BYTES}", self.sdp_offer.len()),
            );
        }
        if let Err(e) = self.prefix.check() {
            return invalid("prefix", e.to_string());
        }
        if !self.prefix.covers(&self.destination) {
            return invalid(
                "prefix",
                format!("{} does not cover {}", self.prefix, self.destination),
            );
        }
        if self.tariff.currency.exponent().is_none() {
            return invalid(
                "tariff.currency",
                format!("`{}` is not an ISO 4217 code", self.tariff.currency),
            );
        }
        Ok(())
    }
}

/// An invite signed by its caller; it exists only verified.
pub type SignedInvite = Signed<Invite>;

impl Signable for Invite {
    const DOMAIN: &'static [u8] = INVITE_DOMAIN;
    type BodyLimit = Limit<MAX_FRAME_BYTES>;
    /// The gateway's `now`, against replays.
    type Context = Timestamp;
    type Error = InviteError;

    fn signer(&self) -> ProviderId {
        self.caller
    }

    fn check_to_sign(&self) -> Result<(), InviteError> {
        self.check_fields()
    }

    fn check_received(&self, &now: &Timestamp) -> Result<(), InviteError> {
        self.check_fields()?;
        let skew = if self.sent_at > now {
            self.sent_at.since(now)
        } else {
            now.since(self.sent_at)
        };
        if skew > MAX_INVITE_SKEW {
            return Err(InviteError::Stale {
                sent_at: self.sent_at,
                now,
            });
        }
        Ok(())
    }
}

impl SignedInvite {
    /// Reads and verifies an invite received at `now`.
    pub fn decode(bytes: &[u8], now: Timestamp) -> Result<SignedInvite, InviteError> {
        Signed::open(bytes, &now)
    }

    /// The invite.
    pub fn invite(&self) -> &Invite {
        self.value()
    }
}

/// Why a gateway refuses a call.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum RejectReason {
    /// The callee is busy.
    Busy,
    /// The gateway cannot reach the destination.
    NoRoute,
    /// The accepted price is not the gateway's current price; here is the current one.
    PriceChanged { current: Option<Tariff> },
    /// The gateway carries as many calls as it can.
    OverCapacity,
    /// The caller is not allowed to call through this gateway.
    Unauthorised,
    /// The gateway or the far network cannot take the call now.
    Unavailable,
    /// Nobody answered in time.
    Timeout,
}

impl fmt::Display for RejectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RejectReason::Busy => f.write_str("busy"),
            RejectReason::NoRoute => f.write_str("no route to the destination"),
            RejectReason::PriceChanged { current: Some(t) } => {
                write!(
                    f,
                    "price changed (now {}/min, setup {})",
                    t.per_minute_money(),
                    t.setup_fee_money()
                )
            }
            RejectReason::PriceChanged { current: None } => f.write_str("price changed"),
            RejectReason::OverCapacity => f.write_str("over capacity"),
            RejectReason::Unauthorised => f.write_str("unauthorised"),
            RejectReason::Unavailable => f.write_str("unavailable"),
            RejectReason::Timeout => f.write_str("no answer in time"),
        }
    }
}

/// Why a call ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum ByeCause {
    /// The caller hung up.
    CallerHangUp,
    /// The callee (or the far network) hung up.
    CalleeHangUp,
    /// The caller gave up before the answer (as SIP's CANCEL).
    Cancelled,
    /// No media flowed in time after the answer.
    MediaTimeout,
    /// The media path failed.
    MediaFailed,
    /// The gateway is shutting down.
    Shutdown,
    /// The other side broke the protocol.
    ProtocolError,
    /// The stream closed without a `Bye` (never sent; what a side records).
    ConnectionLost,
}

impl fmt::Display for ByeCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ByeCause::CallerHangUp => "the caller hung up",
            ByeCause::CalleeHangUp => "the callee hung up",
            ByeCause::Cancelled => "cancelled before the answer",
            ByeCause::MediaTimeout => "no media in time",
            ByeCause::MediaFailed => "the media path failed",
            ByeCause::Shutdown => "the gateway is shutting down",
            ByeCause::ProtocolError => "protocol error",
            ByeCause::ConnectionLost => "the connection was lost",
        })
    }
}

/// One frame of a call stream.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Frame {
    /// A [`SignedInvite`]'s bytes (caller → gateway).
    Invite(Vec<u8>),
    /// The gateway has the invite and is working on it.
    Trying,
    /// The callee is being alerted.
    Ringing,
    /// The callee answered; the gateway's SDP answer and, when the far network says, who
    /// answered (a SIP trunk's `P-Asserted-Identity`, say).
    Answer {
        sdp: String,
        answered_by: Option<String>,
    },
    /// The gateway refuses the call.
    Reject(RejectReason),
    /// Either side ends the call.
    Bye(ByeCause),
    /// A gateway-signed receipt's bytes (gateway → caller).
    Receipt(Vec<u8>),
    /// The receipt countersigned by the caller (caller → gateway).
    ReceiptAccepted(Vec<u8>),
    /// The caller refuses the receipt, and why.
    ReceiptRefused(crate::call::receipt::ReceiptDispute),
    /// The caller hears the gateway's media (caller → gateway, once). With the caller's
    /// media arriving at the gateway, media flows both ways: only then is the call
    /// charged, from its answer.
    MediaReceived,
    /// The gateway is alive and still working on the call (gateway → caller, every
    /// [`Timers::keepalive`](crate::call::Timers) until the answer).
    KeepAlive,
    /// The gateway's SDP answer before the callee answers (SIP's 183 Session Progress):
    /// the caller applies it at once, so that ICE and DTLS run while the callee rings and
    /// media can flow the moment it answers. The `Answer` that follows carries the same
    /// SDP. Nothing is charged for this: billing starts from the answer, once media flows
    /// both ways.
    SessionProgress { sdp: String },
}

impl Frame {
    /// The frame's bytes, at most [`MAX_FRAME_BYTES`].
    pub fn encode(&self) -> Result<Vec<u8>, CodecError> {
        codec::encode::<_, MAX_FRAME_BYTES>(self)
    }

    /// Reads one frame from exactly `bytes`.
    pub fn decode(bytes: &[u8]) -> Result<Frame, CodecError> {
        codec::decode::<_, MAX_FRAME_BYTES>(bytes)
    }

    /// The frame's name, for logs.
    pub fn name(&self) -> &'static str {
        match self {
            Frame::Invite(_) => "Invite",
            Frame::Trying => "Trying",
            Frame::Ringing => "Ringing",
            Frame::Answer { .. } => "Answer",
            Frame::Reject(_) => "Reject",
            Frame::Bye(_) => "Bye",
            Frame::Receipt(_) => "Receipt",
            Frame::ReceiptAccepted(_) => "ReceiptAccepted",
            Frame::ReceiptRefused(_) => "ReceiptRefused",
            Frame::MediaReceived => "MediaReceived",
            Frame::KeepAlive => "KeepAlive",
            Frame::SessionProgress { .. } => "SessionProgress",
        }
    }
}
