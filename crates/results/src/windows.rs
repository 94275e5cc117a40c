//! `engine report windows`: a run's latency in windows of a fixed length (a minute of a soak,
//! say), exact from its latency.hlog: the intervals of each window are added, never their
//! percentiles averaged.

use std::fmt::Write as _;
use std::time::Duration;

use hdrhistogram::Histogram;

use crate::hlog::Log;
use crate::stats::new_histogram;

/// One window: its span in seconds from the log's first interval, and its histogram.
pub struct Window {
    pub start_s: f64,
    pub end_s: f64,
    pub latency: Histogram<u64>,
}

/// The log's corrected latency in windows of `every` (at least 1 ms); an interval belongs to
/// the window its end falls in. Empty when the log holds no interval.
pub fn windows(log: &Log, every: Duration) -> Vec<Window> {
    let every = every.as_secs_f64().max(1e-3);
    let Some(t0) = log.intervals.first().map(|i| i.start) else { return Vec::new() };
    let mut out: Vec<Window> = Vec::new();
    for i in &log.intervals {
        let at = ((i.start + i.len - t0 - 1e-6).max(0.0) / every).floor() as usize;
        while out.len() <= at {
            let k = out.len() as f64;
            out.push(Window { start_s: k * every, end_s: (k + 1.0) * every, latency: new_histogram() });
        }
        // Same bounds on both sides: adding cannot fail.
        let _ = out[at].latency.add(&i.corrected);
    }
    out
}

/// The CSV `engine report windows` prints: span, responses, and p50, p90, p99, p99.9 and
/// max in milliseconds (empty for a window without responses).
pub fn csv(windows: &[Window]) -> String {
    let mut out = String::from("start_s,end_s,responses,p50_ms,p90_ms,p99_ms,p999_ms,max_ms\n");
    for w in windows {
        let h = &w.latency;
        let ms = |us: u64| format!("{:.3}", us as f64 / 1e3);
        let figures = if h.is_empty() {
            ",,,,".to_string()
        } else {
            let q = |p: f64| ms(h.value_at_quantile(p));
            format!("{},{},{},{},{}", q(0.5), q(0.9), q(0.99), q(0.999), ms(h.max()))
        };
        let _ = writeln!(out, "{:.3},{:.3},{},{figures}", w.start_s, w.end_s, h.len());
    }
    out
}
