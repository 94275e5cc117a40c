//! A TLS connection over a glommio socket, on rustls's unbuffered API: ciphertext is read into
//! the thread's one scratch buffer and decrypted there, plaintext goes straight into the
//! caller's buffer. An idle connection holds no buffer: only a record split across reads is
//! kept (`pending`) until the rest arrives, and plaintext that did not fit the caller's buffer
//! (`plain`) until it is read.
//!
//! rustls requires the bytes it has looked at but not discarded (a handshake message
//! spanning records) to be presented again, at the front, on the next call: `pending` is that
//! front, on reads and writes alike.

use std::cell::RefCell;
use std::io;
use std::ops::DerefMut;
use std::os::fd::{AsRawFd, RawFd};
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_lite::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use glommio::net::TcpStream;
use rustls::client::{ClientConnectionData, UnbufferedClientConnection};
use rustls::server::{ServerConnectionData, UnbufferedServerConnection};
use rustls::unbuffered::{
    ConnectionState, EncodeError, EncodeTlsData, EncryptError, UnbufferedConnectionCommon, UnbufferedStatus,
    WriteTraffic,
};
use rustls::HandshakeKind;

use crate::{Failure, Reason};

/// The scratch buffer: a read of several records at once. The largest record on the wire
/// is 16 KiB of plaintext plus 2 KiB of overhead (TLS 1.2), so a split one always fits.
const SCRATCH: usize = 64 * 1024;
/// Handshake reads go into `pending` this much at a time.
const HANDSHAKE_READ: usize = 4096;
/// A send buffer grown past this (a large request body) is freed after use.
const OUT_KEEP: usize = 4096;

thread_local! {
    static SCRATCH_BUF: RefCell<Box<[u8]>> = RefCell::new(vec![0; SCRATCH].into_boxed_slice());
}

/// The client and server connections: one type each in rustls, one driver here.
pub trait Side: DerefMut<Target = UnbufferedConnectionCommon<Self::Data>> {
    type Data;
    fn process<'c, 'i>(&'c mut self, incoming: &'i mut [u8]) -> UnbufferedStatus<'c, 'i, Self::Data>;
}

impl Side for UnbufferedClientConnection {
    type Data = ClientConnectionData;
    fn process<'c, 'i>(&'c mut self, incoming: &'i mut [u8]) -> UnbufferedStatus<'c, 'i, Self::Data> {
        self.process_tls_records(incoming)
    }
}

impl Side for UnbufferedServerConnection {
    type Data = ServerConnectionData;
    fn process<'c, 'i>(&'c mut self, incoming: &'i mut [u8]) -> UnbufferedStatus<'c, 'i, Self::Data> {
        self.process_tls_records(incoming)
    }
}

/// What the handshake settled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Negotiated {
    /// `TLSv1_3` or `TLSv1_2`.
    pub version: &'static str,
    /// The cipher suite's IANA name, e.g. `TLS13_AES_128_GCM_SHA256`.
    pub cipher: &'static str,
    /// The session was resumed (an abbreviated handshake).
    pub resumed: bool,
}

pub(crate) fn negotiated_of(state: &rustls::CommonState) -> Negotiated {
    let version = match state.protocol_version() {
        Some(rustls::ProtocolVersion::TLSv1_3) => "TLSv1.3",
        Some(rustls::ProtocolVersion::TLSv1_2) => "TLSv1.2",
        _ => "unknown",
    };
    let cipher = state.negotiated_cipher_suite().and_then(|s| s.suite().as_str()).unwrap_or("unknown");
    Negotiated { version, cipher, resumed: state.handshake_kind() == Some(HandshakeKind::Resumed) }
}

pub struct TlsStream<S: Side> {
    tcp: TcpStream,
    conn: S,
    /// Ciphertext rustls has not discarded yet: the start of a record still arriving.
    pending: Vec<u8>,
    /// Plaintext that did not fit the caller's buffer, from `plain_at` on.
    plain: Vec<u8>,
    plain_at: usize,
    /// TLS bytes to send: handshake flights, replies owed (alerts, key updates), requests.
    out: Vec<u8>,
    /// The peer sent close_notify: its data ended cleanly.
    peer_closed: bool,
    /// The connection ended without close_notify (see [`TlsStream::truncated`]).
    unclean_eof: bool,
    /// `pending` may hold whole records not yet processed (left by the handshake).
    unprocessed: bool,
}

impl<S: Side> TlsStream<S> {
    /// Runs the handshake on a connected socket. The caller bounds it in time.
    pub async fn handshake(tcp: TcpStream, conn: S) -> io::Result<TlsStream<S>> {
        let mut s = TlsStream {
            tcp,
            conn,
            pending: Vec::new(),
            plain: Vec::new(),
            plain_at: 0,
            out: Vec::new(),
            peer_closed: false,
            unclean_eof: false,
            unprocessed: false,
        };
        s.drive_handshake().await?;
        s.unprocessed = !s.pending.is_empty();
        s.pending.shrink_to_fit();
        s.out = Vec::new();
        Ok(s)
    }

    async fn drive_handshake(&mut self) -> io::Result<()> {
        enum Next {
            Again,
            Send,
            Read,
            Done,
        }
        loop {
            let UnbufferedStatus { discard, state } = self.conn.process(&mut self.pending);
            let next = match state.map_err(Failure::rustls)? {
                ConnectionState::EncodeTlsData(mut e) => {
                    encode(&mut e, &mut self.out)?;
                    Next::Again
                }
                // Sent below, before rustls is called again.
                ConnectionState::TransmitTlsData(t) => {
                    t.done();
                    Next::Send
                }
                ConnectionState::BlockedHandshake => Next::Read,
                ConnectionState::ReadTraffic(mut r) => {
                    while let Some(record) = r.next_record() {
                        self.plain.extend_from_slice(record.map_err(Failure::rustls)?.payload);
                    }
                    Next::Again
                }
                ConnectionState::WriteTraffic(_) => Next::Done,
                ConnectionState::PeerClosed | ConnectionState::Closed => {
                    return Err(Failure::io(Reason::Handshake, "the peer closed the session during the handshake"));
                }
                _ => Next::Again,
            };
            self.pending.drain(..discard);
            match next {
                Next::Again => {}
                Next::Done => return Ok(()),
                Next::Send => {
                    self.tcp.write_all(&self.out).await?;
                    self.out.clear();
                }
                Next::Read => {
                    let at = self.pending.len();
                    self.pending.resize(at + HANDSHAKE_READ, 0);
                    let n = self.tcp.read(&mut self.pending[at..]).await;
                    self.pending.truncate(at + *n.as_ref().unwrap_or(&0));
                    if n? == 0 {
                        return Err(Failure::io(
                            Reason::Handshake,
                            "the peer closed the connection during the handshake",
                        ));
                    }
                }
            }
        }
    }

    /// What the handshake settled.
    pub fn negotiated(&self) -> Negotiated {
        negotiated_of(&self.conn)
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
        self.unclean_eof
    }

    /// Encrypts `data` and sends it, after any TLS bytes the read path owes the peer.
    pub async fn write_all(&mut self, data: &[u8]) -> io::Result<()> {
        loop {
            let UnbufferedStatus { discard, state } = self.conn.process(&mut self.pending);
            let done = match state.map_err(Failure::rustls)? {
                ConnectionState::EncodeTlsData(mut e) => {
                    encode(&mut e, &mut self.out)?;
                    false
                }
                // Queued in `out`, which goes out below, before the data.
                ConnectionState::TransmitTlsData(t) => {
                    t.done();
                    false
                }
                ConnectionState::WriteTraffic(mut w) => {
                    encrypt(&mut w, data, &mut self.out)?;
                    true
                }
                ConnectionState::ReadTraffic(mut r) => {
                    while let Some(record) = r.next_record() {
                        self.plain.extend_from_slice(record.map_err(Failure::rustls)?.payload);
                    }
                    false
                }
                ConnectionState::PeerClosed => {
                    self.peer_closed = true;
                    false
                }
                ConnectionState::Closed => return Err(io::ErrorKind::BrokenPipe.into()),
                _ => return Err(Failure::io(Reason::Handshake, "the session is not established")),
            };
            self.pending.drain(..discard);
            if done {
                break;
            }
        }
        let sent = self.tcp.write_all(&self.out).await;
        self.out.clear();
        if self.out.capacity() > OUT_KEEP {
            self.out = Vec::new();
        }
        sent
    }

    /// Reads plaintext into `buf` (0: the peer closed; see [`TlsStream::truncated`]).
    pub fn poll_read(&mut self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        if self.plain_at < self.plain.len() {
            return Poll::Ready(Ok(self.take_plain(buf)));
        }
        if self.peer_closed || buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        SCRATCH_BUF.with(|scratch| {
            let mut scratch = scratch.borrow_mut();
            loop {
                let held = self.pending.len();
                scratch[..held].copy_from_slice(&self.pending);
                let n = if std::mem::take(&mut self.unprocessed) {
                    0
                } else {
                    match Pin::new(&mut self.tcp).poll_read(cx, &mut scratch[held..]) {
                        Poll::Pending => return Poll::Pending,
                        Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                        Poll::Ready(Ok(0)) => return Poll::Ready(self.eof()),
                        Poll::Ready(Ok(n)) => n,
                    }
                };
                self.pending.clear();
                let got = self.decrypt(&mut scratch[..held + n], buf)?;
                if got > 0 || self.peer_closed {
                    return Poll::Ready(Ok(got));
                }
            }
        })
    }

    fn eof(&mut self) -> io::Result<usize> {
        if !self.pending.is_empty() {
            return Err(Failure::io(Reason::Truncated, "the connection closed in the middle of a record"));
        }
        self.unclean_eof = !self.peer_closed;
        Ok(0)
    }

    fn take_plain(&mut self, buf: &mut [u8]) -> usize {
        let n = (self.plain.len() - self.plain_at).min(buf.len());
        buf[..n].copy_from_slice(&self.plain[self.plain_at..self.plain_at + n]);
        self.plain_at += n;
        if self.plain_at == self.plain.len() {
            self.plain = Vec::new();
            self.plain_at = 0;
        }
        n
    }

    /// Processes the records in `data`: plaintext into `buf` (the rest into `plain`), replies
    /// owed into `out`, an incomplete record's bytes into `pending`. Returns the bytes put
    /// into `buf`.
    fn decrypt(&mut self, data: &mut [u8], buf: &mut [u8]) -> io::Result<usize> {
        let (mut off, mut got) = (0, 0);
        loop {
            let UnbufferedStatus { mut discard, state } = self.conn.process(&mut data[off..]);
            let more = match state.map_err(Failure::rustls)? {
                ConnectionState::ReadTraffic(mut r) => {
                    while let Some(record) = r.next_record() {
                        let record = record.map_err(Failure::rustls)?;
                        discard += record.discard;
                        let n = record.payload.len().min(buf.len() - got);
                        buf[got..got + n].copy_from_slice(&record.payload[..n]);
                        got += n;
                        self.plain.extend_from_slice(&record.payload[n..]);
                    }
                    true
                }
                ConnectionState::EncodeTlsData(mut e) => {
                    encode(&mut e, &mut self.out)?;
                    true
                }
                ConnectionState::TransmitTlsData(t) => {
                    t.done();
                    true
                }
                ConnectionState::PeerClosed => {
                    self.peer_closed = true;
                    true
                }
                ConnectionState::Closed => {
                    self.peer_closed = true;
                    false
                }
                _ => false,
            };
            off += discard;
            if !more {
                break;
            }
        }
        self.pending.extend_from_slice(&data[off..]);
        Ok(got)
    }
}

fn encode<D>(e: &mut EncodeTlsData<'_, D>, out: &mut Vec<u8>) -> io::Result<()> {
    let at = out.len();
    let mut room = 1024;
    loop {
        out.resize(at + room, 0);
        match e.encode(&mut out[at..]) {
            Ok(n) => {
                out.truncate(at + n);
                return Ok(());
            }
            Err(EncodeError::InsufficientSize(s)) => room = s.required_size,
            Err(EncodeError::AlreadyEncoded) => {
                out.truncate(at);
                return Ok(());
            }
        }
    }
}

fn encrypt<D>(w: &mut WriteTraffic<'_, D>, data: &[u8], out: &mut Vec<u8>) -> io::Result<()> {
    let at = out.len();
    // A record's overhead is at most 5 + 16 + 1 + 256 bytes (TLS 1.3 padding aside).
    let mut room = data.len() + 64 * (data.len() / 16384 + 1);
    loop {
        out.resize(at + room, 0);
        match w.encrypt(data, &mut out[at..]) {
            Ok(n) => {
                out.truncate(at + n);
                return Ok(());
            }
            Err(EncryptError::InsufficientSize(s)) => room = s.required_size,
            Err(e) => {
                out.truncate(at);
                return Err(Failure::io(
                    Reason::Other,
                    if matches!(e, EncryptError::EncryptExhausted) {
                        "the session's keys are exhausted"
                    } else {
                        "encryption failed"
                    },
                ));
            }
        }
    }
}
