//! A small internet made of network namespaces, for the tests of hosts apart: each host
//! is a namespace, the internet is a bridge in one more, and a home is a router that
//! masquerades its LAN (as a home router does) and drops what nobody inside asked for.
//!
//! This kernel has no netem, so a link with delay or loss is `delay_line.py`, a program
//! copying frames between a TAP device on each side. Links without either are veth pairs.
//!
//! Public addresses are in 198.51.100.0/24 (a documentation range); each home's LAN is
//! 192.168.1.0/24 with the router at .1 and the host at .2. Public hosts and routers send
//! what is not for the bridge to a hole (198.51.100.254 forwards nothing), so a dial to a
//! private or unknown address hangs as on the internet instead of failing at once.
//!
//! Needs root, `ip`, `iptables`, `python3` and `/dev/net/tun` (`scripts/test.sh`
//! installs the packages). Where they are missing, [`Lab::new`] says why and returns
//! `None` so the test can skip; under `CI=true` it panics instead, so that a green CI
//! means the tests ran. Everything a lab made goes away when it drops, and its delay
//! lines also end when the test process does (they stop when their stdin closes).

use std::io::{BufRead, BufReader};
use std::net::Ipv4Addr;
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, MutexGuard};

const DELAY_LINE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/delay_line.py");

/// The bridge of the internet, and the hole public hosts route everything else to.
const INTERNET: &str = "198.51.100";
const HOLE: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 254);

/// What a link adds, each way.
#[derive(Debug, Clone, Copy, Default)]
pub struct Link {
    /// One-way delay: a round trip over one such link takes twice this.
    pub delay_ms: u32,
    /// The share of frames lost in each direction, 0 to 1.
    pub loss: f64,
    /// The first datagrams opening with a DTLS ServerHello (flight 4) that are lost.
    pub drop_server_hellos: u32,
}

impl Link {
    pub const DIRECT: Link = Link {
        delay_ms: 0,
        loss: 0.0,
        drop_server_hellos: 0,
    };

    pub fn delay(delay_ms: u32) -> Link {
        Link {
            delay_ms,
            ..Link::DIRECT
        }
    }
}

/// What a home router lets out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Firewall {
    /// Everything out, only replies in: a home router.
    Open,
    /// As `Open`, but only TCP out: a network that blocks UDP, so no media can flow.
    TcpOnly,
}

/// A host of the lab: its namespace and its own address.
#[derive(Debug, Clone)]
pub struct Host {
    pub name: String,
    pub namespace: String,
    pub ip: Ipv4Addr,
}

impl Host {
    /// `program` to run on this host.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut command = Command::new("ip");
        command
            .args(["netns", "exec", &self.namespace])
            .arg(program);
        command
    }
}

/// One lab at a time per test binary: the tests of hosts apart measure time, and two
/// labs' processes on 2 cores would measure each other.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());
static LABS: AtomicU32 = AtomicU32::new(0);

pub struct Lab {
    prefix: String,
    namespaces: Vec<String>,
    links: Vec<(Child, ChildStdin)>,
    next_port: u32,
    _turn: MutexGuard<'static, ()>,
}

impl Lab {
    /// An empty internet, or `None` (after saying why) where namespaces cannot be made.
    pub fn new() -> Option<Lab> {
        if let Err(why) = can_build() {
            let message = format!("the multi-host tests need {why}");
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "{message} (CI=true: they must run)"
            );
            eprintln!("skipped: {message}");
            return None;
        }
        let turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
        let prefix = format!(
            "il{}x{}",
            std::process::id(),
            LABS.fetch_add(1, Ordering::Relaxed)
        );
        let mut lab = Lab {
            prefix,
            namespaces: Vec::new(),
            links: Vec::new(),
            next_port: 0,
            _turn: turn,
        };
        let internet = lab.namespace("net");
        run(&internet, &["ip", "link", "add", "br0", "type", "bridge"]);
        run(
            &internet,
            &["ip", "addr", "add", &format!("{HOLE}/24"), "dev", "br0"],
        );
        run(&internet, &["ip", "link", "set", "br0", "up"]);
        Some(lab)
    }

    /// A host on the internet at 198.51.100.`last`, joined to it by `link`.
    pub fn public(&mut self, name: &str, last: u8, link: Link) -> Host {
        let namespace = self.namespace(name);
        self.plug(&namespace, "wan0", link);
        let ip = Ipv4Addr::new(198, 51, 100, last);
        address(&namespace, "wan0", ip, 24);
        run(
            &namespace,
            &["ip", "route", "add", "default", "via", &HOLE.to_string()],
        );
        Host {
            name: name.to_owned(),
            namespace,
            ip,
        }
    }

    /// `host` drops everything it would send or receive from now on, as a machine that
    /// lost its power or its uplink: a dial to it hangs instead of being refused, and its
    /// peers learn nothing.
    pub fn pull_plug(&self, host: &Host) {
        for chain in ["INPUT", "OUTPUT"] {
            run(&host.namespace, &["iptables", "-I", chain, "-j", "DROP"]);
        }
    }

    /// A host at home: 192.168.1.2 behind a router whose public address is
    /// 198.51.100.`last`, the router joined to the internet by `link`.
    pub fn at_home(&mut self, name: &str, last: u8, link: Link, firewall: Firewall) -> Host {
        let router = self.public(&format!("{name}-router"), last, link);
        let namespace = self.namespace(name);
        let inside = Ipv4Addr::new(192, 168, 1, 2);
        veth(&router.namespace, "lan0", &namespace, "lan0");
        address(&router.namespace, "lan0", Ipv4Addr::new(192, 168, 1, 1), 24);
        address(&namespace, "lan0", inside, 24);
        run(
            &namespace,
            &["ip", "route", "add", "default", "via", "192.168.1.1"],
        );
        let r = &router.namespace;
        run(r, &["sh", "-c", "echo 1 > /proc/sys/net/ipv4/ip_forward"]);
        let rules: &[&[&str]] = &[
            &[
                "-t",
                "nat",
                "-A",
                "POSTROUTING",
                "-o",
                "wan0",
                "-j",
                "MASQUERADE",
            ],
            &[
                "-A",
                "FORWARD",
                "-i",
                "wan0",
                "-m",
                "conntrack",
                "--ctstate",
                "ESTABLISHED,RELATED",
                "-j",
                "ACCEPT",
            ],
            &["-A", "FORWARD", "-i", "wan0", "-j", "DROP"],
        ];
        for rule in rules {
            run(r, &[&["iptables"], *rule].concat());
        }
        if firewall == Firewall::TcpOnly {
            run(
                r,
                &[
                    "iptables", "-A", "FORWARD", "-i", "lan0", "-p", "udp", "-j", "DROP",
                ],
            );
        }
        Host {
            name: name.to_owned(),
            namespace,
            ip: inside,
        }
    }

    /// A namespace of this lab, with its loopback up.
    fn namespace(&mut self, name: &str) -> String {
        let namespace = format!("{}-{name}", self.prefix);
        let _ = Command::new("ip")
            .args(["netns", "del", &namespace])
            .stderr(Stdio::null())
            .status();
        let status = Command::new("ip")
            .args(["netns", "add", &namespace])
            .status()
            .expect("run ip");
        assert!(status.success(), "ip netns add {namespace}");
        self.namespaces.push(namespace.clone());
        run(&namespace, &["ip", "link", "set", "lo", "up"]);
        namespace
    }

    /// Joins `namespace`'s `device` to the internet's bridge through `link`.
    fn plug(&mut self, namespace: &str, device: &str, link: Link) {
        self.next_port += 1;
        let port = format!("p{}", self.next_port);
        let internet = format!("{}-net", self.prefix);
        if link.delay_ms == 0 && link.loss == 0.0 && link.drop_server_hellos == 0 {
            veth(namespace, device, &internet, &port);
        } else {
            let mut child = Command::new("python3")
                .arg(DELAY_LINE)
                .args([namespace, device, &internet, &port])
                .args(["--delay-ms", &link.delay_ms.to_string()])
                .args(["--loss", &link.loss.to_string()])
                .args(["--seed", &self.next_port.to_string()])
                .args(["--drop-server-hellos", &link.drop_server_hellos.to_string()])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
                .expect("start the delay line");
            let stdin = child.stdin.take().expect("stdin");
            let mut ready = String::new();
            BufReader::new(child.stdout.take().expect("stdout"))
                .read_line(&mut ready)
                .expect("read the delay line");
            assert_eq!(ready.trim(), "ready", "the delay line did not start");
            self.links.push((child, stdin));
            run(namespace, &["ip", "link", "set", device, "up"]);
            run(&internet, &["ip", "link", "set", &port, "up"]);
        }
        run(&internet, &["ip", "link", "set", &port, "master", "br0"]);
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for (mut child, stdin) in self.links.drain(..) {
            drop(stdin);
            let _ = child.kill();
            let _ = child.wait();
        }
        for namespace in self.namespaces.drain(..).rev() {
            let _ = Command::new("ip")
                .args(["netns", "del", &namespace])
                .status();
        }
    }
}

/// Why this machine cannot build a lab, if it cannot.
fn can_build() -> Result<(), String> {
    let uid = Command::new("id")
        .arg("-u")
        .output()
        .map_err(|e| e.to_string())?;
    if String::from_utf8_lossy(&uid.stdout).trim() != "0" {
        return Err("root (to create network namespaces)".into());
    }
    for (program, package) in [
        ("ip", "iproute2"),
        ("iptables", "iptables"),
        ("python3", "python3"),
    ] {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {program}")])
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !found {
            return Err(format!("{program} (Debian package {package})"));
        }
    }
    if !Path::new("/dev/net/tun").exists() {
        return Err("/dev/net/tun (TAP devices for links with delay)".into());
    }
    Ok(())
}

/// Runs `args` in `namespace` and asserts it succeeded.
fn run(namespace: &str, args: &[&str]) {
    let output = Command::new("ip")
        .args(["netns", "exec", namespace])
        .args(args)
        .output()
        .expect("run ip netns exec");
    assert!(
        output.status.success(),
        "in {namespace}: {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
}

fn veth(a: &str, a_device: &str, b: &str, b_device: &str) {
    let status = Command::new("ip")
        .args(["link", "add", "tmp-a", "netns", a, "type", "veth"])
        .args(["peer", "name", "tmp-b", "netns", b])
        .status()
        .expect("run ip");
    assert!(status.success(), "veth between {a} and {b}");
    run(a, &["ip", "link", "set", "tmp-a", "name", a_device]);
    run(b, &["ip", "link", "set", "tmp-b", "name", b_device]);
    run(a, &["ip", "link", "set", a_device, "up"]);
    run(b, &["ip", "link", "set", b_device, "up"]);
}

fn address(namespace: &str, device: &str, ip: Ipv4Addr, bits: u8) {
    run(
        namespace,
        &["ip", "addr", "add", &format!("{ip}/{bits}"), "dev", device],
    );
}

/// 198.51.100.`last`, for configs.
pub fn public_ip(last: u8) -> String {
    format!("{INTERNET}.{last}")
}
