//! `engine report`: work on the results of runs that already happened.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use clap::{Args, Subcommand};

use crate::exit;

#[derive(Args, Debug)]
#[command(about = "Compare runs, merge workers' runs, re-render reports")]
pub struct ReportArgs {
    #[command(subcommand)]
    command: ReportCommand,
}

#[derive(Subcommand, Debug)]
enum ReportCommand {
    Combine(CombineArgs),
    Compare(CompareArgs),
    Html(HtmlArgs),
    Merge(crate::merge::MergeArgs),
    Live(crate::live::LiveArgs),
    Windows(crate::windows::WindowsArgs),
}

#[derive(Args, Debug)]
#[command(
    about = "Several runs side by side: combined.csv and combined.html",
    long_about = "Several runs side by side (results folders or summary JSON files, in the order given): \
        combined.csv holds every run's summary.csv rows after a column naming the run; combined.html \
        shows their plans, verdicts and key figures in columns, each against the first run, bars of \
        throughput and p99, and every profile's levels in one table. Exit 2 when a run cannot be read.",
    after_help = "Example:\n  engine report combine results/2026-12-01/* results/2026-12-04/* --out results/combined"
)]
struct CombineArgs {
    /// Results folders or summary JSON files, the first being the reference
    #[arg(required = true, num_args = 1..)]
    runs: Vec<PathBuf>,
    /// Where to write combined.csv and combined.html (made if missing)
    #[arg(long, default_value = ".")]
    out: PathBuf,
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
        ReportCommand::Live(l) => crate::live::main(l),
        ReportCommand::Windows(w) => match crate::windows::print(&w, &mut std::io::stdout().lock()) {
            Ok(()) => exit::OK,
            Err(e) => crate::fail(exit::USAGE, &e),
        },
        ReportCommand::Combine(c) => match combine(&c) {
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
    let summary = engine_results::folder::read_summary(dir)?;
    let path = if dir.is_dir() { dir.join("report.html") } else { dir.with_file_name("report.html") };
    let json = serde_json::to_string_pretty(&summary)?;
    std::fs::write(&path, engine_results::html::render(&json))
        .with_context(|| format!("cannot write '{}'", path.display()))?;
    Ok(path)
}

fn combine(args: &CombineArgs) -> anyhow::Result<()> {
    let runs = engine_results::combine::read(&args.runs)?;
    for path in engine_results::combine::write(&args.out, &runs)? {
        println!("wrote {}", path.display());
    }
    Ok(())
}

fn compare(args: &CompareArgs) -> anyhow::Result<u8> {
    let base = engine_results::folder::read_summary(&args.baseline)?;
    let cur = engine_results::folder::read_summary(&args.current)?;
    let rows = engine_results::compare::compare(&base, &cur, args.max_regression);
    let differences = engine_results::compare::plan_differences(&base, &cur);
    if !differences.is_empty() {
        println!("warning: the two runs' plans differ ({}): the figures compare the plans too", differences.join("; "));
    }
    println!("{:<12}{:>14}{:>14}{:>12}", "figure", "baseline", "current", "change");
    for row in &rows {
        let show = |x: f64| {
            if row.name == "error_rate" {
                format!("{:.3}%", x * 100.0)
            } else {
                format!("{x:.3}{}", row.unit)
            }
        };
        let flag = if row.regressed { "  REGRESSED" } else { "" };
        let change = if row.absolute {
            format!("{:+.2} pp", (row.current - row.baseline) * 100.0)
        } else {
            format!("{:+.1}%", row.change * 100.0)
        };
        println!("{:<12}{:>14}{:>14}{change:>12}{flag}", row.name, show(row.baseline), show(row.current));
    }
    let regressed: Vec<&str> = rows.iter().filter(|r| r.regressed).map(|r| r.name).collect();
    if regressed.is_empty() {
        println!("no figure regressed by more than {:.1}%", args.max_regression * 100.0);
        Ok(exit::OK)
    } else {
        println!("regressed by more than {:.1}%: {}", args.max_regression * 100.0, regressed.join(", "));
        Ok(exit::THRESHOLD)
    }
}
