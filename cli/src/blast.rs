//! `engine blast`: flags → plan → run → summary.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context as _;
use clap::Args;
use engine_blast::metrics::BlastMetrics;
use engine_blast::plan::Model;
use engine_blast::profiles::{ProfileName, ProfileWatch};
use engine_blast::{Control, PlanInput, RunError};
use engine_results::folder::{self, RunLog};
use engine_results::hlog::{self, HlogObserver};
use engine_results::observe::Observer;
use engine_results::profile::Criterion;
use engine_results::thresholds::{Expr, SafetyStops, SafetyWatch, Thresholds};

use crate::exit;
use crate::output::{self, Progress};

#[derive(Args, Debug, Clone)]
#[command(
    about = "Generate HTTP/1.1 load against URL and measure it",
    long_about = "Generate HTTP/1.1 load against URL from many keep-alive connections and measure it.\n\n\
        Closed model (default): each connection sends its next request as soon as the previous \
        response completes. Open model (--rate): requests are due on a fixed schedule, and latency \
        is measured from when each was due, so a stalled server shows in the percentiles \
        (coordinated omission corrected, like wrk2). Connections are spread over shards, one per CPU of the process's affinity mask \
        (so `taskset -c 1 engine blast ...` runs one shard on CPU 1).",
    after_help = "Examples:\n  \
        engine blast http://127.0.0.1:8080/ -c 1000 -d 30s\n  \
        engine blast http://127.0.0.1:8080/ --rate 5000 -c 200 -d 1m\n  \
        engine blast http://127.0.0.1:8080/ --stages 100:30s,1000:1m,0:30s\n  \
        engine blast http://127.0.0.1:8080/ --profile stress --peak 20000 --rate 0 -c 500 --print-plan\n  \
        engine blast http://127.0.0.1:8080/api -m POST -H 'Content-Type: application/json' -b @body.json\n  \
        engine blast http://127.0.0.1:8080/ --json - > summary.json\n  \
        engine blast https://127.0.0.1:8443/ --cacert ca.pem -H 'Connection: close' --no-tls-resume\n\n\
        Exit codes: 0 success, 2 usage or configuration error, 3 target unreachable before the start, \
        4 a threshold failed, 5 stopped by a safety stop, 130 interrupted (the summary is still \
        printed and written)."
)]
pub struct BlastArgs {
    /// Target URL, http:// or https://; with --scenario, the scenario's target by default
    #[arg(required_unless_present = "scenario")]
    pub url: Option<String>,
    /// A scenario file (TOML): target, weighted named requests, load, thresholds, safety stops.
    /// Flags given on the command line override its values
    #[arg(long, value_name = "FILE")]
    pub scenario: Option<PathBuf>,
    /// Concurrent connections [default: 64]
    #[arg(short, long, value_name = "N")]
    pub conns: Option<u64>,
    /// How long to send requests: 500ms, 10s, 5m, 1h (with --stages, their sum) [default: 10s]
    #[arg(short, long, value_name = "DUR", value_parser = engine_runtime::units::parse_duration)]
    pub duration: Option<std::time::Duration>,
    /// Open model: total requests per second on a fixed schedule, whatever the responses do
    /// (latency is then measured from when each request was due). With --stages: the rate
    /// the first ramp starts from
    #[arg(short = 'R', long, value_name = "RPS")]
    pub rate: Option<f64>,
    /// Linear ramps TARGET:DURATION,...; targets are connections, or requests per second with
    /// --rate. Ramps start from 0 (from --rate in the open model). E.g. 100:30s,1000:1m,0:30s
    #[arg(long, value_name = "LIST", value_parser = engine_blast::schedule::parse_stages, conflicts_with = "profile")]
    pub stages: Option<Stages>,
    /// A named load profile, scaled to --peak: ramp, spike, stress, soak, recovery
    /// (see --print-plan). Levels are connections, or requests per second with --rate
    #[arg(long, value_name = "NAME", value_parser = ProfileName::parse, requires = "peak")]
    pub profile: Option<ProfileName>,
    /// The profile's highest level (connections, or requests per second with --rate)
    #[arg(long, value_name = "N")]
    pub peak: Option<f64>,
    /// How long a profile holds each level [default: 30s]
    #[arg(long, value_name = "DUR", value_parser = engine_runtime::units::parse_duration)]
    pub step: Option<std::time::Duration>,
    /// Pass/fail condition on the whole run, e.g. 'p95<200ms', 'error_rate<0.1%', 'rps>1000'
    /// (repeatable; metrics p50 p90 p95 p99 p999 max mean error_rate rps). Any failure: exit 4
    #[arg(long, value_name = "EXPR", value_parser = Expr::parse)]
    pub threshold: Vec<Expr>,
    /// Safety stop, same syntax, checked every second: when it holds for --abort-grace
    /// consecutive intervals the run stops, writes its summary and exits 5 (repeatable)
    #[arg(long, value_name = "EXPR", value_parser = Expr::parse)]
    pub abort_on: Vec<Expr>,
    /// Consecutive intervals a safety stop must hold before it fires [default: 3]
    #[arg(long, value_name = "N")]
    pub abort_grace: Option<u32>,
    /// Print the resolved plan (stages, thresholds, equivalent command) and exit without
    /// sending anything
    #[arg(long, visible_alias = "dry-run")]
    pub print_plan: bool,
    /// Request method
    #[arg(short, long, default_value = "GET", value_name = "M")]
    pub method: String,
    /// Request header 'Name: value' (repeatable)
    #[arg(short = 'H', long = "header", value_name = "K: V")]
    pub headers: Vec<String>,
    /// Request body: TEXT, or @FILE to read it from a file (up to 16 MiB)
    #[arg(short, long, value_name = "TEXT|@FILE")]
    pub body: Option<String>,
    /// Arrival-rate flows (--rate with a scenario's `[[flow]]`): the most users walking a flow
    /// at once, each on a connection of its own [default: --conns]. An iteration due while
    /// every user is busy is dropped, and counted
    #[arg(long, value_name = "N")]
    pub max_users: Option<u64>,
    /// Statuses a response may have without failing, e.g. 200-399,404 [default: 200-399].
    /// Any other is a failed request (error kind `status`): in the error rate, the
    /// thresholds, the safety stops and every chart
    #[arg(long, value_name = "LIST", value_parser = crate::scenario::parse_expect)]
    pub expect_status: Option<engine_blast::plan::StatusSet>,
    /// Per-request timeout, from write to complete response [default: 30s]
    #[arg(long, value_name = "DUR", value_parser = engine_runtime::units::parse_duration)]
    pub timeout: Option<std::time::Duration>,
    /// Timeout of each TCP connect
    #[arg(long, default_value = "5s", value_name = "DUR", value_parser = engine_runtime::units::parse_duration)]
    pub connect_timeout: std::time::Duration,
    /// Executors (default: one per CPU the process may run on)
    #[arg(long, value_name = "N")]
    pub shards: Option<usize>,
    /// CPUs to pin shards to, e.g. 0,2-3 (default: the process's affinity mask)
    #[arg(long, value_name = "LIST", value_parser = parse_cores)]
    pub cores: Option<CpuList>,
    /// Each shard polls this long after its last event before it sleeps (0: at once). A
    /// sleeping shard's CPU must wake for each response, and that wake-up (tens of µs on a VM)
    /// lands in every measured latency; polling keeps it out, for a CPU kept busy. For light
    /// rates on a CPU of its own: 200us..1ms
    #[arg(long, default_value = "0s", value_name = "DUR", value_parser = engine_runtime::units::parse_duration)]
    pub busy_poll: std::time::Duration,
    /// Write the summary JSON to PATH, or to stdout with '-' (the text summary then goes to stderr)
    #[arg(long, value_name = "PATH|-")]
    pub json: Option<PathBuf>,
    /// Results folder (default: results/YYYYMMDD-HHMMSS/ in UTC): summary.json, summary.md,
    /// timeseries.csv, latency.hlog, run.log, report.html
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// No progress lines while running
    #[arg(short, long)]
    pub quiet: bool,
    /// This process's index among --worker-count workers running one plan together (from 0;
    /// in a Kubernetes Indexed Job: $(JOB_COMPLETION_INDEX))
    #[arg(long, value_name = "I", requires = "worker_count")]
    pub worker_index: Option<u32>,
    /// How many workers share the plan: each takes its share of --conns, --rate, every stage's
    /// target and the data file's rows; `engine report merge` joins their results
    #[arg(long, value_name = "N", requires = "worker_index")]
    pub worker_count: Option<u32>,
    /// Begin the load at this time (after connecting), so workers start together: Unix seconds
    /// or RFC 3339 (2026-11-22T23:30:00Z); a worker that connects later says by how much
    #[arg(long, value_name = "TIME", value_parser = engine_runtime::units::parse_time)]
    pub start_at: Option<std::time::SystemTime>,
    /// Local addresses to connect from, in turn: a list and/or CIDR blocks, e.g. 127.0.0.2,127.0.0.3 or
    /// 10.0.1.0/28; each adds one address's ephemeral ports towards the target
    #[arg(long, value_name = "LIST", value_parser = parse_source_ips)]
    pub source_ips: Option<SourceIps>,
    #[command(flatten)]
    pub tls: crate::tls_args::TlsArgs,
    /// Serve Prometheus metrics (GET /metrics) on ADDR while the run lasts, e.g. 127.0.0.1:9464
    #[arg(long, value_name = "ADDR")]
    pub metrics_addr: Option<std::net::SocketAddr>,
    /// Push the final metrics to a Prometheus Pushgateway: http://HOST:PORT[/metrics/job/NAME[/LABEL/VALUE...]]
    #[arg(long, value_name = "URL")]
    pub push: Option<String>,
    /// The scenario's requests, once merged in.
    #[arg(skip)]
    pub requests: Vec<engine_blast::plan::RequestSpec>,
    /// The scenario's flows, once merged in.
    #[arg(skip)]
    pub flows: Vec<engine_blast::plan::FlowSpec>,
    /// The scenario's data file, once read.
    #[arg(skip)]
    pub data: Option<std::sync::Arc<engine_http::template::DataTable>>,
    /// What a profile's level must meet (the scenario's `[profile]`, else the defaults).
    #[arg(skip)]
    pub criterion: Criterion,
}

/// The stages as one value (clap would read a bare `Vec` as a repeated flag).
pub type Stages = Vec<engine_blast::schedule::Stage>;

/// Source addresses as one value (clap would read a bare `Vec` as a repeated flag).
#[derive(Debug, Clone)]
pub struct SourceIps(pub Vec<std::net::IpAddr>);

/// Most addresses `--source-ips` may expand to (a /22 of IPv4).
const MAX_SOURCE_IPS: usize = 1024;

fn parse_source_ips(text: &str) -> Result<SourceIps, String> {
    let mut ips = Vec::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match part.split_once('/') {
            None => ips.push(part.parse().map_err(|_| format!("'{part}' is not an IP address"))?),
            Some((net, bits)) => {
                let net: std::net::Ipv4Addr = net
                    .parse()
                    .map_err(|_| format!("'{part}': CIDR blocks are IPv4 (list IPv6 addresses one by one)"))?;
                let bits: u32 =
                    bits.parse().ok().filter(|b| *b <= 32).ok_or_else(|| format!("'{part}': bad prefix length"))?;
                let size = 1u64 << (32 - bits);
                if size as usize > MAX_SOURCE_IPS {
                    return Err(format!("'{part}' holds {size} addresses; at most {MAX_SOURCE_IPS}"));
                }
                let base = u32::from(net) & (u32::MAX.checked_shl(32 - bits).unwrap_or(0));
                ips.extend((0..size as u32).map(|i| std::net::IpAddr::V4((base + i).into())));
            }
        }
        if ips.len() > MAX_SOURCE_IPS {
            return Err(format!("more than {MAX_SOURCE_IPS} source addresses"));
        }
    }
    if ips.is_empty() {
        return Err("an empty list".into());
    }
    // An address this host does not have would fail every connect; say so now.
    for ip in &ips {
        std::net::TcpListener::bind((*ip, 0)).map_err(|e| format!("{ip} is not an address of this host ({e})"))?;
    }
    ips.dedup();
    Ok(SourceIps(ips))
}

/// A CPU list as one value (clap would read a bare `Vec` as a repeated flag).
#[derive(Debug, Clone)]
pub struct CpuList(pub Vec<usize>);

fn parse_cores(text: &str) -> Result<CpuList, String> {
    engine_runtime::affinity::parse_cpu_list(text).map(CpuList)
}

pub fn main(mut args: BlastArgs) -> u8 {
    let (plan, notes) = match crate::scenario::merge(&mut args).and_then(|notes| Ok((plan(&args)?, notes))) {
        Ok(p) => p,
        Err(e) => return crate::fail(exit::USAGE, &e),
    };
    for n in &notes {
        eprintln!("engine: note: {n}");
    }
    if args.print_plan {
        print_plan(&args, &plan);
        return exit::OK;
    }
    for w in engine_runtime::limits::host_warnings(plan.conns, plan.source_ips.len() as u64) {
        eprintln!("engine: note: {w}");
    }
    let mut outputs = match Outputs::open(&args, &plan) {
        Ok(o) => o,
        Err(e) => return crate::fail(exit::USAGE, &e),
    };
    for n in &notes {
        outputs.run_log.line(&format!("note: {n}"));
    }
    let control = Control::new();
    on_signals(&control);
    let summary = match run(&args, &plan, &control, &mut outputs) {
        Ok(s) => s,
        Err(e @ (RunError::Unreachable { .. } | RunError::Handshake { .. })) => {
            return crate::fail(exit::UNREACHABLE, &e.into())
        }
        Err(e) => return crate::fail(exit::FAILURE, &e.into()),
    };
    if let Err(e) = outputs.finish(&summary) {
        return crate::fail(exit::FAILURE, &e);
    }
    crate::fatal::or_panic(exit_code(&summary))
}

fn print_plan(args: &BlastArgs, plan: &engine_blast::Plan) {
    print!("{}", output::plan_text(plan, args.profile, args.peak, step(args)));
    for t in &args.threshold {
        println!("threshold: {t}");
    }
    for a in &args.abort_on {
        println!("safety stop: {a} for {} consecutive intervals", grace(args));
    }
}

/// Ctrl-C or SIGTERM stops the run (a short drain, then the summary); a second one leaves at
/// once, for a run whose drain the user will not wait for. A panic stops it the same way.
fn on_signals(control: &Control) {
    let on_panic = control.clone();
    crate::fatal::on_panic(move || on_panic.stop());
    let handler = control.clone();
    let _ = ctrlc::set_handler(move || {
        if handler.is_stopped() {
            std::process::exit(exit::INTERRUPTED as i32);
        }
        handler.stop();
        // The summary is written within STOP_WITHIN; a stuck shard does not hold the process.
        crate::fatal::exit_after(
            engine_blast::blast::STOP_WITHIN + std::time::Duration::from_secs(1),
            exit::INTERRUPTED,
            "the run did not stop in time; exiting".into(),
        );
    });
}

/// Runs the plan with every observer: the progress line, the results folder's run.log and
/// latency.hlog, the metrics, the safety stops, the profile, the thresholds.
fn run(
    args: &BlastArgs,
    plan: &engine_blast::Plan,
    control: &Control,
    outputs: &mut Outputs,
) -> Result<engine_blast::Summary, RunError> {
    let banner = output::banner(plan);
    eprintln!("{banner}");
    outputs.run_log.line(&format!("command: {}", outputs.command));
    outputs.run_log.line(&format!("plan: {banner}"));
    let pre = engine_blast::preflight(plan)?;
    if let (Some(t), Some(n)) = (&plan.tls, pre.tls) {
        let line = format!("TLS: {} {}, {}", n.version, n.cipher, t.verify);
        eprintln!("{line}");
        outputs.run_log.line(&line);
    }
    let mut progress = Progress::new(args.quiet, plan);
    let names = if plan.requests.len() > 1 { plan.requests.iter().map(|r| r.name.clone()).collect() } else { vec![] };
    let mut hlog = HlogObserver::new(hlog::Writer::new(outputs.dir.join("latency.hlog"), names));
    let mut safety = SafetyWatch::new(SafetyStops::new(args.abort_on.clone(), grace(args)));
    let mut thresholds = Thresholds(args.threshold.clone());
    let open = matches!(plan.model, Model::Open(_));
    let mut profile = args.profile.zip(args.peak).map(|(name, peak)| {
        ProfileWatch::new(name, peak, plan.model.profile().stages().to_vec(), open, args.criterion)
    });
    let mut observers: Vec<&mut dyn Observer> = vec![&mut progress, &mut hlog, &mut safety];
    if let Some(m) = outputs.metrics.as_mut() {
        observers.push(m);
    }
    if let Some(p) = profile.as_mut() {
        observers.push(p);
    }
    observers.push(&mut thresholds);
    observers.push(&mut outputs.run_log);
    let run = engine_blast::run_checked(plan, &pre, control, &mut observers);
    if let Err(e) = &run {
        outputs.run_log.line(&format!("failed: {e}"));
    }
    run
}

fn exit_code(summary: &engine_blast::Summary) -> u8 {
    if summary.interrupted {
        exit::INTERRUPTED
    } else if summary.stopped_by.is_some() {
        exit::SAFETY_STOP
    } else if summary.thresholds.iter().any(|t| !t.pass) {
        exit::THRESHOLD
    } else {
        exit::OK
    }
}

/// Where a blast's results go: the terminal, the summary JSON (a file opened before the run,
/// so a path that cannot be written is refused before anything is sent), the results folder,
/// the metrics endpoint and the Pushgateway.
struct Outputs {
    dir: std::path::PathBuf,
    run_log: RunLog,
    command: String,
    started: std::time::SystemTime,
    json: Json,
    metrics: Option<BlastMetrics>,
    _metrics_server: Option<engine_blast::metrics::MetricsServer>,
    push: Option<crate::push::PushTarget>,
}

/// Where the summary JSON goes.
enum Json {
    None,
    Stdout,
    File(std::path::PathBuf, std::fs::File),
}

impl Outputs {
    fn open(args: &BlastArgs, plan: &engine_blast::Plan) -> anyhow::Result<Outputs> {
        let push = args.push.as_deref().map(crate::push::parse).transpose()?;
        let mut metrics = (args.metrics_addr.is_some() || push.is_some()).then(|| BlastMetrics::new(plan));
        let metrics_server = match (args.metrics_addr, metrics.as_mut()) {
            (Some(addr), Some(m)) => {
                let server = engine_blast::metrics::serve(addr, m.handle())
                    .map_err(|e| anyhow::anyhow!("--metrics-addr {addr}: {e}"))?;
                eprintln!("metrics: http://{}/metrics", server.local_addr());
                Some(server)
            }
            _ => None,
        };
        let json = match args.json.as_deref() {
            None => Json::None,
            Some(p) if p.as_os_str() == "-" => Json::Stdout,
            Some(p) => match std::fs::OpenOptions::new().write(true).create(true).truncate(false).open(p) {
                Ok(f) => Json::File(p.to_path_buf(), f),
                Err(e) => anyhow::bail!("cannot write the summary JSON to '{}': {e}", p.display()),
            },
        };
        let dir = folder::create(args.out.as_deref(), "")?;
        let stage_targets = plan.model.profile().stages().iter().map(|s| s.target).collect();
        let run_log = RunLog::create(&dir)?.with_stages(stage_targets);
        let command = std::env::args().collect::<Vec<_>>().join(" ");
        let started = std::time::SystemTime::now();
        Ok(Outputs { dir, run_log, command, started, json, metrics, _metrics_server: metrics_server, push })
    }

    /// Prints the summary and writes it everywhere. A summary JSON that cannot be written
    /// fails the run, but only after the results folder.
    fn finish(&mut self, summary: &engine_blast::Summary) -> anyhow::Result<()> {
        let text = output::summary_text(summary);
        if matches!(self.json, Json::Stdout) {
            eprint!("{text}");
        } else {
            print!("{text}");
        }
        let json_error = match &self.json {
            Json::File(path, file) => {
                // set_len fails on a pipe or a device, where there is nothing to truncate.
                let _ = file.set_len(0);
                write_json(file, summary)
                    .with_context(|| format!("cannot write the summary JSON to '{}'", path.display()))
                    .err()
            }
            Json::Stdout => {
                write_json(std::io::stdout(), summary).context("cannot write the summary JSON to stdout").err()
            }
            Json::None => None,
        };
        folder::write_summary(&self.dir, summary, &self.command, self.started)?;
        if let (Some(target), Some(m)) = (&self.push, &self.metrics) {
            match crate::push::push(target, &m.render()) {
                Ok(()) => self.run_log.line(&format!("pushed metrics to {}{}", target.hostport, target.path)),
                Err(e) => {
                    eprintln!("engine: warning: --push failed: {e:#}");
                    self.run_log.line(&format!("push failed: {e:#}"));
                }
            }
        }
        eprintln!("results: {}", self.dir.display());
        json_error.map_or(Ok(()), Err)
    }
}

fn plan(args: &BlastArgs) -> anyhow::Result<engine_blast::Plan> {
    let body = match args.body.as_deref() {
        None => Vec::new(),
        Some(b) => match b.strip_prefix('@') {
            Some(file) => engine_runtime::files::read_limited(file.as_ref(), engine_blast::plan::MAX_BODY as u64)
                .with_context(|| format!("cannot read body file '{file}'"))?,
            None => b.as_bytes().to_vec(),
        },
    };
    let url = args.url.as_deref().context("no target: give a URL, or `target = \"http://...\"` in the scenario")?;
    let mut input = PlanInput::new(url);
    input.conns = args.conns.unwrap_or(64);
    input.duration = args.duration.unwrap_or(std::time::Duration::from_secs(10));
    input.rate = args.rate;
    input.stages = match (args.profile, args.peak) {
        (Some(p), Some(peak)) => {
            if !(peak.is_finite() && (1.0..=engine_blast::schedule::MAX_STAGE_TARGET).contains(&peak)) {
                anyhow::bail!("--peak must be a level from 1 to {}", engine_blast::schedule::MAX_STAGE_TARGET);
            }
            if step(args).is_zero() {
                anyhow::bail!("--step must be more than 0: each level of the profile is held that long");
            }
            Some(p.stages(peak, step(args)))
        }
        _ => args.stages.clone(),
    };
    input.method = args.method.clone();
    input.headers = args.headers.clone();
    input.body = body;
    input.timeout = args.timeout.unwrap_or(engine_blast::plan::DEFAULT_TIMEOUT);
    input.requests = args.requests.clone();
    input.flows = args.flows.clone();
    input.data = args.data.clone();
    input.connect_timeout = args.connect_timeout;
    input.shards = args.shards;
    input.cores = args.cores.as_ref().map(|c| c.0.clone());
    input.busy_poll = Some(args.busy_poll);
    input.worker =
        args.worker_index.zip(args.worker_count).map(|(index, count)| engine_results::summary::Worker { index, count });
    input.start_at = args.start_at;
    input.source_ips = args.source_ips.as_ref().map(|s| s.0.clone()).unwrap_or_default();
    input.expect_status = args.expect_status.unwrap_or_default();
    input.max_users = args.max_users;
    input.tls = args.tls.options(url)?;
    let plan = input.build()?;
    check_expressions(args, &plan)?;
    Ok(plan)
}

/// Every threshold and safety stop can be judged on this plan.
fn check_expressions(args: &BlastArgs, plan: &engine_blast::Plan) -> anyhow::Result<()> {
    use engine_results::thresholds::Metric;
    for e in args.threshold.iter().chain(&args.abort_on) {
        if let Some(name) = e.name() {
            if plan.requests.len() < 2 || !plan.requests.iter().any(|r| r.name == name) {
                let names: Vec<&str> = plan.requests.iter().map(|r| r.name.as_str()).collect();
                anyhow::bail!("'{e}' names no request of this plan (requests: {})", names.join(", "));
            }
        }
    }
    for e in &args.abort_on {
        if e.name().is_some() {
            anyhow::bail!("'{e}': safety stops apply to the whole run, not to one request");
        }
        if !e.metric.per_interval() {
            anyhow::bail!("'{e}': recovery_s and capacity are known at the end of the run; use them as --threshold");
        }
    }
    for e in &args.threshold {
        if e.grace.is_some() {
            anyhow::bail!("'{e}': 'for N' is a safety stop's grace; a threshold is judged once, on the whole run");
        }
        match (e.metric, args.profile) {
            (Metric::Capacity, Some(ProfileName::Stress)) => {}
            (Metric::Capacity, _) => anyhow::bail!("'{e}': capacity is what --profile stress finds"),
            (Metric::RecoveryS, Some(ProfileName::Spike | ProfileName::Recovery)) => {}
            (Metric::RecoveryS, _) => anyhow::bail!("'{e}': recovery_s is what --profile spike or recovery measures"),
            _ => {}
        }
    }
    Ok(())
}

fn step(args: &BlastArgs) -> std::time::Duration {
    args.step.unwrap_or(std::time::Duration::from_secs(30))
}

fn grace(args: &BlastArgs) -> u32 {
    args.abort_grace.unwrap_or(3)
}

fn write_json(mut out: impl Write, summary: &engine_blast::Summary) -> anyhow::Result<()> {
    let text = serde_json::to_string_pretty(summary)? + "\n";
    out.write_all(text.as_bytes())?;
    Ok(())
}
