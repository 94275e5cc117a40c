//! Figures and verdicts that cannot mislead (issue 27): a threshold with nothing to judge,
//! a run without a single response, a target that dies part-way, and the flags whose
//! meaning was a trap.

use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use engine_target::{Target, TargetConfig};

fn engine(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_engine")).args(args).env_remove("RUST_BACKTRACE").output().expect("engine runs")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn out_dir(tag: &str) -> String {
    std::env::temp_dir().join(format!("engine-verdicts-{tag}-{}", std::process::id())).display().to_string()
}

fn summary(o: &Output) -> serde_json::Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("no summary ({e}): {}", stderr(o)))
}

#[test]
fn a_threshold_with_nothing_to_judge_fails_as_no_data() {
    let t = Target::start(TargetConfig::loopback(Duration::ZERO).unwrap()).unwrap();
    let url = format!("http://{}/", t.local_addr());
    let out = out_dir("nodata");
    // Every response is a 200: there is no 5xx latency to judge, and "p99 < 1 ms of nothing"
    // must not fail (or pass) on a figure of 0.
    let o = engine(&[
        "blast",
        &url,
        "-c",
        "2",
        "-d",
        "300ms",
        "-q",
        "--json",
        "-",
        "--out",
        &out,
        "--threshold",
        "p99{status=5xx}<1ms",
        "--threshold",
        "p99<10s",
    ]);
    assert_eq!(o.status.code(), Some(4), "{}", stderr(&o));
    let s = summary(&o);
    assert_eq!(s["thresholds"][0]["no_data"], true, "{s}");
    assert_eq!(s["thresholds"][0]["pass"], false, "{s}");
    assert!(s["thresholds"][1].get("no_data").is_none(), "{s}");
    assert!(stderr(&o).contains("FAIL p99{status=5xx}<1ms (no data"), "{}", stderr(&o));

    // Nothing succeeded (every 200 unexpected): p95 of the expected responses is no data,
    // where it used to pass "measured 0µs".
    let o = engine(&[
        "blast",
        &url,
        "-c",
        "2",
        "-d",
        "300ms",
        "-q",
        "--json",
        "-",
        "--out",
        &out,
        "--expect-status",
        "500",
        "--threshold",
        "p95{status=ok}<200ms",
    ]);
    assert_eq!(o.status.code(), Some(4), "{}", stderr(&o));
    assert_eq!(summary(&o)["thresholds"][0]["no_data"], true);
    let summary_md = std::fs::read_to_string(std::path::Path::new(&out).join("summary.md")).unwrap();
    assert!(summary_md.contains("(no data"), "{summary_md}");
    let _ = std::fs::remove_dir_all(&out);
}

/// Accepts connections and reads what comes, never answering.
fn silent_server() -> std::net::SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for mut c in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while matches!(c.read(&mut buf), Ok(n) if n > 0) {}
            });
        }
    });
    addr
}

#[test]
fn a_run_without_a_response_warns_prints_no_data_and_exits_3() {
    let addr = silent_server();
    let out = out_dir("silent");
    let json = format!("{out}.json");
    let o = engine(&[
        "blast",
        &format!("http://{addr}/"),
        "-c",
        "2",
        "-d",
        "1s",
        "--timeout",
        "300ms",
        "-q",
        "--json",
        &json,
        "--out",
        &out,
        "--threshold",
        "p99<1s",
    ]);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains("latency     no data"), "{text}");
    assert!(!text.contains("p50 0µs"), "{text}");
    assert!(text.contains("warning: not one response in the run"), "{text}");
    let s: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(s["requests"], 0);
    assert!(s["errors"]["timeout"].as_u64().unwrap() > 0, "{s}");
    assert_eq!(s["thresholds"][0]["no_data"], true, "{s}");
    let _ = std::fs::remove_dir_all(&out);
    let _ = std::fs::remove_file(&json);
}

#[test]
fn a_target_that_dies_part_way_is_named_in_a_warning() {
    let mut target = Command::new(env!("CARGO_BIN_EXE_engine"))
        .args(["target", "--listen", "127.0.0.1:0", "--shards", "1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(target.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let addr = line.split("http://").nth(1).and_then(|s| s.split('/').next()).expect("an address").to_string();
    let out = out_dir("dies");
    let blast = Command::new(env!("CARGO_BIN_EXE_engine"))
        .args(["blast", &format!("http://{addr}/"), "-c", "20", "-d", "4s", "-q", "--json", "-", "--out", &out])
        .args(["--shards", "1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    target.kill().unwrap();
    target.wait().unwrap();
    let o = blast.wait_with_output().unwrap();
    let s = summary(&o);
    assert!(s["requests"].as_u64().unwrap() > 0, "{s}");
    assert!(s["errors"]["connect"].as_u64().unwrap() > 0, "{s}");
    let warnings = s["warnings"].to_string();
    assert!(warnings.contains("the target answered nothing after"), "{warnings}");
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn flags_whose_meaning_was_a_trap_get_one_clear_line() {
    let t = Target::start(TargetConfig::loopback(Duration::ZERO).unwrap()).unwrap();
    let url = format!("http://{}/", t.local_addr());
    for (args, code, says) in [
        (vec!["--threshold", "error_rate<1"], 2, "a fraction below 1"),
        (vec!["-d", "-5s"], 2, "cannot be negative"),
        (vec!["--timeout", "-1s"], 2, "cannot be negative"),
    ] {
        let mut all = vec!["blast", url.as_str(), "-q"];
        all.extend(args.iter().copied());
        let o = engine(&all);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(code), "{args:?}: {err}");
        assert!(err.contains(says) && !err.contains("-- -"), "{args:?}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{args:?}: {err}");
    }
    // A name that does not resolve is a target that cannot be reached: exit 3.
    let o = engine(&["blast", "http://no-such-host.invalid/", "-d", "1s", "-q"]);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert!(stderr(&o).contains("cannot resolve"), "{}", stderr(&o));
}

/// `engine proxy` in front of `upstream` with `faults` (TOML): its address, and the child.
fn proxy(upstream: std::net::SocketAddr, faults: &str, tag: &str) -> (String, std::process::Child) {
    let file = std::env::temp_dir().join(format!("engine-verdicts-faults-{tag}-{}.toml", std::process::id()));
    std::fs::write(&file, faults).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_engine"))
        .args(["proxy", "--listen", "127.0.0.1:0", "--shards", "1", "--upstream", &upstream.to_string(), "--faults"])
        .arg(&file)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    std::thread::spawn(move || {
        let mut sink = Vec::new();
        let _ = out.read_to_end(&mut sink);
    });
    let addr = line.split("http://").nth(1).and_then(|s| s.split('/').next()).expect("an address").to_string();
    (addr, child)
}

#[test]
fn refused_users_wait_their_think_time_or_retry_after_instead_of_storming() {
    let t = Target::start(TargetConfig::loopback(Duration::ZERO).unwrap()).unwrap();
    let faults =
        "[[fault]]\nmatch = { path_prefix = \"/login\" }\naction = { abort = { status = 503, retry_after_s = 1 } }\n";
    let (addr, mut proxy) = proxy(t.local_addr(), faults, "storm");
    let scenario = std::env::temp_dir().join(format!("engine-verdicts-storm-{}.toml", std::process::id()));
    let flow = |retry_after_max: &str| {
        format!(
            "target = \"http://{addr}\"\n[defaults]\nretry_after_max = \"{retry_after_max}\"\n[[flow]]\nname = \"user\"\n\
             [[flow.step]]\nname = \"login\"\nmethod = \"POST\"\npath = \"/login\"\nthink = \"200ms\"\n\
             [[flow.step]]\nname = \"me\"\npath = \"/api/me\"\n"
        )
    };
    let out = out_dir("storm");
    let logins = |retry_after_max: &str| {
        std::fs::write(&scenario, flow(retry_after_max)).unwrap();
        let o = engine(&[
            "blast",
            "--scenario",
            &scenario.display().to_string(),
            "-c",
            "10",
            "-d",
            "3s",
            "-q",
            "--json",
            "-",
            "--out",
            &out,
        ]);
        let s = summary(&o);
        assert_eq!(s["requests_by_name"]["user.me"]["requests"], 0, "no login succeeded: {s}");
        // The share column is of what was sent, not 1/N of the steps.
        let text = stderr(&o);
        let share = |name: &str| text.lines().find(|l| l.contains(name)).unwrap_or_default().to_string();
        assert!(share("user.login").contains("100.0%") && share("user.me").contains(" 0.0%"), "{text}");
        s["requests_by_name"]["user.login"]["requests"].as_u64().unwrap()
    };
    // Retry-After: 1 honoured: each of 10 users logs in about once a second (3 s, plus the
    // first try), where retrying at once sent hundreds a second.
    let honoured = logins("10s");
    assert!((10..=45).contains(&honoured), "{honoured} logins by 10 users in 3 s with Retry-After: 1");
    // Retry-After ignored: the failed step's think time (200 ms) still spaces them.
    let think = logins("0s");
    assert!((100..=170).contains(&think), "{think} logins by 10 users in 3 s at 200 ms think time");
    proxy.kill().unwrap();
    let _ = proxy.wait();
    let _ = std::fs::remove_dir_all(&out);
    let _ = std::fs::remove_file(&scenario);
}

#[test]
fn print_plan_prints_what_would_run() {
    let plan = |args: &[&str]| {
        let mut all = vec!["blast", "http://127.0.0.1:9/", "--print-plan"];
        all.extend_from_slice(args);
        let o = engine(&all);
        assert_eq!(o.status.code(), Some(0), "{args:?}: {}", stderr(&o));
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    // Rate stages ramp from --rate: 100 -> 50 -> 10 over a minute is 3,150 requests.
    let p = plan(&["--rate", "100", "--stages", "50:30s,10:30s"]);
    assert!(p.contains("--rate 100 --stages 50:30s,10:30s") && p.contains("requests scheduled: 3150"), "{p}");
    // An expression's own grace is printed once.
    let p = plan(&["--abort-on", "error_rate>15% for 1", "--abort-on", "p99>1s"]);
    assert!(p.contains("safety stop: error_rate>15% for 1\n"), "{p}");
    assert!(p.contains("safety stop: p99>1s for 3 consecutive intervals"), "{p}");
    // The scenario's [profile] criterion, and iterations for arrival-rate flows.
    let file = std::env::temp_dir().join(format!("engine-verdicts-plan-{}.toml", std::process::id()));
    std::fs::write(
        &file,
        "target = \"http://127.0.0.1:9\"\n[profile]\np99 = \"200ms\"\nerror_rate = \"2%\"\n\
         [[flow]]\nname = \"user\"\n[[flow.step]]\nname = \"home\"\npath = \"/\"\n",
    )
    .unwrap();
    let f = file.display().to_string();
    let o = engine(&["blast", "--scenario", &f, "--profile", "stress", "--peak", "100", "--print-plan"]);
    let p = String::from_utf8_lossy(&o.stdout);
    assert!(p.contains("p99 <= 200 ms, errors <= 2%"), "{p}");
    let o = engine(&["blast", "--scenario", &f, "--rate", "10", "--print-plan"]);
    let p = String::from_utf8_lossy(&o.stdout);
    assert!(p.contains("10 iterations/s") && !p.contains("req/s"), "{p}");
    let _ = std::fs::remove_file(&file);
}

#[test]
fn a_failed_pre_flight_leaves_no_results_folder() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let out = out_dir("preflight");
    let o = engine(&["blast", &format!("http://{closed}/"), "-d", "1s", "-q", "--out", &out]);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert!(!std::path::Path::new(&out).exists(), "a folder was left: {out}");
}

#[test]
fn arrival_rate_flows_are_counted_as_iterations_not_requests() {
    let t = Target::start(TargetConfig::loopback(Duration::ZERO).unwrap()).unwrap();
    let file = std::env::temp_dir().join(format!("engine-verdicts-iterations-{}.toml", std::process::id()));
    std::fs::write(
        &file,
        format!(
            "target = \"http://{}\"\n[[flow]]\nname = \"user\"\n[[flow.step]]\nname = \"a\"\npath = \"/a\"\n\
             [[flow.step]]\nname = \"b\"\npath = \"/b\"\n[[flow.step]]\nname = \"c\"\npath = \"/c\"\n",
            t.local_addr()
        ),
    )
    .unwrap();
    let out = out_dir("iterations");
    let f = file.display().to_string();
    let o = engine(&["blast", "--scenario", &f, "--rate", "20", "-d", "1s", "-c", "4", "--out", &out]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let text = String::from_utf8_lossy(&o.stdout);
    // Three requests an iteration: the rate asked is of iterations, and says so.
    assert!(text.contains("iterations asked 20.0/s, started 20.0/s (100.0%)"), "{text}");
    assert!(stderr(&o).contains("open model at 20 iterations/s"), "{}", stderr(&o));
    let md = std::fs::read_to_string(std::path::Path::new(&out).join("summary.md")).unwrap();
    assert!(md.contains("| asked iteration rate | 20.0 iterations/s (20 of 20 started, 20 completed) |"), "{md}");
    let _ = std::fs::remove_dir_all(&out);
    let _ = std::fs::remove_file(&file);
}
