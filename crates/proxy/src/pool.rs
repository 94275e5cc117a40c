//! A shard's keep-alive connections to the upstream. Reused last-in first-out: the most
//! recently used connection is the least likely to have been closed by the upstream's idle
//! timeout. Connections idle longer than the idle timeout are closed (oldest first), so a
//! burst's extra connections do not hold descriptors here and on the upstream for ever.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use engine_tls::{ClientConnection, Stream};
use glommio::net::TcpStream;

use crate::iobuf::IoBuf;

/// Idle upstream connections kept per shard; more are closed. A few hundred covers the
/// concurrency of a busy shard without holding thousands of sockets on the upstream.
const MAX_IDLE: usize = 512;
/// First read buffer of an upstream connection: most responses to small requests fit; larger
/// ones grow it (see [`IoBuf`]). Held per pooled connection, so it is kept small.
const BUF: usize = 4 * 1024;

pub(crate) struct Upstream {
    pub stream: Stream<ClientConnection>,
    pub buf: IoBuf,
    /// A new TLS connection's handshake, for the shard's figures: how long, and resumed.
    pub handshake: Option<(Duration, bool)>,
    /// Came from the pool: a failure before any response byte may be a connection the
    /// upstream closed while idle, and a bodiless request is retried once on a fresh one.
    pub reused: bool,
}

pub(crate) struct Pool {
    addr: SocketAddr,
    /// This shard's TLS client for the upstream: its own session cache, so reconnects resume.
    tls: Option<engine_tls::Client>,
    connect_timeout: Duration,
    keep_idle: Duration,
    /// Most recently returned at the back, with the time it was returned.
    idle: RefCell<VecDeque<(Upstream, Instant)>>,
}

impl Pool {
    pub fn new(
        addr: SocketAddr,
        tls: Option<engine_tls::Client>,
        connect_timeout: Duration,
        keep_idle: Duration,
    ) -> Self {
        Pool { addr, tls, connect_timeout, keep_idle, idle: RefCell::new(VecDeque::new()) }
    }

    /// An idle connection, or a new one. With `checked`, idle connections the upstream has
    /// closed meanwhile are skipped: a request with a body cannot be retried once sent, so it
    /// pays one non-blocking peek to avoid a dead connection (bodiless requests retry instead).
    pub async fn get(&self, checked: bool) -> io::Result<Upstream> {
        while let Some((mut up, _)) = self.idle.borrow_mut().pop_back() {
            if checked && !alive(up.stream.fd()) {
                continue;
            }
            up.reused = true;
            return Ok(up);
        }
        self.connect().await
    }

    /// A new connection; with TLS, its handshake within the connect timeout too. A TLS
    /// failure is an [`engine_tls::Failure`] inside the error.
    pub async fn connect(&self) -> io::Result<Upstream> {
        let tcp = TcpStream::connect_timeout(self.addr, self.connect_timeout).await?;
        tcp.set_nodelay(true)?;
        let (stream, handshake) = match &self.tls {
            None => (Stream::Tcp(tcp), None),
            Some(client) => {
                let t0 = Instant::now();
                let conn = client.connection().map_err(engine_tls::Failure::from_rustls)?;
                // Boxed: a handshake's state is kilobytes; the connection's future stays small.
                let tls = Box::pin(engine_tls::handshake_within(tcp, conn, self.connect_timeout)).await?;
                let resumed = tls.negotiated().resumed;
                (Stream::Tls(Box::new(tls)), Some((t0.elapsed(), resumed)))
            }
        };
        Ok(Upstream { stream, buf: IoBuf::with_capacity(BUF), handshake, reused: false })
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
/// (With TLS, a close_notify the upstream sent counts as closed: bytes are waiting.)
fn alive(fd: std::os::fd::RawFd) -> bool {
    let mut b = 0u8;
    // SAFETY: a one-byte peek into a valid local on an open socket we own.
    let n = unsafe { libc::recv(fd, (&mut b as *mut u8).cast(), 1, libc::MSG_PEEK | libc::MSG_DONTWAIT) };
    n < 0 && matches!(io::Error::last_os_error().kind(), io::ErrorKind::WouldBlock)
}
