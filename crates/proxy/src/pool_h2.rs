//! A shard's HTTP/2 connection to the upstream: one, shared by every stream the shard
//! forwards (HTTP/2 multiplexes; the upstream's `SETTINGS_MAX_CONCURRENT_STREAMS` makes
//! further streams wait their turn in `h2`), opened on first use and again after it ends.

use std::cell::{Cell, RefCell};
use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use engine_tls::{ClientConnection, Stream};
use glommio::net::TcpStream;
use glommio::sync::Semaphore;
use h2::client::SendRequest;

/// What the upstream may send before the proxy reads it, per stream and per connection: a
/// slow client holds at most this much per stream (flow control does the rest).
const STREAM_WINDOW: u32 = 256 * 1024;
const CONN_WINDOW: u32 = 4 * 1024 * 1024;

pub(crate) struct H2Upstream {
    addr: SocketAddr,
    /// With TLS: this shard's client, offering only `h2` by ALPN.
    tls: Option<engine_tls::Client>,
    connect_timeout: Duration,
    current: RefCell<Option<Open>>,
    /// One connect at a time: streams arriving meanwhile wait for it rather than each
    /// opening a connection of its own.
    connecting: Semaphore,
}

/// The connection in use, and whether its task has ended.
type Open = (SendRequest<Bytes>, Rc<Cell<bool>>);

/// A new upstream connection's TLS handshake, for the shard's figures: how long, and resumed.
pub(crate) type Handshake = Option<(Duration, bool)>;

impl H2Upstream {
    pub fn new(addr: SocketAddr, tls: Option<engine_tls::Client>, connect_timeout: Duration) -> Self {
        H2Upstream {
            addr,
            tls: tls.map(|c| c.with_alpn(&[engine_tls::ALPN_H2])),
            connect_timeout,
            current: RefCell::new(None),
            connecting: Semaphore::new(1),
        }
    }

    /// The connection's handle for a new stream: the open connection's, or a new one's (and
    /// then its TLS handshake, if any).
    pub async fn sender(&self) -> io::Result<(SendRequest<Bytes>, Handshake)> {
        if let Some(s) = self.live() {
            return Ok((s, None));
        }
        let _one = self.connecting.acquire_permit(1).await.map_err(|_| io::Error::other("shard stopping"))?;
        if let Some(s) = self.live() {
            return Ok((s, None));
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
        let ended = Rc::new(Cell::new(false));
        let flag = ended.clone();
        glommio::spawn_local(async move {
            let _ = conn.await;
            flag.set(true);
        })
        .detach();
        *self.current.borrow_mut() = Some((send.clone(), ended));
        Ok((send, handshake))
    }

    /// The open connection's handle, unless it has ended.
    fn live(&self) -> Option<SendRequest<Bytes>> {
        let mut current = self.current.borrow_mut();
        match &*current {
            Some((s, ended)) if !ended.get() => Some(s.clone()),
            _ => {
                *current = None;
                None
            }
        }
    }

    /// Forgets the connection (a stream could not be opened on it): the next stream opens
    /// another; streams on this one finish on it.
    pub fn forget(&self) {
        self.current.borrow_mut().take();
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

/// An `h2` error as I/O: its own I/O error when it has one.
pub(crate) fn to_io(e: h2::Error) -> io::Error {
    if e.is_io() {
        return e.into_io().unwrap_or_else(|| io::Error::other("h2 I/O"));
    }
    io::Error::other(e)
}
