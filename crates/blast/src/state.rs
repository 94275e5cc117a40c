//! What one shard owns and its connections share: the plan, the statistics, the one read
//! buffer, the schedule and pickers, and a slot per connection. Nothing here is shared with
//! another shard; connections reach it through these methods only.

use std::cell::{Cell, RefCell, RefMut};
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

use crate::template::{Rng, Values};
use engine_results::stats::ShardStats;
use futures_lite::future::poll_fn;
use glommio::sync::{Permit, Semaphore};

use crate::plan::{Model, Plan};
use crate::schedule::{Arrivals, Picker};

/// One read buffer per shard, shared by its connections in turn: large enough for a whole
/// response head ([`engine_http::MAX_HEAD`]) and for bulk body reads.
const READ_BUF: usize = 64 * 1024;
/// Handshakes in progress at once per shard (see `conn::connect`).
const CONNECTS_IN_PROGRESS: u64 = 256;

/// Where a connection's attempt to open is, if it is making one: what it is counted as when
/// the run ends first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Opening {
    Tcp,
    Tls,
}

/// Per-connection state the sweeper reads: the socket and when its request started.
pub(crate) struct Slot {
    fd: Cell<i32>,
    opening: Cell<Option<Opening>>,
    started: Cell<Option<Instant>>,
    timed_out: Cell<bool>,
    /// A connection parked by a ramp waits here to be woken when its slot becomes active.
    waker: Cell<Option<Waker>>,
}

impl Slot {
    fn new() -> Self {
        Slot {
            fd: Cell::new(-1),
            opening: Cell::new(None),
            started: Cell::new(None),
            timed_out: Cell::new(false),
            waker: Cell::new(None),
        }
    }

    /// Where the connection's attempt to open is (`None`: it is not making one).
    pub fn opening(&self) -> Option<Opening> {
        self.opening.get()
    }

    /// The connection's socket (`None` while it has none), for the sweeper's shutdown.
    pub fn set_fd(&self, fd: Option<i32>) {
        self.fd.set(fd.unwrap_or(-1));
    }

    /// A request started now (`Some`), or the one in flight ended (`None`).
    pub fn set_started(&self, started: Option<Instant>) {
        self.started.set(started);
        self.timed_out.set(false);
    }

    /// The sweeper shut this request's socket down: whatever its read returns, it timed out.
    pub fn timed_out(&self) -> bool {
        self.timed_out.get()
    }

    /// Marks the request timed out if it has run `timeout` by `now`; returns the socket to
    /// shut down when it has just been marked.
    fn sweep(&self, now: Instant, timeout: Duration) -> Option<i32> {
        let late = self.started.get().is_some_and(|s| now.duration_since(s) >= timeout);
        if late && !self.timed_out.get() && self.fd.get() >= 0 {
            self.timed_out.set(true);
            return Some(self.fd.get());
        }
        None
    }
}

/// A due time taken from the schedule whose request has not started: the drain waits for it.
pub(crate) struct DueHeld<'a>(&'a Shard);

impl Drop for DueHeld<'_> {
    fn drop(&mut self) {
        self.0.due_held.set(self.0.due_held.get() - 1);
    }
}

pub(crate) struct Shard {
    plan: Arc<Plan>,
    stats: RefCell<ShardStats>,
    read_buf: RefCell<Box<[u8]>>,
    /// Connections start new requests only while this is true.
    running: Cell<bool>,
    /// The run's time is up, and the open model's requests due before its end are still
    /// being sent (see [`Shard::may_send`]).
    finishing: Cell<bool>,
    /// Due times taken from the schedule whose request has not started yet.
    due_held: Cell<u64>,
    connect_gate: Semaphore,
    /// The next source address (`--source-ips`), rotating per connect.
    next_source: Cell<usize>,
    slots: Box<[Slot]>,
    /// Connections that have tried to connect once (the connect phase ends at all of them).
    attempted: Cell<u64>,
    /// When a connection last finished an attempt to open, well or not.
    last_attempt: Cell<Option<Instant>>,
    /// Connections opening now (a TCP connect or a TLS handshake in progress).
    opening: Cell<u64>,
    /// Holds connections back until the shard starts; one permit per connection then.
    go: Semaphore,
    /// Connections with a slot below this may run; the others are parked (closed-model ramps).
    active: Cell<u64>,
    /// The open model's arrival schedule (seconds after `start`).
    arrivals: Option<RefCell<Arrivals>>,
    /// The run's start, known once the connect phase is over.
    start: Cell<Option<Instant>>,
    /// Which of the plan's requests comes next.
    picker: RefCell<Picker>,
    /// Which flow a connection starts next.
    flow_picker: RefCell<Picker>,
    /// Sequence number and random state of templated requests.
    values: RefCell<Values>,
    index: u64,
    shards: u64,
    seq: Cell<u64>,
    /// https:// targets: this shard's TLS client, with its own session cache.
    tls: Option<engine_tls::Client>,
}

impl Shard {
    pub fn new(plan: Arc<Plan>, index: usize, seed: u64) -> Rc<Shard> {
        let conns = plan.shard_conns(index) as usize;
        let named = if plan.requests.len() > 1 { plan.requests.len() } else { 0 };
        Rc::new(Shard {
            stats: RefCell::new(ShardStats::with_names(named)),
            picker: RefCell::new(Picker::new(plan.requests.iter().map(|r| r.weight))),
            flow_picker: RefCell::new(Picker::new(plan.flows.iter().map(|f| f.weight))),
            values: RefCell::new(Values { seq: 0, rng: Rng::new(seed), data: plan.data.clone(), row: 0 }),
            index: index as u64,
            shards: plan.shard_cpus.len() as u64,
            seq: Cell::new(0),
            tls: plan.tls.as_ref().map(|t| t.client.for_shard()),
            read_buf: RefCell::new(vec![0u8; READ_BUF].into_boxed_slice()),
            running: Cell::new(true),
            finishing: Cell::new(false),
            due_held: Cell::new(0),
            connect_gate: Semaphore::new(CONNECTS_IN_PROGRESS),
            // Shards start at different addresses so small pools still spread over all of them.
            next_source: Cell::new(index),
            slots: (0..conns).map(|_| Slot::new()).collect(),
            attempted: Cell::new(0),
            last_attempt: Cell::new(None),
            opening: Cell::new(0),
            go: Semaphore::new(0),
            active: Cell::new(0),
            arrivals: match &plan.model {
                Model::Open(p) => Some(RefCell::new(Arrivals::new(p.clone(), index, plan.shard_cpus.len()))),
                Model::Closed(_) => None,
            },
            start: Cell::new(None),
            plan,
        })
    }

    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    /// This shard's TLS client (https:// targets).
    pub fn tls(&self) -> Option<&engine_tls::Client> {
        self.tls.as_ref()
    }

    pub fn stats(&self) -> RefMut<'_, ShardStats> {
        self.stats.borrow_mut()
    }

    pub fn read_buf(&self) -> RefMut<'_, Box<[u8]>> {
        self.read_buf.borrow_mut()
    }

    pub fn slot(&self, i: usize) -> &Slot {
        &self.slots[i]
    }

    pub fn is_running(&self) -> bool {
        self.running.get()
    }

    /// No new requests from now on (the drain); but at the planned end (`finish_schedule`)
    /// the open model still sends the requests its schedule made due before the end: they
    /// are part of the run, and a connection that took one just before the end, or was busy
    /// when it fell due, would otherwise drop it.
    pub fn stop_running(&self, finish_schedule: bool) {
        self.running.set(false);
        self.finishing.set(finish_schedule && self.arrivals.is_some());
    }

    /// The backlog's time is up: requests due but not yet started stay unsent (the schedule
    /// reports them as a shortfall), so the ones already sent have time to finish.
    pub fn stop_finishing(&self) {
        self.finishing.set(false);
    }

    /// Whether a connection may take the next due time: while running, and while the open
    /// model finishes its schedule after the planned end.
    pub fn may_send(&self) -> bool {
        self.running.get() || self.finishing.get()
    }

    /// Every request the schedule made due has started (always, in the closed model).
    pub fn schedule_sent(&self) -> bool {
        self.due_held.get() == 0 && self.arrivals.as_ref().is_none_or(|a| a.borrow().done())
    }

    /// One of the handshakes the shard allows at once.
    pub async fn connect_permit(&self) -> Option<Permit<'_>> {
        self.connect_gate.acquire_permit(1).await.ok()
    }

    /// The next `--source-ips` index.
    pub fn next_source(&self) -> usize {
        let i = self.next_source.get();
        self.next_source.set(i.wrapping_add(1));
        i
    }

    /// A connection has tried to connect for the first time.
    pub fn attempted(&self) {
        self.attempted.set(self.attempted.get() + 1);
    }

    /// Connection `slot` is opening (`Some`: at which step), or done with it (`None`).
    pub fn set_opening(&self, slot: usize, step: Option<Opening>) {
        let was = self.slots[slot].opening.replace(step);
        match (was.is_some(), step.is_some()) {
            (false, true) => self.opening.set(self.opening.get() + 1),
            (true, false) => {
                self.opening.set(self.opening.get() - 1);
                self.last_attempt.set(Some(Instant::now()));
            }
            _ => {}
        }
    }

    /// Connections opening now.
    pub fn opening(&self) -> u64 {
        self.opening.get()
    }

    /// When a connection last finished an attempt to open (`None`: none has yet).
    pub fn last_attempt(&self) -> Option<Instant> {
        self.last_attempt.get()
    }

    /// Every connection admitted now has tried to connect once.
    pub fn all_attempted(&self) -> bool {
        self.attempted.get() >= self.active.get()
    }

    /// Waits for the shard's start (one permit per connection, released by [`Shard::begin`]).
    pub async fn wait_for_start(&self) {
        let _ = self.go.acquire(1).await;
    }

    /// The run starts now: waiting connections go.
    pub fn begin(&self, start: Instant) {
        self.start.set(Some(start));
        // One permit per connection, including those a ramp admits later.
        self.go.signal(self.slots.len() as u64);
    }

    /// Whether connection `slot` may run (a closed-model ramp admits connections in order).
    pub fn is_active(&self, slot: usize) -> bool {
        (slot as u64) < self.active.get()
    }

    /// Sets how many connections may run, waking the ones a ramp-up admits.
    pub fn set_active(&self, n: u64) {
        let old = self.active.replace(n);
        for slot in self.slots.iter().take(n as usize).skip(old as usize) {
            if let Some(w) = slot.waker.take() {
                w.wake();
            }
        }
    }

    /// Waits until `slot` is admitted by a ramp (or the task is cancelled at the end).
    pub async fn parked(&self, slot: usize) {
        poll_fn(|cx| {
            if self.is_active(slot) {
                Poll::Ready(())
            } else {
                self.slots[slot].waker.set(Some(cx.waker().clone()));
                Poll::Pending
            }
        })
        .await
    }

    /// Open model: when the shard's next request is due, held until it starts (the
    /// [`DueHeld`] dropped); `None` when the schedule is done. Closed model: `Some(None)`,
    /// always (no schedule).
    pub fn next_due(&self) -> Option<Option<(Instant, DueHeld<'_>)>> {
        match &self.arrivals {
            None => Some(None),
            Some(a) => {
                let offset = a.borrow_mut().next()?;
                self.due_held.set(self.due_held.get() + 1);
                let due = self.start.get().unwrap_or_else(Instant::now) + Duration::from_secs_f64(offset);
                Some(Some((due, DueHeld(self))))
            }
        }
    }

    /// Which of the plan's requests to send next (weighted).
    pub fn pick_request(&self) -> usize {
        self.picker.borrow_mut().next()
    }

    /// Which flow a user starts next (weighted).
    pub fn pick_flow(&self) -> usize {
        self.flow_picker.borrow_mut().next()
    }

    /// A uniform draw in [0, 1) from the shard's generator (step probabilities, think times).
    pub fn random(&self) -> f64 {
        (self.values.borrow_mut().rng.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// The values for the next templated request: `seq` is unique over the run's shards.
    pub fn template_values(&self) -> RefMut<'_, Values> {
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

    /// Times out every request past the timeout: shuts its socket down so its pending read or
    /// write ends at once.
    pub fn sweep(&self, now: Instant) {
        for slot in self.slots.iter() {
            if let Some(fd) = slot.sweep(now, self.plan.timeout) {
                engine_runtime::fd::shutdown(fd, engine_runtime::fd::How::Both);
            }
        }
    }
}
