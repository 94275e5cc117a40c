//! One proxy shard: a glommio executor pinned to a CPU with its own listener (SO_REUSEPORT),
//! upstream pool, fault state and statistics. A tick pulls fault changes and publishes the
//! statistics; a drain stops accepting, lets in-flight requests finish and closes idle
//! connections.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::os::fd::AsRawFd;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use engine_runtime::fd::{shutdown, How};
use futures_lite::io::AsyncWriteExt;
use glommio::net::TcpListener;

use crate::inject::ShardFaults;
use crate::pool::Pool;
use crate::slot::Slot;
use crate::stats::{Gauges, ShardStats};
use crate::{Shared, RUNNING};

/// How often a shard looks for fault changes; "changes apply within one interval".
pub(crate) const TICK: Duration = Duration::from_millis(100);
/// Statistics are published every this many ticks.
const PUBLISH_EVERY: u32 = 5;

pub(crate) struct Shard {
    pub index: usize,
    pub shared: Arc<Shared>,
    pub stats: RefCell<ShardStats>,
    pub faults: RefCell<ShardFaults>,
    pub pool: Pool,
    /// Open client connections: their sockets, waits and whether a request is in progress,
    /// so the tick can time out waits and a drain can close idle connections at once.
    open: RefCell<HashMap<u64, Rc<Slot>>>,
    /// The time at the last tick: deadlines need no clock read of their own.
    now: Cell<Instant>,
    next_id: Cell<u64>,
    draining: Cell<bool>,
}

impl Shard {
    pub fn draining(&self) -> bool {
        self.draining.get()
    }

    /// A deadline `timeout` from now, never early (see [`crate::slot`]).
    pub fn deadline(&self, timeout: Duration) -> Instant {
        self.now.get() + timeout + TICK
    }

    /// Times out every wait past its deadline.
    fn sweep(&self) {
        let now = Instant::now();
        self.now.set(now);
        for slot in self.open.borrow().values() {
            slot.sweep(now);
        }
    }

    fn publish(&self) {
        let (in_use, waiting) = self.faults.borrow().occupancy();
        let gauges = Gauges {
            connections_open: self.open.borrow().len() as u64,
            concurrency_in_use: in_use,
            queue_depth: waiting,
        };
        let mut stats = self.stats.borrow_mut();
        let mut p = self.shared.published.lock().unwrap_or_else(|e| e.into_inner());
        p.totals.add(&stats);
        p.gauges[self.index] = gauges;
        drop(p);
        stats.reset();
    }
}

/// Removes a connection from the registry however its task ends.
struct Registered<'a>(&'a Shard, u64);

impl Drop for Registered<'_> {
    fn drop(&mut self) {
        self.0.open.borrow_mut().remove(&self.1);
    }
}

pub(crate) async fn run(index: usize, shared: Arc<Shared>, listener: TcpListener, max_conns: u64) {
    let shard = Rc::new(Shard {
        index,
        stats: RefCell::new(ShardStats::new(shared.routes.len())),
        faults: RefCell::new(ShardFaults::new(shared.book.clone(), shared.start, index, shared.shards)),
        pool: Pool::new(shared.upstream, shared.limits.connect_timeout),
        shared,
        open: RefCell::new(HashMap::new()),
        next_id: Cell::new(0),
        draining: Cell::new(false),
        now: Cell::new(Instant::now()),
    });

    let accept = async {
        loop {
            let stream = match listener.accept().await {
                Ok(s) => s,
                // Out of descriptors, or a connection reset while queued: keep accepting.
                Err(_) => {
                    glommio::timer::sleep(Duration::from_millis(5)).await;
                    continue;
                }
            };
            shard.stats.borrow_mut().conns_accepted += 1;
            if shard.open.borrow().len() as u64 >= max_conns {
                shard.stats.borrow_mut().conns_refused += 1;
                glommio::spawn_local(async move {
                    let mut s = stream;
                    let _ = s
                        .write_all(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nRetry-After: 1\r\nConnection: close\r\n\r\n")
                        .await;
                })
                .detach();
                continue;
            }
            let peer = match stream.peer_addr() {
                Ok(a) => a.ip(),
                Err(_) => continue,
            };
            let id = shard.next_id.get();
            shard.next_id.set(id + 1);
            let slot = Rc::new(Slot::new(stream.as_raw_fd()));
            shard.open.borrow_mut().insert(id, slot.clone());
            let s = shard.clone();
            glommio::spawn_local(async move {
                let _registered = Registered(&s, id);
                crate::conn::serve(s.clone(), stream, peer, slot).await;
            })
            .detach();
        }
    };
    let tick = async {
        let mut n = 0u32;
        while shard.shared.state.load(Ordering::Relaxed) == RUNNING {
            glommio::timer::sleep(engine_runtime::tick(TICK)).await;
            shard.sweep();
            shard.faults.borrow_mut().refresh();
            n += 1;
            if n % PUBLISH_EVERY == 0 {
                shard.publish();
            }
        }
    };
    futures_lite::future::or(accept, tick).await;
    drop(listener);

    // Drain: idle connections close now, busy ones after their response (each checks
    // `draining` before reading another request), all of them by the drain deadline.
    shard.draining.set(true);
    shard.pool.clear();
    let deadline = Instant::now() + shard.shared.limits.drain_timeout;
    let mut hard_since: Option<Instant> = None;
    loop {
        shard.sweep();
        for slot in shard.open.borrow().values() {
            if !slot.busy.get() {
                // The fd belongs to a connection still registered, hence still open.
                shutdown(slot.fd, How::Both);
            }
        }
        if Instant::now() >= deadline || shard.shared.state.load(Ordering::Relaxed) > crate::DRAINING {
            hard_since.get_or_insert_with(Instant::now);
            for slot in shard.open.borrow().values() {
                shutdown(slot.fd, How::Both);
            }
        }
        // After a hard stop, connections get a second to notice their closed sockets.
        if shard.open.borrow().is_empty() || hard_since.is_some_and(|t| t.elapsed() >= Duration::from_secs(1)) {
            break;
        }
        glommio::timer::sleep(Duration::from_millis(20)).await;
        shard.faults.borrow_mut().refresh();
    }
    shard.publish();
}
