//! Scenario files (TOML): the target, default headers and timeout, weighted named requests,
//! the load (connections, duration, rate, stages or a profile), thresholds and safety stops.
//!
//! TOML because a test plan is edited by hand and reviewed in merge requests: comments,
//! no significant indentation, tables that read like the sections of a plan, and a parser
//! that reports the line of a mistake. Unknown keys are errors, so a typo never silently
//! turns into a default.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

use crate::check::CheckSpec;
use crate::plan::{CaptureSource, FlowSpec, OnFailure, RequestSpec, StatusSet, StepRules, StepSpec, When};
use crate::template::DataTable;
use crate::think::Think;

/// Larger scenario files are refused before parsing: a plan is a page, not a data set.
pub const MAX_FILE: u64 = 1024 * 1024;

/// A scenario as written, every field optional but one request (or flow).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// Base URL: scheme, host, port. Request paths are joined to it. A URL given on the
    /// command line replaces it (so the same plan runs against staging and production).
    pub target: Option<String>,
    #[serde(default)]
    pub defaults: Defaults,
    #[serde(default)]
    pub load: Load,
    #[serde(default, rename = "request")]
    pub requests: Vec<Request>,
    /// Flows: ordered steps each connection walks through as one user (instead of requests).
    #[serde(default, rename = "flow")]
    pub flows: Vec<Flow>,
    /// Expressions such as `p95<200ms` or `p95{name=login}<75ms`.
    #[serde(default)]
    pub thresholds: Vec<String>,
    /// Safety stops, same syntax, and `promql:QUERY>VALUE` read from `prometheus`.
    #[serde(default)]
    pub abort_on: Vec<String>,
    /// The Prometheus server `promql:` safety stops ask (`--prometheus`).
    pub prometheus: Option<String>,
    /// A CSV file whose rows feed `{{csv.COLUMN}}`.
    pub data: Option<Data>,
    /// What a profile's level must meet to count as held (stress, spike, recovery).
    #[serde(default)]
    pub profile: ProfileCriteria,
    /// Several scenarios run together, each with its own requests or flows and load (k6's
    /// `scenarios`); instead of `[[request]]`, `[[flow]]` and `[load]`.
    #[serde(default, rename = "scenario", alias = "scenarios")]
    pub parts: Vec<Part>,
}

/// A `[[scenario]]`'s requests and flows, validated.
pub type PartSpecs = (Vec<RequestSpec>, Vec<FlowSpec>);

/// One of several scenarios in a file (`[[scenario]]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Part {
    /// What `{scenario=NAME}` selects; its requests are named `NAME.REQUEST`.
    pub name: String,
    /// When its load starts, after the run's start (default "0s").
    pub start: Option<String>,
    #[serde(default)]
    pub load: PartLoad,
    #[serde(default, rename = "request")]
    pub requests: Vec<Request>,
    #[serde(default, rename = "flow")]
    pub flows: Vec<Flow>,
}

/// A scenario's own load: `[load]`'s keys but the profile's (a profile judges one load).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PartLoad {
    pub conns: Option<u64>,
    pub duration: Option<String>,
    pub rate: Option<f64>,
    pub stages: Option<String>,
    pub max_users: Option<u64>,
}

/// The criterion of a profile's levels: `p99 = "500ms"`, `error_rate = "1%"`,
/// `achieved = "95%"` (open model: the completed rate as a share of the asked rate).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProfileCriteria {
    pub p99: Option<String>,
    pub p95: Option<String>,
    /// Spike and recovery: the share of the peak they start from and return to (spike 2%,
    /// recovery 10%).
    pub baseline: Option<String>,
    pub error_rate: Option<String>,
    pub achieved: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Data {
    /// Relative to the scenario file.
    pub file: String,
    /// `round-robin` (default) or `random`.
    #[serde(default)]
    pub order: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Defaults {
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    pub timeout: Option<String>,
    /// Statuses a response may have without failing, e.g. "200-399,404" (default 200-399).
    pub expect_status: Option<String>,
    /// Flows: the longest `Retry-After` a failed step's answer makes its user wait (default
    /// 10s; "0s" ignores Retry-After).
    pub retry_after_max: Option<String>,
    /// Checks on the responses of every request.
    #[serde(default)]
    pub check: Vec<CheckEntry>,
}

/// A check: `"status == 200"`, or `{ name = "cache", expr = "json $.cached == true", soft = true }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum CheckEntry {
    Expr(String),
    Named(NamedCheck),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NamedCheck {
    pub name: Option<String>,
    pub expr: String,
    /// A failure is counted but does not fail the request.
    #[serde(default)]
    pub soft: bool,
}

impl CheckEntry {
    pub fn spec(&self) -> CheckSpec {
        match self {
            CheckEntry::Expr(e) => CheckSpec::new(e.clone()),
            CheckEntry::Named(n) => CheckSpec { name: n.name.clone(), expr: n.expr.clone(), soft: n.soft },
        }
    }
}

fn specs(entries: &[CheckEntry]) -> Vec<CheckSpec> {
    entries.iter().map(CheckEntry::spec).collect()
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Load {
    pub conns: Option<u64>,
    pub duration: Option<String>,
    pub rate: Option<f64>,
    pub stages: Option<String>,
    pub profile: Option<String>,
    pub peak: Option<f64>,
    pub step: Option<String>,
    pub abort_grace: Option<u32>,
    /// Arrival-rate flows: the most users at once (`--max-users`).
    pub max_users: Option<u64>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Request {
    pub name: String,
    #[serde(default = "get")]
    pub method: String,
    pub path: String,
    #[serde(default = "one")]
    pub weight: u32,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    pub body: Option<String>,
    /// This request's expected statuses, instead of the default.
    pub expect_status: Option<String>,
    /// Checks on its responses.
    #[serde(default)]
    pub check: Vec<CheckEntry>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Flow {
    pub name: String,
    #[serde(default = "one")]
    pub weight: u32,
    /// This flow's `retry_after_max`, instead of `[defaults]`'s.
    pub retry_after_max: Option<String>,
    /// The think time of its steps that set none.
    pub think: Option<String>,
    /// What a failed step does, for its steps that say nothing.
    pub on_failure: Option<String>,
    #[serde(rename = "step")]
    pub steps: Vec<Step>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Step {
    pub name: String,
    #[serde(default = "get")]
    pub method: String,
    pub path: String,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    pub body: Option<String>,
    /// Pause after the response: "500ms", or drawn each time: "1s..3s", "normal(2s, 500ms)",
    /// "exp(2s)".
    pub think: Option<String>,
    /// Run once per user, at its start (a login).
    #[serde(default)]
    pub once: bool,
    /// Run once per user, when it leaves (a logout).
    #[serde(default)]
    pub teardown: bool,
    /// The share of iterations that run this step, above 0 and at most 1.
    pub probability: Option<f64>,
    /// Run only when this holds: `status == 200` (the previous step's, this iteration),
    /// `cap.NAME exists`, `cap.NAME == "text"` (docs/scenarios.md).
    #[serde(rename = "if")]
    pub when: Option<String>,
    /// `next-iteration` (the default), `continue` or `abort-user`.
    pub on_failure: Option<String>,
    /// `variable = "header:NAME"` or `variable = "json:FIELD"`, used later as `{{cap.variable}}`.
    #[serde(default)]
    pub capture: BTreeMap<String, String>,
    /// This step's expected statuses, instead of the default.
    pub expect_status: Option<String>,
    /// Checks on its responses; a failed one fails the step.
    #[serde(default)]
    pub check: Vec<CheckEntry>,
}

fn get() -> String {
    "GET".into()
}

fn one() -> u32 {
    1
}

#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    #[error("cannot read scenario '{path}': {cause}")]
    Read { path: String, cause: std::io::Error },
    #[error("scenario '{path}' is over {MAX_FILE} bytes (a scenario is a plan, not a data set)")]
    TooLarge { path: String },
    #[error("scenario '{path}', line {line}: {reason}")]
    Invalid { path: String, line: usize, reason: String },
    #[error("scenario '{path}': {reason}")]
    Check { path: String, reason: String },
}

impl Scenario {
    /// Reads and checks a scenario file.
    pub fn load(path: &Path) -> Result<Scenario, ScenarioError> {
        let name = path.display().to_string();
        let text = engine_util::files::read_limited_string(path, MAX_FILE).map_err(|e| match e {
            engine_util::files::FileError::TooLarge { .. } => ScenarioError::TooLarge { path: name.clone() },
            engine_util::files::FileError::Io(cause) => ScenarioError::Read { path: name.clone(), cause },
        })?;
        Self::parse(&text, &name)
    }

    /// Parses scenario text; `name` is used in errors.
    pub fn parse(text: &str, name: &str) -> Result<Scenario, ScenarioError> {
        let s: Scenario = toml::from_str(text).map_err(|e| {
            let line = e.span().map(|sp| text[..sp.start.min(text.len())].matches('\n').count() + 1).unwrap_or(1);
            ScenarioError::Invalid { path: name.to_string(), line, reason: e.message().trim().to_string() }
        })?;
        let check = |reason: &str| ScenarioError::Check { path: name.to_string(), reason: reason.to_string() };
        if !s.parts.is_empty() {
            s.check_parts(name)?;
            s.expect_status(name)?;
            return Ok(s);
        }
        if s.requests.is_empty() && s.flows.is_empty() {
            return Err(check("no [[request]] and no [[flow]]: a scenario needs one or the other"));
        }
        if !s.requests.is_empty() && !s.flows.is_empty() {
            return Err(check("both [[request]] and [[flow]]: a scenario has one or the other"));
        }
        if weight_of(&s.requests, &s.flows) == 0 {
            return Err(check("the weights add up to 0: nothing would be sent"));
        }
        s.flow_specs(name)?;
        s.request_specs(name)?;
        s.expect_status(name)?;
        Ok(s)
    }

    /// A file of several scenarios: each has requests or flows of weight, and its own load;
    /// the file's `[load]` and `[profile]` would apply to none of them.
    fn check_parts(&self, name: &str) -> Result<(), ScenarioError> {
        let check = |reason: String| ScenarioError::Check { path: name.to_string(), reason };
        if !self.requests.is_empty() || !self.flows.is_empty() {
            return Err(check(
                "[[request]] or [[flow]] beside [[scenario]]: with scenarios, each has its own ([[scenario.request]], \
                 [[scenario.flow]])"
                    .into(),
            ));
        }
        let l = &self.load;
        if l.conns.is_some() || l.duration.is_some() || l.rate.is_some() || l.stages.is_some() || l.max_users.is_some()
        {
            return Err(check("[load] beside [[scenario]]: each scenario has its own [scenario.load]".into()));
        }
        if l.profile.is_some() || l.peak.is_some() || l.step.is_some() {
            return Err(check("a profile judges one load: a file with [[scenario]] has none".into()));
        }
        let p = &self.profile;
        if p.p99.is_some() || p.p95.is_some() || p.baseline.is_some() || p.error_rate.is_some() || p.achieved.is_some()
        {
            return Err(check("[profile] judges a profile's levels: a file with [[scenario]] runs no profile".into()));
        }
        for part in &self.parts {
            let at = |reason: &str| check(format!("scenario '{}': {reason}", part.name));
            if part.requests.is_empty() == part.flows.is_empty() {
                return Err(at("a scenario has [[scenario.request]] or [[scenario.flow]], one or the other"));
            }
            if weight_of(&part.requests, &part.flows) == 0 {
                return Err(at("the weights add up to 0: nothing would be sent"));
            }
            flow_specs(&self.defaults, &part.flows, name)?;
            request_specs(&part.requests, name)?;
        }
        Ok(())
    }

    /// The default expected statuses (`[defaults] expect_status`), if the file sets them.
    pub fn expect_status(&self, name: &str) -> Result<Option<StatusSet>, ScenarioError> {
        let check = |reason: String| ScenarioError::Check { path: name.to_string(), reason };
        self.defaults
            .expect_status
            .as_deref()
            .map(|e| StatusSet::parse(e).map_err(|e| check(format!("defaults.expect_status: {e}"))))
            .transpose()
    }

    /// The flows for [`crate::PlanInput::flows`].
    pub fn flow_specs(&self, name: &str) -> Result<Vec<FlowSpec>, ScenarioError> {
        flow_specs(&self.defaults, &self.flows, name)
    }

    /// Reads the data file, if the scenario has one; `base` is the scenario's folder.
    pub fn data_table(&self, base: &Path, name: &str) -> Result<Option<DataTable>, ScenarioError> {
        let Some(d) = &self.data else { return Ok(None) };
        let check = |reason: String| ScenarioError::Check { path: name.to_string(), reason };
        let random = match d.order.as_deref() {
            None | Some("round-robin") => false,
            Some("random") => true,
            Some(o) => return Err(check(format!("data.order '{o}': use round-robin or random"))),
        };
        DataTable::read(&base.join(&d.file), random).map(Some).map_err(check)
    }

    /// The checks of every request (`[defaults] check`).
    pub fn default_checks(&self) -> Vec<CheckSpec> {
        specs(&self.defaults.check)
    }

    /// The default headers as `Name: value` lines.
    pub fn default_headers(&self) -> Vec<String> {
        self.defaults.headers.iter().map(|(k, v)| format!("{k}: {v}")).collect()
    }

    /// The requests for [`crate::PlanInput::requests`].
    pub fn request_specs(&self, name: &str) -> Result<Vec<RequestSpec>, ScenarioError> {
        request_specs(&self.requests, name)
    }

    /// Each `[[scenario]]`'s requests and flows, in the file's order.
    pub fn part_specs(&self, name: &str) -> Result<Vec<PartSpecs>, ScenarioError> {
        self.parts
            .iter()
            .map(|p| Ok((request_specs(&p.requests, name)?, flow_specs(&self.defaults, &p.flows, name)?)))
            .collect()
    }
}

/// A list of flows as [`FlowSpec`]s, with the file's defaults; `name` is used in errors.
fn flow_specs(defaults: &Defaults, flows: &[Flow], name: &str) -> Result<Vec<FlowSpec>, ScenarioError> {
    let check = |reason: String| ScenarioError::Check { path: name.to_string(), reason };
    let mut out = Vec::new();
    for f in flows {
        let retry_after_max = match f.retry_after_max.as_ref().or(defaults.retry_after_max.as_ref()) {
            Some(t) => engine_util::units::parse_duration(t)
                .map_err(|e| check(format!("flow '{}': retry_after_max: {e}", f.name)))?,
            None => crate::plan::RETRY_AFTER_MAX,
        };
        let mut steps = Vec::new();
        for st in &f.steps {
            let at = |e: String| check(format!("flow '{}', step '{}': {e}", f.name, st.name));
            let think = match st.think.as_ref().or(f.think.as_ref()) {
                Some(t) => Think::parse(t).map_err(at)?,
                None => Think::default(),
            };
            let on_failure = match st.on_failure.as_ref().or(f.on_failure.as_ref()) {
                Some(o) => OnFailure::parse(o).map_err(at)?,
                None => OnFailure::NextIteration,
            };
            let rules = StepRules {
                think,
                once: st.once,
                teardown: st.teardown,
                probability: st.probability.unwrap_or(1.0),
                on_failure,
            };
            let captures = st
                .capture
                .iter()
                .map(|(var, src)| CaptureSource::parse(src).map(|c| (var.clone(), c)))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| check(format!("flow '{}', step '{}': {e}", f.name, st.name)))?;
            let expect = st
                .expect_status
                .as_deref()
                .map(StatusSet::parse)
                .transpose()
                .map_err(|e| check(format!("flow '{}', step '{}': expect_status: {e}", f.name, st.name)))?;
            let request = RequestSpec {
                name: st.name.clone(),
                method: st.method.clone(),
                path: st.path.clone(),
                headers: st.headers.iter().map(|(k, v)| format!("{k}: {v}")).collect(),
                body: st.body.clone().unwrap_or_default().into_bytes(),
                weight: 1,
                expect,
                checks: specs(&st.check),
            };
            let when = st.when.as_deref().map(When::parse).transpose().map_err(at)?;
            steps.push(StepSpec { request, captures, rules, when });
        }
        out.push(FlowSpec { name: f.name.clone(), weight: f.weight, steps, retry_after_max });
    }
    Ok(out)
}

/// A list of requests as [`RequestSpec`]s; `name` is used in errors.
fn request_specs(requests: &[Request], name: &str) -> Result<Vec<RequestSpec>, ScenarioError> {
    let check = |reason: String| ScenarioError::Check { path: name.to_string(), reason };
    requests
        .iter()
        .map(|r| {
            let expect = r
                .expect_status
                .as_deref()
                .map(StatusSet::parse)
                .transpose()
                .map_err(|e| check(format!("request '{}': expect_status: {e}", r.name)))?;
            Ok(RequestSpec {
                name: r.name.clone(),
                method: r.method.clone(),
                path: r.path.clone(),
                headers: r.headers.iter().map(|(k, v)| format!("{k}: {v}")).collect(),
                body: r.body.clone().unwrap_or_default().into_bytes(),
                weight: r.weight,
                expect,
                checks: specs(&r.check),
            })
        })
        .collect()
}

/// The weights of a list of requests or flows, summed.
fn weight_of(requests: &[Request], flows: &[Flow]) -> u64 {
    requests.iter().map(|r| u64::from(r.weight)).chain(flows.iter().map(|f| u64::from(f.weight))).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
target = "http://127.0.0.1:8080"
thresholds = ["p95<200ms", "p95{name=login}<75ms"]

[defaults]
headers = { "X-Team" = "capacity" }
timeout = "5s"

[load]
conns = 100
duration = "1m"

[[request]]
name = "health"
path = "/health"
weight = 30

[[request]]
name = "echo"
method = "POST"
path = "/api/echo"
body = '{"hello": "world"}'
headers = { "Content-Type" = "application/json" }
"#;

    #[test]
    fn a_full_scenario() {
        let s = Scenario::parse(GOOD, "good.toml").unwrap();
        assert_eq!(s.requests.len(), 2);
        assert_eq!(s.requests[1].weight, 1);
        assert_eq!(s.load.conns, Some(100));
        let specs = s.request_specs("good.toml").unwrap();
        assert_eq!(specs[1].method, "POST");
        assert_eq!(specs[1].headers, vec!["Content-Type: application/json".to_string()]);
        assert_eq!(s.default_headers(), vec!["X-Team: capacity".to_string()]);
    }

    #[test]
    fn hostile_files_get_one_clear_error() {
        let cases: &[(&str, &str)] = &[
            ("target = \"http://x\"\n[[request]]\nname = \"a\"\npath = \"/\"\nbogus = 1\n", "line 5"),
            ("target = \"http://x\"\n[[request]]\nname = \"a\"\npath = \"/\"\nweight = 0\n", "add up to 0"),
            ("target = \"http://x\"\n", "no [[request]] and no [[flow]]"),
            ("target = \"http://x\"\n[[request]]\nname = \"a\"\npath = \"/\"\nweight = -1\n", "line 5"),
            (
                "target = \"http://x\"\n[[request]]\nname = \"a\"\npath = \"/\"\nexpect_status = \"2xx\"\n",
                "request 'a': expect_status",
            ),
            (
                "[defaults]\nexpect_status = \"600-100\"\n[[request]]\nname = \"a\"\npath = \"/\"\n",
                "defaults.expect_status",
            ),
            ("target = \"http://x\"\n[load]\nconns = \"many\"\n[[request]]\nname = \"a\"\npath = \"/\"\n", "line 3"),
            ("this is not toml", "line 1"),
            (
                "[[request]]\nname = \"a\"\npath = \"/\"\n[[scenario]]\nname = \"s\"\n[[scenario.request]]\nname = \"a\"\npath = \"/\"\n",
                "[[request]] or [[flow]] beside [[scenario]]",
            ),
            (
                "[load]\nconns = 3\n[[scenario]]\nname = \"s\"\n[[scenario.request]]\nname = \"a\"\npath = \"/\"\n",
                "each scenario has its own [scenario.load]",
            ),
            (
                "[load]\nprofile = \"stress\"\n[[scenario]]\nname = \"s\"\n[[scenario.request]]\nname = \"a\"\npath = \"/\"\n",
                "a profile judges one load",
            ),
            ("[[scenario]]\nname = \"s\"\n", "scenario 's': a scenario has [[scenario.request]] or [[scenario.flow]]"),
            (
                "[[scenario]]\nname = \"s\"\n[scenario.load]\nprofile = \"stress\"\n[[scenario.request]]\nname = \"a\"\npath = \"/\"\n",
                "line 4",
            ),
            (
                "[[scenario]]\nname = \"s\"\n[[scenario.request]]\nname = \"a\"\npath = \"/\"\nweight = 0\n",
                "scenario 's': the weights add up to 0",
            ),
        ];
        for (text, want) in cases {
            let e = Scenario::parse(text, "f.toml").unwrap_err().to_string();
            assert!(e.contains(want), "{text:?}: {e}");
            assert!(e.starts_with("scenario 'f.toml'"), "{e}");
        }
    }
}
