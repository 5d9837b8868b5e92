//! The node's local database: usage receipts and the history of its calls.
//!
//! One SQLite file (`interlink.db`) in the data directory, in WAL mode with full
//! synchronous commits: a receipt that [`Store::save_receipt`] has returned for survives
//! a crash or power loss, and every write is one transaction, so a crash leaves either
//! the whole record or none of it. Receipts are kept as the exact signed bytes both
//! parties hold, beside the figures settlement sums. The call history feeds ranking: a
//! caller trusts its own answered and failed calls over what providers claim.
//!
//! Answered calls are recorded on both sides (`calls`): a gateway writes its row when the
//! callee answers, before the caller hears of it, and completes it when the call ends; a
//! caller writes its row when the call is over. A gateway that stops during a call (a
//! crash, `kill -9`) finds the row still open when it starts again and marks it
//! interrupted, so both sides hold a record that no receipt was issued for it.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use interlink_protocol::call::{Party, UsageReceipt};
use interlink_protocol::ranking::{CallHistory, History};
use interlink_protocol::{ProviderId, Timestamp};
use rusqlite::{Connection, OptionalExtension, ToSql, params};
use serde::Serialize;

use crate::identity;

/// The database file's name in the data directory.
pub const DATABASE_FILE: &str = "interlink.db";

/// Schema version, kept in SQLite's `user_version`. (The `calls` table came later without a
/// new version: it is only added, and older nodes ignore it.)
const SCHEMA_VERSION: i64 = 1;

/// How a call that was open when its node stopped is recorded at the next start.
pub const INTERRUPTED: &str =
    "interrupted: the node stopped during the call; no receipt was issued";

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS receipts (
    call_id        TEXT    NOT NULL,
    role           TEXT    NOT NULL CHECK (role IN ('caller', 'gateway')),
    status         TEXT    NOT NULL CHECK (status IN ('settled', 'unacknowledged', 'disputed')),
    gateway        TEXT    NOT NULL,
    caller         TEXT    NOT NULL,
    destination    TEXT    NOT NULL,
    prefix         TEXT    NOT NULL,
    offer_seq      INTEGER NOT NULL,
    currency       TEXT    NOT NULL,
    per_minute     INTEGER NOT NULL,
    setup_fee      INTEGER NOT NULL,
    billing_increment_secs INTEGER NOT NULL,
    answered_at_ms INTEGER NOT NULL,
    ended_at_ms    INTEGER NOT NULL,
    billed_seconds INTEGER NOT NULL,
    amount_minor   INTEGER NOT NULL,
    dispute        TEXT,
    signed_bytes   BLOB    NOT NULL,
    stored_at_ms   INTEGER NOT NULL,
    PRIMARY KEY (call_id, role)
);
CREATE TABLE IF NOT EXISTS call_attempts (
    id        INTEGER PRIMARY KEY,
    call_id   TEXT    NOT NULL,
    provider  TEXT    NOT NULL,
    outcome   TEXT    NOT NULL,
    answered  INTEGER NOT NULL,
    at_ms     INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS call_attempts_by_provider ON call_attempts (provider);
CREATE TABLE IF NOT EXISTS calls (
    call_id        TEXT    NOT NULL,
    role           TEXT    NOT NULL CHECK (role IN ('caller', 'gateway')),
    peer           TEXT    NOT NULL,
    destination    TEXT    NOT NULL,
    answered_at_ms INTEGER NOT NULL,
    ended_at_ms    INTEGER,
    ending         TEXT,
    PRIMARY KEY (call_id, role)
);
CREATE TABLE IF NOT EXISTS offer_seq (
    provider       TEXT    PRIMARY KEY,
    last_seq       INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS room_receipts (
    room_id        TEXT    NOT NULL,
    role           TEXT    NOT NULL CHECK (role IN ('organiser', 'bridge')),
    status         TEXT    NOT NULL CHECK (status IN ('settled', 'unacknowledged', 'disputed')),
    bridge         TEXT    NOT NULL,
    organiser      TEXT    NOT NULL,
    offer_seq      INTEGER NOT NULL,
    currency       TEXT    NOT NULL,
    per_room       INTEGER NOT NULL,
    per_participant_minute INTEGER NOT NULL,
    billing_increment_secs INTEGER NOT NULL,
    opened_at_ms   INTEGER NOT NULL,
    closed_at_ms   INTEGER NOT NULL,
    attendances    INTEGER NOT NULL,
    participant_seconds INTEGER NOT NULL,
    amount_minor   INTEGER NOT NULL,
    dispute        TEXT,
    signed_bytes   BLOB    NOT NULL,
    stored_at_ms   INTEGER NOT NULL,
    PRIMARY KEY (room_id, role)
);
";

/// Why the store failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    #[error("database {path}: {source}")]
    Open {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error("cannot create {path}: {source}")]
    Directory {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("database {path} has schema version {found}, newer than this node's {SCHEMA_VERSION}")]
    NewerSchema { path: PathBuf, found: i64 },
    #[error("database: {0}")]
    Sql(#[from] rusqlite::Error),
    #[error("the database task failed: {0}")]
    Task(#[source] tokio::task::JoinError),
    /// A panic while the connection was in use: the store refuses to go on with it.
    #[error("the database task failed: poisoned lock: another task failed inside")]
    Poisoned,
}

/// The text of each variant of a unit enum, as SQLite stores it and JSON and CSV show it,
/// with the conversions at those edges: `as_str`, `Display`, `Serialize`, `ToSql`,
/// `FromSql`, and a comparison with text.
macro_rules! stored_as_text {
    ($type:ident { $($variant:ident => $text:literal),+ $(,)? }) => {
        impl $type {
            /// Its text, as stored and shown.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($type::$variant => $text),+
                }
            }
        }

        impl std::fmt::Display for $type {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl PartialEq<&str> for $type {
            fn eq(&self, other: &&str) -> bool {
                self.as_str() == *other
            }
        }

        impl serde::Serialize for $type {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(self.as_str())
            }
        }

        impl rusqlite::types::ToSql for $type {
            fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
                Ok(self.as_str().into())
            }
        }

        impl rusqlite::types::FromSql for $type {
            fn column_result(
                value: rusqlite::types::ValueRef<'_>,
            ) -> rusqlite::types::FromSqlResult<Self> {
                match value.as_str()? {
                    $($text => Ok($type::$variant),)+
                    other => Err(rusqlite::types::FromSqlError::Other(
                        format!("{other:?} is not a {}", stringify!($type)).into(),
                    )),
                }
            }
        }
    };
}
pub(crate) use stored_as_text;

/// Which side of the call this node was.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Caller,
    Gateway,
}

stored_as_text!(Role {
    Caller => "caller",
    Gateway => "gateway",
});

impl From<Party> for Role {
    fn from(party: Party) -> Role {
        match party {
            Party::Caller => Role::Caller,
            Party::Gateway => Role::Gateway,
        }
    }
}

/// How far a receipt got.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReceiptStatus {
    /// Signed by the gateway and countersigned by the caller.
    Settled,
    /// Signed by the gateway; the caller never countersigned.
    Unacknowledged,
    /// The caller refused it.
    Disputed,
}

stored_as_text!(ReceiptStatus {
    Settled => "settled",
    Unacknowledged => "unacknowledged",
    Disputed => "disputed",
});

/// A stored receipt, as listed and exported.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ReceiptRow {
    pub call_id: String,
    pub role: Role,
    pub status: ReceiptStatus,
    /// The gateway's peer id.
    pub gateway: String,
    /// The caller's peer id.
    pub caller: String,
    pub destination: String,
    pub prefix: String,
    pub offer_seq: u64,
    pub currency: String,
    pub per_minute_minor: u64,
    pub setup_fee_minor: u64,
    pub billing_increment_secs: u32,
    pub answered_at_ms: u64,
    pub ended_at_ms: u64,
    pub billed_seconds: u64,
    pub amount_minor: u64,
    /// The amount in major units, e.g. `0.06`.
    pub amount: String,
    pub dispute: Option<String>,
    /// The signed bytes in hex: settled (both signatures) or the gateway's alone.
    pub signed_bytes_hex: String,
}

/// An answered call, as this node recorded it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CallRow {
    pub call_id: String,
    pub role: Role,
    /// The other side's peer id.
    pub peer: String,
    pub destination: String,
    pub answered_at_ms: u64,
    /// When it ended; `None` while it is in progress, or if the node stopped during it.
    pub ended_at_ms: Option<u64>,
    /// How it ended, in words; `None` while it is in progress.
    pub ending: Option<String>,
    /// The status of the receipt this node holds for it, or `none`.
    pub receipt: String,
}

/// A table of signed receipts (calls' or rooms'): keyed by (`key`, `role`), with the
/// receipt's own figures, then `dispute`, `signed_bytes` and `stored_at_ms`.
pub(crate) struct ReceiptTable {
    pub name: &'static str,
    /// The column that names the call or room.
    pub key: &'static str,
    /// The receipt's own columns, between `status` and `dispute`.
    pub figures: &'static [&'static str],
}

/// The call receipts.
const CALL_RECEIPTS: ReceiptTable = ReceiptTable {
    name: "receipts",
    key: "call_id",
    figures: &[
        "gateway",
        "caller",
        "destination",
        "prefix",
        "offer_seq",
        "currency",
        "per_minute",
        "setup_fee",
        "billing_increment_secs",
        "answered_at_ms",
        "ended_at_ms",
        "billed_seconds",
        "amount_minor",
    ],
};

/// What every receipt row holds besides its figures.
pub(crate) struct ReceiptHead {
    /// The call or room id.
    pub key: String,
    pub role: &'static str,
    pub status: ReceiptStatus,
    pub dispute: Option<String>,
    /// Settled (both signatures) or the provider's alone.
    pub signed_bytes: Vec<u8>,
    pub stored_at: Timestamp,
}

impl ReceiptTable {
    /// Stores a receipt in one statement (so one durable transaction): a new one is
    /// inserted; one stored before takes the new status, dispute and bytes unless it is
    /// settled, so that saving twice keeps the furthest status. `figures` are the values
    /// of [`ReceiptTable::figures`], in order.
    pub(crate) fn upsert(
        &self,
        connection: &Connection,
        head: ReceiptHead,
        figures: &[&dyn ToSql],
    ) -> Result<(), StoreError> {
        debug_assert_eq!(figures.len(), self.figures.len());
        let key = head.key;
        let status = head.status.as_str();
        let stored_at = to_i64(head.stored_at.0);
        let mut values: Vec<&dyn ToSql> = vec![&key, &head.role, &status];
        values.extend_from_slice(figures);
        values.extend_from_slice(&[&head.dispute, &head.signed_bytes, &stored_at]);
        connection.execute(&self.upsert_sql(), values.as_slice())?;
        Ok(())
    }

    fn upsert_sql(&self) -> String {
        let ReceiptTable { name, key, figures } = self;
        let columns: Vec<&str> = [*key, "role", "status"]
            .iter()
            .chain(figures.iter())
            .chain(["dispute", "signed_bytes", "stored_at_ms"].iter())
            .copied()
            .collect();
        let placeholders: Vec<String> = (1..=columns.len()).map(|i| format!("?{i}")).collect();
        format!(
            "INSERT INTO {name} ({}) VALUES ({})
             ON CONFLICT ({key}, role) DO UPDATE SET
                status = excluded.status, dispute = excluded.dispute,
                signed_bytes = excluded.signed_bytes, stored_at_ms = excluded.stored_at_ms
             WHERE {name}.status != 'settled'",
            columns.join(", "),
            placeholders.join(", "),
        )
    }
}

/// The node's database. Clones share one connection.
#[derive(Clone, Debug)]
pub struct Store {
    connection: Arc<Mutex<Connection>>,
}

pub(crate) fn peer_or_key(provider: &ProviderId) -> String {
    identity::peer_id(provider)
        .map(|p| p.to_string())
        .unwrap_or_else(|| provider.to_string())
}

pub(crate) fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// How long opening the database waits for other commands opening it at the same time.
const OPEN_BUSY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

enum Prepared {
    Ready(Connection),
    NewerSchema(i64),
}

/// Opens the file, switches it to WAL and brings its schema up to date in one write
/// transaction, so that two commands never interleave their schema writes.
fn open_and_prepare(path: &Path) -> Result<Prepared, rusqlite::Error> {
    let connection = Connection::open(path)?;
    connection.busy_timeout(OPEN_BUSY_TIMEOUT)?;
    let _mode: String = connection.query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))?;
    connection.execute_batch("PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;")?;
    connection.execute_batch("BEGIN IMMEDIATE")?;
    let prepared = (|| {
        let version: i64 = connection.query_row("PRAGMA user_version", [], |row| row.get(0))?;
        if version > SCHEMA_VERSION {
            return Ok(Some(version));
        }
        connection.execute_batch(SCHEMA)?;
        connection.execute_batch(&format!("PRAGMA user_version = {SCHEMA_VERSION}"))?;
        Ok(None)
    })();
    match prepared {
        Ok(None) => {
            connection.execute_batch("COMMIT")?;
            Ok(Prepared::Ready(connection))
        }
        Ok(Some(found)) => {
            connection.execute_batch("ROLLBACK")?;
            Ok(Prepared::NewerSchema(found))
        }
        Err(e) => {
            // The error is what the caller needs; a failed rollback adds nothing to it.
            let _ = connection.execute_batch("ROLLBACK");
            Err(e)
        }
    }
}

fn is_busy(error: &rusqlite::Error) -> bool {
    matches!(
        error.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
    )
}

impl Store {
    /// Opens (or creates) the database in `data_dir`.
    pub fn open(data_dir: &Path) -> Result<Store, StoreError> {
        let path = data_dir.join(DATABASE_FILE);
        let open_error = |source| StoreError::Open {
            path: path.clone(),
            source,
        };
        std::fs::create_dir_all(data_dir).map_err(|source| StoreError::Directory {
            path: data_dir.to_owned(),
            source,
        })?;
        // Commands started together on one new home (two `interlink call`s) race to
        // create the file, switch it to WAL and write the schema. SQLite answers some of
        // those races with "database is locked" at once, without calling the busy
        // handler (the switch to WAL, a read lock that would have to become a write
        // lock): the whole opening is retried until the same deadline the busy handler
        // has.
        let deadline = std::time::Instant::now() + OPEN_BUSY_TIMEOUT;
        let mut pause = std::time::Duration::from_millis(2);
        let connection = loop {
            match open_and_prepare(&path) {
                Ok(Prepared::Ready(connection)) => break connection,
                Ok(Prepared::NewerSchema(found)) => {
                    return Err(StoreError::NewerSchema { path, found });
                }
                Err(e) if is_busy(&e) && std::time::Instant::now() < deadline => {
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(std::time::Duration::from_millis(100));
                }
                Err(e) => return Err(open_error(e)),
            }
        };
        Ok(Store {
            connection: Arc::new(Mutex::new(connection)),
        })
    }

    /// A database that lives in memory only: for nodes without a data directory (the demo,
    /// benchmarks). Nothing survives the process.
    pub fn in_memory() -> Result<Store, StoreError> {
        let connection = Connection::open_in_memory()?;
        connection.execute_batch(SCHEMA)?;
        Ok(Store {
            connection: Arc::new(Mutex::new(connection)),
        })
    }

    /// Runs `work` on the connection off the async threads.
    pub(crate) async fn with<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let connection = Arc::clone(&self.connection);
        tokio::task::spawn_blocking(move || {
            let mut connection = connection.lock().map_err(|_| StoreError::Poisoned)?;
            work(&mut connection)
        })
        .await
        .map_err(StoreError::Task)?
    }

    /// Stores a receipt in one durable transaction. `signed_bytes` are the settled bytes,
    /// or the gateway-signed ones when not settled. Saving the same call twice keeps the
    /// furthest status (settled over the others).
    pub async fn save_receipt(
        &self,
        role: Role,
        status: ReceiptStatus,
        receipt: &UsageReceipt,
        signed_bytes: &[u8],
        dispute: Option<String>,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let r = receipt.clone();
        let head = ReceiptHead {
            key: r.call_id.to_string(),
            role: role.as_str(),
            status,
            dispute,
            signed_bytes: signed_bytes.to_vec(),
            stored_at: now,
        };
        self.with(move |connection| {
            CALL_RECEIPTS.upsert(
                connection,
                head,
                params![
                    peer_or_key(&r.offer.provider),
                    peer_or_key(&r.caller),
                    r.destination.to_string(),
                    r.prefix.to_string(),
                    to_i64(r.offer.seq),
                    r.tariff.currency.code(),
                    to_i64(r.tariff.per_minute),
                    to_i64(r.tariff.setup_fee),
                    r.tariff.billing_increment_secs,
                    to_i64(r.answered_at.0),
                    to_i64(r.ended_at.0),
                    to_i64(r.billed_seconds),
                    to_i64(r.amount.minor_units),
                ],
            )
        })
        .await
    }

    /// Records an answered call in one durable transaction: `ended` is `None` when it
    /// has just been answered, else when and how it ended. Recording it again completes it.
    pub async fn record_call(
        &self,
        role: Role,
        call_id: String,
        peer: ProviderId,
        destination: String,
        answered_at: Timestamp,
        ended: Option<(Timestamp, String)>,
    ) -> Result<(), StoreError> {
        self.with(move |connection| {
            let (ended_at, ending) = ended.map(|(at, how)| (to_i64(at.0), how)).unzip();
            connection.execute(
                "INSERT INTO calls (call_id, role, peer, destination, answered_at_ms, ended_at_ms, ending)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                 ON CONFLICT (call_id, role) DO UPDATE SET
                    ended_at_ms = excluded.ended_at_ms, ending = excluded.ending",
                params![
                    call_id,
                    role.as_str(),
                    peer_or_key(&peer),
                    destination,
                    to_i64(answered_at.0),
                    ended_at,
                    ending,
                ],
            )?;
            Ok(())
        })
        .await
    }

    /// The `seq` for `provider`'s next offer, at least `at_least` and above every `seq`
    /// this database has handed out for it, committed before it returns: a gateway that
    /// restarts, even with its clock moved back, never signs a `seq` below one it
    /// published, which holders would refuse as stale.
    pub async fn next_offer_seq(
        &self,
        provider: ProviderId,
        at_least: u64,
    ) -> Result<u64, StoreError> {
        self.with(move |connection| {
            let transaction = connection.transaction()?;
            let last: Option<i64> = transaction
                .query_row(
                    "SELECT last_seq FROM offer_seq WHERE provider = ?1",
                    params![provider.to_string()],
                    |row| row.get(0),
                )
                .optional()?;
            let after_last =
                last.map_or(0, |last| u64::try_from(last).unwrap_or(0).saturating_add(1));
            let seq = at_least.max(after_last).min(i64::MAX as u64);
            transaction.execute(
                "INSERT INTO offer_seq (provider, last_seq) VALUES (?1, ?2)
                 ON CONFLICT (provider) DO UPDATE SET last_seq = excluded.last_seq",
                params![provider.to_string(), to_i64(seq)],
            )?;
            transaction.commit()?;
            Ok(seq)
        })
        .await
    }

    /// Marks the calls of `role` that were still open as [`INTERRUPTED`]: for a node that
    /// starts again after stopping during calls. Returns how many there were.
    pub async fn close_interrupted_calls(&self, role: Role) -> Result<usize, StoreError> {
        self.with(move |connection| {
            Ok(connection.execute(
                "UPDATE calls SET ending = ?1 WHERE role = ?2 AND ending IS NULL",
                params![INTERRUPTED, role.as_str()],
            )?)
        })
        .await
    }

    /// Every answered call this node recorded, oldest first, with its receipt's status.
    pub async fn calls(&self) -> Result<Vec<CallRow>, StoreError> {
        self.with(|connection| {
            let mut statement = connection.prepare(
                "SELECT c.call_id, c.role, c.peer, c.destination, c.answered_at_ms, c.ended_at_ms,
                        c.ending, COALESCE(r.status, 'none')
                 FROM calls c LEFT JOIN receipts r ON r.call_id = c.call_id AND r.role = c.role
                 ORDER BY c.answered_at_ms, c.call_id, c.role",
            )?;
            let rows = statement.query_map([], |row| {
                let u64_of = |v: i64| u64::try_from(v).unwrap_or(0);
                Ok(CallRow {
                    call_id: row.get(0)?,
                    role: row.get(1)?,
                    peer: row.get(2)?,
                    destination: row.get(3)?,
                    answered_at_ms: u64_of(row.get(4)?),
                    ended_at_ms: row.get::<_, Option<i64>>(5)?.map(u64_of),
                    ending: row.get(6)?,
                    receipt: row.get(7)?,
                })
            })?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
        .await
    }

    /// Every stored receipt, oldest answer first.
    pub async fn receipts(&self) -> Result<Vec<ReceiptRow>, StoreError> {
        self.with(|connection| {
            let mut statement = connection.prepare(
                "SELECT call_id, role, status, gateway, caller, destination, prefix, offer_seq, currency,
                        per_minute, setup_fee, billing_increment_secs, answered_at_ms, ended_at_ms,
                        billed_seconds, amount_minor, dispute, signed_bytes
                 FROM receipts ORDER BY answered_at_ms, call_id, role",
            )?;
            let rows = statement.query_map([], |row| {
                let u64_at = |i: usize| row.get::<_, i64>(i).map(|v| u64::try_from(v).unwrap_or(0));
                let currency: String = row.get(8)?;
                let amount_minor = u64_at(15)?;
                let bytes: Vec<u8> = row.get(17)?;
                Ok(ReceiptRow {
                    call_id: row.get(0)?,
                    role: row.get(1)?,
                    status: row.get(2)?,
                    gateway: row.get(3)?,
                    caller: row.get(4)?,
                    destination: row.get(5)?,
                    prefix: row.get(6)?,
                    offer_seq: u64_at(7)?,
                    amount: amount_text(&currency, amount_minor),
                    currency,
                    per_minute_minor: u64_at(9)?,
                    setup_fee_minor: u64_at(10)?,
                    billing_increment_secs: row.get(11)?,
                    answered_at_ms: u64_at(12)?,
                    ended_at_ms: u64_at(13)?,
                    billed_seconds: u64_at(14)?,
                    amount_minor,
                    dispute: row.get(16)?,
                    signed_bytes_hex: bytes.iter().map(|b| format!("{b:02x}")).collect(),
                })
            })?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
        .await
    }

    /// The signed bytes stored for a call, if any.
    pub async fn receipt_bytes(
        &self,
        call_id: String,
        role: Role,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        self.with(move |connection| {
            Ok(connection
                .query_row(
                    "SELECT signed_bytes FROM receipts WHERE call_id = ?1 AND role = ?2",
                    params![call_id, role.as_str()],
                    |row| row.get(0),
                )
                .optional()?)
        })
        .await
    }

    /// Remembers how an attempt to call through `provider` went.
    pub async fn record_attempt(
        &self,
        call_id: String,
        provider: ProviderId,
        outcome: String,
        answered: bool,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        self.with(move |connection| {
            connection.execute(
                "INSERT INTO call_attempts (call_id, provider, outcome, answered, at_ms) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![call_id, provider.to_string(), outcome, answered, to_i64(now.0)],
            )?;
            Ok(())
        })
        .await
    }

    /// Attempts and answers per provider, for ranking.
    pub async fn history(&self) -> Result<History, StoreError> {
        self.with(|connection| {
            let mut statement = connection.prepare(
                "SELECT provider, COUNT(*), SUM(answered) FROM call_attempts GROUP BY provider",
            )?;
            let rows = statement.query_map([], |row| {
                Ok((
                    row.get::<_, String>(0)?,
                    row.get::<_, i64>(1)?,
                    row.get::<_, i64>(2)?,
                ))
            })?;
            let mut history = History::new();
            for row in rows {
                let (provider, attempts, answered) = row?;
                if let Some(provider) = parse_provider(&provider) {
                    let count = |n: i64| u32::try_from(n).unwrap_or(u32::MAX);
                    history.insert(
                        provider,
                        CallHistory {
                            attempts: count(attempts),
                            answered: count(answered),
                        },
                    );
                }
            }
            Ok(history)
        })
        .await
    }
}

fn parse_provider(hex: &str) -> Option<ProviderId> {
    if hex.len() != 64 {
        return None;
    }
    let mut bytes = [0u8; 32];
    for (byte, pair) in bytes.iter_mut().zip(hex.as_bytes().chunks_exact(2)) {
        *byte = u8::from_str_radix(std::str::from_utf8(pair).ok()?, 16).ok()?;
    }
    Some(ProviderId::from_bytes(bytes))
}

pub(crate) fn amount_text(currency: &str, minor: u64) -> String {
    match currency.parse::<interlink_protocol::Currency>() {
        Ok(currency) => interlink_protocol::Money::new(currency, minor).decimal(),
        Err(_) => minor.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use interlink_protocol::call::{CallId, Invite, OfferRef};
    use interlink_protocol::offer::Tariff;
    use interlink_protocol::{Currency, E164, Prefix, SecretKey};

    #[test]
    fn commands_started_together_on_one_new_home_all_open_it() {
        for _ in 0..5 {
            let dir = tempfile::tempdir().unwrap();
            let start = std::sync::Barrier::new(6);
            let opened: Vec<Result<Store, StoreError>> = std::thread::scope(|scope| {
                let handles: Vec<_> = (0..6)
                    .map(|_| {
                        scope.spawn(|| {
                            start.wait();
                            Store::open(dir.path())
                        })
                    })
                    .collect();
                handles
                    .into_iter()
                    .map(|h| h.join().unwrap_or_else(|_| panic!("open panicked")))
                    .collect()
            });
            for result in opened {
                if let Err(e) = result {
                    panic!("{e}");
                }
            }
        }
    }

    fn receipt(call: u8) -> UsageReceipt {
        let invite = Invite {
            call_id: CallId::from_bytes([call; 16]),
            destination: E164::parse("+447700900123").unwrap(),
            offer: OfferRef {
                provider: SecretKey::from_seed(&[2; 32]).provider_id(),
                seq: 4,
            },
            prefix: Prefix::new("44").unwrap(),
            tariff: Tariff {
                currency: Currency::new("GBP").unwrap(),
                setup_fee: 1,
                per_minute: 2,
                billing_increment_secs: 60,
            },
            caller: SecretKey::from_seed(&[1; 32]).provider_id(),
            sdp_offer: String::new(),
            sent_at: Timestamp(0),
        };
        UsageReceipt::for_call(&invite, Timestamp(1_000), Timestamp(31_000))
    }

    #[tokio::test]
    async fn offer_seqs_only_go_up_across_reopening_and_clock_steps() {
        let dir = tempfile::tempdir().unwrap();
        let provider = SecretKey::from_seed(&[7; 32]).provider_id();
        let other = SecretKey::from_seed(&[8; 32]).provider_id();
        let store = Store::open(dir.path()).unwrap();
        let first = store.next_offer_seq(provider, 1_000_180_000).await;
        assert_eq!(first.ok(), Some(1_000_180_000));
        drop(store);
        // Restarted with the clock three minutes back: still above what was published.
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(
            store.next_offer_seq(provider, 1_000_000_000).await.ok(),
            Some(1_000_180_001)
        );
        // Once the clock passes it, the clock leads again; each provider on its own.
        assert_eq!(
            store.next_offer_seq(provider, 1_000_200_000).await.ok(),
            Some(1_000_200_000)
        );
        assert_eq!(store.next_offer_seq(other, 5).await.ok(), Some(5));
    }

    #[tokio::test]
    async fn receipts_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Store::open(dir.path()).unwrap();
            store
                .save_receipt(
                    Role::Caller,
                    ReceiptStatus::Settled,
                    &receipt(1),
                    b"signed",
                    None,
                    Timestamp(5),
                )
                .await
                .unwrap();
        }
        let store = Store::open(dir.path()).unwrap();
        let rows = store.receipts().await.unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].status, "settled");
        assert_eq!(
            (
                rows[0].billed_seconds,
                rows[0].amount_minor,
                rows[0].amount.as_str()
            ),
            (60, 3, "0.03")
        );
        let bytes = store
            .receipt_bytes(rows[0].call_id.clone(), Role::Caller)
            .await
            .unwrap();
        assert_eq!(bytes.as_deref(), Some(&b"signed"[..]));
    }

    #[tokio::test]
    async fn a_settled_receipt_is_not_downgraded() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let r = receipt(2);
        store
            .save_receipt(
                Role::Gateway,
                ReceiptStatus::Unacknowledged,
                &r,
                b"a",
                None,
                Timestamp(1),
            )
            .await
            .unwrap();
        store
            .save_receipt(
                Role::Gateway,
                ReceiptStatus::Settled,
                &r,
                b"b",
                None,
                Timestamp(2),
            )
            .await
            .unwrap();
        store
            .save_receipt(
                Role::Gateway,
                ReceiptStatus::Unacknowledged,
                &r,
                b"c",
                None,
                Timestamp(3),
            )
            .await
            .unwrap();
        let rows = store.receipts().await.unwrap();
        assert_eq!(
            (
                rows.len(),
                rows[0].status.as_str(),
                rows[0].signed_bytes_hex.as_str()
            ),
            (1, "settled", "62")
        );
    }

    #[test]
    fn statuses_and_roles_keep_their_text_in_json_and_sqlite() {
        use crate::conference::store::RoomRole;
        let connection = Connection::open_in_memory().unwrap();
        fn check<T>(connection: &Connection, value: T, text: &str)
        where
            T: rusqlite::types::FromSql + ToSql + Serialize + PartialEq + std::fmt::Debug,
        {
            assert_eq!(serde_json::to_value(&value).unwrap(), text);
            let stored: String = connection
                .query_row("SELECT ?1", [&value], |row| row.get(0))
                .unwrap();
            assert_eq!(stored, text);
            let back: T = connection
                .query_row("SELECT ?1", [text], |row| row.get(0))
                .unwrap();
            assert_eq!(back, value);
        }
        check(&connection, ReceiptStatus::Settled, "settled");
        check(&connection, ReceiptStatus::Unacknowledged, "unacknowledged");
        check(&connection, ReceiptStatus::Disputed, "disputed");
        check(&connection, Role::Caller, "caller");
        check(&connection, Role::Gateway, "gateway");
        check(&connection, RoomRole::Organiser, "organiser");
        check(&connection, RoomRole::Bridge, "bridge");
        let unknown =
            connection.query_row("SELECT 'lost'", [], |row| row.get::<_, ReceiptStatus>(0));
        assert!(unknown.is_err());
        assert_eq!(Role::from(Party::Gateway), Role::Gateway);
        assert!(ReceiptStatus::Settled == "settled");
    }

    #[test]
    fn every_receipt_table_takes_its_upsert() {
        let connection = Connection::open_in_memory().unwrap();
        connection.execute_batch(SCHEMA).unwrap();
        for table in [&CALL_RECEIPTS, &crate::conference::store::ROOM_RECEIPTS] {
            let sql = table.upsert_sql();
            // Prepared: every column exists, and there is a placeholder for each.
            let statement = connection.prepare(&sql).unwrap();
            assert_eq!(statement.parameter_count(), table.figures.len() + 6);
            assert!(sql.ends_with(&format!("WHERE {}.status != 'settled'", table.name)));
        }
    }

    #[test]
    fn a_settled_room_receipt_is_not_downgraded() {
        let connection = Connection::open_in_memory().unwrap();
        connection.execute_batch(SCHEMA).unwrap();
        let table = &crate::conference::store::ROOM_RECEIPTS;
        let save = |status, bytes: &[u8]| {
            let head = ReceiptHead {
                key: "room".into(),
                role: "bridge",
                status,
                dispute: None,
                signed_bytes: bytes.to_vec(),
                stored_at: Timestamp(1),
            };
            let figures = params!["b", "o", 1, "GBP", 10, 2, 60, 0, 60_000, 2, 120, 14];
            table.upsert(&connection, head, figures).unwrap();
        };
        save(ReceiptStatus::Unacknowledged, b"a");
        save(ReceiptStatus::Settled, b"b");
        save(ReceiptStatus::Disputed, b"c");
        let (status, bytes): (String, Vec<u8>) = connection
            .query_row(
                "SELECT status, signed_bytes FROM room_receipts",
                [],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .unwrap();
        assert_eq!((status.as_str(), bytes.as_slice()), ("settled", &b"b"[..]));
    }

    #[test]
    fn the_database_is_in_wal_mode_with_full_sync() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let connection = store.connection.lock().unwrap();
        let mode: String = connection
            .query_row("PRAGMA journal_mode", [], |row| row.get(0))
            .unwrap();
        let synchronous: i64 = connection
            .query_row("PRAGMA synchronous", [], |row| row.get(0))
            .unwrap();
        // 2 is FULL: a commit is on disk before it returns.
        assert_eq!((mode.as_str(), synchronous), ("wal", 2));
    }

    #[tokio::test]
    async fn an_open_call_is_marked_interrupted_and_shows_its_receipt() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let peer = SecretKey::from_seed(&[1; 32]).provider_id();
        let r = receipt(3);
        for call in ["open", "done", "caller"] {
            let role = if call == "caller" {
                Role::Caller
            } else {
                Role::Gateway
            };
            store
                .record_call(
                    role,
                    call.into(),
                    peer,
                    "+447700900123".into(),
                    Timestamp(10),
                    None,
                )
                .await
                .unwrap();
        }
        store
            .record_call(
                Role::Gateway,
                "done".into(),
                peer,
                "+447700900123".into(),
                Timestamp(10),
                Some((Timestamp(20), "settled".into())),
            )
            .await
            .unwrap();
        let done = r.call_id.to_string();
        store
            .record_call(
                Role::Gateway,
                done.clone(),
                peer,
                "+447700900123".into(),
                Timestamp(11),
                None,
            )
            .await
            .unwrap();
        store
            .save_receipt(
                Role::Gateway,
                ReceiptStatus::Unacknowledged,
                &r,
                b"r",
                None,
                Timestamp(30),
            )
            .await
            .unwrap();
        // Only the gateway's open calls; the one whose receipt was stored shows it.
        assert_eq!(
            store.close_interrupted_calls(Role::Gateway).await.unwrap(),
            2
        );
        let calls = store.calls().await.unwrap();
        let summary: Vec<(&str, &str, Option<&str>, &str)> = calls
            .iter()
            .map(|c| {
                (
                    c.call_id.as_str(),
                    c.role.as_str(),
                    c.ending.as_deref(),
                    c.receipt.as_str(),
                )
            })
            .collect();
        assert_eq!(
            summary,
            vec![
                ("caller", "caller", None, "none"),
                ("done", "gateway", Some("settled"), "none"),
                ("open", "gateway", Some(INTERRUPTED), "none"),
                (
                    done.as_str(),
                    "gateway",
                    Some(INTERRUPTED),
                    "unacknowledged"
                ),
            ]
        );
    }

    #[tokio::test]
    async fn history_counts_attempts_and_answers_per_provider() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let a = SecretKey::from_seed(&[5; 32]).provider_id();
        let b = SecretKey::from_seed(&[6; 32]).provider_id();
        for (provider, answered) in [(a, true), (a, false), (a, true), (b, false)] {
            store
                .record_attempt("c".into(), provider, "x".into(), answered, Timestamp(0))
                .await
                .unwrap();
        }
        let history = store.history().await.unwrap();
        assert_eq!(
            history.get(&a),
            Some(&CallHistory {
                attempts: 3,
                answered: 2
            })
        );
        assert_eq!(
            history.get(&b),
            Some(&CallHistory {
                attempts: 1,
                answered: 0
            })
        );
    }
}
