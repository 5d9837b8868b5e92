//! What an operator deploys and does: the example config and systemd unit in `deploy/`,
//! and reloading a running gateway's prices with SIGHUP (`interlink node` processes).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use interlink_node::config::{BackendSpec, Config};
use serde_json::Value;
use support::node_process::{self, NodeProcess};

mod support;

const BIN: &str = env!("CARGO_BIN_EXE_interlink");

fn deploy(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../deploy")
        .join(file)
}

#[test]
fn the_example_operator_config_loads_and_sells_what_it_says() {
    let config = Config::load(&deploy("operator.toml")).unwrap();
    assert_eq!(config.node.data_dir, Path::new("/var/lib/interlink"));
    assert_eq!(config.network.bootstrap.len(), 2);
    assert!(!config.api.enabled);
    assert!(config.metrics.enabled);
    assert!(config.metrics.listen.ip().is_loopback());
    let plan = config.gateway_plan().unwrap().expect("a [gateway] section");
    assert_eq!(plan.name, "Inter");
    assert!(matches!(plan.backend, BackendSpec::Sip(_)));
    let prices: Vec<(String, u64)> = plan
        .routes
        .iter()
        .map(|r| (r.prefix.to_string(), r.tariff.per_minute))
        .collect();
    assert_eq!(prices, vec![("+44".into(), 2), ("+447".into(), 3)]);
}

#[test]
fn the_systemd_unit_verifies() {
    let unit = std::fs::read_to_string(deploy("interlink.service")).unwrap();
    for hardening in [
        "DynamicUser=yes",
        "StateDirectory=interlink",
        "ProtectSystem=strict",
        "NoNewPrivileges=yes",
        "Restart=on-failure",
        "ExecReload=/bin/kill -HUP $MAINPID",
    ] {
        assert!(
            unit.lines().any(|l| l.trim() == hardening),
            "{hardening} missing"
        );
    }
    let available = Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !available {
        eprintln!(
            "systemd-analyze is not installed: skipping `systemd-analyze verify` of the unit"
        );
        return;
    }
    // The unit names the installed binary; verify it against the one this build made.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("interlink.service");
    std::fs::write(&path, unit.replace("/usr/local/bin/interlink", BIN)).unwrap();
    let output = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    // Unknown keys are only warned about (exit 0): any remark about the unit fails too.
    let remarks: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("interlink.service"))
        .collect();
    assert!(
        output.status.success() && remarks.is_empty(),
        "systemd-analyze verify: {stderr}"
    );
}

fn gateway_config(bootstrap: &str, per_minute: &str) -> String {
    format!(
        "{}[gateway]\nname = \"Inter\"\nregion = \"test\"\noffer_ttl_secs = 600\n\
         [[gateway.routes]]\nprefix = \"+44\"\ncurrency = \"GBP\"\nper_minute = \"{per_minute}\"\n",
        node_process::network_section(Some(bootstrap))
    )
}

/// What `interlink gateways --json` lists for the UK number, as (name, price in minor
/// units, seq).
fn listed(bootstrap: &str) -> Vec<(String, u64, u64)> {
    let output = Command::new(BIN)
        .args(["gateways", "--bootstrap", bootstrap, "--json", "--no-rtt"])
        .args(["--timeout", "10", "+447700900123"])
        .output()
        .unwrap();
    serde_json::from_slice::<Vec<Value>>(&output.stdout)
        .unwrap_or_default()
        .iter()
        .map(|row| {
            (
                row["name"].as_str().unwrap_or_default().to_owned(),
                row["price_per_minute_minor"].as_u64().unwrap_or_default(),
                row["seq"].as_u64().unwrap_or_default(),
            )
        })
        .collect()
}

/// Asks the network until the gateway is listed at `price`, and returns its `seq`.
async fn wait_listed_at(bootstrap: &str, price: u64) -> u64 {
    support::wait_for(
        &format!("Inter listed at {price} minor units"),
        Duration::from_secs(30),
        || async {
            listed(bootstrap)
                .into_iter()
                .find(|(name, p, _)| name == "Inter" && *p == price)
                .map(|(_, _, seq)| seq)
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn sighup_reloads_prices_and_a_bad_config_keeps_the_running_offer() {
    let root = tempfile::tempdir().unwrap();
    let (boot, bootstrap) = node_process::start_bootstrap(&node_process::init_node(
        &root.path().join("boot"),
        &node_process::network_section(None),
    ));
    let config = node_process::init_node(
        &root.path().join("inter"),
        &gateway_config(&bootstrap, "0.02"),
    );
    let gateway = NodeProcess::start("Inter", &config);
    let started = gateway.wait_logs(&["gateway running", "offer published"]);
    let first_seq = started[1]["seq"].as_u64().unwrap();
    assert_eq!(wait_listed_at(&bootstrap, 2).await, first_seq);

    // A new price: the running node publishes it under a higher seq, and callers see it.
    std::fs::write(&config, gateway_config(&bootstrap, "0.03")).unwrap();
    gateway.signal("HUP");
    let reloaded = gateway.wait_log("prices reloaded");
    let new_seq = reloaded["seq"].as_u64().unwrap();
    assert!(new_seq > first_seq, "seq {new_seq} after {first_seq}");
    assert_eq!(reloaded["replicated"], true);
    assert_eq!(wait_listed_at(&bootstrap, 3).await, new_seq);

    // A bad price is refused with the field's name; the running offer stays.
    std::fs::write(&config, gateway_config(&bootstrap, "three pence")).unwrap();
    gateway.signal("HUP");
    let refused = gateway.wait_log("reload refused");
    let error = refused["error"].as_str().unwrap();
    assert!(
        error.contains("gateway.routes[0].per_minute"),
        "the error names the field: {error}"
    );
    // The same price again is no news: nothing is published.
    std::fs::write(&config, gateway_config(&bootstrap, "0.03")).unwrap();
    gateway.signal("HUP");
    gateway.wait_log("prices unchanged");
    assert_eq!(
        listed(&bootstrap),
        vec![("Inter".to_owned(), 3, new_seq)],
        "the offer after a refused reload"
    );

    // A node that sells nothing says so and keeps running.
    boot.signal("HUP");
    let refused = boot.wait_log("reload refused");
    assert!(
        refused["error"]
            .as_str()
            .unwrap()
            .contains("sells no gateway service"),
        "{refused}"
    );
    assert_eq!(
        listed(&bootstrap).len(),
        1,
        "the bootstrap node still serves"
    );
    assert!(gateway.terminate().success());
    drop(boot);
}
