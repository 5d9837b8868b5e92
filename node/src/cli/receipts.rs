//! `interlink receipts`: the signed receipts this node holds, for people and settlement.

use std::path::PathBuf;

use anyhow::Context;
use comfy_table::presets::UTF8_FULL_CONDENSED;
use comfy_table::{Cell, CellAlignment, ContentArrangement, Table};
use interlink_node::config::Config;
use interlink_node::listing::short_peer_id;
use interlink_node::store::{ReceiptRow, ReceiptStatus, Role, Store};

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The node's config file [default: $INTERLINK_HOME/config.toml].
    #[arg(long)]
    config: Option<PathBuf>,
    /// Print a JSON array.
    #[arg(long, conflicts_with = "csv")]
    json: bool,
    /// Print CSV with a header row, one receipt a line, for settlement.
    #[arg(long)]
    csv: bool,
}

pub(crate) async fn run(args: Args) -> anyhow::Result<()> {
    let path = args.config.unwrap_or_else(super::default_config_path);
    let config = Config::load(&path)?;
    let store = Store::open(&config.node.data_dir)?;
    let rows = store.receipts().await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
    } else if args.csv {
        let mut writer = csv::Writer::from_writer(std::io::stdout());
        for row in &rows {
            writer.serialize(row).context("cannot write CSV")?;
        }
        writer.flush()?;
    } else {
        print_table(&rows);
    }
    Ok(())
}

fn print_table(rows: &[ReceiptRow]) {
    if rows.is_empty() {
        println!("No receipts yet.");
        return;
    }
    let mut table = Table::new();
    table
        .load_style(UTF8_FULL_CONDENSED)
        .set_content_arrangement(ContentArrangement::Dynamic)
        .set_header([
            "Answered (UTC)",
            "Call",
            "Role",
            "Status",
            "Gateway",
            "Caller",
            "Destination",
            "Billed",
            "Amount",
        ]);
    for row in rows {
        let answered = std::time::UNIX_EPOCH + std::time::Duration::from_millis(row.answered_at_ms);
        table.add_row(vec![
            Cell::new(humantime::format_rfc3339_seconds(answered)),
            Cell::new(&row.call_id[..8]),
            Cell::new(row.role),
            Cell::new(row.status),
            Cell::new(short_peer_id(&row.gateway)),
            Cell::new(short_peer_id(&row.caller)),
            Cell::new(&row.destination),
            Cell::new(format!("{} s", row.billed_seconds)).set_alignment(CellAlignment::Right),
            Cell::new(format!("{} {}", row.amount, row.currency))
                .set_alignment(CellAlignment::Right),
        ]);
    }
    println!("{table}");
    let mut totals: std::collections::BTreeMap<(&str, &str), u64> =
        std::collections::BTreeMap::new();
    for row in rows.iter().filter(|r| r.status == ReceiptStatus::Settled) {
        *totals
            .entry((row.role.as_str(), row.currency.as_str()))
            .or_default() += row.amount_minor;
    }
    for ((role, currency), minor) in totals {
        let amount = currency
            .parse::<interlink_protocol::Currency>()
            .map(|c| interlink_protocol::Money::new(c, minor).to_string())
            .unwrap_or_else(|_| format!("{minor} {currency}"));
        let side = if role == Role::Caller.as_str() {
            "owed to gateways"
        } else {
            "owed by callers"
        };
        println!("Settled, {side}: {amount}");
    }
}
