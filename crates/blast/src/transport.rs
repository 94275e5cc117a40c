//! The byte stream under a blast connection: the one seam between the connection's loop
//! and the wire, plain TCP or TLS. Connecting measures itself: the TCP connect time, and the
//! TLS handshake's time and kind, go to the shard's set-up figures.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsRawFd, RawFd};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures_lite::io::{AsyncRead, AsyncWriteExt};
use glommio::net::TcpStream;

use engine_tls::{ClientConnection, TlsStream};

pub(crate) enum Stream {
    Tcp(TcpStream),
    Tls(Box<TlsStream<ClientConnection>>),
}

/// How a connection came to be, for the shard's figures.
pub(crate) struct Opened {
    pub stream: Stream,
    pub connect: Duration,
    /// The handshake's time and whether it resumed a session (TLS only).
    pub handshake: Option<(Duration, bool)>,
}

/// Why a connection could not be opened.
pub(crate) enum OpenError {
    /// The TCP connect failed.
    Connect,
    /// TLS failed (or timed out) after the TCP connect.
    Tls(io::Error),
}

/// A TLS handshake on a connected socket, within `timeout`.
async fn handshake(
    tcp: TcpStream,
    client: &engine_tls::Client,
    timeout: Duration,
) -> io::Result<TlsStream<ClientConnection>> {
    let conn = client.connection().map_err(engine_tls::Failure::from_rustls)?;
    let late = async {
        glommio::timer::sleep(timeout).await;
        Err(engine_tls::Failure::timed_out())
    };
    futures_lite::future::or(TlsStream::handshake(tcp, conn), late).await
}

impl Stream {
    /// Connects to `target` within `timeout`, from `source` when given (`--source-ips`), and
    /// with `tls` runs the handshake within `timeout` too.
    pub async fn connect(
        target: SocketAddr,
        source: Option<IpAddr>,
        timeout: Duration,
        tls: Option<&engine_tls::Client>,
    ) -> Result<Opened, OpenError> {
        let t0 = Instant::now();
        let s = match source {
            None => TcpStream::connect_timeout(target, timeout).await,
            Some(ip) => TcpStream::connect_timeout_from(ip, target, timeout).await,
        }
        .map_err(|_| OpenError::Connect)?;
        s.set_nodelay(true).map_err(|_| OpenError::Connect)?;
        let connected = Instant::now();
        let connect = connected - t0;
        let Some(client) = tls else {
            return Ok(Opened { stream: Stream::Tcp(s), connect, handshake: None });
        };
        // Boxed: a handshake's state is kilobytes, and inline it would size every
        // connection's task for its whole life (handshakes run a few hundred at a time).
        let t = Box::pin(handshake(s, client, timeout)).await.map_err(OpenError::Tls)?;
        let resumed = t.negotiated().resumed;
        Ok(Opened { stream: Stream::Tls(Box::new(t)), connect, handshake: Some((connected.elapsed(), resumed)) })
    }

    /// The socket, for the sweeper's shutdown.
    pub fn fd(&self) -> RawFd {
        match self {
            Stream::Tcp(s) => s.as_raw_fd(),
            Stream::Tls(t) => t.fd(),
        }
    }

    pub async fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.write_all(bytes).await,
            Stream::Tls(t) => t.write_all(bytes).await,
        }
    }

    /// Reads what has arrived into `buf` (0: the peer closed).
    pub fn poll_read(&mut self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        match self {
            Stream::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(t) => t.poll_read(cx, buf),
        }
    }

    /// TLS: the peer closed without close_notify, so a body that ends at the close may be cut.
    pub fn truncated(&self) -> bool {
        matches!(self, Stream::Tls(t) if t.truncated())
    }
}
