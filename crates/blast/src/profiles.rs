//! Named load profiles: the test plans capacity teams write by hand, as stages scaled to a
//! peak, and the figures each one is run for (capacity, recovery time).
//!
//! A profile is only a set of stages: `engine blast --profile NAME --peak N --print-plan`
//! prints them, and the printed `--stages` can be copied and edited.

use std::time::Duration;

use engine_results::observe::{Flow, Interval, Observer};
use engine_results::profile::{recovery_time, Criterion, LevelWatch};
use engine_results::summary::{ProfileReport, Summary};

use crate::schedule::Stage;

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
    /// (how long each level is held); `baseline`: the share of the peak spike and recovery
    /// start from and return to (default 2% and 10%).
    pub fn stages(self, peak: f64, step: Duration, baseline: Option<f64>) -> Vec<Stage> {
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
                let base = peak * baseline.unwrap_or(0.02);
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
                let base = peak * baseline.unwrap_or(0.1);
                out.extend([s(base, ramp), s(base, step), s(peak, step), s(peak, step)]);
                out.extend([s(base, jump), s(base, step * 3), s(0.0, ramp)]);
            }
        }
        out
    }
}

/// Where a load that rises to a peak and drops back can be seen to recover: (the end of the
/// baseline before the rise, the end of the drop after the peak), in seconds from the start.
/// The rise is the stage that first reaches the highest target; the drop the first stage after
/// it that goes below. `None` when the stages have no baseline before the rise or no drop
/// after it.
pub fn recovery_window(stages: &[Stage]) -> Option<(f64, f64)> {
    let ends = crate::schedule::stage_ends(stages);
    let peak = stages.iter().map(|s| s.target).fold(f64::NEG_INFINITY, f64::max);
    let rise = stages.iter().position(|s| s.target == peak)?;
    let drop = rise + stages[rise..].iter().position(|s| s.target < peak)?;
    let baseline_end = ends[rise.checked_sub(1)?];
    (stages[..rise].iter().any(|s| s.target > 0.0)).then_some((baseline_end, ends[drop]))
}

/// A named profile (or a run's own `--stages`: `name` is `None`) as an observer of its run:
/// a stress run stops at the first level that fails; at the end the summary gets each level's
/// figures and what the profile was run for.
pub(crate) struct ProfileWatch {
    name: Option<ProfileName>,
    peak: f64,
    stages: Vec<Stage>,
    open: bool,
    criterion: Criterion,
    levels: LevelWatch,
}

impl ProfileWatch {
    /// `open`: the levels are rates (the open model), not connections.
    pub(crate) fn new(
        name: Option<ProfileName>,
        peak: f64,
        stages: Vec<Stage>,
        open: bool,
        criterion: Criterion,
    ) -> Self {
        let levels = LevelWatch::new(criterion, open, name == Some(ProfileName::Stress));
        ProfileWatch { name, peak, stages, open, criterion, levels }
    }
}

impl Observer for ProfileWatch {
    fn interval(&mut self, i: &Interval<'_>) -> Flow {
        let stop = self.levels.observe(i.point, i.totals, i.seconds());
        if stop {
            Flow::Stop
        } else {
            Flow::Continue
        }
    }

    fn finish(&mut self, summary: &mut Summary) {
        let mut report = ProfileReport {
            name: self.name.map_or(STAGES, ProfileName::name).to_string(),
            peak: self.peak,
            criterion: self.criterion.describe(self.open),
            ..Default::default()
        };
        let w = &mut self.levels;
        w.finish();
        if self.name == Some(ProfileName::Stress) {
            report.capacity = w.last_good;
            report.failed_at = w.failed_at;
            report.best_rps = Some(w.best_rps);
        }
        report.levels = w.levels.clone();
        let recovers = matches!(self.name, None | Some(ProfileName::Spike | ProfileName::Recovery));
        if let Some((baseline_end, drop_end)) = recovery_window(&self.stages).filter(|_| recovers) {
            report.recovery_s = recovery_time(&summary.timeseries, baseline_end, drop_end, 1.5);
        }
        summary.profile = Some(report);
    }
}

/// The profile's name in the summary of a run of `--stages` (each held stage a level).
pub const STAGES: &str = "stages";

/// Levels of the stress profile.
pub const STRESS_STEPS: u32 = 20;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profiles_scale_to_the_peak() {
        let step = Duration::from_secs(30);
        let ramp = ProfileName::Ramp.stages(10_000.0, step, None);
        let levels: Vec<f64> = ramp.iter().step_by(2).map(|s| s.target).collect();
        assert_eq!(levels, vec![100.0, 500.0, 1000.0, 2500.0, 5000.0, 7500.0, 10_000.0, 0.0]);
        let spike = ProfileName::Spike.stages(5000.0, step, None);
        assert_eq!(spike[1].target * 50.0, spike[3].target);
        let spike = ProfileName::Spike.stages(5000.0, step, Some(0.1));
        assert_eq!((spike[1].target, spike[5].target), (500.0, 500.0));
        let stress = ProfileName::Stress.stages(1000.0, step, None);
        assert_eq!(stress.len(), 2 * STRESS_STEPS as usize);
        assert_eq!(stress.last().unwrap().target, 1000.0);
        for p in ProfileName::ALL {
            assert_eq!(ProfileName::parse(p.name()), Ok(p));
            assert!(p.stages(100.0, step, None).iter().all(|s| !s.duration.is_zero()));
        }
        assert!(ProfileName::parse("bogus").is_err());
    }

    #[test]
    fn recovery_is_watched_from_the_rise_to_the_drop() {
        let step = Duration::from_secs(30);
        for p in [ProfileName::Spike, ProfileName::Recovery] {
            let stages = p.stages(1000.0, step, None);
            let ends = crate::schedule::stage_ends(&stages);
            assert_eq!(recovery_window(&stages), Some((ends[1], ends[4])), "{p:?}");
        }
        let st = |text: &str| crate::schedule::parse_stages(text).unwrap();
        // k6's spike test: warm up, hold, spike, hold, drop, hold, down.
        assert_eq!(recovery_window(&st("100:10s,100:1m,1400:10s,1400:3m,100:10s,100:3m,0:10s")), Some((70.0, 270.0)));
        assert_eq!(recovery_window(&st("100:10s,500:1m")), None, "no drop after the peak");
        assert_eq!(recovery_window(&st("500:10s,500:1m,0:10s")), None, "no baseline before the rise");
        assert_eq!(recovery_window(&st("0:10s,500:10s,0:10s")), None, "a baseline of nothing");
    }
}
