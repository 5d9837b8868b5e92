//! Interlink's protocol: what providers publish, how callers read and rank it.
//!
//! This crate is the reference for the wire formats and the decisions built on them, with
//! no sockets, no async runtime and no clock: whoever drives it passes `now` in and sends
//! the bytes it returns. The node (`interlink-node`) and the simulations drive the same
//! code.
//!
//! - [`offer`]: a provider's [`ServiceOffer`]: kind of service, routes (E.164 prefixes and
//!   tariffs), codecs, claimed quality, capacity, addresses.
//! - [`envelope`]: [`Signed`], the one envelope every signed thing travels in (offers,
//!   invites, receipts, reservations, join tokens); opening it checks size, encoding,
//!   signature and signer, then the type's own checks ([`Signable`]).
//! - [`signed`]: [`SignedOffer`], the only form in which an offer travels; decoding it
//!   checks size, signature, key binding, version, bounds and expiry.
//! - [`destination`] and [`country`]: destinations normalised to [`E164`], route
//!   [`Prefix`]es, and the ITU country-code table.
//! - [`dht`]: the Kademlia keys offers and provider records live under.
//! - [`discovery`]: the offer index: keys, queries, what holders admit and answer, the
//!   caller's walk and cache.
//! - [`ranking`]: [`ranking::rank`], the explainable ordering of candidates for a call.
//! - [`conference`]: conference bridges: their terms, reservations, join tokens, room
//!   receipts, ranking, and the bridge's room as a state machine ([`conference::room`]).
//! - [`call`]: the call-signalling messages, the caller's and the gateway's state
//!   machines, and the signed usage receipts.
//! - [`money`] and [`time`]: integer money in ISO 4217 minor units; Unix time.

pub mod call;
pub mod codec;
pub mod conference;
pub mod country;
pub mod destination;
pub mod dht;
pub mod discovery;
pub mod envelope;
pub mod identity;
pub mod money;
pub mod offer;
pub mod ranking;
pub mod signed;
pub mod time;

pub use country::CountryCode;
pub use destination::{E164, NumberError, Prefix};
pub use dht::DhtKey;
pub use envelope::{Signable, Signed};
pub use identity::{ProviderId, SecretKey};
pub use money::{Currency, Money};
pub use offer::{Codec, ServiceKind, ServiceOffer};
pub use signed::{OfferError, SignedOffer};
pub use time::{Timestamp, UnixTime};
