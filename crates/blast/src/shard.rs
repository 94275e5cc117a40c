//! One shard: a glommio executor pinned to one CPU that owns its connections, its read
//! buffer and its statistics ([`crate::state`]). Its control loop connects, starts the
//! connections together with the other shards, follows a ramp, sweeps timeouts, and once per
//! interval sends a [`Snapshot`] to the collector.

use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use engine_results::stats::ShardStats;
use engine_runtime::tick;

use crate::plan::Plan;
use crate::state::Shard;
use crate::steer::Steering;

/// How long in-flight requests may still complete after the run's end (capped by
/// `--timeout`); after that they are abandoned and counted as such.
pub(crate) const DRAIN_MAX: Duration = Duration::from_secs(2);
/// The share of the drain's grace in which requests due before the end may still start;
/// the rest is for them to finish.
const BACKLOG_SHARE: f64 = 0.75;
/// After an interrupt (Ctrl-C) the user wants the report now.
pub(crate) const DRAIN_INTERRUPTED: Duration = Duration::from_millis(300);
/// How often the control loop looks at the stop flag: the only cross-thread read a shard
/// makes while running.
const CONTROL_TICK: Duration = Duration::from_millis(25);
/// The longest the connect phase may last before the load starts anyway; connections not
/// open by then keep connecting during the run.
const CONNECT_PHASE_MAX: Duration = Duration::from_secs(10);
/// The connect phase also ends when no attempt has finished for this long: the connections
/// still opening are stalled (a server that never answers a handshake, SYNs retransmitted),
/// and waiting on them would only push the run past its `-d`.
const CONNECT_STALL: Duration = Duration::from_secs(1);
/// At the end, how long connects and handshakes still in progress may take to finish
/// (within the drain's grace); those that have not are counted as errors of their kind.
const OPENING_GRACE: Duration = Duration::from_secs(1);

/// One shard's figures of one interval.
pub(crate) struct Snapshot {
    pub shard: usize,
    /// Interval number, from 1; `last` marks the shard's final snapshot.
    pub seq: u64,
    pub last: bool,
    pub stats: ShardStats,
    /// The share of the interval the shard's thread spent on the CPU.
    pub busy: f64,
}

/// What a shard tells the collector.
pub(crate) enum Message {
    /// Every connection of the shard has tried to connect once: the shard is ready to start.
    Ready,
    Snapshot(Box<Snapshot>),
}

/// What a shard thread needs; all of it `Send`.
pub(crate) struct ShardConfig {
    pub index: usize,
    pub plan: Arc<Plan>,
    pub tx: mpsc::Sender<(usize, Message)>,
    /// The run's common start, sent by the collector once every shard is ready.
    pub start_rx: mpsc::Receiver<Instant>,
    pub stop: Arc<AtomicBool>,
    /// Changes made through the control API (read once a control tick).
    pub steering: Arc<Steering>,
}

/// Takes snapshots: the interval's figures and how busy the thread was.
struct Reporter<'a> {
    cfg: &'a ShardConfig,
    seq: u64,
    at: Instant,
    /// The thread's CPU time and the wall clock at the last snapshot.
    cpu: Duration,
    wall: Instant,
}

impl Reporter<'_> {
    fn send(&mut self, shard: &Shard, last: bool) {
        let (cpu, wall) = (thread_cpu_time(), Instant::now());
        let busy = (cpu.saturating_sub(self.cpu).as_secs_f64() / (wall - self.wall).as_secs_f64().max(1e-6)).min(1.0);
        (self.cpu, self.wall) = (cpu, wall);
        let snap = Snapshot { shard: self.cfg.index, seq: self.seq, last, stats: shard.stats().take(), busy };
        let _ = self.cfg.tx.send((self.cfg.index, Message::Snapshot(Box::new(snap))));
        self.seq += 1;
    }

    /// Sends every interval that ended by `now`.
    fn due(&mut self, shard: &Shard, now: Instant) {
        while now >= self.at {
            self.send(shard, false);
            self.at += self.cfg.plan.interval;
        }
    }
}

pub(crate) async fn run(cfg: ShardConfig) {
    // A slot per connection, or per stream of each connection in an HTTP/2 run.
    let conns = cfg.plan.shard_conns(cfg.index) as usize * cfg.plan.streams();
    let shard = Shard::new(cfg.plan.clone(), cfg.index, seed(cfg.index));
    shard.admit(0.0);
    let mut ramps = cfg.plan.admission_varies();
    let mut seen = 0;
    let tasks: Vec<_> = (0..conns).map(|i| glommio::spawn_local(crate::conn::run(shard.clone(), i))).collect();
    let sweeper = glommio::spawn_local(sweep(shard.clone()));

    let Some(start) = connect_phase(&cfg, &shard).await else { return };
    shard.begin(start);
    let end = start + cfg.plan.duration;
    let mut reporter =
        Reporter { cfg: &cfg, seq: 1, at: start + cfg.plan.interval, cpu: thread_cpu_time(), wall: start };
    // Run until the end or an interrupt.
    let interrupted = loop {
        let now = Instant::now();
        reporter.due(&shard, now);
        if cfg.stop.load(Ordering::Relaxed) {
            break true;
        }
        if now >= end {
            break false;
        }
        if let Some(course) = cfg.steering.changed(&mut seen) {
            shard.steer(course);
            ramps = true;
        }
        if ramps {
            shard.admit((now - start).as_secs_f64());
        }
        let wake = reporter.at.min(end).min(now + tick(CONTROL_TICK));
        glommio::timer::sleep(wake.saturating_duration_since(now)).await;
    };
    drain(&cfg, &shard, &mut reporter, interrupted).await;
    // Dropping a glommio task cancels it; each connection's guard settles its gauges.
    drop(tasks);
    drop(sweeper);
    shard.close_links();
    // A cancelled task's future is dropped when the executor next runs it: let that happen
    // so the guards settle the gauges and count the abandoned requests and connects before
    // the last snapshot.
    for _ in 0..50 {
        let settled = {
            let st = shard.stats();
            st.open == 0 && st.in_flight == 0 && shard.opening() == 0
        };
        if settled {
            break;
        }
        glommio::timer::sleep(Duration::from_millis(1)).await;
    }
    reporter.send(&shard, true);
}

/// Connect phase: all connections open before the clock starts, so a run at 10,000
/// connections measures load, not the target's accept queue. Returns the run's common
/// start, or `None` when the collector is gone (nobody wants the results).
async fn connect_phase(cfg: &ShardConfig, shard: &Shard) -> Option<Instant> {
    let begun = Instant::now();
    let phase_end = begun + CONNECT_PHASE_MAX;
    let stalled = || Instant::now() >= shard.last_attempt().unwrap_or(begun) + CONNECT_STALL;
    while !shard.all_attempted() && Instant::now() < phase_end && !stalled() && !cfg.stop.load(Ordering::Relaxed) {
        glommio::timer::sleep(Duration::from_millis(1)).await;
    }
    let _ = cfg.tx.send((cfg.index, Message::Ready));
    loop {
        match cfg.start_rx.try_recv() {
            Ok(start) => return Some(start),
            Err(mpsc::TryRecvError::Empty) => glommio::timer::sleep(Duration::from_millis(1)).await,
            Err(mpsc::TryRecvError::Disconnected) => return None,
        }
    }
}

/// No new requests; in-flight ones may finish for a short while, and connections opening
/// for a shorter one.
async fn drain(cfg: &ShardConfig, shard: &Shard, reporter: &mut Reporter<'_>, interrupted: bool) {
    shard.stop_running(!interrupted);
    let grace = if interrupted { DRAIN_INTERRUPTED } else { DRAIN_MAX.min(cfg.plan.timeout) };
    let now = Instant::now();
    let (drain_end, opening_end) = (now + grace, now + grace.min(OPENING_GRACE));
    // A generator that fell behind may hold more due requests than the grace can carry:
    // it sends them for the first part of the grace only, or the last ones sent would be
    // cut off in flight at its end (served by the target, never measured).
    let backlog_end = now + grace.mul_f64(BACKLOG_SHARE);
    loop {
        let now = Instant::now();
        reporter.due(shard, now);
        if now >= backlog_end {
            shard.stop_finishing();
        }
        let opening = shard.opening() > 0 && now < opening_end;
        let sent_all = interrupted || shard.schedule_sent() || !shard.may_send();
        // Users leaving at the end walk their teardown steps within the grace.
        let idle = shard.stats().in_flight == 0 && sent_all && (interrupted || shard.teardowns_owed() == 0);
        if (idle && !opening) || now >= drain_end {
            break;
        }
        if !interrupted && cfg.stop.load(Ordering::Relaxed) {
            break;
        }
        glommio::timer::sleep(Duration::from_millis(2)).await;
    }
}

/// This thread's time on the CPU or runnable and waiting for it, so far: a shard that had
/// work all the time counts as busy all the time, even while another thread held its CPU.
/// From `/proc/thread-self/schedstat` (on-CPU and run-queue nanoseconds); where the kernel
/// keeps no such figures, the thread's CPU clock.
fn thread_cpu_time() -> Duration {
    if let Ok(text) = std::fs::read_to_string("/proc/thread-self/schedstat") {
        let mut it = text.split_whitespace().map(|v| v.parse::<u64>().ok());
        if let (Some(Some(run)), Some(Some(wait))) = (it.next(), it.next()) {
            return Duration::from_nanos(run.saturating_add(wait));
        }
    }
    thread_cpu_clock()
}

/// This thread's CPU time (user and system) so far.
fn thread_cpu_clock() -> Duration {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes into the timespec we own.
    if unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) } != 0 {
        return Duration::ZERO;
    }
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// A different random stream per shard and per run.
fn seed(index: usize) -> u64 {
    let now =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0);
    now ^ (index as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

/// Times requests out without a timer per request: a scan of the slots every tenth of the
/// timeout, which shuts a late socket down so its pending read or write ends at once.
async fn sweep(shard: Rc<Shard>) {
    let timeout = shard.plan().timeout;
    let every = (timeout / 10).clamp(Duration::from_millis(1), Duration::from_millis(100));
    loop {
        glommio::timer::sleep(every).await;
        shard.sweep(Instant::now());
    }
}
