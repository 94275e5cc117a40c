//! The one small HTTP server of `engine`'s control surfaces: the blast's `/metrics`, control
//! API and live page, and the proxy's admin API. One request per connection on its own
//! unpinned executor (a slow or hostile client never delays a shard), parsed by the engine's
//! strict request parser, with one deadline for the whole request and a bound on its body.
//! The caller routes; [`guard`] holds the rules of who may ask. A reply may be a stream of
//! server-sent events ([`Feed`]): the connection then stays open while the feed lasts.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use engine_http::forward::reason;
use engine_http::header_slots;
use engine_http::request::{self, Framing};
use futures_lite::io::{AsyncReadExt, AsyncWriteExt};
use glommio::net::TcpStream;
use glommio::Placement;

use crate::listen::{self, Bind, ListenError};
use crate::Executor;

/// A whole request (head and body) must arrive within this time: a per-read timeout would
/// let a client that sends a byte every few seconds hold its connection for hours.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// One request, as the route sees it.
pub struct Request<'a> {
    pub method: &'a str,
    /// The target's path, without the query.
    pub path: &'a str,
    pub headers: &'a [httparse::Header<'a>],
    pub body: &'a [u8],
}

impl Request<'_> {
    /// The first value of header `name` (any case).
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers.iter().find(|h| h.name.eq_ignore_ascii_case(name)).map(|h| h.value)
    }
}

/// One response: status, content type, body, and any more header lines (each ending CRLF).
pub struct Reply {
    pub status: u16,
    pub content_type: &'static str,
    pub body: Vec<u8>,
    pub extra: &'static str,
    /// Server-sent events to follow the head (`text/event-stream`), instead of a body.
    pub stream: Option<Arc<dyn Feed>>,
}

/// Events for a server-sent event stream, read by each client at its own pace.
pub trait Feed: Send + Sync {
    /// The events after mark `seen` (0 at first), as event-stream text, and the new mark;
    /// `None` once the feed has ended and the client has had everything.
    fn after(&self, seen: u64) -> Option<(String, u64)>;
}

/// How often a stream looks for new events.
const FEED_POLL: Duration = Duration::from_millis(100);
/// A stream client that takes nothing for this long is dropped (a stalled tab, say); what
/// it holds meanwhile is one socket buffer, never a queue in the engine.
const STALLED_AFTER: Duration = Duration::from_secs(15);
/// When the endpoint stops, how long its streams may still take to send what their feeds hold.
const LINGER: Duration = Duration::from_secs(1);
/// An idle stream sends a comment this often, so proxies between keep it open.
const KEEPALIVE: Duration = Duration::from_secs(15);

impl Reply {
    pub fn new(status: u16, content_type: &'static str, body: impl Into<Vec<u8>>) -> Reply {
        Reply { status, content_type, body: body.into(), extra: "", stream: None }
    }

    /// A stream of server-sent events from `feed`.
    pub fn events(feed: Arc<dyn Feed>) -> Reply {
        Reply { stream: Some(feed), ..Reply::new(200, "text/event-stream", Vec::new()) }
    }

    /// A status with no body.
    pub fn empty(status: u16) -> Reply {
        Reply::new(status, "text/plain", Vec::new())
    }

    fn write(&self) -> Vec<u8> {
        if self.stream.is_some() {
            return format!(
                "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-store\r\n{}Connection: close\r\n\r\n",
                self.extra
            )
            .into_bytes();
        }
        let mut out = format!(
            "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nCache-Control: no-store\r\n{}Connection: close\r\n\r\n",
            self.status,
            reason(self.status),
            self.content_type,
            self.body.len(),
            self.extra
        )
        .into_bytes();
        out.extend_from_slice(&self.body);
        out
    }
}

/// What the server answers by itself, before any route: a request it cannot read.
pub type Refusal = fn(status: u16, message: &str) -> Reply;

/// A running endpoint. Dropping it stops it.
pub struct Endpoint {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    handle: Option<glommio::ExecutorJoinHandle<()>>,
}

impl Endpoint {
    /// Serves `route` on `addr` from an executor named `name`. Bodies above `max_body` bytes
    /// are refused (413), as are chunked ones (411); a request that cannot be read is answered
    /// by `refuse` (its status and why), in the route's own format.
    pub fn serve<R>(
        name: &str,
        addr: SocketAddr,
        max_body: usize,
        refuse: Refusal,
        route: R,
    ) -> Result<Endpoint, ListenError>
    where
        R: Fn(&Request<'_>) -> Reply + Send + Sync + 'static,
    {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let route = Arc::new(route);
        let (bound, handle) = listen::spawn_bound(
            Executor::new(name, Placement::Unbound),
            Bind::Own(addr),
            move |listener| async move {
                let open = std::rc::Rc::new(std::cell::Cell::new(0u32));
                listen::accept_until(
                    &listener,
                    || flag.load(Ordering::Relaxed),
                    |s| {
                        let (open, route) = (open.clone(), route.clone());
                        open.set(open.get() + 1);
                        glommio::spawn_local(async move {
                            answer(s, max_body, refuse, route).await;
                            open.set(open.get() - 1);
                        })
                        .detach();
                    },
                )
                .await;
                // Streams send what their feeds still hold (a run's last frames) before the
                // endpoint goes, for at most LINGER (a client that stopped reading).
                let deadline = Instant::now() + LINGER;
                while open.get() > 0 && Instant::now() < deadline {
                    glommio::timer::sleep(Duration::from_millis(10)).await;
                }
            },
        )?;
        Ok(Endpoint { addr: bound, stop, handle: Some(handle) })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting and waits for the executor to end.
    pub fn stop(mut self) {
        self.halt();
    }

    fn halt(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

impl Drop for Endpoint {
    fn drop(&mut self) {
        self.halt();
    }
}

/// Reads one request within [`REQUEST_TIMEOUT`], answers it, closes.
async fn answer<R>(mut stream: TcpStream, max_body: usize, refuse: Refusal, route: Arc<R>)
where
    R: Fn(&Request<'_>) -> Reply,
{
    let deadline = Instant::now() + REQUEST_TIMEOUT;
    let mut buf = Vec::with_capacity(4096);
    let mut chunk = [0u8; 4096];
    let reply = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || stream.set_read_timeout(Some(left.max(Duration::from_millis(1)))).is_err() {
            break refuse(408, "request not received in time");
        }
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
        let mut slots = header_slots();
        match request::parse(&buf, &mut slots) {
            Ok(None) => continue,
            Err(e) => break refuse(e.status(), &e.to_string()),
            Ok(Some(head)) => {
                let want = match head.framing {
                    Framing::None => 0,
                    Framing::Length(n) if n as usize <= max_body => n as usize,
                    Framing::Length(_) => break refuse(413, &format!("body above {max_body} bytes")),
                    Framing::Chunked => break refuse(411, "send the body with a Content-Length"),
                };
                if buf.len() < head.len + want {
                    continue;
                }
                let path = head.target.split('?').next().unwrap_or("");
                let req =
                    Request { method: head.method, path, headers: head.headers, body: &buf[head.len..head.len + want] };
                break route(&req);
            }
        }
    };
    if stream.set_write_timeout(Some(STALLED_AFTER)).is_err() || stream.write_all(&reply.write()).await.is_err() {
        return;
    }
    if let Some(feed) = reply.stream {
        follow(&mut stream, feed.as_ref()).await;
    }
}

/// Writes `feed`'s events as they come until it ends, the client leaves, or stalls.
async fn follow(stream: &mut TcpStream, feed: &dyn Feed) {
    let (mut seen, mut quiet) = (0, Instant::now());
    loop {
        let Some((text, mark)) = feed.after(seen) else { return };
        seen = mark;
        let text = if text.is_empty() && quiet.elapsed() >= KEEPALIVE { ": keepalive\n\n".to_string() } else { text };
        if !text.is_empty() {
            if stream.write_all(text.as_bytes()).await.is_err() {
                return;
            }
            quiet = Instant::now();
        }
        glommio::timer::sleep(FEED_POLL).await;
    }
}

/// Why [`guard`] refused a request: its status and the reason to give.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refused {
    pub status: u16,
    pub message: &'static str,
}

impl Refused {
    /// The header a 401 carries.
    pub fn challenge(&self) -> &'static str {
        if self.status == 401 {
            "WWW-Authenticate: Bearer\r\n"
        } else {
            ""
        }
    }
}

/// The rules of a control surface that changes what the engine does: `Host` must be an IP
/// literal or `localhost` (a web page cannot reach it through DNS rebinding); with a token,
/// `Authorization: Bearer` must carry it; a change (any method but GET and HEAD) refuses what
/// a browser sends on another page's behalf (`Origin`, `Sec-Fetch-*`) unless `pages` allows a
/// page of this same origin (the engine's own live page), and wants `Content-Type:
/// application/json` when it has a body, which a cross-site form cannot set.
pub fn guard(req: &Request<'_>, token: Option<&str>, pages: bool) -> Result<(), Refused> {
    let Some(host) = req.header("host").filter(|h| host_is_literal(h)) else {
        return Err(Refused { status: 403, message: "Host must be an IP address or localhost" });
    };
    if let Some(token) = token {
        let given = req.header("authorization").and_then(|v| v.strip_prefix(b"Bearer "));
        if !given.is_some_and(|g| same_secret(g, token.as_bytes())) {
            return Err(Refused { status: 401, message: "missing or wrong bearer token" });
        }
    }
    if req.method == "GET" || req.method == "HEAD" {
        return Ok(());
    }
    let same_origin = req.header("origin").is_some_and(|o| {
        o.strip_prefix(b"http://").is_some_and(|rest| rest == host)
            && req.header("sec-fetch-site").is_none_or(|s| s == b"same-origin")
    });
    let from_browser =
        ["origin", "sec-fetch-site", "sec-fetch-mode", "sec-fetch-dest"].iter().any(|h| req.header(h).is_some());
    if from_browser && !(pages && same_origin) {
        return Err(Refused { status: 403, message: "changes are refused from browsers; use curl or a script" });
    }
    let is_json = req.header("content-type").is_some_and(|v| {
        v.split(|&b| b == b';').next().is_some_and(|t| t.trim_ascii().eq_ignore_ascii_case(b"application/json"))
    });
    if !req.body.is_empty() && !is_json {
        return Err(Refused { status: 415, message: "send the body as Content-Type: application/json" });
    }
    Ok(())
}

/// `localhost` or an IP literal, with or without a port.
fn host_is_literal(host: &[u8]) -> bool {
    let Ok(host) = std::str::from_utf8(host) else { return false };
    let name = if let Some(rest) = host.strip_prefix('[') {
        match rest.split_once(']') {
            Some((ip, "")) => ip,
            Some((ip, port)) if port.starts_with(':') => ip,
            _ => return false,
        }
    } else {
        host.rsplit_once(':').map_or(host, |(h, _)| h)
    };
    name.eq_ignore_ascii_case("localhost") || name.parse::<std::net::IpAddr>().is_ok()
}

/// Compares without stopping at the first difference, so timing does not leak the token
/// (its length is not secret).
pub fn same_secret(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq as _;
    a.ct_eq(b).into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    fn ask(addr: SocketAddr, parts: &[&[u8]]) -> String {
        let mut c = std::net::TcpStream::connect(addr).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        for p in parts {
            c.write_all(p).unwrap();
            std::thread::sleep(Duration::from_millis(20));
        }
        let mut out = String::new();
        let _ = c.read_to_string(&mut out);
        out
    }

    #[test]
    fn hosts_that_dns_rebinding_cannot_forge() {
        for ok in ["127.0.0.1:9901", "localhost", "LOCALHOST:1", "[::1]:9901", "10.1.2.3"] {
            assert!(host_is_literal(ok.as_bytes()), "{ok}");
        }
        for bad in ["evil.example:9901", "evil.example", "[::1", ""] {
            assert!(!host_is_literal(bad.as_bytes()), "{bad}");
        }
    }

    /// Who may change what: a script, the engine's own page (when the surface has one), never
    /// another page; the token when there is one; JSON bodies only.
    #[test]
    fn the_guard_lets_scripts_and_the_own_page_change_and_no_other_page() {
        let ask =
            |method: &'static str, headers: &[(&'static str, &'static str)], body: &'static [u8], token, pages| {
                let hs: Vec<httparse::Header<'_>> =
                    headers.iter().map(|(n, v)| httparse::Header { name: n, value: v.as_bytes() }).collect();
                guard(&Request { method, path: "/run/stop", headers: &hs, body }, token, pages).map_err(|r| r.status)
            };
        let host = ("host", "127.0.0.1:5665");
        assert_eq!(ask("POST", &[host], b"", None, false), Ok(()));
        assert_eq!(ask("POST", &[("host", "evil.example:5665")], b"", None, false), Err(403));
        let own = [host, ("origin", "http://127.0.0.1:5665"), ("sec-fetch-site", "same-origin")];
        assert_eq!(ask("POST", &own, b"", None, true), Ok(()));
        assert_eq!(ask("POST", &own, b"", None, false), Err(403));
        let other = [host, ("origin", "http://evil.example"), ("sec-fetch-site", "cross-site")];
        assert_eq!(ask("POST", &other, b"", None, true), Err(403));
        assert_eq!(ask("POST", &[host, ("sec-fetch-site", "cross-site")], b"", None, true), Err(403));
        assert_eq!(ask("POST", &[host], b"{}", None, false), Err(415));
        assert_eq!(
            ask("POST", &[host, ("content-type", "application/json; charset=utf-8")], b"{}", None, false),
            Ok(())
        );
        assert_eq!(ask("GET", &[host], b"", Some("secret-secret-secret"), false), Err(401));
        let bearer = [host, ("authorization", "Bearer secret-secret-secret")];
        assert_eq!(ask("GET", &bearer, b"", Some("secret-secret-secret"), false), Ok(()));
    }

    #[test]
    fn secrets_compare_whole() {
        assert!(same_secret(b"abc", b"abc"));
        assert!(!same_secret(b"abc", b"abd"));
        assert!(!same_secret(b"abc", b"abcd"));
    }

    /// The parser's refusals, the body bound, a request split across reads, the route's reply.
    #[test]
    fn answers_what_it_can_read_and_refuses_the_rest() {
        let refuse: Refusal = |status, message| Reply::new(status, "text/plain", format!("no: {message}"));
        let e = Endpoint::serve("endpoint-test", "127.0.0.1:0".parse().unwrap(), 8, refuse, |req| {
            Reply::new(200, "text/plain", format!("{} {} {}", req.method, req.path, req.body.len()))
        })
        .unwrap();
        let a = e.local_addr();
        let ok = ask(a, &[b"POST /x?q=1 HTTP/1.1\r\nHost: h\r\nContent-", b"Length: 3\r\n\r\nab", b"c"]);
        assert!(ok.starts_with("HTTP/1.1 200 OK\r\n") && ok.ends_with("POST /x 3"), "{ok}");
        let big = ask(a, &[b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 9\r\n\r\n123456789"]);
        assert!(big.starts_with("HTTP/1.1 413 "), "{big}");
        let chunked = ask(a, &[b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"]);
        assert!(chunked.starts_with("HTTP/1.1 411 "), "{chunked}");
        let garbage = ask(a, &[b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n"]);
        assert!(garbage.starts_with("HTTP/1.1 400 "), "{garbage}");
        e.stop();
    }
}
