//! Frames on a conference stream: a 4-byte big-endian length, then one bincode
//! [`ConferenceFrame`] of at most [`MAX_CONFERENCE_FRAME_BYTES`], read and written as
//! [`crate::framing`] does for every stream of ours.

use interlink_protocol::codec::CodecError;
use interlink_protocol::conference::ConferenceFrame;
use interlink_protocol::conference::messages::MAX_CONFERENCE_FRAME_BYTES;
use libp2p::{Stream, StreamProtocol};

pub use crate::framing::WireError;
use crate::framing::{self, WireFrame};

/// The protocol of conference streams.
pub const CONFERENCE_PROTOCOL: StreamProtocol = StreamProtocol::new("/interlink/conference/1");

impl WireFrame for ConferenceFrame {
    const MAX_BYTES: usize = MAX_CONFERENCE_FRAME_BYTES;

    fn encode(&self) -> Result<Vec<u8>, CodecError> {
        ConferenceFrame::encode(self)
    }

    fn decode(bytes: &[u8]) -> Result<ConferenceFrame, CodecError> {
        ConferenceFrame::decode(bytes)
    }
}

/// The sending half of a conference stream.
pub type FrameWriter = framing::FrameWriter<ConferenceFrame>;

/// The frames a conference stream delivers: an error, then nothing, if it breaks or
/// carries garbage; nothing once the peer closes it.
pub type Frames = framing::Frames<ConferenceFrame>;

/// Splits `stream` into a writer and the frames read from it by a task of its own.
pub fn split(stream: Stream) -> (FrameWriter, Frames) {
    framing::split(stream, MAX_CONFERENCE_FRAME_BYTES)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_conference_frame_is_read_back_and_an_oversize_one_refused() {
        let body = WireFrame::encode(&ConferenceFrame::End).unwrap_or_default();
        let mut bytes = u32::try_from(body.len())
            .unwrap_or_default()
            .to_be_bytes()
            .to_vec();
        bytes.extend(body);
        let mut reader = futures::io::Cursor::new(bytes);
        let read =
            framing::read_frame::<ConferenceFrame, _>(&mut reader, MAX_CONFERENCE_FRAME_BYTES);
        assert_eq!(read.await.ok().flatten(), Some(ConferenceFrame::End));
        let oversize = u32::try_from(MAX_CONFERENCE_FRAME_BYTES + 1)
            .unwrap_or_default()
            .to_be_bytes();
        let mut reader = futures::io::Cursor::new(oversize.to_vec());
        let read =
            framing::read_frame::<ConferenceFrame, _>(&mut reader, MAX_CONFERENCE_FRAME_BYTES);
        assert!(matches!(read.await, Err(WireError::TooLarge { .. })));
    }
}
