//! When load happens: stages (linear ramps of a level over time) and the open model's
//! arrival schedule.
//!
//! One abstraction serves every shape of run: a [`Profile`] is a level (connections in the
//! closed model, requests per second in the open model) as a function of time. A constant
//! run is a one-stage profile; `--stages 100:30s,1000:1m` ramps from 0 to 100 in 30 s, then
//! to 1000 in a minute.

use std::time::Duration;

use engine_util::units::parse_duration;

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

    /// The level the first ramp starts from (`--rate` with rate stages).
    pub fn start(&self) -> f64 {
        self.start
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

    /// Its stages as `(begin, end, level at begin, level at end)`, seconds from the start.
    pub fn segments(&self) -> Vec<(f64, f64, f64, f64)> {
        let mut segments = Vec::with_capacity(self.stages.len());
        let (mut begin, mut from) = (0.0, self.start);
        for st in &self.stages {
            let end = begin + st.duration.as_secs_f64();
            segments.push((begin, end, from, st.target));
            begin = end;
            from = st.target;
        }
        segments
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

/// Requests a schedule whose rate integrates to `area` asks for: arrival k is due when the
/// area under the rate reaches k, so the arrivals of a schedule are the k below its area.
pub fn scheduled(area: f64) -> u64 {
    // A hair below the area: an area of exactly 6000 means arrivals 0..5999, not 6000 with
    // a last one due at the very end.
    (area - 1e-9).ceil().max(0.0) as u64
}

/// The open model's arrival schedule for one shard: intended start times (seconds after the
/// start). Requests are due at these times whether or not a connection is free; a late one
/// is measured from when it was due.
///
/// The run's arrivals are numbered once for all shards: arrival k is due when the area under
/// the whole rate curve reaches k, solved exactly on each linear segment (so a ramp from 0
/// starts sending at once rather than after a first step of 1/rate), and shard i of S takes
/// the k with k mod S = i. Each arrival's time is computed from its number, not by adding up
/// intervals, so the shards together send exactly [`scheduled`] requests, whatever the rate,
/// the duration and the number of shards.
#[derive(Debug, Clone)]
pub struct Arrivals {
    /// `(begin, end, rate at begin, rate at end)` of each stage.
    segments: Vec<(f64, f64, f64, f64)>,
    /// Arrivals of the whole run.
    total: u64,
    next: u64,
    step: u64,
}

impl Arrivals {
    /// Shard `index` of `shards`' part of the schedule of `profile` (a rate over time).
    pub fn new(profile: Profile, index: usize, shards: usize) -> Self {
        let segments = profile.segments();
        let total = scheduled(profile.integral());
        Self { segments, total, next: index as u64, step: shards.max(1) as u64 }
    }

    /// The rest of the schedule follows `segments` (a run steered through the control API).
    /// The arrivals already handed out keep their times; the numbering goes on where it was,
    /// which is exact when the change lies after every arrival handed out (the control API
    /// sets changes a whole second ahead) and the segments agree with the old ones before it.
    pub fn resegment(&mut self, segments: Vec<(f64, f64, f64, f64)>) {
        let area: f64 = segments.iter().map(|&(b0, b1, r0, r1)| (r0 + r1) / 2.0 * (b1 - b0)).sum();
        self.total = scheduled(area);
        self.segments = segments;
    }

    /// Every arrival of this shard's part has been handed out.
    pub fn done(&self) -> bool {
        self.next >= self.total
    }

    /// The next intended start of this shard, or `None` when its part is done.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Option<f64> {
        if self.next >= self.total {
            return None;
        }
        let t = self.time_of(self.next as f64);
        self.next += self.step;
        Some(t)
    }

    /// When the area under the rate reaches `need`.
    fn time_of(&self, mut need: f64) -> f64 {
        let mut t = 0.0;
        for &(b0, b1, r0, r1) in &self.segments {
            if need <= 0.0 {
                return t;
            }
            if b1 <= b0 {
                continue;
            }
            let slope = (r1 - r0) / (b1 - b0);
            let area = (r0 + r1) / 2.0 * (b1 - b0);
            if area >= need {
                // r0·Δ + slope·Δ²/2 = need, in the form that stays exact when slope is 0.
                let disc = (r0 * r0 + 2.0 * slope * need).max(0.0);
                return b0 + 2.0 * need / (r0 + disc.sqrt());
            }
            need -= area;
            t = b1;
        }
        t
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
        let mut a = Arrivals::new(p, 0, 1);
        let mut n = 0;
        let mut last = 0.0;
        while let Some(t) = a.next() {
            assert!(t >= last);
            last = t;
            n += 1;
        }
        assert_eq!(n, 25_000 * 2);

        let p = Profile::ramps(parse_stages("0:1s,1000:2s,0:1s").unwrap());
        let want = p.integral();
        let mut a = Arrivals::new(p, 0, 1);
        let times: Vec<f64> = std::iter::from_fn(|| a.next()).collect();
        assert_eq!(times.len() as f64, want);
        // Nothing is due while the rate is 0; the ramp's first second holds a quarter.
        assert!(times[1] > 1.0);
        let first = times.iter().filter(|&&t| t < 2.0).count() as f64;
        assert!((first - 250.0).abs() <= 2.0, "{first}");

        // A ramp from 0 sends at once, not after a step of 1/rate.
        let mut a = Arrivals::new(Profile::ramps(parse_stages("1000:1s").unwrap()), 0, 1);
        let times: Vec<f64> = std::iter::from_fn(|| a.next()).collect();
        assert!(times[1] < 0.05, "{:?}", &times[..3]);
        assert_eq!(times.len(), 500);
    }

    /// The shards together send exactly what the schedule asks for: never one request too
    /// many per shard (as adding up 1/rate steps did: 6,002 of 6,000 at 1,500/s over 4 s).
    #[test]
    fn shards_together_send_exactly_the_schedule() {
        for rate in [1.0, 7.0, 500.0, 1500.0, 2997.0, 33333.0] {
            for secs in [1.0, 4.0, 7.5] {
                let p = Profile::constant(rate, Duration::from_secs_f64(secs));
                let want = scheduled(p.integral());
                assert_eq!(want, (rate * secs).ceil() as u64);
                for shards in 1..=3 {
                    let mut all: Vec<f64> = (0..shards)
                        .flat_map(|i| {
                            let mut a = Arrivals::new(p.clone(), i, shards);
                            std::iter::from_fn(move || a.next()).collect::<Vec<_>>()
                        })
                        .collect();
                    assert_eq!(all.len() as u64, want, "{rate}/s for {secs} s on {shards} shards");
                    all.sort_by(f64::total_cmp);
                    assert!(all.iter().all(|&t| (0.0..secs).contains(&t)), "{rate}/s {secs} s");
                    // Evenly spaced, whichever shard sends each.
                    for (k, t) in all.iter().enumerate() {
                        assert!((t - k as f64 / rate).abs() < 1e-6, "{rate}/s: arrival {k} at {t}");
                    }
                }
            }
        }
    }
}
