//! report.html in a real headless browser (Debian's chromium; `.ci/run` installs it):
//! it renders its charts with no script error, draws a non-blank page and fetches nothing.

#[macro_use]
mod require;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use engine_target::{Target, TargetConfig};

fn chromium(args: &[&str], page: &Path, profile: &Path) -> std::process::Output {
    let bin = ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect("chromium not found: apt-get install -y chromium (.ci/run does)");
    Command::new(bin)
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run"])
        .args(["--disable-background-networking", "--disable-component-update", "--disable-sync"])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .arg(format!("file://{}", page.display()))
        .output()
        .expect("chromium runs")
}

#[test]
fn report_renders_in_chromium_without_errors_or_network() {
    require!("chromium");
    let t = Target::start(TargetConfig::loopback(Duration::ZERO).unwrap()).unwrap();
    let dir = std::env::temp_dir().join(format!("engine-html-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let o = Command::new(env!("CARGO_BIN_EXE_engine"))
        .args(["blast", &format!("http://{}/", t.local_addr()), "-c", "4", "-d", "2s", "-q", "--threshold", "p99<1s"])
        .arg("--out")
        .arg(&dir)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
    let page = dir.join("report.html");
    let html = std::fs::read_to_string(&page).unwrap();
    // Self-contained: no external script, style sheet, image or frame.
    for needle in ["<link", "src=\"http", "src='http", "href=\"http", "url(http", "<iframe", "<img"] {
        assert!(!html.contains(needle), "report.html references something external: {needle}");
    }

    // The script ran to its end: four charts and the marker it sets last.
    let profile = dir.join("chromium-profile");
    let netlog = dir.join("netlog.json");
    let o = chromium(
        &["--enable-logging=stderr", "--v=0", &format!("--log-net-log={}", netlog.display()), "--dump-dom"],
        &page,
        &profile,
    );
    let dom = String::from_utf8_lossy(&o.stdout);
    let log = String::from_utf8_lossy(&o.stderr);
    assert!(dom.contains("data-rendered=\"ok\""), "the report script did not finish; browser log:\n{log}");
    assert_eq!(dom.matches("class=\"uplot").count(), 4, "four charts");
    assert!(!log.contains("Uncaught"), "script error:\n{log}");
    // Chromium talks to its own (Google) hosts whatever the page does; nothing else may appear.
    let net = std::fs::read_to_string(&netlog).unwrap_or_default();
    for url in net.split("\"url\":\"").skip(1).filter_map(|s| s.split('"').next()) {
        let host = url.split("://").nth(1).unwrap_or("").split(['/', ':', '?']).next().unwrap_or("");
        let browser_own = ["google.com", "googleapis.com", "gstatic.com"]
            .iter()
            .any(|h| host == *h || host.ends_with(&format!(".{h}")));
        assert!(url.starts_with("file://") || url.starts_with("data:") || browser_own, "the page fetched {url}");
    }

    // A screenshot that is not blank: charts make it far larger than an empty page's.
    let shot = dir.join("shot.png");
    let _ = chromium(&["--window-size=1100,1600", &format!("--screenshot={}", shot.display())], &page, &profile);
    let size = std::fs::metadata(&shot).map(|m| m.len()).unwrap_or(0);
    assert!(size > 40_000, "screenshot of {size} bytes looks blank");
    let _ = std::fs::remove_dir_all(&dir);
}

/// What the report shows, read from the data its script writes back into the page: open
/// connections on an axis of their own (not the req/s axis, where a ramp was a flat line),
/// gaps where an interval had no responses (not 0 ms), the profile's results, thresholds in
/// their units.
/// A real run's summary given what the page must show: a second without responses (a stalled
/// server), a stress profile's results, and two scenarios, one that got no response.
fn shape(v: &mut serde_json::Value, gap: usize) {
    v["timeseries"][gap]["requests"] = 0.into();
    v["timeseries"][gap]["rps"] = 0.0.into();
    v["profile"] = serde_json::json!({
        "name": "stress", "peak": 400.0, "capacity": 300.0, "failed_at": 320.0, "best_rps": 298.5,
        "criterion": "p99 <= 1000 ms, errors <= 1%",
        "levels": [
            {"level": 300.0, "held_s": 3.0, "p99_ms": 12.5, "error_rate": 0.0, "rps": 298.5, "pass": true,
             "p50_ms": 2.0, "p95_ms": 8.0, "requests": 895, "errors": 0, "checks_passed": 199, "checks_failed": 1},
            {"level": 320.0, "held_s": 3.0, "p99_ms": 1500.0, "error_rate": 0.0, "rps": 301.0, "pass": false,
             "failed_on": "p99 1500.0 ms, over 1000 ms", "p50_ms": 3.0, "p95_ms": 900.0, "requests": 903, "errors": 0}
        ]
    });
    // Two scenarios of one run (as `[[scenario]]` writes them), one that got no response.
    let scenario = |model: &str, start: f64, requests: u64, p99: f64| {
        serde_json::json!({
            "model": model, "start_s": start, "planned_s": 2.0, "conns": 4, "requests": requests, "rps": requests as f64 / 2.0,
            "status": {"200": requests}, "errors": v["errors"].clone(), "sent": requests, "abandoned": 0,
            "latency_ms": {"mean": p99, "p50": p99, "p90": p99, "p95": p99, "p99": p99, "p999": p99, "max": p99},
            "scheduled_iterations": 40
        })
    };
    v["scenarios"] =
        serde_json::json!({"browse": scenario("closed", 0.0, 900, 1.25), "checkout": scenario("open", 1.0, 0, 0.0)});
}

#[test]
fn the_report_shows_the_shape_of_the_run() {
    require!("chromium");
    let t = Target::start(TargetConfig::loopback(Duration::ZERO).unwrap()).unwrap();
    let dir = std::env::temp_dir().join(format!("engine-html-shape-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let o = Command::new(env!("CARGO_BIN_EXE_engine"))
        .args(["blast", &format!("http://{}/", t.local_addr()), "-c", "4", "-d", "3s", "-q"])
        .args(["--threshold", "p99<1s", "--threshold", "error_rate<1%", "--out"])
        .arg(&dir)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
    // A second without responses (a stalled server) and a stress profile's results.
    let path = dir.join("summary.json");
    let mut v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let gap = 1;
    shape(&mut v, gap);
    std::fs::write(&path, v.to_string()).unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_engine")).args(["report", "html"]).arg(&dir).output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));

    let o = chromium(&["--dump-dom"], &dir.join("report.html"), &dir.join("chromium-profile"));
    let dom = String::from_utf8_lossy(&o.stdout);
    assert!(dom.contains("data-rendered=\"ok\""), "{}", String::from_utf8_lossy(&o.stderr));
    let json = dom.split("id=\"charts\">").nth(1).and_then(|s| s.split("</script>").next()).expect("the charts' data");
    let charts: serde_json::Value = serde_json::from_str(json).unwrap();
    let chart = |title: &str| charts.as_array().unwrap().iter().find(|c| c["title"] == title).unwrap().clone();
    let throughput = chart("Throughput and errors");
    let connections = chart("Connections");
    let scales =
        |c: &serde_json::Value| c["series"].as_array().unwrap().iter().map(|s| s["scale"].clone()).collect::<Vec<_>>();
    assert!(!throughput["series"].to_string().contains("connections"), "{throughput}");
    assert_eq!(scales(&connections)[0], "conns");
    assert!(!scales(&throughput).contains(&"conns".into()));
    assert_eq!(connections["data"][0][0], 4, "4 connections open: {connections}");
    let latency = chart("Latency over time (ms)");
    assert!(latency["data"][0][gap].is_null(), "no responses, no latency: {latency}");
    assert!(latency["data"][0][0].as_f64().unwrap() > 0.0);
    // The profile's results and the thresholds, in their units.
    let profile = dom.split("id=\"profile\"").nth(1).unwrap_or("");
    assert!(profile.contains("capacity") && profile.contains("300 (the last level that held)"), "{profile}");
    assert!(profile.contains("failed level") && profile.contains("320"), "{profile}");
    // Each level's figures over its hold, and its verdict.
    let levels = dom.split("id=\"levels\"").nth(1).unwrap_or("");
    assert!(levels.contains("298.5 req/s") && levels.contains("8.00 ms") && levels.contains("held"), "{levels}");
    assert!(levels.contains("FAILED: p99 1500.0 ms, over 1000 ms"), "{levels}");
    // Checks over each hold, when the plan has them.
    assert!(levels.contains("<th>checks</th>") && levels.contains("99.50%"), "{levels}");
    let scenarios = dom.split("id=\"scenarios\"").nth(1).unwrap_or("");
    assert!(scenarios.contains("<td>browse</td><td>closed</td>") && scenarios.contains("1.25 ms"), "{scenarios}");
    assert!(scenarios.contains("<td>checkout</td><td>open</td>") && scenarios.contains("no data"), "{scenarios}");
    assert!(scenarios.contains("1.0 s") && scenarios.contains("40 iterations"), "{scenarios}");
    let thresholds = dom.split("id=\"thresholds\"").nth(1).unwrap_or("");
    assert!(thresholds.contains("0.00%"), "an error rate as a percentage: {thresholds}");
    assert!(thresholds.contains(" ms") || thresholds.contains(" µs"), "a latency with its unit: {thresholds}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// `engine report combine`: two real runs (one a ramp with levels) side by side. The CSV has
/// each run's summary.csv rows after its name; the page, in Chromium, shows both runs'
/// figures, the change against the first, bars, and the ramp's levels.
#[test]
fn runs_combine_side_by_side() {
    require!("chromium");
    let t = Target::start(TargetConfig::loopback(Duration::ZERO).unwrap()).unwrap();
    let url = format!("http://{}/", t.local_addr());
    let dir = std::env::temp_dir().join(format!("engine-combine-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let blast = |name: &str, args: &[&str]| {
        let o = Command::new(env!("CARGO_BIN_EXE_engine"))
            .args(["blast", &url, "-q"])
            .args(args)
            .arg("--out")
            .arg(dir.join(name))
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
    };
    blast("monday", &["-c", "4", "-d", "1s"]);
    blast("tuesday", &["--stages", "2:1s,2:1s,4:1s,4:1s"]);
    let out = dir.join("combined");
    let o = Command::new(env!("CARGO_BIN_EXE_engine"))
        .args(["report", "combine"])
        .args([dir.join("monday"), dir.join("tuesday/summary.json")])
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));

    let csv = std::fs::read_to_string(out.join("combined.csv")).unwrap();
    let rows: Vec<&str> = csv.lines().collect();
    assert!(rows[0].starts_with("run,scope,name,target"), "{csv}");
    assert_eq!(rows.iter().filter(|r| r.starts_with("monday,run,")).count(), 1, "{csv}");
    assert_eq!(rows.iter().filter(|r| r.starts_with("tuesday,run,")).count(), 1, "{csv}");
    assert_eq!(rows.iter().filter(|r| r.starts_with("tuesday,level,")).count(), 2, "{csv}");

    let page = out.join("combined.html");
    let o = chromium(&["--dump-dom"], &page, &dir.join("chromium-profile"));
    let dom = String::from_utf8_lossy(&o.stdout);
    assert!(dom.contains("<th>monday</th><th>tuesday</th>"), "{dom}");
    assert!(dom.contains("id=\"figures\"") && dom.contains("class=\"change"), "{dom}");
    assert!(dom.contains("id=\"bars-throughput\"") && dom.contains("id=\"bars-p99\""), "{dom}");
    let levels = dom.split("id=\"levels\"").nth(1).unwrap_or("");
    assert!(levels.contains("<td>2</td><td>-</td><td>") && levels.contains("<td>4</td>"), "{levels}");

    // A folder without a summary is refused, naming it.
    let o = Command::new(env!("CARGO_BIN_EXE_engine"))
        .args(["report", "combine"])
        .arg(dir.join("monday"))
        .arg(dir.join("nothing"))
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("nothing"), "{}", String::from_utf8_lossy(&o.stderr));
    let _ = std::fs::remove_dir_all(&dir);
}
