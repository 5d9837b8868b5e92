//! What one peer may ask of a node: the `[limits]` section, per-peer rate limits, and
//! refusals logged once per peer and interval.
//!
//! Anyone on the internet can reach a node, so each resource a peer can make it spend has
//! a bound: connections (libp2p's `connection_limits`), streams per connection (yamux),
//! Kademlia requests per second and the records and provider records it may have stored
//! here, call invitations per second and waiting at once, and the size of DHT packets and
//! call frames. Every refusal is counted in the metrics (`interlink_limit_refusals_total`)
//! and logged, but at most once per peer and [`LimitsSection::refusal_log_interval_secs`]
//! with the number refused meanwhile, so a flood cannot flood the log as well.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use interlink_protocol::call::messages::{MAX_FRAME_BYTES, MAX_SDP_BYTES};
use interlink_protocol::signed::MAX_SIGNED_OFFER_BYTES;
use libp2p::PeerId;
use serde::Deserialize;

use crate::config::ConfigError;

/// Peers whose request rates are tracked at once; beyond it, idle ones are forgotten.
const MAX_TRACKED_PEERS: usize = 16_384;
/// (peer, limit) pairs whose last log line is remembered.
const MAX_LOGGED: usize = 4096;
/// The largest Kademlia packet a node can be configured to accept.
const MAX_DHT_PACKET_LIMIT: usize = 1024 * 1024;
/// The smallest: an offer of the largest size, its record envelope and a list of peers.
const MIN_DHT_PACKET_LIMIT: usize = MAX_SIGNED_OFFER_BYTES + 4096;
/// The smallest call frame limit: an invite with the largest SDP offer it may carry.
const MIN_CALL_FRAME_LIMIT: usize = MAX_SDP_BYTES + 8192;

/// `[limits]`: what one peer may ask of this node. The defaults suit a public gateway and
/// simulations of thousands of nodes; a refusal is counted and logged once per interval.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsSection {
    /// Connections to one peer: two nodes dialling each other at once, and AutoNAT's
    /// dial-backs, are each a connection of their own (a limit of 2 refused the second
    /// probe, which read as "not reachable").
    pub max_connections_per_peer: u32,
    /// Established inbound connections in all.
    pub max_incoming_connections: u32,
    /// Inbound connections still in their handshake.
    pub max_pending_incoming: u32,
    /// Outbound connections still being dialled.
    pub max_pending_outgoing: u32,
    /// How long a connection may take to be set up (TCP, noise, yamux), both ways: a peer
    /// that opens connections and says nothing holds a pending place no longer.
    pub handshake_timeout_secs: u64,
    /// Streams on one connection (each call is one; yamux's own default is 512).
    pub max_streams_per_connection: usize,
    /// Kademlia requests one peer may send per second, on average...
    pub dht_requests_per_sec: u32,
    /// ...and in a burst. Requests beyond are not answered.
    pub dht_request_burst: u32,
    /// Offer index requests (lookups and stores) one peer may send per second...
    pub index_requests_per_sec: u32,
    /// ...and in a burst. Requests beyond are refused.
    pub index_request_burst: u32,
    /// Offers this node stores on behalf of one peer (the peer that sent them).
    pub records_per_peer: usize,
    /// Provider records this node stores for one provider.
    pub provider_records_per_peer: usize,
    /// How long a peer that keeps sending Kademlia requests far over its rate (another
    /// burst's worth after being refused) is disconnected and refused.
    pub block_secs: u64,
    /// Call invitations one peer may send per second, on average...
    pub call_invites_per_sec: u32,
    /// ...and in a burst. Streams beyond are closed unread.
    pub call_invite_burst: u32,
    /// Call streams waiting for their invite at once, from all peers...
    pub max_pending_invites: usize,
    /// ...and from one peer, so that no peer can take every place.
    pub max_pending_invites_per_peer: usize,
    /// The largest Kademlia message read or written, in bytes.
    pub max_dht_packet_bytes: usize,
    /// The largest call frame read, in bytes.
    pub max_call_frame_bytes: usize,
    /// Log a refusal at most once per peer and limit in this many seconds.
    pub refusal_log_interval_secs: u64,
}

impl Default for LimitsSection {
    fn default() -> Self {
        LimitsSection {
            max_connections_per_peer: 6,
            max_incoming_connections: 4096,
            max_pending_incoming: 256,
            max_pending_outgoing: 512,
            handshake_timeout_secs: 10,
            max_streams_per_connection: 4096,
            dht_requests_per_sec: 200,
            dht_request_burst: 1000,
            index_requests_per_sec: 100,
            index_request_burst: 400,
            records_per_peer: 256,
            provider_records_per_peer: 256,
            block_secs: 60,
            call_invites_per_sec: 200,
            call_invite_burst: 400,
            max_pending_invites: 256,
            max_pending_invites_per_peer: 32,
            max_dht_packet_bytes: 2 * MAX_SIGNED_OFFER_BYTES,
            max_call_frame_bytes: MAX_FRAME_BYTES,
            refusal_log_interval_secs: 60,
        }
    }
}

impl LimitsSection {
    /// Checks every field; the error names the first bad one.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let positive = [
            (
                "limits.max_connections_per_peer",
                u64::from(self.max_connections_per_peer),
            ),
            (
                "limits.max_incoming_connections",
                u64::from(self.max_incoming_connections),
            ),
            (
                "limits.max_pending_incoming",
                u64::from(self.max_pending_incoming),
            ),
            (
                "limits.max_pending_outgoing",
                u64::from(self.max_pending_outgoing),
            ),
            ("limits.handshake_timeout_secs", self.handshake_timeout_secs),
            (
                "limits.max_streams_per_connection",
                self.max_streams_per_connection as u64,
            ),
            (
                "limits.dht_requests_per_sec",
                u64::from(self.dht_requests_per_sec),
            ),
            (
                "limits.dht_request_burst",
                u64::from(self.dht_request_burst),
            ),
            (
                "limits.index_requests_per_sec",
                u64::from(self.index_requests_per_sec),
            ),
            (
                "limits.index_request_burst",
                u64::from(self.index_request_burst),
            ),
            ("limits.records_per_peer", self.records_per_peer as u64),
            (
                "limits.provider_records_per_peer",
                self.provider_records_per_peer as u64,
            ),
            (
                "limits.call_invites_per_sec",
                u64::from(self.call_invites_per_sec),
            ),
            (
                "limits.call_invite_burst",
                u64::from(self.call_invite_burst),
            ),
            (
                "limits.max_pending_invites",
                self.max_pending_invites as u64,
            ),
            (
                "limits.max_pending_invites_per_peer",
                self.max_pending_invites_per_peer as u64,
            ),
            (
                "limits.refusal_log_interval_secs",
                self.refusal_log_interval_secs,
            ),
        ];
        if let Some((field, _)) = positive.iter().find(|(_, value)| *value == 0) {
            return Err(ConfigError::Invalid {
                field: (*field).to_owned(),
                reason: "must be greater than zero".into(),
            });
        }
        if !(MIN_DHT_PACKET_LIMIT..=MAX_DHT_PACKET_LIMIT).contains(&self.max_dht_packet_bytes) {
            return Err(ConfigError::Invalid {
                field: "limits.max_dht_packet_bytes".into(),
                reason: format!(
                    "must be between {MIN_DHT_PACKET_LIMIT} (an offer of the largest size \
                     and its envelope) and {MAX_DHT_PACKET_LIMIT}"
                ),
            });
        }
        if !(MIN_CALL_FRAME_LIMIT..=MAX_FRAME_BYTES).contains(&self.max_call_frame_bytes) {
            return Err(ConfigError::Invalid {
                field: "limits.max_call_frame_bytes".into(),
                reason: format!(
                    "must be between {MIN_CALL_FRAME_LIMIT} (an invite with the largest SDP \
                     offer) and {MAX_FRAME_BYTES} (the protocol's limit)"
                ),
            });
        }
        Ok(())
    }

    /// How often a refusal may be logged per peer and limit.
    pub fn refusal_log_interval(&self) -> Duration {
        Duration::from_secs(self.refusal_log_interval_secs.max(1))
    }
}

/// A token bucket per peer: `rate` tokens a second up to `burst`; each request takes one.
#[derive(Debug)]
pub struct PeerRates {
    rate: f64,
    burst: f64,
    peers: HashMap<PeerId, Bucket>,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl PeerRates {
    /// `per_sec` requests a second on average, `burst` at once.
    pub fn new(per_sec: u32, burst: u32) -> PeerRates {
        PeerRates {
            rate: f64::from(per_sec.max(1)),
            burst: f64::from(burst.max(1)),
            peers: HashMap::new(),
        }
    }

    /// Whether `peer` may make one more request at `now` (and takes its token if so).
    pub fn allow(&mut self, peer: PeerId, now: Instant) -> bool {
        if !self.peers.contains_key(&peer) && self.peers.len() >= MAX_TRACKED_PEERS {
            self.forget_idle(now);
            if self.peers.len() >= MAX_TRACKED_PEERS {
                // Connection limits keep the peers far fewer than this; if not, a new peer
                // waits until someone goes idle.
                return false;
            }
        }
        let (rate, burst) = (self.rate, self.burst);
        let bucket = self.peers.entry(peer).or_insert(Bucket {
            tokens: burst,
            at: now,
        });
        bucket.refill(now, rate, burst);
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Forgets peers whose bucket has filled up again: they are as if new.
    fn forget_idle(&mut self, now: Instant) {
        let (rate, burst) = (self.rate, self.burst);
        self.peers.retain(|_, bucket| {
            bucket.refill(now, rate, burst);
            bucket.tokens < burst
        });
    }

    /// Peers tracked now.
    pub fn tracked(&self) -> usize {
        self.peers.len()
    }
}

impl Bucket {
    fn refill(&mut self, now: Instant, rate: f64, burst: f64) {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * rate).min(burst);
        self.at = now;
    }
}

/// Decides when a refusal is worth a log line: once per peer, limit and interval.
#[derive(Debug)]
pub struct RefusalLog {
    interval: Duration,
    last: HashMap<(Option<PeerId>, &'static str), Logged>,
}

#[derive(Debug, Clone, Copy)]
struct Logged {
    at: Instant,
    /// Refusals since the last line.
    unlogged: u64,
}

impl RefusalLog {
    /// At most one line per peer and limit every `interval`.
    pub fn new(interval: Duration) -> RefusalLog {
        RefusalLog {
            interval,
            last: HashMap::new(),
        }
    }

    /// Notes one refusal of `peer` (or of an unknown peer) by `limit`; `Some(n)` if it
    /// should be logged now, with `n` the refusals of the same kind not logged since the
    /// last line.
    pub fn refused(
        &mut self,
        peer: Option<PeerId>,
        limit: &'static str,
        now: Instant,
    ) -> Option<u64> {
        let key = (peer, limit);
        if let Some(logged) = self.last.get_mut(&key) {
            if now.saturating_duration_since(logged.at) < self.interval {
                logged.unlogged += 1;
                return None;
            }
            let unlogged = logged.unlogged;
            *logged = Logged {
                at: now,
                unlogged: 0,
            };
            return Some(unlogged);
        }
        if self.last.len() >= MAX_LOGGED {
            let interval = self.interval;
            self.last
                .retain(|_, logged| now.saturating_duration_since(logged.at) < interval);
            if self.last.len() >= MAX_LOGGED {
                // Thousands of peers refused within one interval: they are counted in the
                // metrics, and the log says so for the ones already in it.
                return None;
            }
        }
        self.last.insert(
            key,
            Logged {
                at: now,
                unlogged: 0,
            },
        );
        Some(0)
    }
}

/// Logs a refusal for `reason` if `log` says it is time: at `warn` level for a limit a peer
/// ran into (`warn`), else at `info` (an invalid record, which honest peers send too, such
/// as a copy older than the one stored). `unlogged` says how many went unlogged since.
pub(crate) fn log_refusal(
    log: &mut RefusalLog,
    peer: Option<PeerId>,
    reason: &'static str,
    detail: &dyn std::fmt::Display,
    warn: bool,
) {
    let Some(unlogged) = log.refused(peer, reason, Instant::now()) else {
        return;
    };
    let peer = peer
        .map(|p| p.to_string())
        .unwrap_or_else(|| "unknown".into());
    if warn {
        tracing::warn!(%peer, reason, unlogged, "refused: {detail} (logged once per peer and interval)");
    } else {
        tracing::info!(%peer, reason, unlogged, "refused: {detail} (logged once per peer and interval)");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_allows_its_burst_then_its_rate() {
        let mut rates = PeerRates::new(10, 5);
        let peer = PeerId::random();
        let start = Instant::now();
        let allowed = (0..20).filter(|_| rates.allow(peer, start)).count();
        assert_eq!(allowed, 5, "the burst, then nothing at the same instant");
        let later = start + Duration::from_millis(500);
        let allowed = (0..20).filter(|_| rates.allow(peer, later)).count();
        assert_eq!(
            allowed, 5,
            "half a second at 10/s refills 5, capped by the burst"
        );
        let other = PeerId::random();
        assert!(rates.allow(other, later), "each peer has its own bucket");
    }

    #[test]
    fn idle_peers_are_forgotten_when_the_table_is_full() {
        let mut rates = PeerRates::new(1000, 1);
        let start = Instant::now();
        for _ in 0..MAX_TRACKED_PEERS {
            assert!(rates.allow(PeerId::random(), start));
        }
        assert!(
            !rates.allow(PeerId::random(), start),
            "a full table of busy peers refuses a new one"
        );
        assert!(rates.allow(PeerId::random(), start + Duration::from_secs(1)));
        assert_eq!(rates.tracked(), 1, "the idle ones were forgotten");
    }

    #[test]
    fn refusals_are_logged_once_per_peer_and_interval() {
        let mut log = RefusalLog::new(Duration::from_secs(60));
        let peer = PeerId::random();
        let start = Instant::now();
        assert_eq!(log.refused(Some(peer), "dht_requests", start), Some(0));
        for _ in 0..1000 {
            assert_eq!(log.refused(Some(peer), "dht_requests", start), None);
        }
        assert_eq!(
            log.refused(Some(peer), "call_invites", start),
            Some(0),
            "another limit is logged on its own"
        );
        assert_eq!(
            log.refused(Some(peer), "dht_requests", start + Duration::from_secs(61)),
            Some(1000),
            "the next line says how many went unlogged"
        );
    }

    #[test]
    fn the_defaults_are_valid_and_bad_values_name_their_field() {
        LimitsSection::default().validate().unwrap();
        let field = |limits: LimitsSection| match limits.validate() {
            Err(ConfigError::Invalid { field, .. }) => field,
            other => panic!("expected an invalid field, got {other:?}"),
        };
        assert_eq!(
            field(LimitsSection {
                dht_requests_per_sec: 0,
                ..LimitsSection::default()
            }),
            "limits.dht_requests_per_sec"
        );
        assert_eq!(
            field(LimitsSection {
                max_call_frame_bytes: MAX_FRAME_BYTES + 1,
                ..LimitsSection::default()
            }),
            "limits.max_call_frame_bytes"
        );
        assert_eq!(
            field(LimitsSection {
                max_dht_packet_bytes: 100,
                ..LimitsSection::default()
            }),
            "limits.max_dht_packet_bytes"
        );
    }
}
