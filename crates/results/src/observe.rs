//! The run pipeline's contract. A run yields one [`Interval`] a second, merged across its
//! shards; each goes to every [`Observer`] in turn (the progress line, safety stops, the
//! profile watch, the latency log, the metrics publisher, run.log). When the run ends the
//! summary is built once, and each observer adds what it found to it, in the same order.
//!
//! `engine blast`, `engine demo` and `engine report merge` share these observers, so a run
//! is judged the same way however it was put together.

use std::time::SystemTime;

use crate::stats::Totals;
use crate::summary::{Point, Summary};

/// One interval of a run, merged across shards.
pub struct Interval<'a> {
    /// From 1.
    pub seq: u64,
    /// Seconds since the start at the end of this interval.
    pub elapsed_s: f64,
    /// Seconds since the start at its beginning (the end of the previous one).
    pub from_s: f64,
    /// How long the plan runs.
    pub planned_s: f64,
    /// The stage of the plan the interval ends in, from 1.
    pub stage: usize,
    /// When the load began, on the wall clock.
    pub started: SystemTime,
    pub totals: &'a Totals,
    /// The run's totals so far, this interval's included.
    pub running: &'a Totals,
    pub point: &'a Point,
    /// Per shard: the share of the interval its executor's thread spent on the CPU.
    pub busy: &'a [f64],
}

impl Interval<'_> {
    /// How long the interval lasted (the last one is cut short by the end).
    pub fn seconds(&self) -> f64 {
        (self.elapsed_s - self.from_s).max(1e-3)
    }
}

/// What an observer wants after an interval.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    Continue,
    /// The run has what it was for (a safety stop fired, a stress level failed): stop as
    /// planned, not as an interrupt.
    Stop,
}

pub trait Observer {
    /// One interval, in order.
    fn interval(&mut self, i: &Interval<'_>) -> Flow;

    /// The run ended: add to the summary (thresholds, the stop that fired, a profile's
    /// figures). Called once, after every observer has seen every interval.
    fn finish(&mut self, _summary: &mut Summary) {}
}
