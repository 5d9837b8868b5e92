//! Frames on a call stream: a 4-byte big-endian length, then one bincode [`Frame`].
//!
//! A length over [`MAX_FRAME_BYTES`] is refused before anything is allocated, and the
//! stream is given up: a peer that sends one is broken or hostile. Reading runs in its own
//! task that forwards whole frames over a channel, so the call's driver can wait for a
//! frame, a timer and a back-end event at once without losing half-read bytes.

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

/// Why a call stream failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    #[error("frame of {0} bytes is over the limit of {MAX_FRAME_BYTES}")]
    TooLarge(usize),
    #[error("malformed frame: {0}")]
    Malformed(#[from] CodecError),
    #[error("stream: {0}")]
    Io(#[from] std::io::Error),
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
        let length = u32::try_from(body.len()).map_err(|_| WireError::TooLarge(body.len()))?;
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
    let (reader, writer) = stream.split();
    let (frames_tx, frames_rx) = mpsc::channel(READ_AHEAD);
    tokio::spawn(read_frames(reader, frames_tx));
    (FrameWriter { inner: writer }, frames_rx)
}

async fn read_frames(mut reader: ReadHalf<Stream>, frames: mpsc::Sender<Result<Frame, WireError>>) {
    loop {
        let frame = match read_frame(&mut reader).await {
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

/// Reads one frame; `None` at a clean end of stream between frames.
pub async fn read_frame<R: futures::AsyncRead + Unpin>(
    reader: &mut R,
) -> Result<Option<Frame>, WireError> {
    let mut length = [0u8; 4];
    match reader.read_exact(&mut length).await {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e.into()),
    }
    let length = u32::from_be_bytes(length) as usize;
    if length > MAX_FRAME_BYTES {
        return Err(WireError::TooLarge(length));
    }
    let mut body = vec![0u8; length];
    reader.read_exact(&mut body).await?;
    Ok(Some(Frame::decode(&body)?))
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
            Err(WireError::TooLarge(_))
        ));
        let mut truncated = framed(&Frame::Answer {
            sdp: "v=0".into(),
            answered_by: None,
        });
        truncated.truncate(truncated.len() - 1);
        assert!(matches!(
            read_frame(&mut futures::io::Cursor::new(truncated)).await,
            Err(WireError::Io(_))
        ));
        let garbled = [0, 0, 0, 2, 250, 250];
        assert!(matches!(
            read_frame(&mut futures::io::Cursor::new(garbled)).await,
            Err(WireError::Malformed(_))
        ));
    }
}
