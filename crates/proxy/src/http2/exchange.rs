//! One client stream: the faults' decision, then the proxy's own answer or the forward to
//! the upstream's HTTP/2 connection, with the response, its body and trailers streamed back
//! and the upstream's latency recorded as for HTTP/1.1 (to its response head, and to its end).

use std::cell::Cell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use h2::server::SendResponse;
use h2::RecvStream;
use http::{HeaderMap, HeaderName, HeaderValue, Request, Response};

use super::pipe::{grpc_status, pipe, Broken};
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
pub(super) fn dropped(name: &HeaderName) -> bool {
    engine_http::forward::is_fault_field(name.as_str()) || engine_http::forward::not_in_h2(name.as_str())
}

pub(crate) async fn exchange(
    shard: Rc<Shard>,
    request: Request<RecvStream>,
    mut respond: SendResponse<Bytes>,
    streams: Streams,
) {
    let grpc = request.headers().get("content-type").is_some_and(|t| t.as_bytes().starts_with(b"application/grpc"));
    let header = |name: &str| request.headers().get(name).map(HeaderValue::as_bytes);
    let mut decision = shard.faults.borrow_mut().decide(request.method().as_str(), request.uri().path(), header);
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
            return answer(&shard, &mut respond, &head, &body, None);
        }
    }
    // Held while the request lasts: it counts among the faults active (--max-active-faults).
    let _active = decision.active;
    match decision.end {
        Some(End::Respond { head, body, kind, grpc: as_grpc }) => {
            shard.stats.borrow_mut().fault(kind);
            return answer(&shard, &mut respond, &head, &body, as_grpc.filter(|_| grpc));
        }
        Some(End::Reset(code)) => {
            shard.stats.borrow_mut().fault(FaultKind::Reset);
            respond.send_reset(h2::Reason::from(code));
            return;
        }
        Some(End::Hang) => {
            shard.stats.borrow_mut().fault(FaultKind::Hang);
            // Until the client gives up on the stream (or the connection ends).
            let _ = futures_lite::future::poll_fn(|cx| respond.poll_reset(cx)).await;
            return;
        }
        Some(End::Timeout(hold)) => {
            shard.stats.borrow_mut().fault(FaultKind::Timeout);
            let reset = futures_lite::future::poll_fn(|cx| respond.poll_reset(cx));
            if hold.is_zero() {
                let _ = reset.await;
            } else if engine_runtime::within(hold, reset).await.is_none() {
                respond.send_reset(h2::Reason::CANCEL);
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
                return answer(&shard, &mut respond, &limiter.refusal.0, &limiter.refusal.1, None);
            }
        }
    }
    // Stream faults act on the bodies (gRPC: the message streams) both ways.
    shard.stats.borrow_mut().stream_faults(decision.stream_kinds);
    if shard.shared.upstream_protocol == crate::UpstreamProtocol::Http1 {
        return super::to_h1::forward(&shard, request, respond, &streams.0, (decision.up, decision.down)).await;
    }
    forward(&shard, request, respond, &streams.0, (grpc, decision.up, decision.down)).await;
}

/// Forwards the stream upstream and its response back.
async fn forward(
    shard: &Shard,
    request: Request<RecvStream>,
    mut respond: SendResponse<Bytes>,
    client: &Client,
    (grpc, up_shape, down_shape): (bool, Shape, Shape),
) {
    let peer = &*client.peer;
    let route = route_of(&shard.shared.routes, request.uri().path());
    let (parts, mut body) = request.into_parts();
    let Some(up) = upstream_request(shard, &parts, peer) else {
        return fail(shard, &mut respond, UpstreamError::Invalid);
    };
    let end = body.is_end_stream();
    let limits = &shard.shared.limits;
    let Opened { response, body: mut to_up, lease, handshake } = match shard.h2_upstream.open(up, end).await {
        Ok(o) => o,
        Err(e) => return fail(shard, &mut respond, e),
    };
    handshaken(shard, handshake);
    let sent = Instant::now();
    // The request's body goes up while the response comes back (gRPC streams both ways); it
    // stops when the response is done.
    let (mut up_shaper, limited) = (Shaper::new(up_shape), Cell::new(false));
    let request_side = async {
        if !end {
            if let Err(e) = pipe(&mut body, &mut to_up, &mut up_shaper).await {
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
            let reset = futures_lite::future::poll_fn(|cx| respond.poll_reset(cx));
            let head = futures_lite::future::or(async { Ok(response.await) }, async { Err(reset.await) });
            match engine_runtime::within(limits.upstream_timeout, head).await {
                Some(Err(_)) => {
                    client.resets.set(client.resets.get() + 1);
                    return;
                }
                None => return fail(shard, &mut respond, UpstreamError::Timeout),
                Some(Ok(Ok(r))) => break r,
                // A request without a body is sent again if the upstream refused its stream
                // unread (built again from the client's head: no copy kept per request).
                Some(Ok(Err(e))) if end && refused(&e) && tries < REFUSED_RETRIES => {
                    tries += 1;
                    let Some(request) = upstream_request(shard, &parts, peer) else {
                        return fail(shard, &mut respond, UpstreamError::Invalid);
                    };
                    match shard.h2_upstream.open(request, true).await {
                        Ok(o) => {
                            handshaken(shard, o.handshake);
                            (response, _lease) = (o.response, o.lease);
                        }
                        Err(e) => return fail(shard, &mut respond, e),
                    }
                }
                Some(Ok(Err(_))) => return fail(shard, &mut respond, UpstreamError::Reset),
            }
        };
        let ttfb = sent.elapsed();
        relay(shard, response, &mut respond, client, (route, ttfb, sent), (grpc, down_shape)).await;
    };
    futures_lite::future::or(response_side, request_side).await;
    if limited.get() {
        respond.send_reset(h2::Reason::CANCEL);
    }
}

/// The request for the upstream from the client's head: the client's authority and path
/// (shared bytes, not copied) with the upstream's scheme, its fields but those addressed to
/// the proxy or not carried by HTTP/2, `x-forwarded-for` extended with `peer`, and `via`.
fn upstream_request(shard: &Shard, parts: &http::request::Parts, peer: &str) -> Option<Request<()>> {
    let mut up = Request::builder().method(parts.method.clone()).version(http::Version::HTTP_2);
    let mut uri = http::uri::Parts::default();
    uri.scheme =
        Some(if shard.shared.upstream_tls.is_some() { http::uri::Scheme::HTTPS } else { http::uri::Scheme::HTTP });
    uri.authority = match parts.uri.authority() {
        Some(a) => Some(a.clone()),
        None => shard.shared.upstream_host.parse().ok(),
    };
    uri.path_and_query =
        Some(parts.uri.path_and_query().cloned().unwrap_or_else(|| http::uri::PathAndQuery::from_static("/")));
    up = up.uri(http::Uri::from_parts(uri).ok()?);
    let fields = up.headers_mut()?;
    let mut forwarded_for = None;
    for (name, value) in &parts.headers {
        if name == "x-forwarded-for" && forwarded_for.is_none() {
            forwarded_for = Some(value.as_bytes());
        } else if !(dropped(name) || name == "te" && value != "trailers") {
            fields.append(name, value.clone());
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
    respond: &mut SendResponse<Bytes>,
    client: &Client,
    (route, ttfb, sent): (usize, Duration, Instant),
    (grpc, shape): (bool, Shape),
) {
    let (parts, mut body) = response.into_parts();
    let status = parts.status.as_u16();
    let mut down = Response::builder().status(parts.status);
    let fields = down.headers_mut().expect("a response under construction");
    for (name, value) in &parts.headers {
        if !dropped(name) {
            fields.append(name, value.clone());
        }
    }
    fields.append("via", HeaderValue::from_static("2 engine-proxy"));
    let Ok(down) = down.body(()) else { return };
    let end = body.is_end_stream();
    // A trailers-only gRPC answer carries its status in the head.
    let mut code = if grpc { grpc_status(&parts.headers) } else { None };
    let Ok(mut to_client) = respond.send_response(down, end) else { return };
    let mut total = Some(sent.elapsed());
    if !end {
        match pipe(&mut body, &mut to_client, &mut Shaper::new(shape)).await {
            Ok((trailer_code, _)) => {
                code = code.or(trailer_code.filter(|_| grpc));
                total = Some(sent.elapsed());
            }
            Err(Broken::From) => {
                to_client.send_reset(h2::Reason::INTERNAL_ERROR);
                total = None;
                shard.stats.borrow_mut().upstream_error(UpstreamError::Reset);
            }
            Err(Broken::To) => {
                total = None;
                client.resets.set(client.resets.get() + 1);
            }
            // A data limit: the client's stream is cut (the upstream's with the body dropped).
            Err(Broken::Limit) => {
                to_client.send_reset(h2::Reason::CANCEL);
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
pub(super) fn fail(shard: &Shard, respond: &mut SendResponse<Bytes>, e: UpstreamError) {
    shard.stats.borrow_mut().upstream_error(e);
    let status = e.status();
    let body = format!("engine proxy: upstream {}\n", e.name());
    let (head, body) = crate::inject::canned(status, None, std::iter::empty::<(&str, &str)>(), body.as_bytes());
    answer(shard, respond, &head, &body, None);
}

/// The proxy's own answer: the canned HTTP/1.1 `head` and `body` as an HTTP/2 response, or
/// to a gRPC call `grpc`'s status as a trailers-only response (HTTP 200), as gRPC servers
/// answer a call they fail.
fn answer(shard: &Shard, respond: &mut SendResponse<Bytes>, head: &[u8], body: &[u8], grpc: Option<GrpcAnswer>) {
    let (status, response) = match &grpc {
        Some(g) => (200, grpc_trailers_only(g)),
        None => h2_head(head),
    };
    let Ok(response) = response.body(()) else { return };
    let bodiless = grpc.is_some() || body.is_empty();
    let Ok(mut send) = respond.send_response(response, bodiless) else { return };
    if !bodiless && send.send_data(Bytes::copy_from_slice(body), true).is_err() {
        return;
    }
    let mut stats = shard.stats.borrow_mut();
    stats.response(status);
    if let Some(g) = grpc {
        stats.grpc(u32::from(g.0));
    }
}

fn grpc_trailers_only(g: &GrpcAnswer) -> http::response::Builder {
    let mut message = String::new();
    // grpc-message is percent-encoded (the gRPC over HTTP/2 spec).
    for b in g.1.bytes() {
        if (b' '..=b'~').contains(&b) && b != b'%' {
            message.push(b as char);
        } else {
            message.push_str(&format!("%{b:02X}"));
        }
    }
    Response::builder()
        .status(200)
        .header("content-type", "application/grpc")
        .header("grpc-status", g.0.to_string())
        .header("grpc-message", message)
        .header("via", "2 engine-proxy")
}

/// A canned HTTP/1.1 head (status line and fields) as an HTTP/2 response head: its status
/// and its fields but the connection's own.
fn h2_head(head: &[u8]) -> (u16, http::response::Builder) {
    let text = String::from_utf8_lossy(head);
    let mut lines = text.split("\r\n");
    let status = lines.next().and_then(|l| l.split(' ').nth(1)).and_then(|s| s.parse().ok()).unwrap_or(502);
    let mut b = Response::builder().status(status);
    let fields: &mut HeaderMap = b.headers_mut().expect("a response under construction");
    for line in lines {
        let Some((name, value)) = line.split_once(':') else { continue };
        let (Ok(name), Ok(value)) = (HeaderName::try_from(name.trim()), HeaderValue::from_str(value.trim())) else {
            continue;
        };
        if !dropped(&name) && name != "via" {
            fields.append(name, value);
        }
    }
    fields.append("via", HeaderValue::from_static("2 engine-proxy"));
    (status, b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_canned_head_becomes_an_h2_head_without_connection_fields() {
        let (head, _) = crate::inject::canned(429, Some(2), [("x-why", "fault")], b"slow down");
        let (status, b) = h2_head(&head);
        let r = b.body(()).unwrap();
        assert_eq!((status, r.status().as_u16()), (429, 429));
        assert_eq!(r.headers()["retry-after"], "2");
        assert_eq!(r.headers()["x-why"], "fault");
        assert_eq!(r.headers()["content-length"], "9");
        assert_eq!(r.headers().get_all("via").iter().count(), 1);
    }

    #[test]
    fn a_grpc_abort_is_trailers_only_with_its_message_percent_encoded() {
        let r = grpc_trailers_only(&Rc::new((14, "down 100% – sorry".into()))).body(()).unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["grpc-status"], "14");
        assert_eq!(r.headers()["grpc-message"], "down 100%25 %E2%80%93 sorry");
    }
}
