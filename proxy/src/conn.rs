//! One client connection: read a head (within the header timeout), validate it, let the
//! faults decide, forward to the upstream and stream the response back; repeat while both
//! sides keep the connection alive.

use std::cell::Cell;
use std::io;
use std::net::IpAddr;
use std::os::fd::AsRawFd;
use std::rc::Rc;
use std::time::{Duration, Instant};

use engine_core::http::{BodyDecoder, FrameError};
use futures_lite::io::AsyncWriteExt;
use glommio::net::TcpStream;

use crate::faults::FaultKind;
use crate::forward::{downstream_response, reason, upstream_request, UpstreamHead};
use crate::inject::End;
use crate::iobuf::IoBuf;
use crate::pool::Upstream;
use crate::request::{self, Framing, MAX_REQUEST_HEADERS};
use crate::shard::Shard;
use crate::stats::{route_of, UpstreamError};

/// How a throttled response is paced: one slice per this interval.
const THROTTLE_SLICE: Duration = Duration::from_millis(50);

/// What is kept of a request head once its buffer moves on.
struct Prepared {
    len: usize,
    framing: Framing,
    keep_alive: bool,
    expect_continue: bool,
    head_request: bool,
    version: u8,
    route: usize,
}

/// Why an exchange ended without a complete response to the client.
enum Failed {
    /// The upstream failed; `answered` when the client already has part of the response
    /// (then the only honest signal left is closing the connection).
    Upstream { error: UpstreamError, answered: bool, retryable: bool },
    /// The client went away or sent a bad body.
    Client,
}

pub(crate) async fn serve(shard: Rc<Shard>, mut down: TcpStream, peer: IpAddr, busy: Rc<Cell<bool>>) {
    let _ = down.set_nodelay(true);
    let peer = peer.to_string().into_bytes();
    let limits = &shard.shared.limits;
    let mut buf = IoBuf::with_capacity(4096);
    let mut up_head: Vec<u8> = Vec::with_capacity(1024);
    let mut out: Vec<u8> = Vec::with_capacity(1024);
    loop {
        busy.set(false);
        if buf.is_empty() {
            if shard.draining() {
                return;
            }
            match buf.read_from(&mut down, limits.idle_timeout).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
        busy.set(true);

        // Read the whole head within the header timeout, counted from its first byte, so a
        // client trickling bytes (slowloris) cannot hold the connection.
        let mut deadline = None;
        let (prep, decision) = loop {
            let mut slots = [httparse::EMPTY_HEADER; MAX_REQUEST_HEADERS];
            match request::parse(&buf, &mut slots) {
                Ok(Some(head)) => {
                    let header =
                        |name: &str| head.headers.iter().find(|h| h.name.eq_ignore_ascii_case(name)).map(|h| h.value);
                    let decision = shard.faults.borrow_mut().decide(head.method, head.target, header);
                    upstream_request(&head, &peer, &shard.shared.upstream_host, &mut up_head);
                    let prep = Prepared {
                        len: head.len,
                        framing: head.framing,
                        keep_alive: head.keep_alive,
                        expect_continue: head.expect_continue,
                        head_request: head.method == "HEAD",
                        version: head.version,
                        route: route_of(&shard.shared.routes, head.target),
                    };
                    break (prep, decision);
                }
                Ok(None) => {
                    let now = Instant::now();
                    let left = deadline.get_or_insert(now + limits.header_timeout).saturating_duration_since(now);
                    if left.is_zero() {
                        return refuse(&shard, &mut down, 408).await;
                    }
                    match buf.read_from(&mut down, left).await {
                        Ok(0) => return,
                        Ok(_) => {}
                        Err(e) if e.kind() == io::ErrorKind::TimedOut => return refuse(&shard, &mut down, 408).await,
                        Err(_) => return,
                    }
                }
                Err(e) => return refuse(&shard, &mut down, e.status()).await,
            }
        };
        buf.consume(prep.len);
        shard.stats.borrow_mut().requests += 1;
        let has_body = prep.framing != Framing::None;

        let mut _permit = None;
        if let Some(end) = decision.end {
            match end {
                End::Respond { head, body, kind } => {
                    shard.stats.borrow_mut().fault(kind);
                    // The request body is not read, so the connection cannot carry another request.
                    let close = has_body || !prep.keep_alive || shard.draining();
                    if answer(&shard, &mut down, &mut out, &head, &body, close).await.is_err() || close {
                        return;
                    }
                    continue;
                }
                End::Reset => {
                    shard.stats.borrow_mut().fault(FaultKind::Reset);
                    return reset(down);
                }
                End::Hang => {
                    shard.stats.borrow_mut().fault(FaultKind::Hang);
                    return hang(&shard, &mut down, &mut buf).await;
                }
            }
        }
        if let Some(limiter) = &decision.limiter {
            match limiter.acquire().await {
                Some(p) => _permit = Some(p),
                None => {
                    shard.stats.borrow_mut().fault(FaultKind::Overload);
                    let close = has_body || !prep.keep_alive || shard.draining();
                    let (head, body) = &limiter.refusal;
                    if answer(&shard, &mut down, &mut out, head, body, close).await.is_err() || close {
                        return;
                    }
                    continue;
                }
            }
        }
        if !decision.delay.is_zero() {
            shard.stats.borrow_mut().fault(FaultKind::Delay);
            glommio::timer::sleep(decision.delay).await;
        }
        if decision.throttle.is_some() {
            shard.stats.borrow_mut().fault(FaultKind::Throttle);
        }

        let close_wanted = !prep.keep_alive || shard.draining();
        let mut result =
            exchange(&shard, &mut down, &mut buf, &up_head, &mut out, &prep, close_wanted, decision.throttle, false)
                .await;
        if let Err(Failed::Upstream { retryable: true, .. }) = result {
            // A pooled connection the upstream had closed while idle: once more on a fresh one.
            result =
                exchange(&shard, &mut down, &mut buf, &up_head, &mut out, &prep, close_wanted, decision.throttle, true)
                    .await;
        }
        drop(_permit);
        match result {
            Ok(close) if !close => {}
            Ok(_) | Err(Failed::Client) => return,
            Err(Failed::Upstream { error, answered, .. }) => {
                shard.stats.borrow_mut().upstream_error(error);
                if answered {
                    return;
                }
                let status = error.status();
                let body = format!("engine-proxy: upstream {}\n", error.name());
                let head = format!(
                    "HTTP/1.1 {status} {}\r\nContent-Length: {}\r\nVia: 1.1 engine-proxy\r\n",
                    reason(status),
                    body.len()
                );
                // After a failure half-way through a request body the stream is unusable.
                let close = close_wanted || has_body;
                if answer(&shard, &mut down, &mut out, head.as_bytes(), body.as_bytes(), close).await.is_err() || close
                {
                    return;
                }
            }
        }
    }
}

/// Forwards one request and its response. `Ok(close)` says whether the client connection
/// must close after this response.
#[allow(clippy::too_many_arguments)]
async fn exchange(
    shard: &Shard,
    down: &mut TcpStream,
    buf: &mut IoBuf,
    up_head: &[u8],
    out: &mut Vec<u8>,
    prep: &Prepared,
    close_wanted: bool,
    throttle: Option<u64>,
    fresh: bool,
) -> Result<bool, Failed> {
    let limits = &shard.shared.limits;
    let refused = |_| Failed::Upstream { error: UpstreamError::Refused, answered: false, retryable: false };
    let mut up = if fresh {
        shard.pool.connect().await.map_err(refused)?
    } else {
        shard.pool.get(prep.framing != Framing::None).await.map_err(refused)?
    };
    let has_body = prep.framing != Framing::None;
    // Only a request the upstream cannot have acted on is sent twice.
    let retryable = up.reused && !has_body;
    let lost =
        |error: UpstreamError, answered: bool| Failed::Upstream { error, answered, retryable: retryable && !answered };

    if up.stream.write_all(up_head).await.is_err() {
        return Err(lost(UpstreamError::Reset, false));
    }
    if prep.expect_continue && has_body && down.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").await.is_err() {
        return Err(Failed::Client);
    }
    if has_body {
        send_body(down, buf, &mut up, prep.framing, limits.idle_timeout).await?;
    }
    let sent = Instant::now();

    // The response head (1xx interim responses are dropped: the proxy answered Expect itself).
    let mut ttfb = None;
    let mut reads = 0u32;
    let (status, head_len, mut body, reusable, close) = loop {
        if !up.buf.is_empty() {
            // A drain that began while the request was upstream closes the connection after it.
            let close = close_wanted || shard.draining();
            match downstream_response(&up.buf, prep.head_request, close, prep.version, out) {
                Ok(Some(UpstreamHead::Interim { len })) => {
                    up.buf.consume(len);
                    continue;
                }
                Ok(Some(UpstreamHead::Final { status, len, body, reusable, close })) => {
                    break (status, len, body, reusable, close)
                }
                Ok(None) => {}
                Err(_) => return Err(lost(UpstreamError::Invalid, false)),
            }
        }
        match up.buf.read_from(&mut up.stream, limits.upstream_timeout).await {
            Ok(0) => return Err(lost(UpstreamError::Reset, false)),
            Ok(_) => {
                reads += 1;
                ttfb.get_or_insert_with(|| sent.elapsed());
            }
            Err(e) if e.kind() == io::ErrorKind::TimedOut => return Err(lost(UpstreamError::Timeout, false)),
            Err(_) => return Err(lost(UpstreamError::Reset, false)),
        }
    };
    let ttfb = ttfb.unwrap_or_default();

    // The head, with whatever body bytes came with it, in one write.
    let mut pos = head_len;
    let (n, mut done) = body.feed(&up.buf[pos..]).map_err(|_| lost(UpstreamError::Invalid, true))?;
    if throttle.is_none() {
        out.extend_from_slice(&up.buf[pos..pos + n]);
        down.write_all(out).await.map_err(|_| Failed::Client)?;
    } else {
        write_paced(down, out, throttle).await.map_err(|_| Failed::Client)?;
        write_paced(down, &up.buf[pos..pos + n], throttle).await.map_err(|_| Failed::Client)?;
    }
    pos += n;
    let mut leftover = pos < up.buf.len();
    let single_read = done && reads == 1;
    // From here the client has the head: a failure can only cut the connection.
    while !done {
        up.buf.clear();
        match up.buf.read_from(&mut up.stream, limits.upstream_timeout).await {
            Ok(0) if body.is_until_eof() => break,
            Ok(0) => return Err(lost(UpstreamError::Reset, true)),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::TimedOut => return Err(lost(UpstreamError::Timeout, true)),
            Err(_) => return Err(lost(UpstreamError::Reset, true)),
        }
        let (n, end) = body.feed(&up.buf).map_err(|_| lost(UpstreamError::Invalid, true))?;
        done = end;
        leftover = n < up.buf.len();
        write_paced(down, &up.buf[..n], throttle).await.map_err(|_| Failed::Client)?;
    }
    {
        let mut stats = shard.stats.borrow_mut();
        // A response that came in one read ended at its first byte: no second clock read.
        let total = if single_read { ttfb } else { sent.elapsed() };
        stats.upstream(prep.route, status, ttfb, Some(total));
        stats.response(status);
    }
    // Bytes after the response's end mean the upstream broke framing: do not reuse it.
    if reusable && !leftover && !shard.draining() {
        shard.pool.put(up);
    }
    Ok(close)
}

/// Streams the request body from the client to the upstream, starting with what is already
/// in `buf`; bytes of a pipelined next request stay in `buf`.
async fn send_body(
    down: &mut TcpStream,
    buf: &mut IoBuf,
    up: &mut Upstream,
    framing: Framing,
    idle_timeout: Duration,
) -> Result<(), Failed> {
    let mut body = match framing {
        Framing::Length(n) => BodyDecoder::length(n),
        Framing::Chunked => BodyDecoder::chunked(),
        Framing::None => return Ok(()),
    };
    let upstream_lost = Failed::Upstream { error: UpstreamError::Reset, answered: false, retryable: false };
    loop {
        if !buf.is_empty() {
            let (n, done) = body.feed(buf).map_err(|_: FrameError| Failed::Client)?;
            if up.stream.write_all(&buf[..n]).await.is_err() {
                return Err(upstream_lost);
            }
            buf.consume(n);
            if done {
                return Ok(());
            }
        }
        match buf.read_from(down, idle_timeout).await {
            Ok(n) if n > 0 => {}
            _ => return Err(Failed::Client),
        }
    }
}

/// Writes `bytes`, at most `rate` bytes per second when throttled.
async fn write_paced(down: &mut TcpStream, bytes: &[u8], rate: Option<u64>) -> io::Result<()> {
    let Some(rate) = rate else { return down.write_all(bytes).await };
    let slice = ((rate as f64 * THROTTLE_SLICE.as_secs_f64()) as usize).max(1);
    for piece in bytes.chunks(slice) {
        down.write_all(piece).await?;
        glommio::timer::sleep(Duration::from_secs_f64(piece.len() as f64 / rate as f64)).await;
    }
    Ok(())
}

/// Sends a canned answer: `head` holds the status line and fields without the blank line.
async fn answer(
    shard: &Shard,
    down: &mut TcpStream,
    out: &mut Vec<u8>,
    head: &[u8],
    body: &[u8],
    close: bool,
) -> io::Result<()> {
    out.clear();
    out.extend_from_slice(head);
    if close {
        out.extend_from_slice(b"Connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
    shard.stats.borrow_mut().response(status_of(head));
    down.write_all(out).await
}

/// Answers a request that is not forwarded (bad, hostile, too slow) and closes.
async fn refuse(shard: &Shard, down: &mut TcpStream, status: u16) {
    shard.stats.borrow_mut().rejected(status);
    let body = format!("engine-proxy: {}\n", reason(status));
    let head = format!("HTTP/1.1 {status} {}\r\nContent-Length: {}\r\n", reason(status), body.len());
    let mut out = Vec::new();
    let _ = answer(shard, down, &mut out, head.as_bytes(), body.as_bytes(), true).await;
}

/// Closes with a TCP reset: a linger time of zero makes `close` send RST, not FIN.
fn reset(down: TcpStream) {
    let linger = libc::linger { l_onoff: 1, l_linger: 0 };
    // SAFETY: the fd is open (we own the stream) and `linger` is a valid, sized option value.
    unsafe {
        libc::setsockopt(
            down.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        );
    }
    drop(down);
}

/// Never answers: reads and discards until the client gives up (or the proxy drains).
async fn hang(shard: &Shard, down: &mut TcpStream, buf: &mut IoBuf) {
    while !shard.draining() {
        buf.clear();
        match buf.read_from(down, Duration::from_secs(1)).await {
            Ok(0) => return,
            Err(e) if e.kind() != io::ErrorKind::TimedOut => return,
            _ => {}
        }
    }
}

/// The status code of a head that starts `HTTP/1.1 NNN`.
fn status_of(head: &[u8]) -> u16 {
    head.get(9..12).and_then(|d| std::str::from_utf8(d).ok()).and_then(|d| d.parse().ok()).unwrap_or(0)
}
