//! A plan's checks: each request's parsed checks, numbered by name across the plan, and what
//! each request must keep of its responses for them and for its flow step's captures.

use super::{CaptureSource, FlowPlan, PlanError, PlannedRequest, RequestSpec};
use crate::check::{Check, CheckSpec};

/// What of a response a request's checks and captures read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Keep {
    /// Lower-case header names.
    pub headers: Vec<String>,
    pub body: bool,
}

impl Keep {
    pub(super) fn add(&mut self, header: Option<&str>, body: bool) {
        if let Some(h) = header.filter(|h| !self.headers.iter().any(|k| k == h)) {
            self.headers.push(h.to_string());
        }
        self.body |= body;
    }
}

/// Parses every request's checks (its own, then `--check`'s), numbering their names across
/// the plan, and works out what each request must keep of its responses for its checks and
/// its flow step's captures. Returns the check names.
pub(super) fn plan_checks(
    requests: &mut [PlannedRequest],
    specs: &[RequestSpec],
    all: &[CheckSpec],
    flows: &[FlowPlan],
) -> Result<Vec<String>, PlanError> {
    let mut names: Vec<String> = Vec::new();
    for (i, r) in requests.iter_mut().enumerate() {
        let own = specs.get(i).map(|s| s.checks.as_slice()).unwrap_or_default();
        for spec in own.iter().chain(all) {
            let bad = |reason: String| PlanError::Request { name: r.name.clone(), reason };
            let name = spec.name();
            // A name given is what `checks{name=…}` selects; an expression is its own name.
            if spec.name.is_some() && (name.trim().is_empty() || name.contains(['{', '}', '='])) {
                return Err(bad(format!("check name '{name}': a name is not empty and has no braces or '='")));
            }
            let index = match names.iter().position(|n| n == name) {
                Some(i) => i,
                None => {
                    names.push(name.to_string());
                    names.len() - 1
                }
            };
            let check = Check::parse(spec, index).map_err(bad)?;
            let (header, body) = check.test.needs();
            r.keep.get_or_insert_with(Keep::default).add(header, body);
            r.checks.push(check);
        }
    }
    for step in flows.iter().flat_map(|f| &f.steps) {
        for (_, source) in &step.captures {
            let keep = requests[step.request].keep.get_or_insert_with(Keep::default);
            match source {
                CaptureSource::Header(h) => keep.add(Some(h), false),
                CaptureSource::Json(_) => keep.add(None, true),
            }
        }
    }
    Ok(names)
}
