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

use engine_runtime::endpoint::{guard, Endpoint, Reply, Request};

use crate::faults::{FaultError, Rule};
use crate::{ProxyError, Shared};

const PAGE: &str = include_str!("../assets/admin.html");
const ADMIN_JS: &str = include_str!("../assets/admin.js");
const UPLOT_JS: &str = include_str!("../../results/assets/uplot/uPlot.iife.min.js");
const UPLOT_CSS: &str = include_str!("../../results/assets/uplot/uPlot.min.css");

/// The admin page: `/stats` each second, and the rules with a switch each.
fn page() -> String {
    PAGE.replace("/*UPLOT_CSS*/", UPLOT_CSS).replace("/*UPLOT_JS*/", UPLOT_JS).replace("/*ADMIN_JS*/", ADMIN_JS)
}

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

pub(crate) use engine_runtime::endpoint::same_secret;

/// `ok` while every shard beats; 503 naming the shards that died or stopped beating, so a
/// liveness probe restarts a proxy that still accepts on a dead shard's port share.
fn healthz(shared: &Shared) -> Reply {
    let faults = shared.unhealthy();
    if faults.is_empty() {
        return Reply::new(200, "text/plain", "ok\n");
    }
    Reply::new(503, "text/plain", format!("unhealthy: {}\n", faults.join("; ")))
}

fn route(shared: &Shared, token: Option<&str>, req: &Request<'_>) -> Reply {
    let (path, body) = (req.path, req.body);
    if path == "/healthz" && req.method == "GET" {
        return healthz(shared);
    }
    // The admin page's own buttons are a page of this origin; other pages are refused.
    if let Err(refused) = guard(req, token, true) {
        let mut r = error(refused.status, refused.message);
        r.extra = refused.challenge();
        return r;
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
        ("GET", "/") => Reply::new(200, "text/html; charset=utf-8", page()),
        ("POST", p) if p.starts_with("/faults/") && (p.ends_with("/on") || p.ends_with("/off")) => {
            let (id, on) = match p["/faults/".len()..].rsplit_once('/') {
                Some((id, way)) => (id, way == "on"),
                None => return error(404, "POST /faults/ID/on or /faults/ID/off"),
            };
            match shared.book.switch(id, on) {
                Ok(rule) => json(200, &rule),
                Err(e) => error(404, e),
            }
        }
        ("DELETE", p) if p.starts_with("/faults/") => match shared.book.remove(&p["/faults/".len()..]) {
            Ok(()) => Reply::empty(204),
            Err(e) => error(404, e),
        },
        ("GET", "/stats") => json(200, &shared.report()),
        ("GET", "/metrics") => Reply::new(200, "text/plain; version=0.0.4; charset=utf-8", shared.metrics()),
        (_, "/faults" | "/faults/reset" | "/stats" | "/metrics" | "/healthz") => error(405, "method not allowed"),
        _ => error(404, "no such endpoint; see GET /, /faults, /stats, /metrics, /healthz"),
    }
}
