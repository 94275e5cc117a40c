//! The admin API: JSON over HTTP/1.1 on its own executor (not a proxy shard, so a slow admin
//! client never delays traffic). One request per connection.
//!
//! It changes what a staging proxy does to real traffic, so it is careful about who asks:
//! loopback by default (the CLI refuses other addresses without a token), an optional bearer
//! token, `Host` must be an IP literal or `localhost` (a web page cannot reach it through DNS
//! rebinding), and mutations refuse anything a browser sends on a page's behalf (`Origin`,
//! `Sec-Fetch-*`) and want `Content-Type: application/json`, which a cross-site form cannot set.

use std::net::SocketAddr;
use std::sync::Arc;

use engine_runtime::endpoint::{Endpoint, Reply, Request};

use crate::faults::{FaultError, Rule};
use crate::{ProxyError, Shared};

/// Largest admin request body (a fault rule is far smaller).
const MAX_BODY: usize = 256 * 1024;

/// The admin API on `addr`, on the engine's one control endpoint.
pub(crate) fn start(addr: SocketAddr, token: Option<String>, shared: Arc<Shared>) -> Result<Endpoint, ProxyError> {
    let token: Option<Arc<str>> = token.map(Into::into);
    let endpoint = Endpoint::serve(
        "proxy-admin",
        addr,
        MAX_BODY,
        |status, message| error(status, message),
        move |req| route(&shared, token.as_deref(), req),
    )?;
    Ok(endpoint)
}

fn json(status: u16, value: &impl serde::Serialize) -> Reply {
    let mut body = serde_json::to_vec_pretty(value).unwrap_or_default();
    body.push(b'\n');
    Reply::new(status, "application/json", body)
}

fn error(status: u16, message: impl std::fmt::Display) -> Reply {
    json(status, &serde_json::json!({ "error": message.to_string() }))
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

fn route(shared: &Shared, token: Option<&str>, req: &Request<'_>) -> Reply {
    let (path, body) = (req.path, req.body);
    if path == "/healthz" && req.method == "GET" {
        return healthz(shared);
    }
    if !req.header("host").is_some_and(host_is_literal) {
        return error(403, "Host must be an IP address or localhost");
    }
    if let Some(token) = token {
        let given = req.header("authorization").and_then(|v| v.strip_prefix(b"Bearer "));
        if !given.is_some_and(|g| same_secret(g, token.as_bytes())) {
            let mut r = error(401, "missing or wrong bearer token");
            r.extra = "WWW-Authenticate: Bearer\r\n";
            return r;
        }
    }
    let mutation = req.method != "GET" && req.method != "HEAD";
    if mutation {
        if ["origin", "sec-fetch-site", "sec-fetch-mode", "sec-fetch-dest"].iter().any(|h| req.header(h).is_some()) {
            return error(403, "changes are refused from browsers; use curl or a script");
        }
        let is_json = req.header("content-type").is_some_and(|v| {
            v.split(|&b| b == b';').next().is_some_and(|t| t.trim_ascii().eq_ignore_ascii_case(b"application/json"))
        });
        if !body.is_empty() && !is_json {
            return error(415, "send the body as Content-Type: application/json");
        }
    }
    match (req.method, path) {
        ("GET", "/faults") => json(200, shared.book.rules().as_ref()),
        ("POST", "/faults") => match serde_json::from_slice::<Rule>(body) {
            Err(e) => error(400, format!("invalid fault rule: {e}")),
            Ok(rule) => match shared.book.add(rule) {
                Ok(stored) => json(201, &stored),
                Err(e @ FaultError::DuplicateId(_)) => error(409, e),
                Err(e) => error(400, e),
            },
        },
        ("POST", "/faults/reset") => {
            shared.book.reset();
            Reply::empty(204)
        }
        ("DELETE", p) if p.starts_with("/faults/") => match shared.book.remove(&p["/faults/".len()..]) {
            Ok(()) => Reply::empty(204),
            Err(e) => error(404, e),
        },
        ("GET", "/stats") => json(200, &shared.report()),
        ("GET", "/metrics") => Reply {
            status: 200,
            content_type: "text/plain; version=0.0.4; charset=utf-8",
            body: shared.metrics().into_bytes(),
            extra: "",
        },
        (_, "/faults" | "/faults/reset" | "/stats" | "/metrics" | "/healthz") => error(405, "method not allowed"),
        _ => error(404, "no such endpoint; see GET /faults, /stats, /metrics, /healthz"),
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
