//! What `gateways` and `call` share: the destination, the network to ask and the
//! caller's policy, from flags over the config file over defaults.

use std::path::PathBuf;

use interlink_node::config::Config;
use interlink_protocol::ranking::{Policy, PolicyKind};
use interlink_protocol::{Codec, Currency, E164, Money, ServiceKind};
use libp2p::Multiaddr;

use super::{EXIT_FAILURE, EXIT_INVALID_DESTINATION, EXIT_UNREACHABLE, Failure};

#[derive(Debug, clap::Args)]
pub(crate) struct CallerArgs {
    /// The number to reach: +447700900123, 00447700900123, tel:+44 7700 900123 or
    /// sip:+447700900123@host.
    destination: String,
    /// Join the network through this peer (repeatable; ends in /p2p/PEER_ID)
    /// [default: network.bootstrap of the config].
    #[arg(long, value_name = "MULTIADDR")]
    bootstrap: Vec<Multiaddr>,
    /// Config file for bootstrap peers, the [caller] policy, [media] and [calls]
    /// [default: $INTERLINK_HOME/config.toml if it exists].
    #[arg(long)]
    config: Option<PathBuf>,
    /// How to rank: cheapest, best-quality or balanced [default: balanced].
    #[arg(long, value_name = "POLICY")]
    policy: Option<PolicyKind>,
    /// Leave out offers above this price per minute, e.g. "0.05 GBP" (or "0.05" with
    /// --currency); a gateway that raises its price is paid only up to this.
    #[arg(long, value_name = "AMOUNT")]
    max_price: Option<String>,
    /// Leave out offers priced in other currencies (ISO 4217, e.g. GBP).
    #[arg(long)]
    currency: Option<Currency>,
    /// Leave out offers without this codec (PCMU, PCMA, G722, opus).
    #[arg(long)]
    codec: Option<Codec>,
    /// Service kinds to consider (repeatable) [default: webrtc-pstn and webrtc-sip].
    #[arg(long = "kind", value_name = "KIND")]
    kinds: Vec<ServiceKind>,
}

/// The arguments, checked and combined with the config.
#[derive(Debug)]
pub(crate) struct Choice {
    pub(crate) destination: E164,
    pub(crate) config: Config,
    pub(crate) policy: Policy,
    pub(crate) kinds: Vec<ServiceKind>,
    pub(crate) bootstrap: Vec<Multiaddr>,
}

impl CallerArgs {
    /// Checks the arguments and reads the config; a bad destination or no peer to join
    /// through gets its own exit status.
    pub(crate) fn resolve(&self) -> Result<Choice, Failure> {
        let destination = E164::parse(&self.destination).map_err(|e| {
            Failure::new(
                EXIT_INVALID_DESTINATION,
                format!("invalid destination {:?}: {e}", self.destination),
            )
        })?;
        let default_path = super::default_config_path();
        let config = match &self.config {
            Some(path) => Config::load(path),
            None if default_path.exists() => Config::load(&default_path),
            None => Ok(Config::default()),
        }
        .map_err(|e| Failure::new(EXIT_FAILURE, e))?;
        let mut policy = config
            .caller_policy()
            .map_err(|e| Failure::new(EXIT_FAILURE, e))?;
        if let Some(kind) = self.policy {
            policy.kind = kind;
        }
        if let Some(currency) = self.currency {
            policy.currency = Some(currency);
        }
        if let Some(max) = &self.max_price {
            let limit = Money::parse(max, policy.currency).map_err(|e| {
                Failure::new(EXIT_FAILURE, format!("invalid --max-price {max:?}: {e}"))
            })?;
            policy.max_price_per_minute = Some(limit);
        }
        if let Some(codec) = self.codec {
            policy.required_codec = Some(codec);
        }
        let kinds = if self.kinds.is_empty() {
            ServiceKind::WEBRTC_TO_NUMBERS.to_vec()
        } else {
            self.kinds.clone()
        };
        let bootstrap = if self.bootstrap.is_empty() {
            config.network.bootstrap.clone()
        } else {
            self.bootstrap.clone()
        };
        if bootstrap.is_empty() {
            return Err(Failure::new(
                EXIT_UNREACHABLE,
                "no bootstrap peer: pass --bootstrap MULTIADDR (ending in /p2p/PEER_ID) or set network.bootstrap in --config",
            ));
        }
        Ok(Choice {
            destination,
            config,
            policy,
            kinds,
            bootstrap,
        })
    }
}
