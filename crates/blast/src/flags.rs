//! The blast's options as a user gives them, and the one rule that turns them and a scenario
//! file into a plan: a flag overrides the file, and says so (a note) when it replaces a value
//! the file set; a flag that contradicts the shape of the load (`-c` with stages of
//! connections, `-d` with stages) is an error naming both. Nothing is ignored silently.
//!
//! The command line fills a [`Flags`] from its arguments and calls [`Flags::overlay`], then
//! [`Flags::input`] and [`Flags::judges`]: it holds no rule of its own.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use engine_results::profile::Criterion;
use engine_results::summary::Worker;
use engine_results::thresholds::Expr;

use crate::check::CheckSpec;
use crate::plan::{FlowSpec, PartInput, PlanInput, RequestSpec, StatusSet, DEFAULT_TIMEOUT, MAX_BODY};
use crate::profiles::ProfileName;
use crate::run::{Judges, Profile};
use crate::scenario::{Scenario, ScenarioError};
use crate::schedule::Stage;
use crate::template::DataTable;

/// Connections when neither a flag nor the file says.
pub const DEFAULT_CONNS: u64 = 64;
/// The run's length when neither a flag nor the file says.
pub const DEFAULT_DURATION: Duration = Duration::from_secs(10);
/// A profile level's hold when neither a flag nor the file says.
pub const DEFAULT_STEP: Duration = Duration::from_secs(30);
/// Consecutive intervals a safety stop must hold when neither a flag nor the file says.
pub const DEFAULT_ABORT_GRACE: u32 = 3;

/// A blast's options; `None` (or empty): not given.
#[derive(Debug, Clone, Default)]
pub struct Flags {
    pub url: Option<String>,
    pub scenario: Option<PathBuf>,
    pub conns: Option<u64>,
    pub duration: Option<Duration>,
    pub rate: Option<f64>,
    pub stages: Option<Vec<Stage>>,
    pub profile: Option<ProfileName>,
    pub peak: Option<f64>,
    pub step: Option<Duration>,
    pub threshold: Vec<Expr>,
    pub abort_on: Vec<Expr>,
    pub abort_grace: Option<u32>,
    /// The Prometheus server `promql:` safety stops ask.
    pub prometheus: Option<String>,
    pub method: String,
    pub headers: Vec<String>,
    /// The body, or `@FILE` to read it from a file.
    pub body: Option<String>,
    pub max_users: Option<u64>,
    pub expect_status: Option<StatusSet>,
    /// `--check`: checks on every request's responses, after the scenario's own.
    pub checks: Vec<CheckSpec>,
    pub timeout: Option<Duration>,
    pub connect_timeout: Duration,
    pub shards: Option<usize>,
    pub cores: Option<Vec<usize>>,
    pub busy_poll: Duration,
    pub worker: Option<Worker>,
    pub start_at: Option<SystemTime>,
    pub source_ips: Vec<IpAddr>,
    /// From the scenario: its requests, flows, data file and profile criterion.
    pub requests: Vec<RequestSpec>,
    pub flows: Vec<FlowSpec>,
    pub data: Option<Arc<DataTable>>,
    pub criterion: Criterion,
    /// Spike and recovery: the share of the peak they start from (`[profile] baseline`).
    pub baseline: Option<f64>,
    /// From the scenario: its `[[scenario]]`s, each with its own load and requests.
    pub parts: Vec<PartInput>,
    /// `--http2`, `--http2-prior-knowledge`, `--streams` and HTTP/2's windows.
    pub http2: crate::plan::Http2Input,
    /// gRPC: `--call`, `--proto`, `--data`, `--data-bin`, `--grpc-deadline`, `--expect-grpc-status`.
    pub grpc: crate::plan::GrpcInput,
}

/// Why the options cannot make a plan.
#[derive(Debug, thiserror::Error)]
pub enum FlagError {
    /// Two options contradict each other, or one is out of its range.
    #[error("{0}")]
    Conflict(String),
    /// A field of the scenario file is not valid.
    #[error("{what}: {why}")]
    Field { what: String, why: String },
    #[error(transparent)]
    Scenario(#[from] ScenarioError),
    #[error("cannot read body file '{path}': {cause}")]
    Body { path: String, cause: engine_util::files::FileError },
    #[error("no target: give a URL, or `target = \"http://...\"` in the scenario")]
    NoTarget,
}

fn conflict(text: String) -> FlagError {
    FlagError::Conflict(text)
}

impl Flags {
    /// Merges the scenario file (when one is given) under the flags, and checks the flags'
    /// own shape. Returns the notes to show: each value a flag replaced.
    pub fn overlay(&mut self) -> Result<Vec<String>, FlagError> {
        let mut notes = self.overlay_file()?;
        let promql = self.abort_on.iter().any(|e| e.metric == engine_results::thresholds::Metric::Promql);
        if let (Some(url), false) = (&self.prometheus, promql) {
            notes.push(format!("--prometheus {url} is asked only by promql: safety stops, and this run has none"));
        }
        Ok(notes)
    }

    fn overlay_file(&mut self) -> Result<Vec<String>, FlagError> {
        self.shape()?;
        let mut notes = Vec::new();
        let Some(path) = self.scenario.clone() else { return Ok(notes) };
        let sc = Scenario::load(&path)?;
        let name = path.display().to_string();
        let ctx = |field: &str| format!("scenario '{name}': {field}");
        if let Some(t) = &sc.target {
            replace(&mut notes, "the URL", &mut self.url, "target", Some(t.clone()));
        }
        match sc.parts.is_empty() {
            true => self.load(&sc, &ctx, &mut notes)?,
            false => self.parts(&sc, &name, &ctx, &mut notes)?,
        }
        let timeout = duration(&sc.defaults.timeout, &ctx("defaults.timeout"))?;
        replace_with(&mut notes, "--timeout", &mut self.timeout, "defaults.timeout", timeout, |d| format!("{d:?}"));
        let expect = sc.expect_status(&name)?;
        replace_with(&mut notes, "--expect-status", &mut self.expect_status, "defaults.expect_status", expect, |s| {
            format!("{s:?}")
        });
        let mut headers = sc.default_headers();
        headers.append(&mut self.headers);
        self.headers = headers;
        let mut checks = sc.default_checks();
        checks.append(&mut self.checks);
        self.checks = checks;
        self.threshold = expressions(&mut notes, "--threshold", &self.threshold, &sc.thresholds, &ctx("thresholds"))?;
        self.abort_on = expressions(&mut notes, "--abort-on", &self.abort_on, &sc.abort_on, &ctx("abort_on"))?;
        replace(&mut notes, "--prometheus", &mut self.prometheus, "prometheus", sc.prometheus.clone());
        (self.criterion, self.baseline) = criterion(&sc, &ctx)?;
        self.requests = sc.request_specs(&name)?;
        self.flows = sc.flow_specs(&name)?;
        let base = path.parent().unwrap_or(Path::new("."));
        self.data = sc.data_table(base, &name)?.map(Arc::new);
        Ok(notes)
    }

    /// The plan's input (all but TLS, which the caller sets from its own options).
    pub fn input(&self) -> Result<PlanInput, FlagError> {
        let body = match self.body.as_deref() {
            None => Vec::new(),
            Some(b) => match b.strip_prefix('@') {
                Some(file) => engine_util::files::read_limited(file.as_ref(), MAX_BODY as u64)
                    .map_err(|cause| FlagError::Body { path: file.to_string(), cause })?,
                None => b.as_bytes().to_vec(),
            },
        };
        let url = self.url.as_deref().ok_or(FlagError::NoTarget)?;
        let mut input = PlanInput::new(url);
        input.conns = self.conns.unwrap_or(DEFAULT_CONNS);
        input.duration = self.duration.unwrap_or(DEFAULT_DURATION);
        input.rate = self.rate;
        input.stages = match (self.profile, self.peak) {
            (Some(p), Some(peak)) => {
                if !(peak.is_finite() && (1.0..=crate::schedule::MAX_STAGE_TARGET).contains(&peak)) {
                    return Err(conflict(format!(
                        "--peak must be a level from 1 to {}",
                        crate::schedule::MAX_STAGE_TARGET
                    )));
                }
                if self.step().is_zero() {
                    return Err(conflict(
                        "--step must be more than 0: each level of the profile is held that long".into(),
                    ));
                }
                Some(p.stages(peak, self.step(), self.baseline))
            }
            _ => self.stages.clone(),
        };
        input.method = self.method.clone();
        input.headers = self.headers.clone();
        input.body = body;
        input.timeout = self.timeout.unwrap_or(DEFAULT_TIMEOUT);
        input.requests = self.requests.clone();
        input.flows = self.flows.clone();
        input.data = self.data.clone();
        input.connect_timeout = self.connect_timeout;
        input.shards = self.shards;
        input.cores = self.cores.clone();
        input.busy_poll = Some(self.busy_poll);
        input.worker = self.worker;
        input.start_at = self.start_at;
        input.source_ips = self.source_ips.clone();
        input.expect_status = self.expect_status.unwrap_or_default();
        input.checks = self.checks.clone();
        input.max_users = self.max_users;
        input.parts = self.parts.clone();
        input.http2 = self.http2.clone();
        input.grpc = self.grpc.clone();
        Ok(input)
    }

    /// The names `--out` placeholders take: `{scenario}` (the file's stem, else `none`),
    /// `{profile}` (else `none`), `{model}` (`open` or `closed`).
    pub fn out_vars(&self) -> Vec<(&'static str, String)> {
        let scenario = self.scenario.as_deref().and_then(|p| p.file_stem()).map(|s| s.to_string_lossy().into_owned());
        vec![
            ("scenario", scenario.unwrap_or_else(|| "none".into())),
            ("profile", self.profile.map_or("none", |p| p.name()).to_string()),
            ("model", self.model_word().to_string()),
        ]
    }

    /// `open` or `closed`, or for several scenarios of both models `mixed`.
    fn model_word(&self) -> &'static str {
        if self.parts.is_empty() {
            return if self.rate.is_some() { "open" } else { "closed" };
        }
        match (self.parts.iter().all(|p| p.rate.is_some()), self.parts.iter().any(|p| p.rate.is_some())) {
            (true, _) => "open",
            (false, false) => "closed",
            (false, true) => "mixed",
        }
    }

    /// What judges the run: thresholds, safety stops, the profile's figures.
    pub fn judges(&self) -> Judges {
        Judges {
            thresholds: self.threshold.clone(),
            abort_on: self.abort_on.clone(),
            abort_grace: self.abort_grace(),
            prometheus: self.prometheus.clone(),
            profile: self.judged_profile(),
        }
    }

    /// The profile the levels are judged by: a named one at its peak, or the run's own
    /// stages (each held stage a level, the peak their highest target).
    fn judged_profile(&self) -> Option<Profile> {
        let criterion = self.criterion;
        match (self.profile, self.peak, &self.stages) {
            (Some(name), Some(peak), _) => Some(Profile { name: Some(name), peak, criterion }),
            (None, _, Some(stages)) => {
                let peak = stages.iter().map(|s| s.target).fold(0.0, f64::max);
                Some(Profile { name: None, peak, criterion })
            }
            _ => None,
        }
    }

    /// A profile level's hold.
    pub fn step(&self) -> Duration {
        self.step.unwrap_or(DEFAULT_STEP)
    }

    /// Consecutive intervals a safety stop without its own `for N` must hold.
    pub fn abort_grace(&self) -> u32 {
        self.abort_grace.unwrap_or(DEFAULT_ABORT_GRACE)
    }

    /// The load: a shape given as flags (--stages, --profile) replaces the file's; single
    /// values given as flags replace the file's one by one.
    fn load(&mut self, sc: &Scenario, ctx: &dyn Fn(&str) -> String, notes: &mut Vec<String>) -> Result<(), FlagError> {
        let l = &sc.load;
        let file_shape = match (&l.stages, &l.profile) {
            (Some(_), _) => Some("load.stages"),
            (None, Some(_)) => Some("load.profile"),
            (None, None) => None,
        };
        let flag_shape = if self.stages.is_some() { Some("--stages") } else { self.profile.map(|_| "--profile") };
        match (flag_shape, file_shape) {
            (Some(flag), Some(field)) => notes.push(format!("{flag} replaces the scenario's {field}")),
            (None, Some(field)) => self.file_shape_wins(sc, field, ctx)?,
            _ => {}
        }
        let file_duration = duration(&l.duration, &ctx("load.duration"))?;
        match flag_shape {
            // The flags' stages set connections (closed model) and length: the file's go.
            Some(flag) => {
                let closed = self.rate.is_none() && l.rate.is_none();
                match l.conns {
                    Some(c) if closed => notes.push(format!("{flag} replaces the scenario's load.conns = {c}")),
                    _ => replace(notes, "-c", &mut self.conns, "load.conns", l.conns),
                }
                if let Some(d) = file_duration {
                    notes.push(format!("{flag} replaces the scenario's load.duration = {d:?}"));
                }
            }
            None => {
                replace(notes, "-c", &mut self.conns, "load.conns", l.conns);
                replace_with(notes, "-d", &mut self.duration, "load.duration", file_duration, |d| format!("{d:?}"));
            }
        }
        replace(notes, "--rate", &mut self.rate, "load.rate", l.rate);
        replace(notes, "--peak", &mut self.peak, "load.peak", l.peak);
        let step = duration(&l.step, &ctx("load.step"))?;
        replace_with(notes, "--step", &mut self.step, "load.step", step, |d| format!("{d:?}"));
        replace(notes, "--abort-grace", &mut self.abort_grace, "load.abort_grace", l.abort_grace);
        replace(notes, "--max-users", &mut self.max_users, "load.max_users", l.max_users);
        if self.profile.is_some() && self.peak.is_none() {
            return Err(conflict("a profile needs a peak: --peak N (or load.peak in the scenario)".into()));
        }
        Ok(())
    }

    /// Several scenarios, each with its own load: a flag that shapes the load would apply to
    /// none of them in particular, so it is an error naming the file's sections.
    fn parts(
        &mut self,
        sc: &Scenario,
        name: &str,
        ctx: &dyn Fn(&str) -> String,
        notes: &mut Vec<String>,
    ) -> Result<(), FlagError> {
        let given = [
            ("-c", self.conns.is_some()),
            ("-d", self.duration.is_some()),
            ("--rate", self.rate.is_some()),
            ("--stages", self.stages.is_some()),
            ("--profile", self.profile.is_some()),
            ("--peak", self.peak.is_some()),
            ("--step", self.step.is_some()),
            ("--max-users", self.max_users.is_some()),
        ];
        if let Some((flag, _)) = given.iter().find(|(_, set)| *set) {
            return Err(conflict(format!(
                "{flag} does not apply to scenario '{name}': its {} [[scenario]]s each have their own [scenario.load] \
                 (edit the file, or run one of them from a file of its own)",
                sc.parts.len()
            )));
        }
        replace(notes, "--abort-grace", &mut self.abort_grace, "load.abort_grace", sc.load.abort_grace);
        let specs = sc.part_specs(name)?;
        self.parts = Vec::with_capacity(specs.len());
        for (p, (requests, flows)) in sc.parts.iter().zip(specs) {
            let at = |field: &str| ctx(&format!("scenario '{}': {field}", p.name));
            let l = &p.load;
            let stages = l
                .stages
                .as_deref()
                .map(crate::schedule::parse_stages)
                .transpose()
                .map_err(|why| FlagError::Field { what: at("load.stages"), why })?;
            let length = duration(&l.duration, &at("load.duration"))?;
            if stages.is_some() && length.is_some() {
                return Err(conflict(format!(
                    "{}: load.duration and load.stages contradict each other: the stages set its length",
                    at("load")
                )));
            }
            if let (Some(c), true, None) = (l.conns, stages.is_some(), l.rate) {
                return Err(conflict(format!(
                    "{}: load.conns = {c} and load.stages contradict each other: in the closed model the stages set \
                     the connections",
                    at("load")
                )));
            }
            self.parts.push(PartInput {
                name: p.name.clone(),
                start: duration(&p.start, &at("start"))?.unwrap_or_default(),
                conns: l.conns.unwrap_or(DEFAULT_CONNS),
                duration: length.unwrap_or(DEFAULT_DURATION),
                rate: l.rate,
                stages,
                max_users: l.max_users,
                requests,
                flows,
            });
        }
        Ok(())
    }

    /// The file's stages or profile set the load; a flag that contradicts them is an error.
    fn file_shape_wins(&mut self, sc: &Scenario, field: &str, ctx: &dyn Fn(&str) -> String) -> Result<(), FlagError> {
        let l = &sc.load;
        let closed = self.rate.is_none() && l.rate.is_none();
        if let (Some(c), true) = (l.conns, closed) {
            return Err(conflict(format!(
                "{}: load.conns = {c} and {field} contradict each other: in the closed model the stages set the connections",
                ctx("load")
            )));
        }
        if l.duration.is_some() {
            return Err(conflict(format!(
                "{}: load.duration and {field} contradict each other: the stages set the run's length",
                ctx("load")
            )));
        }
        if let (Some(c), true) = (self.conns, closed) {
            return Err(conflict(format!(
                "-c {c} contradicts the scenario's {field}: in the closed model its stages set the connections \
                 (drop -c, or replace the shape with --stages)"
            )));
        }
        if let Some(d) = self.duration {
            return Err(conflict(format!(
                "-d {d:?} contradicts the scenario's {field}: its stages set the run's length (drop -d, or replace the \
                 shape with --stages)"
            )));
        }
        if let Some(st) = &l.stages {
            let stages =
                crate::schedule::parse_stages(st).map_err(|why| FlagError::Field { what: ctx("load.stages"), why })?;
            self.stages = Some(stages);
        }
        if let Some(p) = &l.profile {
            self.profile =
                Some(ProfileName::parse(p).map_err(|why| FlagError::Field { what: ctx("load.profile"), why })?);
        }
        Ok(())
    }

    /// The flags' own shape: stages of connections set the connections and the length.
    fn shape(&self) -> Result<(), FlagError> {
        let shape = if self.stages.is_some() { Some("--stages") } else { self.profile.map(|_| "--profile") };
        let Some(shape) = shape else { return Ok(()) };
        if let (Some(c), None) = (self.conns, self.rate) {
            return Err(conflict(format!(
                "-c {c} contradicts {shape}: in the closed model the stages set the connections (drop -c, or add --rate \
                 for stages of rate)"
            )));
        }
        if let Some(d) = self.duration {
            return Err(conflict(format!("-d {d:?} contradicts {shape}: the stages set the run's length (drop -d)")));
        }
        Ok(())
    }
}

/// The flag's value, or the file's when no flag was given; a note when a flag replaces a
/// different value of the file.
fn replace<T: PartialEq + std::fmt::Display>(
    notes: &mut Vec<String>,
    flag: &str,
    value: &mut Option<T>,
    field: &str,
    file: Option<T>,
) {
    replace_with(notes, flag, value, field, file, |v| v.to_string());
}

fn replace_with<T: PartialEq>(
    notes: &mut Vec<String>,
    flag: &str,
    value: &mut Option<T>,
    field: &str,
    file: Option<T>,
    show: impl Fn(&T) -> String,
) {
    match (value.as_ref(), file) {
        (Some(v), Some(f)) if *v != f => {
            notes.push(format!("{flag} {} replaces the scenario's {field} = {}", show(v), show(&f)))
        }
        (None, Some(f)) => *value = Some(f),
        _ => {}
    }
}

fn duration(text: &Option<String>, what: &str) -> Result<Option<Duration>, FlagError> {
    text.as_deref()
        .map(|t| engine_util::units::parse_duration(t).map_err(|why| FlagError::Field { what: what.to_string(), why }))
        .transpose()
}

/// The file's expressions and the flags': a flag replaces the file's expression on the same
/// metric and selector (a stricter file threshold can be relaxed for one run).
fn expressions(
    notes: &mut Vec<String>,
    flag: &str,
    given: &[Expr],
    file: &[String],
    what: &str,
) -> Result<Vec<Expr>, FlagError> {
    let mut out = Vec::new();
    for text in file {
        let e = Expr::parse(text).map_err(|why| FlagError::Field { what: what.to_string(), why })?;
        match given.iter().find(|g| g.key() == e.key()) {
            Some(g) if g.text != e.text => notes.push(format!("{flag} '{g}' replaces the scenario's '{e}'")),
            Some(_) => {}
            None => out.push(e),
        }
    }
    out.extend(given.iter().cloned());
    Ok(out)
}

/// A profile level's criterion: the defaults, or the scenario's `[profile]`.
/// The profile's criterion, and the baseline share of spike and recovery if the file sets one.
fn criterion(sc: &Scenario, ctx: &dyn Fn(&str) -> String) -> Result<(Criterion, Option<f64>), FlagError> {
    let mut c = Criterion::default();
    let p = &sc.profile;
    if let Some(d) = duration(&p.p99, &ctx("profile.p99"))? {
        c.p99_ms = d.as_secs_f64() * 1000.0;
    }
    c.p95_ms = duration(&p.p95, &ctx("profile.p95"))?.map(|d| d.as_secs_f64() * 1000.0);
    let share = |text: &Option<String>, field: &str| -> Result<Option<f64>, FlagError> {
        text.as_deref()
            .map(|t| {
                let v = match t.trim().strip_suffix('%') {
                    Some(p) => p.trim().parse::<f64>().map(|v| v / 100.0),
                    None => t.trim().parse::<f64>(),
                };
                v.ok().filter(|v| (0.0..=1.0).contains(v)).ok_or_else(|| FlagError::Field {
                    what: ctx(field),
                    why: format!("'{t}' is not a share (1%, 0.01)"),
                })
            })
            .transpose()
    };
    if let Some(e) = share(&p.error_rate, "profile.error_rate")? {
        c.error_rate = e;
    }
    if let Some(a) = share(&p.achieved, "profile.achieved")? {
        c.min_rate_share = a;
    }
    let baseline = share(&p.baseline, "profile.baseline")?.filter(|b| *b > 0.0);
    if p.baseline.is_some() && baseline.is_none() {
        return Err(FlagError::Field { what: ctx("profile.baseline"), why: "a baseline is more than 0%".into() });
    }
    Ok((c, baseline))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scenario(text: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("engine-flags-{}-{}", std::process::id(), text.len()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("plan.toml");
        std::fs::write(&path, text).unwrap();
        path
    }

    /// Flags over the file, each replaced value named; the file fills what no flag gave; a
    /// flag that contradicts the file's shape is an error naming both.
    #[test]
    fn a_flag_overrides_the_file_and_says_so() {
        let path = scenario("target = \"http://127.0.0.1:9/\"\n[load]\nconns = 20\nduration = \"30s\"\n[[request]]\nname = \"a\"\npath = \"/\"\n");
        let mut f = Flags { scenario: Some(path.clone()), conns: Some(5), ..Default::default() };
        let notes = f.overlay().unwrap();
        assert_eq!((f.conns, f.duration), (Some(5), Some(Duration::from_secs(30))));
        assert_eq!(f.url.as_deref(), Some("http://127.0.0.1:9/"));
        assert_eq!(notes, vec!["-c 5 replaces the scenario's load.conns = 20".to_string()]);
        let mut same = Flags { scenario: Some(path.clone()), conns: Some(20), ..Default::default() };
        assert!(same.overlay().unwrap().is_empty(), "a flag that repeats the file's value replaces nothing");

        let staged = scenario("target = \"http://127.0.0.1:9/\"\n[load]\nstages = \"10:5s,0:5s\"\n[[request]]\nname = \"a\"\npath = \"/\"\n\n");
        let mut f =
            Flags { scenario: Some(staged.clone()), duration: Some(Duration::from_secs(3)), ..Default::default() };
        let e = f.overlay().unwrap_err().to_string();
        assert!(e.contains("-d 3s contradicts the scenario's load.stages"), "{e}");
        for p in [path, staged] {
            let _ = std::fs::remove_dir_all(p.parent().unwrap());
        }
    }

    /// `[profile]` sets a p95 criterion and the spike's baseline; `[load] max_users` is
    /// `--max-users` in the file.
    #[test]
    fn the_profile_section_sets_the_criterion_and_the_baseline() {
        let text = "target = \"http://127.0.0.1:9/\"\n[load]\nprofile = \"spike\"\npeak = 1000\nstep = \"10s\"\nmax_users = 7\n\
                    [profile]\np95 = \"300ms\"\nbaseline = \"10%\"\n[[request]]\nname = \"a\"\npath = \"/\"\n";
        let path = scenario(text);
        let mut f = Flags { scenario: Some(path.clone()), ..Default::default() };
        f.overlay().unwrap();
        assert_eq!((f.criterion.p95_ms, f.baseline, f.max_users), (Some(300.0), Some(0.1), Some(7)));
        let stages = f.input().unwrap().stages.unwrap();
        assert_eq!((stages[1].target, stages[3].target), (100.0, 1000.0), "{stages:?}");
        let _ = std::fs::remove_dir_all(path.parent().unwrap());
        let bad = scenario(&text.replace("10%", "0%"));
        let e = Flags { scenario: Some(bad.clone()), ..Default::default() }.overlay().unwrap_err().to_string();
        assert!(e.contains("profile.baseline") && e.contains("more than 0%"), "{e}");
        let _ = std::fs::remove_dir_all(bad.parent().unwrap());
    }
}
