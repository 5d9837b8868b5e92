//! The `conference` back-end: a bridge (MCU) that mixes rooms of WebRTC participants.
//!
//! - [`mixer`]: jitter buffers and the mix-minus, pure and clock-free.
//! - [`bridge`]: rooms at run time: one mixing task per room, one task per participant's
//!   WebRTC leg (G.711 decode on the way in, encode on the way out).

pub mod bridge;
pub mod mixer;

pub use bridge::{BridgeSettings, ConferenceBridge, Participant, Room, RoomStats};
pub use mixer::{JitterBuffer, JitterStats, Mixer};
