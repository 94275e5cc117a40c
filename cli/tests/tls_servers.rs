//! The servers' side of TLS: `engine target --tls-cert/--tls-key`, and `engine proxy`
//! terminating TLS (with a SIGHUP reload that keeps open connections) and speaking TLS to an
//! https upstream (nginx), its pooled connections resuming their sessions. Counts are checked
//! against nginx's own.

mod ports;
#[macro_use]
mod require;

mod tls_support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tls_support::{blast, refused, Certs, Nginx};

/// A running `engine proxy` or `engine target`, its address and (proxy) admin address.
struct Running {
    child: Child,
    addr: SocketAddr,
    admin: Option<SocketAddr>,
    stdout: BufReader<std::process::ChildStdout>,
}

impl Running {
    fn start(args: &[&str]) -> Running {
        let mut child = Command::new(env!("CARGO_BIN_EXE_engine"))
            .args(args)
            .env_remove("RUST_BACKTRACE")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        let after = |marker: &str| {
            line.split(marker).nth(1).and_then(|s| s.split('/').next()).map(|a| a.parse::<SocketAddr>().unwrap())
        };
        let addr = after("https://").unwrap_or_else(|| panic!("no https:// address in {line:?}"));
        Running { admin: after("admin http://"), addr, child, stdout }
    }

    fn signal(&self, sig: i32) {
        // SAFETY: a signal to the child we started.
        unsafe { libc::kill(self.child.id() as i32, sig) };
    }

    /// The next line on stdout, within 5 s.
    fn line(&mut self) -> String {
        let mut line = String::new();
        self.stdout.read_line(&mut line).unwrap();
        line
    }

    fn stats(&self) -> serde_json::Value {
        let mut s = TcpStream::connect(self.admin.unwrap()).unwrap();
        s.write_all(b"GET /stats HTTP/1.0\r\nHost: localhost\r\n\r\n").unwrap();
        let mut text = String::new();
        s.read_to_string(&mut text).unwrap();
        serde_json::from_str(text.split("\r\n\r\n").nth(1).unwrap()).unwrap()
    }

    fn metrics(&self) -> String {
        let mut s = TcpStream::connect(self.admin.unwrap()).unwrap();
        s.write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n").unwrap();
        let mut text = String::new();
        s.read_to_string(&mut text).unwrap();
        text
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Published proxy figures lag by up to half a second.
fn settled_stats(p: &Running, done: impl Fn(&serde_json::Value) -> bool) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let s = p.stats();
        if done(&s) || Instant::now() > deadline {
            return s;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn engine_target_serves_https_and_every_response_is_counted() {
    let certs = Certs::make("target");
    let (cert, key, ca) = (certs.path("server.pem"), certs.path("server.key"), certs.path("ca.pem"));
    let mut t =
        Running::start(&["target", "--listen", "127.0.0.1:0", "--shards", "1", "--tls-cert", &cert, "--tls-key", &key]);
    let url = format!("https://{}/", t.addr);
    let s = blast(&url, &["--cacert", &ca, "-c", "8", "-d", "1s"], &certs.dir.join("out"));
    assert_eq!(s["errors"]["total"], 0, "{s}");
    assert_eq!(s["tls"]["version"], "TLSv1.3", "{s}");
    // Closed connections resume: a handshake-capacity run against the target.
    let hs = blast(&url, &["--cacert", &ca, "-c", "4", "-d", "1s", "-H", "Connection: close"], &certs.dir.join("out2"));
    assert_eq!(hs["errors"]["total"], 0, "{hs}");
    assert!(hs["tls"]["handshakes_resumed"].as_u64().unwrap() > 10, "{hs}");
    t.signal(libc::SIGINT);
    let stopped = t.line();
    // "engine target stopped after N responses": the blasts' requests plus their pre-flights.
    let served: u64 =
        stopped.split_whitespace().nth(4).and_then(|n| n.parse().ok()).unwrap_or_else(|| panic!("{stopped}"));
    let sent = s["requests"].as_u64().unwrap() + hs["requests"].as_u64().unwrap();
    assert!((sent..=sent + 2).contains(&served), "target served {served}, blasts completed {sent}");

    let wrong = Command::new(env!("CARGO_BIN_EXE_engine"))
        .args(["target", "--listen", "127.0.0.1:0", "--tls-cert", &ca, "--tls-key", &ca])
        .output()
        .unwrap();
    assert_eq!(wrong.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&wrong.stderr).contains("private key"), "{wrong:?}");
}

#[test]
fn the_proxy_terminates_tls_and_speaks_tls_to_an_https_upstream() {
    require!("nginx");
    let certs = Certs::make("proxy");
    let n = Nginx::start(&certs);
    let (cert, key, ca) = (certs.path("server.pem"), certs.path("server.key"), certs.path("ca.pem"));
    let upstream = format!("https://127.0.0.1:{}", n.good);
    let p = Running::start(&[
        "proxy",
        "--listen",
        "127.0.0.1:0",
        "--admin",
        "127.0.0.1:0",
        "--shards",
        "1",
        "--upstream",
        &upstream,
        "--upstream-ca",
        &ca,
        "--tls-cert",
        &cert,
        "--tls-key",
        &key,
    ]);
    let url = format!("https://{}/", p.addr);
    let before = n.served().unwrap();
    let s = blast(&url, &["--cacert", &ca, "-c", "8", "-d", "2s"], &certs.dir.join("out"));
    let served = n.served().unwrap() - before - 1;
    assert_eq!(s["errors"]["total"], 0, "{s}");
    // The pre-flight is a handshake only: every request nginx served is one the blast counted.
    assert_eq!(served, s["requests"].as_u64().unwrap(), "nginx vs blast: {s}");
    let st = settled_stats(&p, |st| st["requests"].as_u64() == Some(served));
    assert_eq!(st["requests"].as_u64(), Some(served), "{st}");
    let down = &st["tls"]["downstream"];
    // Nine clients: the pre-flight's and the blast's eight.
    assert_eq!(down["handshakes_full"].as_u64().unwrap() + down["handshakes_resumed"].as_u64().unwrap(), 9, "{st}");
    let up = &st["tls"]["upstream"];
    let up_handshakes = up["handshakes_full"].as_u64().unwrap() + up["handshakes_resumed"].as_u64().unwrap();
    assert!((1..=9).contains(&up_handshakes), "kept-alive upstream connections: {st}");
    assert!(up["handshake_ms"]["p50"].as_f64().unwrap() > 0.0, "{st}");
    // The upstream's own latency does not hold the handshakes: the total stays below them.
    let m = p.metrics();
    for want in [
        "engine_proxy_tls_handshakes_total{side=\"upstream\",kind=\"full\"}",
        "engine_proxy_upstream_tls_handshake_seconds_count",
        "engine_proxy_tls_errors_total{side=\"downstream\",reason=\"certificate\"} 0",
    ] {
        assert!(m.contains(want), "{want} not in /metrics:\n{m}");
    }
    // A client that does not trust the proxy's certificate: exit 3 for it, a counted
    // certificate alert for the proxy.
    let line = refused(&url, &[]);
    assert!(line.contains("--cacert"), "{line}");
    let st = settled_stats(&p, |st| st["tls"]["downstream"]["errors"]["alert"].as_u64() > Some(0));
    assert_eq!(st["tls"]["downstream"]["errors"]["alert"], 1, "{st}");
}

#[test]
fn pooled_upstream_connections_resume_their_sessions() {
    require!("nginx");
    let certs = Certs::make("resume");
    let n = Nginx::start(&certs);
    let ca = certs.path("ca.pem");
    // nginx closes every connection after one response: each request opens a new one.
    let upstream = format!("https://localhost:{}", n.oneshot);
    let p = Running::start(&[
        "proxy",
        "--listen",
        "127.0.0.1:0",
        "--admin",
        "127.0.0.1:0",
        "--shards",
        "1",
        "--upstream",
        &upstream,
        "--upstream-ca",
        &ca,
        "--tls-cert",
        &certs.path("server.pem"),
        "--tls-key",
        &certs.path("server.key"),
    ]);
    let s = blast(&format!("https://{}/", p.addr), &["--cacert", &ca, "-c", "4", "-d", "1s"], &certs.dir.join("o"));
    assert_eq!(s["errors"]["total"], 0, "{s}");
    let requests = s["requests"].as_u64().unwrap();
    // Settled when every request's response is counted too: a snapshot taken as the last
    // requests arrived once had their upstream handshakes still under way (324 of 328).
    let st = settled_stats(&p, |st| {
        st["requests"].as_u64() == Some(requests) && st["responses"]["2xx"].as_u64() == Some(requests)
    });
    let up = &st["tls"]["upstream"];
    let (full, resumed) = (up["handshakes_full"].as_u64().unwrap(), up["handshakes_resumed"].as_u64().unwrap());
    assert_eq!(full + resumed, requests, "one upstream handshake per request: {st}");
    assert!(full <= 4 && resumed >= requests - 4, "sessions resumed: {full} full, {resumed} resumed");
}

#[test]
fn sighup_reloads_the_certificate_without_dropping_connections() {
    require!("nginx");
    let certs = Certs::make("reload");
    let other = Certs::make("reload-other");
    let dir = certs.dir.join("live");
    std::fs::create_dir_all(&dir).unwrap();
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::copy(certs.path("server.pem"), &cert).unwrap();
    std::fs::copy(certs.path("server.key"), &key).unwrap();
    let n = Nginx::start(&certs);
    let (old_ca, new_ca) = (certs.path("ca.pem"), other.path("ca.pem"));
    let mut p = Running::start(&[
        "proxy",
        "--listen",
        "127.0.0.1:0",
        "--admin",
        "127.0.0.1:0",
        "--shards",
        "1",
        "--upstream",
        &format!("127.0.0.1:{}", n.status),
        "--tls-cert",
        cert.to_str().unwrap(),
        "--tls-key",
        key.to_str().unwrap(),
    ]);
    let url = format!("https://{}/nginx_status", p.addr);
    // A blast on kept-alive connections across the reload: none of them may fail or reconnect.
    let blast_out = certs.dir.join("across");
    let across = Command::new(env!("CARGO_BIN_EXE_engine"))
        .args(["blast", &url, "--shards", "1", "-q", "--json", "-", "-c", "4", "-d", "3s", "--cacert", &old_ca])
        .arg("--out")
        .arg(&blast_out)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1200));
    std::fs::copy(other.path("server.pem"), &cert).unwrap();
    std::fs::copy(other.path("server.key"), &key).unwrap();
    p.signal(libc::SIGHUP);
    let said = p.line();
    assert!(said.contains("reloaded"), "{said}");
    let o = across.wait_with_output().unwrap();
    let s: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(s["errors"]["total"], 0, "{s}");
    assert_eq!(s["connections"]["opened"], 4, "no connection was dropped: {s}");
    std::thread::sleep(Duration::from_millis(200));
    // New handshakes present the new certificate.
    let s = blast(&url, &["--cacert", &new_ca, "-c", "1", "-d", "300ms"], &certs.dir.join("new"));
    assert_eq!(s["errors"]["total"], 0, "{s}");
    let line = refused(&url, &["--cacert", &old_ca]);
    assert!(line.contains("certificate"), "{line}");
    // A reload that fails keeps the certificate in force.
    std::fs::write(&key, "not a key").unwrap();
    p.signal(libc::SIGHUP);
    std::thread::sleep(Duration::from_millis(300));
    let s = blast(&url, &["--cacert", &new_ca, "-c", "1", "-d", "300ms"], &certs.dir.join("kept"));
    assert_eq!(s["errors"]["total"], 0, "{s}");
}
