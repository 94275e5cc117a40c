//! TLS under the HTTP codec, for the blast's connections, the proxy's two legs and the target.
//!
//! - `client`, `server`: configurations from the options a user gives (curl's for a client).
//! - `session`: a connection's TLS state apart from its socket (sans I/O: tests and fuzzing).
//! - `stream`: a TLS session over a glommio socket on rustls's unbuffered API: records are
//!   decrypted in the thread's scratch buffer into the caller's own buffer, so an idle
//!   connection keeps no buffer of its own.
//! - `records`: a client's TLS 1.3 records after the handshake, sealed and opened by the engine
//!   with ring once rustls hands over the keys (tickets and key updates stay with rustls): it
//!   frees rustls's connection state (1.1 KB per connection, measured) and its allocation per
//!   record.
//! - `transport`: the one plain-or-TLS stream the blast, the proxy and the target read through.
//! - `memory`, `hostile`: for tests and fuzzing, two sessions joined in memory, and a TLS 1.3
//!   server that seals its records by hand (what well-behaved servers never send).
//! - `error`: setup errors (a user's files and flags) and connection failures by reason.
//!
//! The crypto provider is ring, by measurement (benches/tls-providers, benches/RESULTS.md):
//! on this machine it seals and opens 16 KiB records 1.56x as fast as aws-lc-rs, a blast's
//! steady state; full handshakes are level and resumed ones 10% slower; and it builds in
//! seconds where aws-lc-sys takes minutes.

mod client;
mod error;
pub mod hostile;
pub mod memory;
mod pem;
mod records;
mod server;
mod session;
mod stream;
mod transport;
mod verify;

pub use client::{Client, ClientOptions};
pub use error::{Failure, Reason, SetupError};
pub use server::{accept, offering_h2, self_signed, server_config};
pub use session::{Need, Negotiated, Session, Side};
pub use stream::{TlsStream, SCRATCH};
pub use transport::{handshake_within, Stream};

pub use rustls::client::UnbufferedClientConnection as ClientConnection;
pub use rustls::server::UnbufferedServerConnection as ServerConnection;
pub use rustls::ServerConfig;

/// The one application protocol offered and accepted.
pub const ALPN_HTTP1: &[u8] = b"http/1.1";
/// HTTP/2's protocol name in ALPN (RFC 9113 §3.2).
pub const ALPN_H2: &[u8] = b"h2";

/// A TLS version a user can ask for alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    Tls12,
    Tls13,
}

static TLS12_ONLY: [&rustls::SupportedProtocolVersion; 1] = [&rustls::version::TLS12];
static TLS13_ONLY: [&rustls::SupportedProtocolVersion; 1] = [&rustls::version::TLS13];

fn versions(only: Option<Version>) -> &'static [&'static rustls::SupportedProtocolVersion] {
    match only {
        None => rustls::ALL_VERSIONS,
        Some(Version::Tls12) => &TLS12_ONLY,
        Some(Version::Tls13) => &TLS13_ONLY,
    }
}
