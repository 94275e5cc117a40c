//! Fault rules: what to match, how often, when, and what to do instead of (or on top of) a
//! plain forward. The same fields come from the admin API (JSON) and the faults file (TOML
//! `[[fault]]` tables); see DESIGN.md "Fault rules".

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Largest abort body a rule may carry: faults are small canned answers, not a web server.
pub const MAX_ABORT_BODY: usize = 64 * 1024;
/// Rules held at once; each request walks the list, so it stays short.
pub const MAX_RULES: usize = 256;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// Assigned (`fault-N`) when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, rename = "match", skip_serializing_if = "Match::is_empty")]
    pub matcher: Match,
    /// Chance per matching request, 0..=1 (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probability: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<Schedule>,
    /// Act on the first N requests the rule matches (across the proxy), then no more.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first: Option<u64>,
    /// Act on every Nth request the rule matches (the Nth, the 2Nth, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub every: Option<u64>,
    /// Path prefixes the rule never matches (health checks, say).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exclude: Vec<String>,
    #[serde(deserialize_with = "action_or_name")]
    pub action: Action,
    /// Off: the rule stays, with its counters, but matches nothing (switched from the admin
    /// page, or `POST /faults/ID/off`).
    #[serde(default = "on", skip_serializing_if = "is_on")]
    pub enabled: bool,
}

fn on() -> bool {
    true
}

fn is_on(enabled: &bool) -> bool {
    *enabled
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Match {
    /// Exact method, e.g. `GET`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_prefix: Option<String>,
    /// The header is present (and, with `value`, equal to it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header: Option<HeaderMatch>,
    /// A gRPC call to exactly this method (`/pkg.Service/Method`): the request's path, on a
    /// request whose `content-type` is `application/grpc*`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grpc_method: Option<String>,
}

impl Match {
    fn is_empty(&self) -> bool {
        self.method.is_none() && self.path_prefix.is_none() && self.header.is_none() && self.grpc_method.is_none()
    }
}

/// A gRPC status code in a rule: written as its name (`"UNAVAILABLE"`) or number (`14`),
/// kept and shown as the name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GrpcStatus(pub u8);

impl Serialize for GrpcStatus {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(engine_http::grpc::code_name(u32::from(self.0)))
    }
}

impl<'de> Deserialize<'de> for GrpcStatus {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Text {
            Number(u64),
            Name(String),
        }
        let text = match Text::deserialize(d)? {
            Text::Number(n) => n.to_string(),
            Text::Name(name) => name,
        };
        engine_http::grpc::parse_code(&text).map(GrpcStatus).map_err(serde::de::Error::custom)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeaderMatch {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// A regular expression the value must match (anywhere: anchor it with `^...$`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub regex: Option<String>,
}

/// Longest `regex` a header match may have; compiled, it is bounded to 1 MiB too.
pub const MAX_REGEX: usize = 1024;
/// The compiled size a header regex may reach (the `regex` crate's limit, in bytes).
const REGEX_SIZE: usize = 1 << 20;

/// Compiles a header match's regex (validated before: it compiles).
pub fn header_regex(pattern: &str) -> Result<regex::bytes::Regex, regex::Error> {
    regex::bytes::RegexBuilder::new(pattern).size_limit(REGEX_SIZE).build()
}

/// Active from `from_s` to `to_s` seconds after the proxy started (either end open).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Schedule {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_s: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to_s: Option<f64>,
}

/// An action, or the bare name of one whose fields all have defaults: `"action": "hang"`
/// is `{"hang": {}}`, `"abort"` is a 503.
fn action_or_name<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Action, D::Error> {
    let v = serde_json::Value::deserialize(d)?;
    let v = match v {
        serde_json::Value::String(name) => serde_json::json!({ name: {} }),
        other => other,
    };
    Action::deserialize(v).map_err(serde::de::Error::custom)
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Action {
    /// Wait before forwarding: `ms` plus a random part of scale `jitter_ms` drawn from
    /// `distribution` (`uniform` 0..jitter, `normal` with that standard deviation, `exponential`
    /// with that mean).
    Delay {
        ms: u64,
        #[serde(default)]
        jitter_ms: u64,
        #[serde(default)]
        distribution: Distribution,
    },
    /// Answer instead of the upstream.
    Abort {
        #[serde(default = "default_abort_status")]
        status: u16,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        retry_after_s: Option<u64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        body: Option<String>,
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        headers: BTreeMap<String, String>,
        /// To a gRPC call: this status instead, as a trailers-only answer with HTTP 200 (what
        /// gRPC servers send); other requests get `status`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        grpc_status: Option<GrpcStatus>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        grpc_message: Option<String>,
    },
    /// Close the client's connection with a TCP reset; on HTTP/2, reset the request's stream
    /// with `h2_code` (default 2, INTERNAL_ERROR) and leave the connection up.
    Reset {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        h2_code: Option<u32>,
    },
    /// Send the response at most this fast.
    Throttle { bytes_per_s: u64 },
    /// Never answer; hold the connection until the client gives up.
    Hang {},
    /// Pass nothing more and close after `ms` (0: never; the client gives up): toxiproxy's
    /// `timeout`. In HTTP mode the request is held, unanswered, then the connection closed.
    Timeout { ms: u64 },
    /// At most `limit` requests upstream at once; up to `queue` more wait up to
    /// `queue_timeout_ms`; the rest get 503 with Retry-After.
    Concurrency {
        limit: u32,
        #[serde(default)]
        queue: u32,
        #[serde(default = "default_queue_timeout")]
        queue_timeout_ms: u64,
    },
    /// Token bucket: `rps` sustained, `burst` at once (default: one second's worth); excess 429.
    RateLimit {
        rps: f64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        burst: Option<u32>,
    },
    /// Stream faults, on bodies and upgrade tunnels, in one direction: each chunk that passes
    /// waits `ms` plus a uniform random part up to `jitter_ms`.
    Latency {
        ms: u64,
        #[serde(default)]
        jitter_ms: u64,
        #[serde(default)]
        direction: Direction,
    },
    /// At most `bytes_per_s` (`throttle` is the downstream case).
    Bandwidth {
        bytes_per_s: u64,
        #[serde(default)]
        direction: Direction,
    },
    /// Writes cut into slices of at most `max_bytes`, `gap_ms` apart.
    Slicer {
        max_bytes: u64,
        #[serde(default)]
        gap_ms: u64,
        #[serde(default)]
        direction: Direction,
    },
    /// The connection is closed once `bytes` have passed (the rest is cut off).
    LimitData {
        bytes: u64,
        #[serde(default)]
        direction: Direction,
    },
    /// The close is held `ms` after the proxy would have closed: downstream, the client's
    /// connection; upstream, a tunnel's half-close towards the upstream.
    SlowClose {
        ms: u64,
        #[serde(default)]
        direction: Direction,
    },
}

/// Which way a stream fault acts: on bytes to the upstream (request bodies, a tunnel's client
/// side) or to the client (response bodies, a tunnel's upstream side).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    Upstream,
    #[default]
    Downstream,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Distribution {
    #[default]
    Uniform,
    Normal,
    Exponential,
}

fn default_abort_status() -> u16 {
    503
}

fn default_queue_timeout() -> u64 {
    1000
}

/// What kind of fault touched a request: the label of the injected-faults counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultKind {
    Delay,
    Abort,
    Reset,
    Throttle,
    Hang,
    /// Refused by a concurrency rule (queue full or queue timeout).
    Overload,
    /// Refused by a rate limit.
    RateLimit,
    Latency,
    Bandwidth,
    Slicer,
    LimitData,
    SlowClose,
    Timeout,
}

impl FaultKind {
    pub const ALL: [FaultKind; 13] = [
        FaultKind::Delay,
        FaultKind::Abort,
        FaultKind::Reset,
        FaultKind::Throttle,
        FaultKind::Hang,
        FaultKind::Overload,
        FaultKind::RateLimit,
        FaultKind::Latency,
        FaultKind::Bandwidth,
        FaultKind::Slicer,
        FaultKind::LimitData,
        FaultKind::SlowClose,
        FaultKind::Timeout,
    ];

    pub fn name(self) -> &'static str {
        match self {
            FaultKind::Delay => "delay",
            FaultKind::Abort => "abort",
            FaultKind::Reset => "reset",
            FaultKind::Throttle => "throttle",
            FaultKind::Hang => "hang",
            FaultKind::Overload => "concurrency",
            FaultKind::RateLimit => "rate_limit",
            FaultKind::Latency => "latency",
            FaultKind::Bandwidth => "bandwidth",
            FaultKind::Slicer => "slicer",
            FaultKind::LimitData => "limit_data",
            FaultKind::SlowClose => "slow_close",
            FaultKind::Timeout => "timeout",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FaultError {
    #[error("fault {id}: {reason}")]
    Invalid { id: String, reason: String },
    #[error("a fault with id {0:?} already exists")]
    DuplicateId(String),
    #[error("no fault with id {0:?}")]
    NotFound(String),
    #[error("at most {MAX_RULES} faults")]
    TooMany,
    #[error("faults file: {0}")]
    File(String),
}

impl Rule {
    fn id(&self) -> &str {
        self.id.as_deref().unwrap_or("(new)")
    }

    /// Checks every field a request would otherwise trip over; `shards` is how many ways the
    /// limits of concurrency and rate rules are split.
    pub fn validate(&self, shards: usize) -> Result<(), FaultError> {
        let bad = |reason: String| Err(FaultError::Invalid { id: self.id().to_string(), reason });
        if let Some(id) = &self.id {
            if id.is_empty() || id.len() > 64 || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)) {
                return bad("id must be 1-64 characters of A-Z a-z 0-9 - _ .".into());
            }
        }
        if let Some(p) = self.probability {
            if !(0.0..=1.0).contains(&p) {
                return bad(format!("probability {p} is not within 0..1"));
            }
        }
        if let Some(s) = self.schedule {
            let (from, to) = (s.from_s.unwrap_or(0.0), s.to_s.unwrap_or(f64::INFINITY));
            // Written so that NaN fails too.
            if !matches!(from.partial_cmp(&0.0), Some(std::cmp::Ordering::Greater | std::cmp::Ordering::Equal))
                || to.partial_cmp(&from) != Some(std::cmp::Ordering::Greater)
            {
                return bad(format!("schedule needs 0 <= from_s < to_s (got {from} .. {to})"));
            }
        }
        if let Err(reason) = self.validate_selection() {
            return bad(reason);
        }
        match &self.action {
            Action::Delay { ms, jitter_ms, .. } if ms.saturating_add(*jitter_ms) > 3_600_000 => {
                bad("delay above one hour".into())
            }
            Action::Abort { status, body, headers, grpc_message, .. } => {
                if grpc_message.as_ref().is_some_and(|m| m.len() > 1024 || m.bytes().any(|b| b < b' ' || b == 0x7f)) {
                    return bad("grpc_message must be at most 1024 printable characters".into());
                }
                if !(200..=599).contains(status) {
                    return bad(format!("abort status {status} must be within 200..599"));
                }
                if body.as_ref().is_some_and(|b| b.len() > MAX_ABORT_BODY) {
                    return bad(format!("abort body above {MAX_ABORT_BODY} bytes"));
                }
                for (k, v) in headers {
                    // A CR or LF here would let a rule write arbitrary bytes into responses.
                    if k.is_empty()
                        || !k.bytes().all(is_token)
                        || v.bytes().any(|b| b < b' ' && b != b'\t' || b == 0x7f)
                    {
                        return bad(format!("abort header {k:?} is not a valid field"));
                    }
                    if ["content-length", "transfer-encoding", "connection"].iter().any(|f| k.eq_ignore_ascii_case(f)) {
                        return bad(format!("abort header {k:?} is set by the proxy"));
                    }
                }
                Ok(())
            }
            Action::Throttle { bytes_per_s: 0 } => bad("throttle bytes_per_s must be at least 1".into()),
            Action::Bandwidth { bytes_per_s: 0, .. } => bad("bandwidth bytes_per_s must be at least 1".into()),
            Action::Latency { ms, jitter_ms, .. } if ms.saturating_add(*jitter_ms) > 3_600_000 => {
                bad("latency above one hour".into())
            }
            Action::Slicer { max_bytes: 0, .. } => bad("slicer max_bytes must be at least 1".into()),
            Action::Slicer { gap_ms, .. } if *gap_ms > 60_000 => bad("slicer gap_ms above one minute".into()),
            Action::SlowClose { ms, .. } if *ms > 3_600_000 => bad("slow_close above one hour".into()),
            Action::Timeout { ms } if *ms > 3_600_000 => bad("timeout above one hour".into()),
            Action::Concurrency { limit: 0, .. } => bad("concurrency limit must be at least 1".into()),
            Action::Concurrency { limit, queue_timeout_ms, .. } => {
                if (*limit as usize) < shards {
                    return bad(format!(
                        "concurrency limit {limit} is below the proxy's {shards} shards (the limit is split \
                         between them, each needs at least 1); raise it to {shards} or run with --shards {limit}"
                    ));
                }
                if *queue_timeout_ms > 3_600_000 {
                    return bad("queue_timeout_ms above one hour".into());
                }
                Ok(())
            }
            Action::RateLimit { rps, burst } => {
                if !(rps.is_finite() && *rps > 0.0) {
                    return bad(format!("rate_limit rps must be positive (got {rps})"));
                }
                if burst.is_some_and(|b| (b as usize) < shards) {
                    return bad(format!("rate_limit burst must be at least the proxy's {shards} shards"));
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// What a rule matches and selects: method, path, header (and its regex), first/every,
    /// exclude. The reason when one is wrong.
    fn validate_selection(&self) -> Result<(), String> {
        if let Some(m) = &self.matcher.method {
            if m.is_empty() || !m.bytes().all(is_token) {
                return Err(format!("method {m:?} is not an HTTP method"));
            }
        }
        if let Some(p) = &self.matcher.path_prefix {
            if !p.starts_with('/') {
                return Err(format!("path_prefix {p:?} must start with /"));
            }
        }
        if let Some(m) = &self.matcher.grpc_method {
            if !m.starts_with('/') || m[1..].split('/').count() != 2 || m.bytes().any(|b| b <= b' ') {
                return Err(format!("grpc_method {m:?} must be /package.Service/Method"));
            }
        }
        if let Some(h) = &self.matcher.header {
            if h.name.is_empty() || !h.name.bytes().all(is_token) {
                return Err(format!("header name {:?} is not a field name", h.name));
            }
            if let Some(re) = &h.regex {
                if h.value.is_some() {
                    return Err("a header match has a value or a regex, not both".into());
                }
                if re.len() > MAX_REGEX {
                    return Err(format!("header regex above {MAX_REGEX} characters"));
                }
                if let Err(e) = header_regex(re) {
                    return Err(format!("header regex {re:?}: {e}"));
                }
            }
        }
        match (self.first, self.every) {
            (Some(_), Some(_)) => return Err("first and every do not go together".into()),
            (Some(0), _) => return Err("first must be at least 1".into()),
            (_, Some(0)) => return Err("every must be at least 1".into()),
            _ => {}
        }
        if let Some(p) = self.exclude.iter().find(|p| !p.starts_with('/')) {
            return Err(format!("exclude {p:?} must start with /"));
        }
        Ok(())
    }

    /// In TCP mode (`--tcp`) a rule acts on whole connections: it matches no request fields
    /// and gives no HTTP answer.
    pub fn validate_tcp(&self) -> Result<(), FaultError> {
        let bad = |reason: &str| Err(FaultError::Invalid { id: self.id().to_string(), reason: reason.to_string() });
        if !self.matcher.is_empty() || !self.exclude.is_empty() {
            return bad("in TCP mode a rule matches connections: no method, path_prefix, header or exclude");
        }
        match self.action {
            Action::Abort { .. } | Action::Concurrency { .. } | Action::RateLimit { .. } => {
                bad("abort, concurrency and rate_limit answer HTTP; in TCP mode use reset, timeout, hang, delay \
                 (before connecting upstream) or a stream fault")
            }
            _ => Ok(()),
        }
    }

    /// True when the rule is active `t_s` seconds after the proxy started.
    pub fn active_at(&self, t_s: f64) -> bool {
        self.schedule.is_none_or(|s| t_s >= s.from_s.unwrap_or(0.0) && s.to_s.is_none_or(|to| t_s < to))
    }

    /// True when the request matches; `header` looks a field up by (case-insensitive) name,
    /// `regex` is the header match's regex compiled.
    pub fn matches<'a>(
        &self,
        method: &str,
        path: &str,
        header: impl Fn(&str) -> Option<&'a [u8]>,
        regex: Option<&regex::bytes::Regex>,
    ) -> bool {
        let m = &self.matcher;
        let grpc = || header("content-type").is_some_and(|t| t.starts_with(b"application/grpc"));
        m.grpc_method.as_ref().is_none_or(|g| g == path && grpc())
            && m.method.as_ref().is_none_or(|x| x == method)
            && m.path_prefix.as_ref().is_none_or(|p| path.starts_with(p.as_str()))
            && !self.exclude.iter().any(|p| path.starts_with(p.as_str()))
            && m.header.as_ref().is_none_or(|h| match header(&h.name) {
                None => false,
                Some(v) => {
                    h.value.as_ref().is_none_or(|want| v == want.as_bytes()) && regex.is_none_or(|r| r.is_match(v))
                }
            })
    }

    /// Whether the rule acts on the `n`th request it matched (from 1): `first` and `every`.
    pub fn selects(&self, n: u64) -> bool {
        self.first.is_none_or(|f| n <= f) && self.every.is_none_or(|e| n.is_multiple_of(e))
    }
}

fn is_token(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// The largest faults file: at most [`MAX_RULES`] rules, each a few lines.
pub const MAX_FILE: u64 = 1024 * 1024;

/// The `[[fault]]` tables of a faults file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FaultsFile {
    #[serde(default)]
    fault: Vec<Rule>,
}

/// Parses a faults file (TOML); errors name the line.
pub fn parse_faults_file(text: &str) -> Result<Vec<Rule>, FaultError> {
    toml::from_str::<FaultsFile>(text).map(|f| f.fault).map_err(|e| FaultError::File(e.to_string()))
}

#[cfg(test)]
mod tests;
