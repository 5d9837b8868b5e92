//! Reports of a scenario's runs: a table for the terminal, raw samples as CSV and JSON,
//! SVG plots, and a markdown report that links them.

use std::io::Write;
use std::path::{Path, PathBuf};

use comfy_table::presets::UTF8_FULL_CONDENSED;
use comfy_table::{Cell, CellAlignment, ContentArrangement, Table};
use plotters::prelude::*;

use crate::measure::{LookupSample, RunResult, Summary};
use crate::scenario::{KadSettings, Method, Scenario};

/// Why a report could not be written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReportError {
    #[error("cannot write {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("CSV: {0}")]
    Csv(#[from] csv::Error),
    #[error("JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("plot {path}: {reason}")]
    Plot { path: PathBuf, reason: String },
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> ReportError + '_ {
    move |source| ReportError::Io {
        path: path.to_owned(),
        source,
    }
}

/// The label of a run: its discovery method, and its Kademlia settings when not ours.
fn label(summary: &Summary) -> String {
    match summary.settings {
        KadSettings::Project => summary.method.label().to_owned(),
        other => format!("{}, {}", summary.method.label(), other.label()),
    }
}

/// The summary table.
pub fn table(results: &[RunResult]) -> String {
    let mut table = Table::new();
    table
        .load_style(UTF8_FULL_CONDENSED)
        .set_content_arrangement(ContentArrangement::Dynamic)
        .set_header([
            "discovery",
            "nodes",
            "churn/min",
            "lookups",
            "p50 / p95 / p99 ms",
            "in median RTTs p50 / p99",
            "round trips p50",
            "true best found",
            "all covering found",
            "none",
            "req/lookup p50 (mean)",
            "KiB/lookup p50 (mean)",
            "new gateway found p50/p95 ms",
            "new price visible p50/p95 ms",
            "cache p50 ms, age p50 s",
            "stale/withdrawn/expired returned",
            "RSS/node MiB",
            "CPU s",
            "routing table (full)",
        ]);
    for summary in results.iter().map(RunResult::summary) {
        let right = |text: String| Cell::new(text).set_alignment(CellAlignment::Right);
        let rtts = match (summary.p50_rtts, summary.p99_rtts) {
            (Some(p50), Some(p99)) => format!("{p50:.1} / {p99:.1}"),
            _ => "–".to_owned(),
        };
        let best = if summary.best_judged == 0 {
            "–".to_owned()
        } else {
            format!("{:.1} %", summary.best_found * 100.0)
        };
        let cache = if summary.cached == 0 {
            "–".to_owned()
        } else {
            format!(
                "{:.3}, {:.1}",
                summary.cache_p50_ms,
                summary.cache_age_p50_ms / 1000.0
            )
        };
        let visible = if summary.visible + summary.never_visible == 0 {
            "–".to_owned()
        } else {
            format!(
                "{:.0} / {:.0} ({} never)",
                summary.visible_p50_ms, summary.visible_p95_ms, summary.never_visible
            )
        };
        table.add_row(vec![
            Cell::new(label(&summary)),
            right(summary.total_nodes.to_string()),
            right(format!("{:.0}", summary.churn_per_minute)),
            right(summary.lookups.to_string()),
            right(format!(
                "{:.1} / {:.1} / {:.1}",
                summary.p50_ms, summary.p95_ms, summary.p99_ms
            )),
            right(rtts),
            right(format!("{:.0}", summary.rounds_p50)),
            right(best),
            right(format!("{:.1} %", summary.all_found * 100.0)),
            right(format!("{:.1} %", summary.none_found * 100.0)),
            right(format!(
                "{:.0} ({:.1})",
                summary.requests_p50, summary.requests_per_lookup
            )),
            right(format!(
                "{:.1} ({:.1})",
                summary.bytes_p50 / 1024.0,
                summary.bytes_per_lookup / 1024.0
            )),
            right(format!(
                "{:.0} / {:.0} ({} never)",
                summary.discoverable_p50_ms,
                summary.discoverable_p95_ms,
                summary.gateways_never_discovered
            )),
            right(visible),
            right(cache),
            right(format!(
                "{} / {} / {}",
                summary.stale_returned, summary.withdrawn_returned, summary.expired_returned
            )),
            right(format!("{:.2}", summary.rss_per_node_mib)),
            right(format!("{:.0}", summary.cpu_seconds)),
            right(format!(
                "{:.0} ({:.0})",
                summary.routing_table_mean, summary.routing_table_ideal
            )),
        ]);
    }
    table.to_string()
}

fn ratio(a: f64, b: f64) -> String {
    if b > 0.0 {
        format!("{:.2}", a / b)
    } else {
        "–".to_owned()
    }
}

/// Comparisons of the runs of each point: Interlink's settings against libp2p's defaults,
/// and the offer index against provider records (ratios of the first's figure to the
/// second's; below 1 means lower).
pub fn comparison(results: &[RunResult]) -> Vec<String> {
    let mut lines = Vec::new();
    let summaries: Vec<Summary> = results.iter().map(RunResult::summary).collect();
    for ours in summaries
        .iter()
        .filter(|s| s.settings == KadSettings::Project)
    {
        let same_point = |other: &&Summary| {
            other.total_nodes == ours.total_nodes && other.churn_per_minute == ours.churn_per_minute
        };
        if let Some(theirs) = summaries
            .iter()
            .filter(same_point)
            .find(|s| s.settings == KadSettings::Libp2pDefault && s.method == ours.method)
        {
            lines.push(format!(
                "{} nodes, churn {:.0}/min, {}: Interlink's Kademlia settings against libp2p's defaults: \
                 latency p50 ×{}, p95 ×{}; all found ×{} ({:.1} % vs {:.1} %); requests per lookup ×{}; \
                 withdrawn returned {} vs {}",
                ours.total_nodes,
                ours.churn_per_minute,
                ours.method.label(),
                ratio(ours.p50_ms, theirs.p50_ms),
                ratio(ours.p95_ms, theirs.p95_ms),
                ratio(ours.all_found, theirs.all_found),
                ours.all_found * 100.0,
                theirs.all_found * 100.0,
                ratio(ours.requests_per_lookup, theirs.requests_per_lookup),
                ours.withdrawn_returned,
                theirs.withdrawn_returned,
            ));
        }
        if ours.method != Method::Index {
            continue;
        }
        if let Some(before) = summaries
            .iter()
            .filter(same_point)
            .find(|s| s.settings == ours.settings && s.method == Method::Providers)
        {
            lines.push(format!(
                "{} nodes: the offer index against provider records (before): latency p50 ×{}, \
                 p95 ×{}, p99 ×{}; requests per lookup (p50) ×{}; KiB per lookup (p50) ×{}; \
                 true best found {:.1} % vs {:.1} %; all covering found {:.1} % vs {:.1} %; \
                 new price visible p50 ×{}; memory per node ×{}; CPU ×{}",
                ours.total_nodes,
                ratio(ours.p50_ms, before.p50_ms),
                ratio(ours.p95_ms, before.p95_ms),
                ratio(ours.p99_ms, before.p99_ms),
                ratio(ours.requests_p50, before.requests_p50),
                ratio(ours.bytes_p50, before.bytes_p50),
                ours.best_found * 100.0,
                before.best_found * 100.0,
                ours.all_found * 100.0,
                before.all_found * 100.0,
                ratio(ours.visible_p50_ms, before.visible_p50_ms),
                ratio(ours.rss_per_node_mib, before.rss_per_node_mib),
                ratio(ours.cpu_seconds, before.cpu_seconds),
            ));
        }
    }
    lines
}

/// One row of `timeline.csv`: a timer's lateness, or a churn event and how long it took.
#[derive(serde::Serialize)]
struct TimelineRow {
    method: &'static str,
    at_ms: u64,
    what: &'static str,
    ms: f64,
}

/// Writes everything into `dir`: `lookups.csv`, `calls.csv`, `timeline.csv`, `summary.json`, the plots
/// that apply and `report.md`. Returns the report's path.
pub fn write(
    dir: &Path,
    scenario: &Scenario,
    results: &[RunResult],
) -> Result<PathBuf, ReportError> {
    std::fs::create_dir_all(dir).map_err(io_error(dir))?;
    let mut lookups = csv::Writer::from_path(dir.join("lookups.csv"))?;
    let mut calls = csv::Writer::from_path(dir.join("calls.csv"))?;
    for result in results {
        for sample in &result.lookups {
            lookups.serialize(LookupRow::new(result, sample))?;
        }
        for c in &result.calls {
            calls.serialize(CallRow {
                settings: result.settings.label(),
                nodes: result.total_nodes,
                churn_per_minute: result.churn_per_minute,
                at_ms: c.at_ms,
                answered: c.answered,
                setup_ms: c.setup_ms,
                failovers: c.failovers,
                outcome: &c.outcome,
            })?;
        }
    }
    lookups.flush().map_err(io_error(dir))?;
    calls.flush().map_err(io_error(dir))?;
    // The load's timeline, to set slow lookups beside what the process was doing then.
    let mut timeline = csv::Writer::from_path(dir.join("timeline.csv"))?;
    for result in results {
        let method = result.method.label();
        for lag in &result.timer_lag {
            timeline.serialize(TimelineRow {
                method,
                at_ms: lag.at_ms,
                what: "timer lag",
                ms: lag.ms,
            })?;
        }
        for event in &result.churn_events {
            timeline.serialize(TimelineRow {
                method,
                at_ms: event.at_ms,
                what: event.event,
                ms: event.took_ms,
            })?;
        }
    }
    timeline.flush().map_err(io_error(dir))?;
    let summaries: Vec<Summary> = results.iter().map(RunResult::summary).collect();
    let json = serde_json::to_string_pretty(
        &serde_json::json!({ "scenario": scenario, "summaries": summaries, "machine": machine() }),
    )?;
    let summary_path = dir.join("summary.json");
    std::fs::write(&summary_path, json).map_err(io_error(&summary_path))?;

    let mut plots = vec![
        ("Lookup latency", "latency_cdf.svg"),
        ("Requests per lookup", "requests_cdf.svg"),
        ("Bytes per lookup", "bytes_cdf.svg"),
    ];
    cdf(
        &dir.join("latency_cdf.svg"),
        results,
        "Lookup latency (cumulative)",
        "discovery + verification + ranking (ms)",
        |l| l.latency_ms,
    )?;
    cdf(
        &dir.join("requests_cdf.svg"),
        results,
        "Requests per lookup (cumulative)",
        "requests the caller sent",
        |l| l.requests as f64,
    )?;
    cdf(
        &dir.join("bytes_cdf.svg"),
        results,
        "Bytes per lookup (cumulative)",
        "KiB through the caller's connections",
        |l| l.bytes as f64 / 1024.0,
    )?;
    if results.iter().any(|r| r.median_rtt_ms.is_some()) {
        cdf(
            &dir.join("round_trips_cdf.svg"),
            results,
            "Lookup latency in median round trips (cumulative)",
            "latency / median round trip between two nodes",
            |l| l.latency_ms,
        )?;
        plots.push(("Lookup latency in round trips", "round_trips_cdf.svg"));
    }
    if !scenario.sweep.churn_per_minute.is_empty() {
        success_against_churn(&dir.join("success_vs_churn.svg"), results)?;
        plots.push(("Success against churn", "success_vs_churn.svg"));
    }
    if !scenario.sweep.nodes.is_empty() {
        memory_against_nodes(&dir.join("memory_vs_nodes.svg"), results)?;
        plots.push(("Memory against nodes", "memory_vs_nodes.svg"));
    }

    let report_path = dir.join("report.md");
    let mut report = std::fs::File::create(&report_path).map_err(io_error(&report_path))?;
    let mut text = format!(
        "# Simulation `{}`\n\n{}\n\nMachine: {}.\n\n",
        scenario.name,
        scenario.description,
        machine()
    );
    text += &format!("```\n{}\n```\n\n", table(results));
    for result in results {
        let covering: Vec<String> = result
            .covering
            .iter()
            .map(|(code, count)| format!("+{code} {count}"))
            .collect();
        if !covering.is_empty() {
            text += &format!(
                "Gateways covering each country when the load began ({}, {} nodes): {}.\n\n",
                label(&result.summary()),
                result.summary().total_nodes,
                covering.join(", ")
            );
        }
    }
    for summary in results.iter().map(RunResult::summary) {
        text += &format!(
            "Load ({}, {} nodes): {:.2} of {} cores busy on average while the lookups ran; a \
             timer due every {} ms fired late by {:.1} ms at p50, {:.1} ms at p99 and {:.0} ms \
             at most (the wait of any ready task, a lookup's next step among them, for a \
             core; every sample in timeline.csv beside the joins, leaves and new prices). \
             While the slowest 5 % of lookups ran it was {:.1} ms late on average, while the \
             rest ran {:.1} ms.\n\n",
            label(&summary),
            summary.total_nodes,
            summary.load_cores_busy,
            std::thread::available_parallelism().map_or(1, usize::from),
            crate::measure::LAG_PROBE_PERIOD.as_millis(),
            summary.timer_lag_p50_ms,
            summary.timer_lag_p99_ms,
            summary.timer_lag_max_ms,
            summary.lag_slowest_ms,
            summary.lag_rest_ms,
        );
        if summary.holder_answers > 0 {
            text += &format!(
                "Holders ({}, {} nodes): {} nodes answered {} lookups as holders of a key; the \
                 busiest answered {:.1} % of them.\n\n",
                label(&summary),
                summary.total_nodes,
                summary.holders_answering,
                summary.holder_answers,
                summary.busiest_holder_share * 100.0
            );
        }
    }
    let comparisons = comparison(results);
    if !comparisons.is_empty() {
        text +=
            "Comparisons (the ratio of the first figure to the second; below 1 means lower):\n\n";
        for line in comparisons {
            text += &format!("- {line}\n");
        }
        text += "\n";
    }
    for (title, file) in plots {
        text += &format!("## {title}\n\n![{title}]({file})\n\n");
    }
    text += "Raw samples: [lookups.csv](lookups.csv), [calls.csv](calls.csv), [timeline.csv](timeline.csv); figures: [summary.json](summary.json).\n";
    report
        .write_all(text.as_bytes())
        .map_err(io_error(&report_path))?;
    Ok(report_path)
}

/// One lookup with its run, flat for CSV.
#[derive(serde::Serialize)]
struct LookupRow<'a> {
    settings: &'static str,
    method: &'static str,
    policy: &'a str,
    best_found: Option<bool>,
    best_expected: usize,
    best_note: &'a str,
    rounds: u32,
    holders: usize,
    dials: usize,
    nodes: usize,
    churn_per_minute: f64,
    at_ms: u64,
    caller: usize,
    destination: &'a str,
    latency_ms: f64,
    requests: u64,
    bytes: u64,
    expected: usize,
    found_expected: usize,
    found_total: usize,
    outcome: crate::measure::Outcome,
    stale_returned: usize,
    withdrawn_returned: usize,
    expired_returned: usize,
    crashed_returned: usize,
}

impl<'a> LookupRow<'a> {
    fn new(result: &RunResult, l: &'a crate::measure::LookupSample) -> LookupRow<'a> {
        LookupRow {
            settings: result.settings.label(),
            method: l.method,
            policy: &l.policy,
            best_found: l.best_found,
            best_expected: l.best_expected,
            best_note: &l.best_note,
            rounds: l.rounds,
            holders: l.holders,
            dials: l.dials,
            nodes: result.total_nodes,
            churn_per_minute: result.churn_per_minute,
            at_ms: l.at_ms,
            caller: l.caller,
            destination: &l.destination,
            latency_ms: l.latency_ms,
            requests: l.requests,
            bytes: l.bytes,
            expected: l.expected,
            found_expected: l.found_expected,
            found_total: l.found_total,
            outcome: l.outcome,
            stale_returned: l.stale_returned,
            withdrawn_returned: l.withdrawn_returned,
            expired_returned: l.expired_returned,
            crashed_returned: l.crashed_returned,
        }
    }
}

/// One call with its run, flat for CSV.
#[derive(serde::Serialize)]
struct CallRow<'a> {
    settings: &'static str,
    nodes: usize,
    churn_per_minute: f64,
    at_ms: u64,
    answered: bool,
    setup_ms: Option<f64>,
    failovers: usize,
    outcome: &'a str,
}

/// The machine a run was on, for the report.
pub fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let memory = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        })
        .map_or_else(
            || "unknown memory".into(),
            |kib| format!("{:.0} GiB", kib / 1024.0 / 1024.0),
        );
    format!("{cores} cores ({cpu}), {memory}")
}

const COLOURS: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
];

fn plot_error(path: &Path) -> impl Fn(String) -> ReportError + '_ {
    move |reason| ReportError::Plot {
        path: path.to_owned(),
        reason,
    }
}

/// The distribution of `value` over each run's lookups, one line per run. For the
/// round-trip plot, a run's values are divided by its median round trip.
fn cdf(
    path: &Path,
    results: &[RunResult],
    title: &str,
    x_desc: &str,
    value: impl Fn(&LookupSample) -> f64,
) -> Result<(), ReportError> {
    let fail = plot_error(path);
    let in_rtts = path
        .file_name()
        .is_some_and(|name| name.to_string_lossy().starts_with("round_trips"));
    let values = |result: &RunResult| -> Vec<f64> {
        let scale = if in_rtts {
            result.median_rtt_ms.filter(|rtt| *rtt > 0.0).unwrap_or(1.0)
        } else {
            1.0
        };
        let mut values: Vec<f64> = result.lookups.iter().map(|l| value(l) / scale).collect();
        values.sort_by(f64::total_cmp);
        values
    };
    let all: Vec<Vec<f64>> = results.iter().map(values).collect();
    let p99 = all
        .iter()
        .map(|v| crate::measure::percentile(v, 99.0))
        .fold(1e-9, f64::max);
    let max = all
        .iter()
        .flat_map(|v| v.last().copied())
        .fold(1e-9, f64::max)
        .min(p99 * 1.5);
    let root = SVGBackend::new(path, (900, 520)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| fail(e.to_string()))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 22))
        .margin(16)
        .x_label_area_size(44)
        .y_label_area_size(56)
        .build_cartesian_2d(0f64..max, 0f64..1f64)
        .map_err(|e| fail(e.to_string()))?;
    chart
        .configure_mesh()
        .x_desc(x_desc)
        .y_desc("fraction of lookups")
        .draw()
        .map_err(|e| fail(e.to_string()))?;
    for (i, (result, values)) in results.iter().zip(&all).enumerate() {
        let n = values.len().max(1) as f64;
        let points: Vec<(f64, f64)> = values
            .iter()
            .enumerate()
            .map(|(k, &v)| (v.min(max), (k + 1) as f64 / n))
            .collect();
        let colour = COLOURS[i % COLOURS.len()];
        let label = format!(
            "{} nodes, churn {:.0}/min, {}",
            result.total_nodes,
            result.churn_per_minute,
            label(&result.summary())
        );
        chart
            .draw_series(LineSeries::new(points, colour.stroke_width(2)))
            .map_err(|e| fail(e.to_string()))?
            .label(label)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 18, y)], colour.stroke_width(2))
            });
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .draw()
        .map_err(|e| fail(e.to_string()))?;
    root.present().map_err(|e| fail(e.to_string()))
}

/// The share of lookups that found every expected gateway, against the churn rate.
fn success_against_churn(path: &Path, results: &[RunResult]) -> Result<(), ReportError> {
    let fail = plot_error(path);
    let max_churn = results
        .iter()
        .map(|r| r.churn_per_minute)
        .fold(1.0, f64::max);
    let root = SVGBackend::new(path, (900, 520)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| fail(e.to_string()))?;
    let low = results
        .iter()
        .map(|r| r.summary().all_found)
        .fold(1.0, f64::min);
    let floor = (low - 0.05).clamp(0.0, 0.95);
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "Lookups that found every covering gateway, against churn",
            ("sans-serif", 22),
        )
        .margin(16)
        .x_label_area_size(44)
        .y_label_area_size(56)
        .build_cartesian_2d(0f64..max_churn * 1.05, floor..1.0f64)
        .map_err(|e| fail(e.to_string()))?;
    chart
        .configure_mesh()
        .x_desc("joins and leaves per minute (each)")
        .y_desc("fraction of lookups")
        .draw()
        .map_err(|e| fail(e.to_string()))?;
    for (i, settings) in [KadSettings::Project, KadSettings::Libp2pDefault]
        .into_iter()
        .enumerate()
    {
        let points: Vec<(f64, f64)> = results
            .iter()
            .filter(|r| r.settings == settings)
            .map(|r| (r.churn_per_minute, r.summary().all_found))
            .collect();
        if points.is_empty() {
            continue;
        }
        let colour = COLOURS[i];
        chart
            .draw_series(LineSeries::new(points.clone(), colour.stroke_width(2)))
            .map_err(|e| fail(e.to_string()))?
            .label(settings.label())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 18, y)], colour.stroke_width(2))
            });
        chart
            .draw_series(
                points
                    .into_iter()
                    .map(|p| Circle::new(p, 4, colour.filled())),
            )
            .map_err(|e| fail(e.to_string()))?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerLeft)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .draw()
        .map_err(|e| fail(e.to_string()))?;
    root.present().map_err(|e| fail(e.to_string()))
}

/// Memory per node against the number of nodes.
fn memory_against_nodes(path: &Path, results: &[RunResult]) -> Result<(), ReportError> {
    let fail = plot_error(path);
    let points: Vec<(f64, f64)> = results
        .iter()
        .map(|r| (r.total_nodes as f64, r.summary().rss_per_node_mib))
        .collect();
    let max_nodes = points.iter().map(|p| p.0).fold(1.0, f64::max);
    let max_mib = points.iter().map(|p| p.1).fold(0.5, f64::max);
    let root = SVGBackend::new(path, (900, 520)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| fail(e.to_string()))?;
    let mut chart = ChartBuilder::on(&root)
        .caption("Process memory per node", ("sans-serif", 22))
        .margin(16)
        .x_label_area_size(44)
        .y_label_area_size(56)
        .build_cartesian_2d(0f64..max_nodes * 1.05, 0f64..max_mib * 1.2)
        .map_err(|e| fail(e.to_string()))?;
    chart
        .configure_mesh()
        .x_desc("nodes in the process")
        .y_desc("RSS / nodes (MiB)")
        .draw()
        .map_err(|e| fail(e.to_string()))?;
    let colour = COLOURS[0];
    chart
        .draw_series(LineSeries::new(points.clone(), colour.stroke_width(2)))
        .map_err(|e| fail(e.to_string()))?;
    chart
        .draw_series(
            points
                .into_iter()
                .map(|p| Circle::new(p, 4, colour.filled())),
        )
        .map_err(|e| fail(e.to_string()))?;
    root.present().map_err(|e| fail(e.to_string()))
}
