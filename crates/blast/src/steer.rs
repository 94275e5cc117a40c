//! Steering a running blast (issue 32): the level a person sets through the control API
//! (`POST /run/rate`, `/run/conns`, `/run/pause`, `/run/resume`, `/run/stop`), how the
//! shards and the collector learn it, and the record of each change (the summary's
//! `interventions`).
//!
//! A change takes effect at the first whole second of the run at least [`LEAD`] ahead: every
//! shard reads it on a control tick (25 ms) before then, the arrivals a shard has already
//! handed out lie before it, and the second after it is whole at the new level, which is what
//! a person reading the per-second figures expects. A shard reads one relaxed counter per
//! control tick; the lock is taken only when the counter moved.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use engine_results::summary::Intervention;

use crate::plan::{Model, Plan};
use crate::schedule::{scheduled, MAX_RATE};

/// How far ahead of the request a change may take effect, at least.
pub const LEAD: Duration = Duration::from_millis(200);

/// `(begin, end, level at begin, level at end)`, seconds from the start of the plan's part.
pub type Segment = (f64, f64, f64, f64);

/// A level over time that may jump: the plan's profile, then the changes made to it.
#[derive(Debug, Clone, PartialEq)]
pub struct Course {
    segments: Vec<Segment>,
}

impl Course {
    pub fn new(segments: Vec<Segment>) -> Course {
        Course { segments }
    }

    /// The same level from the start to `end`.
    pub fn constant(level: f64, end: f64) -> Course {
        Course { segments: vec![(0.0, end, level, level)] }
    }

    pub fn segments(&self) -> &[Segment] {
        &self.segments
    }

    fn end(&self) -> f64 {
        self.segments.last().map_or(0.0, |s| s.1)
    }

    /// The level at `t` (at a jump, the level after it; after the end, the last level).
    pub fn at(&self, t: f64) -> f64 {
        for &(b0, b1, r0, r1) in &self.segments {
            if t < b1 {
                return lerp((b0, b1, r0, r1), t);
            }
        }
        self.segments.last().map_or(0.0, |s| s.3)
    }

    /// The area under the level from the start to `t`.
    pub fn integral_until(&self, t: f64) -> f64 {
        let mut sum = 0.0;
        for &(b0, b1, r0, r1) in &self.segments {
            if t <= b0 {
                break;
            }
            let to = t.min(b1);
            sum += (r0 + lerp((b0, b1, r0, r1), to)) / 2.0 * (to - b0);
        }
        sum
    }

    /// This course until `at`, then `rest`'s from `at` on.
    pub fn then(&self, at: f64, rest: &Course) -> Course {
        let mut out = Vec::with_capacity(self.segments.len() + rest.segments.len());
        for &(b0, b1, r0, r1) in &self.segments {
            if b0 >= at {
                break;
            }
            out.push(if b1 <= at { (b0, b1, r0, r1) } else { (b0, at, r0, lerp((b0, b1, r0, r1), at)) });
        }
        for &(b0, b1, r0, r1) in &rest.segments {
            if b1 <= at {
                continue;
            }
            out.push(if b0 >= at { (b0, b1, r0, r1) } else { (at, b1, lerp((b0, b1, r0, r1), at), r1) });
        }
        Course { segments: out }
    }
}

/// What a person asks of a running blast.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Change {
    /// The open model's rate, requests (or flow iterations) a second.
    Rate(f64),
    /// The closed model's connections (at most the plan's).
    Conns(u64),
    /// Level 0 until [`Change::Resume`].
    Pause,
    /// Back to the level before the pause, as the plan had it going on.
    Resume,
    /// End the run now, as its planned end would (exit 0 unless a verdict says otherwise).
    Stop,
}

impl Change {
    fn what(self) -> &'static str {
        match self {
            Change::Rate(_) => "rate",
            Change::Conns(_) => "conns",
            Change::Pause => "pause",
            Change::Resume => "resume",
            Change::Stop => "stop",
        }
    }
}

/// Why a change was refused; the control API answers 409 (400 for [`SteerError::Value`]).
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum SteerError {
    #[error("the load has not started yet (connecting)")]
    NotStarted,
    #[error("the run is ending (at {0:.1} s there is no whole second left to change)")]
    Ending(f64),
    #[error("the run has several scenarios; steering one of them is not supported yet")]
    Scenarios,
    #[error("a --profile run judges the levels it planned; it can be stopped, not steered")]
    Profile,
    #[error("this run uses the {model} model: change its {wants} instead")]
    Model { model: &'static str, wants: &'static str },
    #[error("{0}")]
    Value(String),
    #[error("the run opened {0} connections at most; start it with a higher -c to go above")]
    AboveConns(u64),
    #[error("the run is paused: resume it first")]
    Paused,
    #[error("the run is not paused")]
    NotPaused,
    #[error("the run is already stopping")]
    Stopped,
}

/// What the control API's `GET /run` shows.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RunState {
    pub model: &'static str,
    pub elapsed_s: f64,
    pub planned_s: f64,
    /// The level now: connections or requests a second.
    pub level: f64,
    /// What the plan alone would have now.
    pub planned_level: f64,
    pub paused: bool,
    pub stopping: bool,
    pub interventions: Vec<Intervention>,
}

/// The run's shape, known once the load starts.
struct Shape {
    start: Instant,
    open: bool,
    /// The part's start after the run's, seconds.
    offset: f64,
    planned: Course,
    conns: u64,
    planned_s: f64,
    scenarios: bool,
}

#[derive(Default)]
struct Inner {
    shape: Option<Shape>,
    /// `None` while the run goes as planned.
    course: Option<Course>,
    /// While paused: the course a resume returns to.
    before_pause: Option<Course>,
    stopping: bool,
    /// A profile judges the planned levels: only a stop is allowed.
    fixed: bool,
    interventions: Vec<Intervention>,
}

/// Shared by the control API, the shards and the collector (in [`crate::Control`]).
#[derive(Default)]
pub(crate) struct Steering {
    generation: AtomicU64,
    inner: Mutex<Inner>,
}

/// A segment's level at `t` (its first level before it, its last after it).
fn lerp((b0, b1, r0, r1): Segment, t: f64) -> f64 {
    if t <= b0 || b1 <= b0 {
        r0
    } else if t >= b1 {
        r1
    } else {
        r0 + (r1 - r0) * (t - b0) / (b1 - b0)
    }
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

impl Steering {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The load started at `start`: changes may be made from now on.
    pub(crate) fn attach(&self, plan: &Plan, start: Instant) {
        let part = &plan.parts[0];
        let profile = part.model.profile();
        self.lock().shape = Some(Shape {
            start,
            open: matches!(part.model, Model::Open(_)),
            offset: part.start.as_secs_f64(),
            planned: Course::new(profile.segments()),
            conns: part.conns,
            planned_s: plan.duration.as_secs_f64(),
            scenarios: plan.parts.len() > 1,
        });
    }

    /// Only a stop may change this run (a profile judges its planned levels).
    pub(crate) fn fixed_levels(&self) {
        self.lock().fixed = true;
    }

    /// The course the part follows now, when it changed since `seen` (updated).
    pub(crate) fn changed(&self, seen: &mut u64) -> Option<Course> {
        let g = self.generation.load(Ordering::Relaxed);
        if g == *seen {
            return None;
        }
        *seen = g;
        self.lock().course.clone()
    }

    /// The steered level at the end of an interval that ends at the run's time `t`, when the
    /// run was steered: the level just before `t`, so the second that ends where a change
    /// begins shows the level it ran at, not the next one.
    pub(crate) fn level_at(&self, t: f64) -> Option<f64> {
        let inner = self.lock();
        let (shape, course) = (inner.shape.as_ref()?, inner.course.as_ref()?);
        Some(course.at(t - shape.offset - 1e-6))
    }

    /// Requests the steered schedule asks for in the run's first `t` seconds (open model).
    pub(crate) fn scheduled_until(&self, t: f64) -> Option<u64> {
        let inner = self.lock();
        let (shape, course) = (inner.shape.as_ref()?, inner.course.as_ref()?);
        shape.open.then(|| scheduled(course.integral_until(t - shape.offset)))
    }

    pub(crate) fn interventions(&self) -> Vec<Intervention> {
        self.lock().interventions.clone()
    }

    /// Where the run is, for `GET /run`.
    pub(crate) fn state(&self) -> Option<RunState> {
        let inner = self.lock();
        let shape = inner.shape.as_ref()?;
        let t = shape.start.elapsed().as_secs_f64();
        let planned_level = shape.planned.at(t - shape.offset);
        Some(RunState {
            model: if shape.open { "open" } else { "closed" },
            elapsed_s: round3(t),
            planned_s: shape.planned_s,
            level: inner.course.as_ref().map_or(planned_level, |c| c.at(t - shape.offset)),
            planned_level,
            paused: inner.before_pause.is_some(),
            stopping: inner.stopping,
            interventions: inner.interventions.clone(),
        })
    }

    /// Makes `change`; the caller stops the run for [`Change::Stop`].
    pub(crate) fn steer(&self, change: Change) -> Result<Intervention, SteerError> {
        let mut inner = self.lock();
        let inner = &mut *inner;
        let shape = inner.shape.as_ref().ok_or(SteerError::NotStarted)?;
        if inner.stopping {
            return Err(SteerError::Stopped);
        }
        let now = shape.start.elapsed().as_secs_f64();
        let current = inner.course.clone().unwrap_or_else(|| shape.planned.clone());
        if change == Change::Stop {
            inner.stopping = true;
            let from = current.at(now - shape.offset);
            let record = Intervention { at_s: round3(now), what: "stop".into(), from, to: 0.0 };
            inner.interventions.push(record.clone());
            return Ok(record);
        }
        if shape.scenarios {
            return Err(SteerError::Scenarios);
        }
        if inner.fixed {
            return Err(SteerError::Profile);
        }
        let at = (now + LEAD.as_secs_f64()).ceil();
        if at >= shape.planned_s {
            return Err(SteerError::Ending(now));
        }
        let local = at - shape.offset;
        let end = shape.planned.end();
        let (next, pause) = match change {
            Change::Rate(_) if !shape.open => {
                return Err(SteerError::Model { model: "closed", wants: "connections (/run/conns)" });
            }
            Change::Conns(_) if shape.open => {
                return Err(SteerError::Model { model: "open", wants: "rate (/run/rate)" })
            }
            Change::Rate(r) if !(r.is_finite() && (0.0..=MAX_RATE).contains(&r)) => {
                return Err(SteerError::Value(format!("a rate is from 0 to {MAX_RATE:.0} requests a second")));
            }
            Change::Conns(n) if n > shape.conns => return Err(SteerError::AboveConns(shape.conns)),
            Change::Rate(_) | Change::Conns(_) | Change::Pause if inner.before_pause.is_some() => {
                return Err(SteerError::Paused);
            }
            Change::Rate(r) => (current.then(local, &Course::constant(r, end)), None),
            Change::Conns(n) => (current.then(local, &Course::constant(n as f64, end)), None),
            Change::Pause => (current.then(local, &Course::constant(0.0, end)), Some(current.clone())),
            Change::Resume => {
                let back = inner.before_pause.take().ok_or(SteerError::NotPaused)?;
                (current.then(local, &back), None)
            }
            Change::Stop => unreachable!("handled above"),
        };
        let record = Intervention { at_s: at, what: change.what().into(), from: current.at(local), to: next.at(local) };
        if let Some(p) = pause {
            inner.before_pause = Some(p);
        }
        inner.course = Some(next);
        inner.interventions.push(record.clone());
        self.generation.fetch_add(1, Ordering::Relaxed);
        Ok(record)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schedule::{parse_stages, Arrivals, Profile};

    #[test]
    fn a_course_jumps_where_it_is_changed_and_keeps_what_came_before() {
        // Ramp 0 → 100 over 10 s, then hold 100 for 10 s.
        let planned = Course::new(Profile::ramps(parse_stages("100:10s,100:10s").unwrap()).segments());
        assert_eq!(planned.at(5.0), 50.0);
        assert_eq!(planned.integral_until(20.0), 500.0 + 1000.0);
        let steered = planned.then(4.0, &Course::constant(300.0, 20.0));
        assert_eq!((steered.at(3.0), steered.at(4.0), steered.at(19.0)), (30.0, 300.0, 300.0));
        assert_eq!(steered.integral_until(4.0), 80.0);
        assert_eq!(steered.integral_until(20.0), 80.0 + 300.0 * 16.0);
        // Back to the plan from 12 s: its level there, and its area from there on.
        let back = steered.then(12.0, &planned);
        assert_eq!((back.at(11.0), back.at(12.0)), (300.0, 100.0));
        assert_eq!(back.integral_until(20.0), 80.0 + 300.0 * 8.0 + 800.0);
    }

    /// The shards together send exactly the steered schedule: the plan's arrivals before the
    /// change, the new rate's after it.
    #[test]
    fn arrivals_follow_a_changed_rate() {
        let profile = Profile::constant(1000.0, Duration::from_secs(6));
        let steered = Course::new(profile.segments()).then(3.0, &Course::constant(3000.0, 6.0));
        let mut all = Vec::new();
        for shard in 0..2 {
            let mut a = Arrivals::new(profile.clone(), shard, 2);
            // Hand out the first second's arrivals (500 a shard), then the change arrives.
            let mut times: Vec<f64> = std::iter::from_fn(|| a.next()).take(500).collect();
            a.resegment(steered.segments().to_vec());
            times.extend(std::iter::from_fn(|| a.next()));
            all.extend(times);
        }
        all.sort_by(f64::total_cmp);
        let in_second = |s: f64| all.iter().filter(|&&t| (s..s + 1.0).contains(&t)).count();
        assert_eq!((in_second(2.0), in_second(3.0), in_second(5.0)), (1000, 3000, 3000));
        assert_eq!(all.len(), 3000 + 9000);
    }
}
