//! The Prometheus endpoint, scraped over HTTP from nodes on 127.0.0.1: in-process nodes
//! after a call that fails over once, and an `interlink node` process.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use interlink_gateway_plugin::echo::{Answering, EchoConfig};
use interlink_node::calls::caller::{self, CallOptions};
use interlink_node::config::{BackendSpec, DhtSection, GatewayPlan};
use interlink_node::local_network::LocalNetwork;
use interlink_node::metrics::{CONTENT_TYPE, MetricsServer};
use interlink_protocol::ranking::{Policy, PolicyKind};
use support::node_process::{NodeProcess, init_node, network_section};
use support::scrape::{count, scrape, sum_with, value};
use support::{plan, uk_mobile, wait_for};

const DEADLINE: Duration = Duration::from_secs(30);

fn echo(name: &str, per_minute: u64, answering: Answering) -> GatewayPlan {
    GatewayPlan {
        backend: BackendSpec::Echo(EchoConfig {
            ring_ms: 50,
            answering,
            ..EchoConfig::default()
        }),
        ..plan(name, &[("+44", per_minute)], 420, 600)
    }
}

async fn serve(node: &interlink_node::node::Node) -> MetricsServer {
    MetricsServer::start("127.0.0.1:0".parse().unwrap(), node.metrics().clone())
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scrape_after_a_call_shows_its_outcome_failover_receipts_and_offers() {
    // The cheapest gateway is busy: the caller fails over to the other, which answers.
    let network = LocalNetwork::start(
        3,
        vec![
            echo("Busy", 1, Answering::Busy),
            echo("Echo", 2, Answering::Answer),
        ],
        &DhtSection::default(),
    )
    .await
    .unwrap();
    network.wait_published(DEADLINE).await.unwrap();
    let caller = network.caller().await.unwrap();
    let busy = serve(&network.gateways[0]).await;
    let echo = serve(&network.gateways[1]).await;
    let calling = serve(&caller).await;
    let peers: Vec<MetricsServer> = {
        let mut servers = Vec::new();
        for node in network.peers.iter().chain([&network.bootstrap]) {
            servers.push(serve(node).await);
        }
        servers
    };

    let options = CallOptions {
        policy: Policy {
            kind: PolicyKind::Cheapest,
            ..Policy::default()
        },
        hold_for: Duration::from_secs(1),
        ..CallOptions::new(uk_mobile())
    };
    let report = caller::place_call(&caller.caller(), &options, &|_| {})
        .await
        .unwrap();
    assert_eq!(report.gateway, "Echo");
    assert_eq!(report.failovers.len(), 1);
    assert_eq!(report.receipt.status, "settled");

    let (status, content_type, text) = scrape(&calling.url()).await;
    assert_eq!((status, content_type.as_str()), (200, CONTENT_TYPE));
    assert!(text.ends_with("# EOF\n"), "OpenMetrics ends with # EOF");
    for (series, expected) in [
        (
            "interlink_calls_total{role=\"caller\",outcome=\"answered\"}",
            1.0,
        ),
        ("interlink_call_failovers_total", 1.0),
        (
            "interlink_receipts_written_total{role=\"caller\",status=\"settled\"}",
            1.0,
        ),
        ("interlink_calls_active{role=\"caller\"}", 0.0),
        (
            "interlink_call_setup_seconds_count{role=\"caller\",stage=\"invite_to_answer\"}",
            1.0,
        ),
        (
            "interlink_call_setup_seconds_count{role=\"caller\",stage=\"command_to_first_media\"}",
            1.0,
        ),
    ] {
        assert_eq!(value(&text, series), Some(expected), "{series} in\n{text}");
    }
    assert!(
        count(&text, "interlink_offers_validated_total{source=\"lookup\"}") >= 2.0,
        "the caller verified both gateways' offers"
    );
    assert!(
        count(
            &text,
            "interlink_discovery_lookups_total{source=\"network\",outcome=\"found\"}"
        ) >= 1.0
    );
    assert!(count(&text, "interlink_discovery_lookup_requests_count") >= 1.0);
    assert!(
        count(
            &text,
            "interlink_discovery_lookup_seconds_count{source=\"network\"}"
        ) >= 1.0
    );
    assert!(count(&text, "interlink_peers_connected") >= 1.0);
    assert!(
        text.contains("libp2p_swarm_connections_established_total"),
        "libp2p-metrics shares the registry"
    );

    // The gateways store their side when the call is over, which may follow the caller's,
    // and count the call as no longer active once its record is complete, after that.
    let echo_text = wait_for(
        "the echo gateway's receipt and call end",
        DEADLINE,
        || async {
            let (_, _, text) = scrape(&echo.url()).await;
            (count(
                &text,
                "interlink_receipts_written_total{role=\"gateway\",status=\"settled\"}",
            ) == 1.0
                && value(&text, "interlink_calls_active{role=\"gateway\"}") == Some(0.0))
            .then_some(text)
        },
    )
    .await;
    for (series, expected) in [
        (
            "interlink_calls_total{role=\"gateway\",outcome=\"settled\"}",
            1.0,
        ),
        ("interlink_calls_active{role=\"gateway\"}", 0.0),
        (
            "interlink_call_setup_seconds_count{role=\"gateway\",stage=\"invite_to_answer\"}",
            1.0,
        ),
    ] {
        assert_eq!(value(&echo_text, series), Some(expected), "{series}");
    }
    assert!(
        count(
            &echo_text,
            "interlink_offers_published_total{outcome=\"replicated\"}"
        ) >= 1.0
    );
    let (_, _, busy_text) = scrape(&busy.url()).await;
    assert_eq!(
        value(
            &busy_text,
            "interlink_calls_total{role=\"gateway\",outcome=\"rejected\"}"
        ),
        Some(1.0)
    );
    assert_eq!(
        sum_with(
            &busy_text,
            "interlink_receipts_written_total",
            "role=\"gateway\""
        ),
        0.0,
        "a refused call leaves no receipt"
    );

    // The nodes closest to the gateways' keys verified and stored their offers.
    let mut stored = 0.0;
    for server in &peers {
        let (_, _, text) = scrape(&server.url()).await;
        stored += count(&text, "interlink_offers_validated_total{source=\"put\"}");
        assert_eq!(sum_with(&text, "interlink_offers_refused_total", ""), 0.0);
    }
    assert!(stored >= 2.0, "both offers were stored by others: {stored}");

    for server in [busy, echo, calling].into_iter().chain(peers) {
        server.shutdown().await;
    }
    caller.shutdown().await.unwrap();
    network.shutdown().await.unwrap();
}

#[test]
fn interlink_node_serves_metrics_where_it_is_told_and_refuses_bad_limits() {
    let dir = tempfile::tempdir().unwrap();
    let config = init_node(dir.path(), &network_section(None));
    let node = NodeProcess::start_with(
        "node",
        &config,
        &["--no-api", "--metrics-listen", "127.0.0.1:0"],
    );
    let line = node.wait_log("metrics at");
    let url = line["url"].as_str().unwrap().to_owned();
    assert!(url.starts_with("http://127.0.0.1:") && url.ends_with("/metrics"));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (status, content_type, text) = runtime.block_on(scrape(&url));
    assert_eq!((status, content_type.as_str()), (200, CONTENT_TYPE));
    for family in [
        "# TYPE interlink_peers_connected gauge",
        "# TYPE interlink_routing_table_peers gauge",
        "# TYPE interlink_calls_active gauge",
        "# TYPE interlink_limit_refusals counter",
        "# TYPE libp2p_swarm_dial_attempt counter",
    ] {
        assert!(text.contains(family), "{family} in\n{text}");
    }
    for limit in interlink_node::metrics::LIMITS {
        let series = format!("interlink_limit_refusals_total{{limit=\"{limit}\"}}");
        assert_eq!(value(&text, &series), Some(0.0), "{series}");
    }
    let not_found = support::http::Api::new(&url).get("/");
    assert_eq!(not_found.status, 404);
    assert!(node.terminate().success());

    let other = tempfile::tempdir().unwrap();
    let bad = init_node(
        other.path(),
        &format!(
            "{}\n[limits]\ncall_invites_per_sec = 0\n",
            network_section(None)
        ),
    );
    let (status, messages) = NodeProcess::start_with("bad", &bad, &["--no-api"]).wait_exit();
    assert!(!status.success());
    assert!(
        messages
            .iter()
            .any(|m| m.contains("limits.call_invites_per_sec")),
        "the error names the field: {messages:?}"
    );
}
