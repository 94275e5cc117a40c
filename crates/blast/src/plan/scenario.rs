//! A scenario's requests and flows: the specs as a user writes them, and their validation
//! into named, rendered requests and flows of request indices.

use std::time::Duration;

use serde_json_path::JsonPath;

use super::expect::StatusSet;
use super::when::When;
use super::{is_token, parse_header, PlanError, PlannedRequest, Target, MAX_BODY};
use crate::check::CheckSpec;
use crate::render::RenderedRequest;
use crate::think::Think;

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
#[derive(Debug, Clone, PartialEq)]
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

#[derive(Debug, Clone, PartialEq)]
pub struct StepSpec {
    /// The step's request; its name becomes `FLOW.STEP`.
    pub request: RequestSpec,
    /// `(variable, source)`: what to keep from the response for later steps' `{{cap.VARIABLE}}`.
    pub captures: Vec<(String, CaptureSource)>,
    pub rules: StepRules,
    /// Run only when this holds (`if = "status == 200"`, `if = "cap.cart exists"`).
    pub when: Option<When>,
}

/// How a user walks a step: whether, how often, what a failure does, and the pause after it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepRules {
    /// Pause after the step's response, before the next step (drawn for each pause).
    pub think: Think,
    /// Run once per user, at its start (a login): a user that has passed its `once` steps
    /// skips them in its later iterations. `once` steps come first in a flow.
    pub once: bool,
    /// Run once when the user leaves (a logout): at the end of the run, when a ramp parks its
    /// connection, when `abort-user` sends it away, and at an arrival rate after each
    /// iteration. `teardown` steps come last in a flow; a user that never walked a step of
    /// its flow has nothing to end.
    pub teardown: bool,
    /// The share of iterations that run the step (1: every one).
    pub probability: f64,
    pub on_failure: OnFailure,
}

impl Default for StepRules {
    fn default() -> Self {
        StepRules {
            think: Think::default(),
            once: false,
            teardown: false,
            probability: 1.0,
            on_failure: OnFailure::NextIteration,
        }
    }
}

/// What a failed step does to its user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnFailure {
    /// The iteration ends; the next starts at the flow's first step (after the step's think
    /// time or the answer's `Retry-After`).
    NextIteration,
    /// The user goes on to the next step as if it had not failed.
    Continue,
    /// The user leaves (its captures and `once` steps with it); a new user takes its place.
    AbortUser,
}

impl OnFailure {
    pub fn parse(text: &str) -> Result<Self, String> {
        match text {
            "next-iteration" => Ok(Self::NextIteration),
            "continue" => Ok(Self::Continue),
            "abort-user" => Ok(Self::AbortUser),
            _ => Err(format!("on_failure '{text}': use next-iteration, continue or abort-user")),
        }
    }
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
#[derive(Debug, Clone, PartialEq)]
pub struct FlowPlan {
    pub name: String,
    pub weight: u32,
    pub steps: Vec<FlowStep>,
    pub retry_after_max: Duration,
}

#[derive(Debug, Clone, PartialEq)]
pub struct FlowStep {
    pub request: usize,
    pub captures: Vec<(usize, CaptureSource)>,
    pub rules: StepRules,
    /// Its condition, pointed at the plan's captures.
    pub when: Option<When>,
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
        // A user runs its `once` steps first; a flow needs a step every iteration runs, or an
        // iteration could have nothing to send.
        if f.steps.iter().skip_while(|s| s.rules.once).any(|s| s.rules.once) {
            return Err(bad("once steps come first in a flow (they run at a user's start)"));
        }
        if f.steps.iter().skip_while(|s| !s.rules.teardown).any(|s| !s.rules.teardown) {
            return Err(bad("teardown steps come last in a flow (they run when a user leaves)"));
        }
        if let Some(s) = f.steps.iter().find(|s| s.rules.teardown && (s.rules.once || s.when.is_some())) {
            return Err(bad(&format!(
                "step '{}': a teardown step runs once per user; once and if do not apply",
                s.request.name
            )));
        }
        let every =
            |s: &&StepSpec| !s.rules.once && !s.rules.teardown && s.rules.probability >= 1.0 && s.when.is_none();
        if !f.steps.iter().any(|s| every(&s)) {
            return Err(bad(
                "a flow needs a step that every iteration runs (not once or teardown, probability 1, no if)",
            ));
        }
        if let Some(s) = f.steps.iter().find(|s| !(s.rules.probability > 0.0 && s.rules.probability <= 1.0)) {
            return Err(bad(&format!("step '{}': a probability is above 0 and at most 1", s.request.name)));
        }
        // Every variable the flow captures is numbered first: a condition may read one a
        // later step captures (in the user's next iteration).
        for (var, _) in f.steps.iter().flat_map(|s| &s.captures) {
            if !captures.contains(var) {
                captures.push(var.clone());
            }
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
            let mut when = s.when.clone();
            if let Some(w) = when.as_mut() {
                if let Some(name) = w.capture() {
                    let captured = f.steps.iter().flat_map(|st| &st.captures).any(|(var, _)| var == name);
                    let i = captures.iter().position(|c| c == name).filter(|_| captured).ok_or_else(|| {
                        bad(&format!("step '{}': if '{}': no step of the flow captures {name}", s.request.name, w.text))
                    })?;
                    w.resolve(i);
                }
            }
            steps.push(FlowStep { request: requests.len(), captures: caps, rules: s.rules, when });
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
            h2: None,
        });
    }
    if out.iter().map(|r| u64::from(r.weight)).sum::<u64>() == 0 {
        return Err(PlanError::NoWeight);
    }
    Ok(out)
}
