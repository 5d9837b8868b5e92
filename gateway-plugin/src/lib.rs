//! Gateway back-ends: what a node runs to carry calls to another network.
//!
//! A back-end (an echo test service, a SIP trunk bridge, a conference bridge) tells the
//! node what it can do through [`Capabilities`]: the kind of service, the codecs it takes
//! on the WebRTC leg and how many calls it carries at once. The node combines them with the
//! operator's price list into the offer it signs and publishes, so that an offer never
//! advertises what the back-end cannot do.

pub mod audio;
pub mod conference;
pub mod echo;
#[doc(hidden)]
pub mod fuzzing;
pub mod gateway;
pub mod sip;
pub mod webrtc_leg;

use interlink_protocol::offer::{Codec, MAX_CODECS, ServiceKind};

/// What a back-end can do, as advertised in the node's offer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Capabilities {
    pub kind: ServiceKind,
    /// Codecs accepted on the WebRTC leg, in order of preference.
    pub codecs: Vec<Codec>,
    /// Calls the back-end carries at once.
    pub max_concurrent_calls: u32,
}

/// Why a capability description cannot be advertised.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CapabilityError {
    #[error("a back-end must accept at least one codec")]
    NoCodec,
    #[error("{0} codecs is more than an offer may list ({MAX_CODECS})")]
    TooManyCodecs(usize),
    #[error("codec {0} is listed twice")]
    DuplicateCodec(Codec),
    #[error("a back-end must carry at least one call")]
    NoCapacity,
}

impl Capabilities {
    /// A checked capability description.
    pub fn new(
        kind: ServiceKind,
        codecs: Vec<Codec>,
        max_concurrent_calls: u32,
    ) -> Result<Capabilities, CapabilityError> {
        if codecs.is_empty() {
            return Err(CapabilityError::NoCodec);
        }
        if codecs.len() > MAX_CODECS {
            return Err(CapabilityError::TooManyCodecs(codecs.len()));
        }
        if let Some(codec) = codecs
            .iter()
            .enumerate()
            .find_map(|(i, c)| codecs[..i].contains(c).then_some(c))
        {
            return Err(CapabilityError::DuplicateCodec(*codec));
        }
        if max_concurrent_calls == 0 {
            return Err(CapabilityError::NoCapacity);
        }
        Ok(Capabilities {
            kind,
            codecs,
            max_concurrent_calls,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capabilities_are_checked() {
        let kind = ServiceKind::WEBRTC_TO_PSTN;
        assert!(Capabilities::new(kind, vec![Codec::Pcmu, Codec::Pcma], 10).is_ok());
        assert_eq!(
            Capabilities::new(kind, vec![], 10),
            Err(CapabilityError::NoCodec)
        );
        assert_eq!(
            Capabilities::new(kind, vec![Codec::Pcmu, Codec::Pcmu], 10),
            Err(CapabilityError::DuplicateCodec(Codec::Pcmu))
        );
        assert_eq!(
            Capabilities::new(kind, vec![Codec::Pcmu], 0),
            Err(CapabilityError::NoCapacity)
        );
    }
}
