//! One request on a connection: write it, then read and frame the response. Reads land in
//! the shard's one read buffer and are framed on the spot, so an idle connection holds no
//! buffer at all; only a response head split across reads is kept, in the connection's
//! `carry`, which is empty (and unallocated) in the steady state.

use std::task::{Context, Poll};

use engine_http::response::Capture;
use engine_http::{FrameError, Progress, Response, ResponseFramer};
use engine_results::stats::ErrorKind;
use futures_lite::future::poll_fn;

use crate::state::Shard;
use crate::transport::Stream;

/// Bytes added to `carry` per read while a head is incomplete.
const CARRY_STEP: usize = 4096;
/// A carry that grew past this is freed after use rather than kept for the next head.
const CARRY_KEEP: usize = 16 * 1024;
/// Reads of one response between turns the task gives the executor.
const READS_PER_TURN: u32 = 16;

/// How one request ended.
pub(super) enum Step {
    More,
    Done {
        response: Response,
        reuse: bool,
        unsolicited: bool,
        /// gRPC: the call's `grpc-status` (trailers, or a trailers-only response's headers;
        /// none at all: UNKNOWN); `None` when the run is not gRPC.
        grpc: Option<u8>,
    },
    Fail(ErrorKind),
    /// A TLS failure, by reason (an index of `engine_results::stats::TLS_REASONS`).
    Tls(usize),
}

/// One request to write, and what to keep of its response.
pub(super) struct Outgoing<'a> {
    pub bytes: &'a [u8],
    pub head: bool,
    pub capture: Option<Box<Capture>>,
}

/// Writes the request and reads until its response is complete or fails.
///
/// An `async` block rather than an `async fn`: an `async fn` keeps its arguments twice in
/// its state (as passed and as bound), and this state sits in every connection's task.
#[allow(clippy::manual_async_fn)] // the reason is above
pub(super) fn exchange<'a>(
    shard: &'a Shard,
    slot: usize,
    stream: &'a mut Stream,
    out: Outgoing<'a>,
    framer: &'a mut ResponseFramer,
    carry: &'a mut Vec<u8>,
) -> impl std::future::Future<Output = Step> + 'a {
    async move {
        if let Err(e) = stream.write_all(out.bytes).await {
            return if shard.slot(slot).timed_out() { Step::Fail(ErrorKind::Timeout) } else { failed(&e) };
        }
        shard.stats().counters.bytes_sent += out.bytes.len() as u64;
        match out.capture {
            Some(c) => framer.start_capturing(out.head, c),
            None => framer.start(out.head),
        }
        let mut reads = 0u32;
        loop {
            let step = poll_fn(|cx| read_step(cx, shard, stream, framer, carry)).await;
            reads += 1;
            // A long response (or a server that never stops sending) is read without waiting
            // for the peer, so the task would keep the shard from its timers and sweeper: every
            // READS_PER_TURN-th read lets the executor poll I/O first (glommio patch, PATCHES.md).
            if reads.is_multiple_of(READS_PER_TURN) {
                glommio::executor().yield_task_queue_now().await;
            }
            match step {
                // The sweeper shuts a timed-out socket down, which ends the read in some error,
                // or in an EOF that would complete a close-delimited body as if it were whole;
                // and on Linux a TCP socket shut down for reading still takes what keeps
                // arriving, so a server that never stops sending (1xx after 1xx, an endless
                // body) is caught here.
                _ if shard.slot(slot).timed_out() => return Step::Fail(ErrorKind::Timeout),
                Step::More => continue,
                other => return other,
            }
        }
    }
}

/// One read: into the shard buffer when no partial head is pending, else onto `carry`.
fn read_step(
    cx: &mut Context<'_>,
    shard: &Shard,
    stream: &mut Stream,
    framer: &mut ResponseFramer,
    carry: &mut Vec<u8>,
) -> Poll<Step> {
    if carry.is_empty() {
        let mut buf = shard.read_buf();
        let n = match stream.poll_read(cx, &mut buf[..]) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(Ok(n)) => n,
            Poll::Ready(Err(e)) => return Poll::Ready(failed(&e)),
        };
        if n == 0 {
            return Poll::Ready(eof(framer, stream));
        }
        shard.stats().counters.bytes_received += n as u64;
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
        let n = match stream.poll_read(cx, &mut carry[old..]) {
            Poll::Pending => {
                carry.truncate(old);
                return Poll::Pending;
            }
            Poll::Ready(Ok(n)) => n,
            Poll::Ready(Err(e)) => {
                carry.truncate(old);
                return Poll::Ready(failed(&e));
            }
        };
        carry.truncate(old + n);
        if n == 0 {
            return Poll::Ready(eof(framer, stream));
        }
        shard.stats().counters.bytes_received += n as u64;
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
            (Step::Done { response, reuse: response.keep_alive && !unsolicited, unsolicited, grpc: None }, consumed)
        }
        Err(e) => (Step::Fail(error_kind(e)), 0),
    }
}

/// The peer closed. A body that ends at the close is whole only if TLS says it ended
/// cleanly (close_notify): an attacker or a crash can cut a TLS stream as well as a TCP one.
fn eof(framer: &mut ResponseFramer, stream: &Stream) -> Step {
    match framer.feed_eof() {
        Ok(_) if stream.truncated() => failed(&engine_tls::Failure::truncated()),
        Ok(response) => Step::Done { response, reuse: false, unsolicited: false, grpc: None },
        Err(e) => Step::Fail(error_kind(e)),
    }
}

/// An I/O error's kind; a TLS failure by its reason.
fn failed(e: &std::io::Error) -> Step {
    match engine_tls::Failure::of(e) {
        Some(f) => Step::Tls(f.reason_index()),
        None => Step::Fail(ErrorKind::from_io(e)),
    }
}

fn error_kind(e: FrameError) -> ErrorKind {
    if e.is_close() {
        ErrorKind::Closed
    } else {
        ErrorKind::Parse
    }
}
