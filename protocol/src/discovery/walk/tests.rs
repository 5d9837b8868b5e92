//! The walk on a virtual network: peers with routing tables and indexes, messages that
//! take a round trip of virtual time, peers that never answer, holders that lie.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};

use super::*;
use crate::SecretKey;
use crate::destination::E164;
use crate::discovery::index::{Index, IndexConfig};
use crate::discovery::wire::{Found, WireAnswer};
use crate::offer::ServiceKind;
use crate::offer::tests::{route, sample_offer};
use crate::ranking::{Policy, PolicyKind};

const NOW_UNIX: UnixTime = UnixTime(2000);
const RTT: Duration = Duration::from_millis(100);

/// What a peer does with a `Find`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Behaviour {
    Honest,
    /// Never answers.
    Dead,
    /// Answers without the `n` cheapest offers it holds.
    Omits(usize),
    /// Answers with an offer whose signature does not verify.
    Forges,
    /// Answers honestly, this long after the request (a far or lossy link).
    Slow(Duration),
}

struct Peer {
    position: Position,
    /// The peers it knows, with their positions.
    table: Vec<(u32, Position)>,
    index: Index<u32>,
    behaviour: Behaviour,
}

struct Net {
    peers: Vec<Peer>,
    key_position: Position,
}

fn position(id: u64) -> Position {
    let mut state = id.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut bytes = [0u8; 32];
    for chunk in bytes.chunks_mut(8) {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        chunk.copy_from_slice(&state.to_le_bytes());
    }
    Position(bytes)
}

fn key_of(seed: u32) -> SecretKey {
    let mut bytes = [7u8; 32];
    bytes[..4].copy_from_slice(&seed.to_le_bytes());
    SecretKey::from_seed(&bytes)
}

fn uk_offer(seed: u32, seq: u64, per_minute: u64) -> SignedOffer {
    let key = key_of(seed);
    let mut offer = sample_offer(&key, vec![route("+44", per_minute)]);
    offer.seq = seq;
    SignedOffer::sign(offer, &key).unwrap()
}

fn withdrawal(seed: u32, seq: u64) -> SignedOffer {
    let key = key_of(seed);
    let mut offer = sample_offer(&key, vec![route("+44", 1)]).withdrawal(UnixTime(1500));
    offer.seq = seq;
    SignedOffer::sign(offer, &key).unwrap()
}

fn query(limit: u16) -> OfferQuery {
    OfferQuery::number(
        E164::parse("+447700900123").unwrap(),
        vec![ServiceKind::WEBRTC_TO_PSTN],
        Policy {
            kind: PolicyKind::Cheapest,
            ..Policy::default()
        },
        limit,
    )
}

impl Net {
    /// `size` peers, each knowing its 20 nearest and 30 others; the `holders` closest to
    /// the key hold `offers`.
    fn new(size: u32, holders: usize, offers: &[SignedOffer]) -> Net {
        let key_position = position(u64::MAX);
        let positions: Vec<Position> = (0..size).map(|id| position(u64::from(id))).collect();
        let mut peers: Vec<Peer> = positions
            .iter()
            .enumerate()
            .map(|(me, here)| {
                let mut by_distance: Vec<(u32, Position)> = (0..size)
                    .zip(positions.iter().copied())
                    .filter(|(id, _)| *id as usize != me)
                    .collect();
                by_distance.sort_by_key(|(_, p)| here.distance(p));
                let mut table: Vec<(u32, Position)> =
                    by_distance.iter().take(20).copied().collect();
                let step = (by_distance.len() / 30).max(1);
                table.extend(by_distance.iter().skip(20).step_by(step).take(30).copied());
                Peer {
                    position: *here,
                    table,
                    index: Index::new(IndexConfig::default()),
                    behaviour: Behaviour::Honest,
                }
            })
            .collect();
        let mut closest: Vec<usize> = (0..peers.len()).collect();
        closest.sort_by_key(|&i| key_position.distance(&peers[i].position));
        let now = Instant::now();
        for &holder in closest.iter().take(holders) {
            for offer in offers {
                let provider_seed = 0;
                let _ = peers[holder].index.admit(
                    query(1).key(),
                    offer.clone(),
                    &provider_seed,
                    true,
                    now,
                );
            }
        }
        Net {
            peers,
            key_position,
        }
    }

    /// Peer ids by distance to the key, closest first.
    fn closest_to_key(&self) -> Vec<u32> {
        let mut ids: Vec<u32> = (0..).take(self.peers.len()).collect();
        ids.sort_by_key(|&id| {
            self.key_position
                .distance(&self.peers[id as usize].position)
        });
        ids
    }

    /// What `peer` answers to `request` from `from`, or `None` if it never answers.
    fn respond(&self, peer: u32, from: u32, request: &Request) -> Option<Found> {
        let node = &self.peers[peer as usize];
        if node.behaviour == Behaviour::Dead {
            return None;
        }
        let Request::Find(query) = request else {
            return None;
        };
        let mut table: Vec<(u32, Position)> = node
            .table
            .iter()
            .filter(|(id, _)| *id != from)
            .copied()
            .collect();
        table.sort_by_key(|(_, p)| self.key_position.distance(p));
        let closer = table
            .into_iter()
            .take(20)
            .map(|(id, _)| PeerRecord {
                peer: id.to_le_bytes().to_vec(),
                addresses: Vec::new(),
            })
            .collect();
        let answer = node
            .index
            .answer(query, NOW_UNIX, Instant::now())
            .map(|answer| {
                let mut wire = WireAnswer::from_selection(&answer.selection, answer.held);
                match node.behaviour {
                    Behaviour::Omits(n) if query.providers.is_empty() => {
                        let mut held: Vec<&SignedOffer> = node.index.offers(&query.key()).collect();
                        held.sort_by_key(|o| o.offer().routes[0].tariff.per_minute);
                        let hidden: Vec<Vec<u8>> =
                            held.iter().take(n).map(|o| o.as_bytes().to_vec()).collect();
                        wire.offers.retain(|o| !hidden.contains(&o.offer));
                    }
                    Behaviour::Omits(_) => wire.offers.clear(),
                    Behaviour::Forges => {
                        if let Some(first) = wire.offers.first_mut() {
                            let last = first.offer.len() - 1;
                            first.offer[last] ^= 1;
                        }
                    }
                    _ => {}
                }
                wire
            });
        Some(Found { closer, answer })
    }
}

use crate::discovery::wire::PeerRecord;

/// Runs a walk from `start` over `net` in virtual time; every message takes `RTT`.
/// Returns the result, the virtual time it took, the holders it asked and its repairs.
fn run(net: &Net, start: u32, query: OfferQuery, config: WalkConfig, seed: u64) -> Outcome {
    let t0 = Instant::now();
    let me = &net.peers[start as usize];
    let seeds = me.table.clone();
    let mut walk = Walk::new(net.key_position, query, config, seeds, seed, t0);
    let mut now = t0;
    let mut events: BinaryHeap<Reverse<(Instant, u64, u32)>> = BinaryHeap::new();
    let mut responses: HashMap<u64, Found> = HashMap::new();
    let mut sequence = 0u64;
    let mut asked = Vec::new();
    let mut repairs = Vec::new();
    loop {
        while let Some(output) = walk.poll_output(now) {
            match output {
                Output::Request { peer, request, .. } => {
                    asked.push(peer);
                    let response = net.respond(peer, start, &request);
                    if let Some(response) = response {
                        sequence += 1;
                        responses.insert(sequence, response);
                        let delay = match net.peers[peer as usize].behaviour {
                            Behaviour::Slow(delay) => delay,
                            _ => RTT,
                        };
                        events.push(Reverse((now + delay, sequence, peer)));
                    }
                }
                Output::Repair { peer, offers, .. } => repairs.push((peer, offers)),
            }
        }
        if walk.is_done() {
            break;
        }
        let timeout = walk.poll_timeout();
        let next_event = events.peek().map(|Reverse((at, ..))| *at);
        match (next_event, timeout) {
            (Some(at), Some(t)) if at <= t => {
                let Some(Reverse((at, sequence, peer))) = events.pop() else {
                    break;
                };
                now = at;
                let found = responses.remove(&sequence).unwrap_or_default();
                let closer = found
                    .closer
                    .into_iter()
                    .filter_map(|record| {
                        let id = u32::from_le_bytes(record.peer.try_into().ok()?);
                        Some((id, net.peers.get(id as usize)?.position, record.addresses))
                    })
                    .collect();
                walk.on_response(&peer, closer, found.answer, NOW_UNIX, now);
            }
            (_, Some(t)) => {
                now = t;
                walk.handle_timeout(now);
            }
            (Some(_), None) | (None, None) => break,
        }
    }
    Outcome {
        result: walk.result(NOW_UNIX),
        took: now - t0,
        asked,
        repairs,
    }
}

struct Outcome {
    result: WalkResult,
    took: Duration,
    asked: Vec<u32>,
    repairs: Vec<(u32, Vec<SignedOffer>)>,
}

fn market(count: u32) -> Vec<SignedOffer> {
    (0..count)
        .map(|seed| uk_offer(seed, 1, 10 + u64::from(seed % 97)))
        .collect()
}

fn cheapest(offers: &[SignedOffer], n: usize) -> Vec<ProviderId> {
    let mut sorted: Vec<&SignedOffer> = offers.iter().collect();
    sorted.sort_by_key(|o| (o.offer().routes[0].tariff.per_minute, o.provider()));
    sorted.iter().take(n).map(|o| o.provider()).collect()
}

fn top(result: &WalkResult, n: usize) -> Vec<ProviderId> {
    result
        .offers
        .iter()
        .take(n)
        .map(SignedOffer::provider)
        .collect()
}

#[test]
fn one_walk_finds_the_best_of_a_large_market_in_a_few_round_trips() {
    let offers = market(300);
    let net = Net::new(400, 20, &offers);
    for start in [3, 77, 200, 399] {
        let outcome = run(
            &net,
            start,
            query(10),
            WalkConfig::default(),
            u64::from(start),
        );
        let result = &outcome.result;
        assert_eq!(top(result, 10), cheapest(&offers, 10), "from {start}");
        assert_eq!(result.ending, Ending::Enough);
        assert_eq!(result.matching, 300);
        assert!(result.stats.requests <= 40, "{:?}", result.stats);
        assert_eq!(
            result.stats.confirmations, 0,
            "consistent holders: nothing to confirm"
        );
        assert!(result.stats.rounds <= 4, "{:?}", result.stats);
        assert!(outcome.took <= RTT * 4, "{:?}", outcome.took);
        assert!(outcome.repairs.is_empty());
    }
}

#[test]
fn a_holder_that_omits_the_cheapest_does_not_hide_them() {
    let offers = market(60);
    let mut net = Net::new(100, 20, &offers);
    // Every holder the walk may meet first lies, but one.
    let closest = net.closest_to_key();
    for &id in closest.iter().take(19) {
        net.peers[id as usize].behaviour = Behaviour::Omits(5);
    }
    let config = WalkConfig {
        holders: 20,
        ..WalkConfig::default()
    };
    let outcome = run(&net, 50, query(10), config, 9);
    assert_eq!(top(&outcome.result, 10), cheapest(&offers, 10));
    // The liars were asked about the offers they left out and are sent them.
    assert!(outcome.result.stats.confirmations > 0);
    assert!(
        outcome
            .repairs
            .iter()
            .any(|(peer, _)| closest[..19].contains(peer))
    );
}

#[test]
fn a_newer_price_known_to_one_holder_supersedes_the_old_copy_of_another() {
    let mut offers = market(40);
    let net_offers = offers.clone();
    let mut net = Net::new(100, 20, &net_offers);
    // Provider 5 raised its price: every holder but the closest has the new offer, which
    // is no longer among the ten cheapest; the closest holds the old, cheap copy.
    let repriced = uk_offer(5, 2, 500);
    let closest = net.closest_to_key();
    for &id in closest.iter().skip(1).take(19) {
        let index = &mut net.peers[id as usize].index;
        index
            .admit(query(1).key(), repriced.clone(), &5, true, Instant::now())
            .unwrap();
    }
    offers[5] = repriced.clone();
    let outcome = run(&net, 60, query(10), WalkConfig::default(), 4);
    let result = &outcome.result;
    assert_eq!(top(result, 10), cheapest(&offers, 10));
    // Its new price is out of the ten cheapest; if it is shown at all (among the offers
    // held longest), it is at its new price, never the old one.
    let shown = result
        .offers
        .iter()
        .find(|o| o.provider() == repriced.provider());
    assert_ne!(
        shown.map(SignedOffer::seq),
        Some(1),
        "never the superseded copy"
    );
    assert!(result.offers.len() <= 20);
    if outcome.asked.contains(&closest[0]) {
        assert!(
            outcome
                .repairs
                .iter()
                .any(|(peer, sent)| *peer == closest[0] && sent.contains(&repriced)),
            "the stale holder gets the new offer"
        );
    }
}

#[test]
fn a_withdrawal_known_to_one_holder_hides_the_offer_another_returns() {
    let offers = market(40);
    let mut net = Net::new(100, 20, &offers);
    let gone = withdrawal(0, 2);
    let closest = net.closest_to_key();
    for &id in closest.iter().skip(1).take(19) {
        net.peers[id as usize]
            .index
            .admit(query(1).key(), gone.clone(), &0, true, Instant::now())
            .unwrap();
    }
    // Ask the stale holder first, and two others.
    let config = WalkConfig {
        holders: 3,
        ..WalkConfig::default()
    };
    for seed in 0..8 {
        let outcome = run(&net, closest[0], query(10), config, seed);
        let shown = top(&outcome.result, 10);
        assert!(!shown.contains(&gone.provider()), "seed {seed}");
        assert_eq!(shown, cheapest(&offers[1..], 10));
    }
}

#[test]
fn forged_offers_are_dropped_and_counted() {
    let offers = market(30);
    let mut net = Net::new(80, 20, &offers);
    let closest = net.closest_to_key();
    for &id in closest.iter().take(10) {
        net.peers[id as usize].behaviour = Behaviour::Forges;
    }
    let outcome = run(&net, 40, query(10), WalkConfig::default(), 1);
    assert!(outcome.result.stats.invalid_offers > 0);
    assert_eq!(top(&outcome.result, 10), cheapest(&offers, 10));
}

#[test]
fn dead_peers_cost_a_timeout_each_not_the_walk() {
    let offers = market(50);
    let mut net = Net::new(300, 20, &offers);
    for id in (0..300).step_by(3) {
        net.peers[id as usize].behaviour = Behaviour::Dead;
    }
    let outcome = run(&net, 1, query(10), WalkConfig::default(), 2);
    let result = &outcome.result;
    assert_eq!(top(result, 10), cheapest(&offers, 10));
    assert_eq!(result.ending, Ending::Enough);
    // Each dead peer on the way costs at most one request timeout.
    assert!(outcome.took < Duration::from_secs(4), "{:?}", outcome.took);
}

#[test]
fn answers_that_all_come_late_are_still_waited_for() {
    // A small network on a lossy link: every answer takes longer than the request timeout.
    let offers = market(5);
    let mut net = Net::new(4, 4, &offers);
    for peer in &mut net.peers {
        peer.behaviour = Behaviour::Slow(Duration::from_millis(1_500));
    }
    let config = WalkConfig::default();
    assert!(config.request_timeout < Duration::from_millis(1_500));
    let outcome = run(&net, 0, query(10), config, 4);
    assert_eq!(top(&outcome.result, 5), cheapest(&offers, 5));
    assert!(outcome.took < config.deadline, "{:?}", outcome.took);
}

#[test]
fn callers_spread_their_questions_over_the_holders() {
    let offers = market(20);
    let net = Net::new(300, 20, &offers);
    let holders: Vec<u32> = net.closest_to_key().into_iter().take(20).collect();
    let mut asked: HashMap<u32, usize> = HashMap::new();
    let mut answered = 0;
    for start in 0..200u32 {
        let outcome = run(
            &net,
            start,
            query(5),
            WalkConfig::default(),
            u64::from(start),
        );
        for peer in outcome.asked.iter().filter(|p| holders.contains(p)) {
            *asked.entry(*peer).or_default() += 1;
            answered += 1;
        }
    }
    let busiest = asked.values().copied().max().unwrap_or(0);
    // 200 walks of three holders each: no holder takes a third of the questions.
    assert!(
        busiest * 3 < answered,
        "busiest {busiest} of {answered}: {asked:?}"
    );
    assert!(asked.len() >= 10, "{} holders asked", asked.len());
}

#[test]
fn a_key_nobody_holds_ends_converged_and_empty() {
    let net = Net::new(200, 0, &[]);
    let outcome = run(&net, 5, query(10), WalkConfig::default(), 3);
    assert_eq!(outcome.result.ending, Ending::Converged);
    assert!(outcome.result.offers.is_empty());
    assert!(outcome.result.stats.requests <= WalkConfig::default().max_requests);
}

#[test]
fn naming_a_provider_returns_its_newest_offer() {
    let offers = market(30);
    let net = Net::new(100, 20, &offers);
    let wanted = offers[17].provider();
    let outcome = run(
        &net,
        8,
        query(10).about(vec![wanted]),
        WalkConfig::default(),
        5,
    );
    assert_eq!(top(&outcome.result, 10), [wanted]);
}
