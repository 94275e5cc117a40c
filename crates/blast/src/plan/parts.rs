//! The scenarios of a plan: each with its own requests or flows and its own load (closed,
//! rate, arrival-rate flows, stages, a start offset), run together on the same shards. A plan
//! without `[[scenario]]` has one part, unnamed, made from the flags.

use std::ops::Range;
use std::time::Duration;

use super::{model, FlowPlan, FlowSpec, Model, PlanError, PlannedRequest, RequestSpec};
use crate::schedule::Stage;

/// One scenario as given, before validation.
#[derive(Debug, Clone)]
pub struct PartInput {
    /// What `{scenario=…}` selects and its requests' names start with (`NAME.`).
    pub name: String,
    /// When its load starts, after the run's start.
    pub start: Duration,
    pub conns: u64,
    pub duration: Duration,
    /// Open model: requests (or, with flows, iterations) per second.
    pub rate: Option<f64>,
    pub stages: Option<Vec<Stage>>,
    /// Arrival-rate flows: the most users at once (`None`: `conns`).
    pub max_users: Option<u64>,
    pub requests: Vec<RequestSpec>,
    pub flows: Vec<FlowSpec>,
}

/// One scenario of a validated plan.
#[derive(Debug, Clone, PartialEq)]
pub struct Part {
    /// Empty for the one part of a plan without `[[scenario]]`.
    pub name: String,
    /// Its load, in time from its own start.
    pub model: Model,
    /// When its load starts, after the run's start.
    pub start: Duration,
    /// Its connections: the most it ever has open at once.
    pub conns: u64,
    /// Its requests among the plan's: the weighted choice, or its flows' steps.
    pub requests: Range<usize>,
    /// Its flows among the plan's (empty: it sends weighted requests).
    pub flows: Range<usize>,
}

impl Part {
    /// Arrival-rate flows: the open model's arrivals start users that each walk a flow.
    pub fn arrival_flows(&self) -> bool {
        matches!(self.model, Model::Open(_)) && !self.flows.is_empty()
    }

    /// When its load ends, after the run's start.
    pub fn end(&self) -> Duration {
        self.start + self.model.profile().duration()
    }

    /// Its level (connections, or a rate) `t` seconds after the run's start: none before its
    /// start or after its end.
    pub fn level_at(&self, t: f64) -> f64 {
        let own = t - self.start.as_secs_f64();
        let profile = self.model.profile();
        if own < 0.0 || own > profile.duration().as_secs_f64() {
            return 0.0;
        }
        profile.at(own)
    }

    /// Requests (iterations, for arrival-rate flows) its schedule asks for in the run's first
    /// `t` seconds; `None` in the closed model.
    pub fn scheduled_until(&self, t: f64) -> Option<u64> {
        match &self.model {
            Model::Open(p) => Some(crate::schedule::scheduled(p.integral_until(t - self.start.as_secs_f64()))),
            Model::Closed(_) => None,
        }
    }

    /// Its connections on shard `i` of `shards`: an even split, the remainder to the first.
    pub fn shard_conns(&self, shards: usize, i: usize) -> u64 {
        super::split(self.conns, shards, i)
    }
}

/// A part's load checked: its model and its connections.
pub(super) struct Shape {
    pub model: Model,
    pub conns: u64,
}

impl PartInput {
    /// Checks the part's load on its own.
    pub(super) fn shape(&self) -> Result<Shape, PlanError> {
        let model = model(self.rate, self.stages.clone(), self.conns, self.duration)?;
        // The closed model's pool is its highest stage; the open model's is `conns`, or for
        // arrival-rate flows the users (each on a connection of its own).
        let conns = match &model {
            Model::Closed(p) => p.max().ceil() as u64,
            Model::Open(_) if !self.flows.is_empty() => self.max_users.unwrap_or(self.conns),
            Model::Open(_) => self.conns,
        };
        if self.max_users.is_some() && (self.flows.is_empty() || matches!(model, Model::Closed(_))) {
            return Err(PlanError::Flow {
                name: "--max-users".into(),
                reason: "caps the users of arrival-rate flows: --rate with a scenario's [[flow]]".into(),
            });
        }
        if conns == 0 {
            return Err(PlanError::NoConns);
        }
        if model.profile().duration().is_zero() {
            return Err(PlanError::NoDuration);
        }
        Ok(Shape { model, conns })
    }

    /// Its requests and flows named as the plan knows them: `SCENARIO.NAME` (a flow's
    /// steps then read `SCENARIO.FLOW.STEP`).
    pub(super) fn prefixed(&self) -> (Vec<RequestSpec>, Vec<FlowSpec>) {
        let mut requests = self.requests.clone();
        let mut flows = self.flows.clone();
        for r in &mut requests {
            r.name = format!("{}.{}", self.name, r.name);
        }
        for f in &mut flows {
            f.name = format!("{}.{}", self.name, f.name);
        }
        (requests, flows)
    }
}

/// A scenario's name: what `{scenario=…}` selects and a prefix of request names.
pub(super) fn check_name(name: &str, seen: &[PartInput]) -> Result<(), PlanError> {
    let bad = |reason: &str| PlanError::Part { name: name.to_string(), reason: reason.to_string() };
    if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_".contains(&b)) {
        return Err(bad("a scenario's name is letters, digits, '-' or '_'"));
    }
    if seen.iter().filter(|p| p.name == name).count() > 1 {
        return Err(bad("the name is used twice"));
    }
    Ok(())
}

/// A part's error, named by its scenario when the plan has `[[scenario]]`s.
fn in_part(named: bool, p: &PartInput, e: PlanError) -> PlanError {
    match named {
        true => PlanError::Part { name: p.name.clone(), reason: e.to_string() },
        false => e,
    }
}

/// Every part's load checked, and with `[[scenario]]`s its name and its requests or flows.
pub(super) fn shapes(inputs: &[PartInput], named: bool) -> Result<Vec<Shape>, PlanError> {
    let mut shapes = Vec::with_capacity(inputs.len());
    for p in inputs {
        if named {
            check_name(&p.name, inputs)?;
            if p.requests.is_empty() == p.flows.is_empty() {
                let reason = "a scenario has requests or flows, one or the other".into();
                return Err(PlanError::Part { name: p.name.clone(), reason });
            }
        }
        shapes.push(p.shape().map_err(|e| in_part(named, p, e))?);
    }
    Ok(shapes)
}

/// The parts, each with its run of the plan's requests and flows: every part's flows come
/// first (their steps lead the plan's requests, in the parts' order), then every part's
/// weighted requests (a part without any: the plan's one request from the flags).
pub(super) fn lay_out(
    inputs: &[PartInput],
    shapes: Vec<Shape>,
    requests: &[PlannedRequest],
    flows: &[FlowPlan],
    named: bool,
) -> Result<Vec<Part>, PlanError> {
    let mut parts = Vec::with_capacity(inputs.len());
    let (mut next_flow, mut next_step, mut next_request) = (0, 0, flows.iter().map(|f| f.steps.len()).sum());
    for (p, Shape { model, conns }) in inputs.iter().zip(shapes) {
        let (flow_range, request_range) = if p.flows.is_empty() {
            let n = p.requests.len().max(1);
            next_request += n;
            (next_flow..next_flow, next_request - n..next_request)
        } else {
            let steps: usize = p.flows.iter().map(|f| f.steps.len()).sum();
            (next_flow, next_step) = (next_flow + p.flows.len(), next_step + steps);
            (next_flow - p.flows.len()..next_flow, next_step - steps..next_step)
        };
        let unweighted = match p.flows.is_empty() {
            true => requests[request_range.clone()].iter().all(|r| r.weight == 0),
            false => flows[flow_range.clone()].iter().all(|f| f.weight == 0),
        };
        if unweighted {
            return Err(in_part(named, p, PlanError::NoWeight));
        }
        parts.push(Part {
            name: p.name.clone(),
            model,
            start: p.start,
            conns,
            requests: request_range,
            flows: flow_range,
        });
    }
    Ok(parts)
}
