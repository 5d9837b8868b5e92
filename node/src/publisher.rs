//! Publishing a gateway's offer: sign, store, announce, republish, withdraw.
//!
//! The publisher is a task with the node's signing key. It publishes the offer under the
//! provider's value key and announces the node under one providers key per (service kind,
//! country code) its routes cover. It republishes at half the offer's lifetime, each time
//! with a higher `seq` (nodes refuse an unchanged record as stale), and sooner after a
//! failure. A price change ([`Publisher::set_routes`]) republishes at once. On shutdown
//! [`Publisher::withdraw`] publishes a signed withdrawal, which replaces the offer
//! everywhere it is stored.
//!
//! The first `seq` is the Unix time in milliseconds, so a restarted node outranks what it
//! published before it stopped without keeping state on disk.

use std::collections::BTreeSet;
use std::time::Duration;

use interlink_protocol::conference::Region;
use interlink_protocol::offer::{
    MAX_ADDRESSES, OFFER_FORMAT_VERSION, OfferStatus, Route, ServiceOffer,
};
use interlink_protocol::{DhtKey, OfferError, SecretKey, SignedOffer, UnixTime};
use libp2p::Multiaddr;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use crate::clock::{unix_millis, unix_now};
use crate::config::GatewayPlan;
use crate::network::{Client, NetworkError};
use interlink_gateway_plugin::Capabilities;

/// How long to wait before retrying a publication no peer acknowledged.
const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(10);
/// Deadline for storing and announcing one offer.
const PUBLISH_DEADLINE: Duration = Duration::from_secs(30);

/// The outcome of the latest publication.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Published {
    pub offer: SignedOffer,
    /// Whether at least one other node acknowledged the offer and the announcements.
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
}

enum Request {
    SetRoutes {
        routes: Vec<Route>,
        reply: oneshot::Sender<Result<Published, PublishError>>,
    },
    Withdraw {
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
    /// `addresses`, signed with `key`.
    pub fn spawn(
        client: Client,
        key: SecretKey,
        plan: GatewayPlan,
        capabilities: Capabilities,
        addresses: Vec<Multiaddr>,
    ) -> Publisher {
        let (requests_tx, requests_rx) = mpsc::channel(8);
        let (published_tx, published_rx) = watch::channel(None);
        let addresses = addresses.into_iter().take(MAX_ADDRESSES).collect();
        let state = State {
            client,
            key,
            plan,
            capabilities,
            addresses,
            seq: unix_millis(),
            announced: BTreeSet::new(),
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

    /// Replaces the price list and republishes at once with a higher `seq`.
    pub async fn set_routes(&self, routes: Vec<Route>) -> Result<Published, PublishError> {
        let (reply, response) = oneshot::channel();
        self.requests
            .send(Request::SetRoutes { routes, reply })
            .await
            .map_err(|_| PublishError::Stopped)?;
        response.await.map_err(|_| PublishError::Stopped)?
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
    addresses: Vec<Multiaddr>,
    seq: u64,
    announced: BTreeSet<DhtKey>,
    published: watch::Sender<Option<Published>>,
}

impl State {
    async fn run(mut self, mut requests: mpsc::Receiver<Request>) {
        let mut next = self.publish_logged(OfferStatus::Available).await;
        loop {
            tokio::select! {
                () = tokio::time::sleep(next) => {
                    self.seq += 1;
                    next = self.publish_logged(OfferStatus::Available).await;
                }
                request = requests.recv() => match request {
                    Some(Request::SetRoutes { routes, reply }) => {
                        self.plan.routes = routes;
                        self.seq += 1;
                        let result = self.publish(OfferStatus::Available).await;
                        next = self.next_republish(&result);
                        let _ = reply.send(result);
                    }
                    Some(Request::Withdraw { reply }) => {
                        self.seq += 1;
                        let _ = reply.send(self.publish(OfferStatus::Withdrawn).await);
                        return;
                    }
                    None => return,
                }
            }
        }
    }

    async fn publish_logged(&mut self, status: OfferStatus) -> Duration {
        let result = self.publish(status).await;
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

    /// Signs and stores the offer, then brings the provider announcements in line with it.
    async fn publish(&mut self, status: OfferStatus) -> Result<Published, PublishError> {
        let offer = SignedOffer::sign(self.offer(status, unix_now()), &self.key)?;
        let mut wanted: BTreeSet<DhtKey> = offer
            .offer()
            .country_codes()
            .into_iter()
            .map(|country_code| DhtKey::Providers {
                kind: offer.offer().kind,
                country_code,
            })
            .collect();
        // Conference bridges are found by region rather than by destination.
        if offer.offer().conference.is_some()
            && let Ok(region) = Region::new(&offer.offer().region)
        {
            wanted.insert(DhtKey::RegionProviders {
                kind: offer.offer().kind,
                region,
            });
        }
        // The offer and the announcements go to different nodes and do not wait for each
        // other: a lookup that meets the announcement first just finds no offer yet.
        let work = async {
            for stale in self.announced.difference(&wanted) {
                self.client.stop_providing(*stale).await;
            }
            let announce = futures::future::join_all(
                wanted.iter().map(|key| self.client.start_providing(*key)),
            );
            tokio::join!(self.client.put_offer(offer.clone()), announce)
        };
        let (stored, announcements) = tokio::time::timeout(PUBLISH_DEADLINE, work)
            .await
            .map_err(|_| NetworkError::Timeout)?;
        self.announced = wanted;
        let replicated = stored.is_ok() && announcements.iter().all(Result::is_ok);
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
        Ok(published)
    }
}
