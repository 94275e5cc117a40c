//! A run of several scenarios (`[[scenario]]`, k6's `scenarios`): each scenario's figures.
//! Its counts are its own (connection failures included); its latency is the merge of its
//! requests' histograms, so a fleet's merge gives it exactly too.

use hdrhistogram::Histogram;

use crate::stats::Counters;
use crate::summary::{round3, Errors, Latency, Planned, ScenarioSummary};

impl ScenarioSummary {
    /// A scenario's figures from its counts and its latency, in a run that lasted `ran_s`.
    pub fn new(p: Planned, c: &Counters, latency: &Histogram<u64>, ran_s: f64) -> Self {
        let own_s = (ran_s.min(p.start_s + p.planned_s) - p.start_s).max(0.0);
        ScenarioSummary {
            model: p.model,
            start_s: round3(p.start_s),
            planned_s: round3(p.planned_s),
            conns: p.conns,
            requests: c.requests,
            rps: if own_s > 0.0 { round3(c.requests as f64 / own_s) } else { 0.0 },
            status: c.statuses().map(|(s, n)| (s.to_string(), n)).collect(),
            errors: Errors::of(c),
            latency_ms: Latency::from_histogram(latency),
            sent: c.sent,
            scheduled_requests: None,
            scheduled_iterations: None,
            abandoned: c.abandoned,
            iterations: None,
        }
    }

    pub fn planned(&self) -> Planned {
        Planned { model: self.model, start_s: self.start_s, planned_s: self.planned_s, conns: self.conns }
    }

    /// Its counts as [`Counters`], to add several runs' (a fleet's merge).
    pub fn counters(&self) -> Counters {
        let mut c = Counters::default();
        c.requests = self.requests;
        c.add_statuses(&self.status);
        self.errors.add_to(&mut c);
        c.sent = self.sent;
        c.abandoned = self.abandoned;
        c
    }
}

/// The names of `scenario`'s requests among a run's: `SCENARIO.…`.
pub fn is_of(scenario: &str, request: &str) -> bool {
    request.strip_prefix(scenario).is_some_and(|rest| rest.starts_with('.'))
}

/// Its lines in the terminal's summary: its load, its figures, its schedule.
pub fn text_lines(o: &mut String, s: &crate::Summary) {
    use crate::units::{human_duration, ms};
    use std::fmt::Write as _;
    for (name, sc) in &s.scenarios {
        let latency = match sc.requests {
            0 => "no data".to_string(),
            _ => format!("p50 {}  p95 {}  p99 {}", ms(sc.latency_ms.p50), ms(sc.latency_ms.p95), ms(sc.latency_ms.p99)),
        };
        let _ = writeln!(
            o,
            "  {:<12}{name:<16} {} {} conns, {}..{}: {} req ({:.1}/s)  {latency}  errors {}{}",
            "scenario",
            sc.model.name(),
            sc.conns,
            human_duration(sc.start_s),
            human_duration(sc.start_s + sc.planned_s),
            sc.requests,
            sc.rps,
            sc.errors.total,
            schedule_words(sc).map_or(String::new(), |w| format!("; {w}")),
        );
    }
}

/// What its schedule asked for, and what it started.
fn schedule_words(sc: &ScenarioSummary) -> Option<String> {
    match (sc.scheduled_requests, sc.scheduled_iterations) {
        (Some(n), _) => Some(format!("{} of {n} scheduled requests sent", sc.sent.min(n))),
        (_, Some(n)) => Some(match &sc.iterations {
            Some(i) => format!(
                "{} of {n} scheduled iterations started, {} completed, {} failed, {} dropped",
                i.started, i.completed, i.failed, i.dropped
            ),
            None => format!("{n} iterations scheduled"),
        }),
        _ => None,
    }
}

/// summary.md's table of the scenarios.
pub fn markdown_section(o: &mut String, s: &crate::Summary) {
    use std::fmt::Write as _;
    if s.scenarios.is_empty() {
        return;
    }
    let _ = writeln!(o, "\n## Scenarios\n");
    let _ =
        writeln!(o, "| scenario | model | conns | from–to | requests | rate | p50 | p95 | p99 | errors | schedule |");
    let _ = writeln!(o, "|---|---|---:|---|---:|---:|---:|---:|---:|---:|---|");
    for (name, sc) in &s.scenarios {
        let l = |v: f64| if sc.requests == 0 { "no data".to_string() } else { format!("{v:.3} ms") };
        let _ = writeln!(
            o,
            "| {name} | {} | {} | {:.1}–{:.1} s | {} | {:.1} req/s | {} | {} | {} | {} | {} |",
            sc.model.name(),
            sc.conns,
            sc.start_s,
            sc.start_s + sc.planned_s,
            sc.requests,
            sc.rps,
            l(sc.latency_ms.p50),
            l(sc.latency_ms.p95),
            l(sc.latency_ms.p99),
            sc.errors.total,
            schedule_words(sc).unwrap_or_default(),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::{new_histogram, ErrorKind};
    use crate::summary::Model;

    #[test]
    fn counts_survive_the_summary_and_names_belong_by_prefix() {
        let mut c = Counters::default();
        c.requests = 10;
        for _ in 0..8 {
            c.status(200);
        }
        c.status_n(503, 2);
        c.error(ErrorKind::Status);
        c.error(ErrorKind::Status);
        c.error(ErrorKind::Connect);
        c.sent = 11;
        let mut h = new_histogram();
        h.record(1500).unwrap();
        let p = Planned { model: Model::Open, start_s: 2.0, planned_s: 5.0, conns: 4 };
        let s = ScenarioSummary::new(p, &c, &h, 20.0);
        assert_eq!((s.rps, s.errors.total, s.errors.connect), (2.0, 3, 1), "10 responses over its own 5 s");
        let back = s.counters();
        assert_eq!((back.requests, back.errors_total(), back.sent, back.attempts()), (10, 3, 11, 11));
        assert_eq!(back.statuses().collect::<Vec<_>>(), vec![(200, 8), (503, 2)]);
        assert!(is_of("browse", "browse.home") && !is_of("browse", "browser.home") && !is_of("browse", "browse"));
    }
}
