//! Running a blast: pre-flight, shards, and the collector that merges their snapshots.

use std::collections::BTreeMap;
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant, SystemTime};

use glommio::Placement;

use crate::plan::Plan;
use crate::shard::{self, Message, ShardConfig};
use engine_results::stats::Totals;
use engine_results::summary::{NamedSummary, Point, Schedule, Summary};
use engine_runtime::{Heartbeat, Pulse};

/// io_uring submission depth per shard: room to batch the polls of many connections into
/// one `io_uring_enter`.
const RING_DEPTH: usize = 1024;

/// A shard reports at least once per interval, and its longest silences are the connect
/// phase (10 s at most) and the drain (2 s). A shard silent for longer than this is stuck
/// (an executor that no longer wakes up); the run then ends with what was measured and a
/// warning rather than hang.
const WATCHDOG: std::time::Duration = std::time::Duration::from_secs(15);
/// How often the collector looks for a stop or a dead shard while it waits for snapshots.
const COLLECTOR_CHECK: Duration = Duration::from_millis(100);
/// After a stop, how long past its drain a shard may take to send its last snapshot
/// before it counts as stuck.
const LAST_WORD: Duration = Duration::from_millis(400);
/// The longest [`run`] takes to return after [`Control::stop`], whatever the shards do.
pub const STOP_WITHIN: Duration = shard::DRAIN_INTERRUPTED.saturating_add(LAST_WORD);

/// Stops a run from another thread (a Ctrl-C handler, say). Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Control {
    stop: Arc<AtomicBool>,
    /// The stop was the plan's own (a stress run that found its limit), not an interrupt.
    planned: Arc<AtomicBool>,
}

impl Control {
    pub fn new() -> Self {
        Self::default()
    }

    /// Asks the run to stop: no new requests, a short drain, then the summary.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }

    pub fn is_stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    /// Ends the run early because it has what it was for; the summary is not marked
    /// interrupted.
    pub fn finish(&self) {
        self.planned.store(true, Ordering::Relaxed);
        self.stop();
    }

    /// Stopped by [`Control::stop`] (Ctrl-C, say) rather than by [`Control::finish`].
    pub fn is_interrupted(&self) -> bool {
        self.is_stopped() && !self.planned.load(Ordering::Relaxed)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("target {addr} is unreachable: {cause}")]
    Unreachable { addr: std::net::SocketAddr, cause: io::Error },
    #[error("cannot start shard {shard} on CPU {cpu}: {reason}")]
    Spawn { shard: usize, cpu: usize, reason: String },
}

/// One interval of a running blast, merged across shards.
pub struct IntervalReport<'a> {
    pub seq: u64,
    /// Seconds since the start at the end of this interval.
    pub elapsed_s: f64,
    pub planned_s: f64,
    pub interval: &'a Totals,
    pub point: &'a Point,
}

/// Tries one connection to the target, as the run will.
pub fn preflight(plan: &Plan) -> Result<(), RunError> {
    std::net::TcpStream::connect_timeout(&plan.target.addr, plan.connect_timeout)
        .map(drop)
        .map_err(|cause| RunError::Unreachable { addr: plan.target.addr, cause })
}

/// Runs the plan to its end (or until `control` stops it) and returns the exact summary.
/// `on_interval` is called on this thread once per interval with the merged figures.
pub fn run(plan: &Plan, control: &Control, mut on_interval: impl FnMut(&IntervalReport)) -> Result<Summary, RunError> {
    // Best effort: if it fails, the fd budget was already checked against the soft limit's
    // ceiling, and connects will report EMFILE as connect errors.
    let _ = engine_runtime::limits::raise_nofile();
    preflight(plan)?;

    let plan_arc = Arc::new(plan.clone());
    let (tx, rx) = mpsc::channel();
    let connect_start = Instant::now();
    let mut handles = Vec::new();
    let mut heartbeats = Vec::new();
    let mut start_txs = Vec::new();
    for (index, &cpu) in plan.shard_cpus.iter().enumerate() {
        let (start_tx, start_rx) = mpsc::channel();
        start_txs.push(start_tx);
        let cfg = ShardConfig { index, plan: plan_arc.clone(), tx: tx.clone(), start_rx, stop: control.stop.clone() };
        let heartbeat = Heartbeat::new();
        heartbeats.push(heartbeat.clone());
        let spawned = engine_runtime::Executor::new(format!("blast-{index}"), Placement::Fixed(cpu))
            .busy_poll(plan.busy_poll)
            .ring_depth(RING_DEPTH)
            .heartbeat(heartbeat)
            .spawn(move || shard::run(cfg));
        match spawned {
            Ok(h) => handles.push(h),
            Err(e) => {
                control.stop();
                for h in handles {
                    let _ = h.join();
                }
                return Err(RunError::Spawn { shard: index, cpu, reason: e.to_string() });
            }
        }
    }
    drop(tx);

    // Every shard connects first; the clock starts for all of them at once.
    let shards = plan.shard_cpus.len();
    let mut ready = 0;
    let connecting = Instant::now();
    while ready < shards && connecting.elapsed() < WATCHDOG {
        match rx.recv_timeout(COLLECTOR_CHECK) {
            Ok((_, Message::Ready)) => ready += 1,
            Ok((_, Message::Snapshot(_))) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
            // A shard that died while connecting never says it is ready.
            Err(mpsc::RecvTimeoutError::Timeout) if heartbeats.iter().any(|h| h.pulse() == Pulse::Died) => break,
            Err(mpsc::RecvTimeoutError::Timeout) => {}
        }
    }
    // Distributed runs begin together at --start-at; a worker that connected too late says so.
    // Late means: already past the start time when connecting ended (waking from the sleep
    // below is always a little past it, and is not late).
    let late = plan.start_at.and_then(|at| SystemTime::now().duration_since(at).ok()).map(|d| d.as_secs_f64());
    if let Some(at) = plan.start_at {
        while let Ok(wait) = at.duration_since(SystemTime::now()) {
            if wait.is_zero() || control.is_stopped() {
                break;
            }
            std::thread::sleep(wait.min(Duration::from_millis(50)));
        }
    }
    let start = Instant::now();
    let start_unix_s = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64());
    let connect_s = (start - connect_start).as_secs_f64();
    for t in start_txs {
        let _ = t.send(start);
    }

    let interval_s = plan.interval.as_secs_f64();
    let mut totals = Totals::default();
    let mut timeseries = Vec::new();
    // Snapshots of one interval arrive from each shard in any order; an interval is complete
    // when every shard has reported it or has already sent its last snapshot.
    let mut pending: BTreeMap<u64, (usize, Totals)> = BTreeMap::new();
    let mut last_seq: Vec<Option<u64>> = vec![None; shards];
    let mut prev_elapsed = 0.0;
    let mut emit = |seq: u64, interval: Totals, totals: &mut Totals, timeseries: &mut Vec<Point>| {
        // The last interval is cut short by the end of the run.
        let elapsed = (seq as f64 * interval_s).min(start.elapsed().as_secs_f64());
        let target = plan.model.profile().at(elapsed);
        let point = Point::new(elapsed, (elapsed - prev_elapsed).max(1e-3), target, &interval);
        prev_elapsed = elapsed;
        totals.add_interval(&interval);
        on_interval(&IntervalReport {
            seq,
            elapsed_s: elapsed,
            planned_s: plan.duration.as_secs_f64(),
            interval: &interval,
            point: &point,
        });
        timeseries.push(point);
    };
    // When the load ended, if it ended before the plan did (seen to within an interval).
    let mut stopped_at: Option<f64> = None;
    let mut stuck = false;
    // When a stop was first seen: from then, shards have their drain and LAST_WORD to finish.
    let mut stop_seen: Option<(Instant, Duration)> = None;
    let mut last_message = Instant::now();
    loop {
        if stop_seen.is_none() && control.is_stopped() {
            let drain =
                if control.is_interrupted() { shard::DRAIN_INTERRUPTED } else { shard::DRAIN_MAX.min(plan.timeout) };
            stop_seen = Some((Instant::now(), drain + LAST_WORD));
        }
        // A shard that died sends nothing more (a panic leaks its sender rather than drop
        // it): the intervals complete without it.
        for (last, h) in last_seq.iter_mut().zip(&heartbeats) {
            if last.is_none() && h.pulse() == Pulse::Died {
                *last = Some(0);
            }
        }
        let give_up = match stop_seen {
            Some((at, grace)) => at + grace,
            None => last_message + WATCHDOG,
        };
        let message = match rx.recv_timeout(give_up.saturating_duration_since(Instant::now()).min(COLLECTOR_CHECK)) {
            Ok((_, m)) => m,
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
            Err(mpsc::RecvTimeoutError::Timeout) if Instant::now() >= give_up => {
                stuck = true;
                control.stop();
                break;
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                if last_seq.iter().all(Option::is_some) {
                    break;
                }
                continue;
            }
        };
        last_message = Instant::now();
        if stopped_at.is_none() && control.is_stopped() {
            stopped_at = Some(start.elapsed().as_secs_f64());
        }
        let Message::Snapshot(snap) = message else { continue };
        if snap.last {
            last_seq[snap.shard] = Some(snap.seq);
        }
        let entry = pending.entry(snap.seq).or_insert_with(|| (0, Totals::default()));
        entry.0 += 1;
        entry.1.add(&snap);
        while let Some((&seq, (count, _))) = pending.first_key_value() {
            let finished_before = last_seq.iter().filter(|l| l.is_some_and(|l| l < seq)).count();
            if count + finished_before < shards {
                break;
            }
            let (_, interval) = pending.pop_first().expect("first key exists").1;
            emit(seq, interval, &mut totals, &mut timeseries);
        }
    }
    // Shards that died leave intervals incomplete; their figures still count.
    while let Some((seq, (_, interval))) = pending.pop_first() {
        emit(seq, interval, &mut totals, &mut timeseries);
    }
    let elapsed = start.elapsed().as_secs_f64();

    let mut warnings = Vec::new();
    if let Some(late) = late.filter(|l| *l >= 0.001) {
        warnings.push(format!("started {late:.3} s after --start-at (connecting took until then)"));
    }
    for (i, h) in handles.into_iter().enumerate() {
        let pulse = heartbeats[i].pulse();
        if stuck && last_seq[i].is_none() && pulse != Pulse::Died {
            // Joining would wait forever; the thread ends with the process.
            warnings.push(format!(
                "shard {i} stopped reporting and was abandoned ({}); its figures end at its last report",
                match pulse {
                    Pulse::Late(age) => format!("no heartbeat for {:.1} s", age.as_secs_f64()),
                    _ => "its heartbeat went on".to_string(),
                }
            ));
            continue;
        }
        if h.join().is_err() || pulse == Pulse::Died {
            warnings.push(format!("shard {i} died (a panic); its figures end at its last report"));
        }
    }
    let mut summary = Summary::new(&plan.target.url, plan.conns, shards, &totals, elapsed);
    summary.model = plan.model.name();
    for (r, n) in plan.requests.iter().zip(&totals.names) {
        summary.requests_by_name.insert(r.name.clone(), NamedSummary::new(&r.method, r.weight, n, elapsed));
    }
    // A run that ended early is judged on the part of the schedule it ran.
    let ran_s = stopped_at.unwrap_or(f64::INFINITY).min(plan.duration.as_secs_f64());
    if let Some(expected) = plan.expected_requests_until(ran_s) {
        summary.schedule = Some(Schedule::new(expected, ran_s, &totals, elapsed));
    }
    summary.interrupted = control.is_interrupted();
    summary.connect_s = (connect_s * 1000.0).round() / 1000.0;
    summary.start_unix_s = (start_unix_s * 1000.0).round() / 1000.0;
    summary.worker = plan.worker;
    summary.timeseries = timeseries;
    summary.warnings = warnings;
    Ok(summary)
}
