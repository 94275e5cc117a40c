//! A shard's keep-alive connections to the upstream. Reused last-in first-out: the most
//! recently used connection is the least likely to have been closed by the upstream's idle
//! timeout. Connections idle longer than the idle timeout are closed (oldest first), so a
//! burst's extra connections do not hold descriptors here and on the upstream for ever.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use glommio::net::TcpStream;

use crate::iobuf::IoBuf;

/// Idle upstream connections kept per shard; more are closed. A few hundred covers the
/// concurrency of a busy shard without holding thousands of sockets on the upstream.
const MAX_IDLE: usize = 512;
/// First read buffer of an upstream connection: most responses to small requests fit; larger
/// ones grow it (see [`IoBuf`]). Held per pooled connection, so it is kept small.
const BUF: usize = 4 * 1024;

pub(crate) struct Upstream {
    pub stream: TcpStream,
    pub buf: IoBuf,
    /// Came from the pool: a failure before any response byte may be a connection the
    /// upstream closed while idle, and a bodiless request is retried once on a fresh one.
    pub reused: bool,
}

pub(crate) struct Pool {
    addr: SocketAddr,
    connect_timeout: Duration,
    keep_idle: Duration,
    /// Most recently returned at the back, with the time it was returned.
    idle: RefCell<VecDeque<(Upstream, Instant)>>,
}

impl Pool {
    pub fn new(addr: SocketAddr, connect_timeout: Duration, keep_idle: Duration) -> Self {
        Pool { addr, connect_timeout, keep_idle, idle: RefCell::new(VecDeque::new()) }
    }

    /// An idle connection, or a new one. With `checked`, idle connections the upstream has
    /// closed meanwhile are skipped: a request with a body cannot be retried once sent, so it
    /// pays one non-blocking peek to avoid a dead connection (bodiless requests retry instead).
    pub async fn get(&self, checked: bool) -> io::Result<Upstream> {
        while let Some((mut up, _)) = self.idle.borrow_mut().pop_back() {
            if checked && !alive(&up.stream) {
                continue;
            }
            up.reused = true;
            return Ok(up);
        }
        self.connect().await
    }

    pub async fn connect(&self) -> io::Result<Upstream> {
        let stream = TcpStream::connect_timeout(self.addr, self.connect_timeout).await?;
        stream.set_nodelay(true)?;
        Ok(Upstream { stream, buf: IoBuf::with_capacity(BUF), reused: false })
    }

    /// Returns a connection whose last response ended cleanly; `now` is the shard's clock.
    pub fn put(&self, mut up: Upstream, now: Instant) {
        let mut idle = self.idle.borrow_mut();
        if idle.len() < MAX_IDLE {
            up.buf.clear();
            if up.buf.capacity() > 4 * BUF {
                // A big response grew it; do not keep that memory per idle connection.
                up.buf = IoBuf::with_capacity(BUF);
            }
            idle.push_back((up, now));
        }
    }

    /// Closes the connections idle for longer than the idle timeout.
    pub fn expire(&self, now: Instant) {
        let mut idle = self.idle.borrow_mut();
        while idle.front().is_some_and(|(_, since)| now.saturating_duration_since(*since) > self.keep_idle) {
            idle.pop_front();
        }
    }

    /// Closes every idle connection (drain).
    pub fn clear(&self) {
        self.idle.borrow_mut().clear();
    }
}

/// True when an idle connection has neither been closed nor sent anything unasked.
fn alive(stream: &TcpStream) -> bool {
    use std::os::fd::AsRawFd;
    let mut b = 0u8;
    // SAFETY: a one-byte peek into a valid local on an open socket we own.
    let n =
        unsafe { libc::recv(stream.as_raw_fd(), (&mut b as *mut u8).cast(), 1, libc::MSG_PEEK | libc::MSG_DONTWAIT) };
    n < 0 && matches!(io::Error::last_os_error().kind(), io::ErrorKind::WouldBlock)
}
