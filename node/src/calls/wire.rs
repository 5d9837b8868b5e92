//! Frames on a call stream: a 4-byte big-endian length, then one bincode [`Frame`].
//!
//! A length over the limit ([`MAX_FRAME_BYTES`], or a lower one from `[limits]`) is
//! refused before anything is allocated, and the stream is given up: a peer that sends one
//! is broken or hostile. So is a frame cut short, a body that does not decode, or one that
//! does not arrive within [`FRAME_BODY_DEADLINE`] of its length. Reading runs in its own
//! task that forwards whole frames over a channel, so the call's driver can wait for a
//! frame, a timer and a back-end event at once without losing half-read bytes; the task
//! ends when the driver drops the channel, even if the peer sends nothing more.

use std::time::Duration;

use futures::io::{ReadHalf, WriteHalf};
use futures::{AsyncReadExt, AsyncWriteExt};
use interlink_protocol::call::Frame;
use interlink_protocol::call::messages::MAX_FRAME_BYTES;
use interlink_protocol::codec::CodecError;
use libp2p::{Stream, StreamProtocol};
use tokio::sync::mpsc;

/// The protocol of call streams.
pub const CALL_PROTOCOL: StreamProtocol = StreamProtocol::new("/interlink/call/1");

/// Frames read ahead of the driver.
const READ_AHEAD: usize = 8;
/// How long the body of a frame may take to arrive once its length has.
pub const FRAME_BODY_DEADLINE: Duration = Duration::from_secs(10);

/// Why a call stream failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    #[error("frame of {length} bytes is over the limit of {limit}")]
    TooLarge { length: usize, limit: usize },
    #[error("frame cut short: the stream ended {received} bytes into {expected}")]
    Truncated { expected: usize, received: usize },
    #[error("the body of a {length}-byte frame did not arrive within {FRAME_BODY_DEADLINE:?}")]
    Timeout { length: usize },
    #[error("malformed frame: {0}")]
    Malformed(#[from] CodecError),
    #[error("stream: {0}")]
    Io(#[from] std::io::Error),
}

impl WireError {
    /// A short stable label, for logs and metrics.
    pub fn label(&self) -> &'static str {
        match self {
            WireError::TooLarge { .. } => "too_large",
            WireError::Truncated { .. } => "truncated",
            WireError::Timeout { .. } => "timeout",
            WireError::Malformed(_) => "malformed",
            WireError::Io(_) => "io",
        }
    }
}

/// The sending half of a call stream.
#[derive(Debug)]
pub struct FrameWriter {
    inner: WriteHalf<Stream>,
}

impl FrameWriter {
    /// Sends one frame.
    pub async fn send(&mut self, frame: &Frame) -> Result<(), WireError> {
        let body = frame.encode()?;
        let length = u32::try_from(body.len()).map_err(|_| WireError::TooLarge {
            length: body.len(),
            limit: MAX_FRAME_BYTES,
        })?;
        self.inner.write_all(&length.to_be_bytes()).await?;
        self.inner.write_all(&body).await?;
        self.inner.flush().await?;
        Ok(())
    }

    /// Closes the sending side; the peer reads the end of the stream.
    pub async fn close(&mut self) {
        let _ = self.inner.close().await;
    }
}

/// Splits `stream`: frames arrive on the receiver (an error, then nothing, if the stream
/// breaks or carries garbage; nothing once the peer closes it).
pub fn split(stream: Stream) -> (FrameWriter, mpsc::Receiver<Result<Frame, WireError>>) {
    split_limited(stream, MAX_FRAME_BYTES)
}

/// [`split`], refusing frames over `limit` bytes (at most [`MAX_FRAME_BYTES`]).
pub fn split_limited(
    stream: Stream,
    limit: usize,
) -> (FrameWriter, mpsc::Receiver<Result<Frame, WireError>>) {
    let (reader, writer) = stream.split();
    let (frames_tx, frames_rx) = mpsc::channel(READ_AHEAD);
    tokio::spawn(read_frames(reader, frames_tx, limit.min(MAX_FRAME_BYTES)));
    (FrameWriter { inner: writer }, frames_rx)
}

async fn read_frames(
    mut reader: ReadHalf<Stream>,
    frames: mpsc::Sender<Result<Frame, WireError>>,
    limit: usize,
) {
    loop {
        let frame = tokio::select! {
            frame = read_frame_limited(&mut reader, limit) => frame,
            // The driver is gone: stop reading, whatever the peer does.
            () = frames.closed() => return,
        };
        let frame = match frame {
            Ok(Some(frame)) => Ok(frame),
            Ok(None) => return,
            Err(e) => Err(e),
        };
        let failed = frame.is_err();
        if frames.send(frame).await.is_err() || failed {
            return;
        }
    }
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
    let mut length = [0u8; 4];
    let header = read_full(reader, &mut length).await?;
    if header == 0 {
        return Ok(None);
    }
    if header < length.len() {
        return Err(WireError::Truncated {
            expected: length.len(),
            received: header,
        });
    }
    let length = u32::from_be_bytes(length) as usize;
    if length > limit {
        return Err(WireError::TooLarge { length, limit });
    }
    let mut body = vec![0u8; length];
    let received = tokio::time::timeout(FRAME_BODY_DEADLINE, read_full(reader, &mut body))
        .await
        .map_err(|_| WireError::Timeout { length })??;
    if received < length {
        return Err(WireError::Truncated {
            expected: length,
            received,
        });
    }
    Ok(Some(Frame::decode(&body)?))
}

/// Fills `buffer` unless the stream ends first; returns how many bytes were read.
async fn read_full<R: futures::AsyncRead + Unpin>(
    reader: &mut R,
    buffer: &mut [u8],
) -> Result<usize, std::io::Error> {
    let mut filled = 0;
    while filled < buffer.len() {
        match reader.read(&mut buffer[filled..]).await? {
            0 => break,
            n => filled += n,
        }
    }
    Ok(filled)
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
