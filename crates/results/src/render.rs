//! The summary in words, once: the terminal's text, summary.md, and run.log's verdict lines.
//! A figure is printed in the unit of the expression that judged it (`1.230%`, `950.0/s`,
//! `12.50ms`) wherever it appears.

use std::fmt::Write as _;
use std::time::SystemTime;

use crate::summary::{CheckSummary, Latency, Summary};
use crate::units::bytes;
pub use crate::units::{human_duration, ms};

/// RFC 3339 in UTC, to the second (`2026-11-22T20:00:00Z`).
pub fn rfc3339(t: SystemTime) -> String {
    jiff::Timestamp::try_from(t).unwrap_or(jiff::Timestamp::UNIX_EPOCH).strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// The summary as the terminal shows it.
pub fn text(s: &Summary) -> String {
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
    crate::scenario::text_lines(&mut o, s);
    let status: Vec<String> = s.status.iter().map(|(k, v)| format!("{k}: {v}")).collect();
    let _ = writeln!(o, "  {:<12}{}", "status", if status.is_empty() { "none".into() } else { status.join("  ") });
    let rate = match s.requests + s.errors.total {
        0 => String::new(),
        _ => format!("; error rate {:.2}%", error_rate(s) * 100.0),
    };
    let _ = writeln!(o, "  {:<12}{}{rate}", "errors", errors(s));
    check_lines(&mut o, s);
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

/// Connect and handshake times, how TLS went, and what HTTP/2 did.
fn tls_lines(o: &mut String, s: &Summary) {
    if let Some(h) = &s.http2 {
        let _ = writeln!(o, "  {}", h.line());
    }
    if let Some(g) = &s.grpc {
        let _ = writeln!(o, "  {}", g.line());
    }
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
    if !s.interventions.is_empty() {
        let _ = writeln!(o, "  {:<12}{}", "interventions:", interventions(&s.interventions));
    }
    for w in &s.warnings {
        let _ = writeln!(o, "  warning: {w}");
    }
}

/// A measured value in the unit its expression uses.
/// summary.md's rows of checks: all of them, then each by name.
fn check_rows(o: &mut String, s: &Summary) {
    let Some(c) = &s.checks else { return };
    let all = CheckSummary::new(c.passed, c.failed);
    for (name, n) in std::iter::once(("all checks", &all)).chain(c.by_name.iter().map(|(k, v)| (k.as_str(), v))) {
        let _ = writeln!(
            o,
            "| check `{}` | {:.2}% passed ({} of {}) |",
            name.replace('|', "\\|").replace('`', "'"),
            n.rate * 100.0,
            n.passed,
            n.passed + n.failed
        );
    }
}

/// The errors and every kind's count: `3 (connect 0, timeout 3, ...)`; `check` when the plan
/// has checks, the HTTP/2 kinds in an HTTP/2 run.
fn errors(s: &Summary) -> String {
    let e = &s.errors;
    let check = s.checks.as_ref().map(|_| format!(", check {}", e.check)).unwrap_or_default();
    let h2 = s.http2.as_ref().map(|_| format!(", reset_stream {}, h2 {}", e.reset_stream, e.h2)).unwrap_or_default();
    let grpc = s.grpc.as_ref().map(|_| format!(", grpc {}", e.grpc)).unwrap_or_default();
    format!(
        "{} (connect {}, timeout {}, reset {}, closed {}, parse {}, status {}, tls {}{check}{h2}{grpc})",
        e.total, e.connect, e.timeout, e.reset, e.closed, e.parse, e.status, e.tls
    )
}

/// Checks: the share passed, and each by name.
fn check_lines(o: &mut String, s: &Summary) {
    let Some(c) = &s.checks else { return };
    let share = |passed: u64, failed: u64, rate: f64| match passed + failed {
        0 => "no data (never evaluated)".to_string(),
        n => format!("{:.2}% passed ({passed} of {n})", rate * 100.0),
    };
    let _ = writeln!(o, "  {:<12}{}", "checks", share(c.passed, c.failed, c.rate));
    for (name, n) in &c.by_name {
        let _ = writeln!(o, "  {:<12}  {name}: {}", "", share(n.passed, n.failed, n.rate));
    }
}

fn error_rate(s: &Summary) -> f64 {
    crate::thresholds::Figures::of_summary(s, &crate::thresholds::Selector::All).map_or(0.0, |f| f.error_rate)
}

/// A measured value in the unit of its expression: `1.230%`, `950.0/s`, `12.50ms`.
/// Changes made through the control API, in one line: `rate 1000 → 3000 at 3 s, stop at 6.0 s`.
fn interventions(list: &[crate::summary::Intervention]) -> String {
    list.iter()
        .map(|i| match i.what.as_str() {
            "stop" => format!("stop at {:.1} s", i.at_s),
            what => format!("{what} {} → {} at {} s", i.from, i.to, i.at_s),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn measured(expr: &str, v: f64) -> String {
    let parsed = crate::thresholds::Expr::parse(expr);
    match parsed.as_ref().map(|e| e.metric) {
        Ok(crate::thresholds::Metric::Promql) => parsed.map(|e| e.show(v)).unwrap_or_default(),
        Ok(crate::thresholds::Metric::ErrorRate | crate::thresholds::Metric::Checks) => format!("{:.3}%", v * 100.0),
        Ok(crate::thresholds::Metric::Rps) => format!("{v:.1}/s"),
        Ok(crate::thresholds::Metric::Errors) => format!("{v:.0}"),
        Ok(crate::thresholds::Metric::RecoveryS) => format!("{v:.1}s"),
        Ok(crate::thresholds::Metric::Capacity) => format!("{v}"),
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
    for l in &p.levels {
        let _ = writeln!(o, "  {:<12}{}", "", level_text(l));
    }
}

/// One level's figures over its hold, and its verdict.
fn level_text(l: &crate::summary::Level) -> String {
    let q = |v: Option<f64>| v.map_or("-".to_string(), ms);
    let verdict = match &l.failed_on {
        None => "held".to_string(),
        Some(why) => format!("FAILED: {why}"),
    };
    format!(
        "level {:<8} held {:.0}s  {:.1} req/s  p50 {}  p95 {}  p99 {}  errors {:.2}%{}  {verdict}",
        l.level,
        l.held_s,
        l.rps,
        q(l.p50_ms),
        q(l.p95_ms),
        ms(l.p99_ms),
        l.error_rate * 100.0,
        level_checks(l).map(|c| format!("  checks {c}")).unwrap_or_default()
    )
}

/// A level's checks passed, as a share: `99.50%`.
fn level_checks(l: &crate::summary::Level) -> Option<String> {
    let (p, f) = (l.checks_passed?, l.checks_failed?);
    (p + f > 0).then(|| format!("{:.2}%", p as f64 * 100.0 / (p + f) as f64))
}

/// Per named request (scenarios).
fn named_lines(o: &mut String, s: &Summary) {
    // The share of what was sent: a weight is the plan's share of a request, but a flow's
    // steps all have weight 1 and run as often as users reach them.
    let total: u64 = s.requests_by_name.values().map(|n| n.requests + n.errors.total - n.errors.answered()).sum();
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
            (n.requests + n.errors.total - n.errors.answered()) as f64 * 100.0 / total.max(1) as f64,
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

/// A report a person would paste into a ticket.
pub fn markdown(s: &Summary, command: &str, started: SystemTime) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "# engine blast: {}\n", s.target);
    let _ = writeln!(
        o,
        "- started {} ({} model, {} connections, {} shards)",
        rfc3339(started),
        s.model.name(),
        s.conns,
        s.shards
    );
    let _ = writeln!(o, "- command: `{command}`");
    if s.interrupted {
        let _ = writeln!(o, "- **interrupted** before the planned end");
    }
    if !s.interventions.is_empty() {
        let _ = writeln!(o, "- **steered** through the control API: {}", interventions(&s.interventions));
    }
    if let Some(f) = &s.stopped_by {
        let _ = writeln!(
            o,
            "- **stopped by the safety stop `{}`** at {:.1} s (measured {})",
            f.expr,
            f.at_s,
            measured(&f.expr, f.value)
        );
    }
    let _ = writeln!(o, "\n| figure | value |\n|---|---:|");
    let _ = writeln!(o, "| requests | {} |", s.requests);
    let _ = writeln!(o, "| duration | {:.2} s |", s.duration_s);
    let _ = writeln!(o, "| throughput | {:.1} req/s |", s.rps);
    let l = &s.latency_ms;
    for (k, v) in [
        ("mean", l.mean),
        ("p50", l.p50),
        ("p90", l.p90),
        ("p95", l.p95),
        ("p99", l.p99),
        ("p99.9", l.p999),
        ("max", l.max),
    ] {
        match s.requests {
            0 => drop(writeln!(o, "| latency {k} | no data |")),
            _ => drop(writeln!(o, "| latency {k} | {v:.3} ms |")),
        }
    }
    let _ = writeln!(o, "| errors | {} |", errors(s));
    check_rows(&mut o, s);
    for (what, l) in [("TCP connect", &s.connect_ms), ("TLS handshake", &s.tls_handshake_ms)] {
        if let Some(l) = l {
            let _ = writeln!(o, "| {what} p50 / p99 / max | {:.3} / {:.3} / {:.3} ms |", l.p50, l.p99, l.max);
        }
    }
    if let Some(t) = &s.tls {
        let _ = writeln!(
            o,
            "| TLS | {} {}; {} full and {} resumed handshakes ({:.1}/s) |",
            t.version, t.cipher, t.handshakes_full, t.handshakes_resumed, t.handshakes_per_s
        );
    }
    if let Some(h) = &s.http2 {
        let _ = writeln!(o, "| HTTP/2 | {} |", h.line().trim_start_matches("HTTP/2 "));
    }
    if let Some(g) = &s.grpc {
        let _ = writeln!(o, "| gRPC | {} |", g.line().trim_start_matches("gRPC "));
    }
    let status: Vec<String> = s.status.iter().map(|(k, v)| format!("{k}: {v}")).collect();
    let _ = writeln!(o, "| status | {} |", status.join(", "));
    if let Some(sch) = &s.schedule {
        let behind = if sch.behind { ", **behind schedule**" } else { "" };
        // Arrival-rate flows schedule iterations (users walking a flow), not requests.
        let _ = match &s.iterations {
            Some(i) => writeln!(
                o,
                "| asked iteration rate | {:.1} iterations/s ({} of {} started, {} completed{behind}) |",
                sch.target_rps, sch.sent, sch.expected, i.completed
            ),
            None => writeln!(
                o,
                "| asked rate | {:.1} req/s ({} of {} sent{behind}) |",
                sch.target_rps, sch.sent, sch.expected
            ),
        };
    }
    profile_section(&mut o, s);
    crate::scenario::markdown_section(&mut o, s);
    if !s.thresholds.is_empty() {
        let _ = writeln!(o, "\n## Thresholds\n");
        for t in &s.thresholds {
            let verdict = if t.pass { "PASS" } else { "**FAIL**" };
            match t.no_data {
                true => drop(writeln!(o, "- {verdict} `{}` (no data: nothing it selects was measured)", t.expr)),
                false => drop(writeln!(o, "- {verdict} `{}` (measured {})", t.expr, measured(&t.expr, t.value))),
            }
        }
    }
    o
}

/// summary.md's section of a named profile: its capacity, best rate, recovery.
fn profile_section(o: &mut String, s: &Summary) {
    let Some(p) = &s.profile else { return };
    let _ = writeln!(o, "\n## Profile {} at peak {}\n", p.name, p.peak);
    let _ = writeln!(o, "- a level holds when {}", p.criterion);
    for (what, v) in [("capacity (the last level that held)", p.capacity), ("failed level", p.failed_at)] {
        if let Some(v) = v {
            let _ = writeln!(o, "- {what}: {v}");
        }
    }
    if let Some(b) = p.best_rps {
        let _ = writeln!(o, "- best held rate: {b:.1} req/s");
    }
    match (p.recovery_s, p.name.as_str()) {
        (Some(r), _) => drop(writeln!(o, "- recovery: {r:.1} s after the drop")),
        (None, "spike" | "recovery") => drop(writeln!(o, "- recovery: p99 never returned to the baseline")),
        _ => {}
    }
    if !p.levels.is_empty() {
        let _ = writeln!(
            o,
            "\n| level | held | rate | p50 | p95 | p99 | errors | checks | verdict |\n|---:|---:|---:|---:|---:|---:|---:|---:|---|"
        );
        for l in &p.levels {
            let q = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.3} ms"));
            let verdict = l.failed_on.as_deref().map_or("held".to_string(), |w| format!("**failed**: {w}"));
            let _ = writeln!(
                o,
                "| {} | {:.0} s | {:.1}/s | {} | {} | {:.3} ms | {:.2}% | {} | {verdict} |",
                l.level,
                l.held_s,
                l.rps,
                q(l.p50_ms),
                q(l.p95_ms),
                l.p99_ms,
                l.error_rate * 100.0,
                level_checks(l).unwrap_or_else(|| "-".into())
            );
        }
    }
}

/// run.log's lines for the verdicts: each stress level, the safety stop that fired, each
/// threshold.
pub fn verdict_log_lines(s: &Summary) -> Vec<String> {
    let mut lines = Vec::new();
    for l in s.profile.iter().flat_map(|p| &p.levels) {
        let verdict = match &l.failed_on {
            None => "held".to_string(),
            Some(why) => format!("FAILED: {why}"),
        };
        lines.push(format!(
            "level {} {verdict} (over {:.0} s held: p99 {:.3} ms, errors {:.2}%, {:.1} req/s)",
            l.level,
            l.held_s,
            l.p99_ms,
            l.error_rate * 100.0,
            l.rps
        ));
    }
    if let Some(f) = &s.stopped_by {
        lines.push(format!(
            "safety stop fired: '{}' at {:.1}s (measured {})",
            f.expr,
            f.at_s,
            measured(&f.expr, f.value)
        ));
    }
    for t in &s.thresholds {
        let verdict = if t.pass { "PASS" } else { "FAIL" };
        match t.no_data {
            true => lines.push(format!("threshold {verdict} {} (no data)", t.expr)),
            false => lines.push(format!("threshold {verdict} {} (measured {})", t.expr, measured(&t.expr, t.value))),
        }
    }
    lines
}
