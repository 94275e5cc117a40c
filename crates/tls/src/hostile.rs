//! A TLS 1.3 server that seals its own records after a real handshake, for tests: rustls runs
//! the handshake and hands over its traffic keys (as it does to the client's own record
//! layer), and from then on the test decides every byte: empty records, padding only,
//! oversized content, floods of key updates or warning alerts, handshake messages split or
//! interleaved with data. It drives a blocking socket (a test's server thread) or stays in
//! memory beside a client session.
//!
//! Nothing here runs in the engine itself.

use std::io::{self, Read, Write};
use std::sync::Arc;

use rustls::kernel::KernelConnection;
use rustls::server::ServerConnectionData;
use rustls::ServerConfig;

use crate::records::{Keys, APPLICATION_DATA, HANDSHAKE, HEADER, KEY_UPDATE, NEW_SESSION_TICKET};
use crate::{ClientConnection, Failure, Need, ServerConnection, Session};

/// Record content types, for [`HostilePeer::record`].
pub mod content {
    pub const ALERT: u8 = crate::records::ALERT;
    pub const HANDSHAKE: u8 = crate::records::HANDSHAKE;
    pub const APPLICATION_DATA: u8 = crate::records::APPLICATION_DATA;
}

/// A server after its handshake, sealing records by hand.
pub struct HostilePeer {
    kernel: KernelConnection<ServerConnectionData>,
    tx: Keys,
    rx: Keys,
    /// The client's bytes not yet opened (records that followed its Finished, or split).
    pending: Vec<u8>,
    /// Application data rustls opened during the handshake (a request sent with Finished).
    early: Vec<u8>,
}

/// A server configuration whose connections can hand over their keys, with a throwaway
/// certificate for `localhost` (clients skip verification, or trust `pem`).
pub fn config() -> io::Result<(Arc<ServerConfig>, String)> {
    let (config, pem) = crate::self_signed(&["localhost", "127.0.0.1"]).map_err(io::Error::other)?;
    let mut config = (*config).clone();
    config.enable_secret_extraction = true;
    // TLS 1.3 only: the peer seals TLS 1.3 records.
    config.alpn_protocols = vec![crate::ALPN_HTTP1.to_vec()];
    Ok((Arc::new(config), pem))
}

impl HostilePeer {
    /// Takes over `session` after its handshake: its keys, and ciphertext it already read.
    pub fn new(session: Session<ServerConnection>) -> io::Result<HostilePeer> {
        let taken = session.into_connection().map_err(|_| io::Error::other("no rustls connection"))?;
        let (conn, pending, early) = (taken.conn, taken.ciphertext, taken.plaintext);
        let (secrets, kernel) = conn.dangerous_into_kernel_connection().map_err(Failure::rustls)?;
        Ok(HostilePeer {
            tx: Keys::new(secrets.tx).map_err(Failure::rustls)?,
            rx: Keys::new(secrets.rx).map_err(Failure::rustls)?,
            kernel,
            pending,
            early,
        })
    }

    /// Runs a server handshake on a blocking socket, then takes over.
    pub fn accept(tcp: &mut std::net::TcpStream, config: &Arc<ServerConfig>) -> io::Result<HostilePeer> {
        let mut s = Session::new(crate::accept(config).map_err(Failure::rustls)?);
        let mut buf = [0u8; 4096];
        loop {
            match s.handshake_step()? {
                Need::Send => {
                    tcp.write_all(s.outgoing())?;
                    s.sent();
                }
                Need::Read => match tcp.read(&mut buf)? {
                    0 => return Err(io::ErrorKind::UnexpectedEof.into()),
                    n => s.received(&buf[..n]),
                },
                Need::Done => return HostilePeer::new(s),
            }
        }
    }

    /// One record: content of type `inner`, then `padding` zeros.
    pub fn record(&mut self, inner: u8, content: &[u8], padding: usize) -> Vec<u8> {
        let mut out = Vec::new();
        self.tx.seal(inner, content, padding, &mut out).expect("sealing");
        out
    }

    /// Application data in records of at most 16 KiB.
    pub fn data(&mut self, content: &[u8]) -> Vec<u8> {
        content.chunks(16_384).flat_map(|c| self.record(APPLICATION_DATA, c, 0)).collect()
    }

    /// A KeyUpdate (asking the client to update its key too if `request`); the records
    /// after it use the new key.
    pub fn key_update(&mut self, request: bool) -> Vec<u8> {
        let out = self.record(HANDSHAKE, &[KEY_UPDATE, 0, 0, 1, u8::from(request)], 0);
        self.tx = Keys::new(self.kernel.update_tx_secret().expect("a new key")).expect("a new key");
        out
    }

    /// A well-formed NewSessionTicket message (type, length, body) to seal whole or split.
    pub fn ticket(nonce: u8) -> Vec<u8> {
        let mut body = Vec::new();
        body.extend_from_slice(&3600u32.to_be_bytes()); // lifetime
        body.extend_from_slice(&7u32.to_be_bytes()); // age add
        body.extend_from_slice(&[1, nonce]); // nonce
        body.extend_from_slice(&[0, 32]);
        body.extend_from_slice(&[nonce; 32]); // the ticket
        body.extend_from_slice(&[0, 0]); // no extensions
        let len = body.len() as u32;
        let mut msg = vec![NEW_SESSION_TICKET];
        msg.extend_from_slice(&len.to_be_bytes()[1..]);
        msg.extend_from_slice(&body);
        msg
    }

    /// Opens what the client sent: each whole record's content type and content. A key
    /// update the client sent changes the key its next records are opened with.
    pub fn open(&mut self, wire: &[u8]) -> io::Result<Vec<(u8, Vec<u8>)>> {
        self.pending.extend_from_slice(wire);
        let mut out = Vec::new();
        if !self.early.is_empty() {
            out.push((APPLICATION_DATA, std::mem::take(&mut self.early)));
        }
        loop {
            if self.pending.len() < HEADER {
                return Ok(out);
            }
            let header: [u8; HEADER] = self.pending[..HEADER].try_into().expect("HEADER bytes");
            let len = usize::from(u16::from_be_bytes([header[3], header[4]]));
            if self.pending.len() < HEADER + len {
                return Ok(out);
            }
            let mut sealed = self.pending[HEADER..HEADER + len].to_vec();
            self.pending.drain(..HEADER + len);
            let plain = self.rx.open(header, &mut sealed).map_err(Failure::rustls)?;
            let end = plain.iter().rposition(|&b| b != 0).ok_or_else(|| io::Error::other("no content type"))?;
            let (inner, content) = (plain[end], plain[..end].to_vec());
            if inner == HANDSHAKE && content.first() == Some(&KEY_UPDATE) {
                self.rx =
                    Keys::new(self.kernel.update_rx_secret().map_err(Failure::rustls)?).map_err(Failure::rustls)?;
            }
            out.push((inner, content));
        }
    }
}

/// In memory: the engine's client session and a hostile server, after their handshake.
pub fn pair() -> io::Result<(Session<ClientConnection>, HostilePeer)> {
    let (config, _) = config()?;
    let opts = crate::ClientOptions { insecure: true, version: Some(crate::Version::Tls13), ..Default::default() };
    let client = crate::Client::new(&opts, "localhost").map_err(io::Error::other)?;
    pair_with(&client, &config)
}

/// [`pair`] with a given client (its session cache: a second pair resumes) and server.
pub fn pair_with(
    client: &crate::Client,
    config: &Arc<ServerConfig>,
) -> io::Result<(Session<ClientConnection>, HostilePeer)> {
    let mut c = Session::new(client.connection().map_err(Failure::rustls)?);
    let mut s = Session::new(crate::accept(config).map_err(Failure::rustls)?);
    for _ in 0..16 {
        let client_done = crate::memory::step(&mut c, &mut s)?;
        let server_done = crate::memory::step(&mut s, &mut c)?;
        if client_done && server_done && c.outgoing().is_empty() && s.outgoing().is_empty() {
            return Ok((c, HostilePeer::new(s)?));
        }
    }
    Err(io::Error::other("the in-memory handshake did not complete"))
}
