//! Acceptance against a real nginx on loopback: ground truth and 10,000 connections.
//! nginx comes from Debian's `nginx-light`; `.ci/run` installs it when missing.

// A test reads as one story from setup to the last assertion; the CLI's 60-line limit
// (cli/clippy.toml) is for its code.
#![allow(clippy::too_many_lines)]

mod ports;
#[macro_use]
mod require;

use ports::free_port;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The tests in this file share the machine's two cores; one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

struct Nginx {
    child: Child,
    port: u16,
    status_port: u16,
    prefix: PathBuf,
}

fn nginx_binary() -> PathBuf {
    for p in ["/usr/sbin/nginx", "/usr/local/sbin/nginx", "/usr/bin/nginx"] {
        if Path::new(p).exists() {
            return p.into();
        }
    }
    panic!("nginx not found: install it (apt-get install -y nginx-light); .ci/run does");
}

impl Nginx {
    fn start() -> Nginx {
        let (port, status_port) = (free_port(), free_port());
        let prefix = std::env::temp_dir().join(format!("engine-nginx-{}-{port}", std::process::id()));
        std::fs::create_dir_all(prefix.join("logs")).unwrap();
        let conf = format!(
            r#"worker_processes 1;
worker_cpu_affinity 01;
worker_rlimit_nofile 20000;
daemon off;
pid logs/nginx.pid;
error_log logs/error.log warn;
events {{ worker_connections 19000; }}
http {{
    access_log off;
    keepalive_requests 1000000;
    keepalive_timeout 300s;
    client_body_temp_path logs/cb; proxy_temp_path logs/p; fastcgi_temp_path logs/f;
    uwsgi_temp_path logs/u; scgi_temp_path logs/s;
    server {{ listen 127.0.0.1:{port} backlog=4096; location / {{ return 200 "ok"; }} }}
    server {{ listen 127.0.0.1:{status_port}; location = /nginx_status {{ stub_status; }} }}
}}
"#
        );
        std::fs::write(prefix.join("nginx.conf"), conf).unwrap();
        let child = Command::new(nginx_binary())
            .arg("-p")
            .arg(&prefix)
            .arg("-c")
            .arg(prefix.join("nginx.conf"))
            .arg("-e")
            .arg(prefix.join("logs/error.log"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nginx starts");
        let n = Nginx { child, port, status_port, prefix };
        let deadline = Instant::now() + Duration::from_secs(10);
        while n.status().is_none() {
            assert!(Instant::now() < deadline, "nginx did not answer; see {}", n.prefix.display());
            std::thread::sleep(Duration::from_millis(50));
        }
        n
    }

    /// `(active connections, requests served)` from stub_status; the status request counts
    /// itself in both.
    fn status(&self) -> Option<(u64, u64)> {
        let mut s = TcpStream::connect(("127.0.0.1", self.status_port)).ok()?;
        s.write_all(b"GET /nginx_status HTTP/1.0\r\n\r\n").ok()?;
        let mut text = String::new();
        s.read_to_string(&mut text).ok()?;
        let body = text.split("\r\n\r\n").nth(1)?;
        let active = body.lines().next()?.split_whitespace().last()?.parse().ok()?;
        let requests = body.lines().nth(2)?.split_whitespace().nth(2)?.parse().ok()?;
        Some((active, requests))
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/", self.port)
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // SAFETY: SIGTERM to the nginx master we started.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.prefix);
    }
}

/// Runs the engine to completion; returns its JSON summary and peak RSS in KiB.
///
/// The peak is sampled from /proc/PID/status (VmHWM) while the engine runs. The kernel's own
/// figure for a child (wait4's ru_maxrss) carries the RSS the process had before exec, which
/// for a child of this test binary is the test binary's: a busy test process made a 33 MiB
/// blast read as 86 MiB.
fn blast(args: &[&str]) -> (serde_json::Value, u64) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_engine"))
        .args(args)
        .args(["--json", "-", "-q"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let peak = Arc::new(AtomicU64::new(0));
    let sampler = {
        let peak = peak.clone();
        std::thread::spawn(move || loop {
            let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else { return };
            let Some(hwm) = status.lines().find(|l| l.starts_with("VmHWM:")) else { return };
            let kib: u64 = hwm.split_whitespace().nth(1).and_then(|v| v.parse().ok()).unwrap_or(0);
            peak.fetch_max(kib, Ordering::Relaxed);
            std::thread::sleep(std::time::Duration::from_millis(20));
        })
    };
    let mut stderr = child.stderr.take().unwrap();
    let err_reader = std::thread::spawn(move || {
        let mut e = String::new();
        let _ = stderr.read_to_string(&mut e);
        e
    });
    let mut out = String::new();
    child.stdout.take().unwrap().read_to_string(&mut out).unwrap();
    let status = child.wait().unwrap();
    sampler.join().unwrap();
    let err = err_reader.join().unwrap();
    assert!(status.success(), "engine failed: {err}");
    (serde_json::from_str(&out).expect("summary JSON on stdout"), peak.load(Ordering::Relaxed))
}

#[test]
fn requests_equal_nginx_served() {
    require!("nginx");
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let nginx = Nginx::start();
    let (_, before) = nginx.status().unwrap();
    let (v, _) = blast(&["blast", &nginx.url(), "-c", "64", "-d", "5s"]);
    let (_, after) = nginx.status().unwrap();
    let served = after - before - 1;
    let requests = v["requests"].as_u64().unwrap();
    assert_eq!(v["errors"]["total"], 0, "{v}");
    assert!(requests > 10_000, "{requests}");
    // Equal but for requests still in flight when the run ended.
    assert!(served >= requests && served - requests <= 64, "nginx served {served}, engine counted {requests}");
    assert_eq!(served - requests, v["abandoned"].as_u64().unwrap(), "every difference is an abandoned request");
}

#[test]
fn ten_thousand_connections_in_40_mib() {
    require!("nginx");
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let nginx = Arc::new(Nginx::start());
    let stop = Arc::new(AtomicBool::new(false));
    let peak = Arc::new(AtomicU64::new(0));
    let watcher = {
        let (nginx, stop, peak) = (nginx.clone(), stop.clone(), peak.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                if let Some((active, _)) = nginx.status() {
                    peak.fetch_max(active, Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_millis(200));
            }
        })
    };
    let (_, before) = nginx.status().unwrap();
    let (v, rss_kib) = blast(&["blast", &nginx.url(), "-c", "10000", "-d", "4s"]);
    stop.store(true, Ordering::Relaxed);
    watcher.join().unwrap();
    let (_, after) = nginx.status().unwrap();
    let requests = v["requests"].as_u64().unwrap();
    assert_eq!(v["errors"]["total"], 0, "{v}");
    assert_eq!(v["connections"]["opened"], 10_000);
    assert_eq!(v["connections"]["peak_open"], 10_000);
    // stub_status counts its own connection too, but an engine connection may sit in the
    // accept queue at the moment of a sample.
    assert!(peak.load(Ordering::Relaxed) >= 10_000, "nginx saw at most {} connections", peak.load(Ordering::Relaxed));
    let served = after - before - 1;
    assert!(served >= requests, "nginx served {served}, engine counted {requests}");
    assert!(rss_kib <= 40 * 1024, "peak RSS {rss_kib} KiB is over 40 MiB");
    eprintln!("10,000 connections: {requests} requests, peak RSS {rss_kib} KiB");
}

#[test]
fn stages_ramp_to_ten_thousand_and_back() {
    require!("nginx");
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let nginx = Nginx::start();
    // A saturated nginx accepts slowly; a connect timeout above the kernel's third SYN
    // retransmit (1 + 2 + 4 s) keeps a late accept from becoming a connect error.
    let cpus = engine_runtime::affinity::allowed_cpus().unwrap();
    let last = cpus.last().unwrap().to_string();
    let (v, _) = blast(&[
        "blast",
        &nginx.url(),
        "--stages",
        "10000:6s,10000:3s,0:2s",
        "--connect-timeout",
        "10s",
        "--cores",
        &last,
    ]);
    assert_eq!(v["errors"]["total"], 0, "{v}");
    let points = v["timeseries"].as_array().unwrap();
    let open: Vec<u64> = points.iter().map(|p| p["open"].as_u64().unwrap()).collect();
    let target: Vec<f64> = points.iter().map(|p| p["target"].as_f64().unwrap()).collect();
    eprintln!("open {open:?}\ntarget {target:?}");
    // Up through the ramp, held, and down to none. A saturated nginx accepts late: connects
    // whose SYN it dropped land a second or three later (the kernel's retransmits), so open
    // trails the target on the way up and may still grow in the first second of the way
    // down (seen on the code before issue 27 too, 1 run in 4: open 8527 then 8651).
    assert!(open[0] > 500 && open[0] < open[2] && open[2] < open[5], "{open:?}");
    assert!(v["connections"]["peak_open"].as_u64().unwrap() >= 8_000, "{v}");
    assert_eq!(target[6], 10_000.0, "{target:?}");
    assert!(open[10] < open[8] && open[10] < open[9], "{open:?}");
    assert_eq!(*open.last().unwrap(), 0, "{open:?}");
}

/// Unix seconds `ahead` from now, as `--start-at` takes them.
fn start_at(ahead: Duration) -> String {
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap() + ahead;
    format!("{:.3}", t.as_secs_f64())
}

/// Workers `0..n` of one plan, started together; waits for all and returns their exit codes.
fn workers(dir: &Path, n: u32, args: &[&str]) -> Vec<Option<i32>> {
    let at = start_at(Duration::from_millis(1500));
    let children: Vec<Child> = (0..n)
        .map(|i| {
            Command::new(env!("CARGO_BIN_EXE_engine"))
                .current_dir(dir)
                .args(args)
                .args(["--worker-index", &i.to_string(), "--worker-count", &n.to_string(), "--start-at", &at, "-q"])
                .args(["--out", &format!("w{i}")])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    children.into_iter().map(|mut c| c.wait().unwrap().code()).collect()
}

/// Every corrected interval histogram of a latency.hlog, added.
fn hlog_union(paths: &[PathBuf]) -> hdrhistogram::Histogram<u64> {
    use base64::Engine as _;
    use hdrhistogram::serialization::interval_log::{IntervalLogIterator, LogEntry};
    let mut all = hdrhistogram::Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3).unwrap();
    let mut de = hdrhistogram::serialization::Deserializer::new();
    for p in paths {
        let bytes = std::fs::read(p).unwrap();
        for e in IntervalLogIterator::new(&bytes) {
            if let Ok(LogEntry::Interval(h)) = e {
                if h.tag().is_none() {
                    let raw = base64::engine::general_purpose::STANDARD.decode(h.encoded_histogram()).unwrap();
                    let hist: hdrhistogram::Histogram<u64> = de.deserialize(&mut raw.as_slice()).unwrap();
                    all.add(&hist).unwrap();
                }
            }
        }
    }
    all
}

#[test]
fn three_workers_merge_into_one_honest_run() {
    require!("nginx");
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let nginx = Nginx::start();
    let dir = std::env::temp_dir().join(format!("engine-workers-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let before = nginx.status().unwrap().1;
    let codes = workers(&dir, 3, &["blast", &nginx.url(), "-c", "30", "-d", "3s"]);
    assert_eq!(codes, vec![Some(0); 3]);
    let served = nginx.status().unwrap().1 - before - 1;
    for i in 0..3 {
        let s: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join(format!("w{i}/summary.json"))).unwrap()).unwrap();
        assert_eq!(s["conns"], 10, "each worker takes a third of the connections");
        assert_eq!(s["worker"]["index"], i);
        assert!(s["warnings"].as_array().unwrap().is_empty(), "{}", s["warnings"]);
    }
    let o = Command::new(env!("CARGO_BIN_EXE_engine"))
        .current_dir(&dir)
        .args(["report", "merge", "w0", "w1", "w2", "--out", "merged", "--threshold", "error_rate<1%"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
    let m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("merged/summary.json")).unwrap()).unwrap();
    let requests = m["requests"].as_u64().unwrap();
    // Ground truth: what nginx served is what the workers completed, plus at most the 30
    // requests in flight when they stopped.
    assert!(served >= requests && served - requests <= 30, "nginx served {served}, merged {requests}");
    assert_eq!(m["errors"]["total"], 0);
    assert_eq!(m["conns"], 30);
    assert_eq!(m["thresholds"][0]["expr"], "error_rate<1%");
    // Exact: the merged p99 is the p99 of the union of every sample, not an average.
    let union = hlog_union(&(0..3).map(|i| dir.join(format!("w{i}/latency.hlog"))).collect::<Vec<_>>());
    assert_eq!(union.len(), requests);
    assert_eq!(m["latency_ms"]["p99"].as_f64().unwrap(), union.value_at_quantile(0.99) as f64 / 1000.0);
    assert_eq!(m["latency_ms"]["max"].as_f64().unwrap(), union.max() as f64 / 1000.0);
    // The merged folder is a results folder like a single run's, its log included.
    for f in ["summary.json", "summary.md", "timeseries.csv", "latency.hlog", "run.log", "report.html"] {
        assert!(dir.join("merged").join(f).exists(), "{f}");
    }
    assert_eq!(hlog_union(&[dir.join("merged/latency.hlog")]).value_at_quantile(0.99), union.value_at_quantile(0.99));
    let series = m["timeseries"].as_array().unwrap();
    assert!(series.len() >= 3 && series[0]["target"] == 30.0, "{series:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_rate_split_over_three_workers_is_the_whole_rate() {
    require!("nginx");
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let nginx = Nginx::start();
    let dir = std::env::temp_dir().join(format!("engine-rate-workers-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let before = nginx.status().unwrap().1;
    let codes = workers(&dir, 3, &["blast", &nginx.url(), "--rate", "6000", "-c", "30", "-d", "5s"]);
    assert_eq!(codes, vec![Some(0); 3]);
    let served = nginx.status().unwrap().1 - before - 1;
    let per_s = served as f64 / 5.0;
    assert!((per_s - 6000.0).abs() <= 60.0, "nginx saw {per_s} req/s from three workers at 2000/s each");
    // A worker that starts after --start-at says by how much.
    let (s, _) = blast(&[
        "blast",
        &nginx.url(),
        "-c",
        "1",
        "-d",
        "200ms",
        "--start-at",
        "1",
        "--out",
        dir.join("late").to_str().unwrap(),
    ]);
    let warnings = s["warnings"].to_string();
    assert!(warnings.contains("after --start-at"), "{warnings}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// In a network namespace of its own (so its sysctl touches nothing else), with 500
/// ephemeral ports per source address: 1,200 connections to one nginx port are refused from
/// one address and held from three.
#[test]
fn source_ips_hold_more_connections_than_one_address_has_ports() {
    require!("root", "nginx");
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = std::env::temp_dir().join(format!("engine-netns-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("logs")).unwrap();
    std::fs::write(
        dir.join("nginx.conf"),
        "worker_processes 1;\ndaemon off;\npid logs/nginx.pid;\nerror_log logs/error.log warn;\nworker_rlimit_nofile 5000;\n\
         events { worker_connections 4000; }\nhttp { access_log off; keepalive_requests 1000000; keepalive_timeout 300s;\n\
         client_body_temp_path logs/cb; proxy_temp_path logs/p; fastcgi_temp_path logs/f; uwsgi_temp_path logs/u; scgi_temp_path logs/s;\n\
         server { listen 127.0.0.1:8080 backlog=4096; location / { return 200 \"ok\"; } } }\n",
    )
    .unwrap();
    let script = format!(
        r#"set -e
ip link set lo up
echo "40000 40499" > /proc/sys/net/ipv4/ip_local_port_range
{nginx} -p {dir} -c {dir}/nginx.conf -e {dir}/logs/error.log &
NGINX=$!
trap 'kill $NGINX' EXIT
for i in $(seq 50); do (echo > /dev/tcp/127.0.0.1/8080) 2>/dev/null && break; sleep 0.1; done
set +e
{engine} blast http://127.0.0.1:8080/ -c 1200 -d 1s -q --out {dir}/one > /dev/null 2> {dir}/one.err
echo "one_address_exit=$?"
{engine} blast http://127.0.0.1:8080/ -c 1200 -d 3s -q --source-ips 127.0.0.1,127.0.0.2,127.0.0.3 --out {dir}/three --json {dir}/three.json > /dev/null 2> {dir}/three.err &
B=$!
sleep 2.5
echo "established=$(ss -Htn state established '( dport = :8080 )' | wc -l)"
echo "sources=$(ss -Htn state established '( dport = :8080 )' | awk '{{print $3}}' | cut -d: -f1 | sort -u | tr '\n' ' ')"
wait $B
echo "three_addresses_exit=$?"
"#,
        nginx = nginx_binary().display(),
        dir = dir.display(),
        engine = env!("CARGO_BIN_EXE_engine"),
    );
    let o = Command::new("unshare").args(["-n", "bash", "-c", &script]).output().expect("unshare runs (root)");
    let out = String::from_utf8_lossy(&o.stdout).to_string();
    let val = |k: &str| out.lines().find_map(|l| l.strip_prefix(&format!("{k}="))).unwrap_or("").trim().to_string();
    let err_one = std::fs::read_to_string(dir.join("one.err")).unwrap_or_default();
    assert_eq!(val("one_address_exit"), "2", "{out}{err_one}");
    assert!(err_one.contains("ephemeral ports") && err_one.contains("--source-ips"), "{err_one}");
    assert_eq!(
        val("three_addresses_exit"),
        "0",
        "{out}{}",
        std::fs::read_to_string(dir.join("three.err")).unwrap_or_default()
    );
    let established: u64 = val("established").parse().unwrap_or(0);
    // The engine's 1,200 client sockets (nginx's side of each is not "dport 8080").
    assert_eq!(established, 1200, "{out}");
    assert_eq!(val("sources"), "127.0.0.1 127.0.0.2 127.0.0.3", "{out}");
    let s: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(dir.join("three.json")).unwrap()).unwrap();
    assert_eq!(s["errors"]["total"], 0, "{}", s["errors"]);
    assert_eq!(s["connections"]["peak_open"], 1200);
    let _ = std::fs::remove_dir_all(&dir);
}

/// The generator watches itself: a closed-model blast at 64 connections on one CPU against
/// nginx on another keeps its shard on the CPU nearly all the time, and says the latency
/// includes its own queueing; an open-model blast at 1,000 req/s is far from that and says
/// nothing.
#[test]
fn a_saturated_generator_says_so_and_a_light_one_does_not() {
    require!("nginx");
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let nginx = Nginx::start();
    let cpus = engine_runtime::affinity::allowed_cpus().unwrap();
    // nginx runs on CPU 0 (worker_cpu_affinity); the blast on another one when there is one.
    let cpu = cpus.iter().find(|&&c| c != 0).copied().unwrap_or(cpus[0]).to_string();
    let run = |load: &[&str]| {
        let o = Command::new(env!("CARGO_BIN_EXE_engine"))
            .args(["blast", &nginx.url(), "-d", "3s", "--shards", "1", "--cores", &cpu, "--json", "-"])
            .args(load)
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        (v, String::from_utf8_lossy(&o.stderr).into_owned())
    };
    let (closed, err) = run(&["-c", "64"]);
    let shard = &closed["generator"]["shards"][0];
    assert!(shard["busy_max"].as_f64().unwrap() > 0.9, "{}", closed["generator"]);
    assert_eq!(closed["generator"]["saturated"], true);
    assert!(closed["warnings"].to_string().contains("the generator was saturated"), "{}", closed["warnings"]);
    assert!(err.contains("the generator is saturated"), "{err}");
    assert!(closed["timeseries"].as_array().unwrap().iter().any(|p| p["busy"].as_f64().unwrap() > 0.9));

    if cpus.len() < 2 {
        // The blast then waits for its CPU while nginx holds it: that is queueing too.
        eprintln!("skipped the light half: one CPU, shared with nginx");
        return;
    }
    let (open, err) = run(&["-R", "1000", "-c", "16"]);
    let shard = &open["generator"]["shards"][0];
    assert!(shard["busy_max"].as_f64().unwrap() < 0.5, "{}", open["generator"]);
    assert_eq!(open["generator"]["saturated"], false);
    assert!(!open["warnings"].to_string().contains("saturated"), "{}", open["warnings"]);
    assert!(!err.contains("saturated"), "{err}");
}
