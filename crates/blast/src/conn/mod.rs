//! One connection's loop: wait for its turn (the open model's schedule, a ramp's admission),
//! connect with back-off, write and read one request ([`exchange`]), record the outcome,
//! repeat. What goes over the wire is the transport's ([`crate::transport`]); which request
//! goes next is the flow cursor's ([`flow`]). In an HTTP/2 run a slot is one stream of a
//! shared connection: opening it, and sending on it, are [`http2`]'s.

mod exchange;
mod flow;
mod http2;

use std::io;
use std::rc::Rc;
use std::time::{Duration, Instant};

use engine_http::ResponseFramer;
use engine_results::stats::{micros, ErrorKind};

use crate::check::{Check, Seen};
use crate::state::{Opening, Shard};
use crate::transport::{self, OpenError, Opened, Stream};
use exchange::{exchange, Outgoing, Step};
use flow::Cursor;

/// First and longest pause between failed connects: a dead target must not turn every
/// connection into a busy loop, and a target that comes back must be noticed quickly.
const BACKOFF_MIN: Duration = Duration::from_millis(10);
const BACKOFF_MAX: Duration = Duration::from_secs(1);
/// A request due sooner than this is sent at once: a timer costs more than the error.
const SCHEDULE_SLACK: Duration = Duration::from_micros(50);
/// Arrival-rate flows: an iteration no user could start within this of when it was due is
/// dropped (every user was busy), as k6 drops one when no VU is free.
const START_SLACK: Duration = Duration::from_millis(10);

/// Keeps the shard's gauges right however the task ends, cancellation included.
struct Guard {
    shard: Rc<Shard>,
    slot: usize,
    open: bool,
    in_flight: bool,
}

impl Guard {
    fn set_open(&mut self, stream: Option<&Stream>) {
        let mut st = self.shard.stats();
        match (stream, self.open) {
            (Some(s), false) => {
                st.opened();
                self.shard.slot(self.slot).set_fd(Some(s.fd()));
            }
            (None, true) => {
                st.closed();
                self.shard.slot(self.slot).set_fd(None);
            }
            _ => {}
        }
        self.open = stream.is_some();
    }

    fn set_in_flight(&mut self, started: Option<Instant>) {
        self.shard.slot(self.slot).set_started(started);
        let mut st = self.shard.stats();
        if started.is_some() {
            st.in_flight += 1;
        } else {
            st.in_flight -= 1;
        }
        self.in_flight = started.is_some();
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        let part = self.shard.part_of(self.slot);
        if self.in_flight {
            self.set_in_flight(None);
            self.shard.stats().abandoned_in(part);
        }
        // The run ended (its drain's grace included) while this connection was still
        // opening: a connect or handshake that never completed is an error of its kind, or a
        // server that stalls every handshake would read as a run without errors.
        match self.shard.slot(self.slot).opening() {
            Some(Opening::Tcp) => self.shard.stats().error_in(part, ErrorKind::Connect),
            Some(Opening::Tls) => self.shard.stats().tls_error_in(part, engine_tls::Reason::Handshake as usize),
            None => {}
        }
        self.shard.set_opening(self.slot, None);
        self.set_open(None);
    }
}

/// gRPC's INTERNAL status code.
const GRPC_INTERNAL: u32 = 13;

/// A connection's own state between requests.
struct Conn {
    guard: Guard,
    stream: Option<Stream>,
    framer: ResponseFramer,
    carry: Vec<u8>,
    cursor: Cursor,
    /// Templated requests are rendered into these, reused from request to request.
    rendered: Vec<u8>,
    scratch: Vec<u8>,
    failures: u32,
    /// HTTP/2: the connection this slot sends on (its link's).
    h2: Option<Rc<crate::link::H2Conn>>,
    /// The slot has tried to connect once (the connect phase counts it).
    attempted: bool,
}

impl Conn {
    fn new(shard: &Rc<Shard>, slot: usize) -> Self {
        Conn {
            guard: Guard { shard: shard.clone(), slot, open: false, in_flight: false },
            stream: None,
            framer: ResponseFramer::new(),
            carry: Vec::new(),
            cursor: Cursor::new(shard, shard.part_of(slot)),
            rendered: Vec::new(),
            scratch: Vec::new(),
            failures: 0,
            h2: None,
            attempted: false,
        }
    }

    /// The slot's first attempt to connect is over (or, HTTP/2, it found its connection
    /// being opened by another slot): the connect phase counts it once.
    fn attempted(&mut self, shard: &Shard) {
        if !std::mem::replace(&mut self.attempted, true) {
            shard.attempted();
        }
    }

    /// Closes the connection (after a response that ends it, a failure, a ramp's parking).
    /// An HTTP/2 slot lets go of its handle only: the connection is its streams'.
    fn close(&mut self) {
        self.h2 = None;
        if self.stream.take().is_some() {
            self.guard.set_open(None);
            self.carry = Vec::new();
            if self.guard.shard.plan().http2.is_some() {
                self.guard.shard.link(self.guard.slot).close(None);
            }
        }
    }

    /// Opens the connection if it has none; on failure counts the error and backs off.
    async fn ensure_open(&mut self, shard: &Shard) -> bool {
        if self.stream.is_some() || self.h2.is_some() {
            return true;
        }
        if shard.plan().http2.is_some() {
            // Boxed: an HTTP/2 handshake's state is kilobytes, and inline it would size every
            // connection's task (an HTTP/1.1 run's too) for its whole life.
            return Box::pin(self.ensure_link(true)).await;
        }
        // The pause is decided inside the match and slept after it: a sleep inside would keep
        // the connect's result (160 bytes) alive across it, in every connection's task.
        let pause = match connect(shard, self.guard.slot).await {
            Ok(opened) => {
                self.failures = 0;
                set_up(shard, &opened);
                self.guard.set_open(Some(&opened.stream));
                self.stream = Some(opened.stream);
                return true;
            }
            Err(e) => self.open_failed(shard, e, true),
        };
        glommio::timer::sleep(pause).await;
        false
    }

    /// Counts a failed open (`count`) and returns the back-off before the next.
    fn open_failed(&mut self, shard: &Shard, e: OpenError, count: bool) -> Duration {
        let part = shard.part_of(self.guard.slot);
        match e {
            _ if !count => {}
            OpenError::Connect => shard.stats().error_in(part, ErrorKind::Connect),
            OpenError::Tls(e) => shard.stats().tls_error_in(part, tls_reason(&e)),
        }
        self.failures += 1;
        backoff(self.failures)
    }
}

/// The pause before the next open after `failures` in a row: 20 ms doubling to 1 s.
fn backoff(failures: u32) -> Duration {
    BACKOFF_MIN.saturating_mul(1 << failures.min(7)).min(BACKOFF_MAX)
}

/// A connection opened: its connect and handshake times.
fn set_up(shard: &Shard, opened: &Opened) {
    let mut st = shard.stats();
    let setup = st.setup();
    setup.connect.saturating_record(micros(opened.connect));
    if let Some((took, resumed)) = opened.handshake {
        setup.handshake(took, resumed);
    }
}

/// Drives connection `slot` of the shard until the shard stops.
pub(crate) async fn run(shard: Rc<Shard>, slot: usize) {
    let mut c = Conn::new(&shard, slot);
    let part = shard.part_of(slot);
    // Arrival-rate flows: each due time starts a user walking a whole flow.
    let flows = shard.plan().parts[part].arrival_flows();
    // Until the shard's start a connection only connects (see `shard::run`): the connect
    // phase ends when every admitted connection has tried once, however it went.
    let mut first = true;
    loop {
        // A user leaving (the run's end, a ramp's parking) walks its teardown steps first.
        let tearing = c.cursor.tearing();
        if !tearing && (!shard.may_send_in(part) || !shard.is_active(slot)) {
            if c.cursor.leave(&shard) {
                continue;
            }
            if !shard.may_send_in(part) {
                break;
            }
            // Parked by a ramp: close (after the last response) and wait to be admitted. An
            // HTTP/2 connection closes once its last stream's slot lets go (its streams are
            // parked together).
            if let Some(h) = c.h2.as_deref() {
                shard.link(slot).close(Some(h.generation));
            }
            c.close();
            shard.parked(slot).await;
            continue;
        }
        let opened = c.ensure_open(&shard).await;
        if std::mem::take(&mut first) {
            c.attempted(&shard);
            shard.wait_for_start().await;
            // Closed-model users start spread over one iteration's think time, or they would
            // walk their flows in step (the rate swinging with the steps) for the whole run.
            let spread = stagger(shard.plan(), part);
            if !flows && !spread.is_zero() {
                glommio::timer::sleep(spread.mul_f64(shard.random())).await;
            }
            continue;
        }
        if !opened {
            // A teardown needs the user's connection; without one it is dropped.
            c.cursor.give_up(&shard);
            continue;
        }
        if tearing {
            let think = one_request(&shard, &mut c, None).await.1;
            shard.pause(slot, think).await;
            continue;
        }
        // Open model: the next due time of the shard's schedule, waited for if it is ahead.
        // (A block, not a `drop`: a moved-from local still takes room in the task's state.)
        let due = {
            let held = match shard.next_due(part) {
                Some(held) => held,
                None if shard.await_change(slot).await => continue,
                None => break,
            };
            let due = held.as_ref().map(|(due, _)| *due);
            if let Some(due) = due {
                if flows && Instant::now() > due + START_SLACK {
                    shard.stats().iterations().dropped += 1;
                    continue;
                }
                let ahead = due.saturating_duration_since(Instant::now());
                if ahead > SCHEDULE_SLACK {
                    glommio::timer::sleep(ahead).await;
                }
            }
            // From here the request counts as sent (`one_request`), or as failed.
            due
        };
        let think = match due {
            // An arrival-rate iteration, walked here rather than in an async fn of its own: a
            // nested future would add its state to every connection's task for its whole life.
            Some(due) if flows => {
                // Each due time is a new user: its `once` steps run, it has no captures.
                let user = User::enter(&shard);
                c.cursor.new_user(&shard);
                let mut intended = Some(due);
                let mut all_ok = true;
                let ended = loop {
                    if !c.ensure_open(&shard).await {
                        c.cursor.give_up(&shard);
                        break Some(false);
                    }
                    // The user's teardown (after its last step) does not decide the iteration.
                    let leaving = c.cursor.tearing();
                    let (ok, think) = one_request(&shard, &mut c, intended).await;
                    all_ok &= ok || leaving;
                    if c.cursor.at_start() {
                        break Some(all_ok);
                    }
                    intended = None;
                    if c.cursor.tearing() {
                        continue;
                    }
                    if shard.is_running() {
                        shard.pause(slot, think).await;
                    }
                    if !shard.is_running() {
                        // The run ended mid-flow: the iteration neither completed nor failed;
                        // the user leaves (its teardown runs in the drain).
                        c.cursor.leave(&shard);
                        break None;
                    }
                };
                if let Some(ok) = ended {
                    user.ended(ok, due);
                }
                // No think time: the next iteration has its own due time.
                Duration::ZERO
            }
            _ => one_request(&shard, &mut c, due).await.1,
        };
        if !think.is_zero() {
            shard.pause(slot, think).await;
        }
    }
}

/// One iteration's mean think time, of the part's flow that thinks longest (zero without
/// flows).
fn stagger(plan: &crate::plan::Plan, part: usize) -> Duration {
    let flows = &plan.flows[plan.parts[part].flows.clone()];
    let walked =
        |f: &crate::plan::FlowPlan| f.steps.iter().filter(|s| !s.rules.teardown).map(|s| s.rules.think.mean()).sum();
    flows.iter().map(walked).max().unwrap_or_default()
}

/// A user walking a flow, counted in the shard's gauge however the iteration ends.
struct User<'a>(&'a Shard);

impl<'a> User<'a> {
    fn enter(shard: &'a Shard) -> Self {
        let mut st = shard.stats();
        let it = st.iterations();
        it.started += 1;
        it.users += 1;
        it.peak_users = it.peak_users.max(it.users);
        User(shard)
    }

    /// The iteration ended, walked to the flow's end (`ok`) or at a step that failed; its
    /// latency is measured from when it was due, the first request's too.
    fn ended(self, ok: bool, due: Instant) {
        let end = Instant::now();
        let mut st = self.0.stats();
        let it = st.iterations();
        if ok {
            it.completed += 1;
            it.latency.saturating_record(engine_results::stats::micros(end - due));
        } else {
            it.failed += 1;
        }
    }
}

impl Drop for User<'_> {
    fn drop(&mut self) {
        let mut st = self.0.stats();
        let it = st.iterations();
        it.users = it.users.saturating_sub(1);
    }
}

/// Sends one request, due at `due` (the open model) or now, and records how it ended.
/// Returns whether it got a complete response, and the flow's think time before the next.
///
/// An `async` block rather than an `async fn`, for the same reason as `exchange`: its state is
/// in every connection's task.
#[allow(clippy::manual_async_fn)] // the reason is above
fn one_request<'a>(
    shard: &'a Shard,
    c: &'a mut Conn,
    due: Option<Instant>,
) -> impl std::future::Future<Output = (bool, Duration)> + 'a {
    async move {
        let start = Instant::now();
        let intended = due.unwrap_or(start);
        shard.stats().sent_in(c.cursor.part(), start.saturating_duration_since(intended));
        c.guard.set_in_flight(Some(start));
        let turn = c.cursor.turn(shard);
        let which = turn.request;
        let request = &shard.plan().requests[which].request;
        let mut unbuilt = false;
        let bytes: &[u8] = if request.is_templated() {
            let values = &c.cursor.values;
            unbuilt = request.write_to(&mut c.rendered, &mut c.scratch, &mut shard.template_values(), values).is_err();
            &c.rendered
        } else {
            request.bytes()
        };
        let (outcome, kept) = if unbuilt {
            // A gRPC call whose rendered JSON is not its message is not sent: INTERNAL, as gRPC
            // clients report a message they cannot marshal.
            shard.stats().grpc().count(GRPC_INTERNAL);
            (Step::Fail(ErrorKind::Grpc), turn.capture)
        } else if let Some(stream) = c.stream.as_mut() {
            let out = Outgoing { bytes, head: request.is_head(), capture: turn.capture };
            let outcome = exchange(shard, c.guard.slot, stream, out, &mut c.framer, &mut c.carry).await;
            (outcome, c.framer.take_capture())
        } else {
            http2::h2_turn(c, which, turn.capture).await
        };
        let done = Instant::now();
        c.guard.set_in_flight(None);

        // A step ends well with a response of a status it expects that passes its checks (a
        // refused login ends the flow).
        let planned = &shard.plan().requests[which];
        let (mut ok, mut retry_after, mut checks_failed, mut status) = (false, None, false, 0);
        let mut seen = None;
        if let Step::Done { response, grpc, .. } = &outcome {
            ok = planned.expect.contains(response.status) && grpc_ok(shard, *grpc);
            status = response.status;
            retry_after = response.retry_after;
            if kept.is_some() {
                let mut s = Seen::new(response.status, kept.as_deref());
                checks_failed = run_checks(shard, &planned.checks, &mut s);
                seen = Some(s);
            }
        }
        let keep = record(shard, &c.cursor, which, outcome, done - intended, done - start, checks_failed);
        if !keep {
            c.close();
        }
        let think = c.cursor.advance(shard, (ok && !checks_failed, status), retry_after, seen.as_mut());
        drop(seen);
        if let Some(k) = kept {
            c.cursor.keep_buffer(k);
        }
        (ok && !checks_failed, think)
    }
}

/// Evaluates a response's checks, counting each by name; returns whether one that is not
/// soft failed.
fn run_checks(shard: &Shard, checks: &[Check], seen: &mut Seen<'_>) -> bool {
    let mut failed = false;
    let mut st = shard.stats();
    for ch in checks {
        let passed = ch.test.passes(seen);
        st.check(ch.name, passed);
        failed |= !passed && !ch.soft;
    }
    failed
}

/// Whether a call's `grpc-status` is one the plan expects; true when the run is not gRPC (the
/// status is `None`).
fn grpc_ok(shard: &Shard, grpc: Option<u8>) -> bool {
    match (&shard.plan().grpc, grpc) {
        (Some(g), Some(code)) => g.expects(code),
        _ => true,
    }
}

/// Records a request's outcome; returns whether the connection may be reused.
/// A response of an expected status that failed a check is an error of kind `check`.
fn record(
    shard: &Shard,
    cursor: &Cursor,
    which: usize,
    outcome: Step,
    corrected: Duration,
    actual: Duration,
    checks_failed: bool,
) -> bool {
    let mut st = shard.stats();
    let part = cursor.part();
    match outcome {
        Step::Done { response, reuse, unsolicited, grpc } => {
            let expected = shard.plan().requests[which].expect.contains(response.status);
            st.record(response.status, corrected, actual, expected);
            st.record_scenario(part, response.status, expected);
            if cursor.named() {
                st.record_named(which, response.status, corrected, expected);
            }
            if let Some(code) = grpc {
                st.grpc().count(u32::from(code));
            }
            // A call's own status fails it before its checks are asked.
            let failed =
                if !grpc_ok(shard, grpc) { Some(ErrorKind::Grpc) } else { checks_failed.then_some(ErrorKind::Check) };
            if let Some(kind) = failed.filter(|_| expected) {
                st.error_in(part, kind);
                if cursor.named() {
                    st.error_named(which, kind);
                }
            }
            if unsolicited {
                st.error_in(part, ErrorKind::Parse);
            }
            reuse && !shard.plan().requests[which].request.closes()
        }
        Step::Fail(kind) => {
            st.error_in(part, kind);
            if cursor.named() {
                st.error_named(which, kind);
            }
            false
        }
        Step::Tls(reason) => {
            st.tls_error_in(part, reason);
            if cursor.named() {
                st.error_named(which, ErrorKind::Tls);
            }
            false
        }
        Step::More => unreachable!("exchange returns only when the request ended"),
    }
}

/// Opens a connection. Pacing: at most `CONNECTS_IN_PROGRESS` handshakes per shard at once,
/// so the connect phase opens 10,000 connections to an idle target without overflowing its
/// SYN and accept queues. A ramp under load opens connections when the plan says, as real
/// clients would: a saturated server that accepts more slowly than the ramp overflows its
/// accept queue, and the kernel's SYN retransmits show in those connections' latency.
async fn connect(shard: &Shard, slot: usize) -> Result<Opened, OpenError> {
    let _permit = shard.connect_permit().await;
    let plan = shard.plan();
    let source = (!plan.source_ips.is_empty()).then(|| plan.source_ips[shard.next_source() % plan.source_ips.len()]);
    shard.set_opening(slot, Some(Opening::Tcp));
    // Boxed once the permit is held: a connect's state (the socket's connect, the handshake's
    // timer) is hundreds of bytes, and inline it would size every connection's task for its
    // whole life; boxed before the permit, 10,000 of them would wait at once.
    let opened = Box::pin(transport::connect(plan.target.addr, source, plan.connect_timeout, shard.tls(), || {
        shard.set_opening(slot, Some(Opening::Tls))
    }))
    .await;
    shard.set_opening(slot, None);
    opened
}

/// The reason a TLS failure is counted under (an I/O error in the handshake: `handshake`).
pub(crate) fn tls_reason(e: &io::Error) -> usize {
    engine_tls::Failure::of(e).map_or(engine_tls::Reason::Handshake as usize, |f| f.reason_index())
}
