//! Bytes on the wire: a thin wrapper under the security layer that counts what a node's
//! connections carry, for the cost of a lookup and the simulations' reports.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use futures::{AsyncRead, AsyncWrite};

/// Bytes received and sent by every connection of a node, encryption included.
#[derive(Debug, Default)]
pub struct TrafficCounters {
    received: AtomicU64,
    sent: AtomicU64,
}

/// A snapshot of [`TrafficCounters`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Traffic {
    pub bytes_received: u64,
    pub bytes_sent: u64,
}

impl Traffic {
    /// Both directions.
    pub fn total(&self) -> u64 {
        self.bytes_received + self.bytes_sent
    }

    /// What happened between `earlier` and this snapshot.
    pub fn since(&self, earlier: &Traffic) -> Traffic {
        Traffic {
            bytes_received: self.bytes_received.saturating_sub(earlier.bytes_received),
            bytes_sent: self.bytes_sent.saturating_sub(earlier.bytes_sent),
        }
    }
}

impl TrafficCounters {
    /// The counts so far.
    pub fn snapshot(&self) -> Traffic {
        Traffic {
            bytes_received: self.received.load(Ordering::Relaxed),
            bytes_sent: self.sent.load(Ordering::Relaxed),
        }
    }
}

/// A connection whose reads and writes are counted.
#[derive(Debug)]
pub struct Counted<S> {
    inner: S,
    counters: Arc<TrafficCounters>,
}

impl<S> Counted<S> {
    /// Counts `inner`'s traffic into `counters`.
    pub fn new(inner: S, counters: Arc<TrafficCounters>) -> Counted<S> {
        Counted { inner, counters }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Counted<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(n)) = poll {
            self.counters
                .received
                .fetch_add(n as u64, Ordering::Relaxed);
        }
        poll
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Counted<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = poll {
            self.counters.sent.fetch_add(n as u64, Ordering::Relaxed);
        }
        poll
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_close(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn reads_and_writes_are_counted() {
        let counters = Arc::new(TrafficCounters::default());
        let mut stream = Counted::new(
            futures::io::Cursor::new(vec![1u8; 10]),
            Arc::clone(&counters),
        );
        let mut buf = [0u8; 4];
        stream.read_exact(&mut buf).await.unwrap();
        stream.write_all(&[9; 3]).await.unwrap();
        assert_eq!(
            counters.snapshot(),
            Traffic {
                bytes_received: 4,
                bytes_sent: 3
            }
        );
    }
}
