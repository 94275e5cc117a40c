//! A connection's byte stream, plain TCP or TLS: the one type the blast, the proxy and the
//! target read and write through, whichever side of the session they are.

use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_lite::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use glommio::net::TcpStream;

use crate::{Failure, Side, TlsStream};

pub enum Stream<S: Side> {
    Tcp(TcpStream),
    /// Boxed: a session is a kilobyte or more, and most connections in a mixed fleet are plain.
    Tls(Box<TlsStream<S>>),
}

/// Runs a TLS handshake on a connected socket, within `timeout`.
pub async fn handshake_within<S: Side>(tcp: TcpStream, conn: S, timeout: Duration) -> io::Result<TlsStream<S>> {
    let late = async {
        glommio::timer::sleep(timeout).await;
        Err(Failure::timed_out())
    };
    futures_lite::future::or(TlsStream::handshake(tcp, conn), late).await
}

impl<S: Side> Stream<S> {
    /// The socket (for socket options and a sweeper's shutdown).
    pub fn fd(&self) -> RawFd {
        match self {
            Stream::Tcp(s) => s.as_raw_fd(),
            Stream::Tls(t) => t.fd(),
        }
    }

    pub fn tcp(&self) -> &TcpStream {
        match self {
            Stream::Tcp(s) => s,
            Stream::Tls(t) => t.tcp(),
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

    /// Writes some of `buf` (TLS: all of it, encrypted and queued for [`Self::poll_flush`]).
    pub fn poll_write(&mut self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self {
            Stream::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(t) => t.poll_write(cx, buf),
        }
    }

    /// Sends whatever a TLS session has queued (a plain socket queues nothing).
    pub fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self {
            Stream::Tcp(_) => Poll::Ready(Ok(())),
            Stream::Tls(t) => t.poll_flush(cx),
        }
    }

    /// Reads what has arrived into `buf` (0: the peer closed).
    pub async fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        futures_lite::future::poll_fn(|cx| self.poll_read(cx, buf)).await
    }

    /// TLS: the peer closed without close_notify, so a body that ends at the close may be cut.
    pub fn truncated(&self) -> bool {
        matches!(self, Stream::Tls(t) if t.truncated())
    }
}
