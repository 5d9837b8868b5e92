//! Frames on a call stream: a 4-byte big-endian length, then one bincode [`Frame`] of at
//! most [`MAX_FRAME_BYTES`] (or a lower limit from `[limits]`), read and written as
//! [`crate::framing`] does for every stream of ours.

use interlink_protocol::call::Frame;
use interlink_protocol::call::messages::MAX_FRAME_BYTES;
use interlink_protocol::codec::CodecError;
use libp2p::{Stream, StreamProtocol};

use std::time::Duration;

use crate::framing::{self, Frames, WireFrame};
pub use crate::framing::{FRAME_BODY_DEADLINE, WireError};

/// The protocol of call streams.
pub const CALL_PROTOCOL: StreamProtocol = StreamProtocol::new("/interlink/call/2");

impl WireFrame for Frame {
    const MAX_BYTES: usize = MAX_FRAME_BYTES;

    fn encode(&self) -> Result<Vec<u8>, CodecError> {
        Frame::encode(self)
    }

    fn decode(bytes: &[u8]) -> Result<Frame, CodecError> {
        Frame::decode(bytes)
    }
}

/// The sending half of a call stream.
pub type FrameWriter = framing::FrameWriter<Frame>;

/// Splits `stream`: frames arrive on the receiver (an error, then nothing, if the stream
/// breaks or carries garbage; nothing once the peer closes it).
pub fn split(stream: Stream) -> (FrameWriter, Frames<Frame>) {
    split_limited(stream, MAX_FRAME_BYTES)
}

/// [`split`], refusing frames over `limit` bytes (at most [`MAX_FRAME_BYTES`]).
pub fn split_limited(stream: Stream, limit: usize) -> (FrameWriter, Frames<Frame>) {
    framing::split(stream, limit)
}

/// Reads one frame of at most [`MAX_FRAME_BYTES`]; `None` at a clean end of stream
/// between frames.
pub async fn read_frame<R: futures::AsyncRead + Unpin>(
    reader: &mut R,
) -> Result<Option<Frame>, WireError> {
    read_frame_limited(reader, MAX_FRAME_BYTES).await
}

/// Reads one frame of at most `limit` bytes; `None` at a clean end of stream between
/// frames.
pub async fn read_frame_limited<R: futures::AsyncRead + Unpin>(
    reader: &mut R,
    limit: usize,
) -> Result<Option<Frame>, WireError> {
    framing::read_frame(reader, limit).await
}

/// How long a frame may take to go out before the other side is considered gone.
pub const SEND_DEADLINE: Duration = Duration::from_secs(5);

/// Sends `frame` within [`SEND_DEADLINE`]; whether it went out.
pub async fn send_in_time(writer: &mut FrameWriter, frame: &Frame) -> bool {
    matches!(
        tokio::time::timeout(SEND_DEADLINE, writer.send(frame)).await,
        Ok(Ok(()))
    )
}

/// Closes the stream's sending side, waiting at most [`SEND_DEADLINE`].
pub async fn close_in_time(writer: &mut FrameWriter) {
    let _ = tokio::time::timeout(SEND_DEADLINE, writer.close()).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn framed(frame: &Frame) -> Vec<u8> {
        let body = frame.encode().unwrap_or_default();
        let mut bytes = u32::try_from(body.len())
            .unwrap_or_default()
            .to_be_bytes()
            .to_vec();
        bytes.extend(body);
        bytes
    }

    #[tokio::test]
    async fn frames_are_read_one_at_a_time() {
        let mut bytes = framed(&Frame::Trying);
        bytes.extend(framed(&Frame::Answer {
            sdp: "v=0".into(),
            answered_by: None,
        }));
        let mut reader = futures::io::Cursor::new(bytes);
        assert_eq!(
            read_frame(&mut reader).await.ok().flatten(),
            Some(Frame::Trying)
        );
        assert_eq!(
            read_frame(&mut reader).await.ok().flatten(),
            Some(Frame::Answer {
                sdp: "v=0".into(),
                answered_by: None,
            })
        );
        assert!(matches!(read_frame(&mut reader).await, Ok(None)));
    }

    #[tokio::test]
    async fn oversize_truncated_and_garbled_frames_are_errors() {
        let mut oversize = futures::io::Cursor::new(u32::MAX.to_be_bytes().to_vec());
        assert!(matches!(
            read_frame(&mut oversize).await,
            Err(WireError::TooLarge { .. })
        ));
        let mut over_a_lower_limit = futures::io::Cursor::new(framed(&Frame::Answer {
            sdp: "v".repeat(100),
            answered_by: None,
        }));
        assert!(matches!(
            read_frame_limited(&mut over_a_lower_limit, 50).await,
            Err(WireError::TooLarge { limit: 50, .. })
        ));
        let mut truncated = framed(&Frame::Answer {
            sdp: "v=0".into(),
            answered_by: None,
        });
        truncated.truncate(truncated.len() - 1);
        assert!(matches!(
            read_frame(&mut futures::io::Cursor::new(truncated)).await,
            Err(WireError::Truncated { .. })
        ));
        let half_a_length = [0u8, 0];
        assert!(matches!(
            read_frame(&mut futures::io::Cursor::new(half_a_length)).await,
            Err(WireError::Truncated {
                expected: 4,
                received: 2
            })
        ));
        let garbled = [0, 0, 0, 2, 250, 250];
        assert!(matches!(
            read_frame(&mut futures::io::Cursor::new(garbled)).await,
            Err(WireError::Malformed(_))
        ));
    }
}
