//! HTTP/2 figures of a blast (`--http2`, `--http2-prior-knowledge`): connections by the
//! protocol they ended up speaking, streams the server reset (by code), GOAWAYs received and
//! the requests sent again because of them, and whether the server capped `--streams`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// RST_STREAM and GOAWAY codes by number (RFC 9113 §7); any other is counted as `OTHER`.
pub const H2_CODES: [&str; 14] = [
    "NO_ERROR",
    "PROTOCOL_ERROR",
    "INTERNAL_ERROR",
    "FLOW_CONTROL_ERROR",
    "SETTINGS_TIMEOUT",
    "STREAM_CLOSED",
    "FRAME_SIZE_ERROR",
    "REFUSED_STREAM",
    "CANCEL",
    "COMPRESSION_ERROR",
    "CONNECT_ERROR",
    "ENHANCE_YOUR_CALM",
    "INADEQUATE_SECURITY",
    "HTTP_1_1_REQUIRED",
];

/// A shard's HTTP/2 counts of one interval, or their sum.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Http2 {
    /// Connections that spoke HTTP/2, and (`--http2` over TLS, the server chose it) HTTP/1.1.
    pub h2_conns: u64,
    pub h1_conns: u64,
    /// GOAWAY frames received.
    pub goaways: u64,
    /// Requests a GOAWAY refused (above its last stream id, or sent after it), sent again on
    /// a new connection.
    pub retried: u64,
    /// Streams the server reset, by code (`H2_CODES`'s index; the last is any other).
    pub resets: [u64; H2_CODES.len() + 1],
    /// The lowest `SETTINGS_MAX_CONCURRENT_STREAMS` a server set below `--streams` (0: none).
    pub capped_at: u64,
}

impl Http2 {
    /// A stream reset by the server with `code`.
    pub fn reset(&mut self, code: u32) {
        let i = (code as usize).min(H2_CODES.len());
        self.resets[i] += 1;
    }

    /// The server allows `max` streams at once on a connection where `--streams` asked more.
    pub fn capped(&mut self, max: u64) {
        self.capped_at = if self.capped_at == 0 { max } else { self.capped_at.min(max) };
    }

    pub fn add(&mut self, o: &Http2) {
        self.h2_conns += o.h2_conns;
        self.h1_conns += o.h1_conns;
        self.goaways += o.goaways;
        self.retried += o.retried;
        for (a, b) in self.resets.iter_mut().zip(o.resets) {
            *a += b;
        }
        if o.capped_at > 0 {
            self.capped(o.capped_at);
        }
    }

    /// Takes the interval's counts; the cap, a fact about the server, stays.
    pub fn take(&mut self) -> Http2 {
        let taken = std::mem::take(self);
        self.capped_at = taken.capped_at;
        taken
    }
}

/// The summary's `http2`: what the run's connections spoke and what the server did to them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Http2Summary {
    /// `h2` (TLS with ALPN), `h2c` (prior knowledge on http://), or `h2,http/1.1` offered.
    pub mode: String,
    /// Streams asked per connection (`--streams`).
    pub streams: u64,
    /// Connections opened, by the protocol they spoke: `h2`, `http/1.1`.
    pub connections: BTreeMap<String, u64>,
    /// The server's `SETTINGS_MAX_CONCURRENT_STREAMS` when it was below `--streams`: then no
    /// connection had more streams open than this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capped_at: Option<u64>,
    pub goaways: u64,
    /// Requests a GOAWAY refused, sent again on a new connection (not errors).
    pub retried: u64,
    /// Streams the server reset, by code (the `reset_stream` errors).
    pub reset_streams: BTreeMap<String, u64>,
}

impl Http2Summary {
    pub fn new(mode: &str, streams: u64, h: &Http2) -> Self {
        let mut connections = BTreeMap::new();
        for (name, n) in [("h2", h.h2_conns), ("http/1.1", h.h1_conns)] {
            if n > 0 {
                connections.insert(name.to_string(), n);
            }
        }
        let names = H2_CODES.iter().copied().chain(["OTHER"]);
        Http2Summary {
            mode: mode.to_string(),
            streams,
            connections,
            capped_at: (h.capped_at > 0).then_some(h.capped_at),
            goaways: h.goaways,
            retried: h.retried,
            reset_streams: names.zip(h.resets).filter(|(_, n)| *n > 0).map(|(k, n)| (k.to_string(), n)).collect(),
        }
    }

    /// Adds another run's figures (merging a fleet).
    pub fn add(&mut self, o: &Http2Summary) {
        for (k, n) in &o.connections {
            *self.connections.entry(k.clone()).or_default() += n;
        }
        for (k, n) in &o.reset_streams {
            *self.reset_streams.entry(k.clone()).or_default() += n;
        }
        self.capped_at = match (self.capped_at, o.capped_at) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        self.goaways += o.goaways;
        self.retried += o.retried;
    }

    /// One line for the text summary.
    pub fn line(&self) -> String {
        let conns: Vec<String> = self.connections.iter().map(|(k, n)| format!("{n} {k}")).collect();
        let mut s = format!(
            "HTTP/2 ({}): {} stream{} a connection; connections {}",
            self.mode,
            self.streams,
            if self.streams == 1 { "" } else { "s" },
            if conns.is_empty() { "none".into() } else { conns.join(", ") }
        );
        if let Some(cap) = self.capped_at {
            s += &format!("; the server capped streams at {cap}");
        }
        if self.goaways > 0 || self.retried > 0 {
            s += &format!("; GOAWAY {} (requests sent again: {})", self.goaways, self.retried);
        }
        if !self.reset_streams.is_empty() {
            let r: Vec<String> = self.reset_streams.iter().map(|(k, n)| format!("{k} {n}")).collect();
            s += &format!("; streams reset: {}", r.join(", "));
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_add_and_name_their_codes() {
        let mut a = Http2 { h2_conns: 3, goaways: 1, retried: 4, ..Default::default() };
        a.reset(7);
        a.reset(0x99);
        a.capped(5);
        let mut b = Http2 { h1_conns: 2, ..Default::default() };
        b.capped(8);
        b.add(&a);
        assert_eq!((b.h2_conns, b.h1_conns, b.capped_at), (3, 2, 5));
        let s = Http2Summary::new("h2", 10, &b);
        assert_eq!(s.reset_streams.get("REFUSED_STREAM"), Some(&1));
        assert_eq!(s.reset_streams.get("OTHER"), Some(&1));
        assert_eq!(s.connections.get("http/1.1"), Some(&2));
        assert_eq!(s.capped_at, Some(5));
        let taken = b.take();
        assert_eq!((taken.goaways, b.goaways, b.capped_at), (1, 0, 5));
        assert!(s.line().contains("capped streams at 5"), "{}", s.line());
    }
}
