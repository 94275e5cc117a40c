//! Which protocol a client connection speaks: HTTP/2 by ALPN over TLS, or on a plain
//! connection by its first bytes (h2c by prior knowledge); HTTP/1.1 otherwise.

use engine_tls::Stream;

use super::Conn;
use crate::slot::Wait;

/// What a client connection speaks.
pub(super) enum Protocol {
    Http1,
    Http2,
    /// It closed (or stalled) before that was clear.
    Closed,
}

impl Conn {
    /// HTTP/2 by ALPN over TLS, or on a plain connection by its first bytes (the preface:
    /// h2c by prior knowledge).
    pub(super) async fn protocol(&mut self) -> Protocol {
        if let Stream::Tls(t) = &self.down {
            return if t.negotiated().alpn == Some("h2") { Protocol::Http2 } else { Protocol::Http1 };
        }
        let limits = &self.shard.shared.limits;
        let (idle, header) = (self.deadline(limits.idle_timeout), self.deadline(limits.header_timeout));
        loop {
            if !self.buf.is_empty() {
                match engine_http::h2::frame::sniff(&self.buf) {
                    Some(true) => return Protocol::Http2,
                    Some(false) => return Protocol::Http1,
                    None => {}
                }
            }
            let (what, by) = if self.buf.is_empty() { (Wait::Idle, idle) } else { (Wait::Header, header) };
            if !matches!(self.read_client(what, by).await, Ok(n) if n > 0) {
                return Protocol::Closed;
            }
        }
    }
}
