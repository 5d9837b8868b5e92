//! The caller side of calls: choose a gateway, invite it, fail over, talk, settle.
//!
//! [`place_call`] discovers the offers that cover the destination, ranks them with the
//! caller's own history of answered and failed calls, and invites the best. A refusal, a
//! deadline or a dropped connection before the answer moves on to the next candidate,
//! all within one setup deadline. A changed price is paid only if it is within the
//! caller's price limit. Once answered, the node's own WebRTC endpoint sends a tone, the
//! call is held for the requested time and hung up, and the gateway's receipt is checked,
//! countersigned and stored, with the record of the call (no receipt, when none came).
//! Every attempt goes into the history that ranks the next call.
//!
//! The caller's end of the media is either the node's own ([`CallerMedia::Tone`], for the
//! command line, the demo and benchmarks) or an endpoint elsewhere that made its own SDP
//! offer, a browser behind the node's HTTP API ([`CallerMedia::External`]): the offer is
//! carried in the invite, the gateway's answer goes back to it through
//! [`Progress::Answered`], and it says when its media started and when its user hangs up.

use std::time::{Duration, Instant};

use interlink_gateway_plugin::webrtc_leg::{MediaError, MediaSettings};
use interlink_protocol::call::{
    CallEnd, CallId, CallerCall, CallerEvent, CallerState, Failure, Invite, OfferRef, Party,
    ReceiptOutcome, RejectReason, Timers,
};
use interlink_protocol::offer::{Route, Tariff};
use interlink_protocol::ranking::{self, Policy};
use interlink_protocol::{E164, SecretKey, ServiceKind, SignedOffer};
use libp2p::PeerId;
use serde::Serialize;
use tokio::sync::watch;

use crate::calls::media::{MediaReport, ToneCall};
use crate::calls::sleep_until;
use crate::calls::wire::{self, CALL_PROTOCOL};
use crate::clock::{self, SessionClock};
use crate::discovery::{self, Discovery, DiscoveryError, Query};
use crate::identity;
use crate::network::CacheUse;
use crate::network::Client;
use crate::store::{ReceiptStatus, Role, Store, StoreError};

/// How long a frame may take to go out before the gateway is considered gone.
const SEND_DEADLINE: Duration = Duration::from_secs(5);

/// What a caller needs to place calls.
#[derive(Clone)]
pub struct CallerContext {
    pub client: Client,
    pub key: SecretKey,
    pub store: Store,
    pub media: MediaSettings,
}

impl std::fmt::Debug for CallerContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallerContext")
            .field("media", &self.media)
            .finish_non_exhaustive()
    }
}

/// What to call and how.
#[derive(Clone, Debug)]
pub struct CallOptions {
    pub destination: E164,
    pub kinds: Vec<ServiceKind>,
    pub policy: Policy,
    /// Call through this gateway only.
    pub via: Option<PeerId>,
    /// How long to hold the call once answered.
    pub hold_for: Duration,
    /// How long finding a gateway that answers may take, failovers included.
    pub setup_deadline: Duration,
    pub timers: Timers,
    /// The frequency of the tone the caller sends.
    pub tone_hz: f64,
    /// Turns true when the user hangs up early (Ctrl-C): before the answer nobody else is
    /// tried; after it the call ends as any hang-up does, receipt and all.
    pub hang_up: Option<watch::Receiver<bool>>,
}

impl CallOptions {
    /// A call to `destination` with the default policy, timers and a 5 s hold.
    pub fn new(destination: E164) -> CallOptions {
        CallOptions {
            destination,
            kinds: ServiceKind::WEBRTC_TO_NUMBERS.to_vec(),
            policy: Policy::default(),
            via: None,
            hold_for: Duration::from_secs(5),
            setup_deadline: Duration::from_secs(30),
            timers: Timers::default(),
            tone_hz: 440.0,
            hang_up: None,
        }
    }
}

/// The caller's end of a call's media.
#[derive(Debug)]
pub enum CallerMedia {
    /// The node's own WebRTC endpoint: it sends a tone, checks its echo and hangs up after
    /// [`CallOptions::hold_for`].
    Tone,
    /// An endpoint elsewhere (a browser) that made the SDP offer and plays the media.
    External(ExternalMedia),
}

/// An endpoint elsewhere: its SDP offer, and how it tells the call what happens to it.
#[derive(Debug)]
pub struct ExternalMedia {
    /// The endpoint's SDP offer, sent to each gateway tried (only one answer is applied).
    pub sdp_offer: String,
    /// Turns true when the endpoint has received its first media packet.
    pub media_started: watch::Receiver<bool>,
    /// Turns true when its user hangs up; dropping the sender hangs up as well.
    pub hang_up: watch::Receiver<bool>,
}

impl ExternalMedia {
    /// Whether its user has hung up (or whoever held the sender is gone).
    fn hung_up(&self) -> bool {
        *self.hang_up.borrow() || self.hang_up.has_changed().is_err()
    }
}

impl CallerMedia {
    /// Whether the user hung up, on the endpoint or through [`CallOptions::hang_up`].
    fn hung_up(&self, options: &CallOptions) -> bool {
        let by_options = options.hang_up.as_ref().is_some_and(|h| *h.borrow());
        by_options || matches!(self, CallerMedia::External(external) if external.hung_up())
    }
}

/// Waits until the endpoint's `signal` turns true or its sender is dropped.
async fn turned_on(signal: Option<&mut watch::Receiver<bool>>) {
    match signal {
        Some(signal) => {
            let _ = signal.wait_for(|on| *on).await;
        }
        None => std::future::pending().await,
    }
}

/// What a call is doing, as it happens.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum Progress {
    /// Discovery is done: this many gateways can carry the call.
    Found {
        candidates: usize,
        lookup: Duration,
    },
    /// Inviting a gateway at this tariff.
    Inviting {
        gateway: String,
        peer_id: String,
        tariff: Tariff,
    },
    Trying {
        gateway: String,
    },
    Ringing {
        gateway: String,
    },
    /// The gateway's SDP answer came before the callee answered, and the node's own media
    /// is connecting while the callee rings (never for an external endpoint).
    SessionProgress {
        gateway: String,
        sdp_answer: String,
    },
    Answered {
        gateway: String,
        after: Duration,
        /// Who answered, if the gateway said (printable characters only).
        answered_by: Option<String>,
        /// The gateway's SDP answer: an external endpoint applies it.
        sdp_answer: String,
    },
    MediaStarted {
        after: Duration,
    },
    /// A gateway failed; the next one is tried.
    FailedOver {
        gateway: String,
        reason: String,
    },
    /// The gateway's price changed to one within the limit: inviting it again at that price.
    Repricing {
        gateway: String,
        per_minute: String,
    },
    HangingUp,
}

/// One gateway tried and why it did not carry the call.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Attempt {
    pub gateway: String,
    pub peer_id: String,
    pub outcome: String,
}

/// The receipt of the call, as the caller stored it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ReceiptSummary {
    /// `settled`, `disputed` or `missing`.
    pub status: String,
    pub billed_seconds: Option<u64>,
    pub amount: Option<String>,
    pub amount_minor: Option<u64>,
    pub currency: Option<String>,
    pub dispute: Option<String>,
    /// Set when the call is not charged because media never flowed both ways: how it
    /// ended.
    pub not_charged: Option<String>,
}

/// Everything about a call that was answered.
#[derive(Clone, Debug, Serialize)]
pub struct CallReport {
    pub call_id: String,
    pub destination: String,
    pub gateway: String,
    pub gateway_peer_id: String,
    pub prefix: String,
    pub currency: String,
    pub price_per_minute: String,
    pub setup_fee: String,
    /// Gateways tried before this one, with why they failed.
    pub failovers: Vec<Attempt>,
    pub command_to_answer_ms: f64,
    pub invite_to_answer_ms: f64,
    pub command_to_first_media_ms: Option<f64>,
    /// How long each phase of the setup took, for the gateway that answered.
    pub phases: SetupPhases,
    /// Who answered, as the far network identified them, if the gateway said.
    pub answered_by: Option<String>,
    pub media: MediaReport,
    /// Who ended the call and why.
    pub ended_by: String,
    pub cause: String,
    pub receipt: ReceiptSummary,
}

/// The phases of a call's setup, in milliseconds: divided by the round-trip time to the
/// gateway, each says how many round trips it cost.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct SetupPhases {
    /// Finding and ranking the offers.
    pub lookup_ms: f64,
    /// Opening the call stream to the gateway that answered (dialling it, or a stream on
    /// a connection already open).
    pub stream_ms: f64,
    /// From the invite to `Trying`, to the early SDP answer, to `Ringing` and to the answer.
    pub invite_to_trying_ms: Option<f64>,
    pub invite_to_early_answer_ms: Option<f64>,
    pub invite_to_ringing_ms: Option<f64>,
    pub invite_to_answer_ms: f64,
    /// From the answer to the first media packet from the gateway: what is left of ICE
    /// and DTLS once the callee answers, plus one round trip for the echo.
    pub answer_to_first_media_ms: Option<f64>,
}

/// When each frame of the setup arrived, for [`SetupPhases`].
#[derive(Clone, Copy, Debug, Default)]
struct Timeline {
    stream: Duration,
    trying: Option<Instant>,
    early_answer: Option<Instant>,
    ringing: Option<Instant>,
}

/// Why no call was set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CallError {
    #[error(transparent)]
    Discovery(#[from] DiscoveryError),
    #[error("no gateway covers {destination} within the limits ({offers} offers found)")]
    NotCovered { destination: E164, offers: usize },
    #[error("the gateway {0} is not among those that can carry the call")]
    ViaNotFound(PeerId),
    #[error("no gateway answered ({}): {}", attempts.len(), summary(attempts))]
    NoAnswer { attempts: Vec<Attempt> },
    #[error("the caller hung up before the call was answered")]
    Cancelled { attempts: Vec<Attempt> },
    #[error("the caller's media: {0}")]
    Media(#[from] MediaError),
    #[error("cannot sign the invite: {0}")]
    Invite(#[from] interlink_protocol::call::messages::InviteError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn summary(attempts: &[Attempt]) -> String {
    attempts
        .iter()
        .map(|a| format!("{}: {}", a.gateway, a.outcome))
        .collect::<Vec<_>>()
        .join("; ")
}

/// The gateways that may carry a call, best first, as discovery and ranking found them.
#[derive(Clone, Debug)]
pub struct CallPlan {
    pub candidates: Vec<Planned>,
    /// Verified offers found for the destination, covering it or not.
    pub offers_found: usize,
    pub lookup: Duration,
}

/// One gateway of a plan: its offer and the route that covers the destination.
#[derive(Clone, Debug)]
pub struct Planned {
    pub offer: SignedOffer,
    pub route: Route,
}

impl Planned {
    fn name(&self) -> &str {
        &self.offer.offer().display_name
    }

    fn peer_id(&self) -> Option<PeerId> {
        identity::peer_id(&self.offer.provider())
    }
}

/// Discovers and ranks the gateways for a call, with the caller's own history.
pub async fn plan_call(
    context: &CallerContext,
    options: &CallOptions,
) -> Result<CallPlan, CallError> {
    let started = Instant::now();
    // A call asks the network, not the cache: the offers it will invite at are current.
    let query = Query {
        policy: options.policy.clone(),
        measure_rtt: true,
        cache: CacheUse::Bypass,
        only: options.via.as_ref().and_then(identity::provider_id),
        ..Query::new(options.destination.clone(), options.kinds.clone())
    };
    let found = discovery::discover(&context.client, &query).await?;
    plan_found(context, options, &found, started).await
}

/// Ranks what discovery `found` (started at `started`) into a plan, with the caller's own
/// history.
pub async fn plan_found(
    context: &CallerContext,
    options: &CallOptions,
    found: &Discovery,
    started: Instant,
) -> Result<CallPlan, CallError> {
    let history = context
        .client
        .metrics()
        .store_result_or_default("history", context.store.history().await);
    let ranking = ranking::rank(
        &found.offers,
        &options.destination,
        &found.measurements,
        &history,
        &options.policy,
    );
    let candidates: Vec<Planned> = ranking
        .candidates
        .iter()
        .filter(|c| {
            options
                .via
                .is_none_or(|via| identity::peer_id(&c.offer.provider()) == Some(via))
        })
        .map(|c| Planned {
            offer: c.offer.clone(),
            route: c.route.clone(),
        })
        .collect();
    if candidates.is_empty() {
        return Err(match options.via {
            Some(via) if !ranking.candidates.is_empty() => CallError::ViaNotFound(via),
            _ => CallError::NotCovered {
                destination: options.destination.clone(),
                offers: found.offers.len(),
            },
        });
    }
    Ok(CallPlan {
        candidates,
        offers_found: found.offers.len(),
        lookup: started.elapsed(),
    })
}

/// Places a call and reports how it went; `progress` hears of each step.
pub async fn place_call(
    context: &CallerContext,
    options: &CallOptions,
    progress: &(dyn Fn(Progress) + Send + Sync),
) -> Result<CallReport, CallError> {
    let started = Instant::now();
    let plan = plan_call(context, options).await?;
    progress(Progress::Found {
        candidates: plan.candidates.len(),
        lookup: plan.lookup,
    });
    run_call(context, options, &plan, started, progress).await
}

/// Tries the plan's gateways in order until one answers, within the setup deadline counted
/// from `started` (when the user asked for the call), with the node's own media.
pub async fn run_call(
    context: &CallerContext,
    options: &CallOptions,
    plan: &CallPlan,
    started: Instant,
    progress: &(dyn Fn(Progress) + Send + Sync),
) -> Result<CallReport, CallError> {
    run_call_with(
        context,
        options,
        plan,
        started,
        &mut CallerMedia::Tone,
        progress,
    )
    .await
}

/// [`run_call`] with the caller's end of the media given: an external endpoint's call is
/// held until it hangs up, and one that hangs up before the answer fails over to nobody.
pub async fn run_call_with(
    context: &CallerContext,
    options: &CallOptions,
    plan: &CallPlan,
    started: Instant,
    media: &mut CallerMedia,
    progress: &(dyn Fn(Progress) + Send + Sync),
) -> Result<CallReport, CallError> {
    let result = try_candidates(context, options, plan, started, media, progress).await;
    let outcome = match &result {
        Ok(_) => "answered",
        Err(CallError::NoAnswer { .. }) => "no_answer",
        Err(CallError::Cancelled { .. }) => "cancelled",
        Err(_) => "error",
    };
    context.client.metrics().call_over(Role::Caller, outcome);
    result
}

async fn try_candidates(
    context: &CallerContext,
    options: &CallOptions,
    plan: &CallPlan,
    started: Instant,
    media: &mut CallerMedia,
    progress: &(dyn Fn(Progress) + Send + Sync),
) -> Result<CallReport, CallError> {
    let deadline = started + options.setup_deadline;
    let mut attempts = Vec::new();
    for candidate in &plan.candidates {
        let name = candidate.name().to_owned();
        let peer_id = candidate
            .peer_id()
            .map(|p| p.to_string())
            .unwrap_or_default();
        let mut tariff = candidate.route.tariff;
        let mut repriced = false;
        let mut invited_again = false;
        loop {
            if media.hung_up(options) {
                return Err(CallError::Cancelled { attempts });
            }
            if Instant::now() >= deadline {
                attempts.push(Attempt {
                    gateway: name.clone(),
                    peer_id: peer_id.clone(),
                    outcome: "setup deadline passed".into(),
                });
                return Err(CallError::NoAnswer { attempts });
            }
            progress(Progress::Inviting {
                gateway: name.clone(),
                peer_id: peer_id.clone(),
                tariff,
            });
            let outcome = attempt(
                context, options, candidate, tariff, started, deadline, media, progress,
            )
            .await?;
            let (call_id, failure, unheard) = match outcome {
                Attempted::Answered(answered) => {
                    return finish(
                        context,
                        options,
                        candidate,
                        tariff,
                        answered,
                        attempts,
                        started,
                        plan.lookup,
                    )
                    .await;
                }
                Attempted::Failed {
                    call_id,
                    failure,
                    unheard,
                } => (call_id, failure, unheard),
            };
            if media.hung_up(options) {
                // The user's choice, not the gateway's failure: kept out of the history.
                attempts.push(Attempt {
                    gateway: name.clone(),
                    peer_id: peer_id.clone(),
                    outcome: "cancelled by the caller".into(),
                });
                return Err(CallError::Cancelled { attempts });
            }
            let reason = describe(&failure);
            let recorded = context
                .store
                .record_attempt(
                    call_id.to_string(),
                    candidate.offer.provider(),
                    reason.clone(),
                    false,
                    clock::now(),
                )
                .await;
            context
                .client
                .metrics()
                .store_result_or_default("record_attempt", recorded);
            // A stream the gateway never read (its connection closed, or the gateway's
            // stream acceptor was full under a burst of streams and dropped it): once more.
            if unheard && !invited_again {
                invited_again = true;
                tracing::info!(gateway = %name, "the gateway did not read the invite; inviting it again");
                continue;
            }
            if let Failure::Rejected(RejectReason::PriceChanged { current: Some(new) }) = &failure
                && !repriced
                && acceptable(&options.policy, new)
            {
                repriced = true;
                tariff = *new;
                progress(Progress::Repricing {
                    gateway: name.clone(),
                    per_minute: new.per_minute_money().to_string(),
                });
                continue;
            }
            context.client.metrics().call_failover();
            progress(Progress::FailedOver {
                gateway: name.clone(),
                reason: reason.clone(),
            });
            attempts.push(Attempt {
                gateway: name.clone(),
                peer_id: peer_id.clone(),
                outcome: reason,
            });
            break;
        }
    }
    Err(CallError::NoAnswer { attempts })
}

/// Whether the caller agreed in advance to pay `tariff`: only within its price limit.
fn acceptable(policy: &Policy, tariff: &Tariff) -> bool {
    policy.max_price_per_minute.is_some_and(|limit| {
        limit.currency == tariff.currency && tariff.per_minute <= limit.minor_units
    })
}

fn describe(failure: &Failure) -> String {
    match failure {
        Failure::Rejected(reason) => reason.to_string(),
        Failure::Timeout(interlink_protocol::call::Phase::Silence) => {
            "the gateway fell silent while ringing".into()
        }
        Failure::Timeout(phase) => format!("timed out waiting for {phase:?}").to_lowercase(),
        Failure::EndedByGateway(cause) => format!("ended by the gateway: {cause}"),
        Failure::ConnectionLost => "connection lost".into(),
        Failure::Cancelled => "setup deadline passed".into(),
        Failure::ProtocolError(detail) => format!("protocol error: {detail}"),
    }
}

/// An attempt that reached the answer, and what the caller measured.
struct Answered {
    call_id: CallId,
    end: CallEnd,
    media: MediaReport,
    invite_to_answer: Duration,
    invited_at: Instant,
    answered_at: Instant,
    answered_by: Option<String>,
    first_media_at: Option<Instant>,
    timeline: Timeline,
}

enum Attempted {
    Answered(Box<Answered>),
    Failed {
        call_id: CallId,
        failure: Failure,
        /// Nothing came back from the gateway: it did not take the call (a gateway that
        /// reads an invite answers `Trying` or a rejection), so inviting it again is safe.
        unheard: bool,
    },
}

/// Invites one gateway and, if it answers, holds the call until it ends.
#[allow(clippy::too_many_arguments)]
async fn attempt(
    context: &CallerContext,
    options: &CallOptions,
    candidate: &Planned,
    tariff: Tariff,
    started: Instant,
    deadline: Instant,
    media: &mut CallerMedia,
    progress: &(dyn Fn(Progress) + Send + Sync),
) -> Result<Attempted, CallError> {
    let call_id = CallId::from_bytes(rand::random());
    let failed = |failure| {
        Ok(Attempted::Failed {
            call_id,
            unheard: matches!(failure, Failure::ConnectionLost),
            failure,
        })
    };
    let name = candidate.name().to_owned();
    let Some(peer) = candidate.peer_id() else {
        return failed(Failure::ConnectionLost);
    };
    let addresses = candidate.offer.offer().addresses.clone();
    let connecting = Instant::now();
    let connect = context.client.open_stream(peer, addresses, CALL_PROTOCOL);
    let connect_within = options
        .timers
        .trying
        .min(deadline.saturating_duration_since(Instant::now()));
    let stream = match tokio::time::timeout(connect_within, connect).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(reason)) => {
            tracing::warn!(gateway = %name, %reason, "cannot open a call stream");
            return failed(Failure::ConnectionLost);
        }
        Err(_) => {
            tracing::warn!(gateway = %name, "no call stream within {connect_within:?}");
            return failed(Failure::Timeout(interlink_protocol::call::Phase::Trying));
        }
    };

    let mut timeline = Timeline {
        stream: connecting.elapsed(),
        ..Timeline::default()
    };
    let _active = context.client.metrics().call_started(Role::Caller);
    let mut user_hang_up = options.hang_up.clone();
    let (mut tone, sdp_offer, mut external_started, mut external_hang_up) = match media {
        CallerMedia::Tone => {
            let (tone, sdp) = ToneCall::offer(&context.media, options.tone_hz).await?;
            (Some(tone), sdp, None, user_hang_up.as_mut())
        }
        CallerMedia::External(external) => (
            None,
            external.sdp_offer.clone(),
            Some(&mut external.media_started),
            Some(&mut external.hang_up),
        ),
    };
    // The call's deadlines and the times its receipt signs run on the monotonic clock.
    let time = SessionClock::start();
    let invite = Invite {
        call_id,
        destination: options.destination.clone(),
        offer: OfferRef {
            provider: candidate.offer.provider(),
            seq: candidate.offer.seq(),
        },
        prefix: candidate.route.prefix.clone(),
        tariff,
        caller: context.key.provider_id(),
        sdp_offer,
        sent_at: time.now(),
    };
    let invited_at = Instant::now();
    let mut call = CallerCall::new(invite, context.key.clone(), options.timers, time.now())?;
    let (mut writer, mut frames) = wire::split(stream);
    let mut answered_at: Option<Instant> = None;
    let mut answered: Option<String> = None;
    let mut first_media_at: Option<Instant> = None;
    let mut writable = true;
    let mut heard = false;

    let result = loop {
        while let Some(frame) = call.poll_transmit() {
            if writable
                && !matches!(
                    tokio::time::timeout(SEND_DEADLINE, writer.send(&frame)).await,
                    Ok(Ok(()))
                )
            {
                writable = false;
                call.connection_lost(time.now());
            }
        }
        let mut outcome = None;
        while let Some(event) = call.poll_event() {
            match event {
                CallerEvent::Trying => {
                    timeline.trying = Some(Instant::now());
                    progress(Progress::Trying {
                        gateway: name.clone(),
                    });
                }
                CallerEvent::Ringing => {
                    timeline.ringing = Some(Instant::now());
                    progress(Progress::Ringing {
                        gateway: name.clone(),
                    });
                }
                // The node's own media connects while the callee rings. An external
                // endpoint's one offer may meet several gateways in turn (failover), and
                // a browser takes one answer per offer: it gets the answer at the answer.
                CallerEvent::SessionProgress { sdp } => {
                    let Some(tone) = &mut tone else { continue };
                    timeline.early_answer = Some(Instant::now());
                    let accepted = tone.accept_early_answer(&sdp).await;
                    progress(Progress::SessionProgress {
                        gateway: name.clone(),
                        sdp_answer: sdp,
                    });
                    if let Err(e) = accepted {
                        tracing::warn!(error = %e, "the gateway's early SDP answer is unusable; hanging up");
                        call.hang_up(time.now());
                    }
                }
                CallerEvent::Answered { sdp, answered_by } => {
                    let now = Instant::now();
                    answered_at = Some(now);
                    // It is shown to people: no control characters from the network.
                    answered =
                        answered_by.map(|who| who.chars().filter(|c| !c.is_control()).collect());
                    let accepted = match &mut tone {
                        Some(tone) => tone.accept_answer(&sdp).await,
                        None => Ok(()),
                    };
                    progress(Progress::Answered {
                        gateway: name.clone(),
                        after: now - started,
                        answered_by: answered.clone(),
                        sdp_answer: sdp,
                    });
                    if let Err(e) = accepted {
                        tracing::warn!(error = %e, "the gateway's SDP answer is unusable; hanging up");
                        call.hang_up(time.now());
                    }
                }
                CallerEvent::Failed(failure) => outcome = Some(Err(failure)),
                CallerEvent::Ended(end) => outcome = Some(Ok(end)),
            }
        }
        if let Some(outcome) = outcome {
            // Let the last frames (a Bye, the countersignature) go out.
            while let Some(frame) = call.poll_transmit() {
                if writable {
                    let _ = tokio::time::timeout(SEND_DEADLINE, writer.send(&frame)).await;
                }
            }
            break outcome;
        }
        let call_deadline = call.poll_timeout().map(|at| time.instant_of(at));
        // The node's own media hangs up after the hold time; an external endpoint's user
        // hangs up when they please, or gives up before the answer.
        let hang_up_at = answered_at
            .filter(|_| tone.is_some())
            .map(|at| tokio::time::Instant::from_std(at + options.hold_for));
        let give_up_at = answered_at
            .is_none()
            .then(|| tokio::time::Instant::from_std(deadline));
        let waiting_for_media = answered_at.is_some() && first_media_at.is_none();
        tokio::select! {
            frame = frames.recv() => match frame {
                Some(Ok(frame)) => {
                    heard = true;
                    call.handle_frame(frame, time.now());
                }
                Some(Err(e)) => {
                    tracing::info!(error = %e, "call stream failed");
                    call.connection_lost(time.now());
                }
                None => call.connection_lost(time.now()),
            },
            first = first_media(tone.as_ref(), external_started.as_deref_mut(), options.timers.media), if waiting_for_media => {
                if first {
                    let now = Instant::now();
                    first_media_at = Some(now);
                    progress(Progress::MediaStarted { after: now - started });
                    call.media_started(time.now());
                }
            }
            () = sleep_until(call_deadline) => call.handle_timeout(time.now()),
            () = sleep_until(hang_up_at), if matches!(call.state(), CallerState::Answered | CallerState::Active) => {
                progress(Progress::HangingUp);
                call.hang_up(time.now());
            }
            () = turned_on(external_hang_up.as_deref_mut()), if !matches!(call.state(), CallerState::Ending | CallerState::Done) => {
                progress(Progress::HangingUp);
                call.hang_up(time.now());
            }
            () = sleep_until(give_up_at) => call.hang_up(time.now()),
        }
    };
    let _ = tokio::time::timeout(SEND_DEADLINE, writer.close()).await;
    let media = match tone {
        Some(tone) => tone.close().await,
        // The node does not see an external endpoint's media.
        None => MediaReport::default(),
    };
    match result {
        Err(failure) => Ok(Attempted::Failed {
            call_id,
            unheard: !heard && matches!(failure, Failure::ConnectionLost),
            failure,
        }),
        Ok(end) => Ok(Attempted::Answered(Box::new(Answered {
            call_id,
            end,
            media,
            invite_to_answer: answered_at.map(|a| a - invited_at).unwrap_or_default(),
            invited_at,
            answered_at: answered_at.unwrap_or(invited_at),
            answered_by: answered,
            first_media_at,
            timeline,
        }))),
    }
}

/// Whether the first media packet arrived: at the node's own endpoint within `deadline`, or
/// as an external endpoint reports (the call's own media deadline bounds that wait).
async fn first_media(
    tone: Option<&ToneCall>,
    external: Option<&mut watch::Receiver<bool>>,
    deadline: Duration,
) -> bool {
    match (tone, external) {
        (Some(tone), _) => tone.wait_first_packet(deadline).await.is_ok(),
        (None, Some(started)) => {
            if started.wait_for(|on| *on).await.is_ok() {
                true
            } else {
                // Nobody left to report it: the media deadline decides.
                std::future::pending().await
            }
        }
        (None, None) => std::future::pending().await,
    }
}

/// Stores what the answered call left and writes its report.
#[allow(clippy::too_many_arguments)]
async fn finish(
    context: &CallerContext,
    options: &CallOptions,
    candidate: &Planned,
    tariff: Tariff,
    answered: Box<Answered>,
    failovers: Vec<Attempt>,
    started: Instant,
    lookup: Duration,
) -> Result<CallReport, CallError> {
    let Answered {
        call_id,
        end,
        media,
        invite_to_answer,
        invited_at,
        answered_at,
        answered_by,
        first_media_at,
        timeline,
    } = *answered;
    let metrics = context.client.metrics();
    metrics.call_setup(Role::Caller, "invite_to_answer", invite_to_answer);
    metrics.call_setup(Role::Caller, "command_to_answer", answered_at - started);
    if let Some(first) = first_media_at {
        metrics.call_setup(Role::Caller, "command_to_first_media", first - started);
    }
    let now = clock::now();
    let receipt = match &end.receipt {
        ReceiptOutcome::Settled(settled) => {
            context
                .store
                .save_receipt(
                    Role::Caller,
                    ReceiptStatus::Settled,
                    settled.receipt(),
                    settled.as_bytes(),
                    None,
                    now,
                )
                .await?;
            metrics.receipt_written(Role::Caller, ReceiptStatus::Settled);
            let r = settled.receipt();
            if r.without_media.is_some() {
                metrics.call_not_charged(Role::Caller);
            }
            ReceiptSummary {
                status: "settled".into(),
                billed_seconds: Some(r.billed_seconds),
                amount: Some(r.amount.to_string()),
                amount_minor: Some(r.amount.minor_units),
                currency: Some(r.amount.currency.to_string()),
                dispute: None,
                not_charged: r.without_media.map(|cause| cause.to_string()),
            }
        }
        ReceiptOutcome::Refused { receipt, dispute } => {
            if let Some(signed) = receipt {
                context
                    .store
                    .save_receipt(
                        Role::Caller,
                        ReceiptStatus::Disputed,
                        signed.receipt(),
                        signed.as_bytes(),
                        Some(dispute.to_string()),
                        now,
                    )
                    .await?;
                metrics.receipt_written(Role::Caller, ReceiptStatus::Disputed);
            }
            ReceiptSummary {
                status: "disputed".into(),
                billed_seconds: receipt.as_ref().map(|r| r.receipt().billed_seconds),
                amount: receipt.as_ref().map(|r| r.receipt().amount.to_string()),
                amount_minor: receipt.as_ref().map(|r| r.receipt().amount.minor_units),
                currency: receipt
                    .as_ref()
                    .map(|r| r.receipt().amount.currency.to_string()),
                dispute: Some(dispute.to_string()),
                not_charged: receipt
                    .as_ref()
                    .and_then(|r| r.receipt().without_media)
                    .map(|cause| cause.to_string()),
            }
        }
        ReceiptOutcome::Missing => ReceiptSummary {
            status: "missing".into(),
            billed_seconds: None,
            amount: None,
            amount_minor: None,
            currency: None,
            dispute: None,
            not_charged: None,
        },
    };
    let ended_by = match end.ended_by {
        Party::Caller => "caller",
        Party::Gateway => "gateway",
    };
    context
        .store
        .record_call(
            Role::Caller,
            call_id.to_string(),
            candidate.offer.provider(),
            options.destination.to_string(),
            end.answered_at,
            Some((end.ended_at, format!("{} (by the {ended_by})", end.cause))),
        )
        .await?;
    context
        .store
        .record_attempt(
            call_id.to_string(),
            candidate.offer.provider(),
            format!("answered; {}", end.cause),
            true,
            now,
        )
        .await?;
    let millis = |d: Duration| d.as_secs_f64() * 1000.0;
    Ok(CallReport {
        call_id: call_id.to_string(),
        destination: options.destination.to_string(),
        gateway: candidate.offer.offer().display_name.clone(),
        gateway_peer_id: identity::peer_id(&candidate.offer.provider())
            .map(|p| p.to_string())
            .unwrap_or_default(),
        prefix: candidate.route.prefix.to_string(),
        currency: tariff.currency.to_string(),
        price_per_minute: tariff.per_minute_money().decimal(),
        setup_fee: tariff.setup_fee_money().decimal(),
        failovers,
        command_to_answer_ms: millis(answered_at - started),
        invite_to_answer_ms: millis(invite_to_answer),
        command_to_first_media_ms: first_media_at.map(|at| millis(at - started)),
        phases: SetupPhases {
            lookup_ms: millis(lookup),
            stream_ms: millis(timeline.stream),
            invite_to_trying_ms: timeline.trying.map(|at| millis(at - invited_at)),
            invite_to_early_answer_ms: timeline.early_answer.map(|at| millis(at - invited_at)),
            invite_to_ringing_ms: timeline.ringing.map(|at| millis(at - invited_at)),
            invite_to_answer_ms: millis(invite_to_answer),
            answer_to_first_media_ms: first_media_at.map(|at| millis(at - answered_at)),
        },
        answered_by,
        media,
        ended_by: ended_by.into(),
        cause: end.cause.to_string(),
        receipt,
    })
}
