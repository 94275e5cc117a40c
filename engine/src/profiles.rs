//! Named load profiles: the test plans capacity teams write by hand, as stages scaled to a
//! peak, and the figures each one is run for (capacity, recovery time).
//!
//! A profile is only a set of stages: `engine blast --profile NAME --peak N --print-plan`
//! prints them, and the printed `--stages` can be copied and edited.

use std::time::Duration;

use crate::schedule::Stage;
use crate::summary::Point;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProfileName {
    /// Stepwise up: 1%, 5%, 10%, 25%, 50%, 75%, 100% of the peak (100 → 10k users at 10k).
    Ramp,
    /// Baseline (2% of the peak), a sudden jump to the peak (50×), back to the baseline.
    Spike,
    /// Up in steps of 5% of the peak until a step fails; the last good step is the capacity.
    Stress,
    /// Up to the peak, then held for 60 steps: watch for drift.
    Soak,
    /// Up to the peak, held, dropped to 10%: how fast latency returns to the baseline.
    Recovery,
}

impl ProfileName {
    pub const ALL: [ProfileName; 5] = [Self::Ramp, Self::Spike, Self::Stress, Self::Soak, Self::Recovery];

    pub fn name(self) -> &'static str {
        match self {
            Self::Ramp => "ramp",
            Self::Spike => "spike",
            Self::Stress => "stress",
            Self::Soak => "soak",
            Self::Recovery => "recovery",
        }
    }

    pub fn parse(text: &str) -> Result<Self, String> {
        Self::ALL.into_iter().find(|p| p.name() == text).ok_or_else(|| {
            let names: Vec<_> = Self::ALL.iter().map(|p| p.name()).collect();
            format!("unknown profile '{text}' (one of: {})", names.join(", "))
        })
    }

    /// The stages for a peak level (connections, or requests per second) and a step length
    /// (how long each level is held).
    pub fn stages(self, peak: f64, step: Duration) -> Vec<Stage> {
        let s = |target: f64, d: Duration| Stage { target: target.round().max(0.0), duration: d };
        let ramp = (step / 6).max(Duration::from_secs(1));
        let jump = Duration::from_secs(1);
        let mut out = Vec::new();
        match self {
            Self::Ramp => {
                for f in [0.01, 0.05, 0.1, 0.25, 0.5, 0.75, 1.0] {
                    out.push(s(peak * f, ramp));
                    out.push(s(peak * f, step));
                }
                out.push(s(0.0, ramp));
            }
            Self::Spike => {
                let base = peak / 50.0;
                out.extend([s(base, ramp), s(base, step), s(peak, jump), s(peak, step), s(base, jump)]);
                out.extend([s(base, step * 2), s(0.0, ramp)]);
            }
            Self::Stress => {
                for k in 1..=STRESS_STEPS {
                    let level = peak * k as f64 / STRESS_STEPS as f64;
                    out.push(s(level, jump));
                    out.push(s(level, step));
                }
            }
            Self::Soak => out.extend([s(peak, step), s(peak, step * 60), s(0.0, ramp)]),
            Self::Recovery => {
                // The baseline is 10% of the peak; the ramp up to the peak takes one step.
                out.extend([s(peak / 10.0, ramp), s(peak / 10.0, step), s(peak, step), s(peak, step)]);
                out.extend([s(peak / 10.0, jump), s(peak / 10.0, step * 3), s(0.0, ramp)]);
            }
        }
        out
    }
}

/// The figures a profile was run for, in the summary.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct ProfileReport {
    pub name: &'static str,
    /// Connections (closed model) or requests per second (open model) at the peak.
    pub peak: f64,
    /// Stress: the highest level whose every held interval met the criterion.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub capacity: Option<f64>,
    /// Stress: the level that failed it (the run stopped there).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failed_at: Option<f64>,
    /// Stress: the highest completed rate of any interval that met the criterion.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub best_rps: Option<f64>,
    /// Spike and recovery: seconds after the drop until p99 was back within 1.5x of the
    /// baseline; `None` if it never was.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recovery_s: Option<f64>,
    /// The criterion an interval had to meet, in words.
    pub criterion: String,
}

impl ProfileName {
    /// Spike and recovery: (end of the baseline, end of the drop) in seconds from the start.
    pub fn recovery_window(self, stages: &[Stage]) -> Option<(f64, f64)> {
        let ends = crate::schedule::stage_ends(stages);
        match self {
            // Stages: ramp, baseline, jump, peak, drop, ...
            Self::Spike | Self::Recovery if ends.len() >= 5 => Some((ends[1], ends[4])),
            _ => None,
        }
    }
}

/// Levels of the stress profile.
pub const STRESS_STEPS: u32 = 20;

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
        let attempts = p.requests + p.errors;
        let error_rate = if attempts == 0 { 0.0 } else { p.errors as f64 / attempts as f64 };
        let rate_ok = !open || p.target <= 0.0 || p.rps >= self.min_rate_share * p.target;
        p.p99_ms <= self.p99_ms && error_rate <= self.error_rate && rate_ok
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
    fn profiles_scale_to_the_peak() {
        let step = Duration::from_secs(30);
        let ramp = ProfileName::Ramp.stages(10_000.0, step);
        let levels: Vec<f64> = ramp.iter().step_by(2).map(|s| s.target).collect();
        assert_eq!(levels, vec![100.0, 500.0, 1000.0, 2500.0, 5000.0, 7500.0, 10_000.0, 0.0]);
        let spike = ProfileName::Spike.stages(5000.0, step);
        assert_eq!(spike[1].target * 50.0, spike[3].target);
        let stress = ProfileName::Stress.stages(1000.0, step);
        assert_eq!(stress.len(), 2 * STRESS_STEPS as usize);
        assert_eq!(stress.last().unwrap().target, 1000.0);
        for p in ProfileName::ALL {
            assert_eq!(ProfileName::parse(p.name()), Ok(p));
            assert!(p.stages(100.0, step).iter().all(|s| !s.duration.is_zero()));
        }
        assert!(ProfileName::parse("bogus").is_err());
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
