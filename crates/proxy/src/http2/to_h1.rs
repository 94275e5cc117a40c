//! An HTTP/2 client's stream forwarded to an HTTP/1.1 upstream (`--upstream-protocol h1`),
//! translated as RFC 9113 §8.2 has it: the pseudo-fields become the request line and `Host`,
//! connection-specific fields are not sent, a body of unknown length goes chunked (its
//! trailers with it), and the response's head, de-chunked body and end come back as HTTP/2.
//! The upstream connection comes from the shard's keep-alive pool, as HTTP/1.1 clients' do.
//! Stream faults act as on the other paths: upstream ones on the request body's bytes,
//! downstream ones on the response's DATA; a data limit resets the client's stream and the
//! upstream connection is not kept.

use std::future::Future;
use std::time::Instant;

use bytes::Bytes;
use h2::server::SendResponse;
use h2::{RecvStream, SendStream};
use http::{HeaderName, HeaderValue, Request, Response};

use engine_http::forward::{h2_response, UpstreamHead};
use engine_http::BodyDecoder;

use super::exchange::{dropped, fail, Client};
use super::pipe::{send_shaped, Broken};
use crate::pool::Upstream;
use crate::shape::{pause, Shape, Shaper};
use crate::shard::Shard;
use crate::stats::{route_of, UpstreamError};

/// Interim (1xx) answers skipped before the final one; more is an upstream that never answers.
const MAX_INTERIM: u32 = 32;

/// `fut`, or `None` after the upstream timeout.
async fn within<T>(shard: &Shard, fut: impl Future<Output = T>) -> Option<T> {
    engine_runtime::within(shard.shared.limits.upstream_timeout, fut).await
}

/// The request head for the upstream; `chunked` when the body's length is unknown.
fn request_head(shard: &Shard, parts: &http::request::Parts, peer: &str, chunked: bool) -> Vec<u8> {
    let mut head = Vec::with_capacity(512);
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    head.extend_from_slice(format!("{} {path} HTTP/1.1\r\n", parts.method).as_bytes());
    let host = parts.uri.authority().map_or(shard.shared.upstream_host.as_str(), |a| a.as_str());
    head.extend_from_slice(format!("Host: {host}\r\n").as_bytes());
    let mut forwarded_for: Option<&[u8]> = None;
    for (name, value) in &parts.headers {
        if name == "x-forwarded-for" && forwarded_for.is_none() {
            forwarded_for = Some(value.as_bytes());
            continue;
        }
        if dropped(name) || name == "te" || name == "content-length" && chunked {
            continue;
        }
        // `h2` has checked names and values: no CR, LF or NUL can reach this head.
        head.extend_from_slice(name.as_str().as_bytes());
        head.extend_from_slice(b": ");
        head.extend_from_slice(value.as_bytes());
        head.extend_from_slice(b"\r\n");
    }
    head.extend_from_slice(b"X-Forwarded-For: ");
    if let Some(prior) = forwarded_for {
        head.extend_from_slice(prior);
        head.extend_from_slice(b", ");
    }
    head.extend_from_slice(peer.as_bytes());
    head.extend_from_slice(b"\r\nVia: 2 engine-proxy\r\n");
    if chunked {
        head.extend_from_slice(b"Transfer-Encoding: chunked\r\n");
    }
    head.extend_from_slice(b"\r\n");
    head
}

/// How sending the request upstream ended early.
enum Cut {
    Upstream(UpstreamError),
    /// The client's stream failed.
    Client,
    /// An upstream `limit_data` fault: the stream is reset.
    Limit,
}

/// Writes `bytes` upstream within the upstream timeout.
async fn write_up(shard: &Shard, up: &mut Upstream, bytes: &[u8]) -> Result<(), Cut> {
    match within(shard, up.stream.write_all(bytes)).await {
        Some(Ok(())) => Ok(()),
        Some(Err(_)) => Err(Cut::Upstream(UpstreamError::Reset)),
        None => Err(Cut::Upstream(UpstreamError::Timeout)),
    }
}

/// Sends the request's body (chunked when `chunked`, with its trailers) under the upstream
/// stream faults: after each chunk's latency, in the pieces and at the pace they set (a piece
/// is a chunk of its own when chunked), up to the data limit.
async fn send_body(
    shard: &Shard,
    up: &mut Upstream,
    body: &mut RecvStream,
    chunked: bool,
    shaper: &mut Shaper,
) -> Result<(), Cut> {
    let mut framed = Vec::new();
    while let Some(chunk) = body.data().await {
        let chunk = chunk.map_err(|_| Cut::Client)?;
        let n = chunk.len();
        pause(shaper.before_chunk()).await;
        let mut rest = &chunk[..];
        while !rest.is_empty() {
            let k = if shaper.active() { shaper.piece(rest.len()).map_err(|_| Cut::Limit)? } else { rest.len() };
            if chunked {
                framed.clear();
                framed.extend_from_slice(format!("{k:x}\r\n").as_bytes());
                framed.extend_from_slice(&rest[..k]);
                framed.extend_from_slice(b"\r\n");
                write_up(shard, up, &framed).await?;
            } else {
                write_up(shard, up, &rest[..k]).await?;
            }
            rest = &rest[k..];
            pause(shaper.wrote(k)).await;
        }
        let _ = body.flow_control().release_capacity(n);
    }
    if let Some(hold) = shaper.slow_close() {
        glommio::timer::sleep(hold).await;
    }
    if chunked {
        let mut end = b"0\r\n".to_vec();
        if let Ok(Some(trailers)) = body.trailers().await {
            for (name, value) in &trailers {
                end.extend_from_slice(format!("{name}: ").as_bytes());
                end.extend_from_slice(value.as_bytes());
                end.extend_from_slice(b"\r\n");
            }
        }
        end.extend_from_slice(b"\r\n");
        write_up(shard, up, &end).await?;
    }
    Ok(())
}

/// Forwards one stream to the HTTP/1.1 upstream and its response back.
pub(crate) async fn forward(
    shard: &Shard,
    request: Request<RecvStream>,
    mut respond: SendResponse<Bytes>,
    client: &Client,
    (up_shape, down_shape): (Shape, Shape),
) {
    let route = route_of(&shard.shared.routes, request.uri().path());
    let head_request = request.method() == http::Method::HEAD;
    let (parts, mut body) = request.into_parts();
    let end = body.is_end_stream();
    let chunked = !end && !parts.headers.contains_key("content-length");
    let head = request_head(shard, &parts, &client.peer, chunked);
    // A bodiless request is sent on a pooled connection unchecked and, if that connection
    // turns out closed (the upstream's idle close) before any answer, once more on a new one,
    // as on the HTTP/1.1 path; one with a body gets a checked connection (a non-blocking peek).
    let mut up = match upstream(shard, !end, false).await {
        Some(up) => up,
        None => return fail(shard, &mut respond, UpstreamError::Refused),
    };
    let mut sent = Instant::now();
    let head = loop {
        let read = if end {
            ask(shard, &mut up, &head, head_request, &mut sent).await
        } else {
            let mut wrote = write_up(shard, &mut up, &head).await;
            if wrote.is_ok() {
                wrote = send_body(shard, &mut up, &mut body, chunked, &mut Shaper::new(up_shape)).await;
            }
            sent = Instant::now();
            match wrote {
                Ok(()) => read_head(shard, &mut up, head_request, true).await,
                Err(Cut::Upstream(e)) => Err((e, false)),
                Err(Cut::Client) => return fail(shard, &mut respond, UpstreamError::Reset),
                // The stream is cut both ways: the client's reset, the upstream's connection dropped.
                Err(Cut::Limit) => return respond.send_reset(h2::Reason::CANCEL),
            }
        };
        match read {
            Ok(head) => break head,
            Err((UpstreamError::Reset, false)) if end && up.reused => {
                up = match upstream(shard, false, true).await {
                    Some(up) => up,
                    None => return fail(shard, &mut respond, UpstreamError::Refused),
                };
            }
            Err((e, _)) => return fail(shard, &mut respond, e),
        }
    };
    let Head { status, len, mut decoder, reusable, response } = head;
    let ttfb = sent.elapsed();
    let Ok(response) = response.header("via", "2 engine-proxy").body(()) else {
        return fail(shard, &mut respond, UpstreamError::Invalid);
    };
    let bodiless = head_request || decoder.is_empty();
    let Ok(mut to_client) = respond.send_response(response, bodiless) else { return };
    let mut shaper = Shaper::new(down_shape);
    let mut at = len;
    if !bodiless {
        match body_down(shard, &mut up, &mut at, &mut decoder, &mut to_client, &mut shaper).await {
            Ok(()) => {}
            Err(Stop::Upstream) => {
                to_client.send_reset(h2::Reason::INTERNAL_ERROR);
                return shard.stats.borrow_mut().upstream_error(UpstreamError::Reset);
            }
            // A data limit: the client's stream is reset, the upstream connection dropped.
            Err(Stop::Limit) => return to_client.send_reset(h2::Reason::CANCEL),
            Err(Stop::Client) => return client.resets.set(client.resets.get() + 1),
        }
        if let Some(hold) = shaper.slow_close() {
            glommio::timer::sleep(hold).await;
        }
        let _ = to_client.send_data(Bytes::new(), true);
    }
    let total = sent.elapsed();
    {
        let mut stats = shard.stats.borrow_mut();
        stats.upstream(route, status, ttfb, Some(total));
        stats.response(status);
    }
    // A connection whose response ended where its framing said may carry another request.
    if reusable && at == up.buf.len() && !decoder.is_until_eof() {
        shard.pool.put(up, shard.now());
    }
}

/// Why the response body stopped before its end.
enum Stop {
    /// The upstream broke its framing, closed early or timed out.
    Upstream,
    /// A downstream `limit_data` fault.
    Limit,
    /// The client's stream went away.
    Client,
}

/// The response body from `up.buf[*at..]` on, de-chunked, to the client as DATA under the
/// downstream stream faults; `*at` ends where the body did.
async fn body_down(
    shard: &Shard,
    up: &mut Upstream,
    at: &mut usize,
    decoder: &mut BodyDecoder,
    to_client: &mut SendStream<Bytes>,
    shaper: &mut Shaper,
) -> Result<(), Stop> {
    let mut payload = Vec::new();
    loop {
        if *at < up.buf.len() {
            let (n, end) =
                decoder.feed_payload(&up.buf[*at..], |p| payload.extend_from_slice(p)).map_err(|_| Stop::Upstream)?;
            *at += n;
            if !payload.is_empty() {
                match send_shaped(to_client, Bytes::from(std::mem::take(&mut payload)), shaper).await {
                    Ok(()) => {}
                    Err(Broken::Limit) => return Err(Stop::Limit),
                    Err(_) => return Err(Stop::Client),
                }
            }
            if end {
                return Ok(());
            }
            continue;
        }
        up.buf.clear();
        *at = 0;
        match within(shard, up.buf.read_from(&mut up.stream)).await {
            Some(Ok(n)) if n > 0 => {}
            Some(Ok(_)) if decoder.is_until_eof() => return Ok(()),
            _ => return Err(Stop::Upstream),
        }
    }
}

/// The upstream's final response head, as the HTTP/2 response under construction.
struct Head {
    status: u16,
    /// The head's bytes at the start of the connection's buffer.
    len: usize,
    decoder: BodyDecoder,
    reusable: bool,
    response: http::response::Builder,
}

/// Sends a bodiless request's head and reads the response head, within one upstream timeout
/// (one timer a request: each timer costs glommio's timer tree an insertion and a removal).
async fn ask(
    shard: &Shard,
    up: &mut Upstream,
    head: &[u8],
    head_request: bool,
    sent: &mut Instant,
) -> Result<Head, (UpstreamError, bool)> {
    let exchange = async {
        up.stream.write_all(head).await.map_err(|_| (UpstreamError::Reset, false))?;
        *sent = Instant::now();
        read_head(shard, up, head_request, false).await
    };
    within(shard, exchange).await.unwrap_or(Err((UpstreamError::Timeout, true)))
}

/// Reads the upstream's response head (skipping interim ones) into an HTTP/2 response head:
/// no HTTP/1.1 head is written; each read within the upstream timeout when `timed`. The error
/// says whether anything had come from the upstream.
async fn read_head(
    shard: &Shard,
    up: &mut Upstream,
    head_request: bool,
    timed: bool,
) -> Result<Head, (UpstreamError, bool)> {
    let mut interims = 0u32;
    loop {
        if !up.buf.is_empty() {
            let mut b = Response::builder();
            let head = h2_response(&up.buf, head_request, |name, value| {
                let (Ok(name), Ok(value)) = (HeaderName::from_bytes(name.as_bytes()), HeaderValue::from_bytes(value))
                else {
                    return;
                };
                if let Some(fields) = b.headers_mut().filter(|_| !dropped(&name)) {
                    fields.append(name, value);
                }
            });
            match head {
                Ok(Some(UpstreamHead::Final { status, len, body, reusable, .. })) => {
                    return Ok(Head { status, len, decoder: body, reusable, response: b.status(status) })
                }
                Ok(Some(UpstreamHead::Interim { len, .. })) if interims < MAX_INTERIM => {
                    interims += 1;
                    up.buf.consume(len);
                    continue;
                }
                Ok(None) => {}
                _ => return Err((UpstreamError::Invalid, true)),
            }
        }
        let answered = interims > 0 || !up.buf.is_empty();
        let read = if timed {
            within(shard, up.buf.read_from(&mut up.stream)).await
        } else {
            Some(up.buf.read_from(&mut up.stream).await)
        };
        match read {
            None => return Err((UpstreamError::Timeout, answered)),
            Some(Ok(n)) if n > 0 => {}
            Some(_) => return Err((UpstreamError::Reset, answered)),
        }
    }
}

/// A pooled connection (`checked`: one the upstream has not closed, by a non-blocking peek),
/// or a new one (`fresh`, or none idle).
async fn upstream(shard: &Shard, checked: bool, fresh: bool) -> Option<Upstream> {
    let got = if fresh { shard.pool.connect().await } else { shard.pool.get(checked).await };
    let mut up = match got {
        Ok(up) => up,
        Err(e) => {
            if engine_tls::Failure::of(&e).is_some() {
                shard.stats.borrow_mut().tls_upstream.failed(&e);
            }
            return None;
        }
    };
    if let Some((took, resumed)) = up.handshake.take() {
        shard.stats.borrow_mut().tls_upstream.handshake(Some(took), resumed);
    }
    Some(up)
}
