//! Terminal output: the banner, the per-interval progress line and the summary.

use std::fmt::Write as _;
use std::io::{IsTerminal, Write};

use engine_blast::plan::Model;
use engine_blast::profiles::ProfileName;
use engine_blast::{Plan, Summary};
use engine_results::observe::{Flow, Interval, Observer};
use engine_results::profile::Criterion;
pub use engine_results::render::{human_duration, ms};

pub fn banner(plan: &Plan) -> String {
    let shards = plan.shard_cpus.len();
    let profile = plan.model.profile();
    let load = match (&plan.model, profile.is_constant()) {
        (Model::Closed(_), true) => "closed model".to_string(),
        (Model::Open(_), true) if plan.arrival_flows() => {
            format!("open model at {} iterations/s (users starting a flow)", profile.max())
        }
        (Model::Open(_), true) => format!("open model at {} req/s", profile.max()),
        (Model::Closed(_), false) => format!("closed model, stages {}", stages(profile)),
        (Model::Open(_), false) if plan.arrival_flows() => {
            format!("open model, iteration-rate stages {}", stages(profile))
        }
        (Model::Open(_), false) => format!("open model, rate stages {}", stages(profile)),
    };
    format!(
        "engine blast {} {} — {load}, {} connections on {} shard{} (CPU {}{}{}), {}",
        match plan.requests.as_slice() {
            [one] => one.method.clone(),
            many => format!("{} weighted requests to", many.len()),
        },
        plan.target.url,
        plan.conns,
        shards,
        if shards == 1 { "" } else { "s" },
        distinct(&plan.shard_cpus).iter().map(|c| c.to_string()).collect::<Vec<_>>().join(","),
        shared_cpus(&plan.shard_cpus),
        plan.busy_poll.map_or(String::new(), |d| format!(", busy-polling {d:?}")),
        human_duration(plan.duration.as_secs_f64()),
    ) + &plan.worker.map_or(String::new(), |w| format!(" — worker {} of {} (its share)", w.index, w.count))
}

fn distinct(shard_cpus: &[usize]) -> Vec<usize> {
    let mut cpus = shard_cpus.to_vec();
    cpus.sort_unstable();
    cpus.dedup();
    cpus
}

/// For a start line: a note when shards outnumber their CPUs. Shards on one CPU only take
/// turns on it: more switching, no more CPU.
pub fn shared_cpus(shard_cpus: &[usize]) -> String {
    let cpus = distinct(shard_cpus).len();
    if shard_cpus.len() > cpus {
        format!(
            ", up to {} shards per CPU, taking turns; --shards {cpus} would use them better",
            shard_cpus.len().div_ceil(cpus)
        )
    } else {
        String::new()
    }
}

fn stages(p: &engine_blast::schedule::Profile) -> String {
    if p.stages().len() > 4 {
        return format!("({} stages, see --print-plan)", p.stages().len());
    }
    p.stages()
        .iter()
        .map(|s| format!("{}:{}", s.target, human_duration(s.duration.as_secs_f64())))
        .collect::<Vec<_>>()
        .join(",")
}

/// The resolved plan, for --print-plan: what would run, and the `--stages` to copy.
pub fn plan_text(
    plan: &Plan,
    profile: Option<ProfileName>,
    peak: Option<f64>,
    step: std::time::Duration,
    criterion: &Criterion,
) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "{}", banner(plan));
    let (unit, open) = match plan.model {
        Model::Closed(_) => ("connections", false),
        Model::Open(_) => ("req/s", true),
    };
    if let (Some(p), Some(peak)) = (profile, peak) {
        let _ =
            writeln!(o, "profile {} at peak {peak} {unit}, {} per level", p.name(), human_duration(step.as_secs_f64()));
        if p == ProfileName::Stress || p == ProfileName::Spike || p == ProfileName::Recovery {
            let _ = writeln!(o, "a level holds when, over its whole hold, {}", criterion.describe(open));
        }
    }
    let prof = plan.model.profile();
    if !prof.is_constant() {
        let mut t = 0.0;
        for (i, s) in prof.stages().iter().enumerate() {
            let d = s.duration.as_secs_f64();
            let _ = writeln!(
                o,
                "  stage {:>2}  {:>8} .. {:>8}  to {} {unit}",
                i + 1,
                human_duration(t),
                human_duration(t + d),
                s.target
            );
            t += d;
        }
        let stages: Vec<String> =
            prof.stages().iter().map(|s| format!("{}:{}", s.target, compact(s.duration))).collect();
        // Rate stages ramp from --rate: the equivalent command keeps it.
        let rate = if open { format!(" --rate {}", prof.start()) } else { String::new() };
        let _ = writeln!(
            o,
            "equivalent: engine blast {} -c {}{rate} --stages {}",
            plan.target.url,
            plan.conns,
            stages.join(",")
        );
    }
    if let Some(expected) = plan.expected_requests() {
        let _ = writeln!(o, "requests scheduled: {expected}");
    }
    o
}

/// A duration as the shortest `--stages` text: 90s → 90s, 500ms → 500ms.
fn compact(d: std::time::Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

/// One line per interval on stderr: rewritten in place on a terminal, plain lines otherwise.
pub struct Progress {
    quiet: bool,
    tty: bool,
    drawn: bool,
    /// Stages of the plan, when it has several.
    stages: usize,
    /// The generator was saturated in an earlier interval: said once, on its own line.
    warned: bool,
    /// Arrival-rate flows: iterations started are shown beside requests.
    iterations: bool,
}

impl Progress {
    pub fn new(quiet: bool, plan: &Plan) -> Self {
        let stages = plan.model.profile().stages().len();
        let iterations = plan.arrival_flows();
        Self { quiet, tty: std::io::stderr().is_terminal(), drawn: false, stages, warned: false, iterations }
    }

    fn update(&mut self, i: &Interval<'_>) {
        if self.quiet {
            return;
        }
        let p = i.point;
        let stage = if self.stages > 1 {
            format!("  stage {}/{}", i.stage.min(self.stages), self.stages)
        } else {
            String::new()
        };
        let latency = if p.requests == 0 {
            "no response".to_string()
        } else {
            format!("p50 {}  p99 {}", ms(p.p50_ms), ms(p.p99_ms))
        };
        let iterations = match i.totals.iterations.as_deref() {
            Some(it) if self.iterations => format!("  {:.0} iterations/s", it.started as f64 / i.seconds()),
            _ => String::new(),
        };
        let line = format!(
            "[{:>5.1}s/{:.0}s] {:>10.0} req/s{iterations}  {latency}  errors {}  open {}  target {}{stage}",
            i.elapsed_s, i.planned_s, p.rps, p.errors, p.open, p.target
        );
        let mut err = std::io::stderr().lock();
        let busiest = i.busy.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1));
        if let Some((shard, &busy)) = busiest.filter(|(_, &b)| b > engine_results::summary::SATURATED && !self.warned) {
            self.warned = true;
            let _ = write!(err, "{}", if self.drawn { "\r\x1b[2K" } else { "" });
            let _ = writeln!(
                err,
                "engine: warning: shard {shard} was on the CPU or waiting for it {:.0}% of the last second: the generator is saturated, \
                 and latency includes its own queueing (add shards or hosts)",
                busy * 100.0
            );
        }
        if self.tty {
            let _ = write!(err, "\r\x1b[2K{line}");
            self.drawn = true;
        } else {
            let _ = writeln!(err, "{line}");
        }
        let _ = err.flush();
    }

    pub fn finish(&mut self) {
        if self.drawn {
            eprintln!();
            self.drawn = false;
        }
    }
}

impl Observer for Progress {
    fn interval(&mut self, i: &Interval<'_>) -> Flow {
        self.update(i);
        Flow::Continue
    }

    fn finish(&mut self, _: &mut Summary) {
        Progress::finish(self);
    }
}
