//! `engine target`: serve the built-in HTTP/1.1 server until Ctrl-C.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::Duration;

use clap::Args;
use engine_target::{Target, TargetConfig};

use crate::exit;

#[derive(Args, Debug)]
#[command(
    about = "Serve a fast built-in HTTP/1.1 server to aim at",
    long_about = "Serve a fast built-in HTTP/1.1 server (keep-alive, pipelining, one fixed 200 response) \
        until Ctrl-C: a calibration target for `engine blast`. With --delay every response waits that long, \
        so a closed-model blast with C connections can do at most C / delay requests per second.",
    after_help = "Examples:\n  engine target --listen 127.0.0.1:8080 --delay 5ms &\n  engine blast http://127.0.0.1:8080/ -c 100 -d 10s\n\n  \
        engine target --listen 127.0.0.1:8082 --http2 &\n  curl --http2-prior-knowledge http://127.0.0.1:8082/\n\n  \
        engine target --listen 127.0.0.1:8083 --grpc --grpc-fail demo.Echo/Echo:UNAVAILABLE:10 &\n  \
        engine blast grpc://127.0.0.1:8083 --call demo.Echo/Echo --proto echo.proto --data '{\"text\":\"hi\"}'\n\n  \
        engine target --listen 127.0.0.1:8443 --tls-cert cert.pem --tls-key key.pem &\n  \
        engine blast https://127.0.0.1:8443/ --cacert cert.pem -c 100 -d 10s"
)]
pub struct TargetArgs {
    /// Address to listen on (port 0 picks a free port, printed at start)
    #[arg(short, long, default_value = "127.0.0.1:8080", value_name = "ADDR")]
    pub listen: SocketAddr,
    /// Wait this long before each response
    #[arg(long, default_value = "0s", value_name = "DUR", value_parser = engine_util::units::parse_duration)]
    pub delay: Duration,
    /// Response body size in bytes (at most 1 GiB: the response is held in memory, once)
    #[arg(long, default_value_t = 2, value_name = "BYTES")]
    pub body_size: usize,
    /// Executors (default: one per CPU the process may run on)
    #[arg(long, value_name = "N")]
    pub shards: Option<usize>,
    /// Serve HTTPS with this certificate chain (PEM; with --tls-key)
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<std::path::PathBuf>,
    /// The private key of --tls-cert (PEM: PKCS#8, PKCS#1 or SEC1)
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<std::path::PathBuf>,
    /// Also answer HTTP/2 on the same port: by prior knowledge (h2c: a connection that opens
    /// with the HTTP/2 preface) on plain HTTP, by ALPN (h2 offered first) over TLS
    #[arg(long)]
    pub http2: bool,
    /// Also answer gRPC calls (implies --http2): every unary call gets its own message back and
    /// grpc-status 0 (any method; the .proto is in docs/grpc.md)
    #[arg(long)]
    pub grpc: bool,
    /// Fail every EVERYth call of a method with CODE (per shard; repeatable; implies --grpc),
    /// e.g. demo.Echo/Echo:UNAVAILABLE:10 for exactly 10% of its calls
    #[arg(long, value_name = "METHOD:CODE:EVERY", value_parser = engine_target::GrpcFail::parse)]
    pub grpc_fail: Vec<engine_target::GrpcFail>,
    /// HTTP/2: at most N streams at once per connection, as the target's SETTINGS tell clients
    /// (SETTINGS_MAX_CONCURRENT_STREAMS; implies --http2); to see how a client or a proxy
    /// spreads its streams over connections. Default: no limit
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub max_streams: Option<u32>,
}

pub fn main(args: TargetArgs) -> u8 {
    let cpus = match engine_runtime::affinity::allowed_cpus() {
        Ok(c) => c,
        Err(e) => return crate::fail(exit::FAILURE, &anyhow::anyhow!("cannot read CPU affinity: {e}")),
    };
    let shards = match engine_runtime::affinity::shard_count(args.shards, &cpus) {
        Ok(n) => n,
        Err(e) => return crate::fail(exit::USAGE, &e.into()),
    };
    let cfg = match config(&args, engine_runtime::affinity::spread(shards, &cpus)) {
        Ok(c) => c,
        Err(e) => return crate::fail(exit::USAGE, &e),
    };
    let scheme = if cfg.tls.is_some() { "https" } else { "http" };
    let _ = engine_runtime::limits::raise_nofile();
    let target = match Target::start(cfg) {
        Ok(t) => t,
        Err(e) => return crate::fail(exit::USAGE, &e.into()),
    };
    let stop = target.stop_flag();
    let flag = stop.clone();
    // Connections close within half a second; a stuck shard must not keep the process.
    let on = crate::signals::OnSignals::new(
        move || flag.store(true, Ordering::Relaxed),
        STOP_DEADLINE,
        exit::FAILURE,
        "the target did not stop in time; exiting",
    );
    if let Err(e) = on.install() {
        return crate::fail(exit::FAILURE, &anyhow::anyhow!("cannot install the signal handler: {e}"));
    }
    println!(
        "engine target listening on {scheme}://{}/ ({} shard{}); Ctrl-C stops",
        target.local_addr(),
        shards,
        if shards == 1 { "" } else { "s" }
    );
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(50));
    }
    let served = target.stop();
    println!("engine target stopped after {served} responses");
    crate::fatal::or_panic(exit::OK)
}

/// The target's configuration from its options (each mistake is a usage error).
fn config(args: &TargetArgs, shard_cpus: Vec<usize>) -> anyhow::Result<TargetConfig> {
    if args.body_size > engine_target::MAX_BODY_SIZE {
        anyhow::bail!("--body-size {} is over {} (1 GiB)", args.body_size, engine_target::MAX_BODY_SIZE);
    }
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => {
            Some(engine_tls::server_config(cert, key).map_err(|e| anyhow::anyhow!("--tls-cert/--tls-key: {e}"))?)
        }
        _ => None,
    };
    Ok(TargetConfig {
        tls,
        listen: args.listen,
        body_size: args.body_size,
        delay: args.delay,
        shard_cpus,
        http2: args.http2 || args.max_streams.is_some(),
        grpc: (args.grpc || !args.grpc_fail.is_empty()).then(|| args.grpc_fail.clone()),
        max_streams: args.max_streams,
    })
}

/// How long after Ctrl-C or SIGTERM the target may take to stop.
const STOP_DEADLINE: Duration = Duration::from_millis(1500);
