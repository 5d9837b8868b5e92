//! The offer index on the network: what this node holds for others, the lookups it walks,
//! and the publication of its own offer under each of its keys.
//!
//! The decisions are `interlink_protocol::discovery`'s: [`Index`] admits and answers,
//! [`Walk`] walks, [`Cache`] remembers. This module is their driver inside the event loop,
//! which owns the swarm: it turns `/interlink/index/1` requests and responses
//! (libp2p `request-response`, framed by [`codec`]) into calls on them and their outputs
//! into requests, and Kademlia's routing table into the peers a walk starts from and the
//! closer peers a holder names. Peers whose requests failed lately (`unreachable.rs`) are
//! left out of both, so that lookups do not wait on the dead or the unreachable.

pub mod codec;
mod unreachable;

use std::collections::HashMap;
use std::num::NonZeroUsize;
use std::pin::Pin;
use std::time::{Duration, Instant};

use interlink_protocol::discovery::index::Admitted;
use interlink_protocol::discovery::walk::{Ending, Output, WalkStats};
use interlink_protocol::discovery::wire::{
    Found as WireFound, MAX_CLOSER_PEERS, MAX_DIGEST, MAX_STORE_OFFERS, PeerRecord, Request,
    RequestRefusal, Response, StoreOutcome, StoreRefusal, WireAnswer,
};
use interlink_protocol::discovery::{
    Cache, Index, IndexKey, OfferQuery, Position, Walk, WalkConfig,
};
use interlink_protocol::offer::{MAX_ADDRESS_BYTES, MAX_ADDRESSES};
use interlink_protocol::{ProviderId, SignedOffer, UnixTime};
use libp2p::kad::{KBucketKey, QueryId, RecordKey};
use libp2p::request_response::{self, OutboundRequestId, ResponseChannel};
use libp2p::{Multiaddr, PeerId, Swarm};
use tokio::sync::oneshot;
use tokio::time::Sleep;

use super::behaviour::Behaviour;
use super::copies::{CopyHolders, Placement};
use super::records;
use super::{NetworkError, Settings};
use crate::clock::unix_now;
use crate::identity;
use crate::limits::PeerRates;
use crate::metrics::Metrics;
use unreachable::Unreachable;

type Reply<T> = oneshot::Sender<Result<T, NetworkError>>;

/// Lookups and publications in flight at once; beyond, new ones are refused as busy.
const MAX_IN_FLIGHT: usize = 512;

/// Whether a lookup may be answered from the cache.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CacheUse {
    /// Answer from the cache if it holds the query (refreshing it in the background when
    /// it is old); otherwise walk.
    Prefer,
    /// Always walk (the answer still refreshes the cache).
    Bypass,
}

/// What a lookup found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Found {
    /// The newest verified offer of each provider found that matches the query, best
    /// first by the query's policy.
    pub offers: Vec<SignedOffer>,
    /// The most offers a holder said matched the query: more than `offers.len()` means
    /// the answer was cut to the best.
    pub matching: usize,
    /// The most providers a holder said it holds under the key, matching or not.
    pub held: usize,
    /// A holder left offers out to keep its answer within the protocol's size limit.
    pub truncated: bool,
    /// `Some(age)` if the answer came from the cache, fetched that long ago.
    pub cached: Option<Duration>,
    /// How the walk went (zero for an answer from the cache).
    pub walk: WalkStats,
    /// Why the walk ended (`None` for an answer from the cache).
    pub ending: Option<Ending>,
    /// Requests of the walk sent to a peer this node had no connection to: each waited
    /// for a connection to be set up first.
    pub dials: usize,
}

/// What became of this node's offer under one key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Indexed {
    pub key: IndexKey,
    /// Holders that hold it now (added, replaced, or already held).
    pub stored: usize,
    /// Holders that refused it, and why.
    pub refused: Vec<(PeerId, StoreRefusal)>,
    /// Holders that could not be reached or did not answer.
    pub unreachable: usize,
}

struct Lookup {
    walk: Walk<PeerId>,
    started: Instant,
    /// `None` for a refresh of a cached answer, which nobody waits for.
    reply: Option<Reply<Found>>,
    /// Requests sent to peers not connected.
    dials: usize,
}

enum Outbound {
    Walk { lookup: u64, peer: PeerId },
    Store { publication: u64, peer: PeerId },
    Repair,
    Sync { key: IndexKey, peer: PeerId },
}

/// What woke the index service.
#[derive(Clone, Copy, Debug)]
pub(super) enum Timer {
    /// A lookup's deadline.
    Lookups,
    /// A round of anti-entropy.
    Sync,
}

/// Offers one round of anti-entropy hands the other holder at most.
const SYNC_GIVE: usize = 4 * MAX_STORE_OFFERS;

struct Publication {
    offer: SignedOffer,
    key: IndexKey,
    waiting: usize,
    /// Sent to the holders a recent walk found, without a walk of its own.
    known: bool,
    /// The holders that hold it now.
    stored: Vec<PeerId>,
    indexed: Indexed,
    reply: Reply<Indexed>,
}

impl Publication {
    /// `offer` under `key`, not yet sent anywhere.
    fn new(offer: SignedOffer, key: IndexKey, reply: Reply<Indexed>) -> Publication {
        Publication {
            offer,
            key,
            waiting: 0,
            known: false,
            stored: Vec::new(),
            indexed: Indexed {
                key,
                stored: 0,
                refused: Vec::new(),
                unreachable: 0,
            },
            reply,
        }
    }
}

/// The index service of one node, driven by its event loop.
pub(super) struct IndexService {
    local: PeerId,
    index: Index<PeerId>,
    cache: Cache,
    walk_config: WalkConfig,
    replicas: NonZeroUsize,
    lookups: HashMap<u64, Lookup>,
    outbound: HashMap<OutboundRequestId, Outbound>,
    /// Publications looking for the nodes closest to their key.
    finding: HashMap<QueryId, Publication>,
    /// Publications being stored at those nodes.
    storing: HashMap<u64, Publication>,
    /// Where this node's own offer is held, by index key.
    copies: CopyHolders,
    next_id: u64,
    rates: PeerRates,
    /// Lookups of other peers this node answered as a holder of their key.
    answered: u64,
    /// When to compare the held keys with other holders (anti-entropy); `None`: never.
    sync: Option<tokio::time::Interval>,
    timer: Pin<Box<Sleep>>,
    timer_armed: bool,
    /// Peers whose requests failed lately: walks neither start from them nor take them
    /// from answers, and anti-entropy does not pick them.
    unreachable: Unreachable<PeerId>,
    metrics: Metrics,
}

impl IndexService {
    pub(super) fn new(local: PeerId, settings: &Settings, metrics: Metrics) -> IndexService {
        let discovery = &settings.discovery;
        IndexService {
            local,
            index: Index::new(discovery.index()),
            cache: Cache::new(discovery.cache()),
            walk_config: discovery.walk(&settings.dht),
            replicas: NonZeroUsize::new(settings.dht.replication_factor)
                .unwrap_or(NonZeroUsize::MIN),
            lookups: HashMap::new(),
            outbound: HashMap::new(),
            finding: HashMap::new(),
            storing: HashMap::new(),
            copies: CopyHolders::default(),
            next_id: 0,
            rates: PeerRates::new(
                settings.limits.index_requests_per_sec,
                settings.limits.index_request_burst,
            ),
            answered: 0,
            sync: (discovery.sync_secs > 0).then(|| {
                // Each node starts its rounds at a random point of the interval, so that
                // nodes started together do not compare together.
                let period = Duration::from_secs(discovery.sync_secs);
                let offset = period.mul_f64(rand::random::<f64>());
                let mut interval =
                    tokio::time::interval_at(tokio::time::Instant::now() + offset, period);
                interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                interval
            }),
            timer: Box::pin(tokio::time::sleep(Duration::ZERO)),
            timer_armed: false,
            unreachable: Unreachable::default(),
            metrics,
        }
    }

    fn next_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    fn in_flight(&self) -> usize {
        self.lookups.len() + self.finding.len() + self.storing.len()
    }

    /// Whether the query `id` is one of this service's.
    pub(super) fn owns_query(&self, id: &QueryId) -> bool {
        self.finding.contains_key(id)
    }

    /// Offers held for others, and their bytes.
    pub(super) fn held(&self) -> (usize, usize) {
        (self.index.len(), self.index.bytes())
    }

    /// Lookups of other peers this node answered as a holder.
    pub(super) fn answered(&self) -> u64 {
        self.answered
    }

    /// Drops what expired; run every few seconds.
    pub(super) fn expire(&mut self) {
        self.index.expire(unix_now());
        let (offers, bytes) = self.held();
        self.metrics.set_index(offers, bytes);
    }

    // ---- Lookups -------------------------------------------------------------------

    /// Looks `query` up: from the cache if allowed and held, else by a walk.
    pub(super) fn find(
        &mut self,
        swarm: &mut Swarm<Behaviour>,
        query: OfferQuery,
        cache: CacheUse,
        reply: Reply<Found>,
    ) {
        if let Err(e) = query.check() {
            let _ = reply.send(Err(NetworkError::InvalidQuery(e)));
            return;
        }
        let now = Instant::now();
        if cache == CacheUse::Prefer
            && let Some(hit) = self.cache.get(&query, now, unix_now())
        {
            self.metrics
                .lookup("cache", !hit.offers.is_empty(), Duration::ZERO);
            let _ = reply.send(Ok(Found {
                offers: hit.offers,
                matching: hit.matching,
                held: hit.matching,
                truncated: false,
                cached: Some(hit.age),
                walk: WalkStats::default(),
                ending: None,
                dials: 0,
            }));
            if hit.refresh && self.in_flight() < MAX_IN_FLIGHT {
                self.start_walk(swarm, query, None);
            }
            return;
        }
        if self.in_flight() >= MAX_IN_FLIGHT {
            let _ = reply.send(Err(NetworkError::Busy));
            return;
        }
        self.start_walk(swarm, query, Some(reply));
    }

    fn start_walk(
        &mut self,
        swarm: &mut Swarm<Behaviour>,
        query: OfferQuery,
        reply: Option<Reply<Found>>,
    ) {
        let now = Instant::now();
        let key = query.key();
        let target = KBucketKey::new(key.to_bytes());
        let unreachable = &self.unreachable;
        let seeds: Vec<(PeerId, Position)> = swarm
            .behaviour_mut()
            .kad
            .get_closest_local_peers(&target)
            .filter(|peer| !unreachable.contains(peer.preimage(), now))
            .take(2 * self.walk_config.closest)
            .filter_map(|peer| Some((*peer.preimage(), position(peer.hashed_bytes())?)))
            .collect();
        let Some(target) = position(target.hashed_bytes()) else {
            return;
        };
        let local_answer = if self.responsible(swarm, &key) {
            self.index
                .answer(&query, unix_now(), now)
                .map(|answer| WireAnswer::from_selection(&answer.selection, answer.held))
        } else {
            None
        };
        let mut walk = Walk::new(target, query, self.walk_config, seeds, rand::random(), now);
        if let Some(answer) = local_answer {
            walk.local_answer(self.local, answer, unix_now());
        }
        let id = self.next_id();
        self.lookups.insert(
            id,
            Lookup {
                walk,
                started: now,
                reply,
                dials: 0,
            },
        );
        self.drive(swarm, id);
    }

    /// Sends what lookup `id` wants sent; finishes it when it is done.
    fn drive(&mut self, swarm: &mut Swarm<Behaviour>, id: u64) {
        let now = Instant::now();
        let Some(lookup) = self.lookups.get_mut(&id) else {
            return;
        };
        while let Some(output) = lookup.walk.poll_output(now) {
            match output {
                Output::Request {
                    peer,
                    addresses,
                    request,
                } => {
                    if !swarm.is_connected(&peer) {
                        lookup.dials += 1;
                    }
                    let request_id = swarm
                        .behaviour_mut()
                        .index
                        .send_request_with_addresses(&peer, request, addresses);
                    self.outbound
                        .insert(request_id, Outbound::Walk { lookup: id, peer });
                }
                Output::Repair { peer, key, offers } => {
                    let offers = offers.iter().map(|o| o.as_bytes().to_vec()).collect();
                    let request_id = swarm
                        .behaviour_mut()
                        .index
                        .send_request(&peer, Request::Store { key, offers });
                    self.outbound.insert(request_id, Outbound::Repair);
                }
            }
        }
        if lookup.walk.is_done()
            && let Some(lookup) = self.lookups.remove(&id)
        {
            self.finish(lookup);
        }
        self.arm_timer();
    }

    fn finish(&mut self, lookup: Lookup) {
        let result = lookup.walk.result(unix_now());
        let query = lookup.walk.query().clone();
        self.metrics.walk(&result.stats);
        self.metrics.lookup(
            "network",
            !result.offers.is_empty(),
            lookup.started.elapsed(),
        );
        let found_anything = result.stats.holders > 0;
        if found_anything {
            self.cache.insert(
                query.clone(),
                &result.offers,
                result.matching,
                Instant::now(),
            );
        } else if lookup.reply.is_none() {
            self.cache.refresh_failed(&query);
        }
        if let Some(reply) = lookup.reply {
            let _ = reply.send(Ok(Found {
                offers: result.offers,
                matching: result.matching,
                held: result.held,
                truncated: result.truncated,
                cached: None,
                walk: result.stats,
                ending: Some(result.ending),
                dials: lookup.dials,
            }));
        }
    }

    /// Points the timer at the earliest deadline of the lookups in flight.
    fn arm_timer(&mut self) {
        let next = self
            .lookups
            .values()
            .filter_map(|lookup| lookup.walk.poll_timeout())
            .min();
        match next {
            Some(at) => {
                self.timer.as_mut().reset(at.into());
                self.timer_armed = true;
            }
            None => self.timer_armed = false,
        }
    }

    /// Waits for the next lookup deadline or round of anti-entropy, whichever comes first.
    pub(super) async fn timer(&mut self) -> Timer {
        let deadline = async {
            if self.timer_armed {
                self.timer.as_mut().await;
            } else {
                std::future::pending::<()>().await;
            }
        };
        let sync = async {
            match self.sync.as_mut() {
                Some(interval) => {
                    interval.tick().await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            () = deadline => Timer::Lookups,
            () = sync => Timer::Sync,
        }
    }

    /// Does what `timer` said was due.
    pub(super) fn on_timer(&mut self, swarm: &mut Swarm<Behaviour>, timer: Timer) {
        match timer {
            Timer::Lookups => self.on_lookup_timer(swarm),
            Timer::Sync => self.on_sync_tick(swarm),
        }
    }

    /// Moves the lookups past their deadlines.
    fn on_lookup_timer(&mut self, swarm: &mut Swarm<Behaviour>) {
        self.timer_armed = false;
        let now = Instant::now();
        let due: Vec<u64> = self
            .lookups
            .iter()
            .filter(|(_, l)| l.walk.poll_timeout().is_some_and(|at| at <= now))
            .map(|(id, _)| *id)
            .collect();
        for id in due {
            if let Some(lookup) = self.lookups.get_mut(&id) {
                lookup.walk.handle_timeout(now);
            }
            self.drive(swarm, id);
        }
        self.arm_timer();
    }

    // ---- Publication ----------------------------------------------------------------

    /// Stores `offer` at the nodes closest to `key`: found by a walk, or for a change soon
    /// after one ([`Placement::Known`]) the holders it found (see `copies.rs`).
    pub(super) fn publish(
        &mut self,
        swarm: &mut Swarm<Behaviour>,
        offer: SignedOffer,
        key: IndexKey,
        placement: Placement,
        reply: Reply<Indexed>,
    ) {
        if self.in_flight() >= MAX_IN_FLIGHT {
            let _ = reply.send(Err(NetworkError::Busy));
            return;
        }
        let mut publication = Publication::new(offer, key, reply);
        let known = (placement == Placement::Known)
            .then(|| self.copies.known(&copy_key(&key), Instant::now()))
            .flatten();
        match known {
            Some(holders) => {
                publication.known = true;
                self.send_publication(swarm, publication, holders, HashMap::new());
            }
            None => self.find_holders(swarm, publication),
        }
    }

    /// Walks toward the publication's key for the nodes closest to it.
    fn find_holders(&mut self, swarm: &mut Swarm<Behaviour>, publication: Publication) {
        let query = swarm
            .behaviour_mut()
            .kad
            .get_n_closest_peers(publication.key.to_bytes(), self.replicas);
        self.finding.insert(query, publication);
    }

    /// The nodes closest to a publication's key are known: send each the offer.
    pub(super) fn on_closest_peers(
        &mut self,
        swarm: &mut Swarm<Behaviour>,
        id: QueryId,
        closest: Vec<libp2p::kad::PeerInfo>,
    ) {
        let Some(publication) = self.finding.remove(&id) else {
            return;
        };
        // The closest nodes now, and every node still holding an earlier copy: a node no
        // longer among the closest would otherwise answer lookups with the old offer.
        let copies = copy_key(&publication.key);
        let now = Instant::now();
        if !closest.is_empty() {
            self.copies.walked(&copies, now);
        }
        let addresses: HashMap<PeerId, Vec<Multiaddr>> = closest
            .iter()
            .map(|peer| (peer.peer_id, peer.addrs.clone()))
            .collect();
        let targets =
            self.copies
                .targets(&copies, closest.into_iter().map(|peer| peer.peer_id), now);
        self.send_publication(swarm, publication, targets, addresses);
    }

    /// Sends the offer to `targets`, dialling them at `addresses` if need be.
    fn send_publication(
        &mut self,
        swarm: &mut Swarm<Behaviour>,
        mut publication: Publication,
        targets: Vec<PeerId>,
        mut addresses: HashMap<PeerId, Vec<Multiaddr>>,
    ) {
        let number = self.next_id();
        for peer in targets {
            let request = Request::Store {
                key: publication.key,
                offers: vec![publication.offer.as_bytes().to_vec()],
            };
            let request_id = swarm.behaviour_mut().index.send_request_with_addresses(
                &peer,
                request,
                addresses.remove(&peer).unwrap_or_default(),
            );
            self.outbound.insert(
                request_id,
                Outbound::Store {
                    publication: number,
                    peer,
                },
            );
            publication.waiting += 1;
        }
        if publication.waiting == 0 {
            self.finish_publication(swarm, publication);
        } else {
            self.storing.insert(number, publication);
        }
    }

    fn on_stored(
        &mut self,
        swarm: &mut Swarm<Behaviour>,
        number: u64,
        peer: PeerId,
        outcome: Option<StoreOutcome>,
    ) {
        let Some(publication) = self.storing.get_mut(&number) else {
            return;
        };
        match outcome {
            Some(StoreOutcome::Refused(refusal)) => {
                self.metrics.index_publication(refusal.label());
                publication.indexed.refused.push((peer, refusal));
            }
            Some(_) => {
                self.metrics.index_publication("stored");
                publication.indexed.stored += 1;
                publication.stored.push(peer);
            }
            None => {
                self.metrics.index_publication("unreachable");
                publication.indexed.unreachable += 1;
            }
        }
        publication.waiting -= 1;
        if publication.waiting == 0
            && let Some(publication) = self.storing.remove(&number)
        {
            self.finish_publication(swarm, publication);
        }
    }

    fn finish_publication(&mut self, swarm: &mut Swarm<Behaviour>, publication: Publication) {
        let expires = records::expiry(&publication.offer, unix_now(), Instant::now());
        let copies = copy_key(&publication.key);
        self.copies
            .stored(&copies, publication.stored.iter().copied(), expires);
        // Refused counts as reached: the holder is there, and holds its reason.
        let indexed = &publication.indexed;
        let reached = indexed.stored + indexed.refused.len();
        if publication.known
            && self
                .copies
                .known_reached(&copies, reached + indexed.unreachable, reached)
        {
            // The holders found a moment ago are mostly gone: find the closest anew.
            let again = Publication::new(publication.offer, publication.key, publication.reply);
            self.find_holders(swarm, again);
            return;
        }
        let _ = publication.reply.send(Ok(publication.indexed));
    }

    /// Whether this node is among the `replicas` nodes it knows closest to `key`: only
    /// then does it answer lookups for the key and compare it with other holders. A node
    /// that held a key before others joined closer keeps what it holds until it expires,
    /// but no longer speaks for the key: publishers send new offers to the closest nodes,
    /// and its copies would soon be old.
    fn responsible(&self, swarm: &mut Swarm<Behaviour>, key: &IndexKey) -> bool {
        let target = KBucketKey::new(key.to_bytes());
        let mine = KBucketKey::from(self.local).distance(&target);
        let closer = swarm
            .behaviour_mut()
            .kad
            .get_closest_local_peers(&target)
            .take(self.replicas.get())
            .filter(|peer| peer.distance(&target) < mine)
            .count();
        closer < self.replicas.get()
    }

    // ---- Replication ----------------------------------------------------------------

    /// A peer joined the routing table: if it is now among the nodes closest to a key this
    /// node holds, and this node is the closest of the others it knows, it hands the new
    /// peer what it holds under that key, as Kademlia's paper has a node do when it learns
    /// of a new one. Offers would otherwise reach a new holder only at their publishers'
    /// next republication (half an offer's lifetime).
    pub(super) fn on_new_peer(&mut self, swarm: &mut Swarm<Behaviour>, peer: PeerId) {
        if self.index.is_empty() {
            return;
        }
        let replicas = self.replicas.get();
        let me = KBucketKey::from(self.local);
        let newcomer = KBucketKey::from(peer);
        let keys: Vec<IndexKey> = self.index.keys().copied().collect();
        for key in keys {
            let target = KBucketKey::new(key.to_bytes());
            let (mine, theirs) = (me.distance(&target), newcomer.distance(&target));
            let others: Vec<_> = swarm
                .behaviour_mut()
                .kad
                .get_closest_local_peers(&target)
                .filter(|other| *other.preimage() != peer)
                .take(replicas)
                .map(|other| other.distance(&target))
                .collect();
            let closer =
                others.iter().filter(|d| **d < theirs).count() + usize::from(mine < theirs);
            let i_am_closest = others.first().is_none_or(|closest| mine < *closest);
            if closer >= replicas || !i_am_closest {
                continue;
            }
            let offers: Vec<Vec<u8>> = self
                .index
                .offers(&key)
                .map(|offer| offer.as_bytes().to_vec())
                .collect();
            self.hand_over(swarm, peer, key, &offers);
        }
    }

    /// Sends `peer` these offers (wire bytes) to hold under `key`, as many `Store`
    /// requests as they take, and counts them as replicated.
    fn hand_over(
        &mut self,
        swarm: &mut Swarm<Behaviour>,
        peer: PeerId,
        key: IndexKey,
        offers: &[Vec<u8>],
    ) {
        for chunk in offers.chunks(MAX_STORE_OFFERS) {
            let request = Request::Store {
                key,
                offers: chunk.to_vec(),
            };
            let id = swarm.behaviour_mut().index.send_request(&peer, request);
            self.outbound.insert(id, Outbound::Repair);
        }
        self.metrics.index_replication(offers.len());
    }

    /// One round of anti-entropy: for each key this node is responsible for, sends what it
    /// holds there to a random peer among those it knows closest to the key. The two then
    /// hand each other what the other lacks ([`Index::reconcile`]), so that a holder a
    /// publication missed (one the publisher did not know, one that joined since) catches
    /// up within a few rounds, as in gossip protocols' push-pull anti-entropy.
    fn on_sync_tick(&mut self, swarm: &mut Swarm<Behaviour>) {
        let keys: Vec<IndexKey> = self.index.keys().copied().collect();
        for key in keys {
            if !self.responsible(swarm, &key) {
                continue;
            }
            let target = KBucketKey::new(key.to_bytes());
            let now = Instant::now();
            let closest: Vec<PeerId> = swarm
                .behaviour_mut()
                .kad
                .get_closest_local_peers(&target)
                .take(self.replicas.get())
                .map(|peer| *peer.preimage())
                .filter(|peer| !self.unreachable.contains(peer, now))
                .collect();
            if closest.is_empty() {
                continue;
            }
            let peer = closest[rand::random_range(0..closest.len())];
            let digest = self
                .index
                .digest(&key)
                .into_iter()
                .take(MAX_DIGEST)
                .collect();
            let id = swarm
                .behaviour_mut()
                .index
                .send_request(&peer, Request::Sync { key, digest });
            self.outbound.insert(id, Outbound::Sync { key, peer });
        }
    }

    /// The other holder answered a round of anti-entropy: takes its newer offers, and
    /// sends it the ones it wants (at most [`SYNC_GIVE`]).
    fn on_synced(
        &mut self,
        swarm: &mut Swarm<Behaviour>,
        key: IndexKey,
        peer: PeerId,
        want: Vec<ProviderId>,
        offers: Vec<Vec<u8>>,
    ) {
        let (now_unix, now) = (unix_now(), Instant::now());
        for bytes in &offers {
            let _ = self.store(peer, key, bytes, now_unix, now);
        }
        let wanted: Vec<Vec<u8>> = want
            .iter()
            .filter_map(|provider| self.index.get(&key, provider))
            .take(SYNC_GIVE)
            .map(|offer| offer.as_bytes().to_vec())
            .collect();
        self.hand_over(swarm, peer, key, &wanted);
    }

    // ---- The protocol's events ------------------------------------------------------

    /// A connection to `peer` was established (either way): it is no longer unreachable.
    pub(super) fn on_connected(&mut self, peer: &PeerId) {
        self.unreachable.forget(peer);
    }

    pub(super) fn on_event(
        &mut self,
        swarm: &mut Swarm<Behaviour>,
        event: request_response::Event<Request, Response>,
    ) {
        match event {
            request_response::Event::Message { peer, message, .. } => match message {
                request_response::Message::Request {
                    request, channel, ..
                } => {
                    // It reached this node: it can be reached over that connection.
                    self.unreachable.forget(&peer);
                    self.on_request(swarm, peer, request, channel)
                }
                request_response::Message::Response {
                    request_id,
                    response,
                } => {
                    self.unreachable.forget(&peer);
                    self.on_response(swarm, request_id, Some(response))
                }
            },
            request_response::Event::OutboundFailure {
                peer,
                request_id,
                error,
                ..
            } => {
                tracing::debug!(%peer, %error, "an offer index request failed");
                self.metrics.index_request_failed();
                // A failed dial to a peer connected meanwhile lost a race with another
                // dial (request-response fails its pending requests on any failed dial
                // to the peer, even one of Kademlia's to a stale address): the peer is
                // reachable. Any other failure (dial, timeout, connection closed,
                // protocol unsupported, answer unreadable) would most likely happen again:
                // lookups leave the peer out for a while.
                let raced = matches!(error, request_response::OutboundFailure::DialFailure)
                    && swarm.is_connected(&peer);
                if !raced {
                    self.unreachable.failed(peer, Instant::now());
                }
                self.on_response(swarm, request_id, None)
            }
            request_response::Event::InboundFailure { .. }
            | request_response::Event::ResponseSent { .. } => {}
        }
    }

    fn on_response(
        &mut self,
        swarm: &mut Swarm<Behaviour>,
        request_id: OutboundRequestId,
        response: Option<Response>,
    ) {
        match self.outbound.remove(&request_id) {
            Some(Outbound::Walk { lookup, peer }) => {
                let now = Instant::now();
                let (closer, answer) = match response {
                    Some(Response::Found(found)) => {
                        (Some(self.closer_peers(found.closer, now)), found.answer)
                    }
                    _ => (None, None),
                };
                if let Some(walk) = self.lookups.get_mut(&lookup).map(|l| &mut l.walk) {
                    match closer {
                        Some(closer) => walk.on_response(&peer, closer, answer, unix_now(), now),
                        None => walk.on_failure(&peer, now),
                    }
                }
                self.drive(swarm, lookup);
            }
            Some(Outbound::Store { publication, peer }) => {
                let outcome = match response {
                    Some(Response::Stored(outcomes)) => outcomes.into_iter().next(),
                    _ => None,
                };
                self.on_stored(swarm, publication, peer, outcome);
            }
            Some(Outbound::Sync { key, peer }) => {
                if let Some(Response::Synced { want, offers }) = response {
                    self.on_synced(swarm, key, peer, want, offers);
                }
            }
            Some(Outbound::Repair) | None => {}
        }
    }

    /// The peers a response named, with their positions; this node, and the peers whose
    /// requests failed lately (others' routing tables keep them long after), left out.
    fn closer_peers(
        &self,
        records: Vec<PeerRecord>,
        now: Instant,
    ) -> Vec<(PeerId, Position, Vec<Multiaddr>)> {
        records
            .into_iter()
            .filter_map(|record| {
                let peer = PeerId::from_bytes(&record.peer).ok()?;
                if peer == self.local || self.unreachable.contains(&peer, now) {
                    return None;
                }
                let position = position(KBucketKey::from(peer).hashed_bytes())?;
                Some((peer, position, record.addresses))
            })
            .collect()
    }

    fn on_request(
        &mut self,
        swarm: &mut Swarm<Behaviour>,
        peer: PeerId,
        request: Request,
        channel: ResponseChannel<Response>,
    ) {
        let now = Instant::now();
        if !self.rates.allow(peer, now) {
            self.metrics.limit_refusal("index_requests");
            self.metrics.index_request("refused");
            let _ = swarm
                .behaviour_mut()
                .index
                .send_response(channel, Response::Refused(RequestRefusal::RateLimited));
            return;
        }
        let response = match request {
            Request::Find(query) => {
                self.metrics.index_request("find");
                Response::Found(self.answer(swarm, &peer, &query, now))
            }
            Request::Sync { key, digest } => {
                self.metrics.index_request("sync");
                let reconciled = self.index.reconcile(&key, &digest, MAX_STORE_OFFERS);
                let offers = reconciled
                    .newer
                    .iter()
                    .map(|offer| offer.as_bytes().to_vec())
                    .collect();
                self.metrics.index_replication(reconciled.newer.len());
                Response::Synced {
                    want: reconciled.want,
                    offers,
                }
            }
            Request::Store { key, offers } => {
                self.metrics.index_request("store");
                let now_unix = unix_now();
                let outcomes = offers
                    .iter()
                    .map(|bytes| self.store(peer, key, bytes, now_unix, now))
                    .collect();
                Response::Stored(outcomes)
            }
        };
        let _ = swarm.behaviour_mut().index.send_response(channel, response);
    }

    /// What this node answers to a `Find` from `peer`: the peers it knows closest to the
    /// key, and its own answer if it holds the key.
    fn answer(
        &mut self,
        swarm: &mut Swarm<Behaviour>,
        peer: &PeerId,
        query: &OfferQuery,
        now: Instant,
    ) -> WireFound {
        let target = KBucketKey::new(query.key().to_bytes());
        let closer = swarm
            .behaviour_mut()
            .kad
            .find_closest_local_peers(&target, peer)
            .take(MAX_CLOSER_PEERS)
            .map(|kad_peer| PeerRecord {
                peer: kad_peer.node_id.to_bytes(),
                addresses: kad_peer
                    .multiaddrs
                    .into_iter()
                    .filter(|a| a.len() <= MAX_ADDRESS_BYTES)
                    .take(MAX_ADDRESSES)
                    .collect(),
            })
            .collect();
        let answer = if self.responsible(swarm, &query.key()) {
            self.index
                .answer(query, unix_now(), now)
                .map(|answer| WireAnswer::from_selection(&answer.selection, answer.held))
        } else {
            None
        };
        self.answered += u64::from(answer.is_some());
        WireFound { closer, answer }
    }

    /// Verifies and admits one offer `peer` asks this node to hold under `key`.
    fn store(
        &mut self,
        peer: PeerId,
        key: IndexKey,
        bytes: &[u8],
        now_unix: UnixTime,
        now: Instant,
    ) -> StoreOutcome {
        let offer = match SignedOffer::decode(bytes, now_unix) {
            Ok(offer) => offer,
            Err(e) => {
                self.metrics.index_store("invalid");
                return StoreOutcome::Refused(StoreRefusal::invalid(&e));
            }
        };
        let from_provider = identity::provider_id(&peer) == Some(offer.provider());
        let outcome = match self.index.admit(key, offer, &peer, from_provider, now) {
            Ok(Admitted::Added) => StoreOutcome::Added,
            Ok(Admitted::Replaced { .. }) => StoreOutcome::Replaced,
            Ok(Admitted::Unchanged) => StoreOutcome::Unchanged,
            Err(refusal) => StoreOutcome::Refused(StoreRefusal::from_index(&refusal)),
        };
        self.metrics.index_store(match &outcome {
            StoreOutcome::Added => "added",
            StoreOutcome::Replaced => "replaced",
            StoreOutcome::Unchanged => "unchanged",
            StoreOutcome::Refused(refusal) => refusal.label(),
        });
        outcome
    }
}

/// The key this node's copies under an index key are remembered by.
fn copy_key(key: &IndexKey) -> RecordKey {
    RecordKey::new(&key.to_bytes())
}

/// A keyspace position from Kademlia's 32 hashed bytes.
fn position(hashed: &[u8]) -> Option<Position> {
    Some(Position(hashed.try_into().ok()?))
}

impl std::fmt::Debug for IndexService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IndexService")
            .field("held", &self.index.len())
            .field("lookups", &self.lookups.len())
            .field("unreachable", &self.unreachable.len())
            .finish_non_exhaustive()
    }
}
