//! The TLS state of one connection apart from its socket (sans I/O): rustls's unbuffered
//! connection, the ciphertext it must be shown again, plaintext not yet taken, and the bytes
//! owed to the peer. [`crate::TlsStream`] moves bytes between it and a socket; tests and the
//! fuzz target move them between two sessions in memory.
//!
//! rustls requires the bytes it has looked at but not discarded (a handshake message
//! spanning records) to be presented again, at the front, on the next call: `pending` is that
//! front, on reads and writes alike.

use std::io;
use std::ops::DerefMut;

use rustls::client::{ClientConnectionData, UnbufferedClientConnection};
use rustls::server::{ServerConnectionData, UnbufferedServerConnection};
use rustls::unbuffered::{
    ConnectionState, EncodeError, EncodeTlsData, EncryptError, UnbufferedConnectionCommon, UnbufferedStatus,
    WriteTraffic,
};
use rustls::HandshakeKind;

use crate::records::Records;
use crate::{Failure, Reason};

/// The client and server connections: one type each in rustls, one driver here.
pub trait Side: DerefMut<Target = UnbufferedConnectionCommon<Self::Data>> + Sized {
    type Data;
    fn process<'c, 'i>(&'c mut self, incoming: &'i mut [u8]) -> UnbufferedStatus<'c, 'i, Self::Data>;

    /// After the handshake: the records sealed and opened by the engine's own record layer
    /// (`records.rs`), not by rustls, where this side can (`Err`: it stays with rustls).
    fn into_records(self: Box<Self>, _negotiated: Negotiated) -> Result<io::Result<Records>, Box<Self>> {
        Err(self)
    }
}

impl Side for UnbufferedClientConnection {
    type Data = ClientConnectionData;
    fn process<'c, 'i>(&'c mut self, incoming: &'i mut [u8]) -> UnbufferedStatus<'c, 'i, Self::Data> {
        self.process_tls_records(incoming)
    }

    fn into_records(self: Box<Self>, negotiated: Negotiated) -> Result<io::Result<Records>, Box<Self>> {
        if self.protocol_version() != Some(rustls::ProtocolVersion::TLSv1_3) {
            return Err(self);
        }
        Ok((*self)
            .dangerous_into_kernel_connection()
            .and_then(|(secrets, kernel)| Records::new(negotiated, secrets, kernel))
            .map_err(Failure::rustls))
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
    /// The application protocol the handshake agreed on (ALPN): `h2`, `http/1.1`, `other`.
    pub alpn: Option<&'static str>,
}

pub(crate) fn negotiated_of(state: &rustls::CommonState) -> Negotiated {
    let version = match state.protocol_version() {
        Some(rustls::ProtocolVersion::TLSv1_3) => "TLSv1.3",
        Some(rustls::ProtocolVersion::TLSv1_2) => "TLSv1.2",
        _ => "unknown",
    };
    let cipher = state.negotiated_cipher_suite().and_then(|s| s.suite().as_str()).unwrap_or("unknown");
    let alpn = state.alpn_protocol().map(|p| match p {
        crate::ALPN_H2 => "h2",
        crate::ALPN_HTTP1 => "http/1.1",
        _ => "other",
    });
    Negotiated { version, cipher, resumed: state.handshake_kind() == Some(HandshakeKind::Resumed), alpn }
}

/// What a handshake needs next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// Send [`Session::outgoing`] to the peer, then call [`Session::sent`].
    Send,
    /// More bytes from the peer: [`Session::received`].
    Read,
    /// The handshake is complete.
    Done,
}

/// Who seals and opens the records: rustls (the handshake, TLS 1.2, a server), or, once a
/// client's TLS 1.3 handshake is done, [`Records`].
enum Engine<S> {
    Rustls(Box<S>),
    Records(Box<Records>),
    /// Only while one becomes the other.
    Switching,
}

impl<S> Engine<S> {
    /// rustls's connection (`Ok`) or the engine's records (`Err`); a session that failed
    /// while switching is an error.
    fn layer(&mut self) -> io::Result<Result<&mut S, &mut Records>> {
        match self {
            Engine::Rustls(conn) => Ok(Ok(conn)),
            Engine::Records(r) => Ok(Err(r)),
            Engine::Switching => Err(Failure::io(Reason::Other, "the session failed while changing record layers")),
        }
    }
}

/// What [`Session::into_connection`] hands over.
pub(crate) struct TakenOver<S> {
    pub conn: Box<S>,
    pub ciphertext: Vec<u8>,
    pub plaintext: Vec<u8>,
}

pub struct Session<S: Side> {
    conn: Engine<S>,
    /// Ciphertext rustls has not discarded yet: the start of a record still arriving.
    pending: Vec<u8>,
    /// Plaintext that did not fit the caller's buffer, from `plain_at` on.
    plain: Vec<u8>,
    plain_at: usize,
    /// TLS bytes to send: handshake flights, replies owed (alerts, key updates), data.
    out: Vec<u8>,
    /// The peer sent close_notify: its data ended cleanly.
    peer_closed: bool,
    /// The connection ended without close_notify (see [`Session::truncated`]).
    unclean_eof: bool,
    /// `pending` may hold whole records not yet processed (left by the handshake).
    unprocessed: bool,
}

impl<S: Side> Session<S> {
    pub fn new(conn: S) -> Self {
        Session {
            conn: Engine::Rustls(Box::new(conn)),
            pending: Vec::new(),
            plain: Vec::new(),
            plain_at: 0,
            out: Vec::new(),
            peer_closed: false,
            unclean_eof: false,
            unprocessed: false,
        }
    }

    /// Advances the handshake as far as it goes without the peer. On a failure the fatal
    /// alert owed to the peer is in [`Self::outgoing`].
    pub fn handshake_step(&mut self) -> io::Result<Need> {
        let step = self.try_handshake_step();
        if step.is_err() {
            self.alert_owed();
            // A server that answers a ClientHello in plain HTTP is on the wrong port or scheme.
            if self.pending.starts_with(b"HTTP/") {
                return Err(Failure::plain_http());
            }
        }
        step
    }

    /// After a failure: the fatal alert rustls queued for the peer (RFC 8446 §6.2), into
    /// `out`. The engine's records seal theirs there as they fail.
    fn alert_owed(&mut self) {
        let Ok(Ok(conn)) = self.conn.layer() else { return };
        // An alert is one record; more turns than a few is a loop.
        for _ in 0..4 {
            match conn.process(&mut []).state {
                Ok(ConnectionState::EncodeTlsData(mut e)) => {
                    if encode(&mut e, &mut self.out).is_err() {
                        return;
                    }
                }
                _ => return,
            }
        }
    }

    fn try_handshake_step(&mut self) -> io::Result<Need> {
        loop {
            let Ok(conn) = self.conn.layer()? else { return Ok(Need::Done) };
            let UnbufferedStatus { discard, state } = conn.process(&mut self.pending);
            let need = match state.map_err(Failure::rustls)? {
                ConnectionState::EncodeTlsData(mut e) => {
                    encode(&mut e, &mut self.out)?;
                    None
                }
                // Sent before rustls is called again.
                ConnectionState::TransmitTlsData(t) => {
                    t.done();
                    Some(Need::Send)
                }
                ConnectionState::BlockedHandshake => Some(Need::Read),
                ConnectionState::ReadTraffic(mut r) => {
                    while let Some(record) = r.next_record() {
                        self.plain.extend_from_slice(record.map_err(Failure::rustls)?.payload);
                    }
                    None
                }
                ConnectionState::WriteTraffic(_) => Some(Need::Done),
                ConnectionState::PeerClosed | ConnectionState::Closed => {
                    return Err(Failure::io(Reason::Handshake, "the peer closed the session during the handshake"));
                }
                _ => None,
            };
            self.pending.drain(..discard);
            if let Some(need) = need {
                if need == Need::Done {
                    self.unprocessed = !self.pending.is_empty();
                    self.pending.shrink_to_fit();
                    // The handshake's flights grew `out` to a few KiB; an idle connection
                    // would keep that (19.5 MB at 10,000 connections, heaptrack). The first
                    // request sizes it to what a request takes.
                    self.out.shrink_to_fit();
                    self.switch_records()?;
                }
                return Ok(need);
            }
        }
    }

    /// Hands the records to [`Records`] where the side can, with nothing left half-done:
    /// no record held unprocessed and nothing unsent.
    fn switch_records(&mut self) -> io::Result<()> {
        if !self.pending.is_empty() || !self.out.is_empty() {
            return Ok(());
        }
        let conn = match std::mem::replace(&mut self.conn, Engine::Switching) {
            Engine::Rustls(conn) => conn,
            other => {
                self.conn = other;
                return Ok(());
            }
        };
        let negotiated = negotiated_of(&conn);
        self.conn = match conn.into_records(negotiated) {
            Ok(records) => Engine::Records(Box::new(records?)),
            Err(conn) => Engine::Rustls(conn),
        };
        Ok(())
    }

    /// rustls's connection, the ciphertext read but not processed, and the plaintext not yet
    /// taken, for a caller that takes the session over (`hostile`'s test peer); `Err` gives
    /// back one that has no rustls connection.
    pub(crate) fn into_connection(self) -> Result<TakenOver<S>, Self> {
        match self.conn {
            Engine::Rustls(conn) => {
                Ok(TakenOver { conn, ciphertext: self.pending, plaintext: self.plain[self.plain_at..].to_vec() })
            }
            conn => Err(Session { conn, ..self }),
        }
    }

    /// Whether the records are sealed and opened by the engine rather than rustls.
    pub fn own_records(&self) -> bool {
        matches!(self.conn, Engine::Records(_))
    }

    /// The bytes to send now.
    pub fn outgoing(&self) -> &[u8] {
        &self.out
    }

    /// The outgoing bytes were sent.
    pub fn sent(&mut self) {
        self.out.clear();
        if self.out.capacity() > OUT_KEEP {
            self.out = Vec::new();
        }
    }

    /// Bytes from the peer during the handshake.
    pub fn received(&mut self, bytes: &[u8]) {
        self.pending.extend_from_slice(bytes);
    }

    /// The buffer handshake reads go into: `n` bytes of room at its end (see [`Self::filled`]).
    pub(crate) fn room(&mut self, n: usize) -> &mut [u8] {
        let at = self.pending.len();
        self.pending.resize(at + n, 0);
        &mut self.pending[at..]
    }

    /// `n` of the bytes of the last [`Self::room`] were filled.
    pub(crate) fn filled(&mut self, room: usize, n: usize) {
        self.pending.truncate(self.pending.len() - room + n);
    }

    /// What the handshake settled.
    pub fn negotiated(&self) -> Negotiated {
        match &self.conn {
            Engine::Rustls(conn) => negotiated_of(conn),
            Engine::Records(r) => r.negotiated,
            Engine::Switching => Negotiated { version: "unknown", cipher: "unknown", resumed: false, alpn: None },
        }
    }

    /// Bytes of buffer this session holds apart from rustls's own state: what an idle
    /// connection costs on top of it.
    pub fn buffer_capacity(&self) -> usize {
        self.pending.capacity() + self.plain.capacity() + self.out.capacity()
    }

    /// The peer ended the connection without close_notify: data that ends at the close (a
    /// close-delimited body) may have been cut by an attacker or a crash, and is not whole.
    pub fn truncated(&self) -> bool {
        self.unclean_eof
    }

    /// The peer sent close_notify.
    pub fn peer_closed(&self) -> bool {
        self.peer_closed
    }

    /// Encrypts `data` into [`Self::outgoing`], after any TLS bytes the read path owes the peer.
    pub fn encrypt(&mut self, data: &[u8]) -> io::Result<()> {
        loop {
            let conn = match self.conn.layer()? {
                Ok(conn) => conn,
                Err(r) => return r.seal(data, &mut self.out).map_err(Failure::rustls),
            };
            let UnbufferedStatus { discard, state } = conn.process(&mut self.pending);
            let done = match state.map_err(Failure::rustls)? {
                ConnectionState::EncodeTlsData(mut e) => {
                    encode(&mut e, &mut self.out)?;
                    false
                }
                // Queued in `out`, which goes out before the data.
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
                return Ok(());
            }
        }
    }

    /// Queues a TLS 1.3 key update that asks the peer to update its key too (RFC 8446
    /// §4.6.3); it goes out before the next data. A session rolls its own keys before their
    /// limit; this is for a peer's tests, or a session kept idle for long.
    pub fn refresh_keys(&mut self) -> io::Result<()> {
        let conn = match self.conn.layer()? {
            Ok(conn) => conn,
            Err(r) => return r.update_tx(true, &mut self.out).map_err(Failure::rustls),
        };
        let UnbufferedStatus { discard, state } = conn.process(&mut self.pending);
        let refreshed = match state.map_err(Failure::rustls)? {
            ConnectionState::WriteTraffic(w) => w.refresh_traffic_keys().map_err(Failure::rustls),
            _ => Err(Failure::io(Reason::Other, "the session cannot update its keys now")),
        };
        self.pending.drain(..discard);
        refreshed?;
        // rustls encodes the key update on its next turn.
        self.encrypt(&[])
    }

    /// Plaintext already decrypted (it did not fit an earlier read), or, if none, whether the
    /// session has nothing more to give (the peer closed, or `buf` is empty): `Some(n)`.
    pub fn buffered(&mut self, buf: &mut [u8]) -> Option<usize> {
        if self.plain_at < self.plain.len() {
            return Some(self.take_plain(buf));
        }
        (self.peer_closed || buf.is_empty()).then_some(0)
    }

    /// Decrypts `data` (new ciphertext from the peer) into `buf`, after the held front
    /// (`pending`), using `scratch` to put them together: the bytes put into `buf`. Whatever
    /// does not fit is kept for the next read, an incomplete record for the next `data`.
    pub fn read(&mut self, data: &[u8], scratch: &mut [u8], buf: &mut [u8]) -> io::Result<usize> {
        let held = self.pending.len();
        if held + data.len() > scratch.len() {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "more ciphertext than the scratch buffer holds"));
        }
        scratch[..held].copy_from_slice(&self.pending);
        scratch[held..held + data.len()].copy_from_slice(data);
        self.release_held();
        self.decrypt(&mut scratch[..held + data.len()], buf)
    }

    /// How many bytes of held front [`Self::read_in_place`] callers leave room for.
    pub(crate) fn held(&self) -> usize {
        self.pending.len()
    }

    /// The held front, copied to the start of `scratch`.
    pub(crate) fn copy_held(&mut self, scratch: &mut [u8]) {
        let held = self.pending.len();
        scratch[..held].copy_from_slice(&self.pending);
    }

    /// Records left by the handshake are processed before anything new is read.
    pub(crate) fn take_unprocessed(&mut self) -> bool {
        std::mem::take(&mut self.unprocessed)
    }

    /// `scratch[..len]` is the held front and new bytes: decrypts it into `buf`.
    pub(crate) fn decrypt_scratch(&mut self, scratch: &mut [u8], len: usize, buf: &mut [u8]) -> io::Result<usize> {
        self.release_held();
        self.decrypt(&mut scratch[..len], buf)
    }

    /// The held front was copied out: its buffer goes too, so that a record split once (up to
    /// 16 KiB of a large body) is not kept for the connection's life. Only a split allocates.
    fn release_held(&mut self) {
        self.pending = Vec::new();
    }

    /// The peer closed the connection: an error if a record was cut, else the end.
    pub fn eof(&mut self) -> io::Result<usize> {
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
        let got = self.try_decrypt(data, buf);
        if got.is_err() {
            self.alert_owed();
        }
        got
    }

    fn try_decrypt(&mut self, data: &mut [u8], buf: &mut [u8]) -> io::Result<usize> {
        let (mut off, mut got) = (0, 0);
        let conn = match self.conn.layer()? {
            Ok(conn) => conn,
            Err(r) => {
                let plain = &mut self.plain;
                let used = r
                    .open(data, &mut self.out, &mut self.peer_closed, |payload| {
                        let n = payload.len().min(buf.len() - got);
                        buf[got..got + n].copy_from_slice(&payload[..n]);
                        got += n;
                        plain.extend_from_slice(&payload[n..]);
                    })
                    .map_err(Failure::rustls)?;
                self.pending.extend_from_slice(&data[used..]);
                return Ok(got);
            }
        };
        loop {
            let UnbufferedStatus { mut discard, state } = conn.process(&mut data[off..]);
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

/// A send buffer grown past this (a large request body) is freed after use.
const OUT_KEEP: usize = 4096;

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

#[cfg(test)]
mod tests {
    use super::Engine;
    use crate::memory::{connected_pair, seal};
    use crate::SCRATCH;

    /// A long-lived connection outlives its key: at the limit the client updates it, and the
    /// server (rustls) reads on. The real limit is 2^24 records, hours of a soak.
    #[test]
    fn the_client_updates_its_key_at_the_limit() {
        let (mut c, mut s) = connected_pair(false).unwrap();
        let Engine::Records(r) = &mut c.conn else { panic!("a TLS 1.3 client has its own records") };
        let first = r.limit;
        assert!(first > 1 << 20, "limit {first}");
        r.limit = 3;
        let mut scratch = vec![0u8; SCRATCH];
        let mut buf = [0u8; 64];
        for i in 0..10 {
            let msg = format!("request {i}");
            let wire = seal(&mut c, msg.as_bytes()).unwrap();
            let n = s.read(&wire, &mut scratch, &mut buf).unwrap();
            assert_eq!(&buf[..n], msg.as_bytes());
        }
        let Engine::Records(r) = &c.conn else { unreachable!() };
        // Three records a key: updated three times, and now past a fresh key's first records.
        assert!(r.sealed_with_this_key() < 3);
    }
}
