//! The gateway's SIP endpoint: one rsipstack stack shared by all its calls.
//!
//! [`SipEndpoint::start`] binds the configured local address (UDP, plus a TCP listener on
//! the same port when the trunk is reached over TCP), starts the stack's transaction loop
//! and a dispatcher for requests the trunk sends: those inside a call (BYE, re-INVITE,
//! UPDATE, OPTIONS, INFO) go to their dialog, whose call task hears of them through its
//! dialog-state channel; anything else is answered here (OPTIONS 200, an INVITE 403: the
//! gateway bridges calls toward the trunk only). Dropping the endpoint stops it all.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use rsipstack::EndpointBuilder;
use rsipstack::dialog::dialog_layer::DialogLayer;
use rsipstack::platform::CancellationToken;
use rsipstack::sip::{Method, StatusCode};
use rsipstack::transaction::TransactionReceiver;
use rsipstack::transaction::endpoint::EndpointOption;
use rsipstack::transaction::transaction::Transaction;
use rsipstack::transport::tcp_listener::TcpListenerConnection;
use rsipstack::transport::udp::UdpConnection;
use rsipstack::transport::{SipAddr, TransportLayer};
use tokio::net::UdpSocket;

use crate::sip::SipError;
use crate::sip::trunk::{Transport, Trunk};

/// The `User-Agent` and `Server` of the gateway's SIP messages.
const USER_AGENT: &str = concat!("interlink/", env!("CARGO_PKG_VERSION"));
/// The longest wait for the trunk's host name to resolve.
pub(crate) const RESOLVE_DEADLINE: Duration = Duration::from_secs(5);

/// The running SIP stack of a gateway back-end.
pub(crate) struct SipEndpoint {
    pub(crate) dialogs: Arc<DialogLayer>,
    /// The address the stack is bound to.
    pub(crate) local_addr: SocketAddr,
    /// The address put in Via and Contact, and the default media address.
    pub(crate) advertised: SocketAddr,
    cancel: CancellationToken,
}

impl std::fmt::Debug for SipEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SipEndpoint")
            .field("local_addr", &self.local_addr)
            .field("advertised", &self.advertised)
            .finish_non_exhaustive()
    }
}

impl SipEndpoint {
    /// Binds the trunk's local address and starts the stack.
    pub(crate) async fn start(trunk: &Trunk) -> Result<SipEndpoint, SipError> {
        let cancel = CancellationToken::new();
        let bind_error = |source: rsipstack::Error| SipError::Bind {
            addr: trunk.local_address,
            source,
        };
        let mut udp =
            UdpConnection::create_connection(trunk.local_address, None, Some(cancel.child_token()))
                .await
                .map_err(bind_error)?;
        // A wildcard bind announces the address that routes toward the trunk.
        let port = udp.get_addr().get_socketaddr().map_err(bind_error)?.port();
        let local_addr = SocketAddr::new(trunk.local_address.ip(), port);
        let advertised_ip = if trunk.local_address.ip().is_unspecified() {
            route_toward(resolve(&trunk.host, trunk.port).await?).await?
        } else {
            trunk.local_address.ip()
        };
        let advertised = SocketAddr::new(advertised_ip, port);
        udp.external = Some(SipAddr {
            r#type: Some(rsipstack::sip::Transport::Udp),
            addr: advertised.into(),
        });

        let transport = TransportLayer::new(cancel.child_token());
        transport.add_transport(udp.into());
        if trunk.transport == Transport::Tcp {
            let tcp = TcpListenerConnection::new(local_addr, Some(advertised))
                .await
                .map_err(bind_error)?;
            transport.add_transport(tcp.into());
        }
        let option = EndpointOption {
            // Call-IDs are `<random>@<from_domain>`: ours, not the stack's default.
            callid_suffix: Some(trunk.from_domain.clone()),
            ..EndpointOption::default()
        };
        let endpoint = EndpointBuilder::new()
            .with_user_agent(USER_AGENT)
            .with_transport_layer(transport)
            .with_cancel_token(cancel.child_token())
            .with_option(option)
            .build();
        let incoming = endpoint.incoming_transactions().map_err(SipError::Stack)?;
        let dialogs = Arc::new(DialogLayer::new(endpoint.inner.clone()));
        // The stack runs until the token is cancelled (the endpoint dropped).
        tokio::spawn(async move { endpoint.serve().await });
        tokio::spawn(dispatch(
            incoming,
            Arc::clone(&dialogs),
            cancel.child_token(),
        ));
        tracing::info!(%local_addr, %advertised, trunk = %format_args!("{}:{}", trunk.host, trunk.port), transport = %trunk.transport, "SIP endpoint started");
        Ok(SipEndpoint {
            dialogs,
            local_addr,
            advertised,
            cancel,
        })
    }
}

impl Drop for SipEndpoint {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

/// The trunk's address: `host` resolved (an address literal resolves to itself).
pub(crate) async fn resolve(host: &str, port: u16) -> Result<SocketAddr, SipError> {
    let unbracketed = host.trim_start_matches('[').trim_end_matches(']');
    let lookup = tokio::net::lookup_host((unbracketed, port));
    let failed = |source: std::io::Error| SipError::Resolve {
        host: host.to_owned(),
        source,
    };
    let unanswered = || {
        std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!("no answer within {RESOLVE_DEADLINE:?}"),
        )
    };
    tokio::time::timeout(RESOLVE_DEADLINE, lookup)
        .await
        .map_err(|_| failed(unanswered()))?
        .map_err(failed)?
        .next()
        .ok_or_else(|| {
            failed(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "no address",
            ))
        })
}

/// The local address the host's routing table uses toward `target` (no packet is sent).
async fn route_toward(target: SocketAddr) -> Result<IpAddr, SipError> {
    let unspecified: SocketAddr = if target.is_ipv4() {
        ([0, 0, 0, 0], 0).into()
    } else {
        ([0u16; 8], 0).into()
    };
    let probe = async {
        let socket = UdpSocket::bind(unspecified).await?;
        socket.connect(target).await?;
        socket.local_addr()
    };
    probe
        .await
        .map(|addr| addr.ip())
        .map_err(|e| SipError::Resolve {
            host: target.to_string(),
            source: std::io::Error::new(e.kind(), format!("no route: {e}")),
        })
}

/// Hands each request from the network to its dialog, or answers it.
async fn dispatch(
    mut incoming: TransactionReceiver,
    dialogs: Arc<DialogLayer>,
    cancel: CancellationToken,
) {
    loop {
        let mut transaction = tokio::select! {
            next = incoming.recv() => match next {
                Some(transaction) => transaction,
                None => break,
            },
            () = cancel.cancelled() => break,
        };
        match dialogs.match_dialog(&transaction) {
            Some(mut dialog) => {
                // A dialog's handler runs until the request's transaction ends.
                tokio::spawn(async move {
                    if let Err(error) = dialog.handle(&mut transaction).await {
                        tracing::debug!(%error, "in-dialog request failed");
                    }
                });
            }
            None => {
                tokio::spawn(async move { answer_outside_dialog(&mut transaction).await });
            }
        }
    }
}

/// Answers a request that belongs to no call of this gateway.
async fn answer_outside_dialog(transaction: &mut Transaction) {
    let status = match transaction.original.method {
        // Trunks probe their peers with OPTIONS.
        Method::Options => StatusCode::OK,
        Method::Ack => return,
        // Calls go toward the trunk only.
        Method::Invite => StatusCode::Forbidden,
        Method::Bye | Method::Cancel => StatusCode::CallTransactionDoesNotExist,
        _ => StatusCode::MethodNotAllowed,
    };
    if let Err(error) = transaction.reply(status).await {
        tracing::debug!(%error, "cannot answer a request outside any call");
    }
}
