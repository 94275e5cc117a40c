//! Stream faults on the bytes of bodies and tunnels, one direction at a time: latency per
//! chunk, bandwidth, slicing, a data limit, a held close. A [`Shape`] is what the rules ask
//! of one direction; a [`Shaper`] applies it to one stream and remembers how much has passed.

use std::time::Duration;

use engine_util::Rng;

use crate::faults::{Action, Direction, FaultKind};

/// Bandwidth is paced in slices of this much time, as `throttle` always was.
const PACE_SLICE: Duration = Duration::from_millis(50);

/// The stream faults of one direction (all off by default).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Shape {
    /// Per chunk: milliseconds, and the scale of a uniform random part.
    pub latency: Option<(u64, u64)>,
    pub bytes_per_s: Option<u64>,
    /// Largest write, and the gap after each, in milliseconds.
    pub slice: Option<(u64, u64)>,
    /// Bytes that may pass before the connection is cut.
    pub limit: Option<u64>,
    /// Hold the close this many milliseconds.
    pub slow_close: Option<u64>,
}

impl Shape {
    /// The stream fault a rule's action is, if it is one: its kind, its direction, its shape.
    pub fn of(action: &Action) -> Option<(FaultKind, Direction, Shape)> {
        let none = Shape::default();
        Some(match *action {
            Action::Throttle { bytes_per_s } => {
                (FaultKind::Throttle, Direction::Downstream, Shape { bytes_per_s: Some(bytes_per_s), ..none })
            }
            Action::Latency { ms, jitter_ms, direction } => {
                (FaultKind::Latency, direction, Shape { latency: Some((ms, jitter_ms)), ..none })
            }
            Action::Bandwidth { bytes_per_s, direction } => {
                (FaultKind::Bandwidth, direction, Shape { bytes_per_s: Some(bytes_per_s), ..none })
            }
            Action::Slicer { max_bytes, gap_ms, direction } => {
                (FaultKind::Slicer, direction, Shape { slice: Some((max_bytes, gap_ms)), ..none })
            }
            Action::LimitData { bytes, direction } => {
                (FaultKind::LimitData, direction, Shape { limit: Some(bytes), ..none })
            }
            Action::SlowClose { ms, direction } => {
                (FaultKind::SlowClose, direction, Shape { slow_close: Some(ms), ..none })
            }
            _ => return None,
        })
    }

    /// Shapes anything the bytes pass through (a held close alone does not).
    pub fn shapes_bytes(&self) -> bool {
        self.latency.is_some() || self.bytes_per_s.is_some() || self.slice.is_some() || self.limit.is_some()
    }

    /// Another rule's faults on top: latencies add up; the tighter bandwidth, slice and limit
    /// and the longer held close win.
    pub fn add(&mut self, o: &Shape) {
        fn min<T: Ord + Copy>(a: Option<T>, b: Option<T>) -> Option<T> {
            a.into_iter().chain(b).min()
        }
        self.latency = match (self.latency, o.latency) {
            (Some((a, ja)), Some((b, jb))) => Some((a.saturating_add(b), ja.saturating_add(jb))),
            (a, b) => a.or(b),
        };
        self.bytes_per_s = min(self.bytes_per_s, o.bytes_per_s);
        self.slice = match (self.slice, o.slice) {
            (Some((a, ga)), Some((b, gb))) => Some((a.min(b), ga.max(gb))),
            (a, b) => a.or(b),
        };
        self.limit = min(self.limit, o.limit);
        self.slow_close = self.slow_close.max(o.slow_close);
    }
}

/// Waits `d`: a stream fault's latency, gap or pace (nothing at all when it is zero, the
/// unfaulted case: no timer).
pub(crate) async fn pause(d: Duration) {
    if !d.is_zero() {
        glommio::timer::sleep(d).await;
    }
}

/// The data limit was reached: the connection is to be cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LimitReached;

/// One stream's shaping: its [`Shape`], the bytes passed so far, its jitter's random numbers.
pub(crate) struct Shaper {
    shape: Shape,
    passed: u64,
    rng: Rng,
}

impl Shaper {
    pub fn new(shape: Shape) -> Self {
        // Seeded from the clock only when there is jitter to draw: no clock read per request.
        let seed = match shape.latency {
            Some((_, jitter)) if jitter > 0 => {
                std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(1, |d| d.as_nanos() as u64)
            }
            _ => 1,
        };
        Shaper { shape, passed: 0, rng: Rng::new(seed) }
    }

    /// Anything to do to the bytes (else they pass as they come).
    pub fn active(&self) -> bool {
        self.shape.shapes_bytes()
    }

    pub fn slow_close(&self) -> Option<Duration> {
        self.shape.slow_close.map(Duration::from_millis)
    }

    /// The wait before the first byte of a new chunk.
    pub fn before_chunk(&mut self) -> Duration {
        let Some((ms, jitter)) = self.shape.latency else { return Duration::ZERO };
        let extra =
            if jitter == 0 { 0.0 } else { (self.rng.next() >> 11) as f64 / (1u64 << 53) as f64 * jitter as f64 };
        Duration::from_secs_f64((ms as f64 + extra) / 1000.0)
    }

    /// How many of the `n` bytes waiting go out in the next write.
    pub fn piece(&self, n: usize) -> Result<usize, LimitReached> {
        let mut m = n as u64;
        if let Some((max, _)) = self.shape.slice {
            m = m.min(max);
        }
        if let Some(rate) = self.shape.bytes_per_s {
            m = m.min(((rate as f64 * PACE_SLICE.as_secs_f64()) as u64).max(1));
        }
        if let Some(limit) = self.shape.limit {
            let left = limit.saturating_sub(self.passed);
            if left == 0 {
                return Err(LimitReached);
            }
            m = m.min(left);
        }
        Ok(m as usize)
    }

    /// `n` bytes went out: the wait before the next write.
    pub fn wrote(&mut self, n: usize) -> Duration {
        self.passed += n as u64;
        let gap = self.shape.slice.map_or(Duration::ZERO, |(_, ms)| Duration::from_millis(ms));
        let pace = self.shape.bytes_per_s.map_or(Duration::ZERO, |r| Duration::from_secs_f64(n as f64 / r as f64));
        gap.max(pace)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_respect_the_slice_the_pace_and_the_limit() {
        let mut s = Shaper::new(Shape { slice: Some((100, 2)), limit: Some(250), ..Default::default() });
        assert_eq!(s.piece(1000), Ok(100));
        assert_eq!(s.wrote(100), Duration::from_millis(2));
        s.wrote(100);
        assert_eq!(s.piece(1000), Ok(50));
        s.wrote(50);
        assert_eq!(s.piece(1), Err(LimitReached));

        let mut paced = Shaper::new(Shape { bytes_per_s: Some(1000), ..Default::default() });
        assert_eq!(paced.piece(10_000), Ok(50));
        assert_eq!(paced.wrote(50), Duration::from_millis(50));
    }

    #[test]
    fn rules_combine() {
        let mut a =
            Shape { latency: Some((10, 5)), bytes_per_s: Some(500), slow_close: Some(100), ..Default::default() };
        a.add(&Shape {
            latency: Some((20, 0)),
            bytes_per_s: Some(900),
            limit: Some(7),
            slow_close: Some(50),
            ..Default::default()
        });
        assert_eq!(
            a,
            Shape {
                latency: Some((30, 5)),
                bytes_per_s: Some(500),
                slice: None,
                limit: Some(7),
                slow_close: Some(100)
            }
        );
        let mut j = Shaper::new(a);
        for _ in 0..100 {
            let d = j.before_chunk();
            assert!(d >= Duration::from_millis(30) && d <= Duration::from_millis(35), "{d:?}");
        }
    }
}
