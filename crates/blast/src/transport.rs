//! The byte stream under a blast connection: the one seam between the connection's loop
//! and the wire, plain TCP or TLS. Connecting measures itself: the TCP connect time, and the
//! TLS handshake's time and kind, go to the shard's set-up figures.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use glommio::net::TcpStream;

use engine_tls::{ClientConnection, TlsStream};

pub(crate) type Stream = engine_tls::Stream<ClientConnection>;

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
    engine_tls::handshake_within(tcp, conn, timeout).await
}

/// Connects to `target` within `timeout`, from `source` when given (`--source-ips`), and
/// with `tls` runs the handshake within `timeout` too, calling `handshaking` as it starts.
pub(crate) async fn connect(
    target: SocketAddr,
    source: Option<IpAddr>,
    timeout: Duration,
    tls: Option<&engine_tls::Client>,
    handshaking: impl FnOnce(),
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
    handshaking();
    // Boxed: a handshake's state is kilobytes, and inline it would size every
    // connection's task for its whole life (handshakes run a few hundred at a time).
    let t = Box::pin(handshake(s, client, timeout)).await.map_err(OpenError::Tls)?;
    let resumed = t.negotiated().resumed;
    Ok(Opened { stream: Stream::Tls(Box::new(t)), connect, handshake: Some((connected.elapsed(), resumed)) })
}
