//! The sidecar reverse proxy behind `engine proxy`: forwards to one upstream, injects
//! backpressure faults, records what the upstream itself took, and takes fault changes at
//! run time through an admin API.
//!
//! # Layout
//! - The strict downstream request parser and the heads sent upstream and back are the
//!   codec's (`engine_http::request`, `engine_http::forward`).
//! - [`faults`]: fault rules (match, probability, schedule, first/every, exclude, action);
//!   [`book`]: the shared [`FaultBook`] of rules in force, with their counters across shards.
//! - `inject`: a shard's copy of the rules, its limiters and token buckets, the per-request decision.
//! - `server`, `shard`, `conn`, `pool`: one executor per CPU (its loops; what it owns), one
//!   task per client connection, a keep-alive pool to the upstream per shard (`pool_h2`: its
//!   HTTP/2 connection to the upstream).
//! - `http2`: HTTP/2 clients' streams, gRPC, and the translations between the versions.
//! - `tunnel`: an upgraded connection (WebSocket) spliced to its upstream connection, both ways;
//!   `tcp`: TCP mode, where every connection is such a tunnel under connection faults.
//! - `shape`: stream faults on the bytes going one way (latency, bandwidth, slices, a data
//!   limit, a held close); `asked`: the faults a request asks for in `x-engine-fault-*` fields.
//! - [`stats`]: per-shard server-side latency histograms and counters, merged once per tick.
//! - [`flags`]: the proxy's options and the rules that make a [`ProxyConfig`] of them.
//! - `admin`, `metrics`: the admin API (JSON) and its Prometheus metrics (the `metrics` facade).
//!
//! The library neither prints nor exits; the `engine` binary does both.

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use engine_runtime::{Executor, Heartbeat, Pulse};
use glommio::Placement;

mod admin;
mod asked;
pub mod book;
mod conn;
pub mod faults;
pub mod flags;
mod http2;
mod inject;
mod iobuf;
pub mod limits;
mod metrics;
mod pool;
mod pool_h2;
mod server;
mod shape;
mod shard;
mod slot;
pub mod stats;
mod tcp;
mod tunnel;

pub use book::FaultBook;
pub use faults::{FaultError, Rule};
pub use flags::{ConfigError, ProxyFlags};
pub use stats::StatsReport;

use stats::{Published, ShardStats};

pub(crate) const RUNNING: u8 = 0;
pub(crate) const DRAINING: u8 = 1;
pub(crate) const STOPPING: u8 = 2;

/// Timeouts and limits that protect the proxy from slow or greedy clients and upstreams.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Client connections at once, over all shards; more are answered 503 and closed.
    pub max_conns: u64,
    /// A request head must arrive within this time of its first byte (slowloris).
    pub header_timeout: Duration,
    /// A kept-alive client connection with no request in progress closes after this, and so
    /// does a pooled upstream connection nobody has used for as long.
    pub idle_timeout: Duration,
    /// Longest wait for the upstream's response (its head, and each read of its body).
    pub upstream_timeout: Duration,
    pub connect_timeout: Duration,
    /// After a drain begins, in-flight requests get this long before connections are cut.
    pub drain_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_conns: 10_000,
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            upstream_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(3),
            drain_timeout: Duration::from_secs(30),
        }
    }
}

#[derive(Debug, Clone)]
pub struct ProxyConfig {
    pub listen: SocketAddr,
    pub upstream: SocketAddr,
    /// The admin API's address; `None` runs without one.
    pub admin: Option<SocketAddr>,
    /// When set, every admin endpoint but `/healthz` wants `Authorization: Bearer <token>`.
    pub admin_token: Option<String>,
    /// Rules in force at the start (the faults file).
    pub faults: Vec<Rule>,
    /// Path prefixes the server-side latency is broken down by.
    pub routes: Vec<String>,
    pub shard_cpus: Vec<usize>,
    pub limits: Limits,
    /// Each shard polls this long after its last event before it sleeps (`None`: sleeps at
    /// once). Lower latency at light load, paid for with a busy CPU per shard.
    pub busy_poll: Option<Duration>,
    /// Terminate TLS on `listen`.
    pub tls: Option<ServerTls>,
    /// Speak TLS to the upstream (`--upstream https://`).
    pub upstream_tls: Option<engine_tls::Client>,
    /// Protocols a client may upgrade to (`Upgrade`, RFC 9110 §7.8), by name, lower case:
    /// after the upstream's `101` the connection is a tunnel. Empty: upgrades are not passed.
    pub upgrades: Vec<String>,
    /// Honour `x-engine-fault-*` request fields (from loopback clients, or with the admin token).
    pub fault_headers: bool,
    /// Pass `Expect: 100-continue` to the upstream and relay its answer, instead of answering
    /// `100 Continue` at once.
    pub forward_expect: bool,
    /// At most this many requests under a fault at once across the proxy (0: no cap); the
    /// rest pass unfaulted and are counted (`faults_overflow`).
    pub max_active_faults: u64,
    /// TCP mode: each connection is passed byte for byte to a new upstream connection, under
    /// the rules' connection faults; no HTTP is spoken (TLS passes through untouched).
    pub tcp: bool,
    /// What the proxy speaks to the upstream (`--upstream-protocol`).
    pub upstream_protocol: UpstreamProtocol,
}

/// The protocol to the upstream. HTTP/2 is h2c on a plain upstream and `h2` by ALPN on an
/// https:// one.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum UpstreamProtocol {
    /// Each client's own: HTTP/1.1 requests go up as HTTP/1.1, HTTP/2 clients (h2c by prior
    /// knowledge on a plain listener) as HTTP/2.
    #[default]
    Auto,
    /// HTTP/1.1: HTTP/2 clients' streams are translated (RFC 9113 §8.2), and a TLS listener
    /// offers `h2` by ALPN too.
    Http1,
    /// HTTP/2: HTTP/1.1 clients' requests are translated (RFC 9113 §8.2), and a TLS listener
    /// offers `h2` by ALPN too.
    Http2,
}

/// TLS on the proxy's listener: the configuration in force, and the files it came from (a
/// reload reads them again; a throwaway certificate has none).
#[derive(Debug, Clone)]
pub struct ServerTls {
    pub config: Arc<engine_tls::ServerConfig>,
    pub files: Option<(PathBuf, PathBuf)>,
}

impl ServerTls {
    /// From a certificate chain and key in PEM files.
    pub fn from_files(cert: PathBuf, key: PathBuf) -> Result<Self, engine_tls::SetupError> {
        Ok(ServerTls { config: engine_tls::server_config(&cert, &key)?, files: Some((cert, key)) })
    }
}

/// The listener's TLS as the shards share it: a new configuration bumps the generation, and
/// each shard takes it at its next tick (new handshakes use it; open connections keep theirs).
pub(crate) struct TlsListener {
    current: Mutex<ServerTls>,
    generation: AtomicU64,
}

impl TlsListener {
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    pub fn config(&self) -> Arc<engine_tls::ServerConfig> {
        self.current.lock().unwrap_or_else(|e| e.into_inner()).config.clone()
    }
}

impl ProxyConfig {
    /// A proxy on `listen` in front of `upstream`, one shard on the first allowed CPU, no admin API.
    pub fn new(listen: SocketAddr, upstream: SocketAddr) -> io::Result<Self> {
        let cpu = engine_runtime::affinity::allowed_cpus()?.first().copied().unwrap_or(0);
        Ok(ProxyConfig {
            listen,
            upstream,
            admin: None,
            admin_token: None,
            faults: Vec::new(),
            routes: Vec::new(),
            shard_cpus: vec![cpu],
            limits: Limits::default(),
            busy_poll: None,
            tls: None,
            upstream_tls: None,
            upgrades: vec!["websocket".to_string()],
            fault_headers: false,
            forward_expect: false,
            max_active_faults: 0,
            tcp: false,
            upstream_protocol: UpstreamProtocol::Auto,
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error(transparent)]
    Listen(#[from] engine_runtime::listen::ListenError),
    #[error(transparent)]
    Fault(#[from] FaultError),
    #[error("{0}")]
    Config(String),
    #[error(transparent)]
    Tls(#[from] engine_tls::SetupError),
}

/// What every shard and the admin API share. Touched per tick, never per request.
pub(crate) struct Shared {
    pub upstream: SocketAddr,
    pub upstream_host: String,
    pub routes: Vec<String>,
    pub limits: Limits,
    pub book: Arc<FaultBook>,
    pub published: Mutex<Published>,
    pub state: AtomicU8,
    pub start: Instant,
    pub shards: usize,
    pub metrics: metrics::ProxyMetrics,
    /// One per shard, for `/healthz`.
    pub heartbeats: Vec<Heartbeat>,
    pub tls: Option<TlsListener>,
    pub upstream_tls: Option<engine_tls::Client>,
    pub upgrades: Vec<String>,
    pub fault_headers: bool,
    pub forward_expect: bool,
    /// The admin token: a non-loopback client's fault fields count only with it.
    pub admin_token: Option<String>,
    /// TCP mode (`--tcp`).
    pub tcp: bool,
    pub upstream_protocol: UpstreamProtocol,
}

impl Shared {
    pub fn report(&self) -> StatsReport {
        let p = self.published.lock().unwrap_or_else(|e| e.into_inner());
        let mut r = StatsReport::new(&p, &self.routes, self.start.elapsed());
        let (rules, active, overflow) = self.book.counts();
        r.fault_rules = rules;
        r.faults_active = active;
        r.faults_overflow = overflow;
        r
    }

    pub fn metrics(&self) -> String {
        let p = self.published.lock().unwrap_or_else(|e| e.into_inner());
        self.metrics.render(&p, &self.routes, &self.book.counts())
    }

    /// Why the proxy is not healthy: shards that died or stopped beating. A shard that
    /// finished its drain is not a fault.
    pub fn unhealthy(&self) -> Vec<String> {
        self.heartbeats
            .iter()
            .enumerate()
            .filter_map(|(i, h)| match h.pulse() {
                Pulse::NotStarted | Pulse::Alive | Pulse::Finished => None,
                Pulse::Died => Some(format!("shard {i} (proxy-{i}) died")),
                Pulse::Late(age) => {
                    Some(format!("shard {i} (proxy-{i}) has not beaten for {:.1} s", age.as_secs_f64()))
                }
            })
            .collect()
    }
}

/// A running proxy. Dropping it stops it at once; [`Proxy::drain`] stops it gracefully.
pub struct Proxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    handles: Vec<glommio::ExecutorJoinHandle<()>>,
    admin: Option<engine_runtime::endpoint::Endpoint>,
}

/// Asks a running proxy to drain, from anywhere (a signal handler, say).
#[derive(Clone)]
pub struct DrainHandle(Arc<Shared>);

/// Reloads the listener's certificate and key from their files (SIGHUP), from anywhere.
#[derive(Clone)]
pub struct ReloadHandle(Arc<Shared>);

impl ReloadHandle {
    /// Reads the files again. On success new handshakes use them within a tick (100 ms) and
    /// open connections are untouched; on failure the configuration in force stays.
    pub fn reload(&self) -> Result<(), ProxyError> {
        let Some(tls) = &self.0.tls else { return Err(ProxyError::Config("the proxy does not terminate TLS".into())) };
        let mut current = tls.current.lock().unwrap_or_else(|e| e.into_inner());
        let Some((cert, key)) = current.files.clone() else {
            return Err(ProxyError::Config("the certificate was not read from files".into()));
        };
        *current = ServerTls::from_files(cert, key)?;
        tls.generation.fetch_add(1, Ordering::AcqRel);
        Ok(())
    }
}

impl DrainHandle {
    /// The first call starts a graceful drain; a second one cuts connections at once.
    pub fn drain(&self) {
        let _ = self.0.state.compare_exchange(RUNNING, DRAINING, Ordering::SeqCst, Ordering::SeqCst).or_else(|_| {
            self.0.state.store(STOPPING, Ordering::SeqCst);
            Ok::<u8, u8>(STOPPING)
        });
    }

    pub fn is_draining(&self) -> bool {
        self.0.state.load(Ordering::SeqCst) != RUNNING
    }
}

impl Proxy {
    /// Binds every shard's listener (and the admin API) and returns once all accept.
    pub fn start(cfg: ProxyConfig) -> Result<Proxy, ProxyError> {
        if cfg.shard_cpus.is_empty() {
            return Err(ProxyError::Config("at least one shard is needed".into()));
        }
        let shards = cfg.shard_cpus.len();
        let book = Arc::new(FaultBook::new(shards, cfg.max_active_faults, cfg.tcp));
        for rule in cfg.faults {
            book.add(rule)?;
        }
        let shared = Arc::new(Shared {
            upstream: cfg.upstream,
            upstream_host: cfg.upstream.to_string(),
            routes: cfg.routes,
            limits: cfg.limits,
            book,
            published: Mutex::new(Published::new(shards)),
            state: AtomicU8::new(RUNNING),
            start: Instant::now(),
            shards,
            metrics: metrics::ProxyMetrics::new(),
            heartbeats: (0..shards).map(|_| Heartbeat::new()).collect(),
            tls: cfg.tls.map(|t| TlsListener { current: Mutex::new(t), generation: AtomicU64::new(0) }),
            upstream_tls: cfg.upstream_tls,
            upgrades: cfg.upgrades,
            fault_headers: cfg.fault_headers,
            forward_expect: cfg.forward_expect,
            admin_token: cfg.admin_token.clone(),
            upstream_protocol: cfg.upstream_protocol,
            tcp: cfg.tcp,
        });
        shared.published.lock().unwrap_or_else(|e| e.into_inner()).totals = ShardStats::new(shared.routes.len());

        // Admin first: a bad admin address fails before any client port is taken.
        let admin = match cfg.admin {
            Some(addr) => Some(admin::start(addr, cfg.admin_token, shared.clone())?),
            None => None,
        };
        // Each shard takes its share of the connection limit.
        let max_per_shard = shared.limits.max_conns.div_ceil(shards as u64).max(1);
        let mut addr = cfg.listen;
        let mut handles = Vec::new();
        for (i, &cpu) in cfg.shard_cpus.iter().enumerate() {
            // The first shard binds (port 0 picks a port); the others join its port.
            let sh = shared.clone();
            let bind =
                if i == 0 { engine_runtime::listen::Bind::Own(addr) } else { engine_runtime::listen::Bind::Join(addr) };
            let executor = Executor::new(format!("proxy-{i}"), Placement::Fixed(cpu))
                .busy_poll(cfg.busy_poll)
                .heartbeat(shared.heartbeats[i].clone());
            let started =
                engine_runtime::listen::spawn_bound(executor, bind, move |l| server::run(i, sh, l, max_per_shard));
            let (bound, handle) = started.inspect_err(|_| shared.state.store(STOPPING, Ordering::SeqCst))?;
            addr = bound;
            handles.push(handle);
        }
        Ok(Proxy { addr, shared, handles, admin })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin.as_ref().map(|a| a.local_addr())
    }

    /// The rules in force; changes reach every shard within one tick (100 ms).
    pub fn faults(&self) -> &FaultBook {
        &self.shared.book
    }

    /// The published statistics (shards publish every 100 ms; see `as_of_s`).
    pub fn stats(&self) -> StatsReport {
        self.shared.report()
    }

    /// The Prometheus text of `GET /metrics`.
    pub fn metrics(&self) -> String {
        self.shared.metrics()
    }

    pub fn drain_handle(&self) -> DrainHandle {
        DrainHandle(self.shared.clone())
    }

    pub fn reload_handle(&self) -> ReloadHandle {
        ReloadHandle(self.shared.clone())
    }

    /// Blocks until the shards have finished: after a drain was asked for, when in-flight
    /// requests are done (or the drain timeout cut them).
    pub fn wait(mut self) -> StatsReport {
        self.join();
        self.shared.report()
    }

    /// Stops accepting, finishes in-flight requests, and returns the final statistics.
    pub fn drain(self) -> StatsReport {
        self.drain_handle().drain();
        self.wait()
    }

    fn join(&mut self) {
        for h in self.handles.drain(..) {
            let _ = h.join();
        }
        if let Some(a) = self.admin.take() {
            a.stop();
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.shared.state.store(STOPPING, Ordering::SeqCst);
        self.join();
    }
}
