//! Peers whose offer-index requests failed lately, so that lookups stop asking them.
//!
//! On the internet peers die, and some cannot be dialled at all (behind NAT). Such a peer
//! stays in Kademlia's routing tables (libp2p-kad keeps a peer with its last address
//! however often dialling it fails, and evicts it only when a live peer needs its place)
//! and in the closer peers other nodes name. Without a memory of failures, every lookup
//! asks it again and holds one of its places in flight until the request fails.
//!
//! So a peer whose request failed (the dial failed, the request timed out, the connection
//! closed before the answer, the answer could not be read: libp2p request-response's
//! `OutboundFailure`) is remembered for [`REMEMBER`] and left out of the peers lookups
//! start from and take from answers. It is forgotten early when it answers a request or
//! connects to this node. The memory holds at most [`CAPACITY`] peers, the oldest failure
//! forgotten first. Time is an argument, so that it is tested without a clock.

use std::collections::{BTreeMap, HashMap};
use std::hash::Hash;
use std::time::{Duration, Instant};

/// How long a failed peer is left out. Long enough that the lookups of the next minute
/// do not wait on a peer that just failed; short enough that a peer back from a restart,
/// or whose NAT opened, is asked again soon even if it never connects to this node.
pub(super) const REMEMBER: Duration = Duration::from_secs(60);

/// The most peers remembered: several times the routing table of a large network, and
/// under 1 MiB (a peer id held twice and an instant, about 200 bytes a peer).
pub(super) const CAPACITY: usize = 4096;

/// Peers whose requests failed, and when; bounded in size and in time.
#[derive(Debug)]
pub(super) struct Unreachable<P> {
    /// Each remembered peer, with its place in `order` and when it failed.
    peers: HashMap<P, (u64, Instant)>,
    /// The remembered peers, oldest failure first.
    order: BTreeMap<u64, P>,
    next: u64,
    remember: Duration,
    capacity: usize,
}

impl<P: Clone + Eq + Hash> Default for Unreachable<P> {
    fn default() -> Self {
        Unreachable::new(REMEMBER, CAPACITY)
    }
}

impl<P: Clone + Eq + Hash> Unreachable<P> {
    /// A memory that keeps a failed peer `remember` long, and at most `capacity` peers.
    pub(super) fn new(remember: Duration, capacity: usize) -> Unreachable<P> {
        Unreachable {
            peers: HashMap::new(),
            order: BTreeMap::new(),
            next: 0,
            remember,
            capacity: capacity.max(1),
        }
    }

    /// A request to `peer` failed at `now`: it is left out until `now + remember`.
    pub(super) fn failed(&mut self, peer: P, now: Instant) {
        self.forget(&peer);
        self.expire(now);
        while self.peers.len() >= self.capacity {
            let Some((_, oldest)) = self.order.pop_first() else {
                break;
            };
            self.peers.remove(&oldest);
        }
        self.next += 1;
        self.order.insert(self.next, peer.clone());
        self.peers.insert(peer, (self.next, now));
    }

    /// `peer` answered a request or connected: it is asked again at once.
    pub(super) fn forget(&mut self, peer: &P) {
        if let Some((place, _)) = self.peers.remove(peer) {
            self.order.remove(&place);
        }
    }

    /// Whether `peer` failed less than `remember` before `now`.
    pub(super) fn contains(&self, peer: &P, now: Instant) -> bool {
        self.peers
            .get(peer)
            .is_some_and(|(_, at)| now < *at + self.remember)
    }

    /// Peers remembered, those whose time is up but not yet dropped included.
    pub(super) fn len(&self) -> usize {
        self.peers.len()
    }

    /// Drops the peers whose time is up (failures come in time order, oldest first).
    fn expire(&mut self, now: Instant) {
        while let Some((&place, peer)) = self.order.first_key_value() {
            match self.peers.get(peer) {
                Some((_, at)) if now < *at + self.remember => break,
                _ => {
                    if let Some(peer) = self.order.remove(&place) {
                        self.peers.remove(&peer);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: Duration = Duration::from_secs(1);

    #[test]
    fn a_failed_peer_is_left_out_for_a_minute_then_asked_again() {
        let now = Instant::now();
        let mut unreachable = Unreachable::default();
        unreachable.failed(1, now);
        assert!(unreachable.contains(&1, now));
        assert!(unreachable.contains(&1, now + REMEMBER - SECOND));
        assert!(!unreachable.contains(&1, now + REMEMBER));
        assert!(!unreachable.contains(&2, now), "only the peer that failed");
    }

    #[test]
    fn a_peer_that_answers_or_connects_is_forgotten_at_once() {
        let now = Instant::now();
        let mut unreachable = Unreachable::default();
        unreachable.failed(1, now);
        unreachable.failed(2, now);
        unreachable.forget(&1);
        assert!(!unreachable.contains(&1, now));
        assert!(unreachable.contains(&2, now));
        unreachable.forget(&3);
        assert_eq!(unreachable.len(), 1);
    }

    #[test]
    fn a_peer_that_fails_again_is_left_out_from_its_latest_failure() {
        let now = Instant::now();
        let mut unreachable = Unreachable::default();
        unreachable.failed(1, now);
        unreachable.failed(1, now + 30 * SECOND);
        assert!(unreachable.contains(&1, now + REMEMBER + 10 * SECOND));
        assert_eq!(unreachable.len(), 1);
    }

    #[test]
    fn past_its_capacity_the_oldest_failures_are_forgotten() {
        let now = Instant::now();
        let mut unreachable = Unreachable::new(REMEMBER, 3);
        for peer in 0..5u32 {
            unreachable.failed(peer, now + SECOND * peer);
        }
        let later = now + 5 * SECOND;
        assert_eq!(unreachable.len(), 3);
        assert!(!unreachable.contains(&0, later) && !unreachable.contains(&1, later));
        assert!((2..5).all(|peer| unreachable.contains(&peer, later)));
        // A peer failing again moves to the back: the next to go is the one after it.
        unreachable.failed(2, later);
        unreachable.failed(5, later);
        assert!(unreachable.contains(&2, later) && !unreachable.contains(&3, later));
    }

    #[test]
    fn peers_whose_time_is_up_make_room_before_anyone_is_evicted() {
        let now = Instant::now();
        let mut unreachable = Unreachable::new(10 * SECOND, 2);
        unreachable.failed(1, now);
        unreachable.failed(2, now + 5 * SECOND);
        // At 12 s the first has expired: it goes, and the second stays.
        unreachable.failed(3, now + 12 * SECOND);
        assert_eq!(unreachable.len(), 2);
        assert!(unreachable.contains(&2, now + 12 * SECOND));
        assert!(unreachable.contains(&3, now + 12 * SECOND));
    }
}
