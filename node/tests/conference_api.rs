//! Conference rooms joined through the node's HTTP API, over real sockets, with a real
//! WebRTC endpoint standing in for the browser: bad input, the limit on memberships, the
//! events of a membership, a room ended by its organiser, a page that goes away, and a
//! node that stops while in a room. In-process nodes on 127.0.0.1, each with its own
//! libp2p swarm; the stand-in's media goes to the bridge directly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use interlink_gateway_plugin::webrtc_leg::MediaSettings;
use interlink_node::api::ApiServer;
use interlink_node::conference::organiser::{self, OrganisedRoom, RoomRequest};
use interlink_node::conference::participant::{self, OfferedParticipant, ToneParticipant};
use interlink_node::identity;
use interlink_node::local_network::LocalNetwork;
use interlink_node::node::Node;
use interlink_protocol::ProviderId;
use interlink_protocol::SignedOffer;
use interlink_protocol::conference::RoomEvent;
use serde_json::{Value, json};
use support::conference::{api_settings, bridge_plan, find_bridge, network};
use support::http::Api;
use support::wait_for_blocking;
use tokio::runtime::Runtime;

const DEADLINE: Duration = Duration::from_secs(30);

struct World {
    runtime: Runtime,
    network: LocalNetwork,
    organiser: Node,
    bridge: SignedOffer,
    node: Node,
    server: Option<ApiServer>,
    api: Api,
    /// The API node as the bridge knows it.
    id: ProviderId,
}

impl World {
    fn start(max_memberships: usize, orphan_after: Option<Duration>) -> World {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let (network, organiser, bridge, node, server) = runtime.block_on(async {
            let network = network(vec![bridge_plan("Mixer", "eu-west")]).await;
            let organiser = network.caller().await.unwrap();
            let bridge = find_bridge(&organiser, "eu-west").await;
            let node = network.caller().await.unwrap();
            let settings = api_settings(&network, max_memberships, orphan_after);
            let server = ApiServer::start(settings, node.caller()).await.unwrap();
            (network, organiser, bridge, node, server)
        });
        let api = Api::new(&server.url());
        let id = identity::provider_id(&node.peer_id()).unwrap();
        World {
            runtime,
            network,
            organiser,
            bridge,
            node,
            server: Some(server),
            api,
            id,
        }
    }

    fn reserve(&self, size: u32) -> OrganisedRoom {
        self.runtime
            .block_on(organiser::reserve(
                &self.organiser.caller(),
                &self.bridge,
                RoomRequest {
                    max_participants: size,
                    lifetime: Duration::from_secs(600),
                },
            ))
            .unwrap()
    }

    fn next_event(&self, room: &mut OrganisedRoom) -> RoomEvent {
        self.runtime
            .block_on(async { tokio::time::timeout(DEADLINE, room.next_event()).await })
            .expect("a room event in time")
            .expect("the room's stream is open")
    }

    /// Joins `room` through the API as a browser would; returns the answer's JSON and the
    /// stand-in's media once connected to the bridge.
    fn join(&self, room: &OrganisedRoom) -> (Value, ToneParticipant) {
        let (offered, sdp) = self
            .runtime
            .block_on(OfferedParticipant::offer(&MediaSettings::loopback()))
            .unwrap();
        let response = self.api.post(
            "/api/conferences/join",
            &json!({"token": participant::token_text(room.token()), "sdp_offer": sdp}),
        );
        assert_eq!(response.status, 201, "{}", response.json());
        let joined = response.json();
        let media = self
            .runtime
            .block_on(offered.accept_answer(joined["sdp_answer"].as_str().unwrap(), None))
            .unwrap();
        (joined, media)
    }

    /// The membership `id` once it has ended.
    fn ended(&self, id: &str) -> Value {
        wait_for_blocking(&format!("membership {id} to end"), DEADLINE, || {
            let view = self
                .api
                .get(&format!("/api/conferences/memberships/{id}"))
                .json();
            if view["state"] == "ended" {
                Ok(view)
            } else {
                Err(view)
            }
        })
    }

    fn memberships(&self) -> Value {
        self.api.get("/api/conferences/memberships").json()["memberships"].clone()
    }

    fn stop(mut self) {
        let server = self.server.take();
        self.runtime.block_on(async {
            if let Some(server) = server {
                server.shutdown().await;
            }
            self.node.shutdown().await.unwrap();
            self.organiser.shutdown().await.unwrap();
            self.network.shutdown().await.unwrap();
        });
    }
}

fn error(response: &support::http::Response) -> (u16, String, String) {
    let json = response.json();
    (
        response.status,
        json["code"].as_str().unwrap_or_default().to_owned(),
        json["message"].as_str().unwrap_or_default().to_owned(),
    )
}

#[test]
fn bad_joins_are_clear_errors_and_memberships_are_bounded() {
    let world = World::start(1, None);
    let mut room = world.reserve(4);
    let token = participant::token_text(room.token());
    let sdp =
        "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 0\r\n";
    let post = |body: Value| world.api.post("/api/conferences/join", &body);

    let (status, code, message) = error(&post(json!({"token": "not a token", "sdp_offer": sdp})));
    assert_eq!((status, code.as_str()), (400, "invalid_token"));
    assert_eq!(
        message,
        "the join token is not hexadecimal text (as `interlink conference reserve` prints it)"
    );
    let (status, code, _) = error(&post(json!({"token": "", "sdp_offer": sdp})));
    assert_eq!((status, code.as_str()), (400, "invalid_token"));
    let (status, code, _) = error(&post(json!({"token": token, "sdp_offer": "hello"})));
    assert_eq!((status, code.as_str()), (400, "invalid_sdp"));
    let (status, code, _) = error(&post(json!({"token": token})));
    assert_eq!((status, code.as_str()), (422, "bad_request"));
    let (status, code, _) = error(&world.api.get("/api/conferences/memberships/nope"));
    assert_eq!((status, code.as_str()), (404, "unknown_membership"));
    let (status, code, _) = error(&world.api.delete("/api/conferences/memberships/nope"));
    assert_eq!((status, code.as_str()), (404, "unknown_membership"));
    assert_eq!(world.memberships(), json!([]));

    // In: the snapshot names the room and the bridge, and the organiser is told.
    let (joined, media) = world.join(&room);
    assert_eq!(joined["state"], "joined");
    assert_eq!(joined["bridge"]["name"], "Mixer");
    assert_eq!(joined["room_id"], room.room_id().to_string());
    assert_eq!(joined["max_participants"], 4);
    assert_eq!(
        joined["organiser"],
        world.organiser.peer_id().to_string().as_str()
    );
    assert!(matches!(
        world.next_event(&mut room),
        RoomEvent::Joined { participant, present: 1, .. } if participant == world.id
    ));
    let id = joined["membership_id"].as_str().unwrap().to_owned();
    assert_eq!(world.memberships()[0]["membership_id"], id.as_str());

    // The node is in as many rooms as it may be: the next join is refused before the
    // bridge is asked.
    let (status, code, message) = error(&post(json!({"token": token, "sdp_offer": sdp})));
    assert_eq!(
        (status, code.as_str()),
        (503, "too_many_memberships"),
        "{message}"
    );
    assert!(message.contains("api.max_memberships"), "{message}");

    // The events: joined, then on DELETE leaving and ended (left); the organiser is told.
    let mut events = world
        .api
        .events(&format!("/api/conferences/memberships/{id}/events"), None);
    let left = world
        .api
        .delete(&format!("/api/conferences/memberships/{id}"));
    assert_eq!(left.status, 202, "{}", left.json());
    let seen = events.until("ended", DEADLINE);
    let names: Vec<&str> = seen.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(names, ["joined", "leaving", "ended"]);
    assert_eq!(seen[2].data["outcome"], "left");
    assert!(
        events.next(DEADLINE).is_none(),
        "the stream ends after ended"
    );
    assert!(matches!(
        world.next_event(&mut room),
        RoomEvent::Left { participant, present: 0, .. } if participant == world.id
    ));
    assert_eq!(world.memberships(), json!([]));
    let after = world.api.get(&format!("/api/conferences/memberships/{id}"));
    assert_eq!(after.json()["state"], "ended");
    world.runtime.block_on(media.close());

    // A room the organiser ends: the membership's events say so.
    let (joined, media) = world.join(&room);
    world.next_event(&mut room);
    let id = joined["membership_id"].as_str().unwrap().to_owned();
    let mut events = world
        .api
        .events(&format!("/api/conferences/memberships/{id}/events"), None);
    world.runtime.block_on(room.end()).unwrap();
    let seen = events.until("ended", DEADLINE);
    assert_eq!(seen.last().unwrap().data["outcome"], "room_ended");
    assert_eq!(world.memberships(), json!([]));
    world.runtime.block_on(media.close());
    world.stop();
}

#[test]
fn a_room_is_left_when_its_page_goes_away_and_when_the_node_stops() {
    let world = World::start(2, Some(Duration::from_secs(1)));
    let mut room = world.reserve(4);

    // The page watches, then closes its event stream and does not come back.
    let (joined, media) = world.join(&room);
    world.next_event(&mut room);
    let id = joined["membership_id"].as_str().unwrap().to_owned();
    let events = world
        .api
        .events(&format!("/api/conferences/memberships/{id}/events"), None);
    drop(events);
    assert!(matches!(
        world.next_event(&mut room),
        RoomEvent::Left { participant, .. } if participant == world.id
    ));
    assert_eq!(world.ended(&id)["ended"]["outcome"], "abandoned");
    world.runtime.block_on(media.close());

    // In again; the node stops: it leaves the room first.
    let (_, media) = world.join(&room);
    world.next_event(&mut room);
    let mut world = world;
    let server = world.server.take().unwrap();
    world.runtime.block_on(server.shutdown());
    assert!(matches!(
        world.next_event(&mut room),
        RoomEvent::Left { participant, present: 0, .. } if participant == world.id
    ));
    world.runtime.block_on(media.close());
    world.stop();
}
