//! summary.csv: a run's key figures as one row, one row per named request and one per level
//! of a profile, for a spreadsheet, or a regression report that reads the folders of many
//! runs.

use crate::summary::{Latency, Summary};
use crate::thresholds::{Figures, Selector};

/// The columns, in order.
pub const COLUMNS: [&str; 22] = [
    "scope",
    "name",
    "target",
    "model",
    "conns",
    "duration_s",
    "requests",
    "rps",
    "errors",
    "error_rate",
    "mean_ms",
    "p50_ms",
    "p90_ms",
    "p95_ms",
    "p99_ms",
    "p999_ms",
    "max_ms",
    "checks_passed",
    "checks_failed",
    "thresholds_failed",
    "verdict",
    "exit_code",
];

/// The rows: `run` (the whole run), then `request` (one per named request, scenarios), then
/// `scenario` (one per scenario of a plan with several: its model, connections and planned
/// length in the plan's columns), then `level` (one per level of a profile, its figures over the level's hold; its verdict
/// `held` or `failed`). A figure a row does not have (a request's verdict, a level's p90) is
/// empty; a latency of no response is empty, not 0.
pub fn summary_csv(s: &Summary) -> String {
    write_csv(&COLUMNS, rows(s))
}

/// A CSV text of `header` and `rows`, quoted where a cell needs it.
pub(crate) fn write_csv(header: &[&str], rows: Vec<Vec<String>>) -> String {
    let mut w = csv::Writer::from_writer(Vec::new());
    let _ = w.write_record(header);
    for row in rows {
        let _ = w.write_record(&row);
    }
    w.into_inner().ok().and_then(|b| String::from_utf8(b).ok()).unwrap_or_default()
}

/// summary.csv's rows, in [`COLUMNS`] order.
pub fn rows(s: &Summary) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let rate = |sel: &Selector| Figures::of_summary(s, sel).map(|f| f.error_rate).unwrap_or_default();
    let (passed, failed) =
        s.checks.as_ref().map_or((String::new(), String::new()), |c| (c.passed.to_string(), c.failed.to_string()));
    let verdict = s.verdict();
    let mut run = vec!["run".to_string(), String::new()];
    run.extend(plan_cells(s));
    run.extend([s.requests.to_string(), s.rps.to_string(), s.errors.total.to_string()]);
    run.push(format!("{:.6}", rate(&Selector::All)));
    run.extend(latency_cells(&s.latency_ms, s.requests));
    run.extend([passed, failed]);
    run.push(s.thresholds.iter().filter(|t| !t.pass).count().to_string());
    run.extend([verdict.name().to_string(), verdict.exit_code().to_string()]);
    out.push(run);
    for (name, n) in &s.requests_by_name {
        let checks = ["", ""].map(String::from);
        let mut row = vec!["request".to_string(), name.clone()];
        row.extend(plan_cells(s));
        row.extend([n.requests.to_string(), n.rps.to_string(), n.errors.total.to_string()]);
        row.push(format!("{:.6}", rate(&Selector::Name(name.clone()))));
        row.extend(latency_cells(&n.latency_ms, n.requests));
        row.extend(checks);
        row.extend([String::new(), String::new(), String::new()]);
        out.push(row);
    }
    for (name, sc) in &s.scenarios {
        let mut row = vec!["scenario".to_string(), name.clone()];
        row.extend([s.target.clone(), sc.model.name().to_string(), sc.conns.to_string(), sc.planned_s.to_string()]);
        row.extend([sc.requests.to_string(), sc.rps.to_string(), sc.errors.total.to_string()]);
        row.push(format!("{:.6}", rate(&Selector::Scenario(name.clone()))));
        row.extend(latency_cells(&sc.latency_ms, sc.requests));
        row.extend(["", "", "", "", ""].map(String::from));
        out.push(row);
    }
    for l in s.profile.iter().flat_map(|p| &p.levels) {
        let mut row = vec!["level".to_string(), l.level.to_string()];
        row.extend(plan_cells(s));
        let opt = |v: Option<f64>| v.map(|v| v.to_string()).unwrap_or_default();
        row.extend([l.requests.map(|n| n.to_string()).unwrap_or_default(), l.rps.to_string()]);
        row.extend([l.errors.map(|n| n.to_string()).unwrap_or_default(), format!("{:.6}", l.error_rate)]);
        row.extend([String::new(), opt(l.p50_ms), String::new(), opt(l.p95_ms), l.p99_ms.to_string()]);
        let count = |v: Option<u64>| v.map(|n| n.to_string()).unwrap_or_default();
        row.extend([String::new(), String::new(), count(l.checks_passed), count(l.checks_failed), String::new()]);
        row.extend([if l.pass { "held" } else { "failed" }.to_string(), String::new()]);
        out.push(row);
    }
    out
}

fn plan_cells(s: &Summary) -> [String; 4] {
    [s.target.clone(), s.model.name().to_string(), s.conns.to_string(), s.duration_s.to_string()]
}

fn latency_cells(l: &Latency, responses: u64) -> Vec<String> {
    [l.mean, l.p50, l.p90, l.p95, l.p99, l.p999, l.max]
        .iter()
        .map(|v| if responses == 0 { String::new() } else { v.to_string() })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::Totals;
    use std::time::Duration;

    #[test]
    fn a_row_per_run_and_per_name_with_quoting() {
        let mut t = Totals::with_names(1, 0);
        for _ in 0..3 {
            t.record(200, Duration::from_millis(2), Duration::from_millis(2), true);
            t.record_named(0, 200, Duration::from_millis(2), true);
        }
        let mut s = Summary::new("http://h:1/a,b", 8, 1, &t, 1.0);
        s.requests_by_name.insert("home".into(), crate::summary::NamedSummary::new("GET", 1, &t.names[0], 1.0));
        let text = summary_csv(&s);
        let rows: Vec<Vec<String>> = csv::Reader::from_reader(text.as_bytes())
            .records()
            .map(|r| r.unwrap().iter().map(str::to_string).collect())
            .collect();
        assert_eq!(rows.len(), 2, "{text}");
        let col = |row: &Vec<String>, name: &str| row[COLUMNS.iter().position(|c| *c == name).unwrap()].clone();
        assert_eq!(col(&rows[0], "target"), "http://h:1/a,b");
        assert_eq!((col(&rows[0], "requests").as_str(), col(&rows[0], "verdict").as_str()), ("3", "passed"));
        assert_eq!((col(&rows[1], "scope").as_str(), col(&rows[1], "name").as_str()), ("request", "home"));
        assert!(col(&rows[1], "p99_ms").parse::<f64>().unwrap() > 1.9);
        assert_eq!(col(&rows[1], "verdict"), "");
    }
}
