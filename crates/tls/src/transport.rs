//! A connection's byte stream, plain TCP or TLS: the one type the blast, the proxy and the
//! target read and write through, whichever side of the session they are.

use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_lite::io::{AsyncRead, AsyncWrite};
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

    /// Writes all of `bytes` (TLS: encrypted, after what the read path owes the peer).
    ///
    /// A poll function rather than an `async fn`: its state is a reference, the bytes and a
    /// count (40 bytes), where nested `async fn`s took 96, and the blast keeps one in each
    /// connection's task.
    pub fn write_all<'a>(&'a mut self, bytes: &'a [u8]) -> impl std::future::Future<Output = io::Result<()>> + 'a {
        let mut done = 0usize;
        futures_lite::future::poll_fn(move |cx| self.poll_write_all(cx, bytes, &mut done))
    }

    /// One step of [`Self::write_all`]; `done` is what is already written (TLS: 1 once the
    /// bytes are encrypted and queued).
    fn poll_write_all(&mut self, cx: &mut Context<'_>, bytes: &[u8], done: &mut usize) -> Poll<io::Result<()>> {
        match self {
            Stream::Tcp(s) => {
                while *done < bytes.len() {
                    match Pin::new(&mut *s).poll_write(cx, &bytes[*done..]) {
                        Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                        Poll::Ready(Ok(n)) => *done += n,
                        Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                        Poll::Pending => return Poll::Pending,
                    }
                }
                Poll::Ready(Ok(()))
            }
            Stream::Tls(t) => {
                if *done == 0 {
                    match t.poll_write(cx, bytes) {
                        Poll::Ready(Ok(_)) => *done = 1,
                        Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                        Poll::Pending => return Poll::Pending,
                    }
                }
                t.poll_flush(cx)
            }
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

/// Bytes a tokio read takes at most: what one read of the shard's turn hands `h2`.
const TOKIO_READ: usize = 16 * 1024;

thread_local! {
    /// Where a tokio read lands before it is copied into the caller's buffer: tokio's
    /// `ReadBuf` may be uninitialized, and zero-filling it first (`initialize_unfilled`) cost
    /// `h2` 13% of its throughput (benches/RESULTS.md); copying what was read costs what was
    /// read. Each thread's own, initialized once.
    static TOKIO_BUF: std::cell::RefCell<Box<[u8]>> = std::cell::RefCell::new(vec![0u8; TOKIO_READ].into_boxed_slice());
}

/// tokio's io traits, for a protocol built on them (`h2`) over either kind of stream: a read
/// lands in the thread's buffer and is copied into the caller's unfilled part, never
/// zero-filling it.
impl<S: Side> tokio::io::AsyncRead for Stream<S> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut tokio::io::ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        TOKIO_BUF.with(|b| {
            let mut b = b.borrow_mut();
            let want = buf.remaining().min(b.len());
            match Stream::poll_read(this, cx, &mut b[..want]) {
                Poll::Ready(Ok(n)) => {
                    buf.put_slice(&b[..n]);
                    Poll::Ready(Ok(()))
                }
                Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
                Poll::Pending => Poll::Pending,
            }
        })
    }
}

impl<S: Side> tokio::io::AsyncWrite for Stream<S> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Stream::poll_write(self.get_mut(), cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Stream::poll_flush(self.get_mut(), cx)
    }

    /// What is queued is sent; the socket closes with the stream.
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Stream::poll_flush(self.get_mut(), cx)
    }
}
