//! Publishing a gateway's offer: sign, store, index, republish, withdraw.
//!
//! The publisher is a task with the node's signing key. It stores the offer under the
//! provider's value key (where a caller that knows the gateway finds it) and in the offer
//! index, at the nodes closest to the key of every country its routes lie in (or of its
//! region, for a conference bridge), where callers find it by destination. It republishes
//! at half the offer's lifetime, each time with a higher `seq` (nodes refuse an unchanged
//! record as stale), and sooner after a failure. A price change
//! ([`Publisher::set_routes`]) republishes at once, also under the keys the new price list
//! left, so that the holders there replace the old offer. On shutdown
//! [`Publisher::withdraw`] publishes a signed withdrawal, which replaces the offer
//! everywhere it is stored. A holder that refuses the offer says why; the publisher logs
//! it and counts it (`interlink_index_publications_total`).
//!
//! The first `seq` is the Unix time in milliseconds at start, or one above the last this
//! gateway published if that is higher, and each next one is one more: the last is kept
//! in the node's database
//! ([`Store::next_offer_seq`]) and committed before the offer is signed, so a gateway that
//! restarts with its clock moved back (say, corrected by NTP) still outranks what it
//! published before. A holder that refuses an offer as stale names the `seq` it holds; if
//! that is ours and higher (a database lost, a clock that ran fast), the publisher
//! republishes above it at once, and says so.
//!
//! The offer carries the addresses others can reach the gateway at, as the network layer
//! confirms them (`network/reachability.rs`): on the internet, configured ones or ones a
//! peer dialled back; on a local network, its listen addresses. Until one is confirmed
//! nothing is published, and after [`UNREACHABLE_WARNING`] the gateway says loudly that
//! nobody can reach it. A change of addresses republishes at once.

use std::collections::BTreeSet;
use std::time::Duration;

use interlink_protocol::discovery::IndexKey;
use interlink_protocol::discovery::wire::StoreRefusal;
use interlink_protocol::offer::{
    MAX_ADDRESSES, OFFER_FORMAT_VERSION, OfferStatus, Route, ServiceOffer,
};
use interlink_protocol::{OfferError, SecretKey, SignedOffer, UnixTime};
use libp2p::Multiaddr;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::clock::{unix_millis, unix_now};
use crate::config::GatewayPlan;
use crate::network::{Client, NetworkError, Placement};
use crate::store::Store;
use interlink_gateway_plugin::Capabilities;

/// How long a gateway waits for a confirmed address before it says it has none.
const UNREACHABLE_WARNING: Duration = Duration::from_secs(20);
/// How long to wait before retrying a publication no peer acknowledged.
const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(10);
/// Deadline for storing and announcing one offer.
const PUBLISH_DEADLINE: Duration = Duration::from_secs(30);
/// How far ahead of this node's clock a holder's claim of the `seq` it holds may lie and
/// still be believed (a `seq` is a time in milliseconds): a dishonest holder cannot push
/// this gateway's `seq`s further ahead than that.
const MAX_SEQ_AHEAD_MS: u64 = 24 * 3600 * 1000;

/// The outcome of the latest publication.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Published {
    pub offer: SignedOffer,
    /// Whether at least one other node stored the offer under its value key and under
    /// each of its index keys.
    pub replicated: bool,
}

/// Why a publication failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PublishError {
    #[error("cannot sign the offer: {0}")]
    Offer(#[from] OfferError),
    #[error(transparent)]
    Network(#[from] NetworkError),
    #[error("the publisher has stopped")]
    Stopped,
    #[error(
        "no address of this gateway is confirmed reachable (none configured in network.external_addresses, none dialled back by a peer), so nothing is published"
    )]
    Unreachable,
}

enum Request {
    SetRoutes {
        routes: Vec<Route>,
        reply: oneshot::Sender<Result<Published, PublishError>>,
    },
    Withdraw {
        reply: oneshot::Sender<Result<Published, PublishError>>,
    },
    Republish {
        reply: oneshot::Sender<Result<Published, PublishError>>,
    },
}

/// The handle of a running publisher.
#[derive(Debug)]
pub struct Publisher {
    requests: mpsc::Sender<Request>,
    published: watch::Receiver<Option<Published>>,
    task: JoinHandle<()>,
}

impl Publisher {
    /// Starts publishing `plan`, run by a back-end with `capabilities`, reachable at
    /// `addresses` as they are confirmed, signed with `key`.
    pub fn spawn(
        client: Client,
        key: SecretKey,
        plan: GatewayPlan,
        capabilities: Capabilities,
        addresses: watch::Receiver<Vec<Multiaddr>>,
        store: Store,
    ) -> Publisher {
        let (requests_tx, requests_rx) = mpsc::channel(8);
        let (published_tx, published_rx) = watch::channel(None);
        let state = State {
            client,
            key,
            plan,
            capabilities,
            addresses: Vec::new(),
            reachable: Some(addresses),
            store,
            seq: 0,
            indexed: BTreeSet::new(),
            published: published_tx,
        };
        let task = tokio::spawn(state.run(requests_rx));
        Publisher {
            requests: requests_tx,
            published: published_rx,
            task,
        }
    }

    /// The latest publication, if any.
    pub fn latest(&self) -> Option<Published> {
        self.published.borrow().clone()
    }

    /// Follows the publications as they happen.
    pub fn subscribe(&self) -> watch::Receiver<Option<Published>> {
        self.published.clone()
    }

    /// Waits for a publication that another node acknowledged.
    pub async fn wait_replicated(&self, deadline: Duration) -> Result<Published, PublishError> {
        let mut published = self.published.clone();
        let result = tokio::time::timeout(
            deadline,
            published.wait_for(|p| p.as_ref().is_some_and(|p| p.replicated)),
        )
        .await
        .map_err(|_| PublishError::Network(NetworkError::Timeout))?
        .map_err(|_| PublishError::Stopped)?;
        result.clone().ok_or(PublishError::Stopped)
    }

    /// Replaces the price list and republishes at once with a higher `seq`. The future
    /// does not borrow the publisher, so it can be spawned.
    pub fn set_routes(
        &self,
        routes: Vec<Route>,
    ) -> impl Future<Output = Result<Published, PublishError>> + Send + 'static {
        let requests = self.requests.clone();
        async move {
            let (reply, response) = oneshot::channel();
            requests
                .send(Request::SetRoutes { routes, reply })
                .await
                .map_err(|_| PublishError::Stopped)?;
            response.await.map_err(|_| PublishError::Stopped)?
        }
    }

    /// Republishes at once with a higher `seq`, finding the nodes now closest to each key
    /// as the periodic republication does (a price change reuses those a recent walk
    /// found): for a network that has just grown around the offer's keys.
    pub fn republish(
        &self,
    ) -> impl Future<Output = Result<Published, PublishError>> + Send + 'static {
        let requests = self.requests.clone();
        async move {
            let (reply, response) = oneshot::channel();
            requests
                .send(Request::Republish { reply })
                .await
                .map_err(|_| PublishError::Stopped)?;
            response.await.map_err(|_| PublishError::Stopped)?
        }
    }

    /// Stops without withdrawing: the published offer stays until it expires.
    pub fn abort(self) {
        self.task.abort();
    }

    /// Publishes a signed withdrawal and stops.
    pub async fn withdraw(self) -> Result<Published, PublishError> {
        let (reply, response) = oneshot::channel();
        self.requests
            .send(Request::Withdraw { reply })
            .await
            .map_err(|_| PublishError::Stopped)?;
        let result = response.await.map_err(|_| PublishError::Stopped)?;
        let _ = self.task.await;
        result
    }
}

struct State {
    client: Client,
    key: SecretKey,
    plan: GatewayPlan,
    capabilities: Capabilities,
    /// The addresses the next offer carries: the latest confirmed.
    addresses: Vec<Multiaddr>,
    /// Where confirmed addresses come from; `None` once its sender is gone (the set
    /// no longer changes).
    reachable: Option<watch::Receiver<Vec<Multiaddr>>>,
    store: Store,
    /// The `seq` of the last offer signed.
    seq: u64,
    /// The index keys the last offer went to.
    indexed: BTreeSet<IndexKey>,
    published: watch::Sender<Option<Published>>,
}

impl State {
    async fn run(mut self, mut requests: mpsc::Receiver<Request>) {
        self.take_addresses();
        if self.addresses.is_empty() {
            tracing::info!(
                "waiting for a peer to confirm that this gateway can be reached before publishing its offer"
            );
        }
        // A deadline, not a duration: the loop's other branches (a change of addresses, the
        // warning) must not push the next republication back. With an offer living 20 s and
        // republished every 10 s, one such push let it expire before its successor.
        let mut next = Instant::now() + self.publish_if_reachable().await;
        let mut warned = false;
        let warn_at = Instant::now() + UNREACHABLE_WARNING;
        loop {
            let changed = async {
                match self.reachable.as_mut() {
                    Some(reachable) => reachable.changed().await.is_ok(),
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                () = tokio::time::sleep_until(next) => {
                    next = Instant::now() + self.publish_if_reachable().await;
                }
                () = tokio::time::sleep_until(warn_at), if !warned => {
                    warned = true;
                    if self.addresses.is_empty() {
                        tracing::warn!(
                            "this gateway is not reachable: no peer could dial it back within {}s and network.external_addresses is empty; its offer is NOT published and callers cannot find it (forward a port to it and set network.external_addresses, or set network.scope = \"local\" on a LAN)",
                            UNREACHABLE_WARNING.as_secs()
                        );
                    }
                }
                open = changed => {
                    if !open {
                        self.reachable = None;
                        continue;
                    }
                    let before = std::mem::take(&mut self.addresses);
                    self.take_addresses();
                    if self.addresses != before {
                        if self.addresses.is_empty() {
                            tracing::warn!("no address of this gateway is confirmed reachable any more; the offer is not republished and lapses when it expires");
                        }
                        next = Instant::now() + self.publish_if_reachable().await;
                    }
                }
                request = requests.recv() => match request {
                    Some(Request::SetRoutes { routes, reply }) => {
                        self.plan.routes = routes;
                        next = self.publish_asked(Placement::Known, reply).await;
                    }
                    Some(Request::Withdraw { reply }) => {
                        let withdrawn = self
                            .publish_above_holders(OfferStatus::Withdrawn, Placement::Known)
                            .await;
                        let _ = reply.send(withdrawn);
                        return;
                    }
                    Some(Request::Republish { reply }) => {
                        next = self.publish_asked(Placement::Find, reply).await;
                    }
                    None => return,
                }
            }
        }
    }

    /// The latest confirmed addresses, at most as many as an offer carries.
    fn take_addresses(&mut self) {
        if let Some(reachable) = self.reachable.as_mut() {
            self.addresses = reachable
                .borrow_and_update()
                .iter()
                .take(MAX_ADDRESSES)
                .cloned()
                .collect();
        }
    }

    /// Publishes now as asked, placed as `placement` says, and tells `reply` how it went
    /// (unreachable if no address is confirmed); when to republish next.
    async fn publish_asked(
        &mut self,
        placement: Placement,
        reply: oneshot::Sender<Result<Published, PublishError>>,
    ) -> Instant {
        let result = if self.addresses.is_empty() {
            Err(PublishError::Unreachable)
        } else {
            self.publish_above_holders(OfferStatus::Available, placement)
                .await
        };
        let next = Instant::now() + self.next_republish(&result);
        let _ = reply.send(result);
        next
    }

    /// Publishes if an address is confirmed; when to try next.
    async fn publish_if_reachable(&mut self) -> Duration {
        if self.addresses.is_empty() {
            // Nothing to do until an address is confirmed (the `changed` branch).
            return Duration::from_secs(24 * 3600);
        }
        self.publish_logged(OfferStatus::Available).await
    }

    async fn publish_logged(&mut self, status: OfferStatus) -> Duration {
        let result = self.publish_above_holders(status, Placement::Find).await;
        if let Err(e) = &result {
            tracing::warn!(error = %e, "publishing the offer failed; retrying in {}s", RETRY_AFTER_FAILURE.as_secs());
        }
        self.next_republish(&result)
    }

    fn next_republish(&self, result: &Result<Published, PublishError>) -> Duration {
        match result {
            Ok(published) if published.replicated => self.plan.offer_ttl / 2,
            _ => RETRY_AFTER_FAILURE.min(self.plan.offer_ttl / 2),
        }
    }

    fn offer(&self, status: OfferStatus, now: UnixTime) -> ServiceOffer {
        let plan = &self.plan;
        let caps = &self.capabilities;
        ServiceOffer {
            version: OFFER_FORMAT_VERSION,
            provider: self.key.provider_id(),
            seq: self.seq,
            issued_at: now,
            expires_at: now.plus(plan.offer_ttl),
            status,
            kind: caps.kind,
            display_name: plan.name.clone(),
            region: plan.region.clone(),
            routes: if status == OfferStatus::Available {
                plan.routes.clone()
            } else {
                Vec::new()
            },
            codecs: caps.codecs.clone(),
            quality: plan.quality,
            capacity: caps.max_concurrent_calls,
            addresses: self.addresses.clone(),
            conference: plan.conference.filter(|_| status == OfferStatus::Available),
        }
    }

    /// Publishes with the next `seq`; if holders refused it as older than one of ours they
    /// hold, publishes once more above that.
    async fn publish_above_holders(
        &mut self,
        status: OfferStatus,
        placement: Placement,
    ) -> Result<Published, PublishError> {
        let (published, held) = self.publish(status, placement).await?;
        let Some(held) = held else {
            return Ok(published);
        };
        tracing::warn!(
            seq = self.seq,
            held_seq = held,
            "holders hold an offer of ours with a higher seq (a clock that ran fast, or a lost database); publishing above it"
        );
        self.seq = self.seq.max(held);
        Ok(self.publish(status, placement).await?.0)
    }

    /// The `seq` for the next offer: at start the clock's milliseconds, then the next
    /// number; always above every `seq` this gateway signed, kept in its database first.
    async fn next_seq(&mut self) {
        let at_least = if self.seq == 0 {
            unix_millis()
        } else {
            self.seq.saturating_add(1)
        };
        self.seq = match self
            .store
            .next_offer_seq(self.key.provider_id(), at_least)
            .await
        {
            Ok(seq) => seq,
            Err(e) => {
                tracing::error!(error = %e, "cannot keep the offer's seq in the database; a restart with the clock moved back may sign a stale one");
                at_least
            }
        };
    }

    /// Signs the offer with the next `seq` and stores it under its value key and its index
    /// keys, and under the index keys of the previous offer it no longer covers. Also
    /// returns the highest `seq` of ours that a holder said it holds above this one, if any.
    async fn publish(
        &mut self,
        status: OfferStatus,
        placement: Placement,
    ) -> Result<(Published, Option<u64>), PublishError> {
        self.next_seq().await;
        let offer = SignedOffer::sign(self.offer(status, unix_now()), &self.key)?;
        let wanted = IndexKey::of_offer(offer.offer());
        let keys: BTreeSet<IndexKey> = wanted.union(&self.indexed).copied().collect();
        let work = async {
            let index = futures::future::join_all(
                keys.iter()
                    .map(|key| self.client.index_offer(offer.clone(), *key, placement)),
            );
            tokio::join!(self.client.put_offer(offer.clone(), placement), index)
        };
        let (stored, indexed) = tokio::time::timeout(PUBLISH_DEADLINE, work)
            .await
            .map_err(|_| NetworkError::Timeout)?;
        let mut replicated = stored.is_ok();
        let believable = unix_millis().saturating_add(MAX_SEQ_AHEAD_MS);
        let mut held_above = None;
        for (key, outcome) in keys.iter().zip(&indexed) {
            match outcome {
                Ok(indexed) => {
                    for (peer, refusal) in &indexed.refused {
                        tracing::warn!(%key, %peer, reason = %refusal, "a holder refused the offer");
                        if let StoreRefusal::Stale { held_seq } = refusal
                            && *held_seq >= offer.seq()
                            && *held_seq <= believable
                        {
                            held_above = held_above.max(Some(*held_seq));
                        }
                    }
                    if indexed.stored == 0 && wanted.contains(key) {
                        tracing::warn!(
                            %key,
                            refused = indexed.refused.len(),
                            unreachable = indexed.unreachable,
                            "no holder stored the offer under this key"
                        );
                        replicated = false;
                    }
                }
                Err(e) => {
                    tracing::warn!(%key, error = %e, "indexing the offer failed");
                    replicated &= !wanted.contains(key);
                }
            }
        }
        // Keys the offer left keep being sent its successors until one reached them.
        self.indexed = keys
            .iter()
            .zip(&indexed)
            .filter(|(key, outcome)| {
                wanted.contains(key) || !outcome.as_ref().is_ok_and(|i| i.stored > 0)
            })
            .map(|(key, _)| *key)
            .collect();
        match (&stored, status) {
            (Ok(_), OfferStatus::Available) => {
                tracing::info!(
                    seq = offer.seq(),
                    routes = offer.offer().routes.len(),
                    replicated,
                    "offer published"
                );
            }
            (Ok(_), OfferStatus::Withdrawn) => tracing::info!(seq = offer.seq(), "offer withdrawn"),
            (Err(e), _) => {
                tracing::warn!(seq = offer.seq(), error = %e, "offer stored locally only")
            }
        }
        let published = Published { offer, replicated };
        self.published.send_replace(Some(published.clone()));
        stored?;
        Ok((published, held_above))
    }
}
