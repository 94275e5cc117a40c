//! A read buffer that is zeroed once, not per read: the bytes `start..end` are unread, the
//! room after `end` takes the next read. Consumed bytes are dropped by moving `start`; the
//! unread rest moves to the front only when a read finds no room left.
//!
//! Buffers start small (a proxy holds one per connection, thousands of them) and double when
//! a read fills them, up to [`GROW_LIMIT`] for streaming, or further only to complete a head.

use std::io;
use std::ops::Deref;
use std::pin::Pin;

use std::task::{Context, Poll};

use futures_lite::future::poll_fn;
use futures_lite::io::AsyncRead;
use glommio::net::TcpStream;

/// What a buffer reads from: a plain socket (the admin API) or a connection's stream.
pub(crate) trait Source {
    fn poll_read_into(&mut self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>>;
}

impl Source for TcpStream {
    fn poll_read_into(&mut self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        Pin::new(self).poll_read(cx, buf)
    }
}

impl<S: engine_tls::Side> Source for engine_tls::Stream<S> {
    fn poll_read_into(&mut self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        self.poll_read(cx, buf)
    }
}

/// Reads that fill the buffer double it up to this size: large bodies then move in 64 KiB
/// reads, not thousands of small ones.
pub(crate) const GROW_LIMIT: usize = 64 * 1024;

pub(crate) struct IoBuf {
    data: Vec<u8>,
    start: usize,
    end: usize,
}

impl IoBuf {
    pub fn with_capacity(n: usize) -> Self {
        IoBuf { data: vec![0; n.max(16)], start: 0, end: 0 }
    }

    /// The buffer's memory, for another use (an upgrade tunnel's).
    pub fn into_vec(self) -> Vec<u8> {
        self.data
    }

    /// Drops the first `n` unread bytes.
    pub fn consume(&mut self, n: usize) {
        self.start = (self.start + n).min(self.end);
        if self.start == self.end {
            self.clear();
        }
    }

    pub fn clear(&mut self) {
        self.start = 0;
        self.end = 0;
    }

    pub fn capacity(&self) -> usize {
        self.data.len()
    }

    /// Room for the next read: compacts, or doubles when the unread bytes fill the buffer.
    fn spare(&mut self) -> &mut [u8] {
        if self.end == self.data.len() {
            if self.start > 0 {
                self.data.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            } else {
                self.data.resize(self.data.len() * 2, 0);
            }
        }
        &mut self.data[self.end..]
    }

    /// Reads what is available. `Ok(0)` is the end of the stream.
    pub async fn read_from(&mut self, s: &mut impl Source) -> io::Result<usize> {
        let room = self.spare();
        let want = room.len();
        let n = poll_fn(|cx| s.poll_read_into(cx, &mut *room)).await?;
        self.end += n;
        if n == want && self.data.len() < GROW_LIMIT {
            self.data.resize(self.data.len() * 2, 0);
        }
        Ok(n)
    }
}

impl Deref for IoBuf {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        &self.data[self.start..self.end]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consumes_compacts_and_grows() {
        let mut b = IoBuf::with_capacity(16);
        b.spare()[..10].copy_from_slice(b"0123456789");
        b.end += 10;
        b.consume(4);
        assert_eq!(&*b, b"456789");
        b.spare()[..6].copy_from_slice(b"abcdef");
        b.end += 6;
        assert_eq!(b.spare().len(), 4, "compacted to the front");
        assert_eq!(&*b, b"456789abcdef");
        b.end += b.spare().len();
        assert_eq!(b.spare().len(), 16, "doubled when full");
        b.consume(1000);
        assert!(b.is_empty());
    }
}
