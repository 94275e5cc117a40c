//! What a named load profile was run for: the criterion an interval must meet, the stress
//! profile's capacity, the spike's recovery time.

use crate::summary::Point;

/// When an interval counts as good: what "the system kept up" means for stress and recovery.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Criterion {
    /// Highest acceptable (corrected) p99.
    pub p99_ms: f64,
    /// Highest acceptable share of errors among requests and errors.
    pub error_rate: f64,
    /// Open model: the lowest acceptable completed rate as a share of the asked rate.
    pub min_rate_share: f64,
}

impl Default for Criterion {
    fn default() -> Self {
        Self { p99_ms: 1000.0, error_rate: 0.01, min_rate_share: 0.95 }
    }
}

impl Criterion {
    pub fn describe(&self, open: bool) -> String {
        let mut d = format!("p99 <= {} ms, errors <= {}%", self.p99_ms, self.error_rate * 100.0);
        if open {
            d.push_str(&format!(", completed rate >= {}% of the asked rate", self.min_rate_share * 100.0));
        }
        d
    }

    /// Whether an interval met the criterion; `open` says whether `target` is a rate.
    pub fn holds(&self, p: &Point, open: bool) -> bool {
        let rate_ok = !open || p.target <= 0.0 || p.rps >= self.min_rate_share * p.target;
        p.p99_ms <= self.p99_ms && p.error_rate <= self.error_rate && rate_ok
    }
}

/// Follows a stress run interval by interval: each level is judged on its held intervals
/// (the first interval of a level, which contains the step up, is not judged).
#[derive(Debug, Clone, Default)]
pub struct StressWatch {
    criterion: Criterion,
    open: bool,
    level: f64,
    level_intervals: u32,
    level_good: bool,
    /// The highest level all of whose held intervals met the criterion.
    pub last_good: Option<f64>,
    /// The first level that failed.
    pub failed_at: Option<f64>,
    /// The highest completed rate of any good interval.
    pub best_rps: f64,
}

impl StressWatch {
    pub fn new(criterion: Criterion, open: bool) -> Self {
        Self { criterion, open, level_good: true, ..Default::default() }
    }

    /// Takes one interval; returns true when the run should stop (a level has failed).
    pub fn observe(&mut self, p: &Point) -> bool {
        if self.failed_at.is_some() {
            // The run is stopping; the drain's partial interval says nothing of capacity.
            return true;
        }
        if p.target != self.level {
            // A new level (or the ramp to it): close the previous one.
            if self.level_intervals > 0 && self.level_good {
                self.last_good = Some(self.level);
            }
            self.level = p.target;
            self.level_intervals = 0;
            self.level_good = true;
            return false;
        }
        self.level_intervals += 1;
        if self.criterion.holds(p, self.open) {
            self.best_rps = self.best_rps.max(p.rps);
            false
        } else {
            self.level_good = false;
            self.failed_at = Some(self.level);
            true
        }
    }

    /// Closes the last level at the end of a run that never failed.
    pub fn finish(&mut self) {
        if self.failed_at.is_none() && self.level_intervals > 0 && self.level_good {
            self.last_good = Some(self.level);
        }
    }
}

/// Seconds from `from_s` until the first interval whose p99 is back within `factor` of the
/// baseline p99 (the median p99 of the intervals before `baseline_until_s`).
pub fn recovery_time(points: &[Point], baseline_until_s: f64, from_s: f64, factor: f64) -> Option<f64> {
    let mut base: Vec<f64> = points
        .iter()
        .filter(|p| p.t_s <= baseline_until_s && p.t_s > 1.0 && p.requests > 0)
        .map(|p| p.p99_ms)
        .collect();
    if base.is_empty() {
        return None;
    }
    base.sort_by(f64::total_cmp);
    let baseline = base[base.len() / 2];
    points
        .iter()
        .filter(|p| p.t_s > from_s && p.requests > 0)
        .find(|p| p.p99_ms <= baseline * factor)
        .map(|p| p.t_s - from_s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(t: f64, target: f64, rps: f64, p99: f64) -> Point {
        Point { t_s: t, target, requests: rps as u64, rps, p99_ms: p99, ..Default::default() }
    }

    #[test]
    fn stress_finds_the_last_good_level() {
        let mut w = StressWatch::new(Criterion::default(), true);
        let mut t = 0.0;
        let mut stopped = false;
        for level in [100.0f64, 200.0, 300.0, 400.0] {
            for i in 0..3 {
                t += 1.0;
                // Capacity 300/s: above it the achieved rate stays at 300 and latency grows.
                let rps = if i == 0 { level / 2.0 } else { level.min(300.0) };
                let p99 = if level > 300.0 { 2000.0 } else { 10.0 };
                if w.observe(&point(t, level, rps, p99)) {
                    stopped = true;
                    break;
                }
            }
            if stopped {
                break;
            }
        }
        assert!(stopped);
        assert_eq!(w.last_good, Some(300.0));
        assert_eq!(w.failed_at, Some(400.0));
        assert_eq!(w.best_rps, 300.0);
    }

    #[test]
    fn recovery_is_measured_from_the_drop() {
        let pts: Vec<Point> = (1..=10)
            .map(|t| {
                let p99 = match t {
                    5..=6 => 500.0,
                    7 => 40.0,
                    _ => 10.0,
                };
                point(t as f64, 1.0, 100.0, p99)
            })
            .collect();
        assert_eq!(recovery_time(&pts, 4.0, 6.0, 1.5), Some(2.0));
    }
}
