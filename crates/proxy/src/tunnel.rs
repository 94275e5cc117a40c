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

use crate::shard::Shard;
use crate::slot::{Slot, Wait};

/// Bytes read from one side before they are written to the other: two such buffers are most
/// of what an open tunnel costs.
const CHUNK: usize = 8 * 1024;

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
    buf: Box<[u8]>,
    at: usize,
    end: usize,
    /// The reading side closed: once the buffer is written, the writing side is half-closed.
    eof: bool,
    done: bool,
    moved: u64,
}

impl Half {
    fn new() -> Self {
        Half { buf: vec![0; CHUNK].into_boxed_slice(), at: 0, end: 0, eof: false, done: false, moved: 0 }
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
            while self.at < self.end {
                match to.poll_write(cx, &self.buf[self.at..self.end]) {
                    Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                    Poll::Ready(Ok(n)) => {
                        self.at += n;
                        self.moved += n as u64;
                    }
                    other => return other.map(|r| r.map(drop)),
                }
            }
            if let Poll::Ready(Err(e)) = to.poll_flush(cx) {
                return Poll::Ready(Err(e));
            }
            if self.eof {
                // TLS: the peer sees the end of the stream without close_notify, as it would
                // from the server the proxy stands in for closing its socket.
                shutdown(to.fd(), How::Write);
                self.done = true;
                break;
            }
            match from.poll_read(cx, &mut self.buf) {
                Poll::Ready(Ok(0)) => self.eof = true,
                Poll::Ready(Ok(n)) => (self.at, self.end) = (0, n),
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
        Poll::Ready(Ok(()))
    }
}

/// The tunnel between `down` (the client) and `up` until both halves close or it ends
/// otherwise; bytes moved are counted into the shard's figures as they go.
pub(crate) async fn splice(
    shard: &Shard,
    slot: &Slot,
    down: &mut Stream<ServerConnection>,
    up: &mut Stream<ClientConnection>,
) -> (Moved, io::Result<()>) {
    let idle = shard.shared.limits.idle_timeout;
    let _armed = slot.arm(Wait::Tunnel, up.fd(), shard.deadline(idle));
    let mut s =
        Splice { shard, slot, idle, down, up, to_up: Half::new(), to_down: Half::new(), counted: Moved::default() };
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
}

impl Future for Splice<'_> {
    type Output = io::Result<()>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let s = self.get_mut();
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
