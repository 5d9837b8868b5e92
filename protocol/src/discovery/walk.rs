//! The caller's walk: one Kademlia walk toward a key that collects the holders' answers on
//! the way, then a constant number of requests to settle what they disagree on.
//!
//! A sans-IO state machine, driven like `quinn-proto`: the driver seeds it with the
//! peers of its routing table, sends what [`Walk::poll_output`] returns, feeds back
//! responses, failures and `now`, and wakes it at [`Walk::poll_timeout`].
//!
//! 1. **Search.** `parallelism` `Find` requests are in flight at a time, each to the
//!    closest peer not yet asked among the `closest` known; every response brings closer
//!    peers and, from a node that holds the key, its answer (the best `limit` offers for
//!    the query, and the best established ones). Once one holder has answered, the next
//!    peers are drawn at random among the closest known, so that callers spread their
//!    questions over the key's holders instead of all asking the nearest one. A peer that
//!    does not answer within `request_timeout` no longer holds a place; its answer is
//!    still taken if it comes. The search ends when `holders` holders have answered,
//!    when no closer peer is left to ask (having looked twice as wide once, for a key
//!    whose holders are no longer its very closest nodes), at `max_requests`, or at
//!    `deadline`.
//! 2. **Confirm.** The answers are merged: every offer is verified (a holder can omit,
//!    never forge), and each provider keeps its highest `seq`. The caller selects from
//!    the merge as a holder would; each holder that did not return one of the selected
//!    offers is asked about exactly those providers. So a holder that omits the cheapest
//!    offers does not hide them, and one that knows a newer offer (a new price, a
//!    withdrawal) that fell out of its best `limit` still supersedes the old copy another
//!    holder returned. Offers that enter the selection when others are superseded are
//!    confirmed in a second round; the walk returns the selection, every offer of it
//!    confirmed by every holder that answered.
//! 3. **Repair.** Holders that returned an older copy, or lacked a selected offer, are
//!    sent the newest one: read repair, as Kademlia does for records.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::hash::Hash;
use std::time::{Duration, Instant};

use multiaddr::Multiaddr;

use super::key::IndexKey;
use super::query::{MAX_PROVIDERS, OfferQuery, ranked, select};
use super::wire::{MAX_STORE_OFFERS, Request, WireAnswer};
use crate::identity::ProviderId;
use crate::signed::SignedOffer;
use crate::time::UnixTime;

/// A point of the Kademlia keyspace: the SHA-256 of a key or of a peer id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Position(pub [u8; 32]);

/// The XOR distance between two positions, ordered as a 256-bit number.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Distance([u8; 32]);

impl Position {
    /// The distance to `other`.
    pub fn distance(&self, other: &Position) -> Distance {
        let mut xor = [0u8; 32];
        for (byte, (a, b)) in xor.iter_mut().zip(self.0.iter().zip(other.0.iter())) {
            *byte = a ^ b;
        }
        Distance(xor)
    }
}

/// How a walk goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WalkConfig {
    /// Requests in flight at once (Kademlia's α).
    pub parallelism: usize,
    /// Holders whose answers the search collects before it stops.
    pub holders: usize,
    /// How many of the closest known peers the search asks among (Kademlia's k).
    pub closest: usize,
    /// After this, a peer that has not answered no longer holds a place in flight.
    pub request_timeout: Duration,
    /// The most requests of the search.
    pub max_requests: usize,
    /// The whole walk's deadline.
    pub deadline: Duration,
}

impl Default for WalkConfig {
    fn default() -> Self {
        WalkConfig {
            parallelism: 3,
            holders: 3,
            closest: 20,
            request_timeout: Duration::from_secs(1),
            max_requests: 48,
            deadline: Duration::from_secs(10),
        }
    }
}

/// What the driver must send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output<P> {
    /// Send `request` to `peer`, dialling `addresses` if it is not connected.
    Request {
        peer: P,
        addresses: Vec<Multiaddr>,
        request: Request,
    },
    /// Send `peer` these offers to hold under `key` (no answer is awaited).
    Repair {
        peer: P,
        key: IndexKey,
        offers: Vec<SignedOffer>,
    },
}

/// Why the walk ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ending {
    /// Enough holders answered.
    Enough,
    /// No peer closer to the key was left to ask.
    Converged,
    /// The walk sent its most requests.
    RequestLimit,
    /// The deadline passed.
    Deadline,
}

/// Counts of one walk.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WalkStats {
    /// Requests sent, confirmations included.
    pub requests: usize,
    /// Responses received.
    pub responses: usize,
    /// Requests that failed (dial, stream, decoding) or were refused.
    pub failures: usize,
    /// Requests still unanswered after the request timeout.
    pub slow: usize,
    /// Holders that answered (not counting those that sent a forged offer).
    pub holders: usize,
    /// Requests of the confirmation.
    pub confirmations: usize,
    /// Repairs sent.
    pub repairs: usize,
    /// The longest chain of requests, each to a peer the previous answer named: the
    /// walk's round trips, confirmation included.
    pub rounds: u32,
    /// Offers in answers that passed verification.
    pub verified_offers: usize,
    /// Offers that failed verification (forged, tampered, expired).
    pub invalid_offers: usize,
    /// Valid offers that did not concern the query.
    pub irrelevant_offers: usize,
}

/// What a walk found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WalkResult {
    /// The newest verified offer of every provider that matches the query, best first
    /// by the query's policy.
    pub offers: Vec<SignedOffer>,
    /// The most offers any holder said matched the query.
    pub matching: usize,
    /// The most providers any holder said it holds under the key, matching or not.
    pub held: usize,
    /// A holder left offers out of its answer to stay within the size limit.
    pub truncated: bool,
    pub ending: Ending,
    pub stats: WalkStats,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ask {
    Fresh,
    Waiting { since: Instant, slow: bool },
    Answered,
    Failed,
}

#[derive(Debug)]
struct Candidate<P> {
    peer: P,
    addresses: Vec<Multiaddr>,
    ask: Ask,
    /// Requests in the chain that led to this peer, this one's included.
    round: u32,
}

#[derive(Debug)]
struct Holder<P> {
    peer: P,
    /// The `seq` of each provider it returned.
    returned: HashMap<ProviderId, u64>,
    /// Providers it was asked about in a confirmation.
    asked: HashSet<ProviderId>,
    local: bool,
}

/// Rounds of confirmation at most: a second one covers offers that entered the selection
/// when the first superseded others.
const CONFIRMATION_ROUNDS: u32 = 2;

#[derive(Debug)]
struct Merged {
    offer: SignedOffer,
    /// The best place any holder gave it among the offers it has held longest.
    seniority: Option<u16>,
}

#[derive(Debug, PartialEq, Eq)]
enum Phase {
    Searching,
    Confirming,
    Done(Ending),
}

/// A walk toward `query`'s key. `P` names peers.
#[derive(Debug)]
pub struct Walk<P> {
    target: Position,
    query: OfferQuery,
    config: WalkConfig,
    started: Instant,
    candidates: BTreeMap<Distance, Candidate<P>>,
    distances: HashMap<P, Distance>,
    holders: Vec<Holder<P>>,
    merged: HashMap<ProviderId, Merged>,
    matching: usize,
    held: usize,
    truncated: bool,
    window: usize,
    phase: Phase,
    ending: Ending,
    /// Confirmations awaited, by peer, with when they were sent.
    confirming: HashMap<P, Instant>,
    /// Rounds of confirmation sent.
    confirmation_rounds: u32,
    outbox: VecDeque<Output<P>>,
    stats: WalkStats,
    rng: u64,
    /// The wall-clock time of the latest answer, for selecting from the merge.
    now_unix: UnixTime,
}

impl<P: Clone + Eq + Hash> Walk<P> {
    /// A walk for `query` toward `target` (the position of its key), starting from
    /// `seeds` (peers of the routing table, with their positions), at `now`; `seed`
    /// drives the random choices.
    pub fn new(
        target: Position,
        query: OfferQuery,
        config: WalkConfig,
        seeds: impl IntoIterator<Item = (P, Position)>,
        seed: u64,
        now: Instant,
    ) -> Walk<P> {
        let mut walk = Walk {
            target,
            query,
            config,
            started: now,
            candidates: BTreeMap::new(),
            distances: HashMap::new(),
            holders: Vec::new(),
            merged: HashMap::new(),
            matching: 0,
            held: 0,
            truncated: false,
            window: config.closest.max(1),
            phase: Phase::Searching,
            ending: Ending::Converged,
            confirming: HashMap::new(),
            confirmation_rounds: 0,
            outbox: VecDeque::new(),
            stats: WalkStats::default(),
            rng: seed | 1,
            now_unix: UnixTime(0),
        };
        for (peer, position) in seeds {
            walk.learn(peer, position, Vec::new(), 1);
        }
        walk
    }

    /// The query the walk answers.
    pub fn query(&self) -> &OfferQuery {
        &self.query
    }

    /// Takes the answer of the node running the walk, if it holds the key itself; `me`
    /// is never asked to confirm or repair.
    pub fn local_answer(&mut self, me: P, answer: WireAnswer, now_unix: UnixTime) {
        self.take_answer(me, answer, now_unix, true);
    }

    /// The next message to send, if any.
    pub fn poll_output(&mut self, now: Instant) -> Option<Output<P>> {
        if self.outbox.is_empty() {
            self.advance(now);
        }
        self.outbox.pop_front()
    }

    /// When the walk next needs [`Walk::handle_timeout`].
    pub fn poll_timeout(&self) -> Option<Instant> {
        if matches!(self.phase, Phase::Done(_)) {
            return None;
        }
        let deadline = self.started + self.config.deadline;
        let waiting = self
            .candidates
            .values()
            .filter_map(|c| match c.ask {
                Ask::Waiting { since, slow: false } => Some(since + self.config.request_timeout),
                _ => None,
            })
            .chain(
                self.confirming
                    .values()
                    .map(|since| *since + self.config.request_timeout),
            )
            .min();
        Some(waiting.map_or(deadline, |w| w.min(deadline)))
    }

    /// Moves on past requests that took too long, and ends the walk at its deadline.
    pub fn handle_timeout(&mut self, now: Instant) {
        if now >= self.started + self.config.deadline {
            self.finish(Ending::Deadline);
            return;
        }
        let timeout = self.config.request_timeout;
        for candidate in self.candidates.values_mut() {
            if let Ask::Waiting { since, slow: false } = candidate.ask
                && now >= since + timeout
            {
                candidate.ask = Ask::Waiting { since, slow: true };
                self.stats.slow += 1;
            }
        }
        let late: Vec<P> = self
            .confirming
            .iter()
            .filter(|(_, since)| now >= **since + timeout)
            .map(|(peer, _)| peer.clone())
            .collect();
        for peer in late {
            self.confirming.remove(&peer);
            self.stats.slow += 1;
        }
        self.advance(now);
    }

    /// A response from `peer`: the closer peers it named (with their positions and
    /// addresses) and its answer, if it holds the key.
    pub fn on_response(
        &mut self,
        peer: &P,
        closer: Vec<(P, Position, Vec<Multiaddr>)>,
        answer: Option<WireAnswer>,
        now_unix: UnixTime,
        now: Instant,
    ) {
        if matches!(self.phase, Phase::Done(_)) {
            return;
        }
        self.stats.responses += 1;
        if self.confirming.remove(peer).is_some() {
            if let Some(answer) = answer {
                self.take_confirmation(peer, answer, now_unix);
            }
            self.advance(now);
            return;
        }
        let round = match self.distances.get(peer) {
            Some(distance) => match self.candidates.get_mut(distance) {
                Some(candidate) if matches!(candidate.ask, Ask::Waiting { .. }) => {
                    candidate.ask = Ask::Answered;
                    candidate.round
                }
                _ => return,
            },
            None => return,
        };
        for (closer_peer, position, addresses) in closer {
            self.learn(closer_peer, position, addresses, round + 1);
        }
        if let Some(answer) = answer {
            self.take_answer(peer.clone(), answer, now_unix, false);
        }
        self.advance(now);
    }

    /// A request to `peer` failed: it could not be reached, the stream broke, or the
    /// response was refused or unreadable.
    pub fn on_failure(&mut self, peer: &P, now: Instant) {
        if matches!(self.phase, Phase::Done(_)) {
            return;
        }
        self.stats.failures += 1;
        if self.confirming.remove(peer).is_none()
            && let Some(distance) = self.distances.get(peer)
            && let Some(candidate) = self.candidates.get_mut(distance)
            && matches!(candidate.ask, Ask::Waiting { .. })
        {
            candidate.ask = Ask::Failed;
        }
        self.advance(now);
    }

    /// Whether the walk is over.
    pub fn is_done(&self) -> bool {
        matches!(self.phase, Phase::Done(_)) && self.outbox.is_empty()
    }

    /// What the walk found, from the answers so far, at `now`: the offers selected from
    /// the merge as a holder selects them (the ones confirmed), best first.
    pub fn result(&self, now_unix: UnixTime) -> WalkResult {
        let selected: HashSet<ProviderId> = self.selected().into_iter().collect();
        let offers = ranked(
            self.merged.values().map(|m| &m.offer).filter(|offer| {
                selected.contains(&offer.provider())
                    && !offer.is_expired(now_unix)
                    && self.query.concerns(offer)
            }),
            &self.query,
        )
        .into_iter()
        .cloned()
        .collect();
        let ending = match self.phase {
            Phase::Done(ending) => ending,
            _ => self.ending,
        };
        WalkResult {
            offers,
            matching: self.matching,
            held: self.held,
            truncated: self.truncated,
            ending,
            stats: self.stats,
        }
    }

    fn learn(&mut self, peer: P, position: Position, addresses: Vec<Multiaddr>, round: u32) {
        if self.distances.contains_key(&peer) {
            return;
        }
        let distance = self.target.distance(&position);
        // Only the closest few times `closest` are worth keeping.
        let keep = 4 * self.config.closest.max(1);
        if self.candidates.len() >= keep {
            match self.candidates.last_key_value() {
                Some((farthest, _)) if *farthest > distance => {
                    let farthest = *farthest;
                    if let Some(dropped) = self.candidates.get(&farthest)
                        && dropped.ask == Ask::Fresh
                    {
                        let dropped = self.candidates.remove(&farthest);
                        if let Some(dropped) = dropped {
                            self.distances.remove(&dropped.peer);
                        }
                    } else {
                        return;
                    }
                }
                _ => return,
            }
        }
        self.distances.insert(peer.clone(), distance);
        self.candidates.insert(
            distance,
            Candidate {
                peer,
                addresses,
                ask: Ask::Fresh,
                round,
            },
        );
    }

    fn take_answer(&mut self, peer: P, answer: WireAnswer, now_unix: UnixTime, local: bool) {
        let matching = usize::try_from(answer.matching).unwrap_or(usize::MAX);
        let held = usize::try_from(answer.held).unwrap_or(usize::MAX);
        let truncated = answer.truncated;
        let invalid_before = self.stats.invalid_offers;
        let returned = self.merge(answer, now_unix);
        if self.stats.invalid_offers > invalid_before {
            // A holder that sends a forged offer is not counted, asked or repaired: its
            // valid offers are kept, and the walk looks for another holder.
            return;
        }
        self.stats.holders += 1;
        self.matching = self.matching.max(matching);
        self.held = self.held.max(held);
        self.truncated |= truncated;
        self.holders.push(Holder {
            peer,
            returned,
            asked: HashSet::new(),
            local,
        });
    }

    fn take_confirmation(&mut self, peer: &P, answer: WireAnswer, now_unix: UnixTime) {
        let returned = self.merge(answer, now_unix);
        if let Some(holder) = self.holders.iter_mut().find(|h| &h.peer == peer) {
            holder.returned.extend(returned);
        }
    }

    /// Verifies and merges the offers of `answer`; returns the `seq` of each provider the
    /// answer held.
    fn merge(&mut self, answer: WireAnswer, now_unix: UnixTime) -> HashMap<ProviderId, u64> {
        self.now_unix = self.now_unix.max(now_unix);
        let mut returned = HashMap::new();
        for answered in answer.offers {
            let offer = match SignedOffer::decode(&answered.offer, now_unix) {
                Ok(offer) => {
                    self.stats.verified_offers += 1;
                    offer
                }
                Err(_) => {
                    self.stats.invalid_offers += 1;
                    continue;
                }
            };
            if !self.query.concerns(&offer) && !self.fits_key_as_update(&offer) {
                self.stats.irrelevant_offers += 1;
                continue;
            }
            returned.insert(offer.provider(), offer.seq());
            match self.merged.get_mut(&offer.provider()) {
                Some(held) if held.offer.seq() >= offer.seq() => {
                    held.seniority = senior(held.seniority, answered.seniority);
                }
                Some(held) => {
                    held.seniority = senior(held.seniority, answered.seniority);
                    held.offer = offer;
                }
                None => {
                    self.merged.insert(
                        offer.provider(),
                        Merged {
                            offer,
                            seniority: answered.seniority,
                        },
                    );
                }
            }
        }
        returned
    }

    /// A newer offer of a provider already merged may no longer concern the query (a
    /// withdrawal, or a price list without the country): it still supersedes.
    fn fits_key_as_update(&self, offer: &SignedOffer) -> bool {
        self.merged
            .get(&offer.provider())
            .is_some_and(|held| held.offer.seq() < offer.seq())
    }

    fn advance(&mut self, now: Instant) {
        if self.phase == Phase::Searching {
            self.search(now);
        }
        if self.phase == Phase::Confirming && self.confirming.is_empty() && self.outbox.is_empty() {
            if self.confirmation_rounds < CONFIRMATION_ROUNDS && self.confirm_round(now) {
                return;
            }
            self.repair();
            self.phase = Phase::Done(self.ending);
        }
    }

    fn search(&mut self, now: Instant) {
        if now >= self.started + self.config.deadline {
            self.finish(Ending::Deadline);
            return;
        }
        if self.holders.len() >= self.config.holders {
            self.confirm(Ending::Enough, now);
            return;
        }
        loop {
            let in_flight = self
                .candidates
                .values()
                .filter(|c| matches!(c.ask, Ask::Waiting { slow: false, .. }))
                .count();
            if self.stats.requests >= self.config.max_requests {
                if in_flight == 0 {
                    self.confirm(Ending::RequestLimit, now);
                }
                return;
            }
            if in_flight >= self.config.parallelism {
                return;
            }
            match self.pick() {
                Some(distance) => self.ask(distance, now),
                None if in_flight > 0 => return,
                None if self.window == self.config.closest.max(1)
                    && self.holders.len() < self.config.holders =>
                {
                    // Holders churn: a key's offers may sit a little farther than its
                    // very closest nodes, which joined since. Look twice as wide, once.
                    self.window *= 2;
                    if self.pick().is_none() {
                        if !self.waits_for_the_slow() {
                            self.confirm(Ending::Converged, now);
                        }
                        return;
                    }
                }
                None => {
                    if !self.waits_for_the_slow() {
                        self.confirm(Ending::Converged, now);
                    }
                    return;
                }
            }
        }
    }

    /// Whether the walk, with nobody left to ask, should still wait for requests past
    /// their timeout. Only while no holder has answered: a slow peer then no longer holds
    /// up a walk that has offers to show, but a walk over a lossy or far link, where every
    /// answer comes late (a lost segment costs TCP a second), does not end empty while
    /// answers are on their way. The walk's deadline, and the requests' own failures,
    /// still end it.
    fn waits_for_the_slow(&self) -> bool {
        self.holders.is_empty()
            && self
                .candidates
                .values()
                .any(|c| matches!(c.ask, Ask::Waiting { slow: true, .. }))
    }

    /// The next peer to ask: the closest fresh one among the `window` closest known, or,
    /// once a holder has answered, a random fresh one among them.
    fn pick(&mut self) -> Option<Distance> {
        let fresh: Vec<Distance> = self
            .candidates
            .iter()
            .take(self.window)
            .filter(|(_, c)| c.ask == Ask::Fresh)
            .map(|(distance, _)| *distance)
            .collect();
        if fresh.is_empty() {
            return None;
        }
        let spread = self.holders.iter().any(|h| !h.local);
        let index = if spread {
            usize::try_from(self.next_random() % fresh.len() as u64).unwrap_or(0)
        } else {
            0
        };
        fresh.get(index).copied()
    }

    fn ask(&mut self, distance: Distance, now: Instant) {
        let Some(candidate) = self.candidates.get_mut(&distance) else {
            return;
        };
        candidate.ask = Ask::Waiting {
            since: now,
            slow: false,
        };
        self.stats.requests += 1;
        self.stats.rounds = self.stats.rounds.max(candidate.round);
        self.outbox.push_back(Output::Request {
            peer: candidate.peer.clone(),
            addresses: candidate.addresses.clone(),
            request: Request::Find(self.query.clone()),
        });
    }

    /// Ends the search; the confirmation starts.
    fn confirm(&mut self, ending: Ending, now: Instant) {
        self.ending = ending;
        self.phase = Phase::Confirming;
        self.confirm_round(now);
    }

    /// Asks each holder about the selected offers it neither returned nor was asked about
    /// yet; whether anything was asked.
    fn confirm_round(&mut self, now: Instant) -> bool {
        let selected = self.selected();
        let mut asked_any = false;
        for holder in self.holders.iter_mut().filter(|h| !h.local) {
            // A holder that returned an older copy has said what it holds: it is repaired,
            // not asked again.
            let missing: Vec<ProviderId> = selected
                .iter()
                .filter(|p| !holder.returned.contains_key(p) && !holder.asked.contains(p))
                .copied()
                .take(MAX_PROVIDERS)
                .collect();
            if missing.is_empty() {
                continue;
            }
            holder.asked.extend(missing.iter().copied());
            self.confirming.insert(holder.peer.clone(), now);
            self.stats.requests += 1;
            self.stats.confirmations += 1;
            asked_any = true;
            self.outbox.push_back(Output::Request {
                peer: holder.peer.clone(),
                addresses: Vec::new(),
                request: Request::Find(self.query.about(missing)),
            });
        }
        if asked_any {
            self.confirmation_rounds += 1;
            self.stats.rounds += 1;
        }
        asked_any
    }

    /// The providers the caller would show from the merge: as a holder selects
    /// ([`select`]), or the named providers.
    fn selected(&self) -> Vec<ProviderId> {
        if !self.query.providers.is_empty() {
            return self
                .query
                .providers
                .iter()
                .filter(|p| self.merged.contains_key(p))
                .copied()
                .collect();
        }
        let selection = select(
            // A holder's place for an offer stands for how long it held it: the
            // offers holders placed first are the caller's longest-held.
            self.merged.values().map(|m| {
                let held = m.seniority.map_or(Duration::ZERO, |rank| {
                    Duration::MAX.saturating_sub(Duration::from_secs(u64::from(rank)))
                });
                (&m.offer, held)
            }),
            &self.query,
            self.now_unix,
        );
        selection
            .offers
            .iter()
            .map(|s| s.offer.provider())
            .collect()
    }

    /// Sends each holder the newest offers it returned older, and the selected ones it
    /// lacked (it was asked about them and did not have them).
    fn repair(&mut self) {
        let selected: HashSet<ProviderId> = self.selected().into_iter().collect();
        let key = self.query.key();
        let mut repairs = Vec::new();
        for holder in self.holders.iter().filter(|h| !h.local) {
            let newer: Vec<SignedOffer> = self
                .merged
                .values()
                .filter(|m| match holder.returned.get(&m.offer.provider()) {
                    Some(seq) => *seq < m.offer.seq(),
                    None => selected.contains(&m.offer.provider()),
                })
                .map(|m| m.offer.clone())
                .collect();
            for chunk in newer.chunks(MAX_STORE_OFFERS) {
                repairs.push(Output::Repair {
                    peer: holder.peer.clone(),
                    key,
                    offers: chunk.to_vec(),
                });
            }
        }
        self.stats.repairs += repairs.len();
        self.outbox.extend(repairs);
    }

    fn finish(&mut self, ending: Ending) {
        self.ending = ending;
        self.confirming.clear();
        self.phase = Phase::Done(ending);
    }

    /// splitmix64: enough to spread questions; no cryptographic use.
    fn next_random(&mut self) -> u64 {
        self.rng = self.rng.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

/// The better of two places among the longest-held (lower is longer held).
fn senior(a: Option<u16>, b: Option<u16>) -> Option<u16> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

#[cfg(test)]
mod tests;
