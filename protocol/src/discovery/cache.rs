//! The caller's cache of verified offers: a repeated question is answered at once, with
//! the age of what it says, while the driver asks the network again.
//!
//! The cache keeps the answers to recent queries (which providers, how many matched) and,
//! apart, the newest verified offer of each provider it has seen: an answer is rebuilt
//! from the newest offers each time it is read, so a newer offer learnt by any later
//! walk (a new price, a withdrawal) replaces the old one in every cached answer at once,
//! and an offer that has expired is never returned. It is bounded in answers and in
//! offers (least recently used answers go first, then offers no answer names), and an
//! answer older than `max_age` is dropped rather than returned.
//!
//! Reading an answer older than `refresh_after` (by default, any answer) tells the driver
//! to refresh it, one refresh at a time: the stale-while-revalidate of HTTP caches
//! (RFC 5861). OpenDHT keeps callers' copies
//! fresh with listeners instead, which costs every holder a subscription per caller;
//! here a holder keeps nothing per caller.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::query::{OfferQuery, ranked};
use crate::identity::ProviderId;
use crate::signed::SignedOffer;
use crate::time::UnixTime;

/// The bounds of a [`Cache`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CacheConfig {
    /// Queries whose answers are kept.
    pub max_answers: usize,
    /// Offers kept.
    pub max_offers: usize,
    /// An answer read this long after it was fetched is refreshed in the background
    /// (zero: every read of it, one refresh at a time).
    pub refresh_after: Duration,
    /// An answer older than this is not returned.
    pub max_age: Duration,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            max_answers: 256,
            max_offers: 4096,
            refresh_after: Duration::ZERO,
            max_age: Duration::from_secs(600),
        }
    }
}

/// An answer read from the cache.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hit {
    /// The newest offers of the providers of the answer, unexpired and still matching,
    /// best first by the query's policy.
    pub offers: Vec<SignedOffer>,
    /// How many offers matched when the answer was fetched.
    pub matching: usize,
    /// Since the answer was fetched from the network.
    pub age: Duration,
    /// The answer should be fetched again.
    pub refresh: bool,
}

#[derive(Debug)]
struct Cached {
    providers: Vec<ProviderId>,
    matching: usize,
    fetched: Instant,
    used: Instant,
    refreshing: bool,
}

/// A caller's cache of answers and verified offers.
#[derive(Debug)]
pub struct Cache {
    config: CacheConfig,
    answers: HashMap<OfferQuery, Cached>,
    offers: HashMap<ProviderId, SignedOffer>,
}

impl Cache {
    /// An empty cache with these bounds.
    pub fn new(config: CacheConfig) -> Cache {
        Cache {
            config,
            answers: HashMap::new(),
            offers: HashMap::new(),
        }
    }

    /// The answer to `query` if one is cached and young enough, at `now` (monotonic) and
    /// `now_unix` (for the offers' expiry). A hit that calls for a refresh is marked as
    /// being refreshed, so that only the first such read asks for one.
    pub fn get(&mut self, query: &OfferQuery, now: Instant, now_unix: UnixTime) -> Option<Hit> {
        let config = self.config;
        let cached = self.answers.get_mut(query)?;
        let age = now.saturating_duration_since(cached.fetched);
        if age > config.max_age {
            self.answers.remove(query);
            return None;
        }
        cached.used = now;
        let offers: Vec<&SignedOffer> = cached
            .providers
            .iter()
            .filter_map(|provider| self.offers.get(provider))
            .filter(|offer| !offer.is_expired(now_unix) && query.concerns(offer))
            .collect();
        let offers: Vec<SignedOffer> = ranked(offers, query).into_iter().cloned().collect();
        if offers.is_empty() && !cached.providers.is_empty() {
            // Everything it named expired or changed: ask the network, not the cache.
            self.answers.remove(query);
            return None;
        }
        let refresh = age >= config.refresh_after && !cached.refreshing;
        cached.refreshing |= refresh;
        Some(Hit {
            offers,
            matching: cached.matching,
            age,
            refresh,
        })
    }

    /// Keeps the answer to `query` fetched at `now`: `offers` (verified) of which
    /// `matching` matched.
    pub fn insert(
        &mut self,
        query: OfferQuery,
        offers: &[SignedOffer],
        matching: usize,
        now: Instant,
    ) {
        for offer in offers {
            self.observe(offer);
        }
        let providers = offers.iter().map(SignedOffer::provider).collect();
        self.answers.insert(
            query,
            Cached {
                providers,
                matching,
                fetched: now,
                used: now,
                refreshing: false,
            },
        );
        self.evict();
    }

    /// Notes a refresh of `query` that failed, so that a later read may ask again.
    pub fn refresh_failed(&mut self, query: &OfferQuery) {
        if let Some(cached) = self.answers.get_mut(query) {
            cached.refreshing = false;
        }
    }

    /// Notes a verified offer seen anywhere: it replaces an older one of its provider.
    pub fn observe(&mut self, offer: &SignedOffer) {
        match self.offers.get_mut(&offer.provider()) {
            Some(held) if held.seq() >= offer.seq() => {}
            Some(held) => *held = offer.clone(),
            None => {
                self.offers.insert(offer.provider(), offer.clone());
            }
        }
    }

    /// Answers kept.
    pub fn len(&self) -> usize {
        self.answers.len()
    }

    /// Whether nothing is kept.
    pub fn is_empty(&self) -> bool {
        self.answers.is_empty()
    }

    /// Offers kept.
    pub fn offers(&self) -> usize {
        self.offers.len()
    }

    /// The answer used longest ago.
    fn least_recently_used(&self) -> Option<OfferQuery> {
        self.answers
            .iter()
            .min_by_key(|(_, cached)| cached.used)
            .map(|(query, _)| query.clone())
    }

    fn evict(&mut self) {
        while self.answers.len() > self.config.max_answers {
            let Some(oldest) = self.least_recently_used() else {
                break;
            };
            self.answers.remove(&oldest);
        }
        if self.offers.len() > self.config.max_offers {
            let named: std::collections::HashSet<ProviderId> = self
                .answers
                .values()
                .flat_map(|cached| cached.providers.iter().copied())
                .collect();
            self.offers.retain(|provider, _| named.contains(provider));
        }
        while self.offers.len() > self.config.max_offers {
            // Every offer is named by an answer: drop the least recently used answer.
            let Some(oldest) = self.least_recently_used() else {
                break;
            };
            if let Some(cached) = self.answers.remove(&oldest) {
                for provider in cached.providers {
                    let still_named = self
                        .answers
                        .values()
                        .any(|other| other.providers.contains(&provider));
                    if !still_named {
                        self.offers.remove(&provider);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SecretKey;
    use crate::destination::E164;
    use crate::offer::ServiceKind;
    use crate::offer::tests::{route, sample_offer};
    use crate::ranking::{Policy, PolicyKind};

    const NOW: UnixTime = UnixTime(2000);

    fn offer(seed: u8, seq: u64, per_minute: u64) -> SignedOffer {
        let key = SecretKey::from_seed(&[seed; 32]);
        let mut offer = sample_offer(&key, vec![route("+44", per_minute)]);
        offer.seq = seq;
        SignedOffer::sign(offer, &key).unwrap()
    }

    fn query(number: &str) -> OfferQuery {
        OfferQuery::number(
            E164::parse(number).unwrap(),
            vec![ServiceKind::WEBRTC_TO_PSTN],
            Policy {
                kind: PolicyKind::Cheapest,
                ..Policy::default()
            },
            10,
        )
    }

    fn cache(change: impl FnOnce(&mut CacheConfig)) -> Cache {
        let mut config = CacheConfig::default();
        change(&mut config);
        Cache::new(config)
    }

    #[test]
    fn a_repeated_query_is_answered_with_its_age_and_refreshed_once() {
        let start = Instant::now();
        let mut cache = cache(|c| c.refresh_after = Duration::from_secs(10));
        let q = query("+447700900123");
        assert_eq!(cache.get(&q, start, NOW), None);
        cache.insert(q.clone(), &[offer(1, 1, 5), offer(2, 1, 3)], 7, start);
        let young = cache.get(&q, start + Duration::from_secs(2), NOW);
        let young = young.unwrap_or_else(|| panic!("cached"));
        assert_eq!(young.age, Duration::from_secs(2));
        assert!(!young.refresh);
        assert_eq!(young.matching, 7);
        assert_eq!(young.offers[0], offer(2, 1, 3), "best first");
        let old = cache.get(&q, start + Duration::from_secs(11), NOW);
        assert!(old.is_some_and(|hit| hit.refresh));
        let again = cache.get(&q, start + Duration::from_secs(12), NOW);
        assert!(
            again.is_some_and(|hit| !hit.refresh),
            "one refresh at a time"
        );
        cache.refresh_failed(&q);
        let retry = cache.get(&q, start + Duration::from_secs(13), NOW);
        assert!(retry.is_some_and(|hit| hit.refresh));
        assert_eq!(cache.get(&query("+447700900999"), start, NOW), None);
    }

    #[test]
    fn a_newer_offer_seen_anywhere_replaces_the_cached_one() {
        let start = Instant::now();
        let mut cache = cache(|_| {});
        let q = query("+447700900123");
        cache.insert(q.clone(), &[offer(1, 1, 5), offer(2, 1, 3)], 2, start);
        cache.observe(&offer(2, 2, 9));
        cache.observe(&offer(1, 0, 1));
        let hit = cache
            .get(&q, start, NOW)
            .unwrap_or_else(|| panic!("cached"));
        assert_eq!(hit.offers, [offer(1, 1, 5), offer(2, 2, 9)]);
        let withdrawal = {
            let key = SecretKey::from_seed(&[1; 32]);
            let w = offer(1, 1, 5).offer().withdrawal(UnixTime(1500));
            SignedOffer::sign(w, &key).unwrap()
        };
        cache.observe(&withdrawal);
        let hit = cache
            .get(&q, start, NOW)
            .unwrap_or_else(|| panic!("cached"));
        assert_eq!(
            hit.offers,
            [offer(2, 2, 9)],
            "a withdrawn offer is not shown"
        );
    }

    #[test]
    fn answers_expire_with_their_offers_and_their_age() {
        let start = Instant::now();
        let mut cache = cache(|c| c.max_age = Duration::from_secs(60));
        let q = query("+447700900123");
        cache.insert(q.clone(), &[offer(1, 1, 5)], 1, start);
        assert_eq!(
            cache.get(&q, start, UnixTime(4600)),
            None,
            "the offer expired"
        );
        cache.insert(q.clone(), &[offer(1, 1, 5)], 1, start);
        assert_eq!(cache.get(&q, start + Duration::from_secs(61), NOW), None);
        assert!(cache.is_empty());
    }

    #[test]
    fn the_cache_is_bounded_least_recently_used_first() {
        let start = Instant::now();
        let mut cache = cache(|c| {
            c.max_answers = 2;
            c.max_offers = 3;
        });
        let (a, b, c) = (
            query("+447700900001"),
            query("+447700900002"),
            query("+447700900003"),
        );
        cache.insert(a.clone(), &[offer(1, 1, 1)], 1, start);
        cache.insert(
            b.clone(),
            &[offer(2, 1, 1)],
            1,
            start + Duration::from_secs(1),
        );
        let _ = cache.get(&a, start + Duration::from_secs(2), NOW);
        cache.insert(
            c.clone(),
            &[offer(3, 1, 1), offer(4, 1, 1)],
            2,
            start + Duration::from_secs(3),
        );
        assert_eq!(cache.len(), 2);
        assert!(
            cache.get(&b, start + Duration::from_secs(3), NOW).is_none(),
            "b was least used"
        );
        assert!(cache.offers() <= 3);
        assert!(cache.get(&c, start + Duration::from_secs(3), NOW).is_some());
    }
}
