//! The task that owns the swarm.
//!
//! Everything else talks to the network through [`super::Client`], which sends a
//! [`Command`] with a `oneshot` for the reply. The loop turns commands into Kademlia
//! queries and dials, and Kademlia events into replies; it is also where inbound records
//! are checked before they are stored. It never blocks: each reply waits in a map keyed
//! by query id or peer until its event arrives.

use std::collections::{HashMap, HashSet};
use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use interlink_protocol::{DhtKey, SignedOffer};
use libp2p::kad::store::RecordStore;
use libp2p::kad::{
    self, GetProvidersOk, GetRecordOk, QueryId, QueryResult, Quorum, Record, RecordKey,
};
use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};
use libp2p::swarm::{ConnectionDenied, DialError, ListenError, SwarmEvent};
use libp2p::{Multiaddr, PeerId, Swarm, autonat, connection_limits, identify, ping};
use tokio::sync::{mpsc, oneshot, watch};

use super::behaviour::{Behaviour, BehaviourEvent, KAD_PROTOCOL};
use super::copies::{CopyHolders, Placement};
use super::index::IndexService;
use super::reachability::{self, Scope};
use super::{Cause, Command, NetworkError, RefusalCounts, Settings, Status};
use crate::clock::unix_now;

use crate::identity;
use crate::limits::{RefusalLog, log_refusal};
use crate::metrics::Metrics;
use crate::network::records::{self, PeerQuota};
use crate::network::traffic::TrafficCounters;

/// Most providers collected by one lookup.
const MAX_PROVIDERS_PER_LOOKUP: usize = 256;
/// Most offer lookups, provider lookups, dials or round-trip waits in flight at once.
const MAX_PENDING: usize = 1024;
/// How often the gauges of the routing table and the record store are brought up to date.
const GAUGE_INTERVAL: Duration = Duration::from_secs(5);

type Reply<T> = oneshot::Sender<Result<T, NetworkError>>;

struct OfferLookup {
    provider: PeerId,
    best: Option<SignedOffer>,
    valid_copies: usize,
    /// Peers that answered with an older copy, to be sent the newest one.
    stale_peers: HashSet<PeerId>,
    reply: Reply<Option<SignedOffer>>,
}

/// This node's offer on its way to the nodes that will hold it.
struct Publication {
    record: Record,
    /// The nodes sent the copy (once they are known).
    targets: Vec<PeerId>,
    /// Sent to the holders a recent walk found, without a walk of its own.
    known: bool,
    reply: Reply<usize>,
}

pub(super) struct EventLoop {
    swarm: Swarm<Behaviour>,
    commands: mpsc::Receiver<Command>,
    listen_addrs: watch::Sender<Vec<Multiaddr>>,
    /// The addresses confirmed reachable, for the publisher (see `reachability.rs`).
    external_addrs: watch::Sender<Vec<Multiaddr>>,
    scope: Scope,
    record_quorum: usize,
    /// The longest a stored offer is kept.
    record_ttl: Duration,
    /// How many of the nodes closest to its key store each offer (Kademlia's k).
    replication_factor: NonZeroUsize,
    traffic: Arc<TrafficCounters>,
    /// Whether listen addresses become external addresses (none were configured).
    confirm_listen_addrs: bool,
    /// The external addresses the operator configured.
    configured_external: Vec<Multiaddr>,
    /// Requests sent by this node's finished Kademlia queries.
    query_requests: u64,
    offer_lookups: HashMap<QueryId, OfferLookup>,
    provider_lookups: HashMap<QueryId, (HashSet<PeerId>, Reply<HashSet<PeerId>>)>,
    /// Publications looking for the nodes closest to their key.
    finding_holders: HashMap<QueryId, Publication>,
    /// Publications being stored at those nodes.
    puts: HashMap<QueryId, Publication>,
    /// Where copies of this node's offer were stored.
    holders: CopyHolders,
    announcements: HashMap<QueryId, Reply<()>>,
    bootstraps: HashMap<QueryId, Reply<()>>,
    dials: HashMap<PeerId, Vec<Reply<()>>>,
    rtt_waiters: HashMap<PeerId, Vec<Reply<Duration>>>,
    last_rtt: HashMap<PeerId, Duration>,
    refusals: RefusalCounts,
    /// Which stored offers came from which peer, within `[limits] records_per_peer`.
    record_quota: PeerQuota<RecordKey>,
    /// Which provider records each provider has here, within `provider_records_per_peer`.
    provider_quota: PeerQuota<(RecordKey, PeerId)>,
    refusal_log: RefusalLog,
    /// The offer index: held for others, looked up, published.
    index: IndexService,
    metrics: Metrics,
}

impl EventLoop {
    pub(super) fn new(
        swarm: Swarm<Behaviour>,
        commands: mpsc::Receiver<Command>,
        listen_addrs: watch::Sender<Vec<Multiaddr>>,
        external_addrs: watch::Sender<Vec<Multiaddr>>,
        settings: &Settings,
        traffic: Arc<TrafficCounters>,
        metrics: Metrics,
    ) -> EventLoop {
        // On a local network a server's listen addresses are its external addresses,
        // unless some were configured; on the internet only confirmed ones are.
        let confirm_listen_addrs = settings.server_mode
            && settings.external_addresses.is_empty()
            && settings.scope == Scope::Local;
        let (dht, limits) = (&settings.dht, &settings.limits);
        let index = IndexService::new(*swarm.local_peer_id(), settings, metrics.clone());
        EventLoop {
            swarm,
            commands,
            listen_addrs,
            external_addrs,
            scope: settings.scope,
            record_quorum: dht.record_quorum.max(1),
            record_ttl: Duration::from_secs(dht.record_ttl_secs),
            replication_factor: NonZeroUsize::new(dht.replication_factor)
                .unwrap_or(NonZeroUsize::MIN),
            traffic,
            confirm_listen_addrs,
            configured_external: settings.external_addresses.clone(),
            query_requests: 0,
            offer_lookups: HashMap::new(),
            provider_lookups: HashMap::new(),
            finding_holders: HashMap::new(),
            puts: HashMap::new(),
            holders: CopyHolders::default(),
            announcements: HashMap::new(),
            bootstraps: HashMap::new(),
            dials: HashMap::new(),
            rtt_waiters: HashMap::new(),
            last_rtt: HashMap::new(),
            refusals: RefusalCounts::default(),
            record_quota: PeerQuota::new(limits.records_per_peer, 2 * dht.max_records),
            provider_quota: PeerQuota::new(
                limits.provider_records_per_peer,
                2 * dht.max_records.max(dht.max_providers_per_key),
            ),
            refusal_log: RefusalLog::new(limits.refusal_log_interval()),
            index,
            metrics,
        }
    }

    /// Runs until `shutdown` resolves or every client is dropped.
    pub(super) async fn run(mut self, shutdown: oneshot::Receiver<()>) {
        let mut shutdown = std::pin::pin!(shutdown);
        let mut gauges = tokio::time::interval(GAUGE_INTERVAL);
        gauges.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                event = self.swarm.select_next_some() => self.on_swarm_event(event),
                _ = gauges.tick() => self.update_gauges(),
                timer = self.index.timer() => self.index.on_timer(&mut self.swarm, timer),
                command = self.commands.recv() => match command {
                    Some(command) => self.on_command(command),
                    None => break,
                },
                _ = &mut shutdown => break,
            }
        }
        tracing::debug!("network event loop stopped");
    }

    fn kad(&mut self) -> &mut kad::Behaviour<super::store::Store> {
        &mut self.swarm.behaviour_mut().kad
    }

    fn pending(&self) -> usize {
        self.offer_lookups.len()
            + self.provider_lookups.len()
            + self.finding_holders.len()
            + self.puts.len()
            + self.announcements.len()
            + self.dials.values().map(Vec::len).sum::<usize>()
            + self.rtt_waiters.values().map(Vec::len).sum::<usize>()
    }

    fn on_command(&mut self, command: Command) {
        if self.pending() >= MAX_PENDING && command.waits() {
            command.refuse(NetworkError::Busy);
            return;
        }
        match command {
            Command::Dial {
                peer,
                addresses,
                reply,
            } => self.dial(peer, addresses, reply),
            Command::AddPeer { peer, address } => {
                self.kad().add_address(&peer, address);
            }
            Command::Bootstrap { reply } => match self.kad().bootstrap() {
                Ok(id) => {
                    self.bootstraps.insert(id, reply);
                }
                Err(_) => {
                    let _ = reply.send(Err(NetworkError::NoPeers));
                }
            },
            Command::PutOffer {
                offer,
                placement,
                reply,
            } => self.put_offer(offer, placement, reply),
            Command::StartProviding { key, reply } => {
                match self.kad().start_providing(RecordKey::new(&key.to_bytes())) {
                    Ok(id) => {
                        self.announcements.insert(id, reply);
                    }
                    Err(e) => {
                        let _ = reply.send(Err(NetworkError::Store(Cause::new(e))));
                    }
                }
            }
            Command::StopProviding { key } => {
                self.kad().stop_providing(&RecordKey::new(&key.to_bytes()));
            }
            Command::GetProviders { key, reply } => {
                let id = self.kad().get_providers(RecordKey::new(&key.to_bytes()));
                self.provider_lookups.insert(id, (HashSet::new(), reply));
            }
            Command::GetOffer { provider, reply } => {
                let Some(provider_id) = identity::provider_id(&provider) else {
                    let _ = reply.send(Ok(None));
                    return;
                };
                let key = RecordKey::new(&DhtKey::Offer(provider_id).to_bytes());
                let id = self.kad().get_record(key);
                self.offer_lookups.insert(
                    id,
                    OfferLookup {
                        provider,
                        best: None,
                        valid_copies: 0,
                        stale_peers: HashSet::new(),
                        reply,
                    },
                );
            }
            Command::FindOffers {
                query,
                cache,
                reply,
            } => self.index.find(&mut self.swarm, query, cache, reply),
            Command::IndexOffer {
                offer,
                key,
                placement,
                reply,
            } => self
                .index
                .publish(&mut self.swarm, offer, key, placement, reply),
            Command::MeasureRtt {
                peer,
                addresses,
                reply,
            } => self.measure_rtt(peer, addresses, reply),
            Command::StoredRecord { key, reply } => {
                let value = self
                    .kad()
                    .store_mut()
                    .get(&RecordKey::new(&key))
                    .map(|r| r.value.clone());
                let _ = reply.send(value);
            }
            Command::StoredProviders { key, reply } => {
                let key = RecordKey::new(&key.to_bytes());
                let providers = self
                    .kad()
                    .store_mut()
                    .providers(&key)
                    .into_iter()
                    .map(|p| p.provider)
                    .collect();
                let _ = reply.send(providers);
            }
            Command::Status { reply } => {
                let _ = reply.send(self.status());
            }
        }
    }

    fn update_gauges(&mut self) {
        self.index.expire();
        let status = self.status();
        self.metrics.set_network(
            status.connected_peers,
            status.routing_table_size,
            status.stored_records,
        );
    }

    /// Counts and (once per peer and interval) logs a record refused for `reason`;
    /// `limit` names the `[limits]` entry that refused it, if one did.
    fn refuse(
        &mut self,
        peer: Option<PeerId>,
        provider_record: bool,
        reason: &'static str,
        limit: Option<&'static str>,
        detail: &dyn std::fmt::Display,
    ) {
        self.refusals.record(reason);
        if provider_record {
            self.metrics.provider_record_refused(reason);
        } else {
            self.metrics.offer_refused(reason);
        }
        if let Some(limit) = limit {
            self.metrics.limit_refusal(limit);
        }
        log_refusal(&mut self.refusal_log, peer, reason, detail, limit.is_some());
    }

    /// Counts a connection refused by the connection limits.
    fn on_connection_denied(&mut self, peer: Option<PeerId>, cause: &ConnectionDenied) {
        if let Some(exceeded) = cause.downcast_ref::<connection_limits::Exceeded>() {
            self.metrics.limit_refusal("connections");
            log_refusal(
                &mut self.refusal_log,
                peer,
                "connections",
                &format_args!("a connection over a limit of {}", exceeded.limit()),
                true,
            );
        }
    }

    fn status(&mut self) -> Status {
        let routing_table_size = self
            .kad()
            .kbuckets()
            .map(|bucket| bucket.num_entries())
            .sum();
        let stored_records = self.kad().store_mut().records().count();
        Status {
            peer_id: *self.swarm.local_peer_id(),
            connected_peers: self.swarm.connected_peers().count(),
            routing_table_size,
            stored_records,
            listen_addrs: self.listen_addrs.borrow().clone(),
            refusals: self.refusals.clone(),
            traffic: self.traffic.snapshot(),
            query_requests: self.query_requests,
            index_offers: self.index.held().0,
            index_bytes: self.index.held().1,
            index_answers: self.index.answered(),
        }
    }

    fn dial(&mut self, peer: PeerId, addresses: Vec<Multiaddr>, reply: Reply<()>) {
        if self.swarm.is_connected(&peer) {
            let _ = reply.send(Ok(()));
            return;
        }
        for address in &addresses {
            self.kad().add_address(&peer, address.clone());
        }
        let opts = DialOpts::peer_id(peer)
            .addresses(addresses)
            .condition(PeerCondition::DisconnectedAndNotDialing)
            .build();
        match self.swarm.dial(opts) {
            Ok(()) => self.dials.entry(peer).or_default().push(reply),
            // Already dialling: wait for that attempt.
            Err(libp2p::swarm::DialError::DialPeerConditionFalse(_)) => {
                self.dials.entry(peer).or_default().push(reply);
            }
            Err(e) => {
                let _ = reply.send(Err(NetworkError::Unreachable {
                    peer,
                    source: Cause::new(e),
                }));
            }
        }
    }

    fn measure_rtt(&mut self, peer: PeerId, addresses: Vec<Multiaddr>, reply: Reply<Duration>) {
        if self.swarm.is_connected(&peer)
            && let Some(rtt) = self.last_rtt.get(&peer)
        {
            let _ = reply.send(Ok(*rtt));
            return;
        }
        let waiters = self.rtt_waiters.entry(peer).or_default();
        waiters.retain(|w| !w.is_closed());
        waiters.push(reply);
        if !self.swarm.is_connected(&peer) {
            let (dial_reply, _) = oneshot::channel();
            self.dial(peer, addresses, dial_reply);
        }
    }

    /// Publishes this node's offer: stores it here, finds the nodes now closest to its
    /// key, then stores it at those and at every node holding an earlier copy (see
    /// `copies.rs`). This is Kademlia's `put_record` in two steps, so that the nodes
    /// storing it are known. A change soon after a walk skips the first step
    /// ([`Placement::Known`]).
    fn put_offer(&mut self, offer: SignedOffer, placement: Placement, reply: Reply<usize>) {
        let now = unix_now();
        let record = Record {
            key: RecordKey::new(&DhtKey::Offer(offer.provider()).to_bytes()),
            value: offer.as_bytes().to_vec(),
            publisher: Some(*self.swarm.local_peer_id()),
            expires: Some(records::expiry(&offer, now, Instant::now())),
        };
        if let Err(e) = self.kad().store_mut().put(record.clone()) {
            let _ = reply.send(Err(NetworkError::Store(Cause::new(e))));
            return;
        }
        let mut publication = Publication {
            record,
            targets: Vec::new(),
            known: false,
            reply,
        };
        if placement == Placement::Known
            && let Some(holders) = self.holders.known(&publication.record.key, Instant::now())
        {
            publication.known = true;
            publication.targets = holders;
            self.send_publication(publication);
            return;
        }
        self.find_holders(publication);
    }

    /// Walks toward the publication's key for the nodes closest to it.
    fn find_holders(&mut self, mut publication: Publication) {
        publication.known = false;
        let k = self.replication_factor;
        let id = self
            .kad()
            .get_n_closest_peers(publication.record.key.to_vec(), k);
        self.finding_holders.insert(id, publication);
    }

    /// Sends the offer to the closest nodes found and to the earlier copies' holders.
    fn store_publication(&mut self, mut publication: Publication, closest: Vec<kad::PeerInfo>) {
        let now = Instant::now();
        if !closest.is_empty() {
            self.holders.walked(&publication.record.key, now);
        }
        let closest = closest.into_iter().map(|p| p.peer_id);
        publication.targets = self.holders.targets(&publication.record.key, closest, now);
        self.send_publication(publication);
    }

    /// Sends the offer to the publication's targets, and waits for every one of them: the
    /// publisher moves on (or the node shuts down after a withdrawal) only once the new
    /// copy is everywhere it will be looked up.
    fn send_publication(&mut self, publication: Publication) {
        if publication.targets.is_empty() {
            self.metrics.offer_published(false);
            let _ = publication
                .reply
                .send(Err(NetworkError::NotReplicated { acknowledged: 0 }));
            return;
        }
        let targets = publication.targets.clone().into_iter();
        let id = self
            .kad()
            .put_record_to(publication.record.clone(), targets, Quorum::All);
        self.puts.insert(id, publication);
    }

    /// Notes which nodes now hold the offer, and tells the publisher how many.
    fn finish_publication(&mut self, mut publication: Publication, result: kad::PutRecordResult) {
        let sent = publication.targets.len();
        let acknowledged = match result {
            Ok(_) => std::mem::take(&mut publication.targets),
            // Nodes that left since they were found, or an earlier holder gone, cannot
            // acknowledge: what counts is that the copy reached the nodes there are.
            Err(
                kad::PutRecordError::QuorumFailed { success, .. }
                | kad::PutRecordError::Timeout { success, .. },
            ) => success,
        };
        if let Some(expires) = publication.record.expires {
            self.holders.stored(
                &publication.record.key,
                acknowledged.iter().copied(),
                expires,
            );
        }
        if publication.known
            && self
                .holders
                .known_reached(&publication.record.key, sent, acknowledged.len())
        {
            // The holders found a moment ago are mostly gone: find the closest anew.
            self.find_holders(publication);
            return;
        }
        self.metrics.offer_published(!acknowledged.is_empty());
        let _ = publication.reply.send(match acknowledged.len() {
            0 => Err(NetworkError::NotReplicated { acknowledged: 0 }),
            n => Ok(n),
        });
    }

    /// An address of this node was confirmed reachable: configured, dialled back by a
    /// peer (AutoNAT), or a listen address of a local network. On the internet a private
    /// one is taken back at once: Kademlia would otherwise serve and advertise it.
    fn on_external_confirmed(&mut self, address: Multiaddr) {
        if self.scope == Scope::Internet && !reachability::is_public(&address) {
            tracing::debug!(%address, "not advertising a private address on the internet");
            self.swarm.remove_external_address(&address);
            return;
        }
        tracing::info!(%address, "reachable at {address}");
        self.external_addrs.send_if_modified(|addrs| {
            let new = !addrs.contains(&address);
            if new {
                addrs.push(address);
            }
            new
        });
        self.metrics.set_reachable(true);
    }

    /// AutoNAT's view changed. Once peers could no longer dial this node back, the
    /// addresses they had confirmed are withdrawn (configured ones stay: the operator's
    /// word), so that Kademlia stops serving and the gateway stops publishing them.
    fn on_nat_status(&mut self, old: autonat::NatStatus, new: autonat::NatStatus) {
        tracing::info!(?old, ?new, "reachability from the internet changed");
        if let autonat::NatStatus::Private = new {
            let confirmed: Vec<Multiaddr> = self
                .swarm
                .external_addresses()
                .filter(|a| !self.configured_external.contains(a))
                .cloned()
                .collect();
            for address in confirmed {
                self.swarm.remove_external_address(&address);
            }
            if self.external_addrs.borrow().is_empty() {
                tracing::warn!(
                    "peers cannot dial this node back: it is behind a NAT or firewall; set network.external_addresses to an address forwarded to it"
                );
            }
        }
    }

    fn on_swarm_event(&mut self, event: SwarmEvent<BehaviourEvent>) {
        self.metrics.record(&event);
        match &event {
            SwarmEvent::Behaviour(BehaviourEvent::Kad(e)) => self.metrics.record(e),
            SwarmEvent::Behaviour(BehaviourEvent::Ping(e)) => self.metrics.record(e),
            _ => {}
        }
        match event {
            SwarmEvent::NewListenAddr { address, .. } => {
                let local = *self.swarm.local_peer_id();
                tracing::info!(address = %address, peer_id = %local, "listening on {address}/p2p/{local}");
                if self.confirm_listen_addrs {
                    self.swarm.add_external_address(address.clone());
                }
                self.listen_addrs.send_modify(|addrs| addrs.push(address));
            }
            SwarmEvent::ExpiredListenAddr { address, .. } => {
                if self.confirm_listen_addrs {
                    self.swarm.remove_external_address(&address);
                }
                self.listen_addrs
                    .send_modify(|addrs| addrs.retain(|a| a != &address));
            }
            SwarmEvent::ConnectionEstablished { peer_id, .. } => {
                self.metrics
                    .set_peers(self.swarm.network_info().num_peers());
                self.index.on_connected(&peer_id);
                for reply in self.dials.remove(&peer_id).unwrap_or_default() {
                    let _ = reply.send(Ok(()));
                }
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                num_established,
                ..
            } => {
                if num_established == 0 {
                    self.last_rtt.remove(&peer_id);
                }
                self.metrics
                    .set_peers(self.swarm.network_info().num_peers());
            }
            SwarmEvent::IncomingConnectionError {
                peer_id,
                error: ListenError::Denied { cause },
                ..
            } => self.on_connection_denied(peer_id, &cause),

            SwarmEvent::OutgoingConnectionError {
                peer_id: Some(peer),
                error,
                ..
            } => {
                if let DialError::Denied { cause } = &error {
                    self.on_connection_denied(Some(peer), cause);
                }
                if self.swarm.is_connected(&peer) {
                    return;
                }
                let source = Cause::new(error);
                for reply in self.dials.remove(&peer).unwrap_or_default() {
                    let _ = reply.send(Err(NetworkError::Unreachable {
                        peer,
                        source: source.clone(),
                    }));
                }
                for reply in self.rtt_waiters.remove(&peer).unwrap_or_default() {
                    let _ = reply.send(Err(NetworkError::Unreachable {
                        peer,
                        source: source.clone(),
                    }));
                }
            }
            SwarmEvent::Behaviour(BehaviourEvent::Identify(identify::Event::Received {
                peer_id,
                info,
                ..
            })) if info.protocols.contains(&KAD_PROTOCOL) => {
                // Kademlia learns addresses only from connections it dialled itself. On the
                // internet, private and loopback ones would only send dials into a hole.
                for address in info.listen_addrs {
                    if self.scope == Scope::Local || reachability::is_public(&address) {
                        self.kad().add_address(&peer_id, address);
                    }
                }
            }
            SwarmEvent::ExternalAddrConfirmed { address } => self.on_external_confirmed(address),
            SwarmEvent::ExternalAddrExpired { address } => {
                self.external_addrs
                    .send_if_modified(|addrs| remove(addrs, &address));
                self.metrics
                    .set_reachable(!self.external_addrs.borrow().is_empty());
            }
            SwarmEvent::Behaviour(BehaviourEvent::Autonat(autonat::Event::StatusChanged {
                old,
                new,
            })) => self.on_nat_status(old, new),
            SwarmEvent::Behaviour(BehaviourEvent::Ping(ping::Event {
                peer,
                result: Ok(rtt),
                ..
            })) => {
                self.last_rtt.insert(peer, rtt);
                for reply in self.rtt_waiters.remove(&peer).unwrap_or_default() {
                    let _ = reply.send(Ok(rtt));
                }
            }
            SwarmEvent::Behaviour(BehaviourEvent::Kad(event)) => self.on_kad_event(event),
            SwarmEvent::Behaviour(BehaviourEvent::Index(event)) => {
                self.index.on_event(&mut self.swarm, event)
            }
            _ => {}
        }
    }

    fn on_kad_event(&mut self, event: kad::Event) {
        match event {
            kad::Event::InboundRequest { request } => self.on_inbound_request(request),
            kad::Event::OutboundQueryProgressed {
                id,
                result,
                step,
                stats,
            } => {
                if step.last {
                    self.query_requests += u64::from(stats.num_requests());
                    let (kind, ok) = query_outcome(&result);
                    self.metrics
                        .dht_query(kind, ok, stats.duration().unwrap_or_default());
                }
                self.on_query_progress(id, result, step.last);
            }
            kad::Event::RoutingUpdated {
                peer, is_new_peer, ..
            } => {
                if is_new_peer {
                    self.index.on_new_peer(&mut self.swarm, peer);
                }
                let status = self.status();
                self.metrics.set_network(
                    status.connected_peers,
                    status.routing_table_size,
                    status.stored_records,
                );
            }
            _ => {}
        }
    }

    /// Stores an inbound record or provider record only if [`records`] admits it and the
    /// peer it came from is within its quota.
    fn on_inbound_request(&mut self, request: kad::InboundRequest) {
        match request {
            kad::InboundRequest::PutRecord {
                source,
                record: Some(record),
                ..
            } => self.on_inbound_record(source, record),
            kad::InboundRequest::AddProvider {
                record: Some(record),
            } => self.on_inbound_provider(record),
            _ => {}
        }
    }

    fn on_inbound_record(&mut self, source: PeerId, mut record: Record) {
        let now = unix_now();
        let stored = self
            .kad()
            .store_mut()
            .get(&record.key)
            .map(|r| r.value.clone());
        let offer = match records::admit_value(
            record.key.as_ref(),
            &record.value,
            stored.as_deref(),
            now,
        ) {
            Ok(offer) => offer,
            Err(refusal) => {
                self.refuse(Some(source), false, refusal.label(), None, &refusal);
                return;
            }
        };
        let store = self.swarm.behaviour_mut().kad.store_mut();
        if !self
            .record_quota
            .admits(source, &record.key, |key| store.get(key).is_some())
        {
            self.refuse(
                Some(source),
                false,
                "records_per_peer",
                Some("records_per_peer"),
                &"an offer over the peer's quota of stored records",
            );
            return;
        }
        let kept_until = Instant::now() + self.record_ttl;
        record.expires = Some(records::expiry(&offer, now, Instant::now()).min(kept_until));
        let key = record.key.clone();
        if let Err(e) = self.kad().store_mut().put(record) {
            self.refuse(
                Some(source),
                false,
                "store_full",
                None,
                &format_args!("record store: {e:?}"),
            );
        } else {
            let store = self.swarm.behaviour_mut().kad.store_mut();
            self.record_quota
                .stored(source, key, |key| store.get(key).is_some());
            self.metrics.offer_validated("put");
            tracing::debug!(peer = %source, provider = %offer.provider(), seq = offer.seq(), "stored offer");
        }
    }

    fn on_inbound_provider(&mut self, record: kad::ProviderRecord) {
        let provider = record.provider;
        if let Err(refusal) = records::admit_provider(record.key.as_ref()) {
            self.refuse(Some(provider), true, refusal.label(), None, &refusal);
            return;
        }
        let entry = (record.key.clone(), provider);
        let store = self.swarm.behaviour_mut().kad.store_mut();
        let still_stored = |(key, provider): &(RecordKey, PeerId)| {
            store.providers(key).iter().any(|p| p.provider == *provider)
        };
        if !self.provider_quota.admits(provider, &entry, still_stored) {
            self.refuse(
                Some(provider),
                true,
                "providers_per_peer",
                Some("providers_per_peer"),
                &"a provider record over the provider's quota",
            );
            return;
        }
        if let Err(e) = self.kad().store_mut().add_provider(record) {
            self.refuse(
                Some(provider),
                true,
                "store_full",
                None,
                &format_args!("provider store: {e:?}"),
            );
        } else {
            let store = self.swarm.behaviour_mut().kad.store_mut();
            self.provider_quota
                .stored(provider, entry, |(key, provider): &(RecordKey, PeerId)| {
                    store.providers(key).iter().any(|p| p.provider == *provider)
                });
        }
    }

    fn on_query_progress(&mut self, id: QueryId, result: QueryResult, last: bool) {
        match result {
            QueryResult::GetRecord(result) => {
                if let Ok(GetRecordOk::FoundRecord(found)) = &result {
                    self.on_offer_copy(id, found.peer, &found.record);
                }
                if last {
                    self.finish_offer_lookup(id);
                }
            }
            QueryResult::GetProviders(result) => {
                if let Ok(GetProvidersOk::FoundProviders { providers, .. }) = result
                    && let Some((found, _)) = self.provider_lookups.get_mut(&id)
                {
                    found.extend(providers.into_iter().take(MAX_PROVIDERS_PER_LOOKUP));
                    if found.len() >= MAX_PROVIDERS_PER_LOOKUP
                        && let Some(mut query) = self.kad().query_mut(&id)
                    {
                        query.finish();
                    }
                }
                if last {
                    self.finish_provider_lookup(id);
                }
            }
            QueryResult::GetClosestPeers(result) if last => {
                let closest = match result {
                    Ok(ok) => ok.peers,
                    Err(kad::GetClosestPeersError::Timeout { peers, .. }) => peers,
                };
                if self.index.owns_query(&id) {
                    self.index.on_closest_peers(&mut self.swarm, id, closest);
                } else if let Some(publication) = self.finding_holders.remove(&id) {
                    self.store_publication(publication, closest);
                }
            }
            QueryResult::PutRecord(result) => {
                if let Some(publication) = self.puts.remove(&id) {
                    self.finish_publication(publication, result);
                }
            }
            QueryResult::StartProviding(result) => {
                if let Some(reply) = self.announcements.remove(&id) {
                    let _ = reply.send(
                        result
                            .map(|_| ())
                            .map_err(|_| NetworkError::NotReplicated { acknowledged: 0 }),
                    );
                }
            }
            QueryResult::Bootstrap(result) if last => {
                if let Some(reply) = self.bootstraps.remove(&id) {
                    let _ = reply.send(result.map(|_| ()).map_err(|_| NetworkError::Timeout));
                }
            }
            _ => {}
        }
    }

    /// Checks one copy of an offer found by a lookup, keeping the newest valid one.
    fn on_offer_copy(&mut self, id: QueryId, from: Option<PeerId>, record: &Record) {
        let now = unix_now();
        let quorum = self.record_quorum;
        let Some(lookup) = self.offer_lookups.get_mut(&id) else {
            return;
        };
        let expected = identity::provider_id(&lookup.provider).map(|p| DhtKey::Offer(p).to_bytes());
        if expected.as_deref() != Some(record.key.as_ref()) {
            return;
        }
        match records::admit_value(record.key.as_ref(), &record.value, None, now) {
            Ok(offer) => {
                self.metrics.offer_validated("lookup");
                lookup.valid_copies += 1;
                match &lookup.best {
                    Some(best) if best.seq() > offer.seq() => {
                        lookup.stale_peers.extend(from);
                    }
                    Some(best) if best.seq() == offer.seq() => {}
                    _ => {
                        lookup.best = Some(offer);
                        lookup.stale_peers.clear();
                    }
                }
                if lookup.valid_copies >= quorum
                    && let Some(mut query) = self.kad().query_mut(&id)
                {
                    query.finish();
                }
            }
            Err(refusal) => {
                tracing::debug!(peer = ?from, reason = %refusal, "lookup returned an invalid offer");
                self.refusals.record(refusal.label());
                self.metrics.offer_refused(refusal.label());
            }
        }
    }

    fn finish_offer_lookup(&mut self, id: QueryId) {
        let Some(lookup) = self.offer_lookups.remove(&id) else {
            return;
        };
        // Read repair: peers that answered with an older copy get the newest.
        if let Some(best) = &lookup.best
            && !lookup.stale_peers.is_empty()
        {
            let record = Record::new(
                DhtKey::Offer(best.provider()).to_bytes(),
                best.as_bytes().to_vec(),
            );
            let peers: Vec<PeerId> = lookup.stale_peers.into_iter().collect();
            self.kad()
                .put_record_to(record, peers.into_iter(), Quorum::One);
        }
        let _ = lookup.reply.send(Ok(lookup.best));
    }

    fn finish_provider_lookup(&mut self, id: QueryId) {
        if let Some((providers, reply)) = self.provider_lookups.remove(&id) {
            let _ = reply.send(Ok(providers));
        }
    }
}

/// The kind of a finished query and whether it succeeded, for the metrics.
fn query_outcome(result: &QueryResult) -> (&'static str, bool) {
    match result {
        QueryResult::Bootstrap(r) => ("bootstrap", r.is_ok()),
        QueryResult::GetClosestPeers(r) => ("get_closest_peers", r.is_ok()),
        QueryResult::GetProviders(r) => ("get_providers", r.is_ok()),
        QueryResult::StartProviding(r) => ("start_providing", r.is_ok()),
        QueryResult::RepublishProvider(r) => ("republish_provider", r.is_ok()),
        QueryResult::GetRecord(r) => ("get_record", r.is_ok()),
        QueryResult::PutRecord(r) => ("put_record", r.is_ok()),
        QueryResult::RepublishRecord(r) => ("republish_record", r.is_ok()),
    }
}

/// Removes `address` from `addrs`; whether it was there.
fn remove(addrs: &mut Vec<Multiaddr>, address: &Multiaddr) -> bool {
    let before = addrs.len();
    addrs.retain(|a| a != address);
    addrs.len() != before
}
