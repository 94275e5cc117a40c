//! The byte stream under a blast connection: the one seam between the connection's loop
//! and the wire. Plain TCP today; TLS is another variant here, and nothing above changes.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsRawFd, RawFd};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_lite::io::{AsyncRead, AsyncWriteExt};
use glommio::net::TcpStream;

pub(crate) enum Stream {
    Tcp(TcpStream),
}

impl Stream {
    /// Connects to `target` within `timeout`, from `source` when given (`--source-ips`).
    pub async fn connect(target: SocketAddr, source: Option<IpAddr>, timeout: Duration) -> io::Result<Stream> {
        let s = match source {
            None => TcpStream::connect_timeout(target, timeout).await?,
            Some(ip) => TcpStream::connect_timeout_from(ip, target, timeout).await?,
        };
        s.set_nodelay(true)?;
        Ok(Stream::Tcp(s))
    }

    /// The socket, for the sweeper's shutdown.
    pub fn fd(&self) -> RawFd {
        match self {
            Stream::Tcp(s) => s.as_raw_fd(),
        }
    }

    pub async fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.write_all(bytes).await,
        }
    }

    /// Reads what has arrived into `buf` (0: the peer closed).
    pub fn poll_read(&mut self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        match self {
            Stream::Tcp(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}
