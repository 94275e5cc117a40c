//! Running a blast: pre-flight, the shards (`fleet`), and the collector that
//! merges their snapshots and hands each interval to the observers (`collect`).

use std::time::{Duration, Instant, SystemTime};

use engine_results::observe::Observer;
use engine_results::Summary;

use crate::collect::Collector;
pub use crate::control::{Control, RunError, STOP_WITHIN};
use crate::fleet::Fleet;
use crate::plan::Plan;

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
    if let Err(e) = fleet.wait_ready(plan) {
        control.stop();
        return Err(e);
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
