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

mod attempt;
mod report;

use std::time::{Duration, Instant};

use interlink_gateway_plugin::webrtc_leg::{MediaError, MediaSettings};
use interlink_protocol::call::{Failure, RejectReason, Timers};
use interlink_protocol::offer::{Route, Tariff};
use interlink_protocol::ranking::{self, Policy};
use interlink_protocol::{E164, SecretKey, ServiceKind, SignedOffer};
use libp2p::PeerId;
use serde::Serialize;
use tokio::sync::watch;

use crate::clock;
use crate::discovery::{self, Discovery, DiscoveryError, Query};
use crate::identity;
use crate::network::CacheUse;
use crate::network::Client;
use crate::store::{Role, Store, StoreError};

use attempt::{Attempted, attempt};
use report::finish;
pub use report::{CallReport, Kept, ReceiptSummary, SetupPhases};

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

#[cfg(test)]
mod tests {
    use interlink_protocol::call::{ByeCause, Phase};
    use interlink_protocol::money::{Currency, Money};
    use interlink_protocol::ranking::PolicyKind;

    use super::*;

    fn gbp() -> Currency {
        Currency::new("GBP").unwrap()
    }

    fn tariff(currency: Currency, per_minute: u64) -> Tariff {
        Tariff {
            currency,
            setup_fee: 0,
            per_minute,
            billing_increment_secs: 60,
        }
    }

    fn limited_to(limit: Option<Money>) -> Policy {
        Policy {
            kind: PolicyKind::Cheapest,
            max_price_per_minute: limit,
            currency: None,
            required_codec: None,
        }
    }

    /// A new price is paid without asking only within the caller's own limit, in its
    /// currency; with no limit set, nothing was agreed in advance.
    #[test]
    fn a_changed_price_is_accepted_only_within_the_limit() {
        let limit = limited_to(Some(Money::new(gbp(), 5)));
        assert!(acceptable(&limit, &tariff(gbp(), 5)));
        assert!(!acceptable(&limit, &tariff(gbp(), 6)));
        assert!(!acceptable(
            &limit,
            &tariff(Currency::new("EUR").unwrap(), 1)
        ));
        assert!(!acceptable(&limited_to(None), &tariff(gbp(), 1)));
    }

    #[test]
    fn each_failure_reads_as_a_reason() {
        let cases = [
            (
                Failure::Rejected(RejectReason::Busy),
                RejectReason::Busy.to_string(),
            ),
            (
                Failure::Timeout(Phase::Silence),
                "the gateway fell silent while ringing".into(),
            ),
            (
                Failure::Timeout(Phase::Trying),
                "timed out waiting for trying".into(),
            ),
            (
                Failure::EndedByGateway(ByeCause::Shutdown),
                "ended by the gateway: the gateway is shutting down".into(),
            ),
            (Failure::ConnectionLost, "connection lost".into()),
            (Failure::Cancelled, "setup deadline passed".into()),
        ];
        for (failure, reason) in cases {
            assert_eq!(describe(&failure), reason, "{failure:?}");
        }
        let attempts = [
            Attempt {
                gateway: "A".into(),
                peer_id: String::new(),
                outcome: "busy".into(),
            },
            Attempt {
                gateway: "B".into(),
                peer_id: String::new(),
                outcome: "connection lost".into(),
            },
        ];
        assert_eq!(summary(&attempts), "A: busy; B: connection lost");
    }
}
