//! The SIP trunk a gateway calls through: its settings (`[gateway.sip]` in the node's
//! config), checked once at start, and the rewriting of E.164 destinations into the
//! numbers the trunk expects.
//!
//! [`SipConfig`] is what the operator writes; [`SipConfig::check`] turns it into a
//! [`Trunk`] or a [`TrunkError`] that names the bad field. Number rewriting is an ordered
//! list of rules: the first whose `prefix` starts the number removes `strip` from its front
//! and puts `add` there instead, so `+447700900123` can go out as `07700900123` (national),
//! `00447700900123` (international) or `447700900123` (no `+`). A number no rule matches
//! goes out as E.164, `+` included.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use interlink_protocol::E164;
use serde::Deserialize;

/// How SIP reaches the trunk.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    #[default]
    Udp,
    Tcp,
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
        })
    }
}

/// Digest credentials the trunk may challenge for (`[gateway.sip.credentials]`).
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Credentials {
    pub username: String,
    pub password: String,
    /// The realm to answer; by default the one the trunk's challenge names.
    #[serde(default)]
    pub realm: Option<String>,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &"..")
            .field("realm", &self.realm)
            .finish()
    }
}

/// One number-rewriting rule (`[[gateway.sip.numbering]]`).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NumberRule {
    /// The numbers the rule applies to, in E.164 with `+` (`"+44"`; `"+"` for all).
    pub prefix: String,
    /// Removed from the front of the number; a leading part of `prefix`.
    #[serde(default)]
    pub strip: String,
    /// Put in front of what is left: a national (`"0"`) or international (`"00"`) prefix.
    #[serde(default)]
    pub add: String,
}

/// The trunk's settings, as written in `[gateway.sip]`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SipConfig {
    /// The trunk's host name or address.
    pub host: String,
    #[serde(default = "default_port")]
    pub port: u16,
    #[serde(default)]
    pub transport: Transport,
    /// Where this gateway's SIP endpoint binds (UDP, and TCP on the same port when the
    /// transport is TCP). Port 0 takes any free port.
    #[serde(default = "default_local_address")]
    pub local_address: SocketAddr,
    /// The address RTP binds to and the SDP announces; by default the local address the
    /// host routes toward the trunk.
    #[serde(default)]
    pub media_ip: Option<IpAddr>,
    /// The user part of `From` (the gateway's account on the trunk).
    #[serde(default = "default_from_user")]
    pub from_user: String,
    /// The host part of `From`, `P-Asserted-Identity` and `Call-ID`; by default `host`.
    #[serde(default)]
    pub from_domain: Option<String>,
    #[serde(default)]
    pub credentials: Option<Credentials>,
    /// Number rewriting, first match wins.
    #[serde(default)]
    pub numbering: Vec<NumberRule>,
    /// Give up (CANCEL) on a callee that has not answered after this long.
    #[serde(default = "default_ring_timeout")]
    pub ring_timeout_secs: u64,
    /// End an answered call when no RTP came from the trunk for this long; 0 never does.
    #[serde(default = "default_media_timeout")]
    pub media_timeout_secs: u64,
}

fn default_port() -> u16 {
    5060
}
fn default_local_address() -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 5060)
}
fn default_from_user() -> String {
    "interlink".to_owned()
}
fn default_ring_timeout() -> u64 {
    120
}
fn default_media_timeout() -> u64 {
    30
}

impl SipConfig {
    /// Settings for a trunk at `host:port` over UDP, with every other field at its default.
    pub fn new(host: &str, port: u16) -> SipConfig {
        SipConfig {
            host: host.to_owned(),
            port,
            transport: Transport::Udp,
            local_address: default_local_address(),
            media_ip: None,
            from_user: default_from_user(),
            from_domain: None,
            credentials: None,
            numbering: Vec::new(),
            ring_timeout_secs: default_ring_timeout(),
            media_timeout_secs: default_media_timeout(),
        }
    }

    /// Checks every field; the error names the first bad one (relative to `[gateway.sip]`).
    pub fn check(&self) -> Result<Trunk, TrunkError> {
        check_host("host", &self.host)?;
        if self.port == 0 {
            return Err(TrunkError::new("port", "must not be 0"));
        }
        if let Some(ip) = self.media_ip
            && ip.is_unspecified()
        {
            return Err(TrunkError::new(
                "media_ip",
                "must be an address the trunk can send RTP to, not a wildcard",
            ));
        }
        if self.from_user.is_empty() || !self.from_user.chars().all(is_user_char) {
            return Err(TrunkError::new(
                "from_user",
                "must be letters, digits and + - . _ only",
            ));
        }
        let from_domain = self
            .from_domain
            .clone()
            .unwrap_or_else(|| self.host.clone());
        check_host("from_domain", &from_domain)?;
        if let Some(credentials) = &self.credentials {
            if credentials.username.is_empty() {
                return Err(TrunkError::new("credentials.username", "is empty"));
            }
            if credentials.password.is_empty() {
                return Err(TrunkError::new("credentials.password", "is empty"));
            }
        }
        let numbering = self
            .numbering
            .iter()
            .enumerate()
            .map(|(i, rule)| {
                check_rule(rule).map_err(|(field, reason)| {
                    TrunkError::new(format!("numbering[{i}].{field}"), reason)
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        if self.ring_timeout_secs == 0 {
            return Err(TrunkError::new(
                "ring_timeout_secs",
                "must be greater than zero",
            ));
        }
        Ok(Trunk {
            host: self.host.clone(),
            port: self.port,
            transport: self.transport,
            local_address: self.local_address,
            media_ip: self.media_ip,
            from_user: self.from_user.clone(),
            from_domain,
            credentials: self.credentials.clone(),
            numbering: NumberPlan { rules: numbering },
            ring_timeout: Duration::from_secs(self.ring_timeout_secs),
            media_timeout: (self.media_timeout_secs > 0)
                .then(|| Duration::from_secs(self.media_timeout_secs)),
        })
    }
}

/// Why the trunk's settings cannot be used; `field` is relative to `[gateway.sip]`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid `{field}`: {reason}")]
pub struct TrunkError {
    pub field: String,
    pub reason: String,
}

impl TrunkError {
    fn new(field: impl Into<String>, reason: impl Into<String>) -> TrunkError {
        TrunkError {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

/// Checked trunk settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Trunk {
    pub host: String,
    pub port: u16,
    pub transport: Transport,
    pub local_address: SocketAddr,
    pub media_ip: Option<IpAddr>,
    pub from_user: String,
    pub from_domain: String,
    pub credentials: Option<Credentials>,
    pub numbering: NumberPlan,
    pub ring_timeout: Duration,
    /// `None`: an answered call never ends for want of RTP from the trunk.
    pub media_timeout: Option<Duration>,
}

/// Checked number-rewriting rules, in order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NumberPlan {
    rules: Vec<NumberRule>,
}

impl NumberPlan {
    /// The rules, checked; the error is `(index, field, reason)`.
    pub fn new(rules: Vec<NumberRule>) -> Result<NumberPlan, (usize, &'static str, String)> {
        for (i, rule) in rules.iter().enumerate() {
            check_rule(rule).map_err(|(field, reason)| (i, field, reason))?;
        }
        Ok(NumberPlan { rules })
    }

    /// The number the trunk is asked for: the first matching rule applied, or E.164 with `+`.
    pub fn rewrite(&self, destination: &E164) -> String {
        let number = destination.to_string();
        match self
            .rules
            .iter()
            .find(|rule| number.starts_with(&rule.prefix))
        {
            // `strip` is a leading part of `prefix`, which starts the number.
            Some(rule) => format!("{}{}", rule.add, &number[rule.strip.len()..]),
            None => number,
        }
    }
}

fn check_rule(rule: &NumberRule) -> Result<NumberRule, (&'static str, String)> {
    let digits_after_plus = rule
        .prefix
        .strip_prefix('+')
        .is_some_and(|digits| digits.chars().all(|c| c.is_ascii_digit()));
    if !digits_after_plus {
        return Err((
            "prefix",
            format!(
                "`{}` is not `+` followed by digits (E.164, e.g. \"+44\")",
                rule.prefix
            ),
        ));
    }
    if !rule.prefix.starts_with(&rule.strip) {
        return Err((
            "strip",
            format!(
                "`{}` is not a leading part of the prefix `{}`",
                rule.strip, rule.prefix
            ),
        ));
    }
    let dialable = rule
        .add
        .strip_prefix('+')
        .unwrap_or(&rule.add)
        .chars()
        .all(|c| c.is_ascii_digit() || c == '*' || c == '#');
    if !dialable {
        return Err((
            "add",
            format!("`{}` is not digits (with * # or a leading +)", rule.add),
        ));
    }
    Ok(rule.clone())
}

/// A host name or address fit for a SIP URI: no spaces or URI punctuation.
fn check_host(field: &str, host: &str) -> Result<(), TrunkError> {
    if host.is_empty() {
        return Err(TrunkError::new(field, "is empty"));
    }
    let valid = host
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':' | '[' | ']'));
    if !valid {
        return Err(TrunkError::new(
            field,
            format!("`{host}` is not a host name or address"),
        ));
    }
    Ok(())
}

fn is_user_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.' | '_')
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn rule(prefix: &str, strip: &str, add: &str) -> NumberRule {
        NumberRule {
            prefix: prefix.into(),
            strip: strip.into(),
            add: add.into(),
        }
    }

    fn number(text: &str) -> E164 {
        E164::parse(text).unwrap()
    }

    #[test]
    fn numbers_are_rewritten_by_the_first_matching_rule() {
        let plan = NumberPlan::new(vec![
            // National format for the trunk's own country…
            rule("+44", "+44", "0"),
            // …the international prefix for the rest.
            rule("+", "+", "00"),
        ])
        .unwrap();
        assert_eq!(plan.rewrite(&number("+447700900123")), "07700900123");
        assert_eq!(plan.rewrite(&number("+33123456789")), "0033123456789");

        let strip_plus = NumberPlan::new(vec![rule("+", "+", "")]).unwrap();
        assert_eq!(strip_plus.rewrite(&number("+447700900123")), "447700900123");

        // No rule for the number: E.164 as it is.
        let uk_only = NumberPlan::new(vec![rule("+44", "+44", "0")]).unwrap();
        assert_eq!(uk_only.rewrite(&number("+33123456789")), "+33123456789");
        assert_eq!(
            NumberPlan::default().rewrite(&number("+447700900123")),
            "+447700900123"
        );
        // A more specific rule listed first wins.
        let mobiles =
            NumberPlan::new(vec![rule("+447", "+44", "0"), rule("+44", "+", "")]).unwrap();
        assert_eq!(mobiles.rewrite(&number("+447700900123")), "07700900123");
        assert_eq!(mobiles.rewrite(&number("+442079460000")), "442079460000");
    }

    #[test]
    fn bad_rules_name_their_field() {
        let field = |r: NumberRule| NumberPlan::new(vec![r]).unwrap_err().1;
        assert_eq!(field(rule("44", "", "")), "prefix");
        assert_eq!(field(rule("+4x", "", "")), "prefix");
        assert_eq!(field(rule("+44", "+33", "")), "strip");
        assert_eq!(field(rule("+44", "+44", "0a")), "add");
        assert!(NumberPlan::new(vec![rule("+44", "+44", "+1*#")]).is_ok());
    }

    #[test]
    fn the_config_is_checked_field_by_field() {
        let trunk = SipConfig::new("sip.example.net", 5060).check().unwrap();
        assert_eq!(trunk.from_domain, "sip.example.net");
        assert_eq!(trunk.ring_timeout, Duration::from_secs(120));
        assert_eq!(trunk.media_timeout, Some(Duration::from_secs(30)));

        let error = |change: fn(&mut SipConfig)| {
            let mut config = SipConfig::new("sip.example.net", 5060);
            change(&mut config);
            config.check().unwrap_err().field
        };
        assert_eq!(error(|c| c.host = String::new()), "host");
        assert_eq!(error(|c| c.host = "a b".into()), "host");
        assert_eq!(error(|c| c.port = 0), "port");
        assert_eq!(
            error(|c| c.media_ip = Some(IpAddr::V4(Ipv4Addr::UNSPECIFIED))),
            "media_ip"
        );
        assert_eq!(error(|c| c.from_user = "a@b".into()), "from_user");
        assert_eq!(error(|c| c.from_domain = Some("x;y".into())), "from_domain");
        assert_eq!(
            error(|c| {
                c.credentials = Some(Credentials {
                    username: "gw".into(),
                    password: String::new(),
                    realm: None,
                })
            }),
            "credentials.password"
        );
        assert_eq!(
            error(|c| c.numbering = vec![rule("+44", "+44", ""), rule("+1", "1", "")]),
            "numbering[1].strip"
        );
        assert_eq!(error(|c| c.ring_timeout_secs = 0), "ring_timeout_secs");
        let never = SipConfig {
            media_timeout_secs: 0,
            ..SipConfig::new("10.0.0.1", 5060)
        };
        assert_eq!(never.check().unwrap().media_timeout, None);
    }

    #[test]
    fn secrets_do_not_print() {
        let credentials = Credentials {
            username: "gw".into(),
            password: "hunter2".into(),
            realm: None,
        };
        assert!(!format!("{credentials:?}").contains("hunter2"));
    }
}
