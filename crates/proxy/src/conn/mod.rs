//! One client connection: read a head (within the header timeout), validate it, let the
//! faults decide, forward to the upstream and stream the response back; repeat while both
//! sides keep the connection alive. Every wait is armed in the connection's [`Slot`], whose
//! deadlines the shard's tick enforces.

mod protocol;
mod send;
mod to_h2;

use std::io;
use std::rc::Rc;
use std::time::{Duration, Instant};

use engine_http::header_slots;
use engine_tls::{ServerConnection, Stream};

use crate::faults::FaultKind;
use crate::inject::{Decision, End};
use crate::iobuf::IoBuf;
use crate::pool::Upstream;
use crate::shape::{pause, Shape, Shaper};
use crate::shard::Shard;
use crate::slot::{Slot, Wait};
use crate::stats::{route_of, UpstreamError};
use crate::UpstreamProtocol;
use engine_http::forward::{allowed_upgrades, downstream_response, reason, upstream_request, UpstreamHead};
use engine_http::request::{self, Framing};
use protocol::Protocol;

/// Interim (1xx) answers an upstream may send before its final one: servers send one or two
/// (100 Continue, 103 Early Hints); one that keeps sending them never answers.
const MAX_INTERIM: u32 = 32;
/// A response read without waiting for the upstream (one that never stops sending: an
/// endless body, 1xx after 1xx) would keep the shard from its other clients and timers:
/// every READS_PER_TURN-th read of one response lets the executor poll I/O first (glommio
/// patch, PATCHES.md), as the blast does.
const READS_PER_TURN: u32 = 16;

async fn take_turn(reads: u32) {
    if reads.is_multiple_of(READS_PER_TURN) {
        glommio::executor().yield_task_queue_now().await;
    }
}

/// What is kept of a request head once its buffer moves on.
struct Prepared {
    framing: Framing,
    keep_alive: bool,
    expect_continue: bool,
    head_request: bool,
    version: u8,
    route: usize,
    /// The request offers the upstream an upgrade (the protocols are in `Conn::offer`).
    upgrade: bool,
}

/// Why an exchange ended without a complete response to the client.
enum Failed {
    /// The upstream failed; `answered` when the client already has part of the response
    /// (then the only honest signal left is closing the connection).
    Upstream { error: UpstreamError, answered: bool, retryable: bool },
    /// The client went away, stalled, or sent a bad body.
    Client,
}

/// What to do after a request.
enum Next {
    KeepAlive,
    Close,
    /// The upstream switched protocols: splice the connections.
    Tunnel(Box<Upstream>),
}

struct Conn {
    shard: Rc<Shard>,
    down: Stream<ServerConnection>,
    slot: Rc<Slot>,
    /// The client's address as text, for X-Forwarded-For.
    peer: Vec<u8>,
    /// The client is on this host: its `x-engine-fault-*` fields count without the token.
    loopback: bool,
    /// Bytes from the client not yet used (a partial head, body bytes, pipelined requests).
    buf: IoBuf,
    /// The request head for the upstream, then the response head for the client.
    up_head: Vec<u8>,
    out: Vec<u8>,
    /// The protocols of the current request's upgrade offered upstream (those allowed).
    offer: Vec<u8>,
    /// The stream faults of the current request, to the upstream and to the client.
    shapes: (Shape, Shape),
}

pub(crate) async fn serve(shard: Rc<Shard>, down: Stream<ServerConnection>, peer: std::net::IpAddr, slot: Rc<Slot>) {
    let mut c = Conn {
        shard,
        down,
        slot,
        peer: peer.to_string().into_bytes(),
        loopback: peer.to_canonical().is_loopback(),
        // Most request heads are a few hundred bytes; buffers grow for the others.
        buf: IoBuf::with_capacity(2048),
        up_head: Vec::new(),
        out: Vec::new(),
        offer: Vec::new(),
        shapes: Default::default(),
    };
    match c.protocol().await {
        Protocol::Closed => return,
        Protocol::Http2 => {
            let Conn { shard, down, slot, peer, buf, loopback, .. } = c;
            let peer: Rc<str> = String::from_utf8_lossy(&peer).into();
            return crate::http2::serve(shard, down, buf.to_vec(), (peer, loopback), slot).await;
        }
        Protocol::Http1 => {}
    }
    loop {
        match c.one_request().await {
            Next::KeepAlive => {}
            Next::Close => break,
            Next::Tunnel(up) => {
                c.tunnel(*up).await;
                break;
            }
        }
    }
    // A slow_close fault holds the client's connection open a while after the proxy is done.
    if let Some(hold) = c.shapes.1.slow_close {
        glommio::timer::sleep(Duration::from_millis(hold)).await;
    }
}

impl Conn {
    fn deadline(&self, timeout: Duration) -> Instant {
        self.shard.deadline(timeout)
    }

    /// Reads more from the client as a `what` wait; `Err(what)` if it timed out, `Ok(0)` at
    /// the end of the stream or on an error.
    async fn read_client(&mut self, what: Wait, deadline: Instant) -> Result<usize, Wait> {
        let r = {
            let _armed = self.slot.arm(what, self.down.fd(), deadline);
            self.buf.read_from(&mut self.down).await
        };
        match (r, self.slot.expired()) {
            (_, Some(w)) => Err(w),
            (Ok(n), None) => Ok(n),
            (Err(_), None) => Ok(0),
        }
    }

    /// Writes to the client; a client that does not take the bytes within the idle timeout
    /// is cut off.
    async fn write_client(&mut self, bytes: &[u8]) -> io::Result<()> {
        let deadline = self.deadline(self.shard.shared.limits.idle_timeout);
        let _armed = self.slot.arm(Wait::Write, self.down.fd(), deadline);
        self.down.write_all(bytes).await
    }

    async fn one_request(&mut self) -> Next {
        let (idle_timeout, header_timeout) =
            (self.shard.shared.limits.idle_timeout, self.shard.shared.limits.header_timeout);
        self.slot.busy.set(false);
        if self.buf.is_empty() {
            if self.shard.draining() {
                return Next::Close;
            }
            match self.read_client(Wait::Idle, self.deadline(idle_timeout)).await {
                Ok(n) if n > 0 => {}
                _ => return Next::Close,
            }
        }
        self.slot.busy.set(true);

        // The whole head must arrive within the header timeout of its first byte, so a client
        // trickling bytes (slowloris) cannot hold the connection.
        let mut deadline = None;
        let (prep, decision) = loop {
            let mut slots = header_slots();
            match request::parse(&self.buf, &mut slots) {
                Ok(Some(head)) => {
                    let header =
                        |name: &str| head.headers.iter().find(|h| h.name.eq_ignore_ascii_case(name)).map(|h| h.value);
                    let mut decision = self.shard.faults.borrow_mut().decide(head.method, head.target, header);
                    let shared = &self.shard.shared;
                    let asked = if shared.fault_headers
                        && crate::asked::trusted(self.loopback, shared.admin_token.as_deref(), header)
                    {
                        crate::asked::apply(header, &mut decision).err()
                    } else {
                        None
                    };
                    // An upgrade with a body is taken as a plain request (RFC 9110 §7.8 lets a
                    // server ignore Upgrade): the body's end is then never in doubt.
                    self.offer.clear();
                    if let Some(offered) = head.upgrade.filter(|_| head.framing == Framing::None) {
                        allowed_upgrades(offered, &self.shard.shared.upgrades, &mut self.offer);
                    }
                    let upgrade = !self.offer.is_empty();
                    upstream_request(
                        &head,
                        &self.peer,
                        &self.shard.shared.upstream_host,
                        upgrade.then_some(&self.offer[..]),
                        shared.forward_expect,
                        &mut self.up_head,
                    );
                    let prep = Prepared {
                        framing: head.framing,
                        keep_alive: head.keep_alive,
                        expect_continue: head.expect_continue,
                        head_request: head.method == "HEAD",
                        version: head.version,
                        route: route_of(&self.shard.shared.routes, head.target),
                        upgrade,
                    };
                    let len = head.len;
                    self.buf.consume(len);
                    if let Some(bad) = asked {
                        return self.refuse_because(400, &bad.to_string()).await;
                    }
                    break (prep, decision);
                }
                Ok(None) => {
                    let d = *deadline.get_or_insert_with(|| self.deadline(header_timeout));
                    match self.read_client(Wait::Header, d).await {
                        Ok(n) if n > 0 => {}
                        Ok(_) => return Next::Close,
                        Err(_) => return self.refuse(408).await,
                    }
                }
                Err(e) => return self.refuse(e.status()).await,
            }
        };
        {
            let mut stats = self.shard.stats.borrow_mut();
            stats.requests += 1;
            stats.protocols[0] += 1;
        }
        self.apply(prep, decision).await
    }

    /// Holds the connection unanswered until `until` or the client closes, then closes it.
    async fn hold(&mut self, until: Instant) -> Next {
        // Idle as far as a drain is concerned: it closes held connections at once.
        self.slot.busy.set(false);
        while matches!(self.read_client(Wait::Idle, until).await, Ok(n) if n > 0) {
            self.buf.clear();
        }
        Next::Close
    }

    /// Acts on the faults' decision, then forwards.
    async fn apply(&mut self, prep: Prepared, decision: Decision) -> Next {
        let has_body = prep.framing != Framing::None;
        // A request whose body is not read leaves the connection unusable for another.
        let close_after_answer = has_body || !prep.keep_alive || self.shard.draining();
        match decision.end {
            Some(End::Respond { head, body, kind, .. }) => {
                self.shard.stats.borrow_mut().fault(kind);
                return self.answer(&head, &body, close_after_answer).await;
            }
            Some(End::Reset(_)) => {
                self.shard.stats.borrow_mut().fault(FaultKind::Reset);
                engine_runtime::fd::reset_on_close(self.down.fd());
                return Next::Close;
            }
            Some(End::Hang) => {
                self.shard.stats.borrow_mut().fault(FaultKind::Hang);
                return self.hold(far_future()).await;
            }
            Some(End::Timeout(d)) => {
                self.shard.stats.borrow_mut().fault(FaultKind::Timeout);
                return self.hold(if d.is_zero() { far_future() } else { Instant::now() + d }).await;
            }
            None => {}
        }
        let mut _permit = None;
        if let Some(limiter) = &decision.limiter {
            match limiter.acquire().await {
                Some(p) => _permit = Some(p),
                None => {
                    self.shard.stats.borrow_mut().fault(FaultKind::Overload);
                    let (head, body) = &limiter.refusal;
                    return self.answer(head, body, close_after_answer).await;
                }
            }
        }
        if !decision.delay.is_zero() {
            self.shard.stats.borrow_mut().fault(FaultKind::Delay);
            glommio::timer::sleep(decision.delay).await;
        }
        self.shard.stats.borrow_mut().stream_faults(decision.stream_kinds);
        self.shapes = (decision.up, decision.down);

        let mut result = if self.shard.shared.upstream_protocol == UpstreamProtocol::Http2 {
            self.exchange_h2(&prep).await
        } else {
            self.exchange(&prep, false).await
        };
        if let Err(Failed::Upstream { retryable: true, .. }) = result {
            // A pooled connection the upstream had closed while idle: once more on a fresh one.
            result = self.exchange(&prep, true).await;
        }
        // A tunnel holds no concurrency slot: the fault limits requests, and its request ended.
        drop(_permit);
        match result {
            Ok(Next::KeepAlive) => Next::KeepAlive,
            Ok(Next::Tunnel(up)) => Next::Tunnel(up),
            Ok(Next::Close) | Err(Failed::Client) => Next::Close,
            Err(Failed::Upstream { error, answered, .. }) => {
                self.shard.stats.borrow_mut().upstream_error(error);
                if answered {
                    return Next::Close;
                }
                let status = error.status();
                let body = format!("engine-proxy: upstream {}\n", error.name());
                let head = format!(
                    "HTTP/1.1 {status} {}\r\nContent-Length: {}\r\nVia: 1.1 engine-proxy\r\n",
                    reason(status),
                    body.len()
                );
                // After a failure half-way through a request body the stream is unusable.
                let close = has_body || !prep.keep_alive || self.shard.draining();
                self.answer(head.as_bytes(), body.as_bytes(), close).await
            }
        }
    }

    /// Forwards one request and its response.
    async fn exchange(&mut self, prep: &Prepared, fresh: bool) -> Result<Next, Failed> {
        let shard = self.shard.clone();
        let has_body = prep.framing != Framing::None;
        let mut up = upstream(&shard, fresh, has_body).await?;
        // Only a request the upstream cannot have acted on is sent twice.
        let retryable = up.reused && !has_body;
        let lost = |error: UpstreamError, answered: bool| Failed::Upstream {
            error,
            answered,
            retryable: retryable && !answered && error != UpstreamError::Timeout,
        };

        let mut to_up = Shaper::new(self.shapes.0);
        let mut to_down = Shaper::new(self.shapes.1);
        let body_sent = self.send_request(&mut up, prep, &mut to_up, &lost).await?;
        let sent = Instant::now();

        // The response head, after any 1xx interim ones (relayed but for 100 Continue: the
        // proxy answered Expect itself).
        let mut ttfb = None;
        let (mut reads, mut interims) = (0u32, 0u32);
        let (status, head_len, mut body, reusable, close) = loop {
            if !up.buf.is_empty() {
                // A drain that began while the request was upstream closes the connection after it.
                let close = !prep.keep_alive || shard.draining() || !body_sent;
                let offer = prep.upgrade.then_some(&self.offer[..]);
                match downstream_response(&up.buf, prep.head_request, close, prep.version, offer, &mut self.out) {
                    Ok(Some(UpstreamHead::Interim { len, relay })) => {
                        interims += 1;
                        if interims > MAX_INTERIM {
                            return Err(lost(UpstreamError::Invalid, false));
                        }
                        up.buf.consume(len);
                        if relay {
                            self.write_out().await?;
                        }
                        continue;
                    }
                    Ok(Some(UpstreamHead::Switch { len })) => {
                        return self.switch(up, len, prep.route, ttfb.unwrap_or_default()).await;
                    }
                    Ok(Some(UpstreamHead::Final { status, len, body, reusable, close })) => {
                        break (status, len, body, reusable, close)
                    }
                    Ok(None) => {}
                    Err(_) => return Err(lost(UpstreamError::Invalid, false)),
                }
            }
            let n = self.read_upstream(&mut up).await.map_err(|e| lost(e, false))?;
            if n == 0 {
                return Err(lost(UpstreamError::Reset, false));
            }
            reads += 1;
            take_turn(reads).await;
            ttfb.get_or_insert_with(|| sent.elapsed());
        };
        let ttfb = ttfb.unwrap_or_default();
        // A body the upstream answered without: the client may still send it, so neither
        // connection carries another request (the head above says `Connection: close`).
        let reusable = reusable && body_sent;

        // The head, with whatever body bytes came with it, in one write.
        let (n, mut done) = body.feed(&up.buf[head_len..]).map_err(|_| lost(UpstreamError::Invalid, true))?;
        let mut out = std::mem::take(&mut self.out);
        let wrote = if to_down.active() {
            match self.write_shaped(&out, &mut to_down).await {
                Ok(()) => self.write_shaped(&up.buf[head_len..head_len + n], &mut to_down).await,
                e => e,
            }
        } else {
            out.extend_from_slice(&up.buf[head_len..head_len + n]);
            self.write_client(&out).await.map_err(|_| Failed::Client)
        };
        self.out = out;
        wrote?;
        let mut leftover = head_len + n < up.buf.len();
        let single_read = done && reads == 1;
        // From here the client has the head: a failure can only cut the connection.
        while !done {
            up.buf.clear();
            let got = self.read_upstream(&mut up).await.map_err(|e| lost(e, true))?;
            reads += 1;
            take_turn(reads).await;
            if got == 0 {
                if body.is_until_eof() {
                    break;
                }
                return Err(lost(UpstreamError::Reset, true));
            }
            let (n, end) = body.feed(&up.buf).map_err(|_| lost(UpstreamError::Invalid, true))?;
            done = end;
            leftover = n < up.buf.len();
            self.write_shaped(&up.buf[..n], &mut to_down).await?;
        }
        {
            // A response that came in one read ended at its first byte: no second clock read.
            let total = if single_read { ttfb } else { sent.elapsed() };
            let mut stats = shard.stats.borrow_mut();
            stats.upstream(prep.route, status, ttfb, Some(total));
            stats.response(status);
        }
        // Bytes after the response's end mean the upstream broke framing: do not reuse it.
        if reusable && !leftover && !shard.draining() {
            shard.pool.put(up, shard.now());
        }
        Ok(if close { Next::Close } else { Next::KeepAlive })
    }

    /// Writes the head made in `self.out` to the client.
    async fn write_out(&mut self) -> Result<(), Failed> {
        let out = std::mem::take(&mut self.out);
        let wrote = self.write_client(&out).await;
        self.out = out;
        wrote.map_err(|_| Failed::Client)
    }

    /// Passes the upstream's `101` (head in `self.out`, `len` bytes of `up.buf`) to the client,
    /// with whatever of the new protocol came with it: the connection is a tunnel from here.
    async fn switch(&mut self, mut up: Upstream, len: usize, route: usize, ttfb: Duration) -> Result<Next, Failed> {
        {
            let mut stats = self.shard.stats.borrow_mut();
            stats.upstream(route, 101, ttfb, Some(ttfb));
            stats.response(101);
            stats.tunnel_bytes(0, (up.buf.len() - len) as u64);
        }
        let mut out = std::mem::take(&mut self.out);
        out.extend_from_slice(&up.buf[len..]);
        let wrote = self.write_client(&out).await;
        self.out = out;
        wrote.map_err(|_| Failed::Client)?;
        up.buf.clear();
        Ok(Next::Tunnel(Box::new(up)))
    }

    /// Splices the client's connection to `up` after a `101`, until the tunnel ends.
    async fn tunnel(&mut self, mut up: Upstream) {
        let shard = self.shard.clone();
        // What the client sent after its request head is the new protocol's already.
        if !self.buf.is_empty() {
            let deadline = self.deadline(shard.shared.limits.idle_timeout);
            let _armed = self.slot.arm(Wait::Upstream, up.stream.fd(), deadline);
            if up.stream.write_all(&self.buf).await.is_err() || self.slot.expired().is_some() {
                return;
            }
            shard.stats.borrow_mut().tunnel_bytes(self.buf.len() as u64, 0);
            self.buf.clear();
        }
        // Idle as far as a drain is concerned: a drain closes tunnels at once.
        self.slot.busy.set(false);
        shard.stats.borrow_mut().tunnel_opened();
        let opened = Instant::now();
        // The read buffers become the tunnel's: the connection reads no more HTTP.
        let bufs = (std::mem::replace(&mut self.buf, IoBuf::with_capacity(0)).into_vec(), up.buf.into_vec());
        let _ =
            crate::tunnel::splice(&shard, &self.slot, &mut self.down, &mut up.stream, self.shapes, bufs, None).await;
        // The tunnel held its own close.
        self.shapes.1.slow_close = None;
        shard.stats.borrow_mut().tunnel_closed(opened.elapsed());
    }

    /// Reads more of the upstream's response; the error says a timeout or a reset.
    async fn read_upstream(&self, up: &mut Upstream) -> Result<usize, UpstreamError> {
        let r = {
            let deadline = self.deadline(self.shard.shared.limits.upstream_timeout);
            let _armed = self.slot.arm(Wait::Upstream, up.stream.fd(), deadline);
            up.buf.read_from(&mut up.stream).await
        };
        match (r, self.slot.expired()) {
            (_, Some(_)) => Err(UpstreamError::Timeout),
            (Ok(n), None) => Ok(n),
            (Err(_), None) => Err(UpstreamError::Reset),
        }
    }

    /// Writes `bytes` to the client under the downstream stream faults; a data limit reached
    /// cuts the connection.
    async fn write_shaped(&mut self, bytes: &[u8], s: &mut Shaper) -> Result<(), Failed> {
        if !s.active() {
            return self.write_client(bytes).await.map_err(|_| Failed::Client);
        }
        pause(s.before_chunk()).await;
        let mut rest = bytes;
        while !rest.is_empty() {
            let n = s.piece(rest.len()).map_err(|_| Failed::Client)?;
            self.write_client(&rest[..n]).await.map_err(|_| Failed::Client)?;
            rest = &rest[n..];
            pause(s.wrote(n)).await;
        }
        Ok(())
    }

    /// Sends a canned answer: `head` holds the status line and fields without the blank line.
    async fn answer(&mut self, head: &[u8], body: &[u8], close: bool) -> Next {
        let mut out = std::mem::take(&mut self.out);
        out.clear();
        out.extend_from_slice(head);
        if close {
            out.extend_from_slice(b"Connection: close\r\n");
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(body);
        self.shard.stats.borrow_mut().response(status_of(head));
        let wrote = self.write_client(&out).await;
        self.out = out;
        if wrote.is_err() || close {
            Next::Close
        } else {
            Next::KeepAlive
        }
    }

    /// Answers a request that is not forwarded (bad, hostile, too slow) and closes.
    async fn refuse(&mut self, status: u16) -> Next {
        self.refuse_because(status, reason(status)).await
    }

    /// [`Self::refuse`], saying why.
    async fn refuse_because(&mut self, status: u16, why: &str) -> Next {
        self.shard.stats.borrow_mut().rejected(status);
        let body = format!("engine-proxy: {why}\n");
        let head = format!("HTTP/1.1 {status} {}\r\nContent-Length: {}\r\n", reason(status), body.len());
        self.answer(head.as_bytes(), body.as_bytes(), true).await
    }
}

/// A connection to the upstream: a pooled one (checked first when `has_body`), or a new one
/// (`fresh`, or none idle). A new TLS connection's handshake is counted apart.
async fn upstream(shard: &Shard, fresh: bool, has_body: bool) -> Result<Upstream, Failed> {
    let got = if fresh { shard.pool.connect().await } else { shard.pool.get(has_body).await };
    let mut up = got.map_err(|e| {
        if engine_tls::Failure::of(&e).is_some() {
            shard.stats.borrow_mut().tls_upstream.failed(&e);
        }
        Failed::Upstream { error: UpstreamError::Refused, answered: false, retryable: false }
    })?;
    if let Some((took, resumed)) = up.handshake.take() {
        shard.stats.borrow_mut().tls_upstream.handshake(Some(took), resumed);
    }
    Ok(up)
}

/// A deadline that never comes (a wait only a close or a drain ends).
fn far_future() -> Instant {
    Instant::now() + Duration::from_secs(100 * 365 * 24 * 3600)
}

/// The status code of a head that starts `HTTP/1.1 NNN`.
fn status_of(head: &[u8]) -> u16 {
    head.get(9..12).and_then(|d| std::str::from_utf8(d).ok()).and_then(|d| d.parse().ok()).unwrap_or(0)
}
