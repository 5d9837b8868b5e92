//! What a caller asks of the index, and which offers answer it.
//!
//! A caller asks for the best `limit` offers for its destination under its policy (the
//! same [`Policy`] it ranks with: weights, maximum price, currency, codec). The nodes that
//! hold the destination's key answer with [`select`], the same function the caller runs
//! on what it collects, so that an honest holder with every offer returns exactly what
//! the caller would pick from the whole market: the best `limit` by the policy, and,
//! beside them, the `limit` offers the holder has held longest ("established"), in the
//! policy's order. The second list is what a flood of fresh keys cannot push out of the
//! answer, however long it lasts: a newcomer is never older than the providers that were
//! there before it (see [`super::index`]).
//!
//! A query may instead name providers: the holder then returns those providers' offers
//! whatever their state (withdrawn, repriced, no longer covering), which is how a caller
//! checks that no holder knows a newer offer than the one it was shown.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::key::IndexKey;
use crate::conference::Region;
use crate::conference::ranking::rank_conferences;
use crate::conference::terms::MAX_PARTICIPANTS_PER_ROOM;
use crate::destination::E164;
use crate::identity::ProviderId;
use crate::offer::ServiceKind;
use crate::ranking::{History, Measurements, Policy, rank};
use crate::signed::SignedOffer;
use crate::time::UnixTime;

/// The most offers one query may ask for.
pub const MAX_LIMIT: u16 = 256;
/// The most service kinds one query may accept.
pub const MAX_KINDS: usize = 8;
/// The most providers one query may name.
pub const MAX_PROVIDERS: usize = 64;

/// What the offers must serve.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Target {
    /// Gateways whose routes cover this number.
    Number(E164),
    /// Conference bridges in this region whose rooms hold at least `participants`.
    Region { region: Region, participants: u32 },
}

/// A caller's question to the index.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct OfferQuery {
    pub target: Target,
    /// Service kinds that may carry the call, e.g. WebRTC to PSTN and WebRTC to SIP.
    pub kinds: Vec<ServiceKind>,
    /// The caller's policy: the order of the answer, and the offers it excludes.
    pub policy: Policy,
    /// How many of the best offers to return (and as many established ones).
    pub limit: u16,
    /// When not empty: only these providers' offers, in whatever state.
    pub providers: Vec<ProviderId>,
}

/// Why a query is out of bounds.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum QueryError {
    #[error("a query asks for 1 to {MAX_LIMIT} offers, not {0}")]
    Limit(u16),
    #[error("a query names 1 to {MAX_KINDS} service kinds, not {0}")]
    Kinds(usize),
    #[error("a query names at most {MAX_PROVIDERS} providers, not {0}")]
    Providers(usize),
    #[error("a conference room holds 1 to {MAX_PARTICIPANTS_PER_ROOM} participants, not {0}")]
    Participants(u32),
}

impl OfferQuery {
    /// The best `limit` offers of `kinds` for a call to `destination` under `policy`.
    pub fn number(
        destination: E164,
        kinds: Vec<ServiceKind>,
        policy: Policy,
        limit: u16,
    ) -> OfferQuery {
        OfferQuery {
            target: Target::Number(destination),
            kinds,
            policy,
            limit,
            providers: Vec::new(),
        }
    }

    /// The best `limit` conference bridges of `region` for a room of `participants`.
    pub fn region(region: Region, participants: u32, policy: Policy, limit: u16) -> OfferQuery {
        OfferQuery {
            target: Target::Region {
                region,
                participants,
            },
            kinds: vec![ServiceKind::Conference],
            policy,
            limit,
            providers: Vec::new(),
        }
    }

    /// The same question, about these providers only.
    pub fn about(&self, providers: Vec<ProviderId>) -> OfferQuery {
        OfferQuery {
            providers,
            ..self.clone()
        }
    }

    /// The index key the answer lives under.
    pub fn key(&self) -> IndexKey {
        match &self.target {
            Target::Number(number) => IndexKey::of_number(number),
            Target::Region { region, .. } => IndexKey::Region(*region),
        }
    }

    /// Checks the query's bounds (a query from the network is checked before it is run).
    pub fn check(&self) -> Result<(), QueryError> {
        if self.limit == 0 || self.limit > MAX_LIMIT {
            return Err(QueryError::Limit(self.limit));
        }
        if self.kinds.is_empty() || self.kinds.len() > MAX_KINDS {
            return Err(QueryError::Kinds(self.kinds.len()));
        }
        if self.providers.len() > MAX_PROVIDERS {
            return Err(QueryError::Providers(self.providers.len()));
        }
        if let Target::Region { participants, .. } = self.target
            && (participants == 0 || participants > MAX_PARTICIPANTS_PER_ROOM)
        {
            return Err(QueryError::Participants(participants));
        }
        Ok(())
    }

    /// Whether `offer` is about what the query asks, before any ranking: its kind and key
    /// for a market query; its provider for a query that names providers.
    pub fn concerns(&self, offer: &SignedOffer) -> bool {
        if !self.providers.is_empty() {
            return self.providers.contains(&offer.provider());
        }
        self.kinds.contains(&offer.offer().kind) && self.key().fits(offer.offer())
    }
}

/// One offer of an answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Selected<'a> {
    pub offer: &'a SignedOffer,
    /// Its place among the `limit` matching offers held longest (0: held longest), if
    /// it is one of them: "established".
    pub seniority: Option<u16>,
}

impl Selected<'_> {
    /// Whether it is among the offers held longest.
    pub fn established(&self) -> bool {
        self.seniority.is_some()
    }
}

/// The offers that answer a query, best first, and how many matched in all.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Selection<'a> {
    pub offers: Vec<Selected<'a>>,
    /// Offers that matched the query (could carry the call within the policy's limits),
    /// of which `offers` are the best.
    pub matching: usize,
}

/// Picks the offers that answer `query` among `offers`, each with how long it has been
/// held (a caller merging answers gives `Duration::MAX` to those a holder said were
/// established), at `now`.
///
/// A market query gets the best `limit` matching offers by the query's policy, and the
/// `limit` matching offers held longest (ties in the policy's order), in the policy's
/// order; a query naming providers gets those providers' unexpired offers in whatever
/// state.
pub fn select<'a>(
    offers: impl IntoIterator<Item = (&'a SignedOffer, Duration)>,
    query: &OfferQuery,
    now: UnixTime,
) -> Selection<'a> {
    let offers: Vec<(&'a SignedOffer, Duration)> = offers
        .into_iter()
        .filter(|(offer, _)| !offer.is_expired(now) && query.concerns(offer))
        .collect();
    if !query.providers.is_empty() {
        let matching = offers.len();
        let offers = offers
            .into_iter()
            .map(|(offer, _)| Selected {
                offer,
                seniority: None,
            })
            .collect();
        return Selection { offers, matching };
    }
    let held: BTreeMap<ProviderId, Duration> = offers
        .iter()
        .map(|(offer, held)| (offer.provider(), *held))
        .collect();
    let ranked = ranked(offers.iter().map(|(offer, _)| *offer), query);
    let limit = usize::from(query.limit);
    // The longest held, ties in the policy's order (a stable sort of the ranking).
    let mut by_age: Vec<(usize, Duration)> = ranked
        .iter()
        .enumerate()
        .map(|(place, offer)| {
            (
                place,
                held.get(&offer.provider()).copied().unwrap_or_default(),
            )
        })
        .collect();
    by_age.sort_by_key(|&(_, held)| std::cmp::Reverse(held));
    let mut seniority: Vec<Option<u16>> = vec![None; ranked.len()];
    for (rank, (place, _)) in by_age.into_iter().take(limit).enumerate() {
        seniority[place] = u16::try_from(rank).ok();
    }
    let chosen = ranked
        .iter()
        .enumerate()
        .filter(|(place, _)| *place < limit || seniority[*place].is_some())
        .map(|(place, offer)| Selected {
            offer,
            seniority: seniority[place],
        })
        .collect();
    Selection {
        matching: ranked.len(),
        offers: chosen,
    }
}

/// Every offer of `offers` that matches `query` (kind, target, policy limits), best first
/// by its policy, with no history and no measurements: what the index compares.
pub fn ranked<'a>(
    offers: impl IntoIterator<Item = &'a SignedOffer>,
    query: &OfferQuery,
) -> Vec<&'a SignedOffer> {
    let (measurements, history) = (Measurements::new(), History::new());
    let offers = offers.into_iter().filter(|offer| {
        query.kinds.contains(&offer.offer().kind)
            && match &query.target {
                Target::Number(_) => true,
                Target::Region { region, .. } => offer.offer().region == region.as_str(),
            }
    });
    match &query.target {
        Target::Number(number) => rank(offers, number, &measurements, &history, &query.policy)
            .candidates
            .into_iter()
            .map(|candidate| candidate.offer)
            .collect(),
        Target::Region { participants, .. } => rank_conferences(
            offers,
            *participants,
            &measurements,
            &history,
            &query.policy,
        )
        .candidates
        .into_iter()
        .map(|candidate| candidate.offer)
        .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SecretKey;
    use crate::conference::ranking::tests::conference_offer;
    use crate::money::Money;
    use crate::offer::tests::{gbp, route, sample_offer};
    use crate::offer::{Route, ServiceOffer};
    use crate::ranking::PolicyKind;

    const NOW: UnixTime = UnixTime(2000);

    fn offer(seed: u8, routes: Vec<Route>) -> SignedOffer {
        let key = SecretKey::from_seed(&[seed; 32]);
        SignedOffer::sign(sample_offer(&key, routes), &key).unwrap()
    }

    fn with(seed: u8, change: impl FnOnce(&mut ServiceOffer)) -> SignedOffer {
        let key = SecretKey::from_seed(&[seed; 32]);
        let mut offer = sample_offer(&key, vec![route("+44", u64::from(seed))]);
        change(&mut offer);
        SignedOffer::sign(offer, &key).unwrap()
    }

    fn number(n: &str) -> E164 {
        E164::parse(n).unwrap()
    }

    fn cheapest(limit: u16, destination: &str) -> OfferQuery {
        let policy = Policy {
            kind: PolicyKind::Cheapest,
            ..Policy::default()
        };
        OfferQuery::number(
            number(destination),
            vec![ServiceKind::WEBRTC_TO_PSTN],
            policy,
            limit,
        )
    }

    fn providers(selection: &Selection<'_>) -> Vec<ProviderId> {
        selection
            .offers
            .iter()
            .map(|s| s.offer.provider())
            .collect()
    }

    #[test]
    fn the_deepest_covering_route_prices_each_offer() {
        // A +1 gateway at 5 and a +1212 gateway that is dearer country-wide but cheaper
        // on +1212: both found for a New York number, ranked by the route that covers it.
        let country = offer(1, vec![route("+1", 5)]);
        let deep = offer(2, vec![route("+1", 9), route("+1212", 3)]);
        let elsewhere = offer(3, vec![route("+1415", 1)]);
        let all = [
            (&country, Duration::ZERO),
            (&deep, Duration::ZERO),
            (&elsewhere, Duration::ZERO),
        ];
        let selection = select(all, &cheapest(10, "+12125550123"), NOW);
        assert_eq!(providers(&selection), [deep.provider(), country.provider()]);
        assert_eq!(selection.matching, 2);
        // Elsewhere in +1 the deep gateway's country-wide route prices it: dearer.
        let selection = select(all, &cheapest(10, "+13125550123"), NOW);
        assert_eq!(providers(&selection), [country.provider(), deep.provider()]);
    }

    #[test]
    fn the_best_limit_and_the_best_long_held_are_returned() {
        // Ten fresh offers cheaper than three held for long: a limit of 2 returns the two
        // cheapest fresh ones, then the two cheapest of those held longest.
        let fresh: Vec<SignedOffer> = (1..=10).map(|seed| with(seed, |_| {})).collect();
        let old: Vec<SignedOffer> = (20..23).map(|seed| with(seed, |_| {})).collect();
        let minutes = |m: u64| Duration::from_secs(60 * m);
        let all = fresh
            .iter()
            .map(|o| (o, minutes(1)))
            .chain(old.iter().map(|o| (o, minutes(600))));
        let selection = select(all, &cheapest(2, "+447700900123"), NOW);
        assert_eq!(
            providers(&selection),
            [
                fresh[0].provider(),
                fresh[1].provider(),
                old[0].provider(),
                old[1].provider()
            ]
        );
        assert_eq!(selection.matching, 13);
        assert!(selection.offers[2].established() && !selection.offers[0].established());
        assert_eq!(
            selection.offers[2].seniority,
            Some(0),
            "ties held longest by policy"
        );
    }

    #[test]
    fn however_many_newcomers_arrive_the_longest_held_stay_in_the_answer() {
        let old = with(30, |_| {});
        let flood: Vec<SignedOffer> = (1..=29).map(|seed| with(seed, |_| {})).collect();
        let all = flood
            .iter()
            .enumerate()
            .map(|(age, o)| (o, Duration::from_secs(age as u64)))
            .chain([(&old, Duration::from_secs(3600))]);
        let selection = select(all, &cheapest(3, "+447700900123"), NOW);
        assert!(providers(&selection).contains(&old.provider()));
        assert!(selection.offers.len() <= 6);
    }

    #[test]
    fn the_policys_limits_and_kinds_filter_before_the_limit() {
        let cheap = with(1, |_| {});
        let dear = with(9, |_| {});
        let sip = with(2, |o| o.kind = ServiceKind::WEBRTC_TO_SIP);
        let expired = with(3, |o| o.expires_at = UnixTime(1500));
        let withdrawn = with(4, |o| *o = o.withdrawal(UnixTime(1000)));
        let all = [&cheap, &dear, &sip, &expired, &withdrawn].map(|o| (o, Duration::ZERO));
        let mut query = cheapest(10, "+447700900123");
        query.policy.max_price_per_minute = Some(Money::new(gbp(), 5));
        assert_eq!(providers(&select(all, &query, NOW)), [cheap.provider()]);
        query.kinds.push(ServiceKind::WEBRTC_TO_SIP);
        assert_eq!(
            providers(&select(all, &query, NOW)),
            [cheap.provider(), sip.provider()]
        );
    }

    #[test]
    fn naming_providers_returns_their_offers_in_any_state() {
        let withdrawn = with(4, |o| *o = o.withdrawal(UnixTime(1000)));
        let other = with(5, |_| {});
        let expired = with(6, |o| o.expires_at = UnixTime(1500));
        let query =
            cheapest(10, "+447700900123").about(vec![withdrawn.provider(), expired.provider()]);
        let all = [&withdrawn, &other, &expired].map(|o| (o, Duration::ZERO));
        let selection = select(all, &query, NOW);
        assert_eq!(providers(&selection), [withdrawn.provider()]);
    }

    #[test]
    fn conference_bridges_are_selected_by_region_and_room_size() {
        let sign = |seed: u8, size: u32, region: &str| {
            let mut offer = conference_offer(seed, "Bridge", size, 0, u64::from(seed), 400);
            offer.region = region.into();
            SignedOffer::sign(offer, &SecretKey::from_seed(&[seed; 32])).unwrap()
        };
        let small = sign(1, 3, "eu-west");
        let big = sign(2, 50, "eu-west");
        let away = sign(3, 50, "us-east");
        let region = Region::new("eu-west").unwrap();
        let query = OfferQuery::region(region, 10, Policy::default(), 5);
        let all = [&small, &big, &away].map(|o| (o, Duration::ZERO));
        assert_eq!(providers(&select(all, &query, NOW)), [big.provider()]);
    }

    #[test]
    fn out_of_bounds_queries_are_refused() {
        let query = cheapest(10, "+447700900123");
        assert_eq!(query.check(), Ok(()));
        assert_eq!(
            cheapest(0, "+447700900123").check(),
            Err(QueryError::Limit(0))
        );
        assert_eq!(
            cheapest(MAX_LIMIT + 1, "+447700900123").check(),
            Err(QueryError::Limit(MAX_LIMIT + 1))
        );
        let mut many = query.clone();
        many.kinds = vec![ServiceKind::WEBRTC_TO_PSTN; MAX_KINDS + 1];
        assert!(many.check().is_err());
        let named = query.about(vec![with(1, |_| {}).provider(); MAX_PROVIDERS + 1]);
        assert!(named.check().is_err());
    }
}
