//! The node's HTTP API and web page: its user places calls from a browser.
//!
//! [`ApiServer::start`] binds a loopback address and serves, with axum on the node's tokio
//! runtime:
//!
//! - `GET /` and `/assets/…`: the caller's page ([`page`]), compiled into the binary;
//! - `GET /api/node`: this node's peer id, default policy and connections;
//! - `GET /api/gateways?destination=…&policy=…`: the ranked services, with price, quality,
//!   score breakdown and the reasons for the recommendation ([`gateways`]);
//! - `POST /api/calls` with the browser's SDP offer and a gateway (or `recommended`), then
//!   `GET /api/calls/{id}/events` (server-sent events: trying, ringing, answered with the
//!   SDP answer, failed over, ended with the cause), `POST /api/calls/{id}/media` (the
//!   browser's media started), `DELETE /api/calls/{id}` (hang up), `GET /api/calls` and
//!   `GET /api/calls/{id}` ([`routes`], [`calls`]);
//! - `POST /api/conferences/join` with a room's join token and the browser's SDP offer
//!   (the answer is the bridge's SDP answer), then `GET /api/conferences/memberships/{id}/events`
//!   (joined, leaving, ended with the outcome), `DELETE /api/conferences/memberships/{id}`
//!   (leave), `GET /api/conferences/memberships` and `…/{id}` ([`conferences`],
//!   [`memberships`]). The browser's media goes to the bridge directly, as a call's goes to
//!   its gateway.
//!
//! Calls and memberships are kept in one kind of registry, [`sessions::Sessions`], whose
//! handlers serve both by id.
//!
//! The browser's offer travels in the call protocol's invite to the gateway, whose answer
//! comes back the same way: media then flows between the browser and the gateway, and the
//! node keeps the signalling, failover, hang-up and receipt. Errors are JSON
//! `{"code", "message"}` ([`error`]). A request whose `Host` is not a loopback name is
//! refused, so that a web site cannot reach the API through DNS rebinding; other sites'
//! pages cannot call it either, as it takes JSON bodies only and answers no CORS preflight.

pub mod calls;
mod conferences;
pub mod error;
pub mod events;
mod gateways;
pub mod memberships;
pub mod page;
mod routes;
pub mod sessions;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use interlink_protocol::ServiceKind;
use interlink_protocol::call::Timers;
use interlink_protocol::ranking::Policy;
use libp2p::Multiaddr;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::calls::caller::CallerContext;
use crate::config::{Config, ConfigError};
use calls::{CallEntry, Calls};
use error::ApiError;
use memberships::{MembershipEntry, Memberships};

/// The largest request body: an SDP offer is a few kilobytes.
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// How long calls in progress get to hang up when the node stops.
const HANG_UP_DEADLINE: Duration = Duration::from_secs(10);
/// How long conference rooms get to be left when the node stops.
const LEAVE_DEADLINE: Duration = Duration::from_secs(5);
/// How long open connections (event streams) get to close when the node stops.
const CLOSE_DEADLINE: Duration = Duration::from_secs(2);

/// What the API needs besides the node.
#[derive(Clone, Debug)]
pub struct ApiSettings {
    /// A loopback address; port 0 picks a free one.
    pub listen: SocketAddr,
    pub max_calls: usize,
    /// Conference rooms joined through the API at once.
    pub max_memberships: usize,
    /// Hang up a call, or leave a room, whose page closed its event streams this long ago.
    pub orphan_call_after: Option<Duration>,
    /// How the node ranks gateways unless a request names another policy kind.
    pub policy: Policy,
    pub kinds: Vec<ServiceKind>,
    pub timers: Timers,
    /// Finding a gateway that answers, failovers included.
    pub setup_deadline: Duration,
    /// Peers to join through again if the node has lost every connection.
    pub bootstrap: Vec<Multiaddr>,
}

impl ApiSettings {
    /// The settings of `config`'s `[api]`, `[caller]` and `[calls]`.
    pub fn from_config(config: &Config) -> Result<ApiSettings, ConfigError> {
        Ok(ApiSettings {
            listen: config.api.listen,
            max_calls: config.api.max_calls,
            max_memberships: config.api.max_memberships,
            orphan_call_after: (config.api.orphan_call_secs > 0)
                .then(|| Duration::from_secs(config.api.orphan_call_secs)),
            policy: config.caller_policy()?,
            kinds: ServiceKind::WEBRTC_TO_NUMBERS.to_vec(),
            timers: config.calls.timers(),
            setup_deadline: Duration::from_secs(config.calls.setup_deadline_secs),
            bootstrap: config.network.bootstrap.clone(),
        })
    }
}

/// Why the API could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ApiStartError {
    #[error(
        "cannot serve the web page and API on {address}: {source} (set api.listen or --api-listen, or api.enabled = false)"
    )]
    Bind {
        address: SocketAddr,
        source: std::io::Error,
    },
    #[error("{0} is not a loopback address: the API listens on 127.0.0.1 or [::1] only")]
    NotLoopback(SocketAddr),
}

/// What every handler shares.
#[derive(Debug)]
pub struct ApiState {
    caller: CallerContext,
    settings: ApiSettings,
    calls: Calls,
    memberships: Memberships,
}

/// The running API server.
#[derive(Debug)]
pub struct ApiServer {
    address: SocketAddr,
    calls: Calls,
    memberships: Memberships,
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl ApiServer {
    /// Binds `settings.listen` and serves the API and the page for the calls of `caller`.
    pub async fn start(
        settings: ApiSettings,
        caller: CallerContext,
    ) -> Result<ApiServer, ApiStartError> {
        if !settings.listen.ip().is_loopback() {
            return Err(ApiStartError::NotLoopback(settings.listen));
        }
        let bind_error = |source| ApiStartError::Bind {
            address: settings.listen,
            source,
        };
        let listener = tokio::net::TcpListener::bind(settings.listen)
            .await
            .map_err(bind_error)?;
        let address = listener.local_addr().map_err(bind_error)?;
        let calls = Calls::new(settings.max_calls, settings.orphan_call_after);
        let memberships = Memberships::new(settings.max_memberships, settings.orphan_call_after);
        let state = Arc::new(ApiState {
            caller,
            settings,
            calls: calls.clone(),
            memberships: memberships.clone(),
        });
        let (stop, stopped) = oneshot::channel::<()>();
        let app = router(state);
        let task = tokio::spawn(async move {
            let serve = axum::serve(listener, app).with_graceful_shutdown(async {
                let _ = stopped.await;
            });
            if let Err(error) = serve.await {
                tracing::error!(%error, "the HTTP API stopped");
            }
        });
        Ok(ApiServer {
            address,
            calls,
            memberships,
            stop,
            task,
        })
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.address
    }

    /// The page's address, e.g. `http://127.0.0.1:7080/`.
    pub fn url(&self) -> String {
        format!("http://{}/", self.address)
    }

    /// Hangs up the calls in progress (on every leg, receipts included) and leaves the
    /// conference rooms, then stops serving.
    pub async fn shutdown(self) {
        tokio::join!(
            self.calls.hang_up_all(HANG_UP_DEADLINE),
            self.memberships.leave_all(LEAVE_DEADLINE)
        );
        let _ = self.stop.send(());
        let mut task = self.task;
        if tokio::time::timeout(CLOSE_DEADLINE, &mut task)
            .await
            .is_err()
        {
            // A browser that keeps an idle connection open does not hold the node up.
            task.abort();
        }
    }
}

/// The API's routes.
fn router(state: Arc<ApiState>) -> Router {
    let api = Router::new()
        .route("/node", get(routes::node))
        .route("/gateways", get(gateways::list))
        .route("/calls", get(routes::list_calls).post(routes::start_call))
        .route(
            "/calls/{id}",
            get(sessions::get::<CallEntry>).delete(sessions::end::<CallEntry>),
        )
        .route("/calls/{id}/media", post(routes::media_started))
        .route("/calls/{id}/events", get(sessions::events::<CallEntry>))
        .route("/conferences/join", post(conferences::join))
        .route("/conferences/memberships", get(conferences::list))
        .route(
            "/conferences/memberships/{id}",
            get(sessions::get::<MembershipEntry>).delete(sessions::end::<MembershipEntry>),
        )
        .route(
            "/conferences/memberships/{id}/events",
            get(sessions::events::<MembershipEntry>),
        )
        .fallback(api_not_found)
        .method_not_allowed_fallback(method_not_allowed);
    Router::new()
        .route("/", get(page::index))
        .route("/assets/{name}", get(page::asset))
        .nest("/api", api)
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(middleware::from_fn(loopback_host_only))
        .with_state(state)
}

async fn api_not_found() -> ApiError {
    ApiError::not_found("not_found", "no such API endpoint")
}

async fn not_found() -> ApiError {
    ApiError::not_found("not_found", "no such page")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this endpoint does not take that method",
    )
}

/// Refuses requests addressed to a name other than loopback's: a page of another site
/// whose name was rebound to 127.0.0.1 sends its own name as `Host`.
async fn loopback_host_only(request: Request, next: Next) -> Response {
    let host = request
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    if is_loopback_host(host) {
        next.run(request).await
    } else {
        ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden_host",
            "the API answers requests to 127.0.0.1, [::1] or localhost only",
        )
        .into_response()
    }
}

/// Whether `host` (a `Host` header: name and optional port) names this machine's loopback.
fn is_loopback_host(host: &str) -> bool {
    let name = if let Some(rest) = host.strip_prefix('[') {
        // [::1]:7080
        rest.split(']').next().unwrap_or("")
    } else {
        host.rsplit_once(':').map_or(host, |(name, _)| name)
    };
    name.eq_ignore_ascii_case("localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_hosts_pass() {
        for host in [
            "127.0.0.1:7080",
            "127.0.0.1",
            "localhost:7080",
            "LOCALHOST",
            "[::1]:7080",
            "127.1.2.3:80",
        ] {
            assert!(is_loopback_host(host), "{host}");
        }
        for host in [
            "",
            "evil.example:7080",
            "192.168.1.10:7080",
            "localhost.evil.example",
            "[::2]:7080",
            "127.0.0.1.nip.io:7080",
        ] {
            assert!(!is_loopback_host(host), "{host}");
        }
    }
}
