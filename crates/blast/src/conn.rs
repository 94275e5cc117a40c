//! One connection's loop: connect → write → read and frame → record → repeat.
//!
//! Reads land in the shard's one read buffer and are framed on the spot, so an idle
//! connection holds no buffer at all. Only a response head split across reads is kept, in
//! the connection's `carry`, which is empty (and unallocated) in the steady state.

use std::io;
use std::os::fd::AsRawFd;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures_lite::future::poll_fn;
use futures_lite::io::{AsyncRead, AsyncWriteExt};
use glommio::net::TcpStream;

use crate::plan::CaptureSource;
use crate::shard::Shard;
use engine_http::response::{Capture, MAX_CAPTURED_BODY};
use engine_http::{FrameError, Progress, Response, ResponseFramer};
use engine_results::stats::ErrorKind;

/// Bytes added to `carry` per read while a head is incomplete.
const CARRY_STEP: usize = 4096;
/// A carry that grew past this is freed after use rather than kept for the next head.
const CARRY_KEEP: usize = 16 * 1024;
/// First and longest pause between failed connects: a dead target must not turn every
/// connection into a busy loop, and a target that comes back must be noticed quickly.
const BACKOFF_MIN: Duration = Duration::from_millis(10);
const BACKOFF_MAX: Duration = Duration::from_secs(1);
/// A request due sooner than this is sent at once: a timer costs more than the error.
const SCHEDULE_SLACK: Duration = Duration::from_micros(50);

/// How one request ended.
enum Step {
    More,
    Done { response: Response, reuse: bool, unsolicited: bool },
    Fail(ErrorKind),
}

/// Keeps the shard's gauges right however the task ends, cancellation included.
struct Guard {
    shard: Rc<Shard>,
    slot: usize,
    open: bool,
    in_flight: bool,
}

impl Guard {
    fn set_open(&mut self, stream: Option<&TcpStream>) {
        let mut st = self.shard.stats.borrow_mut();
        match (stream, self.open) {
            (Some(s), false) => {
                st.opened();
                self.shard.slots[self.slot].fd.set(s.as_raw_fd());
            }
            (None, true) => {
                st.closed();
                self.shard.slots[self.slot].fd.set(-1);
            }
            _ => {}
        }
        self.open = stream.is_some();
    }

    fn set_in_flight(&mut self, started: Option<Instant>) {
        let slot = &self.shard.slots[self.slot];
        slot.started.set(started);
        slot.timed_out.set(false);
        let mut st = self.shard.stats.borrow_mut();
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
        if self.in_flight {
            self.set_in_flight(None);
            self.shard.stats.borrow_mut().counters.abandoned += 1;
        }
        self.set_open(None);
    }
}

/// Reads of one response between turns the task gives the executor.
const READS_PER_TURN: u32 = 16;

/// Drives connection `slot` of the shard until the shard stops.
pub(crate) async fn run(shard: Rc<Shard>, slot: usize) {
    let mut guard = Guard { shard: shard.clone(), slot, open: false, in_flight: false };
    let mut stream: Option<TcpStream> = None;
    let mut framer = ResponseFramer::new();
    let mut carry: Vec<u8> = Vec::new();
    let mut failures = 0u32;
    let several = shard.plan.requests.len() > 1;
    // Templated requests are rendered into these, reused from request to request.
    let (mut rendered, mut scratch) = (Vec::new(), Vec::new());
    // Values this connection's flow steps captured, by the plan's capture index.
    let mut caps: Vec<Vec<u8>> = vec![Vec::new(); shard.plan.captures.len()];
    // Flows: this connection is a user walking through one flow's steps at a time.
    let flows = !shard.plan.flows.is_empty();
    let (mut flow, mut step) = (0usize, 0usize);
    let mut kept: Option<Box<Capture>> = Some(Box::default());
    // Until the shard's start, a connection only connects (see `shard::run`).
    let mut before_start = true;

    while shard.running.get() {
        if slot as u64 >= shard.active.get() {
            // Parked by a ramp: close (after the last response) and wait to be admitted.
            if stream.take().is_some() {
                guard.set_open(None);
                carry = Vec::new();
            }
            park(&shard, slot).await;
            continue;
        }
        let s = match stream.as_mut() {
            Some(s) => s,
            None => match connect(&shard).await {
                Ok(s) => {
                    failures = 0;
                    guard.set_open(Some(&s));
                    stream.insert(s)
                }
                Err(_) => {
                    if std::mem::take(&mut before_start) {
                        shard.attempted.set(shard.attempted.get() + 1);
                    }
                    shard.stats.borrow_mut().counters.error(ErrorKind::Connect);
                    failures += 1;
                    let pause = BACKOFF_MIN.saturating_mul(1 << failures.min(7)).min(BACKOFF_MAX);
                    glommio::timer::sleep(pause).await;
                    continue;
                }
            },
        };

        if std::mem::take(&mut before_start) {
            shard.attempted.set(shard.attempted.get() + 1);
            // Each connection takes one of the permits the shard releases at its start.
            let _ = shard.go.acquire(1).await;
            continue;
        }

        // Open model: the next due time of the shard's schedule, waited for if it is ahead.
        let intended = match &shard.arrivals {
            Some(arrivals) => {
                let Some(offset) = arrivals.borrow_mut().next() else { break };
                let due = shard.start.get().unwrap_or_else(Instant::now) + Duration::from_secs_f64(offset);
                let ahead = due.saturating_duration_since(Instant::now());
                if ahead > SCHEDULE_SLACK {
                    glommio::timer::sleep(ahead).await;
                }
                Some(due)
            }
            None => None,
        };
        let start = Instant::now();
        let intended = intended.unwrap_or(start);
        shard.stats.borrow_mut().sent(start.saturating_duration_since(intended));
        guard.set_in_flight(Some(start));
        let mut capture = None;
        let (which, flow_step) = if flows {
            if step == 0 {
                flow = shard.flow_picker.borrow_mut().next();
            }
            let st = &shard.plan.flows[flow].steps[step];
            if !st.captures.is_empty() {
                let mut c = kept.take().unwrap_or_default();
                let header = st.captures.iter().find_map(|(_, s)| match s {
                    CaptureSource::Header(h) => Some(h.as_str()),
                    CaptureSource::Json(_) => None,
                });
                // The kept buffer usually names the same header already: no new String then.
                if c.header.as_deref() != header {
                    c.header = header.map(str::to_string);
                }
                c.body = st.captures.iter().any(|(_, s)| matches!(s, CaptureSource::Json(_)));
                capture = Some(c);
            }
            (st.request, Some(st))
        } else if several {
            (shard.picker.borrow_mut().next(), None)
        } else {
            (0, None)
        };
        let request = &shard.plan.requests[which].request;
        let bytes: &[u8] = if request.is_templated() {
            request.write_to(&mut rendered, &mut scratch, &mut shard.template_values(), &caps);
            &rendered
        } else {
            request.bytes()
        };
        let out = Outgoing { bytes, head: request.is_head(), capture };
        let outcome = exchange(&shard, slot, s, out, &mut framer, &mut carry).await;
        let done = Instant::now();
        guard.set_in_flight(None);

        let ok = matches!(outcome, Step::Done { .. });
        let keep = {
            let mut st = shard.stats.borrow_mut();
            match outcome {
                Step::Done { response, reuse, unsolicited } => {
                    st.record(response.status, done - intended, done - start);
                    if several {
                        st.record_named(which, response.status, done - intended);
                    }
                    if unsolicited {
                        st.counters.error(ErrorKind::Parse);
                    }
                    reuse
                }
                Step::Fail(kind) => {
                    st.counters.error(kind);
                    if several {
                        st.error_named(which, kind);
                    }
                    false
                }
                Step::More => unreachable!("exchange returns only when the request ended"),
            }
        };
        if !keep {
            stream = None;
            guard.set_open(None);
            carry = Vec::new();
        }
        if let Some(st) = flow_step {
            if let Some(c) = framer.take_capture() {
                apply_captures(&st.captures, &c, &mut caps);
                kept = Some(c);
            }
            // A failed step sends the user back to the flow's start (log in again, say).
            step = if ok { (step + 1) % shard.plan.flows[flow].steps.len() } else { 0 };
            if ok && !st.think.is_zero() {
                glommio::timer::sleep(st.think).await;
            }
        }
    }
}

/// Waits until the slot is admitted by a ramp (or the task is cancelled at the end).
async fn park(shard: &Shard, slot: usize) {
    poll_fn(|cx| {
        if (slot as u64) < shard.active.get() {
            Poll::Ready(())
        } else {
            shard.slots[slot].waker.set(Some(cx.waker().clone()));
            Poll::Pending
        }
    })
    .await
}

/// Opens a connection. Pacing: at most `CONNECTS_IN_PROGRESS` handshakes per shard at once,
/// so the connect phase opens 10,000 connections to an idle target without overflowing its
/// SYN and accept queues. A ramp under load opens connections when the plan says, as real
/// clients would: a saturated server that accepts more slowly than the ramp overflows its
/// accept queue, and the kernel's SYN retransmits show in those connections' latency.
async fn connect(shard: &Shard) -> io::Result<TcpStream> {
    let _permit = shard.connect_gate.acquire_permit(1).await?;
    let (target, timeout) = (shard.plan.target.addr, shard.plan.connect_timeout);
    let sources = &shard.plan.source_ips;
    let s = if sources.is_empty() {
        TcpStream::connect_timeout(target, timeout).await?
    } else {
        let i = shard.next_source.get();
        shard.next_source.set(i.wrapping_add(1));
        TcpStream::connect_timeout_from(sources[i % sources.len()], target, timeout).await?
    };
    s.set_nodelay(true)?;
    Ok(s)
}

/// One request to write, and what to keep of its response.
struct Outgoing<'a> {
    bytes: &'a [u8],
    head: bool,
    capture: Option<Box<Capture>>,
}

async fn exchange(
    shard: &Shard,
    slot: usize,
    stream: &mut TcpStream,
    out: Outgoing<'_>,
    framer: &mut ResponseFramer,
    carry: &mut Vec<u8>,
) -> Step {
    let Outgoing { bytes: request, head, capture } = out;
    let timed_out = || shard.slots[slot].timed_out.get();
    if let Err(e) = stream.write_all(request).await {
        return Step::Fail(if timed_out() { ErrorKind::Timeout } else { ErrorKind::from_io(&e) });
    }
    shard.stats.borrow_mut().counters.bytes_sent += request.len() as u64;
    match capture {
        Some(c) => framer.start_capturing(head, c),
        None => framer.start(head),
    }
    let mut reads = 0u32;
    loop {
        let step = poll_fn(|cx| read_step(cx, shard, stream, framer, carry)).await;
        reads += 1;
        // A long response (or a server that never stops sending) is read without waiting
        // for the peer, so the task would keep the shard from its timers and sweeper: every
        // READS_PER_TURN-th read lets the executor poll I/O first (glommio patch, PATCHES.md).
        if reads % READS_PER_TURN == 0 {
            glommio::executor().yield_task_queue_now().await;
        }
        match step {
            // The sweeper shuts a timed-out socket down, which ends the read in some error, or
            // in an EOF that would complete a close-delimited body as if it were whole; and on
            // Linux a TCP socket shut down for reading still takes what keeps arriving, so a
            // server that never stops sending (1xx after 1xx, an endless body) is caught here.
            _ if timed_out() => return Step::Fail(ErrorKind::Timeout),
            Step::More => continue,
            other => return other,
        }
    }
}

/// One read: into the shard buffer when no partial head is pending, else onto `carry`.
fn read_step(
    cx: &mut Context<'_>,
    shard: &Shard,
    stream: &mut TcpStream,
    framer: &mut ResponseFramer,
    carry: &mut Vec<u8>,
) -> Poll<Step> {
    if carry.is_empty() {
        let mut buf = shard.read_buf.borrow_mut();
        let n = match Pin::new(&mut *stream).poll_read(cx, &mut buf[..]) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(Ok(n)) => n,
            Poll::Ready(Err(e)) => return Poll::Ready(Step::Fail(ErrorKind::from_io(&e))),
        };
        if n == 0 {
            return Poll::Ready(eof(framer));
        }
        shard.stats.borrow_mut().counters.bytes_received += n as u64;
        let data = &buf[..n];
        let (step, consumed) = frame(framer, data);
        if matches!(step, Step::More) && consumed < n {
            carry.extend_from_slice(&data[consumed..]);
        }
        Poll::Ready(step)
    } else {
        let old = carry.len();
        // The framer fails a head of MAX_HEAD bytes, so `carry` stays below MAX_HEAD + CARRY_STEP.
        carry.resize(old + CARRY_STEP, 0);
        let result = Pin::new(&mut *stream).poll_read(cx, &mut carry[old..]);
        let n = match result {
            Poll::Pending => {
                carry.truncate(old);
                return Poll::Pending;
            }
            Poll::Ready(Ok(n)) => n,
            Poll::Ready(Err(e)) => {
                carry.truncate(old);
                return Poll::Ready(Step::Fail(ErrorKind::from_io(&e)));
            }
        };
        carry.truncate(old + n);
        if n == 0 {
            return Poll::Ready(eof(framer));
        }
        shard.stats.borrow_mut().counters.bytes_received += n as u64;
        let (step, consumed) = frame(framer, carry);
        if matches!(step, Step::More) {
            carry.drain(..consumed);
        } else if carry.capacity() > CARRY_KEEP {
            *carry = Vec::new();
        } else {
            carry.clear();
        }
        Poll::Ready(step)
    }
}

fn frame(framer: &mut ResponseFramer, data: &[u8]) -> (Step, usize) {
    match framer.feed(data) {
        Ok(Progress::Incomplete { consumed }) => (Step::More, consumed),
        Ok(Progress::Complete { consumed, response }) => {
            // Bytes past the response were never asked for: the connection is out of step.
            let unsolicited = consumed < data.len();
            (Step::Done { response, reuse: response.keep_alive && !unsolicited, unsolicited }, consumed)
        }
        Err(e) => (Step::Fail(error_kind(e)), 0),
    }
}

fn eof(framer: &mut ResponseFramer) -> Step {
    match framer.feed_eof() {
        Ok(response) => Step::Done { response, reuse: false, unsolicited: false },
        Err(e) => Step::Fail(error_kind(e)),
    }
}

fn error_kind(e: FrameError) -> ErrorKind {
    if e.is_close() {
        ErrorKind::Closed
    } else {
        ErrorKind::Parse
    }
}

/// Stores what a flow step captured. A value that is missing leaves the variable as it was.
fn apply_captures(wanted: &[(usize, CaptureSource)], c: &Capture, caps: &mut [Vec<u8>]) {
    let mut json: Option<serde_json::Value> = None;
    for (var, source) in wanted {
        let value = match source {
            CaptureSource::Header(_) => c.header_value.clone(),
            CaptureSource::Json(field) => {
                if json.is_none() && c.body_bytes.len() < MAX_CAPTURED_BODY {
                    json = if c.chunked {
                        serde_json::from_slice(&dechunk(&c.body_bytes)).ok()
                    } else {
                        serde_json::from_slice(&c.body_bytes).ok()
                    };
                }
                json.as_ref().and_then(|j| j.get(field)).map(|v| match v {
                    serde_json::Value::String(s) => s.clone().into_bytes(),
                    other => other.to_string().into_bytes(),
                })
            }
        };
        if let Some(v) = value {
            caps[*var] = v;
        }
    }
}

/// The data of a chunked body the framer has already validated.
fn dechunk(mut raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = raw.windows(2).position(|w| w == b"\r\n") {
        let line = std::str::from_utf8(&raw[..eol]).unwrap_or("0");
        let size = usize::from_str_radix(line.split(';').next().unwrap_or("0").trim(), 16).unwrap_or(0);
        if size == 0 {
            break;
        }
        let start = eol + 2;
        let end = (start + size).min(raw.len());
        out.extend_from_slice(&raw[start..end]);
        raw = &raw[(end + 2).min(raw.len())..];
    }
    out
}
