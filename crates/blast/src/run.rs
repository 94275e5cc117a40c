//! A run of a plan and what judges it, in the one order that is right.
//!
//! Observers that watch a run (a progress line, the results folder's files, the metrics) see
//! each interval first; then the judges: the safety stops, the profile, the thresholds. At
//! the end the judges add their verdicts first (thresholds last: `capacity` and `recovery_s`
//! are written by the profile), then the watchers finish, so run.log records the verdicts.
//! The judges are made here from [`Judges`], after the expressions are checked against the
//! plan; nothing outside can put them in another order.

use engine_results::observe::Observer;
use engine_results::profile::Criterion;
use engine_results::thresholds::{Expr, Metric, SafetyStops, SafetyWatch, Thresholds};
use engine_results::Summary;

use crate::blast::{run_ordered, Control, Preflight, RunError};
use crate::plan::{Model, Plan};
use crate::profiles::{recovery_window, ProfileName, ProfileWatch};
use crate::promql::{PromWatch, Prometheus};

/// What a run is judged by.
#[derive(Debug, Clone, Default)]
pub struct Judges {
    /// Judged once, on the whole run (`--threshold`).
    pub thresholds: Vec<Expr>,
    /// Conditions to stop on (`--abort-on`).
    pub abort_on: Vec<Expr>,
    /// Consecutive intervals a safety stop without its own `for N` must hold.
    pub abort_grace: u32,
    /// The named profile the stages came from (or the run's own stages), and what it
    /// measures.
    pub profile: Option<Profile>,
    /// The Prometheus server `promql:` safety stops ask (`--prometheus`).
    pub prometheus: Option<String>,
}

/// A profile's figures: which profile (`None`: the run's own `--stages`, each held stage a
/// level), its peak, and when an interval counts as good.
#[derive(Debug, Clone, Copy)]
pub struct Profile {
    pub name: Option<ProfileName>,
    pub peak: f64,
    pub criterion: Criterion,
}

/// An expression that cannot be judged on this plan.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JudgeError {
    #[error("'{expr}' names no request of this plan (requests: {names})")]
    UnknownName { expr: String, names: String },
    #[error("'{0}': safety stops apply to the whole run, not to one request, scenario or check")]
    NamedStop(String),
    #[error("'{expr}' names no scenario of this plan ({names})")]
    UnknownScenario { expr: String, names: String },
    #[error("'{expr}' names no check of this plan (checks: {names})")]
    UnknownCheck { expr: String, names: String },
    #[error("'{0}': the plan has no checks (add check = [...] to a request, or --check)")]
    NoChecks(String),
    #[error("'{0}': recovery_s and capacity are known at the end of the run; use them as --threshold")]
    EndOnlyStop(String),
    #[error("'{0}': 'for N' is a safety stop's grace; a threshold is judged once, on the whole run")]
    ThresholdGrace(String),
    #[error("'{0}': capacity is what --profile stress finds")]
    Capacity(String),
    #[error(
        "'{0}': recovery_s is what --profile spike or recovery measures, or --stages that rise from a baseline \
         to a peak and drop back"
    )]
    Recovery(String),
    #[error("'{0}': a promql: expression is a safety stop, read each interval; give it as --abort-on")]
    PromqlThreshold(String),
    #[error("'{0}' needs a Prometheus server to ask: --prometheus http://HOST:9090")]
    NoPrometheus(String),
    #[error("{0}")]
    Prometheus(String),
}

impl Judges {
    /// Every threshold and safety stop can be judged on `plan`: the judges, ready for a
    /// [`Run`] of it.
    pub fn check(self, plan: &Plan) -> Result<Checked, JudgeError> {
        for e in self.thresholds.iter().chain(&self.abort_on) {
            if e.metric == Metric::Checks && plan.check_names.is_empty() {
                return Err(JudgeError::NoChecks(e.to_string()));
            }
            if let Some(name) = e.name().filter(|_| e.metric == Metric::Checks) {
                if !plan.check_names.iter().any(|n| n == name) {
                    return Err(JudgeError::UnknownCheck { expr: e.to_string(), names: plan.check_names.join(", ") });
                }
            } else if let Some(name) = e.name() {
                if !plan.named() || !plan.requests.iter().any(|r| r.name == name) {
                    let names: Vec<&str> = plan.requests.iter().map(|r| r.name.as_str()).collect();
                    return Err(JudgeError::UnknownName { expr: e.to_string(), names: names.join(", ") });
                }
            }
        }
        for e in self.thresholds.iter().chain(&self.abort_on) {
            if let Some(name) = e.scenario() {
                if !plan.parts.iter().any(|p| p.name == name && !name.is_empty()) {
                    let names: Vec<&str> =
                        plan.parts.iter().map(|p| p.name.as_str()).filter(|n| !n.is_empty()).collect();
                    let names = match names.is_empty() {
                        true => "it has no [[scenario]]".to_string(),
                        false => format!("scenarios: {}", names.join(", ")),
                    };
                    return Err(JudgeError::UnknownScenario { expr: e.to_string(), names });
                }
            }
        }
        for e in &self.abort_on {
            if e.name().is_some() || e.scenario().is_some() {
                return Err(JudgeError::NamedStop(e.to_string()));
            }
            if !e.metric.per_interval() {
                return Err(JudgeError::EndOnlyStop(e.to_string()));
            }
        }
        let promql = self.abort_on.iter().find(|e| e.metric == Metric::Promql);
        let prometheus = match (&self.prometheus, promql) {
            (Some(url), _) => Some(Prometheus::parse(url).map_err(|e| JudgeError::Prometheus(e.to_string()))?),
            (None, Some(e)) => return Err(JudgeError::NoPrometheus(e.to_string())),
            (None, None) => None,
        };
        let profile = self.profile.map(|p| p.name);
        let recovers = plan.single().is_some_and(|p| recovery_window(p.model.profile().stages()).is_some());
        for e in &self.thresholds {
            if e.metric == Metric::Promql {
                return Err(JudgeError::PromqlThreshold(e.to_string()));
            }
            if e.grace.is_some() {
                return Err(JudgeError::ThresholdGrace(e.to_string()));
            }
            match (e.metric, profile) {
                (Metric::Capacity, Some(Some(ProfileName::Stress))) => {}
                (Metric::Capacity, _) => return Err(JudgeError::Capacity(e.to_string())),
                (Metric::RecoveryS, Some(Some(ProfileName::Spike | ProfileName::Recovery))) => {}
                (Metric::RecoveryS, Some(None)) if recovers => {}
                (Metric::RecoveryS, _) => return Err(JudgeError::Recovery(e.to_string())),
                _ => {}
            }
        }
        Ok(Checked(self, prometheus))
    }
}

/// [`Judges`] whose expressions fit the plan they were checked against ([`Judges::check`]),
/// and the Prometheus server its `promql:` stops ask.
#[derive(Debug, Clone)]
pub struct Checked(Judges, Option<Prometheus>);

impl Checked {
    pub fn judges(&self) -> &Judges {
        &self.0
    }
}

/// A run being put together: the plan, its judges, and what watches it.
pub struct Run<'a> {
    plan: &'a Plan,
    watchers: Vec<&'a mut dyn Observer>,
    safety: SafetyWatch,
    profile: Option<ProfileWatch>,
    promql: Option<PromWatch>,
    thresholds: Thresholds,
}

impl<'a> Run<'a> {
    /// A run of `plan` judged by `judges`.
    pub fn new(plan: &'a Plan, judges: Checked) -> Self {
        let Checked(judges, prometheus) = judges;
        let (promql, abort_on): (Vec<Expr>, Vec<Expr>) =
            judges.abort_on.into_iter().partition(|e| e.metric == Metric::Promql);
        let promql = prometheus.filter(|_| !promql.is_empty()).map(|p| PromWatch::new(p, promql, judges.abort_grace));
        // A profile is judged on a plan of one part (the options allow no other).
        let profile = judges.profile.zip(plan.single()).map(|(p, part)| {
            let open = matches!(part.model, Model::Open(_));
            ProfileWatch::new(p.name, p.peak, part.model.profile().stages().to_vec(), open, p.criterion)
        });
        Run {
            plan,
            watchers: Vec::new(),
            safety: SafetyWatch::new(SafetyStops::new(abort_on, judges.abort_grace)),
            profile,
            promql,
            thresholds: Thresholds(judges.thresholds),
        }
    }

    /// Adds an observer that watches the run: it sees each interval before the judges, and
    /// finishes after them, with the verdicts in the summary.
    pub fn watch(mut self, observer: &'a mut dyn Observer) -> Self {
        self.watchers.push(observer);
        self
    }

    /// Runs the plan after the caller's [`crate::preflight`], to its end (or until `control`
    /// stops it, or a judge does), and returns the summary with its verdicts.
    /// A `promql:` stop's query that Prometheus cannot answer now is an error before any
    /// load is sent.
    pub fn start(mut self, pre: &Preflight, control: &Control) -> Result<Summary, RunError> {
        if let Some(p) = self.promql.as_mut() {
            p.probe().map_err(|(stop, cause)| RunError::Prometheus { stop, cause })?;
        }
        let mut judges: Vec<&mut dyn Observer> = vec![&mut self.safety];
        if let Some(p) = self.promql.as_mut() {
            judges.push(p);
        }
        if let Some(p) = self.profile.as_mut() {
            // A profile judges the levels it planned: changing them would judge the wrong ones.
            control.steering.fixed_levels();
            judges.push(p);
        }
        judges.push(&mut self.thresholds);
        run_ordered(self.plan, pre, control, &mut self.watchers, &mut judges)
    }
}
