//! The ranked list of gateways as people and scripts see it: a table or JSON.

use comfy_table::presets::UTF8_FULL_CONDENSED;
use comfy_table::{Cell, CellAlignment, ContentArrangement, Table};
use interlink_protocol::ranking::Ranking;
use serde::Serialize;

use crate::identity;

/// One gateway in the ranked list, with every field a script may want.
#[derive(Clone, Debug, Serialize)]
pub struct GatewayRow {
    pub rank: usize,
    pub name: String,
    pub peer_id: String,
    pub short_peer_id: String,
    pub kind: String,
    pub region: String,
    /// The most specific of the offer's prefixes that covers the destination.
    pub prefix: String,
    pub currency: String,
    /// In major units, e.g. `"0.02"`.
    pub price_per_minute: String,
    pub price_per_minute_minor: u64,
    pub setup_fee: String,
    pub setup_fee_minor: u64,
    pub billing_increment_secs: u32,
    pub quality: QualityRow,
    pub rtt_ms: Option<f64>,
    pub score: f64,
    pub breakdown: String,
    pub reasons: Vec<String>,
    pub seq: u64,
}

/// The quality the provider claims.
#[derive(Clone, Debug, Serialize)]
pub struct QualityRow {
    pub mos: f64,
    pub answer_seizure_ratio: f64,
    pub post_dial_delay_ms: u32,
    /// Answer ratio after the caller's own calls are taken into account.
    pub estimated_answer_ratio: f64,
}

/// An offer that was found but cannot carry the call.
#[derive(Clone, Debug, Serialize)]
pub struct ExcludedRow {
    pub name: String,
    pub peer_id: String,
    pub reason: String,
}

fn peer_of(provider: &interlink_protocol::ProviderId) -> String {
    identity::peer_id(provider)
        .map(|p| p.to_string())
        .unwrap_or_else(|| provider.to_string())
}

/// A peer id shortened for a table: `12D3…` and its last six characters.
pub fn short_peer_id(peer: &str) -> String {
    let tail = peer.get(peer.len().saturating_sub(6)..).unwrap_or(peer);
    format!("{}…{tail}", peer.get(..4).unwrap_or(""))
}

/// The candidates of `ranking`, best first.
pub fn rows(ranking: &Ranking<'_>) -> Vec<GatewayRow> {
    ranking
        .candidates
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let offer = c.offer.offer();
            let tariff = &c.route.tariff;
            let peer_id = peer_of(&c.offer.provider());
            GatewayRow {
                rank: i + 1,
                name: offer.display_name.clone(),
                short_peer_id: short_peer_id(&peer_id),
                peer_id,
                kind: offer.kind.to_string(),
                region: offer.region.clone(),
                prefix: c.route.prefix.to_string(),
                currency: tariff.currency.to_string(),
                price_per_minute: tariff.per_minute_money().decimal(),
                price_per_minute_minor: tariff.per_minute,
                setup_fee: tariff.setup_fee_money().decimal(),
                setup_fee_minor: tariff.setup_fee,
                billing_increment_secs: tariff.billing_increment_secs,
                quality: QualityRow {
                    mos: offer.quality.mos.value(),
                    answer_seizure_ratio: offer.quality.answer_seizure_ratio.fraction(),
                    post_dial_delay_ms: offer.quality.post_dial_delay_ms,
                    estimated_answer_ratio: c.score.answer_ratio,
                },
                rtt_ms: c.score.rtt.map(|rtt| rtt.as_secs_f64() * 1000.0),
                score: c.score.total,
                breakdown: c.score.breakdown(),
                reasons: c.reasons(),
                seq: c.offer.seq(),
            }
        })
        .collect()
}

/// The offers of `ranking` that cannot carry the call, with why.
pub fn excluded(ranking: &Ranking<'_>) -> Vec<ExcludedRow> {
    ranking
        .excluded
        .iter()
        .map(|e| ExcludedRow {
            name: e.offer.offer().display_name.clone(),
            peer_id: peer_of(&e.offer.provider()),
            reason: e.reason.to_string(),
        })
        .collect()
}

/// The rows as a table for a terminal.
pub fn table(rows: &[GatewayRow]) -> String {
    let mut table = Table::new();
    table
        .load_style(UTF8_FULL_CONDENSED)
        .set_content_arrangement(ContentArrangement::Dynamic)
        .set_header([
            "#", "Service", "Peer", "Prefix", "Per min", "Setup", "Quality", "RTT", "Score",
        ]);
    for row in rows {
        let rtt = row
            .rtt_ms
            .map_or_else(|| "–".to_owned(), |ms| format!("{ms:.1} ms"));
        table.add_row(vec![
            Cell::new(row.rank).set_alignment(CellAlignment::Right),
            Cell::new(&row.name),
            Cell::new(&row.short_peer_id),
            Cell::new(&row.prefix),
            Cell::new(format!("{} {}", row.price_per_minute, row.currency))
                .set_alignment(CellAlignment::Right),
            Cell::new(format!("{} {}", row.setup_fee, row.currency))
                .set_alignment(CellAlignment::Right),
            Cell::new(format!(
                "MOS {:.2} · ASR {:.0} % · PDD {:.1} s",
                row.quality.mos,
                row.quality.answer_seizure_ratio * 100.0,
                f64::from(row.quality.post_dial_delay_ms) / 1000.0
            )),
            Cell::new(rtt).set_alignment(CellAlignment::Right),
            Cell::new(format!("{:.3}", row.score)).set_alignment(CellAlignment::Right),
        ]);
    }
    table.to_string()
}
