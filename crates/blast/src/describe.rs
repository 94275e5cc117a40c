//! A plan in words: the banner a run starts with, and `--print-plan`'s whole account of it.

use std::fmt::Write as _;

use engine_results::render::human_duration;

use crate::flags::Flags;
use crate::plan::{Model, Part, Plan};
use crate::profiles::ProfileName;

pub fn banner(plan: &Plan) -> String {
    let shards = plan.shard_cpus.len();
    let (what, load) = match plan.single() {
        Some(part) => (
            match plan.requests.as_slice() {
                [one] => one.method.clone(),
                many => format!("{} weighted requests to", many.len()),
            },
            load_words(part),
        ),
        None => ("scenarios at".to_string(), format!("{} scenarios", plan.parts.len())),
    };
    let mut text =
        format!(
            "engine blast {what} {} — {load}, {} connections on {} shard{} (CPU {}{}{}), {}",
            plan.target.url,
            plan.conns,
            shards,
            if shards == 1 { "" } else { "s" },
            engine_runtime::affinity::distinct(&plan.shard_cpus)
                .iter()
                .map(|c| c.to_string())
                .collect::<Vec<_>>()
                .join(","),
            engine_runtime::affinity::shared_cpus(&plan.shard_cpus),
            plan.busy_poll.map_or(String::new(), |d| format!(", busy-polling {d:?}")),
            human_duration(plan.duration.as_secs_f64()),
        ) + &plan.worker.map_or(String::new(), |w| format!(" — worker {} of {} (its share)", w.index, w.count));
    if let Some(h) = &plan.http2 {
        let how = match h.mode(plan.target.tls) {
            "h2c" => "h2c by prior knowledge",
            "h2" => "h2 by prior knowledge (no fallback)",
            _ => "h2 by ALPN, or HTTP/1.1 if the server chooses it",
        };
        let _ = write!(
            text,
            "
  HTTP/2: {how}, {} stream{} per connection",
            h.streams,
            if h.streams == 1 { "" } else { "s" }
        );
    }
    if plan.single().is_none() {
        for p in &plan.parts {
            let sends = match p.flows.len() {
                0 => format!("{} request{}", p.requests.len(), if p.requests.len() == 1 { "" } else { "s" }),
                n => format!("{n} flow{}", if n == 1 { "" } else { "s" }),
            };
            let _ = write!(
                text,
                "\n  scenario {}: {}, {} connections, {sends}, from {} to {}",
                p.name,
                load_words(p),
                p.conns,
                human_duration(p.start.as_secs_f64()),
                human_duration(p.end().as_secs_f64()),
            );
        }
    }
    text
}

/// A part's load in words: its model and its level or stages.
fn load_words(part: &Part) -> String {
    let profile = part.model.profile();
    match (&part.model, profile.is_constant()) {
        (Model::Closed(_), true) => "closed model".to_string(),
        (Model::Open(_), true) if part.arrival_flows() => {
            format!("open model at {} iterations/s (users starting a flow)", profile.max())
        }
        (Model::Open(_), true) => format!("open model at {} req/s", profile.max()),
        (Model::Closed(_), false) => format!("closed model, stages {}", stages(profile)),
        (Model::Open(_), false) if part.arrival_flows() => {
            format!("open model, iteration-rate stages {}", stages(profile))
        }
        (Model::Open(_), false) => format!("open model, rate stages {}", stages(profile)),
    }
}

fn stages(p: &crate::schedule::Profile) -> String {
    if p.stages().len() > 4 {
        return format!("({} stages, see --print-plan)", p.stages().len());
    }
    p.stages()
        .iter()
        .map(|s| format!("{}:{}", s.target, human_duration(s.duration.as_secs_f64())))
        .collect::<Vec<_>>()
        .join(",")
}

/// The resolved plan, for `--print-plan`: what would run, the `--stages` to copy, and what
/// judges it.
pub fn plan_text(plan: &Plan, flags: &Flags) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "{}", banner(plan));
    if let Some(part) = plan.single() {
        stage_table(&mut o, plan, part, flags);
    }
    if let Some(expected) = plan.expected_requests() {
        let _ = writeln!(o, "requests scheduled: {expected}");
    }
    for p in plan.parts.iter().filter(|_| plan.single().is_none()) {
        if let Some(n) = p.scheduled_until(f64::INFINITY) {
            let what = if p.arrival_flows() { "iterations" } else { "requests" };
            let _ = writeln!(o, "scenario {}: {what} scheduled: {n}", p.name);
        }
    }
    for t in &flags.threshold {
        let _ = writeln!(o, "threshold: {t}");
    }
    for a in &flags.abort_on {
        // An expression's own `for N` is its grace; the others take --abort-grace (a count, 1).
        let _ = match a.grace {
            Some(_) => writeln!(o, "safety stop: {a}"),
            None => writeln!(o, "safety stop: {a} for {} consecutive intervals", a.stop_grace(flags.abort_grace())),
        };
    }
    o
}

/// The profile and each stage of a plan of one part, and the command that runs the same.
fn stage_table(o: &mut String, plan: &Plan, part: &Part, flags: &Flags) {
    let (profile, peak, step, criterion) = (flags.profile, flags.peak, flags.step(), &flags.criterion);
    let (unit, open) = match part.model {
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
    let prof = part.model.profile();
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
}

/// A duration as the shortest `--stages` text: 90s → 90s, 500ms → 500ms.
fn compact(d: std::time::Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}
