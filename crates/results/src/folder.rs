//! The results folder every blast leaves: summary.json, summary.md, timeseries.csv,
//! latency.hlog ([`crate::hlog`]), run.log and report.html.

use std::fmt::Write as _;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use jiff::Timestamp;

use crate::observe::{Flow, Interval, Observer};
use crate::summary::Summary;

/// Largest summary.json read back (a week-long run's time series is far smaller).
pub const MAX_SUMMARY: u64 = 512 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum FolderError {
    #[error("cannot create the results folder '{path}': {source}")]
    Create { path: PathBuf, source: io::Error },
    #[error("cannot create a results folder next to '{0}': 999 exist")]
    Full(PathBuf),
    #[error("cannot write '{path}': {source}")]
    Write { path: PathBuf, source: io::Error },
    #[error("cannot read '{path}': {reason}")]
    Read { path: PathBuf, reason: String },
}

/// The folder `out`, or `results/<YYYYMMDD-HHMMSS><suffix>` (UTC) under the current
/// directory. Two runs started in the same second get `-2`, `-3`, ... rather than one folder.
pub fn create(out: Option<&Path>, suffix: &str) -> Result<PathBuf, FolderError> {
    if let Some(d) = out {
        std::fs::create_dir_all(d).map_err(|source| FolderError::Create { path: d.to_path_buf(), source })?;
        return Ok(d.to_path_buf());
    }
    let base = Path::new("results").join(format!("{}{suffix}", stamp(SystemTime::now())));
    std::fs::create_dir_all("results").map_err(|source| FolderError::Create { path: "results".into(), source })?;
    for n in 1..1000 {
        let dir = if n == 1 { base.clone() } else { PathBuf::from(format!("{}-{n}", base.display())) };
        match std::fs::create_dir(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(source) => return Err(FolderError::Create { path: dir, source }),
        }
    }
    Err(FolderError::Full(base))
}

/// `YYYYMMDD-HHMMSS` in UTC: a folder name that sorts by time.
pub fn stamp(t: SystemTime) -> String {
    Timestamp::try_from(t).unwrap_or(Timestamp::UNIX_EPOCH).strftime("%Y%m%d-%H%M%S").to_string()
}

/// RFC 3339 in UTC, to the second (`2026-11-22T20:00:00Z`).
pub fn rfc3339(t: SystemTime) -> String {
    Timestamp::try_from(t).unwrap_or(Timestamp::UNIX_EPOCH).strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// run.log: one timestamped line per event of the run. As an observer it logs the start,
/// each stage the plan enters, and at the end the safety stop, the thresholds and the end.
pub struct RunLog {
    file: BufWriter<File>,
    /// Each stage's target, to say where a new stage goes.
    stage_targets: Vec<f64>,
    stage: usize,
}

impl RunLog {
    pub fn create(dir: &Path) -> Result<Self, FolderError> {
        let path = dir.join("run.log");
        let file = File::create(&path).map_err(|source| FolderError::Write { path, source })?;
        Ok(RunLog { file: BufWriter::new(file), stage_targets: Vec::new(), stage: 1 })
    }

    /// Stage changes are logged with these targets (one per stage).
    pub fn with_stages(mut self, targets: Vec<f64>) -> Self {
        self.stage_targets = targets;
        self
    }

    /// Best effort: a full disk must not stop the run; the summary says what happened.
    pub fn line(&mut self, text: &str) {
        let now = Timestamp::now();
        let _ = writeln!(self.file, "{} {text}", now.strftime("%Y-%m-%dT%H:%M:%S%.3fZ"));
        let _ = self.file.flush();
    }
}

impl Observer for RunLog {
    fn interval(&mut self, i: &Interval<'_>) -> Flow {
        if i.seq == 1 {
            self.line(&format!("start: connections open, load begins (interval 1 ends at {:.1}s)", i.elapsed_s));
        }
        while self.stage < i.stage {
            self.stage += 1;
            let target = self.stage_targets.get(self.stage - 1).copied().unwrap_or_default();
            self.line(&format!("stage {}: towards {target} ({:.1}s)", self.stage, i.elapsed_s));
        }
        Flow::Continue
    }

    fn finish(&mut self, s: &mut Summary) {
        for l in s.profile.iter().flat_map(|p| &p.levels) {
            let verdict = match &l.failed_on {
                None => "held".to_string(),
                Some(why) => format!("FAILED: {why}"),
            };
            self.line(&format!(
                "level {} {verdict} (over {:.0} s held: p99 {:.3} ms, errors {:.2}%, {:.1} req/s)",
                l.level,
                l.held_s,
                l.p99_ms,
                l.error_rate * 100.0,
                l.rps
            ));
        }
        if let Some(f) = &s.stopped_by {
            self.line(&format!("safety stop fired: '{}' at {:.1}s (value {})", f.expr, f.at_s, f.value));
        }
        for t in &s.thresholds {
            let verdict = if t.pass { "PASS" } else { "FAIL" };
            match t.no_data {
                true => self.line(&format!("threshold {verdict} {} (no data)", t.expr)),
                false => self.line(&format!("threshold {verdict} {} (value {})", t.expr, t.value)),
            }
        }
        let interrupted = if s.interrupted { ", interrupted" } else { "" };
        self.line(&format!(
            "end: {} requests in {:.2}s, {} errors{interrupted}",
            s.requests, s.duration_s, s.errors.total
        ));
    }
}

/// Writes summary.json, report.html, summary.md and timeseries.csv.
pub fn write_summary(dir: &Path, summary: &Summary, command: &str, started: SystemTime) -> Result<(), FolderError> {
    let json = serde_json::to_string_pretty(summary)
        .map_err(io::Error::other)
        .map_err(|source| FolderError::Write { path: dir.join("summary.json"), source })?
        + "\n";
    let write = |name: &str, text: &str| {
        let path = dir.join(name);
        std::fs::write(&path, text).map_err(|source| FolderError::Write { path, source })
    };
    write("summary.json", &json)?;
    write("report.html", &crate::html::render(&json))?;
    write("summary.md", &markdown(summary, command, started))?;
    write("timeseries.csv", &timeseries_csv(summary))
}

/// Reads a summary back, typed: from a results folder or a summary.json.
pub fn read_summary(path: &Path) -> Result<Summary, FolderError> {
    let file = if path.is_dir() { path.join("summary.json") } else { path.to_path_buf() };
    let bad = |reason: String| FolderError::Read { path: file.clone(), reason };
    if !file.exists() {
        return Err(bad(if path.is_dir() {
            "no summary.json: not a results folder".into()
        } else {
            "no such file".into()
        }));
    }
    if !file.is_file() {
        return Err(bad("neither a results folder nor a summary.json".into()));
    }
    let text = engine_util::files::read_limited_string(&file, MAX_SUMMARY).map_err(|e| bad(e.to_string()))?;
    let value: serde_json::Value = serde_json::from_str(&text).map_err(|e| bad(format!("not JSON: {e}")))?;
    match value.get("schema_version").and_then(serde_json::Value::as_u64) {
        None if value.get("requests").is_some() => {
            return Err(bad("a summary without schema_version, written by an older engine: run it again".into()))
        }
        None => return Err(bad("not an engine summary (no schema_version)".into())),
        Some(v) if v > u64::from(crate::summary::SCHEMA_VERSION) => {
            return Err(bad(format!(
                "schema version {v}, newer than this engine reads ({}): use the engine that wrote it",
                crate::summary::SCHEMA_VERSION
            )))
        }
        Some(_) => {}
    }
    let value = upgrade(value);
    serde_json::from_value(value).map_err(|e| bad(format!("not a valid summary: {e}")))
}

/// An older summary in today's shape, with what its version could not have measured: schema
/// 1 had no TLS, so it had no TLS errors.
fn upgrade(mut value: serde_json::Value) -> serde_json::Value {
    fn no_tls(errors: Option<&mut serde_json::Value>) {
        if let Some(e) = errors.and_then(|e| e.as_object_mut()) {
            e.entry("tls").or_insert(0.into());
        }
    }
    if value.get("schema_version").and_then(serde_json::Value::as_u64) == Some(1) {
        no_tls(value.get_mut("errors"));
        if let Some(names) = value.get_mut("requests_by_name").and_then(|n| n.as_object_mut()) {
            for n in names.values_mut() {
                no_tls(n.get_mut("errors"));
            }
        }
        value["schema_version"] = 2.into();
    }
    // Schema 3 added only fields that are absent when they do not apply (`no_data`).
    if value.get("schema_version").and_then(serde_json::Value::as_u64) == Some(2) {
        value["schema_version"] = 3.into();
    }
    value
}

fn timeseries_csv(summary: &Summary) -> String {
    let mut csv =
        String::from("t_s,target,requests,rps,errors,p50_ms,p99_ms,p50_uncorrected_ms,p99_uncorrected_ms,open\n");
    for p in &summary.timeseries {
        let _ = writeln!(
            csv,
            "{},{},{},{},{},{},{},{},{},{}",
            p.t_s,
            p.target,
            p.requests,
            p.rps,
            p.errors,
            p.p50_ms,
            p.p99_ms,
            p.p50_uncorrected_ms,
            p.p99_uncorrected_ms,
            p.open
        );
    }
    csv
}

/// A report a person would paste into a ticket.
fn markdown(s: &Summary, command: &str, started: SystemTime) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "# engine blast: {}\n", s.target);
    let _ = writeln!(
        o,
        "- started {} ({} model, {} connections, {} shards)",
        rfc3339(started),
        s.model.name(),
        s.conns,
        s.shards
    );
    let _ = writeln!(o, "- command: `{command}`");
    if s.interrupted {
        let _ = writeln!(o, "- **interrupted** before the planned end");
    }
    if let Some(f) = &s.stopped_by {
        let _ = writeln!(o, "- **stopped by the safety stop `{}`** at {:.1} s", f.expr, f.at_s);
    }
    let _ = writeln!(o, "\n| figure | value |\n|---|---:|");
    let _ = writeln!(o, "| requests | {} |", s.requests);
    let _ = writeln!(o, "| duration | {:.2} s |", s.duration_s);
    let _ = writeln!(o, "| throughput | {:.1} req/s |", s.rps);
    let l = &s.latency_ms;
    for (k, v) in [
        ("mean", l.mean),
        ("p50", l.p50),
        ("p90", l.p90),
        ("p95", l.p95),
        ("p99", l.p99),
        ("p99.9", l.p999),
        ("max", l.max),
    ] {
        match s.requests {
            0 => drop(writeln!(o, "| latency {k} | no data |")),
            _ => drop(writeln!(o, "| latency {k} | {v:.3} ms |")),
        }
    }
    let e = &s.errors;
    let _ = writeln!(
        o,
        "| errors | {} (connect {}, timeout {}, reset {}, closed {}, parse {}, status {}, tls {}) |",
        e.total, e.connect, e.timeout, e.reset, e.closed, e.parse, e.status, e.tls
    );
    for (what, l) in [("TCP connect", &s.connect_ms), ("TLS handshake", &s.tls_handshake_ms)] {
        if let Some(l) = l {
            let _ = writeln!(o, "| {what} p50 / p99 / max | {:.3} / {:.3} / {:.3} ms |", l.p50, l.p99, l.max);
        }
    }
    if let Some(t) = &s.tls {
        let _ = writeln!(
            o,
            "| TLS | {} {}; {} full and {} resumed handshakes ({:.1}/s) |",
            t.version, t.cipher, t.handshakes_full, t.handshakes_resumed, t.handshakes_per_s
        );
    }
    let status: Vec<String> = s.status.iter().map(|(k, v)| format!("{k}: {v}")).collect();
    let _ = writeln!(o, "| status | {} |", status.join(", "));
    if let Some(sch) = &s.schedule {
        let behind = if sch.behind { ", **behind schedule**" } else { "" };
        // Arrival-rate flows schedule iterations (users walking a flow), not requests.
        let _ = match &s.iterations {
            Some(i) => writeln!(
                o,
                "| asked iteration rate | {:.1} iterations/s ({} of {} started, {} completed{behind}) |",
                sch.target_rps, sch.sent, sch.expected, i.completed
            ),
            None => writeln!(
                o,
                "| asked rate | {:.1} req/s ({} of {} sent{behind}) |",
                sch.target_rps, sch.sent, sch.expected
            ),
        };
    }
    if let Some(p) = &s.profile {
        let _ = writeln!(o, "\n## Profile {} at peak {}\n", p.name, p.peak);
        let _ = writeln!(o, "- a level holds when {}", p.criterion);
        for (what, v) in [("capacity (the last level that held)", p.capacity), ("failed level", p.failed_at)] {
            if let Some(v) = v {
                let _ = writeln!(o, "- {what}: {v}");
            }
        }
        if let Some(b) = p.best_rps {
            let _ = writeln!(o, "- best held rate: {b:.1} req/s");
        }
        match (p.recovery_s, p.name.as_str()) {
            (Some(r), _) => drop(writeln!(o, "- recovery: {r:.1} s after the drop")),
            (None, "spike" | "recovery") => drop(writeln!(o, "- recovery: p99 never returned to the baseline")),
            _ => {}
        }
    }
    if !s.thresholds.is_empty() {
        let _ = writeln!(o, "\n## Thresholds\n");
        for t in &s.thresholds {
            let verdict = if t.pass { "PASS" } else { "**FAIL**" };
            match t.no_data {
                true => drop(writeln!(o, "- {verdict} `{}` (no data: nothing it selects was measured)", t.expr)),
                false => drop(writeln!(o, "- {verdict} `{}` (measured {})", t.expr, t.value)),
            }
        }
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn utc_stamps() {
        let t = UNIX_EPOCH + Duration::from_secs(1_795_377_600);
        assert_eq!(stamp(t), "20261122-200000");
        assert_eq!(rfc3339(t), "2026-11-22T20:00:00Z");
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00Z");
    }
}
