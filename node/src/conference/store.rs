//! Room receipts in the node's database, beside the call receipts: the exact signed bytes
//! and the figures settlement sums.

use interlink_protocol::Timestamp;
use interlink_protocol::conference::RoomReceipt;
use rusqlite::params;
use serde::Serialize;

use crate::store::{
    ReceiptHead, ReceiptStatus, ReceiptTable, Store, StoreError, amount_text, peer_or_key,
    stored_as_text, to_i64,
};

/// The room receipts.
pub(crate) const ROOM_RECEIPTS: ReceiptTable = ReceiptTable {
    name: "room_receipts",
    key: "room_id",
    figures: &[
        "bridge",
        "organiser",
        "offer_seq",
        "currency",
        "per_room",
        "per_participant_minute",
        "billing_increment_secs",
        "opened_at_ms",
        "closed_at_ms",
        "attendances",
        "participant_seconds",
        "amount_minor",
    ],
};

/// Which side of the room this node was.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RoomRole {
    Organiser,
    Bridge,
}

stored_as_text!(RoomRole {
    Organiser => "organiser",
    Bridge => "bridge",
});

/// A stored room receipt, as listed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RoomReceiptRow {
    pub room_id: String,
    pub role: RoomRole,
    pub status: ReceiptStatus,
    pub bridge: String,
    pub organiser: String,
    pub currency: String,
    pub opened_at_ms: u64,
    pub closed_at_ms: u64,
    pub attendances: u64,
    pub participant_seconds: u64,
    pub amount_minor: u64,
    /// The amount in major units, e.g. `0.28`.
    pub amount: String,
    pub dispute: Option<String>,
    /// The signed bytes: settled (both signatures) or the bridge's alone.
    #[serde(skip)]
    pub signed_bytes: Vec<u8>,
}

impl Store {
    /// Stores a room receipt in one durable transaction; a settled one is never replaced.
    pub async fn save_room_receipt(
        &self,
        role: RoomRole,
        status: ReceiptStatus,
        receipt: &RoomReceipt,
        signed_bytes: &[u8],
        dispute: Option<String>,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let r = receipt.clone();
        let head = ReceiptHead {
            key: r.room_id.to_string(),
            role: role.as_str(),
            status,
            dispute,
            signed_bytes: signed_bytes.to_vec(),
            stored_at: now,
        };
        self.with(move |connection| {
            ROOM_RECEIPTS.upsert(
                connection,
                head,
                params![
                    peer_or_key(&r.offer.provider),
                    peer_or_key(&r.organiser),
                    to_i64(r.offer.seq),
                    r.tariff.currency.to_string(),
                    to_i64(r.tariff.per_room),
                    to_i64(r.tariff.per_participant_minute),
                    r.tariff.billing_increment_secs,
                    to_i64(r.opened_at.0),
                    to_i64(r.closed_at.0),
                    to_i64(r.attendances.len() as u64),
                    to_i64(r.participant_seconds),
                    to_i64(r.amount.minor_units),
                ],
            )
        })
        .await
    }

    /// Every stored room receipt, oldest first.
    pub async fn room_receipts(&self) -> Result<Vec<RoomReceiptRow>, StoreError> {
        self.with(|connection| {
            let mut statement = connection.prepare(
                "SELECT room_id, role, status, bridge, organiser, currency, opened_at_ms,
                        closed_at_ms, attendances, participant_seconds, amount_minor, dispute,
                        signed_bytes
                 FROM room_receipts ORDER BY opened_at_ms, room_id, role",
            )?;
            let rows = statement.query_map([], |row| {
                let u64_at = |i: usize| row.get::<_, i64>(i).map(|v| u64::try_from(v).unwrap_or(0));
                let currency: String = row.get(5)?;
                let amount_minor = u64_at(10)?;
                Ok(RoomReceiptRow {
                    room_id: row.get(0)?,
                    role: row.get(1)?,
                    status: row.get(2)?,
                    bridge: row.get(3)?,
                    organiser: row.get(4)?,
                    amount: amount_text(&currency, amount_minor),
                    currency,
                    opened_at_ms: u64_at(6)?,
                    closed_at_ms: u64_at(7)?,
                    attendances: u64_at(8)?,
                    participant_seconds: u64_at(9)?,
                    amount_minor,
                    dispute: row.get(11)?,
                    signed_bytes: row.get(12)?,
                })
            })?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
        .await
    }
}
