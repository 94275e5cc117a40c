//! HTTP/2 under a shard's slots: a slot finding (or opening) its connection, the connection
//! made HTTP/2 (or left HTTP/1.1 when ALPN says so), the task that drives it, and one request
//! as a stream on it, sent again on a new connection when a GOAWAY refused it. The protocol is
//! [`engine_http::h2::Client`]'s (no I/O); here is its I/O: the driver writes what the client
//! queued and feeds it what arrives, counting the bytes.
//!
//! A stream's timeout has no socket to shut: the sweeper marks the slot and wakes its task,
//! which cancels the stream (RST_STREAM CANCEL) and leaves the connection to the other streams.

use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

use engine_http::h2::{Client, Config, Ended};
use engine_http::response::Capture;
use engine_results::stats::ErrorKind;
use futures_lite::future::poll_fn;

use super::exchange::Step;
use super::{backoff, connect, set_up, Conn};
use crate::h2req;
use crate::link::{Broke, Found, H2Conn};
use crate::state::Shard;
use crate::transport::Stream;

/// Times an HTTP/2 request a GOAWAY refused is sent again on a new connection before it
/// counts as an `h2` error.
const MAX_RETRIES: u32 = 3;
/// Reads the driver handles before it gives the executor a turn (a server that never stops
/// sending would keep the shard from its timers and sweeper).
const READS_PER_TURN: u32 = 16;

/// What an opened connection became.
pub(super) enum Started {
    /// HTTP/2, the slot's link's.
    H2(Rc<H2Conn>),
    /// `--http2` over TLS and the server chose HTTP/1.1: the slot's own connection.
    H1(Stream),
}

/// Makes the connection slot `slot` opened HTTP/2 (its link's), or leaves it HTTP/1.1 when
/// the server chose that by ALPN and `--http2` allows it. The preface and SETTINGS go out
/// with the driver's first turn; the server's SETTINGS arrive before the run starts (the
/// connect phase), and until they do the connection carries one stream.
fn start(shard: &Rc<Shard>, slot: usize, stream: Stream) -> Started {
    let plan = shard.plan().http2.as_ref().expect("an HTTP/2 run");
    if let Stream::Tls(t) = &stream {
        if !plan.prior_knowledge && t.negotiated().alpn != Some("h2") {
            return Started::H1(stream);
        }
    }
    let config = Config {
        streams: plan.streams as usize,
        window: plan.window,
        connection_window: plan.connection_window,
        max_header_list: plan.max_header_list,
        grpc: shard.plan().grpc.is_some(),
    };
    let link = shard.link(slot);
    let conn = Rc::new(H2Conn::new(Client::new(config), link.next_generation()));
    let driver = glommio::spawn_local(drive(shard.clone(), shard.link_index(slot), conn.clone(), stream)).detach();
    link.opened_h2(conn.clone(), driver);
    let mut st = shard.stats();
    st.opened();
    st.http2().h2_conns += 1;
    Started::H2(conn)
}

/// Drives a connection until it ends: it failed (either side), or it went away (a GOAWAY, or
/// its link let go of it) with no stream left, or the run ended (cancelled).
async fn drive(shard: Rc<Shard>, link: usize, conn: Rc<H2Conn>, mut stream: Stream) {
    /// Counts the connection closed and frees its link however the task ends.
    struct Open {
        shard: Rc<Shard>,
        link: usize,
        conn: Rc<H2Conn>,
    }
    impl Drop for Open {
        fn drop(&mut self) {
            // Streams still open (the run ended, cancelling this task) learn it here.
            let mut client = self.conn.client.borrow_mut();
            client.broke();
            let mut st = self.shard.stats();
            st.closed();
            // Each connection's GOAWAY counted once, however the connection ended.
            if client.went_away() {
                st.http2().goaways += 1;
            }
            drop((client, st));
            self.shard.link_at(self.link).close(Some(self.conn.generation));
        }
    }
    let open = Open { shard, link, conn };
    poll_fn(|cx| turn(&open.shard, &open.conn, &mut stream, cx)).await;
}

/// One turn of the driver: write what the client queued, feed it what arrived.
fn turn(shard: &Shard, conn: &H2Conn, stream: &mut Stream, cx: &mut Context<'_>) -> Poll<()> {
    let mut client = conn.client.borrow_mut();
    client.set_driver(cx.waker());
    for _ in 0..READS_PER_TURN {
        while !client.output().is_empty() {
            match stream.poll_write(cx, client.output()) {
                Poll::Ready(Ok(0)) => return broke(conn, &mut client, Broke::Kind(ErrorKind::Closed)),
                Poll::Ready(Ok(n)) => {
                    shard.stats().counters.bytes_sent += n as u64;
                    client.wrote(n);
                }
                Poll::Ready(Err(e)) => return broke(conn, &mut client, of_io(&e)),
                Poll::Pending => break,
            }
        }
        if let Poll::Ready(Err(e)) = stream.poll_flush(cx) {
            return broke(conn, &mut client, of_io(&e));
        }
        if client.finished() {
            // What is left of a GOAWAY the client sent is not waited for.
            return Poll::Ready(());
        }
        let mut buf = shard.read_buf();
        match stream.poll_read(cx, &mut buf[..]) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(Ok(0)) => {
                let why = if stream.truncated() {
                    of_io(&engine_tls::Failure::truncated())
                } else {
                    Broke::Kind(ErrorKind::Closed)
                };
                return broke(conn, &mut client, why);
            }
            Poll::Ready(Ok(n)) => {
                shard.stats().counters.bytes_received += n as u64;
                if client.feed(&buf[..n]).is_err() {
                    conn.broke.set(Some(Broke::Kind(ErrorKind::H2)));
                }
            }
            Poll::Ready(Err(e)) => return broke(conn, &mut client, of_io(&e)),
        }
    }
    // Marks the task queue to yield (glommio polls I/O and fires timers first) and wakes
    // this task to go on after that.
    let _ = std::pin::pin!(glommio::executor().yield_task_queue_now()).poll(cx);
    Poll::Pending
}

/// The connection broke: its streams fail with `why`.
fn broke(conn: &H2Conn, client: &mut Client, why: Broke) -> Poll<()> {
    if conn.broke.get().is_none() {
        conn.broke.set(Some(why));
    }
    client.broke();
    Poll::Ready(())
}

fn of_io(e: &std::io::Error) -> Broke {
    match engine_tls::Failure::of(e) {
        Some(f) => Broke::Tls(f.reason_index()),
        None => Broke::Kind(ErrorKind::from_io(e)),
    }
}

/// How an HTTP/2 request ended: as any request does, or not processed (a GOAWAY refused it,
/// `sent`; or the connection took no new stream): it may go again on a new connection.
enum Outcome {
    Step(Step),
    Refused { sent: bool },
}

/// Cancels the slot's stream if its request is dropped before it ended (the run's end).
struct Sent<'a> {
    conn: &'a H2Conn,
    k: usize,
    armed: bool,
}

impl Drop for Sent<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.conn.client.borrow_mut().cancel(self.k);
        }
    }
}

/// Sends a request (`block`, `body`) as a stream on `conn` from slot `slot` and waits for it
/// to end; `capture` goes with it and comes back.
async fn exchange(
    shard: &Shard,
    slot: usize,
    conn: &H2Conn,
    block: &[u8],
    body: &[u8],
    capture: &mut Option<Box<Capture>>,
) -> Outcome {
    let k = slot % shard.plan().streams();
    let may = poll_fn(|cx| {
        if shard.slot(slot).timed_out() {
            return Poll::Ready(None);
        }
        let r = conn.client.borrow_mut().poll_open(cx);
        if r.is_pending() {
            shard.watch(slot, cx.waker());
        }
        r.map(Some)
    })
    .await;
    match may {
        None => return Outcome::Step(Step::Fail(ErrorKind::Timeout)),
        Some(false) => return Outcome::Refused { sent: false },
        Some(true) => {}
    }
    conn.client.borrow_mut().send(k, block, body, capture.take());
    let mut sent = Sent { conn, k, armed: true };
    let (ended, kept) = poll_fn(|cx| {
        if shard.slot(slot).timed_out() {
            return Poll::Ready((None, conn.client.borrow_mut().cancel(k)));
        }
        let r = conn.client.borrow_mut().poll_done(k, cx);
        if r.is_pending() {
            shard.watch(slot, cx.waker());
        }
        r.map(|(e, c)| (Some(e), c))
    })
    .await;
    sent.armed = false;
    *capture = kept;
    let link = shard.link(slot);
    Outcome::Step(match ended {
        None => Step::Fail(ErrorKind::Timeout),
        Some(Ended::Response(response, grpc)) => {
            if link.first_response() {
                let max = conn.client.borrow().max_streams();
                if max < shard.plan().streams() as u32 {
                    shard.stats().http2().capped(u64::from(max));
                }
            }
            Step::Done { response, reuse: true, unsolicited: false, grpc }
        }
        Some(Ended::Reset(code)) => {
            shard.stats().http2().reset(code);
            Step::Fail(ErrorKind::ResetStream)
        }
        Some(Ended::Refused) => {
            link.close(Some(conn.generation));
            return Outcome::Refused { sent: true };
        }
        Some(Ended::Malformed) => Step::Fail(ErrorKind::H2),
        Some(Ended::Failed) => {
            link.close(Some(conn.generation));
            match conn.broke.get() {
                Some(Broke::Tls(reason)) => Step::Tls(reason),
                Some(Broke::Kind(kind)) => Step::Fail(kind),
                None => Step::Fail(ErrorKind::H2),
            }
        }
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
                Found::H2(conn) => {
                    self.h2 = Some(conn);
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
                self.failures = 0;
                match start(&shard, slot, opened.stream) {
                    Started::H2(conn) => self.h2 = Some(conn),
                    Started::H1(stream) => {
                        shard.link(slot).opened_h1();
                        shard.stats().http2().h1_conns += 1;
                        self.guard.set_open(Some(&stream));
                        self.stream = Some(stream);
                    }
                }
                return true;
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

/// HTTP/2: request `which` (a templated one as just rendered into the connection's buffer,
/// encoded into its scratch buffer here) sent and answered. Boxed: none of its state sits in
/// every connection's task, which an HTTP/1.1 run keeps small.
pub(super) fn h2_turn(
    c: &mut Conn,
    which: usize,
    capture: Option<Box<Capture>>,
) -> Pin<Box<dyn Future<Output = Turned> + '_>> {
    Box::pin(async move {
        let mut capture = capture;
        let shard = c.guard.shard.clone();
        let outcome = match shard.h2_request(which) {
            Some(req) => send_h2(c, &req.block, &req.body, &mut capture).await,
            None => {
                let mut block = std::mem::take(&mut c.scratch);
                let outcome = match h2req::encode(&c.rendered, shard.plan().target.scheme(), &mut block) {
                    Ok(head) => {
                        let rendered = std::mem::take(&mut c.rendered);
                        let o = send_h2(c, &block, &rendered[head..], &mut capture).await;
                        c.rendered = rendered;
                        o
                    }
                    Err(_) => Step::Fail(ErrorKind::H2),
                };
                c.scratch = block;
                outcome
            }
        };
        (outcome, capture)
    })
}

/// How a request ended, and what was kept of its response.
pub(super) type Turned = (Step, Option<Box<Capture>>);

/// Sends an HTTP/2 request on the slot's connection; one a GOAWAY refused goes again on a
/// new connection (counted as retried), as does one its connection took no more streams for
/// (not counted: it was never sent), up to [`MAX_RETRIES`] times in all.
async fn send_h2(c: &mut Conn, block: &[u8], body: &[u8], capture: &mut Option<Box<Capture>>) -> Step {
    let shard = c.guard.shard.clone();
    let mut tries = 0;
    loop {
        let Some(conn) = c.h2.clone() else {
            // The slot's connection could not be opened again for a retry.
            return Step::Fail(ErrorKind::Connect);
        };
        match exchange(&shard, c.guard.slot, &conn, block, body, capture).await {
            Outcome::Step(step) => return step,
            Outcome::Refused { .. } if tries == MAX_RETRIES => return Step::Fail(ErrorKind::H2),
            Outcome::Refused { sent } => {
                tries += 1;
                if sent {
                    shard.stats().http2().retried += 1;
                } else {
                    shard.link(c.guard.slot).close(Some(conn.generation));
                }
                c.h2 = None;
                // Boxed: a handshake's state would otherwise sit in every stream's request.
                Box::pin(c.ensure_link(false)).await;
            }
        }
    }
}
