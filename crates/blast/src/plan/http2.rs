//! Which protocol a run speaks (curl's flags: `--http2`, `--http2-prior-knowledge`), how many
//! streams each connection carries, and HTTP/2's windows and limits.

use super::{PlanError, PlannedRequest, Target};
use crate::h2req;

/// What the connections speak.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Protocol {
    /// HTTP/1.1, the default: every existing figure keeps its meaning.
    #[default]
    Http1,
    /// `--http2`: over https://, ALPN offers `h2` then `http/1.1` and the server chooses.
    Http2,
    /// `--http2-prior-knowledge`: h2c on http:// (the preface at once), h2 without fallback
    /// on https://.
    Http2PriorKnowledge,
}

/// The most `--streams` a connection may ask.
pub const MAX_STREAMS: u32 = 1000;
/// Stream and connection windows by default: h2load's (2^30 − 1), so the generator is never
/// what limits a response's rate.
pub const DEFAULT_WINDOW: u32 = (1 << 30) - 1;
/// The largest header list a response may have by default (`SETTINGS_MAX_HEADER_LIST_SIZE`).
pub const DEFAULT_MAX_HEADER_LIST: u32 = 64 * 1024;

/// An HTTP/2 run's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Http2Plan {
    /// No fallback to HTTP/1.1 (and over http://, h2c).
    pub prior_knowledge: bool,
    /// Concurrent streams per connection asked (a server's limit may lower it).
    pub streams: u32,
    pub window: u32,
    pub connection_window: u32,
    pub max_header_list: u32,
}

impl Http2Plan {
    /// How the summary names the mode: `h2c`, `h2`, or `h2,http/1.1` (offered by ALPN).
    pub fn mode(&self, tls: bool) -> &'static str {
        match (tls, self.prior_knowledge) {
            (false, _) => "h2c",
            (true, true) => "h2",
            (true, false) => "h2,http/1.1",
        }
    }
}

/// The flags as given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Http2Input {
    pub protocol: Protocol,
    pub streams: u32,
    pub window: Option<u32>,
    pub connection_window: Option<u32>,
    pub max_header_list: Option<u32>,
}

impl Default for Http2Input {
    fn default() -> Self {
        Http2Input {
            protocol: Protocol::Http1,
            streams: 1,
            window: None,
            connection_window: None,
            max_header_list: None,
        }
    }
}

impl Http2Input {
    /// Validates the flags against the target: `None` for an HTTP/1.1 run.
    pub(super) fn plan(&self, target: &Target) -> Result<Option<Http2Plan>, PlanError> {
        let bad = |reason: &str| Err(PlanError::Http2(reason.to_string()));
        let prior_knowledge = match self.protocol {
            Protocol::Http1 => {
                if self.streams != 1 {
                    return bad("--streams is for HTTP/2: add --http2 (https://) or --http2-prior-knowledge");
                }
                if self.window.is_some() || self.connection_window.is_some() || self.max_header_list.is_some() {
                    return bad("--window, --connection-window and --max-header-list are for HTTP/2: add --http2 (https://) or --http2-prior-knowledge");
                }
                return Ok(None);
            }
            Protocol::Http2 if !target.tls => {
                return bad("--http2 agrees on HTTP/2 by ALPN, which needs an https:// URL; for h2c on http:// use --http2-prior-knowledge")
            }
            Protocol::Http2 => false,
            Protocol::Http2PriorKnowledge => true,
        };
        if !(1..=MAX_STREAMS).contains(&self.streams) {
            return bad(&format!("--streams must be 1 to {MAX_STREAMS}"));
        }
        // RFC 9113 §6.5.2: a window is at most 2^31 − 1; below 65,535 only the stream's.
        let window = self.window.unwrap_or(DEFAULT_WINDOW);
        let connection_window = self.connection_window.unwrap_or(DEFAULT_WINDOW);
        if !(1..=i32::MAX as u32).contains(&window) {
            return bad("--window must be 1 byte to 2 GiB - 1");
        }
        if !(65_535..=i32::MAX as u32).contains(&connection_window) {
            return bad("--connection-window must be 65535 bytes (HTTP/2's initial window) to 2 GiB - 1");
        }
        let max_header_list = self.max_header_list.unwrap_or(DEFAULT_MAX_HEADER_LIST);
        if max_header_list < 1024 {
            return bad("--max-header-list must be at least 1 KiB");
        }
        Ok(Some(Http2Plan { prior_knowledge, streams: self.streams, window, connection_window, max_header_list }))
    }
}

/// Every request that is not templated converts to HTTP/2 now, once for every shard, so one
/// that cannot is an error before the run (a templated one is converted per request, and
/// counted as an `h2` error when it cannot be).
pub(super) fn convert_requests(requests: &mut [PlannedRequest], scheme: &str) -> Result<(), PlanError> {
    for r in requests.iter_mut().filter(|r| !r.request.is_templated()) {
        let h2 = h2req::convert(r.request.bytes(), scheme)
            .map_err(|reason| PlanError::Request { name: r.name.clone(), reason: format!("as HTTP/2: {reason}") })?;
        r.h2 = Some(h2);
    }
    Ok(())
}
