//! Ranking: which offers can carry a call, and in which order to try them.
//!
//! [`rank`] is a pure function of the verified offers, the destination, live measurements,
//! the caller's own history and a [`Policy`]. Each candidate gets a score between 0 and 1
//! made of three parts that a person can read:
//!
//! - **price**: the cost of a reference call (three minutes, billed by the offer's own
//!   tariff) relative to the cheapest candidate in the same currency: 1 for the cheapest,
//!   0.5 for one that costs twice as much;
//! - **quality**: the claimed MOS (2.5 or less scores 0, 4.5 scores 1), the answer-seizure
//!   ratio and the post-dial delay (0 at 10 s). The
//!   claimed answer ratio counts as ten calls' worth of evidence and the caller's own calls
//!   with the provider are added to it, so a provider that claims much and answers little
//!   sinks as the caller learns;
//! - **latency**: the measured round-trip time; 1 at 0 ms, 0 at 400 ms and beyond, 0.5
//!   when not measured.
//!
//! The policy weighs the parts. Equal scores are ordered by the cheaper reference call,
//! then the better quality, then the lower provider id, so the order is deterministic.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::destination::E164;
use crate::identity::ProviderId;
use crate::money::{Currency, Money};
use crate::offer::{Codec, OfferStatus, Route};
use crate::signed::SignedOffer;

/// The call length used to compare tariffs with different setup fees and increments.
pub const REFERENCE_CALL: Duration = Duration::from_secs(180);
/// How many calls' worth of evidence a provider's claimed answer ratio counts for.
pub const CLAIM_WEIGHT_IN_CALLS: f64 = 10.0;
/// A round trip this long or longer scores zero (ITU-T G.114 puts the limit of good
/// interactivity at 150 ms one way).
pub const WORST_RTT: Duration = Duration::from_millis(400);
/// The latency score of a provider whose round trip was not measured.
pub const UNMEASURED_LATENCY_SCORE: f64 = 0.5;

/// How the caller weighs price against quality.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum PolicyKind {
    /// The cheapest reference call first.
    Cheapest,
    /// The best quality and latency first, whatever the price.
    BestQuality,
    /// A balance of the three (the default).
    #[default]
    Balanced,
}

/// How much each part counts towards the total score.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Weights {
    pub price: f64,
    pub quality: f64,
    pub latency: f64,
}

impl PolicyKind {
    /// The weights of the policy; they add up to 1.
    pub fn weights(self) -> Weights {
        match self {
            PolicyKind::Cheapest => Weights {
                price: 1.0,
                quality: 0.0,
                latency: 0.0,
            },
            PolicyKind::BestQuality => Weights {
                price: 0.0,
                quality: 0.8,
                latency: 0.2,
            },
            PolicyKind::Balanced => Weights {
                price: 0.4,
                quality: 0.45,
                latency: 0.15,
            },
        }
    }

    fn name(self) -> &'static str {
        match self {
            PolicyKind::Cheapest => "cheapest",
            PolicyKind::BestQuality => "best-quality",
            PolicyKind::Balanced => "balanced",
        }
    }
}

impl fmt::Display for PolicyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The error for a policy name that is not one of ours.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown policy `{0}` (expected cheapest, best-quality or balanced)")]
pub struct UnknownPolicy(pub String);

impl FromStr for PolicyKind {
    type Err = UnknownPolicy;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [
            PolicyKind::Cheapest,
            PolicyKind::BestQuality,
            PolicyKind::Balanced,
        ]
        .into_iter()
        .find(|p| p.name() == s)
        .ok_or_else(|| UnknownPolicy(s.to_owned()))
    }
}

/// The caller's policy: a weighting and hard limits.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Policy {
    pub kind: PolicyKind,
    /// Offers above this price per minute, or priced in another currency, are excluded.
    pub max_price_per_minute: Option<Money>,
    /// Offers priced in another currency are excluded.
    pub currency: Option<Currency>,
    /// Offers that do not list this codec are excluded.
    pub required_codec: Option<Codec>,
}

/// What the caller measured of a provider just now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Measurement {
    /// It answered after this round trip.
    Reached { rtt: Duration },
    /// It could not be reached (no address answered, or not in time): ranked below every
    /// provider that could, whatever its price, with this reason.
    Unreachable { reason: String },
}

/// The caller's own record of calls with a provider.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CallHistory {
    pub attempts: u32,
    pub answered: u32,
}

/// Live measurements by provider.
pub type Measurements = BTreeMap<ProviderId, Measurement>;
/// Call history by provider.
pub type History = BTreeMap<ProviderId, CallHistory>;

/// Offers that can carry the call, best first, and the ones that cannot, with why.
#[derive(Clone, Debug)]
pub struct Ranking<'a> {
    pub candidates: Vec<Candidate<'a>>,
    pub excluded: Vec<Exclusion<'a>>,
}

/// An offer that can carry the call, with the route it matched and its score.
#[derive(Clone, Debug)]
pub struct Candidate<'a> {
    pub offer: &'a SignedOffer,
    pub route: &'a Route,
    pub score: Score,
}

/// An offer left out of the ranking.
#[derive(Clone, Debug)]
pub struct Exclusion<'a> {
    pub offer: &'a SignedOffer,
    pub reason: ExclusionReason,
}

/// Why an offer was left out.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ExclusionReason {
    /// None of its routes covers the destination.
    NoRoute,
    /// The provider has withdrawn it.
    Withdrawn,
    /// The same provider's offer with a higher `seq` is in the input.
    Superseded { by_seq: u64 },
    /// It is priced in a currency the policy does not accept.
    CurrencyMismatch { offered: Currency, wanted: Currency },
    /// Its price per minute is above the policy's maximum.
    OverPriceLimit { price: Money, limit: Money },
    /// It does not offer the codec the policy requires.
    MissingCodec(Codec),
}

impl fmt::Display for ExclusionReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExclusionReason::NoRoute => f.write_str("no route covers the destination"),
            ExclusionReason::Withdrawn => f.write_str("withdrawn by the provider"),
            ExclusionReason::Superseded { by_seq } => write!(f, "superseded by seq {by_seq}"),
            ExclusionReason::CurrencyMismatch { offered, wanted } => {
                write!(f, "priced in {offered}, not {wanted}")
            }
            ExclusionReason::OverPriceLimit { price, limit } => {
                write!(f, "{price}/min is over the limit of {limit}/min")
            }
            ExclusionReason::MissingCodec(codec) => write!(f, "does not offer {codec}"),
        }
    }
}

/// One part of a score: its value in [0, 1] and the policy's weight for it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Part {
    pub value: f64,
    pub weight: f64,
}

impl Part {
    /// What the part adds to the total.
    pub fn contribution(&self) -> f64 {
        self.value * self.weight
    }
}

/// A candidate's score and the figures behind it.
#[derive(Clone, Debug, PartialEq)]
pub struct Score {
    /// The weighted sum of the parts, in [0, 1].
    pub total: f64,
    pub price: Part,
    pub quality: Part,
    pub latency: Part,
    /// What a [`REFERENCE_CALL`] costs on the matched route.
    pub reference_cost: Money,
    /// The reference cost over the cheapest candidate's in the same currency.
    pub cost_ratio: f64,
    /// The answer ratio estimated from the claim and the caller's history.
    pub answer_ratio: f64,
    /// The caller's own calls with this provider.
    pub history: CallHistory,
    /// The measured round trip, if any.
    pub rtt: Option<Duration>,
    /// Why the provider could not be reached just now, if it could not.
    pub unreachable: Option<String>,
}

impl Score {
    /// The measured round trip in words, or why there is none.
    pub fn latency_reason(&self) -> String {
        match (&self.unreachable, self.rtt) {
            (Some(reason), _) => format!("could not be reached: {reason}; ranked last"),
            (None, Some(rtt)) => format!("round trip {:.1} ms", rtt.as_secs_f64() * 1000.0),
            (None, None) => "round trip not measured".to_owned(),
        }
    }

    /// The arithmetic of the total, e.g. `price 1.00×0.50 + quality 0.81×0.35 + …`.
    pub fn breakdown(&self) -> String {
        format!(
            "price {:.2}×{:.2} + quality {:.2}×{:.2} + latency {:.2}×{:.2} = {:.3}",
            self.price.value,
            self.price.weight,
            self.quality.value,
            self.quality.weight,
            self.latency.value,
            self.latency.weight,
            self.total
        )
    }
}

impl Candidate<'_> {
    /// Why the candidate ranks where it does, in words.
    pub fn reasons(&self) -> Vec<String> {
        let score = &self.score;
        let quality = &self.offer.offer().quality;
        let minutes = REFERENCE_CALL.as_secs() / 60;
        let price = if score.cost_ratio <= 1.0 {
            format!("cheapest {minutes}-minute call: {}", score.reference_cost)
        } else {
            format!(
                "{minutes}-minute call {} ({:.1}× the cheapest)",
                score.reference_cost, score.cost_ratio
            )
        };
        let answers = if score.history.attempts == 0 {
            format!("answer rate {} claimed", quality.answer_seizure_ratio)
        } else {
            format!(
                "answer rate {:.1} % (you: {} of {} answered; claimed {})",
                score.answer_ratio * 100.0,
                score.history.answered,
                score.history.attempts,
                quality.answer_seizure_ratio
            )
        };
        vec![
            price,
            format!(
                "MOS {}, {answers}, post-dial delay {:.1} s",
                quality.mos,
                f64::from(quality.post_dial_delay_ms) / 1000.0
            ),
            score.latency_reason(),
        ]
    }
}

/// Ranks `offers` for a call to `destination` under `policy`.
pub fn rank<'a>(
    offers: impl IntoIterator<Item = &'a SignedOffer>,
    destination: &E164,
    measurements: &Measurements,
    history: &History,
    policy: &Policy,
) -> Ranking<'a> {
    let offers: Vec<&'a SignedOffer> = offers.into_iter().collect();
    let newest = newest_seqs(&offers);
    let mut excluded = Vec::new();
    let mut eligible = Vec::new();
    for offer in offers {
        match eligibility(offer, &newest, destination, policy) {
            Ok(route) => eligible.push((offer, route)),
            Err(reason) => excluded.push(Exclusion { offer, reason }),
        }
    }

    let reference_cost = |route: &Route| {
        route
            .tariff
            .charge(route.tariff.billed_seconds(REFERENCE_CALL))
    };
    let mut cheapest: BTreeMap<Currency, u64> = BTreeMap::new();
    for (_, route) in &eligible {
        let cost = reference_cost(route);
        let entry = cheapest.entry(cost.currency).or_insert(cost.minor_units);
        *entry = (*entry).min(cost.minor_units);
    }

    let weights = policy.kind.weights();
    let mut candidates: Vec<Candidate<'a>> = eligible
        .into_iter()
        .map(|(offer, route)| {
            let cost = reference_cost(route);
            let cheapest = cheapest
                .get(&cost.currency)
                .copied()
                .unwrap_or(cost.minor_units);
            Candidate {
                offer,
                route,
                score: score(offer, cost, cheapest, measurements, history, weights),
            }
        })
        .collect();
    candidates.sort_by(order);
    Ranking {
        candidates,
        excluded,
    }
}

/// The score of `offer`, whose reference service costs `cost` where the cheapest
/// candidate in the same currency costs `cheapest`: shared by calls and conferences.
pub(crate) fn score(
    offer: &SignedOffer,
    cost: Money,
    cheapest: u64,
    measurements: &Measurements,
    history: &History,
    weights: Weights,
) -> Score {
    let cost_ratio = if cost.minor_units == 0 {
        1.0
    } else {
        cost.minor_units as f64 / cheapest.max(1) as f64
    };
    let price_value = if cost.minor_units == 0 {
        1.0
    } else {
        cheapest as f64 / cost.minor_units as f64
    };
    let calls = history.get(&offer.provider()).copied().unwrap_or_default();
    let quality = &offer.offer().quality;
    let answer_ratio = (quality.answer_seizure_ratio.fraction() * CLAIM_WEIGHT_IN_CALLS
        + f64::from(calls.answered.min(calls.attempts)))
        / (CLAIM_WEIGHT_IN_CALLS + f64::from(calls.attempts));
    let mos_value = ((quality.mos.value() - 2.5) / 2.0).clamp(0.0, 1.0);
    let pdd_value = (1.0 - f64::from(quality.post_dial_delay_ms) / 10_000.0).clamp(0.0, 1.0);
    let quality_value = 0.5 * mos_value + 0.35 * answer_ratio + 0.15 * pdd_value;
    let (rtt, unreachable) = match measurements.get(&offer.provider()) {
        Some(Measurement::Reached { rtt }) => (Some(*rtt), None),
        Some(Measurement::Unreachable { reason }) => (None, Some(reason.clone())),
        None => (None, None),
    };
    let latency_value = match (rtt, &unreachable) {
        (Some(rtt), _) => (1.0 - rtt.as_secs_f64() / WORST_RTT.as_secs_f64()).clamp(0.0, 1.0),
        (None, Some(_)) => 0.0,
        (None, None) => UNMEASURED_LATENCY_SCORE,
    };
    let price = Part {
        value: price_value,
        weight: weights.price,
    };
    let quality = Part {
        value: quality_value,
        weight: weights.quality,
    };
    let latency = Part {
        value: latency_value,
        weight: weights.latency,
    };
    Score {
        total: price.contribution() + quality.contribution() + latency.contribution(),
        price,
        quality,
        latency,
        reference_cost: cost,
        cost_ratio,
        answer_ratio,
        history: calls,
        rtt,
        unreachable,
    }
}

/// The route an offer would carry the call on, or why it cannot.
fn eligibility<'a>(
    offer: &'a SignedOffer,
    newest: &BTreeMap<ProviderId, u64>,
    destination: &E164,
    policy: &Policy,
) -> Result<&'a Route, ExclusionReason> {
    if let Some(newer) = newer_seq(offer, newest) {
        return Err(ExclusionReason::Superseded { by_seq: newer });
    }
    if offer.offer().status == OfferStatus::Withdrawn {
        return Err(ExclusionReason::Withdrawn);
    }
    let route = offer
        .offer()
        .best_route(destination)
        .ok_or(ExclusionReason::NoRoute)?;
    within_policy(policy, offer, route.tariff.per_minute_money())?;
    Ok(route)
}

/// The highest `seq` of each provider among `offers`.
pub(crate) fn newest_seqs(offers: &[&SignedOffer]) -> BTreeMap<ProviderId, u64> {
    let mut newest = BTreeMap::new();
    for offer in offers {
        let seq = newest.entry(offer.provider()).or_insert(offer.seq());
        *seq = (*seq).max(offer.seq());
    }
    newest
}

/// The `seq` of a newer offer of the same provider (by `newest`), if there is one.
pub(crate) fn newer_seq(offer: &SignedOffer, newest: &BTreeMap<ProviderId, u64>) -> Option<u64> {
    newest
        .get(&offer.provider())
        .copied()
        .filter(|&newest| newest > offer.seq())
}

/// How a price or the codecs fall outside a policy's limits; calls and conferences
/// share the check.
pub(crate) enum PolicyMismatch {
    Currency { offered: Currency, wanted: Currency },
    OverPrice { price: Money, limit: Money },
    Codec(Codec),
}

/// Checks `price` (a minute of the service) and the offer's codecs against the policy's
/// currency, price limit and required codec.
pub(crate) fn within_policy(
    policy: &Policy,
    offer: &SignedOffer,
    price: Money,
) -> Result<(), PolicyMismatch> {
    if let Some(wanted) = policy.currency
        && price.currency != wanted
    {
        return Err(PolicyMismatch::Currency {
            offered: price.currency,
            wanted,
        });
    }
    if let Some(limit) = policy.max_price_per_minute {
        if price.currency != limit.currency {
            return Err(PolicyMismatch::Currency {
                offered: price.currency,
                wanted: limit.currency,
            });
        }
        if price.minor_units > limit.minor_units {
            return Err(PolicyMismatch::OverPrice { price, limit });
        }
    }
    if let Some(codec) = policy.required_codec
        && !offer.offer().codecs.contains(&codec)
    {
        return Err(PolicyMismatch::Codec(codec));
    }
    Ok(())
}

impl From<PolicyMismatch> for ExclusionReason {
    fn from(mismatch: PolicyMismatch) -> Self {
        match mismatch {
            PolicyMismatch::Currency { offered, wanted } => {
                ExclusionReason::CurrencyMismatch { offered, wanted }
            }
            PolicyMismatch::OverPrice { price, limit } => {
                ExclusionReason::OverPriceLimit { price, limit }
            }
            PolicyMismatch::Codec(codec) => ExclusionReason::MissingCodec(codec),
        }
    }
}

/// Best first: higher total, then cheaper, then better quality, then lower provider id.
fn order(a: &Candidate<'_>, b: &Candidate<'_>) -> Ordering {
    compare((&a.score, a.offer), (&b.score, b.offer))
}

/// The order of [`order`] on a score and its offer: shared by calls and conferences.
pub(crate) fn compare(a: (&Score, &SignedOffer), b: (&Score, &SignedOffer)) -> Ordering {
    let ((a_score, a_offer), (b_score, b_offer)) = (a, b);
    // Scores equal to nine decimals are ties, whatever the floating-point noise.
    // Values lie in [0, 1], so the product fits an i64 with room to spare.
    #[allow(clippy::cast_possible_truncation)]
    let rounded = |x: f64| (x * 1e9).round() as i64;
    // A provider that could not be reached comes after every one that could.
    a_score
        .unreachable
        .is_some()
        .cmp(&b_score.unreachable.is_some())
        .then_with(|| rounded(b_score.total).cmp(&rounded(a_score.total)))
        .then_with(|| a_score.reference_cost.cmp(&b_score.reference_cost))
        .then_with(|| rounded(b_score.quality.value).cmp(&rounded(a_score.quality.value)))
        .then_with(|| rounded(b_score.latency.value).cmp(&rounded(a_score.latency.value)))
        .then_with(|| a_offer.provider().cmp(&b_offer.provider()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::SecretKey;
    use crate::offer::tests::{gbp, route, sample_offer};
    use crate::offer::{Mos, Permille};
    use crate::time::UnixTime;

    struct Gateway {
        name: &'static str,
        seed: u8,
        routes: Vec<Route>,
        mos: u16,
        asr: u16,
    }

    fn gateway(name: &'static str, seed: u8, routes: Vec<Route>, mos: u16, asr: u16) -> Gateway {
        Gateway {
            name,
            seed,
            routes,
            mos,
            asr,
        }
    }

    fn sign(g: &Gateway) -> SignedOffer {
        let key = SecretKey::from_seed(&[g.seed; 32]);
        let mut offer = sample_offer(&key, g.routes.clone());
        offer.display_name = g.name.into();
        offer.quality.mos = Mos(g.mos);
        offer.quality.answer_seizure_ratio = Permille(g.asr);
        SignedOffer::sign(offer, &key).unwrap()
    }

    fn uk_mobile() -> E164 {
        E164::parse("+447700900123").unwrap()
    }

    fn names(ranking: &Ranking<'_>) -> Vec<String> {
        ranking
            .candidates
            .iter()
            .map(|c| c.offer.offer().display_name.clone())
            .collect()
    }

    fn market() -> Vec<SignedOffer> {
        [
            gateway("Budget", 1, vec![route("44", 2)], 280, 200),
            gateway("Inter", 2, vec![route("44", 4), route("447", 3)], 420, 600),
            gateway("Premium", 3, vec![route("447", 8)], 440, 700),
            gateway("Paris", 4, vec![route("33", 1)], 430, 600),
        ]
        .iter()
        .map(sign)
        .collect()
    }

    fn rank_with(offers: &[SignedOffer], policy: &Policy) -> Vec<String> {
        names(&rank(
            offers,
            &uk_mobile(),
            &Measurements::new(),
            &History::new(),
            policy,
        ))
    }

    #[test]
    fn each_policy_orders_the_market_its_way() {
        let offers = market();
        let policy = |kind| Policy {
            kind,
            ..Policy::default()
        };
        assert_eq!(
            rank_with(&offers, &policy(PolicyKind::Cheapest)),
            ["Budget", "Inter", "Premium"]
        );
        assert_eq!(
            rank_with(&offers, &policy(PolicyKind::BestQuality)),
            ["Premium", "Inter", "Budget"]
        );
        assert_eq!(
            rank_with(&offers, &policy(PolicyKind::Balanced)),
            ["Inter", "Budget", "Premium"]
        );
    }

    #[test]
    fn offers_that_do_not_cover_the_destination_are_excluded_with_a_reason() {
        let offers = market();
        let ranking = rank(
            &offers,
            &uk_mobile(),
            &Measurements::new(),
            &History::new(),
            &Policy::default(),
        );
        let paris: Vec<_> = ranking
            .excluded
            .iter()
            .map(|e| (e.offer.offer().display_name.as_str(), e.reason.clone()))
            .collect();
        assert_eq!(paris, [("Paris", ExclusionReason::NoRoute)]);
        let inter = ranking
            .candidates
            .iter()
            .find(|c| c.offer.offer().display_name == "Inter");
        assert_eq!(
            inter.map(|c| c.route.prefix.to_string()).as_deref(),
            Some("+447"),
            "longest prefix"
        );
    }

    #[test]
    fn limits_exclude_before_scoring() {
        let offers = market();
        let limit = Money::new(gbp(), 3);
        let policy = Policy {
            max_price_per_minute: Some(limit),
            ..Policy::default()
        };
        let ranking = rank(
            &offers,
            &uk_mobile(),
            &Measurements::new(),
            &History::new(),
            &policy,
        );
        assert_eq!(names(&ranking), ["Inter", "Budget"]);
        assert!(ranking.excluded.iter().any(|e| e.reason
            == ExclusionReason::OverPriceLimit {
                price: Money::new(gbp(), 8),
                limit
            }));

        let eur = Currency::new("EUR").unwrap();
        let policy = Policy {
            currency: Some(eur),
            ..Policy::default()
        };
        assert!(rank_with(&offers, &policy).is_empty());

        let policy = Policy {
            required_codec: Some(Codec::Opus),
            ..Policy::default()
        };
        let ranking = rank(
            &offers,
            &uk_mobile(),
            &Measurements::new(),
            &History::new(),
            &policy,
        );
        assert!(ranking.candidates.is_empty());
        assert!(
            ranking
                .excluded
                .iter()
                .any(|e| e.reason == ExclusionReason::MissingCodec(Codec::Opus))
        );
    }

    #[test]
    fn ties_are_broken_deterministically() {
        // Identical terms from three providers: the order is by provider id, whatever
        // the input order.
        let twins: Vec<SignedOffer> = [7u8, 5, 6]
            .iter()
            .map(|&seed| sign(&gateway("Twin", seed, vec![route("44", 2)], 400, 500)))
            .collect();
        let mut expected: Vec<ProviderId> = twins.iter().map(SignedOffer::provider).collect();
        expected.sort();
        for rotation in 0..twins.len() {
            let mut input = twins.clone();
            input.rotate_left(rotation);
            for kind in [
                PolicyKind::Cheapest,
                PolicyKind::BestQuality,
                PolicyKind::Balanced,
            ] {
                let ranking = rank(
                    &input,
                    &uk_mobile(),
                    &Measurements::new(),
                    &History::new(),
                    &Policy {
                        kind,
                        ..Policy::default()
                    },
                );
                let order: Vec<ProviderId> = ranking
                    .candidates
                    .iter()
                    .map(|c| c.offer.provider())
                    .collect();
                assert_eq!(order, expected, "{kind} with input rotated by {rotation}");
            }
        }
        // Equal price under `cheapest`: the better quality goes first.
        let offers = [
            sign(&gateway("Plain", 1, vec![route("44", 2)], 380, 500)),
            sign(&gateway("Clear", 2, vec![route("44", 2)], 440, 500)),
        ];
        assert_eq!(
            rank_with(
                &offers,
                &Policy {
                    kind: PolicyKind::Cheapest,
                    ..Policy::default()
                }
            ),
            ["Clear", "Plain"]
        );
    }

    #[test]
    fn history_and_measurements_move_a_provider() {
        let offers = market();
        let inter = offers[1].provider();
        let budget = offers[0].provider();
        // Inter never answers the caller; Budget always does and is close by.
        let history = History::from([
            (
                inter,
                CallHistory {
                    attempts: 40,
                    answered: 0,
                },
            ),
            (
                budget,
                CallHistory {
                    attempts: 40,
                    answered: 40,
                },
            ),
        ]);
        let measurements = Measurements::from([(
            budget,
            Measurement::Reached {
                rtt: Duration::from_millis(5),
            },
        )]);
        let ranking = rank(
            &offers,
            &uk_mobile(),
            &measurements,
            &history,
            &Policy::default(),
        );
        assert_eq!(names(&ranking), ["Budget", "Inter", "Premium"]);
        let first = &ranking.candidates[0];
        assert_eq!(first.score.rtt, Some(Duration::from_millis(5)));
        assert!((first.score.answer_ratio - (0.2 * 10.0 + 40.0) / 50.0).abs() < 1e-12);
        let inter = &ranking.candidates[1];
        assert!((inter.score.answer_ratio - 0.6 * 10.0 / 50.0).abs() < 1e-12);
        assert!(first.reasons().iter().any(|r| r.contains("40 of 40")));
    }

    #[test]
    fn a_provider_that_could_not_be_reached_ranks_below_every_one_that_could() {
        let offers = market();
        let budget = offers[0].provider();
        let unreachable = Measurements::from([(
            budget,
            Measurement::Unreachable {
                reason: "no address answered within 2 s".into(),
            },
        )]);
        for kind in [
            PolicyKind::Cheapest,
            PolicyKind::Balanced,
            PolicyKind::BestQuality,
        ] {
            let policy = Policy {
                kind,
                ..Policy::default()
            };
            let ranking = rank(
                &offers,
                &uk_mobile(),
                &unreachable,
                &History::new(),
                &policy,
            );
            let last = ranking
                .candidates
                .last()
                .unwrap_or_else(|| panic!("no candidates"));
            assert_eq!(last.offer.offer().display_name, "Budget", "{kind:?}");
            assert!(
                last.reasons()
                    .iter()
                    .any(|r| r.contains("could not be reached: no address answered")),
                "{:?}",
                last.reasons()
            );
        }
        // Unmeasured is not unreachable: the cheapest still leads the cheapest policy.
        let policy = Policy {
            kind: PolicyKind::Cheapest,
            ..Policy::default()
        };
        assert_eq!(rank_with(&offers, &policy)[0], "Budget");
    }

    #[test]
    fn withdrawn_and_superseded_offers_are_excluded() {
        let key = SecretKey::from_seed(&[2; 32]);
        let offer = sample_offer(&key, vec![route("44", 3)]);
        let old = SignedOffer::sign(offer.clone(), &key).unwrap();
        let withdrawal = SignedOffer::sign(offer.withdrawal(UnixTime(1500)), &key).unwrap();
        let offers = [old, withdrawal];
        let ranking = rank(
            &offers,
            &uk_mobile(),
            &Measurements::new(),
            &History::new(),
            &Policy::default(),
        );
        assert!(ranking.candidates.is_empty());
        let reasons: Vec<_> = ranking.excluded.iter().map(|e| e.reason.clone()).collect();
        assert_eq!(
            reasons,
            [
                ExclusionReason::Superseded { by_seq: 2 },
                ExclusionReason::Withdrawn
            ]
        );
    }

    #[test]
    fn the_breakdown_adds_up() {
        let offers = market();
        let ranking = rank(
            &offers,
            &uk_mobile(),
            &Measurements::new(),
            &History::new(),
            &Policy::default(),
        );
        for candidate in &ranking.candidates {
            let s = &candidate.score;
            let sum = s.price.contribution() + s.quality.contribution() + s.latency.contribution();
            assert!((sum - s.total).abs() < 1e-12);
            assert!((0.0..=1.0).contains(&s.total));
            assert!(s.breakdown().ends_with(&format!("= {:.3}", s.total)));
        }
        // Budget: 2 p/min, 60 s increments: a 3-minute call costs 6 p, the cheapest.
        let budget = ranking
            .candidates
            .iter()
            .find(|c| c.offer.offer().display_name == "Budget");
        assert_eq!(
            budget.map(|c| c.score.reference_cost),
            Some(Money::new(gbp(), 6))
        );
        let inter = ranking
            .candidates
            .iter()
            .find(|c| c.offer.offer().display_name == "Inter");
        assert_eq!(inter.map(|c| c.score.cost_ratio), Some(1.5));
    }
}
