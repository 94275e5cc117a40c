//! A shard's HTTP/2 connections to the upstream: a small pool of multiplexed connections. A
//! stream goes on the first connection with room under the upstream's
//! `SETTINGS_MAX_CONCURRENT_STREAMS`; when every one is full, another is opened, up to
//! [`MAX_CONNS`]; past that, streams wait their turn on the least busy one (in `h2`). A
//! connection that ends is replaced on the next stream; one without streams for the idle
//! timeout is closed, as the HTTP/1.1 pool's are.

use std::cell::{Cell, RefCell};
use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use engine_tls::{ClientConnection, Stream};
use glommio::net::TcpStream;
use glommio::sync::Semaphore;
use h2::client::{ResponseFuture, SendRequest};
use h2::SendStream;
use http::Request;

use crate::stats::UpstreamError;

/// What the upstream may send before the proxy reads it, per stream and per connection: a
/// slow client holds at most this much per stream (flow control does the rest).
const STREAM_WINDOW: u32 = 256 * 1024;
const CONN_WINDOW: u32 = 4 * 1024 * 1024;
/// Connections to the upstream per shard, at most: with the common limits of 100–250 streams
/// each, thousands of streams at once before any waits.
pub(crate) const MAX_CONNS: usize = 16;

pub(crate) struct H2Upstream {
    addr: SocketAddr,
    /// With TLS: this shard's client, offering only `h2` by ALPN.
    tls: Option<engine_tls::Client>,
    connect_timeout: Duration,
    conns: RefCell<Vec<Conn>>,
    /// One connect at a time: streams arriving meanwhile wait for it rather than each
    /// opening a connection of its own.
    connecting: Semaphore,
}

/// One open connection: its handle, its state, and since when the tick has seen it unused.
struct Conn {
    send: SendRequest<Bytes>,
    state: Rc<State>,
    idle_since: Cell<Option<Instant>>,
}

/// What a connection's streams and its task tell the pool.
#[derive(Default)]
struct State {
    /// Streams in progress.
    active: Cell<usize>,
    /// Its task ended, or a stream could not be opened on it: no new streams.
    ended: Cell<bool>,
    /// A stream ended since the last tick (no clock read per stream).
    used: Cell<bool>,
}

/// A stream's place on its connection, held while the stream lasts.
pub(crate) struct Lease(Rc<State>);

impl Lease {
    /// The connection failed to take a stream: the next stream does not use it (streams on
    /// it finish on it).
    pub fn forget(&self) {
        self.0.ended.set(true);
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.0.active.set(self.0.active.get() - 1);
        self.0.used.set(true);
    }
}

/// A new upstream connection's TLS handshake, for the shard's figures: how long, and resumed.
pub(crate) type Handshake = Option<(Duration, bool)>;

/// A stream opened on the pool.
pub(crate) struct Opened {
    pub response: ResponseFuture,
    pub body: SendStream<Bytes>,
    pub lease: Lease,
    pub handshake: Handshake,
}

/// Times a stream the upstream refused is sent again: REFUSED_STREAM says the upstream did
/// nothing with it (RFC 9113 §8.7), and a burst on a new connection, before its SETTINGS
/// said how many streams it takes, can be refused; each refusal settles one connection's
/// limit, so this many rounds see every connection of a full pool settled.
pub(crate) const REFUSED_RETRIES: u32 = MAX_CONNS as u32 + 2;

/// The upstream refused the stream without acting on it.
pub(crate) fn refused(e: &h2::Error) -> bool {
    e.reason() == Some(h2::Reason::REFUSED_STREAM)
}

impl H2Upstream {
    pub fn new(addr: SocketAddr, tls: Option<engine_tls::Client>, connect_timeout: Duration) -> Self {
        H2Upstream {
            addr,
            tls: tls.map(|c| c.with_alpn(&[engine_tls::ALPN_H2])),
            connect_timeout,
            conns: RefCell::new(Vec::new()),
            connecting: Semaphore::new(1),
        }
    }

    /// A handle for a new stream and its lease: on a connection with room, or a new one (and
    /// then its TLS handshake, if any), or the least busy when the pool is full.
    async fn sender(&self) -> io::Result<(SendRequest<Bytes>, Lease, Handshake)> {
        if let Some(s) = self.with_room(false) {
            return Ok((s.0, s.1, None));
        }
        let _one = self.connecting.acquire_permit(1).await.map_err(|_| io::Error::other("shard stopping"))?;
        if let Some(s) = self.with_room(false) {
            return Ok((s.0, s.1, None));
        }
        if self.conns.borrow().len() >= MAX_CONNS {
            let s = self.with_room(true).ok_or_else(|| io::Error::other("no upstream connection"))?;
            return Ok((s.0, s.1, None));
        }
        let (stream, handshake) = self.connect().await?;
        let mut builder = h2::client::Builder::new();
        builder.initial_window_size(STREAM_WINDOW).initial_connection_window_size(CONN_WINDOW);
        let late = async {
            glommio::timer::sleep(self.connect_timeout).await;
            Err(io::Error::new(io::ErrorKind::TimedOut, "the upstream's HTTP/2 handshake timed out"))
        };
        let opened = async { builder.handshake::<_, Bytes>(stream).await.map_err(to_io) };
        let (send, conn) = futures_lite::future::or(opened, late).await?;
        let state = Rc::new(State::default());
        let flag = state.clone();
        glommio::spawn_local(async move {
            let _ = conn.await;
            flag.ended.set(true);
        })
        .detach();
        let c = Conn { send, state, idle_since: Cell::new(None) };
        let taken = lease(&c);
        self.conns.borrow_mut().push(c);
        Ok((taken.0, taken.1, handshake))
    }

    /// Opens a stream for `request` (`end`: it has no body) on a connection of the pool: the
    /// response to await, the body's sender, the stream's lease, and a new connection's TLS
    /// handshake.
    pub async fn open(&self, request: Request<()>, end: bool) -> Result<Opened, UpstreamError> {
        let (sender, lease, handshake) = self.sender().await.map_err(|_| UpstreamError::Refused)?;
        // A fresh handle is ready at once (h2 holds streams over the upstream's limit itself),
        // or fails when its connection has ended.
        let Ok(mut sender) = sender.ready().await else {
            lease.forget();
            return Err(UpstreamError::Refused);
        };
        let Ok((response, body)) = sender.send_request(request, end) else {
            lease.forget();
            return Err(UpstreamError::Reset);
        };
        Ok(Opened { response, body, lease, handshake })
    }

    /// The first live connection with room for a stream under the upstream's limit (with
    /// `any`, the least busy live one); ended connections are dropped on the way.
    fn with_room(&self, any: bool) -> Option<(SendRequest<Bytes>, Lease)> {
        let mut conns = self.conns.borrow_mut();
        conns.retain(|c| !c.state.ended.get());
        let c = if any {
            conns.iter().min_by_key(|c| c.state.active.get())
        } else {
            conns.iter().find(|c| c.state.active.get() < c.send.current_max_send_streams())
        };
        c.map(lease)
    }

    /// Closes the connections no stream has used for `idle` (`now`: the shard's tick clock;
    /// `idle` zero: every unused one, as a drain does). Dropping the pool's handle ends a
    /// connection once its last stream has: `h2` then sends GOAWAY and closes it.
    pub fn expire(&self, now: Instant, idle: Duration) {
        self.conns.borrow_mut().retain(|c| {
            let s = &c.state;
            if s.ended.get() {
                return false;
            }
            if s.active.get() > 0 || s.used.replace(false) {
                c.idle_since.set(None);
                return s.active.get() > 0 || !idle.is_zero();
            }
            let since = c.idle_since.get().unwrap_or(now);
            c.idle_since.set(Some(since));
            now.saturating_duration_since(since) < idle
        });
    }

    async fn connect(&self) -> io::Result<(Stream<ClientConnection>, Handshake)> {
        let tcp = TcpStream::connect_timeout(self.addr, self.connect_timeout).await?;
        tcp.set_nodelay(true)?;
        let Some(client) = &self.tls else { return Ok((Stream::Tcp(tcp), None)) };
        let t0 = Instant::now();
        let conn = client.connection().map_err(engine_tls::Failure::from_rustls)?;
        let tls = Box::pin(engine_tls::handshake_within(tcp, conn, self.connect_timeout)).await?;
        if tls.negotiated().alpn != Some("h2") {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "the upstream did not agree to HTTP/2 by ALPN (--upstream-protocol h2 needs an h2 server)",
            ));
        }
        let resumed = tls.negotiated().resumed;
        Ok((Stream::Tls(Box::new(tls)), Some((t0.elapsed(), resumed))))
    }
}

/// A new stream's handle and lease on `c`.
fn lease(c: &Conn) -> (SendRequest<Bytes>, Lease) {
    c.state.active.set(c.state.active.get() + 1);
    (c.send.clone(), Lease(c.state.clone()))
}

/// An `h2` error as I/O: its own I/O error when it has one.
pub(crate) fn to_io(e: h2::Error) -> io::Error {
    if e.is_io() {
        return e.into_io().unwrap_or_else(|| io::Error::other("h2 I/O"));
    }
    io::Error::other(e)
}
