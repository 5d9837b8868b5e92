//! The Interlink node: a libp2p peer that publishes signed gateway offers into a Kademlia
//! DHT and finds and ranks the offers of others.
//!
//! How a node runs: [`network::start`] spawns the one task that owns the libp2p swarm;
//! everything else holds a [`network::Client`] and sends it commands. A gateway node also
//! runs a [`publisher::Publisher`], which signs its offer, stores it in the DHT, announces
//! the node under each (service kind, country code) it serves and republishes with a
//! higher `seq` before the offer expires. Every node checks each record others ask it to
//! store ([`network::records`]). A caller runs [`discovery::discover`] and ranks the result
//! with `interlink_protocol::ranking::rank`.
//!
//! - [`calls`]: the drivers of the protocol's call machines, caller and gateway side.
//! - [`conference`]: the bridge (driving the protocol's room machine), the organiser and
//!   the participants of conference rooms.
//! - [`store`]: receipts and the call history, in SQLite.
//! - [`clock`]: the wall clock, read in one place, and [`clock::SessionClock`], on which a
//!   call's or a room's deadlines run.
//! - [`config`]: the TOML configuration, its defaults and checks.
//! - [`identity`]: the ed25519 key file, shared by libp2p and offer signing.
//! - [`node`]: a running node: network, membership, publisher.
//! - [`reload`]: a gateway's new prices from its config file, on SIGHUP.
//! - [`local_network`]: many nodes in one process on loopback (demo, tests, benchmarks).
//! - [`listing`]: the ranked gateways as a table or JSON.
//! - [`api`]: the HTTP API and web page on loopback, from which the node's user calls.
//! - [`metrics`]: what the node does, for Prometheus; [`limits`]: what one peer may ask.
//! - [`lock`]: the one way a mutex is taken, whatever panicked while it was held.

pub mod api;
pub mod calls;
pub mod clock;
pub mod conference;
pub mod config;
pub mod discovery;
pub mod framing;
pub mod identity;
pub mod limits;
pub mod listing;
pub mod local_network;
pub mod lock;
pub mod logging;
pub mod metrics;
pub mod network;
pub mod node;
pub mod publisher;
pub mod reload;
pub mod store;
