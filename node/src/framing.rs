//! Frames on a stream of our own protocols (calls, conferences): a 4-byte big-endian
//! length, then one encoded frame.
//!
//! A length over the limit (the frame type's [`WireFrame::MAX_BYTES`], or a lower one
//! from `[limits]`) is refused before anything is allocated, and the stream is given up: a
//! peer that sends one is broken or hostile. So is a frame cut short, a body that does not
//! decode, or one that does not arrive within [`FRAME_BODY_DEADLINE`] of its length.
//! Reading runs in its own task that forwards whole frames over a channel, so a driver can
//! wait for a frame, a timer and other events at once without losing half-read bytes; the
//! task ends when the driver drops the channel, even if the peer sends nothing more.

use std::marker::PhantomData;
use std::time::Duration;

use futures::io::{ReadHalf, WriteHalf};
use futures::{AsyncReadExt, AsyncWriteExt};
use interlink_protocol::codec::CodecError;
use libp2p::Stream;
use tokio::sync::mpsc;

/// Frames read ahead of the driver.
const READ_AHEAD: usize = 16;
/// How long the body of a frame may take to arrive once its length has.
pub const FRAME_BODY_DEADLINE: Duration = Duration::from_secs(10);

/// A message that travels as one frame.
pub trait WireFrame: Sized + Send + 'static {
    /// The largest encoded frame a reader takes.
    const MAX_BYTES: usize;
    fn encode(&self) -> Result<Vec<u8>, CodecError>;
    fn decode(bytes: &[u8]) -> Result<Self, CodecError>;
}

/// Why a stream of frames failed.
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

/// The sending half of a stream of `F` frames.
#[derive(Debug)]
pub struct FrameWriter<F> {
    inner: WriteHalf<Stream>,
    frames: PhantomData<fn(&F)>,
}

impl<F: WireFrame> FrameWriter<F> {
    /// Sends one frame.
    pub async fn send(&mut self, frame: &F) -> Result<(), WireError> {
        let body = frame.encode()?;
        let length = u32::try_from(body.len()).map_err(|_| WireError::TooLarge {
            length: body.len(),
            limit: F::MAX_BYTES,
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

/// The frames a stream delivers: an error, then nothing, if it breaks or carries garbage;
/// nothing once the peer closes it.
pub type Frames<F> = mpsc::Receiver<Result<F, WireError>>;

/// Splits `stream` into a writer and the frames read from it, each of at most `limit`
/// bytes (and at most [`WireFrame::MAX_BYTES`]), by a task of its own.
pub fn split<F: WireFrame>(stream: Stream, limit: usize) -> (FrameWriter<F>, Frames<F>) {
    let (reader, writer) = stream.split();
    let (frames_tx, frames_rx) = mpsc::channel(READ_AHEAD);
    tokio::spawn(read_frames(reader, frames_tx, limit.min(F::MAX_BYTES)));
    let writer = FrameWriter {
        inner: writer,
        frames: PhantomData,
    };
    (writer, frames_rx)
}

async fn read_frames<F: WireFrame>(
    mut reader: ReadHalf<Stream>,
    frames: mpsc::Sender<Result<F, WireError>>,
    limit: usize,
) {
    loop {
        let frame = tokio::select! {
            frame = read_frame(&mut reader, limit) => frame,
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

/// Reads one frame of at most `limit` bytes; `None` at a clean end of stream between
/// frames.
pub async fn read_frame<F: WireFrame, R: futures::AsyncRead + Unpin>(
    reader: &mut R,
    limit: usize,
) -> Result<Option<F>, WireError> {
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
    Ok(Some(F::decode(&body)?))
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
