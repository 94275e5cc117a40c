//! Steering a running blast (issue 32, acceptance 3): `POST /run/rate` takes effect at the
//! next whole second and that second sends the new rate; connections, pause and resume in the
//! closed model; `/run/stop` ends the run with exit 0 and a whole results folder; every change
//! is in the summary's `interventions` and the timeline; the control API wants its token from
//! an address other than loopback. The live page in Chromium (acceptance 1, 2, 5), the
//! proxy's admin page switching a rule off (acceptance 4), and `engine report live` on two
//! blasts (acceptance 6).

// A test reads as one story from setup to the last assertion; the CLI's 60-line limit
// (cli/clippy.toml) is for its code.
#![allow(clippy::too_many_lines)]

mod browser;
mod ports;
#[macro_use]
mod require;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use engine_target::{Target, TargetConfig};

fn out_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("engine-control-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

/// One request to the control API; (status, body).
fn ask(port: u16, method: &str, path: &str, body: Option<&str>) -> (u16, String) {
    let mut c = TcpStream::connect(("127.0.0.1", port)).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let body = body.unwrap_or("");
    let kind = if body.is_empty() { "" } else { "Content-Type: application/json\r\n" };
    write!(
        c,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{kind}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut out = String::new();
    let _ = c.read_to_string(&mut out);
    let status = out.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
    (status, out.split_once("\r\n\r\n").map_or(String::new(), |(_, b)| b.to_string()))
}

/// Waits until the load has run for `at_least` seconds (GET /run answers once it started).
fn wait_running(port: u16, at_least: f64, child: &mut Child) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        assert!(child.try_wait().unwrap().is_none(), "the blast ended before its control API answered");
        if let Ok(mut c) = TcpStream::connect(("127.0.0.1", port)) {
            drop(c.write_all(b""));
            let (status, body) = ask(port, "GET", "/run", None);
            if status == 200 {
                let v: serde_json::Value = serde_json::from_str(&body).unwrap();
                if v["elapsed_s"].as_f64().unwrap() >= at_least {
                    return v;
                }
            }
        }
        assert!(Instant::now() < deadline, "the run did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The tests that judge latency run alone; the others share the machine among themselves.
static MACHINE: std::sync::RwLock<()> = std::sync::RwLock::new(());

fn shared() -> std::sync::RwLockReadGuard<'static, ()> {
    MACHINE.read().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn alone() -> std::sync::RwLockWriteGuard<'static, ()> {
    MACHINE.write().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn blast(args: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_engine"))
        .arg("blast")
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("engine runs")
}

fn finish(child: Child) -> (i32, String, String) {
    let o = child.wait_with_output().unwrap();
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into(),
        String::from_utf8_lossy(&o.stderr).into(),
    )
}

fn summary_of(dir: &std::path::Path) -> serde_json::Value {
    let text = std::fs::read_to_string(dir.join("summary.json")).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    serde_json::from_str(&text).unwrap()
}

/// The timeline's point for the second that ends at `t_s`.
fn point(s: &serde_json::Value, t_s: f64) -> &serde_json::Value {
    s["timeseries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| (p["t_s"].as_f64().unwrap() - t_s).abs() < 1e-6)
        .unwrap_or_else(|| panic!("no point at {t_s} s: {}", s["timeseries"]))
}

#[test]
fn a_new_rate_holds_from_the_next_whole_second_and_is_recorded() {
    let _machine = shared();
    require!("chromium");
    let t = Target::start(TargetConfig::loopback(Duration::ZERO).unwrap()).unwrap();
    let url = format!("http://{}/", t.local_addr());
    let port = ports::free_port();
    let dir = out_dir("rate");
    let control = format!("127.0.0.1:{port}");
    let mut child = blast(&[
        &url,
        "-R",
        "1000",
        "-c",
        "16",
        "-d",
        "7s",
        "-q",
        "--control",
        &control,
        "--out",
        dir.to_str().unwrap(),
    ]);
    wait_running(port, 2.1, &mut child);
    let (status, body) = ask(port, "POST", "/run/rate", Some(r#"{"rate": 3000}"#));
    assert_eq!(status, 200, "{body}");
    let change: serde_json::Value = serde_json::from_str(&body).unwrap();
    let at = change["at_s"].as_f64().unwrap();
    assert!((3.0..=4.0).contains(&at) && at.fract() == 0.0, "{change}");
    assert_eq!(
        (change["what"].as_str(), change["from"].as_f64(), change["to"].as_f64()),
        (Some("rate"), Some(1000.0), Some(3000.0))
    );
    // A value out of range, or a change of the other model's level, is refused with the reason.
    let (status, body) = ask(port, "POST", "/run/rate", Some(r#"{"rate": -5}"#));
    assert_eq!(status, 400, "{body}");
    let (status, body) = ask(port, "POST", "/run/conns", Some(r#"{"conns": 4}"#));
    assert!(status == 409 && body.contains("open model"), "{status} {body}");
    let (status, body) = ask(port, "GET", "/run", None);
    assert!(status == 200 && body.contains("\"what\": \"rate\""), "{body}");

    let (code, stdout, stderr) = finish(child);
    assert_eq!(code, 0, "{stderr}");
    let s = summary_of(&dir);
    // The whole second after the change: 3,000 ±1%, and the timeline's asked rate says so.
    let after = point(&s, at + 1.0);
    let rps = after["rps"].as_f64().unwrap();
    assert!((rps - 3000.0).abs() <= 30.0, "{after}");
    assert_eq!(after["target"].as_f64(), Some(3000.0), "{after}");
    let before = point(&s, at - 1.0);
    assert!((before["rps"].as_f64().unwrap() - 1000.0).abs() <= 10.0, "{before}");
    let iv = &s["interventions"];
    assert_eq!(iv.as_array().map(Vec::len), Some(1), "{iv}");
    assert_eq!(iv[0], change);
    // The schedule judged is the steered one: nothing is behind.
    assert_eq!(s["schedule"]["behind"], false, "{}", s["schedule"]);
    let want = (1000.0 * at + 3000.0 * (7.0 - at)) as u64;
    assert_eq!(s["schedule"]["expected"].as_u64(), Some(want), "{}", s["schedule"]);
    assert!(stdout.contains("interventions:") && stdout.contains("rate 1000 → 3000"), "{stdout}");
    // The report shows it (drawn in Chromium).
    let report =
        chromium_dump(&format!("file://{}", dir.join("report.html").display()), &dir.with_extension("chromium"));
    let table = report.split(r#"id="interventions""#).nth(1).unwrap_or_else(|| panic!("no interventions: {report}"));
    assert!(table.split("</table>").next().unwrap().contains("<td>rate</td><td>1000</td><td>3000</td>"), "{table}");
    let _ = std::fs::remove_dir_all(dir.with_extension("chromium"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn connections_pause_resume_and_stop_steer_a_closed_run() {
    let _machine = shared();
    let t = Target::start(TargetConfig::loopback(Duration::from_millis(2)).unwrap()).unwrap();
    let url = format!("http://{}/", t.local_addr());
    let port = ports::free_port();
    let dir = out_dir("closed");
    let control = format!("127.0.0.1:{port}");
    let mut child = blast(&[&url, "-c", "8", "-d", "30s", "-q", "--control", &control, "--out", dir.to_str().unwrap()]);
    wait_running(port, 1.1, &mut child);
    let (status, body) = ask(port, "POST", "/run/conns", Some(r#"{"conns": 9}"#));
    assert!(status == 409 && body.contains("at most"), "{status} {body}");
    let (status, body) = ask(port, "POST", "/run/conns", Some(r#"{"conns": 2}"#));
    assert_eq!(status, 200, "{body}");
    let conns_at: serde_json::Value = serde_json::from_str(&body).unwrap();
    let conns_at = conns_at["at_s"].as_f64().unwrap();
    wait_running(port, conns_at + 1.1, &mut child);
    let (status, body) = ask(port, "POST", "/run/pause", None);
    assert_eq!(status, 200, "{body}");
    let (status, body) = ask(port, "POST", "/run/pause", None);
    assert!(status == 409 && body.contains("paused"), "{status} {body}");
    let pause_at: serde_json::Value = serde_json::from_str(&ask(port, "GET", "/run", None).1).unwrap();
    assert_eq!(pause_at["paused"], true);
    let pause_at = pause_at["interventions"][1]["at_s"].as_f64().unwrap();
    wait_running(port, pause_at + 1.1, &mut child);
    let (status, body) = ask(port, "POST", "/run/resume", None);
    assert_eq!(status, 200, "{body}");
    let resume_at: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!((resume_at["from"].as_f64(), resume_at["to"].as_f64()), (Some(0.0), Some(2.0)), "{resume_at}");
    let resume_at = resume_at["at_s"].as_f64().unwrap();
    wait_running(port, resume_at + 1.2, &mut child);
    let started = Instant::now();
    let (status, body) = ask(port, "POST", "/run/stop", None);
    assert_eq!(status, 200, "{body}");
    let (code, stdout, stderr) = finish(child);
    assert!(started.elapsed() < Duration::from_secs(5), "the stop took {:?}", started.elapsed());
    assert_eq!(code, 0, "a stop asked for through the API ends as planned: {stderr}");
    for f in ["summary.json", "report.html", "latency.hlog", "run.log", "timeseries.csv", "summary.csv"] {
        assert!(dir.join(f).is_file(), "{f} missing from the results folder");
    }
    let s = summary_of(&dir);
    assert_eq!(s["interrupted"], false);
    let whats: Vec<&str> = s["interventions"].as_array().unwrap().iter().map(|i| i["what"].as_str().unwrap()).collect();
    assert_eq!(whats, ["conns", "pause", "resume", "stop"]);
    // Each whole second after a change shows it: 2 connections, then none, then 2 again.
    let open = |t: f64| point(&s, t)["open"].as_u64().unwrap();
    let target = |t: f64| point(&s, t)["target"].as_f64().unwrap();
    assert_eq!((open(conns_at + 1.0), target(conns_at + 1.0)), (2, 2.0));
    assert_eq!((open(pause_at + 1.0), target(pause_at + 1.0)), (0, 0.0));
    // (The requests in flight at the pause still complete: at most one a connection.)
    assert!(point(&s, pause_at + 1.0)["requests"].as_u64().unwrap() <= 2, "{}", point(&s, pause_at + 1.0));
    assert_eq!((open(resume_at + 1.0), target(resume_at + 1.0)), (2, 2.0));
    assert!(point(&s, resume_at + 1.0)["requests"].as_u64().unwrap() > 100);
    assert!(stdout.contains("interventions:"), "{stdout}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Flags: a control API on an address other than loopback wants a token; a token alone or
/// two addresses are refused before anything is sent.
#[test]
fn the_control_flags_refuse_what_would_expose_the_run() {
    let run = |args: &[&str]| {
        let o = Command::new(env!("CARGO_BIN_EXE_engine")).arg("blast").args(args).output().unwrap();
        (o.status.code(), String::from_utf8_lossy(&o.stderr).to_string())
    };
    let (code, err) = run(&["http://127.0.0.1:9/", "-d", "1s", "--control", "0.0.0.0:5666"]);
    assert!(code == Some(2) && err.contains("--control-token"), "{code:?} {err}");
    let (code, err) = run(&["http://127.0.0.1:9/", "-d", "1s", "--control-token", "0123456789abcdef"]);
    assert!(code == Some(2) && err.contains("nothing to protect"), "{code:?} {err}");
    let (code, err) =
        run(&["http://127.0.0.1:9/", "-d", "1s", "--dashboard=127.0.0.1:5665", "--control", "127.0.0.1:5666"]);
    assert!(code == Some(2) && err.contains("same address"), "{code:?} {err}");
    let (code, err) =
        run(&["http://127.0.0.1:9/", "-d", "1s", "--control", "127.0.0.1:5666", "--control-token", "short"]);
    assert!(code == Some(2) && err.contains("16 characters"), "{code:?} {err}");
}

/// From another host (a network namespace with a non-loopback address, so no packet leaves
/// the machine): every control request without the token is refused 401, with it answered.
#[test]
fn control_requests_from_another_host_need_the_token() {
    let _machine = shared();
    require!("root", "curl");
    let script = format!(
        r#"set -e
ip link set lo up
ip addr add 10.9.9.9/32 dev lo
{engine} target --listen 127.0.0.1:8090 > /dev/null 2>&1 &
T=$!
for i in $(seq 100); do (echo > /dev/tcp/127.0.0.1/8090) 2>/dev/null && break; sleep 0.1; done
{engine} blast http://127.0.0.1:8090/ -R 100 -c 2 -d 20s -q --out /tmp/engine-control-netns-$$ --control 0.0.0.0:5670 --control-token control-token-0123456789 > /dev/null 2>&1 &
B=$!
trap 'kill $T $B 2>/dev/null; rm -rf /tmp/engine-control-netns-$$' EXIT
for i in $(seq 100); do (echo > /dev/tcp/10.9.9.9/5670) 2>/dev/null && break; sleep 0.1; done
sleep 1
code() {{ curl -s -o /dev/null -w '%{{http_code}}' --interface 10.9.9.9 "$@"; }}
J='Content-Type: application/json'
echo "get=$(code http://10.9.9.9:5670/run)"
echo "rate=$(code -X POST -H "$J" -d '{{"rate": 200}}' http://10.9.9.9:5670/run/rate)"
echo "pause=$(code -X POST http://10.9.9.9:5670/run/pause)"
echo "stop=$(code -X POST http://10.9.9.9:5670/run/stop)"
echo "wrong=$(code -H 'Authorization: Bearer guess-guess-guess-guess' http://10.9.9.9:5670/run)"
echo "token_get=$(code -H 'Authorization: Bearer control-token-0123456789' http://10.9.9.9:5670/run)"
echo "token_rate=$(code -X POST -H "$J" -H 'Authorization: Bearer control-token-0123456789' -d '{{"rate": 200}}' http://10.9.9.9:5670/run/rate)"
"#,
        engine = env!("CARGO_BIN_EXE_engine"),
    );
    let o = Command::new("unshare").args(["-n", "bash", "-c", &script]).output().expect("unshare runs (root)");
    let out = String::from_utf8_lossy(&o.stdout).to_string();
    let code = |k: &str| out.lines().find_map(|l| l.strip_prefix(&format!("{k}="))).unwrap_or("none").to_string();
    for k in ["get", "rate", "pause", "stop", "wrong"] {
        assert_eq!(code(k), "401", "{k}\n{out}{}", String::from_utf8_lossy(&o.stderr));
    }
    assert_eq!(code("token_get"), "200", "{out}");
    assert_eq!(code("token_rate"), "200", "{out}");
}

fn chromium_dump(url: &str, profile: &std::path::Path) -> String {
    let bin = ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .expect("chromium not found: apt-get install -y chromium (.ci/run does)");
    let o = Command::new(bin)
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run"])
        .args(["--disable-background-networking", "--disable-component-update", "--disable-sync"])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(["--dump-dom", url])
        .output()
        .expect("chromium runs");
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// The titles of the charts a page drew (its script#charts).
fn chart_titles(dom: &str) -> Vec<String> {
    let json = dom
        .split(r#"<script type="application/json" id="charts">"#)
        .nth(1)
        .and_then(|r| r.split("</script>").next())
        .unwrap_or_else(|| panic!("no charts in the page: {dom}"));
    let charts: serde_json::Value = serde_json::from_str(json).unwrap();
    charts.as_array().unwrap().iter().map(|c| c["title"].as_str().unwrap().to_string()).collect()
}

/// A counter or gauge of the blast's /metrics, summed over its series.
fn metric(port: u16, name: &str) -> f64 {
    let (status, body) = ask(port, "GET", "/metrics", None);
    assert_eq!(status, 200);
    body.lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with([' ', '{']))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// Acceptance 1 and 2: the page, opened three times in real Chromium during a 30 s run at
/// 2,000 req/s, shows the figures the blast's own /metrics has at that moment (the requests
/// between a scrape before and one after, the second's rate and the errors as the metrics and
/// the run's timeline have them, p99 as the timeline); meanwhile an event-stream client that
/// never reads changes neither the rate nor p99, and the engine's RSS stays flat.
#[test]
fn the_live_page_shows_what_the_metrics_say_and_a_stalled_watcher_costs_nothing() {
    let _machine = alone();
    require!("chromium");
    let t = Target::start(TargetConfig::loopback(Duration::ZERO).unwrap()).unwrap();
    let url = format!("http://{}/", t.local_addr());
    let (port, metrics_port) = (ports::free_port(), ports::free_port());
    let dir = out_dir("page");
    let dashboard = format!("--dashboard=127.0.0.1:{port}");
    let metrics = format!("127.0.0.1:{metrics_port}");
    let out = dir.to_str().unwrap();
    let mut child = blast(
        &[&url, "-R", "2000", "-c", "32", "-d", "30s", "-q", &dashboard, "--out", out]
            .into_iter()
            .chain(["--metrics-addr", &metrics, "--threshold", "p99 < 10s", "--threshold", "rps > 1000000"])
            .collect::<Vec<_>>(),
    );
    wait_running(port, 0.5, &mut child);
    // The stalled watcher: asks for the events and never reads them.
    let mut stalled = TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(stalled, "GET /events HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n").unwrap();
    let pid = child.id();
    wait_running(port, 3.0, &mut child);
    let rss_early = rss_kib(pid);
    let profile = dir.with_extension("chromium");
    let mut seen = Vec::new();
    // Chromium takes both CPUs for a second as it starts: those seconds are not the watcher's.
    let mut busy = Vec::new();
    let mut charts = Vec::new();
    for moment in [5.0, 12.0, 19.0] {
        let from = wait_running(port, moment, &mut child)["elapsed_s"].as_f64().unwrap();
        let before = metric(metrics_port, "engine_blast_requests_total");
        let dom = chromium_dump(&format!("http://127.0.0.1:{port}/"), &profile);
        let after = metric(metrics_port, "engine_blast_requests_total");
        let rate = metric(metrics_port, "engine_blast_achieved_rate");
        let now = dom
            .split(r#"<script type="application/json" id="now">"#)
            .nth(1)
            .and_then(|r| r.split("</script>").next())
            .unwrap_or_else(|| panic!("no figures in the page: {dom}"));
        let now: serde_json::Value = serde_json::from_str(now).unwrap();
        let requests = now["requests"].as_f64().unwrap();
        assert!(before <= requests && requests <= after, "page {requests}, /metrics {before} then {after}");
        let shown = now["rps"].as_f64().unwrap();
        assert!((shown - rate).abs() <= rate * 0.01, "page {shown} req/s, /metrics {rate}");
        assert!(now["frames"].as_u64().unwrap() >= moment as u64 - 1, "the page drew the run from its start: {now}");
        // Thresholds are judged on the run so far: one passes, one fails, live.
        let table = dom.split(r#"id="thresholds""#).nth(1).unwrap_or_else(|| panic!("no thresholds: {dom}"));
        let table = table.split("</table>").next().unwrap();
        assert!(table.contains("PASS") && table.contains("FAIL"), "{table}");
        seen.push(now);
        charts = chart_titles(&dom);
        // Its renderer and helper processes may outlive the dump by a moment.
        busy.push((from, wait_running(port, 0.0, &mut child)["elapsed_s"].as_f64().unwrap() + 2.0));
    }
    let rss_late = rss_kib(pid);
    // The live page is report.html's page: the report's charts, drawn from the run so far.
    assert!(charts.len() >= 4 && charts.contains(&"Throughput and errors".to_string()), "{charts:?}");
    wait_running(port, 25.0, &mut child);
    assert_eq!(metric(metrics_port, "engine_blast_errors_total"), 0.0);
    let (code, _, stderr) = finish(child);
    assert_eq!(code, 4, "the threshold that cannot hold fails the run: {stderr}");
    drop(stalled);
    // Acceptance 5: the saved report.html is the same page, drawn from the summary.
    let report = chromium_dump(&format!("file://{}", dir.join("report.html").display()), &profile);
    assert_eq!(chart_titles(&report), charts, "the live page and report.html draw the same charts");
    let s = summary_of(&dir);
    for now in &seen {
        let p = point(&s, now["t_s"].as_f64().unwrap());
        let (rate, p99) = (p["rps"].as_f64().unwrap(), p["p99_ms"].as_f64().unwrap());
        assert!((now["rps"].as_f64().unwrap() - rate).abs() <= rate * 0.01, "page {now}, timeline {p}");
        assert!((now["p99_ms"].as_f64().unwrap() - p99).abs() <= p99 * 0.01 + 0.001, "page {now}, timeline {p}");
        assert_eq!(now["errors"].as_u64(), Some(0));
    }
    // The stalled watcher: every whole second sent the asked 2,000 ±1%, p99 stayed in line,
    // and the engine did not grow holding it.
    let points = s["timeseries"].as_array().unwrap();
    let whole: Vec<&serde_json::Value> = points.iter().filter(|p| p["t_s"].as_f64().unwrap().fract() == 0.0).collect();
    assert!(whole.len() >= 29, "{}", whole.len());
    for p in &whole {
        assert!((p["rps"].as_f64().unwrap() - 2000.0).abs() <= 20.0, "{p}");
    }
    let quiet = |p: &&&serde_json::Value| {
        let t = p["t_s"].as_f64().unwrap();
        !busy.iter().any(|&(from, to)| t > from && t - 1.0 < to)
    };
    let mut p99s: Vec<f64> = whole.iter().filter(quiet).map(|p| p["p99_ms"].as_f64().unwrap()).collect();
    assert!(p99s.len() >= 15, "{busy:?}");
    p99s.sort_by(f64::total_cmp);
    let median = p99s[p99s.len() / 2];
    // A watcher that stalls does so for the whole run, so its effect would show in every
    // second; one second in twenty on this shared 2-vCPU machine can be noise (CI saw one at
    // 9 ms with a 0.5 ms median).
    assert!(p99s[p99s.len() - 2] <= (median * 5.0).max(5.0), "p99 by second: {p99s:?}");
    assert!(p99s[p99s.len() * 9 / 10] <= median * 3.0, "p99 by second: {p99s:?}");
    assert!(rss_late <= rss_early + 4096, "RSS {rss_early} KiB at 3 s, {rss_late} KiB at 19 s");
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(&profile);
}

/// One GET through the proxy; the status.
fn status_of(port: u16, path: &str) -> u16 {
    let mut c = TcpStream::connect(("127.0.0.1", port)).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(c, "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
    let mut out = String::new();
    let _ = c.read_to_string(&mut out);
    out.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0)
}

/// Acceptance 4: in real Chromium, the proxy's admin page lists a rule that aborts every
/// request with 503; a click on its switch turns it off, and the next requests are unfaulted.
#[test]
fn the_proxy_page_switches_a_rule_off() {
    let _machine = shared();
    require!("chromium");
    let t = Target::start(TargetConfig::loopback(Duration::ZERO).unwrap()).unwrap();
    let (listen, admin) = (ports::free_port(), ports::free_port());
    let mut proxy = Command::new(env!("CARGO_BIN_EXE_engine"))
        .args(["proxy", "--listen", &format!("127.0.0.1:{listen}"), "--admin", &format!("127.0.0.1:{admin}")])
        .args(["--upstream", &t.local_addr().to_string(), "--shards", "1"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    ports::wait_listening(admin, "the proxy's admin API");
    let rule = r#"{"id": "outage", "match": {"path_prefix": "/api"}, "action": {"abort": {"status": 503}}}"#;
    assert_eq!(ask(admin, "POST", "/faults", Some(rule)).0, 201);
    // The shards take new rules on their next tick.
    let deadline = Instant::now() + Duration::from_secs(2);
    while status_of(listen, "/api/x") != 503 {
        assert!(Instant::now() < deadline, "the rule never applied");
    }
    for _ in 0..4 {
        assert_eq!(status_of(listen, "/api/x"), 503);
    }
    let dir = out_dir("proxy-page");
    std::fs::create_dir_all(&dir).unwrap();
    let mut page = browser::Browser::open(&format!("http://127.0.0.1:{admin}/"), &dir);
    let button = r#"document.querySelector('button[data-rule="outage"][data-to="off"]')"#;
    page.wait_for(&format!("{button} !== null"), Duration::from_secs(10));
    // The page shows the rule's counts as /stats has them.
    page.wait_for(
        r#"JSON.parse(document.getElementById("now").textContent).rules[0].injected === 5"#,
        Duration::from_secs(10),
    );
    page.eval(&format!("{button}.click()"));
    page.wait_for(
        r#"document.querySelector('button[data-rule="outage"][data-to="on"]') !== null"#,
        Duration::from_secs(10),
    );
    let (_, faults) = ask(admin, "GET", "/faults", None);
    assert!(faults.contains(r#""enabled": false"#), "{faults}");
    // From the shards' next tick on, nothing is faulted.
    let deadline = Instant::now() + Duration::from_secs(2);
    while status_of(listen, "/api/x") != 200 {
        assert!(Instant::now() < deadline, "the rule was never switched off");
    }
    for _ in 0..20 {
        assert_eq!(status_of(listen, "/api/x"), 200, "a rule switched off faults nothing");
    }
    // Switched on again from the page, it faults again; its counts were kept.
    page.eval(r#"document.querySelector('button[data-rule="outage"][data-to="on"]').click()"#);
    page.wait_for(&format!("{button} !== null"), Duration::from_secs(10));
    let deadline = Instant::now() + Duration::from_secs(2);
    while status_of(listen, "/api/x") != 503 {
        assert!(Instant::now() < deadline, "the rule was never switched on again");
    }
    let (_, stats) = ask(admin, "GET", "/stats", None);
    let stats: serde_json::Value = serde_json::from_str(&stats).unwrap();
    assert_eq!(stats["fault_rules"][0]["enabled"], true, "{}", stats["fault_rules"]);
    drop(page);
    let _ = proxy.kill();
    let _ = proxy.wait();
    let _ = std::fs::remove_dir_all(&dir);
}

/// Acceptance 6: `engine report live` follows two blasts (workers of one plan) as one run and
/// ends with the merged figures `engine report merge` makes of their results folders.
#[test]
fn report_live_on_two_blasts_ends_as_report_merge_does() {
    let _machine = shared();
    let t = Target::start(TargetConfig::loopback(Duration::ZERO).unwrap()).unwrap();
    let url = format!("http://{}/", t.local_addr());
    let at = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() + 3;
    let at = at.to_string();
    let (dirs, mut blasts, mut pages) = (vec![out_dir("w0"), out_dir("w1")], Vec::new(), Vec::new());
    for (i, dir) in dirs.iter().enumerate() {
        let port = ports::free_port();
        let (index, dashboard) = (i.to_string(), format!("--dashboard=127.0.0.1:{port}"));
        blasts.push(blast(&[
            &url,
            "-R",
            "2000",
            "-c",
            "16",
            "-d",
            "5s",
            "-q",
            &dashboard,
            "--out",
            dir.to_str().unwrap(),
            "--worker-index",
            &index,
            "--worker-count",
            "2",
            "--start-at",
            &at,
        ]));
        pages.push(format!("http://127.0.0.1:{port}"));
    }
    let (live_dir, merged_dir) = (out_dir("live"), out_dir("merged"));
    let live = Command::new(env!("CARGO_BIN_EXE_engine"))
        .args(["report", "live", &pages[0], &pages[1], "--out", live_dir.to_str().unwrap()])
        .output()
        .unwrap();
    let progress = String::from_utf8_lossy(&live.stderr).to_string();
    assert_eq!(live.status.code(), Some(0), "{progress}");
    for b in blasts {
        let (code, _, stderr) = finish(b);
        assert_eq!(code, 0, "{stderr}");
    }
    // While the run lasted: the merged rate each second (both workers together).
    assert!(progress.lines().filter(|l| l.contains("req/s") && l.contains("2 blasts")).count() >= 3, "{progress}");
    let merge = Command::new(env!("CARGO_BIN_EXE_engine"))
        .args([
            "report",
            "merge",
            dirs[0].to_str().unwrap(),
            dirs[1].to_str().unwrap(),
            "--out",
            merged_dir.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert_eq!(merge.status.code(), Some(0), "{}", String::from_utf8_lossy(&merge.stderr));
    let (l, m) = (summary_of(&live_dir), summary_of(&merged_dir));
    assert_eq!(l["requests"], m["requests"]);
    // The plan's 2,000 req/s for 5 s, shared by the two workers.
    assert_eq!(m["requests"].as_u64(), Some(10_000));
    assert_eq!(l["rps"], m["rps"]);
    assert_eq!(l["latency_ms"], m["latency_ms"], "the latency merged exactly, every percentile");
    assert_eq!(l["timeseries"], m["timeseries"]);
    for d in dirs.iter().chain([&live_dir, &merged_dir]) {
        let _ = std::fs::remove_dir_all(d);
    }
}
