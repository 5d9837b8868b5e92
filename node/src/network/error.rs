//! Why a network operation failed, with the libp2p error underneath kept as its source.

use std::fmt;
use std::sync::Arc;

use interlink_protocol::discovery::query::QueryError;
use libp2p::{Multiaddr, PeerId};

/// Why a network operation failed.
///
/// Cloned because one failure answers every waiter of an operation (all the callers
/// waiting on one dial); the error underneath is shared, not copied into text.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum NetworkError {
    #[error("the network task has stopped")]
    Stopped,
    #[error(
        "the node knows no peers: it has not joined the network (check the bootstrap addresses)"
    )]
    NoPeers,
    #[error("cannot reach {peer}: {source}")]
    Unreachable { peer: PeerId, source: Cause },
    #[error("cannot listen on {address}: {source}")]
    Listen { address: Multiaddr, source: Cause },
    #[error("timed out")]
    Timeout,
    #[error("too many operations in flight; try again")]
    Busy,
    #[error("record store: {0}")]
    Store(#[source] Cause),
    #[error("only {acknowledged} peers acknowledged the record")]
    NotReplicated { acknowledged: usize },
    #[error("cannot build the transport: {0}")]
    Transport(#[source] Cause),
    #[error("invalid query: {0}")]
    InvalidQuery(#[from] QueryError),
}

/// An error from below (libp2p, the transport, the record store), shared by the waiters
/// it is reported to. It shows as the error itself, and its chain goes on from there.
#[derive(Clone)]
pub struct Cause(Arc<dyn std::error::Error + Send + Sync>);

impl Cause {
    pub fn new(error: impl std::error::Error + Send + Sync + 'static) -> Cause {
        Cause(Arc::new(error))
    }
}

impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl fmt::Debug for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for Cause {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0.source()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::error::Error;

    #[test]
    fn the_error_underneath_stays_reachable_through_the_chain() {
        let io = std::io::Error::new(std::io::ErrorKind::AddrInUse, "address in use");
        let error = NetworkError::Listen {
            address: "/ip4/127.0.0.1/tcp/4001".parse().unwrap(),
            source: Cause::new(io),
        };
        assert_eq!(
            error.to_string(),
            "cannot listen on /ip4/127.0.0.1/tcp/4001: address in use"
        );
        let source = error.source().expect("the listen error keeps its source");
        assert_eq!(source.to_string(), "address in use");
        let copy = error.clone();
        assert_eq!(copy.to_string(), error.to_string());
    }
}
