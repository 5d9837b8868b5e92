//! Calls: negotiation between a caller and the gateway it chose, and settlement.
//!
//! - [`messages`]: the signed [`Invite`], the [`Frame`]s of a call stream, reject reasons
//!   and bye causes.
//! - [`caller`] and [`gateway`]: the two sides as state machines without IO. Each takes
//!   frames, local events and `now`, and returns frames to send, events and a deadline.
//! - [`receipt`]: the usage receipt the gateway signs and the caller checks and
//!   countersigns.
//!
//! Each phase has a deadline ([`Timers`]): invite → `Trying`, → answer, answer → media,
//! and end → receipt.

pub mod caller;
pub mod gateway;
pub mod messages;
pub mod receipt;

use std::time::Duration;

pub use caller::{CallEnd, CallerCall, CallerEvent, CallerState, Failure, ReceiptOutcome};
pub use gateway::{GatewayCall, GatewayEvent, GatewayOutcome, GatewayState};
pub use messages::{ByeCause, CallId, Frame, Invite, OfferRef, RejectReason, SignedInvite};
pub use receipt::{ReceiptDispute, SettledReceipt, SignedReceipt, UsageReceipt};

/// The phases of a call that have a deadline.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Phase {
    /// From the invite to `Trying`.
    Trying,
    /// From `Trying` to the answer (how long the callee may ring).
    Answer,
    /// From the answer to the first media packet.
    Media,
    /// From the end of the call to the receipt (caller) or countersignature (gateway).
    Receipt,
    /// From the gateway's last frame while the callee rings (caller).
    Silence,
}

/// The side of a call.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Party {
    Caller,
    Gateway,
}

/// The deadline of each phase.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timers {
    pub trying: Duration,
    pub answer: Duration,
    pub media: Duration,
    pub receipt: Duration,
    /// While the callee rings, the gateway sends `KeepAlive` this often...
    pub keepalive: Duration,
    /// ...and the caller gives a gateway up (and tries the next) after this long without
    /// a frame from it: a gateway that died, or whose host or path did, is noticed in well
    /// under a second instead of the transport's idle timeout.
    pub silence: Duration,
}

impl Default for Timers {
    /// Trying in 5 s (a gateway that does not acknowledge by then is down); 60 s of
    /// ringing, as telephone networks allow; media within 10 s of the answer (ICE and DTLS
    /// take well under a second on a sound path); the receipt within 5 s of the end.
    /// While ringing, a keep-alive every 250 ms and 750 ms of silence tolerated: two lost
    /// in a row, each resent by the transport within a round trip or two, do not end a
    /// call.
    fn default() -> Self {
        Timers {
            trying: Duration::from_secs(5),
            answer: Duration::from_secs(60),
            media: Duration::from_secs(10),
            receipt: Duration::from_secs(5),
            keepalive: Duration::from_millis(250),
            silence: Duration::from_millis(750),
        }
    }
}

#[cfg(test)]
mod tests;
