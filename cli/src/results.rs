//! The results folder every blast leaves: summary.json, summary.md, timeseries.csv,
//! latency.hlog (HdrHistogram interval log, V2 compressed), run.log and report.html.

use std::fmt::Write as _;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use engine_blast::Summary;
use engine_results::stats::Totals;
use hdrhistogram::serialization::interval_log::{IntervalLogWriter, IntervalLogWriterBuilder, Tag};
use hdrhistogram::serialization::V2DeflateSerializer;

/// Bounds for reading a results folder back (`engine report`): far above what a week-long run
/// writes, so they only stop a path that never ends (a FIFO, `/dev/zero`) from taking all memory.
pub const MAX_SUMMARY: u64 = 512 * 1024 * 1024;
pub const MAX_HLOG: u64 = 4 * 1024 * 1024 * 1024;

/// `results/<YYYYMMDD-HHMMSS>` (UTC) under the current directory, or the given folder.
/// Two runs started in the same second get `-2`, `-3`, ... rather than one folder.
pub fn folder(out: Option<&Path>) -> anyhow::Result<PathBuf> {
    if let Some(d) = out {
        std::fs::create_dir_all(d).with_context(|| format!("cannot create the results folder '{}'", d.display()))?;
        return Ok(d.to_path_buf());
    }
    let base = Path::new("results").join(stamp(SystemTime::now(), "%Y%m%d-%H%M%S"));
    std::fs::create_dir_all("results").context("cannot create the results folder 'results'")?;
    for n in 1..1000 {
        let dir = if n == 1 { base.clone() } else { PathBuf::from(format!("{}-{n}", base.display())) };
        match std::fs::create_dir(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e).with_context(|| format!("cannot create the results folder '{}'", dir.display())),
        }
    }
    anyhow::bail!("cannot create a results folder next to '{}': 999 exist", base.display())
}

/// A UTC time as `%Y%m%d-%H%M%S` or `%Y-%m-%dT%H:%M:%SZ` (the two forms used here).
pub fn stamp(t: SystemTime, form: &str) -> String {
    let secs = t.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0) as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Howard Hinnant's days-to-civil.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    let (hh, mm, ss) = (rem / 3600, rem % 3600 / 60, rem % 60);
    if form == "%Y%m%d-%H%M%S" {
        format!("{y:04}{m:02}{d:02}-{hh:02}{mm:02}{ss:02}")
    } else {
        format!("{y:04}-{m:02}-{d:02}T{hh:02}:{mm:02}:{ss:02}Z")
    }
}

pub type HlogWriter<'a> = IntervalLogWriter<'a, 'a, BufWriter<File>, V2DeflateSerializer>;

/// Starts latency.hlog: values are microseconds; the max column is in milliseconds.
pub fn begin_hlog<'a>(
    file: &'a mut BufWriter<File>,
    serializer: &'a mut V2DeflateSerializer,
    start: SystemTime,
) -> anyhow::Result<HlogWriter<'a>> {
    IntervalLogWriterBuilder::new()
        .add_comment("engine blast latency, corrected (untagged) and uncorrected (tag=uncorrected)")
        .add_comment("values in microseconds; the max column in milliseconds")
        .with_start_time(start)
        .with_base_time(start)
        .with_max_value_divisor(1000.0)
        .begin_log_with(file, serializer)
        .context("cannot write latency.hlog")
}

/// Appends one interval's histograms, `from_s`..`to_s` after the start.
pub fn write_interval(log: &mut HlogWriter<'_>, interval: &Totals, from_s: f64, to_s: f64) -> anyhow::Result<()> {
    let start = Duration::from_secs_f64(from_s.max(0.0));
    let length = Duration::from_secs_f64((to_s - from_s).max(0.0));
    log.write_histogram(&interval.latency, start, length, None)
        .map_err(|e| anyhow::anyhow!("cannot write latency.hlog: {e:?}"))?;
    log.write_histogram(&interval.latency_uncorrected, start, length, Tag::new("uncorrected"))
        .map_err(|e| anyhow::anyhow!("cannot write latency.hlog: {e:?}"))?;
    Ok(())
}

/// run.log: one timestamped line per event of the run.
pub struct RunLog {
    file: BufWriter<File>,
}

impl RunLog {
    pub fn create(dir: &Path) -> anyhow::Result<Self> {
        let path = dir.join("run.log");
        let file = File::create(&path).with_context(|| format!("cannot create '{}'", path.display()))?;
        Ok(Self { file: BufWriter::new(file) })
    }

    /// Best effort: a full disk must not stop the run; the summary says what happened.
    pub fn line(&mut self, text: &str) {
        let now = SystemTime::now();
        let millis = now.duration_since(UNIX_EPOCH).map(|d| d.subsec_millis()).unwrap_or(0);
        let t = stamp(now, "iso");
        let _ = writeln!(self.file, "{}.{millis:03}Z {text}", &t[..t.len() - 1]);
        let _ = self.file.flush();
    }
}

/// Writes summary.json, summary.md and timeseries.csv.
pub fn write_summary(dir: &Path, summary: &Summary, command: &str, started: SystemTime) -> anyhow::Result<()> {
    let json = serde_json::to_string_pretty(summary)? + "\n";
    std::fs::write(dir.join("summary.json"), &json).context("cannot write summary.json")?;
    std::fs::write(dir.join("report.html"), crate::html::render(&json)).context("cannot write report.html")?;
    std::fs::write(dir.join("summary.md"), markdown(summary, command, started)).context("cannot write summary.md")?;
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
    std::fs::write(dir.join("timeseries.csv"), csv).context("cannot write timeseries.csv")?;
    Ok(())
}

/// A report a person would paste into a ticket.
fn markdown(s: &Summary, command: &str, started: SystemTime) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "# engine blast: {}\n", s.target);
    let _ = writeln!(
        o,
        "- started {} ({} model, {} connections, {} shards)",
        stamp(started, "iso"),
        s.model,
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
        let _ = writeln!(o, "| latency {k} | {v:.3} ms |");
    }
    let _ = writeln!(
        o,
        "| errors | {} (connect {}, timeout {}, reset {}, closed {}, parse {}) |",
        s.errors.total, s.errors.connect, s.errors.timeout, s.errors.reset, s.errors.closed, s.errors.parse
    );
    let status: Vec<String> = s.status.iter().map(|(k, v)| format!("{k}: {v}")).collect();
    let _ = writeln!(o, "| status | {} |", status.join(", "));
    if let Some(sch) = &s.schedule {
        let _ = writeln!(
            o,
            "| asked rate | {:.1} req/s ({} of {} sent{}) |",
            sch.target_rps,
            sch.sent,
            sch.expected,
            if sch.behind { ", **behind schedule**" } else { "" }
        );
    }
    if !s.thresholds.is_empty() {
        let _ = writeln!(o, "\n## Thresholds\n");
        for t in &s.thresholds {
            let _ = writeln!(o, "- {} `{}` (measured {})", if t.pass { "PASS" } else { "**FAIL**" }, t.expr, t.value);
        }
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_stamps() {
        let t = UNIX_EPOCH + Duration::from_secs(1_795_377_600);
        assert_eq!(stamp(t, "%Y%m%d-%H%M%S"), "20261122-200000");
        assert_eq!(stamp(t, "iso"), "2026-11-22T20:00:00Z");
        assert_eq!(stamp(UNIX_EPOCH, "iso"), "1970-01-01T00:00:00Z");
    }
}
