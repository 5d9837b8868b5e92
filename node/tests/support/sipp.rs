//! sipp playing the callee's network (Debian's `sip-tester`; `scripts/test.sh` installs
//! it), for the tests of the SIP bridge.

use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

/// How long sipp gets to start listening and to finish its call.
const DEADLINE: Duration = Duration::from_secs(30);

/// A sipp process playing the callee's network for one call; killed on drop.
pub struct Sipp {
    child: Child,
    pub port: u16,
    messages: PathBuf,
    stats: PathBuf,
}

/// How sipp ended and what it saw.
pub struct SippRun {
    pub status: ExitStatus,
    pub messages: String,
    pub successful_calls: u64,
    pub failed_calls: u64,
}

impl Sipp {
    /// Starts sipp on free ports of 127.0.0.1 with `scenario`: built-in (`-sn`) or a file of
    /// `tests/sipp/` (`-sf`); `extra` arguments are appended.
    pub fn start(dir: &Path, scenario: &str, extra: &[&str]) -> Sipp {
        std::fs::create_dir_all(dir).unwrap();
        let port = free_port();
        let media_port = free_port();
        let (messages, stats) = (dir.join("messages.log"), dir.join("stats.csv"));
        let scenario_args = if scenario.ends_with(".xml") {
            let file = Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/sipp")
                .join(scenario);
            vec!["-sf".to_owned(), file.to_str().unwrap().to_owned()]
        } else {
            vec!["-sn".to_owned(), scenario.to_owned()]
        };
        let errors = std::fs::File::create(dir.join("stderr.log")).unwrap();
        let child = Command::new("sipp")
            .args(&scenario_args)
            .args(["-i", "127.0.0.1", "-mi", "127.0.0.1"])
            .args(["-p", &port.to_string(), "-mp", &media_port.to_string()])
            .args(["-m", "1", "-nostdin", "-timeout_error"])
            // A run gives up after 40 s unless `extra` says otherwise.
            .args(if extra.contains(&"-timeout") {
                &[][..]
            } else {
                &["-timeout", "40s"][..]
            })
            .args(["-trace_msg", "-message_file", messages.to_str().unwrap()])
            .args(["-trace_stat", "-stf", stats.to_str().unwrap()])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(errors)
            .spawn()
            .expect("sipp (Debian package sip-tester; scripts/test.sh installs it)");
        let mut sipp = Sipp {
            child,
            port,
            messages,
            stats,
        };
        sipp.wait_listening(&dir.join("stderr.log"));
        sipp
    }

    /// Waits until sipp has bound its SIP port, or fails with what sipp said.
    fn wait_listening(&mut self, errors: &Path) {
        // Over UDP or TCP, as the scenario was started.
        let free = |port| {
            UdpSocket::bind(("127.0.0.1", port)).is_ok()
                && std::net::TcpListener::bind(("127.0.0.1", port)).is_ok()
        };
        super::wait_for_blocking("sipp to listen", DEADLINE, || {
            if !free(self.port) {
                return true;
            }
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!(
                    "sipp exited ({status}) before listening: {}",
                    std::fs::read_to_string(errors).unwrap_or_default()
                );
            }
            false
        });
    }

    /// Waits for sipp to finish its call.
    pub fn finish(mut self) -> SippRun {
        let status = super::wait_for_blocking("sipp to finish its call", DEADLINE, || {
            self.child.try_wait().unwrap()
        });
        let messages = std::fs::read_to_string(&self.messages).unwrap_or_default();
        let stats = std::fs::read_to_string(&self.stats).unwrap_or_default();
        SippRun {
            status,
            messages,
            successful_calls: stat(&stats, "SuccessfulCall(C)"),
            failed_calls: stat(&stats, "FailedCall(C)"),
        }
    }
}

impl Drop for Sipp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The last value of `column` in sipp's `;`-separated statistics.
fn stat(csv: &str, column: &str) -> u64 {
    let mut lines = csv.lines();
    let Some(index) = lines
        .next()
        .and_then(|header| header.split(';').position(|c| c == column))
    else {
        return 0;
    };
    lines
        .last()
        .and_then(|row| row.split(';').nth(index))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// A port nobody uses at the moment over UDP or TCP (the OS picks it).
pub fn free_port() -> u16 {
    loop {
        let port = UdpSocket::bind("127.0.0.1:0")
            .and_then(|s| s.local_addr())
            .unwrap()
            .port();
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}
