//! `engine report compare`: the key figures of two runs side by side, and which regressed
//! beyond a bound (a CI gate).

use crate::summary::Summary;
use crate::thresholds::{Figures, Selector};

/// One compared figure.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub name: &'static str,
    pub unit: &'static str,
    pub baseline: f64,
    pub current: f64,
    /// Relative change, `(current - baseline) / baseline` (see [`ERROR_RATE_FLOOR`]).
    pub change: f64,
    /// Worse than the baseline by more than the bound.
    pub regressed: bool,
    /// A rate that starts near zero: the change is shown in points (`current - baseline`),
    /// where a relative change would read +18166.8%.
    pub absolute: bool,
}

/// Error rates near zero make relative changes meaningless: below this floor (0.1%) the
/// change is measured against the floor.
pub const ERROR_RATE_FLOOR: f64 = 0.001;

struct Figure {
    name: &'static str,
    unit: &'static str,
    read: fn(&Summary) -> f64,
    higher_is_better: bool,
}

const FIGURES: [Figure; 5] = [
    Figure { name: "rps", unit: "/s", read: |s| s.rps, higher_is_better: true },
    Figure { name: "p50", unit: "ms", read: |s| s.latency_ms.p50, higher_is_better: false },
    Figure { name: "p95", unit: "ms", read: |s| s.latency_ms.p95, higher_is_better: false },
    Figure { name: "p99", unit: "ms", read: |s| s.latency_ms.p99, higher_is_better: false },
    Figure {
        name: "error_rate",
        unit: "",
        read: |s| Figures::of_summary(s, &Selector::All).map_or(0.0, |f| f.error_rate),
        higher_is_better: false,
    },
];

/// Throughput, p50, p95, p99 and error rate of `current` against `baseline`; a figure
/// regressed when it is worse by more than `max_regression` (a fraction).
pub fn compare(baseline: &Summary, current: &Summary, max_regression: f64) -> Vec<Row> {
    FIGURES
        .iter()
        .map(|f| {
            let (b, c) = ((f.read)(baseline), (f.read)(current));
            let denominator = if f.name == "error_rate" { b.max(ERROR_RATE_FLOOR) } else { b };
            let change = if denominator > 0.0 { (c - b) / denominator } else { 0.0 };
            let worse = if f.higher_is_better { -change } else { change };
            let absolute = f.name == "error_rate";
            Row {
                name: f.name,
                unit: f.unit,
                baseline: b,
                current: c,
                change,
                regressed: worse > max_regression,
                absolute,
            }
        })
        .collect()
}

/// How the two runs' plans differ (target, model, connections, rate, length, shards): a
/// comparison of different plans measures the plans, not the system.
pub fn plan_differences(a: &Summary, b: &Summary) -> Vec<String> {
    let mut out = Vec::new();
    let mut differ = |what: &str, x: String, y: String| {
        if x != y {
            out.push(format!("{what} {x} vs {y}"));
        }
    };
    differ("target", a.target.clone(), b.target.clone());
    differ("model", a.model.name().into(), b.model.name().into());
    differ("connections", a.conns.to_string(), b.conns.to_string());
    differ("shards", a.shards.to_string(), b.shards.to_string());
    let rate = |s: &Summary| s.schedule.as_ref().map_or("-".into(), |x| format!("{}/s", x.target_rps));
    differ("asked rate", rate(a), rate(b));
    // Lengths within 5% are one plan's run and its drain.
    if (a.duration_s - b.duration_s).abs() > 0.05 * a.duration_s.max(b.duration_s) {
        differ("length", format!("{:.1}s", a.duration_s), format!("{:.1}s", b.duration_s));
    }
    out
}
