//! The gateway side of calls: accept call streams, admit or refuse, drive each call.
//!
//! Every inbound `/interlink/call/2` stream is one call. Its first frame must be a signed
//! invite, read within a deadline. Admission checks, in order: the invite is signed by
//! the peer on the other end of the stream (unauthorised otherwise); the gateway's current
//! offer covers the destination (no route); the accepted tariff is the current price of
//! the route that covers it (price changed, with the current tariff); a call slot is free
//! (over capacity). An admitted call goes to the back-end, and a
//! [`GatewayCall`](interlink_protocol::call::GatewayCall) turns the back-end's events and
//! the caller's frames into the protocol. An answered call is on record from the answer
//! (before the caller hears of it); when it is over, its receipt is stored and its record
//! completed.
//!
//! Before any of that, each peer's call streams are held to `[limits]`: a rate of
//! invitations per peer and a number of streams waiting for their invite at once; streams
//! beyond are closed unread. A stream that carries an oversized, truncated or malformed
//! frame is closed. Every refusal is counted in the metrics and logged once per peer and
//! interval.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use interlink_gateway_plugin::gateway::{Gateway, IncomingCall, LegEvent, LegHandle};
use interlink_protocol::call::{
    Frame, GatewayCall, GatewayEvent, GatewayOutcome, GatewayState, Invite, RejectReason,
    SignedInvite, Timers, UsageReceipt,
};
use interlink_protocol::offer::OfferStatus;
use interlink_protocol::{SecretKey, SignedOffer, Timestamp};
use libp2p::{PeerId, Stream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, watch};
use tokio::task::JoinSet;

use crate::calls::sleep_until;
use crate::calls::wire::{self, CALL_PROTOCOL, FrameWriter};
use crate::clock::{self, SessionClock};
use crate::config::LimitsSection;
use crate::identity;
use crate::limits::{PeerRates, RefusalLog, log_refusal};
use crate::metrics::Metrics;
use crate::network::Client;
use crate::publisher::Published;
use crate::store::{ReceiptStatus, Role, Store};

/// How long a new stream may take to send its invite.
const INVITE_DEADLINE: Duration = Duration::from_secs(5);
/// How long a back-end may take to release a leg after the call ends.
const RELEASE_DEADLINE: Duration = Duration::from_secs(5);
/// Back-end events queued per call.
const LEG_EVENTS: usize = 16;

/// What the gateway's calls share.
#[derive(Clone)]
pub struct GatewayContext {
    pub key: SecretKey,
    pub backend: Arc<dyn Gateway>,
    /// The offer the publisher last published.
    pub offer: watch::Receiver<Option<Published>>,
    pub store: Store,
    pub timers: Timers,
    /// What one peer may ask: invitation rates, streams waiting, frame size.
    pub limits: LimitsSection,
    pub metrics: Metrics,
}

impl std::fmt::Debug for GatewayContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GatewayContext")
            .field("timers", &self.timers)
            .finish_non_exhaustive()
    }
}

/// The running call service of a gateway node.
#[derive(Debug)]
pub struct GatewayService {
    shutdown: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

/// Why the call service could not start.
#[derive(Debug, thiserror::Error)]
#[error("another service already accepts {CALL_PROTOCOL} streams on this node")]
pub struct AlreadyAccepting;

impl GatewayService {
    /// Starts accepting calls on the node's network.
    pub fn spawn(
        client: &Client,
        context: GatewayContext,
    ) -> Result<GatewayService, AlreadyAccepting> {
        let incoming = client
            .streams()
            .accept(CALL_PROTOCOL)
            .map_err(|_| AlreadyAccepting)?;
        let (shutdown, shutdown_rx) = watch::channel(false);
        let slots = Arc::new(Semaphore::new(
            context.backend.capabilities().max_concurrent_calls as usize,
        ));
        let task = tokio::spawn(accept_calls(incoming, context, slots, shutdown_rx));
        Ok(GatewayService { shutdown, task })
    }

    /// Stops accepting and drops every call in progress, as a crash does.
    pub fn abort(self) {
        self.task.abort();
    }

    /// Ends every call in progress (with a receipt for the answered ones) and stops.
    pub async fn shut_down(self) {
        let _ = self.shutdown.send(true);
        let _ = self.task.await;
    }
}

/// Places for call streams waiting for their invite: so many in all, so many per peer.
struct WaitingRoom {
    all: Arc<Semaphore>,
    per_peer: HashMap<PeerId, Arc<Semaphore>>,
    peer_limit: usize,
}

/// A call stream's place in the [`WaitingRoom`], given up once its invite is read.
struct Waiting {
    _all: OwnedSemaphorePermit,
    _peer: OwnedSemaphorePermit,
}

impl WaitingRoom {
    fn new(limits: &LimitsSection) -> WaitingRoom {
        WaitingRoom {
            all: Arc::new(Semaphore::new(limits.max_pending_invites)),
            per_peer: HashMap::new(),
            peer_limit: limits.max_pending_invites_per_peer,
        }
    }

    /// A place for a stream of `peer`, or the limit that refuses it.
    fn enter(&mut self, peer: PeerId) -> Result<Waiting, &'static str> {
        if self.per_peer.len() > 1024 {
            // Forget the peers with nobody waiting.
            let limit = self.peer_limit;
            self.per_peer
                .retain(|_, places| places.available_permits() < limit);
        }
        let limit = self.peer_limit;
        let peer_places = self
            .per_peer
            .entry(peer)
            .or_insert_with(|| Arc::new(Semaphore::new(limit)));
        let peer = Arc::clone(peer_places)
            .try_acquire_owned()
            .map_err(|_| "pending_invites")?;
        let all = Arc::clone(&self.all)
            .try_acquire_owned()
            .map_err(|_| "pending_invites")?;
        Ok(Waiting {
            _all: all,
            _peer: peer,
        })
    }
}

/// Why a call stream was dropped before its call began: for the log, once per peer and
/// interval.
struct StreamRefusal {
    peer: PeerId,
    reason: &'static str,
    detail: String,
}

async fn accept_calls(
    mut incoming: libp2p_stream::IncomingStreams,
    context: GatewayContext,
    slots: Arc<Semaphore>,
    mut shutdown: watch::Receiver<bool>,
) {
    use futures::StreamExt;
    let limits = &context.limits;
    let metrics = context.metrics.clone();
    let mut rates = PeerRates::new(limits.call_invites_per_sec, limits.call_invite_burst);
    let mut waiting = WaitingRoom::new(limits);
    let mut log = RefusalLog::new(limits.refusal_log_interval());
    let mut calls = JoinSet::new();
    loop {
        tokio::select! {
            next = incoming.next() => match next {
                Some((peer, stream)) => {
                    // Closed unread: a peer over its rate or a node with too many streams
                    // waiting spends nothing more on it.
                    if !rates.allow(peer, Instant::now()) {
                        metrics.limit_refusal("call_invites");
                        log_refusal(&mut log, Some(peer), "call_invites", &"a call stream over the peer's rate of invitations", true);
                        continue;
                    }
                    let permit = match waiting.enter(peer) {
                        Ok(permit) => permit,
                        Err(limit) => {
                            metrics.limit_refusal(limit);
                            log_refusal(&mut log, Some(peer), limit, &"a call stream while too many wait for their invite", true);
                            continue;
                        }
                    };
                    calls.spawn(handle_call(peer, stream, context.clone(), Arc::clone(&slots), shutdown.clone(), permit));
                }
                None => break,
            },
            Some(done) = calls.join_next(), if !calls.is_empty() => {
                if let Ok(Err(refusal)) = done {
                    log_refusal(&mut log, Some(refusal.peer), refusal.reason, &refusal.detail, false);
                }
            }
            _ = shutdown.changed() => break,
        }
    }
    // Calls see the same shutdown signal and end themselves; wait for their receipts.
    while calls.join_next().await.is_some() {}
}

/// Decides whether to take the call; a slot is held for as long as the permit lives.
fn admit(
    invite: &Invite,
    remote: &PeerId,
    offer: Option<&SignedOffer>,
    slots: &Arc<Semaphore>,
) -> Result<OwnedSemaphorePermit, RejectReason> {
    if identity::provider_id(remote) != Some(invite.caller) {
        return Err(RejectReason::Unauthorised);
    }
    let now = clock::unix_now();
    let Some(offer) =
        offer.filter(|o| !o.is_expired(now) && o.offer().status == OfferStatus::Available)
    else {
        return Err(RejectReason::Unavailable);
    };
    if invite.offer.provider != offer.provider() || invite.offer.seq > offer.seq() {
        return Err(RejectReason::NoRoute);
    }
    let route = offer
        .offer()
        .best_route(&invite.destination)
        .ok_or(RejectReason::NoRoute)?;
    if route.tariff != invite.tariff || route.prefix != invite.prefix {
        return Err(RejectReason::PriceChanged {
            current: Some(route.tariff),
        });
    }
    Arc::clone(slots)
        .try_acquire_owned()
        .map_err(|_| RejectReason::OverCapacity)
}

async fn handle_call(
    peer: PeerId,
    stream: Stream,
    context: GatewayContext,
    slots: Arc<Semaphore>,
    mut shutdown: watch::Receiver<bool>,
    waiting: Waiting,
) -> Result<(), StreamRefusal> {
    let metrics = context.metrics.clone();
    let (mut writer, mut frames) = wire::split_limited(stream, context.limits.max_call_frame_bytes);
    let refused = |reason: &'static str, detail: String| StreamRefusal {
        peer,
        reason,
        detail,
    };
    let invite = match tokio::time::timeout(INVITE_DEADLINE, frames.recv()).await {
        Ok(Some(Ok(Frame::Invite(bytes)))) => match SignedInvite::decode(&bytes, clock::now()) {
            Ok(invite) => invite,
            Err(e) => {
                metrics.call_stream_error("invalid_invite");
                wire::send_in_time(&mut writer, &Frame::Reject(RejectReason::Unauthorised)).await;
                wire::close_in_time(&mut writer).await;
                return Err(refused("invalid_invite", format!("an invalid invite: {e}")));
            }
        },
        Ok(Some(Ok(other))) => {
            metrics.call_stream_error("not_an_invite");
            wire::close_in_time(&mut writer).await;
            return Err(refused(
                "not_an_invite",
                format!(
                    "a call stream that opened with {} instead of an invite",
                    other.name()
                ),
            ));
        }
        Ok(Some(Err(e))) => {
            if matches!(e, wire::WireError::TooLarge { .. }) {
                metrics.limit_refusal("call_frame_size");
            }
            metrics.call_stream_error(e.label());
            wire::close_in_time(&mut writer).await;
            return Err(refused(
                e.label(),
                format!("an unreadable call stream: {e}"),
            ));
        }
        Ok(None) => {
            wire::close_in_time(&mut writer).await;
            return Ok(());
        }
        Err(_) => {
            metrics.call_stream_error("no_invite");
            wire::close_in_time(&mut writer).await;
            return Err(refused(
                "no_invite",
                format!("no invite within {INVITE_DEADLINE:?}"),
            ));
        }
    };
    drop(waiting);
    let call_id = invite.invite().call_id;
    let invited_at = Instant::now();
    let current_offer = context.offer.borrow().as_ref().map(|p| p.offer.clone());
    let admission = admit(invite.invite(), &peer, current_offer.as_ref(), &slots);

    // The call's deadlines and the times its receipt signs run on the monotonic clock.
    let time = SessionClock::start();
    let mut call = GatewayCall::new(invite.clone(), context.key.clone(), context.timers);
    let (leg_events_tx, mut leg_events) = mpsc::channel(LEG_EVENTS);
    let (mut leg, _slot, _active) = match admission {
        Ok(slot) => {
            call.admit(time.now());
            let active = metrics.call_started(Role::Gateway);
            let incoming = IncomingCall {
                call_id,
                destination: invite.invite().destination.clone(),
                caller: invite.invite().caller,
                sdp_offer: invite.invite().sdp_offer.clone(),
                events: leg_events_tx,
            };
            tracing::info!(%peer, call = %call_id, destination = %invite.invite().destination, "call admitted");
            (
                Some(context.backend.start_call(incoming)),
                Some(slot),
                Some(active),
            )
        }
        Err(reason) => {
            tracing::info!(%peer, call = %call_id, %reason, "call refused");
            call.reject(reason, time.now());
            (None, None, None)
        }
    };

    let mut journal = Journal {
        store: &context.store,
        call_id: call_id.to_string(),
        caller: invite.invite().caller,
        destination: invite.invite().destination.to_string(),
        answered_at: None,
    };
    let outcome = drive(
        &mut call,
        &mut writer,
        &mut frames,
        &mut leg_events,
        &mut leg,
        &mut shutdown,
        &Answering {
            metrics: &metrics,
            invited_at,
            time,
        },
        &mut journal,
    )
    .await;
    wire::close_in_time(&mut writer).await;
    if let Some(leg) = leg {
        let _ = tokio::time::timeout(RELEASE_DEADLINE, leg.finished()).await;
    }
    if let Some(outcome) = outcome {
        metrics.call_over(Role::Gateway, outcome_name(&outcome));
        // The receipt first: a record that says the call is over never lacks its receipt.
        let ended = receipt_of(&outcome).map(|r| (r.ended_at, outcome_name(&outcome)));
        store_outcome(&context.store, &metrics, call_id, outcome).await;
        if let Some((ended_at, how)) = ended {
            journal.ended(ended_at, how).await;
        }
    }
    Ok(())
}

/// What the driver needs to time the answer.
struct Answering<'a> {
    metrics: &'a Metrics,
    invited_at: Instant,
    /// The call's clock, for the machine's `now`.
    time: SessionClock,
}

/// Where a gateway's call is recorded, and under what.
struct Journal<'a> {
    store: &'a Store,
    call_id: String,
    caller: interlink_protocol::ProviderId,
    destination: String,
    /// When the callee answered, once on record.
    answered_at: Option<Timestamp>,
}

impl Journal<'_> {
    /// Records the call as answered at `at`.
    async fn answered(&mut self, at: Timestamp) {
        self.answered_at = Some(at);
        self.record(at, None).await;
    }

    /// Completes the record of an answered call.
    async fn ended(&self, at: Timestamp, how: &str) {
        if let Some(answered_at) = self.answered_at {
            self.record(answered_at, Some((at, how.to_owned()))).await;
        }
    }

    async fn record(&self, answered_at: Timestamp, ended: Option<(Timestamp, String)>) {
        let recorded = self
            .store
            .record_call(
                Role::Gateway,
                self.call_id.clone(),
                self.caller,
                self.destination.clone(),
                answered_at,
                ended,
            )
            .await;
        if let Err(e) = recorded {
            tracing::error!(call = %self.call_id, error = %e, "cannot record the call");
        }
    }
}

/// Runs the call until the machine is done; returns how it ended.
#[allow(clippy::too_many_arguments)]
async fn drive(
    call: &mut GatewayCall,
    writer: &mut FrameWriter,
    frames: &mut mpsc::Receiver<Result<Frame, wire::WireError>>,
    leg_events: &mut mpsc::Receiver<LegEvent>,
    leg: &mut Option<LegHandle>,
    shutdown: &mut watch::Receiver<bool>,
    answering: &Answering<'_>,
    journal: &mut Journal<'_>,
) -> Option<GatewayOutcome> {
    let time = answering.time;
    let mut outcome = None;
    let mut writable = true;
    let mut answered_at = None;
    let mut shutting_down = *shutdown.borrow();
    if shutting_down {
        call.shut_down(time.now());
    }
    loop {
        // The call is on record as answered before the caller hears of the answer, so that
        // a gateway that dies during the call still knows it carried it.
        if let Some(at) = answered_at.take() {
            journal.answered(at).await;
        }
        while let Some(frame) = call.poll_transmit() {
            if matches!(frame, Frame::Answer { .. }) {
                answering.metrics.call_setup(
                    Role::Gateway,
                    "invite_to_answer",
                    answering.invited_at.elapsed(),
                );
            }
            if writable && !wire::send_in_time(writer, &frame).await {
                writable = false;
                call.connection_lost(time.now());
            }
        }
        while let Some(event) = call.poll_event() {
            match event {
                GatewayEvent::HangUpFarLeg(cause) => {
                    if let Some(leg) = leg.as_mut() {
                        leg.hang_up(cause);
                    }
                }
                GatewayEvent::Done(done) => outcome = Some(done),
            }
        }
        if call.is_done() {
            return outcome;
        }
        let deadline = call.poll_timeout().map(|at| time.instant_of(at));
        tokio::select! {
            frame = frames.recv() => match frame {
                Some(Ok(frame)) => call.handle_frame(frame, time.now()),
                Some(Err(e)) => {
                    tracing::info!(error = %e, "call stream failed");
                    answering.metrics.call_stream_error(e.label());
                    call.connection_lost(time.now());
                }
                None => call.connection_lost(time.now()),
            },
            event = leg_events.recv() => {
                let now = time.now();
                match event {
                    Some(LegEvent::SessionProgress { sdp_answer }) => {
                        call.session_progress(sdp_answer, now);
                    }
                    Some(LegEvent::Ringing) => call.ringing(now),
                    Some(LegEvent::Answered { sdp_answer, answered_by }) => {
                        call.answered_as(sdp_answer, answered_by, now);
                        if call.state() == GatewayState::Answered && journal.answered_at.is_none() {
                            answered_at = Some(now);
                        }
                    }
                    Some(LegEvent::MediaStarted) => call.media_started(now),
                    Some(LegEvent::Failed(reason)) => call.far_end_failed(reason, now),
                    // A back-end that drops its channel has hung up.
                    Some(LegEvent::HungUp) | None => call.far_end_hung_up(now),
                }
            }
            () = sleep_until(deadline) => call.handle_timeout(time.now()),
            changed = shutdown.changed(), if !shutting_down => {
                shutting_down = true;
                if changed.is_err() || *shutdown.borrow() {
                    call.shut_down(time.now());
                }
            }
        }
    }
}

async fn store_outcome(
    store: &Store,
    metrics: &Metrics,
    call_id: interlink_protocol::call::CallId,
    outcome: GatewayOutcome,
) {
    let now = clock::now();
    let saved = match &outcome {
        GatewayOutcome::Settled(settled) => {
            store
                .save_receipt(
                    Role::Gateway,
                    ReceiptStatus::Settled,
                    settled.receipt(),
                    settled.as_bytes(),
                    None,
                    now,
                )
                .await
        }
        GatewayOutcome::Unacknowledged(signed) => {
            store
                .save_receipt(
                    Role::Gateway,
                    ReceiptStatus::Unacknowledged,
                    signed.receipt(),
                    signed.as_bytes(),
                    None,
                    now,
                )
                .await
        }
        GatewayOutcome::Disputed { receipt, dispute } => {
            store
                .save_receipt(
                    Role::Gateway,
                    ReceiptStatus::Disputed,
                    receipt.receipt(),
                    receipt.as_bytes(),
                    Some(dispute.to_string()),
                    now,
                )
                .await
        }
        GatewayOutcome::Rejected(_) | GatewayOutcome::Cancelled(_) => Ok(()),
    };
    match saved {
        Ok(()) => {
            if let Some(status) = receipt_status(&outcome) {
                metrics.receipt_written(Role::Gateway, status);
            }
            match receipt_of(&outcome).and_then(|r| r.without_media) {
                Some(cause) => {
                    metrics.call_not_charged(Role::Gateway);
                    tracing::warn!(call = %call_id, outcome = ?outcome_name(&outcome), %cause,
                        "call over, not charged: media never flowed both ways");
                }
                None => {
                    tracing::info!(call = %call_id, outcome = ?outcome_name(&outcome), "call over")
                }
            }
        }
        Err(e) => tracing::error!(call = %call_id, error = %e, "cannot store the receipt"),
    }
}

/// The receipt an outcome carries, if the call was answered.
fn receipt_of(outcome: &GatewayOutcome) -> Option<&UsageReceipt> {
    match outcome {
        GatewayOutcome::Settled(settled) => Some(settled.receipt()),
        GatewayOutcome::Unacknowledged(signed) => Some(signed.receipt()),
        GatewayOutcome::Disputed { receipt, .. } => Some(receipt.receipt()),
        GatewayOutcome::Rejected(_) | GatewayOutcome::Cancelled(_) => None,
    }
}

/// The status of the receipt an outcome leaves, if it leaves one.
fn receipt_status(outcome: &GatewayOutcome) -> Option<ReceiptStatus> {
    match outcome {
        GatewayOutcome::Settled(_) => Some(ReceiptStatus::Settled),
        GatewayOutcome::Unacknowledged(_) => Some(ReceiptStatus::Unacknowledged),
        GatewayOutcome::Disputed { .. } => Some(ReceiptStatus::Disputed),
        GatewayOutcome::Rejected(_) | GatewayOutcome::Cancelled(_) => None,
    }
}

fn outcome_name(outcome: &GatewayOutcome) -> &'static str {
    match outcome {
        GatewayOutcome::Rejected(_) => "rejected",
        GatewayOutcome::Cancelled(_) => "cancelled",
        GatewayOutcome::Settled(_) => "settled",
        GatewayOutcome::Disputed { .. } => "disputed",
        GatewayOutcome::Unacknowledged(_) => "unacknowledged",
    }
}
