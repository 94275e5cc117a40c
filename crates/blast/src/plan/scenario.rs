//! A scenario's requests and flows: the specs as a user writes them, and their validation
//! into named, rendered requests and flows of request indices.

use std::time::Duration;

use serde_json_path::JsonPath;

use super::expect::StatusSet;
use super::{is_token, parse_header, PlanError, PlannedRequest, Target, MAX_BODY};
use crate::check::CheckSpec;
use crate::render::RenderedRequest;

/// One request of a scenario, before validation. Its headers come after `PlanInput::headers`
/// (the defaults), so a request can override them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestSpec {
    pub name: String,
    pub method: String,
    /// Path and query; joined to the target URL's origin.
    pub path: String,
    pub headers: Vec<String>,
    pub body: Vec<u8>,
    /// Share of the requests: weight / sum of weights.
    pub weight: u32,
    /// The statuses this request expects (`None`: the plan's).
    pub expect: Option<StatusSet>,
    /// Checks on its responses.
    pub checks: Vec<CheckSpec>,
}

/// A flow of a scenario, before validation: steps one connection runs in order, as a user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlowSpec {
    pub name: String,
    pub weight: u32,
    pub steps: Vec<StepSpec>,
    /// The longest `Retry-After` a failed step's answer makes its user wait.
    pub retry_after_max: Duration,
}

/// The default of [`FlowSpec::retry_after_max`]: a server may ask a user to come back later,
/// but a run of minutes should not lose its users for an hour.
pub const RETRY_AFTER_MAX: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepSpec {
    /// The step's request; its name becomes `FLOW.STEP`.
    pub request: RequestSpec,
    /// Pause after the step's response, before the next step.
    pub think: Duration,
    /// `(variable, source)`: what to keep from the response for later steps' `{{cap.VARIABLE}}`.
    pub captures: Vec<(String, CaptureSource)>,
}

/// Where a captured value comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CaptureSource {
    /// A response header (the name compared without case).
    Header(String),
    /// The first node a JSONPath selects in a JSON response body (at most 64 KiB of it is
    /// kept): `json:$.items[0].id`, or `json:FIELD` for a top-level field.
    Json(Box<JsonPath>),
}

impl CaptureSource {
    /// Parses `header:NAME`, `json:$.PATH` (RFC 9535 JSONPath, as checks use) or `json:FIELD`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let bad = |why: String| format!("invalid capture '{text}': {why}");
        match text.split_once(':') {
            Some(("header", h)) if !h.trim().is_empty() => Ok(Self::Header(h.trim().to_ascii_lowercase())),
            Some(("json", f)) if !f.trim().is_empty() => {
                let f = f.trim();
                let path =
                    if f.starts_with('$') { f.to_string() } else { format!("$[{}]", serde_json::Value::from(f)) };
                JsonPath::parse(&path).map(|p| Self::Json(Box::new(p))).map_err(|e| bad(format!("JSONPath '{f}': {e}")))
            }
            _ => Err(bad("use header:NAME, json:$.PATH or json:FIELD".into())),
        }
    }
}

/// A validated flow: indices into [`Plan::requests`](super::Plan::requests) and
/// [`Plan::captures`](super::Plan::captures).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlowPlan {
    pub name: String,
    pub weight: u32,
    pub steps: Vec<FlowStep>,
    pub retry_after_max: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlowStep {
    pub request: usize,
    pub think: Duration,
    pub captures: Vec<(usize, CaptureSource)>,
}

/// Flattens flows into named requests (`FLOW.STEP`) and numbers their capture variables.
/// Flows flattened: the plans, the capture variable names, and every step's request.
type FlattenedFlows = (Vec<FlowPlan>, Vec<String>, Vec<RequestSpec>);

pub(super) fn plan_flows(specs: &[FlowSpec]) -> Result<FlattenedFlows, PlanError> {
    let mut flows = Vec::new();
    let mut captures: Vec<String> = Vec::new();
    let mut requests = Vec::new();
    for f in specs {
        let bad = |reason: &str| PlanError::Flow { name: f.name.clone(), reason: reason.to_string() };
        if f.steps.is_empty() {
            return Err(bad("no steps"));
        }
        let mut steps = Vec::new();
        for s in &f.steps {
            let mut req = s.request.clone();
            req.name = format!("{}.{}", f.name, s.request.name);
            req.weight = 1;
            let mut caps = Vec::new();
            for (var, source) in &s.captures {
                let i = match captures.iter().position(|c| c == var) {
                    Some(i) => i,
                    None => {
                        captures.push(var.clone());
                        captures.len() - 1
                    }
                };
                caps.push((i, source.clone()));
            }
            steps.push(FlowStep { request: requests.len(), think: s.think, captures: caps });
            requests.push(req);
        }
        flows.push(FlowPlan { name: f.name.clone(), weight: f.weight, steps, retry_after_max: f.retry_after_max });
    }
    if !flows.is_empty() && flows.iter().all(|f| f.weight == 0) {
        return Err(PlanError::NoWeight);
    }
    Ok((flows, captures, requests))
}

pub(super) fn plan_requests(
    specs: &[RequestSpec],
    target: &Target,
    defaults: &[(String, String)],
    expect: StatusSet,
) -> Result<Vec<PlannedRequest>, PlanError> {
    let mut out: Vec<PlannedRequest> = Vec::with_capacity(specs.len());
    for spec in specs {
        let bad = |reason: String| PlanError::Request { name: spec.name.clone(), reason };
        if spec.name.is_empty() || !spec.name.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)) {
            return Err(bad("a name is letters, digits, '-', '_' or '.'".into()));
        }
        if out.iter().any(|r| r.name == spec.name) {
            return Err(bad("the name is used twice".into()));
        }
        let method = spec.method.to_ascii_uppercase();
        if method.is_empty() || !method.bytes().all(is_token) {
            return Err(bad(format!("invalid method '{}'", spec.method)));
        }
        if !spec.path.starts_with('/') || spec.path.bytes().any(|b| b <= b' ' || b == 0x7f) {
            return Err(bad(format!("invalid path '{}': it starts with '/' and has no spaces", spec.path)));
        }
        if spec.body.len() > MAX_BODY {
            return Err(bad(format!("a body of {} bytes is over the {MAX_BODY}-byte limit", spec.body.len())));
        }
        let own = spec.headers.iter().map(|h| parse_header(h)).collect::<Result<Vec<_>, _>>()?;
        // The request's own headers replace defaults of the same name.
        let mut headers: Vec<(String, String)> =
            defaults.iter().filter(|(k, _)| !own.iter().any(|(o, _)| o.eq_ignore_ascii_case(k))).cloned().collect();
        headers.extend(own);
        let request = RenderedRequest::render(&method, &spec.path, &target.authority, &headers, &spec.body)
            .map_err(|e| bad(e.to_string()))?;
        let expect = spec.expect.unwrap_or(expect);
        out.push(PlannedRequest {
            name: spec.name.clone(),
            method,
            request,
            weight: spec.weight,
            expect,
            checks: Vec::new(),
            keep: None,
        });
    }
    if out.iter().map(|r| u64::from(r.weight)).sum::<u64>() == 0 {
        return Err(PlanError::NoWeight);
    }
    Ok(out)
}
