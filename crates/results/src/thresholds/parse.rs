//! Reading an expression: `METRIC{SELECTOR} OP VALUE [for N]`, and `promql:QUERY OP VALUE`.

use super::{Expr, Metric, Op, Selector};

impl Expr {
    /// Parses `p95<200ms`, `p99{status=ok}<=1.5s`, `mean<50ms`, `error_rate<0.1%`,
    /// `rps>1000`, `capacity>=2000`, `recovery_s<30`, and `error_rate>10% for 3`.
    pub fn parse(text: &str) -> Result<Expr, String> {
        if let Some(rest) = text.trim().strip_prefix("promql:") {
            return parse_promql(text.trim(), rest);
        }
        let bad = |why: &str| {
            format!(
                "invalid expression '{text}': {why} (examples: p95<200ms, p99{{status=ok}}<1s, error_rate<0.1%, \
                 rps>1000, error_rate>10% for 3)"
            )
        };
        let (body, grace) = match text.trim().rsplit_once(" for ") {
            Some((body, n)) => (
                body,
                Some(
                    n.trim()
                        .parse::<u32>()
                        .ok()
                        .filter(|n| *n >= 1)
                        .ok_or_else(|| bad("'for N' takes a count of intervals from 1"))?,
                ),
            ),
            None => (text, None),
        };
        let t: String = body.chars().filter(|c| !c.is_whitespace()).collect();
        let at = t.find(['<', '>']).ok_or_else(|| bad("no comparison (<, <=, >, >=)"))?;
        let (name, rest) = t.split_at(at);
        let (name, selector) = match name.split_once('{') {
            Some((metric, sel)) => {
                let sel = sel
                    .strip_suffix('}')
                    .ok_or_else(|| bad("a selector is {name=REQUEST}, {scenario=NAME} or {status=ok|2xx}"))?;
                (metric, parse_selector(sel).map_err(|why| bad(&why))?)
            }
            None => (name, Selector::All),
        };
        let (op, value) = match rest.as_bytes() {
            [b'<', b'=', ..] => (Op::Le, &rest[2..]),
            [b'>', b'=', ..] => (Op::Ge, &rest[2..]),
            [b'<', ..] => (Op::Lt, &rest[1..]),
            _ => (Op::Gt, &rest[1..]),
        };
        let metric = parse_metric(name).map_err(|why| bad(&why))?;
        if !matches!(selector, Selector::All | Selector::Name(_) | Selector::Scenario(_))
            && matches!(metric, Metric::ErrorRate | Metric::Checks)
        {
            return Err(bad("error_rate and checks are of all requests; a status selector does not apply"));
        }
        if matches!(selector, Selector::Scenario(_)) && metric == Metric::Checks {
            return Err(bad("checks are counted by check name: checks{name=CHECK}, not by scenario"));
        }
        if selector != Selector::All && matches!(metric, Metric::RecoveryS | Metric::Capacity) {
            return Err(bad("recovery_s and capacity are of the whole run; they take no selector"));
        }
        let value = parse_value(metric, value).map_err(|why| bad(&why))?;
        Ok(Expr { text: text.trim().to_string(), selector, metric, op, value, grace })
    }
}

/// `promql:QUERY OP VALUE [for N]`: the comparison is the last one in the text whose right
/// side is a number, so the query may hold comparisons and label matchers of its own
/// (`{mode!="idle"}`, `x > 0`).
fn parse_promql(text: &str, rest: &str) -> Result<Expr, String> {
    let bad = |why: &str| {
        format!(
            "invalid expression '{text}': {why} (example: promql:avg(rate(node_cpu_seconds_total{{mode!=\"idle\"}}[30s]))>0.9 for 3)"
        )
    };
    let (body, grace) = match rest.rsplit_once(" for ") {
        Some((body, n)) if n.trim().parse::<u32>().is_ok() => {
            let n = n.trim().parse::<u32>().unwrap_or(0);
            if n == 0 {
                return Err(bad("'for N' takes a count of intervals from 1"));
            }
            (body, Some(n))
        }
        _ => (rest, None),
    };
    let at = body.rfind(['<', '>']).ok_or_else(|| bad("no comparison (<, <=, >, >=) after the query"))?;
    let (query, op, value) = match (body.as_bytes()[at], body.as_bytes().get(at + 1)) {
        (b'<', Some(b'=')) => (&body[..at], Op::Le, &body[at + 2..]),
        (b'>', Some(b'=')) => (&body[..at], Op::Ge, &body[at + 2..]),
        (b'<', _) => (&body[..at], Op::Lt, &body[at + 1..]),
        _ => (&body[..at], Op::Gt, &body[at + 1..]),
    };
    let value = value
        .trim()
        .parse::<f64>()
        .ok()
        .filter(|v| v.is_finite())
        .ok_or_else(|| bad(&format!("'{}' after the last comparison is not a number", value.trim())))?;
    let query = query.trim();
    if query.is_empty() {
        return Err(bad("no query before the comparison"));
    }
    Ok(Expr {
        text: text.to_string(),
        selector: Selector::Promql(query.to_string()),
        metric: Metric::Promql,
        op,
        value,
        grace,
    })
}

fn parse_selector(sel: &str) -> Result<Selector, String> {
    match sel.split_once('=') {
        Some(("name", n)) if !n.is_empty() => Ok(Selector::Name(n.to_string())),
        Some(("scenario", n)) if !n.is_empty() => Ok(Selector::Scenario(n.to_string())),
        Some(("status", "ok")) => Ok(Selector::Ok),
        Some(("status", c)) => match c.as_bytes() {
            [d @ b'1'..=b'5', b'x', b'x'] => Ok(Selector::Class(u16::from(d - b'0'))),
            _ => Err(format!("status={c}: a status selector is ok or a class 1xx..5xx")),
        },
        _ => Err("a selector is {name=REQUEST}, {scenario=NAME} or {status=ok|2xx}".into()),
    }
}

fn parse_metric(name: &str) -> Result<Metric, String> {
    Ok(match name {
        "p50" | "med" => Metric::P50,
        "p90" => Metric::P90,
        "p95" => Metric::P95,
        "p99" => Metric::P99,
        "p999" | "p99.9" => Metric::P999,
        "max" => Metric::Max,
        "mean" | "avg" => Metric::Mean,
        "error_rate" => Metric::ErrorRate,
        "rps" => Metric::Rps,
        "recovery_s" => Metric::RecoveryS,
        "capacity" => Metric::Capacity,
        "checks" | "check_rate" => Metric::Checks,
        "errors" => Metric::Errors,
        "" => return Err("no metric".into()),
        _ => {
            return Err(format!(
            "unknown metric '{name}' (p50 p90 p95 p99 p999 max mean error_rate errors rps recovery_s capacity checks)"
        ))
        }
    })
}

fn parse_value(metric: Metric, value: &str) -> Result<f64, String> {
    let number = |s: &str| s.parse::<f64>().ok().filter(|v| v.is_finite() && *v >= 0.0);
    match metric {
        // A bare number is a fraction only below 1: `error_rate<1` would silently mean 100%,
        // and `error_rate<5` nothing at all.
        Metric::ErrorRate | Metric::Checks => match value.strip_suffix('%') {
            Some(v) => number(v).map(|v| v / 100.0).filter(|v| *v <= 1.0),
            None => number(value).filter(|v| *v < 1.0),
        }
        .ok_or_else(|| {
            let m = if metric == Metric::Checks { "checks" } else { "error_rate" };
            format!("{m} is a percentage ({value}%) or a fraction below 1 (0.01 is 1%); '{value}' is neither")
        }),
        Metric::Rps => number(value).ok_or_else(|| "rps is a number of requests per second".into()),
        Metric::Errors => {
            number(value).filter(|v| v.fract() == 0.0).ok_or_else(|| "errors is a count of failed requests".into())
        }
        Metric::Capacity => {
            number(value).ok_or_else(|| "capacity is a level (connections or requests per second)".into())
        }
        Metric::RecoveryS => number(value)
            .or_else(|| engine_util::units::parse_duration(value).ok().map(|d| d.as_secs_f64()))
            .ok_or_else(|| "recovery_s is seconds (30, or 30s)".into()),
        _ => engine_util::units::parse_duration(value)
            .ok()
            .filter(|_| value.ends_with(|c: char| c.is_ascii_alphabetic()))
            .map(|d| d.as_secs_f64() * 1000.0)
            .ok_or_else(|| "a latency needs a unit: us, ms, s".into()),
    }
}
