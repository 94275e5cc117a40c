//! A flow step's think time, fixed or drawn from a distribution for each pause, as users'
//! pauses are: `"500ms"`, `"1s..3s"` (uniform), `"normal(2s, 500ms)"` (cut at 0),
//! `"exp(2s)"` (exponential, its mean given). A drawn pause is at most [`MAX_FACTOR`] times
//! the distribution's mean, so one draw from a long tail cannot park a user for the rest
//! of a run.

use std::time::Duration;

use engine_util::units::parse_duration;

/// The longest drawn pause, as a multiple of the mean: an exponential pause is longer with
/// probability e^-10 (4.5e-5), so the cut moves the mean by less than 0.1%.
pub const MAX_FACTOR: f64 = 10.0;

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Think {
    Fixed(Duration),
    Uniform(Duration, Duration),
    Normal { mean: Duration, sd: Duration },
    Exp(Duration),
}

impl Default for Think {
    fn default() -> Self {
        Think::Fixed(Duration::ZERO)
    }
}

impl Think {
    /// Parses `500ms`, `1s..3s`, `normal(2s, 500ms)` or `exp(2s)`.
    pub fn parse(text: &str) -> Result<Think, String> {
        let t = text.trim();
        let bad = |why: String| {
            format!("think '{t}': {why} (a pause: 500ms; or 1s..3s, normal(2s, 500ms), exp(2s), drawn for each pause)")
        };
        let dur = |s: &str| parse_duration(s.trim()).map_err(|e| bad(e.to_string()));
        let call = |name: &str| t.strip_prefix(name).and_then(|r| r.trim_start().strip_prefix('(')?.strip_suffix(')'));
        if let Some(args) = call("normal") {
            let (mean, sd) = args.split_once(',').ok_or_else(|| bad("normal takes a mean and a deviation".into()))?;
            return Ok(Think::Normal { mean: dur(mean)?, sd: dur(sd)? });
        }
        if let Some(mean) = call("exp") {
            return Ok(Think::Exp(dur(mean)?));
        }
        if let Some((lo, hi)) = t.split_once("..") {
            let (lo, hi) = (dur(lo)?, dur(hi)?);
            if lo > hi {
                return Err(bad(format!("the range runs from {lo:?} down to {hi:?}")));
            }
            return Ok(Think::Uniform(lo, hi));
        }
        dur(t).map(Think::Fixed)
    }

    /// The distribution's mean (of a normal cut at 0: its mean before the cut).
    pub fn mean(&self) -> Duration {
        match *self {
            Think::Fixed(d) | Think::Exp(d) | Think::Normal { mean: d, .. } => d,
            Think::Uniform(lo, hi) => (lo + hi) / 2,
        }
    }

    /// One pause, from `random`, a source of uniform numbers in [0, 1).
    pub fn draw(&self, mut random: impl FnMut() -> f64) -> Duration {
        let secs = match *self {
            Think::Fixed(d) => return d,
            Think::Uniform(lo, hi) => lo.as_secs_f64() + random() * (hi - lo).as_secs_f64(),
            Think::Normal { mean, sd } => {
                // Box-Muller; 1 - u keeps the logarithm finite.
                let (u, v) = (1.0 - random(), random());
                mean.as_secs_f64() + sd.as_secs_f64() * (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
            }
            Think::Exp(mean) => -mean.as_secs_f64() * (1.0 - random()).ln(),
        };
        let cap = self.mean().as_secs_f64() * MAX_FACTOR;
        Duration::from_secs_f64(secs.clamp(0.0, cap.max(0.0)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use engine_util::rng::Rng;

    fn mean_of(t: Think, n: u32) -> f64 {
        let mut rng = Rng::new(7);
        let mut u = move || (rng.next() >> 11) as f64 / (1u64 << 53) as f64;
        (0..n).map(|_| t.draw(&mut u).as_secs_f64()).sum::<f64>() / f64::from(n)
    }

    #[test]
    fn distributions_have_their_means() {
        for (text, mean) in [("1s..3s", 2.0), ("normal(2s, 500ms)", 2.0), ("exp(2s)", 2.0), ("250ms", 0.25)] {
            let t = Think::parse(text).unwrap();
            assert_eq!(t.mean().as_secs_f64(), mean, "{text}");
            let m = mean_of(t, 100_000);
            assert!((m - mean).abs() < mean * 0.02, "{text}: mean {m}");
        }
    }

    #[test]
    fn draws_stay_in_range() {
        let mut rng = Rng::new(3);
        let mut u = move || (rng.next() >> 11) as f64 / (1u64 << 53) as f64;
        let t = Think::parse("1s..3s").unwrap();
        let e = Think::parse("exp(100ms)").unwrap();
        let n = Think::parse("normal(10ms, 1s)").unwrap();
        for _ in 0..10_000 {
            let d = t.draw(&mut u);
            assert!(d >= Duration::from_secs(1) && d <= Duration::from_secs(3), "{d:?}");
            assert!(e.draw(&mut u) <= Duration::from_secs(1));
            assert!(n.draw(&mut u) <= Duration::from_millis(100));
        }
    }

    #[test]
    fn mistakes_are_named() {
        for (text, says) in [
            ("3s..1s", "down to"),
            ("normal(2s)", "a mean and a deviation"),
            ("exp(soon)", "think 'exp(soon)'"),
            ("lots", "think 'lots'"),
        ] {
            let e = Think::parse(text).unwrap_err();
            assert!(e.contains(says), "{text}: {e}");
        }
    }
}
