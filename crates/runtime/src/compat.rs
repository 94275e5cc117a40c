//! A glommio socket as tokio's io traits see it, for crates that speak a protocol over those
//! traits without needing tokio's runtime (`h2`). Bytes already read off the socket (a
//! protocol's preface, sniffed) are handed out first.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_lite::{AsyncBufRead, AsyncWrite};

/// `S` (a buffered glommio stream: `futures` io traits) behind tokio's `AsyncRead` and
/// `AsyncWrite`.
pub struct TokioIo<S> {
    inner: S,
    /// Read before the protocol took the socket; served before the socket's own bytes.
    prefix: Vec<u8>,
    at: usize,
}

impl<S> TokioIo<S> {
    /// `prefix`: bytes already read from `inner`, to be read again first.
    pub fn new(inner: S, prefix: Vec<u8>) -> Self {
        TokioIo { inner, prefix, at: 0 }
    }

    pub fn get_ref(&self) -> &S {
        &self.inner
    }
}

impl<S: AsyncBufRead + Unpin> tokio::io::AsyncRead for TokioIo<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.at < this.prefix.len() {
            let n = (this.prefix.len() - this.at).min(buf.remaining());
            buf.put_slice(&this.prefix[this.at..this.at + n]);
            this.at += n;
            if this.at == this.prefix.len() {
                this.prefix = Vec::new();
                this.at = 0;
            }
            return Poll::Ready(Ok(()));
        }
        // Out of the socket's own buffer into the caller's unfilled part, which is never
        // zero-filled first (`initialize_unfilled` cost `h2` 13% of its throughput:
        // benches/RESULTS.md, the h2 spike).
        let mut inner = Pin::new(&mut this.inner);
        match inner.as_mut().poll_fill_buf(cx) {
            Poll::Ready(Ok(data)) => {
                let n = data.len().min(buf.remaining());
                buf.put_slice(&data[..n]);
                inner.consume(n);
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<S: AsyncWrite + Unpin> tokio::io::AsyncWrite for TokioIo<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_close(cx)
    }
}
