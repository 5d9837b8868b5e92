//! `interlink store-writer` (hidden): writes receipts and call records into a node's
//! database as fast as it can, for the crash-safety test, which kills it (SIGKILL) at
//! random points. It goes through the node's real [`Store`]; after each call's writes have
//! returned it prints `committed N`, a promise the test then holds the database to.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use interlink_node::store::{ReceiptStatus, Role, Store};
use interlink_protocol::call::{CallId, Invite, OfferRef, SignedReceipt, UsageReceipt};
use interlink_protocol::offer::Tariff;
use interlink_protocol::{Currency, E164, Prefix, SecretKey, Timestamp};

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The data directory whose interlink.db to write.
    #[arg(long)]
    dir: PathBuf,
    /// The number of the first call to write.
    #[arg(long, default_value_t = 0)]
    first: u64,
    /// How many calls to write.
    #[arg(long, default_value_t = 1_000_000)]
    count: u64,
}

/// The key seeds of the writer's gateway and caller: the test verifies with them.
pub(crate) const GATEWAY_SEED: [u8; 32] = [0x6a; 32];
pub(crate) const CALLER_SEED: [u8; 32] = [0x6b; 32];

/// The call id of call `n`: its number in the first 8 bytes.
pub(crate) fn call_id(n: u64) -> CallId {
    let mut bytes = [0u8; 16];
    bytes[..8].copy_from_slice(&n.to_be_bytes());
    CallId::from_bytes(bytes)
}

pub(crate) async fn run(args: Args) -> anyhow::Result<()> {
    let store = Store::open(&args.dir)?;
    let gateway = SecretKey::from_seed(&GATEWAY_SEED);
    let caller = SecretKey::from_seed(&CALLER_SEED);
    let destination = E164::parse("+447700900123")?;
    let tariff = Tariff {
        currency: Currency::new("GBP")?,
        setup_fee: 1,
        per_minute: 2,
        billing_increment_secs: 60,
    };
    let mut stdout = std::io::stdout().lock();
    for n in args.first..args.first.saturating_add(args.count) {
        let invite = Invite {
            call_id: call_id(n),
            destination: destination.clone(),
            offer: OfferRef {
                provider: gateway.provider_id(),
                seq: 1,
            },
            prefix: Prefix::new("44")?,
            tariff,
            caller: caller.provider_id(),
            sdp_offer: String::new(),
            sent_at: Timestamp(n * 1000),
        };
        let answered = Timestamp(n * 1000 + 100);
        let ended = Timestamp(n * 1000 + 100 + 61_000);
        let receipt = UsageReceipt::for_call(&invite, answered, ended);
        let settled = SignedReceipt::sign(receipt, &gateway)?.countersign(&caller)?;
        let id = invite.call_id.to_string();
        store
            .save_receipt(
                Role::Caller,
                ReceiptStatus::Settled,
                settled.receipt(),
                settled.as_bytes(),
                None,
                ended,
            )
            .await?;
        store
            .record_call(
                Role::Caller,
                id.clone(),
                gateway.provider_id(),
                destination.to_string(),
                answered,
                Some((ended, "the caller hung up (by the caller)".into())),
            )
            .await?;
        store
            .record_attempt(id, gateway.provider_id(), "answered".into(), true, ended)
            .await?;
        writeln!(stdout, "committed {n}")
            .and_then(|()| stdout.flush())
            .context("stdout")?;
    }
    Ok(())
}
