//! Calls placed through the API for a browser: one task per call drives
//! [`caller::run_call_with`] with the browser's SDP offer as the caller's media.
//!
//! Each call has an entry: a snapshot ([`CallView`]) that `GET /api/calls/{id}` returns,
//! the log of its events ([`CallEvent`]) that `GET /api/calls/{id}/events` replays and then
//! streams, and the two signals the browser gives (its media started; its user hung up).
//! An entry is active until its driver returns, receipt exchange included; then it moves to
//! a short list of recent calls, so that a page that reconnects still learns how its call
//! ended. A call whose page closed every event stream and did not come back within the
//! orphan deadline is hung up: nobody would be there to press the button.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use interlink_protocol::offer::Tariff;
use serde::Serialize;
use tokio::sync::watch;

use super::ApiState;
use super::events::{self, EventLog, LoggedEvent};
use super::sessions::{self, Served, Session, Sessions};

use crate::calls::caller::{
    self, Attempt, CallError, CallOptions, CallPlan, CallReport, CallerContext, CallerMedia,
    ExternalMedia, Progress, ReceiptSummary,
};
use crate::clock;
use crate::store::Role;

/// Ended calls kept for a late look at how they ended.
const RECENT_CALLS: usize = 32;
/// Events kept per call; a call has a handful, more only with many failovers.
const MAX_EVENTS: usize = 256;
/// Events queued for a slow event stream before it is cut (the browser reconnects and
/// replays from its last event id).
const LIVE_EVENTS: usize = 64;

/// Where a call stands, as the page shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CallState {
    /// An invite is on its way to a gateway.
    Inviting,
    Trying,
    Ringing,
    /// Answered; the browser's media is connecting.
    Answered,
    /// Media flows.
    Active,
    /// Hanging up, waiting for the receipt.
    Ending,
    Ended,
}

/// A gateway as the page names it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct GatewayRef {
    pub name: String,
    pub peer_id: String,
}

/// A tariff with everything a page needs to show it and count the running cost.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TariffView {
    pub currency: String,
    /// Decimals of the currency's minor unit (2 for GBP).
    pub exponent: u32,
    pub per_minute: String,
    pub per_minute_minor: u64,
    pub setup_fee: String,
    pub setup_fee_minor: u64,
    pub billing_increment_secs: u32,
}

impl From<&Tariff> for TariffView {
    fn from(tariff: &Tariff) -> TariffView {
        TariffView {
            currency: tariff.currency.to_string(),
            exponent: tariff.currency.exponent().unwrap_or(2),
            per_minute: tariff.per_minute_money().decimal(),
            per_minute_minor: tariff.per_minute,
            setup_fee: tariff.setup_fee_money().decimal(),
            setup_fee_minor: tariff.setup_fee,
            billing_increment_secs: tariff.billing_increment_secs,
        }
    }
}

/// How a call ended.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct EndView {
    /// Whether a gateway answered it.
    pub answered: bool,
    /// `hung_up` (answered and ended), `cancelled` (the caller gave up first),
    /// `not_answered` (every gateway failed) or `failed` (something else).
    pub outcome: &'static str,
    /// Why, for people.
    pub cause: String,
    /// `caller` or `gateway`, for an answered call.
    pub ended_by: Option<Role>,
    /// Answered time as the receipt bills it, in seconds.
    pub billed_seconds: Option<u64>,
    pub receipt: Option<ReceiptSummary>,
}

/// A call's snapshot.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CallView {
    pub call_id: String,
    pub destination: String,
    pub state: CallState,
    /// The gateway invited last (the one that answered, once answered).
    pub gateway: Option<GatewayRef>,
    pub tariff: Option<TariffView>,
    /// The gateway's SDP answer, for the browser.
    pub sdp_answer: Option<String>,
    pub answered_by: Option<String>,
    pub started_at_ms: u64,
    pub answered_at_ms: Option<u64>,
    /// Gateways tried before and why they failed.
    pub failovers: Vec<Attempt>,
    /// What the answered time so far costs, at the tariff, as the receipt would bill it.
    pub cost_so_far: Option<String>,
    pub ended: Option<EndView>,
}

/// What happened, in the order it happened.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum EventKind {
    Inviting {
        gateway: String,
        peer_id: String,
        tariff: TariffView,
    },
    Trying {
        gateway: String,
    },
    Ringing {
        gateway: String,
    },
    Answered {
        gateway: String,
        answered_by: Option<String>,
        sdp_answer: String,
    },
    /// The browser reported its first media packet.
    Media,
    FailedOver {
        gateway: String,
        reason: String,
    },
    Repriced {
        gateway: String,
        per_minute: String,
    },
    HangingUp,
    Ended(EndView),
}

impl EventKind {
    /// The event's name on the event stream.
    pub fn name(&self) -> &'static str {
        match self {
            EventKind::Inviting { .. } => "inviting",
            EventKind::Trying { .. } => "trying",
            EventKind::Ringing { .. } => "ringing",
            EventKind::Answered { .. } => "answered",
            EventKind::Media => "media",
            EventKind::FailedOver { .. } => "failed_over",
            EventKind::Repriced { .. } => "repriced",
            EventKind::HangingUp => "hanging_up",
            EventKind::Ended(_) => "ended",
        }
    }
}

/// One event of a call.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CallEvent {
    /// 1, 2, …: the event stream's id, so that a browser that reconnects resumes after it.
    pub seq: u64,
    pub call_id: String,
    /// Since the call was asked for.
    pub elapsed_ms: u64,
    #[serde(flatten)]
    pub kind: EventKind,
}

impl LoggedEvent for CallEvent {
    fn seq(&self) -> u64 {
        self.seq
    }

    fn name(&self) -> &'static str {
        self.kind.name()
    }

    fn is_end(&self) -> bool {
        matches!(self.kind, EventKind::Ended(_))
    }
}

/// One call placed through the API.
#[derive(Debug)]
pub struct CallEntry {
    id: String,
    started: Instant,
    /// When it was answered, on the monotonic clock: the cost so far counts from it, so
    /// that a step of the wall clock does not change it.
    answered: OnceLock<Instant>,
    view: watch::Sender<CallView>,
    log: Arc<EventLog<CallEvent>>,
    hang_up: watch::Sender<bool>,
    media_started: watch::Sender<bool>,
}

impl CallEntry {
    /// The call's id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The call's snapshot now, with the cost so far: from the answer, once media flows
    /// (a call whose media never flows is not charged).
    pub fn view(&self) -> CallView {
        let mut view = self.view.borrow().clone();
        if view.state == CallState::Active
            && let (Some(tariff), Some(answered)) = (&view.tariff, self.answered.get())
        {
            view.cost_so_far = running_cost(tariff, answered.elapsed());
        }
        view
    }

    /// A receiver of the call's snapshots, to wait for a state.
    pub fn watch(&self) -> watch::Receiver<CallView> {
        self.view.subscribe()
    }

    /// Asks the call to hang up; it ends on every leg.
    pub fn hang_up(&self) {
        self.hang_up.send_replace(true);
    }

    /// The browser's first media packet arrived.
    pub fn media_started(&self) {
        self.media_started.send_replace(true);
    }

    /// Whether the call is over.
    pub fn is_ended(&self) -> bool {
        self.view.borrow().state == CallState::Ended
    }

    /// The call's events, for its event streams.
    pub fn events(&self) -> &Arc<EventLog<CallEvent>> {
        &self.log
    }

    fn push(&self, kind: EventKind) {
        self.log.push(|seq| CallEvent {
            seq,
            call_id: self.id.clone(),
            elapsed_ms: u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX),
            kind,
        });
    }

    /// Turns the driver's progress into the snapshot and an event.
    fn on_progress(&self, progress: Progress) {
        let kind = match progress {
            Progress::Inviting {
                gateway,
                peer_id,
                tariff,
            } => {
                let tariff = TariffView::from(&tariff);
                self.view.send_modify(|v| {
                    v.state = CallState::Inviting;
                    v.gateway = Some(GatewayRef {
                        name: gateway.clone(),
                        peer_id: peer_id.clone(),
                    });
                    v.tariff = Some(tariff.clone());
                });
                EventKind::Inviting {
                    gateway,
                    peer_id,
                    tariff,
                }
            }
            Progress::Trying { gateway } => {
                self.set_state(CallState::Trying);
                EventKind::Trying { gateway }
            }
            Progress::Ringing { gateway } => {
                self.set_state(CallState::Ringing);
                EventKind::Ringing { gateway }
            }
            // Not sent for an external endpoint's media (see `calls::caller`).
            Progress::SessionProgress { .. } => return,
            Progress::Answered {
                gateway,
                answered_by,
                sdp_answer,
                ..
            } => {
                let _ = self.answered.set(Instant::now());
                self.view.send_modify(|v| {
                    v.state = CallState::Answered;
                    v.answered_at_ms = Some(clock::unix_millis());
                    v.sdp_answer = Some(sdp_answer.clone());
                    v.answered_by = answered_by.clone();
                });
                EventKind::Answered {
                    gateway,
                    answered_by,
                    sdp_answer,
                }
            }
            Progress::MediaStarted { .. } => {
                self.set_state(CallState::Active);
                EventKind::Media
            }
            Progress::FailedOver { gateway, reason } => {
                let peer_id = self
                    .view
                    .borrow()
                    .gateway
                    .as_ref()
                    .map(|g| g.peer_id.clone())
                    .unwrap_or_default();
                self.view.send_modify(|v| {
                    v.failovers.push(Attempt {
                        gateway: gateway.clone(),
                        peer_id,
                        outcome: reason.clone(),
                    });
                });
                EventKind::FailedOver { gateway, reason }
            }
            Progress::Repricing {
                gateway,
                per_minute,
            } => EventKind::Repriced {
                gateway,
                per_minute,
            },
            Progress::HangingUp => {
                self.set_state(CallState::Ending);
                EventKind::HangingUp
            }
            _ => return,
        };
        self.push(kind);
    }

    fn set_state(&self, state: CallState) {
        self.view.send_modify(|v| v.state = state);
    }

    /// Records how the call ended: the snapshot first, then the event.
    fn finish(&self, result: Result<CallReport, CallError>) {
        let end = match result {
            Ok(report) => EndView {
                answered: true,
                outcome: "hung_up",
                cause: report.cause,
                ended_by: Some(report.ended_by),
                billed_seconds: report.receipt.billed_seconds,
                receipt: Some(report.receipt),
            },
            Err(error) => EndView {
                answered: false,
                outcome: match error {
                    CallError::Cancelled { .. } => "cancelled",
                    CallError::NoAnswer { .. } => "not_answered",
                    _ => "failed",
                },
                cause: error.to_string(),
                ended_by: None,
                billed_seconds: None,
                receipt: None,
            },
        };
        self.view.send_modify(|v| {
            v.state = CallState::Ended;
            v.cost_so_far = None;
            v.ended = Some(end.clone());
        });
        self.push(EventKind::Ended(end));
    }
}

/// What the answered time `elapsed` costs at `tariff`, as the receipt bills it.
fn running_cost(tariff: &TariffView, elapsed: Duration) -> Option<String> {
    let currency = tariff.currency.parse().ok()?;
    let tariff = Tariff {
        currency,
        setup_fee: tariff.setup_fee_minor,
        per_minute: tariff.per_minute_minor,
        billing_increment_secs: tariff.billing_increment_secs,
    };
    Some(tariff.charge(tariff.billed_seconds(elapsed)).decimal())
}

/// Why a call could not be registered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{0} calls are in progress through the API, the most it places at once")]
pub struct TooManyCalls(pub usize);

/// The calls placed through the API.
pub type Calls = Sessions<CallEntry>;

impl Session for CallEntry {
    type TooMany = TooManyCalls;
    const RECENT: usize = RECENT_CALLS;

    fn id(&self) -> &str {
        &self.id
    }

    fn too_many(taken: usize) -> TooManyCalls {
        TooManyCalls(taken)
    }
}

impl Served for CallEntry {
    type View = CallView;
    type Event = CallEvent;
    const NOUN: &'static str = "call";
    const UNKNOWN_CODE: &'static str = "unknown_call";

    fn view(&self) -> CallView {
        CallEntry::view(self)
    }

    fn is_ended(&self) -> bool {
        CallEntry::is_ended(self)
    }

    fn events(&self) -> &Arc<EventLog<CallEvent>> {
        CallEntry::events(self)
    }

    /// Hangs up; `ended` follows once every leg is down.
    fn end(&self) {
        self.hang_up();
    }

    fn registry(state: &ApiState) -> &Calls {
        &state.calls
    }
}

impl Calls {
    /// Starts a call through `plan` with the browser's `sdp_offer`, `started` when the user
    /// asked for it.
    pub fn start(
        &self,
        context: CallerContext,
        options: CallOptions,
        plan: CallPlan,
        sdp_offer: String,
        started: Instant,
    ) -> Result<Arc<CallEntry>, TooManyCalls> {
        let id = sessions::new_id();
        let (hang_up, hang_up_rx) = watch::channel(false);
        let (media_started, media_started_rx) = watch::channel(false);
        let entry = Arc::new(CallEntry {
            id: id.clone(),
            started,
            answered: OnceLock::new(),
            view: watch::Sender::new(CallView {
                call_id: id,
                destination: options.destination.to_string(),
                state: CallState::Inviting,
                gateway: None,
                tariff: None,
                sdp_answer: None,
                answered_by: None,
                started_at_ms: clock::unix_millis(),
                answered_at_ms: None,
                failovers: Vec::new(),
                cost_so_far: None,
                ended: None,
            }),
            log: EventLog::new(MAX_EVENTS, LIVE_EVENTS),
            hang_up,
            media_started,
        });
        self.insert(&entry)?;
        let media = CallerMedia::External(ExternalMedia {
            sdp_offer,
            media_started: media_started_rx,
            hang_up: hang_up_rx,
        });
        let driver = Box::pin(drive(
            self.clone(),
            Arc::clone(&entry),
            context,
            options,
            plan,
            media,
        ));
        self.spawn(&entry, driver);
        Ok(entry)
    }

    /// Hangs up every call and waits, up to `deadline`, for them to end.
    pub async fn hang_up_all(&self, deadline: Duration) {
        if !self.end_all(deadline, CallEntry::hang_up).await {
            tracing::warn!(
                "calls placed through the API did not end within {}s",
                deadline.as_secs()
            );
        }
    }
}

/// Drives one call to its end, with the orphan watchdog beside it.
async fn drive(
    calls: Calls,
    entry: Arc<CallEntry>,
    context: CallerContext,
    options: CallOptions,
    plan: CallPlan,
    mut media: CallerMedia,
) {
    let watchdog = calls
        .orphan_after()
        .map(|after| tokio::spawn(watch_orphan(Arc::clone(&entry), after)));
    let progress = |p: Progress| entry.on_progress(p);
    let result = caller::run_call_with(
        &context,
        &options,
        &plan,
        entry.started,
        &mut media,
        &progress,
    )
    .await;
    if let Some(watchdog) = watchdog {
        watchdog.abort();
    }
    match &result {
        Ok(report) => {
            tracing::info!(call = %entry.id, gateway = %report.gateway, cause = %report.cause, "browser call ended")
        }
        Err(error) => tracing::info!(call = %entry.id, %error, "browser call not answered"),
    }
    // Out of the list before the event that says it ended: whoever hears it and looks
    // finds the list without it.
    calls.retire(&entry.id);
    entry.finish(result);
}

/// Hangs `entry` up once its page has closed every event stream on it and not come back
/// within `after`.
async fn watch_orphan(entry: Arc<CallEntry>, after: Duration) {
    if events::orphaned(entry.log.streams(), after).await {
        tracing::info!(call = %entry.id, "the page of a call went away; hanging up");
        entry.hang_up();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gbp(per_minute: u64, setup_fee: u64, increment: u32) -> TariffView {
        TariffView {
            currency: "GBP".into(),
            exponent: 2,
            per_minute: String::new(),
            per_minute_minor: per_minute,
            setup_fee: String::new(),
            setup_fee_minor: setup_fee,
            billing_increment_secs: increment,
        }
    }

    #[test]
    fn running_cost_is_what_the_receipt_would_bill() {
        let per_second = gbp(3, 10, 1);
        assert_eq!(
            running_cost(&per_second, Duration::ZERO).as_deref(),
            Some("0.10")
        );
        // 20 s of 3p a minute is 1p; 21 s rounds up to 2p.
        assert_eq!(
            running_cost(&per_second, Duration::from_secs(20)).as_deref(),
            Some("0.11")
        );
        assert_eq!(
            running_cost(&per_second, Duration::from_millis(20_001)).as_deref(),
            Some("0.12")
        );
        // A minute's increment bills the whole first minute from the first millisecond.
        let per_minute = gbp(3, 0, 60);
        assert_eq!(
            running_cost(&per_minute, Duration::from_millis(1)).as_deref(),
            Some("0.03")
        );
        assert_eq!(
            running_cost(&per_minute, Duration::from_secs(61)).as_deref(),
            Some("0.06")
        );
    }

    #[test]
    fn events_serialise_with_their_name() {
        let event = CallEvent {
            seq: 3,
            call_id: "c".into(),
            elapsed_ms: 12,
            kind: EventKind::FailedOver {
                gateway: "Budget".into(),
                reason: "busy".into(),
            },
        };
        let json = serde_json::to_value(&event).unwrap_or_default();
        assert_eq!(json["event"], "failed_over");
        assert_eq!(json["gateway"], "Budget");
        assert_eq!(json["seq"], 3);
        assert_eq!(event.kind.name(), "failed_over");
        let media = serde_json::to_value(EventKind::Media).unwrap_or_default();
        assert_eq!(media["event"], "media");
    }
}
