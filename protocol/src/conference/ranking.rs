//! Ranking conference bridges: the same scoring and policies as calls
//! ([`crate::ranking`]), with the price of a reference conference instead of a call.
//!
//! The price part compares what a room of the wanted size costs for
//! [`REFERENCE_CONFERENCE`] under each bridge's tariff (room price plus participant-minutes);
//! quality and latency are scored exactly as for calls. A policy's maximum price per minute
//! applies to the price per participant-minute.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use crate::conference::terms::ConferenceTerms;
use crate::identity::ProviderId;
use crate::money::{Currency, Money};
use crate::offer::{Codec, OfferStatus, ServiceKind};
use crate::ranking::{
    History, Measurements, Policy, PolicyMismatch, Score, compare, newer_seq, newest_seqs, score,
    within_policy,
};
use crate::signed::SignedOffer;

/// The length of the conference whose cost is compared.
pub const REFERENCE_CONFERENCE: Duration = Duration::from_secs(30 * 60);

/// A bridge that can host the room, with its terms and score.
#[derive(Clone, Debug)]
pub struct ConferenceCandidate<'a> {
    pub offer: &'a SignedOffer,
    pub terms: ConferenceTerms,
    pub score: Score,
}

/// Bridges that can host the room, best first, and the others with why.
#[derive(Clone, Debug)]
pub struct ConferenceRanking<'a> {
    pub candidates: Vec<ConferenceCandidate<'a>>,
    pub excluded: Vec<(&'a SignedOffer, ConferenceExclusion)>,
}

/// Why a bridge was left out.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConferenceExclusion {
    /// The offer is not a conference service.
    NotConference,
    /// The provider has withdrawn it.
    Withdrawn,
    /// The same provider's offer with a higher `seq` is in the input.
    Superseded { by_seq: u64 },
    /// Its rooms are smaller than the wanted size.
    RoomTooSmall { max: u32 },
    /// It is priced in a currency the policy does not accept.
    CurrencyMismatch { offered: Currency, wanted: Currency },
    /// Its price per participant-minute is above the policy's maximum.
    OverPriceLimit { price: Money, limit: Money },
    /// It does not offer the codec the policy requires.
    MissingCodec(Codec),
}

impl fmt::Display for ConferenceExclusion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConferenceExclusion::NotConference => f.write_str("not a conference service"),
            ConferenceExclusion::Withdrawn => f.write_str("withdrawn by the provider"),
            ConferenceExclusion::Superseded { by_seq } => write!(f, "superseded by seq {by_seq}"),
            ConferenceExclusion::RoomTooSmall { max } => {
                write!(f, "rooms of at most {max} participants")
            }
            ConferenceExclusion::CurrencyMismatch { offered, wanted } => {
                write!(f, "priced in {offered}, not {wanted}")
            }
            ConferenceExclusion::OverPriceLimit { price, limit } => {
                write!(
                    f,
                    "{price} per participant-minute is over the limit of {limit}"
                )
            }
            ConferenceExclusion::MissingCodec(codec) => write!(f, "does not offer {codec}"),
        }
    }
}

impl ConferenceCandidate<'_> {
    /// Why the candidate ranks where it does, in words.
    pub fn reasons(&self) -> Vec<String> {
        let minutes = REFERENCE_CONFERENCE.as_secs() / 60;
        let quality = &self.offer.offer().quality;
        let price = if self.score.cost_ratio <= 1.0 {
            format!(
                "cheapest {minutes}-minute room: {}",
                self.score.reference_cost
            )
        } else {
            format!(
                "{minutes}-minute room {} ({:.1}× the cheapest)",
                self.score.reference_cost, self.score.cost_ratio
            )
        };
        let latency = self.score.latency_reason();
        vec![
            price,
            format!(
                "{} per room + {} per participant-minute, rooms up to {}",
                self.terms.tariff.per_room_money(),
                self.terms.tariff.per_participant_minute_money(),
                self.terms.participants_per_room
            ),
            format!("MOS {}", quality.mos),
            latency,
        ]
    }
}

/// What a room of `participants` costs for [`REFERENCE_CONFERENCE`] under `terms`.
pub fn reference_cost(terms: &ConferenceTerms, participants: u32) -> Money {
    let tariff = &terms.tariff;
    let each = tariff.billed_seconds(REFERENCE_CONFERENCE);
    tariff.charge(each.saturating_mul(u64::from(participants)))
}

/// Ranks conference `offers` for a room of `participants` under `policy`.
pub fn rank_conferences<'a>(
    offers: impl IntoIterator<Item = &'a SignedOffer>,
    participants: u32,
    measurements: &Measurements,
    history: &History,
    policy: &Policy,
) -> ConferenceRanking<'a> {
    let offers: Vec<&'a SignedOffer> = offers.into_iter().collect();
    let newest = newest_seqs(&offers);
    let mut excluded = Vec::new();
    let mut eligible = Vec::new();
    for offer in offers {
        match eligibility(offer, &newest, participants, policy) {
            Ok(terms) => eligible.push((offer, terms)),
            Err(reason) => excluded.push((offer, reason)),
        }
    }
    let mut cheapest: BTreeMap<Currency, u64> = BTreeMap::new();
    for (_, terms) in &eligible {
        let cost = reference_cost(terms, participants);
        let entry = cheapest.entry(cost.currency).or_insert(cost.minor_units);
        *entry = (*entry).min(cost.minor_units);
    }
    let weights = policy.kind.weights();
    let mut candidates: Vec<ConferenceCandidate<'a>> = eligible
        .into_iter()
        .map(|(offer, terms)| {
            let cost = reference_cost(&terms, participants);
            let cheapest = cheapest
                .get(&cost.currency)
                .copied()
                .unwrap_or(cost.minor_units);
            ConferenceCandidate {
                offer,
                terms,
                score: score(offer, cost, cheapest, measurements, history, weights),
            }
        })
        .collect();
    candidates.sort_by(|a, b| compare((&a.score, a.offer), (&b.score, b.offer)));
    ConferenceRanking {
        candidates,
        excluded,
    }
}

impl From<PolicyMismatch> for ConferenceExclusion {
    fn from(mismatch: PolicyMismatch) -> Self {
        match mismatch {
            PolicyMismatch::Currency { offered, wanted } => {
                ConferenceExclusion::CurrencyMismatch { offered, wanted }
            }
            PolicyMismatch::OverPrice { price, limit } => {
                ConferenceExclusion::OverPriceLimit { price, limit }
            }
            PolicyMismatch::Codec(codec) => ConferenceExclusion::MissingCodec(codec),
        }
    }
}

fn eligibility(
    offer: &SignedOffer,
    newest: &BTreeMap<ProviderId, u64>,
    participants: u32,
    policy: &Policy,
) -> Result<ConferenceTerms, ConferenceExclusion> {
    if offer.offer().kind != ServiceKind::Conference {
        return Err(ConferenceExclusion::NotConference);
    }
    if let Some(newer) = newer_seq(offer, newest) {
        return Err(ConferenceExclusion::Superseded { by_seq: newer });
    }
    let terms = match (offer.offer().status, offer.offer().conference) {
        (OfferStatus::Available, Some(terms)) => terms,
        _ => return Err(ConferenceExclusion::Withdrawn),
    };
    if terms.participants_per_room < participants {
        return Err(ConferenceExclusion::RoomTooSmall {
            max: terms.participants_per_room,
        });
    }
    within_policy(policy, offer, terms.tariff.per_participant_minute_money())?;
    Ok(terms)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::conference::terms::ConferenceTariff;
    use crate::identity::SecretKey;
    use crate::offer::tests::sample_offer;
    use crate::offer::{Mos, ServiceOffer};
    use crate::ranking::PolicyKind;
    use crate::time::UnixTime;

    /// A conference offer of key `seed`: rooms of `size`, `per_room` and `per_minute`.
    pub(crate) fn conference_offer(
        seed: u8,
        name: &str,
        size: u32,
        per_room: u64,
        per_minute: u64,
        mos: u16,
    ) -> ServiceOffer {
        let key = SecretKey::from_seed(&[seed; 32]);
        let mut offer = sample_offer(&key, Vec::new());
        offer.kind = ServiceKind::Conference;
        offer.display_name = name.into();
        offer.quality.mos = Mos(mos);
        offer.conference = Some(ConferenceTerms {
            rooms: 10,
            participants_per_room: size,
            tariff: ConferenceTariff {
                currency: Currency::new("EUR").unwrap(),
                per_room,
                per_participant_minute: per_minute,
                billing_increment_secs: 60,
            },
        });
        offer
    }

    fn sign(offer: ServiceOffer, seed: u8) -> SignedOffer {
        SignedOffer::sign(offer, &SecretKey::from_seed(&[seed; 32])).unwrap()
    }

    fn market() -> Vec<SignedOffer> {
        vec![
            sign(conference_offer(1, "Cheap", 10, 0, 1, 300), 1),
            sign(conference_offer(2, "Good", 50, 50, 2, 450), 2),
            sign(conference_offer(3, "Tiny", 3, 0, 1, 450), 3),
            sign(
                crate::offer::tests::sample_offer(
                    &SecretKey::from_seed(&[4; 32]),
                    vec![crate::offer::tests::route("44", 1)],
                ),
                4,
            ),
        ]
    }

    fn names(ranking: &ConferenceRanking<'_>) -> Vec<String> {
        ranking
            .candidates
            .iter()
            .map(|c| c.offer.offer().display_name.clone())
            .collect()
    }

    #[test]
    fn conference_offers_sign_only_with_their_terms() {
        let key = SecretKey::from_seed(&[1; 32]);
        let mut offer = conference_offer(1, "Bridge", 10, 0, 1, 400);
        assert!(SignedOffer::sign(offer.clone(), &key).is_ok());
        offer.conference = None;
        assert!(SignedOffer::sign(offer.clone(), &key).is_err());
        let mut bad_region = conference_offer(1, "Bridge", 10, 0, 1, 400);
        bad_region.region = "EU West".into();
        assert!(SignedOffer::sign(bad_region, &key).is_err());
        let withdrawn = conference_offer(1, "Bridge", 10, 0, 1, 400).withdrawal(UnixTime(2000));
        assert_eq!(withdrawn.conference, None);
        assert!(SignedOffer::sign(withdrawn, &key).is_ok());
    }

    #[test]
    fn policies_order_bridges_and_small_rooms_are_left_out() {
        let offers = market();
        let policy = |kind| Policy {
            kind,
            ..Policy::default()
        };
        let (no, none): (Measurements, History) = (BTreeMap::new(), BTreeMap::new());
        let cheapest = rank_conferences(&offers, 4, &no, &none, &policy(PolicyKind::Cheapest));
        assert_eq!(names(&cheapest), vec!["Cheap", "Good"]);
        // 4 × 30 participant-minutes at 1 EUR cent against 50 + 4 × 30 × 2.
        assert_eq!(cheapest.candidates[0].score.reference_cost.minor_units, 120);
        assert_eq!(cheapest.candidates[1].score.reference_cost.minor_units, 290);
        let reasons: Vec<_> = cheapest
            .excluded
            .iter()
            .map(|(o, r)| (o.offer().display_name.clone(), r.clone()))
            .collect();
        assert!(reasons.contains(&("Tiny".into(), ConferenceExclusion::RoomTooSmall { max: 3 })));
        assert!(reasons.contains(&("Inter".into(), ConferenceExclusion::NotConference)));
        let quality = rank_conferences(&offers, 4, &no, &none, &policy(PolicyKind::BestQuality));
        assert_eq!(names(&quality), vec!["Good", "Cheap"]);

        let capped = Policy {
            max_price_per_minute: Some(Money::new(Currency::new("EUR").unwrap(), 1)),
            ..Policy::default()
        };
        assert_eq!(
            names(&rank_conferences(&offers, 4, &no, &none, &capped)),
            vec!["Cheap"]
        );
    }
}
