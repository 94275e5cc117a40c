//! `engine proxy`: the sidecar reverse proxy until SIGTERM or Ctrl-C, then a graceful drain.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::mpsc;
use std::time::Duration;

use anyhow::anyhow;
use clap::Args;
use engine_proxy::{Proxy, ProxyConfig, StatsReport};

use crate::exit;

#[derive(Args, Debug)]
#[command(
    about = "Run a reverse proxy that injects backpressure faults and records server-side latency",
    long_about = "Run a reverse proxy in front of one upstream (a service in staging, say). Traffic passes \
        through unchanged unless a fault rule matches: delays, aborts (503 with Retry-After, say), resets, \
        throttling, hangs, a concurrency limit with a queue, a rate limit. Rules come from --faults and change \
        at run time through the admin API. The proxy records what the upstream itself took (time to first byte \
        and total, by route and status class): GET /stats on the admin address, or /metrics for Prometheus.\n\n\
        SIGTERM or Ctrl-C drains: stop accepting, finish in-flight requests, exit. A second one cuts connections.",
    after_help = "Examples:\n  \
        engine proxy --listen 127.0.0.1:8081 --upstream 127.0.0.1:8080\n  \
        engine proxy --listen 0.0.0.0:8081 --upstream 127.0.0.1:8080 --faults faults.toml --route /api\n\n\
        Admin API (JSON, on --admin):\n  \
        curl -s localhost:9901/stats\n  \
        curl -s -XPOST localhost:9901/faults -H 'content-type: application/json' \\\n    \
        -d '{\"id\":\"shed\",\"probability\":0.1,\"action\":{\"abort\":{\"status\":503,\"retry_after_s\":1}}}'\n  \
        curl -s -XDELETE localhost:9901/faults/shed\n  \
        curl -s -XPOST localhost:9901/faults/reset\n\n\
        Faults file (TOML), the same fields as the JSON:\n  \
        [[fault]]\n  id = \"slow-api\"\n  match = { path_prefix = \"/api\" }\n  schedule = { from_s = 30, to_s = 90 }\n  \
        action = { delay = { ms = 50, jitter_ms = 10 } }"
)]
pub struct ProxyArgs {
    /// Address to accept clients on (port 0 picks a free port, printed at start)
    #[arg(short, long, default_value = "127.0.0.1:8081", value_name = "ADDR")]
    pub listen: SocketAddr,
    /// The one upstream to forward to: HOST:PORT, http://HOST:PORT or https://HOST:PORT (443 if omitted)
    /// (resolved once at start; https verifies the upstream's certificate for HOST)
    #[arg(short, long, value_name = "ADDR")]
    pub upstream: String,
    /// Terminate TLS on --listen with this certificate chain (PEM; with --tls-key). SIGHUP
    /// reads both files again: new handshakes use them, open connections keep theirs
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM: PKCS#8, PKCS#1 or SEC1)
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// https upstream: trust these PEM roots instead of the system's
    #[arg(long, value_name = "FILE")]
    pub upstream_ca: Option<PathBuf>,
    /// https upstream: the name sent as SNI and verified, instead of the URL's host
    #[arg(long, value_name = "NAME")]
    pub upstream_servername: Option<String>,
    /// https upstream: do not verify its certificate at all
    #[arg(long)]
    pub upstream_insecure: bool,
    /// Admin API address; a non-loopback one needs --admin-token-file. `off` runs without it
    #[arg(long, default_value = "127.0.0.1:9901", value_name = "ADDR|off")]
    pub admin: String,
    /// File holding the bearer token the admin API asks for (all endpoints but /healthz)
    #[arg(long, value_name = "FILE")]
    pub admin_token_file: Option<PathBuf>,
    /// Fault rules to start with (TOML `[[fault]]` tables)
    #[arg(long, value_name = "FILE")]
    pub faults: Option<PathBuf>,
    /// Path prefix to break server-side latency down by (repeatable; the rest is `other`)
    #[arg(long = "route", value_name = "PREFIX")]
    pub routes: Vec<String>,
    /// Executors (default: one per CPU the process may run on)
    #[arg(long, value_name = "N")]
    pub shards: Option<usize>,
    /// Client connections at once; more get 503 and are closed (default: 10000, or fewer if the
    /// open-files limit holds fewer: each takes two, its own and its upstream connection)
    #[arg(long, value_name = "N")]
    pub max_conns: Option<u64>,
    /// A request head must arrive within this time of its first byte (408 otherwise)
    #[arg(long, default_value = "10s", value_name = "DUR", value_parser = engine_util::units::parse_duration)]
    pub header_timeout: Duration,
    /// Idle kept-alive client connections close after this, and so do pooled upstream connections
    /// nobody used for as long
    #[arg(long, default_value = "60s", value_name = "DUR", value_parser = engine_util::units::parse_duration)]
    pub idle_timeout: Duration,
    /// Longest wait for the upstream's response (504 when nothing came)
    #[arg(long, default_value = "30s", value_name = "DUR", value_parser = engine_util::units::parse_duration)]
    pub upstream_timeout: Duration,
    /// Longest wait for a connection to the upstream (502 after it)
    #[arg(long, default_value = "3s", value_name = "DUR", value_parser = engine_util::units::parse_duration)]
    pub connect_timeout: Duration,
    /// On SIGTERM, how long in-flight requests may take before connections are cut
    #[arg(long, default_value = "30s", value_name = "DUR", value_parser = engine_util::units::parse_duration)]
    pub drain_timeout: Duration,
    /// Each shard polls this long after its last event before it sleeps (0: at once). At light
    /// load a sleeping shard's CPU must wake for each packet, tens of µs on a VM; polling saves
    /// that, but keeps the CPU busy while traffic flows, so requests per CPU-second drop, and
    /// it helps only while client and upstream have CPU to spare. 200us..1ms covers the gaps
    /// of light traffic
    #[arg(long, default_value = "0s", value_name = "DUR", value_parser = engine_util::units::parse_duration)]
    pub busy_poll: Duration,
    /// Protocols a client may switch to (its `Upgrade` request field), comma-separated. On the
    /// upstream's 101 the connection becomes a tunnel both ways until either side closes or it
    /// idles past --idle-timeout; other upgrades are dropped and the request forwarded as plain
    /// HTTP. `none` passes no upgrade
    #[arg(long = "upgrade", default_value = "websocket", value_name = "LIST|none")]
    pub upgrade: String,
    /// Let a request ask for its own fault: x-engine-fault-delay-ms, x-engine-fault-abort-status,
    /// x-engine-fault-bandwidth-bps. Honoured from loopback clients, or from any client that
    /// sends the admin token in x-engine-fault-token; never forwarded (dropped even without this)
    #[arg(long)]
    pub fault_headers: bool,
    /// Pass `Expect: 100-continue` on to the upstream and relay its answer (a 100, or a final
    /// refusal before the body is sent) instead of answering 100 at once; after 1 s of upstream
    /// silence the proxy sends its own 100
    #[arg(long)]
    pub forward_expect: bool,
    /// At most N requests under a fault at once across the proxy (Envoy's max_active_faults):
    /// a request a rule would fault while N are passes unfaulted, counted in /stats
    /// (faults_overflow) and engine_proxy_faults_overflow_total. 0: no cap
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub max_active_faults: u64,
    /// TCP mode: pass any protocol byte for byte (Redis, Postgres, TLS left untouched) to
    /// --upstream HOST:PORT, with the rules acting on connections: reset, timeout, hang,
    /// delay (before connecting), latency, bandwidth, slicer, limit_data, slow_close, each
    /// by probability and per direction, changed at run time through the admin API
    #[arg(long)]
    pub tcp: bool,
    /// What to speak to the upstream. auto: each client's own protocol (HTTP/1.1 as HTTP/1.1;
    /// HTTP/2 clients, h2c by prior knowledge on a plain listener, as HTTP/2: h2c to an http://
    /// upstream, h2 by ALPN to an https:// one; a TLS listener offers HTTP/1.1 only). h1:
    /// HTTP/1.1 to the upstream, HTTP/2 clients translated, a TLS listener offers h2 too.
    /// h2 / h2c: HTTP/2 to the upstream (HTTP/1.1 clients translated), a TLS listener offers
    /// h2 too
    #[arg(long, default_value = "auto", value_name = "auto|h1|h2|h2c")]
    pub upstream_protocol: String,
}

pub fn main(args: ProxyArgs) -> u8 {
    let max_conns_given = args.max_conns.is_some();
    let cfg = match engine_proxy::ProxyFlags::from(&args).config() {
        Ok(c) => c,
        Err(e) => return crate::fail(exit::USAGE, &e.into()),
    };
    let _ = engine_runtime::limits::raise_nofile();
    let drain_timeout = cfg.limits.drain_timeout;
    let tls_listen = cfg.tls.is_some();
    let start_line = StartLine::of(&cfg, max_conns_given);
    let proxy = match Proxy::start(cfg) {
        Ok(p) => p,
        Err(e) => return crate::fail(exit::USAGE, &e.into()),
    };
    let drain = proxy.drain_handle();
    let (tx, rx) = mpsc::channel::<()>();
    let handler = drain.clone();
    let drain_deadline = drain_timeout + Duration::from_secs(1);
    let on_panic = std::sync::Mutex::new(tx.clone());
    crate::fatal::on_panic(move || {
        let _ = on_panic.lock().map(|tx| tx.send(()));
    });
    // A shard that is stuck never finishes its drain; the process ends anyway. A second
    // signal cuts the connections (the drain handle's second call).
    let late = format!("the drain did not finish within --drain-timeout + 1 s ({drain_deadline:?}); exiting");
    let cut = handler.clone();
    let mut on = crate::signals::OnSignals::new(
        move || {
            handler.drain();
            let _ = tx.send(());
        },
        drain_deadline,
        exit::FAILURE,
        &late,
    )
    .second(move || cut.drain());
    // SIGHUP reloads the listener's certificate and key when the proxy terminates TLS (a
    // failed reload keeps the old ones).
    if tls_listen {
        let reload = proxy.reload_handle();
        on = on.hup(move || match reload.reload() {
            Ok(()) => println!("engine proxy: SIGHUP: certificate and key reloaded; new handshakes use them"),
            Err(e) => eprintln!("engine proxy: SIGHUP: reload failed, the previous certificate stays: {e}"),
        });
    }
    if let Err(e) = on.install() {
        return crate::fail(exit::FAILURE, &anyhow!("cannot install the signal handler: {e}"));
    }
    println!("{}", start_line.with(&proxy));
    let _ = rx.recv();
    if crate::fatal::panicked() {
        // /healthz names the dead shard for a moment before the drain takes the admin API
        // down with the rest; the process ends within the panic's grace either way.
        std::thread::sleep(SAY_DEAD);
        drain.drain();
    }
    println!("engine proxy: draining (a second signal cuts connections)");
    let report = proxy.wait();
    println!("{}", final_line(&report));
    crate::fatal::or_panic(exit::OK)
}

/// What the proxy prints when it starts, but for the addresses it binds.
struct StartLine {
    scheme: &'static str,
    upstream: String,
    shards: usize,
    /// The CPUs' notes, busy polling, the connection cap.
    notes: String,
    capped: String,
}

impl StartLine {
    fn of(cfg: &ProxyConfig, max_conns_given: bool) -> StartLine {
        let upstream = match &cfg.upstream_tls {
            Some(c) => format!("https://{} (verified as {})", cfg.upstream, c.server_name()),
            None => cfg.upstream.to_string(),
        };
        let polling = cfg.busy_poll.map_or(String::new(), |d| format!(", busy-polling {d:?}"));
        let capped = match cfg.limits.max_conns {
            n if n < engine_proxy::flags::DEFAULT_MAX_CONNS && !max_conns_given => {
                format!("; at most {n} client connections (open-files limit)")
            }
            _ => String::new(),
        };
        StartLine {
            scheme: if cfg.tcp {
                "tcp"
            } else if cfg.tls.is_some() {
                "https"
            } else {
                "http"
            },
            upstream,
            shards: cfg.shard_cpus.len(),
            notes: format!("{}{polling}", engine_runtime::affinity::shared_cpus(&cfg.shard_cpus)),
            capped,
        }
    }

    fn with(&self, proxy: &Proxy) -> String {
        let admin = proxy.admin_addr().map_or_else(|| "off".to_string(), |a| format!("http://{a}/"));
        let StartLine { scheme, upstream, shards, notes, capped } = self;
        format!(
            "engine proxy on {scheme}://{}/ -> upstream {upstream} ({shards} shard{}{notes}); admin {admin}{capped}; SIGTERM or Ctrl-C drains",
            proxy.local_addr(),
            if *shards == 1 { "" } else { "s" }
        )
    }
}

/// After a panic, how long /healthz says so before the drain.
const SAY_DEAD: Duration = Duration::from_millis(300);

/// The flags as the library takes them.
impl From<&ProxyArgs> for engine_proxy::ProxyFlags {
    fn from(a: &ProxyArgs) -> Self {
        engine_proxy::ProxyFlags {
            listen: a.listen,
            upstream: a.upstream.clone(),
            tls_cert: a.tls_cert.clone(),
            tls_key: a.tls_key.clone(),
            upstream_ca: a.upstream_ca.clone(),
            upstream_servername: a.upstream_servername.clone(),
            upstream_insecure: a.upstream_insecure,
            admin: a.admin.clone(),
            admin_token_file: a.admin_token_file.clone(),
            faults: a.faults.clone(),
            routes: a.routes.clone(),
            shards: a.shards,
            max_conns: a.max_conns,
            header_timeout: a.header_timeout,
            idle_timeout: a.idle_timeout,
            upstream_timeout: a.upstream_timeout,
            connect_timeout: a.connect_timeout,
            drain_timeout: a.drain_timeout,
            busy_poll: a.busy_poll,
            upgrade: a.upgrade.clone(),
            fault_headers: a.fault_headers,
            forward_expect: a.forward_expect,
            max_active_faults: a.max_active_faults,
            tcp: a.tcp,
            upstream_protocol: a.upstream_protocol.clone(),
        }
    }
}

/// One line of what the proxy saw, printed when it stops.
pub fn final_line(r: &StatsReport) -> String {
    let faults: u64 = r.faults_injected.values().sum();
    let errors: u64 = r.upstream_errors.values().sum();
    format!(
        "engine proxy stopped: {} requests, {} faults injected, {} upstream errors; server-side p50 {:.3} ms, p99 {:.3} ms",
        r.requests, faults, errors, r.server_latency_ms.total.p50, r.server_latency_ms.total.p99
    )
}
