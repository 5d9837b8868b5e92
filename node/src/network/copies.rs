//! Where a publisher has put copies of its own offer.
//!
//! A publication goes to the nodes then closest to the offer's key. When the network
//! changes (it grows, or nodes join nearer the key) the next publication's closest nodes
//! are partly others, and the nodes left out keep the earlier copy until it expires. A
//! lookup stops at its first valid copies (`dht.record_quorum`) and walks towards the key
//! through exactly those nodes, so it can return the earlier copy: an old price, or an
//! offer since withdrawn. Measured in the simulator, after a network grew from 156 to
//! 1,056 nodes 31 % of the offers lookups returned were such copies; at 2,056 nodes, 77 %.
//!
//! So each publication also goes to every node that acknowledged an earlier copy still
//! alive, and replaces it there. (For that, libp2p's record TTL is off: see
//! `behaviour.rs`.)
//!
//! Finding the closest nodes is a Kademlia walk: tens of requests, most on new
//! connections. A change soon after a walk (a new price, a withdrawal) goes to the holders
//! that walk found without walking again, as a BitTorrent DHT node announces to the nodes
//! its `get_peers` found within the ten minutes their tokens last (BEP 5). Measured in
//! the simulator's market, each publication's walks were a burst of work that slowed the
//! lookups running then to several times their usual time. Nodes that join nearer the key
//! meanwhile are handed what the holders hold (`index::on_new_peer`), the periodic
//! republication walks again, and a change that reaches fewer than half the holders it was
//! sent to walks at once.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use libp2p::PeerId;
use libp2p::kad::RecordKey;

/// Most nodes remembered per key. Past it, those whose copies expire soonest are
/// forgotten (their copies may then be returned until they expire).
pub(super) const MAX_HOLDERS_PER_KEY: usize = 200;

/// How long after a walk toward a key a change is sent to the holders it found instead
/// of walking again: BEP 5's token lifetime.
pub(super) const WALK_REUSED_FOR: Duration = Duration::from_secs(600);

/// Where a publication goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Placement {
    /// To the nodes a new walk finds closest to the key, and every earlier copy's holder:
    /// a first publication, and the periodic republication that follows the network's
    /// changes.
    Find,
    /// To the holders of the earlier copy when a walk found them within
    /// [`WALK_REUSED_FOR`], otherwise as [`Placement::Find`]: a change of an offer
    /// published a moment ago.
    Known,
}

/// The nodes holding a copy of each of this node's records, and when each copy expires.
#[derive(Debug, Default)]
pub(super) struct CopyHolders {
    by_key: HashMap<RecordKey, HashMap<PeerId, Instant>>,
    /// When a walk toward each key last found the nodes closest to it.
    walked: HashMap<RecordKey, Instant>,
}

impl CopyHolders {
    /// The nodes a new copy of `key` goes to: the `closest` found now, then every node
    /// still holding an earlier copy, each once.
    pub(super) fn targets(
        &mut self,
        key: &RecordKey,
        closest: impl IntoIterator<Item = PeerId>,
        now: Instant,
    ) -> Vec<PeerId> {
        let mut targets: Vec<PeerId> = Vec::new();
        for peer in closest {
            if !targets.contains(&peer) {
                targets.push(peer);
            }
        }
        if let Some(holders) = self.by_key.get_mut(key) {
            holders.retain(|_, expires| *expires > now);
            let earlier: Vec<PeerId> = holders
                .keys()
                .filter(|p| !targets.contains(p))
                .copied()
                .collect();
            targets.extend(earlier);
        }
        targets
    }

    /// The nodes a change of `key` goes to without a walk: every holder of a live copy,
    /// if a walk toward the key found the closest nodes less than [`WALK_REUSED_FOR`] ago
    /// and one of them is still known to hold it. `None`: walk.
    pub(super) fn known(&mut self, key: &RecordKey, now: Instant) -> Option<Vec<PeerId>> {
        let walked = *self.walked.get(key)?;
        if now.saturating_duration_since(walked) >= WALK_REUSED_FOR {
            self.walked.remove(key);
            return None;
        }
        let holders = self.targets(key, [], now);
        (!holders.is_empty()).then_some(holders)
    }

    /// Notes that a walk toward `key` found the nodes closest to it at `now`.
    pub(super) fn walked(&mut self, key: &RecordKey, now: Instant) {
        self.walked.insert(key.clone(), now);
    }

    /// Notes how a change sent to the known holders of `key` went: if fewer than half of
    /// the `sent` acknowledged it, the holders a walk found are mostly gone and the change
    /// must find the closest nodes anew (`true`). If any failed, the next change walks.
    pub(super) fn known_reached(
        &mut self,
        key: &RecordKey,
        sent: usize,
        acknowledged: usize,
    ) -> bool {
        if acknowledged < sent {
            self.walked.remove(key);
        }
        acknowledged * 2 < sent
    }

    /// Notes that `peers` acknowledged a copy of `key` that lives until `expires`.
    pub(super) fn stored(
        &mut self,
        key: &RecordKey,
        peers: impl IntoIterator<Item = PeerId>,
        expires: Instant,
    ) {
        let holders = self.by_key.entry(key.clone()).or_default();
        for peer in peers {
            holders.insert(peer, expires);
        }
        if holders.len() > MAX_HOLDERS_PER_KEY {
            let mut by_expiry: Vec<(PeerId, Instant)> = holders.drain().collect();
            by_expiry.sort_by_key(|(_, expires)| std::cmp::Reverse(*expires));
            holders.extend(by_expiry.into_iter().take(MAX_HOLDERS_PER_KEY));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn peers(n: usize) -> Vec<PeerId> {
        (0..n).map(|_| PeerId::random()).collect()
    }

    /// One offer's key, the time now, and no holders yet.
    fn offer_key_now_and_no_holders() -> (RecordKey, Instant, CopyHolders) {
        (
            RecordKey::new(&b"offer"),
            Instant::now(),
            CopyHolders::default(),
        )
    }

    #[test]
    fn a_new_copy_goes_to_the_closest_then_to_earlier_holders_each_once() {
        let (key, now, mut holders) = offer_key_now_and_no_holders();
        let (earlier, now_closest) = (peers(3), peers(2));
        holders.stored(&key, earlier.clone(), now + Duration::from_secs(60));

        // One earlier holder is still among the closest.
        let closest = [now_closest.clone(), vec![earlier[0]]].concat();
        let targets = holders.targets(&key, closest.clone(), now);

        assert_eq!(targets[..3], closest[..]);
        assert_eq!(targets.len(), 5, "{targets:?}");
        assert!(earlier.iter().all(|p| targets.contains(p)));
    }

    #[test]
    fn a_holder_whose_copy_expired_is_forgotten() {
        let (key, now, mut holders) = offer_key_now_and_no_holders();
        let (gone, alive) = (peers(1), peers(1));
        holders.stored(&key, gone.clone(), now + Duration::from_secs(1));
        holders.stored(&key, alive.clone(), now + Duration::from_secs(60));

        let later = now + Duration::from_secs(2);
        assert_eq!(holders.targets(&key, [], later), alive);
    }

    #[test]
    fn other_keys_have_their_own_holders() {
        let now = Instant::now();
        let mut holders = CopyHolders::default();
        holders.stored(
            &RecordKey::new(&b"a"),
            peers(2),
            now + Duration::from_secs(60),
        );
        assert!(holders.targets(&RecordKey::new(&b"b"), [], now).is_empty());
    }

    #[test]
    fn a_change_soon_after_a_walk_goes_to_the_holders_it_found() {
        let (key, now, mut holders) = offer_key_now_and_no_holders();
        let found = peers(3);
        // No walk yet: walk.
        assert_eq!(holders.known(&key, now), None);

        holders.walked(&key, now);
        holders.stored(&key, found.clone(), now + Duration::from_secs(3600));
        let soon = now + WALK_REUSED_FOR - Duration::from_secs(1);
        let known = holders.known(&key, soon).expect("the holders found");
        assert_eq!(sorted(known), sorted(found));

        // Once the walk is old, the next change walks again.
        assert_eq!(holders.known(&key, now + WALK_REUSED_FOR), None);
        assert_eq!(
            holders.known(&key, soon),
            None,
            "forgotten, not only skipped"
        );
    }

    #[test]
    fn a_walk_whose_holders_all_expired_is_not_reused() {
        let (key, now, mut holders) = offer_key_now_and_no_holders();
        holders.walked(&key, now);
        holders.stored(&key, peers(2), now + Duration::from_secs(1));
        assert_eq!(holders.known(&key, now + Duration::from_secs(2)), None);
    }

    #[test]
    fn a_change_most_known_holders_missed_walks_now_and_one_any_missed_walks_next() {
        let (key, now, mut holders) = offer_key_now_and_no_holders();
        let later = now + Duration::from_secs(1);
        holders.stored(&key, peers(4), now + Duration::from_secs(3600));

        holders.walked(&key, now);
        assert!(!holders.known_reached(&key, 4, 4), "all reached");
        assert!(
            holders.known(&key, later).is_some(),
            "the walk still serves"
        );

        assert!(
            !holders.known_reached(&key, 4, 2),
            "half reached: enough for now"
        );
        assert_eq!(
            holders.known(&key, later),
            None,
            "but the next change walks"
        );

        holders.walked(&key, now);
        assert!(holders.known_reached(&key, 4, 1), "most missed: walk now");
        assert_eq!(holders.known(&key, later), None);
    }

    fn sorted(mut peers: Vec<PeerId>) -> Vec<PeerId> {
        peers.sort();
        peers
    }

    #[test]
    fn past_the_limit_the_copies_expiring_soonest_are_forgotten() {
        let (key, now, mut holders) = offer_key_now_and_no_holders();
        let soon = peers(MAX_HOLDERS_PER_KEY);
        holders.stored(&key, soon.clone(), now + Duration::from_secs(10));
        let late = peers(5);
        holders.stored(&key, late.clone(), now + Duration::from_secs(20));

        let targets = holders.targets(&key, [], now);
        assert_eq!(targets.len(), MAX_HOLDERS_PER_KEY);
        assert!(late.iter().all(|p| targets.contains(p)));
    }
}
