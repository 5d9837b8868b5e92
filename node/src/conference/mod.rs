//! Conferences over libp2p: the bridge's service, and the organiser's and participants'
//! sides.
//!
//! - [`bridge`]: accepts `/interlink/conference/1` streams: reserves rooms for organisers,
//!   admits participants with a valid join token up to the reserved size, tells the
//!   organiser of joins and leaves, and settles the room receipt when the organiser ends
//!   the room; it drives the protocol's room state machine
//!   (`interlink_protocol::conference::room`).
//! - [`organiser`]: reserve a room, follow its events, end it and countersign its receipt.
//! - [`participant`]: join a room with a token; a tone-sending WebRTC endpoint for tests,
//!   the demo and the command line.
//! - [`discovery`]: find conference bridges by region.
//! - [`store`]: room receipts in the node's database.
//! - [`wire`]: length-prefixed conference frames on a stream.

pub mod bridge;
pub mod discovery;
pub mod organiser;
pub mod participant;
pub mod store;
pub mod wire;
