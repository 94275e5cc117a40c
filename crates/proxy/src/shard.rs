//! What one proxy shard owns and its connections share: its upstream pool, fault state,
//! statistics and the registry of open client connections. The shard's loops (accept, tick,
//! drain) are [`crate::server`]'s.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::inject::ShardFaults;
use crate::pool::Pool;
use crate::slot::Slot;
use crate::stats::{Gauges, ShardStats};
use crate::Shared;

/// How often a shard looks for fault changes; "changes apply within one interval".
pub(crate) const TICK: Duration = Duration::from_millis(100);

pub(crate) struct Shard {
    pub index: usize,
    pub shared: Arc<Shared>,
    pub stats: RefCell<ShardStats>,
    pub faults: RefCell<ShardFaults>,
    pub pool: Pool,
    /// The HTTP/2 connection to the upstream, for HTTP/2 clients' streams.
    pub h2_upstream: crate::pool_h2::H2Upstream,
    /// The listener's TLS configuration as of the last tick, and its generation.
    tls: RefCell<Option<(u64, Arc<engine_tls::ServerConfig>)>>,
    /// Open client connections: their sockets, waits and whether a request is in progress,
    /// so the tick can time out waits and a drain can close idle connections at once.
    open: RefCell<HashMap<u64, Rc<Slot>>>,
    /// The time at the last tick: deadlines need no clock read of their own.
    now: Cell<Instant>,
    next_id: Cell<u64>,
    draining: Cell<bool>,
    /// Requests and connections the shard has published so far (its `stats` start again at
    /// each publication).
    published_work: Cell<u64>,
}

impl Shard {
    pub fn new(index: usize, shared: Arc<Shared>) -> Rc<Shard> {
        Rc::new(Shard {
            index,
            stats: RefCell::new(ShardStats::new(shared.routes.len())),
            faults: RefCell::new(ShardFaults::new(shared.book.clone(), shared.start, index, shared.shards)),
            pool: Pool::new(
                shared.upstream,
                shared.upstream_tls.as_ref().map(engine_tls::Client::for_shard),
                shared.limits.connect_timeout,
                shared.limits.idle_timeout,
            ),
            h2_upstream: crate::pool_h2::H2Upstream::new(
                shared.upstream,
                shared.upstream_tls.as_ref().map(engine_tls::Client::for_shard),
                shared.limits.connect_timeout,
            ),
            tls: RefCell::new(shared.tls.as_ref().map(|t| (t.generation(), listener_config(&shared, t.config())))),
            shared,
            open: RefCell::new(HashMap::new()),
            next_id: Cell::new(0),
            draining: Cell::new(false),
            now: Cell::new(Instant::now()),
            published_work: Cell::new(0),
        })
    }

    /// Requests and connections arrived since the shard started: a count that only grows.
    pub fn work(&self) -> u64 {
        let stats = self.stats.borrow();
        self.published_work.get() + stats.requests + stats.conns_accepted
    }

    pub fn draining(&self) -> bool {
        self.draining.get()
    }

    /// A deadline `timeout` from now, never early (see [`crate::slot`]).
    pub fn deadline(&self, timeout: Duration) -> Instant {
        self.now.get() + timeout + TICK
    }

    /// The time at the last tick.
    pub fn now(&self) -> Instant {
        self.now.get()
    }

    /// Client connections open now.
    pub fn open_count(&self) -> usize {
        self.open.borrow().len()
    }

    /// Registers a client connection; it stays registered while the guard lives.
    pub fn register(&self, slot: Rc<Slot>) -> u64 {
        let id = self.next_id.get();
        self.next_id.set(id + 1);
        self.open.borrow_mut().insert(id, slot);
        id
    }

    pub fn unregister(&self, id: u64) {
        self.open.borrow_mut().remove(&id);
    }

    /// From now on, connections close after their response and the pool is emptied.
    pub fn start_draining(&self) {
        self.draining.set(true);
        self.pool.clear();
        self.h2_upstream.expire(self.now.get(), Duration::ZERO);
    }

    /// Shuts down the connections that wait for a request (`busy_too`: all of them), so their
    /// tasks end. Registered sockets are open: a connection leaves the registry before its
    /// socket is dropped.
    pub fn close_connections(&self, busy_too: bool) {
        for slot in self.open.borrow().values() {
            if busy_too || !slot.busy.get() {
                slot.shutdown();
            }
        }
    }

    /// One tick: time out waits, close upstream connections idle too long (both pools), take
    /// fault changes.
    pub fn tick(&self) {
        self.sweep();
        self.pool.expire(self.now.get());
        self.h2_upstream.expire(self.now.get(), self.shared.limits.idle_timeout);
        self.faults.borrow_mut().refresh();
        self.refresh_tls();
    }

    /// Takes a reloaded certificate (SIGHUP) for the handshakes from now on.
    fn refresh_tls(&self) {
        let (Some(shared), Some((generation, config))) = (&self.shared.tls, &mut *self.tls.borrow_mut()) else {
            return;
        };
        let now = shared.generation();
        if now != *generation {
            *config = listener_config(&self.shared, shared.config());
            *generation = now;
        }
    }

    /// The listener's TLS configuration, when the proxy terminates TLS.
    pub fn tls_config(&self) -> Option<Arc<engine_tls::ServerConfig>> {
        self.tls.borrow().as_ref().map(|(_, c)| c.clone())
    }

    /// Times out every wait past its deadline.
    fn sweep(&self) {
        let now = Instant::now();
        self.now.set(now);
        for slot in self.open.borrow().values() {
            slot.sweep(now);
        }
    }

    /// Adds the shard's statistics to the published figures and starts afresh.
    pub fn publish(&self) {
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
        p.as_of[self.index] = self.shared.start.elapsed();
        drop(p);
        self.published_work.set(self.published_work.get() + stats.requests + stats.conns_accepted);
        stats.reset();
    }
}

/// The listener's TLS configuration as the shard uses it: offering `h2` by ALPN when the
/// upstream protocol is given (under `auto` a TLS client is offered HTTP/1.1 only: an h2
/// client would be passed as HTTP/2 to an upstream that may not speak it).
fn listener_config(shared: &crate::Shared, config: Arc<engine_tls::ServerConfig>) -> Arc<engine_tls::ServerConfig> {
    if shared.upstream_protocol != crate::UpstreamProtocol::Auto {
        engine_tls::offering_h2(&config)
    } else {
        config
    }
}
