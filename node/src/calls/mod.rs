//! Calls: the caller's side of a call, starting with its own WebRTC media endpoint.

pub mod caller;
pub mod gateway;
pub mod media;
pub mod wire;
