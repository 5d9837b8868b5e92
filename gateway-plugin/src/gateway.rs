//! The interface between a node and the back-end that carries its calls.
//!
//! The node admits a call (capacity, price, offer) and hands it to the back-end with
//! [`Gateway::start_call`]. The back-end places the far leg and terminates the caller's
//! WebRTC media, and reports what happens on the [`IncomingCall::events`] channel:
//! ringing, the answer with its SDP, the first media, a failure before the answer, a
//! hang-up from the far end. The node ends the leg with [`LegHandle::hang_up`] when the
//! caller hangs up or the call must end. The node turns these into the call protocol;
//! the back-end never sees it.

use interlink_protocol::call::{ByeCause, CallId, RejectReason};
use interlink_protocol::{E164, ProviderId};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::Capabilities;

/// Events a back-end sends about one call, in this order at most once each (a leg that
/// fails before the answer sends only `Failed`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LegEvent {
    /// The caller's media is answered before the callee is: the SDP answer, which the
    /// caller applies at once so that ICE and DTLS run while the callee rings. A back-end
    /// that sends it gives the same SDP in `Answered`, and neither plays nor reports the
    /// caller's media before the answer.
    SessionProgress { sdp_answer: String },
    /// The callee is being alerted.
    Ringing,
    /// The callee answered; the SDP answer to the caller's offer, and who answered if the
    /// far network says (a SIP `P-Asserted-Identity`, say).
    Answered {
        sdp_answer: String,
        answered_by: Option<String>,
    },
    /// The first media packet from the caller arrived.
    MediaStarted,
    /// The far leg could not be set up.
    Failed(RejectReason),
    /// The far end hung up an answered call (or the media path died).
    HungUp,
}

/// A call the node has admitted, handed to the back-end.
#[derive(Debug)]
pub struct IncomingCall {
    pub call_id: CallId,
    pub destination: E164,
    /// The caller's identity (its provider key), for the far network's caller id.
    pub caller: ProviderId,
    /// The caller's WebRTC SDP offer.
    pub sdp_offer: String,
    /// Where the back-end reports progress.
    pub events: mpsc::Sender<LegEvent>,
}

/// The node's handle on a leg the back-end runs.
#[derive(Debug)]
pub struct LegHandle {
    hang_up: Option<oneshot::Sender<ByeCause>>,
    task: JoinHandle<()>,
}

impl LegHandle {
    /// A handle on `task`, which ends the leg when it receives on `hang_up`.
    pub fn new(hang_up: oneshot::Sender<ByeCause>, task: JoinHandle<()>) -> LegHandle {
        LegHandle {
            hang_up: Some(hang_up),
            task,
        }
    }

    /// Asks the back-end to end the leg (cancel it if unanswered) with `cause`.
    pub fn hang_up(&mut self, cause: ByeCause) {
        if let Some(sender) = self.hang_up.take() {
            let _ = sender.send(cause);
        }
    }

    /// Waits until the back-end has released everything the leg held.
    pub async fn finished(self) {
        let _ = self.task.await;
    }
}

/// A back-end that carries calls for the node.
pub trait Gateway: Send + Sync + 'static {
    /// What the back-end can do, for the node's offer.
    fn capabilities(&self) -> &Capabilities;

    /// Starts the far leg of an admitted call.
    fn start_call(&self, call: IncomingCall) -> LegHandle;
}
