//! Thresholds (`p95<200ms`, `error_rate<0.1%`, `rps>1000`): pass/fail conditions on a whole
//! run, and the same expressions as safety stops evaluated on each interval.
//!
//! An expression may select part of the run: `{name=login}` one named request,
//! `{scenario=browse}` one scenario of several,
//! `{status=ok}` the responses whose status was expected, `{status=5xx}` a status class.
//! A safety stop may carry its own grace: `error_rate>10% for 3` must hold three intervals.

use std::fmt;

mod parse;

use crate::observe::{Flow, Interval, Observer};
use crate::stats::{ErrorKind, Totals};
use crate::summary::{CheckSummary, Errors, Fired, Latency, Summary, Threshold};

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
    /// A profile's recovery time (spike, recovery), in seconds.
    RecoveryS,
    /// A stress profile's capacity: the last level that held.
    Capacity,
    /// Checks passed over checks evaluated (`checks{name=cache}`: one check's).
    Checks,
    /// Failed requests so far, a count (Artillery's `--max-errors`).
    Errors,
    /// A PromQL query's value, read from Prometheus each interval (`promql:QUERY>0.9`): the
    /// target's own resources. A safety stop only; its query is the selector.
    Promql,
}

impl Metric {
    /// Whether the metric exists for one interval (safety stops), not only for a whole run.
    pub fn per_interval(self) -> bool {
        !matches!(self, Metric::RecoveryS | Metric::Capacity)
    }

    pub fn is_latency(self) -> bool {
        matches!(
            self,
            Metric::P50 | Metric::P90 | Metric::P95 | Metric::P99 | Metric::P999 | Metric::Max | Metric::Mean
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Lt,
    Le,
    Gt,
    Ge,
}

/// The part of a run an expression is evaluated on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selector {
    All,
    /// `{name=login}`: one named request (scenarios).
    Name(String),
    /// `{scenario=browse}`: one scenario of a plan with several (`[[scenario]]`).
    Scenario(String),
    /// `{status=ok}`: responses whose status was expected.
    Ok,
    /// `{status=5xx}`: responses of one status class (1 to 5).
    Class(u16),
    /// A `promql:` stop's query, sent to Prometheus as written.
    Promql(String),
}

/// A parsed expression: `metric{selector} op value [for N]`, the value in milliseconds for
/// latencies, a fraction for `error_rate`, requests per second for `rps`, seconds for
/// `recovery_s`, a level for `capacity`.
#[derive(Debug, Clone, PartialEq)]
pub struct Expr {
    pub text: String,
    pub selector: Selector,
    pub metric: Metric,
    pub op: Op,
    pub value: f64,
    /// As a safety stop: consecutive intervals it must hold (`for N`).
    pub grace: Option<u32>,
}

/// The figures an expression is evaluated on: a whole run (or part of it) or one interval.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Figures {
    pub latency_ms: Latency,
    /// Responses the latency is of: with none, a latency is no data, not 0.
    pub responses: u64,
    pub error_rate: f64,
    /// Requests tried (responses, and failures without one): with none, an error rate is no
    /// data.
    pub attempts: u64,
    pub rps: f64,
    pub recovery_s: Option<f64>,
    pub capacity: Option<f64>,
    /// The checks of the selection (`None`: the plan has none, or not this one).
    pub checks: Option<CheckSummary>,
    /// Failed requests of the selection: of the whole run, or so far (safety stops).
    pub errors: u64,
}

fn attempts_of(errors: &Errors, responses: u64) -> u64 {
    responses + errors.total - errors.answered()
}

fn rate_of(errors: &Errors, responses: u64) -> f64 {
    match attempts_of(errors, responses) {
        0 => 0.0,
        attempts => errors.total as f64 / attempts as f64,
    }
}

impl Figures {
    /// The figures of one part of a run (a named request, a scenario) in place of the run's.
    fn narrow(&mut self, latency: Latency, errors: &Errors, responses: u64, rps: f64) {
        self.latency_ms = latency;
        self.errors = errors.total;
        self.responses = responses;
        self.error_rate = rate_of(errors, responses);
        self.attempts = attempts_of(errors, responses);
        self.rps = rps;
    }

    /// The figures of the part of a finished run `sel` selects; `None` when the run has no
    /// such part (a name it did not send, a status class it did not see).
    pub fn of_summary(s: &Summary, sel: &Selector) -> Option<Self> {
        let per_s = |n: u64| if s.duration_s > 0.0 { n as f64 / s.duration_s } else { 0.0 };
        let profile = s.profile.as_ref();
        let mut f = Figures {
            latency_ms: s.latency_ms,
            responses: s.requests,
            error_rate: rate_of(&s.errors, s.requests),
            attempts: attempts_of(&s.errors, s.requests),
            rps: s.rps,
            recovery_s: profile.and_then(|p| p.recovery_s),
            capacity: profile.and_then(|p| p.capacity),
            checks: s.checks.as_ref().map(|c| CheckSummary::new(c.passed, c.failed)),
            errors: s.errors.total,
        };
        match sel {
            Selector::All => {}
            Selector::Name(n) => {
                // A name is a request's, or (for `checks`) a check's.
                f.checks = s.checks.as_ref().and_then(|c| c.by_name.get(n)).copied();
                let Some(named) = s.requests_by_name.get(n) else {
                    return f.checks.is_some().then_some(f);
                };
                f.narrow(named.latency_ms, &named.errors, named.requests, named.rps);
            }
            Selector::Scenario(n) => {
                let sc = s.scenarios.get(n)?;
                f.narrow(sc.latency_ms, &sc.errors, sc.requests, sc.rps);
                f.checks = None;
            }
            Selector::Ok => {
                f.latency_ms = s.latency_ok_ms;
                f.responses = s.requests - s.errors.status;
                f.rps = per_s(f.responses);
            }
            Selector::Class(c) => {
                let class = format!("{c}xx");
                f.latency_ms = s.latency_by_class_ms.get(&class).copied().unwrap_or_default();
                f.responses =
                    s.status.iter().filter(|(code, _)| code.starts_with(&c.to_string())).map(|(_, n)| n).sum();
                f.rps = per_s(f.responses);
            }
            Selector::Promql(_) => return None,
        }
        Some(f)
    }

    /// One interval's figures (merged across shards), `rps` its completed rate.
    pub fn of_interval(t: &Totals, rps: f64, sel: &Selector) -> Self {
        let c = &t.counters;
        let latency = match sel {
            Selector::Ok => Latency::from_histogram(t.ok_latency()),
            Selector::Class(k) => t.class(*k).map(Latency::from_histogram).unwrap_or_default(),
            Selector::All | Selector::Name(_) | Selector::Scenario(_) | Selector::Promql(_) => {
                Latency::from_histogram(&t.latency)
            }
        };
        let share = |n: u64| if c.requests == 0 { 0.0 } else { rps * n as f64 / c.requests as f64 };
        let responses = match sel {
            Selector::Ok => c.requests - c.errors_of(ErrorKind::Status),
            Selector::Class(k) => t.class(*k).map_or(0, |h| h.len()),
            Selector::All | Selector::Name(_) | Selector::Scenario(_) | Selector::Promql(_) => c.requests,
        };
        let rps = match sel {
            Selector::All | Selector::Name(_) | Selector::Scenario(_) => rps,
            _ => share(responses),
        };
        Figures {
            latency_ms: latency,
            responses,
            error_rate: c.error_rate(),
            attempts: c.attempts(),
            rps,
            recovery_s: None,
            capacity: None,
            checks: (!t.checks.is_empty()).then(|| {
                CheckSummary::new(t.checks.iter().map(|c| c.passed).sum(), t.checks.iter().map(|c| c.failed).sum())
            }),
            errors: c.errors_total(),
        }
    }
}

impl Expr {
    /// The PromQL query of a `promql:` stop.
    pub fn query(&self) -> Option<&str> {
        match &self.selector {
            Selector::Promql(q) => Some(q),
            _ => None,
        }
    }

    /// The named request the expression selects, if it selects one.
    pub fn name(&self) -> Option<&str> {
        match &self.selector {
            Selector::Name(n) => Some(n),
            _ => None,
        }
    }

    /// The scenario the expression selects, if it selects one.
    pub fn scenario(&self) -> Option<&str> {
        match &self.selector {
            Selector::Scenario(n) => Some(n),
            _ => None,
        }
    }

    /// The measured value this expression compares; `None` when the run has no such figure:
    /// a latency of no response, an error rate of no attempt, a capacity without a stress
    /// profile. No data is not a value of 0.
    pub fn measure(&self, f: &Figures) -> Option<f64> {
        let l = &f.latency_ms;
        if (self.metric.is_latency() && f.responses == 0)
            || (self.metric == Metric::ErrorRate && f.attempts == 0)
            || (self.metric == Metric::Checks && f.checks.is_none_or(|c| c.passed + c.failed == 0))
        {
            return None;
        }
        Some(match self.metric {
            Metric::P50 => l.p50,
            Metric::P90 => l.p90,
            Metric::P95 => l.p95,
            Metric::P99 => l.p99,
            Metric::P999 => l.p999,
            Metric::Max => l.max,
            Metric::Mean => l.mean,
            Metric::ErrorRate => f.error_rate,
            Metric::Rps => f.rps,
            Metric::RecoveryS => f.recovery_s?,
            Metric::Capacity => f.capacity?,
            Metric::Checks => f.checks?.rate,
            Metric::Errors => f.errors as f64,
            // Read from Prometheus, not from the run's figures.
            Metric::Promql => return None,
        })
    }

    /// Whether the comparison holds for these figures (never for a figure the run lacks).
    pub fn holds(&self, f: &Figures) -> bool {
        self.measure(f).is_some_and(|v| self.compare(v))
    }

    /// Whether the comparison holds for a measured value.
    pub fn compare(&self, v: f64) -> bool {
        match self.op {
            Op::Lt => v < self.value,
            Op::Le => v <= self.value,
            Op::Gt => v > self.value,
            Op::Ge => v >= self.value,
        }
    }

    /// As a safety stop, the consecutive intervals it must hold: its own `for N`, else
    /// `default`; a count (`errors>50`) only grows, so it stops the run in the interval it
    /// passes the value.
    pub fn stop_grace(&self, default: u32) -> u32 {
        match (self.grace, self.metric) {
            (Some(n), _) => n,
            (None, Metric::Errors) => 1,
            (None, _) => default.max(1),
        }
    }

    /// The metric and selector it judges: a threshold given as a flag replaces one from a
    /// scenario with the same key.
    pub fn key(&self) -> (Metric, &Selector) {
        (self.metric, &self.selector)
    }

    /// The measured value as a person reads it: `12.3 ms`, `1.20%`, `950.0/s`, `4.0 s`.
    pub fn show(&self, value: f64) -> String {
        match self.metric {
            m if m.is_latency() => format!("{value:.3} ms"),
            Metric::ErrorRate | Metric::Checks => format!("{:.2}%", value * 100.0),
            Metric::Rps => format!("{value:.1}/s"),
            Metric::RecoveryS => format!("{value:.1} s"),
            Metric::Errors => format!("{value:.0} errors"),
            Metric::Promql if value.abs() >= 1000.0 => format!("{value:.0}"),
            Metric::Promql => format!("{value:.4}"),
            _ => format!("{value}"),
        }
    }
}

impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// Judges thresholds on a finished run, each on the part of it that it selects. A part with
/// no data (no response selected, a name the run did not send) is its own outcome, `no_data`,
/// and fails, as k6 fails a threshold on a metric with no samples: a threshold must not pass
/// (or fail) on a figure nobody measured.
pub fn judge(exprs: &[Expr], s: &Summary) -> Vec<Threshold> {
    exprs
        .iter()
        .map(|e| match Figures::of_summary(s, &e.selector).and_then(|f| e.measure(&f)) {
            Some(value) => Threshold { expr: e.text.clone(), pass: e.compare(value), value, no_data: false },
            None => Threshold { expr: e.text.clone(), pass: false, value: 0.0, no_data: true },
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

/// Safety stops: each expression is a condition to stop on, and it must hold for its grace
/// (`for N`, else the default) in consecutive intervals before the run stops.
#[derive(Debug, Clone)]
pub struct SafetyStops {
    exprs: Vec<Expr>,
    grace: u32,
    streak: Vec<u32>,
    /// Failed requests so far: `errors` counts over the run, not one interval.
    errors: u64,
}

impl SafetyStops {
    /// `grace`: for the stops without a `for N` of their own.
    pub fn new(exprs: Vec<Expr>, grace: u32) -> Self {
        let streak = vec![0; exprs.len()];
        Self { exprs, grace: grace.max(1), streak, errors: 0 }
    }

    /// Takes one interval's figures; returns the stop that fired, if one did.
    pub fn observe(&mut self, t: &Totals, rps: f64, at_s: f64) -> Option<Fired> {
        self.errors += t.counters.errors_total();
        for (e, streak) in self.exprs.iter().zip(self.streak.iter_mut()) {
            let f = Figures { errors: self.errors, ..Figures::of_interval(t, rps, &e.selector) };
            *streak = if e.holds(&f) { *streak + 1 } else { 0 };
            if *streak >= e.stop_grace(self.grace) {
                return Some(Fired { expr: e.text.clone(), at_s, value: e.measure(&f).unwrap_or(0.0) });
            }
        }
        None
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
        match self.stops.observe(i.totals, i.point.rps, i.elapsed_s) {
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
        Figures {
            latency_ms: Latency { p95, ..Default::default() },
            responses: 100,
            error_rate,
            attempts: 100,
            rps,
            ..Default::default()
        }
    }

    #[test]
    fn promql_stops_keep_their_query_whole() {
        let text = r#"promql:1 - avg(rate(node_cpu_seconds_total{mode!="idle",job=~"a|b"}[30s])) > 0.9 for 3"#;
        let e = Expr::parse(text).unwrap();
        assert_eq!(e.query(), Some(r#"1 - avg(rate(node_cpu_seconds_total{mode!="idle",job=~"a|b"}[30s]))"#));
        assert_eq!((e.metric, e.op, e.value, e.grace), (Metric::Promql, Op::Gt, 0.9, Some(3)));
        // The last comparison is the stop's; the query may compare too.
        let e = Expr::parse("promql:sum(up > 0)<=-1.5e3").unwrap();
        assert_eq!((e.query(), e.op, e.value, e.grace), (Some("sum(up > 0)"), Op::Le, -1500.0, None));
        assert_eq!(e.show(0.93456), "0.9346");
        for bad in ["promql:", "promql:up", "promql:>1", "promql:up>x", "promql:up>1 for 0"] {
            assert!(Expr::parse(bad).is_err(), "{bad}");
        }
        let s = Summary::new("http://h/", 1, 1, &Totals::default(), 1.0);
        assert_eq!(Figures::of_summary(&s, &e.selector), None);
    }

    #[test]
    fn parses() {
        let e = Expr::parse("p95 < 200ms").unwrap();
        assert_eq!((e.metric, e.op, e.value), (Metric::P95, Op::Lt, 200.0));
        assert_eq!(Expr::parse("mean<=1.5s").unwrap().value, 1500.0);
        assert_eq!(Expr::parse("p99<500us").unwrap().value, 0.5);
        assert_eq!(Expr::parse("error_rate<0.1%").unwrap().value, 0.001);
        assert_eq!(Expr::parse("error_rate>0.1").unwrap().value, 0.1);
        assert_eq!(Expr::parse("error_rate<100%").unwrap().value, 1.0);
        let e = Expr::parse("error_rate<1").unwrap_err();
        assert!(e.contains("1%") && e.contains("below 1"), "{e}");
        assert_eq!(Expr::parse("rps>=1000").unwrap().op, Op::Ge);
        let e = Expr::parse("p95{name=login}<75ms").unwrap();
        assert_eq!((e.name(), e.value), (Some("login"), 75.0));
        assert_eq!(Expr::parse("p95{status=ok}<200ms").unwrap().selector, Selector::Ok);
        assert_eq!(Expr::parse("p99{status=5xx}<1s").unwrap().selector, Selector::Class(5));
        let e = Expr::parse("error_rate>10% for 3").unwrap();
        assert_eq!((e.grace, e.value), (Some(3), 0.1));
        assert_eq!(Expr::parse("capacity>=2000").unwrap().metric, Metric::Capacity);
        assert_eq!(Expr::parse("recovery_s<30").unwrap().value, 30.0);
        assert_eq!(Expr::parse("recovery_s<1m").unwrap().value, 60.0);
        for bad in [
            "",
            "p95",
            "p95<",
            "p95<200",
            "p77<1ms",
            "error_rate<200%",
            "error_rate<1",
            "error_rate<5",
            "rps>x",
            "<1",
            "p95{login}<1ms",
            "p95{name=}<1ms",
            "p95{status=6xx}<1ms",
            "p95{status=200}<1ms",
            "error_rate{status=ok}<1%",
            "capacity{status=ok}>1",
            "error_rate>1% for 0",
            "error_rate>1% for x",
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
        assert!(!Expr::parse("capacity>1").unwrap().holds(&f), "no capacity: never holds");
        assert!(Expr::parse("capacity>1").unwrap().holds(&Figures { capacity: Some(5.0), ..f }));
        assert_eq!(Expr::parse("error_rate<1%").unwrap().show(0.0123), "1.23%");
        assert_eq!(Expr::parse("p99<1s").unwrap().show(12.5), "12.500 ms");
        // No response selected: a latency is no data, whatever the comparison.
        let none = Figures { responses: 0, attempts: 0, ..f };
        for e in ["p95<200ms", "p99>1ms", "error_rate<1%", "error_rate>1%"] {
            assert_eq!(Expr::parse(e).unwrap().measure(&none), None, "{e}");
            assert!(!Expr::parse(e).unwrap().holds(&none), "{e}");
        }
        assert_eq!(Expr::parse("rps>1").unwrap().measure(&none), Some(900.0), "0 responses is a rate");
    }

    #[test]
    fn safety_stops_need_consecutive_intervals_each_its_own_grace() {
        let failing = |n: u64| {
            let mut t = Totals::default();
            for _ in 0..n {
                t.record(503, std::time::Duration::from_millis(1), std::time::Duration::from_millis(1), false);
            }
            t.record(200, std::time::Duration::from_millis(1), std::time::Duration::from_millis(1), true);
            t
        };
        let (bad, good) = (failing(9), failing(0));
        let mut s = SafetyStops::new(vec![Expr::parse("error_rate>10%").unwrap()], 3);
        assert_eq!(s.observe(&bad, 10.0, 1.0), None);
        assert_eq!(s.observe(&bad, 10.0, 2.0), None);
        assert_eq!(s.observe(&good, 10.0, 3.0), None);
        assert_eq!(s.observe(&bad, 10.0, 4.0), None);
        assert_eq!(s.observe(&bad, 10.0, 5.0), None);
        let fired = s.observe(&bad, 10.0, 6.0).unwrap();
        assert_eq!((fired.expr.as_str(), fired.at_s, fired.value), ("error_rate>10%", 6.0, 0.9));
        let mut quick = SafetyStops::new(vec![Expr::parse("error_rate>10% for 1").unwrap()], 3);
        assert!(quick.observe(&bad, 10.0, 1.0).is_some());

        // A count is of the run so far, and stops in the interval it passes the value.
        let mut count = SafetyStops::new(vec![Expr::parse("errors>12").unwrap()], 3);
        assert_eq!(count.observe(&bad, 10.0, 1.0), None);
        assert_eq!(count.observe(&good, 10.0, 2.0), None);
        let fired = count.observe(&bad, 10.0, 3.0).unwrap();
        assert_eq!((fired.at_s, fired.value), (3.0, 18.0));
        // As a threshold, the whole run's.
        let e = Expr::parse("errors<=50").unwrap();
        assert_eq!(e.stop_grace(3), 1);
        assert!(e.holds(&Figures { errors: 50, ..Figures::default() }));
        assert!(!e.holds(&Figures { errors: 51, ..Figures::default() }));
        assert!(Expr::parse("errors<1.5").unwrap_err().contains("a count"));
    }
}
