//! The admin API: JSON over HTTP/1.1 on its own executor (not a proxy shard, so a slow admin
//! client never delays traffic). One request per connection.
//!
//! It changes what a staging proxy does to real traffic, so it is careful about who asks:
//! loopback by default (the CLI refuses other addresses without a token), an optional bearer
//! token, `Host` must be an IP literal or `localhost` (a web page cannot reach it through DNS
//! rebinding), and mutations refuse anything a browser sends on a page's behalf (`Origin`,
//! `Sec-Fetch-*`) and want `Content-Type: application/json`, which a cross-site form cannot set.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use engine_http::header_slots;
use futures_lite::io::AsyncWriteExt;
use glommio::net::TcpStream;
use glommio::Placement;

use crate::faults::{FaultError, Rule};
use crate::iobuf::IoBuf;
use crate::{ProxyError, Shared};
use engine_http::forward::reason;
use engine_http::request::{self, Framing};

/// Largest admin request body (a fault rule is far smaller).
const MAX_BODY: usize = 256 * 1024;
/// A whole admin request must arrive within this time.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

pub(crate) struct Admin {
    pub addr: SocketAddr,
    stop: Arc<AtomicBool>,
    handle: Option<glommio::ExecutorJoinHandle<()>>,
}

impl Admin {
    pub fn start(addr: SocketAddr, token: Option<String>, shared: Arc<Shared>) -> Result<Admin, ProxyError> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let token: Option<Arc<str>> = token.map(Into::into);
        let (bound, handle) = engine_runtime::listen::spawn_bound(
            engine_runtime::Executor::new("proxy-admin", Placement::Unbound),
            engine_runtime::listen::Bind::Own(addr),
            move |listener| async move {
                engine_runtime::listen::accept_until(
                    &listener,
                    || flag.load(Ordering::Relaxed),
                    |s| {
                        glommio::spawn_local(handle_connection(s, shared.clone(), token.clone())).detach();
                    },
                )
                .await;
            },
        )?;
        Ok(Admin { addr: bound, stop, handle: Some(handle) })
    }

    pub fn stop(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

impl Drop for Admin {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// One response: status, content type, body.
struct Reply {
    status: u16,
    content_type: &'static str,
    body: Vec<u8>,
    extra: &'static str,
}

impl Reply {
    fn json(status: u16, value: &impl serde::Serialize) -> Reply {
        let mut body = serde_json::to_vec_pretty(value).unwrap_or_default();
        body.push(b'\n');
        Reply { status, content_type: "application/json", body, extra: "" }
    }

    fn error(status: u16, message: impl std::fmt::Display) -> Reply {
        Reply::json(status, &serde_json::json!({ "error": message.to_string() }))
    }

    fn empty(status: u16) -> Reply {
        Reply { status, content_type: "text/plain", body: Vec::new(), extra: "" }
    }
}

async fn handle_connection(mut stream: TcpStream, shared: Arc<Shared>, token: Option<Arc<str>>) {
    let deadline = std::time::Instant::now() + REQUEST_TIMEOUT;
    let mut buf = IoBuf::with_capacity(4096);
    let reply = loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            break Reply::error(408, "request not received in time");
        }
        match buf.read_from_timeout(&mut stream, left).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let mut slots = header_slots();
        match request::parse(&buf, &mut slots) {
            Ok(None) => continue,
            Err(e) => break Reply::error(e.status(), e),
            Ok(Some(head)) => {
                let want = match head.framing {
                    Framing::None => 0,
                    Framing::Length(n) if n as usize <= MAX_BODY => n as usize,
                    Framing::Length(_) => break Reply::error(413, format!("body above {MAX_BODY} bytes")),
                    Framing::Chunked => break Reply::error(411, "send the body with a Content-Length"),
                };
                if buf.len() < head.len + want {
                    continue;
                }
                let body = &buf[head.len..head.len + want];
                break route(&shared, token.as_deref(), &head, body);
            }
        }
    };
    let mut out = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nCache-Control: no-store\r\n{}Connection: close\r\n\r\n",
        reply.status,
        reason(reply.status),
        reply.content_type,
        reply.body.len(),
        reply.extra
    )
    .into_bytes();
    out.extend_from_slice(&reply.body);
    let _ = stream.write_all(&out).await;
}

fn header<'a>(head: &'a request::RequestHead<'_, '_>, name: &str) -> Option<&'a [u8]> {
    head.headers.iter().find(|h| h.name.eq_ignore_ascii_case(name)).map(|h| h.value)
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
pub(crate) fn same_secret(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq as _;
    a.ct_eq(b).into()
}

/// `ok` while every shard beats; 503 naming the shards that died or stopped beating, so a
/// liveness probe restarts a proxy that still accepts on a dead shard's port share.
fn healthz(shared: &Shared) -> Reply {
    let faults = shared.unhealthy();
    if faults.is_empty() {
        return Reply { status: 200, content_type: "text/plain", body: b"ok\n".to_vec(), extra: "" };
    }
    Reply {
        status: 503,
        content_type: "text/plain",
        body: format!("unhealthy: {}\n", faults.join("; ")).into_bytes(),
        extra: "",
    }
}

fn route(shared: &Shared, token: Option<&str>, head: &request::RequestHead<'_, '_>, body: &[u8]) -> Reply {
    let path = head.target.split('?').next().unwrap_or("");
    if path == "/healthz" && head.method == "GET" {
        return healthz(shared);
    }
    if !header(head, "host").is_some_and(host_is_literal) {
        return Reply::error(403, "Host must be an IP address or localhost");
    }
    if let Some(token) = token {
        let given = header(head, "authorization").and_then(|v| v.strip_prefix(b"Bearer "));
        if !given.is_some_and(|g| same_secret(g, token.as_bytes())) {
            let mut r = Reply::error(401, "missing or wrong bearer token");
            r.extra = "WWW-Authenticate: Bearer\r\n";
            return r;
        }
    }
    let mutation = head.method != "GET" && head.method != "HEAD";
    if mutation {
        if ["origin", "sec-fetch-site", "sec-fetch-mode", "sec-fetch-dest"].iter().any(|h| header(head, h).is_some()) {
            return Reply::error(403, "changes are refused from browsers; use curl or a script");
        }
        let json = header(head, "content-type").is_some_and(|v| {
            v.split(|&b| b == b';').next().is_some_and(|t| t.trim_ascii().eq_ignore_ascii_case(b"application/json"))
        });
        if !body.is_empty() && !json {
            return Reply::error(415, "send the body as Content-Type: application/json");
        }
    }
    match (head.method, path) {
        ("GET", "/faults") => Reply::json(200, shared.book.rules().as_ref()),
        ("POST", "/faults") => match serde_json::from_slice::<Rule>(body) {
            Err(e) => Reply::error(400, format!("invalid fault rule: {e}")),
            Ok(rule) => match shared.book.add(rule) {
                Ok(stored) => Reply::json(201, &stored),
                Err(e @ FaultError::DuplicateId(_)) => Reply::error(409, e),
                Err(e) => Reply::error(400, e),
            },
        },
        ("POST", "/faults/reset") => {
            shared.book.reset();
            Reply::empty(204)
        }
        ("DELETE", p) if p.starts_with("/faults/") => match shared.book.remove(&p["/faults/".len()..]) {
            Ok(()) => Reply::empty(204),
            Err(e) => Reply::error(404, e),
        },
        ("GET", "/stats") => Reply::json(200, &shared.report()),
        ("GET", "/metrics") => Reply {
            status: 200,
            content_type: "text/plain; version=0.0.4; charset=utf-8",
            body: shared.metrics().into_bytes(),
            extra: "",
        },
        (_, "/faults" | "/faults/reset" | "/stats" | "/metrics" | "/healthz") => {
            Reply::error(405, "method not allowed")
        }
        _ => Reply::error(404, "no such endpoint; see GET /faults, /stats, /metrics, /healthz"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_that_dns_rebinding_cannot_forge() {
        for ok in ["127.0.0.1:9901", "localhost", "LOCALHOST:1", "[::1]:9901", "10.1.2.3"] {
            assert!(host_is_literal(ok.as_bytes()), "{ok}");
        }
        for bad in ["evil.example:9901", "evil.example", "[::1", ""] {
            assert!(!host_is_literal(bad.as_bytes()), "{bad}");
        }
    }

    #[test]
    fn secrets_compare_whole() {
        assert!(same_secret(b"abc", b"abc"));
        assert!(!same_secret(b"abc", b"abd"));
        assert!(!same_secret(b"abc", b"abcd"));
    }
}
