//! `engine report`: work on the results of runs that already happened.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use clap::{Args, Subcommand};
use serde_json::Value;

use crate::{exit, results};

#[derive(Args, Debug)]
#[command(about = "Compare runs, merge workers' runs, re-render reports")]
pub struct ReportArgs {
    #[command(subcommand)]
    command: ReportCommand,
}

#[derive(Subcommand, Debug)]
enum ReportCommand {
    Compare(CompareArgs),
    Html(HtmlArgs),
    Merge(crate::merge::MergeArgs),
    Windows(crate::windows::WindowsArgs),
}

#[derive(Args, Debug)]
#[command(about = "Re-render report.html in a results folder from its summary.json")]
struct HtmlArgs {
    /// A results folder
    dir: PathBuf,
}

#[derive(Args, Debug)]
#[command(
    about = "Side-by-side key figures of two runs; exit 4 when one regressed beyond the bound",
    long_about = "Side-by-side key figures of two runs (results folders or summary JSON files): throughput, \
        latency p50/p95/p99 and error rate. A figure regressed when it is worse than the baseline by more \
        than --max-regression (throughput lower, latency or error rate higher). Exit 0: none regressed; \
        4: at least one did (a CI gate); 2: a file is missing or not a summary.",
    after_help = "Example:\n  engine report compare results/20261122-200000 results/20261123-090000 --max-regression 20%"
)]
struct CompareArgs {
    /// The reference run: a results folder or its summary.json
    baseline: PathBuf,
    /// The run to judge
    current: PathBuf,
    /// How much worse a figure may be, e.g. 20% or 0.2
    #[arg(long, default_value = "20%", value_parser = parse_share)]
    max_regression: f64,
}

fn parse_share(text: &str) -> Result<f64, String> {
    let v = match text.trim().strip_suffix('%') {
        Some(p) => p.trim().parse::<f64>().map(|v| v / 100.0),
        None => text.trim().parse::<f64>(),
    };
    v.ok().filter(|v| v.is_finite() && *v >= 0.0).ok_or_else(|| format!("invalid bound '{text}' (examples: 20%, 0.2)"))
}

pub fn main(args: ReportArgs) -> u8 {
    match args.command {
        ReportCommand::Merge(m) => crate::merge::main(m),
        ReportCommand::Windows(w) => match crate::windows::print(&w, &mut std::io::stdout().lock()) {
            Ok(()) => exit::OK,
            Err(e) => crate::fail(exit::USAGE, &e),
        },
        ReportCommand::Compare(c) => match compare(&c) {
            Ok(code) => code,
            Err(e) => crate::fail(exit::USAGE, &e),
        },
        ReportCommand::Html(h) => match html(&h.dir) {
            Ok(path) => {
                println!("wrote {}", path.display());
                exit::OK
            }
            Err(e) => crate::fail(exit::USAGE, &e),
        },
    }
}

fn html(dir: &Path) -> anyhow::Result<PathBuf> {
    let summary = load(dir)?;
    let path = if dir.is_dir() { dir.join("report.html") } else { dir.with_file_name("report.html") };
    std::fs::write(&path, crate::html::render(&serde_json::to_string_pretty(&summary)?))
        .with_context(|| format!("cannot write '{}'", path.display()))?;
    Ok(path)
}

fn load(path: &Path) -> anyhow::Result<Value> {
    let file = if path.is_dir() { path.join("summary.json") } else { path.to_path_buf() };
    if file.exists() && !file.is_file() {
        anyhow::bail!("'{}' is neither a results folder nor a summary.json", path.display());
    }
    let text = engine_runtime::files::read_limited_string(&file, results::MAX_SUMMARY)
        .with_context(|| format!("cannot read '{}'", file.display()))?;
    let v: Value = serde_json::from_str(&text).with_context(|| format!("'{}' is not JSON", file.display()))?;
    if !v["requests"].is_u64() || !v["latency_ms"].is_object() {
        anyhow::bail!("'{}' is not an engine summary (no requests or latency_ms)", file.display());
    }
    Ok(v)
}

/// One compared figure: its name, how to read it, and whether higher is better.
struct Figure {
    name: &'static str,
    read: fn(&Value) -> f64,
    higher_is_better: bool,
    unit: &'static str,
}

fn error_rate(v: &Value) -> f64 {
    let requests = v["requests"].as_f64().unwrap_or(0.0);
    let errors = v["errors"]["total"].as_f64().unwrap_or(0.0);
    let failed: f64 = v["status"]
        .as_object()
        .map(|m| m.iter().filter(|(k, _)| k.as_str() >= "500").filter_map(|(_, n)| n.as_f64()).sum())
        .unwrap_or(0.0);
    if requests + errors == 0.0 {
        0.0
    } else {
        (errors + failed) / (requests + errors)
    }
}

const FIGURES: [Figure; 5] = [
    Figure { name: "rps", read: |v| v["rps"].as_f64().unwrap_or(0.0), higher_is_better: true, unit: "/s" },
    Figure {
        name: "p50",
        read: |v| v["latency_ms"]["p50"].as_f64().unwrap_or(0.0),
        higher_is_better: false,
        unit: "ms",
    },
    Figure {
        name: "p95",
        read: |v| v["latency_ms"]["p95"].as_f64().unwrap_or(0.0),
        higher_is_better: false,
        unit: "ms",
    },
    Figure {
        name: "p99",
        read: |v| v["latency_ms"]["p99"].as_f64().unwrap_or(0.0),
        higher_is_better: false,
        unit: "ms",
    },
    Figure { name: "error_rate", read: error_rate, higher_is_better: false, unit: "" },
];

/// Error rates near zero make relative changes meaningless: below this floor (0.1%) the
/// change is measured against the floor.
const ERROR_RATE_FLOOR: f64 = 0.001;

fn compare(args: &CompareArgs) -> anyhow::Result<u8> {
    let base = load(&args.baseline)?;
    let cur = load(&args.current)?;
    println!("{:<12}{:>14}{:>14}{:>10}", "figure", "baseline", "current", "change");
    let mut regressed = Vec::new();
    for f in &FIGURES {
        let (b, c) = ((f.read)(&base), (f.read)(&cur));
        let denominator = if f.name == "error_rate" { b.max(ERROR_RATE_FLOOR) } else { b };
        let change = if denominator > 0.0 { (c - b) / denominator } else { 0.0 };
        let worse = if f.higher_is_better { -change } else { change };
        let flag = if worse > args.max_regression { "  REGRESSED" } else { "" };
        let show =
            |x: f64| if f.name == "error_rate" { format!("{:.3}%", x * 100.0) } else { format!("{x:.3}{}", f.unit) };
        println!("{:<12}{:>14}{:>14}{:>+9.1}%{flag}", f.name, show(b), show(c), change * 100.0);
        if !flag.is_empty() {
            regressed.push(f.name);
        }
    }
    if regressed.is_empty() {
        println!("no figure regressed by more than {:.1}%", args.max_regression * 100.0);
        Ok(exit::OK)
    } else {
        println!("regressed by more than {:.1}%: {}", args.max_regression * 100.0, regressed.join(", "));
        Ok(exit::THRESHOLD)
    }
}
