//! The `engine` binary as a user runs it: flags, exit codes, JSON, Ctrl-C.

// A test reads as one story from setup to the last assertion; the CLI's 60-line limit
// (cli/clippy.toml) is for its code.
#![allow(clippy::too_many_lines)]

mod ports;
#[macro_use]
mod require;

use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use engine_target::{Target, TargetConfig};

/// Tests that load the machine run one at a time: the stress test measures a capacity.
static HEAVY: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn heavy() -> std::sync::MutexGuard<'static, ()> {
    HEAVY.lock().unwrap_or_else(|e| e.into_inner())
}

fn engine(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_engine")).args(args).output().expect("engine runs")
}

fn target() -> Target {
    Target::start(TargetConfig::loopback(Duration::ZERO).unwrap()).unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn usage_errors_exit_2_with_one_line() {
    let cases: &[(&[&str], &str)] = &[
        (&["blast", "not a url"], "invalid URL"),
        (&["blast", "http://127.0.0.1:1/", "--cacert", "x.pem"], "TLS flags (--cacert, -k"),
        (&["blast", "https://127.0.0.1:1/", "--cacert", "/nonexistent.pem"], "/nonexistent.pem"),
        (&["blast", "http://127.0.0.1:1/", "--conns", "0"], "--conns must be at least 1"),
        (&["blast", "http://127.0.0.1:1/", "-d", "ten"], "invalid duration"),
        (&["blast", "http://127.0.0.1:1/", "-H", "no colon"], "invalid header"),
        (&["blast", "http://127.0.0.1:1/", "--conns", "1000000"], "open files"),
        (&["blast", "http://127.0.0.1:1/", "--cores", "1000"], "not in this process's affinity mask"),
        (&["blast", "http://127.0.0.1:1/", "-b", "@/nonexistent/body"], "cannot read body file"),
        (&["blast", "http://127.0.0.1:1/", "--bogus"], "unexpected argument"),
        (&["blast", "http://127.0.0.1:1/", "--busy-poll", "2s"], "--busy-poll 2s is over 1s"),
        (&["blast", "http://127.0.0.1:1/", "--busy-poll=fast"], "invalid duration 'fast'"),
        (&["blast", "127.0.0.1:8080"], "did you mean 'http://127.0.0.1:8080'?"),
        (&["blast", "http://127.0.0.1:1/", "-b", "@/dev/zero"], "larger than the 16777216-byte limit"),
        (&["blast", "--scenario", "/dev/zero"], "is over 1048576 bytes"),
        (&["blast", "http://127.0.0.1:1/", "--connect-timeout", "0s"], "--connect-timeout must be more than 0"),
        (&["blast", "http://127.0.0.1:1/", "-d", "1000000h"], "at most 1000000000 s"),
        (&["blast", "http://127.0.0.1:1/", "--stages", "1e30:1s"], "the target is above 10000000"),
        (
            &["blast", "http://127.0.0.1:1/", "--profile", "soak", "--peak", "10", "--step", "0s"],
            "--step must be more than 0",
        ),
        (&["report", "merge", "/dev/zero"], "neither a results folder nor a .hlog file"),
        (&["report", "html", "/dev/zero"], "neither a results folder nor a summary.json"),
        (&["target", "--body-size", "99999999999999"], "--body-size 99999999999999 is over"),
        (&["target", "--shards", "5000"], "--shards 5000 is more than 1024"),
        (&["demo", "-d", "0s"], "--duration must be more than 0"),
        (&["demo", "-c", "0"], "--conns must be at least 1"),
    ];
    for (args, want) in cases {
        let o = engine(args);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(want), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        // Refused before anything started: no banner, no demo servers.
        assert!(o.stdout.is_empty(), "{args:?}: {}", String::from_utf8_lossy(&o.stdout));
    }
}

#[test]
fn unreachable_target_exits_3() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let o = engine(&["blast", &format!("http://127.0.0.1:{port}/"), "-d", "1s"]);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert!(stderr(&o).contains("unreachable"));
    // The cause once, not once from the message and again from the error's source chain.
    assert_eq!(stderr(&o).matches("Connection refused").count(), 1, "{}", stderr(&o));
}

#[test]
fn busy_listen_address_and_missing_scenario_say_why_once() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    for (args, cause) in [
        (vec!["target", "--listen", &addr], "in use"),
        (vec!["proxy", "--listen", &addr, "--upstream", "127.0.0.1:9", "--admin", "off"], "in use"),
        (vec!["blast", "--scenario", "/nonexistent/scenario.toml"], "No such file"),
    ] {
        let o = engine(&args);
        let err = stderr(&o);
        assert_ne!(o.status.code(), Some(0), "{args:?}: {err}");
        assert_eq!(err.matches(cause).count(), 1, "{args:?}: {err}");
    }
}

/// glommio sets SO_REUSEPORT on its listeners, which would let a second server bind beside an
/// engine listener and silently take a share of its connections. Each is refused instead.
#[test]
fn a_port_an_engine_server_holds_is_refused_not_shared() {
    let t = target();
    let addr = t.local_addr().to_string();
    let url = format!("http://{addr}/");
    for args in [
        vec!["target", "--listen", &addr],
        vec!["proxy", "--listen", &addr, "--upstream", "127.0.0.1:9", "--admin", "off"],
        vec!["proxy", "--listen", "127.0.0.1:0", "--upstream", "127.0.0.1:9", "--admin", &addr],
        vec!["blast", &url, "-c", "1", "-d", "1s", "--metrics-addr", &addr],
    ] {
        // A server that wrongly shares the port runs until stopped: give it 5 s.
        let mut child = Command::new(env!("CARGO_BIN_EXE_engine"))
            .args(&args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while child.try_wait().unwrap().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let o = child.wait_with_output().unwrap();
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains("Address already in use"), "{args:?}: {err}");
    }
}

/// A server that closed its connections leaves them in TIME_WAIT on its port for a minute;
/// restarted at once on that port it still starts (before, "Address already in use" for
/// 60 s: glommio's listeners set SO_REUSEPORT only, and their connections inherited that).
#[test]
fn a_server_restarted_on_its_port_starts_despite_its_closed_connections() {
    let port = ports::free_port();
    let addr = format!("127.0.0.1:{port}");
    let start = || {
        let mut child = Command::new(env!("CARGO_BIN_EXE_engine"))
            .args(["target", "--listen", &addr])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        let _ = std::io::BufRead::read_line(&mut std::io::BufReader::new(child.stdout.take().unwrap()), &mut line);
        (child, line)
    };
    let (mut first, line) = start();
    assert!(line.contains("listening"), "{line}");
    // Connection: close: the server closes each connection first, so TIME_WAIT is on its side.
    let url = format!("http://{addr}/");
    let o = engine(&["blast", &url, "-c", "4", "-d", "500ms", "-q", "-H", "Connection: close", "--json", "-"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let _ = first.kill();
    let _ = first.wait();
    // A killed process's io_uring lets go of its listening socket a moment after the process
    // is gone (the ring is torn down by the kernel afterwards): tries for 2 s, far from 60.
    let begun = Instant::now();
    loop {
        let (mut second, line) = start();
        let _ = second.kill();
        let o = second.wait_with_output().unwrap();
        if line.contains("listening") {
            break;
        }
        assert!(begun.elapsed() < Duration::from_secs(2), "{line}{}", stderr(&o));
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn json_summary_follows_the_contract() {
    let _heavy = heavy();
    let t = target();
    let url = format!("http://{}/", t.local_addr());
    let o = engine(&["blast", &url, "-c", "8", "-d", "1s", "--shards", "1", "--json", "-"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("stdout is the JSON alone");
    for key in [
        "requests",
        "duration_s",
        "rps",
        "status",
        "errors",
        "latency_ms",
        "latency_uncorrected_ms",
        "connections",
        "bytes",
        "thresholds",
    ] {
        assert!(v.get(key).is_some(), "missing {key}: {v}");
    }
    for key in ["total", "connect", "timeout", "reset", "closed", "parse"] {
        assert_eq!(v["errors"][key], 0, "{key}");
    }
    for key in ["mean", "p50", "p90", "p95", "p99", "p999", "max"] {
        assert!(v["latency_ms"][key].as_f64().unwrap() > 0.0, "{key}");
    }
    let requests = v["requests"].as_u64().unwrap();
    assert!(requests > 0);
    assert_eq!(v["status"]["200"].as_u64(), Some(requests));
    assert_eq!(v["connections"]["opened"], 8);
    assert!(v["bytes"]["sent"].as_u64().unwrap() > 0);
    // The human summary went to stderr.
    assert!(stderr(&o).contains("requests in"));
}

#[test]
fn json_to_a_file() {
    let _heavy = heavy();
    let t = target();
    let dir = std::env::temp_dir().join(format!("engine-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("summary.json");
    let url = format!("http://{}/", t.local_addr());
    let o = engine(&["blast", &url, "-c", "2", "-d", "300ms", "-q", "--json", path.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert!(v["requests"].as_u64().unwrap() > 0);
    assert!(String::from_utf8_lossy(&o.stdout).contains("requests in"));

    // A path that cannot be written is refused before the run, with nothing sent.
    let out = dir.join("out");
    let nowhere = dir.join("no/such/dir/s.json");
    let o = engine(&["blast", &url, "-c", "2", "-d", "300ms", "-q", "--json", nowhere.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("cannot write the summary JSON to") && o.stdout.is_empty(), "{}", stderr(&o));
    // One that fails at the end (a full disk) fails the run, after the results folder is written.
    let o =
        engine(&["blast", &url, "-c", "2", "-d", "300ms", "-q", "--json", "/dev/full", "--out", out.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("No space left on device"), "{}", stderr(&o));
    assert!(out.join("summary.json").exists() && out.join("report.html").exists());
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn interrupt_writes_the_summary_and_exits_130() {
    let _heavy = heavy();
    let t = target();
    let dir = std::env::temp_dir().join(format!("engine-cli-int-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("summary.json");
    let url = format!("http://{}/", t.local_addr());
    let child = Command::new(env!("CARGO_BIN_EXE_engine"))
        .args(["blast", &url, "-c", "4", "-d", "60s", "-q", "--json", path.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    // SAFETY: kill sends SIGINT to the child we started.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let started = Instant::now();
    let o = child.wait_with_output().unwrap();
    assert!(started.elapsed() < Duration::from_secs(5), "interrupt must end the run promptly");
    assert_eq!(o.status.code(), Some(130), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(v["interrupted"], true);
    assert!(v["requests"].as_u64().unwrap() > 0);
    assert!(String::from_utf8_lossy(&o.stdout).contains("(interrupted)"));
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn demo_shows_ground_truth() {
    let _heavy = heavy();
    let o = engine(&["demo", "-d", "1s"]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(0), "{out}{}", stderr(&o));
    let line = out.lines().find(|l| l.starts_with("ground truth")).expect("ground truth line");
    let numbers: Vec<u64> = line.split(|c: char| !c.is_ascii_digit()).filter_map(|w| w.parse().ok()).collect();
    // "the target served N and the proxy answered M itself; the blast counted K completed (+A abandoned ...)"
    assert_eq!(numbers[0] + numbers[1], numbers[2] + numbers[3], "{line}");
    // About 10% of the requests are the proxy's 503s.
    let share = numbers[1] as f64 / (numbers[0] + numbers[1]) as f64;
    assert!((0.05..0.15).contains(&share), "{line}");
    assert!(out.contains("client-side") && out.contains("server-side"), "{out}");
}

#[test]
fn help_teaches() {
    let o = engine(&["blast", "--help"]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("--conns") && out.contains("Examples:") && out.contains("Exit codes"));
}

#[test]
fn print_plan_sends_nothing() {
    // Nothing listens on this port: printing the plan must not need the target.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let url = format!("http://127.0.0.1:{port}/");
    let o = engine(&["blast", &url, "--profile", "ramp", "--peak", "10000", "--print-plan"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("profile ramp at peak 10000 connections"), "{out}");
    assert!(out.contains("--stages 100:5s,100:30s,500:5s"), "{out}");
    let o = engine(&["blast", &url, "--profile", "stress"]);
    assert_eq!(o.status.code(), Some(2), "--profile needs --peak");
    let o = engine(&["blast", &url, "--profile", "bogus", "--peak", "1"]);
    assert!(stderr(&o).contains("unknown profile 'bogus'"));
}

#[test]
fn banner_says_when_shards_share_a_cpu() {
    let url = "http://127.0.0.1:1/";
    let o = engine(&["blast", url, "--cores", "0", "--shards", "3", "--print-plan"]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("on 3 shards (CPU 0, up to 3 shards per CPU, taking turns; --shards 1"), "{out}");
    let o = engine(&["blast", url, "--cores", "0", "--print-plan"]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("on 1 shard (CPU 0)"), "{out}");
}

#[test]
fn stress_profile_finds_a_known_capacity() {
    let _heavy = heavy();
    // 42 connections against a 20 ms server: at most 2,100 requests per second. Levels are
    // 5% of the 4,200 peak (210 apart), so the last good level is 2,100 or, on a busy
    // machine, 1,890: both within 10%.
    let t = Target::start(TargetConfig::loopback(Duration::from_millis(20)).unwrap()).unwrap();
    let url = format!("http://{}/", t.local_addr());
    let o = engine(&[
        "blast",
        &url,
        "--profile",
        "stress",
        "--peak",
        "4200",
        "--rate",
        "0",
        "-c",
        "42",
        "--step",
        "1s",
        "--json",
        "-",
        "-q",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let capacity = v["profile"]["capacity"].as_f64().expect("a capacity");
    assert!((1890.0..=2310.0).contains(&capacity), "capacity {capacity}, known 2100: {}", v["profile"]);
    assert!(v["profile"]["failed_at"].as_f64().unwrap() > capacity);
    assert_eq!(v["interrupted"], false);
}

#[test]
fn failing_threshold_exits_4_and_passing_exits_0() {
    let _heavy = heavy();
    let t = target();
    let url = format!("http://{}/", t.local_addr());
    let o = engine(&[
        "blast",
        &url,
        "-c",
        "2",
        "-d",
        "500ms",
        "-q",
        "--threshold",
        "p99<1us",
        "--threshold",
        "error_rate<1%",
        "--json",
        "-",
    ]);
    assert_eq!(o.status.code(), Some(4), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["thresholds"][0]["pass"], false);
    assert_eq!(v["thresholds"][1]["pass"], true);
    assert!(stderr(&o).contains("FAIL p99<1us"));
    let o = engine(&["blast", &url, "-c", "2", "-d", "500ms", "-q", "--threshold", "p99<10s", "--threshold", "rps>10"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let o = engine(&["blast", &url, "--threshold", "p95<200"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("a latency needs a unit"));
}

/// Answers 200 for the first second after it starts, then 500 to everything.
fn failing_after_a_second() -> std::net::SocketAddr {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let born = Instant::now();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut c) = conn else { continue };
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                let mut pending = Vec::new();
                loop {
                    match c.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => pending.extend_from_slice(&buf[..n]),
                    }
                    while let Some(end) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
                        pending.drain(..end + 4);
                        let r: &[u8] = if born.elapsed() < Duration::from_secs(1) {
                            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
                        } else {
                            b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n\r\n"
                        };
                        if c.write_all(r).is_err() {
                            return;
                        }
                    }
                }
            });
        }
    });
    addr
}

#[test]
fn safety_stop_ends_the_run_with_exit_5_and_a_summary() {
    let _heavy = heavy();
    let addr = failing_after_a_second();
    let url = format!("http://{addr}/");
    let started = Instant::now();
    let o = engine(&["blast", &url, "-c", "4", "-d", "20s", "-q", "--abort-on", "error_rate>10%", "--json", "-"]);
    assert_eq!(o.status.code(), Some(5), "{}", stderr(&o));
    assert!(started.elapsed() < Duration::from_secs(8), "stopped within 3 intervals of the failures");
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let at = v["stopped_by"]["at_s"].as_f64().unwrap();
    assert!((3.0..=5.0).contains(&at), "fired at {at} s");
    assert_eq!(v["stopped_by"]["expr"], "error_rate>10%");
    assert_eq!(v["interrupted"], false);
    assert!(v["status"]["200"].as_u64().unwrap() > 0 && v["status"]["500"].as_u64().unwrap() > 0);
    assert!(stderr(&o).contains("safety stop"));
}

/// A real summary of a short run, as JSON to edit.
fn real_summary() -> serde_json::Value {
    let t = target();
    let o = engine(&["blast", &format!("http://{}/", t.local_addr()), "-c", "2", "-d", "300ms", "-q", "--json", "-"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    serde_json::from_slice(&o.stdout).unwrap()
}

#[test]
fn report_compare_flags_a_regression() {
    let dir = std::env::temp_dir().join(format!("engine-compare-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("base")).unwrap();
    let real = real_summary();
    let summary = |p95: f64| {
        let mut v = real.clone();
        v["latency_ms"]["p95"] = p95.into();
        v.to_string()
    };
    std::fs::write(dir.join("base/summary.json"), summary(2.0)).unwrap();
    std::fs::write(dir.join("same.json"), summary(2.0)).unwrap();
    std::fs::write(dir.join("worse.json"), summary(2.6)).unwrap();
    let base = dir.join("base");
    let o = engine(&["report", "compare", base.to_str().unwrap(), dir.join("same.json").to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}{}", String::from_utf8_lossy(&o.stdout), stderr(&o));
    let o = engine(&["report", "compare", base.to_str().unwrap(), dir.join("worse.json").to_str().unwrap()]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(4), "{out}");
    assert!(out.lines().any(|l| l.starts_with("p95") && l.contains("+30.0%") && l.contains("REGRESSED")), "{out}");
    // A looser bound lets it pass; a missing file is a usage error.
    let o = engine(&[
        "report",
        "compare",
        base.to_str().unwrap(),
        dir.join("worse.json").to_str().unwrap(),
        "--max-regression",
        "35%",
    ]);
    assert_eq!(o.status.code(), Some(0));
    let o = engine(&["report", "compare", base.to_str().unwrap(), dir.join("nope.json").to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("no such file"), "{}", stderr(&o));
    // An error rate from 0 to 18% is shown in points, not as +18000%; a different plan is
    // said before the figures.
    let mut failing = real.clone();
    let requests = failing["requests"].as_u64().unwrap();
    let bad = requests * 18 / 100;
    failing["errors"]["status"] = bad.into();
    failing["errors"]["total"] = bad.into();
    failing["conns"] = 999.into();
    std::fs::write(dir.join("failing.json"), failing.to_string()).unwrap();
    let o = engine(&["report", "compare", base.to_str().unwrap(), dir.join("failing.json").to_str().unwrap()]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(4), "{out}");
    let line = out.lines().find(|l| l.starts_with("error_rate")).unwrap();
    let want = format!("+{:.2} pp", bad as f64 * 100.0 / requests as f64);
    assert!(line.contains(&want) && line.contains("REGRESSED"), "{want}: {out}");
    assert!(out.lines().next().unwrap().contains("plans differ (connections 2 vs 999)"), "{out}");
    let _ = std::fs::remove_dir_all(dir);
}

/// Summaries are read typed: a field missing is an error naming it (never a silent 0), a
/// newer schema is refused, and a summary from before the schema says so; one line each.
#[test]
fn report_reads_summaries_typed_and_refuses_what_it_cannot_trust() {
    let dir = std::env::temp_dir().join(format!("engine-typed-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let real = real_summary();
    assert_eq!(real["schema_version"], 6);
    let write = |name: &str, edit: &dyn Fn(&mut serde_json::Value)| {
        let mut v = real.clone();
        edit(&mut v);
        let path = dir.join(name);
        std::fs::write(&path, v.to_string()).unwrap();
        path.display().to_string()
    };
    let good = write("good.json", &|_| {});
    type Edit<'a> = &'a dyn Fn(&mut serde_json::Value);
    let cases: [(&str, Edit, &str); 4] = [
        ("no-p95.json", &|v| drop(v["latency_ms"].as_object_mut().unwrap().remove("p95")), "missing field `p95`"),
        ("newer.json", &|v| v["schema_version"] = 99.into(), "schema version 99, newer than this engine reads (6)"),
        ("older.json", &|v| drop(v.as_object_mut().unwrap().remove("schema_version")), "written by an older engine"),
        ("typo.json", &|v| v["rps"] = "fast".into(), "invalid type"),
    ];
    // Schema 1 (before TLS) reads as today's shape: it had no TLS errors.
    let v1 = write("v1.json", &|v| {
        v["schema_version"] = 1.into();
        v["errors"].as_object_mut().unwrap().remove("tls");
    });
    let o = engine(&["report", "compare", &good, &v1]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    // Schema 3 (before checks) reads as a run without checks.
    let v3 = write("v3.json", &|v| {
        v["schema_version"] = 3.into();
        v["errors"].as_object_mut().unwrap().remove("check");
    });
    let o = engine(&["report", "compare", &good, &v3]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    // Schema 4 (before HTTP/2) reads as a run without HTTP/2 errors.
    let v4 = write("v4.json", &|v| {
        v["schema_version"] = 4.into();
        let e = v["errors"].as_object_mut().unwrap();
        e.remove("reset_stream");
        e.remove("h2");
    });
    let o = engine(&["report", "compare", &good, &v4]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    for (name, edit, want) in cases {
        let bad = write(name, edit);
        for args in [vec!["report", "compare", &good, &bad], vec!["report", "html", &bad]] {
            let o = engine(&args);
            let err = stderr(&o);
            assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
            assert!(err.contains(want), "{args:?}: {err}");
            assert_eq!(err.lines().count(), 1, "{err}");
        }
    }
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn progress_lines_are_plain_when_piped() {
    let _heavy = heavy();
    let t = target();
    let url = format!("http://{}/", t.local_addr());
    let dir = std::env::temp_dir().join(format!("engine-progress-{}", std::process::id()));
    let o = engine(&["blast", &url, "-c", "2", "-d", "3s", "--out", dir.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0));
    let err = stderr(&o);
    assert!(!err.contains('\r') && !err.contains('\x1b'), "control characters in piped output: {err:?}");
    let lines = err.lines().filter(|l| l.starts_with('[') && l.contains("req/s")).count();
    assert!(lines >= 3, "one progress line per second: {err}");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn progress_line_is_rewritten_in_place_on_a_terminal() {
    let _heavy = heavy();
    let t = target();
    let url = format!("http://{}/", t.local_addr());
    let dir = std::env::temp_dir().join(format!("engine-tty-{}", std::process::id()));
    // util-linux `script` runs the engine on a pseudo-terminal and copies what it drew.
    let cmd = format!("{} blast {url} -c 2 -d 3s --out {}", env!("CARGO_BIN_EXE_engine"), dir.display());
    let o = Command::new("script").args(["-qec", &cmd, "/dev/null"]).output().expect("script (util-linux) runs");
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stdout));
    let screen = String::from_utf8_lossy(&o.stdout);
    let redraws = screen.matches("\r\x1b[2K[").count();
    assert!(redraws >= 3, "expected one redraw per second, saw {redraws}: {screen:?}");
    let _ = std::fs::remove_dir_all(dir);
}

/// On a kernel without what the engine needs (io_uring with COOP_TASKRUN, Linux 5.19), every
/// mode that runs executors exits 2 at once with the kernel and what is missing: never a
/// 0-request "success". ENGINE_TEST_PROBE_ERRNO stands in for the kernel's answer.
#[test]
fn a_kernel_without_what_the_engine_needs_is_refused_at_start() {
    for args in [
        vec!["blast", "http://127.0.0.1:1/", "-d", "1s"],
        vec!["proxy", "--upstream", "127.0.0.1:1", "--listen", "127.0.0.1:0", "--admin", "off"],
        vec!["target", "--listen", "127.0.0.1:0"],
        vec!["demo"],
    ] {
        for (errno, want) in [(libc::EINVAL, "COOP_TASKRUN"), (libc::ENOSYS, "io_uring is missing")] {
            let o = Command::new(env!("CARGO_BIN_EXE_engine"))
                .args(&args)
                .env("ENGINE_TEST_PROBE_ERRNO", errno.to_string())
                .output()
                .unwrap();
            let err = stderr(&o);
            assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
            assert!(err.contains("this kernel (Linux ") && err.contains(want), "{args:?}: {err}");
            assert_eq!(err.lines().count(), 1, "{err}");
            assert!(o.stdout.is_empty(), "{args:?}");
        }
    }
}

/// A server whose answers take 60 ms from 4.5 s to 9.5 s after its first request, 10 ms
/// otherwise (a thread per connection): a spike's latency and its recovery, on a clock. (At
/// 2 ms, an interval of the recovered load read over 1.5 times the baseline's p99 when other
/// tests loaded the machine: a few milliseconds of scheduling were half the answer.)
fn slow_for_a_while() -> std::net::SocketAddr {
    use std::io::{Read, Write};
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let first = std::sync::Arc::new(std::sync::OnceLock::<Instant>::new());
    std::thread::spawn(move || {
        for c in l.incoming() {
            let (Ok(mut c), first) = (c, first.clone()) else { continue };
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                let mut seen = Vec::new();
                while let Ok(n @ 1..) = c.read(&mut buf) {
                    seen.extend_from_slice(&buf[..n]);
                    while let Some(end) = seen.windows(4).position(|w| w == b"\r\n\r\n") {
                        seen.drain(..end + 4);
                        let t = first.get_or_init(Instant::now).elapsed().as_secs_f64();
                        let ms = if (4.5..9.5).contains(&t) { 60 } else { 10 };
                        std::thread::sleep(Duration::from_millis(ms));
                        if c.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok").is_err() {
                            return;
                        }
                    }
                }
            });
        }
    });
    addr
}

/// `--stages` get what a profile gets: each held stage its figures over its hold (not its
/// ramp) and a verdict, and, when they rise from a baseline to a peak and drop back, the
/// recovery time as a figure a threshold judges (k6's spike test, written as stages).
#[test]
fn stages_report_each_held_stage_and_the_recovery() {
    let _heavy = heavy();
    let url = format!("http://{}/", slow_for_a_while());
    // Ends at 1, 4 (baseline), 5, 7 (peak), 8 (the drop), 11 s.
    let stages = "5:1s,5:3s,20:1s,20:2s,5:1s,5:3s";
    let o = engine(&["blast", &url, "--stages", stages, "--threshold", "recovery_s<5", "--json", "-", "-q"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let p = &v["profile"];
    assert_eq!(p["name"], "stages", "{p}");
    let levels: Vec<(f64, f64)> = p["levels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| (l["level"].as_f64().unwrap(), l["held_s"].as_f64().unwrap().round()))
        .collect();
    // Held seconds: the last level's last interval ends with the drain, a few ms late.
    assert_eq!(levels, [(5.0, 3.0), (20.0, 2.0), (5.0, 3.0)], "{p}");
    let p99 = |i: usize| p["levels"][i]["p99_ms"].as_f64().unwrap();
    assert!(p99(0) < 40.0 && p99(1) > 59.0, "the baseline answered in 10 ms, the peak in 60: {p}");
    // Slow until 9.5 s: the first interval after the drop (at 8 s) back near the baseline
    // ends at 10 or 11 s; the run's last interval ends with the drain, the requests still in
    // flight answered (10 ms here), so at 11 s and a few milliseconds.
    let recovery = p["recovery_s"].as_f64().expect("a recovery time");
    assert!((2.0..=3.1).contains(&recovery), "{p}");
    assert_eq!(v["thresholds"][0]["value"].as_f64(), Some(recovery), "{}", v["thresholds"]);
    assert!(stderr(&o).contains("p99 recovered"), "{}", stderr(&o));
    // Stages without a drop have no recovery to judge: refused before the run.
    let o = engine(&["blast", &url, "--stages", "5:1s,20:1s", "--threshold", "recovery_s<5", "-q"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("--stages that rise from a baseline to a peak and drop back"), "{}", stderr(&o));
}

/// `engine target --http2` answers HTTP/2 by prior knowledge and HTTP/1.1 on one port, and
/// counts both: h2load (nghttp2's, an independent client) sends 4,000 requests over 4
/// connections of 10 streams each, curl one over HTTP/1.1 and one over h2c. Over TLS the same,
/// by ALPN.
#[test]
fn the_target_answers_http2_beside_http1_and_counts_both() {
    require!("h2load", "curl");
    let mut cfg = TargetConfig::loopback(Duration::ZERO).unwrap();
    cfg.http2 = true;
    let t = Target::start(cfg).unwrap();
    let url = format!("http://{}/", t.local_addr());
    let o = Command::new("h2load").args(["-c", "4", "-m", "10", "-n", "4000", &url]).output().unwrap();
    let report = String::from_utf8_lossy(&o.stdout);
    assert!(report.contains("4000 succeeded, 0 failed, 0 errored"), "{report}");
    assert!(report.contains("status codes: 4000 2xx"), "{report}");
    let curl = |args: &[&str]| {
        let o = Command::new("curl").args(["-s", "-w", " %{http_version}"]).args(args).arg(&url).output().unwrap();
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    assert_eq!(curl(&[]), "ok 1.1");
    assert_eq!(curl(&["--http2-prior-knowledge", "-X", "POST", "--data", "a body"]), "ok 2");
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(t.served(), 4002);
    // Garbage after the preface ends that connection; one that stalls after it does not hold
    // the target's stop.
    use std::io::{Read, Write};
    let mut bad = std::net::TcpStream::connect(t.local_addr()).unwrap();
    bad.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\nthis is not a frame at all").unwrap();
    bad.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let mut rest = Vec::new();
    assert!(bad.read_to_end(&mut rest).is_ok(), "the target closes a connection it cannot read");
    let mut stalled = std::net::TcpStream::connect(t.local_addr()).unwrap();
    stalled.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").unwrap();
    std::thread::sleep(Duration::from_millis(50));
    let stopping = Instant::now();
    t.stop();
    assert!(stopping.elapsed() < Duration::from_secs(1), "{:?}", stopping.elapsed());

    let mut cfg = TargetConfig::loopback(Duration::ZERO).unwrap();
    cfg.http2 = true;
    cfg.tls = Some(engine_tls::self_signed(&["127.0.0.1"]).unwrap().0);
    let t = Target::start(cfg).unwrap();
    let url = format!("https://{}/", t.local_addr());
    let o = Command::new("h2load").args(["-c", "4", "-m", "10", "-n", "4000", &url]).output().unwrap();
    let report = String::from_utf8_lossy(&o.stdout);
    assert!(
        report.contains("4000 succeeded, 0 failed, 0 errored") && report.contains("Application protocol: h2"),
        "{report}"
    );
    let curl = |args: &[&str]| {
        let o = Command::new("curl").args(["-sk", "-w", " %{http_version}"]).args(args).arg(&url).output().unwrap();
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    assert_eq!((curl(&["--http1.1"]), curl(&["--http2"])), ("ok 1.1".to_string(), "ok 2".to_string()));
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(t.served(), 4002);
}
