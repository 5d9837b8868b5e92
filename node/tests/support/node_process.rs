//! `interlink node` as a child process, for the tests that run the built binary.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_interlink");
/// How long a test waits for a log line or an exit.
const DEADLINE: Duration = Duration::from_secs(30);

/// A running `interlink node` whose JSON log lines arrive on a channel; killed on drop.
pub struct NodeProcess {
    pub name: String,
    child: Child,
    log: mpsc::Receiver<Value>,
}

impl NodeProcess {
    pub fn start(name: &str, config: &Path) -> NodeProcess {
        let mut child = Command::new(BIN)
            .args(["--log-format", "json", "node", "--config"])
            .arg(config)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start interlink node");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Ok(value) = serde_json::from_str::<Value>(&line) {
                    let _ = tx.send(value);
                }
            }
        });
        NodeProcess {
            name: name.to_owned(),
            child,
            log: rx,
        }
    }

    /// Waits for a log line whose message starts with `message`, returning it.
    pub fn wait_log(&self, message: &str) -> Value {
        let give_up = Instant::now() + DEADLINE;
        loop {
            let left = give_up.saturating_duration_since(Instant::now());
            match self.log.recv_timeout(left) {
                Ok(line)
                    if line["message"]
                        .as_str()
                        .is_some_and(|m| m.starts_with(message)) =>
                {
                    return line;
                }
                Ok(_) => continue,
                Err(_) => panic!(
                    "{}: no log line \"{message}\" within {DEADLINE:?}",
                    self.name
                ),
            }
        }
    }

    /// Kills the process at once (SIGKILL): no withdrawal, no goodbye.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends SIGTERM and waits for the process to exit.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill");
        let give_up = Instant::now() + DEADLINE;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            assert!(
                Instant::now() < give_up,
                "{} did not stop on SIGTERM",
                self.name
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
