//! This node's own calls: how it picks gateways (`[caller]`), where their media runs
//! (`[media]`), the deadlines of their phases (`[calls]`) and the API that places them
//! (`[api]`).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use interlink_gateway_plugin::webrtc_leg::MediaSettings;
use interlink_protocol::call::Timers;
use serde::Deserialize;

use super::{ConfigError, invalid};

/// `[caller]`: how this node picks gateways for its own calls.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CallerSection {
    /// `cheapest`, `best-quality` or `balanced`.
    pub policy: Option<String>,
    /// Only consider offers in this ISO 4217 currency.
    pub currency: Option<String>,
    /// Never pay more per minute than this, e.g. `"0.10 GBP"`.
    pub max_price_per_minute: Option<String>,
    /// Only consider offers that list this codec.
    pub required_codec: Option<String>,
}

/// `[media]`: where this node's WebRTC media runs.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MediaSection {
    /// The address ICE binds to. `0.0.0.0` takes every interface but loopback; give the
    /// public address on an operator host, `127.0.0.1` to keep calls on one machine.
    pub ip: IpAddr,
}

impl Default for MediaSection {
    fn default() -> Self {
        MediaSection {
            ip: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        }
    }
}

impl MediaSection {
    /// The media settings of calls.
    pub fn settings(&self) -> MediaSettings {
        MediaSettings { bind_ip: self.ip }
    }
}

/// `[calls]`: the deadline of each phase of a call, and of setting one up.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CallsSection {
    /// Invite to Trying.
    pub trying_secs: u64,
    /// Trying to the answer: how long a callee may ring.
    pub answer_secs: u64,
    /// Answer to the first media packet.
    pub media_secs: u64,
    /// End of the call to the receipt.
    pub receipt_secs: u64,
    /// While the callee rings, a gateway sends a keep-alive this often (milliseconds)...
    pub keepalive_ms: u64,
    /// ...and a caller gives up a gateway silent this long (milliseconds) and tries the
    /// next.
    pub silence_ms: u64,
    /// How long finding a gateway that answers may take, failovers included.
    pub setup_deadline_secs: u64,
}

impl Default for CallsSection {
    fn default() -> Self {
        let timers = Timers::default();
        CallsSection {
            trying_secs: timers.trying.as_secs(),
            answer_secs: timers.answer.as_secs(),
            media_secs: timers.media.as_secs(),
            receipt_secs: timers.receipt.as_secs(),
            keepalive_ms: millis(timers.keepalive),
            silence_ms: millis(timers.silence),
            setup_deadline_secs: 90,
        }
    }
}

impl CallsSection {
    /// The deadlines of a call's phases.
    pub fn timers(&self) -> Timers {
        Timers {
            trying: Duration::from_secs(self.trying_secs),
            answer: Duration::from_secs(self.answer_secs),
            media: Duration::from_secs(self.media_secs),
            receipt: Duration::from_secs(self.receipt_secs),
            keepalive: Duration::from_millis(self.keepalive_ms),
            silence: Duration::from_millis(self.silence_ms),
        }
    }

    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        let fields = [
            ("calls.trying_secs", self.trying_secs),
            ("calls.answer_secs", self.answer_secs),
            ("calls.media_secs", self.media_secs),
            ("calls.receipt_secs", self.receipt_secs),
            ("calls.keepalive_ms", self.keepalive_ms),
            ("calls.silence_ms", self.silence_ms),
            ("calls.setup_deadline_secs", self.setup_deadline_secs),
        ];
        if let Some((field, _)) = fields.iter().find(|(_, value)| *value == 0) {
            return Err(invalid(*field, "must be greater than zero"));
        }
        if self.silence_ms <= self.keepalive_ms {
            return Err(invalid(
                "calls.silence_ms",
                "must be longer than calls.keepalive_ms, or every ringing call is given up",
            ));
        }
        Ok(())
    }
}

/// `[api]`: the node's own HTTP API and web page, for its user's calls.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiSection {
    /// Serve them at all.
    pub enabled: bool,
    /// Where: a loopback address, as they have no authentication of their own.
    pub listen: SocketAddr,
    /// Calls placed through the API at once.
    pub max_calls: usize,
    /// Conference rooms joined through the API at once.
    pub max_memberships: usize,
    /// Hang up a call, or leave a room, whose page has closed every event stream for this
    /// long (0: never).
    pub orphan_call_secs: u64,
}

impl Default for ApiSection {
    fn default() -> Self {
        ApiSection {
            enabled: true,
            listen: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 7080),
            max_calls: 8,
            max_memberships: 4,
            orphan_call_secs: 30,
        }
    }
}

impl ApiSection {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if !self.listen.ip().is_loopback() {
            return Err(invalid(
                "api.listen",
                format!(
                    "{} is not a loopback address: the API places paid calls and has no \
                     authentication, so it listens on 127.0.0.1 or [::1] only",
                    self.listen
                ),
            ));
        }
        if self.max_calls == 0 {
            return Err(invalid("api.max_calls", "must be greater than zero"));
        }
        if self.max_memberships == 0 {
            return Err(invalid("api.max_memberships", "must be greater than zero"));
        }
        Ok(())
    }
}

/// A duration in whole milliseconds, as the config file writes them.
fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}
