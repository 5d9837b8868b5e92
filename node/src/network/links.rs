//! Links with a round-trip time, for simulated networks of in-memory connections.
//!
//! libp2p's in-memory transport delivers bytes at once, so a simulation of thousands of
//! nodes measures queueing and CPU, not the internet. [`Links`] gives each node a number
//! and a model of the round-trip time between any two: a connection between two nodes
//! takes one round trip to set up (as TCP's handshake does, before noise or plaintext
//! add theirs), and every byte read arrives half a round trip after it was written.
//! Only in-memory connections are delayed; TCP and QUIC run on real sockets.
//!
//! Each end learns the other's number from the first eight bytes of the connection, sent
//! both ways before anything else; the model, shared by every node of the process, turns
//! the pair into a round trip. Bandwidth is not modelled.

use std::collections::VecDeque;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use libp2p::core::ConnectedPoint;
use tokio::time::{Instant, Sleep};

/// The round-trip time between two nodes, by their numbers.
pub type LinkModel = Arc<dyn Fn(u64, u64) -> Duration + Send + Sync>;

/// This node's number and the model of every link, shared by the nodes of a simulation.
#[derive(Clone)]
pub struct Links {
    /// This node's number.
    pub node: u64,
    pub model: LinkModel,
}

impl std::fmt::Debug for Links {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Links")
            .field("node", &self.node)
            .finish_non_exhaustive()
    }
}

/// Sets up a fresh in-memory connection: with `links`, the two ends swap numbers, the
/// dialer waits one round trip, and reads are delayed by half of one; without, nothing.
pub(super) async fn connect<S>(
    mut connection: S,
    endpoint: ConnectedPoint,
    links: Option<Links>,
) -> io::Result<Delayed<S>>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let Some(links) = links else {
        return Ok(Delayed::new(connection, Duration::ZERO));
    };
    connection.write_all(&links.node.to_be_bytes()).await?;
    connection.flush().await?;
    let mut remote = [0u8; 8];
    connection.read_exact(&mut remote).await?;
    let rtt = (links.model)(links.node, u64::from_be_bytes(remote));
    if endpoint.is_dialer() {
        tokio::time::sleep(rtt).await;
    }
    Ok(Delayed::new(connection, rtt / 2))
}

/// A connection whose reads arrive `delay` after the bytes reached this end.
#[derive(Debug)]
pub struct Delayed<S> {
    inner: S,
    delay: Duration,
    /// Bytes read from `inner`, in order, each chunk with when it may be delivered.
    arrived: VecDeque<Chunk>,
    /// When the end of the stream may be delivered, once `inner` reached it.
    closed_at: Option<Instant>,
    timer: Option<Pin<Box<Sleep>>>,
}

/// What one read of the inner stream brought, and how much of it was passed on.
#[derive(Debug)]
struct Chunk {
    due: Instant,
    bytes: Vec<u8>,
    read: usize,
}

impl<S> Delayed<S> {
    fn new(inner: S, delay: Duration) -> Delayed<S> {
        Delayed {
            inner,
            delay,
            arrived: VecDeque::new(),
            closed_at: None,
            timer: None,
        }
    }
}

/// How much one read of the inner stream takes at most.
const CHUNK: usize = 16 * 1024;

thread_local! {
    /// Where [`Delayed`] reads the inner stream before keeping what came.
    static SCRATCH: std::cell::RefCell<Box<[u8]>> =
        std::cell::RefCell::new(vec![0u8; CHUNK].into_boxed_slice());
}

impl<S: AsyncRead + Unpin> AsyncRead for Delayed<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.delay.is_zero() || buf.is_empty() {
            return Pin::new(&mut this.inner).poll_read(cx, buf);
        }
        // Take in everything that has arrived, stamped with when it may be read: through
        // one scratch buffer per thread, so that a chunk keeps only what it holds and a
        // reader asking for a few bytes at a time does not cut the stream into crumbs.
        while this.closed_at.is_none() {
            let read = SCRATCH.with_borrow_mut(|scratch| {
                Pin::new(&mut this.inner)
                    .poll_read(cx, scratch)
                    .map_ok(|n| scratch[..n].to_vec())
            });
            match read {
                Poll::Ready(Ok(bytes)) if bytes.is_empty() => {
                    this.closed_at = Some(Instant::now() + this.delay);
                }
                Poll::Ready(Ok(bytes)) => this.arrived.push_back(Chunk {
                    due: Instant::now() + this.delay,
                    bytes,
                    read: 0,
                }),
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => break,
            }
        }
        loop {
            let now = Instant::now();
            let due = match this.arrived.front_mut() {
                Some(chunk) if chunk.due <= now => {
                    let rest = &chunk.bytes[chunk.read..];
                    let n = buf.len().min(rest.len());
                    buf[..n].copy_from_slice(&rest[..n]);
                    chunk.read += n;
                    if chunk.read == chunk.bytes.len() {
                        this.arrived.pop_front();
                    }
                    return Poll::Ready(Ok(n));
                }
                Some(chunk) => chunk.due,
                None => match this.closed_at {
                    Some(at) if at <= now => return Poll::Ready(Ok(0)),
                    Some(at) => at,
                    // Nothing arrived: the inner stream will wake us.
                    None => return Poll::Pending,
                },
            };
            let timer = this
                .timer
                .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(due)));
            if timer.deadline() != due {
                timer.as_mut().reset(due);
            }
            if timer.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Delayed<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_close(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use libp2p::Multiaddr;
    use libp2p::core::Endpoint;
    use libp2p::core::transport::memory::Channel;
    use libp2p::core::transport::{
        DialOpts, ListenerId, MemoryTransport, PortUse, Transport, TransportEvent,
    };

    /// Two ends of one in-memory connection.
    async fn pair() -> (Channel<Vec<u8>>, Channel<Vec<u8>>) {
        let mut listener = MemoryTransport::default();
        let address: Multiaddr = "/memory/0".parse().unwrap();
        listener.listen_on(ListenerId::next(), address).unwrap();
        let bound = match futures::future::poll_fn(|cx| Pin::new(&mut listener).poll(cx)).await {
            TransportEvent::NewAddress { listen_addr, .. } => listen_addr,
            other => panic!("{other:?}"),
        };
        let dial = MemoryTransport::default()
            .dial(
                bound,
                DialOpts {
                    role: Endpoint::Dialer,
                    port_use: PortUse::New,
                },
            )
            .unwrap();
        let next = futures::future::poll_fn(|cx| Pin::new(&mut listener).poll(cx));
        let (dialled, incoming) = tokio::join!(dial, next);
        let TransportEvent::Incoming { upgrade, .. } = incoming else {
            panic!("no incoming connection");
        };
        (dialled.unwrap(), upgrade.await.unwrap())
    }

    fn endpoint(dialer: bool) -> ConnectedPoint {
        let address: Multiaddr = "/memory/1".parse().unwrap();
        if dialer {
            ConnectedPoint::Dialer {
                address,
                role_override: Endpoint::Dialer,
                port_use: PortUse::New,
            }
        } else {
            ConnectedPoint::Listener {
                local_addr: address.clone(),
                send_back_addr: address,
            }
        }
    }

    /// Both ends of a fresh connection between nodes `a` (dialling) and `b` under `model`.
    async fn linked(
        model: LinkModel,
        a: u64,
        b: u64,
    ) -> (Delayed<Channel<Vec<u8>>>, Delayed<Channel<Vec<u8>>>) {
        let links = |node| Links {
            node,
            model: Arc::clone(&model),
        };
        let (dialler, listener) = pair().await;
        let (dialled, accepted) = tokio::join!(
            connect(dialler, endpoint(true), Some(links(a))),
            connect(listener, endpoint(false), Some(links(b)))
        );
        (dialled.unwrap(), accepted.unwrap())
    }

    #[tokio::test(start_paused = true)]
    async fn a_connection_costs_a_round_trip_and_every_read_half_of_one() {
        let model: LinkModel = Arc::new(|a, b| Duration::from_millis(10 * (a + b)));
        let started = Instant::now();
        let (mut dialled, mut accepted) = linked(model, 3, 5).await;
        assert_eq!(
            started.elapsed(),
            Duration::from_millis(80),
            "one round trip"
        );

        let sent = Instant::now();
        dialled.write_all(b"ping").await.unwrap();
        let mut four = [0u8; 4];
        accepted.read_exact(&mut four).await.unwrap();
        assert_eq!(
            (&four, sent.elapsed()),
            (b"ping", Duration::from_millis(40))
        );
        accepted.write_all(b"pong").await.unwrap();
        dialled.read_exact(&mut four).await.unwrap();
        assert_eq!(
            (&four, sent.elapsed()),
            (b"pong", Duration::from_millis(80))
        );
        drop(dialled);
        let mut rest = Vec::new();
        let closed = Instant::now();
        accepted.read_to_end(&mut rest).await.unwrap();
        assert_eq!(
            closed.elapsed(),
            Duration::from_millis(40),
            "the close is late too"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn bytes_read_in_small_pieces_come_in_order_and_all_half_a_round_trip_late() {
        let model: LinkModel = Arc::new(|_, _| Duration::from_millis(100));
        let (mut dialled, mut accepted) = linked(model, 1, 2).await;
        let message: Vec<u8> = (0..5_000u32).map(|i| (i % 251) as u8).collect();
        let sent = Instant::now();
        let write = async {
            for part in message.chunks(700) {
                dialled.write_all(part).await.unwrap();
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            sent.elapsed() - Duration::from_millis(1)
        };
        let read = async {
            let mut received = Vec::new();
            let mut piece = [0u8; 3];
            while received.len() < message.len() {
                let n = accepted.read(&mut piece).await.unwrap();
                assert!(n > 0, "closed early");
                received.extend_from_slice(&piece[..n]);
            }
            (received, sent.elapsed())
        };
        let (last_written, (received, read_by)) = tokio::join!(write, read);
        assert_eq!(received, message);
        assert_eq!(read_by, last_written + Duration::from_millis(50));
    }

    #[tokio::test(start_paused = true)]
    async fn a_reader_asking_for_few_bytes_does_not_cut_what_waits_into_crumbs() {
        let model: LinkModel = Arc::new(|_, _| Duration::from_millis(100));
        let (mut dialled, mut accepted) = linked(model, 1, 2).await;
        for _ in 0..4 {
            dialled.write_all(&[7u8; 1000]).await.unwrap();
        }
        let mut two = [0u8; 2];
        let waker = futures::task::noop_waker();
        let early = Pin::new(&mut accepted).poll_read(&mut Context::from_waker(&waker), &mut two);
        assert!(early.is_pending(), "nothing is due yet");
        assert!(
            accepted.arrived.len() <= 4,
            "{} chunks kept for four writes",
            accepted.arrived.len()
        );
        assert_eq!(
            accepted
                .arrived
                .iter()
                .map(|c| c.bytes.len())
                .sum::<usize>(),
            4000
        );
    }

    #[tokio::test]
    async fn without_links_nothing_is_exchanged_or_delayed() {
        let (a, b) = pair().await;
        let mut dialled = connect(a, endpoint(true), None).await.unwrap();
        let mut accepted = connect(b, endpoint(false), None).await.unwrap();
        dialled.write_all(b"x").await.unwrap();
        let mut one = [0u8; 1];
        accepted.read_exact(&mut one).await.unwrap();
        assert_eq!(&one, b"x");
    }
}
