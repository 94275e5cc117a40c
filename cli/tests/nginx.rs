//! Acceptance against a real nginx on loopback: ground truth and 10,000 connections.
//! nginx comes from Debian's `nginx-light`; `.ci/run` installs it when missing.

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

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
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
// The child is reaped with wait4, which also gives its peak RSS; clippy cannot see that.
#[allow(clippy::zombie_processes)]
fn blast(args: &[&str]) -> (serde_json::Value, u64) {
    let child = Command::new(env!("CARGO_BIN_EXE_engine"))
        .args(args)
        .args(["--json", "-", "-q"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id() as i32;
    let mut stdout = child.stdout.unwrap();
    let mut stderr = child.stderr.unwrap();
    let err_reader = std::thread::spawn(move || {
        let mut e = String::new();
        let _ = stderr.read_to_string(&mut e);
        e
    });
    let mut out = String::new();
    stdout.read_to_string(&mut out).unwrap();
    let mut status = 0;
    // SAFETY: an all-zero rusage is valid; wait4 fills it for the child we started.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    assert_eq!(rc, pid);
    let err = err_reader.join().unwrap();
    assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0, "engine failed: {err}");
    (serde_json::from_str(&out).expect("summary JSON on stdout"), usage.ru_maxrss as u64)
}

#[test]
fn requests_equal_nginx_served() {
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
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let nginx = Nginx::start();
    // A saturated nginx accepts slowly; a connect timeout above the kernel's third SYN
    // retransmit (1 + 2 + 4 s) keeps a late accept from becoming a connect error.
    let cpus = engine_core::affinity::allowed_cpus().unwrap();
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
    // Up through the ramp (a saturated nginx accepts late, so open may trail the target),
    // held, and down to none.
    assert!(open[0] > 500 && open[0] < open[2] && open[2] < open[5], "{open:?}");
    assert!(v["connections"]["peak_open"].as_u64().unwrap() >= 9_000, "{v}");
    assert_eq!(target[6], 10_000.0, "{target:?}");
    assert!(open[10] < open[9] && open[9] < open[8], "{open:?}");
    assert_eq!(*open.last().unwrap(), 0, "{open:?}");
}
