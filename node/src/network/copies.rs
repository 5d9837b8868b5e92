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

use std::collections::HashMap;
use std::time::Instant;

use libp2p::PeerId;
use libp2p::kad::RecordKey;

/// Most nodes remembered per key. Past it, those whose copies expire soonest are
/// forgotten (their copies may then be returned until they expire).
pub(super) const MAX_HOLDERS_PER_KEY: usize = 200;

/// The nodes holding a copy of each of this node's records, and when each copy expires.
#[derive(Debug, Default)]
pub(super) struct CopyHolders {
    by_key: HashMap<RecordKey, HashMap<PeerId, Instant>>,
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
