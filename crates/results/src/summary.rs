//! The summary of a run: the typed, versioned contract of `summary.json` (DESIGN.md),
//! computed from the exact merge of every shard's measurements, and read back typed by
//! `engine report` (compare, html, merge, windows).
//!
//! [`SCHEMA_VERSION`] is written with every summary. A summary of a newer version is
//! refused; a field missing from an older one is an error, never a silent 0.

use std::collections::BTreeMap;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::stats::{ErrorKind, Totals};

/// The version of the summary's shape. Raise it when a field is added, removed or changes
/// meaning.
pub const SCHEMA_VERSION: u32 = 6;

/// One of `count` processes that together run one plan; `index` counts from 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Worker {
    pub index: u32,
    pub count: u32,
}

/// Latency figures in milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Latency {
    pub mean: f64,
    pub p50: f64,
    pub p90: f64,
    pub p95: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
}

impl Latency {
    pub fn from_histogram(h: &Histogram<u64>) -> Self {
        if h.is_empty() {
            return Self::default();
        }
        let ms = |us: u64| us as f64 / 1000.0;
        // Quantiles report the highest value equivalent to the bucket, like wrk and HdrHistogram.
        let q = |p: f64| ms(h.value_at_quantile(p));
        Self {
            mean: (h.mean() / 1000.0 * 1000.0).round() / 1000.0,
            p50: q(0.50),
            p90: q(0.90),
            p95: q(0.95),
            p99: q(0.99),
            p999: q(0.999),
            max: ms(h.max()),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Errors {
    /// Failed requests: those without a response, and responses of an unexpected status.
    pub total: u64,
    pub connect: u64,
    pub timeout: u64,
    pub reset: u64,
    pub closed: u64,
    pub parse: u64,
    /// Responses whose status the plan does not expect (by default outside 200–399).
    pub status: u64,
    /// TLS failures (the reasons are in [`TlsSummary::errors`]).
    pub tls: u64,
    /// Responses of an expected status that failed a check (not a soft one).
    pub check: u64,
    /// HTTP/2 streams the server reset (the codes are in `http2.reset_streams`; schema 5).
    pub reset_stream: u64,
    /// HTTP/2 protocol failures of the connection (or a request HTTP/2 cannot carry).
    pub h2: u64,
    /// gRPC calls that ended with a status the plan does not expect (by code in `grpc.codes`).
    pub grpc: u64,
}

impl Errors {
    /// Failed requests that got a response (an unexpected status, a failed check, a gRPC
    /// status not expected).
    pub fn answered(&self) -> u64 {
        self.status + self.check + self.grpc
    }

    /// Adds these counts to `c`'s, by kind (merging runs).
    pub fn add_to(&self, c: &mut crate::stats::Counters) {
        for (kind, n) in [
            (ErrorKind::Connect, self.connect),
            (ErrorKind::Timeout, self.timeout),
            (ErrorKind::Reset, self.reset),
            (ErrorKind::Closed, self.closed),
            (ErrorKind::Parse, self.parse),
            (ErrorKind::Status, self.status),
            (ErrorKind::Tls, self.tls),
            (ErrorKind::Check, self.check),
            (ErrorKind::ResetStream, self.reset_stream),
            (ErrorKind::H2, self.h2),
            (ErrorKind::Grpc, self.grpc),
        ] {
            c.errors[kind as usize] += n;
        }
    }
}

/// Checks on responses: how often each passed, by name (several requests may share one).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChecksSummary {
    pub passed: u64,
    pub failed: u64,
    /// Passed over evaluated (0 when none was).
    pub rate: f64,
    pub by_name: BTreeMap<String, CheckSummary>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckSummary {
    pub passed: u64,
    pub failed: u64,
    pub rate: f64,
}

impl CheckSummary {
    pub fn new(passed: u64, failed: u64) -> Self {
        let rate = if passed + failed == 0 { 0.0 } else { round6(passed as f64 / (passed + failed) as f64) };
        CheckSummary { passed, failed, rate }
    }
}

impl ChecksSummary {
    /// The checks' figures from their counts, by the plan's check names (`None` without
    /// checks).
    pub fn new(names: &[String], counts: &[crate::stats::CheckCount]) -> Option<Self> {
        if names.is_empty() {
            return None;
        }
        let mut by_name = BTreeMap::new();
        for (i, name) in names.iter().enumerate() {
            let c = counts.get(i).copied().unwrap_or_default();
            by_name.insert(name.clone(), CheckSummary::new(c.passed, c.failed));
        }
        Some(Self::from_names(by_name))
    }

    /// The totals of checks counted by name (merging runs, too).
    pub fn from_names(by_name: BTreeMap<String, CheckSummary>) -> Self {
        let passed = by_name.values().map(|c| c.passed).sum();
        let failed = by_name.values().map(|c| c.failed).sum();
        ChecksSummary { passed, failed, rate: CheckSummary::new(passed, failed).rate, by_name }
    }
}

/// How TLS went (https:// targets only).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSummary {
    /// Negotiated in the pre-flight handshake: `TLSv1.3`, `TLSv1.2`.
    pub version: String,
    /// The cipher suite's IANA name.
    pub cipher: String,
    pub handshakes_full: u64,
    pub handshakes_resumed: u64,
    /// Handshakes completed per second of the run.
    pub handshakes_per_s: f64,
    /// Resumed handshakes over all handshakes (0 when there was none).
    pub resumed_share: f64,
    pub errors: TlsErrors,
}

/// TLS failures by reason.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsErrors {
    /// The server's certificate was refused (untrusted, expired, another name), or ours.
    pub certificate: u64,
    /// The server sent a fatal alert.
    pub alert: u64,
    /// Bytes that are not valid TLS, or do not decrypt.
    pub bad_record: u64,
    /// The connection closed mid-record, or without close_notify where that loses data.
    pub truncated: u64,
    /// The handshake did not complete (no common version or cipher, closed, timed out).
    pub handshake: u64,
    pub other: u64,
}

impl TlsSummary {
    pub fn new(setup: &crate::stats::Setup, duration_s: f64) -> Self {
        let (full, resumed) = (setup.handshakes_full, setup.handshakes_resumed);
        let e = setup.tls_errors;
        TlsSummary {
            version: String::new(),
            cipher: String::new(),
            handshakes_full: full,
            handshakes_resumed: resumed,
            handshakes_per_s: if duration_s > 0.0 { round3((full + resumed) as f64 / duration_s) } else { 0.0 },
            resumed_share: if full + resumed > 0 { round6(resumed as f64 / (full + resumed) as f64) } else { 0.0 },
            errors: TlsErrors {
                certificate: e[0],
                alert: e[1],
                bad_record: e[2],
                truncated: e[3],
                handshake: e[4],
                other: e[5],
            },
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Connections {
    /// TCP connections established during the run (reconnects included).
    pub opened: u64,
    /// Most connections open at once (per interval, summed over shards).
    pub peak_open: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Bytes {
    pub sent: u64,
    pub received: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Threshold {
    pub expr: String,
    pub pass: bool,
    /// The value measured over the whole run (ms, a fraction, or requests per second).
    pub value: f64,
    /// Nothing was measured (no response selected): the threshold fails, and `value` is
    /// not a figure.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub no_data: bool,
}

/// One named request's figures (scenarios).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NamedSummary {
    pub method: String,
    pub weight: u32,
    pub requests: u64,
    pub rps: f64,
    pub status: BTreeMap<String, u64>,
    pub errors: Errors,
    /// Corrected latency.
    pub latency_ms: Latency,
}

impl NamedSummary {
    pub fn new(method: &str, weight: u32, n: &crate::stats::NameStats, duration_s: f64) -> Self {
        let c = &n.counters;
        NamedSummary {
            method: method.to_string(),
            weight,
            requests: c.requests,
            rps: if duration_s > 0.0 { round3(c.requests as f64 / duration_s) } else { 0.0 },
            status: c.statuses().map(|(s, n)| (s.to_string(), n)).collect(),
            errors: Errors::of(c),
            latency_ms: Latency::from_histogram(&n.latency),
        }
    }
}

impl Errors {
    pub fn of(c: &crate::stats::Counters) -> Self {
        let e = |k: ErrorKind| c.errors_of(k);
        Errors {
            total: c.errors_total(),
            connect: e(ErrorKind::Connect),
            timeout: e(ErrorKind::Timeout),
            reset: e(ErrorKind::Reset),
            closed: e(ErrorKind::Closed),
            parse: e(ErrorKind::Parse),
            status: e(ErrorKind::Status),
            tls: e(ErrorKind::Tls),
            check: e(ErrorKind::Check),
            reset_stream: e(ErrorKind::ResetStream),
            h2: e(ErrorKind::H2),
            grpc: e(ErrorKind::Grpc),
        }
    }
}

/// The latency percentile distribution, HdrHistogram-style: percentiles from 0 to 99.999
/// spaced evenly on a log scale of 1/(1-p), then the maximum (100).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Distribution {
    pub percentile: Vec<f64>,
    pub corrected_ms: Vec<f64>,
    pub uncorrected_ms: Vec<f64>,
}

impl Distribution {
    pub fn new(corrected: &Histogram<u64>, uncorrected: &Histogram<u64>) -> Self {
        if corrected.is_empty() {
            return Self::default();
        }
        let mut d = Self::default();
        for k in 0..=51 {
            let q = if k == 51 { 1.0 } else { 1.0 - 10f64.powf(-(k as f64) / 10.0) };
            d.percentile.push(round3(q * 100.0));
            d.corrected_ms.push(corrected.value_at_quantile(q) as f64 / 1000.0);
            d.uncorrected_ms.push(uncorrected.value_at_quantile(q) as f64 / 1000.0);
        }
        d
    }
}

/// The open model's schedule against what was sent.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Schedule {
    /// Requests per second asked for, on average over the run.
    pub target_rps: f64,
    /// Requests the schedule asked for, and requests started.
    pub expected: u64,
    pub sent: u64,
    /// Completed responses per second.
    pub achieved_rps: f64,
    /// The most any request started after it was due: how far behind the schedule the run fell.
    pub max_lag_ms: f64,
    /// The asked rate was not reached: fewer than 99% of the scheduled requests were sent, or,
    /// in a run that reached its planned end, any of them was not.
    pub behind: bool,
}

/// One interval of the run, merged across shards.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Point {
    /// Seconds since the start at the end of the interval.
    pub t_s: f64,
    /// What the plan asked for at the end of the interval: connections (closed model) or
    /// requests per second (open model).
    pub target: f64,
    pub requests: u64,
    pub rps: f64,
    pub errors: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub p50_uncorrected_ms: f64,
    pub p99_uncorrected_ms: f64,
    pub open: u64,
    /// Failed requests over requests tried, this interval.
    pub error_rate: f64,
    /// The busiest shard's share of the interval on the CPU: near 1, the generator itself
    /// was the bottleneck and latency includes its own queueing.
    pub busy: f64,
}

/// One scenario's figures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScenarioSummary {
    pub model: Model,
    /// When its load started, in seconds from the run's start, and how long it was planned.
    pub start_s: f64,
    pub planned_s: f64,
    /// Its connections: the most it had open at once.
    pub conns: u64,
    /// Completed responses, whatever their status.
    pub requests: u64,
    /// Over its own time: its start to its end, or to the run's if that came first.
    pub rps: f64,
    pub status: BTreeMap<String, u64>,
    pub errors: Errors,
    /// Corrected latency of its responses.
    pub latency_ms: Latency,
    /// Requests started (written, or tried).
    pub sent: u64,
    /// Open model: the requests its schedule asked for while the run lasted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheduled_requests: Option<u64>,
    /// Arrival-rate flows: the iterations (users walking a flow) its schedule asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheduled_iterations: Option<u64>,
    /// Requests in flight when the run ended.
    pub abandoned: u64,
    /// Arrival-rate flows: its iterations (when it is the run's only scenario of them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iterations: Option<IterationSummary>,
}

/// What a scenario was planned as: the part of its summary its counts do not give.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Planned {
    pub model: Model,
    pub start_s: f64,
    pub planned_s: f64,
    pub conns: u64,
}

/// How load was generated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Model {
    /// As fast as responses return, from a number of connections.
    Closed,
    /// A fixed arrival rate, whatever the responses do.
    Open,
    /// Scenarios of both models in one run (each scenario's is in `scenarios`).
    Mixed,
}

impl Model {
    pub fn name(self) -> &'static str {
        match self {
            Model::Closed => "closed",
            Model::Open => "open",
            Model::Mixed => "mixed",
        }
    }
}

/// Which safety stop fired, and when.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fired {
    pub expr: String,
    /// Seconds since the start at the end of the interval that fired it.
    pub at_s: f64,
    /// The value measured in that interval.
    pub value: f64,
}

/// The figures a named profile was run for.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProfileReport {
    pub name: String,
    /// Connections (closed model) or requests per second (open model) at the peak.
    pub peak: f64,
    /// Stress: the highest level whose hold, as a whole, met the criterion.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capacity: Option<f64>,
    /// Stress: the level that failed it (the run stopped there).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed_at: Option<f64>,
    /// Stress: the highest completed rate of any interval that met the criterion.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub best_rps: Option<f64>,
    /// Spike and recovery: seconds after the drop until p99 was back within 1.5x of the
    /// baseline; `None` if it never was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovery_s: Option<f64>,
    /// The criterion a level (stress) or an interval had to meet, in words.
    pub criterion: String,
    /// Each level judged on its whole hold (the ramp up to it is not), with its figures and
    /// what failed; only a stress run stops at a failed level.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub levels: Vec<Level>,
}

/// What a level of a profile measured over its hold, and the verdict.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Level {
    /// Connections (closed model) or requests per second (open model).
    pub level: f64,
    /// Seconds of the hold judged (the step up to the level is not).
    pub held_s: f64,
    /// Over the whole hold: corrected p99, failed requests over requests tried, completed rate.
    pub p99_ms: f64,
    pub error_rate: f64,
    pub rps: f64,
    /// Corrected p50 and p95, responses and failed requests over the hold (`None` in a
    /// summary of an engine before schema 4, which did not record them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p50_ms: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p95_ms: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub errors: Option<u64>,
    /// Checks passed and failed over the hold (`None`: the plan has none, or none ran).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checks_passed: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checks_failed: Option<u64>,
    pub pass: bool,
    /// Why it failed, with the figure: `completed 565.0/s, under 95% of the asked 600/s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed_on: Option<String>,
}

/// Arrival-rate flows: iterations (a user walking a whole flow) started at the asked rate.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IterationSummary {
    pub started: u64,
    pub completed: u64,
    pub failed: u64,
    /// Due while every user was busy (`--max-users`): never started.
    pub dropped: u64,
    /// Iterations started per second of the schedule.
    pub rate: f64,
    /// Iteration end − when it was due (corrected for coordinated omission).
    pub latency_ms: Latency,
    /// The most users walking a flow at once.
    pub users_peak: u64,
    /// Users in flight by Little's law: the rate times the mean iteration time.
    pub users_littles_law: f64,
}

impl IterationSummary {
    /// `ran_s`: the seconds of schedule that ran.
    pub fn new(i: &crate::stats::Iterations, ran_s: f64) -> Self {
        let rate = if ran_s > 0.0 { i.started as f64 / ran_s } else { 0.0 };
        let latency_ms = Latency::from_histogram(&i.latency);
        IterationSummary {
            started: i.started,
            completed: i.completed,
            failed: i.failed,
            dropped: i.dropped,
            rate: round3(rate),
            latency_ms,
            users_peak: i.peak_users,
            users_littles_law: round3(rate * latency_ms.mean / 1000.0),
        }
    }
}

/// How busy the generator itself was: a shard whose thread was on the CPU for most of an
/// interval could not send or read on time, and its latency includes its own queueing.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Generator {
    /// Some shard was busy above [`SATURATED`] of an interval.
    pub saturated: bool,
    pub shards: Vec<ShardLoad>,
}

/// A shard busy above this share of an interval is saturated.
pub const SATURATED: f64 = 0.9;

/// One shard's time on the CPU, as shares of an interval.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShardLoad {
    pub cpu: usize,
    pub busy_mean: f64,
    pub busy_max: f64,
}

/// A change made to a running blast (`POST /run/...`): from when, what, from which level to
/// which (connections in the closed model, requests a second in the open one).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Intervention {
    /// Seconds after the start when it took effect.
    pub at_s: f64,
    /// `rate`, `conns`, `pause`, `resume` or `stop`.
    pub what: String,
    pub from: f64,
    pub to: f64,
}

/// The run's summary; serialises to the summary JSON of the contract.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Summary {
    /// [`SCHEMA_VERSION`] of the engine that wrote it.
    pub schema_version: u32,
    pub target: String,
    pub model: Model,
    pub conns: u64,
    pub shards: usize,
    /// Completed responses, whatever their status.
    pub requests: u64,
    /// Seconds spent opening the connections before the clock started.
    pub connect_s: f64,
    /// When the load began (after the connect phase), in seconds since the Unix epoch: the
    /// wall clock `report merge` aligns workers' time series on.
    pub start_unix_s: f64,
    /// This run's place among workers that ran one plan together.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker: Option<Worker>,
    /// Seconds of load, from the start after the connect phase to the last response.
    pub duration_s: f64,
    pub rps: f64,
    pub status: BTreeMap<String, u64>,
    pub errors: Errors,
    pub latency_ms: Latency,
    pub latency_uncorrected_ms: Latency,
    /// Corrected latency of the responses whose status was expected: fast failures (a quick
    /// 503) cannot flatter it.
    pub latency_ok_ms: Latency,
    /// Corrected latency per status class seen (`2xx`, `5xx`, ...).
    pub latency_by_class_ms: BTreeMap<String, Latency>,
    pub latency_distribution: Distribution,
    /// TCP connect time (SYN to connected) of the connections opened.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connect_ms: Option<Latency>,
    /// TLS handshake time (connected to the handshake's end), https:// targets only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_handshake_ms: Option<Latency>,
    /// TLS versions, handshakes and failures, https:// targets only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsSummary>,
    /// HTTP/2 runs only (`--http2`, `--http2-prior-knowledge`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http2: Option<crate::http2::Http2Summary>,
    /// gRPC runs only (`grpc://`, `grpcs://`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grpc: Option<crate::grpc::GrpcSummary>,
    /// Per named request, when the plan has several (a scenario).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub requests_by_name: BTreeMap<String, NamedSummary>,
    /// Per scenario, when the plan has `[[scenario]]`s.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub scenarios: BTreeMap<String, ScenarioSummary>,
    pub connections: Connections,
    pub bytes: Bytes,
    pub generator: Generator,
    /// Checks on responses, when the plan has any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checks: Option<ChecksSummary>,
    /// Arrival-rate flows only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iterations: Option<IterationSummary>,
    /// Open model only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<Schedule>,
    pub thresholds: Vec<Threshold>,
    /// The safety stop (`--abort-on`) that ended the run, if one did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stopped_by: Option<Fired>,
    /// What a named profile was run for (capacity, recovery time).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<ProfileReport>,
    /// Requests still in flight when the run ended (neither completed nor errors).
    pub abandoned: u64,
    /// The run was stopped by an interrupt before its planned end.
    pub interrupted: bool,
    /// Changes a person made to the running blast through its control API, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub interventions: Vec<Intervention>,
    pub timeseries: Vec<Point>,
    /// Anything that makes the figures less than complete (a failed shard, say).
    pub warnings: Vec<String>,
}

impl Summary {
    pub fn new(target: &str, conns: u64, shards: usize, totals: &Totals, duration_s: f64) -> Self {
        let c = &totals.counters;
        Summary {
            schema_version: SCHEMA_VERSION,
            target: target.to_string(),
            model: Model::Closed,
            conns,
            shards,
            requests: c.requests,
            connect_s: 0.0,
            start_unix_s: 0.0,
            worker: None,
            duration_s: round3(duration_s),
            rps: if duration_s > 0.0 { round3(c.requests as f64 / duration_s) } else { 0.0 },
            status: c.statuses().map(|(s, n)| (s.to_string(), n)).collect(),
            errors: Errors::of(c),
            latency_ms: Latency::from_histogram(&totals.latency),
            latency_uncorrected_ms: Latency::from_histogram(&totals.latency_uncorrected),
            latency_ok_ms: Latency::from_histogram(totals.ok_latency()),
            latency_by_class_ms: (1..=5u16)
                .filter_map(|c| {
                    totals.class(c).filter(|h| !h.is_empty()).map(|h| (format!("{c}xx"), Latency::from_histogram(h)))
                })
                .collect(),
            latency_distribution: Distribution::new(&totals.latency, &totals.latency_uncorrected),
            connect_ms: totals
                .setup
                .as_ref()
                .filter(|s| !s.connect.is_empty())
                .map(|s| Latency::from_histogram(&s.connect)),
            tls_handshake_ms: totals
                .setup
                .as_ref()
                .and_then(|s| s.handshake.as_deref())
                .filter(|h| !h.is_empty())
                .map(Latency::from_histogram),
            tls: totals
                .setup
                .as_ref()
                .filter(|s| s.handshake.as_deref().is_some_and(|h| !h.is_empty()) || c.errors_of(ErrorKind::Tls) > 0)
                .map(|s| TlsSummary::new(s, duration_s)),
            http2: None,
            grpc: None,
            requests_by_name: BTreeMap::new(),
            scenarios: BTreeMap::new(),
            connections: Connections { opened: c.conns_opened, peak_open: totals.peak_open },
            bytes: Bytes { sent: c.bytes_sent, received: c.bytes_received },
            generator: Generator::default(),
            checks: None,
            iterations: None,
            schedule: None,
            thresholds: Vec::new(),
            profile: None,
            stopped_by: None,
            abandoned: c.abandoned,
            interrupted: false,
            interventions: Vec::new(),
            timeseries: Vec::new(),
            warnings: Vec::new(),
        }
    }
}

impl Errors {
    /// The kinds that occurred, as `connect 12, timeout 3` (empty when none did).
    pub fn kinds(&self) -> String {
        [
            ("connect", self.connect),
            ("timeout", self.timeout),
            ("reset", self.reset),
            ("closed", self.closed),
            ("parse", self.parse),
            ("status", self.status),
            ("tls", self.tls),
            ("check", self.check),
            ("reset_stream", self.reset_stream),
            ("h2", self.h2),
            ("grpc", self.grpc),
        ]
        .iter()
        .filter(|(_, n)| *n > 0)
        .map(|(k, n)| format!("{k} {n}"))
        .collect::<Vec<_>>()
        .join(", ")
    }
}

impl Summary {
    /// Warnings about a target that stopped answering: a run without a single response, or
    /// one whose last second or more brought only errors. The error rate over a whole run is
    /// of attempts, and a connection that cannot connect tries about once a second, so an
    /// outage after a busy start would read as a small rate without them.
    pub fn answer_warnings(&self) -> Vec<String> {
        if self.requests == 0 {
            let why = match self.errors.total {
                0 => "and nothing failed: no request was sent".to_string(),
                _ => format!("{} failed attempts: {}", self.errors.total, self.errors.kinds()),
            };
            return vec![format!("not one response in the run: the target answered nothing ({why})")];
        }
        let Some(last) = self.timeseries.iter().rposition(|p| p.requests > 0) else { return Vec::new() };
        let silent = &self.timeseries[last + 1..];
        let failed: u64 = silent.iter().map(|p| p.errors).sum();
        let (from, to) = (self.timeseries[last].t_s, silent.last().map_or(0.0, |p| p.t_s));
        if failed == 0 || to - from < 1.0 {
            return Vec::new();
        }
        vec![format!(
            "the target answered nothing after {from:.1} s: {:.1} s of the {:.1} s run brought only errors ({failed} failed              attempts); the run's error rate counts attempts, so it understates an outage",
            to - from,
            self.duration_s
        )]
    }
}

/// How a run ended, for people and for its exit code: the first of these that applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Stopped by an interrupt before its planned end (exit 130).
    Interrupted,
    /// A safety stop fired (exit 5).
    SafetyStop,
    /// Not one response completed: the target answered nothing during the run (exit 3, as a
    /// target unreachable before the start).
    NoResponse,
    /// A threshold failed, or had no data (exit 4).
    ThresholdFailed,
    /// Exit 0.
    Passed,
}

impl Verdict {
    /// A word for tables (summary.csv).
    pub const fn name(self) -> &'static str {
        match self {
            Verdict::Interrupted => "interrupted",
            Verdict::SafetyStop => "safety_stop",
            Verdict::NoResponse => "no_response",
            Verdict::ThresholdFailed => "threshold_failed",
            Verdict::Passed => "passed",
        }
    }

    /// The exit code of the contract (DESIGN.md).
    pub const fn exit_code(self) -> u8 {
        match self {
            Verdict::Interrupted => 130,
            Verdict::SafetyStop => 5,
            Verdict::NoResponse => 3,
            Verdict::ThresholdFailed => 4,
            Verdict::Passed => 0,
        }
    }
}

impl Summary {
    /// The one verdict on a run: `engine blast`, `engine demo` and `engine report merge`
    /// exit by it.
    pub fn verdict(&self) -> Verdict {
        if self.interrupted {
            Verdict::Interrupted
        } else if self.stopped_by.is_some() {
            Verdict::SafetyStop
        } else if self.requests == 0 {
            Verdict::NoResponse
        } else if self.thresholds.iter().any(|t| !t.pass) {
            Verdict::ThresholdFailed
        } else {
            Verdict::Passed
        }
    }
}

impl Point {
    pub fn new(t_s: f64, interval_s: f64, target: f64, i: &Totals) -> Self {
        let ms = |h: &Histogram<u64>, q: f64| {
            if h.is_empty() {
                0.0
            } else {
                h.value_at_quantile(q) as f64 / 1000.0
            }
        };
        Point {
            t_s: round3(t_s),
            target: round3(target),
            requests: i.counters.requests,
            rps: round3(i.counters.requests as f64 / interval_s),
            errors: i.counters.errors_total(),
            p50_ms: ms(&i.latency, 0.5),
            p99_ms: ms(&i.latency, 0.99),
            p50_uncorrected_ms: ms(&i.latency_uncorrected, 0.5),
            p99_uncorrected_ms: ms(&i.latency_uncorrected, 0.99),
            open: i.open,
            error_rate: round6(i.counters.error_rate()),
            busy: 0.0,
        }
    }
}

impl Schedule {
    /// `expected` requests scheduled in `duration_s` (of the plan, or of the part that ran).
    pub fn new(expected: u64, duration_s: f64, totals: &Totals, elapsed_s: f64) -> Self {
        let sent = totals.counters.sent;
        Schedule {
            target_rps: round3(expected as f64 / duration_s),
            expected,
            sent,
            achieved_rps: round3(totals.counters.requests as f64 / elapsed_s.max(1e-9)),
            max_lag_ms: totals.max_lag_us as f64 / 1000.0,
            behind: (sent as f64) < 0.99 * expected as f64,
        }
    }
}

fn round6(x: f64) -> f64 {
    (x * 1e6).round() / 1e6
}

pub(crate) fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}
