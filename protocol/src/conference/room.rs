//! A room on the bridge, as a state machine without IO.
//!
//! The driver verifies the reservation, opens the room with [`Room::open`] and then
//! reports what happens, each with `now`: a participant asks to join ([`Room::join`]),
//! its media is set up ([`Room::joined`]) or fails ([`Room::media_failed`]), it leaves
//! ([`Room::leave`]); the organiser's frames ([`Room::handle_frame`]), its stream breaking
//! ([`Room::organiser_lost`]), a request to end the room ([`Room::end`]) and timeouts.
//! The machine decides who is let in, keeps who was in and when, tells the organiser of
//! joins and leaves, ends the room when asked or when its time runs out, signs the room
//! receipt and waits for the organiser's countersignature. It returns the frames for the
//! organiser ([`Room::poll_transmit`]), events for the driver ([`Room::poll_event`]) and
//! its next deadline ([`Room::poll_timeout`]).
//!
//! ```text
//! Open ──End, EndRoom, expiry, shutdown──► Ending: receipt sent, wait for the countersignature
//!   │                                        ──► Done (settled, disputed or unacknowledged)
//!   └── the organiser's stream breaks ──► Done (unacknowledged, no receipt sent)
//! ```

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use crate::conference::ConferenceError;
use crate::conference::messages::{ConferenceFrame, RefusalReason, RoomEvent};
use crate::conference::receipt::{
    MAX_ATTENDANCES, Observed, RoomReceipt, RoomReceiptDispute, SettledRoomReceipt,
    SignedRoomReceipt,
};
use crate::conference::reservation::{Reservation, SignedReservation};
use crate::conference::terms::ConferenceTerms;
use crate::identity::{ProviderId, SecretKey};
use crate::offer::OfferStatus;
use crate::signed::SignedOffer;
use crate::time::{Timestamp, UnixTime};

/// How long the organiser may take to countersign the receipt.
pub const COUNTERSIGN_DEADLINE: Duration = Duration::from_secs(5);

/// Whether the bridge takes `reservation` under `offer`, the offer it publishes (if any),
/// at `now`: the offer is a live conference offer, the reservation names it and its price
/// (or an older `seq` of it), and asks for no larger a room than the bridge's. Returns the
/// offer's conference terms; whether a room is free is the driver's to say.
pub fn check_reservation(
    reservation: &Reservation,
    offer: Option<&SignedOffer>,
    now: UnixTime,
) -> Result<ConferenceTerms, RefusalReason> {
    let offer = offer.filter(|o| !o.is_expired(now) && o.offer().status == OfferStatus::Available);
    let Some((offer, terms)) = offer.and_then(|o| o.offer().conference.map(|t| (o, t))) else {
        return Err(RefusalReason::Unavailable);
    };
    if reservation.offer.provider != offer.provider() {
        return Err(RefusalReason::Unavailable);
    }
    if reservation.offer.seq > offer.seq() || reservation.tariff != terms.tariff {
        return Err(RefusalReason::PriceChanged {
            current: Some(terms.tariff),
        });
    }
    if reservation.max_participants > terms.participants_per_room {
        return Err(RefusalReason::TooLarge {
            max: terms.participants_per_room,
        });
    }
    Ok(terms)
}

/// Where a room stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// Participants may join.
    Open,
    /// Closed; the receipt is sent and the organiser's countersignature awaited.
    Ending,
    /// Over.
    Done,
}

/// How a room's receipt was settled.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The organiser countersigned the receipt.
    Settled(SettledRoomReceipt),
    /// The organiser refused the receipt.
    Disputed {
        receipt: SignedRoomReceipt,
        dispute: RoomReceiptDispute,
    },
    /// No valid countersignature came: the organiser vanished, was silent too long or
    /// sent one that does not verify. The bridge keeps its own signed receipt.
    Unacknowledged(SignedRoomReceipt),
}

/// What the driver must act on.
#[derive(Clone, Debug, PartialEq, Eq)]
// A few events per room: boxing the receipt would only add noise.
#[allow(clippy::large_enum_variant)]
pub enum Event {
    /// The room is closed: tell every participant and drop them; nobody joins any more.
    Closed,
    /// The receipt could not be signed; the room is over without one.
    Unsigned(ConferenceError),
    /// The room is over, with its receipt.
    Done(Outcome),
}

/// One room on the bridge.
#[derive(Debug)]
pub struct Room {
    key: SecretKey,
    reservation: SignedReservation,
    state: State,
    opened_at: Timestamp,
    /// Who is in the room, since when (billing starts when its media is answered).
    present: BTreeMap<ProviderId, Timestamp>,
    /// Every stay that has ended, in the order they ended.
    stays: Vec<Observed>,
    /// The room's end while open; the countersignature's while ending.
    deadline: Option<Timestamp>,
    receipt: Option<SignedRoomReceipt>,
    transmit: VecDeque<ConferenceFrame>,
    events: VecDeque<Event>,
}

impl Room {
    /// A room opened at `now` for a verified reservation; its receipt is signed with the
    /// bridge's `key`. It stays open until the reservation's lifetime runs out.
    pub fn open(reservation: SignedReservation, key: SecretKey, now: Timestamp) -> Room {
        let expires_at = reservation.reservation().expires_at();
        Room {
            key,
            reservation,
            state: State::Open,
            opened_at: now,
            present: BTreeMap::new(),
            stays: Vec::new(),
            deadline: Some(expires_at),
            receipt: None,
            transmit: VecDeque::new(),
            events: VecDeque::new(),
        }
    }

    /// The reservation the room was opened for.
    pub fn reservation(&self) -> &Reservation {
        self.reservation.reservation()
    }

    /// Who may end the room: its organiser.
    pub fn organiser(&self) -> ProviderId {
        self.reservation().organiser
    }

    /// Where the room stands.
    pub fn state(&self) -> State {
        self.state
    }

    /// Participants in the room now.
    pub fn present(&self) -> u32 {
        u32::try_from(self.present.len()).unwrap_or(u32::MAX)
    }

    /// Lets `participant` in at `now`, or says why not; returns how many are in then.
    /// A room takes each participant once at a time, no more at once than reserved, and
    /// no more stays than a receipt lists.
    pub fn join(&mut self, participant: ProviderId, now: Timestamp) -> Result<u32, RefusalReason> {
        if self.state != State::Open {
            return Err(RefusalReason::RoomClosed);
        }
        if self.present.contains_key(&participant) {
            return Err(RefusalReason::AlreadyJoined);
        }
        let max = self.reservation().max_participants;
        let full = self.present.len() >= max as usize
            || self.present.len() + self.stays.len() >= MAX_ATTENDANCES;
        if full {
            return Err(RefusalReason::RoomFull { max });
        }
        self.present.insert(participant, now);
        Ok(self.present())
    }

    /// `participant`'s media is answered at `now`: its stay is billed from then, not from
    /// when the bridge began setting it up. The organiser is told of the join if the
    /// participant was told it is in (`told`). Returns how many are in the room.
    pub fn joined(&mut self, participant: ProviderId, told: bool, now: Timestamp) -> u32 {
        if let Some(joined) = self.present.get_mut(&participant) {
            *joined = now.max(*joined);
        }
        let present = self.present();
        if told && self.state == State::Open {
            self.transmit
                .push_back(ConferenceFrame::Event(RoomEvent::Joined {
                    participant,
                    at: now,
                    present,
                }));
        }
        present
    }

    /// `participant`'s media could not be set up: it never joined, and no stay is billed.
    pub fn media_failed(&mut self, participant: ProviderId) {
        if self.state == State::Open {
            self.present.remove(&participant);
        }
    }

    /// `participant` left at `now`; the organiser is told. Returns how many remain, or
    /// `None` if it was not in the room (it was never let in, or the room has closed).
    pub fn leave(&mut self, participant: ProviderId, now: Timestamp) -> Option<u32> {
        let joined = self.present.remove(&participant)?;
        self.stays.push((participant, joined, now.max(joined)));
        let present = self.present();
        self.transmit
            .push_back(ConferenceFrame::Event(RoomEvent::Left {
                participant,
                at: now,
                present,
            }));
        Some(present)
    }

    /// Ends the room at `now` (the organiser asked, the node stops): everyone still in
    /// leaves, and the receipt goes to the organiser.
    pub fn end(&mut self, now: Timestamp) {
        if self.state == State::Open {
            self.close(now, true);
        }
    }

    /// A frame from the organiser's stream.
    pub fn handle_frame(&mut self, frame: ConferenceFrame, now: Timestamp) {
        match (self.state, frame) {
            (State::Open, ConferenceFrame::End) => self.close(now, true),
            (State::Ending, ConferenceFrame::Countersigned(bytes)) => {
                let settled = SettledRoomReceipt::decode(&bytes);
                match (settled, self.receipt.take()) {
                    (Ok(settled), Some(receipt)) if settled.receipt() == receipt.receipt() => {
                        self.finish(Outcome::Settled(settled));
                    }
                    (_, Some(receipt)) => self.finish(Outcome::Unacknowledged(receipt)),
                    (_, None) => {}
                }
            }
            (State::Ending, ConferenceFrame::ReceiptRefused(dispute)) => {
                if let Some(receipt) = self.receipt.take() {
                    self.finish(Outcome::Disputed { receipt, dispute });
                }
            }
            _ => {}
        }
    }

    /// The organiser's stream broke (or a frame to it could not be sent) at `now`: the
    /// room ends, and no countersignature can come.
    pub fn organiser_lost(&mut self, now: Timestamp) {
        if self.state == State::Open {
            self.close(now, false);
        }
        self.unacknowledged();
    }

    /// Call when [`Room::poll_timeout`]'s deadline has passed.
    pub fn handle_timeout(&mut self, now: Timestamp) {
        if self.deadline.is_none_or(|deadline| now < deadline) {
            return;
        }
        match self.state {
            State::Open => self.close(now, true),
            State::Ending => self.unacknowledged(),
            State::Done => {}
        }
    }

    /// The next frame for the organiser.
    pub fn poll_transmit(&mut self) -> Option<ConferenceFrame> {
        self.transmit.pop_front()
    }

    /// The next event for the driver.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When [`Room::handle_timeout`] should next be called.
    pub fn poll_timeout(&self) -> Option<Timestamp> {
        self.deadline
    }

    /// Over, with nothing left to send.
    pub fn is_done(&self) -> bool {
        self.state == State::Done && self.transmit.is_empty()
    }

    /// Closes the room: whoever is in leaves now, the receipt is signed and, if the
    /// organiser can still hear, sent.
    fn close(&mut self, now: Timestamp, send_receipt: bool) {
        for (participant, joined) in std::mem::take(&mut self.present) {
            self.stays.push((participant, joined, now.max(joined)));
        }
        self.events.push_back(Event::Closed);
        let receipt = RoomReceipt::for_room(self.reservation(), self.opened_at, now, &self.stays);
        match SignedRoomReceipt::sign(receipt, &self.key) {
            Ok(receipt) => {
                if send_receipt {
                    self.transmit.push_back(ConferenceFrame::Ended {
                        receipt: receipt.as_bytes().to_vec(),
                    });
                }
                self.receipt = Some(receipt);
                self.state = State::Ending;
                self.deadline = Some(now.plus(COUNTERSIGN_DEADLINE));
            }
            Err(e) => {
                self.events.push_back(Event::Unsigned(e));
                self.state = State::Done;
                self.deadline = None;
            }
        }
    }

    fn unacknowledged(&mut self) {
        if let Some(receipt) = self.receipt.take() {
            self.finish(Outcome::Unacknowledged(receipt));
        }
    }

    fn finish(&mut self, outcome: Outcome) {
        self.events.push_back(Event::Done(outcome));
        self.state = State::Done;
        self.deadline = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conference::ranking::tests::conference_offer;
    use crate::conference::reservation::tests::{NOW, key, reservation};

    fn who(n: u8) -> ProviderId {
        key(n).provider_id()
    }

    fn at(secs: u64) -> Timestamp {
        NOW.plus(Duration::from_secs(secs))
    }

    /// Bridge key 2's room for organiser key 1, four places, open for an hour from NOW.
    fn room(max_participants: u32) -> Room {
        let reservation = Reservation {
            max_participants,
            ..reservation()
        };
        let signed = SignedReservation::sign(reservation, &key(1)).unwrap();
        Room::open(signed, key(2), NOW)
    }

    fn frames(room: &mut Room) -> Vec<ConferenceFrame> {
        std::iter::from_fn(|| room.poll_transmit()).collect()
    }

    fn events(room: &mut Room) -> Vec<Event> {
        std::iter::from_fn(|| room.poll_event()).collect()
    }

    fn receipt_of(frames: &[ConferenceFrame]) -> SignedRoomReceipt {
        let bytes = frames
            .iter()
            .find_map(|f| match f {
                ConferenceFrame::Ended { receipt } => Some(receipt.clone()),
                _ => None,
            })
            .unwrap_or_else(|| panic!("no receipt in {frames:?}"));
        SignedRoomReceipt::decode(&bytes).unwrap()
    }

    /// The receipt's stays: (participant, join, leave).
    fn stays_of(receipt: &SignedRoomReceipt) -> Vec<Observed> {
        receipt
            .receipt()
            .attendances
            .iter()
            .map(|a| (a.participant, a.joined_at, a.left_at))
            .collect()
    }

    #[test]
    fn a_room_admits_up_to_its_size_once_each_until_closed() {
        let reservation = Reservation {
            max_participants: 2,
            ..reservation()
        };
        let signed = SignedReservation::sign(reservation, &key(1)).unwrap();
        let mut room = Room::open(signed, key(2), Timestamp(0));
        assert_eq!(room.join(who(1), Timestamp(10)), Ok(1));
        assert_eq!(
            room.join(who(1), Timestamp(11)),
            Err(RefusalReason::AlreadyJoined)
        );
        assert_eq!(room.join(who(2), Timestamp(12)), Ok(2));
        assert_eq!(
            room.join(who(3), Timestamp(13)),
            Err(RefusalReason::RoomFull { max: 2 })
        );
        assert_eq!(room.leave(who(1), Timestamp(20)), Some(1));
        assert_eq!(room.leave(who(1), Timestamp(21)), None);
        assert_eq!(room.join(who(3), Timestamp(22)), Ok(2));
        room.end(Timestamp(30));
        let receipt = receipt_of(&frames(&mut room));
        let (opened, closed) = (receipt.receipt().opened_at, receipt.receipt().closed_at);
        assert_eq!((opened, closed), (Timestamp(0), Timestamp(30)));
        assert_eq!(
            stays_of(&receipt),
            vec![
                (who(1), Timestamp(10), Timestamp(20)),
                (who(2), Timestamp(12), Timestamp(30)),
                (who(3), Timestamp(22), Timestamp(30)),
            ]
        );
        assert_eq!(
            room.join(who(4), Timestamp(31)),
            Err(RefusalReason::RoomClosed)
        );
    }

    #[test]
    fn the_organiser_hears_of_told_joins_and_every_leave() {
        let mut room = room(4);
        room.join(who(3), at(1)).unwrap();
        room.join(who(4), at(1)).unwrap();
        // Billing starts when the media is answered.
        assert_eq!(room.joined(who(3), true, at(2)), 2);
        // A participant that never heard it was in is not announced, but billed.
        assert_eq!(room.joined(who(4), false, at(3)), 2);
        assert_eq!(room.leave(who(4), at(5)), Some(1));
        room.join(who(5), at(6)).unwrap();
        room.media_failed(who(5));
        assert_eq!(room.present(), 1);
        assert_eq!(
            frames(&mut room),
            vec![
                ConferenceFrame::Event(RoomEvent::Joined {
                    participant: who(3),
                    at: at(2),
                    present: 2
                }),
                ConferenceFrame::Event(RoomEvent::Left {
                    participant: who(4),
                    at: at(5),
                    present: 1
                }),
            ]
        );
        room.handle_frame(ConferenceFrame::End, at(60));
        assert_eq!(room.state(), State::Ending);
        assert_eq!(events(&mut room), vec![Event::Closed]);
        let receipt = receipt_of(&frames(&mut room));
        let stays: Vec<_> = receipt
            .receipt()
            .attendances
            .iter()
            .map(|a| (a.participant, a.duration()))
            .collect();
        assert_eq!(
            stays,
            vec![
                (who(4), Duration::from_secs(2)),
                (who(3), Duration::from_secs(58)),
            ]
        );
        // Leaving after the close changes nothing and tells nobody.
        assert_eq!(room.leave(who(3), at(61)), None);
        assert!(frames(&mut room).is_empty());
    }

    #[test]
    fn a_countersigned_receipt_settles_the_room() {
        let mut room = room(4);
        room.join(who(3), at(0)).unwrap();
        room.joined(who(3), true, at(0));
        room.end(at(90));
        let receipt = receipt_of(&frames(&mut room));
        assert_eq!(room.poll_timeout(), Some(at(90).plus(COUNTERSIGN_DEADLINE)));
        // A countersignature that does not verify settles nothing.
        let mut other = room_ending();
        let settled = receipt.countersign(&key(1)).unwrap();
        let mut tampered = settled.as_bytes().to_vec();
        tampered[40] ^= 1;
        other.handle_frame(ConferenceFrame::Countersigned(tampered), at(91));
        assert!(matches!(
            events(&mut other).last(),
            Some(Event::Done(Outcome::Unacknowledged(_)))
        ));
        room.handle_frame(
            ConferenceFrame::Countersigned(settled.as_bytes().to_vec()),
            at(91),
        );
        assert_eq!(
            events(&mut room),
            vec![Event::Closed, Event::Done(Outcome::Settled(settled))]
        );
        assert!(room.is_done());
        assert_eq!(room.poll_timeout(), None);
    }

    fn room_ending() -> Room {
        let mut room = room(4);
        room.end(at(90));
        frames(&mut room);
        room
    }

    #[test]
    fn a_refused_receipt_is_disputed() {
        let mut room = room_ending();
        room.handle_frame(
            ConferenceFrame::ReceiptRefused(RoomReceiptDispute::WrongRoom),
            at(91),
        );
        assert!(matches!(
            events(&mut room).last(),
            Some(Event::Done(Outcome::Disputed {
                dispute: RoomReceiptDispute::WrongRoom,
                ..
            }))
        ));
    }

    #[test]
    fn the_room_ends_when_its_time_runs_out_and_waits_for_the_countersignature() {
        let mut room = room(4);
        let expiry = reservation().expires_at();
        assert_eq!(room.poll_timeout(), Some(expiry));
        room.handle_timeout(at(10));
        assert_eq!(room.state(), State::Open);
        room.handle_timeout(expiry);
        assert_eq!(room.state(), State::Ending);
        room.handle_timeout(expiry.plus(Duration::from_secs(1)));
        assert_eq!(room.state(), State::Ending);
        room.handle_timeout(expiry.plus(COUNTERSIGN_DEADLINE));
        assert_eq!(room.state(), State::Done);
        assert!(matches!(
            events(&mut room).as_slice(),
            [Event::Closed, Event::Done(Outcome::Unacknowledged(_))]
        ));
    }

    #[test]
    fn an_organiser_lost_while_open_gets_no_receipt() {
        let mut room = room(4);
        room.join(who(3), at(0)).unwrap();
        room.organiser_lost(at(10));
        assert!(frames(&mut room).is_empty());
        assert!(matches!(
            events(&mut room).as_slice(),
            [Event::Closed, Event::Done(Outcome::Unacknowledged(r))]
                if r.receipt().attendances.len() == 1
        ));
        assert!(room.is_done());
    }

    #[test]
    fn a_reservation_is_taken_only_under_the_bridges_live_offer_and_price() {
        // Bridge key 2's offer: rooms of `size`, 10 per room, `per_minute`, at `seq`.
        let offer = |size: u32, per_minute: u64, seq: u64| {
            let mut offer = conference_offer(2, "Bridge", size, 10, per_minute, 420);
            offer.seq = seq;
            SignedOffer::sign(offer, &key(2)).unwrap()
        };
        let now = UnixTime(2000);
        let live = offer(4, 3, 3);
        let check =
            |offer: Option<&SignedOffer>, now| check_reservation(&reservation(), offer, now);
        assert_eq!(
            check(Some(&live), now),
            Ok(live.offer().conference.unwrap())
        );
        // A later offer at the same price still takes it.
        assert!(check(Some(&offer(4, 3, 4)), now).is_ok());
        assert_eq!(check(None, now), Err(RefusalReason::Unavailable));
        let expires = live.offer().expires_at;
        assert_eq!(check(Some(&live), expires), Err(RefusalReason::Unavailable));
        let withdrawn = SignedOffer::sign(live.offer().withdrawal(now), &key(2)).unwrap();
        assert_eq!(
            check(Some(&withdrawn), now),
            Err(RefusalReason::Unavailable)
        );
        let mut elsewhere = conference_offer(5, "Other", 4, 10, 3, 420);
        elsewhere.seq = 3;
        let elsewhere = SignedOffer::sign(elsewhere, &key(5)).unwrap();
        assert_eq!(
            check(Some(&elsewhere), now),
            Err(RefusalReason::Unavailable)
        );
        let repriced = offer(4, 4, 4);
        assert_eq!(
            check(Some(&repriced), now),
            Err(RefusalReason::PriceChanged {
                current: repriced.offer().conference.map(|t| t.tariff)
            })
        );
        // The organiser read a newer offer than the bridge publishes.
        assert!(matches!(
            check(Some(&offer(4, 3, 2)), now),
            Err(RefusalReason::PriceChanged { .. })
        ));
        assert_eq!(
            check(Some(&offer(3, 3, 3)), now),
            Err(RefusalReason::TooLarge { max: 3 })
        );
    }
}
