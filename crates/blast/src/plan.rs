//! The validated, immutable description of a run. Everything a user can get wrong is
//! checked here, once, with an error that says what to do; nothing downstream re-validates.

use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

use std::sync::Arc;

use crate::check::{Check, CheckSpec};
use crate::render::RenderedRequest;
use crate::schedule::{Profile, Stage};
use crate::template::DataTable;
use engine_runtime::limits::{self, LimitError};

mod checks;
mod expect;
mod grpc;
mod http2;
mod parts;
mod scenario;
mod tls;
mod when;
use checks::plan_checks;
pub use checks::Keep;
pub use expect::StatusSet;
pub use grpc::{parse_code as parse_grpc_code, parse_codes as parse_grpc_codes, GrpcInput, GrpcPlan};
pub use http2::{Http2Input, Http2Plan, Protocol, DEFAULT_MAX_HEADER_LIST, DEFAULT_WINDOW, MAX_STREAMS};
pub use parts::{Part, PartInput};
use scenario::{plan_flows, plan_requests};
pub use scenario::{
    CaptureSource, FlowPlan, FlowSpec, FlowStep, OnFailure, RequestSpec, StepRules, StepSpec, RETRY_AFTER_MAX,
};
pub use tls::TlsPlan;
pub use when::{Test, When};

pub use crate::schedule::MAX_RATE;

/// Default per-request timeout: long enough for any sane server, short enough that a
/// wedged one shows up as errors within a run.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// Largest request body accepted on the command line; a load test re-sends it on every
/// request, so anything bigger is almost certainly a mistake.
pub const MAX_BODY: usize = 16 * 1024 * 1024;

/// What a user asked for, before validation (the "low" arguments).
#[derive(Debug, Clone)]
pub struct PlanInput {
    pub url: String,
    pub conns: u64,
    pub duration: Duration,
    pub method: String,
    /// `Name: value` strings as typed.
    pub headers: Vec<String>,
    pub body: Vec<u8>,
    pub timeout: Duration,
    pub connect_timeout: Duration,
    /// Executors to run; `None` = one per allowed CPU.
    pub shards: Option<usize>,
    /// CPUs to pin shards to; `None` = the process's affinity mask.
    pub cores: Option<Vec<usize>>,
    /// How often shards report (the live line, time series, safety stops).
    pub interval: Duration,
    /// Open model: total requests per second (the starting rate when there are stages).
    pub rate: Option<f64>,
    /// This process is one of several that together run the plan (distributed mode).
    pub worker: Option<Worker>,
    /// Begin the load at this wall-clock time (after connecting), so workers start together.
    pub start_at: Option<std::time::SystemTime>,
    /// Local addresses connections rotate over (more connections to one target than one
    /// address's ephemeral ports allow); empty: the kernel picks.
    pub source_ips: Vec<std::net::IpAddr>,
    /// Linear ramps of connections (closed model) or of rate (open model).
    pub stages: Option<Vec<Stage>>,
    /// Named, weighted requests (a scenario). Empty: one request from `method`, `headers`,
    /// `body` and the URL's path.
    pub requests: Vec<RequestSpec>,
    /// Flows (a scenario); instead of `requests`.
    pub flows: Vec<FlowSpec>,
    /// Rows for `{{csv.COLUMN}}` templates.
    pub data: Option<Arc<DataTable>>,
    /// Shards poll this long after their last event before they sleep (`None`: at once).
    pub busy_poll: Option<Duration>,
    /// The statuses a response may have without failing (each request may have its own).
    pub expect_status: StatusSet,
    /// Checks on the responses of every request (`--check`), besides each request's own.
    pub checks: Vec<CheckSpec>,
    /// Arrival-rate flows (`rate` with `flows`): the most users walking a flow at once, each
    /// on a connection of its own (`None`: `conns`).
    pub max_users: Option<u64>,
    /// Several scenarios (`[[scenario]]`), each with its own requests or flows and load;
    /// then `conns`, `duration`, `rate`, `stages`, `max_users`, `requests` and `flows` above
    /// are not used. Empty: the run is one scenario made of those.
    pub parts: Vec<PartInput>,
    /// TLS options for an https:// URL.
    pub tls: engine_tls::ClientOptions,
    /// HTTP/2 (`--http2`, `--http2-prior-knowledge`, `--streams`); HTTP/1.1 by default.
    pub http2: Http2Input,
    /// gRPC calls (`grpc://`, `grpcs://` URLs).
    pub grpc: GrpcInput,
}

pub use engine_results::summary::Worker;

/// A request ready to send, with its name and weight.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedRequest {
    pub name: String,
    pub method: String,
    pub request: RenderedRequest,
    pub weight: u32,
    /// The statuses its response may have without failing.
    pub expect: StatusSet,
    /// Checks on its responses, by the plan's check names.
    pub checks: Vec<Check>,
    /// What of its response to keep for its checks and a flow step's captures (`None`:
    /// nothing, the response is only framed).
    pub keep: Option<Keep>,
    /// HTTP/2 runs: the request as HTTP/2 sends it, converted once (`None`: an HTTP/1.1 run,
    /// or a templated request, converted per request).
    pub h2: Option<crate::h2req::H2Request>,
}

impl PlanInput {
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            conns: 64,
            duration: Duration::from_secs(10),
            method: "GET".into(),
            headers: Vec::new(),
            body: Vec::new(),
            timeout: DEFAULT_TIMEOUT,
            connect_timeout: Duration::from_secs(5),
            shards: None,
            cores: None,
            interval: Duration::from_secs(1),
            rate: None,
            worker: None,
            start_at: None,
            source_ips: Vec::new(),
            stages: None,
            requests: Vec::new(),
            flows: Vec::new(),
            data: None,
            busy_poll: None,
            expect_status: StatusSet::default(),
            checks: Vec::new(),
            max_users: None,
            parts: Vec::new(),
            tls: engine_tls::ClientOptions::default(),
            http2: Http2Input::default(),
            grpc: GrpcInput::default(),
        }
    }
}

/// The target, resolved once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The URL as given, for reports.
    pub url: String,
    pub addr: SocketAddr,
    /// `host[:port]` as sent in the Host header.
    pub authority: String,
    /// Path and query as sent on the request line.
    pub path: String,
    /// The host as the URL names it (no port, IPv6 without brackets).
    pub host: String,
    /// An https:// URL.
    pub tls: bool,
}

impl Target {
    /// `https` or `http`, as HTTP/2's `:scheme` says.
    pub fn scheme(&self) -> &'static str {
        if self.tls {
            "https"
        } else {
            "http"
        }
    }
}

/// How load is generated.
#[derive(Debug, Clone, PartialEq)]
pub enum Model {
    /// Each connection sends its next request as soon as the previous response completes;
    /// the profile is the number of connections over time.
    Closed(Profile),
    /// Requests are due on a fixed schedule whatever the responses do; the profile is the
    /// total rate (requests per second) over time.
    Open(Profile),
}

impl Model {
    pub fn name(&self) -> &'static str {
        match self {
            Model::Closed(_) => "closed",
            Model::Open(_) => "open",
        }
    }

    pub fn profile(&self) -> &Profile {
        match self {
            Model::Closed(p) | Model::Open(p) => p,
        }
    }
}

/// A validated run.
#[derive(Debug, Clone)]
pub struct Plan {
    pub target: Target,
    /// At least one; several with weights in a scenario (with flows: every step's request).
    pub requests: Vec<PlannedRequest>,
    /// Flows; when present each connection runs them instead of picking single requests.
    pub flows: Vec<FlowPlan>,
    /// Names of the values flows capture, by index.
    pub captures: Vec<String>,
    /// Names of the checks, by index: what `checks{name=…}` selects and the summary counts.
    pub check_names: Vec<String>,
    /// The data file of `{{csv.COLUMN}}` templates.
    pub data: Option<Arc<DataTable>>,
    /// Its scenarios, each with its load: one, unnamed, without `[[scenario]]`.
    pub parts: Vec<Part>,
    /// Connections in the pool: the most that are ever open at once (every part's).
    pub conns: u64,
    /// Until the last part's load ends.
    pub duration: Duration,
    pub timeout: Duration,
    pub connect_timeout: Duration,
    /// One CPU per shard (a CPU may repeat when there are more shards than CPUs).
    pub shard_cpus: Vec<usize>,
    pub interval: Duration,
    pub worker: Option<Worker>,
    pub start_at: Option<std::time::SystemTime>,
    pub source_ips: Vec<std::net::IpAddr>,
    /// Shards poll this long after their last event before they sleep: the shard's own
    /// wake-up then stays out of the measured latency, for a CPU kept busy (`None`: sleep).
    pub busy_poll: Option<Duration>,
    /// https:// targets: the client configuration (each shard takes its own copy).
    pub tls: Option<TlsPlan>,
    /// HTTP/2 runs only.
    pub http2: Option<Http2Plan>,
    /// gRPC runs only (over HTTP/2).
    pub grpc: Option<GrpcPlan>,
}

impl From<engine_tls::SetupError> for PlanError {
    fn from(e: engine_tls::SetupError) -> Self {
        PlanError::Tls(e)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("invalid URL '{url}': {reason}")]
    Url { url: String, reason: String },
    #[error("TLS: {0}")]
    Tls(engine_tls::SetupError),
    #[error("TLS flags (--cacert, -k, --servername, --cert, --tls-version, --no-tls-resume) apply to https:// and grpcs:// URLs; the target is {0}")]
    TlsOnPlain(String),
    #[error("cannot resolve '{host}': {reason}")]
    Resolve { host: String, reason: String },
    #[error("{0}")]
    Http2(String),
    #[error("{0}")]
    Grpc(String),
    #[error("--conns must be at least 1")]
    NoConns,
    #[error("--duration must be more than 0")]
    NoDuration,
    #[error("--timeout must be more than 0")]
    NoTimeout,
    #[error("--connect-timeout must be more than 0")]
    NoConnectTimeout,
    #[error("invalid method '{0}': a method is an HTTP token such as GET or POST")]
    Method(String),
    #[error("invalid header '{0}': expected 'Name: value' with a token name and no line breaks")]
    Header(String),
    #[error("request '{name}': {reason}")]
    Request { name: String, reason: String },
    #[error("{0}")]
    Template(String),
    #[error("flow '{name}': {reason}")]
    Flow { name: String, reason: String },
    #[error("scenario '{name}': {reason}")]
    Part { name: String, reason: String },
    #[error("the request weights add up to 0: nothing would be sent")]
    NoWeight,
    #[error("request body of {0} bytes is larger than the {MAX_BODY}-byte limit")]
    BodyTooLarge(usize),
    #[error("--rate must be a number of requests per second above 0 and at most {MAX_RATE}")]
    Rate,
    #[error("invalid --stages: {0}")]
    Stages(String),
    #[error("--shards must be at least 1")]
    NoShards,
    #[error("CPU {0} is not in this process's affinity mask (see `taskset -p $$`)")]
    Cpu(usize),
    #[error("cannot read this process's CPU affinity: {0}")]
    Affinity(std::io::Error),
    #[error("cannot read the open-files limit: {0}")]
    Nofile(std::io::Error),
    #[error(transparent)]
    Limit(#[from] LimitError),
    #[error("{0}")]
    Worker(String),
    #[error("{0}")]
    SourceIp(String),
    #[error("--busy-poll {0:?} is over {MAX_BUSY_POLL:?}: a shard would poll for that long between responses; 100us..1ms covers the gaps of light traffic")]
    BusyPoll(Duration),
}

pub use engine_runtime::executor::MAX_BUSY_POLL;

impl PlanInput {
    /// Validates everything and resolves the target.
    pub fn build(mut self) -> Result<Plan, PlanError> {
        if let Some(w) = self.worker {
            self.take_worker_share(w)?;
        }
        let (target, grpc) = self.grpc_target()?;
        let http2 = self.http2.plan(&target)?;
        let tls = tls::tls_plan(&self.tls, &target, http2.as_ref())?;
        let named = !self.parts.is_empty();
        let inputs = if named { std::mem::take(&mut self.parts) } else { vec![self.only_part()] };
        let shapes = parts::shapes(&inputs, named)?;
        if self.timeout.is_zero() {
            return Err(PlanError::NoTimeout);
        }
        if self.connect_timeout.is_zero() {
            return Err(PlanError::NoConnectTimeout);
        }
        let headers = self.headers.iter().map(|h| parse_header(h)).collect::<Result<Vec<_>, _>>()?;
        // Every part's flows, then every part's weighted requests: the flows' steps come first
        // among the plan's requests, each part's in one run of indices.
        let (mut flow_specs, mut request_specs) = (Vec::new(), Vec::new());
        for p in &inputs {
            let (r, f) = if named { p.prefixed() } else { (p.requests.clone(), p.flows.clone()) };
            flow_specs.extend(f);
            request_specs.extend(r);
        }
        let (flows, captures, mut specs) = plan_flows(&flow_specs)?;
        let mut requests =
            if specs.is_empty() { Vec::new() } else { plan_requests(&specs, &target, &headers, self.expect_status)? };
        if !request_specs.is_empty() {
            requests.extend(plan_requests(&request_specs, &target, &headers, self.expect_status)?);
            specs.extend(request_specs);
        } else if requests.is_empty() {
            let mut one = single_request(&self.method, &target, &headers, &self.body, self.expect_status)?;
            if let Some(e) = grpc.as_ref().and_then(|g| g.encoder.clone()) {
                one.request.set_encoder(e);
            }
            requests.push(one);
        }
        let parts = parts::lay_out(&inputs, shapes, &requests, &flows, named)?;
        let conns: u64 = parts.iter().map(|p| p.conns).sum();
        let duration = parts.iter().map(Part::end).max().unwrap_or_default();
        let check_names = plan_checks(&mut requests, &specs, &self.checks, &flows)?;
        let allowed = engine_runtime::affinity::allowed_cpus().map_err(PlanError::Affinity)?;
        let cpus = match self.cores {
            Some(list) => {
                if let Some(&c) = list.iter().find(|c| !allowed.contains(c)) {
                    return Err(PlanError::Cpu(c));
                }
                list
            }
            None => allowed,
        };
        let shards = match self.shards {
            Some(0) => return Err(PlanError::NoShards),
            Some(n) => n,
            None => cpus.len(),
        };
        // No shard without a connection to drive.
        let shards = shards.min(conns as usize).max(1);
        let shard_cpus = engine_runtime::affinity::spread(shards, &cpus);

        if let Some(d) = self.busy_poll.filter(|d| *d > MAX_BUSY_POLL) {
            return Err(PlanError::BusyPoll(d));
        }
        let (_, hard) = limits::nofile().map_err(PlanError::Nofile)?;
        if let Some(ip) = self.source_ips.iter().find(|ip| ip.is_ipv4() != target.addr.is_ipv4()) {
            return Err(PlanError::SourceIp(format!("--source-ips {ip} is not of the target's address family")));
        }
        let sources = self.source_ips.len().max(1) as u64;
        limits::check(conns, shards as u64, hard, limits::ephemeral_port_range(), sources)?;

        for r in &mut requests {
            let name = r.name.clone();
            r.request
                .resolve_captures(&captures)
                .map_err(|e| PlanError::Request { name: name.clone(), reason: e.to_string() })?;
            let columns = self.data.as_ref().map(|d| d.columns.as_slice()).unwrap_or_default();
            r.request.resolve_columns(columns).map_err(|e| PlanError::Request { name, reason: e.to_string() })?;
        }
        if http2.is_some() {
            http2::convert_requests(&mut requests, target.scheme())?;
        }
        Ok(Plan {
            target,
            requests,
            flows,
            captures,
            check_names,
            data: self.data,
            parts,
            conns,
            duration,
            timeout: self.timeout,
            connect_timeout: self.connect_timeout,
            shard_cpus,
            interval: self.interval,
            worker: self.worker,
            start_at: self.start_at,
            source_ips: self.source_ips,
            busy_poll: self.busy_poll.filter(|d| !d.is_zero()),
            tls,
            http2,
            grpc,
        })
    }
}

impl PlanInput {
    /// The target, and for a `grpc://` or `grpcs://` URL the call: over HTTP/2 by prior
    /// knowledge, `POST /pkg.Service/Method` with the framed message and gRPC's headers.
    fn grpc_target(&mut self) -> Result<(Target, Option<GrpcPlan>), PlanError> {
        let http = match (self.url.strip_prefix("grpc://"), self.url.strip_prefix("grpcs://")) {
            (Some(rest), _) => Some(format!("http://{rest}")),
            (_, Some(rest)) => Some(format!("https://{rest}")),
            _ => None,
        };
        let grpc = self.grpc.plan(http.is_some())?;
        let (Some(http), Some(g)) = (http, grpc) else { return Ok((parse_target(&self.url)?, None)) };
        let mut target = parse_target(&http)?;
        if !self.body.is_empty()
            || self.method != "GET"
            || !self.requests.is_empty()
            || !self.flows.is_empty()
            || !self.parts.is_empty()
        {
            return Err(PlanError::Grpc(
                "a gRPC call's message is --data (or --data-bin); -m, -b and a scenario's requests are for HTTP".into(),
            ));
        }
        (target.url, target.path) = (self.url.clone(), format!("/{}", g.call));
        self.method = "POST".into();
        self.body = g.body.clone();
        self.headers.extend(g.headers());
        self.http2.protocol = Protocol::Http2PriorKnowledge;
        Ok((target, Some(g)))
    }
}

/// The load model from `--rate` and `--stages` (a constant run is one stage).
fn model(rate: Option<f64>, stages: Option<Vec<Stage>>, conns: u64, duration: Duration) -> Result<Model, PlanError> {
    Ok(match (rate, stages) {
        (Some(r), _) if !(0.0..=MAX_RATE).contains(&r) => return Err(PlanError::Rate),
        (Some(0.0), None) => return Err(PlanError::Rate),
        (Some(r), None) => Model::Open(Profile::constant(r, duration)),
        (Some(r), Some(stages)) => {
            if stages.iter().any(|s| s.target > MAX_RATE) {
                return Err(PlanError::Rate);
            }
            let p = Profile::ramps_from(r, stages);
            if p.max() <= 0.0 {
                return Err(PlanError::Stages("every rate is 0: nothing would be sent".into()));
            }
            Model::Open(p)
        }
        (None, None) => Model::Closed(Profile::constant(conns as f64, duration)),
        (None, Some(stages)) => {
            let p = Profile::ramps(stages);
            if p.max() < 1.0 {
                return Err(PlanError::Stages("every stage has 0 connections: nothing would be sent".into()));
            }
            Model::Closed(p)
        }
    })
}

/// The one request of a plan without a scenario: method, headers and body from the flags.
fn single_request(
    method: &str,
    target: &Target,
    headers: &[(String, String)],
    body: &[u8],
    expect: StatusSet,
) -> Result<PlannedRequest, PlanError> {
    let upper = method.to_ascii_uppercase();
    if upper.is_empty() || !upper.bytes().all(is_token) {
        return Err(PlanError::Method(method.to_string()));
    }
    if body.len() > MAX_BODY {
        return Err(PlanError::BodyTooLarge(body.len()));
    }
    let request = RenderedRequest::render(&upper, &target.path, &target.authority, headers, body)
        .map_err(|e| PlanError::Template(e.to_string()))?;
    Ok(PlannedRequest {
        name: "default".into(),
        method: upper,
        request,
        weight: 1,
        expect,
        checks: Vec::new(),
        keep: None,
        h2: None,
    })
}

impl PlanInput {
    /// The one scenario of a plan without `[[scenario]]`: the load and requests of the flags.
    fn only_part(&self) -> PartInput {
        PartInput {
            name: String::new(),
            start: Duration::ZERO,
            conns: self.conns,
            duration: self.duration,
            rate: self.rate,
            stages: self.stages.clone(),
            max_users: self.max_users,
            requests: self.requests.clone(),
            flows: self.flows.clone(),
        }
    }

    /// Keeps this worker's share of the plan: of the connections and the rate (and of every
    /// stage's target) an even split, of the data file's rows every `count`-th from `index`,
    /// so the workers together run exactly the whole plan.
    fn take_worker_share(&mut self, w: Worker) -> Result<(), PlanError> {
        if w.count == 0 || w.index >= w.count {
            return Err(PlanError::Worker(format!(
                "--worker-index {} must be below --worker-count {}",
                w.index, w.count
            )));
        }
        let (n, i) = (w.count as usize, w.index as usize);
        share_load(&mut self.conns, &mut self.rate, &mut self.stages, n, i)?;
        for p in &mut self.parts {
            share_load(&mut p.conns, &mut p.rate, &mut p.stages, n, i)
                .map_err(|e| PlanError::Part { name: p.name.clone(), reason: e.to_string() })?;
        }
        if let Some(data) = &self.data {
            let mut mine = (**data).clone();
            mine.rows = data.rows.iter().skip(i).step_by(n).cloned().collect();
            if mine.rows.is_empty() {
                return Err(PlanError::Worker(format!("worker {i} of {n} gets no rows of the data file")));
            }
            self.data = Some(Arc::new(mine));
        }
        Ok(())
    }
}

/// Worker `i` of `n`'s share of a load: of the connections and the rate (and of every
/// stage's target) an even split.
fn share_load(
    conns: &mut u64,
    rate: &mut Option<f64>,
    stages: &mut Option<Vec<Stage>>,
    n: usize,
    i: usize,
) -> Result<(), PlanError> {
    let open = rate.is_some();
    *conns = split(*conns, n, i);
    if *conns == 0 && stages.is_none() {
        return Err(PlanError::Worker(format!(
            "worker {i} of {n} gets no connections: --conns must be at least --worker-count"
        )));
    }
    *rate = rate.map(|r| r / n as f64);
    for s in stages.iter_mut().flatten() {
        s.target = if open { s.target / n as f64 } else { split(s.target.round() as u64, n, i) as f64 };
    }
    Ok(())
}

impl Plan {
    /// The one part of a plan that has one (the only kind a profile, its own stages and a
    /// run-wide schedule apply to); `None` with several scenarios.
    pub fn single(&self) -> Option<&Part> {
        match self.parts.as_slice() {
            [one] => Some(one),
            _ => None,
        }
    }

    /// Whether responses are counted per request name (several requests, or scenarios).
    pub fn named(&self) -> bool {
        self.requests.len() > 1 || self.scenarios()
    }

    /// The request names the latency log tags histograms with (none for a single request).
    pub fn latency_names(&self) -> Vec<String> {
        if self.requests.len() > 1 {
            self.requests.iter().map(|r| r.name.clone()).collect()
        } else {
            Vec::new()
        }
    }

    /// The plan has `[[scenario]]`s: figures are also counted per scenario.
    pub fn scenarios(&self) -> bool {
        self.parts.iter().any(|p| !p.name.is_empty())
    }

    /// Connections of shard `i`: each part's split evenly, the remainders to the first shards.
    pub fn shard_conns(&self, i: usize) -> u64 {
        self.parts.iter().map(|p| p.shard_conns(self.shard_cpus.len(), i)).sum()
    }

    /// Slots per connection: `--streams` in an HTTP/2 run, else 1.
    pub fn streams(&self) -> usize {
        self.http2.as_ref().map_or(1, |h| h.streams as usize)
    }

    /// Some closed part's connections change during the run (a ramp, a start after the run's
    /// or an end before it): the shards admit them again each tick.
    pub fn admission_varies(&self) -> bool {
        self.parts
            .iter()
            .filter(|p| matches!(p.model, Model::Closed(_)))
            .any(|p| !p.model.profile().is_constant() || !p.start.is_zero() || p.end() < self.duration)
    }

    /// The level the plan asks for `t` seconds after the start: connections (closed) or a
    /// rate (open), summed over the parts that share the model (0 when they do not).
    pub fn level_at(&self, t: f64) -> f64 {
        if let Some(p) = self.single() {
            return p.model.profile().at(t - p.start.as_secs_f64());
        }
        let open = |p: &Part| matches!(p.model, Model::Open(_));
        if self.parts.iter().all(open) || !self.parts.iter().any(open) {
            self.parts.iter().map(|p| p.level_at(t)).sum()
        } else {
            0.0
        }
    }
}

/// Part `i` of `total` split over `parts`: even, the remainder to the first parts.
pub fn split(total: u64, parts: usize, i: usize) -> u64 {
    let n = parts as u64;
    total / n + u64::from((i as u64) < total % n)
}

impl Plan {
    /// Requests the open model's schedule asks for; `None` in the closed model.
    pub fn expected_requests(&self) -> Option<u64> {
        self.expected_requests_until(f64::INFINITY)
    }

    /// Requests the open model's schedule asks for in its first `t` seconds (a plan of one
    /// scenario; each of several has its own, [`Part::scheduled_until`]).
    pub fn expected_requests_until(&self, t: f64) -> Option<u64> {
        self.single().and_then(|p| p.scheduled_until(t))
    }
}

/// Parses and resolves an `http://` or `https://` URL.
pub fn parse_target(text: &str) -> Result<Target, PlanError> {
    let bad = |reason: &str| PlanError::Url { url: text.to_string(), reason: reason.to_string() };
    if !text.contains("://") {
        // `host:port` alone reads as a relative URL, or as a URL whose scheme is the host.
        return Err(bad(&format!("no scheme; did you mean 'http://{text}'?")));
    }
    let url = url::Url::parse(text).map_err(|e| bad(&e.to_string()))?;
    match url.scheme() {
        "http" | "https" => {}
        other => return Err(bad(&format!("scheme '{other}' is not supported; use http:// or https://"))),
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(bad(
            "credentials in the URL are not sent; pass them as a header, e.g. -H 'Authorization: Basic ...'",
        ));
    }
    let host = url.host_str().ok_or_else(|| bad("no host"))?.to_string();
    let tls = url.scheme() == "https";
    let port = url.port_or_known_default().unwrap_or(if tls { 443 } else { 80 });
    // url keeps IPv6 hosts in brackets, which is also how Host and to_socket_addrs want them.
    let authority = match url.port() {
        Some(p) => format!("{host}:{p}"),
        None => host.clone(),
    };
    let lookup = format!("{host}:{port}");
    let addr = lookup
        .to_socket_addrs()
        .map_err(|e| PlanError::Resolve { host: host.clone(), reason: e.to_string() })?
        .next()
        .ok_or_else(|| PlanError::Resolve { host: host.clone(), reason: "no address".into() })?;
    // The URL parser percent-encodes braces in the path; templates (`{{seq}}`) need them back.
    let mut path = url.path().replace("%7B%7B", "{{").replace("%7D%7D", "}}");
    if let Some(q) = url.query() {
        path.push('?');
        path.push_str(q);
    }
    let bare = host.trim_start_matches('[').trim_end_matches(']').to_string();
    Ok(Target { url: text.to_string(), addr, authority, path, host: bare, tls })
}

fn parse_header(text: &str) -> Result<(String, String), PlanError> {
    let bad = || PlanError::Header(text.to_string());
    let (name, value) = text.split_once(':').ok_or_else(bad)?;
    let name = name.trim();
    let value = value.trim();
    if name.is_empty() || !name.bytes().all(is_token) || value.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0) {
        return Err(bad());
    }
    Ok((name.to_string(), value.to_string()))
}

/// `tchar` of RFC 9110 §5.6.2.
fn is_token(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets() {
        let t = parse_target("http://127.0.0.1:8080/a/b?x=1").unwrap();
        assert_eq!(t.addr, "127.0.0.1:8080".parse().unwrap());
        assert_eq!((t.authority.as_str(), t.path.as_str()), ("127.0.0.1:8080", "/a/b?x=1"));
        let t = parse_target("http://[::1]:9/").unwrap();
        assert_eq!(t.addr, "[::1]:9".parse().unwrap());
        assert_eq!(parse_target("http://localhost").unwrap().addr.port(), 80);
        let t = parse_target("https://[::1]/").unwrap();
        assert_eq!((t.addr.port(), t.tls, t.host.as_str(), t.authority.as_str()), (443, true, "::1", "[::1]"));
        assert!(!parse_target("http://localhost").unwrap().tls);
        assert!(matches!(parse_target("ftp://127.0.0.1/"), Err(PlanError::Url { .. })));
        for (text, hint) in [
            ("127.0.0.1:80", "did you mean 'http://127.0.0.1:80'?"),
            ("localhost:8080/x", "did you mean 'http://localhost:8080/x'?"),
            ("http://user:pw@127.0.0.1/", "credentials in the URL are not sent"),
            ("http://user@127.0.0.1/", "credentials in the URL are not sent"),
        ] {
            let e = parse_target(text).unwrap_err().to_string();
            assert!(e.contains(hint), "{text}: {e}");
        }
    }

    #[test]
    fn validation() {
        let ok = PlanInput::new("http://127.0.0.1:1/");
        let plan = ok.clone().build().unwrap();
        assert!(!plan.shard_cpus.is_empty());
        let total: u64 = (0..plan.shard_cpus.len()).map(|i| plan.shard_conns(i)).sum();
        assert_eq!(total, 64);

        let with = |f: &dyn Fn(&mut PlanInput)| {
            let mut p = ok.clone();
            f(&mut p);
            p.build()
        };
        assert!(matches!(with(&|p| p.conns = 0), Err(PlanError::NoConns)));
        assert!(matches!(with(&|p| p.method = "G T".into()), Err(PlanError::Method(_))));
        assert!(matches!(with(&|p| p.headers = vec!["NoColon".into()]), Err(PlanError::Header(_))));
        assert!(matches!(with(&|p| p.headers = vec!["Bad Name: x".into()]), Err(PlanError::Header(_))));
        assert!(matches!(with(&|p| p.shards = Some(0)), Err(PlanError::NoShards)));
        assert!(matches!(with(&|p| p.cores = Some(vec![100_000])), Err(PlanError::Cpu(_))));
        assert!(matches!(with(&|p| p.conns = 10_000_000), Err(PlanError::Limit(_))));
        assert_eq!(with(&|p| p.conns = 1).unwrap().shard_cpus.len(), 1);
        assert!(matches!(with(&|p| p.rate = Some(0.0)), Err(PlanError::Rate)));
        assert!(matches!(with(&|p| p.rate = Some(f64::NAN)), Err(PlanError::Rate)));
        let stages = crate::schedule::parse_stages("0:1s").unwrap();
        assert!(matches!(with(&|p| p.stages = Some(stages.clone())), Err(PlanError::Stages(_))));
        let stages = crate::schedule::parse_stages("10:1s,30:2s,0:1s").unwrap();
        let closed = with(&|p| p.stages = Some(stages.clone())).unwrap();
        assert_eq!((closed.conns, closed.duration), (30, Duration::from_secs(4)));
        let open = with(&|p| {
            p.stages = Some(stages.clone());
            p.rate = Some(10.0)
        })
        .unwrap();
        assert_eq!((open.conns, open.parts[0].model.name()), (64, "open"));
        assert_eq!(open.expected_requests(), Some(10 + 40 + 15));

        let spec = |name: &str, weight: u32| RequestSpec {
            name: name.into(),
            method: "get".into(),
            path: "/x".into(),
            headers: vec!["X-A: 1".into()],
            body: Vec::new(),
            weight,
            expect: (name == "b").then(|| StatusSet::parse("200-299,404").unwrap()),
            checks: Vec::new(),
        };
        let two = with(&|p| p.requests = vec![spec("a", 1), spec("b", 3)]).unwrap();
        assert_eq!(two.requests.len(), 2);
        assert!(two.requests[1].request.bytes().starts_with(b"GET /x HTTP/1.1"));
        // A request's own expected statuses, or the plan's.
        assert!(!two.requests[0].expect.contains(404) && two.requests[1].expect.contains(404));
        assert!(two.requests[0].expect.contains(302) && !two.requests[1].expect.contains(302));
        assert!(matches!(with(&|p| p.requests = vec![spec("a", 0)]), Err(PlanError::NoWeight)));
        assert!(matches!(with(&|p| p.requests = vec![spec("a", 1), spec("a", 1)]), Err(PlanError::Request { .. })));
        assert!(matches!(with(&|p| p.requests = vec![spec("a b", 1)]), Err(PlanError::Request { .. })));
    }

    /// Scenarios: each part's requests are one run of the plan's, prefixed with its name;
    /// flows' steps come first; the pool and the length are every part's.
    #[test]
    fn parts_keep_their_requests_loads_and_offsets() {
        let req = |name: &str, weight: u32| RequestSpec {
            name: name.into(),
            method: "GET".into(),
            path: "/".into(),
            headers: Vec::new(),
            body: Vec::new(),
            weight,
            expect: None,
            checks: Vec::new(),
        };
        let step = |name: &str| StepSpec {
            request: req(name, 1),
            captures: Vec::new(),
            rules: StepRules::default(),
            when: None,
        };
        let flow = FlowSpec {
            name: "f".into(),
            weight: 1,
            steps: vec![step("s1"), step("s2")],
            retry_after_max: RETRY_AFTER_MAX,
        };
        let part = |name: &str| PartInput {
            name: name.into(),
            start: Duration::ZERO,
            conns: 3,
            duration: Duration::from_secs(4),
            rate: None,
            stages: None,
            max_users: None,
            requests: Vec::new(),
            flows: Vec::new(),
        };
        let mut input = PlanInput::new("http://127.0.0.1:1/");
        input.shards = Some(2);
        let browse = PartInput { requests: vec![req("a", 1), req("b", 2)], ..part("browse") };
        let buy = PartInput {
            start: Duration::from_secs(2),
            rate: Some(5.0),
            max_users: Some(4),
            flows: vec![flow.clone()],
            ..part("buy")
        };
        input.parts = vec![browse.clone(), buy.clone()];
        let plan = input.clone().build().unwrap();
        let names: Vec<&str> = plan.requests.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["buy.f.s1", "buy.f.s2", "browse.a", "browse.b"]);
        assert_eq!((plan.parts[0].requests.clone(), plan.parts[0].flows.clone()), (2..4, 0..0));
        assert_eq!((plan.parts[1].requests.clone(), plan.parts[1].flows.clone()), (0..2, 0..1));
        assert_eq!((plan.conns, plan.duration), (3 + 4, Duration::from_secs(6)));
        assert!(plan.named() && plan.scenarios() && plan.single().is_none());
        assert_eq!(plan.parts[1].scheduled_until(f64::INFINITY), Some(20));
        assert_eq!((plan.parts[1].level_at(1.9), plan.parts[1].level_at(2.0)), (0.0, 5.0));
        assert_eq!((0..2).map(|i| plan.shard_conns(i)).sum::<u64>(), 7);

        let mut twice = input.clone();
        twice.parts = vec![browse.clone(), browse.clone()];
        assert!(twice.build().unwrap_err().to_string().contains("scenario 'browse': the name is used twice"));
        let mut bad = input.clone();
        bad.parts = vec![PartInput { name: "a.b".into(), ..browse.clone() }];
        assert!(bad.build().unwrap_err().to_string().contains("a scenario's name is letters"));
        let mut zero = input;
        zero.parts = vec![browse, PartInput { requests: vec![req("z", 0)], ..part("idle") }];
        assert!(zero.build().unwrap_err().to_string().starts_with("scenario 'idle': the request weights add up to 0"));
    }
}
