//! Conferences on 127.0.0.1 between in-process nodes, each with its own libp2p swarm and
//! real WebRTC media: a bridge discovered by region, a room reserved by an organiser,
//! participants that send tones and hear each other through the mix, refusals, a leave,
//! and the room receipt.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

mod support;

use std::time::{Duration, Instant};

use interlink_gateway_plugin::webrtc_leg::MediaSettings;
use interlink_node::clock;
use interlink_node::conference::discovery::discover_bridges;
use interlink_node::conference::organiser::{self, RoomRequest};
use interlink_node::conference::participant::{
    self, JoinError, Membership, OfferedParticipant, ToneParticipant,
};
use interlink_node::local_network::LocalNetwork;
use interlink_node::node::Node;
use interlink_protocol::conference::{
    JoinToken, RefusalReason, Region, RoomEvent, SignedJoinToken,
};
use interlink_protocol::ranking::{Policy, PolicyKind};
use interlink_protocol::{ProviderId, SignedOffer, Timestamp};
use libp2p::PeerId;
use support::conference::{bridge_plan, find_bridge, hears, network, power, tariff};
use support::wait_for;

const DEADLINE: Duration = Duration::from_secs(30);
/// Each participant's tone.
const TONES: [f64; 4] = [400.0, 700.0, 1100.0, 1700.0];
/// The most a tone may take from one participant's mouth to another's ear through the
/// bridge on loopback: 20 ms packets, the 60 ms jitter buffer, the 20 ms mix tick.
const MOUTH_TO_EAR_BOUND: Duration = Duration::from_millis(400);

/// A participant in the room: its node, its stream to the bridge and its media.
struct Member {
    id: ProviderId,
    node: Node,
    membership: Membership,
    media: ToneParticipant,
    joined_at: Timestamp,
}

async fn try_join(
    node: &Node,
    bridge: &SignedOffer,
    token: &[u8],
) -> Result<(Membership, ToneParticipant), JoinError> {
    let (offered, sdp) = OfferedParticipant::offer(&MediaSettings::loopback())
        .await
        .unwrap();
    let peer: PeerId = interlink_node::identity::peer_id(&bridge.provider()).unwrap();
    match participant::join(
        node.client(),
        peer,
        bridge.offer().addresses.clone(),
        token,
        sdp,
    )
    .await
    {
        Ok((answer, membership)) => {
            let media = offered.accept_answer(&answer, None).await.unwrap();
            Ok((membership, media))
        }
        Err(e) => {
            offered.close().await;
            Err(e)
        }
    }
}

async fn join(network: &LocalNetwork, bridge: &SignedOffer, token: &[u8]) -> Member {
    let node = network.caller().await.unwrap();
    let (membership, media) = try_join(&node, bridge, token).await.expect("joined");
    let joined_at = clock::now();
    let id = interlink_node::identity::provider_id(&node.peer_id()).unwrap();
    Member {
        id,
        node,
        membership,
        media,
        joined_at,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_participants_hear_each_other_but_not_themselves_and_the_receipt_follows() {
    let network = network(vec![bridge_plan("Bridge", "eu-west")]).await;
    let organiser_node = network.caller().await.unwrap();
    let bridge = find_bridge(&organiser_node, "eu-west").await;
    let mut room = organiser::reserve(
        &organiser_node.caller(),
        &bridge,
        RoomRequest {
            max_participants: 4,
            lifetime: Duration::from_secs(600),
        },
    )
    .await
    .unwrap();
    let token = room.token().as_bytes().to_vec();

    let mut members = Vec::new();
    for _ in 0..4 {
        members.push(join(&network, &bridge, &token).await);
    }
    for _ in 0..4 {
        let event = tokio::time::timeout(DEADLINE, room.next_event())
            .await
            .unwrap();
        assert!(matches!(event, Some(RoomEvent::Joined { .. })), "{event:?}");
    }

    // A fifth is refused: the room was reserved for four.
    let fifth = network.caller().await.unwrap();
    assert!(matches!(
        try_join(&fifth, &bridge, &token).await.err(),
        Some(JoinError::Refused(RefusalReason::RoomFull { max: 4 }))
    ));
    // A token the participant made itself, or a tampered one, is refused.
    let forger =
        interlink_node::identity::secret_key(&libp2p::identity::Keypair::generate_ed25519())
            .unwrap();
    let forged = SignedJoinToken::sign(
        JoinToken {
            bridge: forger.provider_id(),
            ..room.token().token().clone()
        },
        &forger,
    )
    .unwrap();
    assert!(matches!(
        try_join(&fifth, &bridge, forged.as_bytes()).await.err(),
        Some(JoinError::Refused(RefusalReason::InvalidToken))
    ));
    let mut tampered = token.clone();
    let last = tampered.len() - 1;
    tampered[last] ^= 1;
    assert!(matches!(
        try_join(&fifth, &bridge, &tampered).await.err(),
        Some(JoinError::Refused(RefusalReason::InvalidToken))
    ));

    // Everyone's media flows (silence so far); then each starts its own tone at once.
    wait_for("mixed audio at every participant", DEADLINE, || async {
        members
            .iter()
            .all(|m| m.media.packets().0 >= 10)
            .then_some(())
    })
    .await;
    let started = Instant::now();
    for (member, &tone) in members.iter().zip(&TONES) {
        member.media.set_tone(Some(tone));
    }
    // Mouth to ear: the first frame in which each hears the three others.
    let mut delays = Vec::new();
    for (i, member) in members.iter().enumerate() {
        let others: Vec<f64> = TONES.iter().copied().filter(|&f| f != TONES[i]).collect();
        let heard_at = wait_for("each participant to hear the others", DEADLINE, || async {
            member
                .media
                .frames_since(started)
                .into_iter()
                .find(|(_, frame)| others.iter().all(|&f| power(frame, f) > 1.0e6))
                .map(|(at, _)| at)
        })
        .await;
        delays.push(heard_at.duration_since(started));
    }
    println!("tone onset to first mixed frame heard, per participant: {delays:?}");
    assert!(
        delays.iter().all(|d| *d < MOUTH_TO_EAR_BOUND),
        "mouth to ear {delays:?} over {MOUTH_TO_EAR_BOUND:?}"
    );
    // In steady state each hears the three others and not itself.
    for (i, member) in members.iter().enumerate() {
        let own = [TONES[i]];
        let others: Vec<f64> = TONES.iter().copied().filter(|&f| f != TONES[i]).collect();
        wait_for("a steady mix-minus", DEADLINE, || async {
            let since = Instant::now() - Duration::from_millis(400);
            let samples = member.media.heard_since(since);
            (samples.len() >= 2400 && hears(&samples, &others, &own)).then_some(())
        })
        .await;
    }

    // The fourth leaves: the others stop hearing its tone, and the organiser is told.
    let leaver = members.pop().unwrap();
    let leaver_id = leaver.id;
    let left_at = clock::now();
    leaver.membership.leave().await;
    leaver.media.close().await;
    let event = tokio::time::timeout(DEADLINE, room.next_event())
        .await
        .unwrap();
    assert!(
        matches!(event, Some(RoomEvent::Left { participant, present: 3, .. }) if participant == leaver_id),
        "{event:?}"
    );
    let gone = Instant::now();
    for (i, member) in members.iter().enumerate() {
        let others: Vec<f64> = TONES[..3]
            .iter()
            .copied()
            .filter(|&f| f != TONES[i])
            .collect();
        wait_for("the leaver's tone to fall silent", DEADLINE, || async {
            let window = Instant::now() - Duration::from_millis(400);
            let samples = member.media.heard_since(window.max(gone));
            (samples.len() >= 2400 && hears(&samples, &others, &[TONES[i], TONES[3]])).then_some(())
        })
        .await;
    }

    // End the room: the receipt's stays, billed seconds and amount follow from the joins,
    // the leave, the end and the accepted price, and both sides hold it settled.
    let ended_at = clock::now();
    let settled = room.end().await.unwrap();
    let receipt = settled.receipt();
    assert_eq!(receipt.tariff, tariff());
    assert_eq!(receipt.attendances.len(), 4);
    let mut expected_seconds = 0;
    for attendance in &receipt.attendances {
        let (joined, left) = if attendance.participant == leaver_id {
            (leaver.joined_at, left_at)
        } else {
            let member = members
                .iter()
                .find(|m| m.id == attendance.participant)
                .expect("a stay of a participant");
            (member.joined_at, ended_at)
        };
        let seen = left.since(joined).as_secs_f64();
        let billed = attendance.duration().as_secs_f64();
        assert!(
            (seen - billed).abs() < 1.0,
            "billed {billed:.3} s for a stay the test saw as {seen:.3} s"
        );
        assert_eq!(
            attendance.billed_seconds,
            tariff().billed_seconds(attendance.duration())
        );
        expected_seconds += attendance.billed_seconds;
    }
    assert_eq!(receipt.participant_seconds, expected_seconds);
    assert_eq!(receipt.amount, tariff().charge(expected_seconds));
    assert_eq!(
        receipt.amount.minor_units,
        50 + (12 * expected_seconds).div_ceil(60)
    );
    let bridge_node = &network.gateways[0];
    let stored = wait_for("the bridge's settled receipt", DEADLINE, || async {
        bridge_node
            .store()
            .room_receipts()
            .await
            .ok()?
            .into_iter()
            .find(|r| r.status == "settled")
    })
    .await;
    assert_eq!(stored.signed_bytes, settled.as_bytes());
    assert_eq!(stored.amount_minor, receipt.amount.minor_units);
    let ours = organiser_node.store().room_receipts().await.unwrap();
    assert_eq!(ours.len(), 1);
    assert_eq!(ours[0].signed_bytes, settled.as_bytes());

    // The remaining participants are told the room has closed.
    for mut member in members {
        tokio::time::timeout(DEADLINE, member.membership.closed())
            .await
            .unwrap();
        member.media.close().await;
        member.node.shutdown().await.unwrap();
    }
    network.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bridges_are_found_by_region_and_a_stale_price_is_refused() {
    let network = network(vec![
        bridge_plan("West", "eu-west"),
        bridge_plan("East", "us-east"),
    ])
    .await;
    let organiser_node = network.caller().await.unwrap();
    let west = find_bridge(&organiser_node, "eu-west").await;
    assert_eq!(west.offer().display_name, "West");
    let (nowhere, _) = discover_bridges(
        organiser_node.client(),
        Region::new("ap-south").unwrap(),
        false,
    )
    .await
    .unwrap();
    assert!(nowhere.is_empty());
    let offers = vec![west.clone(), find_bridge(&organiser_node, "us-east").await];
    let ranking = interlink_protocol::conference::ranking::rank_conferences(
        &offers,
        4,
        &Default::default(),
        &Default::default(),
        &Policy {
            kind: PolicyKind::Cheapest,
            ..Policy::default()
        },
    );
    assert_eq!(ranking.candidates.len(), 2);

    // A reservation of more participants than a room takes is refused with the limit.
    let refused = organiser::reserve(
        &organiser_node.caller(),
        &west,
        RoomRequest {
            max_participants: 9,
            lifetime: Duration::from_secs(60),
        },
    )
    .await;
    assert!(matches!(
        refused,
        Err(organiser::OrganiserError::Refused(
            RefusalReason::TooLarge { max: 8 }
        ))
    ));
    network.shutdown().await.unwrap();
}
