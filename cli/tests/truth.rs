//! Figures that tell the truth: a failed response is an error in every view, latency can be
//! judged on the expected responses only, and a flag never silently loses to a scenario.

// A test reads as one story from setup to the last assertion; the CLI's 60-line limit
// (cli/clippy.toml) is for its code.
#![allow(clippy::too_many_lines)]

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn engine(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_engine")).args(args).output().expect("engine runs")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// An HTTP/1.1 server (a thread per connection) answering each request with what
/// `respond(n)` returns for the n-th request overall: (status, delay).
fn server(respond: impl Fn(u64) -> (u16, Duration) + Send + Sync + 'static) -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let respond = Arc::new(respond);
    let count = Arc::new(AtomicU64::new(0));
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut s) = conn else { continue };
            let (respond, count) = (respond.clone(), count.clone());
            std::thread::spawn(move || {
                let mut buf = [0u8; 8192];
                let mut pending = Vec::new();
                loop {
                    match s.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => pending.extend_from_slice(&buf[..n]),
                    }
                    while let Some(end) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
                        pending.drain(..end + 4);
                        let (status, delay) = respond(count.fetch_add(1, Ordering::Relaxed));
                        std::thread::sleep(delay);
                        let text = format!("HTTP/1.1 {status} X\r\nContent-Length: 2\r\n\r\nok");
                        if s.write_all(text.as_bytes()).is_err() {
                            return;
                        }
                    }
                }
            });
        }
    });
    addr
}

fn close(a: f64, b: f64, by: f64) -> bool {
    (a - b).abs() <= by
}

/// A server that answers 3 requests in 10 with 503: every view of the run says 30%.
#[test]
fn failed_responses_are_errors_in_every_view() {
    let addr = server(|n| (if n % 10 < 3 { 503 } else { 200 }, Duration::ZERO));
    let dir = std::env::temp_dir().join(format!("engine-truth-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let scenario = dir.join("two.toml");
    std::fs::write(
        &scenario,
        format!("target = \"http://{addr}\"\n[[request]]\nname = \"a\"\npath = \"/a\"\n[[request]]\nname = \"b\"\npath = \"/b\"\n"),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_engine"))
        .args(["blast", "--scenario", scenario.to_str().unwrap(), "-c", "4", "-d", "3s", "--shards", "1"])
        .args(["--metrics-addr", "127.0.0.1:0", "--json", "-", "--out"])
        .arg(dir.join("run"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The metrics address is on stderr's first line; scrape it while the run goes on.
    let mut err = child.stderr.take().unwrap();
    let mut text = Vec::new();
    let mut byte = [0u8];
    while !text.ends_with(b"\n") && err.read(&mut byte).unwrap_or(0) == 1 {
        text.push(byte[0]);
    }
    let metrics_url = String::from_utf8_lossy(&text).trim().trim_start_matches("metrics: http://").to_string();
    std::thread::sleep(Duration::from_millis(2500));
    let scrape = {
        let mut s = std::net::TcpStream::connect(metrics_url.split('/').next().unwrap()).unwrap();
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
        let mut body = String::new();
        s.read_to_string(&mut body).unwrap();
        body
    };
    let mut progress = String::new();
    err.read_to_string(&mut progress).unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{progress}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();

    let requests = v["requests"].as_f64().unwrap();
    let status = v["errors"]["status"].as_f64().unwrap();
    assert!(requests > 500.0, "{v}");
    assert!(close(status / requests, 0.3, 0.01), "errors.status {status} of {requests}");
    assert_eq!(v["errors"]["total"], v["errors"]["status"]);
    let rate = v["errors"]["total"].as_f64().unwrap() / requests;
    // Per name: the server's every-tenth pattern meets the names' alternation, so each
    // name's share is near 30% and the two add up to the whole exactly.
    let mut named = 0.0;
    for name in ["a", "b"] {
        let n = &v["requests_by_name"][name];
        let share = n["errors"]["status"].as_f64().unwrap() / n["requests"].as_f64().unwrap();
        assert!(close(share, 0.3, 0.1), "{name}: {n}");
        named += n["errors"]["status"].as_f64().unwrap();
    }
    assert_eq!(named, status);
    // The progress line, the time series and the report's data: about 30% a second.
    let lines: Vec<&str> = progress.lines().filter(|l| l.starts_with('[') && l.contains("errors")).collect();
    assert!(lines.len() >= 2, "{progress}");
    for p in v["timeseries"].as_array().unwrap().iter().filter(|p| p["requests"].as_u64().unwrap() > 100) {
        let share = p["errors"].as_f64().unwrap() / p["requests"].as_f64().unwrap();
        assert!(close(share, 0.3, 0.03), "{p}");
        assert!(close(p["error_rate"].as_f64().unwrap(), 0.3, 0.03), "{p}");
    }
    let csv = std::fs::read_to_string(dir.join("run/timeseries.csv")).unwrap();
    let head: Vec<&str> = csv.lines().next().unwrap().split(',').collect();
    let col = |name: &str| head.iter().position(|h| *h == name).unwrap();
    let row: Vec<f64> = csv.lines().nth(1).unwrap().split(',').map(|x| x.parse().unwrap_or(0.0)).collect();
    assert!(close(row[col("errors")] / row[col("requests")], 0.3, 0.03), "{csv}");
    let html = std::fs::read_to_string(dir.join("run/report.html")).unwrap();
    let embedded = html.split("id=\"summary\">").nth(1).unwrap().split("</script>").next().unwrap();
    let embedded: serde_json::Value = serde_json::from_str(embedded).unwrap();
    assert_eq!(embedded["timeseries"], v["timeseries"]);
    // Prometheus: the status errors among the completed responses.
    let value = |series: &str| -> f64 {
        scrape.lines().find(|l| l.starts_with(series)).and_then(|l| l.rsplit(' ').next()).unwrap().parse().unwrap()
    };
    let scraped = value("engine_blast_errors_total{kind=\"status\"}") / value("engine_blast_requests_total");
    assert!(close(scraped, 0.3, 0.03), "{scrape}");
    // The progress line counts them: its errors column is not 0 (but on the drain's few
    // milliseconds at the end, which may hold a handful of responses and no 503).
    let rps =
        |l: &str| -> f64 { l.split(']').nth(1).and_then(|r| r.split_whitespace().next()?.parse().ok()).unwrap_or(0.0) };
    let errs: Vec<u64> = lines
        .iter()
        .filter(|l| rps(l) >= 1000.0)
        .filter_map(|l| l.split("errors ").nth(1)?.split_whitespace().next()?.parse().ok())
        .collect();
    assert!(errs.len() >= 2, "{progress}");
    assert!(errs.iter().all(|&e| e > 0), "{progress}");
    assert!(close(rate, 0.3, 0.01));
    let _ = std::fs::remove_dir_all(&dir);
}

/// 96% of the answers are a quick 503 and 4% a slow 200: the whole run's p95 is fast, the
/// expected responses' is slow. Judged on all responses, fast failures would pass.
#[test]
fn latency_of_expected_responses_is_judged_apart() {
    let addr = server(|n| if n % 25 == 0 { (200, Duration::from_millis(300)) } else { (503, Duration::ZERO) });
    let o = engine(&[
        "blast",
        &format!("http://{addr}/"),
        "-c",
        "8",
        "-d",
        "2s",
        "-q",
        "--json",
        "-",
        "--threshold",
        "p95<200ms",
        "--threshold",
        "p95{status=ok}<200ms",
        "--threshold",
        "p95{status=5xx}<200ms",
        "--out",
        &std::env::temp_dir().join(format!("engine-truth-ok-{}", std::process::id())).display().to_string(),
    ]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(o.status.code(), Some(4), "{}", stderr(&o));
    let verdict = |i: usize| v["thresholds"][i]["pass"].as_bool().unwrap();
    assert!(verdict(0), "all responses: fast 503s make p95 look good: {}", v["thresholds"]);
    assert!(!verdict(1), "expected responses alone are slow: {}", v["thresholds"]);
    assert!(verdict(2), "{}", v["thresholds"]);
    assert!(v["latency_ok_ms"]["p50"].as_f64().unwrap() >= 300.0, "{}", v["latency_ok_ms"]);
    assert!(v["latency_by_class_ms"]["5xx"]["p95"].as_f64().unwrap() < 50.0);
}

/// A server that refuses (503) what goes above 200 requests a second: the stress profile's
/// capacity is the level below, counted with the refusals as errors.
#[test]
fn stress_capacity_counts_refusals() {
    let window = Arc::new(Mutex::new((Instant::now(), 0u32)));
    let addr = server(move |_| {
        let mut w = window.lock().unwrap();
        if w.0.elapsed() >= Duration::from_secs(1) {
            *w = (Instant::now(), 0);
        }
        w.1 += 1;
        (if w.1 > 200 { 503 } else { 200 }, Duration::ZERO)
    });
    let o = engine(&[
        "blast",
        &format!("http://{addr}/"),
        "--profile",
        "stress",
        "--peak",
        "400",
        "--rate",
        "0",
        "-c",
        "16",
        "--step",
        "1s",
        "-q",
        "--json",
        "-",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let p = &v["profile"];
    assert_eq!(p["capacity"], 200.0, "{p}");
    assert_eq!(p["failed_at"], 220.0, "{p}");
}

/// `--print-plan` with a scenario and a flag that sets the same thing: a note naming both,
/// or exit 2 naming both. Never a silent winner.
#[test]
fn every_flag_that_meets_a_scenario_value_says_what_wins() {
    let dir = std::env::temp_dir().join(format!("engine-precedence-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let write = |name: &str, load: &str, top: &str| {
        let path = dir.join(name);
        std::fs::write(
            &path,
            format!(
                "target = \"http://127.0.0.1:9/\"\n{top}\n[load]\n{load}\n[[request]]\nname = \"a\"\npath = \"/\"\n"
            ),
        )
        .unwrap();
        path.display().to_string()
    };
    // (scenario [load], top-level keys, flags, what the line says: the flag and the field)
    let cases: &[(&str, &str, &[&str], &[&str])] = &[
        ("conns = 100\nduration = \"1m\"", "", &["-c", "300"], &["-c 300 replaces", "load.conns = 100"]),
        ("conns = 100\nduration = \"1m\"", "", &["-d", "4s"], &["-d 4s replaces", "load.duration = 60s"]),
        ("rate = 100.0\nduration = \"1m\"", "", &["--rate", "50"], &["--rate 50 replaces", "load.rate = 100"]),
        ("stages = \"10:2s,20:2s\"", "", &["-c", "300"], &["-c 300 contradicts", "load.stages"]),
        ("stages = \"10:2s,20:2s\"", "", &["-d", "4s"], &["-d 4s contradicts", "load.stages"]),
        ("stages = \"10:2s,20:2s\"", "", &["--stages", "5:1s"], &["--stages replaces", "load.stages"]),
        (
            "conns = 100\nduration = \"1m\"",
            "",
            &["--stages", "5:1s"],
            &["--stages replaces", "load.conns = 100", "load.duration = 60s"],
        ),
        ("profile = \"spike\"\npeak = 100.0", "", &["--stages", "5:1s"], &["--stages replaces", "load.profile"]),
        ("profile = \"spike\"\npeak = 100.0", "", &["--peak", "50"], &["--peak 50 replaces", "load.peak = 100"]),
        (
            "profile = \"soak\"\npeak = 10.0\nstep = \"2s\"",
            "",
            &["--step", "1s"],
            &["--step 1s replaces", "load.step = 2s"],
        ),
        ("abort_grace = 5", "", &["--abort-grace", "2"], &["--abort-grace 2 replaces", "load.abort_grace = 5"]),
        (
            "",
            "thresholds = [\"p95<200ms\"]",
            &["--threshold", "p95<500ms"],
            &["--threshold 'p95<500ms' replaces", "'p95<200ms'"],
        ),
        (
            "",
            "abort_on = [\"error_rate>5%\"]",
            &["--abort-on", "error_rate>50%"],
            &["--abort-on 'error_rate>50%' replaces", "'error_rate>5%'"],
        ),
        ("", "[defaults]\ntimeout = \"5s\"", &["--timeout", "1s"], &["--timeout 1s replaces", "defaults.timeout = 5s"]),
        (
            "",
            "[defaults]\nexpect_status = \"200-299\"",
            &["--expect-status", "200-399"],
            &["--expect-status 200-399 replaces", "defaults.expect_status = 200-299"],
        ),
        ("", "", &["http://127.0.0.1:8/"], &["the URL http://127.0.0.1:8/ replaces", "target = http://127.0.0.1:9/"]),
    ];
    for (i, (load, top, flags, want)) in cases.iter().enumerate() {
        // A [defaults] table must come after the top-level keys and before [load].
        let (top, defaults) = match top.split_once("[defaults]") {
            Some((t, d)) => (t.to_string(), format!("[defaults]{d}")),
            None => (top.to_string(), String::new()),
        };
        let file = write(&format!("c{i}.toml"), load, &format!("{top}\n{defaults}"));
        let mut args = vec!["blast", "--scenario", file.as_str(), "--print-plan"];
        args.extend_from_slice(flags);
        let o = engine(&args);
        let err = stderr(&o);
        // Each field on a line that names the flag too.
        let said = want[1..].iter().all(|w| err.lines().any(|l| l.contains(want[0]) && l.contains(w)));
        assert!(said, "{flags:?} against [load] {load:?} / {top:?}: {err}");
        if err.contains("contradicts") {
            assert_eq!(o.status.code(), Some(2), "{err}");
        } else {
            assert_eq!(o.status.code(), Some(0), "{err}");
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Arrival-rate flows: at 50 iterations a second, a flow of three steps with 1 s of think time
/// after each of the first two takes about 2 s, so about 100 users walk it at once (Little's
/// law). With room for only 20 users the iterations that find none free are dropped, and
/// counted.
#[test]
fn arrival_rate_flows_start_users_at_the_rate() {
    let t = engine_target::Target::start(engine_target::TargetConfig::loopback(Duration::ZERO).unwrap()).unwrap();
    let dir = std::env::temp_dir().join(format!("engine-arrivals-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let scenario = dir.join("flow.toml");
    std::fs::write(
        &scenario,
        format!(
            r#"target = "http://{}"
[[flow]]
name = "shop"
[[flow.step]]
name = "login"
path = "/login"
think = "1s"
[[flow.step]]
name = "browse"
path = "/browse"
think = "1s"
[[flow.step]]
name = "buy"
path = "/buy"
"#,
            t.local_addr()
        ),
    )
    .unwrap();
    let run = |users: &str| -> serde_json::Value {
        let o = engine(&[
            "blast",
            "--scenario",
            scenario.to_str().unwrap(),
            "--rate",
            "50",
            "-d",
            "6s",
            "--max-users",
            users,
            "-q",
            "--json",
            "-",
            "--out",
            dir.join(format!("run-{users}")).to_str().unwrap(),
        ]);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        serde_json::from_slice(&o.stdout).unwrap()
    };
    let v = run("200");
    let it = &v["iterations"];
    assert_eq!(it["started"], 300, "{it}");
    assert_eq!(it["dropped"], 0, "{it}");
    assert!(close(it["rate"].as_f64().unwrap(), 50.0, 0.5), "{it}");
    assert!(close(it["users_littles_law"].as_f64().unwrap(), 100.0, 10.0), "{it}");
    assert!((90..=115).contains(&it["users_peak"].as_u64().unwrap()), "{it}");
    assert!(close(it["latency_ms"]["p50"].as_f64().unwrap(), 2000.0, 100.0), "{it}");
    // Users spread over the run: never 100, 0, 100, 0 requests a second.
    for p in v["timeseries"].as_array().unwrap().iter().skip(2).take(3) {
        assert!(p["requests"].as_u64().unwrap() > 100, "{p}");
    }
    let v = run("20");
    let it = &v["iterations"];
    let (started, dropped) = (it["started"].as_u64().unwrap(), it["dropped"].as_u64().unwrap());
    assert!(dropped > 150 && started + dropped <= 300, "{it}");
    assert!(it["users_peak"].as_u64().unwrap() <= 20, "{it}");
    let _ = std::fs::remove_dir_all(&dir);
}
