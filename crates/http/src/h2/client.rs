//! The client side of one HTTP/2 connection (RFC 9113), without I/O: bytes read are fed in,
//! frames to write collect in [`Client::output`], and each of the connection's `streams`
//! slots sends one request at a time and learns how it ended.
//!
//! Written for a load generator rather than taken from `h2` (benches/RESULTS.md, issue 30):
//! a response's fields are not materialised (only the status, `retry-after`, `grpc-status` and
//! the headers a capture names are read), DATA is counted as it streams past without being
//! buffered, and a connection's state is a few hundred bytes (a partial frame is kept only
//! while one straddles two reads). The protocol's limits are enforced here: frame sizes, flow
//! control both ways, a header list over `max_header_list`, CONTINUATION floods, PING acks
//! that would pile up, streams the server never opened.

use std::task::{Context, Poll, Waker};

use super::frame::{self, Head};
use super::hpack::{self, HpackError, Name};
use crate::response::{Capture, RetryAfter};
use crate::Response;

/// A connection's settings, from the run's flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    /// Slots (concurrent streams asked); a server's `SETTINGS_MAX_CONCURRENT_STREAMS` may lower it.
    pub streams: usize,
    pub window: u32,
    pub connection_window: u32,
    pub max_header_list: u32,
    /// Read `grpc-status` (trailers, or a trailers-only response's headers).
    pub grpc: bool,
}

/// How a stream ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// A whole response, and (gRPC) its status: UNKNOWN (2) when it sent none.
    Response(Response, Option<u8>),
    /// The server reset it with this code.
    Reset(u32),
    /// Not processed by the server (above a GOAWAY's last stream id, or never sent because the
    /// connection was going away): it may be sent again elsewhere.
    Refused,
    /// Its response broke the rules (a header list over the limit, no `:status`, trailers
    /// that do not end it): the client reset it.
    Malformed,
    /// The connection failed; why is the caller's to keep (an I/O error) or [`Client::failure`].
    Failed,
}

/// Why the client ended the connection: a code it sent in its GOAWAY.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnError(pub u32);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum St {
    Free,
    Open,
    Done(Ended),
}

struct Entry {
    id: u32,
    st: St,
    waker: Option<Waker>,
    capture: Option<Box<Capture>>,
    /// 0 until the final response head.
    status: u16,
    body_bytes: u64,
    retry_after: Option<RetryAfter>,
    grpc: Option<u8>,
    send_window: i64,
    recv_unacked: u32,
    /// Request body the windows have not let out yet (empty unless a server keeps them small).
    pending: Vec<u8>,
}

impl Entry {
    fn new() -> Self {
        Entry {
            id: 0,
            st: St::Free,
            waker: None,
            capture: None,
            status: 0,
            body_bytes: 0,
            retry_after: None,
            grpc: None,
            send_window: 0,
            recv_unacked: 0,
            pending: Vec::new(),
        }
    }
}

/// A header block arriving in HEADERS and CONTINUATION frames.
struct Block {
    stream: u32,
    end_stream: bool,
    frames: usize,
    oversized: bool,
}

/// A DATA frame whose payload is still arriving.
struct Data {
    entry: Option<usize>,
    /// Payload bytes still to come, and how many of them are padding (at the end).
    left: usize,
    pad: usize,
    end_stream: bool,
}

/// Pending output past which PING acks are not queued: a server that floods PINGs and never
/// reads gets no more, rather than the client's memory.
const OUT_LIMIT: usize = 64 * 1024;
/// UNKNOWN: a gRPC response without `grpc-status`.
const GRPC_UNKNOWN: u8 = 2;

/// One connection's protocol state.
pub struct Client {
    cfg: Config,
    out: Vec<u8>,
    out_at: usize,
    /// The server's SETTINGS arrived (until then one stream at a time).
    peer_seen: bool,
    peer_max_streams: u32,
    peer_window: i64,
    peer_max_frame: usize,
    send_window: i64,
    recv_unacked: u32,
    next_id: u32,
    active: usize,
    goaway: Option<u32>,
    released: bool,
    failed: Option<ConnError>,
    entries: Box<[Entry]>,
    carry: Vec<u8>,
    data: Option<Data>,
    block: Option<Block>,
    block_buf: Vec<u8>,
    names: Vec<u8>,
    values: Vec<u8>,
    waiting: Vec<Waker>,
    driver: Option<Waker>,
}

impl Client {
    /// A connection whose preface, SETTINGS and connection window are ready to write.
    pub fn new(cfg: Config) -> Self {
        let mut out = Vec::with_capacity(128);
        out.extend_from_slice(frame::PREFACE);
        let settings = [
            (frame::HEADER_TABLE_SIZE, 0),
            (frame::ENABLE_PUSH, 0),
            (frame::INITIAL_WINDOW_SIZE, cfg.window.min(frame::MAX_WINDOW)),
            (frame::MAX_HEADER_LIST_SIZE, cfg.max_header_list),
        ];
        frame::put_head(&mut out, settings.len() * 6, frame::SETTINGS, 0, 0);
        for (id, v) in settings {
            out.extend_from_slice(&id.to_be_bytes());
            out.extend_from_slice(&v.to_be_bytes());
        }
        let conn_window = cfg.connection_window.clamp(frame::DEFAULT_WINDOW, frame::MAX_WINDOW);
        if conn_window > frame::DEFAULT_WINDOW {
            frame::put_u32(&mut out, frame::WINDOW_UPDATE, 0, conn_window - frame::DEFAULT_WINDOW);
        }
        Client {
            cfg: Config { connection_window: conn_window, window: cfg.window.min(frame::MAX_WINDOW), ..cfg },
            out,
            out_at: 0,
            peer_seen: false,
            peer_max_streams: u32::MAX,
            peer_window: i64::from(frame::DEFAULT_WINDOW),
            peer_max_frame: frame::DEFAULT_MAX_FRAME,
            send_window: i64::from(frame::DEFAULT_WINDOW),
            recv_unacked: 0,
            next_id: 1,
            active: 0,
            goaway: None,
            released: false,
            failed: None,
            entries: (0..cfg.streams.max(1)).map(|_| Entry::new()).collect(),
            carry: Vec::new(),
            data: None,
            block: None,
            block_buf: Vec::new(),
            names: Vec::new(),
            values: Vec::new(),
            waiting: Vec::new(),
            driver: None,
        }
    }

    /// Bytes to write.
    pub fn output(&self) -> &[u8] {
        &self.out[self.out_at..]
    }

    /// `n` bytes of [`Self::output`] were written.
    pub fn wrote(&mut self, n: usize) {
        self.out_at += n;
        if self.out_at >= self.out.len() {
            self.out.clear();
            self.out_at = 0;
        }
    }

    /// The task that writes [`Self::output`]: woken when there is more.
    pub fn set_driver(&mut self, w: &Waker) {
        if !self.driver.as_ref().is_some_and(|d| d.will_wake(w)) {
            self.driver = Some(w.clone());
        }
    }

    fn queued(&self) {
        if let Some(d) = &self.driver {
            d.wake_by_ref();
        }
    }

    /// The most streams the server allows at once (`u32::MAX`: it set no limit).
    pub fn max_streams(&self) -> u32 {
        self.peer_max_streams
    }

    /// Why the client failed the connection, if it did.
    pub fn failure(&self) -> Option<ConnError> {
        self.failed
    }

    /// Whether the server sent a GOAWAY.
    pub fn went_away(&self) -> bool {
        self.goaway.is_some()
    }

    /// Nothing more will happen on the connection: it failed, or it is going away (GOAWAY,
    /// or let go of) with no stream open. What is in [`Self::output`] may still be written.
    pub fn finished(&self) -> bool {
        self.failed.is_some() || ((self.goaway.is_some() || self.released) && self.active == 0)
    }

    /// No new stream will be sent: the connection closes once its open streams end.
    pub fn release(&mut self) {
        self.released = true;
        self.queued();
        self.wake_waiting();
    }

    /// Whether a slot may send now: `Ready(false)` when this connection takes no new
    /// streams (it failed or is going away: the request belongs on another).
    pub fn poll_open(&mut self, cx: &mut Context<'_>) -> Poll<bool> {
        if self.failed.is_some() || self.goaway.is_some() || self.released || self.next_id > frame::MAX_WINDOW {
            return Poll::Ready(false);
        }
        let limit = if self.peer_seen { (self.peer_max_streams as usize).min(self.cfg.streams) } else { 1 };
        if self.active < limit {
            return Poll::Ready(true);
        }
        if !self.waiting.iter().any(|w| w.will_wake(cx.waker())) {
            self.waiting.push(cx.waker().clone());
        }
        Poll::Pending
    }

    /// Sends a request from slot `k` (after [`Self::poll_open`] said it may): its header
    /// `block` (HPACK) and `body`; `capture` keeps what it asks of the response.
    pub fn send(&mut self, k: usize, block: &[u8], body: &[u8], mut capture: Option<Box<Capture>>) {
        let id = self.next_id;
        self.next_id += 2;
        if self.entries[k].st == St::Open {
            // The slot let go of its last stream without ending it: it is this one now.
            self.active -= 1;
        }
        self.active += 1;
        if let Some(c) = capture.as_deref_mut() {
            c.begin();
        }
        let peer_window = self.peer_window;
        let e = &mut self.entries[k];
        e.id = id;
        e.st = St::Open;
        e.capture = capture;
        e.status = 0;
        e.body_bytes = 0;
        e.retry_after = None;
        e.grpc = None;
        e.send_window = peer_window;
        e.recv_unacked = 0;
        e.pending.clear();
        frame::put_headers(&mut self.out, id, block, body.is_empty(), self.peer_max_frame);
        if !body.is_empty() {
            self.send_body(k, body);
        }
        self.queued();
    }

    /// Writes as much of `body` as the windows allow; the rest waits in the entry.
    fn send_body(&mut self, k: usize, body: &[u8]) {
        let e = &mut self.entries[k];
        let room = self.send_window.min(e.send_window).max(0) as usize;
        let n = room.min(body.len());
        for (i, chunk) in body[..n].chunks(self.peer_max_frame).enumerate() {
            let last = i * self.peer_max_frame + chunk.len() == body.len();
            frame::put_head(&mut self.out, chunk.len(), frame::DATA, if last { frame::END_STREAM } else { 0 }, e.id);
            self.out.extend_from_slice(chunk);
        }
        self.send_window -= n as i64;
        e.send_window -= n as i64;
        e.pending.extend_from_slice(&body[n..]);
    }

    /// Sends what waited for a window that has opened.
    fn flush_pending(&mut self) {
        for k in 0..self.entries.len() {
            if self.send_window <= 0 {
                return;
            }
            let e = &mut self.entries[k];
            if e.st == St::Open && !e.pending.is_empty() && e.send_window > 0 {
                let body = std::mem::take(&mut e.pending);
                self.send_body(k, &body);
                self.queued();
            }
        }
    }

    /// How slot `k`'s stream ended, once it has; its capture comes back with it.
    pub fn poll_done(&mut self, k: usize, cx: &mut Context<'_>) -> Poll<(Ended, Option<Box<Capture>>)> {
        let e = &mut self.entries[k];
        match e.st {
            St::Done(ended) => {
                e.st = St::Free;
                e.waker = None;
                Poll::Ready((ended, e.capture.take()))
            }
            _ => {
                if !e.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                    e.waker = Some(cx.waker().clone());
                }
                Poll::Pending
            }
        }
    }

    /// Gives up on slot `k`'s stream (a timeout): RST_STREAM CANCEL, and its capture back.
    pub fn cancel(&mut self, k: usize) -> Option<Box<Capture>> {
        let e = &mut self.entries[k];
        let capture = e.capture.take();
        match e.st {
            St::Open => {
                e.st = St::Free;
                e.waker = None;
                e.pending = Vec::new();
                frame::put_u32(&mut self.out, frame::RST_STREAM, e.id, frame::CANCEL);
                self.active -= 1;
                self.queued();
                self.wake_waiting();
            }
            St::Done(_) => e.st = St::Free,
            St::Free => {}
        }
        capture
    }

    /// The connection broke under the client (an I/O error, the peer closed): every open
    /// stream ends [`Ended::Failed`].
    pub fn broke(&mut self) {
        if self.failed.is_none() {
            self.failed = Some(ConnError(0));
        }
        self.end_all(Ended::Failed);
    }

    fn end_all(&mut self, ended: Ended) {
        for k in 0..self.entries.len() {
            self.end(k, ended);
        }
        self.wake_waiting();
    }

    fn end(&mut self, k: usize, ended: Ended) {
        let e = &mut self.entries[k];
        if e.st != St::Open {
            return;
        }
        e.st = St::Done(ended);
        e.pending = Vec::new();
        if let Some(w) = e.waker.take() {
            w.wake();
        }
        self.active -= 1;
        self.wake_waiting();
    }

    fn wake_waiting(&mut self) {
        for w in self.waiting.drain(..) {
            w.wake();
        }
    }

    fn fail(&mut self, code: u32) -> ConnError {
        if self.failed.is_none() {
            frame::put_goaway(&mut self.out, 0, code);
            self.failed = Some(ConnError(code));
            self.end_all(Ended::Failed);
            self.queued();
        }
        ConnError(code)
    }

    fn find(&self, id: u32) -> Option<usize> {
        self.entries.iter().position(|e| e.id == id && e.st == St::Open)
    }
}

mod inbound;

#[cfg(test)]
mod tests;
