//! One proxy shard's loops: accept client connections on its own listener (SO_REUSEPORT),
//! tick (time out waits, take fault changes, publish statistics), and on a drain stop
//! accepting, let in-flight requests finish and close idle connections.

use std::os::fd::AsRawFd;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use engine_tls::{ServerConnection, Stream, TlsStream};
use futures_lite::io::AsyncWriteExt;
use glommio::net::{TcpListener, TcpStream};

use crate::shard::{Shard, TICK};
use crate::slot::Slot;
use crate::{Shared, DRAINING, RUNNING};

/// Statistics are published every this many ticks: each tick, so that `/stats` read right
/// after traffic stops is at most 100 ms behind (a lock and a histogram merge per shard per
/// tick; never per request).
const PUBLISH_EVERY: u32 = 1;

/// Removes a connection from the registry however its task ends.
struct Registered<'a>(&'a Shard, u64);

impl Drop for Registered<'_> {
    fn drop(&mut self) {
        self.0.unregister(self.1);
    }
}

pub(crate) async fn run(index: usize, shared: Arc<Shared>, listener: TcpListener, max_conns: u64) {
    let shard = Shard::new(index, shared);
    let accept = async {
        loop {
            match listener.accept().await {
                Ok(stream) => admit(&shard, stream, max_conns),
                // Out of descriptors, or a connection reset while queued: keep accepting.
                Err(_) => glommio::timer::sleep(Duration::from_millis(5)).await,
            }
        }
    };
    let tick = async {
        let mut n = 0u32;
        while shard.shared.state.load(Ordering::Relaxed) == RUNNING {
            glommio::timer::sleep(engine_runtime::tick(TICK)).await;
            shard.tick();
            n += 1;
            if n.is_multiple_of(PUBLISH_EVERY) {
                shard.publish();
            }
        }
    };
    // Requests and connections arriving keep the CPU's tick running: each wake-up then skips
    // the tick's restart (engine_runtime::idle).
    let keep = engine_runtime::keep_tick(|| shard.work());
    futures_lite::future::or(accept, futures_lite::future::or(tick, keep)).await;
    drop(listener);
    drain(&shard).await;
    shard.publish();
}

/// A new client connection: served by a task of its own, or answered 503 when the shard
/// holds its share of --max-conns already.
fn admit(shard: &Rc<Shard>, stream: TcpStream, max_conns: u64) {
    shard.stats.borrow_mut().conns_accepted += 1;
    let tls = shard.tls_config();
    if shard.open_count() as u64 >= max_conns {
        shard.stats.borrow_mut().conns_refused += 1;
        if tls.is_some() {
            // A TLS client cannot read a plain 503: the close is the answer.
            return;
        }
        if shard.shared.tcp {
            // TCP mode speaks no HTTP: the close is the answer.
            return;
        }
        glommio::spawn_local(async move {
            let mut s = stream;
            let _ = s
                .write_all(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nRetry-After: 1\r\nConnection: close\r\n\r\n")
                .await;
        })
        .detach();
        return;
    }
    let Ok(peer) = stream.peer_addr().map(|a| a.ip()) else { return };
    let slot = Rc::new(Slot::new(stream.as_raw_fd()));
    let id = shard.register(slot.clone());
    let s = shard.clone();
    glommio::spawn_local(async move {
        let _registered = Registered(&s, id);
        let _ = stream.set_nodelay(true);
        if s.shared.tcp {
            crate::tcp::serve(&s, Stream::Tcp(stream), &slot).await;
            return;
        }
        let down = match tls {
            None => Stream::Tcp(stream),
            Some(config) => match handshake(&s, stream, &config).await {
                Some(t) => Stream::Tls(Box::new(t)),
                None => return,
            },
        };
        crate::conn::serve(s.clone(), down, peer, slot).await;
    })
    .detach();
}

/// A client's TLS handshake, within the header timeout (a client that stalls it is one more
/// slowloris); counted in the shard's figures either way.
async fn handshake(
    shard: &Shard,
    tcp: TcpStream,
    config: &Arc<engine_tls::ServerConfig>,
) -> Option<TlsStream<ServerConnection>> {
    let conn = match engine_tls::accept(config) {
        Ok(c) => c,
        Err(e) => {
            shard.stats.borrow_mut().tls_downstream.failed(&engine_tls::Failure::from_rustls(e));
            return None;
        }
    };
    // Boxed: the handshake's state is kilobytes; the connection's future stays small.
    let done = Box::pin(engine_tls::handshake_within(tcp, conn, shard.shared.limits.header_timeout)).await;
    let mut stats = shard.stats.borrow_mut();
    match done {
        Ok(t) => {
            stats.tls_downstream.handshake(None, t.negotiated().resumed);
            Some(t)
        }
        Err(e) => {
            stats.tls_downstream.failed(&e);
            None
        }
    }
}

/// Idle connections close now, busy ones after their response (each checks `draining`
/// before reading another request), all of them by the drain deadline.
async fn drain(shard: &Shard) {
    shard.start_draining();
    let deadline = Instant::now() + shard.shared.limits.drain_timeout;
    let mut hard_since: Option<Instant> = None;
    loop {
        shard.tick();
        shard.close_connections(false);
        if Instant::now() >= deadline || shard.shared.state.load(Ordering::Relaxed) > DRAINING {
            hard_since.get_or_insert_with(Instant::now);
            shard.close_connections(true);
        }
        // After a hard stop, connections get a second to notice their closed sockets.
        if shard.open_count() == 0 || hard_since.is_some_and(|t| t.elapsed() >= Duration::from_secs(1)) {
            break;
        }
        glommio::timer::sleep(Duration::from_millis(20)).await;
    }
}
