//! `interlink node` as a child process, for the tests that run the built binary.
//!
//! Each serves its web page and API on a free loopback port (`--api-listen 127.0.0.1:0`),
//! so that many run side by side; [`NodeProcess::api_url`] says where.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_interlink");
/// How long a test waits for a log line or an exit.
const DEADLINE: Duration = Duration::from_secs(30);

/// libfaketime for a multi-threaded program, wherever the architecture puts it; `None`
/// (after saying so) where it is missing, which fails under CI.
pub fn libfaketime() -> Option<PathBuf> {
    let found = std::fs::read_dir("/usr/lib")
        .into_iter()
        .flatten()
        .flatten()
        .map(|dir| dir.path().join("faketime/libfaketimeMT.so.1"))
        .find(|path| path.exists());
    if found.is_none() {
        assert!(
            std::env::var_os("CI").is_none(),
            "libfaketime is missing: scripts/test.sh installs it (Debian package faketime)"
        );
        eprintln!("skipped: libfaketime is not installed (Debian package faketime)");
    }
    found
}

/// The environment that moves a process's wall clock by `offset` (`+180s`, say) under
/// `libfaketime`; monotonic time (timers, timeouts) stays real.
pub fn clock_moved<'a>(libfaketime: &'a Path, offset: &'a str) -> [(&'static str, &'a str); 3] {
    [
        ("LD_PRELOAD", libfaketime.to_str().unwrap()),
        ("FAKETIME", offset),
        ("FAKETIME_DONT_FAKE_MONOTONIC", "1"),
    ]
}

/// The `seq` of the offer `gateway` published with its clock more than two minutes fast
/// (see [`clock_moved`]); fails if it was not replicated or the clock did not run fast.
pub fn published_ahead(gateway: &NodeProcess) -> u64 {
    let published = gateway.wait_log("offer published");
    assert_eq!(published["replicated"], true, "{published}");
    let seq = published["seq"].as_u64().unwrap();
    assert!(
        seq > interlink_node::clock::unix_millis() + 120_000,
        "the gateway's clock did not run fast: seq {seq}"
    );
    seq
}

/// A running `interlink node` whose JSON log lines arrive on a channel; killed on drop.
pub struct NodeProcess {
    pub name: String,
    child: Child,
    log: mpsc::Receiver<Value>,
}

impl NodeProcess {
    pub fn start(name: &str, config: &Path) -> NodeProcess {
        NodeProcess::start_with(name, config, &["--api-listen", "127.0.0.1:0"])
    }

    /// `interlink node --config CONFIG` with `args` after it.
    pub fn start_with(name: &str, config: &Path, args: &[&str]) -> NodeProcess {
        NodeProcess::spawn(name, Command::new(BIN), config, args)
    }

    /// `interlink node --config CONFIG` on `host` of a [`super::lab::Lab`].
    pub fn start_on(host: &super::lab::Host, name: &str, config: &Path) -> NodeProcess {
        NodeProcess::spawn(
            name,
            host.command(BIN),
            config,
            &["--api-listen", "127.0.0.1:0"],
        )
    }

    /// `interlink node --config CONFIG` with `env` added to its environment
    /// (`LD_PRELOAD` of libfaketime, say).
    pub fn start_with_env(name: &str, config: &Path, env: &[(&str, &str)]) -> NodeProcess {
        let mut command = Command::new(BIN);
        command.envs(env.iter().copied());
        NodeProcess::spawn(name, command, config, &["--api-listen", "127.0.0.1:0"])
    }

    /// [`NodeProcess::start_on`] with `env` added to its environment.
    pub fn start_on_with_env(
        host: &super::lab::Host,
        name: &str,
        config: &Path,
        env: &[(&str, &str)],
    ) -> NodeProcess {
        let mut command = host.command(BIN);
        command.envs(env.iter().copied());
        NodeProcess::spawn(name, command, config, &["--api-listen", "127.0.0.1:0"])
    }

    fn spawn(name: &str, mut command: Command, config: &Path, args: &[&str]) -> NodeProcess {
        let mut child = command
            .args(["--log-format", "json", "node", "--config"])
            .arg(config)
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start interlink node");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                // A line that is not JSON (the error a failed start prints) comes as its
                // message.
                let value = serde_json::from_str::<Value>(&line)
                    .unwrap_or_else(|_| serde_json::json!({ "message": line, "raw": true }));
                let _ = tx.send(value);
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

    /// The messages of every log line up to and including the first that starts with
    /// `message`.
    pub fn messages_until(&self, message: &str) -> Vec<String> {
        let give_up = Instant::now() + DEADLINE;
        let mut messages = Vec::new();
        loop {
            let left = give_up.saturating_duration_since(Instant::now());
            let line = self.log.recv_timeout(left).unwrap_or_else(|_| {
                panic!(
                    "{}: no log line \"{message}\" within {DEADLINE:?}",
                    self.name
                )
            });
            let text = line["message"].as_str().unwrap_or_default().to_owned();
            let done = text.starts_with(message);
            messages.push(text);
            if done {
                return messages;
            }
        }
    }

    /// Waits for the line that gives the address of the node's web page and API.
    pub fn api_url(&self) -> String {
        let line = self.wait_log("web page and API at");
        line["url"].as_str().expect("the page's url").to_owned()
    }

    /// Waits for the process to exit by itself and returns its status and the messages
    /// it logged meanwhile.
    pub fn wait_exit(mut self) -> (std::process::ExitStatus, Vec<String>) {
        let what = format!("{} to exit", self.name);
        let status =
            super::wait_for_blocking(&what, DEADLINE, || self.child.try_wait().expect("wait"));
        // The reader ends when the process's stderr closes.
        let mut messages = Vec::new();
        while let Ok(line) = self.log.recv_timeout(DEADLINE) {
            messages.extend(line["message"].as_str().map(str::to_owned));
        }
        (status, messages)
    }

    /// Waits until a log line starting with each of `messages` has come, in any order,
    /// returning them in the order asked.
    pub fn wait_logs(&self, messages: &[&str]) -> Vec<Value> {
        let give_up = Instant::now() + DEADLINE;
        let mut found: Vec<Option<Value>> = vec![None; messages.len()];
        while found.iter().any(Option::is_none) {
            let left = give_up.saturating_duration_since(Instant::now());
            let line = self.log.recv_timeout(left).unwrap_or_else(|_| {
                panic!(
                    "{}: not every one of {messages:?} logged within {DEADLINE:?}",
                    self.name
                )
            });
            let text = line["message"].as_str().unwrap_or_default().to_owned();
            if let Some(i) =
                (0..messages.len()).find(|&i| found[i].is_none() && text.starts_with(messages[i]))
            {
                found[i] = Some(line);
            }
        }
        found.into_iter().flatten().collect()
    }

    /// Sends the signal `name` (`HUP`, `TERM`, …) to the process.
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([&format!("-{name}"), &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(status.success(), "kill -{name} {}", self.name);
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().expect("wait").is_none()
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
        let what = format!("{} to stop on SIGTERM", self.name);
        super::wait_for_blocking(&what, DEADLINE, || self.child.try_wait().expect("wait"))
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `interlink init --dir DIR`, its config replaced by `config`.
pub fn init_node(dir: &Path, config: &str) -> PathBuf {
    let path = init_home(dir).join("config.toml");
    std::fs::write(&path, config).unwrap();
    path
}

/// `interlink init --dir DIR`: a caller's home, with its own identity.
pub fn init_home(dir: &Path) -> PathBuf {
    let output = Command::new(BIN)
        .args(["init", "--dir", dir.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "init: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    dir.to_owned()
}

/// The receipts `interlink receipts --json` lists for the node at `home`.
pub fn receipts_at(home: &Path) -> Vec<Value> {
    let rows = json_output(
        Command::new(BIN)
            .args(["receipts", "--json"])
            .env("INTERLINK_HOME", home),
    );
    serde_json::from_value(rows).unwrap()
}

/// A `[network]` listening on 127.0.0.1 (joining through `bootstrap`, if given) and
/// media on 127.0.0.1.
pub fn network_section(bootstrap: Option<&str>) -> String {
    let bootstrap = bootstrap
        .map(|b| format!("bootstrap = [\"{b}\"]"))
        .unwrap_or_default();
    format!(
        "[network]\nlisten = [\"/ip4/127.0.0.1/tcp/0\"]\n{bootstrap}\n[media]\nip = \"127.0.0.1\"\n"
    )
}

/// A bootstrap node started from `config`, and its dialable address.
pub fn start_bootstrap(config: &Path) -> (NodeProcess, String) {
    let boot = NodeProcess::start("bootstrap", config);
    let listening = boot.wait_log("listening on");
    let address = format!(
        "{}/p2p/{}",
        listening["address"].as_str().unwrap(),
        listening["peer_id"].as_str().unwrap()
    );
    (boot, address)
}

/// Runs `command` (the `interlink` binary with its arguments), asserts that it succeeded
/// and reads its standard output as JSON.
pub fn json_output(command: &mut Command) -> Value {
    let output = command.output().expect("run interlink");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("JSON on stdout")
}
