//! `engine blast`'s flags: what the command line says, before a scenario file is merged in
//! (`crate::scenario`) and the plan is built (`crate::blast`).

use std::path::PathBuf;

use clap::Args;
use engine_blast::profiles::ProfileName;
use engine_results::thresholds::Expr;

#[derive(Args, Debug, Clone)]
#[command(
    about = "Generate HTTP/1.1, HTTP/2 or gRPC load against URL and measure it",
    long_about = "Generate HTTP/1.1 load (or HTTP/2 with --http2, --http2-prior-knowledge; or gRPC calls to a grpc:// URL) against URL from many keep-alive connections and measure it.\n\n\
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
        engine blast https://127.0.0.1:8443/ --cacert ca.pem -H 'Connection: close' --no-tls-resume\n  \
        engine blast https://127.0.0.1:8443/ --http2 --streams 10 -c 64 --cacert ca.pem\n  \
        engine blast http://127.0.0.1:8080/ --http2-prior-knowledge --streams 10 -c 64\n  \
        engine blast grpc://127.0.0.1:50051 --call demo.Echo/Echo --proto echo.proto --data '{\"text\":\"hi\"}' --streams 10\n\n\
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
    #[arg(allow_hyphen_values = true, short, long, value_name = "N")]
    pub conns: Option<u64>,
    /// How long to send requests: 500ms, 10s, 5m, 1h (with --stages, their sum) [default: 10s]
    #[arg(allow_hyphen_values = true, short, long, value_name = "DUR", value_parser = engine_util::units::parse_duration)]
    pub duration: Option<std::time::Duration>,
    /// Open model: total requests per second on a fixed schedule, whatever the responses do
    /// (latency is then measured from when each request was due). With --stages: the rate
    /// the first ramp starts from
    #[arg(allow_hyphen_values = true, short = 'R', long, value_name = "RPS")]
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
    #[arg(allow_hyphen_values = true, long, value_name = "N")]
    pub peak: Option<f64>,
    /// How long a profile holds each level [default: 30s]
    #[arg(allow_hyphen_values = true, long, value_name = "DUR", value_parser = engine_util::units::parse_duration)]
    pub step: Option<std::time::Duration>,
    /// Pass/fail condition on the whole run, e.g. 'p95<200ms', 'error_rate<0.1%', 'rps>1000'
    /// (repeatable; metrics p50 p90 p95 p99 p999 max mean error_rate rps). Any failure: exit 4
    #[arg(long, value_name = "EXPR", value_parser = Expr::parse)]
    pub threshold: Vec<Expr>,
    /// Safety stop, same syntax, checked every second: when it holds for --abort-grace
    /// consecutive intervals the run stops, writes its summary and exits 5 (repeatable).
    /// `promql:QUERY>VALUE` asks --prometheus for QUERY each interval: a stop on the
    /// target's own CPU or memory, e.g. 'promql:node_memory_MemAvailable_bytes<1e9 for 3'
    /// (docs/blast.md has the CPU's)
    #[arg(long, value_name = "EXPR", value_parser = Expr::parse)]
    pub abort_on: Vec<Expr>,
    /// Consecutive intervals a safety stop must hold before it fires [default: 3]
    #[arg(allow_hyphen_values = true, long, value_name = "N")]
    pub abort_grace: Option<u32>,
    /// The Prometheus server promql: safety stops ask, e.g. http://127.0.0.1:9090 (its
    /// queries are tried once before the load starts)
    #[arg(long, value_name = "URL")]
    pub prometheus: Option<String>,
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
    #[arg(allow_hyphen_values = true, long, value_name = "N")]
    pub max_users: Option<u64>,
    /// Statuses a response may have without failing, e.g. 200-399,404 [default: 200-399].
    /// Any other is a failed request (error kind `status`): in the error rate, the
    /// thresholds, the safety stops and every chart
    #[arg(long, value_name = "LIST", value_parser = engine_blast::plan::StatusSet::parse)]
    pub expect_status: Option<engine_blast::plan::StatusSet>,
    /// Check every response, e.g. 'status == 200', 'header content-type ~ json',
    /// 'body contains "ok"', 'json $.user.id exists' (repeatable). A failed check is an
    /// error of kind `check`; each is counted by name, for thresholds such as 'checks>99%'.
    /// Only what the checks read is kept of a response (see docs/scenarios.md, Checks)
    #[arg(long = "check", value_name = "EXPR", value_parser = engine_blast::check::CheckSpec::parse)]
    pub checks: Vec<engine_blast::check::CheckSpec>,
    /// Per-request timeout, from write to complete response [default: 30s]
    #[arg(allow_hyphen_values = true, long, value_name = "DUR", value_parser = engine_util::units::parse_duration)]
    pub timeout: Option<std::time::Duration>,
    /// Timeout of each TCP connect
    #[arg(allow_hyphen_values = true, long, default_value = "5s", value_name = "DUR", value_parser = engine_util::units::parse_duration)]
    pub connect_timeout: std::time::Duration,
    /// Executors (default: one per CPU the process may run on)
    #[arg(allow_hyphen_values = true, long, value_name = "N")]
    pub shards: Option<usize>,
    /// CPUs to pin shards to, e.g. 0,2-3 (default: the process's affinity mask)
    #[arg(long, value_name = "LIST", value_parser = parse_cores)]
    pub cores: Option<CpuList>,
    /// Each shard polls this long after its last event before it sleeps (0: at once). A
    /// sleeping shard's CPU must wake for each response, and that wake-up (tens of µs on a VM)
    /// lands in every measured latency; polling keeps it out, for a CPU kept busy. For light
    /// rates on a CPU of its own: 200us..1ms
    #[arg(long, default_value = "0s", value_name = "DUR", value_parser = engine_util::units::parse_duration)]
    pub busy_poll: std::time::Duration,
    /// Write the summary JSON to PATH, or to stdout with '-' (the text summary then goes to stderr)
    #[arg(long, value_name = "PATH|-")]
    pub json: Option<PathBuf>,
    /// Results folder (default: results/YYYYMMDD-HHMMSS/ in UTC): summary.json, summary.md,
    /// summary.csv, timeseries.csv, latency.hlog, run.log, report.html. Placeholders {date}
    /// {time} {stamp} {scenario} {profile} {model}: 'results/{date}/{scenario}/{profile}'
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
    #[arg(long, value_name = "TIME", value_parser = engine_util::units::parse_time)]
    pub start_at: Option<std::time::SystemTime>,
    /// Local addresses to connect from, in turn: a list and/or CIDR blocks, e.g. 127.0.0.2,127.0.0.3 or
    /// 10.0.1.0/28; each adds one address's ephemeral ports towards the target
    #[arg(long, value_name = "LIST", value_parser = parse_source_ips)]
    pub source_ips: Option<SourceIps>,
    #[command(flatten)]
    pub tls: crate::tls_args::TlsArgs,
    /// HTTP/2 over https:// agreed by ALPN: h2 offered before http/1.1, and the server's choice
    /// spoken (the summary counts connections by protocol). For http:// use
    /// --http2-prior-knowledge
    #[arg(long, conflicts_with = "http2_prior_knowledge")]
    pub http2: bool,
    /// HTTP/2 without asking: h2c on http:// (the connection preface at once), h2 on https://
    /// with no fallback to HTTP/1.1
    #[arg(long)]
    pub http2_prior_knowledge: bool,
    /// Concurrent streams per HTTP/2 connection (h2load's -m): the closed model keeps
    /// conns x streams requests in flight; a server's SETTINGS_MAX_CONCURRENT_STREAMS caps it
    /// (the summary says so) [default: 1]
    #[arg(long, value_name = "N")]
    pub streams: Option<u32>,
    /// HTTP/2 stream window in bytes (SETTINGS_INITIAL_WINDOW_SIZE), to test a server's flow
    /// control [default: 1073741823, h2load's]
    #[arg(long, value_name = "BYTES")]
    pub window: Option<u32>,
    /// HTTP/2 connection window in bytes [default: 1073741823]
    #[arg(long, value_name = "BYTES")]
    pub connection_window: Option<u32>,
    /// The largest response header list accepted (SETTINGS_MAX_HEADER_LIST_SIZE); a larger one
    /// fails its request (error kind `h2`) [default: 65536]
    #[arg(long, value_name = "BYTES")]
    pub max_header_list: Option<u32>,
    /// gRPC (grpc:// or grpcs:// URLs): the unary method to call, pkg.Service/Method
    #[arg(long, value_name = "METHOD")]
    pub call: Option<String>,
    /// gRPC: the service's .proto (parsed at run time; imports from its directory), to read
    /// --data by
    #[arg(long, value_name = "FILE")]
    pub proto: Option<std::path::PathBuf>,
    /// gRPC: the request message as JSON (proto3's JSON mapping) [default: {}]
    #[arg(long, value_name = "JSON")]
    pub data: Option<String>,
    /// gRPC: the request message already encoded (binary protobuf), instead of --data
    #[arg(long, value_name = "FILE")]
    pub data_bin: Option<std::path::PathBuf>,
    /// gRPC: sent as grpc-timeout, so the server may give up after it (DEADLINE_EXCEEDED)
    #[arg(long, value_name = "DUR", value_parser = engine_util::units::parse_duration)]
    pub grpc_deadline: Option<std::time::Duration>,
    /// gRPC: status codes that are not failures, e.g. OK,NOT_FOUND [default: OK]; any other is
    /// an error of kind grpc, counted by code
    #[arg(long, value_name = "LIST", value_parser = engine_blast::plan::parse_grpc_codes)]
    pub expect_grpc_status: Option<GrpcCodes>,
    /// Serve Prometheus metrics (GET /metrics) on ADDR while the run lasts, e.g. 127.0.0.1:9464
    #[arg(long, value_name = "ADDR")]
    pub metrics_addr: Option<std::net::SocketAddr>,
    /// Push the final metrics to a Prometheus Pushgateway: http://HOST:PORT[/metrics/job/NAME[/LABEL/VALUE...]]
    #[arg(long, value_name = "URL")]
    pub push: Option<String>,
    /// A live page while the run lasts, at http://ADDR/ (--dashboard alone: 127.0.0.1:5665):
    /// figures and charts each second, and buttons for the control API, which it also serves
    #[arg(long, value_name = "ADDR", num_args = 0..=1, require_equals = true, default_missing_value = "127.0.0.1:5665")]
    pub dashboard: Option<std::net::SocketAddr>,
    /// The control API on ADDR without the page: GET /run; POST /run/rate {"rate":N},
    /// /run/conns {"conns":N}, /run/pause, /run/resume, /run/stop (from the next whole second;
    /// stop ends the run now, as its planned end would)
    #[arg(long, value_name = "ADDR")]
    pub control: Option<std::net::SocketAddr>,
    /// Bearer token the control API and the page want (Authorization: Bearer TOKEN); required
    /// for an address other than loopback
    #[arg(long, value_name = "TOKEN")]
    pub control_token: Option<String>,
}

/// The flags as the library takes them: the one place the command line meets the plan.
impl From<&BlastArgs> for engine_blast::Flags {
    fn from(a: &BlastArgs) -> Self {
        engine_blast::Flags {
            url: a.url.clone(),
            scenario: a.scenario.clone(),
            conns: a.conns,
            duration: a.duration,
            rate: a.rate,
            stages: a.stages.clone(),
            profile: a.profile,
            peak: a.peak,
            step: a.step,
            threshold: a.threshold.clone(),
            abort_on: a.abort_on.clone(),
            abort_grace: a.abort_grace,
            prometheus: a.prometheus.clone(),
            method: a.method.clone(),
            headers: a.headers.clone(),
            body: a.body.clone(),
            max_users: a.max_users,
            expect_status: a.expect_status,
            checks: a.checks.clone(),
            timeout: a.timeout,
            connect_timeout: a.connect_timeout,
            shards: a.shards,
            cores: a.cores.as_ref().map(|c| c.0.clone()),
            busy_poll: a.busy_poll,
            worker: a
                .worker_index
                .zip(a.worker_count)
                .map(|(index, count)| engine_results::summary::Worker { index, count }),
            start_at: a.start_at,
            source_ips: a.source_ips.as_ref().map(|s| s.0.clone()).unwrap_or_default(),
            http2: engine_blast::plan::Http2Input {
                protocol: match (a.http2, a.http2_prior_knowledge) {
                    (_, true) => engine_blast::plan::Protocol::Http2PriorKnowledge,
                    (true, false) => engine_blast::plan::Protocol::Http2,
                    (false, false) => engine_blast::plan::Protocol::Http1,
                },
                streams: a.streams.unwrap_or(1),
                window: a.window,
                connection_window: a.connection_window,
                max_header_list: a.max_header_list,
            },
            grpc: engine_blast::plan::GrpcInput {
                call: a.call.clone(),
                proto: a.proto.clone(),
                data: a.data.clone(),
                data_bin: a.data_bin.clone(),
                deadline: a.grpc_deadline,
                expect: a.expect_grpc_status.clone(),
            },
            ..Default::default()
        }
    }
}

/// gRPC codes as one value (clap would read a bare `Vec` as a repeated flag).
pub type GrpcCodes = Vec<u8>;

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
