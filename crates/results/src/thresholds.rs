//! Thresholds (`p95<200ms`, `error_rate<0.1%`, `rps>1000`): pass/fail conditions on a whole
//! run, and the same expressions as safety stops evaluated on each interval.

use std::fmt;

use crate::observe::{Flow, Interval, Observer};
use crate::stats::Totals;
use crate::summary::{Fired, Latency, NamedSummary, Summary, Threshold};

/// What an expression measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric {
    P50,
    P90,
    P95,
    P99,
    P999,
    Max,
    Mean,
    ErrorRate,
    Rps,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Lt,
    Le,
    Gt,
    Ge,
}

/// A parsed expression: `metric op value`, the value in milliseconds for latencies, a
/// fraction for `error_rate`, requests per second for `rps`.
#[derive(Debug, Clone, PartialEq)]
pub struct Expr {
    pub text: String,
    /// `{name=login}`: evaluated on that named request's figures only.
    pub name: Option<String>,
    pub metric: Metric,
    pub op: Op,
    pub value: f64,
}

/// The figures an expression is evaluated on: a whole run or one interval.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Figures {
    pub latency_ms: Latency,
    pub error_rate: f64,
    pub rps: f64,
}

impl Figures {
    pub fn of_summary(s: &Summary) -> Self {
        let failed_status: u64 =
            s.status.iter().filter(|(code, _)| code.parse::<u16>().is_ok_and(failed)).map(|(_, n)| n).sum();
        Self { latency_ms: s.latency_ms, error_rate: error_rate(s.requests, s.errors.total, failed_status), rps: s.rps }
    }

    pub fn of_named(n: &NamedSummary) -> Self {
        let failed_status: u64 =
            n.status.iter().filter(|(code, _)| code.parse::<u16>().is_ok_and(failed)).map(|(_, n)| n).sum();
        Self { latency_ms: n.latency_ms, error_rate: error_rate(n.requests, n.errors.total, failed_status), rps: n.rps }
    }

    pub fn of_interval(t: &Totals, rps: f64) -> Self {
        let c = &t.counters;
        let failed_status: u64 = c.statuses().filter(|(code, _)| failed(*code)).map(|(_, n)| n).sum();
        Self {
            latency_ms: Latency::from_histogram(&t.latency),
            error_rate: error_rate(c.requests, c.errors_total(), failed_status),
            rps,
        }
    }
}

/// A response that says the server failed: 5xx. (4xx is the client's side of the contract,
/// 429 included: count it with a status threshold when it matters.)
fn failed(status: u16) -> bool {
    status >= 500
}

/// Failed attempts (errors of any kind, and 5xx responses) over all attempts.
fn error_rate(responses: u64, errors: u64, failed_responses: u64) -> f64 {
    let attempts = responses + errors;
    if attempts == 0 {
        0.0
    } else {
        (errors + failed_responses) as f64 / attempts as f64
    }
}

impl Expr {
    /// Parses `p95<200ms`, `p99<=1.5s`, `mean<50ms`, `error_rate<0.1%`, `rps>1000`.
    pub fn parse(text: &str) -> Result<Expr, String> {
        let t: String = text.chars().filter(|c| !c.is_whitespace()).collect();
        let bad = |why: &str| {
            format!("invalid expression '{text}': {why} (examples: p95<200ms, error_rate<0.1%, rps>1000, mean<=1s)")
        };
        let at = t.find(['<', '>']).ok_or_else(|| bad("no comparison (<, <=, >, >=)"))?;
        let (name, rest) = t.split_at(at);
        let (name, request) = match name.split_once('{') {
            Some((metric, sel)) => {
                let sel = sel.strip_suffix('}').ok_or_else(|| bad("a selector is {name=REQUEST}"))?;
                let req = sel.strip_prefix("name=").ok_or_else(|| bad("a selector is {name=REQUEST}"))?;
                if req.is_empty() {
                    return Err(bad("a selector is {name=REQUEST}"));
                }
                (metric, Some(req.to_string()))
            }
            None => (name, None),
        };
        let (op, value) = match rest.as_bytes() {
            [b'<', b'=', ..] => (Op::Le, &rest[2..]),
            [b'>', b'=', ..] => (Op::Ge, &rest[2..]),
            [b'<', ..] => (Op::Lt, &rest[1..]),
            _ => (Op::Gt, &rest[1..]),
        };
        let metric = match name {
            "p50" | "med" => Metric::P50,
            "p90" => Metric::P90,
            "p95" => Metric::P95,
            "p99" => Metric::P99,
            "p999" | "p99.9" => Metric::P999,
            "max" => Metric::Max,
            "mean" | "avg" => Metric::Mean,
            "error_rate" => Metric::ErrorRate,
            "rps" => Metric::Rps,
            "" => return Err(bad("no metric")),
            _ => return Err(bad(&format!("unknown metric '{name}' (p50 p90 p95 p99 p999 max mean error_rate rps)"))),
        };
        let number = |s: &str| s.parse::<f64>().ok().filter(|v| v.is_finite() && *v >= 0.0);
        let value = match metric {
            Metric::ErrorRate => match value.strip_suffix('%') {
                Some(v) => number(v).map(|v| v / 100.0),
                None => number(value),
            }
            .filter(|v| *v <= 1.0)
            .ok_or_else(|| bad("error_rate is a fraction (0.01) or a percentage (1%)"))?,
            Metric::Rps => number(value).ok_or_else(|| bad("rps is a number of requests per second"))?,
            _ => engine_runtime::units::parse_duration(value)
                .ok()
                .filter(|_| value.ends_with(|c: char| c.is_ascii_alphabetic()))
                .map(|d| d.as_secs_f64() * 1000.0)
                .ok_or_else(|| bad("a latency needs a unit: us, ms, s"))?,
        };
        Ok(Expr { text: text.trim().to_string(), name: request, metric, op, value })
    }

    /// The measured value this expression compares.
    pub fn measure(&self, f: &Figures) -> f64 {
        let l = &f.latency_ms;
        match self.metric {
            Metric::P50 => l.p50,
            Metric::P90 => l.p90,
            Metric::P95 => l.p95,
            Metric::P99 => l.p99,
            Metric::P999 => l.p999,
            Metric::Max => l.max,
            Metric::Mean => l.mean,
            Metric::ErrorRate => f.error_rate,
            Metric::Rps => f.rps,
        }
    }

    /// Whether the comparison holds for these figures.
    pub fn holds(&self, f: &Figures) -> bool {
        let v = self.measure(f);
        match self.op {
            Op::Lt => v < self.value,
            Op::Le => v <= self.value,
            Op::Gt => v > self.value,
            Op::Ge => v >= self.value,
        }
    }
}

impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// Safety stops: each expression is a condition to stop on, and it must hold for `grace`
/// consecutive intervals before the run stops.
#[derive(Debug, Clone)]
pub struct SafetyStops {
    exprs: Vec<Expr>,
    grace: u32,
    streak: Vec<u32>,
}

impl SafetyStops {
    pub fn new(exprs: Vec<Expr>, grace: u32) -> Self {
        let streak = vec![0; exprs.len()];
        Self { exprs, grace: grace.max(1), streak }
    }

    /// Takes one interval's figures; returns the stop that fired, if one did.
    pub fn observe(&mut self, f: &Figures, at_s: f64) -> Option<Fired> {
        for (e, streak) in self.exprs.iter().zip(self.streak.iter_mut()) {
            *streak = if e.holds(f) { *streak + 1 } else { 0 };
            if *streak >= self.grace {
                return Some(Fired { expr: e.text.clone(), at_s, value: e.measure(f) });
            }
        }
        None
    }
}

/// Judges thresholds on a finished run: each on the whole run's figures, or on its named
/// request's own when it selects one (`p99{name=login}<100ms`). A name the run does not have
/// fails, measured as 0 (plans refuse such names before they start).
pub fn judge(exprs: &[Expr], s: &Summary) -> Vec<Threshold> {
    let whole = Figures::of_summary(s);
    exprs
        .iter()
        .map(|e| {
            let figures = match &e.name {
                None => Some(whole),
                Some(n) => s.requests_by_name.get(n).map(Figures::of_named),
            };
            match figures {
                Some(f) => Threshold { expr: e.text.clone(), pass: e.holds(&f), value: e.measure(&f) },
                None => Threshold { expr: e.text.clone(), pass: false, value: 0.0 },
            }
        })
        .collect()
}

/// Thresholds as an observer of the run: judged once, on the summary.
pub struct Thresholds(pub Vec<Expr>);

impl Observer for Thresholds {
    fn interval(&mut self, _: &Interval<'_>) -> Flow {
        Flow::Continue
    }

    fn finish(&mut self, summary: &mut Summary) {
        summary.thresholds = judge(&self.0, summary);
    }
}

/// Safety stops as an observer: each interval is judged; the first stop that holds for its
/// grace stops the run, and the summary says which.
pub struct SafetyWatch {
    stops: SafetyStops,
    fired: Option<Fired>,
}

impl SafetyWatch {
    pub fn new(stops: SafetyStops) -> Self {
        SafetyWatch { stops, fired: None }
    }

    pub fn fired(&self) -> Option<&Fired> {
        self.fired.as_ref()
    }
}

impl Observer for SafetyWatch {
    fn interval(&mut self, i: &Interval<'_>) -> Flow {
        if self.fired.is_some() {
            return Flow::Continue;
        }
        match self.stops.observe(&Figures::of_interval(i.totals, i.point.rps), i.elapsed_s) {
            Some(f) => {
                self.fired = Some(f);
                Flow::Stop
            }
            None => Flow::Continue,
        }
    }

    fn finish(&mut self, summary: &mut Summary) {
        summary.stopped_by = self.fired.clone();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn figures(p95: f64, error_rate: f64, rps: f64) -> Figures {
        Figures { latency_ms: Latency { p95, ..Default::default() }, error_rate, rps }
    }

    #[test]
    fn parses() {
        let e = Expr::parse("p95 < 200ms").unwrap();
        assert_eq!((e.metric, e.op, e.value), (Metric::P95, Op::Lt, 200.0));
        assert_eq!(Expr::parse("mean<=1.5s").unwrap().value, 1500.0);
        assert_eq!(Expr::parse("p99<500us").unwrap().value, 0.5);
        assert_eq!(Expr::parse("error_rate<0.1%").unwrap().value, 0.001);
        assert_eq!(Expr::parse("error_rate>0.1").unwrap().value, 0.1);
        assert_eq!(Expr::parse("rps>=1000").unwrap().op, Op::Ge);
        let e = Expr::parse("p95{name=login}<75ms").unwrap();
        assert_eq!((e.name.as_deref(), e.value), (Some("login"), 75.0));
        for bad in [
            "",
            "p95",
            "p95<",
            "p95<200",
            "p77<1ms",
            "error_rate<200%",
            "rps>x",
            "<1",
            "p95{login}<1ms",
            "p95{name=}<1ms",
        ] {
            assert!(Expr::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn evaluates() {
        let f = figures(150.0, 0.02, 900.0);
        assert!(Expr::parse("p95<200ms").unwrap().holds(&f));
        assert!(!Expr::parse("p95<100ms").unwrap().holds(&f));
        assert!(!Expr::parse("error_rate<1%").unwrap().holds(&f));
        assert!(!Expr::parse("rps>1000").unwrap().holds(&f));
    }

    #[test]
    fn safety_stops_need_consecutive_intervals() {
        let mut s = SafetyStops::new(vec![Expr::parse("error_rate>10%").unwrap()], 3);
        let bad = figures(1.0, 0.5, 1.0);
        let good = figures(1.0, 0.0, 1.0);
        assert_eq!(s.observe(&bad, 1.0), None);
        assert_eq!(s.observe(&bad, 2.0), None);
        assert_eq!(s.observe(&good, 3.0), None);
        assert_eq!(s.observe(&bad, 4.0), None);
        assert_eq!(s.observe(&bad, 5.0), None);
        let fired = s.observe(&bad, 6.0).unwrap();
        assert_eq!((fired.expr.as_str(), fired.at_s, fired.value), ("error_rate>10%", 6.0, 0.5));
    }
}
