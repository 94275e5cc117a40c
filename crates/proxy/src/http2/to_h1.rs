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
use engine_http::forward::{h2_response, UpstreamHead};
use engine_http::h2::frame::{CANCEL, INTERNAL_ERROR};
use engine_http::h2::server::{Fields, RequestHead};
use engine_http::BodyDecoder;

use super::down::{Down, VIA};
use super::exchange::{dropped, fail, path_of, Client};
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
fn request_head(shard: &Shard, head: &RequestHead, peer: &str, chunked: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(512);
    out.extend_from_slice(head.method());
    out.push(b' ');
    out.extend_from_slice(head.path().unwrap_or(b"/"));
    out.extend_from_slice(b" HTTP/1.1\r\nHost: ");
    out.extend_from_slice(head.authority().unwrap_or(shard.shared.upstream_host.as_bytes()));
    out.extend_from_slice(b"\r\n");
    let mut forwarded_for: Option<&[u8]> = None;
    for (name, value) in head.fields.iter() {
        if name == b"x-forwarded-for" && forwarded_for.is_none() {
            forwarded_for = Some(value);
            continue;
        }
        if dropped(name) || name == b"te" || name == b"content-length" && chunked {
            continue;
        }
        // The codec has judged names and values: no CR, LF or NUL can reach this head.
        out.extend_from_slice(name);
        out.extend_from_slice(b": ");
        out.extend_from_slice(value);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"X-Forwarded-For: ");
    if let Some(prior) = forwarded_for {
        out.extend_from_slice(prior);
        out.extend_from_slice(b", ");
    }
    out.extend_from_slice(peer.as_bytes());
    out.extend_from_slice(b"\r\nVia: 2 engine-proxy\r\n");
    if chunked {
        out.extend_from_slice(b"Transfer-Encoding: chunked\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out
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
    body: &Down,
    chunked: bool,
    shaper: &mut Shaper,
) -> Result<(), Cut> {
    let mut framed = Vec::new();
    while let Some(chunk) = body.data().await.map_err(|_| Cut::Client)? {
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
    }
    if let Some(hold) = shaper.slow_close() {
        glommio::timer::sleep(hold).await;
    }
    if chunked {
        let mut end = b"0\r\n".to_vec();
        if let Some(trailers) = body.trailers() {
            for (name, value) in trailers.iter() {
                end.extend_from_slice(name);
                end.extend_from_slice(b": ");
                end.extend_from_slice(value);
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
    request: &RequestHead,
    end: bool,
    down: &Down,
    client: &Client,
    (up_shape, down_shape): (Shape, Shape),
) {
    let route = route_of(&shard.shared.routes, path_of(request));
    let head_request = request.method() == b"HEAD";
    let chunked = !end && request.content_length.is_none();
    let head = request_head(shard, request, &client.peer, chunked);
    // A bodiless request is sent on a pooled connection unchecked and, if that connection
    // turns out closed (the upstream's idle close) before any answer, once more on a new one,
    // as on the HTTP/1.1 path; one with a body gets a checked connection (a non-blocking peek).
    let mut up = match upstream(shard, !end, false).await {
        Some(up) => up,
        None => return fail(shard, down, UpstreamError::Refused).await,
    };
    let mut sent = Instant::now();
    let head = loop {
        let read = if end {
            ask(shard, &mut up, &head, head_request, &mut sent).await
        } else {
            let mut wrote = write_up(shard, &mut up, &head).await;
            if wrote.is_ok() {
                wrote = send_body(shard, &mut up, down, chunked, &mut Shaper::new(up_shape)).await;
            }
            sent = Instant::now();
            match wrote {
                Ok(()) => read_head(shard, &mut up, head_request, true).await,
                Err(Cut::Upstream(e)) => Err((e, false)),
                Err(Cut::Client) => return fail(shard, down, UpstreamError::Reset).await,
                // The stream is cut both ways: the client's reset, the upstream's connection dropped.
                Err(Cut::Limit) => return down.reset(CANCEL),
            }
        };
        match read {
            Ok(head) => break head,
            Err((UpstreamError::Reset, false)) if end && up.reused => {
                up = match upstream(shard, false, true).await {
                    Some(up) => up,
                    None => return fail(shard, down, UpstreamError::Refused).await,
                };
            }
            Err((e, _)) => return fail(shard, down, e).await,
        }
    };
    let Head { status, len, mut decoder, reusable, fields } = head;
    let ttfb = sent.elapsed();
    let bodiless = head_request || decoder.is_empty();
    if down.send_head(status, fields.iter().chain([VIA]), bodiless).is_err() {
        return;
    }
    let mut shaper = Shaper::new(down_shape);
    let mut at = len;
    if !bodiless {
        let ended = match body_down(shard, &mut up, &mut at, &mut decoder, down, &mut shaper).await {
            Ok(ended) => ended,
            Err(Stop::Upstream) => {
                down.reset(INTERNAL_ERROR);
                return shard.stats.borrow_mut().upstream_error(UpstreamError::Reset);
            }
            // A data limit: the client's stream is reset, the upstream connection dropped.
            Err(Stop::Limit) => return down.reset(CANCEL),
            Err(Stop::Client) => return client.resets.set(client.resets.get() + 1),
        };
        if !ended {
            if let Some(hold) = shaper.slow_close() {
                glommio::timer::sleep(hold).await;
            }
            let _ = down.send(&[], true).await;
        }
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
/// downstream stream faults; `*at` ends where the body did. `Ok(true)`: the stream is ended
/// too (with no stream fault to apply, the last DATA frame carries END_STREAM, as nginx's
/// do, rather than an empty frame after it).
async fn body_down(
    shard: &Shard,
    up: &mut Upstream,
    at: &mut usize,
    decoder: &mut BodyDecoder,
    mut to_client: &Down,
    shaper: &mut Shaper,
) -> Result<bool, Stop> {
    let mut payload = Vec::new();
    let plain = !shaper.active();
    loop {
        if *at < up.buf.len() {
            let (n, end) =
                decoder.feed_payload(&up.buf[*at..], |p| payload.extend_from_slice(p)).map_err(|_| Stop::Upstream)?;
            *at += n;
            if plain {
                if !payload.is_empty() || end {
                    to_client.send(&payload, end).await.map_err(|_| Stop::Client)?;
                    payload.clear();
                }
            } else if !payload.is_empty() {
                match send_shaped(&mut to_client, Bytes::from(std::mem::take(&mut payload)), shaper).await {
                    Ok(()) => {}
                    Err(Broken::Limit) => return Err(Stop::Limit),
                    Err(_) => return Err(Stop::Client),
                }
            }
            if end {
                return Ok(plain);
            }
            continue;
        }
        up.buf.clear();
        *at = 0;
        match within(shard, up.buf.read_from(&mut up.stream)).await {
            Some(Ok(n)) if n > 0 => {}
            Some(Ok(_)) if decoder.is_until_eof() => return Ok(false),
            _ => return Err(Stop::Upstream),
        }
    }
}

/// The upstream's final response head, its fields as the HTTP/2 head will carry them.
struct Head {
    status: u16,
    /// The head's bytes at the start of the connection's buffer.
    len: usize,
    decoder: BodyDecoder,
    reusable: bool,
    fields: Fields,
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
            let mut fields = Fields::new();
            let head = h2_response(&up.buf, head_request, |name, value| {
                // A value HTTP/2 cannot carry (a control character) is left out, as `http`'s
                // header values refuse it.
                let sendable = value.iter().all(|&b| b >= 0x20 && b != 0x7f || b == b'\t');
                if sendable && !dropped(name.as_bytes()) {
                    fields.push(name.as_bytes(), value);
                }
            });
            match head {
                Ok(Some(UpstreamHead::Final { status, len, body, reusable, .. })) => {
                    return Ok(Head { status, len, decoder: body, reusable, fields })
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
