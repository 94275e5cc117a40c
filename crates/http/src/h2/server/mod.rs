//! The server side of one HTTP/2 connection (RFC 9113), without I/O: bytes read are fed in
//! ([`Server::feed`]), frames to write collect in [`Server::output`], new streams are taken
//! with [`Server::accept`], and each stream's task reads its body and writes its response
//! through the stream's id.
//!
//! Why not the `h2` crate, which the proxy served HTTP/2 with: a proxied request cost about
//! 74,000 instructions in the engine against nginx's 26,000, of which `h2`'s connection task
//! alone was 28,000 (callgrind, benches/RESULTS.md, issue 31). Here a request's head is
//! decoded into one buffer ([`RequestHead`]) rather than a header map, a response head is
//! encoded as literals without Huffman (nothing to search or compress), and a stream is an
//! entry in a vector rather than a slab behind a lock.
//!
//! The protocol's limits are enforced here, the way `h2` did: streams at once (more are
//! refused), the header list size, header blocks that never end (CONTINUATION floods), flow
//! control both ways, control frames that would pile up unanswered (SETTINGS and PING
//! floods), frames that do nothing (empty DATA, PRIORITY, unknown types) in long runs, and
//! streams reset before they were taken (rapid reset, CVE-2023-44487); a reset of a stream
//! already taken is counted for the caller to judge by its clock ([`Server::resets`]).

mod head;
mod inbound;
mod outbound;
pub use outbound::Gone;

use std::task::{Context, Poll, Waker};

use super::frame;
use super::table::{Decoder, Scratch};
pub use head::{Fields, Malformed, RequestHead};

/// A connection's settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    /// `SETTINGS_MAX_CONCURRENT_STREAMS`: more at once are refused (REFUSED_STREAM).
    pub max_streams: u32,
    /// `SETTINGS_MAX_HEADER_LIST_SIZE`, decoded; a block whose encoded size passes twice
    /// this ends the connection.
    pub max_header_list: u32,
    /// `SETTINGS_INITIAL_WINDOW_SIZE`: request body a stream may send ahead of its reader.
    pub window: u32,
    /// The connection's receive window.
    pub connection_window: u32,
    /// Response bytes a stream may hold beyond what the client's windows take.
    pub max_send_buffer: usize,
    /// Streams the client may reset before they were taken, with no stream answered whole
    /// in between; past it, GOAWAY ENHANCE_YOUR_CALM.
    pub max_early_resets: u32,
    /// Streams the server may reset for the client's errors (malformed requests, flow
    /// control) over the connection's life; past it, GOAWAY ENHANCE_YOUR_CALM.
    pub max_error_resets: u32,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            max_streams: 256,
            max_header_list: 64 << 10,
            window: frame::DEFAULT_WINDOW,
            connection_window: 1 << 20,
            max_send_buffer: 64 << 10,
            max_early_resets: 64,
            max_error_resets: 1024,
        }
    }
}

/// Why the server ended the connection: the code of its GOAWAY (0 when the client broke it
/// or went away).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnError(pub u32);

/// What a stream's reader gets next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recv {
    /// Body bytes (swapped into the caller's buffer).
    Data,
    /// The body ended with these trailers.
    Trailers(Fields),
    /// The body ended.
    End,
    /// The client reset the stream with this code, or the connection ended (0).
    Reset(u32),
}

/// Pending output past which control frames are not answered: a client that floods SETTINGS
/// or PINGs and never reads ends its connection rather than filling the server's memory.
const OUT_LIMIT: usize = 256 << 10;
/// Pending output past which streams may hand over no more body: a client that opens wide
/// windows and does not read holds this much of its responses here, not all of them.
const OUT_BUDGET: usize = 128 << 10;
/// Frames in a row that move nothing forward (empty DATA, PRIORITY, PING, SETTINGS, unknown
/// types, WINDOW_UPDATEs for streams gone) before the connection is taken for a flood.
const IDLE_FRAMES: u32 = 10_000;
/// HEADERS and CONTINUATION frames one header block may take.
const BLOCK_FRAMES: usize = 128;

#[derive(Debug)]
struct Stream {
    id: u32,
    /// Not yet taken by [`Server::accept`]: its head waits here.
    head: Option<RequestHead>,
    /// The client ended its side (END_STREAM), or the stream was reset.
    recv_closed: bool,
    /// The server ended its side (END_STREAM sent, or a reset).
    send_closed: bool,
    /// Reset, by the client (its code) or by the server.
    reset: Option<u32>,
    /// The caller let go of the stream: it goes once the protocol is done with it.
    released: bool,
    /// Body received and not yet read, and what the reader has taken but not yet been given
    /// back as window.
    recv: Vec<u8>,
    recv_unacked: u32,
    received: u64,
    content_length: Option<u64>,
    trailers: Option<Fields>,
    send_window: i64,
    /// Response body waiting for a window, then (when the response is whole) what ends it.
    pending: Vec<u8>,
    pending_end: Option<End>,
    waker: Option<Waker>,
}

/// How a response waiting for window ends once its body is out.
#[derive(Debug)]
enum End {
    Stream,
    /// An encoded trailers block.
    Trailers(Vec<u8>),
}

impl Stream {
    fn wake(&mut self) {
        if let Some(w) = self.waker.take() {
            w.wake();
        }
    }
}

/// A header block arriving in HEADERS and CONTINUATION frames.
#[derive(Debug)]
struct Block {
    stream: u32,
    end_stream: bool,
    frames: usize,
}

/// One connection's protocol state.
pub struct Server {
    cfg: Config,
    out: Vec<u8>,
    out_at: usize,
    /// The client's preface and first SETTINGS have arrived.
    preface: bool,
    settings_seen: bool,
    peer_window: i64,
    peer_max_frame: usize,
    send_window: i64,
    /// Connection window the server has taken back and not yet announced.
    recv_unacked: u32,
    /// Connection window in use: received and not yet given back.
    recv_used: u32,
    /// The highest stream id the client opened.
    last_id: u32,
    /// GOAWAY sent: streams above this id are ignored.
    goaway: Option<u32>,
    /// The client sent GOAWAY.
    peer_gone: bool,
    failed: Option<ConnError>,
    streams: Vec<Stream>,
    /// Ids of streams not yet taken, oldest first.
    new: std::collections::VecDeque<u32>,
    resets: u64,
    early_resets: u32,
    error_resets: u32,
    idle_frames: u32,
    /// A stream found the output at its budget (and waits for it to drain).
    out_full: bool,
    carry: Vec<u8>,
    block: Option<Block>,
    block_buf: Vec<u8>,
    /// A response head being encoded (kept for the next).
    block_out: Vec<u8>,
    hpack: Decoder,
    scratch: Scratch,
    driver: Option<Waker>,
}

impl Server {
    /// A connection whose SETTINGS (and connection window) are ready to write; the client's
    /// preface is expected first in what is fed.
    pub fn new(cfg: Config) -> Self {
        let cfg = Config {
            window: cfg.window.min(frame::MAX_WINDOW),
            connection_window: cfg.connection_window.clamp(frame::DEFAULT_WINDOW, frame::MAX_WINDOW),
            ..cfg
        };
        let mut out = Vec::with_capacity(256);
        let settings = [
            (frame::MAX_CONCURRENT_STREAMS, cfg.max_streams),
            (frame::INITIAL_WINDOW_SIZE, cfg.window),
            (frame::MAX_HEADER_LIST_SIZE, cfg.max_header_list),
            (frame::ENABLE_PUSH, 0),
        ];
        frame::put_head(&mut out, settings.len() * 6, frame::SETTINGS, 0, 0);
        for (id, v) in settings {
            out.extend_from_slice(&id.to_be_bytes());
            out.extend_from_slice(&v.to_be_bytes());
        }
        if cfg.connection_window > frame::DEFAULT_WINDOW {
            frame::put_u32(&mut out, frame::WINDOW_UPDATE, 0, cfg.connection_window - frame::DEFAULT_WINDOW);
        }
        Server {
            cfg,
            out,
            out_at: 0,
            preface: false,
            settings_seen: false,
            peer_window: i64::from(frame::DEFAULT_WINDOW),
            peer_max_frame: frame::DEFAULT_MAX_FRAME,
            send_window: i64::from(frame::DEFAULT_WINDOW),
            recv_unacked: 0,
            recv_used: 0,
            last_id: 0,
            goaway: None,
            peer_gone: false,
            failed: None,
            streams: Vec::new(),
            new: std::collections::VecDeque::new(),
            resets: 0,
            early_resets: 0,
            error_resets: 0,
            idle_frames: 0,
            out_full: false,
            carry: Vec::new(),
            block: None,
            block_buf: Vec::new(),
            block_out: Vec::new(),
            hpack: Decoder::new(4096),
            scratch: Scratch::default(),
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
        if self.out_full && self.unwritten() < OUT_BUDGET {
            // Streams waiting for room in the output may go on, and what they hold goes out
            // as far as the windows let it.
            self.out_full = false;
            self.streams.iter_mut().for_each(Stream::wake);
            self.flush_all();
        }
        if self.out_at >= self.out.len() {
            self.out.clear();
            self.out_at = 0;
            if self.out.capacity() > OUT_LIMIT {
                self.out = Vec::with_capacity(256);
            }
        }
    }

    /// Bytes queued and not yet written.
    fn unwritten(&self) -> usize {
        self.out.len() - self.out_at
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

    /// A stream the client opened and nobody has taken yet: its id and head, and whether it
    /// came without a body (END_STREAM on its HEADERS).
    pub fn accept(&mut self) -> Option<(u32, RequestHead, bool)> {
        while let Some(id) = self.new.pop_front() {
            if let Some(s) = self.find_mut(id) {
                if let Some(head) = s.head.take() {
                    return Some((id, head, s.recv_closed && s.recv.is_empty() && s.trailers.is_none()));
                }
            }
        }
        None
    }

    /// The client's preface and first SETTINGS have arrived.
    pub fn started(&self) -> bool {
        self.settings_seen
    }

    /// Streams open (taken or not) and not yet released.
    pub fn active(&self) -> usize {
        self.streams.iter().filter(|s| !s.released).count()
    }

    /// Streams the client reset after they were taken, over the connection's life.
    pub fn resets(&self) -> u64 {
        self.resets
    }

    /// Why the connection failed, if it did.
    pub fn failure(&self) -> Option<ConnError> {
        self.failed
    }

    /// Nothing more will happen: the connection failed, or one side is going away and no
    /// stream is left. What is in [`Self::output`] may still be written.
    pub fn finished(&self) -> bool {
        self.failed.is_some() || ((self.goaway.is_some() || self.peer_gone) && self.streams.is_empty())
    }

    /// Takes no new streams (GOAWAY NO_ERROR naming the last one taken); those open finish.
    pub fn graceful_shutdown(&mut self) {
        if self.goaway.is_none() && self.failed.is_none() {
            self.goaway = Some(self.last_id);
            frame::put_goaway(&mut self.out, self.last_id, 0);
            self.queued();
        }
    }

    /// Ends the connection now with GOAWAY `code`; every stream ends (reset, code 0).
    pub fn abrupt_shutdown(&mut self, code: u32) {
        self.fail(code);
    }

    /// The connection broke under the server (an I/O error, the client closed).
    pub fn broke(&mut self) {
        if self.failed.is_none() {
            self.failed = Some(ConnError(0));
        }
        self.end_all();
    }

    fn fail(&mut self, code: u32) -> ConnError {
        if self.failed.is_none() {
            frame::put_goaway(&mut self.out, self.last_id, code);
            self.failed = Some(ConnError(code));
            self.end_all();
            self.queued();
        }
        ConnError(code)
    }

    fn end_all(&mut self) {
        for s in &mut self.streams {
            s.reset.get_or_insert(0);
            s.recv_closed = true;
            s.send_closed = true;
            s.pending = Vec::new();
            s.wake();
        }
        self.new.clear();
        self.streams.retain(|s| !s.released && s.head.is_none());
    }

    fn find(&self, id: u32) -> Option<&Stream> {
        self.streams.iter().find(|s| s.id == id)
    }

    fn find_mut(&mut self, id: u32) -> Option<&mut Stream> {
        self.streams.iter_mut().find(|s| s.id == id)
    }

    /// Drops a stream the protocol and the caller are both done with.
    fn sweep(&mut self, id: u32) {
        if let Some(i) = self.streams.iter().position(|s| s.id == id) {
            let s = &self.streams[i];
            if s.released && s.recv_closed && s.send_closed {
                let s = self.streams.swap_remove(i);
                // Body the reader never took gives its connection window back.
                self.give_back_connection(s.recv.len() as u32);
            }
        }
    }

    /// Resets stream `id` for the server's own reasons (`code`); counted against the client
    /// when `client_fault`.
    fn reset_stream(&mut self, id: u32, code: u32, client_fault: bool) -> Result<(), u32> {
        frame::put_u32(&mut self.out, frame::RST_STREAM, id, code);
        self.queued();
        if let Some(s) = self.find_mut(id) {
            s.reset.get_or_insert(code);
            s.recv_closed = true;
            s.send_closed = true;
            s.pending = Vec::new();
            s.pending_end = None;
            s.wake();
            if s.head.is_some() {
                // Never taken: nobody will release it.
                s.released = true;
            }
        }
        self.sweep(id);
        if client_fault {
            self.error_resets += 1;
            if self.error_resets > self.cfg.max_error_resets {
                return Err(frame::ENHANCE_YOUR_CALM);
            }
        }
        Ok(())
    }

    /// The connection window `n` bytes of body took, given back (announced once half of
    /// the window is back).
    fn give_back_connection(&mut self, n: u32) {
        if n == 0 {
            return;
        }
        self.recv_used = self.recv_used.saturating_sub(n);
        self.recv_unacked += n;
        if self.recv_unacked >= self.cfg.connection_window / 2 && self.failed.is_none() {
            frame::put_u32(&mut self.out, frame::WINDOW_UPDATE, 0, self.recv_unacked);
            self.recv_unacked = 0;
            self.queued();
        }
    }

    /// What stream `id`'s reader gets next: body bytes are swapped into `buf` (cleared
    /// first), and their window given back to the client.
    pub fn poll_recv(&mut self, id: u32, buf: &mut Vec<u8>, cx: &mut Context<'_>) -> Poll<Recv> {
        let window = self.cfg.window;
        let Some(s) = self.find_mut(id) else { return Poll::Ready(Recv::Reset(0)) };
        if !s.recv.is_empty() {
            buf.clear();
            std::mem::swap(buf, &mut s.recv);
            let n = buf.len() as u32;
            s.recv_unacked += n;
            let update = (!s.recv_closed && s.recv_unacked >= window / 2).then(|| std::mem::take(&mut s.recv_unacked));
            if let Some(u) = update {
                frame::put_u32(&mut self.out, frame::WINDOW_UPDATE, id, u);
            }
            self.give_back_connection(n);
            if update.is_some() {
                self.queued();
            }
            return Poll::Ready(Recv::Data);
        }
        if let Some(code) = s.reset {
            return Poll::Ready(Recv::Reset(code));
        }
        if s.recv_closed {
            return Poll::Ready(match s.trailers.take() {
                Some(t) => Recv::Trailers(t),
                None => Recv::End,
            });
        }
        s.waker = Some(cx.waker().clone());
        Poll::Pending
    }

    /// Ready with the code once the client reset stream `id` (0: the connection ended).
    pub fn poll_reset(&mut self, id: u32, cx: &mut Context<'_>) -> Poll<u32> {
        match self.find_mut(id) {
            None => Poll::Ready(0),
            Some(s) => match s.reset {
                Some(code) => Poll::Ready(code),
                None => {
                    s.waker = Some(cx.waker().clone());
                    Poll::Pending
                }
            },
        }
    }

    /// The caller is done with stream `id` (its task ends): a stream whose response was not
    /// ended is reset (CANCEL), as dropping `h2`'s handles did.
    pub fn release(&mut self, id: u32) {
        let Some(s) = self.find_mut(id) else { return };
        s.released = true;
        s.waker = None;
        let (send_closed, recv_closed) = (s.send_closed, s.recv_closed);
        if self.failed.is_none() {
            if !send_closed {
                let _ = self.reset_stream(id, frame::CANCEL, false);
            } else if !recv_closed {
                // Answered before the request's body ended: the client may stop sending it
                // (RFC 9113 §8.1).
                let _ = self.reset_stream(id, 0, false);
            }
        }
        self.sweep(id);
    }
}

#[cfg(test)]
mod tests;
