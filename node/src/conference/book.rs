//! A room's bookkeeping on the bridge: who is in, who was and when, and the room's size.

use std::collections::BTreeMap;

use interlink_protocol::conference::RefusalReason;
use interlink_protocol::conference::receipt::{MAX_ATTENDANCES, Observed};
use interlink_protocol::{ProviderId, Timestamp};

/// Who is and was in a room.
#[derive(Clone, Debug)]
pub struct RoomBook {
    max_participants: u32,
    opened_at: Timestamp,
    present: BTreeMap<ProviderId, Timestamp>,
    stays: Vec<Observed>,
    closed_at: Option<Timestamp>,
}

impl RoomBook {
    /// An open room for at most `max_participants` at once.
    pub fn new(max_participants: u32, opened_at: Timestamp) -> RoomBook {
        RoomBook {
            max_participants,
            opened_at,
            present: BTreeMap::new(),
            stays: Vec::new(),
            closed_at: None,
        }
    }

    /// Admits `participant` at `now`; returns how many are in the room then.
    pub fn admit(&mut self, participant: ProviderId, now: Timestamp) -> Result<u32, RefusalReason> {
        if self.closed_at.is_some() {
            return Err(RefusalReason::RoomClosed);
        }
        if self.present.contains_key(&participant) {
            return Err(RefusalReason::AlreadyJoined);
        }
        let full = self.present.len() >= self.max_participants as usize
            || self.present.len() + self.stays.len() >= MAX_ATTENDANCES;
        if full {
            return Err(RefusalReason::RoomFull {
                max: self.max_participants,
            });
        }
        self.present.insert(participant, now);
        Ok(self.present_count())
    }

    /// Moves `participant`'s join to `now`: billing starts when its media is answered,
    /// not when the bridge began setting it up.
    pub fn started(&mut self, participant: ProviderId, now: Timestamp) {
        if let Some(joined) = self.present.get_mut(&participant) {
            *joined = now.max(*joined);
        }
    }

    /// Takes back an admission that never joined (its media failed): no stay is billed.
    pub fn cancel(&mut self, participant: ProviderId) {
        self.present.remove(&participant);
    }

    /// Records that `participant` left at `now`; returns how many remain, or `None` if it
    /// was not in the room.
    pub fn leave(&mut self, participant: ProviderId, now: Timestamp) -> Option<u32> {
        let joined = self.present.remove(&participant)?;
        self.stays.push((participant, joined, now.max(joined)));
        Some(self.present_count())
    }

    /// Closes the room at `now`: everyone still in leaves. Returns the room's open time and
    /// every stay, in the order they ended.
    pub fn close(&mut self, now: Timestamp) -> (Timestamp, Timestamp, Vec<Observed>) {
        let closed_at = *self.closed_at.get_or_insert(now);
        for (participant, joined) in std::mem::take(&mut self.present) {
            self.stays
                .push((participant, joined, closed_at.max(joined)));
        }
        (self.opened_at, closed_at, self.stays.clone())
    }

    /// Whether the room has been closed.
    pub fn is_closed(&self) -> bool {
        self.closed_at.is_some()
    }

    /// Participants in the room now.
    pub fn present_count(&self) -> u32 {
        u32::try_from(self.present.len()).unwrap_or(u32::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use interlink_protocol::SecretKey;

    fn who(n: u8) -> ProviderId {
        SecretKey::from_seed(&[n; 32]).provider_id()
    }

    #[test]
    fn a_room_admits_up_to_its_size_once_each_until_closed() {
        let mut book = RoomBook::new(2, Timestamp(0));
        assert_eq!(book.admit(who(1), Timestamp(10)), Ok(1));
        assert_eq!(
            book.admit(who(1), Timestamp(11)),
            Err(RefusalReason::AlreadyJoined)
        );
        assert_eq!(book.admit(who(2), Timestamp(12)), Ok(2));
        assert_eq!(
            book.admit(who(3), Timestamp(13)),
            Err(RefusalReason::RoomFull { max: 2 })
        );
        assert_eq!(book.leave(who(1), Timestamp(20)), Some(1));
        assert_eq!(book.leave(who(1), Timestamp(21)), None);
        assert_eq!(book.admit(who(3), Timestamp(22)), Ok(2));
        let (opened, closed, stays) = book.close(Timestamp(30));
        assert_eq!((opened, closed), (Timestamp(0), Timestamp(30)));
        assert_eq!(
            stays,
            vec![
                (who(1), Timestamp(10), Timestamp(20)),
                (who(2), Timestamp(12), Timestamp(30)),
                (who(3), Timestamp(22), Timestamp(30)),
            ]
        );
        assert_eq!(
            book.admit(who(4), Timestamp(31)),
            Err(RefusalReason::RoomClosed)
        );
    }
}
