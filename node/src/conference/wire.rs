//! Frames on a conference stream: a 4-byte big-endian length, then one bincode
//! [`ConferenceFrame`]. A length over the limit is refused before anything is allocated.

use futures::io::{ReadHalf, WriteHalf};
use futures::{AsyncReadExt, AsyncWriteExt};
use interlink_protocol::codec::CodecError;
use interlink_protocol::conference::ConferenceFrame;
use interlink_protocol::conference::messages::MAX_CONFERENCE_FRAME_BYTES;
use libp2p::{Stream, StreamProtocol};
use tokio::sync::mpsc;

/// The protocol of conference streams.
pub const CONFERENCE_PROTOCOL: StreamProtocol = StreamProtocol::new("/interlink/conference/1");

/// Frames read ahead of the driver.
const READ_AHEAD: usize = 16;

/// Why a conference stream failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    #[error("frame of {0} bytes is over the limit of {MAX_CONFERENCE_FRAME_BYTES}")]
    TooLarge(usize),
    #[error("malformed frame: {0}")]
    Malformed(#[from] CodecError),
    #[error("stream: {0}")]
    Io(#[from] std::io::Error),
}

/// The sending half of a conference stream.
#[derive(Debug)]
pub struct FrameWriter {
    inner: WriteHalf<Stream>,
}

impl FrameWriter {
    /// Sends one frame.
    pub async fn send(&mut self, frame: &ConferenceFrame) -> Result<(), WireError> {
        let body = frame.encode()?;
        let length = u32::try_from(body.len()).map_err(|_| WireError::TooLarge(body.len()))?;
        self.inner.write_all(&length.to_be_bytes()).await?;
        self.inner.write_all(&body).await?;
        self.inner.flush().await?;
        Ok(())
    }

    /// Closes the sending side.
    pub async fn close(&mut self) {
        let _ = self.inner.close().await;
    }
}

/// The frames a stream delivers: an error, then nothing, if it breaks or carries garbage;
/// nothing once the peer closes it.
pub type Frames = mpsc::Receiver<Result<ConferenceFrame, WireError>>;

/// Splits `stream` into a writer and the frames read from it by a task of its own.
pub fn split(stream: Stream) -> (FrameWriter, Frames) {
    let (reader, writer) = stream.split();
    let (frames_tx, frames_rx) = mpsc::channel(READ_AHEAD);
    tokio::spawn(read_frames(reader, frames_tx));
    (FrameWriter { inner: writer }, frames_rx)
}

async fn read_frames(
    mut reader: ReadHalf<Stream>,
    frames: mpsc::Sender<Result<ConferenceFrame, WireError>>,
) {
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
) -> Result<Option<ConferenceFrame>, WireError> {
    let mut length = [0u8; 4];
    match reader.read_exact(&mut length).await {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e.into()),
    }
    let length = u32::from_be_bytes(length) as usize;
    if length > MAX_CONFERENCE_FRAME_BYTES {
        return Err(WireError::TooLarge(length));
    }
    let mut body = vec![0u8; length];
    reader.read_exact(&mut body).await?;
    Ok(Some(ConferenceFrame::decode(&body)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn oversize_and_garbled_frames_are_errors() {
        let mut oversize = futures::io::Cursor::new(u32::MAX.to_be_bytes().to_vec());
        assert!(matches!(
            read_frame(&mut oversize).await,
            Err(WireError::TooLarge(_))
        ));
        let garbled = [0, 0, 0, 2, 250, 250];
        assert!(matches!(
            read_frame(&mut futures::io::Cursor::new(garbled)).await,
            Err(WireError::Malformed(_))
        ));
        let body = ConferenceFrame::End.encode().unwrap_or_default();
        let mut bytes = u32::try_from(body.len())
            .unwrap_or_default()
            .to_be_bytes()
            .to_vec();
        bytes.extend(body);
        let mut reader = futures::io::Cursor::new(bytes);
        assert_eq!(
            read_frame(&mut reader).await.ok().flatten(),
            Some(ConferenceFrame::End)
        );
        assert!(matches!(read_frame(&mut reader).await, Ok(None)));
    }
}
