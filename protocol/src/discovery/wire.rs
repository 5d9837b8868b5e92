//! The index protocol's messages (`/interlink/index/1`): one request, one response.
//!
//! - `Find(query)` asks a node for the peers it knows closest to the query's key and, if
//!   it holds the key, its answer: signed offers, each with its place among the offers
//!   the holder has held longest if it is one of them, how
//!   many matched and how many it holds. The offers are the holder's wire bytes; the
//!   caller verifies each one ([`crate::SignedOffer::decode`]).
//! - `Store { key, offers }` hands a node offers to hold under a key (a publisher its own
//!   offer; a caller or holder the newer copies another node lacks); the response says
//!   what became of each.
//! - `Sync { key, digest }` tells another holder of a key what the sender holds there
//!   (provider and `seq`); it answers with what it wants and what it has newer, so that
//!   holders a publication missed catch up (anti-entropy).
//!
//! Every message is bincode with a size limit, and every list in it is bounded, checked
//! on decode before anything else reads it.

use multiaddr::Multiaddr;
use serde::{Deserialize, Serialize};

use super::key::IndexKey;
use super::query::{OfferQuery, QueryError};
use crate::codec::{self, CodecError};
use crate::identity::ProviderId;
use crate::offer::{MAX_ADDRESS_BYTES, MAX_ADDRESSES};
use crate::signed::MAX_SIGNED_OFFER_BYTES;

/// The libp2p protocol name.
pub const PROTOCOL_NAME: &str = "/interlink/index/1";
/// Offers one `Store` may carry.
pub const MAX_STORE_OFFERS: usize = 16;
/// Bytes of offers one answer may carry; a holder stops adding offers before this and
/// says the answer was truncated.
pub const MAX_ANSWER_BYTES: usize = 256 * 1024;
/// Peers one answer may name.
pub const MAX_CLOSER_PEERS: usize = 20;
/// Bytes of a peer id (a multihash of a public key).
pub const MAX_PEER_ID_BYTES: usize = 64;
/// Characters of the reason given for an invalid offer.
pub const MAX_REASON_CHARS: usize = 200;
/// Providers one digest may list: as many as a key holds at most by default.
pub const MAX_DIGEST: usize = 1024;
/// The largest request: a `Store` of [`MAX_STORE_OFFERS`] offers of the largest size.
pub const MAX_REQUEST_BYTES: usize = MAX_STORE_OFFERS * (MAX_SIGNED_OFFER_BYTES + 8) + 1024;
/// The largest response: a full answer and its peers.
pub const MAX_RESPONSE_BYTES: usize = MAX_ANSWER_BYTES
    + MAX_SIGNED_OFFER_BYTES
    + MAX_CLOSER_PEERS * (MAX_PEER_ID_BYTES + MAX_ADDRESSES * (MAX_ADDRESS_BYTES + 4) + 8)
    + 1024;

/// A request of the index protocol.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request {
    /// Closer peers, and the answer if the node holds the query's key.
    Find(OfferQuery),
    /// Offers (signed wire bytes) to hold under `key`.
    Store { key: IndexKey, offers: Vec<Vec<u8>> },
    /// What the sender holds under `key` (provider and `seq`), for the two holders to
    /// hand each other what the other lacks.
    Sync {
        key: IndexKey,
        digest: Vec<(ProviderId, u64)>,
    },
}

/// A response of the index protocol.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Response {
    Found(Found),
    /// What became of each offer of a `Store`, in order.
    Stored(Vec<StoreOutcome>),
    /// The answer to `Sync`: the providers whose offers the answering node wants (it
    /// lacks them or holds them older), and its own offers the sender lacks or holds older
    /// (signed wire bytes, at most [`MAX_STORE_OFFERS`]).
    Synced {
        want: Vec<ProviderId>,
        offers: Vec<Vec<u8>>,
    },
    /// The request was not served.
    Refused(RequestRefusal),
}

/// The response to `Find`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Found {
    /// Peers the node knows closest to the key, for the caller to ask next.
    pub closer: Vec<PeerRecord>,
    /// The node's answer, if it holds the key.
    pub answer: Option<WireAnswer>,
}

/// A peer and where to dial it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerRecord {
    /// The peer id's bytes.
    pub peer: Vec<u8>,
    pub addresses: Vec<Multiaddr>,
}

/// A holder's answer.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireAnswer {
    pub offers: Vec<AnsweredOffer>,
    /// Offers that matched the query at the holder.
    pub matching: u32,
    /// Providers the holder holds under the key.
    pub held: u32,
    /// Offers were left out to keep the answer within [`MAX_ANSWER_BYTES`].
    pub truncated: bool,
}

/// One offer of an answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AnsweredOffer {
    /// The signed offer's wire bytes.
    pub offer: Vec<u8>,
    /// Its place among the offers the answering node has held longest (0: held
    /// longest), if it is one of them.
    pub seniority: Option<u16>,
}

/// What became of one stored offer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum StoreOutcome {
    Added,
    Replaced,
    Unchanged,
    Refused(StoreRefusal),
}

/// Why a node did not hold an offer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum StoreRefusal {
    /// The bytes are not a valid signed offer (size, signature, fields, time).
    Invalid(String),
    NotUnderKey,
    Stale {
        held_seq: u64,
    },
    KeyFull,
    NewcomersThrottled {
        retry_after_secs: u32,
    },
    SenderQuota,
    IndexFull,
    TooManyKeys,
}

/// Why a request was not served at all.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RequestRefusal {
    /// The peer sent more requests than the node serves it.
    RateLimited,
    /// The request was out of bounds.
    Invalid,
}

/// Why bytes are not a message of the index protocol.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    #[error(transparent)]
    Codec(#[from] CodecError),
    #[error(transparent)]
    Query(#[from] QueryError),
    #[error("{what}: {count} is over the limit of {limit}")]
    TooMany {
        what: &'static str,
        count: usize,
        limit: usize,
    },
}

fn at_most(what: &'static str, count: usize, limit: usize) -> Result<(), WireError> {
    if count > limit {
        return Err(WireError::TooMany { what, count, limit });
    }
    Ok(())
}

impl Request {
    /// The request's wire bytes.
    pub fn encode(&self) -> Result<Vec<u8>, WireError> {
        self.check()?;
        Ok(codec::encode::<_, MAX_REQUEST_BYTES>(self)?)
    }

    /// Reads a request and checks its bounds.
    pub fn decode(bytes: &[u8]) -> Result<Request, WireError> {
        let request: Request = codec::decode::<_, MAX_REQUEST_BYTES>(bytes)?;
        request.check()?;
        Ok(request)
    }

    fn check(&self) -> Result<(), WireError> {
        match self {
            Request::Find(query) => Ok(query.check()?),
            Request::Store { offers, .. } => {
                at_most("offers in a store", offers.len(), MAX_STORE_OFFERS)?;
                for offer in offers {
                    at_most("offer bytes", offer.len(), MAX_SIGNED_OFFER_BYTES)?;
                }
                Ok(())
            }
            Request::Sync { digest, .. } => at_most("digest entries", digest.len(), MAX_DIGEST),
        }
    }
}

impl Response {
    /// The response's wire bytes.
    pub fn encode(&self) -> Result<Vec<u8>, WireError> {
        self.check()?;
        Ok(codec::encode::<_, MAX_RESPONSE_BYTES>(self)?)
    }

    /// Reads a response and checks its bounds.
    pub fn decode(bytes: &[u8]) -> Result<Response, WireError> {
        let response: Response = codec::decode::<_, MAX_RESPONSE_BYTES>(bytes)?;
        response.check()?;
        Ok(response)
    }

    fn check(&self) -> Result<(), WireError> {
        match self {
            Response::Found(found) => {
                at_most("closer peers", found.closer.len(), MAX_CLOSER_PEERS)?;
                for peer in &found.closer {
                    at_most("peer id bytes", peer.peer.len(), MAX_PEER_ID_BYTES)?;
                    at_most("addresses", peer.addresses.len(), MAX_ADDRESSES)?;
                    for address in &peer.addresses {
                        at_most("address bytes", address.len(), MAX_ADDRESS_BYTES)?;
                    }
                }
                if let Some(answer) = &found.answer {
                    let bytes: usize = answer.offers.iter().map(|o| o.offer.len()).sum();
                    at_most(
                        "answer bytes",
                        bytes,
                        MAX_ANSWER_BYTES + MAX_SIGNED_OFFER_BYTES,
                    )?;
                    for offer in &answer.offers {
                        at_most("offer bytes", offer.offer.len(), MAX_SIGNED_OFFER_BYTES)?;
                    }
                }
                Ok(())
            }
            Response::Stored(outcomes) => {
                at_most("store outcomes", outcomes.len(), MAX_STORE_OFFERS)?;
                for outcome in outcomes {
                    if let StoreOutcome::Refused(StoreRefusal::Invalid(reason)) = outcome {
                        at_most("reason characters", reason.len(), MAX_REASON_CHARS * 4)?;
                    }
                }
                Ok(())
            }
            Response::Synced { want, offers } => {
                at_most("providers wanted", want.len(), MAX_DIGEST)?;
                at_most("offers in a sync", offers.len(), MAX_STORE_OFFERS)?;
                for offer in offers {
                    at_most("offer bytes", offer.len(), MAX_SIGNED_OFFER_BYTES)?;
                }
                Ok(())
            }
            Response::Refused(_) => Ok(()),
        }
    }
}

impl WireAnswer {
    /// The answer to send for `selection`, from a table holding `held` providers: offers
    /// in order until the next would pass [`MAX_ANSWER_BYTES`].
    pub fn from_selection(selection: &super::query::Selection<'_>, held: usize) -> WireAnswer {
        let mut offers = Vec::with_capacity(selection.offers.len());
        let mut bytes = 0;
        let mut truncated = false;
        for selected in &selection.offers {
            let offer = selected.offer.as_bytes();
            if bytes + offer.len() > MAX_ANSWER_BYTES {
                truncated = true;
                break;
            }
            bytes += offer.len();
            offers.push(AnsweredOffer {
                offer: offer.to_vec(),
                seniority: selected.seniority,
            });
        }
        WireAnswer {
            offers,
            matching: u32::try_from(selection.matching).unwrap_or(u32::MAX),
            held: u32::try_from(held).unwrap_or(u32::MAX),
            truncated,
        }
    }
}

impl StoreRefusal {
    /// The refusal to send for an index's refusal.
    pub fn from_index(refusal: &super::index::Refusal) -> StoreRefusal {
        use super::index::Refusal;
        match refusal {
            Refusal::NotUnderKey { .. } => StoreRefusal::NotUnderKey,
            Refusal::Stale { held, .. } => StoreRefusal::Stale { held_seq: *held },
            Refusal::KeyFull { .. } => StoreRefusal::KeyFull,
            Refusal::NewcomersThrottled { retry_after, .. } => StoreRefusal::NewcomersThrottled {
                retry_after_secs: u32::try_from(retry_after.as_secs().saturating_add(1))
                    .unwrap_or(u32::MAX),
            },
            Refusal::SenderQuota { .. } => StoreRefusal::SenderQuota,
            Refusal::IndexFull { .. } => StoreRefusal::IndexFull,
            Refusal::TooManyKeys { .. } => StoreRefusal::TooManyKeys,
        }
    }

    /// A refusal for bytes that are not a valid offer, with the reason cut short.
    pub fn invalid(reason: &dyn std::fmt::Display) -> StoreRefusal {
        StoreRefusal::Invalid(reason.to_string().chars().take(MAX_REASON_CHARS).collect())
    }

    /// A short stable label, for logs and metrics.
    pub fn label(&self) -> &'static str {
        match self {
            StoreRefusal::Invalid(_) => "invalid",
            StoreRefusal::NotUnderKey => "not_under_key",
            StoreRefusal::Stale { .. } => "stale_seq",
            StoreRefusal::KeyFull => "key_full",
            StoreRefusal::NewcomersThrottled { .. } => "newcomers_throttled",
            StoreRefusal::SenderQuota => "sender_quota",
            StoreRefusal::IndexFull => "index_full",
            StoreRefusal::TooManyKeys => "too_many_keys",
        }
    }
}

impl std::fmt::Display for StoreRefusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreRefusal::Invalid(reason) => write!(f, "invalid offer: {reason}"),
            StoreRefusal::NotUnderKey => f.write_str("the offer has no route under the key"),
            StoreRefusal::Stale { held_seq } => {
                write!(f, "the node holds a newer offer (seq {held_seq})")
            }
            StoreRefusal::KeyFull => f.write_str("the key holds its limit of providers"),
            StoreRefusal::NewcomersThrottled { retry_after_secs } => write!(
                f,
                "the key admits few new providers a minute; try again in {retry_after_secs} s"
            ),
            StoreRefusal::SenderQuota => {
                f.write_str("the sender stored its limit of other providers' offers")
            }
            StoreRefusal::IndexFull => f.write_str("the node's index is full"),
            StoreRefusal::TooManyKeys => f.write_str("the node holds its limit of keys"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::destination::E164;
    use crate::offer::ServiceKind;
    use crate::ranking::Policy;

    fn query() -> OfferQuery {
        OfferQuery::number(
            E164::parse("+447700900123").unwrap(),
            vec![ServiceKind::WEBRTC_TO_PSTN],
            Policy::default(),
            10,
        )
    }

    #[test]
    fn messages_round_trip() {
        let request = Request::Find(query());
        let bytes = request.encode().unwrap();
        assert_eq!(Request::decode(&bytes), Ok(request));
        let response = Response::Found(Found {
            closer: vec![PeerRecord {
                peer: vec![0, 36, 8, 1],
                addresses: vec!["/ip4/192.0.2.1/tcp/4001".parse().unwrap()],
            }],
            answer: Some(WireAnswer {
                offers: vec![AnsweredOffer {
                    offer: vec![1, 2, 3],
                    seniority: Some(0),
                }],
                matching: 7,
                held: 9,
                truncated: false,
            }),
        });
        let bytes = response.encode().unwrap();
        assert_eq!(Response::decode(&bytes), Ok(response));
    }

    #[test]
    fn lists_over_their_bounds_are_refused_on_decode() {
        let store = Request::Store {
            key: query().key(),
            offers: vec![vec![0]; MAX_STORE_OFFERS + 1],
        };
        assert!(store.encode().is_err());
        let bytes = codec::encode::<_, MAX_REQUEST_BYTES>(&store).unwrap();
        assert!(matches!(
            Request::decode(&bytes),
            Err(WireError::TooMany {
                what: "offers in a store",
                ..
            })
        ));
        let mut unbounded = query();
        unbounded.limit = 0;
        let bytes = codec::encode::<_, MAX_REQUEST_BYTES>(&Request::Find(unbounded)).unwrap();
        assert!(matches!(Request::decode(&bytes), Err(WireError::Query(_))));
        let crowded = Response::Found(Found {
            closer: vec![
                PeerRecord {
                    peer: vec![1],
                    addresses: vec![]
                };
                MAX_CLOSER_PEERS + 1
            ],
            answer: None,
        });
        let bytes = codec::encode::<_, MAX_RESPONSE_BYTES>(&crowded).unwrap();
        assert!(Response::decode(&bytes).is_err());
        assert!(Response::decode(&[0xff; 3]).is_err());
    }
}
