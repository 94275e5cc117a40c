//! Terminal output: the banner, the per-interval progress line and the summary.

use std::fmt::Write as _;
use std::io::{IsTerminal, Write};

use engine_blast::plan::Model;
use engine_blast::profiles::ProfileName;
use engine_blast::{Plan, Summary};
use engine_results::observe::{Flow, Interval, Observer};
use engine_results::profile::Criterion;
use engine_results::summary::Latency;

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

pub fn summary_text(s: &Summary) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "\n{} requests in {}, {:.1} req/s{}",
        s.requests,
        human_duration(s.duration_s),
        s.rps,
        if s.interrupted { " (interrupted)" } else { "" }
    );
    latency_line(&mut o, "latency", &s.latency_ms, s.requests);
    if s.latency_uncorrected_ms != s.latency_ms {
        latency_line(&mut o, "uncorrected", &s.latency_uncorrected_ms, s.requests);
    }
    if s.errors.status > 0 && s.requests > 0 {
        // Fast failures would flatter the whole: the expected responses' own latency.
        latency_line(&mut o, "expected", &s.latency_ok_ms, s.requests - s.errors.status);
    }
    schedule_lines(&mut o, s);
    iteration_line(&mut o, s);
    profile_line(&mut o, s);
    named_lines(&mut o, s);
    let status: Vec<String> = s.status.iter().map(|(k, v)| format!("{k}: {v}")).collect();
    let _ = writeln!(o, "  {:<12}{}", "status", if status.is_empty() { "none".into() } else { status.join("  ") });
    let e = &s.errors;
    let _ = writeln!(
        o,
        "  {:<12}{} (connect {}, timeout {}, reset {}, closed {}, parse {}, status {}, tls {}){}",
        "errors",
        e.total,
        e.connect,
        e.timeout,
        e.reset,
        e.closed,
        e.parse,
        e.status,
        e.tls,
        if s.requests + e.total > 0 { format!("; error rate {:.2}%", error_rate(s) * 100.0) } else { String::new() }
    );
    let _ = writeln!(o, "  {:<12}sent {}, received {}", "transfer", bytes(s.bytes.sent), bytes(s.bytes.received));
    let _ = writeln!(
        o,
        "  {:<12}opened {}, peak open {}{}",
        "connections",
        s.connections.opened,
        s.connections.peak_open,
        if s.abandoned > 0 {
            format!(", {} requests abandoned in flight at the end", s.abandoned)
        } else {
            String::new()
        }
    );
    tls_lines(&mut o, s);
    verdict_lines(&mut o, s);
    o
}

/// Connect and handshake times, and how TLS went.
fn tls_lines(o: &mut String, s: &Summary) {
    if let Some(l) = &s.connect_ms {
        latency_line(o, "connect", l, 1);
    }
    if let Some(l) = &s.tls_handshake_ms {
        latency_line(o, "handshake", l, 1);
    }
    if let Some(t) = &s.tls {
        let _ = writeln!(
            o,
            "  {:<12}{} {}; handshakes {} full, {} resumed ({:.1}% resumed), {:.1}/s",
            "tls",
            t.version,
            t.cipher,
            t.handshakes_full,
            t.handshakes_resumed,
            t.resumed_share * 100.0,
            t.handshakes_per_s
        );
        let e = &t.errors;
        let reasons: Vec<String> = [
            ("certificate", e.certificate),
            ("alert", e.alert),
            ("bad_record", e.bad_record),
            ("truncated", e.truncated),
            ("handshake", e.handshake),
            ("other", e.other),
        ]
        .iter()
        .filter(|(_, n)| *n > 0)
        .map(|(k, n)| format!("{k} {n}"))
        .collect();
        if !reasons.is_empty() {
            let _ = writeln!(o, "  {:<12}{}", "tls errors", reasons.join(", "));
        }
    }
}

/// Thresholds, the safety stop that fired, warnings.
fn verdict_lines(o: &mut String, s: &Summary) {
    for t in &s.thresholds {
        let verdict = if t.pass { "PASS" } else { "FAIL" };
        let figure = if t.no_data {
            "no data: nothing it selects was measured, which fails it".to_string()
        } else {
            format!("measured {}", measured(&t.expr, t.value))
        };
        let _ = writeln!(o, "  {:<12}{verdict} {} ({figure})", "threshold", t.expr);
    }
    if let Some(f) = &s.stopped_by {
        let _ = writeln!(
            o,
            "  {:<12}'{}' held for the grace period; stopped at {:.1}s (measured {})",
            "safety stop",
            f.expr,
            f.at_s,
            measured(&f.expr, f.value)
        );
    }
    for w in &s.warnings {
        let _ = writeln!(o, "  warning: {w}");
    }
}

/// A measured value in the unit its expression uses.
fn error_rate(s: &Summary) -> f64 {
    engine_results::thresholds::Figures::of_summary(s, &engine_results::thresholds::Selector::All)
        .map_or(0.0, |f| f.error_rate)
}

/// A measured value in the unit of its expression: `1.230%`, `950.0/s`, `12.50ms`.
fn measured(expr: &str, v: f64) -> String {
    match engine_results::thresholds::Expr::parse(expr).map(|e| e.metric) {
        Ok(engine_results::thresholds::Metric::ErrorRate) => format!("{:.3}%", v * 100.0),
        Ok(engine_results::thresholds::Metric::Rps) => format!("{v:.1}/s"),
        Ok(engine_results::thresholds::Metric::RecoveryS) => format!("{v:.1}s"),
        Ok(engine_results::thresholds::Metric::Capacity) => format!("{v}"),
        _ => ms(v),
    }
}

/// A latency line; with no `samples`, says so rather than print zeros.
fn latency_line(o: &mut String, label: &str, l: &Latency, samples: u64) {
    if samples == 0 {
        let _ = writeln!(o, "  {label:<12}no data (no response completed)");
        return;
    }
    let _ = writeln!(
        o,
        "  {:<12}mean {}  p50 {}  p90 {}  p95 {}  p99 {}  p99.9 {}  max {}",
        label,
        ms(l.mean),
        ms(l.p50),
        ms(l.p90),
        ms(l.p95),
        ms(l.p99),
        ms(l.p999),
        ms(l.max)
    );
}

/// Milliseconds with a unit that keeps three significant figures readable.
pub fn ms(v: f64) -> String {
    if v >= 1000.0 {
        format!("{:.2}s", v / 1000.0)
    } else if v >= 1.0 {
        format!("{v:.2}ms")
    } else {
        format!("{:.0}µs", v * 1000.0)
    }
}

fn bytes(b: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{b} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

fn human_duration(s: f64) -> String {
    if s >= 60.0 {
        format!("{}m{:02.0}s", (s / 60.0).floor(), s % 60.0)
    } else {
        format!("{s:.2}s")
    }
}

/// The open model's schedule: asked, achieved, sent, lag.
fn schedule_lines(o: &mut String, s: &Summary) {
    let Some(sch) = &s.schedule else { return };
    if let Some(i) = &s.iterations {
        // Arrival-rate flows schedule iterations (users walking a flow), not requests.
        let pct = if sch.target_rps > 0.0 { i.rate / sch.target_rps * 100.0 } else { 0.0 };
        let _ = writeln!(
            o,
            "  {:<12}iterations asked {:.1}/s, started {:.1}/s ({pct:.1}%); {} of {} scheduled started; requests \
             {:.1}/s over all steps",
            "rate", sch.target_rps, i.rate, sch.sent, sch.expected, s.rps
        );
        if sch.behind {
            let _ = writeln!(
                o,
                "  {:<12}the asked iteration rate was NOT reached: every user was busy (raise --max-users) or the target is slow",
                "warning"
            );
        }
        return;
    }
    let pct = if sch.target_rps > 0.0 { sch.achieved_rps / sch.target_rps * 100.0 } else { 0.0 };
    let _ = writeln!(
        o,
        "  {:<12}asked {:.1}/s, achieved {:.1}/s ({pct:.1}%); sent {} of {} scheduled; at most {} behind schedule",
        "rate",
        sch.target_rps,
        sch.achieved_rps,
        sch.sent,
        sch.expected,
        ms(sch.max_lag_ms)
    );
    if sch.behind {
        let _ = writeln!(
            o,
            "  {:<12}the asked rate was NOT reached: the connections could not keep up (add -c) or the target is at capacity",
            "warning"
        );
    }
}

/// What a named profile was run for.
fn profile_line(o: &mut String, s: &Summary) {
    let Some(p) = &s.profile else { return };
    let mut line = format!("{} at peak {}", p.name, p.peak);
    if let Some(c) = p.capacity {
        line += &format!("; capacity {c} (last level that held)");
    }
    if let Some(f) = p.failed_at {
        line += &format!("; failed at {f}");
        if let Some(why) = p.levels.iter().find(|l| l.level == f).and_then(|l| l.failed_on.as_deref()) {
            line += &format!(" ({why} over its hold)");
        }
    }
    if let Some(b) = p.best_rps {
        line += &format!("; best held rate {b:.1} req/s");
    }
    match (p.name.as_str(), p.recovery_s) {
        (_, Some(r)) => line += &format!("; p99 recovered {r:.0}s after the drop"),
        ("spike" | "recovery", None) => line += "; p99 did not recover to the baseline",
        _ => {}
    }
    let _ = writeln!(o, "  {:<12}{line}", "profile");
}

/// Per named request (scenarios).
fn named_lines(o: &mut String, s: &Summary) {
    // The share of what was sent: a weight is the plan's share of a request, but a flow's
    // steps all have weight 1 and run as often as users reach them.
    let total: u64 = s.requests_by_name.values().map(|n| n.requests + n.errors.total - n.errors.status).sum();
    for (name, n) in &s.requests_by_name {
        let latency = if n.requests == 0 {
            "no data".to_string()
        } else {
            format!("p50 {}  p95 {}  p99 {}", ms(n.latency_ms.p50), ms(n.latency_ms.p95), ms(n.latency_ms.p99))
        };
        let _ = writeln!(
            o,
            "  {:<12}{name:<16} {:>5.1}%  {:>9} req  {latency}  errors {}",
            "by name",
            (n.requests + n.errors.total - n.errors.status) as f64 * 100.0 / total.max(1) as f64,
            n.requests,
            n.errors.total
        );
    }
}

/// Arrival-rate flows: iterations started, completed, dropped, and the users in flight.
fn iteration_line(o: &mut String, s: &Summary) {
    let Some(i) = &s.iterations else { return };
    let _ = writeln!(
        o,
        "  {:<12}{} started ({:.1}/s), {} completed, {} failed, {} dropped (every user busy); users in flight {:.1} \
         (Little's law), peak {}; iteration p50 {} p99 {}",
        "iterations",
        i.started,
        i.rate,
        i.completed,
        i.failed,
        i.dropped,
        i.users_littles_law,
        i.users_peak,
        ms(i.latency_ms.p50),
        ms(i.latency_ms.p99)
    );
}
