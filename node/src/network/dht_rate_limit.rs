//! Kademlia behind a per-peer rate limit on inbound requests.
//!
//! libp2p-kad answers FIND_NODE, GET_PROVIDERS and GET_VALUE by itself and reports them
//! afterwards in `kad::Event::InboundRequest` without the peer that sent them, so there is
//! no hook in its API to limit them per peer. This behaviour wraps `kad::Behaviour` and
//! sees each request as its connection handler reports it, with the peer, before Kademlia
//! does: within the peer's rate (a token bucket) it passes on; beyond it, it never reaches
//! Kademlia, it is answered at once with nothing (no peers, no providers, no record; a PUT
//! is acknowledged unstored, as every PUT is under `StoreInserts::FilterBoth`) and it is
//! counted. Not `HandlerIn::Reset`: in libp2p-kad 0.49 a reset stream is not woken to
//! close, so it would keep one of the connection's 32 inbound stream places for good.
//!
//! Refusals draw on a second bucket of the same rate and burst: a peer that keeps sending
//! at more than twice its rate empties it, and is disconnected and its connections refused
//! for `[limits] block_secs`. Kademlia's handler bounds the rest: at most 32 inbound
//! streams per connection, a deadline on each, and the packet size limit.

use std::collections::{HashMap, VecDeque};
use std::ops::{Deref, DerefMut};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use libp2p::PeerId;
use libp2p::core::transport::PortUse;
use libp2p::core::{Endpoint, Multiaddr};
use libp2p::kad;
use libp2p::swarm::{
    CloseConnection, ConnectionDenied, ConnectionId, FromSwarm, NetworkBehaviour, NotifyHandler,
    THandler, THandlerInEvent, THandlerOutEvent, ToSwarm,
};

use crate::limits::{LimitsSection, PeerRates, RefusalLog, log_refusal};
use crate::metrics::Metrics;

use super::store::Store;

type Kad = kad::Behaviour<Store>;
/// What Kademlia's connection handler reports: requests from the peer among them.
type HandlerEvent = THandlerOutEvent<Kad>;
/// What Kademlia's connection handler is told: answers to requests among others.
type HandlerIn = THandlerInEvent<Kad>;
/// Empty answers waiting to go out at once; beyond it, refused requests go unanswered
/// (their stream keeps a place until the connection closes).
const MAX_PENDING_ANSWERS: usize = 4096;

/// Peers blocked at once; beyond it the oldest block is lifted early.
const MAX_BLOCKED: usize = 4096;

/// The error of a connection refused because its peer is blocked.
#[derive(Debug, thiserror::Error)]
#[error("the peer flooded this node with DHT requests and is blocked for a while")]
pub struct Blocked;

/// `kad::Behaviour`, with each peer's inbound requests limited.
pub struct Behaviour {
    inner: Kad,
    rates: PeerRates,
    /// Refusals each peer may collect before it is blocked.
    tolerance: PeerRates,
    block_for: Duration,
    blocked: HashMap<PeerId, Instant>,
    to_close: VecDeque<PeerId>,
    to_answer: VecDeque<(PeerId, ConnectionId, HandlerIn)>,
    log: RefusalLog,
    metrics: Metrics,
}

impl std::fmt::Debug for Behaviour {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("dht_rate_limit::Behaviour")
            .field("blocked", &self.blocked.len())
            .finish_non_exhaustive()
    }
}

impl Behaviour {
    /// Wraps `inner` with the rates of `limits`.
    pub fn new(inner: Kad, limits: &LimitsSection, metrics: Metrics) -> Behaviour {
        Behaviour {
            inner,
            rates: PeerRates::new(limits.dht_requests_per_sec, limits.dht_request_burst),
            tolerance: PeerRates::new(limits.dht_requests_per_sec, limits.dht_request_burst),
            block_for: Duration::from_secs(limits.block_secs),
            blocked: HashMap::new(),
            to_close: VecDeque::new(),
            to_answer: VecDeque::new(),
            log: RefusalLog::new(limits.refusal_log_interval()),
            metrics,
        }
    }

    /// Whether `peer` is blocked now (and forgets a block that has run out).
    fn is_blocked(&mut self, peer: &PeerId) -> bool {
        match self.blocked.get(peer) {
            Some(until) if Instant::now() < *until => true,
            Some(_) => {
                self.blocked.remove(peer);
                false
            }
            None => false,
        }
    }

    fn deny_blocked(&mut self, peer: PeerId) -> Result<(), ConnectionDenied> {
        if self.is_blocked(&peer) {
            self.metrics.limit_refusal("blocked_peer");
            log_refusal(
                &mut self.log,
                Some(peer),
                "blocked_peer",
                &"a connection from a blocked peer",
                true,
            );
            return Err(ConnectionDenied::new(Blocked));
        }
        Ok(())
    }

    fn block(&mut self, peer: PeerId) {
        if self.blocked.len() >= MAX_BLOCKED {
            let now = Instant::now();
            self.blocked.retain(|_, until| *until > now);
            if self.blocked.len() >= MAX_BLOCKED
                && let Some(oldest) = self
                    .blocked
                    .iter()
                    .min_by_key(|(_, until)| **until)
                    .map(|(p, _)| *p)
            {
                self.blocked.remove(&oldest);
            }
        }
        self.blocked.insert(peer, Instant::now() + self.block_for);
        self.to_close.push_back(peer);
        tracing::warn!(%peer, secs = self.block_for.as_secs(), "a peer kept flooding this node with DHT requests: disconnected and blocked");
    }

    /// Whether a request from `peer` may reach Kademlia.
    fn admit(&mut self, peer: PeerId, kind: &'static str) -> bool {
        let now = Instant::now();
        if self.rates.allow(peer, now) {
            self.metrics.dht_inbound_request(kind);
            return true;
        }
        self.metrics.limit_refusal("dht_requests");
        log_refusal(
            &mut self.log,
            Some(peer),
            "dht_requests",
            &format_args!("a DHT request ({kind}) over the peer's rate"),
            true,
        );
        if !self.tolerance.allow(peer, now) {
            self.block(peer);
        }
        false
    }
}

/// The empty answer to a refused request, if the request awaits one.
fn empty_answer(event: HandlerEvent) -> Option<HandlerIn> {
    match event {
        HandlerEvent::FindNodeReq { request_id, .. } => Some(HandlerIn::FindNodeRes {
            closer_peers: Vec::new(),
            request_id,
        }),
        HandlerEvent::GetProvidersReq { request_id, .. } => Some(HandlerIn::GetProvidersRes {
            closer_peers: Vec::new(),
            provider_peers: Vec::new(),
            request_id,
        }),
        HandlerEvent::GetRecord { request_id, .. } => Some(HandlerIn::GetRecordRes {
            record: None,
            closer_peers: Vec::new(),
            request_id,
        }),
        HandlerEvent::PutRecord {
            record, request_id, ..
        } => Some(HandlerIn::PutRecordRes {
            key: record.key,
            value: Vec::new(),
            request_id,
        }),
        _ => None,
    }
}

/// The kind of an inbound request, or `None` for the handler's other reports.
fn request_kind(event: &HandlerEvent) -> Option<&'static str> {
    match event {
        HandlerEvent::FindNodeReq { .. } => Some("find_node"),
        HandlerEvent::GetProvidersReq { .. } => Some("get_providers"),
        HandlerEvent::AddProvider { .. } => Some("add_provider"),
        HandlerEvent::GetRecord { .. } => Some("get_record"),
        HandlerEvent::PutRecord { .. } => Some("put_record"),
        _ => None,
    }
}

impl Deref for Behaviour {
    type Target = Kad;

    fn deref(&self) -> &Kad {
        &self.inner
    }
}

impl DerefMut for Behaviour {
    fn deref_mut(&mut self) -> &mut Kad {
        &mut self.inner
    }
}

impl NetworkBehaviour for Behaviour {
    type ConnectionHandler = THandler<Kad>;
    type ToSwarm = kad::Event;

    fn handle_pending_inbound_connection(
        &mut self,
        connection_id: ConnectionId,
        local_addr: &Multiaddr,
        remote_addr: &Multiaddr,
    ) -> Result<(), ConnectionDenied> {
        self.inner
            .handle_pending_inbound_connection(connection_id, local_addr, remote_addr)
    }

    fn handle_established_inbound_connection(
        &mut self,
        connection_id: ConnectionId,
        peer: PeerId,
        local_addr: &Multiaddr,
        remote_addr: &Multiaddr,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        self.deny_blocked(peer)?;
        self.inner.handle_established_inbound_connection(
            connection_id,
            peer,
            local_addr,
            remote_addr,
        )
    }

    fn handle_pending_outbound_connection(
        &mut self,
        connection_id: ConnectionId,
        maybe_peer: Option<PeerId>,
        addresses: &[Multiaddr],
        effective_role: Endpoint,
    ) -> Result<Vec<Multiaddr>, ConnectionDenied> {
        if let Some(peer) = maybe_peer {
            self.deny_blocked(peer)?;
        }
        self.inner.handle_pending_outbound_connection(
            connection_id,
            maybe_peer,
            addresses,
            effective_role,
        )
    }

    fn handle_established_outbound_connection(
        &mut self,
        connection_id: ConnectionId,
        peer: PeerId,
        addr: &Multiaddr,
        role_override: Endpoint,
        port_use: PortUse,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        self.deny_blocked(peer)?;
        self.inner.handle_established_outbound_connection(
            connection_id,
            peer,
            addr,
            role_override,
            port_use,
        )
    }

    fn on_swarm_event(&mut self, event: FromSwarm<'_>) {
        self.inner.on_swarm_event(event);
    }

    fn on_connection_handler_event(
        &mut self,
        peer_id: PeerId,
        connection_id: ConnectionId,
        event: THandlerOutEvent<Self>,
    ) {
        if let Some(kind) = request_kind(&event)
            && !self.admit(peer_id, kind)
        {
            if self.to_answer.len() < MAX_PENDING_ANSWERS
                && let Some(answer) = empty_answer(event)
            {
                self.to_answer.push_back((peer_id, connection_id, answer));
            }
            return;
        }
        self.inner
            .on_connection_handler_event(peer_id, connection_id, event);
    }

    fn poll(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<ToSwarm<Self::ToSwarm, THandlerInEvent<Self>>> {
        if let Some(peer_id) = self.to_close.pop_front() {
            return Poll::Ready(ToSwarm::CloseConnection {
                peer_id,
                connection: CloseConnection::All,
            });
        }
        if let Some((peer_id, connection, event)) = self.to_answer.pop_front() {
            return Poll::Ready(ToSwarm::NotifyHandler {
                peer_id,
                handler: NotifyHandler::One(connection),
                event,
            });
        }
        self.inner.poll(cx)
    }
}
