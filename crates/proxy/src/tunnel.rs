//! Upgrade tunnels: after a `101 Switching Protocols` the client and upstream connections
//! carry the new protocol's bytes both ways, until each side has closed its half, or the
//! tunnel sat idle past the idle timeout, or a drain, or an error.
//!
//! One task drives both directions. glommio's socket reads and writes are poll-based with a
//! source each, so one future polls the four of them; nothing is split or shared between
//! tasks, and TLS sessions (which cannot be split) work the same way.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use engine_runtime::fd::{shutdown, How};
use engine_tls::{ClientConnection, ServerConnection, Side, Stream};

use crate::book::Active;
use crate::inject::End;
use crate::shape::{Shape, Shaper};
use crate::shard::Shard;
use crate::slot::{Slot, Wait};

/// Bytes read from one side before they are written to the other: two such buffers (the
/// connection's own read buffers, reused) are most of what an open tunnel costs.
const CHUNK: usize = 4 * 1024;

/// Bytes moved through a tunnel, each way.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Moved {
    /// Client to upstream.
    pub up: u64,
    /// Upstream to client.
    pub down: u64,
}

/// One direction: bytes read from one side, waiting to be written to the other.
struct Half {
    buf: Vec<u8>,
    at: usize,
    end: usize,
    /// The reading side closed: once the buffer is written, the writing side is half-closed.
    eof: bool,
    done: bool,
    moved: u64,
    /// The stream faults of this direction, and the wait they impose now.
    shaper: Shaper,
    wait: Option<glommio::timer::Timer>,
    /// A slow_close fault: how long to hold the half-close once the reading side closed.
    hold: Option<Duration>,
}

impl Half {
    /// A direction reading into `buf` (whatever it held is dropped).
    fn new(shape: Shape, mut buf: Vec<u8>) -> Self {
        buf.resize(CHUNK, 0);
        buf.shrink_to(CHUNK);
        let shaper = Shaper::new(shape);
        let hold = shaper.slow_close();
        Half { buf, at: 0, end: 0, eof: false, done: false, moved: 0, shaper, wait: None, hold }
    }

    /// New stream faults for the bytes still to come (a rule changed).
    fn reshape(&mut self, shape: Shape) {
        self.shaper = Shaper::new(shape);
        self.hold = self.shaper.slow_close();
    }

    fn pause(&mut self, d: Duration) {
        if !d.is_zero() {
            self.wait = Some(glommio::timer::Timer::new(d));
        }
    }

    /// Moves bytes until `from` has nothing more for now (`Pending`) or has closed and all
    /// of it reached `to` (`Ready(Ok)`).
    fn poll<A: Side, B: Side>(
        &mut self,
        cx: &mut Context<'_>,
        from: &mut Stream<A>,
        to: &mut Stream<B>,
    ) -> Poll<io::Result<()>> {
        while !self.done {
            if let Some(t) = &mut self.wait {
                if Pin::new(t).poll(cx).is_pending() {
                    return Poll::Pending;
                }
                self.wait = None;
            }
            if self.at < self.end {
                let piece = match self.shaper.piece(self.end - self.at) {
                    Ok(n) => n,
                    Err(_) => return Poll::Ready(Err(io::Error::other("a limit_data fault's bytes have passed"))),
                };
                match to.poll_write(cx, &self.buf[self.at..self.at + piece]) {
                    Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                    Poll::Ready(Ok(n)) => {
                        self.at += n;
                        self.moved += n as u64;
                        let wait = self.shaper.wrote(n);
                        self.pause(wait);
                    }
                    other => return other.map(|r| r.map(drop)),
                }
                continue;
            }
            match to.poll_flush(cx) {
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                // Queued TLS bytes go out before the half-close.
                Poll::Pending if self.eof => return Poll::Pending,
                _ => {}
            }
            if self.eof {
                if let Some(hold) = self.hold.take() {
                    self.pause(hold);
                    continue;
                }
                // TLS: the peer sees the end of the stream without close_notify, as it would
                // from the server the proxy stands in for closing its socket.
                shutdown(to.fd(), How::Write);
                self.done = true;
                break;
            }
            match from.poll_read(cx, &mut self.buf) {
                Poll::Ready(Ok(0)) => self.eof = true,
                Poll::Ready(Ok(n)) => {
                    (self.at, self.end) = (0, n);
                    let wait = self.shaper.before_chunk();
                    self.pause(wait);
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
        Poll::Ready(Ok(()))
    }
}

/// The tunnel between `down` (the client) and `up` until both halves close or it ends
/// otherwise, under the stream faults `shapes` (to the upstream, to the client), reading into
/// `bufs` (from the client, from the upstream); bytes moved are counted into the shard's
/// figures as they go. `recheck` (TCP mode, with the connection's place among active faults):
/// when the rules change, the connection takes them again for the bytes that follow.
pub(crate) async fn splice(
    shard: &Shard,
    slot: &Slot,
    down: &mut Stream<ServerConnection>,
    up: &mut Stream<ClientConnection>,
    shapes: (Shape, Shape),
    bufs: (Vec<u8>, Vec<u8>),
    recheck: Option<Option<Active>>,
) -> (Moved, io::Result<()>) {
    let idle = shard.shared.limits.idle_timeout;
    let _armed = slot.arm(Wait::Tunnel, up.fd(), shard.deadline(idle));
    let (to_up, to_down) = (Half::new(shapes.0, bufs.0), Half::new(shapes.1, bufs.1));
    let rules = recheck.map(|active| (shard.faults.borrow().version(), active));
    let mut s = Splice { shard, slot, idle, down, up, to_up, to_down, counted: Moved::default(), rules };
    let r = (&mut s).await;
    (s.counted, r)
}

struct Splice<'a> {
    shard: &'a Shard,
    slot: &'a Slot,
    idle: Duration,
    down: &'a mut Stream<ServerConnection>,
    up: &'a mut Stream<ClientConnection>,
    to_up: Half,
    to_down: Half,
    counted: Moved,
    /// TCP mode: the rules' version the faults were taken at, and the connection's place among
    /// active faults since it took them again.
    rules: Option<(u64, Option<Active>)>,
}

impl Splice<'_> {
    /// TCP mode: the rules changed since the connection took them: their stream faults now
    /// apply to the bytes that follow, and a `reset` resets it. `Err` when it was reset.
    fn retake(&mut self) -> io::Result<()> {
        let Some((version, _)) = &self.rules else { return Ok(()) };
        let now = self.shard.faults.borrow().version();
        if now == *version {
            return Ok(());
        }
        let d = self.shard.faults.borrow_mut().decide_connection();
        self.shard.stats.borrow_mut().stream_faults(d.stream_kinds);
        self.to_up.reshape(d.up);
        self.to_down.reshape(d.down);
        self.rules = Some((now, d.active));
        if let Some(End::Reset(_)) = d.end {
            self.shard.stats.borrow_mut().fault(crate::faults::FaultKind::Reset);
            engine_runtime::fd::reset_on_close(self.down.fd());
            return Err(io::ErrorKind::ConnectionReset.into());
        }
        Ok(())
    }
}

impl Future for Splice<'_> {
    type Output = io::Result<()>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let s = self.get_mut();
        if let Err(e) = s.retake() {
            return Poll::Ready(Err(e));
        }
        let a = s.to_up.poll(cx, s.down, s.up);
        let b = s.to_down.poll(cx, s.up, s.down);
        let (up, down) = (s.to_up.moved - s.counted.up, s.to_down.moved - s.counted.down);
        if up + down > 0 {
            s.counted = Moved { up: s.to_up.moved, down: s.to_down.moved };
            s.shard.stats.borrow_mut().tunnel_bytes(up, down);
            s.slot.extend(s.shard.deadline(s.idle));
        }
        if s.slot.expired().is_some() {
            return Poll::Ready(Err(io::ErrorKind::TimedOut.into()));
        }
        match (a, b) {
            (Poll::Ready(Err(e)), _) | (_, Poll::Ready(Err(e))) => Poll::Ready(Err(e)),
            (Poll::Ready(Ok(())), Poll::Ready(Ok(()))) => Poll::Ready(Ok(())),
            _ => Poll::Pending,
        }
    }
}
