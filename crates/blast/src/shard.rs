//! One shard: a glommio executor pinned to one CPU that owns its connections, its read
//! buffer and its statistics. Nothing here is shared with another shard; once per
//! interval the shard sends a [`Snapshot`] to the collector.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use std::task::Waker;

use glommio::sync::Semaphore;

use crate::plan::{split, Model, Plan};
use crate::schedule::{Arrivals, Picker};
use engine_http::template::{Rng, Values};
use engine_results::stats::{ShardStats, Snapshot};

/// One read buffer per shard, shared by its connections in turn: large enough for a whole
/// response head ([`engine_http::MAX_HEAD`]) and for bulk body reads.
const READ_BUF: usize = 64 * 1024;
/// Handshakes in progress at once per shard (see `conn::connect`).
const CONNECTS_IN_PROGRESS: u64 = 256;
/// How long in-flight requests may still complete after the run's end (capped by
/// `--timeout`); after that they are abandoned and counted as such.
pub(crate) const DRAIN_MAX: Duration = Duration::from_secs(2);
/// After an interrupt (Ctrl-C) the user wants the report now.
pub(crate) const DRAIN_INTERRUPTED: Duration = Duration::from_millis(300);
/// How often the control loop looks at the stop flag: the only cross-thread read a shard
/// makes while running.
const CONTROL_TICK: Duration = Duration::from_millis(25);

/// The longest the connect phase may last before the load starts anyway; connections not
/// open by then keep connecting during the run.
const CONNECT_PHASE_MAX: Duration = Duration::from_secs(10);

/// What a shard tells the collector.
pub(crate) enum Message {
    /// Every connection of the shard has tried to connect once: the shard is ready to start.
    Ready,
    Snapshot(Box<Snapshot>),
}

/// Per-connection state the sweeper reads: the socket and when its request started.
pub(crate) struct Slot {
    pub fd: Cell<i32>,
    pub started: Cell<Option<Instant>>,
    pub timed_out: Cell<bool>,
    /// A connection parked by a ramp waits here to be woken when its slot becomes active.
    pub waker: Cell<Option<Waker>>,
}

pub(crate) struct Shard {
    pub plan: Arc<Plan>,
    pub stats: RefCell<ShardStats>,
    pub read_buf: RefCell<Box<[u8]>>,
    /// Connections start new requests only while this is true.
    pub running: Cell<bool>,
    pub connect_gate: Semaphore,
    /// The next source address (`--source-ips`), rotating per connect.
    pub next_source: Cell<usize>,
    pub slots: Box<[Slot]>,
    /// Connections that have tried to connect once (the connect phase ends at all of them).
    pub attempted: Cell<u64>,
    /// Holds connections back until the shard starts; one permit per connection then.
    pub go: Semaphore,
    /// Connections with a slot below this may run; the others are parked (closed-model ramps).
    pub active: Cell<u64>,
    /// The open model's arrival schedule (seconds after `start`).
    pub arrivals: Option<RefCell<Arrivals>>,
    /// The run's start, known once the connect phase is over.
    pub start: Cell<Option<Instant>>,
    /// Which of the plan's requests comes next.
    pub picker: RefCell<Picker>,
    /// Which flow a connection starts next.
    pub flow_picker: RefCell<Picker>,
    /// Sequence number and random state of templated requests.
    pub values: RefCell<Values>,
    index: u64,
    shards: u64,
    seq: Cell<u64>,
}

impl Shard {
    /// The values for the next templated request: `seq` is unique over the run's shards.
    pub fn template_values(&self) -> std::cell::RefMut<'_, Values> {
        let n = self.seq.get();
        self.seq.set(n + 1);
        let mut v = self.values.borrow_mut();
        v.seq = n * self.shards + self.index;
        let rows = v.data.as_ref().map(|d| (d.rows.len() as u64, d.random));
        if let Some((rows, random)) = rows {
            // In turn over the whole run (shards interleaved), or at random.
            v.row = (if random { v.rng.next() } else { v.seq } % rows) as usize;
        }
        v
    }

    /// Sets how many connections may run, waking the ones a ramp-up admits.
    fn set_active(&self, n: u64) {
        let old = self.active.replace(n);
        for slot in self.slots.iter().take(n as usize).skip(old as usize) {
            if let Some(w) = slot.waker.take() {
                w.wake();
            }
        }
    }
}

/// What a shard thread needs; all of it `Send`.
pub(crate) struct ShardConfig {
    pub index: usize,
    pub plan: Arc<Plan>,
    pub tx: mpsc::Sender<(usize, Message)>,
    /// The run's common start, sent by the collector once every shard is ready.
    pub start_rx: mpsc::Receiver<Instant>,
    pub stop: Arc<AtomicBool>,
}

pub(crate) async fn run(cfg: ShardConfig) {
    let conns = cfg.plan.shard_conns(cfg.index) as usize;
    let shard = Rc::new(Shard {
        plan: cfg.plan.clone(),
        stats: RefCell::new(ShardStats::with_names(if cfg.plan.requests.len() > 1 {
            cfg.plan.requests.len()
        } else {
            0
        })),
        picker: RefCell::new(Picker::new(cfg.plan.requests.iter().map(|r| r.weight))),
        flow_picker: RefCell::new(Picker::new(cfg.plan.flows.iter().map(|f| f.weight))),
        values: RefCell::new(Values { seq: 0, rng: Rng::new(seed(cfg.index)), data: cfg.plan.data.clone(), row: 0 }),
        index: cfg.index as u64,
        shards: cfg.plan.shard_cpus.len() as u64,
        seq: Cell::new(0),
        read_buf: RefCell::new(vec![0u8; READ_BUF].into_boxed_slice()),
        running: Cell::new(true),
        connect_gate: Semaphore::new(CONNECTS_IN_PROGRESS),
        // Shards start at different addresses so small pools still spread over all of them.
        next_source: Cell::new(cfg.index),
        slots: (0..conns)
            .map(|_| Slot {
                fd: Cell::new(-1),
                started: Cell::new(None),
                timed_out: Cell::new(false),
                waker: Cell::new(None),
            })
            .collect(),
        attempted: Cell::new(0),
        go: Semaphore::new(0),
        active: Cell::new(0),
        arrivals: match &cfg.plan.model {
            Model::Open(p) => Some(RefCell::new(Arrivals::new(p.clone(), cfg.plan.shard_share(cfg.index)))),
            Model::Closed(_) => None,
        },
        start: Cell::new(None),
    });
    let shards = cfg.plan.shard_cpus.len();
    // The closed model's ramps set how many of the shard's connections run.
    let ramp = match &cfg.plan.model {
        Model::Closed(p) if !p.is_constant() => Some(p.clone()),
        _ => None,
    };
    let active_at = |t: f64| match &ramp {
        Some(p) => split(p.at(t).round() as u64, shards, cfg.index).min(conns as u64),
        None => conns as u64,
    };
    shard.active.set(active_at(0.0));
    let tasks: Vec<_> = (0..conns).map(|i| glommio::spawn_local(crate::conn::run(shard.clone(), i))).collect();
    let sweeper = glommio::spawn_local(sweep(shard.clone()));

    // Connect phase: all connections open before the clock starts, so a run at 10,000
    // connections measures load, not the target's accept queue.
    let phase_end = Instant::now() + CONNECT_PHASE_MAX;
    while shard.attempted.get() < shard.active.get() && Instant::now() < phase_end && !cfg.stop.load(Ordering::Relaxed)
    {
        glommio::timer::sleep(Duration::from_millis(1)).await;
    }
    let _ = cfg.tx.send((cfg.index, Message::Ready));
    let start = loop {
        match cfg.start_rx.try_recv() {
            Ok(start) => break start,
            Err(mpsc::TryRecvError::Empty) => glommio::timer::sleep(Duration::from_millis(1)).await,
            // The collector is gone: nobody wants the results.
            Err(mpsc::TryRecvError::Disconnected) => return,
        }
    };
    shard.start.set(Some(start));
    // One permit per connection, including those a ramp admits later.
    shard.go.signal(conns as u64);

    let plan = &cfg.plan;
    let end = start + plan.duration;
    let mut seq = 1u64;
    let mut report_at = start + plan.interval;
    let report = |shard: &Shard, seq: &mut u64, report_at: &mut Instant, now: Instant| {
        while now >= *report_at {
            let snap = shard.stats.borrow_mut().take(cfg.index, *seq, false);
            let _ = cfg.tx.send((cfg.index, Message::Snapshot(Box::new(snap))));
            *seq += 1;
            *report_at += plan.interval;
        }
    };

    // Run until the end or an interrupt.
    let interrupted = loop {
        let now = Instant::now();
        report(&shard, &mut seq, &mut report_at, now);
        if cfg.stop.load(Ordering::Relaxed) {
            break true;
        }
        if now >= end {
            break false;
        }
        if ramp.is_some() {
            shard.set_active(active_at((now - start).as_secs_f64()));
        }
        let wake = report_at.min(end).min(now + engine_runtime::tick(CONTROL_TICK));
        glommio::timer::sleep(wake.saturating_duration_since(now)).await;
    };

    // Drain: no new requests; in-flight ones may finish for a short while.
    shard.running.set(false);
    let grace = if interrupted { DRAIN_INTERRUPTED } else { DRAIN_MAX.min(plan.timeout) };
    let drain_end = Instant::now() + grace;
    loop {
        let now = Instant::now();
        report(&shard, &mut seq, &mut report_at, now);
        if shard.stats.borrow().in_flight == 0 || now >= drain_end {
            break;
        }
        if !interrupted && cfg.stop.load(Ordering::Relaxed) {
            break;
        }
        glommio::timer::sleep(Duration::from_millis(2)).await;
    }
    // Dropping a glommio task cancels it; each connection's guard settles its gauges.
    drop(tasks);
    drop(sweeper);
    // A cancelled task's future is dropped when the executor next runs it: let that happen
    // so the guards settle the gauges and count the abandoned requests before the last
    // snapshot.
    for _ in 0..50 {
        let settled = {
            let st = shard.stats.borrow();
            st.open == 0 && st.in_flight == 0
        };
        if settled {
            break;
        }
        glommio::timer::sleep(Duration::from_millis(1)).await;
    }
    let last = shard.stats.borrow_mut().take(cfg.index, seq, true);
    let _ = cfg.tx.send((cfg.index, Message::Snapshot(Box::new(last))));
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
    let timeout = shard.plan.timeout;
    let tick = (timeout / 10).clamp(Duration::from_millis(1), Duration::from_millis(100));
    loop {
        glommio::timer::sleep(tick).await;
        let now = Instant::now();
        for slot in shard.slots.iter() {
            let late = slot.started.get().is_some_and(|s| now.duration_since(s) >= timeout);
            if late && !slot.timed_out.get() && slot.fd.get() >= 0 {
                slot.timed_out.set(true);
                // SAFETY: the fd belongs to a live connection of this shard (its guard resets
                // the slot before the stream is dropped); shutdown does not close it.
                unsafe { libc::shutdown(slot.fd.get(), libc::SHUT_RDWR) };
            }
        }
    }
}
