//! Running a blast: pre-flight, the shards (`fleet`), and the collector that
//! merges their snapshots and hands each interval to the observers (`collect`).

use std::time::{Duration, Instant, SystemTime};

use engine_results::observe::Observer;
use engine_results::Summary;

use crate::collect::Collector;
pub use crate::control::{Control, RunError, STOP_WITHIN};
use crate::fleet::Fleet;
use crate::plan::Plan;

/// What the pre-flight found.
#[derive(Debug, Clone, Copy, Default)]
pub struct Preflight {
    /// https:// targets: what a full handshake negotiated.
    pub tls: Option<engine_tls::Negotiated>,
}

/// Tries one connection to the target, as the run will: with TLS, a full handshake (and a
/// moment for an alert that follows it), but no request.
pub fn preflight(plan: &Plan) -> Result<Preflight, RunError> {
    let addr = plan.target.addr;
    let mut tcp = std::net::TcpStream::connect_timeout(&addr, plan.connect_timeout)
        .map_err(|cause| RunError::Unreachable { addr, cause })?;
    let Some(tls) = &plan.tls else { return Ok(Preflight::default()) };
    let t = &plan.target;
    let probe = format!("GET {} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n", t.path, t.authority);
    match tls.client.preflight(&mut tcp, plan.connect_timeout, probe.as_bytes()) {
        Ok(n) => Ok(Preflight { tls: Some(n) }),
        Err(cause) => {
            let advice = engine_tls::Failure::of(&cause).and_then(|f| f.advice());
            Err(RunError::Handshake { addr, name: tls.client.server_name(), cause, advice: advice.unwrap_or("") })
        }
    }
}

/// Runs the plan, unjudged, to its end (or until `control` stops it, or an observer asks to)
/// and returns the exact summary. Each interval, merged across shards, goes to `watchers` in
/// turn, on this thread; at the end each adds to the summary, in the same order. A run with
/// thresholds, safety stops or a profile is a [`crate::Run`].
pub fn run(plan: &Plan, control: &Control, watchers: &mut [&mut dyn Observer]) -> Result<Summary, RunError> {
    let pre = preflight(plan)?;
    run_ordered(plan, &pre, control, watchers, &mut [])
}

/// The run after its pre-flight: each interval goes to the watchers, then the judges; at the
/// end the judges finish first, then the watchers (see [`crate::run`]).
pub(crate) fn run_ordered(
    plan: &Plan,
    pre: &Preflight,
    control: &Control,
    watchers: &mut [&mut dyn Observer],
    judges: &mut [&mut dyn Observer],
) -> Result<Summary, RunError> {
    // Best effort: if it fails, the fd budget was already checked against the soft limit's
    // ceiling, and connects will report EMFILE as connect errors.
    let _ = engine_runtime::limits::raise_nofile();

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
    control.steering.attach(plan, start);
    fleet.start_all(start);

    let mut collector = Collector::new(plan, control, start, started);
    collector.collect(&mut fleet, watchers, judges);
    let mut warnings = Vec::new();
    if let Some(late) = late.filter(|l| *l >= 0.001) {
        warnings.push(format!("started {late:.3} s after --start-at (connecting took until then)"));
    }
    warnings.extend(fleet.join(collector.stuck(), &collector.finished()));
    let mut summary = collector.summarize((start - connect_start).as_secs_f64(), warnings);
    if let (Some(t), Some(n)) = (summary.tls.as_mut(), pre.tls) {
        (t.version, t.cipher) = (n.version.to_string(), n.cipher.to_string());
    }
    for o in judges.iter_mut() {
        o.finish(&mut summary);
    }
    for o in watchers.iter_mut() {
        o.finish(&mut summary);
    }
    Ok(summary)
}
