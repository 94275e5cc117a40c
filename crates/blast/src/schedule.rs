//! When load happens: stages (linear ramps of a level over time) and the open model's
//! arrival schedule.
//!
//! One abstraction serves every shape of run: a [`Profile`] is a level (connections in the
//! closed model, requests per second in the open model) as a function of time. A constant
//! run is a one-stage profile; `--stages 100:30s,1000:1m` ramps from 0 to 100 in 30 s, then
//! to 1000 in a minute.

use std::time::Duration;

use engine_runtime::units::parse_duration;

/// Ramp linearly to `target` over `duration`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Stage {
    pub target: f64,
    pub duration: Duration,
}

/// A higher rate than this is a typo, not a plan (it is ~100 times what one host can send).
pub const MAX_RATE: f64 = 10_000_000.0;
/// The highest stage target: the highest --rate; no host holds that many connections either.
pub const MAX_STAGE_TARGET: f64 = MAX_RATE;

/// Parses `TARGET:DURATION[,TARGET:DURATION...]`, e.g. `100:30s,1000:1m,0:30s`.
pub fn parse_stages(text: &str) -> Result<Vec<Stage>, String> {
    let mut stages = Vec::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let bad = |why: &str| format!("invalid stage '{part}' in '{text}': {why} (example: 100:30s,1000:1m,0:30s)");
        let (target, duration) = part.split_once(':').ok_or_else(|| bad("expected TARGET:DURATION"))?;
        let target: f64 = target.trim().parse().map_err(|_| bad("the target is not a number"))?;
        if !target.is_finite() || target < 0.0 {
            return Err(bad("the target must be 0 or more"));
        }
        if target > MAX_STAGE_TARGET {
            return Err(bad(&format!(
                "the target is above {MAX_STAGE_TARGET:.0} (connections or requests per second)"
            )));
        }
        let duration = parse_duration(duration).map_err(|e| bad(&e))?;
        if duration.is_zero() {
            return Err(bad("a stage lasts more than 0 s"));
        }
        stages.push(Stage { target, duration });
    }
    if stages.is_empty() {
        return Err(format!("no stages in '{text}' (example: 100:30s,1000:1m,0:30s)"));
    }
    Ok(stages)
}

/// When each stage ends, in seconds from the start.
pub fn stage_ends(stages: &[Stage]) -> Vec<f64> {
    stages
        .iter()
        .scan(0.0, |t, s| {
            *t += s.duration.as_secs_f64();
            Some(*t)
        })
        .collect()
}

/// A level over time: linear ramps between stage targets, starting at `start`.
#[derive(Debug, Clone, PartialEq)]
pub struct Profile {
    start: f64,
    stages: Vec<Stage>,
}

impl Profile {
    /// The same level for the whole run.
    pub fn constant(level: f64, duration: Duration) -> Self {
        Self { start: level, stages: vec![Stage { target: level, duration }] }
    }

    /// Ramps from 0 through the stages.
    pub fn ramps(stages: Vec<Stage>) -> Self {
        Self::ramps_from(0.0, stages)
    }

    /// Ramps from `start` through the stages.
    pub fn ramps_from(start: f64, stages: Vec<Stage>) -> Self {
        Self { start, stages }
    }

    pub fn stages(&self) -> &[Stage] {
        &self.stages
    }

    pub fn is_constant(&self) -> bool {
        self.stages.len() == 1 && self.start == self.stages[0].target
    }

    pub fn duration(&self) -> Duration {
        self.stages.iter().map(|s| s.duration).sum()
    }

    pub fn max(&self) -> f64 {
        self.stages.iter().map(|s| s.target).fold(self.start, f64::max)
    }

    /// The level `t` after the start (the last target after the end).
    pub fn at(&self, t: f64) -> f64 {
        let mut from = self.start;
        let mut begin = 0.0;
        for s in &self.stages {
            let d = s.duration.as_secs_f64();
            if t < begin + d {
                return from + (s.target - from) * ((t - begin) / d).max(0.0);
            }
            from = s.target;
            begin += d;
        }
        from
    }

    /// The area under the profile: for a rate, the requests the schedule asks for.
    pub fn integral(&self) -> f64 {
        self.integral_until(f64::INFINITY)
    }

    /// The area under the profile from the start to `t` seconds.
    pub fn integral_until(&self, t: f64) -> f64 {
        let mut from = self.start;
        let mut begin = 0.0;
        let mut sum = 0.0;
        for s in &self.stages {
            let d = s.duration.as_secs_f64();
            let span = (t - begin).clamp(0.0, d);
            let to = from + (s.target - from) * span / d;
            sum += (from + to) / 2.0 * span;
            from = s.target;
            begin += d;
        }
        sum
    }
}

/// The open model's arrival schedule for one shard: intended start times (seconds after the
/// start) at `share` of the profile's rate. Requests are due at these times whether or not a
/// connection is free; a late one is measured from when it was due.
///
/// Arrival k is due when the area under the rate curve reaches k, solved exactly on each
/// linear segment, so a ramp from 0 starts sending at once rather than after a first step
/// of 1/rate.
#[derive(Debug, Clone)]
pub struct Arrivals {
    /// `(begin, end, rate at begin, rate at end)` of each stage, in this shard's share.
    segments: Vec<(f64, f64, f64, f64)>,
    next: f64,
    end: f64,
}

impl Arrivals {
    pub fn new(profile: Profile, share: f64) -> Self {
        let mut segments = Vec::with_capacity(profile.stages.len());
        let (mut begin, mut from) = (0.0, profile.start * share);
        for st in &profile.stages {
            let end = begin + st.duration.as_secs_f64();
            let to = st.target * share;
            segments.push((begin, end, from, to));
            begin = end;
            from = to;
        }
        Self { segments, next: 0.0, end: begin }
    }

    /// The next intended start, or `None` when the schedule is over.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Option<f64> {
        if self.next >= self.end {
            return None;
        }
        let t = self.next;
        self.next = self.advance(t, 1.0);
        Some(t)
    }

    /// The time after `t` at which the area under the rate reaches `need` (or the end).
    fn advance(&self, mut t: f64, mut need: f64) -> f64 {
        for &(b0, b1, r0, r1) in &self.segments {
            if t >= b1 {
                continue;
            }
            let slope = (r1 - r0) / (b1 - b0);
            let a = r0 + slope * (t - b0);
            let span = b1 - t;
            let area = a * span + slope * span * span / 2.0;
            if area >= need {
                // a·Δ + slope·Δ²/2 = need, in the form that stays exact when slope is 0.
                let disc = (a * a + 2.0 * slope * need).max(0.0);
                return t + 2.0 * need / (a + disc.sqrt());
            }
            need -= area;
            t = b1;
        }
        self.end
    }
}

/// Which request comes next: smooth weighted round-robin (as nginx balances upstreams), so
/// every window of `sum(weights)` picks holds each request exactly `weight` times, with no
/// random numbers and no bursts of one request.
#[derive(Debug, Clone)]
pub struct Picker {
    weights: Vec<i64>,
    current: Vec<i64>,
    total: i64,
}

impl Picker {
    pub fn new(weights: impl IntoIterator<Item = u32>) -> Self {
        let weights: Vec<i64> = weights.into_iter().map(i64::from).collect();
        let total = weights.iter().sum();
        Self { current: vec![0; weights.len()], weights, total }
    }

    /// The index of the next request.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> usize {
        let mut best = 0;
        for i in 0..self.weights.len() {
            self.current[i] += self.weights[i];
            if self.current[i] > self.current[best] {
                best = i;
            }
        }
        self.current[best] -= self.total;
        best
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picker_keeps_exact_proportions() {
        let mut p = Picker::new([30, 20, 20, 20, 10]);
        let mut counts = [0u32; 5];
        for _ in 0..1000 {
            counts[p.next()] += 1;
        }
        assert_eq!(counts, [300, 200, 200, 200, 100]);
        let mut p = Picker::new([0, 1]);
        assert!((0..10).all(|_| p.next() == 1));
    }

    #[test]
    fn stages_parse() {
        let s = parse_stages("100:30s, 1000:1m,0:30s").unwrap();
        assert_eq!(s.len(), 3);
        assert_eq!(s[1], Stage { target: 1000.0, duration: Duration::from_secs(60) });
        assert!(parse_stages("10000000:1s").is_ok());
        for bad in ["", "100", "x:1s", "100:0s", "-1:1s", "100:1x", "1e30:1s", "18446744073709551615:1s"] {
            assert!(parse_stages(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn profile_ramps() {
        let p = Profile::ramps(parse_stages("100:10s,100:10s,0:10s").unwrap());
        assert_eq!(p.duration(), Duration::from_secs(30));
        assert_eq!(p.at(0.0), 0.0);
        assert_eq!(p.at(5.0), 50.0);
        assert_eq!(p.at(15.0), 100.0);
        assert_eq!(p.at(25.0), 50.0);
        assert_eq!(p.at(99.0), 0.0);
        assert_eq!(p.max(), 100.0);
        assert_eq!(p.integral(), 500.0 + 1000.0 + 500.0);
        assert_eq!(p.integral_until(5.0), 125.0);
        assert_eq!(p.integral_until(20.0), 1500.0);
        assert!(Profile::constant(5.0, Duration::from_secs(1)).is_constant());
    }

    #[test]
    fn arrivals_match_the_integral() {
        let p = Profile::constant(5000.0, Duration::from_secs(10));
        let mut a = Arrivals::new(p, 0.5);
        let mut n = 0;
        let mut last = 0.0;
        while let Some(t) = a.next() {
            assert!(t >= last);
            last = t;
            n += 1;
        }
        assert_eq!(n, 25_000);

        let p = Profile::ramps(parse_stages("0:1s,1000:2s,0:1s").unwrap());
        let want = p.integral();
        let mut a = Arrivals::new(p, 1.0);
        let times: Vec<f64> = std::iter::from_fn(|| a.next()).collect();
        assert!((times.len() as f64 - want).abs() <= 1.0, "{} vs {want}", times.len());
        // Nothing is due while the rate is 0; the ramp's first second holds a quarter.
        assert!(times[1] > 1.0);
        let first = times.iter().filter(|&&t| t < 2.0).count() as f64;
        assert!((first - 250.0).abs() <= 2.0, "{first}");

        // A ramp from 0 sends at once, not after a step of 1/rate.
        let mut a = Arrivals::new(Profile::ramps(parse_stages("1000:1s").unwrap()), 1.0);
        let times: Vec<f64> = std::iter::from_fn(|| a.next()).collect();
        assert!(times[1] < 0.05, "{:?}", &times[..3]);
        assert!((times.len() as f64 - 500.0).abs() <= 1.0);
    }
}
