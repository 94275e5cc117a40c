//! HTTP/2 under a shard's slots: a slot finding (or opening) its connection, the connection
//! made HTTP/2 (or left HTTP/1.1 when ALPN says so), the task that drives it, and one request
//! as a stream on it, sent again on a new connection when a GOAWAY refused it. `h2` (hyperium's) does
//! the protocol through tokio's io traits; the bytes it moves are counted here.
//!
//! A stream's timeout has no socket to shut: the sweeper marks the slot and wakes its task,
//! which drops the stream (`h2` sends RST_STREAM CANCEL) and leaves the connection to the
//! other streams.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

use bytes::Bytes;
use engine_http::response::{Capture, RetryAfter};
use engine_http::Response;
use engine_results::stats::ErrorKind;
use engine_runtime::compat::TokioIo;
use futures_lite::future::poll_fn;
use glommio::net::{Preallocated, TcpStream};
use h2::client::{Connection, SendRequest};

use super::exchange::Step;
use super::{backoff, connect, set_up, Conn};
use crate::h2req::{self, H2Request};
use crate::link::Found;
use crate::state::Shard;
use crate::transport::{OpenError, Stream};

/// Times an HTTP/2 request a GOAWAY refused is sent again on a new connection before it
/// counts as an `h2` error.
const MAX_RETRIES: u32 = 3;
/// The receive buffer of an h2c socket: a read takes whole frames of many streams at once
/// (each connection holds one for its life: 16 KiB keeps 10,000 connections affordable).
const READ_BUF: usize = 16 * 1024;
/// `UNKNOWN`: what a gRPC response without a `grpc-status` counts as.
const GRPC_UNKNOWN: u8 = 2;
/// DATA frames of one response read between turns the task gives the executor.
const FRAMES_PER_TURN: u32 = 16;

enum Wire {
    Tcp(TokioIo<TcpStream<Preallocated>>),
    Tls(Stream),
}

/// A connection's bytes for `h2`, counted into the shard's figures as they pass.
pub(super) struct Io {
    wire: Wire,
    shard: Rc<Shard>,
}

impl tokio::io::AsyncRead for Io {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut tokio::io::ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let r = match &mut this.wire {
            Wire::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            Wire::Tls(s) => Pin::new(s).poll_read(cx, buf),
        };
        if let Poll::Ready(Ok(())) = r {
            this.shard.stats().counters.bytes_received += (buf.filled().len() - before) as u64;
        }
        r
    }
}

impl tokio::io::AsyncWrite for Io {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = match &mut this.wire {
            Wire::Tcp(s) => Pin::new(s).poll_write(cx, data),
            Wire::Tls(s) => Pin::new(s).poll_write(cx, data),
        };
        if let Poll::Ready(Ok(n)) = r {
            this.shard.stats().counters.bytes_sent += n as u64;
        }
        r
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().wire {
            Wire::Tcp(s) => Pin::new(s).poll_flush(cx),
            Wire::Tls(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().wire {
            Wire::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            Wire::Tls(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}

/// What an opened connection became.
pub(super) enum Started {
    /// HTTP/2: a handle to send on, and the connection's generation on its link.
    H2(SendRequest<Bytes>, u32),
    /// `--http2` over TLS and the server chose HTTP/1.1: the slot's own connection.
    H1(Stream),
}

/// Makes the connection slot `slot` opened HTTP/2 (its link's), or leaves it HTTP/1.1 when
/// the server chose that by ALPN and `--http2` allows it.
pub(super) async fn start(shard: &Rc<Shard>, slot: usize, stream: Stream) -> Result<Started, h2::Error> {
    let plan = shard.plan().http2.as_ref().expect("an HTTP/2 run");
    let wire = match stream {
        Stream::Tls(t) if !plan.prior_knowledge && t.negotiated().alpn != Some("h2") => {
            return Ok(Started::H1(Stream::Tls(t)))
        }
        Stream::Tls(t) => Wire::Tls(Stream::Tls(t)),
        Stream::Tcp(s) => Wire::Tcp(TokioIo::new(s.buffered_with(Preallocated::new(READ_BUF)), Vec::new())),
    };
    let mut b = h2::client::Builder::new();
    b.initial_window_size(plan.window)
        .initial_connection_window_size(plan.connection_window)
        .max_header_list_size(plan.max_header_list)
        // One stream until the server's SETTINGS say how many it allows: a server that allows
        // fewer than `--streams` never sees more (the connect phase exchanges SETTINGS before
        // the run starts, so this costs no request a round trip).
        .initial_max_send_streams(1)
        .enable_push(false);
    let (send, conn) = b.handshake::<_, Bytes>(Io { wire, shard: shard.clone() }).await?;
    let link = shard.link(slot);
    let generation = link.next_generation();
    let driver = glommio::spawn_local(drive(shard.clone(), shard.link_index(slot), generation, conn)).detach();
    link.opened_h2(send.clone(), driver);
    let mut st = shard.stats();
    st.opened();
    st.http2().h2_conns += 1;
    Ok(Started::H2(send, generation))
}

/// Drives a connection's frames until it ends: the server's GOAWAY, a failure, or the run's
/// end (cancelled). Its streams learn how it ended from their own futures.
async fn drive(shard: Rc<Shard>, link: usize, generation: u32, conn: Connection<Io, Bytes>) {
    /// Counts the connection closed and frees its link however the task ends.
    struct Open {
        shard: Rc<Shard>,
        link: usize,
        generation: u32,
    }
    impl Drop for Open {
        fn drop(&mut self) {
            self.shard.stats().closed();
            self.shard.link_at(self.link).close(Some(self.generation));
        }
    }
    let open = Open { shard, link, generation };
    let ended = conn.await;
    // Ended well while this side still held it: the server closed it with a GOAWAY (an error
    // it sent ends in `Err`, counted the same). A connection a ramp let go of ends well too.
    let went_away = match &ended {
        Ok(()) => open.shard.link_at(link).holds(generation),
        Err(e) => e.is_go_away() && e.is_remote(),
    };
    if went_away && open.shard.link_at(link).goaway(generation) {
        open.shard.stats().http2().goaways += 1;
    }
}

/// How an HTTP/2 request ended: as any request does, or refused unprocessed by a GOAWAY
/// (it may be sent again on a new connection).
pub(super) enum Ended {
    Step(Step),
    Refused,
}

enum Fail {
    Timeout,
    H2(h2::Error),
}

/// Polls `f` unless the slot's stream timed out; a pending stream waits for the sweeper too.
fn watched<T>(
    shard: &Shard,
    slot: usize,
    cx: &mut Context<'_>,
    f: impl FnOnce(&mut Context<'_>) -> Poll<Result<T, h2::Error>>,
) -> Poll<Result<T, Fail>> {
    if shard.slot(slot).timed_out() {
        return Poll::Ready(Err(Fail::Timeout));
    }
    match f(cx) {
        Poll::Ready(r) => Poll::Ready(r.map_err(Fail::H2)),
        Poll::Pending => {
            shard.watch(slot, cx.waker());
            Poll::Pending
        }
    }
}

/// Sends `req` as a stream on `send` (connection `generation` of the slot's link) and reads
/// its response whole, keeping what `capture` asks.
pub(super) async fn exchange(
    shard: &Shard,
    slot: usize,
    send: &mut SendRequest<Bytes>,
    generation: u32,
    req: &H2Request,
    capture: Option<&mut Capture>,
) -> Ended {
    match stream(shard, slot, send, req, capture).await {
        Ok((response, grpc)) => Ended::Step(Step::Done { response, reuse: true, unsolicited: false, grpc }),
        Err(Fail::Timeout) => Ended::Step(Step::Fail(ErrorKind::Timeout)),
        Err(Fail::H2(e)) => failed(shard, slot, generation, &e),
    }
}

/// The stream itself. What lives across its awaits is in every in-flight stream's task (an
/// HTTP/2 run has conns × streams of them): the request is cloned into `h2` only as it is
/// sent, and the response's head is read and dropped before its body is.
async fn stream(
    shard: &Shard,
    slot: usize,
    send: &mut SendRequest<Bytes>,
    req: &H2Request,
    mut capture: Option<&mut Capture>,
) -> Result<(Response, Option<u8>), Fail> {
    poll_fn(|cx| watched(shard, slot, cx, |cx| send.poll_ready(cx))).await?;
    let end = req.body.is_empty();
    let (mut response, mut body_tx) = send.send_request(req.head.clone(), end).map_err(Fail::H2)?;
    if !end {
        // Queued whole: `h2` sends it as the server's windows allow.
        body_tx.send_data(req.body.clone(), true).map_err(Fail::H2)?;
    }
    drop(body_tx);
    let response = poll_fn(|cx| watched(shard, slot, cx, |cx| Pin::new(&mut response).poll(cx))).await?;
    let link = shard.link(slot);
    if link.first_response() {
        let max = send.current_max_send_streams();
        if max < shard.plan().streams() {
            shard.stats().http2().capped(max as u64);
        }
    }
    let (status, retry_after, head_grpc, mut body) = {
        let (head, body) = response.into_parts();
        let status = head.status.as_u16();
        if let Some(c) = capture.as_deref_mut() {
            c.begin();
            for (name, value) in &head.headers {
                c.keep_header(name.as_str(), value.as_bytes());
            }
        }
        let retry_after = (status >= 300)
            .then(|| head.headers.get("retry-after"))
            .flatten()
            .and_then(|v| RetryAfter::parse(v.as_bytes()));
        (status, retry_after, grpc_status(head.headers.get("grpc-status")), body)
    };
    let mut body_bytes = 0u64;
    let mut frames = 0u32;
    loop {
        let data = poll_fn(|cx| watched(shard, slot, cx, |cx| body.poll_data(cx).map(Option::transpose))).await?;
        let Some(data) = data else { break };
        body_bytes += data.len() as u64;
        let _ = body.flow_control().release_capacity(data.len());
        if let Some(c) = capture.as_deref_mut() {
            c.keep_body(&data);
        }
        frames += 1;
        // An endless body would keep the shard from its timers and sweeper.
        if frames.is_multiple_of(FRAMES_PER_TURN) {
            glommio::executor().yield_task_queue_now().await;
        }
    }
    // gRPC: the status is in the trailers (or, a trailers-only answer, in the headers).
    let grpc = if shard.plan().grpc.is_some() {
        let trailers = poll_fn(|cx| watched(shard, slot, cx, |cx| body.poll_trailers(cx))).await?;
        // None at all counts as UNKNOWN.
        Some(grpc_status(trailers.as_ref().and_then(|t| t.get("grpc-status"))).or(head_grpc).unwrap_or(GRPC_UNKNOWN))
    } else {
        None
    };
    Ok((Response { status, keep_alive: true, head_bytes: 0, body_bytes, retry_after }, grpc))
}

/// A `grpc-status` field's code (above 255: 255, counted as OTHER).
fn grpc_status(field: Option<&http::HeaderValue>) -> Option<u8> {
    field.and_then(|v| v.to_str().ok()?.parse::<u32>().ok()).map(|c| c.min(u32::from(u8::MAX)) as u8)
}

/// A stream's failure: the server reset it (`reset_stream`, by code), a GOAWAY refused it
/// (sent again), or the connection failed (its link closes: the next request opens another).
fn failed(shard: &Shard, slot: usize, generation: u32, e: &h2::Error) -> Ended {
    let link = shard.link(slot);
    if e.is_go_away() && e.is_remote() {
        if link.goaway(generation) {
            shard.stats().http2().goaways += 1;
        }
        link.close(Some(generation));
        return Ended::Refused;
    }
    if e.is_reset() {
        if !e.is_remote() {
            return Ended::Step(Step::Fail(ErrorKind::H2));
        }
        shard.stats().http2().reset(u32::from(e.reason().unwrap_or(h2::Reason::INTERNAL_ERROR)));
        return Ended::Step(Step::Fail(ErrorKind::ResetStream));
    }
    link.close(Some(generation));
    Ended::Step(match e.get_io() {
        Some(io) => match engine_tls::Failure::of(io) {
            Some(f) => Step::Tls(f.reason_index()),
            None => Step::Fail(ErrorKind::from_io(io)),
        },
        None => Step::Fail(ErrorKind::H2),
    })
}

impl Conn {
    /// HTTP/2: takes the slot's connection, opening it if it is closed, or waits while another
    /// slot opens it (or holds it as HTTP/1.1). `count`: a failure to open counts as an error
    /// (not when it retries a request, which counts its own).
    pub(super) async fn ensure_link(&mut self, count: bool) -> bool {
        let shard = self.guard.shard.clone();
        let slot = self.guard.slot;
        loop {
            match shard.link(slot).find() {
                Found::H2(send, generation) => {
                    self.h2 = Some(Box::new((send, generation)));
                    return true;
                }
                Found::Wait => {
                    self.attempted(&shard);
                    shard.link(slot).changed().await;
                }
                Found::Open => break,
            }
        }
        // The last connection ended before any response: a back-off before the next, as for
        // a connect that failed.
        let barren = shard.link(slot).barren();
        if barren > 0 {
            glommio::timer::sleep(backoff(barren)).await;
        }
        let pause = match connect(&shard, slot).await {
            Ok(opened) => {
                set_up(&shard, &opened);
                match start(&shard, slot, opened.stream).await {
                    Ok(Started::H2(send, generation)) => {
                        self.failures = 0;
                        self.h2 = Some(Box::new((send, generation)));
                        return true;
                    }
                    Ok(Started::H1(stream)) => {
                        self.failures = 0;
                        shard.link(slot).opened_h1();
                        shard.stats().http2().h1_conns += 1;
                        self.guard.set_open(Some(&stream));
                        self.stream = Some(stream);
                        return true;
                    }
                    Err(_) => {
                        shard.link(slot).failed();
                        self.open_failed(&shard, OpenError::H2, count)
                    }
                }
            }
            Err(e) => {
                shard.link(slot).failed();
                self.open_failed(&shard, e, count)
            }
        };
        glommio::timer::sleep(pause).await;
        false
    }
}

/// HTTP/2: request `which` (a templated one as just rendered into the connection's buffer)
/// converted, sent and answered. Boxed: none of its state sits in every connection's task,
/// which an HTTP/1.1 run keeps small (one allocation per request, beside `h2`'s own).
pub(super) fn h2_turn(
    c: &mut Conn,
    which: usize,
    capture: Option<Box<Capture>>,
) -> Pin<Box<dyn Future<Output = Turned> + '_>> {
    let shard = c.guard.shard.clone();
    let scheme = shard.plan().target.scheme();
    // Only a templated request is converted (and owned) here; the others are the shard's.
    let templated = match shard.h2_request(which) {
        Some(_) => None,
        None => Some(h2req::convert(&c.rendered, scheme)),
    };
    Box::pin(async move {
        let mut capture = capture;
        let req = match &templated {
            None => shard.h2_request(which),
            Some(r) => r.as_ref().ok(),
        };
        let outcome = match req {
            Some(req) => send_h2(c, req, capture.as_deref_mut()).await,
            None => Step::Fail(ErrorKind::H2),
        };
        (outcome, capture)
    })
}

/// How a request ended, and what was kept of its response.
pub(super) type Turned = (Step, Option<Box<Capture>>);

/// Sends an HTTP/2 request on the slot's connection; one a GOAWAY refused goes again on a
/// new connection (counted as retried), up to [`MAX_RETRIES`] times.
async fn send_h2(c: &mut Conn, req: &H2Request, mut capture: Option<&mut Capture>) -> Step {
    let shard = c.guard.shard.clone();
    let mut tries = 0;
    loop {
        let Some((send, generation)) = c.h2.as_deref_mut() else {
            // The slot's connection could not be opened again for a retry.
            return Step::Fail(ErrorKind::Connect);
        };
        let generation = *generation;
        match exchange(&shard, c.guard.slot, send, generation, req, capture.as_deref_mut()).await {
            Ended::Step(step) => return step,
            Ended::Refused if tries == MAX_RETRIES => return Step::Fail(ErrorKind::H2),
            Ended::Refused => {
                tries += 1;
                shard.stats().http2().retried += 1;
                c.h2 = None;
                // Boxed: a handshake's state would otherwise sit in every stream's request.
                Box::pin(c.ensure_link(false)).await;
            }
        }
    }
}
