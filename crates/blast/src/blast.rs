//! Running a blast: pre-flight, the shards ([`crate::fleet`]), and the collector that
//! merges their snapshots and hands each interval to the observers ([`crate::collect`]).

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use engine_results::observe::Observer;
use engine_results::Summary;

use crate::collect::Collector;
use crate::fleet::Fleet;
use crate::plan::Plan;
use crate::shard;

/// After a stop, how long past its drain a shard may take to send its last snapshot
/// before it counts as stuck.
pub(crate) const LAST_WORD: Duration = Duration::from_millis(400);
/// The longest [`run`] takes to return after [`Control::stop`], whatever the shards do.
pub const STOP_WITHIN: Duration = shard::DRAIN_INTERRUPTED.saturating_add(LAST_WORD);

/// Stops a run from another thread (a Ctrl-C handler, say). Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Control {
    pub(crate) stop: Arc<AtomicBool>,
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

/// Tries one connection to the target, as the run will.
pub fn preflight(plan: &Plan) -> Result<(), RunError> {
    std::net::TcpStream::connect_timeout(&plan.target.addr, plan.connect_timeout)
        .map(drop)
        .map_err(|cause| RunError::Unreachable { addr: plan.target.addr, cause })
}

/// Runs the plan to its end (or until `control` stops it, or an observer asks to) and
/// returns the exact summary. Each interval, merged across shards, goes to `observers` in
/// turn, on this thread; at the end each adds to the summary, in the same order.
pub fn run(plan: &Plan, control: &Control, observers: &mut [&mut dyn Observer]) -> Result<Summary, RunError> {
    // Best effort: if it fails, the fd budget was already checked against the soft limit's
    // ceiling, and connects will report EMFILE as connect errors.
    let _ = engine_runtime::limits::raise_nofile();
    preflight(plan)?;

    let connect_start = Instant::now();
    let mut fleet = Fleet::start(plan, control)?;
    // Every shard connects first; the clock starts for all of them at once.
    fleet.wait_ready();
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
    let (start, started) = (Instant::now(), SystemTime::now());
    fleet.start_all(start);

    let mut collector = Collector::new(plan, control, start, started);
    collector.collect(&mut fleet, observers);
    let mut warnings = Vec::new();
    if let Some(late) = late.filter(|l| *l >= 0.001) {
        warnings.push(format!("started {late:.3} s after --start-at (connecting took until then)"));
    }
    warnings.extend(fleet.join(collector.stuck(), &collector.finished()));
    let mut summary = collector.summarize((start - connect_start).as_secs_f64(), warnings);
    for o in observers.iter_mut() {
        o.finish(&mut summary);
    }
    Ok(summary)
}
