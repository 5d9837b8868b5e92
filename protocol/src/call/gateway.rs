//! The gateway's side of a call, as a state machine without IO.
//!
//! The driver decodes the invite, decides admission (capacity, price, offer) and calls
//! [`GatewayCall::admit`] or [`GatewayCall::reject`]; then it reports what the back-end
//! does (ringing, answered, media, far-end hang-up or failure) and feeds the caller's
//! frames and timeouts, each with `now`. The machine returns frames to send, events for
//! the driver (hang up the far leg; the call is over, with its receipt) and its deadline.
//!
//! ```text
//! Admitting ──admit──► Trying ──ringing──► Ringing ──answered──► Answered ──media──► Active
//!     │                  │                    │                      │   both ways      │
//!  reject            far-end failure, no answer in time:           Bye (either side),
//!     ▼              Reject; caller's Bye: Cancelled                media timeout, lost
//!   Done                                                               ▼
//!                                        Ending: receipt sent, wait for the countersignature
//!                                        ──► Done (settled, disputed or unacknowledged)
//! ```
//!
//! A back-end that has its media ready before the callee answers sends its SDP answer at
//! once ([`GatewayCall::session_progress`]): the connection is set up while the callee
//! rings, and the answer costs no further round trips.
//!
//! Media flows both ways when the caller's media reaches the gateway's leg
//! ([`GatewayCall::media_started`]) and the caller says it hears the gateway's
//! (`MediaReceived`). A call that ends before then (DTLS failed, a one-way path, a hang-up
//! before anything was heard) gets a receipt at no charge that names how it ended; one
//! that ends after is charged by the tariff from its answer.

use std::collections::VecDeque;

use crate::call::messages::{ByeCause, Frame, RejectReason, SignedInvite};
use crate::call::receipt::{ReceiptDispute, SettledReceipt, SignedReceipt, UsageReceipt};
use crate::call::{Phase, Timers};
use crate::identity::SecretKey;
use crate::time::Timestamp;

/// Where a gateway's call stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GatewayState {
    /// The invite is verified; the driver decides whether to take the call.
    Admitting,
    /// Accepted; the far leg is being placed.
    Trying,
    /// The callee is alerted.
    Ringing,
    /// Answered, waiting for media.
    Answered,
    /// Answered and media flows.
    Active,
    /// The receipt is sent; waiting for the caller's countersignature.
    Ending,
    /// Over.
    Done,
}

/// How a gateway's call ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GatewayOutcome {
    /// Refused before the answer.
    Rejected(RejectReason),
    /// The caller gave up, or the connection dropped, before the answer.
    Cancelled(ByeCause),
    /// Answered, ended, and the receipt countersigned by the caller.
    Settled(SettledReceipt),
    /// Answered and ended; the caller refused the receipt.
    Disputed {
        receipt: SignedReceipt,
        dispute: ReceiptDispute,
    },
    /// Answered and ended; no valid countersignature came (the caller vanished, or sent a
    /// bad one). The gateway keeps its own signed receipt.
    Unacknowledged(SignedReceipt),
}

/// What the driver must act on.
#[derive(Clone, Debug, PartialEq, Eq)]
// A handful of events per call: boxing the receipt would only add noise.
#[allow(clippy::large_enum_variant)]
pub enum GatewayEvent {
    /// End the far leg of the call (the back-end hangs up or cancels).
    HangUpFarLeg(ByeCause),
    /// The call is over.
    Done(GatewayOutcome),
}

/// The gateway's side of one call.
#[derive(Debug)]
pub struct GatewayCall {
    key: SecretKey,
    invite: SignedInvite,
    timers: Timers,
    state: GatewayState,
    deadline: Option<Timestamp>,
    /// When the next `KeepAlive` goes out, while the callee rings.
    keepalive_at: Option<Timestamp>,
    answered_at: Option<Timestamp>,
    /// The caller's media reached the gateway's leg.
    media_in: bool,
    /// The caller said it hears the gateway's media (`MediaReceived`).
    media_heard: bool,
    /// The SDP answer went out before the answer (`SessionProgress`).
    early_sdp: bool,
    receipt: Option<SignedReceipt>,
    transmit: VecDeque<Frame>,
    events: VecDeque<GatewayEvent>,
}

impl GatewayCall {
    /// A call for a verified invite, signed receipts with the gateway's `key`.
    pub fn new(invite: SignedInvite, key: SecretKey, timers: Timers) -> GatewayCall {
        GatewayCall {
            key,
            invite,
            timers,
            state: GatewayState::Admitting,
            deadline: None,
            keepalive_at: None,
            answered_at: None,
            media_in: false,
            media_heard: false,
            early_sdp: false,
            receipt: None,
            transmit: VecDeque::new(),
            events: VecDeque::new(),
        }
    }

    /// The caller's invite.
    pub fn invite(&self) -> &SignedInvite {
        &self.invite
    }

    /// Where the call stands.
    pub fn state(&self) -> GatewayState {
        self.state
    }

    /// Takes the call: `Trying` goes out and the answer deadline starts.
    pub fn admit(&mut self, now: Timestamp) {
        if self.state == GatewayState::Admitting {
            self.transmit.push_back(Frame::Trying);
            self.state = GatewayState::Trying;
            self.deadline = Some(now.plus(self.timers.answer));
            self.keepalive_at = Some(now.plus(self.timers.keepalive));
        }
    }

    /// Refuses the call before it is answered.
    pub fn reject(&mut self, reason: RejectReason, _now: Timestamp) {
        if matches!(
            self.state,
            GatewayState::Admitting | GatewayState::Trying | GatewayState::Ringing
        ) {
            if self.state != GatewayState::Admitting {
                self.events
                    .push_back(GatewayEvent::HangUpFarLeg(ByeCause::Cancelled));
            }
            self.transmit.push_back(Frame::Reject(reason.clone()));
            self.finish(GatewayOutcome::Rejected(reason));
        }
    }

    /// The callee is being alerted.
    pub fn ringing(&mut self, _now: Timestamp) {
        if self.state == GatewayState::Trying {
            self.transmit.push_back(Frame::Ringing);
            self.state = GatewayState::Ringing;
        }
    }

    /// The gateway's media is ready before the callee answers: its SDP answer goes to the
    /// caller now (once), so that the media connects while the callee rings.
    pub fn session_progress(&mut self, sdp: String, _now: Timestamp) {
        if matches!(self.state, GatewayState::Trying | GatewayState::Ringing) && !self.early_sdp {
            self.early_sdp = true;
            self.transmit.push_back(Frame::SessionProgress { sdp });
        }
    }

    /// The callee answered; `sdp` is the gateway's answer to the caller's offer.
    pub fn answered(&mut self, sdp: String, now: Timestamp) {
        self.answered_as(sdp, None, now);
    }

    /// The callee answered as `answered_by` (the far network's identity of the answering
    /// party), which goes back to the caller with the answer.
    pub fn answered_as(&mut self, sdp: String, answered_by: Option<String>, now: Timestamp) {
        if matches!(self.state, GatewayState::Trying | GatewayState::Ringing) {
            self.transmit.push_back(Frame::Answer { sdp, answered_by });
            self.state = GatewayState::Answered;
            self.answered_at = Some(now);
            self.deadline = Some(now.plus(self.timers.media));
        }
    }

    /// Media from the caller arrived.
    pub fn media_started(&mut self, _now: Timestamp) {
        self.media_in = true;
        self.activate_when_both_ways();
    }

    /// Media flows both ways once the caller's reaches the gateway and the gateway's
    /// reaches the caller (it says so): only from then is the call charged.
    fn activate_when_both_ways(&mut self) {
        if self.state == GatewayState::Answered && self.media_in && self.media_heard {
            self.state = GatewayState::Active;
            self.deadline = None;
        }
    }

    /// The far leg failed before it was answered (busy, no route, …).
    pub fn far_end_failed(&mut self, reason: RejectReason, now: Timestamp) {
        match self.state {
            GatewayState::Trying | GatewayState::Ringing => {
                self.transmit.push_back(Frame::Reject(reason.clone()));
                self.finish(GatewayOutcome::Rejected(reason));
            }
            GatewayState::Answered | GatewayState::Active => {
                self.end(ByeCause::MediaFailed, true, now)
            }
            _ => {}
        }
    }

    /// The callee, or the far network, hung up.
    pub fn far_end_hung_up(&mut self, now: Timestamp) {
        match self.state {
            GatewayState::Trying | GatewayState::Ringing => {
                self.far_end_failed(RejectReason::Unavailable, now)
            }
            GatewayState::Answered | GatewayState::Active => {
                self.end(ByeCause::CalleeHangUp, true, now)
            }
            _ => {}
        }
    }

    /// The gateway is shutting down: end the call now, with a receipt if it was answered.
    pub fn shut_down(&mut self, now: Timestamp) {
        match self.state {
            GatewayState::Admitting | GatewayState::Trying | GatewayState::Ringing => {
                self.reject(RejectReason::Unavailable, now);
            }
            GatewayState::Answered | GatewayState::Active => {
                self.events
                    .push_back(GatewayEvent::HangUpFarLeg(ByeCause::Shutdown));
                self.end(ByeCause::Shutdown, true, now);
            }
            GatewayState::Ending | GatewayState::Done => {}
        }
    }

    /// A frame from the caller.
    pub fn handle_frame(&mut self, frame: Frame, now: Timestamp) {
        use GatewayState::*;
        match (self.state, frame) {
            (Done, _) | (_, Frame::Invite(_)) | (Ending, Frame::Bye(_)) => {}
            (Admitting | Trying | Ringing, Frame::Bye(cause)) => {
                if self.state != Admitting {
                    self.events.push_back(GatewayEvent::HangUpFarLeg(cause));
                }
                self.finish(GatewayOutcome::Cancelled(cause));
            }
            (Answered | Active, Frame::Bye(cause)) => {
                self.events.push_back(GatewayEvent::HangUpFarLeg(cause));
                self.end(cause, false, now);
            }
            (Ending, Frame::ReceiptAccepted(bytes)) => {
                let outcome = match (SettledReceipt::decode(&bytes), self.receipt.take()) {
                    (Ok(settled), Some(sent)) if settled.gateway_signed() == sent.as_bytes() => {
                        GatewayOutcome::Settled(settled)
                    }
                    (_, Some(sent)) => GatewayOutcome::Unacknowledged(sent),
                    (_, None) => return,
                };
                self.finish(outcome);
            }
            (Answered | Active, Frame::MediaReceived) => {
                self.media_heard = true;
                self.activate_when_both_ways();
            }
            // A straggler sent before the caller saw the end.
            (Ending, Frame::MediaReceived) => {}
            (Ending, Frame::ReceiptRefused(dispute)) => {
                if let Some(receipt) = self.receipt.take() {
                    self.finish(GatewayOutcome::Disputed { receipt, dispute });
                }
            }
            (state, _) => self.protocol_error(state, now),
        }
    }

    /// The stream closed.
    pub fn connection_lost(&mut self, now: Timestamp) {
        match self.state {
            GatewayState::Admitting => {
                self.finish(GatewayOutcome::Cancelled(ByeCause::ConnectionLost))
            }
            GatewayState::Trying | GatewayState::Ringing => {
                self.events
                    .push_back(GatewayEvent::HangUpFarLeg(ByeCause::ConnectionLost));
                self.finish(GatewayOutcome::Cancelled(ByeCause::ConnectionLost));
            }
            GatewayState::Answered | GatewayState::Active => {
                self.events
                    .push_back(GatewayEvent::HangUpFarLeg(ByeCause::ConnectionLost));
                self.end(ByeCause::ConnectionLost, false, now);
                self.unacknowledged();
            }
            GatewayState::Ending => self.unacknowledged(),
            GatewayState::Done => {}
        }
    }

    /// Call when [`GatewayCall::poll_timeout`]'s deadline has passed.
    pub fn handle_timeout(&mut self, now: Timestamp) {
        if self.deadline.is_some_and(|deadline| now >= deadline) {
            match self.state {
                GatewayState::Trying | GatewayState::Ringing => {
                    self.reject(RejectReason::Timeout, now)
                }
                GatewayState::Answered => {
                    self.events
                        .push_back(GatewayEvent::HangUpFarLeg(ByeCause::MediaTimeout));
                    self.end(ByeCause::MediaTimeout, true, now);
                }
                GatewayState::Ending => self.unacknowledged(),
                _ => {}
            }
        }
        if self.keepalive_at.is_some_and(|at| now >= at) {
            if matches!(self.state, GatewayState::Trying | GatewayState::Ringing) {
                self.transmit.push_back(Frame::KeepAlive);
                self.keepalive_at = Some(now.plus(self.timers.keepalive));
            } else {
                self.keepalive_at = None;
            }
        }
    }

    /// The next frame to send.
    pub fn poll_transmit(&mut self) -> Option<Frame> {
        self.transmit.pop_front()
    }

    /// The next event for the driver.
    pub fn poll_event(&mut self) -> Option<GatewayEvent> {
        self.events.pop_front()
    }

    /// When [`GatewayCall::handle_timeout`] should next be called.
    pub fn poll_timeout(&self) -> Option<Timestamp> {
        let keepalive = self
            .keepalive_at
            .filter(|_| matches!(self.state, GatewayState::Trying | GatewayState::Ringing));
        match (self.deadline, keepalive) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Over, with nothing left to send.
    pub fn is_done(&self) -> bool {
        self.state == GatewayState::Done && self.transmit.is_empty()
    }

    /// The phase whose deadline is running, if any.
    pub fn phase(&self) -> Option<Phase> {
        match self.state {
            GatewayState::Trying | GatewayState::Ringing => Some(Phase::Answer),
            GatewayState::Answered => Some(Phase::Media),
            GatewayState::Ending => Some(Phase::Receipt),
            _ => None,
        }
    }

    /// Ends an answered call: `Bye` if this side ends it, then the signed receipt.
    fn end(&mut self, cause: ByeCause, send_bye: bool, now: Timestamp) {
        if send_bye {
            self.transmit.push_back(Frame::Bye(cause));
        }
        let answered_at = self.answered_at.unwrap_or(now);
        let invite = self.invite.invite();
        let receipt = if self.state == GatewayState::Active {
            UsageReceipt::for_call(invite, answered_at, now)
        } else {
            UsageReceipt::without_media(invite, answered_at, now, cause)
        };
        match SignedReceipt::sign(receipt, &self.key) {
            Ok(signed) => {
                self.transmit
                    .push_back(Frame::Receipt(signed.as_bytes().to_vec()));
                self.receipt = Some(signed);
                self.state = GatewayState::Ending;
                self.deadline = Some(now.plus(self.timers.receipt));
            }
            // Only a driver that admitted an invite for another provider gets here.
            Err(_) => self.finish(GatewayOutcome::Cancelled(cause)),
        }
    }

    fn unacknowledged(&mut self) {
        if let Some(receipt) = self.receipt.take() {
            self.finish(GatewayOutcome::Unacknowledged(receipt));
        }
    }

    fn finish(&mut self, outcome: GatewayOutcome) {
        self.state = GatewayState::Done;
        self.deadline = None;
        self.events.push_back(GatewayEvent::Done(outcome));
    }

    fn protocol_error(&mut self, state: GatewayState, now: Timestamp) {
        match state {
            GatewayState::Admitting | GatewayState::Trying | GatewayState::Ringing => {
                if state != GatewayState::Admitting {
                    self.events
                        .push_back(GatewayEvent::HangUpFarLeg(ByeCause::ProtocolError));
                }
                self.transmit.push_back(Frame::Bye(ByeCause::ProtocolError));
                self.finish(GatewayOutcome::Cancelled(ByeCause::ProtocolError));
            }
            GatewayState::Answered | GatewayState::Active => {
                self.events
                    .push_back(GatewayEvent::HangUpFarLeg(ByeCause::ProtocolError));
                self.end(ByeCause::ProtocolError, true, now);
            }
            GatewayState::Ending => self.unacknowledged(),
            GatewayState::Done => {}
        }
    }
}
