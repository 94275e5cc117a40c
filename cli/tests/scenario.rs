//! Scenario files through the binary: weighted requests against a server that counts by path,
//! per-name statistics and thresholds, and hostile files.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};

fn engine(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_engine")).args(args).output().expect("engine runs")
}

/// An HTTP/1.1 server on 127.0.0.1 (a thread per connection) that answers each request with
/// `respond(head)`; request bodies (Content-Length) are read and skipped.
fn http_server(respond: impl Fn(&str) -> String + Send + Sync + 'static) -> std::net::SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let respond = Arc::new(respond);
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut s) = conn else { continue };
            let respond = respond.clone();
            std::thread::spawn(move || {
                let mut buf = [0u8; 65536];
                let mut pending = Vec::new();
                loop {
                    match s.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => pending.extend_from_slice(&buf[..n]),
                    }
                    let mut out = Vec::new();
                    while let Some(end) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&pending[..end]).into_owned();
                        let length: usize = header(&head, "content-length").and_then(|v| v.parse().ok()).unwrap_or(0);
                        if pending.len() < end + 4 + length {
                            break;
                        }
                        pending.drain(..end + 4 + length);
                        out.extend_from_slice(respond(&head).as_bytes());
                    }
                    if s.write_all(&out).is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

/// A request header's value.
fn header(head: &str, name: &str) -> Option<String> {
    head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
    })
}

/// A server that answers 200 to everything and counts requests by path.
fn counting_server() -> (std::net::SocketAddr, Arc<Mutex<HashMap<String, u64>>>) {
    let counts: Arc<Mutex<HashMap<String, u64>>> = Arc::default();
    let c = counts.clone();
    let addr = http_server(move |head| {
        let path = head.split_whitespace().nth(1).unwrap_or("").to_string();
        *c.lock().unwrap().entry(path).or_insert(0) += 1;
        "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok".into()
    });
    (addr, counts)
}

/// Runs a scenario on one shard and returns its summary JSON (the run must succeed).
fn run_scenario(file: &std::path::Path, out: &str) -> serde_json::Value {
    let o = blast_scenario(file, out);
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&o.stdout).unwrap()
}

/// Runs a scenario on one shard, its summary JSON on stdout and its folder in `out`.
fn blast_scenario(file: &std::path::Path, out: &str) -> Output {
    let dir = file.parent().unwrap().join(out);
    engine(&[
        "blast",
        "--scenario",
        file.to_str().unwrap(),
        "--shards",
        "1",
        "-q",
        "--json",
        "-",
        "--out",
        dir.to_str().unwrap(),
    ])
}

fn write_scenario(name: &str, text: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("engine-scenario-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn weighted_requests_keep_their_proportions() {
    let (addr, counts) = counting_server();
    let file = write_scenario(
        "weights.toml",
        &format!(
            r#"
target = "http://{addr}"
thresholds = ["p99{{name=echo}}<5s", "error_rate<1%"]
[load]
conns = 8
duration = "3s"
[defaults]
headers = {{ "X-Test" = "weights" }}
[[request]]
name = "health"
path = "/health"
weight = 30
[[request]]
name = "ready"
path = "/ready"
weight = 20
[[request]]
name = "users"
path = "/api/users"
weight = 20
[[request]]
name = "echo"
method = "POST"
path = "/api/echo"
body = '{{"hello":"world"}}'
weight = 20
[[request]]
name = "metrics"
path = "/api/metrics"
weight = 10
"#
        ),
    );
    let v = run_scenario(&file, "out");
    let counts = counts.lock().unwrap().clone();
    let total: u64 = counts.values().sum();
    assert!(total > 5_000, "{counts:?}");
    for (path, weight) in
        [("/health", 30.0), ("/ready", 20.0), ("/api/users", 20.0), ("/api/echo", 20.0), ("/api/metrics", 10.0)]
    {
        let share = counts.get(path).copied().unwrap_or(0) as f64 * 100.0 / total as f64;
        assert!((share - weight).abs() <= 1.0, "{path}: {share:.2}% of {total}, weight {weight}%");
    }
    let by_name = &v["requests_by_name"];
    assert_eq!(by_name.as_object().unwrap().len(), 5);
    let named: u64 = by_name.as_object().unwrap().values().map(|n| n["requests"].as_u64().unwrap()).sum();
    assert_eq!(named, v["requests"].as_u64().unwrap());
    assert!(by_name["echo"]["latency_ms"]["p99"].as_f64().unwrap() > 0.0);
    assert_eq!(v["thresholds"][0]["expr"], "p99{name=echo}<5s");
    assert_eq!(v["thresholds"][0]["pass"], true);
}

#[test]
fn flags_override_the_scenario_and_names_are_checked() {
    let file = write_scenario(
        "override.toml",
        "target = \"http://127.0.0.1:1\"\n[load]\nconns = 7\nduration = \"9s\"\n[[request]]\nname = \"a\"\npath = \"/a\"\n[[request]]\nname = \"b\"\npath = \"/b\"\n",
    );
    let f = file.to_str().unwrap();
    let o = engine(&["blast", "--scenario", f, "--dry-run"]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(out.contains("2 weighted requests") && out.contains("7 connections") && out.contains("9.00s"), "{out}");
    let o = engine(&["blast", "--scenario", f, "-c", "3", "--dry-run"]);
    assert!(String::from_utf8_lossy(&o.stdout).contains("3 connections"));
    let o = engine(&["blast", "--scenario", f, "--threshold", "p95{name=zzz}<1s", "--dry-run"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("names no request of this plan (requests: a, b)"));
}

#[test]
fn hostile_scenarios_get_one_clear_error() {
    let big = "# padding\n".repeat(1_100_000);
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "unknown.toml",
            "target = \"http://x\"\nspeed = 3\n[[request]]\nname = \"a\"\npath = \"/\"\n".into(),
            "line 2",
        ),
        (
            "zero.toml",
            "target = \"http://x\"\n[[request]]\nname = \"a\"\npath = \"/\"\nweight = 0\n".into(),
            "add up to 0",
        ),
        (
            "duration.toml",
            "target = \"http://127.0.0.1:1\"\n[load]\nduration = \"soon\"\n[[request]]\nname = \"a\"\npath = \"/\"\n"
                .into(),
            "load.duration",
        ),
        (
            "badpath.toml",
            "target = \"http://127.0.0.1:1\"\n[[request]]\nname = \"a\"\npath = \"no-slash\"\n".into(),
            "invalid path",
        ),
        ("big.toml", big, "is over 1048576 bytes"),
    ];
    for (name, text, want) in cases {
        let file = write_scenario(name, &text);
        let o = engine(&["blast", "--scenario", file.to_str().unwrap(), "--dry-run"]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{name}: {err}");
        assert!(err.contains(want), "{name}: {err}");
        assert_eq!(err.lines().count(), 1, "{name}: one line: {err}");
        assert!(!err.contains("panicked"));
    }
    let o = engine(&["blast", "--scenario", "/nonexistent.toml"]);
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn templates_render_per_request() {
    let (addr, counts) = counting_server();
    let url = format!("http://{addr}/item/{{{{seq}}}}?r={{{{rand_int:1:5}}}}");
    let dir = std::env::temp_dir().join(format!("engine-template-{}", std::process::id()));
    let o = engine(&[
        "blast",
        &url,
        "-c",
        "4",
        "-d",
        "1s",
        "--shards",
        "2",
        "-m",
        "POST",
        "-b",
        "{\"id\":\"{{uuid}}\"}",
        "-q",
        "--json",
        "-",
        "--out",
        dir.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["errors"]["total"], 0, "{v}");
    let counts = counts.lock().unwrap().clone();
    let total: u64 = counts.values().sum();
    assert!(total > 100);
    // Every request had its own sequence number: no path repeats.
    assert_eq!(counts.len() as u64, total, "paths repeated");
    assert!(counts.keys().all(|p| p.starts_with("/item/") && p.contains("?r=")));

    let o = engine(&["blast", "http://127.0.0.1:1/{{nothing}}", "--dry-run"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("references nothing"));
}

/// (valid uses, rejected uses, gaps in ms between a login's response and its token's use)
type LoginStats = Arc<Mutex<(u64, u64, Vec<f64>)>>;

/// A server with a login: POST /login hands out a token (header X-Token and JSON field token);
/// GET /api/me answers 200 only with both, else 401. It records how long after each login's
/// response the token came back.
fn login_server() -> (std::net::SocketAddr, LoginStats) {
    let stats: LoginStats = Arc::default();
    let issued: Mutex<HashMap<String, std::time::Instant>> = Mutex::default();
    let next = std::sync::atomic::AtomicU64::new(0);
    let st = stats.clone();
    let addr = http_server(move |head| {
        if head.starts_with("POST /login ") {
            let n = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let body = format!("{{\"token\":\"jtok-{n}\",\"user\":{n}}}");
            issued.lock().unwrap().insert(format!("tok-{n}"), std::time::Instant::now());
            return format!("HTTP/1.1 200 OK\r\nX-Token: tok-{n}\r\nContent-Length: {}\r\n\r\n{body}", body.len());
        }
        let token = header(head, "authorization").and_then(|a| a.strip_prefix("Bearer ").map(str::to_string));
        let json = header(head, "x-json");
        let login = token.as_ref().and_then(|t| issued.lock().unwrap().get(t).copied());
        let mut g = st.lock().unwrap();
        match (&token, &json, login) {
            (Some(t), Some(j), Some(at)) if j == &format!("j{t}") => {
                g.2.push(at.elapsed().as_secs_f64() * 1000.0);
                g.0 += 1;
                "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok".into()
            }
            _ => {
                g.1 += 1;
                "HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\n\r\n".into()
            }
        }
    });
    (addr, stats)
}

#[test]
fn flow_carries_the_captured_token_and_respects_think_time() {
    let (addr, stats) = login_server();
    let file = write_scenario(
        "flow.toml",
        &format!(
            r#"
target = "http://{addr}"
[load]
conns = 2
duration = "2s"
[[flow]]
name = "user"
[[flow.step]]
name = "login"
method = "POST"
path = "/login"
body = '{{"user":"u{{{{seq}}}}"}}'
think = "100ms"
capture = {{ token = "header:X-Token", jt = "json:token" }}
[[flow.step]]
name = "me"
path = "/api/me"
headers = {{ Authorization = "Bearer {{{{cap.token}}}}", "X-Json" = "{{{{cap.jt}}}}" }}
"#
        ),
    );
    let v = run_scenario(&file, "flow-out");
    let (valid, rejected, mut gaps) = stats.lock().unwrap().clone();
    assert_eq!(rejected, 0, "every use carried the token of its login");
    assert!(valid >= 20, "{valid} uses in 2 s over 2 users with 100 ms think");
    assert_eq!(v["requests_by_name"]["user.me"]["status"]["200"].as_u64(), Some(valid));
    gaps.sort_by(f64::total_cmp);
    let median = gaps[gaps.len() / 2];
    assert!(gaps[0] >= 99.0, "think time cut short: {:.2} ms", gaps[0]);
    assert!((100.0..=105.0).contains(&median), "think time median {median:.2} ms, asked 100 ms (within 5%)");
}

#[test]
fn flows_refuse_unknown_captures_and_max_users_outside_arrival_rate() {
    let flow = "target = \"http://127.0.0.1:1\"\n[[flow]]\nname = \"f\"\n[[flow.step]]\nname = \"a\"\npath = \"/{{cap.nope}}\"\n";
    let file = write_scenario("badcap.toml", flow);
    let o = engine(&["blast", "--scenario", file.to_str().unwrap(), "--dry-run"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("cap.nope"), "{}", String::from_utf8_lossy(&o.stderr));
    let ok = "target = \"http://127.0.0.1:1\"\n[[flow]]\nname = \"f\"\n[[flow.step]]\nname = \"a\"\npath = \"/\"\n";
    let file = write_scenario("open.toml", ok);
    // With --rate the flows run at an arrival rate (cli/tests/scenario.rs's flow tests run it).
    let o = engine(&["blast", "--scenario", file.to_str().unwrap(), "--rate", "10", "--dry-run"]);
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
    // --max-users means nothing in the closed model: refused, naming the flag.
    let o = engine(&["blast", "--scenario", file.to_str().unwrap(), "--max-users", "5", "--dry-run"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--max-users"));
}

#[test]
fn csv_rows_feed_templates_in_turn() {
    let (addr, counts) = counting_server();
    write_scenario("users.csv", "name,id\nalice,1\n\"bob, jr\",2\ncarol,3\n");
    let file = write_scenario(
        "data.toml",
        &format!(
            "target = \"http://{addr}\"\n[load]\nconns = 4\nduration = \"1s\"\n[data]\nfile = \"users.csv\"\n\
             [[request]]\nname = \"u\"\npath = \"/u/{{{{csv.id}}}}\"\nheaders = {{ \"X-Name\" = \"{{{{csv.name}}}}\" }}\n"
        ),
    );
    let dir = file.parent().unwrap().join("data-out");
    let o =
        engine(&["blast", "--scenario", file.to_str().unwrap(), "--shards", "1", "-q", "--out", dir.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
    let counts = counts.lock().unwrap().clone();
    let mut paths: Vec<_> = counts.iter().collect();
    paths.sort();
    assert_eq!(paths.iter().map(|(p, _)| p.as_str()).collect::<Vec<_>>(), vec!["/u/1", "/u/2", "/u/3"]);
    let (lo, hi) = (counts.values().min().unwrap(), counts.values().max().unwrap());
    assert!(hi - lo <= 4, "rows in turn: {counts:?}");

    let bad = write_scenario("badcol.toml", "target = \"http://127.0.0.1:1\"\n[data]\nfile = \"users.csv\"\n[[request]]\nname = \"u\"\npath = \"/{{csv.nope}}\"\n");
    let o = engine(&["blast", "--scenario", bad.to_str().unwrap(), "--dry-run"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("csv.nope"));
    let missing = write_scenario(
        "nofile.toml",
        "target = \"http://127.0.0.1:1\"\n[data]\nfile = \"absent.csv\"\n[[request]]\nname = \"u\"\npath = \"/\"\n",
    );
    let o = engine(&["blast", "--scenario", missing.to_str().unwrap(), "--dry-run"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("cannot read data file"));
}

/// The largest weights a file may give add up past u32: the shares are still printed right.
#[test]
fn the_largest_weights_print_their_shares() {
    let (addr, _) = counting_server();
    let file = write_scenario(
        "max-weights.toml",
        &format!(
            "target = \"http://{addr}\"\n[load]\nconns = 2\nduration = \"300ms\"\n\
             [[request]]\nname = \"a\"\npath = \"/a\"\nweight = 4294967295\n\
             [[request]]\nname = \"b\"\npath = \"/b\"\nweight = 4294967295\n"
        ),
    );
    let out_dir = file.parent().unwrap().join("max-weights-out");
    let o =
        engine(&["blast", "--scenario", file.to_str().unwrap(), "--shards", "1", "--out", out_dir.to_str().unwrap()]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(out.matches(" 50.0%").count(), 2, "{out}");
}

#[test]
fn checks_count_by_name_and_a_failed_one_ends_the_flow() {
    let (addr, stats) = login_server();
    let scenario = |login_check: &str| {
        format!(
            r#"
target = "http://{addr}"
[defaults]
check = ["status < 500"]
[load]
conns = 2
duration = "1s"
[[flow]]
name = "user"
[[flow.step]]
name = "login"
method = "POST"
path = "/login"
capture = {{ token = "header:X-Token", jt = "json:$.token" }}
check = [{{ name = "has-token", expr = "json $.token exists" }}, {login_check}]
[[flow.step]]
name = "me"
path = "/api/me"
headers = {{ Authorization = "Bearer {{{{cap.token}}}}", "X-Json" = "{{{{cap.jt}}}}" }}
check = ['body contains "ok"', {{ expr = "header x-cache exists", soft = true }}]
"#
        )
    };
    // Every check a login can pass: the JSONPath capture carries the token, each check is
    // counted by name, the soft one fails without failing anything.
    let file = write_scenario("checks.toml", &scenario(r#""json $.user >= 0""#));
    let v = run_scenario(&file, "checks-out");
    let (valid, rejected, _) = stats.lock().unwrap().clone();
    assert_eq!(rejected, 0);
    let by = &v["checks"]["by_name"];
    let logins = v["requests_by_name"]["user.login"]["requests"].as_u64().unwrap();
    assert_eq!(by["has-token"]["passed"].as_u64(), Some(logins), "{by}");
    assert_eq!(by["body contains \"ok\""]["passed"].as_u64(), Some(valid), "{by}");
    assert_eq!(by["header x-cache exists"]["failed"].as_u64(), Some(valid), "{by}");
    assert_eq!(by["status < 500"]["passed"].as_u64(), v["requests"].as_u64(), "{by}");
    assert_eq!((v["errors"]["check"].as_u64(), v["errors"]["total"].as_u64()), (Some(0), Some(0)));

    // A login that fails its check ends the iteration: no /api/me follows, and each is an
    // error of kind check.
    let before = stats.lock().unwrap().0;
    let file = write_scenario("checks-fail.toml", &scenario(r#""json $.user < 0""#));
    let o = blast_scenario(&file, "checks-fail-out");
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let logins = v["requests_by_name"]["user.login"]["requests"].as_u64().unwrap();
    assert!(logins > 0);
    assert_eq!(stats.lock().unwrap().0, before, "no step after a failed check");
    assert_eq!(v["errors"]["check"].as_u64(), Some(logins), "{}", v["errors"]);
    assert_eq!(v["checks"]["by_name"]["json $.user < 0"]["failed"].as_u64(), Some(logins));
}

/// Counts requests by path and when each path's first part (`/browse`, `/checkout`) was
/// first asked for; refuses every payment (503).
#[allow(clippy::type_complexity)]
fn shop_server(
) -> (std::net::SocketAddr, Arc<Mutex<HashMap<String, u64>>>, Arc<Mutex<HashMap<String, std::time::Instant>>>) {
    let counts: Arc<Mutex<HashMap<String, u64>>> = Arc::default();
    let first: Arc<Mutex<HashMap<String, std::time::Instant>>> = Arc::default();
    let (c, f) = (counts.clone(), first.clone());
    let addr = http_server(move |head| {
        let path = head.split_whitespace().nth(1).unwrap_or("").to_string();
        let group = path.split('/').nth(1).unwrap_or("").to_string();
        f.lock().unwrap().entry(group).or_insert_with(std::time::Instant::now);
        *c.lock().unwrap().entry(path.clone()).or_insert(0) += 1;
        match path.as_str() {
            "/checkout/pay" => "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n".into(),
            _ => "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok".into(),
        }
    });
    (addr, counts, first)
}

/// A closed-model browse from the start, and arrival-rate checkout users a second later.
fn two_scenarios(name: &str, addr: std::net::SocketAddr) -> std::path::PathBuf {
    write_scenario(
        name,
        &format!(
            r#"
target = "http://{addr}"
thresholds = ["error_rate{{scenario=browse}}<1%", "error_rate{{scenario=checkout}}<1%", "p99{{scenario=browse}}<5s"]

[[scenario]]
name = "browse"
[scenario.load]
conns = 2
duration = "3s"
[[scenario.request]]
name = "home"
path = "/browse/home"
weight = 3
[[scenario.request]]
name = "search"
path = "/browse/search"

[[scenario]]
name = "checkout"
start = "1s"
[scenario.load]
rate = 20
duration = "2s"
max_users = 10
[[scenario.flow]]
name = "buy"
[[scenario.flow.step]]
name = "cart"
path = "/checkout/cart"
[[scenario.flow.step]]
name = "pay"
method = "POST"
path = "/checkout/pay"
"#
        ),
    )
}

/// Two scenarios in one run (k6's `scenarios`): a closed-model browse from the start and an
/// arrival-rate checkout flow a second later, whose payment step the server refuses. Each
/// scenario's counts are the server's for its paths, each starts when it says, thresholds with
/// `{scenario=…}` judge only theirs, and summary.md and summary.csv show both.
#[test]
fn two_scenarios_run_together_and_are_judged_apart() {
    let (addr, counts, first) = shop_server();
    let file = two_scenarios("two.toml", addr);
    let o = engine(&["blast", "--scenario", file.to_str().unwrap(), "--dry-run"]);
    let plan = String::from_utf8_lossy(&o.stdout);
    assert!(
        plan.contains("2 scenarios") && plan.contains("scenario checkout: open model at 20 iterations/s"),
        "{plan}"
    );

    let o = blast_scenario(&file, "two-out");
    // The checkout threshold fails (every payment is refused), the browse ones pass.
    assert_eq!(o.status.code(), Some(4), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    // Browse ends at 3 s with the run: the open checkout's backlog after the end is not its.
    assert!(v["duration_s"].as_f64().unwrap() < 3.4, "{}", v["duration_s"]);
    std::thread::sleep(std::time::Duration::from_millis(50));
    let counts = counts.lock().unwrap().clone();
    let n = |p: &str| counts.get(p).copied().unwrap_or(0);
    let (browse, checkout) = (&v["scenarios"]["browse"], &v["scenarios"]["checkout"]);
    assert_eq!(browse["requests"].as_u64(), Some(n("/browse/home") + n("/browse/search")), "{counts:?}");
    assert_eq!(checkout["requests"].as_u64(), Some(n("/checkout/cart") + n("/checkout/pay")), "{counts:?}");
    assert!(n("/browse/home") > 1000 && n("/browse/home").abs_diff(3 * n("/browse/search")) <= 3, "{counts:?}");
    // 20 iterations a second for 2 s: each puts a cart and is refused its payment.
    assert_eq!(checkout["scheduled_iterations"].as_u64(), Some(40), "{checkout}");
    assert!((38..=40).contains(&n("/checkout/cart")) && n("/checkout/pay") == n("/checkout/cart"), "{counts:?}");
    let it = &checkout["iterations"];
    assert_eq!(
        (it["started"].as_u64(), it["failed"].as_u64()),
        (Some(n("/checkout/cart")), Some(n("/checkout/cart"))),
        "{it}"
    );
    assert_eq!(
        (checkout["errors"]["status"].as_u64(), browse["errors"]["total"].as_u64()),
        (Some(n("/checkout/pay")), Some(0))
    );
    assert_eq!(
        (browse["model"].as_str(), checkout["model"].as_str(), v["model"].as_str()),
        (Some("closed"), Some("open"), Some("mixed"))
    );
    let seen = first.lock().unwrap().clone();
    let late = seen["checkout"].duration_since(seen["browse"]).as_secs_f64();
    assert!((0.9..1.5).contains(&late), "checkout began {late:.2} s after browse");
    let verdicts: Vec<(String, bool)> = v["thresholds"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| (t["expr"].as_str().unwrap().to_string(), t["pass"].as_bool().unwrap()))
        .collect();
    assert_eq!(verdicts.iter().map(|(_, p)| *p).collect::<Vec<_>>(), vec![true, false, true], "{verdicts:?}");
    let dir = file.parent().unwrap().join("two-out");
    let md = std::fs::read_to_string(dir.join("summary.md")).unwrap();
    assert!(md.contains("## Scenarios") && md.contains("| checkout | open |"), "{md}");
    let csv = std::fs::read_to_string(dir.join("summary.csv")).unwrap();
    assert!(csv.lines().any(|l| l.starts_with("scenario,browse,")) && csv.contains("scenario,checkout,"), "{csv}");
    let _ = std::fs::remove_dir_all(dir);
}

/// Two workers share a plan of two scenarios (each its half of the connections and of the
/// rate) and `report merge` makes one run of them: each scenario's counts are both workers',
/// and the server's.
#[test]
fn a_fleets_scenarios_merge_into_one_run() {
    let (addr, counts) = counting_server();
    let file = write_scenario(
        "fleet.toml",
        &format!(
            r#"
target = "http://{addr}"
[[scenario]]
name = "steady"
[scenario.load]
conns = 2
duration = "2s"
[[scenario.request]]
name = "a"
path = "/steady"
[[scenario]]
name = "paced"
[scenario.load]
rate = 100
duration = "2s"
[[scenario.request]]
name = "b"
path = "/paced"
"#
        ),
    );
    let dir = file.parent().unwrap().join("fleet");
    let workers: Vec<_> = (0..2)
        .map(|i| {
            let out = dir.join(format!("w{i}"));
            Command::new(env!("CARGO_BIN_EXE_engine"))
                .args(["blast", "--scenario", file.to_str().unwrap(), "--shards", "1", "-q"])
                .args(["--worker-count", "2", "--worker-index", &i.to_string(), "--out", out.to_str().unwrap()])
                .spawn()
                .unwrap()
        })
        .collect();
    for mut w in workers {
        assert!(w.wait().unwrap().success());
    }
    let o = engine(&[
        "report",
        "merge",
        dir.join("w0").to_str().unwrap(),
        dir.join("w1").to_str().unwrap(),
        "--out",
        dir.join("merged").to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("merged/summary.json")).unwrap()).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(50));
    let counts = counts.lock().unwrap().clone();
    let (steady, paced) = (&v["scenarios"]["steady"], &v["scenarios"]["paced"]);
    assert_eq!(steady["requests"].as_u64(), counts.get("/steady").copied(), "{counts:?}");
    assert_eq!(paced["requests"].as_u64(), counts.get("/paced").copied(), "{counts:?}");
    assert_eq!((paced["scheduled_requests"].as_u64(), paced["conns"].as_u64()), (Some(200), Some(64)), "{paced}");
    assert_eq!(steady["conns"].as_u64(), Some(2));
    assert!(paced["latency_ms"]["p99"].as_f64().unwrap() > 0.0);
    let _ = std::fs::remove_dir_all(dir);
}

/// A threshold on a scenario the plan lacks, or a flag that would shape every scenario's load,
/// is refused before the run, naming what there is.
#[test]
fn a_plan_of_scenarios_refuses_what_fits_none() {
    let file = two_scenarios("two-refused.toml", "127.0.0.1:1".parse().unwrap());
    let f = file.to_str().unwrap();
    let o = engine(&["blast", "--scenario", f, "--threshold", "p95{scenario=nope}<1s", "--dry-run"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.code() == Some(2) && err.contains("scenarios: browse, checkout"), "{err}");
    let o = engine(&["blast", "--scenario", f, "-c", "5", "--dry-run"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        o.status.code() == Some(2) && err.contains("-c does not apply") && err.contains("[scenario.load]"),
        "{err}"
    );
}
