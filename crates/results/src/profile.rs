//! What a named load profile was run for: the criterion an interval must meet, the stress
//! profile's capacity, the spike's recovery time.

use hdrhistogram::Histogram;

use crate::stats::Totals;
use crate::summary::{Level, Point};

/// When an interval counts as good: what "the system kept up" means for stress and recovery.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Criterion {
    /// Highest acceptable (corrected) p99.
    pub p99_ms: f64,
    /// Highest acceptable (corrected) p95, when one is set.
    pub p95_ms: Option<f64>,
    /// Highest acceptable share of errors among requests and errors.
    pub error_rate: f64,
    /// Open model: the lowest acceptable completed rate as a share of the asked rate.
    pub min_rate_share: f64,
}

impl Default for Criterion {
    fn default() -> Self {
        Self { p99_ms: 1000.0, p95_ms: None, error_rate: 0.01, min_rate_share: 0.95 }
    }
}

impl Criterion {
    pub fn describe(&self, open: bool) -> String {
        let p95 = self.p95_ms.map(|v| format!("p95 <= {v} ms, ")).unwrap_or_default();
        let mut d = format!("{p95}p99 <= {} ms, errors <= {}%", self.p99_ms, self.error_rate * 100.0);
        if open {
            d.push_str(&format!(", completed rate >= {}% of the asked rate", self.min_rate_share * 100.0));
        }
        d
    }
}

/// One level's held intervals so far.
#[derive(Debug, Clone)]
struct Hold {
    level: f64,
    seconds: f64,
    latency: Histogram<u64>,
    requests: u64,
    errors: u64,
    attempts: u64,
    /// Checks passed and failed, once any ran.
    checks: Option<(u64, u64)>,
}

/// Follows a profile's run interval by interval: each level is judged on its whole hold (the
/// interval that steps up to it is not judged), so one slow second does not fail a level
/// whose hold met the criterion, and the verdict names the criterion and the figure. A
/// stress run stops at the first level that fails; the other profiles only report.
#[derive(Debug, Clone, Default)]
pub struct LevelWatch {
    criterion: Criterion,
    open: bool,
    /// Stop at the first failed level (stress).
    stops: bool,
    /// The level the last interval ended at, and its hold (once an interval is held).
    level: f64,
    hold: Option<Hold>,
    /// Each level judged, in order.
    pub levels: Vec<Level>,
    /// The highest level whose hold met the criterion.
    pub last_good: Option<f64>,
    /// The first level that failed.
    pub failed_at: Option<f64>,
    /// The highest completed rate of a level that held.
    pub best_rps: f64,
}

impl LevelWatch {
    /// `stops`: the run ends at the first failed level (stress).
    pub fn new(criterion: Criterion, open: bool, stops: bool) -> Self {
        Self { criterion, open, stops, ..Default::default() }
    }

    /// Takes one interval (its point and merged totals); returns true when the run should
    /// stop: a level failed (judged when its hold ends) and this watch stops on one.
    pub fn observe(&mut self, p: &Point, totals: &Totals, seconds: f64) -> bool {
        if !self.stops {
            self.take(p, totals, seconds);
            return false;
        }
        if self.failed_at.is_some() {
            // The run is stopping; the drain's partial interval says nothing of capacity.
            return true;
        }
        self.take(p, totals, seconds)
    }

    /// Adds an interval to the level's hold, or judges the hold when the level changes;
    /// returns whether a level has failed.
    fn take(&mut self, p: &Point, totals: &Totals, seconds: f64) -> bool {
        if p.target != self.level {
            // A new level (or the step up to it): judge the previous one's hold.
            self.close();
            self.level = p.target;
            return self.failed_at.is_some();
        }
        let c = &totals.counters;
        let hold = self.hold.get_or_insert_with(|| Hold {
            level: p.target,
            seconds: 0.0,
            latency: crate::stats::new_histogram(),
            requests: 0,
            errors: 0,
            attempts: 0,
            checks: None,
        });
        hold.seconds += seconds;
        let _ = hold.latency.add(&totals.latency);
        hold.requests += c.requests;
        hold.errors += c.errors_total();
        hold.attempts += c.attempts();
        if !totals.checks.is_empty() {
            let (p, f) = hold.checks.get_or_insert((0, 0));
            *p += totals.checks.iter().map(|c| c.passed).sum::<u64>();
            *f += totals.checks.iter().map(|c| c.failed).sum::<u64>();
        }
        false
    }

    /// Judges the level being held, if any.
    fn close(&mut self) {
        let Some(h) = self.hold.take() else { return };
        // A profile's last step down to nothing is not a level.
        if h.level <= 0.0 && !self.stops {
            return;
        }
        let level = self.judge(&h);
        if level.pass {
            self.last_good = Some(level.level);
            self.best_rps = self.best_rps.max(level.rps);
        } else if self.failed_at.is_none() {
            self.failed_at = Some(level.level);
        }
        self.levels.push(level);
    }

    fn judge(&self, h: &Hold) -> Level {
        let c = &self.criterion;
        let at = |q: f64| if h.latency.is_empty() { 0.0 } else { h.latency.value_at_quantile(q) as f64 / 1000.0 };
        let p99_ms = at(0.99);
        let error_rate = if h.attempts == 0 { 0.0 } else { h.errors as f64 / h.attempts as f64 };
        let rps = h.requests as f64 / h.seconds.max(1e-9);
        let failed_on = if h.requests == 0 {
            Some("no response completed".to_string())
        } else if let Some(limit) = c.p95_ms.filter(|l| at(0.95) > *l) {
            Some(format!("p95 {:.1} ms, over {limit} ms", at(0.95)))
        } else if p99_ms > c.p99_ms {
            Some(format!("p99 {p99_ms:.1} ms, over {} ms", c.p99_ms))
        } else if error_rate > c.error_rate {
            Some(format!("errors {:.2}%, over {}%", error_rate * 100.0, c.error_rate * 100.0))
        } else if self.open && h.level > 0.0 && rps < c.min_rate_share * h.level {
            Some(format!("completed {rps:.1}/s, under {}% of the asked {}/s", c.min_rate_share * 100.0, h.level))
        } else {
            None
        };
        let round = |x: f64| (x * 1000.0).round() / 1000.0;
        Level {
            level: h.level,
            held_s: round(h.seconds),
            p99_ms,
            error_rate: (error_rate * 1e6).round() / 1e6,
            rps: round(rps),
            pass: failed_on.is_none(),
            failed_on,
            p50_ms: Some(at(0.5)),
            p95_ms: Some(at(0.95)),
            requests: Some(h.requests),
            errors: Some(h.errors),
            checks_passed: h.checks.map(|c| c.0),
            checks_failed: h.checks.map(|c| c.1),
        }
    }

    /// Judges the last level at the end of a run that never stopped at a failed one.
    pub fn finish(&mut self) {
        if self.failed_at.is_none() || !self.stops {
            self.close();
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

    /// An interval of `seconds` at `level` with `rps` completed of 1 ms each and `errors`.
    fn interval(level: f64, rps: f64, p99_ms: f64, errors: u64) -> (Point, Totals) {
        let mut t = Totals::default();
        for i in 0..rps as u64 {
            let ms = if i % 50 == 0 { p99_ms } else { 1.0 };
            t.record(200, std::time::Duration::from_secs_f64(ms / 1000.0), std::time::Duration::ZERO, true);
        }
        for _ in 0..errors {
            t.counters.error(crate::stats::ErrorKind::Timeout);
        }
        (point(0.0, level, rps, p99_ms), t)
    }

    #[test]
    fn stress_judges_each_level_on_its_whole_hold_and_names_what_failed() {
        let mut w = LevelWatch::new(Criterion::default(), true, true);
        let mut stopped = false;
        'levels: for level in [100.0f64, 200.0, 300.0, 400.0, 500.0] {
            for i in 0..4 {
                // Capacity 300/s: above it the achieved rate stays at 300. One slow second at
                // 200/s (565 of 600 once happened) does not fail a level whose hold kept up.
                let rps = match (level as u32, i) {
                    (_, 0) => level / 2.0,
                    (200, 2) => 185.0,
                    _ => level.min(300.0),
                };
                let (p, t) = interval(level, rps, 10.0, 0);
                if w.observe(&p, &t, 1.0) {
                    stopped = true;
                    break 'levels;
                }
            }
        }
        assert!(stopped);
        assert_eq!(w.last_good, Some(300.0));
        assert_eq!(w.failed_at, Some(400.0));
        assert_eq!(w.best_rps, 300.0);
        let failed = w.levels.last().unwrap();
        assert_eq!(failed.failed_on.as_deref(), Some("completed 300.0/s, under 95% of the asked 400/s"), "{failed:?}");
        assert_eq!(w.levels.len(), 4);
        assert!(w.levels[1].pass && (w.levels[1].rps - 195.0).abs() < 0.01, "{:?}", w.levels[1]);
        // Latency and errors are named the same way.
        let mut w = LevelWatch::new(Criterion::default(), false, true);
        for (p, t) in [interval(10.0, 100.0, 1.0, 0), interval(10.0, 100.0, 1500.0, 0), interval(20.0, 1.0, 1.0, 0)] {
            w.observe(&p, &t, 1.0);
        }
        let why = w.levels[0].failed_on.clone().unwrap_or_default();
        assert!(why.starts_with("p99 150") && why.ends_with(" ms, over 1000 ms"), "{:?}", w.levels);
        let mut w = LevelWatch::new(Criterion::default(), false, true);
        for (p, t) in [interval(10.0, 100.0, 1.0, 0), interval(10.0, 100.0, 1.0, 5), interval(20.0, 1.0, 1.0, 0)] {
            w.observe(&p, &t, 1.0);
        }
        assert_eq!(w.levels[0].failed_on.as_deref(), Some("errors 4.76%, over 1%"), "{:?}", w.levels);
        // A p95 criterion, when set, before the p99.
        let c = Criterion { p95_ms: Some(0.5), ..Criterion::default() };
        assert!(c.describe(false).starts_with("p95 <= 0.5 ms, p99 <= 1000 ms"), "{}", c.describe(false));
        let mut w = LevelWatch::new(c, false, true);
        for (p, t) in [interval(10.0, 100.0, 1.0, 0), interval(10.0, 100.0, 1.0, 0), interval(20.0, 1.0, 1.0, 0)] {
            w.observe(&p, &t, 1.0);
        }
        assert_eq!(w.levels[0].failed_on.as_deref(), Some("p95 1.0 ms, over 0.5 ms"), "{:?}", w.levels);
    }

    /// A ramp (or any profile but stress) reports every level over its hold, never stops, and
    /// its last step down to nothing is no level.
    #[test]
    fn other_profiles_report_each_level_and_never_stop() {
        let mut w = LevelWatch::new(Criterion::default(), false, false);
        let run = [(5.0, 50.0, 1.0), (10.0, 100.0, 1.0), (10.0, 100.0, 1.0), (15.0, 150.0, 1.0), (20.0, 200.0, 1.0)];
        let mut intervals: Vec<(Point, Totals)> = run.iter().map(|&(l, r, p)| interval(l, r, p, 0)).collect();
        intervals.push(interval(20.0, 200.0, 1500.0, 0));
        intervals.push(interval(30.0, 300.0, 1.0, 0));
        intervals.push(interval(30.0, 300.0, 1.0, 0));
        intervals.push(interval(0.0, 0.0, 1.0, 0));
        intervals.push(interval(0.0, 0.0, 1.0, 0));
        for (p, t) in &intervals {
            assert!(!w.observe(p, t, 1.0), "only stress stops");
        }
        w.finish();
        let levels: Vec<(f64, bool, Option<u64>)> = w.levels.iter().map(|l| (l.level, l.pass, l.requests)).collect();
        // Each level's first interval is its step up: 10 held one interval, 20 one (failing
        // on p99), 30 one; 5 and 15 were steps only.
        assert_eq!(
            levels,
            [(10.0, true, Some(100)), (20.0, false, Some(200)), (30.0, true, Some(300))],
            "{:?}",
            w.levels
        );
        let l = &w.levels[2];
        assert_eq!((l.p50_ms, l.p95_ms, l.errors), (Some(1.0), Some(1.0), Some(0)));
    }

    /// A level's checks are counted over its hold, and only when the plan has checks.
    #[test]
    fn a_level_counts_its_checks() {
        let mut w = LevelWatch::new(Criterion::default(), false, false);
        for (level, passed) in [(10.0, 1), (10.0, 95), (10.0, 3), (20.0, 0)] {
            let (p, mut t) = interval(level, 100.0, 1.0, 0);
            for i in 0..100 {
                t.check(0, i < passed);
            }
            w.observe(&p, &t, 1.0);
        }
        w.finish();
        let l = &w.levels[0];
        // The first interval is the step up to 10: not part of the hold.
        assert_eq!((l.checks_passed, l.checks_failed), (Some(98), Some(102)), "{l:?}");
        let mut w = LevelWatch::new(Criterion::default(), false, false);
        for level in [10.0, 10.0, 20.0] {
            let (p, t) = interval(level, 100.0, 1.0, 0);
            w.observe(&p, &t, 1.0);
        }
        w.finish();
        assert_eq!((w.levels[0].checks_passed, w.levels[0].checks_failed), (None, None));
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
