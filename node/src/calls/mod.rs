//! Calls over libp2p: the drivers of the protocol's call state machines.
//!
//! - [`caller`]: discover, rank, invite, fail over, talk, check and countersign the receipt.
//! - [`gateway`]: accept call streams, admit or refuse, run the back-end, store the receipt.
//! - [`media`]: the caller's own WebRTC endpoint, which sends a tone and checks its echo.
//! - [`wire`]: length-prefixed frames on a call stream.

pub mod caller;
pub mod gateway;
pub mod media;
pub mod wire;

/// Sleeps until `deadline`, or forever if there is none: a branch of a call's `select!`.
pub(crate) async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}
