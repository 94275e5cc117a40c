//! The results folder every blast leaves: summary.json, summary.md, summary.csv, timeseries.csv,
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
    #[error("--out '{template}': {reason}")]
    Template { template: String, reason: String },
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

/// `--out` with its placeholders filled: `{date}` (YYYY-MM-DD, UTC), `{time}` (HHMMSS),
/// `{stamp}` (YYYYMMDD-HHMMSS), and each of `vars` (`{scenario}`, `{profile}`, `{model}`), so
/// a series of runs files itself: `--out 'results/{date}/{scenario}/{profile}'`. A name in
/// braces that is none of these is an error that lists them.
pub fn expand(template: &Path, vars: &[(&str, String)], now: SystemTime) -> Result<PathBuf, FolderError> {
    let Some(text) = template.to_str().filter(|t| t.contains('{')) else { return Ok(template.to_path_buf()) };
    let t = Timestamp::try_from(now).unwrap_or(Timestamp::UNIX_EPOCH);
    let mut known: Vec<(&str, String)> = vec![
        ("date", t.strftime("%Y-%m-%d").to_string()),
        ("time", t.strftime("%H%M%S").to_string()),
        ("stamp", stamp(now)),
    ];
    known.extend(vars.iter().cloned());
    let mut out = String::new();
    let mut rest = text;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let close = rest[open..].find('}').map(|c| open + c);
        let name = close.map(|c| &rest[open + 1..c]);
        match name.and_then(|n| known.iter().find(|(k, _)| *k == n)) {
            Some((_, v)) => out.push_str(v),
            None => {
                let names: Vec<String> = known.iter().map(|(k, _)| format!("{{{k}}}")).collect();
                return Err(FolderError::Template {
                    template: text.to_string(),
                    reason: format!(
                        "'{}' is not a placeholder (use {})",
                        &rest[open..close.map_or(rest.len(), |c| c + 1)],
                        names.join(" ")
                    ),
                });
            }
        }
        rest = &rest[close.unwrap_or(rest.len()) + 1..];
    }
    out.push_str(rest);
    Ok(PathBuf::from(out))
}

/// `YYYYMMDD-HHMMSS` in UTC: a folder name that sorts by time.
pub fn stamp(t: SystemTime) -> String {
    Timestamp::try_from(t).unwrap_or(Timestamp::UNIX_EPOCH).strftime("%Y%m%d-%H%M%S").to_string()
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
        for line in crate::render::verdict_log_lines(s) {
            self.line(&line);
        }
        let interrupted = if s.interrupted { ", interrupted" } else { "" };
        self.line(&format!(
            "end: {} requests in {:.2}s, {} errors{interrupted}",
            s.requests, s.duration_s, s.errors.total
        ));
    }
}

/// Writes summary.json, report.html, summary.md, summary.csv and timeseries.csv.
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
    write("summary.md", &crate::render::markdown(summary, command, started))?;
    write("summary.csv", &crate::table::summary_csv(summary))?;
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
/// 1 had no TLS, so it had no TLS errors; before 4 no checks; before 5 no HTTP/2 or gRPC;
/// before 6 no control API.
fn upgrade(mut value: serde_json::Value) -> serde_json::Value {
    let version = |v: &serde_json::Value| v.get("schema_version").and_then(serde_json::Value::as_u64);
    if version(&value) == Some(1) {
        no_errors_of(&mut value, &["tls"]);
        value["schema_version"] = 2.into();
    }
    // Schema 3 added only fields that are absent when they do not apply (`no_data`).
    if version(&value) == Some(2) {
        value["schema_version"] = 3.into();
    }
    if version(&value) == Some(3) {
        no_errors_of(&mut value, &["check"]);
        value["schema_version"] = 4.into();
    }
    if version(&value) == Some(4) {
        no_errors_of(&mut value, &["reset_stream", "h2", "grpc"]);
        value["schema_version"] = 5.into();
    }
    // Schema 6 added only `interventions`, absent when a run was not steered.
    if version(&value) == Some(5) {
        value["schema_version"] = 6.into();
    }
    value
}

/// Every error count of a summary (the run's, each named request's and each scenario's) gains
/// `kinds` at 0: a run of a version without them could not have had them.
fn no_errors_of(value: &mut serde_json::Value, kinds: &[&str]) {
    let fill = |e: Option<&mut serde_json::Value>| {
        if let Some(e) = e.and_then(|e| e.as_object_mut()) {
            for k in kinds {
                e.entry(*k).or_insert(0.into());
            }
        }
    };
    fill(value.get_mut("errors"));
    for part in ["requests_by_name", "scenarios"] {
        if let Some(parts) = value.get_mut(part).and_then(|n| n.as_object_mut()) {
            for n in parts.values_mut() {
                fill(n.get_mut("errors"));
            }
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn out_templates_fill_their_placeholders() {
        let t = UNIX_EPOCH + Duration::from_secs(1_795_377_600);
        let vars = [("scenario", "shop".to_string()), ("profile", "ramp".to_string())];
        let out = expand(Path::new("results/{date}/{scenario}/{profile}-{time}"), &vars, t).unwrap();
        assert_eq!(out, Path::new("results/2026-11-22/shop/ramp-200000"));
        assert_eq!(expand(Path::new("plain/dir"), &vars, t).unwrap(), Path::new("plain/dir"));
        let e = expand(Path::new("r/{when}"), &vars, t).unwrap_err().to_string();
        assert!(e.contains("'{when}' is not a placeholder") && e.contains("{scenario}"), "{e}");
        assert!(expand(Path::new("r/{date"), &vars, t).is_err());
    }

    #[test]
    fn utc_stamps() {
        let t = UNIX_EPOCH + Duration::from_secs(1_795_377_600);
        assert_eq!(stamp(t), "20261122-200000");
        assert_eq!(crate::render::rfc3339(t), "2026-11-22T20:00:00Z");
        assert_eq!(crate::render::rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00Z");
    }
}
