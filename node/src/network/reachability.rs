//! Whether others can reach this node, and so what it may advertise.
//!
//! A node on the internet behind a NAT, or a firewall, that advertises the addresses it
//! listens on (private ones, loopback) sends every other node's dials into a hole: each
//! lookup that meets it waits for a connection timeout, and callers rank a gateway they
//! cannot reach. So on the internet a node advertises only addresses confirmed reachable:
//! those configured in `network.external_addresses` (the operator's word, checked to be
//! public), or those libp2p AutoNAT confirmed by having a peer dial back to them. Kademlia
//! runs in libp2p-kad's automatic mode there: a server (in others' routing tables,
//! answering their queries) only while an address is confirmed, a client otherwise. A
//! gateway publishes its offer only with confirmed addresses, and says loudly when it has
//! none (`publisher.rs`, the `interlink_reachable` gauge).
//!
//! A network on one machine or one LAN (the demo, the tests, a lab) has no public
//! addresses at all: its scope is [`Scope::Local`], where listen addresses are advertised
//! as they are. The scope comes from `network.scope`, or else from the addresses in use:
//! local when every listen and bootstrap address is loopback or private, internet as soon
//! as one is public (as kubo keeps a LAN DHT and a WAN DHT apart by address).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use libp2p::autonat;
use libp2p::multiaddr::{Multiaddr, Protocol};
use serde::Deserialize;

/// Where the network this node belongs to lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// One machine or one LAN: every address in use may be advertised.
    Local,
    /// The internet: only addresses confirmed reachable, and only public ones.
    Internet,
}

impl Scope {
    /// The scope of a node listening on `listen` and joining through `bootstrap`: local
    /// when every address among them (other than "every interface") is loopback or
    /// private, the internet otherwise.
    pub fn of<'a>(addresses: impl IntoIterator<Item = &'a Multiaddr>) -> Scope {
        let mut any = false;
        for address in addresses {
            match ip_of(address) {
                Some(ip) if ip.is_unspecified() => {}
                Some(ip) if !is_public_ip(ip) => any = true,
                Some(_) => return Scope::Internet,
                // A DNS name is meant to be found from afar.
                None if is_dns(address) => return Scope::Internet,
                // In-memory and other transports never leave the process or the host.
                None => any = true,
            }
        }
        if any { Scope::Local } else { Scope::Internet }
    }
}

/// Whether `address` may be advertised on the internet: a public IP address or a DNS
/// name; never loopback, private, link-local, shared (CGNAT) or unspecified.
pub fn is_public(address: &Multiaddr) -> bool {
    match ip_of(address) {
        Some(ip) => is_public_ip(ip),
        None => is_dns(address),
    }
}

fn ip_of(address: &Multiaddr) -> Option<IpAddr> {
    address.iter().find_map(|p| match p {
        Protocol::Ip4(ip) => Some(IpAddr::V4(ip)),
        Protocol::Ip6(ip) => Some(IpAddr::V6(ip)),
        _ => None,
    })
}

fn is_dns(address: &Multiaddr) -> bool {
    address.iter().any(|p| {
        matches!(
            p,
            Protocol::Dns(_) | Protocol::Dns4(_) | Protocol::Dns6(_) | Protocol::Dnsaddr(_)
        )
    })
}

fn is_public_ip(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(ip) => is_public_v4(ip),
        IpAddr::V6(ip) => match ip.to_ipv4_mapped() {
            Some(v4) => is_public_v4(v4),
            None => is_public_v6(ip),
        },
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    let shared = a == 100 && (64..128).contains(&b); // 100.64.0.0/10, carrier-grade NAT
    !(ip.is_private()
        || ip.is_loopback()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        || shared
        || a == 0)
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    let first = ip.segments()[0];
    let unique_local = first & 0xfe00 == 0xfc00; // fc00::/7
    let link_local = first & 0xffc0 == 0xfe80; // fe80::/10
    !(ip.is_loopback() || ip.is_unspecified() || ip.is_multicast() || unique_local || link_local)
}

/// AutoNAT (v1) as a node on the internet runs it: it asks connected peers to dial it
/// back soon after it starts and again every few seconds until a peer has, and answers
/// such requests from others.
pub(super) fn autonat_config() -> autonat::v1::Config {
    autonat::v1::Config {
        // Soon after joining: a gateway's offer waits for the answer.
        boot_delay: Duration::from_secs(1),
        retry_interval: Duration::from_secs(5),
        refresh_interval: Duration::from_secs(5 * 60),
        // A small network has few peers to ask; one that answered may be asked again soon.
        throttle_server_period: Duration::from_secs(15),
        confidence_max: 2,
        // The event loop keeps private addresses out itself (see `is_public`), and a
        // peer observed at one is as able to dial back as any other.
        only_global_ips: false,
        timeout: Duration::from_secs(15),
        ..autonat::v1::Config::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(text: &str) -> Multiaddr {
        text.parse().unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    #[test]
    fn only_public_addresses_are_public() {
        for public in [
            "/ip4/198.51.100.7/tcp/4001",
            "/ip4/8.8.8.8/udp/4001/quic-v1",
            "/ip6/2001:db8::1/tcp/4001",
            "/dns4/gw.example.net/tcp/4001",
        ] {
            assert!(is_public(&addr(public)), "{public}");
        }
        for private in [
            "/ip4/127.0.0.1/tcp/4001",
            "/ip4/10.1.2.3/tcp/4001",
            "/ip4/172.16.0.9/tcp/4001",
            "/ip4/192.168.1.2/udp/4001/quic-v1",
            "/ip4/100.64.0.1/tcp/4001",
            "/ip4/169.254.1.1/tcp/4001",
            "/ip4/0.0.0.0/tcp/4001",
            "/ip6/::1/tcp/4001",
            "/ip6/fd00::1/tcp/4001",
            "/ip6/fe80::1/tcp/4001",
            "/ip6/::ffff:192.168.1.2/tcp/4001",
            "/memory/42",
        ] {
            assert!(!is_public(&addr(private)), "{private}");
        }
    }

    #[test]
    fn the_scope_follows_the_addresses_in_use() {
        let local = [
            addr("/ip4/127.0.0.1/tcp/0"),
            addr("/ip4/192.168.1.9/tcp/4001"),
        ];
        assert_eq!(Scope::of(&local), Scope::Local);
        let memory = [addr("/memory/7")];
        assert_eq!(Scope::of(&memory), Scope::Local);
        // A gateway behind NAT, listening on every interface, joining a public node.
        let behind_nat = [
            addr("/ip4/0.0.0.0/tcp/4001"),
            addr(
                "/ip4/203.0.113.1/tcp/4001/p2p/12D3KooWLJ296JzqfEoSYnmkuRKXVPEXMyZhYs9CJapPfKhZx8JV",
            ),
        ];
        assert_eq!(Scope::of(&behind_nat), Scope::Internet);
        // The default config: every interface, nobody to join yet.
        assert_eq!(Scope::of(&[addr("/ip4/0.0.0.0/tcp/4001")]), Scope::Internet);
    }
}
