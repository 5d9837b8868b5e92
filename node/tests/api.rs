//! The node's HTTP API on 127.0.0.1, driven from outside over real sockets, with in-process
//! nodes and echo gateways behind it. A real WebRTC endpoint ([`ToneCall`]) stands in for
//! the browser: it makes the SDP offer the API carries to the gateway, applies the answer
//! that comes back as an event, and checks that its tone returns.
//!
//! - bad requests of every kind get a JSON code and message, and the node keeps serving;
//! - a call through the API: the ranked list, the events (with `Last-Event-ID` resumption),
//!   media both ways, the state and running cost, hang-up on every leg, a settled receipt,
//!   an empty call list;
//! - failover from a busy gateway, then a hang-up while ringing that tries nobody else;
//! - a page that went away and a browser that never reports media: both calls end, the
//!   silent one settled at no charge on both sides;
//! - `wait_for_answer` and the limit on calls at once;
//! - stopping the API hangs up the calls in progress, receipts and all;
//! - a node whose idle connections all closed still finds gateways.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use interlink_gateway_plugin::echo::{Answering, EchoConfig};
use interlink_gateway_plugin::webrtc_leg::MediaSettings;
use interlink_node::api::{ApiServer, ApiSettings};
use interlink_node::calls::media::ToneCall;
use interlink_node::config::{BackendSpec, DhtSection, GatewayPlan};
use interlink_node::local_network::{LocalNetwork, caller_spec};
use interlink_node::node::Node;
use interlink_protocol::ServiceKind;
use interlink_protocol::call::Timers;
use interlink_protocol::ranking::{Policy, PolicyKind};
use libp2p::identity::Keypair;
use serde_json::{Value, json};
use support::http::{Api, Event};
use support::{plan, wait_for_blocking};
use tokio::runtime::Runtime;

const DEADLINE: Duration = Duration::from_secs(30);
const BOB: &str = "+447700900123";

fn echo(name: &str, per_minute: u64, config: EchoConfig) -> GatewayPlan {
    GatewayPlan {
        backend: BackendSpec::Echo(config),
        ..plan(name, &[("+44", per_minute)], 420, 600)
    }
}

fn ringing(ring_ms: u64, answering: Answering) -> EchoConfig {
    EchoConfig {
        ring_ms,
        answering,
        ..EchoConfig::default()
    }
}

fn settings(bootstrap: &LocalNetwork) -> ApiSettings {
    ApiSettings {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        max_calls: 4,
        max_memberships: 2,
        orphan_call_after: None,
        policy: Policy {
            kind: PolicyKind::Cheapest,
            ..Policy::default()
        },
        kinds: ServiceKind::WEBRTC_TO_NUMBERS.to_vec(),
        timers: Timers::default(),
        setup_deadline: Duration::from_secs(30),
        bootstrap: vec![bootstrap.bootstrap_addr.clone()],
    }
}

/// A network with `gateways`, and a caller node serving the API with `settings`.
struct World {
    runtime: Runtime,
    network: Option<LocalNetwork>,
    caller: Option<Node>,
    server: Option<ApiServer>,
    api: Api,
}

impl World {
    fn start(gateways: Vec<GatewayPlan>, tweak: impl FnOnce(&mut ApiSettings)) -> World {
        World::start_with(gateways, tweak, |_| {})
    }

    fn start_with(
        gateways: Vec<GatewayPlan>,
        tweak: impl FnOnce(&mut ApiSettings),
        caller_tweak: impl FnOnce(&mut interlink_node::node::NodeSpec),
    ) -> World {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let (network, caller, server) = runtime.block_on(async {
            let network = LocalNetwork::start(2, gateways, &DhtSection::default())
                .await
                .unwrap();
            network.wait_published(DEADLINE).await.unwrap();
            let mut spec =
                caller_spec(vec![network.bootstrap_addr.clone()], &DhtSection::default());
            caller_tweak(&mut spec);
            let caller = Node::start(spec, Keypair::generate_ed25519())
                .await
                .unwrap();
            let mut settings = settings(&network);
            tweak(&mut settings);
            let server = ApiServer::start(settings, caller.caller()).await.unwrap();
            (network, caller, server)
        });
        let api = Api::new(&server.url());
        World {
            runtime,
            network: Some(network),
            caller: Some(caller),
            server: Some(server),
            api,
        }
    }

    /// A browser stand-in's SDP offer.
    fn offer(&self) -> (ToneCall, String) {
        self.runtime
            .block_on(ToneCall::offer(&MediaSettings::loopback(), 440.0))
            .unwrap()
    }

    fn gateway_peer(&self, index: usize) -> String {
        self.network.as_ref().unwrap().gateways[index]
            .peer_id()
            .to_string()
    }
}

impl Drop for World {
    fn drop(&mut self) {
        let (server, caller, network) =
            (self.server.take(), self.caller.take(), self.network.take());
        self.runtime.block_on(async {
            if let Some(server) = server {
                server.shutdown().await;
            }
            if let Some(caller) = caller {
                let _ = caller.shutdown().await;
            }
            if let Some(network) = network {
                let _ = network.shutdown().await;
            }
        });
    }
}

fn names(events: &[Event]) -> Vec<&str> {
    events.iter().map(|e| e.name.as_str()).collect()
}

/// Polls `GET /api/calls` until it is empty.
fn wait_no_calls(api: &Api) {
    wait_for_blocking("no call listed", DEADLINE, || {
        let calls = api.get("/api/calls").json();
        if calls["calls"].as_array().is_some_and(Vec::is_empty) {
            Ok(())
        } else {
            Err(format!("calls still listed: {calls}"))
        }
    });
}

fn assert_error(response: &support::http::Response, status: u16, code: &str) {
    let body = response.json();
    assert_eq!(
        (response.status, body["code"].as_str()),
        (status, Some(code)),
        "{body}"
    );
    assert!(
        body["message"].as_str().is_some_and(|m| !m.is_empty()),
        "a message for people: {body}"
    );
    assert_eq!(response.header("content-type"), Some("application/json"));
}

#[test]
fn bad_requests_get_json_errors_and_the_node_keeps_serving() {
    let world = World::start(
        vec![echo("Solo", 2, ringing(100, Answering::Answer))],
        |_| {},
    );
    let api = &world.api;
    let (_tone, sdp) = world.offer();
    let call = |body: Value| api.post("/api/calls", &body);

    assert_error(&api.get("/api/gateways"), 400, "invalid_destination");
    assert_error(
        &api.get("/api/gateways?destination=banana"),
        400,
        "invalid_destination",
    );
    assert_error(
        &api.get("/api/gateways?destination=%2B447700900123&policy=fastest"),
        400,
        "invalid_policy",
    );
    assert_error(&api.get("/api/gateways?colour=blue"), 400, "bad_query");
    let uncovered = api.get("/api/gateways?destination=%2B12025550100");
    assert_error(&uncovered, 404, "not_covered");
    assert!(
        uncovered.json()["message"]
            .as_str()
            .unwrap()
            .starts_with("No service can reach +12025550100"),
        "{}",
        uncovered.json()
    );

    let json_head = format!(
        "POST /api/calls HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json",
        api.address
    );
    assert_error(&api.raw(&json_head, b"{\"destination\": "), 400, "bad_json");
    assert_error(
        &api.raw(&json_head.replace("application/json", "text/plain"), b"{}"),
        415,
        "unsupported_media_type",
    );
    assert_error(
        &api.raw(&json_head, &vec![b' '; 70 * 1024]),
        413,
        "body_too_large",
    );
    assert_error(&call(json!({"destination": BOB})), 422, "bad_request");
    assert_error(
        &call(json!({"destination": BOB, "sdp_offer": sdp, "colour": "blue"})),
        422,
        "bad_request",
    );
    assert_error(
        &call(json!({"destination": "123", "sdp_offer": sdp})),
        400,
        "invalid_destination",
    );
    assert_error(
        &call(json!({"destination": BOB, "sdp_offer": "hello"})),
        400,
        "invalid_sdp",
    );
    assert_error(
        &call(
            json!({"destination": BOB, "sdp_offer": "v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\n"}),
        ),
        400,
        "invalid_sdp",
    );
    assert_error(
        &call(json!({"destination": BOB, "sdp_offer": sdp, "gateway": "nobody"})),
        400,
        "invalid_gateway",
    );
    let stranger = libp2p::PeerId::random().to_string();
    assert_error(
        &call(json!({"destination": BOB, "sdp_offer": sdp, "gateway": stranger})),
        404,
        "unknown_gateway",
    );
    assert_error(
        &call(json!({"destination": "+12025550100", "sdp_offer": sdp})),
        404,
        "not_covered",
    );
    for (method, path) in [
        ("GET", "/api/calls/0123"),
        ("DELETE", "/api/calls/0123"),
        ("POST", "/api/calls/0123/media"),
        ("GET", "/api/calls/0123/events"),
    ] {
        assert_error(&api.request(method, path, None), 404, "unknown_call");
    }
    assert_error(&api.get("/api/teapot"), 404, "not_found");
    assert_error(
        &api.request("PUT", "/api/calls", None),
        405,
        "method_not_allowed",
    );
    assert_error(&api.get("/assets/secret.txt"), 404, "not_found");
    assert_error(
        &api.raw("GET /api/node HTTP/1.1\r\nHost: rebound.example:7080", b""),
        403,
        "forbidden_host",
    );

    // None of it started a call or hurt the node.
    assert_eq!(api.get("/api/calls").json(), json!({"calls": []}));
    let node = api.get("/api/node");
    assert_eq!(node.status, 200);
    assert!(node.json()["connected_peers"].as_u64().unwrap() > 0);
    let listed = api.get("/api/gateways?destination=%2B447700900123");
    assert_eq!(listed.status, 200, "{}", listed.json());
    assert_eq!(listed.json()["gateways"][0]["name"], "Solo");
}

#[test]
fn a_call_carries_the_offer_to_the_gateway_and_ends_on_every_leg() {
    let world = World::start(
        vec![
            echo("Dear", 5, ringing(100, Answering::Answer)),
            echo("Cheap", 1, ringing(100, Answering::Answer)),
        ],
        |_| {},
    );
    let api = &world.api;

    // The page's list: cheapest first, as the policy says, with the recommendation's why.
    let listed = api.get("/api/gateways?destination=%2B44%207700%20900123&policy=cheapest");
    let listed = listed.json();
    let order: Vec<&str> = listed["gateways"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["name"].as_str().unwrap())
        .collect();
    assert_eq!(order, ["Cheap", "Dear"]);
    assert_eq!(listed["recommended"]["name"], "Cheap");
    assert!(!listed["recommended"]["why"].as_array().unwrap().is_empty());
    assert_eq!(listed["gateways"][0]["price_per_minute"], "0.01");
    assert!(
        listed["gateways"][0]["breakdown"]
            .as_str()
            .unwrap()
            .contains("price")
    );

    let (mut tone, sdp) = world.offer();
    let created = api.post(
        "/api/calls",
        &json!({"destination": BOB, "gateway": "recommended", "sdp_offer": sdp}),
    );
    assert_eq!(created.status, 201, "{}", created.json());
    let created = created.json();
    let id = created["call_id"].as_str().unwrap().to_owned();
    let events_path = created["events"].as_str().unwrap().to_owned();
    assert_eq!(events_path, format!("/api/calls/{id}/events"));

    let mut events = api.events(&events_path, None);
    let setup = events.until("answered", DEADLINE);
    assert_eq!(names(&setup), ["inviting", "trying", "ringing", "answered"]);
    assert_eq!(setup[0].data["gateway"], "Cheap");
    assert_eq!(setup[0].data["tariff"]["per_minute_minor"], 1);
    assert_eq!(setup[0].data["tariff"]["exponent"], 2);
    let ids: Vec<Option<u64>> = setup.iter().map(|e| e.id).collect();
    assert_eq!(ids, [Some(1), Some(2), Some(3), Some(4)]);
    let answer = setup[3].data["sdp_answer"].as_str().unwrap().to_owned();
    assert!(answer.starts_with("v=0"), "{answer}");

    // The "browser" applies the answer: its tone goes to the gateway and comes back.
    world.runtime.block_on(async {
        tone.accept_answer(&answer).await.unwrap();
        tone.wait_first_packet(DEADLINE).await.unwrap();
    });
    let reported = api.post(&format!("/api/calls/{id}/media"), &json!({}));
    assert_eq!(reported.status, 200, "{}", reported.json());
    assert_eq!(names(&events.until("media", DEADLINE)), ["media"]);
    let view = api.get(&format!("/api/calls/{id}")).json();
    assert_eq!(view["state"], "active");
    assert_eq!(view["gateway"]["name"], "Cheap");
    assert_eq!(view["cost_so_far"], "0.01");
    assert_eq!(view["sdp_answer"], answer.as_str());
    let listed = api.get("/api/calls").json();
    assert_eq!(listed["calls"].as_array().unwrap().len(), 1);
    assert_eq!(listed["calls"][0]["call_id"], id.as_str());

    // A page that reconnects gets what followed its last event, not all again.
    let mut resumed = api.events(&events_path, Some(4));
    let replay = resumed.next(DEADLINE).unwrap();
    assert_eq!((replay.name.as_str(), replay.id), ("media", Some(5)));
    drop(resumed);

    // Talk a little: the tone's echo comes back through the gateway.
    wait_for_blocking("the tone's echo", DEADLINE, || {
        let report = tone.report();
        if report.echo_matches >= 10 {
            Ok(())
        } else {
            Err(format!("{report:?}"))
        }
    });
    let hung_up = api.delete(&format!("/api/calls/{id}"));
    assert_eq!(hung_up.status, 202, "{}", hung_up.json());
    let end = events.until("ended", DEADLINE);
    assert_eq!(names(&end), ["hanging_up", "ended"]);
    let ended = &end[1].data;
    assert_eq!(ended["answered"], true);
    assert_eq!(ended["outcome"], "hung_up");
    assert_eq!(ended["ended_by"], "caller");
    assert_eq!(ended["receipt"]["status"], "settled", "{ended}");
    assert_eq!(ended["receipt"]["amount"], "0.01 GBP");
    assert!(
        events.next(DEADLINE).is_none(),
        "the stream ends after ended"
    );
    // Gone from the list as soon as it ended; still there to look at.
    assert_eq!(api.get("/api/calls").json(), json!({"calls": []}));
    let view = api.get(&format!("/api/calls/{id}")).json();
    assert_eq!(view["state"], "ended");
    assert_eq!(api.delete(&format!("/api/calls/{id}")).status, 200);
    assert_error(
        &api.post(&format!("/api/calls/{id}/media"), &json!({})),
        409,
        "call_ended",
    );

    let media = world.runtime.block_on(tone.close());
    assert!(media.echo_matches >= 10, "{media:?}");
    assert_eq!(media.echo_mismatches, 0, "{media:?}");
}

#[test]
fn a_busy_gateway_fails_over_and_a_hang_up_while_ringing_tries_nobody_else() {
    let world = World::start(
        vec![
            echo("Busy", 1, ringing(50, Answering::Busy)),
            echo("Slow", 2, ringing(0, Answering::NeverAnswer)),
            echo("Spare", 3, ringing(50, Answering::Answer)),
        ],
        |_| {},
    );
    let api = &world.api;
    let (tone, sdp) = world.offer();
    let created = api.post("/api/calls", &json!({"destination": BOB, "sdp_offer": sdp}));
    assert_eq!(created.status, 201, "{}", created.json());
    let id = created.json()["call_id"].as_str().unwrap().to_owned();
    let mut events = api.events(&format!("/api/calls/{id}/events"), None);
    let mut seen = events.until("failed_over", DEADLINE);
    seen.extend(events.until("ringing", DEADLINE));
    assert_eq!(
        names(&seen),
        [
            "inviting",
            "trying",
            "ringing",
            "failed_over",
            "inviting",
            "trying",
            "ringing"
        ]
    );
    assert_eq!(seen[3].data["gateway"], "Busy");
    assert_eq!(seen[4].data["gateway"], "Slow");
    let view = api.get(&format!("/api/calls/{id}")).json();
    assert_eq!(view["state"], "ringing");
    assert_eq!(view["failovers"][0]["gateway"], "Busy");

    assert_eq!(api.delete(&format!("/api/calls/{id}")).status, 202);
    let end = events.until("ended", DEADLINE);
    assert_eq!(names(&end), ["hanging_up", "ended"]);
    assert_eq!(end[1].data["answered"], false);
    assert_eq!(end[1].data["outcome"], "cancelled", "{}", end[1].data);
    wait_no_calls(api);
    world.runtime.block_on(tone.close());
}

#[test]
fn calls_end_when_the_page_goes_away_or_never_reports_media() {
    let world = World::start(
        vec![echo("Echo", 1, ringing(50, Answering::Answer))],
        |settings| {
            settings.orphan_call_after = Some(Duration::from_millis(500));
            settings.timers.media = Duration::from_secs(1);
        },
    );
    let api = &world.api;

    // A page that follows its call and then closes: hung up once nobody watches.
    let (mut tone, sdp) = world.offer();
    let id = api
        .post("/api/calls", &json!({"destination": BOB, "sdp_offer": sdp}))
        .json()["call_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut events = api.events(&format!("/api/calls/{id}/events"), None);
    let answer = events.until("answered", DEADLINE)[3].data["sdp_answer"]
        .as_str()
        .unwrap()
        .to_owned();
    world.runtime.block_on(async {
        tone.accept_answer(&answer).await.unwrap();
        tone.wait_first_packet(DEADLINE).await.unwrap();
    });
    api.post(&format!("/api/calls/{id}/media"), &json!({}));
    events.until("media", DEADLINE);
    drop(events);
    wait_no_calls(api);
    let ended = api.get(&format!("/api/calls/{id}")).json();
    assert_eq!(ended["ended"]["outcome"], "hung_up", "{ended}");
    assert_eq!(ended["ended"]["ended_by"], "caller");
    world.runtime.block_on(tone.close());

    // A browser that never says its media started: the media deadline ends the call.
    let (tone, sdp) = world.offer();
    let id = api
        .post("/api/calls", &json!({"destination": BOB, "sdp_offer": sdp}))
        .json()["call_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let ended = api
        .events(&format!("/api/calls/{id}/events"), None)
        .until("ended", DEADLINE)
        .pop()
        .unwrap();
    assert!(
        ended.data["cause"].as_str().unwrap().contains("media"),
        "{}",
        ended.data
    );
    // Answered but silent: settled at no charge, with the cause, and both sides agree.
    let receipt = &ended.data["receipt"];
    assert_eq!(receipt["status"], "settled", "{}", ended.data);
    assert_eq!(receipt["not_charged"], "no media in time", "{}", ended.data);
    assert_eq!(
        (
            receipt["billed_seconds"].as_u64(),
            receipt["amount_minor"].as_u64()
        ),
        (Some(0), Some(0)),
        "{}",
        ended.data
    );
    let (caller_rows, gateway_rows) = world.runtime.block_on(async {
        let caller = world.caller.as_ref().unwrap().store().receipts().await;
        let gateway = &world.network.as_ref().unwrap().gateways[0];
        let gateway_rows = support::wait_for("the gateway's two receipts", DEADLINE, || async {
            let rows = gateway.store().receipts().await.unwrap();
            (rows.len() == 2).then_some(rows)
        })
        .await;
        (caller.unwrap(), gateway_rows)
    });
    let silent = |rows: &[interlink_node::store::ReceiptRow]| {
        let row = rows.iter().find(|r| r.amount_minor == 0).cloned();
        row.unwrap_or_else(|| panic!("no receipt at no charge in {rows:?}"))
    };
    let (at_caller, at_gateway) = (silent(&caller_rows), silent(&gateway_rows));
    assert_eq!(
        (at_caller.status.as_str(), at_gateway.status.as_str()),
        ("settled", "settled")
    );
    assert_eq!(at_caller.billed_seconds, 0);
    assert_eq!(at_caller.signed_bytes_hex, at_gateway.signed_bytes_hex);
    wait_no_calls(api);
    world.runtime.block_on(tone.close());
}

#[test]
fn wait_for_answer_returns_the_sdp_answer_and_calls_are_limited() {
    let world = World::start(
        vec![echo("Echo", 1, ringing(50, Answering::Answer))],
        |settings| settings.max_calls = 1,
    );
    let api = &world.api;
    let (first, sdp) = world.offer();
    let created = api.post(
        "/api/calls",
        &json!({"destination": BOB, "sdp_offer": sdp, "wait_for_answer": true,
                "gateway": world.gateway_peer(0), "failover": false}),
    );
    assert_eq!(created.status, 201, "{}", created.json());
    let created = created.json();
    assert_eq!(created["state"], "answered");
    assert!(created["sdp_answer"].as_str().unwrap().starts_with("v=0"));

    let (second, sdp) = world.offer();
    assert_error(
        &api.post("/api/calls", &json!({"destination": BOB, "sdp_offer": sdp})),
        503,
        "too_many_calls",
    );
    let id = created["call_id"].as_str().unwrap();
    assert_eq!(api.delete(&format!("/api/calls/{id}")).status, 202);
    wait_no_calls(api);
    world.runtime.block_on(async {
        first.close().await;
        second.close().await;
    });
}

#[test]
fn stopping_the_api_hangs_up_its_calls_on_every_leg() {
    let mut world = World::start(
        vec![echo("Echo", 1, ringing(50, Answering::Answer))],
        |_| {},
    );
    let api = world.api.clone();
    let (mut tone, sdp) = world.offer();
    let created = api
        .post(
            "/api/calls",
            &json!({"destination": BOB, "sdp_offer": sdp, "wait_for_answer": true}),
        )
        .json();
    let answer = created["sdp_answer"].as_str().unwrap().to_owned();
    world.runtime.block_on(async {
        tone.accept_answer(&answer).await.unwrap();
        tone.wait_first_packet(DEADLINE).await.unwrap();
    });
    let server = world.server.take().unwrap();
    let gateway_receipts = world.runtime.block_on(async {
        server.shutdown().await;
        // The gateway stores its receipt once the caller's countersignature is in.
        let gateway = &world.network.as_ref().unwrap().gateways[0];
        support::wait_for("the gateway's receipt", DEADLINE, || async {
            let receipts = gateway.store().receipts().await.unwrap();
            (!receipts.is_empty()).then_some(receipts)
        })
        .await
    });
    // A clean hang-up: the gateway settled the call.
    assert_eq!(gateway_receipts.len(), 1, "{gateway_receipts:?}");
    assert_eq!(gateway_receipts[0].status, "settled");
    let caller_receipts = world
        .runtime
        .block_on(world.caller.as_ref().unwrap().store().receipts())
        .unwrap();
    assert_eq!(caller_receipts.len(), 1);
    assert_eq!(caller_receipts[0].call_id, gateway_receipts[0].call_id);
    world.runtime.block_on(tone.close());
}

#[test]
fn a_node_whose_idle_connections_closed_still_finds_gateways() {
    let world = World::start_with(
        vec![echo("Echo", 1, ringing(50, Answering::Answer))],
        |_| {},
        |spec| spec.settings.idle_connection_timeout = Duration::from_millis(500),
    );
    let api = &world.api;
    wait_for_blocking("the connections to go idle", DEADLINE, || {
        api.get("/api/node").json()["connected_peers"] == 0
    });
    let listed = api.get("/api/gateways?destination=%2B447700900123");
    assert_eq!(listed.status, 200, "{}", listed.json());
    assert_eq!(listed.json()["gateways"][0]["name"], "Echo");
}
