//! Reloading a gateway's prices while it runs (`interlink node` on SIGHUP).
//!
//! The configuration file is read and checked again exactly as at start. If it is sound
//! and its price list differs from the one being sold, the publisher signs and publishes a
//! new offer at once, with a higher `seq`, which replaces the old one wherever it is
//! stored. Anything wrong (an unreadable file, a bad field, no `[gateway]` any more) is
//! an error that names the problem, and the running offer stays as it is. Only the routes
//! and their prices are reloaded; other changes to the gateway need a restart and are
//! reported as such.

use std::path::Path;

use crate::config::{Config, ConfigError, GatewayPlan};
use crate::publisher::{PublishError, Publisher};

/// Why a reload changed nothing.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReloadError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("this node sells no gateway service: there are no prices to reload")]
    NotAGateway,
    #[error("the configuration no longer has a [gateway] section (stop the node to stop selling)")]
    NoGateway,
    #[error("publishing the new offer failed: {0}")]
    Publish(#[from] PublishError),
}

/// What a reload did.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Reloaded {
    /// The price list is the one being sold: nothing was published.
    Unchanged { restart_needed: Vec<&'static str> },
    /// A new offer with these routes was published under this `seq`.
    Published {
        seq: u64,
        routes: usize,
        replicated: bool,
        restart_needed: Vec<&'static str>,
    },
}

/// Reads the gateway's prices from `path` and, if they changed, publishes them through
/// `publisher`; `running` (the plan being sold) follows what was published.
pub async fn reload_prices(
    path: &Path,
    running: Option<&mut GatewayPlan>,
    publisher: Option<&Publisher>,
) -> Result<Reloaded, ReloadError> {
    let (Some(running), Some(publisher)) = (running, publisher) else {
        return Err(ReloadError::NotAGateway);
    };
    let config = Config::load(path)?;
    let plan = config.gateway_plan()?.ok_or(ReloadError::NoGateway)?;
    let restart_needed = restart_needed(running, &plan);
    if plan.routes == running.routes {
        return Ok(Reloaded::Unchanged { restart_needed });
    }
    let published = publisher.set_routes(plan.routes.clone()).await?;
    running.routes = plan.routes;
    Ok(Reloaded::Published {
        seq: published.offer.seq(),
        routes: published.offer.offer().routes.len(),
        replicated: published.replicated,
        restart_needed,
    })
}

/// The gateway settings, other than the routes, that differ between `running` and `new`:
/// a reload does not apply them.
pub fn restart_needed(running: &GatewayPlan, new: &GatewayPlan) -> Vec<&'static str> {
    let mut fields = Vec::new();
    let mut differs = |field, changed: bool| {
        if changed {
            fields.push(field);
        }
    };
    differs("gateway.name", running.name != new.name);
    differs("gateway.region", running.region != new.region);
    differs("gateway.kind", running.kind != new.kind);
    differs("gateway.capacity", running.capacity != new.capacity);
    differs("gateway.quality", running.quality != new.quality);
    differs("gateway.offer_ttl_secs", running.offer_ttl != new.offer_ttl);
    differs("gateway.backend", running.backend != new.backend);
    fields
}

#[cfg(test)]
mod tests {
    use super::*;
    use interlink_protocol::offer::{Route, Tariff};
    use interlink_protocol::{Currency, Prefix};

    fn route(per_minute: u64) -> Route {
        Route {
            prefix: Prefix::new("44").unwrap(),
            tariff: Tariff {
                currency: Currency::new("GBP").unwrap(),
                setup_fee: 0,
                per_minute,
                billing_increment_secs: 60,
            },
        }
    }

    #[test]
    fn only_changes_beyond_the_prices_need_a_restart() {
        let running = GatewayPlan::new("Inter", vec![route(2)]);
        let cheaper = GatewayPlan::new("Inter", vec![route(1)]);
        assert!(restart_needed(&running, &cheaper).is_empty());
        let renamed = GatewayPlan {
            capacity: 7,
            ..GatewayPlan::new("Outer", vec![route(2)])
        };
        assert_eq!(
            restart_needed(&running, &renamed),
            vec!["gateway.name", "gateway.capacity"]
        );
    }

    #[tokio::test]
    async fn a_node_without_a_gateway_has_nothing_to_reload() {
        let result = reload_prices(Path::new("/nonexistent/config.toml"), None, None).await;
        assert!(matches!(result, Err(ReloadError::NotAGateway)));
    }
}
