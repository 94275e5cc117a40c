//! One client stream: the faults' decision, then the proxy's own answer or the forward to
//! the upstream's HTTP/2 connection, with the response, its body and trailers streamed back
//! and the upstream's latency recorded as for HTTP/1.1 (to its response head, and to its end).

use std::cell::Cell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use engine_http::h2::frame::{CANCEL, INTERNAL_ERROR};
use engine_http::h2::server::RequestHead;
use h2::RecvStream;
use http::{HeaderName, HeaderValue, Request, Response};

use super::down::{Down, VIA};
use super::pipe::{grpc_status, pipe_down, pipe_up, Broken};
use crate::faults::FaultKind;
use crate::inject::{End, GrpcAnswer};
use crate::pool_h2::{refused, Handshake, Opened, REFUSED_RETRIES};
use crate::shape::{Shape, Shaper};
use crate::shard::Shard;
use crate::slot::Slot;
use crate::stats::{route_of, UpstreamError};

/// What a client connection's streams share with it.
pub(crate) struct Client {
    /// Streams in progress: a drain lets a connection with some finish, and closes one with none.
    pub active: Cell<usize>,
    /// Streams the client reset while the proxy was working on them (rapid reset's count).
    pub resets: Cell<u64>,
    pub slot: Rc<Slot>,
    pub peer: Rc<str>,
    /// The client is on this host: its `x-engine-fault-*` fields count without the token.
    pub loopback: bool,
}

/// One stream's place in its connection's count.
pub(crate) struct Streams(pub Rc<Client>);

impl Streams {
    pub fn open(client: &Rc<Client>) -> Streams {
        client.active.set(client.active.get() + 1);
        client.slot.busy.set(true);
        Streams(client.clone())
    }
}

impl Drop for Streams {
    fn drop(&mut self) {
        let c = &self.0;
        c.active.set(c.active.get() - 1);
        if c.active.get() == 0 {
            c.slot.busy.set(false);
        }
    }
}

/// Fields never forwarded either way: addressed to the proxy, or not carried by HTTP/2.
pub(super) fn dropped(name: &[u8]) -> bool {
    std::str::from_utf8(name)
        .map_or(true, |n| engine_http::forward::is_fault_field(n) || engine_http::forward::not_in_h2(n))
}

/// The request's path without its query (what rules and routes match), `""` for a CONNECT.
pub(super) fn path_of(head: &RequestHead) -> &str {
    let p = head.path().unwrap_or_default();
    let p = p.iter().position(|&b| b == b'?').map_or(p, |q| &p[..q]);
    std::str::from_utf8(p).unwrap_or("")
}

/// One stream: `end`, it came without a body.
pub(crate) async fn exchange(shard: Rc<Shard>, down: Down, head: RequestHead, end: bool, streams: Streams) {
    let grpc = head.fields.get("content-type").is_some_and(|t| t.starts_with(b"application/grpc"));
    let header = |name: &str| head.fields.get(name);
    let method = std::str::from_utf8(head.method()).unwrap_or("");
    let mut decision = shard.faults.borrow_mut().decide(method, path_of(&head), header);
    {
        let mut stats = shard.stats.borrow_mut();
        stats.requests += 1;
        stats.protocols[1] += 1;
    }
    // The faults the request asks for itself (`--fault-headers`).
    let shared = &shard.shared;
    if shared.fault_headers && crate::asked::trusted(streams.0.loopback, shared.admin_token.as_deref(), header) {
        if let Err(bad) = crate::asked::apply(header, &mut decision) {
            shard.stats.borrow_mut().rejected(400);
            let body = format!("engine-proxy: {bad}\n");
            let (head, body) = crate::inject::canned(400, None, std::iter::empty::<(&str, &str)>(), body.as_bytes());
            return answer(&shard, &down, &head, &body, None).await;
        }
    }
    // Held while the request lasts: it counts among the faults active (--max-active-faults).
    let _active = decision.active;
    match decision.end {
        Some(End::Respond { head, body, kind, grpc: as_grpc }) => {
            shard.stats.borrow_mut().fault(kind);
            return answer(&shard, &down, &head, &body, as_grpc.filter(|_| grpc)).await;
        }
        Some(End::Reset(code)) => {
            shard.stats.borrow_mut().fault(FaultKind::Reset);
            return down.reset(code);
        }
        Some(End::Hang) => {
            shard.stats.borrow_mut().fault(FaultKind::Hang);
            // Until the client gives up on the stream (or the connection ends).
            down.reset_by_client().await;
            return;
        }
        Some(End::Timeout(hold)) => {
            shard.stats.borrow_mut().fault(FaultKind::Timeout);
            if hold.is_zero() {
                down.reset_by_client().await;
            } else if engine_runtime::within(hold, down.reset_by_client()).await.is_none() {
                down.reset(CANCEL);
            }
            return;
        }
        None => {}
    }
    if !decision.delay.is_zero() {
        shard.stats.borrow_mut().fault(FaultKind::Delay);
        glommio::timer::sleep(decision.delay).await;
    }
    let mut _permit = None;
    if let Some(limiter) = &decision.limiter {
        match limiter.acquire().await {
            Some(p) => _permit = Some(p),
            None => {
                shard.stats.borrow_mut().fault(FaultKind::Overload);
                return answer(&shard, &down, &limiter.refusal.0, &limiter.refusal.1, None).await;
            }
        }
    }
    // Stream faults act on the bodies (gRPC: the message streams) both ways.
    shard.stats.borrow_mut().stream_faults(decision.stream_kinds);
    if shard.shared.upstream_protocol == crate::UpstreamProtocol::Http1 {
        return super::to_h1::forward(&shard, &head, end, &down, &streams.0, (decision.up, decision.down)).await;
    }
    forward(&shard, &head, end, &down, &streams.0, (grpc, decision.up, decision.down)).await;
}

/// Forwards the stream upstream and its response back.
async fn forward(
    shard: &Shard,
    head: &RequestHead,
    end: bool,
    down: &Down,
    client: &Client,
    (grpc, up_shape, down_shape): (bool, Shape, Shape),
) {
    let peer = &*client.peer;
    let route = route_of(&shard.shared.routes, path_of(head));
    let Some(up) = upstream_request(shard, head, peer) else {
        return fail(shard, down, UpstreamError::Invalid).await;
    };
    let limits = &shard.shared.limits;
    let Opened { response, body: mut to_up, lease, handshake } = match shard.h2_upstream.open(up, end).await {
        Ok(o) => o,
        Err(e) => return fail(shard, down, e).await,
    };
    handshaken(shard, handshake);
    let sent = Instant::now();
    // The request's body goes up while the response comes back (gRPC streams both ways); it
    // stops when the response is done.
    let (mut up_shaper, limited) = (Shaper::new(up_shape), Cell::new(false));
    let request_side = async {
        if !end {
            if let Err(e) = pipe_up(down, &mut to_up, &mut up_shaper).await {
                to_up.send_reset(h2::Reason::CANCEL);
                // A data limit cuts the stream both ways (the client's below).
                if matches!(e, Broken::Limit) {
                    limited.set(true);
                    return;
                }
            }
        }
        std::future::pending::<()>().await;
    };
    let response_side = async {
        let (mut response, mut _lease, mut tries) = (response, lease, 0);
        let response = loop {
            // A client that resets the stream meanwhile ends it here: the upstream's stream is
            // reset with it (dropping its handles), and the client's resets are counted.
            let head_or_reset =
                futures_lite::future::or(async { Ok(response.await) }, async { Err(down.reset_by_client().await) });
            match engine_runtime::within(limits.upstream_timeout, head_or_reset).await {
                Some(Err(_)) => {
                    client.resets.set(client.resets.get() + 1);
                    return;
                }
                None => return fail(shard, down, UpstreamError::Timeout).await,
                Some(Ok(Ok(r))) => break r,
                // A request without a body is sent again if the upstream refused its stream
                // unread (built again from the client's head: no copy kept per request).
                Some(Ok(Err(e))) if end && refused(&e) && tries < REFUSED_RETRIES => {
                    tries += 1;
                    let Some(request) = upstream_request(shard, head, peer) else {
                        return fail(shard, down, UpstreamError::Invalid).await;
                    };
                    match shard.h2_upstream.open(request, true).await {
                        Ok(o) => {
                            handshaken(shard, o.handshake);
                            (response, _lease) = (o.response, o.lease);
                        }
                        Err(e) => return fail(shard, down, e).await,
                    }
                }
                Some(Ok(Err(_))) => return fail(shard, down, UpstreamError::Reset).await,
            }
        };
        let ttfb = sent.elapsed();
        relay(shard, response, down, client, (route, ttfb, sent), (grpc, down_shape)).await;
    };
    futures_lite::future::or(response_side, request_side).await;
    if limited.get() {
        down.reset(CANCEL);
    }
}

/// The request for the upstream from the client's head: the client's authority and path
/// with the upstream's scheme, its fields but those addressed to the proxy or not carried by
/// HTTP/2, `x-forwarded-for` extended with `peer`, and `via`.
fn upstream_request(shard: &Shard, head: &RequestHead, peer: &str) -> Option<Request<()>> {
    let method = http::Method::from_bytes(head.method()).ok()?;
    let scheme = if shard.shared.upstream_tls.is_some() { "https" } else { "http" };
    let authority = match head.authority() {
        Some(a) => std::str::from_utf8(a).ok()?,
        None => shard.shared.upstream_host.as_str(),
    };
    let path = head.path().unwrap_or(b"/");
    let uri = http::Uri::builder().scheme(scheme).authority(authority).path_and_query(path).build().ok()?;
    let mut up = Request::builder().method(method).version(http::Version::HTTP_2).uri(uri);
    let fields = up.headers_mut()?;
    let mut forwarded_for = None;
    for (name, value) in head.fields.iter() {
        if name == b"x-forwarded-for" && forwarded_for.is_none() {
            forwarded_for = Some(value);
        } else if !(dropped(name) || name == b"te" && value != b"trailers") {
            fields.append(HeaderName::from_bytes(name).ok()?, HeaderValue::from_bytes(value).ok()?);
        }
    }
    let xff = match forwarded_for {
        Some(prior) => [prior, b", ", peer.as_bytes()].concat(),
        None => peer.as_bytes().to_vec(),
    };
    if let Ok(v) = HeaderValue::from_bytes(&xff) {
        fields.insert("x-forwarded-for", v);
    }
    fields.append("via", HeaderValue::from_static("2 engine-proxy"));
    up.body(()).ok()
}

/// A new upstream connection's TLS handshake, in the shard's figures.
pub(crate) fn handshaken(shard: &Shard, handshake: Handshake) {
    if let Some((took, resumed)) = handshake {
        shard.stats.borrow_mut().tls_upstream.handshake(Some(took), resumed);
    }
}

/// The upstream's response to the client: head, body, trailers; recorded when it ends.
async fn relay(
    shard: &Shard,
    response: Response<RecvStream>,
    down: &Down,
    client: &Client,
    (route, ttfb, sent): (usize, Duration, Instant),
    (grpc, shape): (bool, Shape),
) {
    let (parts, mut body) = response.into_parts();
    let status = parts.status.as_u16();
    let fields = parts.headers.iter().map(|(n, v)| (n.as_str().as_bytes(), v.as_bytes()));
    let end = body.is_end_stream();
    if down.send_head(status, fields.filter(|(n, _)| !dropped(n)).chain([VIA]), end).is_err() {
        return;
    }
    // A trailers-only gRPC answer carries its status in the head.
    let mut code = if grpc { grpc_status(&parts.headers) } else { None };
    let mut total = Some(sent.elapsed());
    if !end {
        match pipe_down(&mut body, down, &mut Shaper::new(shape)).await {
            Ok(trailer_code) => {
                code = code.or(trailer_code.filter(|_| grpc));
                total = Some(sent.elapsed());
            }
            Err(Broken::From) => {
                down.reset(INTERNAL_ERROR);
                total = None;
                shard.stats.borrow_mut().upstream_error(UpstreamError::Reset);
            }
            Err(Broken::To) => {
                total = None;
                client.resets.set(client.resets.get() + 1);
            }
            // A data limit: the client's stream is cut (the upstream's with the body dropped).
            Err(Broken::Limit) => {
                down.reset(CANCEL);
                total = None;
            }
        }
    }
    let mut stats = shard.stats.borrow_mut();
    stats.upstream(route, status, ttfb, total);
    stats.response(status);
    if let Some(c) = code {
        stats.grpc(c);
    }
}

/// The upstream failed before its response head: 502 (504 on a timeout), as for HTTP/1.1.
pub(super) async fn fail(shard: &Shard, down: &Down, e: UpstreamError) {
    shard.stats.borrow_mut().upstream_error(e);
    let status = e.status();
    let body = format!("engine proxy: upstream {}\n", e.name());
    let (head, body) = crate::inject::canned(status, None, std::iter::empty::<(&str, &str)>(), body.as_bytes());
    answer(shard, down, &head, &body, None).await;
}

/// The proxy's own answer: the canned HTTP/1.1 `head` and `body` as an HTTP/2 response, or
/// to a gRPC call `grpc`'s status as a trailers-only response (HTTP 200), as gRPC servers
/// answer a call they fail.
async fn answer(shard: &Shard, down: &Down, head: &[u8], body: &[u8], grpc: Option<GrpcAnswer>) {
    let status = match &grpc {
        Some(g) => {
            let code = g.0.to_string();
            let message = grpc_message(&g.1);
            let fields: [(&[u8], &[u8]); 4] = [
                (b"content-type", b"application/grpc"),
                (b"grpc-status", code.as_bytes()),
                (b"grpc-message", message.as_bytes()),
                VIA,
            ];
            if down.send_head(200, fields, true).is_err() {
                return;
            }
            200
        }
        None => {
            let (status, fields) = h2_head(head);
            let bodiless = body.is_empty();
            if down.send_head(status, fields.iter().map(|(n, v)| (*n, *v)).chain([VIA]), bodiless).is_err()
                || !bodiless && down.send(body, true).await.is_err()
            {
                return;
            }
            status
        }
    };
    let mut stats = shard.stats.borrow_mut();
    stats.response(status);
    if let Some(g) = grpc {
        stats.grpc(u32::from(g.0));
    }
}

/// A gRPC status message as `grpc-message` carries it: percent-encoded (the gRPC over HTTP/2
/// spec).
fn grpc_message(text: &str) -> String {
    let mut message = String::new();
    for b in text.bytes() {
        if (b' '..=b'~').contains(&b) && b != b'%' {
            message.push(b as char);
        } else {
            message.push_str(&format!("%{b:02X}"));
        }
    }
    message
}

/// A field's name and value.
type Field<'a> = (&'a [u8], &'a [u8]);

/// A canned HTTP/1.1 head (status line and fields) as an HTTP/2 response head: its status
/// and its fields (names lower-cased) but the connection's own and `via`.
fn h2_head(head: &[u8]) -> (u16, Vec<Field<'_>>) {
    let trim = |b: &'_ [u8]| -> usize { b.iter().take_while(|c| c.is_ascii_whitespace()).count() };
    let mut lines = head.split(|&b| b == b'\n').map(|l| l.strip_suffix(b"\r").unwrap_or(l));
    let status = lines
        .next()
        .and_then(|l| l.split(|&b| b == b' ').nth(1))
        .and_then(|s| std::str::from_utf8(s).ok()?.parse().ok())
        .unwrap_or(502);
    let mut fields = Vec::new();
    for line in lines {
        let Some(colon) = line.iter().position(|&b| b == b':') else { continue };
        let (name, value) = (&line[..colon], &line[colon + 1..]);
        let value = &value[trim(value)..];
        let value = &value[..value.len() - value.iter().rev().take_while(|c| c.is_ascii_whitespace()).count()];
        if name.is_empty() || dropped(name) || name.eq_ignore_ascii_case(b"via") {
            continue;
        }
        fields.push((name, value));
    }
    (status, fields)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_canned_head_becomes_an_h2_head_without_connection_fields() {
        let (head, _) = crate::inject::canned(429, Some(2), [("x-why", "fault")], b"slow down");
        let (status, fields) = h2_head(&head);
        assert_eq!(status, 429);
        let get = |n: &str| fields.iter().find(|(f, _)| f.eq_ignore_ascii_case(n.as_bytes())).map(|(_, v)| *v);
        assert_eq!(get("retry-after"), Some(&b"2"[..]));
        assert_eq!(get("x-why"), Some(&b"fault"[..]));
        assert_eq!(get("content-length"), Some(&b"9"[..]));
        assert_eq!(get("via"), None);
        assert!(fields.iter().all(|(n, _)| !dropped(n)));
    }

    #[test]
    fn a_grpc_message_is_percent_encoded() {
        assert_eq!(grpc_message("down 100% – sorry"), "down 100%25 %E2%80%93 sorry");
    }
}
