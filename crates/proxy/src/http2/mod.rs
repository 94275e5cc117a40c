//! HTTP/2 through the proxy: clients that speak it (h2c by prior knowledge on a plain
//! listener, `h2` by ALPN over TLS) are served by the engine's own server codec
//! (`engine_http::h2::server`, driven here by one task a connection), and each of their
//! streams is one exchange forwarded to the upstream (the shard's HTTP/2 pool, or an
//! HTTP/1.1 connection), under the same fault rules as HTTP/1.1 requests. gRPC rides on it:
//! calls are recognised by their `content-type`, matched by method, answered as gRPC does
//! when a rule aborts them, and counted by `grpc-status`.
//!
//! The protocol's own attacks are bounded by the codec's limits, set below: streams at once
//! per connection, header list size (CONTINUATION floods end at it), streams the client resets
//! before they are taken, unread control frames, and bytes held for sending; and here, resets
//! of streams the proxy works on, by the second (rapid reset, CVE-2023-44487: the connection
//! gets GOAWAY ENHANCE_YOUR_CALM).

mod down;
mod exchange;
pub(crate) use exchange::handshaken;
mod pipe;
pub(crate) use pipe::{send_shaped, Broken};
mod to_h1;

use std::cell::{Cell, RefCell};
use std::future::{poll_fn, Future};
use std::rc::Rc;
use std::task::Poll;
use std::time::Duration;

use engine_http::h2::frame::ENHANCE_YOUR_CALM;
use engine_http::h2::server::{Config, Server};
use engine_tls::{ServerConnection, Stream};

use crate::shard::Shard;
use crate::slot::Slot;

/// Streams a client may have open at once on one connection.
const MAX_STREAMS: u32 = 256;
/// The largest header list a client may send (decoded): a CONTINUATION flood ends here.
const MAX_HEADER_LIST: u32 = 64 * 1024;
/// Streams the client reset before the proxy took them, with none answered between; past
/// it, GOAWAY.
const MAX_EARLY_RESETS: u32 = 64;
/// Streams the proxy had to reset because of the client's errors, over the connection's life.
const MAX_ERROR_RESETS: u32 = 1024;
/// Response bytes buffered per stream beyond what the client's window takes.
const MAX_SEND_BUFFER: usize = 64 * 1024;
/// How often an open connection looks at the clock (idle timeout, drain).
const LOOK: Duration = Duration::from_millis(500);
/// Streams a client may reset while the proxy works on them, in a second: past it the client
/// is taken for a rapid-reset attack (CVE-2023-44487; each reset stream cost the upstream a
/// request) and its connection ends with GOAWAY ENHANCE_YOUR_CALM. Browsers and gRPC clients
/// cancelling on deadlines stay far below.
const MAX_RESETS_PER_S: u64 = 200;

thread_local! {
    /// Where a driver's read lands: the shard's, not the connection's. A read fills it
    /// synchronously (glommio's `poll_read` receives at once or waits for readiness, never
    /// into a buffer left behind), and the driver feeds it to its codec before it awaits
    /// again, so one buffer serves every connection of the shard: an idle HTTP/2 connection
    /// holds no read buffer, as an idle HTTP/1.1 one holds none.
    static READ: RefCell<Box<[u8]>> = RefCell::new(vec![0u8; 16 << 10].into_boxed_slice());
}

/// What woke a connection's driver.
enum Turn {
    /// Bytes from the client in [`READ`] (0: it closed), or a read error.
    Read(std::io::Result<usize>),
    /// Output could not be written (the client is gone).
    WriteFailed,
    /// Time to look at the clock.
    Look,
}

/// Serves one client's HTTP/2 connection until it closes, idles past the idle timeout, or
/// a drain ends it (GOAWAY, then its streams finish). `read`: bytes already read from it
/// (the preface, as far as it was sniffed).
/// `peer`: the client's address as text, and whether it is on this host.
pub(crate) async fn serve(
    shard: Rc<Shard>,
    mut io: Stream<ServerConnection>,
    read: Vec<u8>,
    (peer, loopback): (Rc<str>, bool),
    slot: Rc<Slot>,
) {
    let cfg = Config {
        max_streams: MAX_STREAMS,
        max_header_list: MAX_HEADER_LIST,
        max_send_buffer: MAX_SEND_BUFFER,
        max_early_resets: MAX_EARLY_RESETS,
        max_error_resets: MAX_ERROR_RESETS,
        ..Config::default()
    };
    let conn = Rc::new(RefCell::new(Server::new(cfg)));
    let client = Rc::new(exchange::Client { active: Cell::new(0), resets: Cell::new(0), slot, peer, loopback });
    let limits = &shard.shared.limits;
    let started = shard.now();
    let mut idle_since = started;
    let mut closing = false;
    // Resets counted at the start of the current one-second window (the shard's tick clock:
    // no clock read per stream).
    let mut window = (started, 0u64);
    // One timer for the connection's life, re-armed when it fires: none made per stream.
    let mut look = glommio::timer::Timer::new(LOOK);
    if conn.borrow_mut().feed(&read).is_ok() {
        take_streams(&shard, &conn, &client);
    }
    loop {
        if shard.now().saturating_duration_since(window.0) >= Duration::from_secs(1) {
            window = (shard.now(), client.resets.get());
        }
        if client.resets.get() - window.1 > MAX_RESETS_PER_S {
            shard.stats.borrow_mut().h2_abusers += 1;
            conn.borrow_mut().abrupt_shutdown(ENHANCE_YOUR_CALM);
        }
        if conn.borrow().finished() {
            break;
        }
        match next_turn(&conn, &mut io, &mut look).await {
            Turn::Read(Ok(0) | Err(_)) | Turn::WriteFailed => break,
            Turn::Read(Ok(n)) => {
                let fed = READ.with_borrow(|buf| conn.borrow_mut().feed(&buf[..n]));
                take_streams(&shard, &conn, &client);
                if fed.is_err() {
                    break;
                }
            }
            Turn::Look => {
                look.reset(LOOK);
                if !conn.borrow().started() && shard.now().saturating_duration_since(started) >= limits.header_timeout {
                    shard.stats.borrow_mut().rejected(408);
                    return;
                }
                if client.active.get() > 0 {
                    idle_since = shard.now();
                } else if !closing && shard.now().saturating_duration_since(idle_since) >= limits.idle_timeout {
                    closing = true;
                    conn.borrow_mut().graceful_shutdown();
                }
                if !closing && shard.draining() {
                    closing = true;
                    conn.borrow_mut().graceful_shutdown();
                }
            }
        }
    }
    // What is queued (a GOAWAY, the last answers) goes out before the connection closes.
    let _ = engine_runtime::within(LOOK, flush(&conn, &mut io)).await;
    conn.borrow_mut().broke();
}

/// Takes the streams the client opened and starts an exchange for each.
fn take_streams(shard: &Rc<Shard>, conn: &down::Conn, client: &Rc<exchange::Client>) {
    loop {
        let Some((id, head, end)) = conn.borrow_mut().accept() else { return };
        let streams = exchange::Streams::open(client);
        let down = down::Down::new(conn.clone(), id);
        glommio::spawn_local(exchange::exchange(shard.clone(), down, head, end, streams)).detach();
    }
}

/// Writes what the codec has queued and waits for the next thing to do: bytes from the
/// client, more output, or the look timer.
async fn next_turn(conn: &down::Conn, io: &mut Stream<ServerConnection>, look: &mut glommio::timer::Timer) -> Turn {
    poll_fn(|cx| loop {
        let mut c = conn.borrow_mut();
        let mut wrote = false;
        while !c.output().is_empty() {
            match io.poll_write(cx, c.output()) {
                Poll::Ready(Ok(n)) if n > 0 => {
                    c.wrote(n);
                    wrote = true;
                }
                Poll::Ready(_) => return Poll::Ready(Turn::WriteFailed),
                Poll::Pending => break,
            }
        }
        // TLS: what the session has queued, written or not by this poll (a plain socket
        // queues nothing).
        if c.output().is_empty() && matches!(io.poll_flush(cx), Poll::Ready(Err(_))) {
            return Poll::Ready(Turn::WriteFailed);
        }
        // Streams' tasks that queue output wake this one.
        c.set_driver(cx.waker());
        drop(c);
        if let Poll::Ready(r) = READ.with_borrow_mut(|buf| io.poll_read(cx, buf)) {
            return Poll::Ready(Turn::Read(r));
        }
        if std::pin::Pin::new(&mut *look).poll(cx).is_ready() {
            return Poll::Ready(Turn::Look);
        }
        if !wrote || !conn.borrow().output().is_empty() {
            return Poll::Pending;
        }
    })
    .await
}

/// Writes all the codec has queued.
async fn flush(conn: &down::Conn, io: &mut Stream<ServerConnection>) {
    poll_fn(|cx| loop {
        let mut c = conn.borrow_mut();
        if c.output().is_empty() {
            return io.poll_flush(cx).map(|_| ());
        }
        match io.poll_write(cx, c.output()) {
            Poll::Ready(Ok(n)) if n > 0 => c.wrote(n),
            Poll::Ready(_) => return Poll::Ready(()),
            Poll::Pending => return Poll::Pending,
        }
    })
    .await
}
