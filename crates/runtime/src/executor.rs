//! The one way every mode starts a glommio executor ([`Executor`]), each executor's
//! [`Heartbeat`], and the test-only knobs that let a test drive hours of ticks in seconds or
//! break a shard on purpose ([`tick`], `ENGINE_TEST_FAULT`).
//!
//! Every executor runs one task queue of short tasks without preemption timers (a patch in
//! third_party/glommio: they cost `io_uring_enter` calls on every turn of the loop and had
//! nothing to share out) and without glommio's 10 MiB of registered file-I/O memory.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use glommio::{ExecutorJoinHandle, LocalExecutorBuilder, Placement};

/// Registered I/O memory per executor. glommio reserves it for file I/O, which the engine
/// does not do; the minimum keeps 10,000-connection runs small.
const IO_MEMORY: usize = 64 * 1024;

/// How often an executor with a [`Heartbeat`] beats.
pub const BEAT: Duration = Duration::from_millis(100);

/// The longest a shard may busy-poll between events (`--busy-poll`): past it a shard would
/// burn its CPU for nothing in the gaps of light traffic.
pub const MAX_BUSY_POLL: Duration = Duration::from_secs(1);
/// A heartbeat older than this is late: the executor is stuck (a task that never yields, a
/// blocked thread) or gone.
pub const LATE_AFTER: Duration = Duration::from_secs(1);

/// Why an executor did not start.
#[derive(Debug, thiserror::Error)]
#[error("cannot start the {name} executor: {reason}")]
pub struct SpawnError {
    pub name: String,
    pub reason: String,
}

/// An executor to start: its thread's name (which a panic message names), where it runs,
/// and what it needs beyond the defaults.
pub struct Executor {
    name: String,
    placement: Placement,
    busy_poll: Option<Duration>,
    ring_depth: Option<usize>,
    heartbeat: Option<Heartbeat>,
}

impl Executor {
    pub fn new(name: impl Into<String>, placement: Placement) -> Self {
        Executor { name: name.into(), placement, busy_poll: None, ring_depth: None, heartbeat: None }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// After its last event the executor polls for this long before it sleeps. A sleeping
    /// executor's next event waits for its CPU to wake (tens of µs on a VM whose idle vCPUs
    /// halt); polling trades a busy CPU at light load for that latency. Only an executor
    /// pinned to CPUs polls (glommio ignores it for `Placement::Unbound`).
    pub fn busy_poll(mut self, poll: Option<Duration>) -> Self {
        self.busy_poll = poll.filter(|d| !d.is_zero());
        self
    }

    /// io_uring submission depth: room to batch the polls of many connections into one call.
    pub fn ring_depth(mut self, depth: usize) -> Self {
        self.ring_depth = Some(depth);
        self
    }

    /// The executor beats `heartbeat` every [`BEAT`] while it runs, and marks it when it
    /// ends or dies.
    pub fn heartbeat(mut self, heartbeat: Heartbeat) -> Self {
        self.heartbeat = Some(heartbeat);
        self
    }

    /// Starts the executor on its own thread and runs `main` there; the executor ends when
    /// `main`'s future does (its other tasks are dropped then).
    pub fn spawn<F, Fut, T>(self, main: F) -> Result<ExecutorJoinHandle<T>, SpawnError>
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = T> + 'static,
        T: Send + 'static,
    {
        let mut builder = LocalExecutorBuilder::new(self.placement)
            .name(&self.name)
            .io_memory(IO_MEMORY)
            .preempt_timer(Duration::MAX);
        if let Some(d) = self.busy_poll {
            builder = builder.spin_before_park(d);
        }
        if let Some(n) = self.ring_depth {
            builder = builder.ring_depth(n);
        }
        let (name, heartbeat) = (self.name.clone(), self.heartbeat);
        builder
            .spawn(move || async move {
                CURRENT.with(|c| *c.borrow_mut() = Some(Current { name: name.clone(), heartbeat: heartbeat.clone() }));
                if let Some(h) = heartbeat.clone() {
                    glommio::spawn_local(beat(h)).detach();
                }
                testing::arm(&name);
                let out = main().await;
                if let Some(h) = heartbeat {
                    h.0.store(FINISHED, Ordering::Relaxed);
                }
                out
            })
            .map_err(|e| SpawnError { name: self.name, reason: e.to_string() })
    }
}

/// The executor a thread runs. Dropped when the thread ends: a heartbeat its main future
/// did not mark finished then belongs to a thread that panicked (glommio leaks the tasks of
/// an executor that panicked, so nothing inside them is dropped).
struct Current {
    name: String,
    heartbeat: Option<Heartbeat>,
}

impl Drop for Current {
    fn drop(&mut self) {
        if let Some(h) = &self.heartbeat {
            if h.0.load(Ordering::Relaxed) != FINISHED {
                h.0.store(DIED, Ordering::Relaxed);
            }
        }
    }
}

thread_local! {
    static CURRENT: std::cell::RefCell<Option<Current>> = const { std::cell::RefCell::new(None) };
}

/// The name of the executor this thread runs (`proxy-1`, say), if it runs one: what a panic
/// message names.
pub fn current_executor() -> Option<String> {
    CURRENT.try_with(|c| c.borrow().as_ref().map(|c| c.name.clone())).ok().flatten()
}

async fn beat(h: Heartbeat) {
    loop {
        h.beat_now();
        glommio::timer::sleep(tick(BEAT)).await;
    }
}

/// Milliseconds since the first call in this process, from 1 (0 is never a beat).
fn now_ms() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    EPOCH.get_or_init(Instant::now).elapsed().as_millis() as u64 + 1
}

const NOT_STARTED: u64 = 0;
const FINISHED: u64 = u64::MAX - 1;
const DIED: u64 = u64::MAX;

/// The last sign of life of one executor, readable from any thread.
#[derive(Debug, Clone)]
pub struct Heartbeat(Arc<AtomicU64>);

/// What a [`Heartbeat`] says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pulse {
    /// The executor has not run yet (its thread is starting, or failed to).
    NotStarted,
    /// Beat within [`LATE_AFTER`].
    Alive,
    /// No beat for this long: stuck.
    Late(Duration),
    /// Its thread panicked.
    Died,
    /// It ended normally (a drained shard, say).
    Finished,
}

impl Default for Heartbeat {
    fn default() -> Self {
        Heartbeat(Arc::new(AtomicU64::new(NOT_STARTED)))
    }
}

impl Heartbeat {
    pub fn new() -> Self {
        Self::default()
    }

    /// A sign of life, now. An end already marked stays: the beat task may run once more in
    /// the executor's last turn, after its main future finished, and a beat stored over
    /// `FINISHED` made the thread's end read as a panic ("shard 0 died") in a run that had
    /// none.
    fn beat_now(&self) {
        let now = now_ms();
        let _ =
            self.0.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| (v != FINISHED && v != DIED).then_some(now));
    }

    pub fn pulse(&self) -> Pulse {
        self.pulse_at(now_ms())
    }

    fn pulse_at(&self, now_ms: u64) -> Pulse {
        match self.0.load(Ordering::Relaxed) {
            NOT_STARTED => Pulse::NotStarted,
            DIED => Pulse::Died,
            FINISHED => Pulse::Finished,
            last => {
                let age = Duration::from_millis(now_ms.saturating_sub(last));
                if age > LATE_AFTER {
                    Pulse::Late(age)
                } else {
                    Pulse::Alive
                }
            }
        }
    }
}

/// A periodic tick of a server or shard loop (stop-flag checks, sweeps, publication): `d`,
/// or `d` divided by `ENGINE_TEST_TICK_DIVISOR` when that is set, so a test can run hours of
/// ticks in seconds (a leak per tick shows at once).
pub fn tick(d: Duration) -> Duration {
    match testing::knobs().tick_divisor {
        Some(n) => d / n,
        None => d,
    }
}

/// `fut`'s output, or `None` once `d` has passed first (the future is then dropped).
pub async fn within<T>(d: Duration, fut: impl std::future::Future<Output = T>) -> Option<T> {
    let late = async {
        glommio::timer::sleep(d).await;
        None
    };
    futures_lite::future::or(async { Some(fut.await) }, late).await
}

/// Knobs for tests, read from the environment once. Unset in normal use; a value that does
/// not parse is ignored.
mod testing {
    use super::*;

    pub(super) struct Knobs {
        /// `ENGINE_TEST_TICK_DIVISOR=N`: every [`tick`] is N times shorter.
        pub tick_divisor: Option<u32>,
        /// `ENGINE_TEST_FAULT=panic:NAME@SECS` or `stall:NAME@SECS`: the executor named NAME
        /// panics, or blocks its thread for good, SECS seconds after it starts.
        pub fault: Option<Fault>,
    }

    pub(super) struct Fault {
        pub stall: bool,
        pub executor: String,
        pub after: Duration,
    }

    pub(super) fn knobs() -> &'static Knobs {
        static KNOBS: OnceLock<Knobs> = OnceLock::new();
        KNOBS.get_or_init(|| Knobs {
            tick_divisor: std::env::var("ENGINE_TEST_TICK_DIVISOR")
                .ok()
                .and_then(|v| v.parse().ok())
                .filter(|n| *n > 0),
            fault: std::env::var("ENGINE_TEST_FAULT").ok().and_then(|v| parse_fault(&v)),
        })
    }

    fn parse_fault(text: &str) -> Option<Fault> {
        let (kind, rest) = text.split_once(':')?;
        let (executor, secs) = rest.rsplit_once('@')?;
        let after = Duration::try_from_secs_f64(secs.parse().ok()?).ok()?;
        let stall = match kind {
            "panic" => false,
            "stall" => true,
            _ => return None,
        };
        Some(Fault { stall, executor: executor.to_string(), after })
    }

    /// Arms the configured fault if it names this executor.
    pub(super) fn arm(name: &str) {
        let Some(f) = knobs().fault.as_ref().filter(|f| f.executor == name) else { return };
        let (stall, after) = (f.stall, f.after);
        glommio::spawn_local(async move {
            glommio::timer::sleep(after).await;
            if stall {
                // Blocks the executor's thread: no task of it runs again, no beat.
                loop {
                    std::thread::park();
                }
            }
            panic!("ENGINE_TEST_FAULT: a test asked this executor to panic");
        })
        .detach();
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn faults_parse_or_are_ignored() {
            let f = parse_fault("panic:proxy-1@2.5").unwrap();
            assert!(!f.stall);
            assert_eq!((f.executor.as_str(), f.after), ("proxy-1", Duration::from_millis(2500)));
            assert!(parse_fault("stall:target-0@0").unwrap().stall);
            for bad in ["", "panic", "panic:x", "explode:x@1", "panic:x@-1", "panic:x@nan", "panic:x@1e300"] {
                assert!(parse_fault(bad).is_none(), "{bad}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_heartbeat_says_alive_finished_or_died() {
        let h = Heartbeat::new();
        assert_eq!(h.pulse(), Pulse::NotStarted);
        let handle = Executor::new("hb-test", Placement::Unbound)
            .heartbeat(h.clone())
            .spawn(|| async { glommio::timer::sleep(Duration::from_millis(100)).await })
            .unwrap();
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(h.pulse(), Pulse::Alive);
        handle.join().unwrap();
        assert_eq!(h.pulse(), Pulse::Finished);

        let h = Heartbeat::new();
        let handle = Executor::new("hb-panic", Placement::Unbound)
            .heartbeat(h.clone())
            .spawn(|| async { panic!("on purpose") })
            .unwrap();
        assert!(handle.join().is_err());
        assert_eq!(h.pulse(), Pulse::Died);

        // A beat after the end does not undo it.
        for end in [FINISHED, DIED] {
            let h = Heartbeat(Arc::new(AtomicU64::new(end)));
            h.beat_now();
            assert_eq!(h.0.load(Ordering::Relaxed), end);
        }
        let h = Heartbeat::new();
        h.beat_now();
        assert_eq!(h.pulse(), Pulse::Alive);

        let h = Heartbeat(Arc::new(AtomicU64::new(1000)));
        assert_eq!(h.pulse_at(1000 + LATE_AFTER.as_millis() as u64), Pulse::Alive);
        assert_eq!(
            h.pulse_at(1500 + LATE_AFTER.as_millis() as u64),
            Pulse::Late(LATE_AFTER + Duration::from_millis(500))
        );
    }
}
