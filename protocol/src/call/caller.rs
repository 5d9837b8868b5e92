//! The caller's side of a call, as a state machine without IO.
//!
//! The driver feeds it frames from the stream, media and hang-up events and timeouts,
//! each with `now`, and drains what it returns: frames to send
//! ([`CallerCall::poll_transmit`]), events for the user ([`CallerCall::poll_event`]) and
//! the next deadline ([`CallerCall::poll_timeout`]).
//!
//! ```text
//! Inviting ──Trying──► Proceeding ──Ringing──► Ringing ──Answer──► Answered ──media──► Active
//!    │                     │                      │                   │                  │
//!    └──── Reject, Bye, timeout, lost: Failed ────┘      Bye (either side), media timeout
//!                                                                     ▼
//!                                                   Ending: wait for the receipt, check it,
//!                                                   countersign or refuse ──► Ended
//! ```
//!
//! A `SessionProgress` while the callee rings carries the gateway's SDP answer early: the
//! driver applies it, and ICE and DTLS run during the ringing instead of after the answer.
//!
//! On its first media packet the caller tells the gateway (`MediaReceived`): a call is
//! charged only if media flowed both ways, and the caller refuses a receipt that charges
//! for media it never heard.
//!
//! Frames are handled leniently where the meaning is clear and strictly where it is not:
//! a duplicate is ignored, a late `Trying` or `Ringing` is ignored, an `Answer` before
//! `Trying` implies it; a receipt before the call ended, or an invite sent to the caller,
//! is a protocol error that ends the call.

use std::collections::VecDeque;
use std::time::Duration;

use crate::call::messages::{
    ByeCause, Frame, Invite, InviteError, MAX_ANSWERED_BY_BYTES, RejectReason, SignedInvite,
};
use crate::call::receipt::{ReceiptDispute, SettledReceipt, SignedReceipt};
use crate::call::{Party, Phase, Timers};
use crate::identity::SecretKey;
use crate::time::Timestamp;

/// Where a caller's call stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CallerState {
    /// Invite sent, waiting for `Trying`.
    Inviting,
    /// The gateway works on it.
    Proceeding,
    /// The callee is alerted.
    Ringing,
    /// Answered, waiting for media.
    Answered,
    /// Answered and media flows.
    Active,
    /// Ended, waiting for the receipt.
    Ending,
    /// Over: failed before the answer, or ended and settled (or not).
    Done,
}

/// Why a call failed before it was answered. The driver may try another gateway.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Failure {
    /// The gateway refused.
    Rejected(RejectReason),
    /// A phase's deadline passed.
    Timeout(Phase),
    /// The gateway ended the call before answering.
    EndedByGateway(ByeCause),
    /// The stream closed.
    ConnectionLost,
    /// The caller hung up first.
    Cancelled,
    /// The gateway broke the protocol.
    ProtocolError(String),
}

/// What became of the receipt of an answered call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReceiptOutcome {
    /// Checked and countersigned: both sides hold these bytes.
    Settled(SettledReceipt),
    /// The gateway's receipt did not match the call; the caller refused it.
    Refused {
        receipt: Option<SignedReceipt>,
        dispute: ReceiptDispute,
    },
    /// No receipt came in time.
    Missing,
}

/// How an answered call ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CallEnd {
    pub cause: ByeCause,
    pub ended_by: Party,
    /// When the caller received the answer.
    pub answered_at: Timestamp,
    /// When the caller sent or received the `Bye`.
    pub ended_at: Timestamp,
    pub receipt: ReceiptOutcome,
}

/// What the caller's user hears about.
#[derive(Clone, Debug, PartialEq, Eq)]
// A handful of events per call: boxing the receipt would only add noise.
#[allow(clippy::large_enum_variant)]
pub enum CallerEvent {
    Trying,
    Ringing,
    /// The gateway's SDP answer came before the callee answered: the driver applies it to
    /// its media now, so that the media connects while the callee rings. The answer that
    /// follows carries the same SDP. At most once per call.
    SessionProgress {
        sdp: String,
    },
    /// The callee answered: the driver applies the SDP answer to its media (unless it
    /// already did, from [`CallerEvent::SessionProgress`]). `answered_by` is
    /// who answered, if the gateway said (at most [`MAX_ANSWERED_BY_BYTES`]).
    Answered {
        sdp: String,
        answered_by: Option<String>,
    },
    /// The call failed before the answer.
    Failed(Failure),
    /// An answered call is over.
    Ended(CallEnd),
}

/// The caller's side of one call.
#[derive(Debug)]
pub struct CallerCall {
    key: SecretKey,
    invite: SignedInvite,
    timers: Timers,
    state: CallerState,
    deadline: Option<Timestamp>,
    /// While the callee rings: when the gateway, silent since, is given up.
    silence_at: Option<Timestamp>,
    answered_at: Option<Timestamp>,
    /// Whether the gateway's media reached the caller (and the gateway was told).
    heard_media: bool,
    /// Whether the gateway's early SDP answer (`SessionProgress`) was passed on.
    early_sdp: bool,
    end: Option<(ByeCause, Party, Timestamp)>,
    transmit: VecDeque<Frame>,
    events: VecDeque<CallerEvent>,
}

impl CallerCall {
    /// Signs `invite` with the caller's key and queues it.
    pub fn new(
        invite: Invite,
        key: SecretKey,
        timers: Timers,
        now: Timestamp,
    ) -> Result<CallerCall, InviteError> {
        let invite = SignedInvite::sign(invite, &key)?;
        let mut call = CallerCall {
            key,
            invite,
            timers,
            state: CallerState::Inviting,
            deadline: Some(now.plus(timers.trying)),
            silence_at: None,
            answered_at: None,
            heard_media: false,
            early_sdp: false,
            end: None,
            transmit: VecDeque::new(),
            events: VecDeque::new(),
        };
        call.transmit
            .push_back(Frame::Invite(call.invite.as_bytes().to_vec()));
        Ok(call)
    }

    /// The signed invite.
    pub fn invite(&self) -> &SignedInvite {
        &self.invite
    }

    /// Where the call stands.
    pub fn state(&self) -> CallerState {
        self.state
    }

    /// A frame from the gateway.
    pub fn handle_frame(&mut self, frame: Frame, now: Timestamp) {
        use CallerState::*;
        if matches!(self.state, Inviting | Proceeding | Ringing) {
            self.silence_at = Some(now.plus(self.timers.silence));
        }
        match (self.state, frame) {
            (Done, _) => {}
            // The gateway is alive; what it is doing the other frames say.
            (Proceeding | Ringing, Frame::KeepAlive) => {}
            (Inviting, Frame::KeepAlive) => {
                self.protocol_error("KeepAlive before Trying".to_owned(), now)
            }
            (Answered | Active | Ending, Frame::KeepAlive) => {}
            (Inviting, Frame::Trying) => {
                self.state = Proceeding;
                self.deadline = Some(now.plus(self.timers.answer));
                self.events.push_back(CallerEvent::Trying);
            }
            (Inviting | Proceeding, Frame::Ringing) => {
                if self.state == Inviting {
                    self.deadline = Some(now.plus(self.timers.answer));
                }
                self.state = Ringing;
                self.events.push_back(CallerEvent::Ringing);
            }
            (Inviting | Proceeding | Ringing, Frame::SessionProgress { sdp }) => {
                if self.state == Inviting {
                    self.state = Proceeding;
                    self.deadline = Some(now.plus(self.timers.answer));
                }
                if !self.early_sdp {
                    self.early_sdp = true;
                    self.events.push_back(CallerEvent::SessionProgress { sdp });
                }
            }
            (Inviting | Proceeding | Ringing, Frame::Answer { sdp, answered_by }) => {
                self.state = Answered;
                self.answered_at = Some(now);
                self.deadline = Some(now.plus(self.timers.media));
                let answered_by = answered_by.filter(|who| who.len() <= MAX_ANSWERED_BY_BYTES);
                self.events
                    .push_back(CallerEvent::Answered { sdp, answered_by });
            }
            (Inviting | Proceeding | Ringing, Frame::Reject(reason)) => {
                self.fail(Failure::Rejected(reason))
            }
            (Inviting | Proceeding | Ringing, Frame::Bye(cause)) => {
                self.fail(Failure::EndedByGateway(cause))
            }
            // Duplicates and stragglers of earlier phases carry no news.
            (Proceeding | Ringing | Answered | Active | Ending, Frame::Trying)
            | (Ringing | Answered | Active | Ending, Frame::Ringing)
            | (Answered | Active | Ending, Frame::Answer { .. })
            | (Answered | Active | Ending, Frame::SessionProgress { .. })
            | (Ending, Frame::Bye(_)) => {}
            (Answered | Active, Frame::Bye(cause)) => self.begin_ending(cause, Party::Gateway, now),
            (Ending, Frame::Receipt(bytes)) => self.settle(&bytes, now),
            (state, frame) => {
                self.protocol_error(format!("unexpected {} while {state:?}", frame.name()), now)
            }
        }
    }

    /// The first media packet arrived: the gateway is told, so that it may charge the call.
    pub fn media_started(&mut self, _now: Timestamp) {
        if self.state == CallerState::Answered {
            self.state = CallerState::Active;
            self.deadline = None;
            self.heard_media = true;
            self.transmit.push_back(Frame::MediaReceived);
        }
    }

    /// The caller hangs up (or gives up before the answer).
    pub fn hang_up(&mut self, now: Timestamp) {
        match self.state {
            CallerState::Inviting | CallerState::Proceeding | CallerState::Ringing => {
                self.transmit.push_back(Frame::Bye(ByeCause::Cancelled));
                self.fail(Failure::Cancelled);
            }
            CallerState::Answered | CallerState::Active => {
                self.transmit.push_back(Frame::Bye(ByeCause::CallerHangUp));
                self.begin_ending(ByeCause::CallerHangUp, Party::Caller, now);
            }
            CallerState::Ending | CallerState::Done => {}
        }
    }

    /// The stream closed.
    pub fn connection_lost(&mut self, now: Timestamp) {
        match self.state {
            CallerState::Inviting | CallerState::Proceeding | CallerState::Ringing => {
                self.fail(Failure::ConnectionLost)
            }
            CallerState::Answered | CallerState::Active => {
                self.end = Some((ByeCause::ConnectionLost, Party::Gateway, now));
                self.finish(ReceiptOutcome::Missing);
            }
            CallerState::Ending => self.finish(ReceiptOutcome::Missing),
            CallerState::Done => {}
        }
    }

    /// Call when [`CallerCall::poll_timeout`]'s deadline has passed.
    pub fn handle_timeout(&mut self, now: Timestamp) {
        if let Some(at) = self.silence_at()
            && now >= at
        {
            self.transmit.push_back(Frame::Bye(ByeCause::Cancelled));
            self.fail(Failure::Timeout(Phase::Silence));
            return;
        }
        if self.deadline.is_none_or(|deadline| now < deadline) {
            return;
        }
        match self.state {
            CallerState::Inviting => {
                self.transmit.push_back(Frame::Bye(ByeCause::Cancelled));
                self.fail(Failure::Timeout(Phase::Trying));
            }
            CallerState::Proceeding | CallerState::Ringing => {
                self.transmit.push_back(Frame::Bye(ByeCause::Cancelled));
                self.fail(Failure::Timeout(Phase::Answer));
            }
            CallerState::Answered => {
                self.transmit.push_back(Frame::Bye(ByeCause::MediaTimeout));
                self.begin_ending(ByeCause::MediaTimeout, Party::Caller, now);
            }
            CallerState::Ending => self.finish(ReceiptOutcome::Missing),
            CallerState::Active | CallerState::Done => {}
        }
    }

    /// The next frame to send.
    pub fn poll_transmit(&mut self) -> Option<Frame> {
        self.transmit.pop_front()
    }

    /// The next event for the user.
    pub fn poll_event(&mut self) -> Option<CallerEvent> {
        self.events.pop_front()
    }

    /// When [`CallerCall::handle_timeout`] should next be called.
    pub fn poll_timeout(&self) -> Option<Timestamp> {
        match (self.deadline, self.silence_at()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// When a silent gateway is given up: only once it said `Trying` (and so sends
    /// keep-alives) and until the answer.
    fn silence_at(&self) -> Option<Timestamp> {
        self.silence_at
            .filter(|_| matches!(self.state, CallerState::Proceeding | CallerState::Ringing))
    }

    /// Over, with nothing left to send.
    pub fn is_done(&self) -> bool {
        self.state == CallerState::Done && self.transmit.is_empty()
    }

    fn fail(&mut self, failure: Failure) {
        self.state = CallerState::Done;
        self.deadline = None;
        self.events.push_back(CallerEvent::Failed(failure));
    }

    fn begin_ending(&mut self, cause: ByeCause, by: Party, now: Timestamp) {
        self.end = Some((cause, by, now));
        self.state = CallerState::Ending;
        self.deadline = Some(now.plus(self.timers.receipt));
    }

    fn settle(&mut self, bytes: &[u8], _now: Timestamp) {
        let observed = match (self.answered_at, self.end) {
            (Some(answered), Some((_, _, ended))) => ended.since(answered),
            _ => Duration::ZERO,
        };
        let outcome = match SignedReceipt::decode(bytes) {
            Err(_) => ReceiptOutcome::Refused {
                receipt: None,
                dispute: ReceiptDispute::Unreadable,
            },
            Ok(signed) => {
                match signed
                    .receipt()
                    .check(self.invite.invite(), observed, self.heard_media)
                {
                    Err(dispute) => ReceiptOutcome::Refused {
                        receipt: Some(signed),
                        dispute,
                    },
                    Ok(()) => match signed.countersign(&self.key) {
                        Ok(settled) => ReceiptOutcome::Settled(settled),
                        Err(_) => ReceiptOutcome::Refused {
                            receipt: Some(signed),
                            dispute: ReceiptDispute::WrongCall,
                        },
                    },
                }
            }
        };
        match &outcome {
            ReceiptOutcome::Settled(settled) => self
                .transmit
                .push_back(Frame::ReceiptAccepted(settled.as_bytes().to_vec())),
            ReceiptOutcome::Refused { dispute, .. } => self
                .transmit
                .push_back(Frame::ReceiptRefused(dispute.clone())),
            ReceiptOutcome::Missing => {}
        }
        self.finish(outcome);
    }

    fn finish(&mut self, receipt: ReceiptOutcome) {
        let (cause, ended_by, ended_at) =
            self.end
                .unwrap_or((ByeCause::ConnectionLost, Party::Gateway, Timestamp(0)));
        self.state = CallerState::Done;
        self.deadline = None;
        self.events.push_back(CallerEvent::Ended(CallEnd {
            cause,
            ended_by,
            answered_at: self.answered_at.unwrap_or(ended_at),
            ended_at,
            receipt,
        }));
    }

    fn protocol_error(&mut self, detail: String, now: Timestamp) {
        self.transmit.push_back(Frame::Bye(ByeCause::ProtocolError));
        match self.state {
            CallerState::Answered | CallerState::Active => {
                self.begin_ending(ByeCause::ProtocolError, Party::Caller, now);
            }
            CallerState::Ending => self.finish(ReceiptOutcome::Missing),
            _ => self.fail(Failure::ProtocolError(detail)),
        }
    }
}
