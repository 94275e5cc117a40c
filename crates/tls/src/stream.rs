//! A TLS connection over a glommio socket, on rustls's unbuffered API: ciphertext is read into
//! the thread's one scratch buffer and decrypted there, plaintext goes straight into the
//! caller's buffer. An idle connection holds no buffer: only a record split across reads is
//! kept until the rest arrives, and plaintext that did not fit the caller's buffer until it is
//! read. The session's state is [`Session`]'s; this moves its bytes to and from the socket.

use std::cell::RefCell;
use std::future::Future;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::pin::Pin;
use std::task::{Context, Poll};

use crate::session::{Need, Negotiated, Session, Side};
use crate::{Failure, Reason};
use futures_lite::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use glommio::net::TcpStream;

/// The scratch buffer: a read of several records at once. The largest record on the wire
/// is 16 KiB of plaintext plus 2 KiB of overhead (TLS 1.2), so a split one always fits.
pub const SCRATCH: usize = 64 * 1024;
/// Handshake reads go into the session's held front this much at a time.
const HANDSHAKE_READ: usize = 4096;
/// Socket reads one `poll_read` makes that bring no plaintext (tickets, key updates, records
/// split small) before it lets the executor run its timers and other tasks: a peer that
/// keeps sending such records must not keep a shard from its stop.
const READS_WITHOUT_DATA: u32 = 8;

thread_local! {
    static SCRATCH_BUF: RefCell<Box<[u8]>> = RefCell::new(vec![0; SCRATCH].into_boxed_slice());
}

pub struct TlsStream<S: Side> {
    tcp: TcpStream,
    session: Session<S>,
    /// Bytes of the session's outgoing TLS already on the wire (a flush cut short).
    out_at: usize,
}

impl<S: Side> TlsStream<S> {
    /// Runs the handshake on a connected socket. The caller bounds it in time.
    pub async fn handshake(tcp: TcpStream, conn: S) -> io::Result<TlsStream<S>> {
        let mut s = TlsStream { tcp, session: Session::new(conn), out_at: 0 };
        loop {
            let step = s.session.handshake_step().map_err(|e| s.failed(e))?;
            match step {
                Need::Done => break,
                Need::Send => {
                    s.tcp.write_all(s.session.outgoing()).await?;
                    s.session.sent();
                }
                Need::Read => {
                    let n = s.tcp.read(s.session.room(HANDSHAKE_READ)).await;
                    s.session.filled(HANDSHAKE_READ, *n.as_ref().unwrap_or(&0));
                    if n? == 0 {
                        return Err(Failure::io(
                            Reason::Handshake,
                            "the peer closed the connection during the handshake",
                        ));
                    }
                }
            }
        }
        Ok(s)
    }

    /// A failed session owes the peer a fatal alert (RFC 8446 §6.2), now in its outgoing
    /// bytes: sent at once if the socket takes it, since the connection is closed next.
    fn failed(&mut self, e: io::Error) -> io::Error {
        let alert = self.session.outgoing();
        // Only on a socket with nothing else half-sent, or the alert would land mid-record.
        if self.out_at == 0 && !alert.is_empty() {
            // SAFETY: a non-blocking send from a buffer we own on a socket we own.
            let _ = unsafe {
                libc::send(
                    self.tcp.as_raw_fd(),
                    alert.as_ptr().cast(),
                    alert.len(),
                    libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
                )
            };
        }
        self.session.sent();
        e
    }

    /// What the handshake settled.
    pub fn negotiated(&self) -> Negotiated {
        self.session.negotiated()
    }

    pub fn fd(&self) -> RawFd {
        self.tcp.as_raw_fd()
    }

    /// The socket under the session (for socket options).
    pub fn tcp(&self) -> &TcpStream {
        &self.tcp
    }

    /// The peer ended the connection without close_notify: data that ends at the close (a
    /// close-delimited body) may have been cut by an attacker or a crash, and is not whole.
    pub fn truncated(&self) -> bool {
        self.session.truncated()
    }

    /// Encrypts `data` and sends it, after any TLS bytes the read path owes the peer.
    pub async fn write_all(&mut self, data: &[u8]) -> io::Result<()> {
        futures_lite::future::poll_fn(|cx| self.poll_flush(cx)).await?;
        self.session.encrypt(data)?;
        futures_lite::future::poll_fn(|cx| self.poll_flush(cx)).await
    }

    /// Encrypts `data` for the peer once what is owed has gone out: `Ready(Ok(data.len()))`
    /// when it is queued; [`Self::poll_flush`] sends it.
    pub fn poll_write(&mut self, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        match self.poll_flush(cx) {
            Poll::Ready(Ok(())) => Poll::Ready(self.session.encrypt(data).map(|()| data.len())),
            other => other.map(|r| r.map(|()| 0)),
        }
    }

    /// Sends the TLS bytes queued (data, and replies the read path owes the peer).
    pub fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        loop {
            let out = &self.session.outgoing()[self.out_at..];
            if out.is_empty() {
                break;
            }
            match Pin::new(&mut self.tcp).poll_write(cx, out) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) => self.out_at += n,
            }
        }
        self.session.sent();
        self.out_at = 0;
        Poll::Ready(Ok(()))
    }

    /// Reads plaintext into `buf` (0: the peer closed; see [`TlsStream::truncated`]).
    pub fn poll_read(&mut self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        if let Some(n) = self.session.buffered(buf) {
            return Poll::Ready(Ok(n));
        }
        SCRATCH_BUF.with(|scratch| {
            let mut scratch = scratch.borrow_mut();
            for _ in 0..READS_WITHOUT_DATA {
                let held = self.session.held();
                self.session.copy_held(&mut scratch);
                let n = if self.session.take_unprocessed() {
                    0
                } else {
                    match Pin::new(&mut self.tcp).poll_read(cx, &mut scratch[held..]) {
                        Poll::Pending => return Poll::Pending,
                        Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                        Poll::Ready(Ok(0)) => return Poll::Ready(self.session.eof()),
                        Poll::Ready(Ok(n)) => n,
                    }
                };
                let got = match self.session.decrypt_scratch(&mut scratch, held + n, buf) {
                    Ok(got) => got,
                    Err(e) => return Poll::Ready(Err(self.failed(e))),
                };
                if got > 0 || self.session.peer_closed() {
                    return Poll::Ready(Ok(got));
                }
            }
            // Marks the task queue to yield (glommio then polls I/O and fires timers before
            // running it again) and wakes this task: the read goes on after that.
            let _ = std::pin::pin!(glommio::executor().yield_task_queue_now()).poll(cx);
            Poll::Pending
        })
    }
}
