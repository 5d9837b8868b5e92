//! Discovery at market scale: an index of signed offers held by the nodes closest to each
//! country's key, read in one walk.
//!
//! - [`key`]: where offers are indexed ([`IndexKey`]): one key per country code, one per
//!   conference region.
//! - [`query`]: what a caller asks ([`OfferQuery`]: destination, kinds, policy, how many)
//!   and which offers answer it ([`query::select`]), the same on both sides.
//! - [`index`]: what a holder keeps and admits ([`Index`]): bounded per key, per provider,
//!   per sender and in all, long-standing offers first.
//! - [`walk`]: the caller's walk toward a key ([`Walk`]), collecting answers from several
//!   holders, confirming what they disagree on and repairing stale holders.
//! - [`cache`]: the caller's cache of verified offers ([`Cache`]).
//! - [`wire`]: the messages of `/interlink/index/1`.
//!
//! Every offer stays signed end to end: holders verify before they store, callers verify
//! every offer they receive, so a holder can omit or delay, never forge.

pub mod cache;
pub mod index;
pub mod key;
pub mod query;
pub mod walk;
pub mod wire;

pub use cache::{Cache, CacheConfig};
pub use index::{Index, IndexConfig};
pub use key::IndexKey;
pub use query::{OfferQuery, Target};
pub use walk::{Position, Walk, WalkConfig, WalkResult};
