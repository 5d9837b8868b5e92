//! The index a node holds for the keys it is close to: signed offers, what it admits, and
//! how it answers.
//!
//! Each key has a table of at most one offer per provider, the newest `seq` it has seen.
//! What a holder keeps is bounded, and the bounds favour offers it has held for long over
//! newcomers, so that a flood of freshly made keys cannot push the market out:
//!
//! - **per key**: at most `max_offers_per_key` providers; a newcomer beyond that is
//!   refused ([`Refusal::KeyFull`]) and nobody is evicted for it. Below `open_admission`
//!   newcomers enter at once; between the two they enter at `newcomers_per_minute` at
//!   most ([`Refusal::NewcomersThrottled`], with when to try again): the waiting-time
//!   admission of discv5's topic tables, without tickets, since offers are signed and a
//!   refused publisher simply publishes again.
//! - **per provider**: one offer under each key, replaced only by a higher `seq`; an offer
//!   already held is always replaced by its provider's newer one, even when the key is
//!   full, and keeps the date it was first held.
//! - **per sender**: a peer may store at most `per_sender` new entries of providers other
//!   than itself (read repair and replication, which hand over a whole key); its own
//!   offers do not count.
//! - **in all**: `max_bytes` of signed offers.
//!
//! Each entry keeps the time its provider was first held; answers carry the best of the
//! offers held longest beside the best of all ([`super::query::select`]), so callers
//! still see the long-standing market however many newcomers arrive, while newcomers are
//! judged by the callers' own history of calls with them. A newer offer
//! that no longer belongs under the key (a withdrawal, or a price list without the
//! country) replaces the old one and stays, unlisted, until it expires: it shadows the
//! old copy wherever another node still holds it.

use std::collections::HashMap;
use std::hash::Hash;
use std::time::{Duration, Instant};

use super::key::IndexKey;
use super::query::{OfferQuery, Selection, select};
use crate::identity::ProviderId;
use crate::signed::SignedOffer;
use crate::time::UnixTime;

/// The bounds of an [`Index`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IndexConfig {
    /// Providers held under one key.
    pub max_offers_per_key: usize,
    /// Below this many providers under a key, newcomers are admitted at once.
    pub open_admission: usize,
    /// Above `open_admission`, newcomers admitted per minute under one key.
    pub newcomers_per_minute: u32,
    /// New entries of other providers one peer may store.
    pub per_sender: usize,
    /// Bytes of signed offers held in all.
    pub max_bytes: usize,
    /// Keys held in all.
    pub max_keys: usize,
}

impl Default for IndexConfig {
    fn default() -> Self {
        IndexConfig {
            max_offers_per_key: 1024,
            open_admission: 512,
            newcomers_per_minute: 60,
            per_sender: 1024,
            max_bytes: 64 * 1024 * 1024,
            max_keys: 4096,
        }
    }
}

/// What happened to an offer that was admitted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admitted {
    /// A provider new to the key.
    Added,
    /// It replaced the provider's offer with a lower `seq`.
    Replaced { previous_seq: u64 },
    /// The same offer was already held.
    Unchanged,
}

/// Why an offer was not admitted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Refusal {
    #[error("the offer has no route under {key}")]
    NotUnderKey { key: IndexKey },
    #[error("seq {seq} does not replace the held offer's seq {held}")]
    Stale { seq: u64, held: u64 },
    #[error("{key} holds its limit of {limit} providers")]
    KeyFull { key: IndexKey, limit: usize },
    #[error("{key} admits {per_minute} new providers a minute; try again in {retry_after:?}")]
    NewcomersThrottled {
        key: IndexKey,
        per_minute: u32,
        retry_after: Duration,
    },
    #[error("the sender has stored its limit of {limit} offers of other providers")]
    SenderQuota { limit: usize },
    #[error("the index holds its limit of {limit} bytes")]
    IndexFull { limit: usize },
    #[error("the index holds its limit of {limit} keys")]
    TooManyKeys { limit: usize },
}

impl Refusal {
    /// A short stable label, for logs and metrics.
    pub fn label(&self) -> &'static str {
        match self {
            Refusal::NotUnderKey { .. } => "not_under_key",
            Refusal::Stale { .. } => "stale_seq",
            Refusal::KeyFull { .. } => "key_full",
            Refusal::NewcomersThrottled { .. } => "newcomers_throttled",
            Refusal::SenderQuota { .. } => "sender_quota",
            Refusal::IndexFull { .. } => "index_full",
            Refusal::TooManyKeys { .. } => "too_many_keys",
        }
    }
}

/// What two holders of a key should send each other ([`Index::reconcile`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reconciled<'a> {
    /// Providers whose offer the other holds newer, or this node lacks.
    pub want: Vec<ProviderId>,
    /// This node's offers the other lacks or holds older.
    pub newer: Vec<&'a SignedOffer>,
}

/// A holder's answer to a query about one of its keys.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Answer<'a> {
    pub selection: Selection<'a>,
    /// Providers held under the key, listed or not.
    pub held: usize,
}

#[derive(Debug)]
struct Entry<S> {
    offer: SignedOffer,
    /// When the provider was first held under the key (kept across replacements).
    since: Instant,
    /// The peer that stored it, if not its provider: counted in that peer's quota.
    sender: Option<S>,
}

#[derive(Debug)]
struct Table<S> {
    entries: HashMap<ProviderId, Entry<S>>,
    /// Newcomer admissions left, refilled at `newcomers_per_minute`.
    tokens: f64,
    refilled: Instant,
}

/// The offers a node holds for others, by key. `S` names the peers that store them.
#[derive(Debug)]
pub struct Index<S> {
    config: IndexConfig,
    tables: HashMap<IndexKey, Table<S>>,
    bytes: usize,
    per_sender: HashMap<S, usize>,
}

impl<S: Hash + Eq + Clone> Index<S> {
    /// An empty index with these bounds.
    pub fn new(config: IndexConfig) -> Index<S> {
        Index {
            config,
            tables: HashMap::new(),
            bytes: 0,
            per_sender: HashMap::new(),
        }
    }

    /// The bounds.
    pub fn config(&self) -> &IndexConfig {
        &self.config
    }

    /// Admits `offer` (verified by the caller) under `key`, sent by `sender`, which is the
    /// offer's own provider if `sender_is_provider`.
    pub fn admit(
        &mut self,
        key: IndexKey,
        offer: SignedOffer,
        sender: &S,
        sender_is_provider: bool,
        now: Instant,
    ) -> Result<Admitted, Refusal> {
        let config = self.config;
        let provider = offer.provider();
        let size = offer.as_bytes().len();
        if let Some(table) = self.tables.get_mut(&key)
            && let Some(entry) = table.entries.get_mut(&provider)
        {
            let held = entry.offer.seq();
            if offer.seq() < held || (offer.seq() == held && offer != entry.offer) {
                return Err(Refusal::Stale {
                    seq: offer.seq(),
                    held,
                });
            }
            if offer.seq() == held {
                return Ok(Admitted::Unchanged);
            }
            self.bytes = self.bytes + size - entry.offer.as_bytes().len();
            entry.offer = offer;
            if sender_is_provider && let Some(previous) = entry.sender.take() {
                release(&mut self.per_sender, &previous);
            }
            return Ok(Admitted::Replaced { previous_seq: held });
        }
        if !key.fits(offer.offer()) {
            return Err(Refusal::NotUnderKey { key });
        }
        if !self.tables.contains_key(&key) && self.tables.len() >= config.max_keys {
            return Err(Refusal::TooManyKeys {
                limit: config.max_keys,
            });
        }
        if self.bytes + size > config.max_bytes {
            return Err(Refusal::IndexFull {
                limit: config.max_bytes,
            });
        }
        if !sender_is_provider
            && self.per_sender.get(sender).copied().unwrap_or(0) >= config.per_sender
        {
            return Err(Refusal::SenderQuota {
                limit: config.per_sender,
            });
        }
        let table = self.tables.entry(key).or_insert_with(|| Table {
            entries: HashMap::new(),
            tokens: f64::from(config.newcomers_per_minute),
            refilled: now,
        });
        if table.entries.len() >= config.max_offers_per_key {
            return Err(Refusal::KeyFull {
                key,
                limit: config.max_offers_per_key,
            });
        }
        if table.entries.len() >= config.open_admission {
            let rate = f64::from(config.newcomers_per_minute) / 60.0;
            let elapsed = now.saturating_duration_since(table.refilled).as_secs_f64();
            table.tokens =
                (table.tokens + elapsed * rate).min(f64::from(config.newcomers_per_minute));
            table.refilled = now;
            if table.tokens < 1.0 {
                let retry_after = if rate > 0.0 {
                    Duration::from_secs_f64((1.0 - table.tokens) / rate)
                } else {
                    Duration::MAX
                };
                return Err(Refusal::NewcomersThrottled {
                    key,
                    per_minute: config.newcomers_per_minute,
                    retry_after,
                });
            }
            table.tokens -= 1.0;
        }
        let sender = (!sender_is_provider).then(|| sender.clone());
        if let Some(sender) = &sender {
            *self.per_sender.entry(sender.clone()).or_default() += 1;
        }
        self.bytes += size;
        table.entries.insert(
            provider,
            Entry {
                offer,
                since: now,
                sender,
            },
        );
        Ok(Admitted::Added)
    }

    /// The answer to `query` from the table of its key, or `None` if this node holds
    /// nothing under it (so that a caller goes on looking).
    pub fn answer(
        &self,
        query: &OfferQuery,
        now_unix: UnixTime,
        now: Instant,
    ) -> Option<Answer<'_>> {
        let table = self.tables.get(&query.key())?;
        if table.entries.is_empty() {
            return None;
        }
        let offers = table
            .entries
            .values()
            .map(|entry| (&entry.offer, now.saturating_duration_since(entry.since)));
        Some(Answer {
            selection: select(offers, query, now_unix),
            held: table.entries.len(),
        })
    }

    /// The offers held under `key`, listed or not.
    pub fn offers(&self, key: &IndexKey) -> impl Iterator<Item = &SignedOffer> {
        self.tables
            .get(key)
            .into_iter()
            .flat_map(|table| table.entries.values().map(|entry| &entry.offer))
    }

    /// The offer of `provider` held under `key`, if any.
    pub fn get(&self, key: &IndexKey, provider: &ProviderId) -> Option<&SignedOffer> {
        Some(&self.tables.get(key)?.entries.get(provider)?.offer)
    }

    /// What is held under `key`: each provider and the `seq` of its offer, by provider.
    pub fn digest(&self, key: &IndexKey) -> Vec<(ProviderId, u64)> {
        let mut digest: Vec<(ProviderId, u64)> = self
            .offers(key)
            .map(|offer| (offer.provider(), offer.seq()))
            .collect();
        digest.sort_unstable();
        digest
    }

    /// Compares what this node holds under `key` with another holder's `digest`: the
    /// providers whose offer the other has newer or this node lacks (to ask for), and this
    /// node's offers the other lacks or holds older (to hand over), at most `give` of them.
    pub fn reconcile(
        &self,
        key: &IndexKey,
        digest: &[(ProviderId, u64)],
        give: usize,
    ) -> Reconciled<'_> {
        let theirs: HashMap<ProviderId, u64> = digest.iter().copied().collect();
        let want = digest
            .iter()
            .filter(|(provider, seq)| self.get(key, provider).is_none_or(|held| held.seq() < *seq))
            .map(|(provider, _)| *provider)
            .collect();
        let newer = self
            .offers(key)
            .filter(|offer| {
                theirs
                    .get(&offer.provider())
                    .is_none_or(|seq| *seq < offer.seq())
            })
            .take(give)
            .collect();
        Reconciled { want, newer }
    }

    /// Drops every offer expired at `now`.
    pub fn expire(&mut self, now: UnixTime) {
        let per_sender = &mut self.per_sender;
        let bytes = &mut self.bytes;
        self.tables.retain(|_, table| {
            table.entries.retain(|_, entry| {
                let keep = !entry.offer.is_expired(now);
                if !keep {
                    *bytes -= entry.offer.as_bytes().len();
                    if let Some(sender) = &entry.sender {
                        release(per_sender, sender);
                    }
                }
                keep
            });
            !table.entries.is_empty()
        });
    }

    /// The keys held.
    pub fn keys(&self) -> impl Iterator<Item = &IndexKey> {
        self.tables.keys()
    }

    /// Offers held in all.
    pub fn len(&self) -> usize {
        self.tables.values().map(|t| t.entries.len()).sum()
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.tables.is_empty()
    }

    /// Bytes of signed offers held.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// New entries of other providers `sender` has stored here.
    pub fn stored_by(&self, sender: &S) -> usize {
        self.per_sender.get(sender).copied().unwrap_or(0)
    }
}

fn release<S: Hash + Eq>(per_sender: &mut HashMap<S, usize>, sender: &S) {
    if let Some(count) = per_sender.get_mut(sender) {
        *count = count.saturating_sub(1);
        if *count == 0 {
            per_sender.remove(sender);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SecretKey;
    use crate::country::CountryCode;
    use crate::destination::E164;
    use crate::offer::tests::{route, sample_offer};
    use crate::offer::{Route, ServiceKind};
    use crate::ranking::{Policy, PolicyKind};

    const NOW: UnixTime = UnixTime(2000);

    fn uk() -> IndexKey {
        IndexKey::Country(CountryCode::of("44").unwrap_or_else(|| panic!("44")))
    }

    fn offer_of(seed: u32, seq: u64, routes: Vec<Route>) -> SignedOffer {
        let mut bytes = [0u8; 32];
        bytes[..4].copy_from_slice(&seed.to_le_bytes());
        let key = SecretKey::from_seed(&bytes);
        let mut offer = sample_offer(&key, routes);
        offer.seq = seq;
        SignedOffer::sign(offer, &key).unwrap()
    }

    fn uk_offer(seed: u32, seq: u64, per_minute: u64) -> SignedOffer {
        offer_of(seed, seq, vec![route("+44", per_minute)])
    }

    fn query(limit: u16) -> OfferQuery {
        OfferQuery::number(
            E164::parse("+447700900123").unwrap(),
            vec![ServiceKind::WEBRTC_TO_PSTN],
            Policy {
                kind: PolicyKind::Cheapest,
                ..Policy::default()
            },
            limit,
        )
    }

    fn small(config: impl FnOnce(&mut IndexConfig)) -> Index<u32> {
        let mut bounds = IndexConfig::default();
        config(&mut bounds);
        Index::new(bounds)
    }

    fn listed(index: &Index<u32>, limit: u16, now: Instant) -> Vec<ProviderId> {
        index
            .answer(&query(limit), NOW, now)
            .map(|a| {
                a.selection
                    .offers
                    .iter()
                    .map(|s| s.offer.provider())
                    .collect()
            })
            .unwrap_or_default()
    }

    #[test]
    fn a_newer_offer_replaces_an_older_and_never_the_reverse() {
        let now = Instant::now();
        let mut index = small(|_| {});
        let first = uk_offer(1, 1, 5);
        let second = uk_offer(1, 2, 3);
        assert_eq!(
            index.admit(uk(), first.clone(), &1, true, now),
            Ok(Admitted::Added)
        );
        assert_eq!(
            index.admit(uk(), second.clone(), &1, true, now),
            Ok(Admitted::Replaced { previous_seq: 1 })
        );
        assert_eq!(
            index.admit(uk(), first, &7, false, now),
            Err(Refusal::Stale { seq: 1, held: 2 })
        );
        assert_eq!(
            index.admit(uk(), second.clone(), &1, true, now),
            Ok(Admitted::Unchanged)
        );
        assert_eq!(index.get(&uk(), &second.provider()), Some(&second));
        assert_eq!(index.bytes(), second.as_bytes().len());
    }

    #[test]
    fn a_withdrawal_shadows_the_offer_it_replaces_and_is_never_listed() {
        let now = Instant::now();
        let mut index = small(|_| {});
        let offer = uk_offer(1, 1, 5);
        let withdrawal = {
            let key = SecretKey::from_seed(&{
                let mut b = [0u8; 32];
                b[..4].copy_from_slice(&1u32.to_le_bytes());
                b
            });
            let w = offer.offer().withdrawal(UnixTime(1500));
            SignedOffer::sign(w, &key).unwrap()
        };
        assert_eq!(
            index.admit(uk(), withdrawal.clone(), &1, true, now),
            Err(Refusal::NotUnderKey { key: uk() }),
            "a withdrawal of nothing held is not kept"
        );
        index.admit(uk(), offer.clone(), &1, true, now).unwrap();
        assert!(index.admit(uk(), withdrawal.clone(), &1, true, now).is_ok());
        assert!(listed(&index, 10, now).is_empty());
        assert_eq!(
            index.admit(uk(), offer.clone(), &9, false, now),
            Err(Refusal::Stale { seq: 1, held: 2 }),
            "an old copy pushed back by another node stays out"
        );
        let about = query(10).about(vec![offer.provider()]);
        let answer = index
            .answer(&about, NOW, now)
            .unwrap_or_else(|| panic!("held"));
        assert_eq!(answer.selection.offers[0].offer, &withdrawal);
    }

    #[test]
    fn an_offer_dropping_the_country_stays_unlisted_under_its_key() {
        let now = Instant::now();
        let mut index = small(|_| {});
        index.admit(uk(), uk_offer(1, 1, 5), &1, true, now).unwrap();
        let french_only = offer_of(1, 2, vec![route("+33", 5)]);
        assert!(index.admit(uk(), french_only, &1, true, now).is_ok());
        assert!(listed(&index, 10, now).is_empty());
        assert_eq!(index.len(), 1);
    }

    #[test]
    fn newcomers_wait_once_a_key_is_busy_and_nobody_is_evicted_when_full() {
        let start = Instant::now();
        let mut index = small(|c| {
            c.max_offers_per_key = 6;
            c.open_admission = 3;
            c.newcomers_per_minute = 2;
        });
        for seed in 0..3 {
            assert!(
                index
                    .admit(uk(), uk_offer(seed, 1, 9), &seed, true, start)
                    .is_ok()
            );
        }
        // Above open admission: the bucket holds two admissions, then one every 30 s.
        assert!(
            index
                .admit(uk(), uk_offer(3, 1, 1), &3, true, start)
                .is_ok()
        );
        assert!(
            index
                .admit(uk(), uk_offer(4, 1, 1), &4, true, start)
                .is_ok()
        );
        let throttled = index.admit(uk(), uk_offer(5, 1, 1), &5, true, start);
        let Err(Refusal::NewcomersThrottled { retry_after, .. }) = throttled else {
            panic!("{throttled:?}");
        };
        assert_eq!(retry_after, Duration::from_secs(30));
        let later = start + retry_after;
        assert!(
            index
                .admit(uk(), uk_offer(5, 1, 1), &5, true, later)
                .is_ok()
        );
        assert_eq!(
            index.admit(
                uk(),
                uk_offer(6, 1, 1),
                &6,
                true,
                later + Duration::from_secs(600)
            ),
            Err(Refusal::KeyFull {
                key: uk(),
                limit: 6
            })
        );
        // A held provider's newer offer always gets in.
        assert!(
            index
                .admit(uk(), uk_offer(0, 2, 8), &0, true, later)
                .is_ok()
        );
    }

    #[test]
    fn the_established_stay_listed_beside_a_cheaper_flood() {
        let start = Instant::now();
        let mut index = small(|_| {});
        let honest: Vec<SignedOffer> = (0..3).map(|seed| uk_offer(seed, 1, 10)).collect();
        for (seed, offer) in (0..).zip(&honest) {
            index
                .admit(uk(), offer.clone(), &seed, true, start)
                .unwrap();
        }
        let flooded = start + Duration::from_secs(120);
        for seed in 100..400 {
            let _ = index.admit(uk(), uk_offer(seed, 1, 1), &seed, true, flooded);
        }
        let shown = listed(&index, 3, flooded);
        assert_eq!(
            shown.len(),
            6,
            "three cheapest newcomers, the three held longest"
        );
        for offer in &honest {
            assert!(shown.contains(&offer.provider()));
        }
    }

    #[test]
    fn a_sender_stores_no_more_than_its_quota_of_other_providers() {
        let now = Instant::now();
        let mut index = small(|c| c.per_sender = 2);
        let flooder = 99;
        assert!(
            index
                .admit(uk(), uk_offer(1, 1, 1), &flooder, false, now)
                .is_ok()
        );
        assert!(
            index
                .admit(uk(), uk_offer(2, 1, 1), &flooder, false, now)
                .is_ok()
        );
        assert_eq!(
            index.admit(uk(), uk_offer(3, 1, 1), &flooder, false, now),
            Err(Refusal::SenderQuota { limit: 2 })
        );
        // The provider taking over its own entry frees the sender's place.
        assert!(index.admit(uk(), uk_offer(1, 2, 1), &1, true, now).is_ok());
        assert_eq!(index.stored_by(&flooder), 1);
        assert!(
            index
                .admit(uk(), uk_offer(3, 1, 1), &flooder, false, now)
                .is_ok()
        );
        // Replacing a held offer with a newer one is not a new entry.
        assert!(
            index
                .admit(uk(), uk_offer(2, 2, 1), &flooder, false, now)
                .is_ok()
        );
        assert_eq!(index.stored_by(&flooder), 2);
    }

    #[test]
    fn expired_offers_go_and_free_their_places() {
        let now = Instant::now();
        let mut index = small(|c| c.per_sender = 1);
        index
            .admit(uk(), uk_offer(1, 1, 1), &7, false, now)
            .unwrap();
        assert!(index.answer(&query(5), NOW, now).is_some());
        index.expire(UnixTime(4600));
        assert!(index.is_empty());
        assert_eq!((index.bytes(), index.stored_by(&7)), (0, 0));
        assert!(
            index.answer(&query(5), NOW, now).is_none(),
            "nothing held: no answer"
        );
    }

    #[test]
    fn two_holders_see_what_each_lacks_from_their_digests() {
        let now = Instant::now();
        let mut a = small(|_| {});
        let mut b = small(|_| {});
        for (seed, seq) in [(1, 1), (2, 2), (3, 1)] {
            a.admit(uk(), uk_offer(seed, seq, 5), &seed, true, now)
                .unwrap();
        }
        for (seed, seq) in [(2, 3), (3, 1), (4, 1)] {
            b.admit(uk(), uk_offer(seed, seq, 5), &seed, true, now)
                .unwrap();
        }
        let seeds = |providers: &[ProviderId]| -> Vec<u64> {
            let mut seqs: Vec<u64> = providers
                .iter()
                .map(|p| {
                    (1..=4u32)
                        .find(|s| uk_offer(*s, 1, 5).provider() == *p)
                        .map_or(0, u64::from)
                })
                .collect();
            seqs.sort_unstable();
            seqs
        };
        let at_a = a.reconcile(&uk(), &b.digest(&uk()), 16);
        assert_eq!(
            seeds(&at_a.want),
            [2, 4],
            "b has 2 newer and 4 that a lacks"
        );
        let given: Vec<u64> = at_a.newer.iter().map(|o| o.seq()).collect();
        assert_eq!(given, [1], "a hands over 1, which b lacks");
        let at_b = b.reconcile(&uk(), &a.digest(&uk()), 16);
        assert_eq!(seeds(&at_b.want), [1]);
        assert_eq!(at_b.newer.len(), 2);
        assert!(a.reconcile(&uk(), &a.digest(&uk()), 16).want.is_empty());
        assert_eq!(
            b.reconcile(&uk(), &a.digest(&uk()), 1).newer.len(),
            1,
            "bounded"
        );
    }

    #[test]
    fn the_bytes_and_keys_held_are_bounded() {
        let now = Instant::now();
        let offer = uk_offer(1, 1, 1);
        let mut index = small(|c| c.max_bytes = offer.as_bytes().len() + 10);
        assert!(index.admit(uk(), offer, &1, true, now).is_ok());
        assert_eq!(
            index.admit(uk(), uk_offer(2, 1, 1), &2, true, now),
            Err(Refusal::IndexFull {
                limit: index.config().max_bytes
            })
        );
        let mut index = small(|c| c.max_keys = 1);
        assert!(index.admit(uk(), uk_offer(1, 1, 1), &1, true, now).is_ok());
        let france = IndexKey::Country(CountryCode::of("33").unwrap_or_else(|| panic!("33")));
        assert_eq!(
            index.admit(france, offer_of(2, 1, vec![route("+33", 1)]), &2, true, now),
            Err(Refusal::TooManyKeys { limit: 1 })
        );
    }
}
