//! `engine report combine`: several runs side by side, in one CSV (summary.csv's rows of
//! every run, each with its run's label) and one self-contained HTML page (the key figures
//! in columns, each against the first run, bars for throughput and p99, and every profile's
//! levels in one table), as a regression report over a series of runs reads them.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use crate::summary::Summary;
use crate::table;
use crate::thresholds::{Figures, Selector};

/// One run: its label (the results folder's name) and its summary.
#[derive(Debug, Clone)]
pub struct Run {
    pub label: String,
    pub summary: Summary,
}

/// The runs at `paths` (results folders or summary files), each named by its folder; runs
/// whose folders share a name (laid out by `--out 'results/{date}/{profile}'`) are named by
/// the path as given.
pub fn read(paths: &[PathBuf]) -> Result<Vec<Run>, crate::folder::FolderError> {
    let mut runs = Vec::new();
    for path in paths {
        let summary = crate::folder::read_summary(path)?;
        let named = if path.is_dir() { Some(path.as_path()) } else { path.parent() };
        let label = named.and_then(Path::file_name).map(|n| n.to_string_lossy().into_owned());
        runs.push(Run { label: label.unwrap_or_else(|| path.display().to_string()), summary });
    }
    let shared: Vec<bool> = runs.iter().map(|r| runs.iter().filter(|o| o.label == r.label).count() > 1).collect();
    for ((run, path), shared) in runs.iter_mut().zip(paths).zip(shared) {
        if shared {
            run.label = path.display().to_string();
        }
    }
    Ok(runs)
}

/// Writes combined.csv and combined.html into `dir` (made if missing); their paths.
pub fn write(dir: &Path, runs: &[Run]) -> std::io::Result<Vec<PathBuf>> {
    let fail = |path: &Path, e: std::io::Error| std::io::Error::new(e.kind(), format!("{}: {e}", path.display()));
    std::fs::create_dir_all(dir).map_err(|e| fail(dir, e))?;
    let mut written = Vec::new();
    for (name, text) in [("combined.csv", csv(runs)), ("combined.html", html(runs))] {
        let path = dir.join(name);
        std::fs::write(&path, text).map_err(|e| fail(&path, e))?;
        written.push(path);
    }
    Ok(written)
}

/// Every run's summary.csv rows, after a first column naming the run.
pub fn csv(runs: &[Run]) -> String {
    let mut header = vec!["run"];
    header.extend(table::COLUMNS);
    let rows = runs
        .iter()
        .flat_map(|r| {
            table::rows(&r.summary).into_iter().map(|row| std::iter::once(r.label.clone()).chain(row).collect())
        })
        .collect();
    table::write_csv(&header, rows)
}

/// A figure of a run, and whether more of it is better (for the change against the first).
struct Figure {
    name: &'static str,
    read: fn(&Summary) -> Option<f64>,
    show: fn(f64) -> String,
    higher_is_better: bool,
}

fn ms(v: f64) -> String {
    format!("{v:.3} ms")
}

fn latency(s: &Summary, v: f64) -> Option<f64> {
    (s.requests > 0).then_some(v)
}

const FIGURES: [Figure; 8] = [
    Figure { name: "requests", read: |s| Some(s.requests as f64), show: |v| format!("{v:.0}"), higher_is_better: true },
    Figure { name: "throughput", read: |s| Some(s.rps), show: |v| format!("{v:.1}/s"), higher_is_better: true },
    Figure { name: "p50", read: |s| latency(s, s.latency_ms.p50), show: ms, higher_is_better: false },
    Figure { name: "p95", read: |s| latency(s, s.latency_ms.p95), show: ms, higher_is_better: false },
    Figure { name: "p99", read: |s| latency(s, s.latency_ms.p99), show: ms, higher_is_better: false },
    Figure { name: "max", read: |s| latency(s, s.latency_ms.max), show: ms, higher_is_better: false },
    Figure {
        name: "error rate",
        read: |s| Figures::of_summary(s, &Selector::All).map(|f| f.error_rate),
        show: |v| format!("{:.3}%", v * 100.0),
        higher_is_better: false,
    },
    Figure {
        name: "checks passed",
        read: |s| s.checks.as_ref().map(|c| c.rate),
        show: |v| format!("{:.2}%", v * 100.0),
        higher_is_better: true,
    },
];

/// How a row of the plans table reads a run.
type Cell = fn(&Summary) -> String;

/// Escapes text for HTML.
fn esc(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// The page: self-contained, no script, nothing fetched.
pub fn html(runs: &[Run]) -> String {
    let mut o = String::new();
    let _ = write!(
        o,
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>engine: {} runs side by side</title>\n\
         <style>body {{ font: 14px/1.4 system-ui, sans-serif; margin: 20px; color: #222; }}\n\
         table {{ border-collapse: collapse; margin: 4px 0 16px; }}\n\
         th, td {{ border: 1px solid #ccc; padding: 3px 8px; text-align: right; }}\n\
         th:first-child, td:first-child {{ text-align: left; }}\n\
         .worse {{ color: #b00; }} .better {{ color: #070; }} .change {{ font-size: 12px; }}\n\
         h2 {{ font-size: 16px; margin: 20px 0 6px; }}</style></head>\n<body>\n<h1>{} runs side by side</h1>\n",
        runs.len(),
        runs.len()
    );
    o.push_str("<h2>Plans and verdicts</h2>\n<table id=\"plans\"><tr><th>run</th>");
    for r in runs {
        let _ = write!(o, "<th>{}</th>", esc(&r.label));
    }
    o.push_str("</tr>\n");
    let plan_rows: [(&str, Cell); 7] = [
        ("started", |s| {
            let since = std::time::Duration::try_from_secs_f64(s.start_unix_s).unwrap_or_default();
            let t = std::time::UNIX_EPOCH.checked_add(since).unwrap_or(std::time::UNIX_EPOCH);
            crate::render::rfc3339(t)
        }),
        ("target", |s| s.target.clone()),
        ("model", |s| s.model.name().to_string()),
        ("connections", |s| s.conns.to_string()),
        ("duration", |s| format!("{:.1} s", s.duration_s)),
        ("profile", |s| s.profile.as_ref().map_or("-".into(), |p| format!("{} at peak {}", p.name, p.peak))),
        ("verdict", |s| {
            let failed = s.thresholds.iter().filter(|t| !t.pass).count();
            let stop = s.stopped_by.as_ref().map(|f| format!(", stopped by '{}'", f.expr)).unwrap_or_default();
            format!("{} ({failed} thresholds failed{stop})", s.verdict().name())
        }),
    ];
    for (name, cell) in plan_rows {
        let _ = write!(o, "<tr><td>{name}</td>");
        for r in runs {
            let _ = write!(o, "<td>{}</td>", esc(&cell(&r.summary)));
        }
        o.push_str("</tr>\n");
    }
    o.push_str("</table>\n<h2>Figures (change against the first run)</h2>\n<table id=\"figures\"><tr><th>figure</th>");
    for r in runs {
        let _ = write!(o, "<th>{}</th>", esc(&r.label));
    }
    o.push_str("</tr>\n");
    for f in &FIGURES {
        let values: Vec<Option<f64>> = runs.iter().map(|r| (f.read)(&r.summary)).collect();
        if values.iter().all(Option::is_none) {
            continue;
        }
        let _ = write!(o, "<tr><td>{}</td>", f.name);
        for v in &values {
            let _ = write!(o, "<td>{}</td>", cell(f, *v, values[0]));
        }
        o.push_str("</tr>\n");
    }
    o.push_str("</table>\n");
    bars(&mut o, runs, "Throughput", "throughput", |s| s.rps, |v| format!("{v:.1}/s"));
    bars(&mut o, runs, "p99 latency", "p99", |s| s.latency_ms.p99, ms);
    levels(&mut o, runs);
    o.push_str("</body></html>\n");
    o
}

/// A figure's cell: the value, and its change against the first run's, coloured by whether
/// it is better or worse.
fn cell(f: &Figure, v: Option<f64>, first: Option<f64>) -> String {
    let Some(v) = v else { return "-".into() };
    let mut text = (f.show)(v);
    if let Some(b) = first.filter(|b| *b > 0.0 && *b != v) {
        let change = (v - b) / b;
        let better = (change > 0.0) == f.higher_is_better;
        let class = if better { "better" } else { "worse" };
        let _ = write!(text, " <span class=\"change {class}\">{:+.1}%</span>", change * 100.0);
    }
    text
}

/// Horizontal bars of one figure, one per run, scaled to the largest.
fn bars(o: &mut String, runs: &[Run], title: &str, id: &str, read: fn(&Summary) -> f64, show: fn(f64) -> String) {
    let values: Vec<f64> = runs.iter().map(|r| read(&r.summary)).collect();
    let top = values.iter().copied().fold(0.0, f64::max);
    if top <= 0.0 {
        return;
    }
    let (row, label_w, bar_w) = (22.0, 220.0, 420.0);
    let height = row * runs.len() as f64 + 4.0;
    let _ = write!(
        o,
        "<h2>{title}</h2>\n<svg id=\"bars-{id}\" width=\"{}\" height=\"{height}\" role=\"img\" aria-label=\"{title}\">\n",
        label_w + bar_w + 120.0
    );
    for (i, (r, v)) in runs.iter().zip(&values).enumerate() {
        let y = i as f64 * row + 2.0;
        let w = (v / top * bar_w).max(1.0);
        let _ = writeln!(
            o,
            "<text x=\"0\" y=\"{:.1}\" font-size=\"12\">{}</text><rect x=\"{label_w}\" y=\"{y:.1}\" width=\"{w:.1}\" \
             height=\"{:.1}\" fill=\"#4a7fb5\"/><text x=\"{:.1}\" y=\"{:.1}\" font-size=\"12\">{}</text>",
            y + 14.0,
            esc(&r.label),
            row - 6.0,
            label_w + w + 6.0,
            y + 14.0,
            show(*v)
        );
    }
    o.push_str("</svg>\n");
}

/// Every run's profile levels in one table: a row per level, a column per run.
fn levels(o: &mut String, runs: &[Run]) {
    // Levels are numbers; keyed by their text so 100 and 100.0 are one row, in numeric order.
    let mut by_level: BTreeMap<(u64, String), Vec<Option<String>>> = BTreeMap::new();
    for (i, r) in runs.iter().enumerate() {
        for l in r.summary.profile.iter().flat_map(|p| &p.levels) {
            let key = ((l.level * 1000.0) as u64, l.level.to_string());
            let verdict = l.failed_on.as_deref().map_or("held".to_string(), |w| format!("FAILED: {w}"));
            let text = format!("{:.1}/s, p99 {:.3} ms, {verdict}", l.rps, l.p99_ms);
            let cells = by_level.entry(key).or_insert_with(|| vec![None; runs.len()]);
            // A level held twice in one run (a spike's baseline before and after): the first.
            cells[i].get_or_insert(text);
        }
    }
    if by_level.is_empty() {
        return;
    }
    o.push_str("<h2>Levels (over each level's hold)</h2>\n<table id=\"levels\"><tr><th>level</th>");
    for r in runs {
        let _ = write!(o, "<th>{}</th>", esc(&r.label));
    }
    o.push_str("</tr>\n");
    for ((_, level), cells) in &by_level {
        let _ = write!(o, "<tr><td>{level}</td>");
        for c in cells {
            let _ = write!(o, "<td>{}</td>", esc(c.as_deref().unwrap_or("-")));
        }
        o.push_str("</tr>\n");
    }
    o.push_str("</table>\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::Totals;
    use std::time::Duration;

    fn run(label: &str, ms: u64, n: u64) -> Run {
        let mut t = Totals::default();
        for _ in 0..n {
            t.record(200, Duration::from_millis(ms), Duration::from_millis(ms), true);
        }
        Run { label: label.into(), summary: Summary::new("http://h:1/<x>", 8, 1, &t, 1.0) }
    }

    #[test]
    fn runs_side_by_side() {
        let runs = [run("base", 2, 100), run("new,er", 4, 50)];
        let text = csv(&runs);
        let rows: Vec<csv::StringRecord> =
            csv::Reader::from_reader(text.as_bytes()).records().map(Result::unwrap).collect();
        assert_eq!(rows.len(), 2, "{text}");
        assert_eq!((&rows[0][0], &rows[0][1]), ("base", "run"));
        assert_eq!(&rows[1][0], "new,er");
        let page = html(&runs);
        assert!(page.contains("<th>base</th><th>new,er</th>"), "{page}");
        assert!(page.contains("http://h:1/&lt;x&gt;") && !page.contains("<x>"), "escaped");
        // Half the throughput, twice the latency: both worse.
        assert!(page.contains("50.0/s <span class=\"change worse\">-50.0%</span>"), "{page}");
        assert!(page.contains("class=\"change worse\">+100"), "{page}");
        assert!(page.contains("id=\"bars-throughput\"") && !page.contains("id=\"levels\""), "{page}");
    }
}
