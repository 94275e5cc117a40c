//! `engine report merge`: the results of workers that ran one plan together, joined into one
//! honest run. Latency histograms are added from every worker's latency.hlog (an exact merge,
//! never an average of percentiles), counts are summed from the summaries, time series are
//! aligned on wall-clock seconds, thresholds are judged again on the merged run, and the
//! output is a results folder like a single run's.

use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Context};
use base64::Engine as _;
use clap::Args;
use engine_results::stats::{new_histogram, ErrorKind, Totals};
use engine_results::summary::{Latency, Point, Summary, Threshold};
use engine_results::thresholds::{Expr, Figures};
use hdrhistogram::serialization::interval_log::{IntervalLogIterator, LogEntry};
use hdrhistogram::serialization::Deserializer;
use hdrhistogram::Histogram;
use serde_json::Value;

use crate::{exit, results};

#[derive(Args, Debug)]
#[command(
    about = "Merge the results of several workers (or .hlog files) into one run",
    long_about = "Merge the results folders of workers that ran one plan together (engine blast --worker-index I \
        --worker-count N --start-at T) into one results folder: latency histograms added exactly from every \
        latency.hlog, counts summed, time series aligned on wall-clock seconds, the workers' thresholds (and \
        --threshold) judged on the merged run. Bare .hlog files merge latency only. Exit 4 when a threshold fails.",
    after_help = "Example:\n  engine report merge results/w0 results/w1 results/w2 --out results/merged"
)]
pub struct MergeArgs {
    /// Results folders (or latency .hlog files)
    #[arg(required = true, num_args = 1..)]
    inputs: Vec<PathBuf>,
    /// The merged results folder (default: `results/<timestamp>-merged/`)
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// More thresholds to judge the merged run by (repeatable)
    #[arg(long, value_name = "EXPR", value_parser = Expr::parse)]
    threshold: Vec<Expr>,
}

/// One interval of a latency log: its absolute start and length (seconds) and histograms.
pub(crate) struct Interval {
    pub start: f64,
    pub len: f64,
    pub corrected: Histogram<u64>,
    pub uncorrected: Histogram<u64>,
}

/// One worker's latency log.
pub(crate) struct Hlog {
    pub intervals: Vec<Interval>,
    /// A digest of the file's bytes: two inputs with the same one are one run given twice.
    digest: u64,
}

/// Reads a latency.hlog written by `engine blast` (corrected untagged, uncorrected tagged).
pub(crate) fn read_hlog(path: &Path) -> anyhow::Result<Hlog> {
    let bytes = engine_runtime::files::read_limited(path, results::MAX_HLOG)
        .with_context(|| format!("cannot read '{}'", path.display()))?;
    let mut base = 0.0;
    // Corrected and uncorrected histograms of one interval come as two lines.
    let mut open: BTreeMap<u64, Interval> = BTreeMap::new();
    let mut de = Deserializer::new();
    for (n, entry) in IntervalLogIterator::new(&bytes).enumerate() {
        let at = || format!("'{}', entry {}", path.display(), n + 1);
        match entry.map_err(|e| anyhow!("{}: not an interval log ({e:?})", at()))? {
            LogEntry::StartTime(t) | LogEntry::BaseTime(t) => base = t.as_secs_f64(),
            LogEntry::Interval(h) => {
                let raw = base64::engine::general_purpose::STANDARD
                    .decode(h.encoded_histogram())
                    .with_context(|| format!("{}: bad base64 (a truncated or edited log?)", at()))?;
                let hist: Histogram<u64> =
                    de.deserialize(&mut raw.as_slice()).map_err(|e| anyhow!("{}: bad histogram ({e:?})", at()))?;
                let start = base + h.start_timestamp().as_secs_f64();
                let key = (start * 1000.0).round() as u64;
                let e = open.entry(key).or_insert_with(|| Interval {
                    start,
                    len: h.duration().as_secs_f64(),
                    corrected: new_histogram(),
                    uncorrected: new_histogram(),
                });
                match h.tag().map(|t| t.as_str()) {
                    Some("uncorrected") => e.uncorrected = hist,
                    _ => e.corrected = hist,
                }
            }
        }
    }
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    bytes.hash(&mut hasher);
    Ok(Hlog { intervals: open.into_values().collect(), digest: hasher.finish() })
}

/// One input: its log, and its summary when it is a results folder.
struct Input {
    name: String,
    hlog: Hlog,
    summary: Option<Value>,
}

fn read_input(path: &Path) -> anyhow::Result<Input> {
    if path.is_dir() {
        let summary: Value = serde_json::from_str(
            &engine_runtime::files::read_limited_string(&path.join("summary.json"), results::MAX_SUMMARY)
                .with_context(|| format!("{} is not a results folder (no summary.json)", path.display()))?,
        )
        .with_context(|| format!("{}/summary.json is not JSON", path.display()))?;
        Ok(Input {
            name: path.display().to_string(),
            hlog: read_hlog(&path.join("latency.hlog"))?,
            summary: Some(summary),
        })
    } else if path.is_file() {
        Ok(Input { name: path.display().to_string(), hlog: read_hlog(path)?, summary: None })
    } else if path.exists() {
        bail!("'{}' is neither a results folder nor a .hlog file", path.display())
    } else {
        bail!("'{}' does not exist", path.display())
    }
}

fn u(v: &Value, path: &[&str]) -> u64 {
    path.iter().fold(v, |v, k| &v[*k]).as_u64().unwrap_or(0)
}

fn f(v: &Value, path: &[&str]) -> f64 {
    path.iter().fold(v, |v, k| &v[*k]).as_f64().unwrap_or(0.0)
}

pub fn main(args: MergeArgs) -> u8 {
    match merge(&args) {
        Ok(code) => code,
        Err(e) => crate::fail(exit::USAGE, &e),
    }
}

fn merge(args: &MergeArgs) -> anyhow::Result<u8> {
    let inputs = args.inputs.iter().map(|p| read_input(p)).collect::<anyhow::Result<Vec<_>>>()?;
    no_run_twice(&args.inputs, &inputs)?;
    let mut totals = Totals::default();
    // Exact: every worker's every interval added into one histogram.
    for i in &inputs {
        for iv in &i.hlog.intervals {
            totals.latency.add(&iv.corrected).map_err(|e| anyhow!("{}: {e:?}", i.name))?;
            totals.latency_uncorrected.add(&iv.uncorrected).map_err(|e| anyhow!("{}: {e:?}", i.name))?;
        }
    }
    let summaries: Vec<&Value> = inputs.iter().filter_map(|i| i.summary.as_ref()).collect();
    let (mut conns, mut peak_open, mut abandoned) = (0, 0, 0);
    let mut target = String::new();
    for s in &summaries {
        let c = &mut totals.counters;
        c.requests += u(s, &["requests"]);
        for (k, kind) in ErrorKind::ALL.iter().enumerate() {
            c.errors[k] += u(s, &["errors", kind.name()]);
        }
        if let Some(map) = s["status"].as_object() {
            for (code, n) in map {
                c.status_n(code.parse().unwrap_or(0), n.as_u64().unwrap_or(0));
            }
        }
        c.bytes_sent += u(s, &["bytes", "sent"]);
        c.bytes_received += u(s, &["bytes", "received"]);
        c.conns_opened += u(s, &["connections", "opened"]);
        conns += u(s, &["conns"]);
        peak_open += u(s, &["connections", "peak_open"]);
        abandoned += u(s, &["abandoned"]);
        if target.is_empty() {
            target = s["target"].as_str().unwrap_or_default().to_string();
        }
    }
    if summaries.is_empty() {
        // Latency logs alone: the histogram's count is the count of responses.
        totals.counters.requests = totals.latency.len();
    }
    counts_match_logs(&inputs)?;

    // The merged run spans the earliest start to the latest end, on the wall clock.
    let all = inputs.iter().flat_map(|i| i.hlog.intervals.iter());
    let t0 = all.clone().map(|iv| iv.start).fold(f64::INFINITY, f64::min);
    let t1 = all.map(|iv| iv.start + iv.len).fold(f64::NEG_INFINITY, f64::max);
    if !t0.is_finite() {
        bail!("no latency intervals in the inputs");
    }
    let duration_s = summaries.iter().map(|s| f(s, &["start_unix_s"]) + f(s, &["duration_s"])).fold(t1, f64::max)
        - summaries.iter().map(|s| f(s, &["start_unix_s"])).filter(|v| *v > 0.0).fold(t0, f64::min);
    let mut summary = Summary::new(&target, conns, summaries.len(), &totals, duration_s);
    summary.model = match summaries.first().and_then(|s| s["model"].as_str()) {
        Some("open") => "open",
        _ => "closed",
    };
    summary.connections.peak_open = peak_open;
    summary.abandoned = abandoned;
    summary.start_unix_s = (t0 * 1000.0).round() / 1000.0;
    summary.timeseries = timeseries(&inputs, t0);
    summary.warnings = summaries
        .iter()
        .zip(&inputs)
        .flat_map(|(s, i)| {
            s["warnings"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|w| w.as_str())
                .map(move |w| format!("{}: {w}", i.name))
        })
        .collect();
    summary.interrupted = summaries.iter().any(|s| s["interrupted"].as_bool() == Some(true));

    // Thresholds: the workers' own (one plan, so the same list) and any given here.
    let mut exprs: Vec<Expr> = Vec::new();
    for s in &summaries {
        for t in s["thresholds"].as_array().into_iter().flatten() {
            let text = t["expr"].as_str().unwrap_or_default();
            if !exprs.iter().any(|e| e.text == text) {
                exprs.push(Expr::parse(text).map_err(|e| anyhow!("threshold {text:?}: {e}"))?);
            }
        }
    }
    for e in &args.threshold {
        if !exprs.iter().any(|x| x.text == e.text) {
            exprs.push(e.clone());
        }
    }
    let whole = Figures::of_summary(&summary);
    summary.thresholds = exprs
        .iter()
        .map(|e| Threshold { expr: e.text.clone(), pass: e.holds(&whole), value: e.measure(&whole) })
        .collect();

    let out = match &args.out {
        Some(d) => results::folder(Some(d))?,
        None => {
            let stamp = results::stamp(SystemTime::now(), "%Y%m%d-%H%M%S");
            results::folder(Some(&PathBuf::from("results").join(format!("{stamp}-merged"))))?
        }
    };
    write_hlog(&out, &inputs, t0)?;
    let command: Vec<String> = std::env::args().collect();
    results::write_summary(&out, &summary, &command.join(" "), SystemTime::now())?;
    let mut log = results::RunLog::create(&out)?;
    log.line(&format!(
        "merged {} inputs: {}",
        inputs.len(),
        inputs.iter().map(|i| i.name.as_str()).collect::<Vec<_>>().join(" ")
    ));
    print!("{}", crate::output::summary_text(&summary));
    eprintln!("results: {}", out.display());
    Ok(if summary.thresholds.iter().any(|t| !t.pass) { exit::THRESHOLD } else { exit::OK })
}

/// Each run counts once: a folder named twice, a copy of one, or two folders that claim the
/// same worker's place would add its responses twice and look like a valid, busier run.
fn no_run_twice(paths: &[PathBuf], inputs: &[Input]) -> anyhow::Result<()> {
    let real: Vec<PathBuf> = paths.iter().map(|p| p.canonicalize().unwrap_or_else(|_| p.clone())).collect();
    for (j, b) in inputs.iter().enumerate() {
        for (i, a) in inputs[..j].iter().enumerate() {
            if real[i] == real[j] {
                bail!("'{}' is given twice; each worker's results count once", a.name);
            }
            let responses = |x: &Input| x.hlog.intervals.iter().map(|iv| iv.corrected.len()).sum::<u64>();
            if a.hlog.digest == b.hlog.digest && responses(a) > 0 {
                bail!("'{}' and '{}' hold the same latency log: one run given twice?", a.name, b.name);
            }
            let slot = |x: &Input| x.summary.as_ref().map(|s| s["worker"].clone()).filter(|w| w.is_object());
            if let (Some(wa), Some(wb)) = (slot(a), slot(b)) {
                if wa == wb {
                    bail!(
                        "'{}' and '{}' are both worker {} of {}: one worker given twice?",
                        a.name,
                        b.name,
                        wa["index"],
                        wa["count"]
                    );
                }
            }
        }
    }
    Ok(())
}

/// A worker's log and summary must describe the same responses.
fn counts_match_logs(inputs: &[Input]) -> anyhow::Result<()> {
    for i in inputs {
        if let Some(s) = &i.summary {
            let logged: u64 = i.hlog.intervals.iter().map(|iv| iv.corrected.len()).sum();
            let counted = u(s, &["requests"]);
            if logged != counted {
                bail!("{}: latency.hlog holds {logged} responses but summary.json counts {counted}", i.name);
            }
        }
    }
    Ok(())
}

/// One point per wall-clock second from `t0`: counts from the workers' time series, latency
/// percentiles from their histograms of that second.
fn timeseries(inputs: &[Input], t0: f64) -> Vec<Point> {
    #[derive(Default)]
    struct Second {
        target: f64,
        requests: u64,
        errors: u64,
        open: u64,
        corrected: Option<Histogram<u64>>,
        uncorrected: Option<Histogram<u64>>,
    }
    let mut seconds: BTreeMap<u64, Second> = BTreeMap::new();
    let slot = |abs_end: f64| ((abs_end - t0 - 1e-6).max(0.0)).floor() as u64;
    for i in inputs {
        for iv in &i.hlog.intervals {
            let s = seconds.entry(slot(iv.start + iv.len)).or_default();
            let _ = s.corrected.get_or_insert_with(new_histogram).add(&iv.corrected);
            let _ = s.uncorrected.get_or_insert_with(new_histogram).add(&iv.uncorrected);
        }
        if let Some(sum) = &i.summary {
            let begin = f(sum, &["start_unix_s"]);
            for p in sum["timeseries"].as_array().into_iter().flatten() {
                let s = seconds.entry(slot(begin + f(p, &["t_s"]))).or_default();
                s.target += f(p, &["target"]);
                s.requests += u(p, &["requests"]);
                s.errors += u(p, &["errors"]);
                s.open += u(p, &["open"]);
            }
        }
    }
    seconds
        .into_iter()
        .map(|(k, s)| {
            let lat = |h: &Option<Histogram<u64>>| h.as_ref().map(Latency::from_histogram).unwrap_or_default();
            let (c, un) = (lat(&s.corrected), lat(&s.uncorrected));
            let requests = if inputs.iter().all(|i| i.summary.is_none()) {
                s.corrected.as_ref().map_or(0, |h| h.len())
            } else {
                s.requests
            };
            Point {
                t_s: (k + 1) as f64,
                target: s.target,
                requests,
                rps: requests as f64,
                errors: s.errors,
                p50_ms: c.p50,
                p99_ms: c.p99,
                p50_uncorrected_ms: un.p50,
                p99_uncorrected_ms: un.p99,
                open: s.open,
            }
        })
        .collect()
}

/// The merged latency.hlog: every input's intervals, added per wall-clock second.
fn write_hlog(out: &Path, inputs: &[Input], t0: f64) -> anyhow::Result<()> {
    let mut per_second: BTreeMap<u64, Totals> = BTreeMap::new();
    for i in inputs {
        for iv in &i.hlog.intervals {
            let t = per_second.entry(((iv.start + iv.len - t0 - 1e-6).max(0.0)).floor() as u64).or_default();
            let _ = t.latency.add(&iv.corrected);
            let _ = t.latency_uncorrected.add(&iv.uncorrected);
        }
    }
    let mut file =
        std::io::BufWriter::new(std::fs::File::create(out.join("latency.hlog")).context("cannot create latency.hlog")?);
    let mut serializer = hdrhistogram::serialization::V2DeflateSerializer::new();
    let start = UNIX_EPOCH + Duration::from_secs_f64(t0);
    let mut log = results::begin_hlog(&mut file, &mut serializer, start)?;
    for (k, t) in &per_second {
        results::write_interval(&mut log, t, *k as f64, (*k + 1) as f64)?;
    }
    drop(log);
    std::io::Write::flush(&mut file).context("cannot write latency.hlog")?;
    Ok(())
}
