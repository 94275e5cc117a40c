//! HTTP/2 through the proxy: clients that speak it (h2c by prior knowledge on a plain
//! listener, `h2` by ALPN over TLS) are served by `h2` (hyperium's, through the transport's
//! tokio io traits; no tokio runtime), and each of their streams is one exchange forwarded on
//! the shard's HTTP/2 connection to the upstream ([`upstream`]), under the same fault rules as
//! HTTP/1.1 requests. gRPC rides on it: calls are recognised by their `content-type`, matched
//! by method, answered as gRPC does when a rule aborts them, and counted by `grpc-status`.
//!
//! The protocol's own attacks are bounded by `h2`'s limits, set below: streams at once per
//! connection, header list size (CONTINUATION floods end at it), resets a client may cause
//! (rapid reset, CVE-2023-44487: past the limit the connection gets GOAWAY
//! ENHANCE_YOUR_CALM), and bytes buffered for sending.

mod exchange;
pub(crate) use exchange::handshaken;
mod pipe;
pub(crate) use pipe::{send_shaped, Broken};
mod to_h1;

use std::cell::Cell;
use std::rc::Rc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};

use crate::shard::Shard;
use crate::slot::Slot;

/// Streams a client may have open at once on one connection.
const MAX_STREAMS: u32 = 256;
/// The largest header list a client may send (decoded): a CONTINUATION flood ends here.
const MAX_HEADER_LIST: u32 = 64 * 1024;
/// Streams the client reset before the proxy accepted them, at once; past it, GOAWAY.
const MAX_PENDING_RESETS: usize = 64;
/// Streams the proxy had to reset because of the client's errors, over the connection's life.
const MAX_ERROR_RESETS: usize = 1024;
/// Response bytes buffered per stream beyond what the client's window takes.
const MAX_SEND_BUFFER: usize = 64 * 1024;
/// How often an open connection looks at the clock (idle timeout, drain).
const LOOK: Duration = Duration::from_millis(500);
/// Streams a client may reset while the proxy works on them, in a second: past it the client
/// is taken for a rapid-reset attack (CVE-2023-44487; each reset stream cost the upstream a
/// request) and its connection ends with GOAWAY ENHANCE_YOUR_CALM. Browsers and gRPC clients
/// cancelling on deadlines stay far below.
const MAX_RESETS_PER_S: u64 = 200;

/// Serves one client's HTTP/2 connection until it closes, idles past the idle timeout, or
/// a drain ends it (GOAWAY, then its streams finish).
/// `peer`: the client's address as text, and whether it is on this host.
pub(crate) async fn serve<T: AsyncRead + AsyncWrite + Unpin>(
    shard: Rc<Shard>,
    io: T,
    (peer, loopback): (Rc<str>, bool),
    slot: Rc<Slot>,
) {
    let mut builder = h2::server::Builder::new();
    builder
        .max_concurrent_streams(MAX_STREAMS)
        .max_header_list_size(MAX_HEADER_LIST)
        .max_pending_accept_reset_streams(MAX_PENDING_RESETS)
        .max_local_error_reset_streams(Some(MAX_ERROR_RESETS))
        .max_send_buffer_size(MAX_SEND_BUFFER);
    let limits = &shard.shared.limits;
    let Some(Ok(mut conn)) = engine_runtime::within(limits.header_timeout, builder.handshake(io)).await else {
        shard.stats.borrow_mut().rejected(408);
        return;
    };
    let client = Rc::new(exchange::Client { active: Cell::new(0), resets: Cell::new(0), slot, peer, loopback });
    let mut idle_since = shard.now();
    let mut closing = false;
    // Resets counted at the start of the current one-second window (the shard's tick clock:
    // no clock read per stream).
    let mut window = (shard.now(), 0u64);
    // One timer for the connection's life, re-armed when it fires: none made per stream.
    let mut look = glommio::timer::Timer::new(LOOK);
    loop {
        if shard.now().saturating_duration_since(window.0) >= Duration::from_secs(1) {
            window = (shard.now(), client.resets.get());
        }
        if client.resets.get() - window.1 > MAX_RESETS_PER_S {
            shard.stats.borrow_mut().h2_abusers += 1;
            conn.abrupt_shutdown(h2::Reason::ENHANCE_YOUR_CALM);
            // What is queued (the GOAWAY) is sent; the streams end with the connection.
            engine_runtime::within(LOOK, async { while conn.accept().await.is_some() {} }).await;
            break;
        }
        let looked = async {
            (&mut look).await;
            None
        };
        match futures_lite::future::or(async { Some(conn.accept().await) }, looked).await {
            Some(Some(Ok((request, respond)))) => {
                let streams = exchange::Streams::open(&client);
                glommio::spawn_local(exchange::exchange(shard.clone(), request, respond, streams)).detach();
            }
            // The connection ended (cleanly, or by the client's error).
            Some(_) => break,
            None => {
                look.reset(LOOK);
                if client.active.get() > 0 {
                    idle_since = shard.now();
                } else if !closing && shard.now().saturating_duration_since(idle_since) >= limits.idle_timeout {
                    closing = true;
                    conn.graceful_shutdown();
                }
                if !closing && shard.draining() {
                    closing = true;
                    conn.graceful_shutdown();
                }
            }
        }
    }
}
