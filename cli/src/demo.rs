//! `engine demo`: target ← proxy (with faults) ← blast, in one command.

use std::time::Duration;

use clap::Args;
use engine_blast::{Control, PlanInput};
use engine_proxy::{Proxy, ProxyConfig, Rule};
use engine_results::summary::Latency;
use engine_target::{Target, TargetConfig};

use crate::exit;
use crate::output;

/// The demo's faults: what an overloaded service does (shed 10% with 503 and Retry-After)
/// and what a slow dependency does (5 ms more on every request).
const FAULTS: [&str; 2] = [
    r#"{"id": "shed-10pct", "probability": 0.1, "action": {"abort": {"status": 503, "retry_after_s": 1, "body": "overloaded"}}}"#,
    r#"{"id": "slow-5ms", "action": {"delay": {"ms": 5}}}"#,
];

#[derive(Args, Debug)]
#[command(
    about = "Run target, proxy and blast on loopback and compare client- and server-side latency",
    long_about = "Start the built-in target on a free loopback port, put the proxy in front of it with two \
        faults (10% of requests answered 503 with Retry-After, 5 ms added to the rest), blast through the proxy \
        for a few seconds, and print what the client saw beside what the server itself took, with the counts \
        of every part. Nothing to install or configure. With --tls, every hop is HTTPS.",
    after_help = "Examples:\n  engine demo\n  engine demo --tls -c 16 -d 2s"
)]
pub struct DemoArgs {
    /// Connections of the blast
    #[arg(short, long, default_value_t = 64)]
    pub conns: u64,
    /// How long to blast
    #[arg(short, long, default_value = "3s", value_parser = engine_util::units::parse_duration)]
    pub duration: Duration,
    /// Everything over TLS (blast to proxy, proxy to target) with a throwaway self-signed
    /// certificate for 127.0.0.1, which the blast and the proxy trust as --cacert
    #[arg(long)]
    pub tls: bool,
}

/// The demo's throwaway certificate: the servers' configuration, and its PEM in a file the
/// clients trust (removed when the demo ends).
struct DemoTls {
    server: std::sync::Arc<engine_tls::ServerConfig>,
    cacert: std::path::PathBuf,
}

impl DemoTls {
    fn new() -> anyhow::Result<DemoTls> {
        let (server, pem) = engine_tls::self_signed(&["127.0.0.1", "localhost"])?;
        let cacert = std::env::temp_dir().join(format!("engine-demo-{}.pem", std::process::id()));
        std::fs::write(&cacert, pem)?;
        Ok(DemoTls { server, cacert })
    }

    fn client_options(&self) -> engine_tls::ClientOptions {
        engine_tls::ClientOptions { cacert: Some(self.cacert.clone()), ..Default::default() }
    }
}

impl Drop for DemoTls {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.cacert);
    }
}

pub fn main(args: DemoArgs) -> u8 {
    let cpus = match engine_runtime::affinity::allowed_cpus() {
        Ok(c) => c,
        Err(e) => return crate::fail(exit::FAILURE, &anyhow::anyhow!("cannot read CPU affinity: {e}")),
    };
    // Target and proxy on the first CPU, blast on the others (all on one on a single-CPU box).
    let server_cpu = cpus[0];
    let blast_cpus: Vec<usize> = if cpus.len() > 1 { cpus[1..].to_vec() } else { cpus.clone() };
    let tls = match args.tls.then(DemoTls::new).transpose() {
        Ok(t) => t,
        Err(e) => return crate::fail(exit::FAILURE, &e.context("cannot make the demo's certificate")),
    };
    let scheme = if tls.is_some() { "https" } else { "http" };
    let input = |url: String| {
        let mut input = PlanInput::new(url);
        if let Some(t) = &tls {
            input.tls = t.client_options();
        }
        input.conns = args.conns;
        input.duration = args.duration;
        input.cores = Some(blast_cpus.clone());
        input
    };
    // The flags are checked before the target and the proxy start (the blast's address is
    // only known then).
    if let Err(e) = input(format!("{scheme}://127.0.0.1:1/")).build() {
        return crate::fail(exit::USAGE, &e.into());
    }
    let (target, proxy) = match start_servers(server_cpu, tls.as_ref()) {
        Ok(s) => s,
        Err(e) => return crate::fail(exit::FAILURE, &e),
    };
    let plan = match input(format!("{scheme}://{}/", proxy.local_addr())).build() {
        Ok(p) => p,
        Err(e) => return crate::fail(exit::USAGE, &e.into()),
    };
    let summary = match blast(&plan) {
        Ok(s) => s,
        Err(e) => return crate::fail(exit::FAILURE, &e.into()),
    };
    // In-flight requests finish their 5 ms; the drain publishes the proxy's last figures.
    let server = proxy.drain();
    std::thread::sleep(Duration::from_millis(50));
    let served = target.stop();
    print!("{}", engine_results::render::text(&summary));
    println!("\n{}", side_by_side(&summary.latency_ms, &server.server_latency_ms.total));
    let aborted = server.faults_injected.get("abort").copied().unwrap_or(0);
    println!(
        "\nground truth: the target served {served} and the proxy answered {aborted} itself; \
         the blast counted {} completed (+{} abandoned in flight)",
        summary.requests, summary.abandoned
    );
    crate::verdict(&summary)
}

/// The target and, in front of it, the proxy with the demo's faults; both on `cpu`.
fn start_servers(cpu: usize, tls: Option<&DemoTls>) -> anyhow::Result<(Target, Proxy)> {
    let loopback = "127.0.0.1:0".parse().expect("literal address");
    let cfg = TargetConfig {
        listen: loopback,
        body_size: 2,
        delay: Duration::ZERO,
        shard_cpus: vec![cpu],
        tls: tls.map(|t| t.server.clone()),
        http2: false,
        grpc: None,
        max_streams: None,
    };
    let target = Target::start(cfg)?;
    let proxy = start_proxy(target.local_addr(), cpu, tls)?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    println!("engine demo: target on {scheme}://{}/ (CPU {cpu})", target.local_addr());
    println!(
        "             proxy  on {scheme}://{}/ (CPU {cpu}, admin http://{}/): 10% answered 503, +5 ms on the rest",
        proxy.local_addr(),
        proxy.admin_addr().expect("the demo starts an admin API")
    );
    Ok((target, proxy))
}

/// The blast through the proxy, with its progress line; Ctrl-C stops it as in `engine blast`.
fn blast(plan: &engine_blast::Plan) -> Result<engine_blast::Summary, engine_blast::RunError> {
    let control = Control::new();
    crate::signals::stop_run(&control, "the demo");
    println!("{}", engine_blast::describe::banner(plan));
    let mut progress = output::Progress::new(false, plan);
    engine_blast::run(plan, &control, &mut [&mut progress])
}

fn start_proxy(upstream: std::net::SocketAddr, cpu: usize, tls: Option<&DemoTls>) -> anyhow::Result<Proxy> {
    let mut cfg = ProxyConfig::new("127.0.0.1:0".parse()?, upstream)?;
    if let Some(t) = tls {
        cfg.tls = Some(engine_proxy::ServerTls { config: t.server.clone(), files: None });
        cfg.upstream_tls = Some(engine_tls::Client::new(&t.client_options(), "127.0.0.1")?);
    }
    cfg.shard_cpus = vec![cpu];
    cfg.admin = Some("127.0.0.1:0".parse()?);
    cfg.faults = FAULTS.iter().map(|f| serde_json::from_str::<Rule>(f)).collect::<Result<_, _>>()?;
    Ok(Proxy::start(cfg)?)
}

/// Client-side latency (what the blast saw: faults, proxy, network and server) beside
/// server-side latency (what the proxy measured the target taking).
fn side_by_side(client: &Latency, server: &Latency) -> String {
    let mut out = format!("{:<10}{:>14}{:>14}\n", "latency", "client-side", "server-side");
    for (name, c, s) in [
        ("p50", client.p50, server.p50),
        ("p90", client.p90, server.p90),
        ("p99", client.p99, server.p99),
        ("p99.9", client.p999, server.p999),
        ("max", client.max, server.max),
    ] {
        out.push_str(&format!("  {name:<8}{:>11.3} ms{:>11.3} ms\n", c, s));
    }
    out.push_str("  (client-side: the blast, through the proxy's faults; server-side: the target, timed by the proxy)");
    out
}
