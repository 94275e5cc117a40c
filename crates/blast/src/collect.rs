//! The collector: merges the shards' snapshots of each interval, hands the merged interval
//! to the observers, watches the generator's own load, and builds the summary once.

use std::collections::BTreeMap;
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime};

use engine_results::http2::Http2Summary;
use engine_results::observe::{Flow, Interval, Observer};
use engine_results::stats::Totals;
use engine_results::summary::{
    ChecksSummary, Generator, IterationSummary, Model, NamedSummary, Point, Schedule, ShardLoad, Summary, SATURATED,
};
use engine_results::summary::{Planned, ScenarioSummary};

use crate::control::{Control, LAST_WORD};
use crate::fleet::{Fleet, CHECK, WATCHDOG};
use crate::plan::{self, Plan};
use crate::shard::{self, Message, Snapshot};

/// One interval's snapshots, as they arrive from the shards in any order.
#[derive(Default)]
struct Pending {
    shards: usize,
    totals: Totals,
    busy: Vec<f64>,
}

/// A shard's time on the CPU over the run's intervals.
#[derive(Default, Clone, Copy)]
struct Load {
    sum: f64,
    intervals: u32,
    max: f64,
}

pub(crate) struct Collector<'p> {
    plan: &'p Plan,
    control: &'p Control,
    start: Instant,
    started: SystemTime,
    stage_ends: Vec<f64>,
    totals: Totals,
    timeseries: Vec<Point>,
    pending: BTreeMap<u64, Pending>,
    /// Per shard: the number of its last snapshot, once sent (0 for a shard that died).
    last_seq: Vec<Option<u64>>,
    load: Vec<Load>,
    prev_elapsed: f64,
    /// When the load ended, if it ended before the plan did (seen to within an interval).
    stopped_at: Option<f64>,
    stuck: bool,
}

impl<'p> Collector<'p> {
    pub fn new(plan: &'p Plan, control: &'p Control, start: Instant, started: SystemTime) -> Self {
        let shards = plan.shard_cpus.len();
        Collector {
            plan,
            control,
            start,
            started,
            stage_ends: plan.single().map_or(Vec::new(), |p| crate::schedule::stage_ends(p.model.profile().stages())),
            totals: Totals::default(),
            timeseries: Vec::new(),
            pending: BTreeMap::new(),
            last_seq: vec![None; shards],
            load: vec![Load::default(); shards],
            prev_elapsed: 0.0,
            stopped_at: None,
            stuck: false,
        }
    }

    /// The collector gave up on a shard that went silent.
    pub fn stuck(&self) -> bool {
        self.stuck
    }

    /// Per shard: it sent its last snapshot (or died).
    pub fn finished(&self) -> Vec<bool> {
        self.last_seq.iter().map(Option::is_some).collect()
    }

    /// Receives snapshots until every shard has sent its last (or died, or went silent past
    /// the watchdog, or past its drain after a stop). Intervals go to the `watchers`, then the
    /// `judges`, in order, as soon as every shard has reported them.
    pub fn collect(&mut self, fleet: &mut Fleet, watchers: &mut [&mut dyn Observer], judges: &mut [&mut dyn Observer]) {
        // When a stop was first seen: from then, shards have their drain and LAST_WORD.
        let mut stop_seen: Option<Instant> = None;
        let mut last_message = Instant::now();
        loop {
            if stop_seen.is_none() && self.control.is_stopped() {
                stop_seen = Some(Instant::now());
            }
            // A shard that died sends nothing more (a panic leaks its sender rather than
            // drop it): the intervals complete without it.
            for (i, last) in self.last_seq.iter_mut().enumerate() {
                if last.is_none() && fleet.died(i) {
                    *last = Some(0);
                }
            }
            let give_up = match stop_seen {
                Some(at) => at + self.drain_grace() + LAST_WORD,
                None => last_message + WATCHDOG,
            };
            match fleet.rx.recv_timeout(give_up.saturating_duration_since(Instant::now()).min(CHECK)) {
                Ok((_, Message::Snapshot(snap))) => {
                    last_message = Instant::now();
                    self.take(*snap, watchers, judges);
                }
                Ok((_, Message::Ready)) => last_message = Instant::now(),
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
                Err(mpsc::RecvTimeoutError::Timeout) if Instant::now() >= give_up => {
                    self.stuck = true;
                    self.control.stop();
                    break;
                }
                Err(mpsc::RecvTimeoutError::Timeout) if self.last_seq.iter().all(Option::is_some) => break,
                Err(mpsc::RecvTimeoutError::Timeout) => {}
            }
        }
        // Shards that died leave intervals incomplete; their figures still count.
        while let Some((seq, p)) = self.pending.pop_first() {
            self.emit(seq, p, watchers, judges);
        }
    }

    fn drain_grace(&self) -> Duration {
        if self.control.is_interrupted() {
            shard::DRAIN_INTERRUPTED
        } else {
            shard::DRAIN_MAX.min(self.plan.timeout)
        }
    }

    fn take(&mut self, snap: Snapshot, watchers: &mut [&mut dyn Observer], judges: &mut [&mut dyn Observer]) {
        if self.stopped_at.is_none() && self.control.is_stopped() {
            self.stopped_at = Some(self.start.elapsed().as_secs_f64());
        }
        if snap.last {
            self.last_seq[snap.shard] = Some(snap.seq);
        } else {
            // A shard's last snapshot covers a partial interval and its drain: not a load.
            let l = &mut self.load[snap.shard];
            (l.sum, l.intervals, l.max) = (l.sum + snap.busy, l.intervals + 1, l.max.max(snap.busy));
        }
        let shards = self.plan.shard_cpus.len();
        let p = self.pending.entry(snap.seq).or_default();
        p.shards += 1;
        p.totals.add(&snap.stats);
        p.busy.resize(shards, 0.0);
        // A last snapshot's busy share is of a partial interval and the drain (a few ms, where
        // one wake-up reads as 100%): not a load to show or warn about.
        if !snap.last {
            p.busy[snap.shard] = snap.busy;
        }
        while let Some((&seq, p)) = self.pending.first_key_value() {
            let finished_before = self.last_seq.iter().filter(|l| l.is_some_and(|l| l < seq)).count();
            if p.shards + finished_before < shards {
                break;
            }
            let (_, p) = self.pending.pop_first().expect("first key exists");
            self.emit(seq, p, watchers, judges);
        }
    }

    fn emit(&mut self, seq: u64, p: Pending, watchers: &mut [&mut dyn Observer], judges: &mut [&mut dyn Observer]) {
        let interval_s = self.plan.interval.as_secs_f64();
        // The last interval is cut short by the end of the run.
        let elapsed = (seq as f64 * interval_s).min(self.start.elapsed().as_secs_f64());
        let target = self.control.steering.level_at(elapsed).unwrap_or_else(|| self.plan.level_at(elapsed));
        let mut point = Point::new(elapsed, (elapsed - self.prev_elapsed).max(1e-3), target, &p.totals);
        point.busy = (p.busy.iter().copied().fold(0.0, f64::max) * 1000.0).round() / 1000.0;
        self.totals.add_interval(&p.totals);
        let interval = Interval {
            seq,
            elapsed_s: elapsed,
            from_s: self.prev_elapsed,
            planned_s: self.plan.duration.as_secs_f64(),
            stage: 1 + self.stage_ends.iter().filter(|&&end| elapsed > end + 1e-9).count(),
            started: self.started,
            totals: &p.totals,
            running: &self.totals,
            point: &point,
            busy: &p.busy,
        };
        let mut stop = false;
        for o in watchers.iter_mut() {
            stop |= o.interval(&interval) == Flow::Stop;
        }
        for o in judges.iter_mut() {
            stop |= o.interval(&interval) == Flow::Stop;
        }
        if stop {
            self.control.finish();
        }
        self.prev_elapsed = elapsed;
        self.timeseries.push(point);
    }

    /// The summary of the run, built once from the merged totals.
    pub fn summarize(self, connect_s: f64, mut warnings: Vec<String>) -> Summary {
        let plan = self.plan;
        let elapsed = self.start.elapsed().as_secs_f64();
        let mut summary = so_far(plan, &self.totals, elapsed);
        // A run that ended early is judged on the part of the schedule it ran.
        let ran_s = self.stopped_at.unwrap_or(f64::INFINITY).min(plan.duration.as_secs_f64());
        let arrival_parts = plan.parts.iter().filter(|p| p.arrival_flows()).count();
        if plan.scenarios() {
            for (p, c) in plan.parts.iter().zip(&self.totals.scenarios) {
                let mut latency = engine_results::stats::new_histogram();
                for n in &self.totals.names[p.requests.clone()] {
                    let _ = latency.add(&n.latency);
                }
                let planned = Planned {
                    model: model_of(p),
                    start_s: p.start.as_secs_f64(),
                    planned_s: (p.end() - p.start).as_secs_f64(),
                    conns: p.conns,
                };
                let mut sc = ScenarioSummary::new(planned, c, &latency, elapsed);
                let scheduled = p.scheduled_until(ran_s);
                (sc.scheduled_requests, sc.scheduled_iterations) = match p.arrival_flows() {
                    true => (None, scheduled),
                    false => (scheduled, None),
                };
                // Iterations are counted for the run: they are a scenario's when it is the only
                // one of arrival-rate flows (else the run's, below).
                if p.arrival_flows() && arrival_parts == 1 {
                    let own_s = (ran_s - p.start.as_secs_f64()).clamp(0.0, planned.planned_s);
                    sc.iterations = self.totals.iterations.as_deref().map(|it| IterationSummary::new(it, own_s));
                }
                summary.scenarios.insert(p.name.clone(), sc);
            }
            if arrival_parts > 1 {
                summary.iterations = self.totals.iterations.as_deref().map(|it| IterationSummary::new(it, ran_s));
            }
        }
        let steered = self.control.steering.scheduled_until(ran_s);
        if let Some(expected) = steered.or_else(|| plan.expected_requests_until(ran_s)) {
            let mut schedule = Schedule::new(expected, ran_s, &self.totals, elapsed);
            // Arrival-rate flows schedule iterations, not requests.
            if let Some(it) =
                self.totals.iterations.as_deref().filter(|_| plan.single().is_some_and(|p| p.arrival_flows()))
            {
                schedule.sent = it.started;
                schedule.behind = (it.started as f64) < 0.99 * expected as f64;
                summary.iterations = Some(IterationSummary::new(it, ran_s));
            }
            // A run that reached its planned end sends everything its schedule made due (the
            // drain carries the late ones), unless the generator fell so far behind that the
            // drain could not: then even a small shortfall is the generator's, and said.
            if self.stopped_at.is_none() && schedule.sent < expected {
                schedule.behind = true;
            }
            summary.schedule = Some(schedule);
        }
        summary.generator = generator(plan, &self.load);
        if summary.generator.saturated {
            let busiest = summary.generator.shards.iter().map(|s| s.busy_max).fold(0.0, f64::max);
            warnings.push(format!(
                "the generator was saturated: a shard was on the CPU or waiting for it {:.0}% of an interval, so latency includes \
                 the engine's own queueing; add shards (CPUs) or hosts",
                busiest * 100.0
            ));
        }
        summary.interrupted = self.control.is_interrupted();
        summary.interventions = self.control.steering.interventions();
        summary.connect_s = (connect_s * 1000.0).round() / 1000.0;
        summary.start_unix_s = unix_s(self.started);
        summary.timeseries = self.timeseries;
        warnings.extend(summary.answer_warnings());
        summary.warnings = warnings;
        summary
    }
}

fn model_of(p: &plan::Part) -> Model {
    match p.model {
        plan::Model::Open(_) => Model::Open,
        plan::Model::Closed(_) => Model::Closed,
    }
}

/// What a summary says of `totals` after `elapsed` seconds of `plan`, before the end's
/// judgements (the schedule, the scenarios, the generator, the verdicts): the live page's
/// summary each second, and the start of the final one.
pub(crate) fn so_far(plan: &Plan, totals: &engine_results::stats::Totals, elapsed: f64) -> Summary {
    let mut summary = Summary::new(&plan.target.url, plan.conns, plan.shard_cpus.len(), totals, elapsed);
    summary.model =
        plan.parts.iter().map(model_of).reduce(|a, b| if a == b { a } else { Model::Mixed }).unwrap_or(Model::Closed);
    summary.checks = ChecksSummary::new(&plan.check_names, &totals.checks);
    if let Some(g) = &plan.grpc {
        let counts = totals.grpc.as_deref().cloned().unwrap_or_default();
        summary.grpc = Some(engine_results::grpc::GrpcSummary::new(&g.call, &counts));
    }
    if let Some(h) = &plan.http2 {
        let counts = totals.http2.as_deref().cloned().unwrap_or_default();
        summary.http2 = Some(Http2Summary::new(h.mode(plan.target.tls), u64::from(h.streams), &counts));
    }
    for (r, n) in plan.requests.iter().zip(&totals.names) {
        summary.requests_by_name.insert(r.name.clone(), NamedSummary::new(&r.method, r.weight, n, elapsed));
    }
    summary.worker = plan.worker;
    summary
}

/// When the load began, in seconds since the Unix epoch (to the millisecond), as summaries
/// say it.
pub(crate) fn unix_s(started: SystemTime) -> f64 {
    let s = started.duration_since(SystemTime::UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64());
    (s * 1000.0).round() / 1000.0
}

/// Each shard's time on the CPU over the run, and whether any was saturated.
fn generator(plan: &Plan, load: &[Load]) -> Generator {
    let round = |x: f64| (x * 1000.0).round() / 1000.0;
    let shards: Vec<ShardLoad> = plan
        .shard_cpus
        .iter()
        .zip(load)
        .map(|(&cpu, l)| ShardLoad {
            cpu,
            busy_mean: round(if l.intervals == 0 { 0.0 } else { l.sum / f64::from(l.intervals) }),
            busy_max: round(l.max),
        })
        .collect();
    Generator { saturated: shards.iter().any(|s| s.busy_max > SATURATED), shards }
}
