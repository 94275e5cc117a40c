//! What one shard owns and its connections share: the plan, the statistics, the one read
//! buffer, the schedule and pickers, and a slot per connection. Nothing here is shared with
//! another shard; connections reach it through these methods only.

use std::cell::{Cell, RefCell, RefMut};
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

use crate::template::{Rng, Values};
use engine_results::stats::ShardStats;
use futures_lite::future::poll_fn;
use glommio::sync::{Permit, Semaphore};

use crate::h2req::H2Request;
use crate::link::Link;
use crate::plan::{split, Model, Plan};
use crate::schedule::{Arrivals, Picker};
use crate::steer::Course;

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
    /// The plan's part (scenario) the connection serves (beside `fd`, in its padding).
    part: u32,
    fd: Cell<i32>,
    opening: Cell<Option<Opening>>,
    started: Cell<Option<Instant>>,
    timed_out: Cell<bool>,
    /// A connection parked by a ramp (or pausing) waits here to be woken when its slot becomes
    /// active (or the run stops).
    waker: Cell<Option<Waker>>,
}

impl Slot {
    fn new(part: usize) -> Self {
        Slot {
            part: part as u32,
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
        if !late || self.timed_out.get() {
            return None;
        }
        if self.fd.get() >= 0 {
            self.timed_out.set(true);
            return Some(self.fd.get());
        }
        // An HTTP/2 stream has no socket of its own: its task, woken, sees the mark and
        // cancels the stream (RST_STREAM), leaving the connection to the other streams.
        if let Some(w) = self.waker.take() {
            self.timed_out.set(true);
            w.wake();
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

/// This shard's share of one part (scenario) of the plan: its connections (slots
/// `first..first + conns × streams`), how many of them a ramp admits, its arrivals and its
/// pickers.
struct ShardPart {
    first: usize,
    conns: usize,
    /// Its connections below this may run; the others are parked (closed-model ramps, and
    /// before its start and after its end).
    active: Cell<u64>,
    /// The open model's arrival schedule (seconds after the part's start).
    arrivals: Option<RefCell<Arrivals>>,
    /// The level the control API set (closed model: connections), instead of the plan's.
    steered: RefCell<Option<Course>>,
    /// Which of its requests comes next (an index among its own).
    picker: RefCell<Picker>,
    /// Which of its flows a user starts next (an index among its own).
    flow_picker: RefCell<Picker>,
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
    /// Counts the control API's changes this shard has applied.
    steered_seq: Cell<u64>,
    /// Users that owe their flow's teardown steps (the drain waits for them).
    owed: Cell<u64>,
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
    /// Its share of each part of the plan.
    parts: Box<[ShardPart]>,
    /// The run's start, known once the connect phase is over.
    start: Cell<Option<Instant>>,
    /// Sequence number and random state of templated requests.
    values: RefCell<Values>,
    index: u64,
    shards: u64,
    seq: Cell<u64>,
    /// https:// targets: this shard's TLS client, with its own session cache.
    tls: Option<engine_tls::Client>,
    /// Slots per connection: `--streams` in an HTTP/2 run, else 1.
    streams: usize,
    /// HTTP/2: one per connection, shared by its `streams` slots.
    links: Box<[Link]>,
}

impl Shard {
    pub fn new(plan: Arc<Plan>, index: usize, seed: u64) -> Rc<Shard> {
        let shards = plan.shard_cpus.len();
        let named = if plan.named() { plan.requests.len() } else { 0 };
        let scenarios = if plan.scenarios() { plan.parts.len() } else { 0 };
        let streams = plan.streams();
        let mut slots = Vec::new();
        let mut parts = Vec::with_capacity(plan.parts.len());
        for (k, p) in plan.parts.iter().enumerate() {
            let conns = p.shard_conns(shards, index) as usize;
            // The part's arrivals go to the shards that have its connections (the first ones,
            // as the split gives the remainder to them).
            let with_conns = shards.min(p.conns as usize);
            let arrivals = match &p.model {
                Model::Open(profile) if conns > 0 => {
                    Some(RefCell::new(Arrivals::new(profile.clone(), index, with_conns)))
                }
                _ => None,
            };
            parts.push(ShardPart {
                first: slots.len(),
                conns,
                active: Cell::new(0),
                arrivals,
                steered: RefCell::new(None),
                picker: RefCell::new(Picker::new(plan.requests[p.requests.clone()].iter().map(|r| r.weight))),
                flow_picker: RefCell::new(Picker::new(plan.flows[p.flows.clone()].iter().map(|f| f.weight))),
            });
            slots.extend((0..conns * streams).map(|_| Slot::new(k)));
        }
        let links =
            if plan.http2.is_some() { (0..slots.len() / streams).map(|_| Link::new()).collect() } else { Vec::new() };
        Rc::new(Shard {
            stats: RefCell::new(ShardStats::with_names(named, scenarios)),
            values: RefCell::new(Values { seq: 0, rng: Rng::new(seed), data: plan.data.clone(), row: 0 }),
            index: index as u64,
            shards: shards as u64,
            seq: Cell::new(0),
            tls: plan.tls.as_ref().map(|t| t.client.for_shard()),
            read_buf: RefCell::new(vec![0u8; READ_BUF].into_boxed_slice()),
            running: Cell::new(true),
            steered_seq: Cell::new(0),
            finishing: Cell::new(false),
            due_held: Cell::new(0),
            owed: Cell::new(0),
            connect_gate: Semaphore::new(CONNECTS_IN_PROGRESS),
            // Shards start at different addresses so small pools still spread over all of them.
            next_source: Cell::new(index),
            slots: slots.into_boxed_slice(),
            attempted: Cell::new(0),
            last_attempt: Cell::new(None),
            opening: Cell::new(0),
            go: Semaphore::new(0),
            parts: parts.into_boxed_slice(),
            start: Cell::new(None),
            streams,
            links: links.into_boxed_slice(),
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
        // Pauses (think times, Retry-After) end at once, so a user leaves (and walks its
        // teardown) within the drain.
        for slot in self.slots.iter() {
            if let Some(w) = slot.waker.take() {
                w.wake();
            }
        }
        self.finishing.set(finish_schedule && self.parts.iter().any(|p| p.arrivals.is_some()));
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

    /// Whether a connection of `part` may start its next request: a closed part's only while
    /// running (the open parts' backlog after the end is theirs alone).
    pub fn may_send_in(&self, part: usize) -> bool {
        self.running.get() || (self.finishing.get() && self.parts[part].arrivals.is_some())
    }

    /// A user now owes its teardown steps (`true`), or has run them or cannot (`false`).
    pub fn owe_teardown(&self, owes: bool) {
        let n = self.owed.get();
        self.owed.set(if owes { n + 1 } else { n.saturating_sub(1) });
    }

    /// Users that still owe their teardown steps.
    pub fn teardowns_owed(&self) -> u64 {
        self.owed.get()
    }

    /// Connection `slot` waits `d` (a think time, a Retry-After), or less if the run stops
    /// meanwhile ([`Shard::stop_running`] wakes it). Only a timer is held across the wait:
    /// this is in every connection's task.
    pub async fn pause(&self, slot: usize, d: Duration) {
        let mut timer = glommio::timer::Timer::new(d);
        poll_fn(|cx| {
            if !self.running.get() || Pin::new(&mut timer).poll(cx).is_ready() {
                return Poll::Ready(());
            }
            self.slots[slot].waker.set(Some(cx.waker().clone()));
            Poll::Pending
        })
        .await
    }

    /// Every request the schedule made due has started (always, in the closed model).
    pub fn schedule_sent(&self) -> bool {
        self.due_held.get() == 0 && self.parts.iter().all(|p| p.arrivals.as_ref().is_none_or(|a| a.borrow().done()))
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
        self.attempted.get() >= self.parts.iter().map(|p| p.active.get()).sum::<u64>() * self.streams as u64
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
        let p = &self.parts[self.slots[slot].part as usize];
        (((slot - p.first) / self.streams) as u64) < p.active.get()
    }

    /// The plan's part (scenario) connection `slot` serves.
    pub fn part_of(&self, slot: usize) -> usize {
        self.slots[slot].part as usize
    }

    /// Admits each part's connections for the run's time `t` (seconds): all of an open
    /// part's (its schedule paces them), and of a closed part's its level then (ramps, its
    /// start and its end), split over the shards as its connections are.
    pub fn admit(&self, t: f64) {
        for (k, p) in self.plan.parts.iter().enumerate() {
            let conns = self.parts[k].conns as u64;
            let steered = self.parts[k].steered.borrow().as_ref().map(|c| c.at(t - p.start.as_secs_f64()));
            let n = match p.model {
                Model::Closed(_) => {
                    let level = steered.unwrap_or_else(|| p.level_at(t));
                    split(level.round() as u64, self.shards as usize, self.index as usize)
                }
                Model::Open(_) => conns,
            };
            self.set_active(k, n.min(conns));
        }
    }

    /// The run follows `course` from now on (the control API; one part only): the open
    /// model's schedule, or the closed model's connections at the next [`Shard::admit`].
    pub fn steer(&self, course: Course) {
        let p = &self.parts[0];
        if let Some(a) = &p.arrivals {
            a.borrow_mut().resegment(course.segments().to_vec());
        }
        *p.steered.borrow_mut() = Some(course);
        self.steered_seq.set(self.steered_seq.get() + 1);
        for slot in &self.slots[p.first..p.first + p.conns * self.streams] {
            if let Some(w) = slot.waker.take() {
                w.wake();
            }
        }
    }

    /// Open model, a steered run: connection `slot`'s schedule ran out, so it waits for the
    /// next change (a resume, a higher rate). False when none can come: the run was not
    /// steered, or its time is up.
    pub async fn await_change(&self, slot: usize) -> bool {
        if self.parts[self.part_of(slot)].steered.borrow().is_none() || !self.running.get() {
            return false;
        }
        let seen = self.steered_seq.get();
        poll_fn(|cx| {
            if self.steered_seq.get() != seen || !self.running.get() {
                Poll::Ready(self.running.get())
            } else {
                self.slots[slot].waker.set(Some(cx.waker().clone()));
                Poll::Pending
            }
        })
        .await
    }

    /// Sets how many of a part's connections may run, waking the ones a ramp-up admits.
    pub fn set_active(&self, part: usize, n: u64) {
        let p = &self.parts[part];
        let old = p.active.replace(n);
        let (n, old) = (n as usize * self.streams, old as usize * self.streams);
        for slot in self.slots[p.first..p.first + p.conns * self.streams].iter().take(n).skip(old) {
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

    /// Open model: when the part's next request is due on this shard, held until it starts
    /// (the [`DueHeld`] dropped); `None` when its schedule is done. Closed model:
    /// `Some(None)`, always (no schedule).
    pub fn next_due(&self, part: usize) -> Option<Option<(Instant, DueHeld<'_>)>> {
        let p = &self.parts[part];
        match &p.arrivals {
            None => Some(None),
            Some(a) => {
                let offset = a.borrow_mut().next()?;
                self.due_held.set(self.due_held.get() + 1);
                let start = self.plan.parts[part].start;
                let due = self.start.get().unwrap_or_else(Instant::now) + start + Duration::from_secs_f64(offset);
                Some(Some((due, DueHeld(self))))
            }
        }
    }

    /// Which of the part's requests to send next (weighted): an index into the plan's.
    pub fn pick_request(&self, part: usize) -> usize {
        self.plan.parts[part].requests.start + self.parts[part].picker.borrow_mut().next()
    }

    /// Which of the part's flows a user starts next (weighted): an index into the plan's.
    pub fn pick_flow(&self, part: usize) -> usize {
        self.plan.parts[part].flows.start + self.parts[part].flow_picker.borrow_mut().next()
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

    /// HTTP/2: the connection slot `slot` shares with the other streams of its connection.
    pub fn link(&self, slot: usize) -> &Link {
        &self.links[slot / self.streams]
    }

    /// HTTP/2: the number of slot `slot`'s link.
    pub fn link_index(&self, slot: usize) -> usize {
        slot / self.streams
    }

    /// HTTP/2: link `i` (a connection's driver knows its link by number).
    pub fn link_at(&self, i: usize) -> &Link {
        &self.links[i]
    }

    /// HTTP/2: planned request `i` ready to send (`None`: it is templated).
    pub fn h2_request(&self, i: usize) -> Option<&H2Request> {
        self.plan.requests.get(i).and_then(|r| r.h2.as_ref())
    }

    /// HTTP/2: the run is over; every connection's driver ends.
    pub fn close_links(&self) {
        for l in self.links.iter() {
            l.cancel();
        }
    }

    /// An HTTP/2 stream of `slot` waits on the wire: the sweeper wakes it when it times out.
    pub fn watch(&self, slot: usize, waker: &Waker) {
        let s = &self.slots[slot];
        match s.waker.take() {
            Some(w) if w.will_wake(waker) => s.waker.set(Some(w)),
            _ => s.waker.set(Some(waker.clone())),
        }
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
