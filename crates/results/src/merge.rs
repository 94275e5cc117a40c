//! `engine report merge`: the results of workers that ran one plan together, joined into one
//! honest run. Latency histograms are added from every worker's latency.hlog (an exact merge,
//! never an average of percentiles), per named request too; counts are summed from the
//! summaries; time series are aligned on wall-clock seconds; and the merged summary is judged
//! by the same [`crate::thresholds::judge`] a blast uses.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hdrhistogram::Histogram;

use crate::hlog::{self, Log};
use crate::scenario;
use crate::stats::{new_histogram, Counters, NameStats, Totals};
use crate::summary::{CheckSummary, ChecksSummary, Latency, Model, NamedSummary, Point, ScenarioSummary, Summary};
use crate::thresholds::{judge, Expr};

#[derive(Debug, thiserror::Error)]
pub enum MergeError {
    #[error(transparent)]
    Log(#[from] hlog::HlogError),
    #[error(transparent)]
    Folder(#[from] crate::folder::FolderError),
    #[error("'{0}' does not exist")]
    Missing(PathBuf),
    #[error("'{0}' is neither a results folder nor a .hlog file")]
    NotAnInput(PathBuf),
    #[error("{0}")]
    Inputs(String),
    #[error("cannot write the merged latency.hlog: {0}")]
    Write(std::io::Error),
}

/// One input: its log, and its summary when it is a results folder.
pub struct Input {
    pub name: String,
    pub log: Log,
    pub summary: Option<Summary>,
}

impl Input {
    /// A results folder (summary.json and latency.hlog) or a bare .hlog file.
    pub fn read(path: &Path) -> Result<Input, MergeError> {
        let name = path.display().to_string();
        if path.is_dir() {
            let summary = crate::folder::read_summary(path)?;
            Ok(Input { name, log: hlog::read(&path.join("latency.hlog"))?, summary: Some(summary) })
        } else if path.is_file() {
            Ok(Input { name, log: hlog::read(path)?, summary: None })
        } else if path.exists() {
            Err(MergeError::NotAnInput(path.to_path_buf()))
        } else {
            Err(MergeError::Missing(path.to_path_buf()))
        }
    }
}

/// The merged run: its summary, and its latency log per wall-clock second from `t0`.
pub struct Merged {
    pub summary: Summary,
    pub t0: f64,
    pub per_second: BTreeMap<u64, Totals>,
    /// Request names, in the order of the per-name histograms of `per_second`.
    pub names: Vec<String>,
}

/// Merges the inputs (checked: each run once, counts matching logs, and unless `force`, runs
/// of one plan that ran at the same time) and judges the merged run by the workers'
/// thresholds and `extra`.
pub fn merge(paths: &[PathBuf], inputs: &[Input], extra: &[Expr], force: bool) -> Result<Merged, MergeError> {
    no_run_twice(paths, inputs)?;
    counts_match_logs(inputs)?;
    if !force {
        one_run(inputs)?;
    }
    let all = inputs.iter().flat_map(|i| i.log.intervals.iter());
    let t0 = all.clone().map(|iv| iv.start).fold(f64::INFINITY, f64::min);
    let t1 = all.map(|iv| iv.start + iv.len).fold(f64::NEG_INFINITY, f64::max);
    if !t0.is_finite() {
        return Err(MergeError::Inputs("no latency intervals in the inputs".into()));
    }
    let summaries: Vec<&Summary> = inputs.iter().filter_map(|i| i.summary.as_ref()).collect();
    let names: Vec<String> =
        summaries.first().map(|s| s.requests_by_name.keys().cloned().collect()).unwrap_or_default();
    let totals = merged_totals(inputs, &summaries, &names);

    let starts = summaries.iter().map(|s| s.start_unix_s).filter(|v| *v > 0.0).fold(t0, f64::min);
    let ends = summaries.iter().map(|s| s.start_unix_s + s.duration_s).fold(t1, f64::max);
    let duration_s = ends - starts;
    let first = summaries.first();
    let mut summary = Summary::new(
        first.map_or("", |s| s.target.as_str()),
        summaries.iter().map(|s| s.conns).sum(),
        summaries.len(),
        &totals,
        duration_s,
    );
    summary.model = first.map_or(Model::Closed, |s| s.model);
    if let (Some(t), Some(f)) = (summary.tls.as_mut(), first.and_then(|s| s.tls.as_ref())) {
        (t.version, t.cipher) = (f.version.clone(), f.cipher.clone());
    }
    for h in summaries.iter().filter_map(|s| s.http2.as_ref()) {
        match summary.http2.as_mut() {
            Some(m) => m.add(h),
            None => summary.http2 = Some(h.clone()),
        }
    }
    for g in summaries.iter().filter_map(|s| s.grpc.as_ref()) {
        match summary.grpc.as_mut() {
            Some(m) => m.add(g),
            None => summary.grpc = Some(g.clone()),
        }
    }
    summary.connections.peak_open = summaries.iter().map(|s| s.connections.peak_open).sum();
    summary.abandoned = summaries.iter().map(|s| s.abandoned).sum();
    summary.generator.shards = summaries.iter().flat_map(|s| s.generator.shards.iter().cloned()).collect();
    summary.generator.saturated = summaries.iter().any(|s| s.generator.saturated);
    summary.start_unix_s = (t0 * 1000.0).round() / 1000.0;
    summary.interrupted = summaries.iter().any(|s| s.interrupted);
    for (k, name) in names.iter().enumerate() {
        let spec = first.and_then(|s| s.requests_by_name.get(name));
        let (method, weight) = spec.map_or(("", 0), |n| (n.method.as_str(), n.weight));
        summary.requests_by_name.insert(name.clone(), NamedSummary::new(method, weight, &totals.names[k], duration_s));
    }
    summary.scenarios = merged_scenarios(&summaries, &names, &totals, duration_s);
    summary.checks = merged_checks(&summaries);
    summary.timeseries = timeseries(inputs, t0);
    summary.warnings = inputs
        .iter()
        .filter_map(|i| i.summary.as_ref().map(|s| (i, s)))
        .flat_map(|(i, s)| s.warnings.iter().map(move |w| format!("{}: {w}", i.name)))
        .collect();

    // Thresholds: the workers' own (one plan, so the same list) and any given here.
    let mut exprs: Vec<Expr> = Vec::new();
    for t in summaries.iter().flat_map(|s| &s.thresholds) {
        if !exprs.iter().any(|e| e.text == t.expr) {
            exprs.push(Expr::parse(&t.expr).map_err(|e| MergeError::Inputs(format!("threshold {:?}: {e}", t.expr)))?);
        }
    }
    for e in extra {
        if !exprs.iter().any(|x| x.text == e.text) {
            exprs.push(e.clone());
        }
    }
    if let Some(e) = exprs.iter().find(|e| e.name().is_some_and(|n| !names.iter().any(|x| x == n))) {
        return Err(MergeError::Inputs(format!(
            "'{e}' names no request of the merged runs (requests: {})",
            names.join(", ")
        )));
    }
    summary.thresholds = judge(&exprs, &summary);
    Ok(Merged { summary, t0, per_second: per_second(inputs, t0, &names), names })
}

/// Every input's latency, whole and per name, added exactly; counts summed from the summaries
/// (from the logs when there are only logs).
fn merged_totals(inputs: &[Input], summaries: &[&Summary], names: &[String]) -> Totals {
    let mut totals = Totals::with_names(names.len(), 0);
    for iv in inputs.iter().flat_map(|i| &i.log.intervals) {
        add_interval(&mut totals, iv);
        for (k, name) in names.iter().enumerate() {
            if let Some(h) = iv.names.get(name) {
                add(&mut totals.names[k].latency, h);
            }
        }
    }
    for s in summaries {
        let c = &mut totals.counters;
        c.requests += s.requests;
        s.errors.add_to(c);
        c.add_statuses(&s.status);
        c.bytes_sent += s.bytes.sent;
        c.bytes_received += s.bytes.received;
        c.conns_opened += s.connections.opened;
        if let Some(tls) = &s.tls {
            let setup = totals.setup();
            setup.handshakes_full += tls.handshakes_full;
            setup.handshakes_resumed += tls.handshakes_resumed;
            let e = &tls.errors;
            for (a, b) in setup.tls_errors.iter_mut().zip([
                e.certificate,
                e.alert,
                e.bad_record,
                e.truncated,
                e.handshake,
                e.other,
            ]) {
                *a += b;
            }
        }
        for (k, name) in names.iter().enumerate() {
            if let Some(n) = s.requests_by_name.get(name) {
                let c: &mut NameStats = &mut totals.names[k];
                c.counters.requests += n.requests;
                n.errors.add_to(&mut c.counters);
                c.counters.add_statuses(&n.status);
            }
        }
    }
    if summaries.is_empty() {
        // Latency logs alone: the histogram's count is the count of responses.
        totals.counters.requests = totals.latency.len();
    }
    totals
}

/// A log interval's histograms (but the per-name ones) added into `t`.
fn add_interval(t: &mut Totals, iv: &hlog::Interval) {
    // The log keeps the expected responses' histogram apart: so does the merge.
    t.split_ok();
    add(&mut t.latency, &iv.corrected);
    add(&mut t.latency_uncorrected, &iv.uncorrected);
    if let Some(ok) = t.latency_ok.as_deref_mut() {
        add(ok, &iv.ok);
    }
    for (slot, h) in t.by_class.iter_mut().zip(&iv.classes) {
        if let Some(h) = h {
            add(slot.get_or_insert_with(|| Box::new(new_histogram())), h);
        }
    }
    if let Some(h) = &iv.connect {
        add(&mut t.setup().connect, h);
    }
    if let Some(h) = &iv.handshake {
        add(t.setup().handshake_histogram(), h);
    }
}

/// The workers' checks, added by name (`None` when no worker had any).
fn merged_checks(summaries: &[&Summary]) -> Option<ChecksSummary> {
    let mut by_name: BTreeMap<String, CheckSummary> = BTreeMap::new();
    for c in summaries.iter().filter_map(|s| s.checks.as_ref()) {
        for (name, n) in &c.by_name {
            let m = by_name.entry(name.clone()).or_default();
            *m = CheckSummary::new(m.passed + n.passed, m.failed + n.failed);
        }
    }
    summaries.iter().any(|s| s.checks.is_some()).then(|| ChecksSummary::from_names(by_name))
}

fn add(into: &mut Histogram<u64>, h: &Histogram<u64>) {
    // Every histogram here has the engine's bounds: adding cannot fail.
    let _ = into.add(h);
}

/// Each scenario of the workers' plan: its counts summed, its latency the exact merge of its
/// requests' histograms, its connections and schedule the workers' together.
fn merged_scenarios(
    summaries: &[&Summary],
    names: &[String],
    totals: &Totals,
    duration_s: f64,
) -> BTreeMap<String, ScenarioSummary> {
    let Some(first) = summaries.first() else { return BTreeMap::new() };
    let mut out = BTreeMap::new();
    for (name, sc) in &first.scenarios {
        let mine: Vec<&ScenarioSummary> = summaries.iter().filter_map(|s| s.scenarios.get(name)).collect();
        let mut counts = Counters::default();
        for m in &mine {
            counts.add(&m.counters());
        }
        let mut latency = new_histogram();
        for (k, _) in names.iter().enumerate().filter(|(_, n)| scenario::is_of(name, n)) {
            add(&mut latency, &totals.names[k].latency);
        }
        let mut planned = sc.planned();
        planned.conns = mine.iter().map(|m| m.conns).sum();
        let mut merged = ScenarioSummary::new(planned, &counts, &latency, duration_s);
        let sum = |f: fn(&ScenarioSummary) -> Option<u64>| mine.iter().map(|m| f(m)).sum::<Option<u64>>();
        merged.scheduled_requests = sum(|m| m.scheduled_requests);
        merged.scheduled_iterations = sum(|m| m.scheduled_iterations);
        out.insert(name.clone(), merged);
    }
    out
}

/// Each run counts once: a folder named twice, a copy of one, or two folders that claim the
/// same worker's place would add its responses twice and look like a valid, busier run.
/// The inputs are workers of one run: one plan (target, model, requests, worker count), and
/// their loads overlapped in time. Merging unrelated runs would add up their peaks ("peak
/// open 6000" of three runs one after the other) and stretch the duration over their gaps.
fn one_run(inputs: &[Input]) -> Result<(), MergeError> {
    let runs: Vec<(&str, &Summary)> =
        inputs.iter().filter_map(|i| i.summary.as_ref().map(|s| (i.name.as_str(), s))).collect();
    let Some(&(first_name, first)) = runs.first() else { return Ok(()) };
    let refuse = |why: String| Err(MergeError::Inputs(format!("{why}; --force merges them anyway")));
    for &(name, s) in &runs[1..] {
        let names = |s: &Summary| s.requests_by_name.keys().cloned().collect::<Vec<_>>();
        let differs = if s.target != first.target {
            Some(format!("targets {} and {}", first.target, s.target))
        } else if s.model != first.model {
            Some(format!("the {} and the {} model", first.model.name(), s.model.name()))
        } else if names(s) != names(first) {
            Some("different requests".to_string())
        } else {
            match (first.worker, s.worker) {
                (Some(a), Some(b)) if a.count != b.count => Some(format!("{} and {} workers", a.count, b.count)),
                _ => None,
            }
        };
        if let Some(d) = differs {
            return refuse(format!("'{first_name}' and '{name}' are not one plan ({d})"));
        }
    }
    let span = |s: &Summary| (s.start_unix_s, s.start_unix_s + s.duration_s);
    let latest_start = runs.iter().map(|(_, s)| span(s).0).fold(f64::NEG_INFINITY, f64::max);
    let earliest_end = runs.iter().map(|(_, s)| span(s).1).fold(f64::INFINITY, f64::min);
    if latest_start >= earliest_end {
        let (a, b) = (
            runs.iter().find(|(_, s)| span(s).1 == earliest_end).map_or("", |r| r.0),
            runs.iter().find(|(_, s)| span(s).0 == latest_start).map_or("", |r| r.0),
        );
        return refuse(format!(
            "'{a}' ended {:.1} s before '{b}' started: workers of one run load the target at the same time \
             (blast --start-at)",
            latest_start - earliest_end
        ));
    }
    Ok(())
}

fn no_run_twice(paths: &[PathBuf], inputs: &[Input]) -> Result<(), MergeError> {
    let real: Vec<PathBuf> = paths.iter().map(|p| p.canonicalize().unwrap_or_else(|_| p.clone())).collect();
    let refuse = |why: String| Err(MergeError::Inputs(why));
    for (j, b) in inputs.iter().enumerate() {
        for (i, a) in inputs[..j].iter().enumerate() {
            if real.get(i).is_some() && real.get(i) == real.get(j) {
                return refuse(format!("'{}' is given twice; each worker's results count once", a.name));
            }
            if a.log.digest == b.log.digest && a.log.responses() > 0 {
                return refuse(format!(
                    "'{}' and '{}' hold the same latency log: one run given twice?",
                    a.name, b.name
                ));
            }
            let worker = |x: &Input| x.summary.as_ref().and_then(|s| s.worker);
            if let (Some(wa), Some(wb)) = (worker(a), worker(b)) {
                if wa == wb {
                    return refuse(format!(
                        "'{}' and '{}' are both worker {} of {}: one worker given twice?",
                        a.name, b.name, wa.index, wa.count
                    ));
                }
            }
        }
    }
    Ok(())
}

/// A worker's log and summary must describe the same responses.
fn counts_match_logs(inputs: &[Input]) -> Result<(), MergeError> {
    for i in inputs {
        if let Some(s) = &i.summary {
            let logged = i.log.responses();
            if logged != s.requests {
                return Err(MergeError::Inputs(format!(
                    "{}: latency.hlog holds {logged} responses but summary.json counts {}",
                    i.name, s.requests
                )));
            }
        }
    }
    Ok(())
}

/// Workers that start together at `--start-at` start within milliseconds of each other, not
/// at the same instant: interval ends this close past a second's boundary belong to it.
const ALIGN: f64 = 0.05;

/// The wall-clock second (from `t0`, counted from 0) an interval ending at `abs_end` belongs
/// to: the one its end falls in, give or take [`ALIGN`].
fn second(abs_end: f64, t0: f64) -> u64 {
    (abs_end - t0 - ALIGN).ceil().max(1.0) as u64 - 1
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
        busy: f64,
        attempts: f64,
        corrected: Option<Histogram<u64>>,
        uncorrected: Option<Histogram<u64>>,
    }
    let mut seconds: BTreeMap<u64, Second> = BTreeMap::new();
    for i in inputs {
        for iv in &i.log.intervals {
            let s = seconds.entry(second(iv.start + iv.len, t0)).or_default();
            add(s.corrected.get_or_insert_with(new_histogram), &iv.corrected);
            add(s.uncorrected.get_or_insert_with(new_histogram), &iv.uncorrected);
        }
        if let Some(sum) = &i.summary {
            for p in &sum.timeseries {
                let s = seconds.entry(second(sum.start_unix_s + p.t_s, t0)).or_default();
                s.target += p.target;
                s.requests += p.requests;
                s.errors += p.errors;
                s.open += p.open;
                s.busy = s.busy.max(p.busy);
                // Requests tried, back from the point's own rate (no errors: its responses).
                s.attempts += if p.error_rate > 0.0 { p.errors as f64 / p.error_rate } else { p.requests as f64 };
            }
        }
    }
    let logs_only = inputs.iter().all(|i| i.summary.is_none());
    seconds
        .into_iter()
        .map(|(k, s)| {
            let lat = |h: &Option<Histogram<u64>>| h.as_ref().map(Latency::from_histogram).unwrap_or_default();
            let (c, un) = (lat(&s.corrected), lat(&s.uncorrected));
            let requests = if logs_only { s.corrected.as_ref().map_or(0, Histogram::len) } else { s.requests };
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
                error_rate: if s.attempts > 0.0 { s.errors as f64 / s.attempts } else { 0.0 },
                busy: s.busy,
            }
        })
        .collect()
}

/// Every input's intervals added per wall-clock second, per name too.
fn per_second(inputs: &[Input], t0: f64, names: &[String]) -> BTreeMap<u64, Totals> {
    let mut out: BTreeMap<u64, Totals> = BTreeMap::new();
    for iv in inputs.iter().flat_map(|i| &i.log.intervals) {
        let t = out.entry(second(iv.start + iv.len, t0)).or_insert_with(|| Totals::with_names(names.len(), 0));
        add_interval(t, iv);
        for (k, name) in names.iter().enumerate() {
            if let Some(h) = iv.names.get(name) {
                add(&mut t.names[k].latency, h);
            }
        }
    }
    out
}

impl Merged {
    /// Writes the merged results folder: latency.hlog, summary.json and the rest.
    pub fn write(&self, out: &Path, command: &str, inputs: &[Input]) -> Result<(), MergeError> {
        let mut log = hlog::Writer::new(out.join("latency.hlog"), self.names.clone());
        log.begin(UNIX_EPOCH + Duration::from_secs_f64(self.t0)).map_err(MergeError::Write)?;
        for (k, t) in &self.per_second {
            log.write(*k as f64, (*k + 1) as f64, t).map_err(MergeError::Write)?;
        }
        log.flush().map_err(MergeError::Write)?;
        crate::folder::write_summary(out, &self.summary, command, SystemTime::now())?;
        let mut run_log = crate::folder::RunLog::create(out)?;
        let names: Vec<&str> = inputs.iter().map(|i| i.name.as_str()).collect();
        run_log.line(&format!("merged {} inputs: {}", inputs.len(), names.join(" ")));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interval_ends_fall_in_their_second_give_or_take_a_start_at_skew() {
        let t0 = 1_000.0;
        for (end, want) in [(1_001.0, 0), (1_001.003, 0), (1_000.999, 0), (1_002.0, 1), (1_004.2, 4), (1_000.01, 0)] {
            assert_eq!(second(end, t0), want, "{end}");
        }
    }
}
