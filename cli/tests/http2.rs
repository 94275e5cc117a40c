//! HTTP/2 against a real nginx (issue 30): h2c by prior knowledge, h2 over TLS by ALPN, a
//! TLS listener that speaks only HTTP/1.1, GOAWAY after `keepalive_requests`, and a server
//! that allows 5 streams a connection. One nginx serves every test of this binary (its
//! listeners side by side); stub_status counts what it served, all listeners together, so
//! the tests take turns.

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
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// stub_status counts every listener's requests: one blast at a time.
static SERIAL: Mutex<()> = Mutex::new(());
static NGINX: OnceLock<Nginx> = OnceLock::new();

struct Nginx {
    h2c: u16,
    h2: u16,
    h1_tls: u16,
    goaway: u16,
    five: u16,
    status: u16,
    cacert: PathBuf,
}

fn nginx_binary() -> PathBuf {
    require::find(&["/usr/sbin/nginx", "/usr/local/sbin/nginx", "nginx"])
        .expect("nginx not found: install it (apt-get install -y nginx-light); .ci/run does")
}

/// The rig's test certificate (for 127.0.0.1 and localhost), checked in.
fn rig_tls() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../benches/rig/tls")
}

/// One nginx process (`master_process off`) that dies with this test binary.
fn nginx() -> &'static Nginx {
    NGINX.get_or_init(|| {
        let n = Nginx {
            h2c: free_port(),
            h2: free_port(),
            h1_tls: free_port(),
            goaway: free_port(),
            five: free_port(),
            status: free_port(),
            cacert: rig_tls().join("cert.pem"),
        };
        let prefix = std::env::temp_dir().join(format!("engine-h2-nginx-{}", std::process::id()));
        std::fs::create_dir_all(prefix.join("logs")).unwrap();
        let tls = rig_tls();
        let (cert, key) = (tls.join("cert.pem"), tls.join("key.pem"));
        let ssl = format!("ssl_certificate {}; ssl_certificate_key {};", cert.display(), key.display());
        let conf = format!(
            r#"master_process off;
daemon off;
worker_rlimit_nofile 4096;
pid logs/nginx.pid;
error_log logs/error.log warn;
events {{ worker_connections 2048; }}
http {{
    access_log off;
    keepalive_requests 1000000;
    keepalive_timeout 300s;
    client_body_temp_path logs/cb; proxy_temp_path logs/p; fastcgi_temp_path logs/f;
    uwsgi_temp_path logs/u; scgi_temp_path logs/s;
    server {{ listen 127.0.0.1:{h2c} http2; location / {{ return 200 "ok"; }} }}
    server {{ listen 127.0.0.1:{h2} ssl http2; {ssl} location / {{ return 200 "ok"; }} }}
    server {{ listen 127.0.0.1:{h1_tls} ssl; {ssl} location / {{ return 200 "ok"; }} }}
    server {{ listen 127.0.0.1:{goaway} http2; keepalive_requests 1000; location / {{ return 200 "ok"; }} }}
    server {{ listen 127.0.0.1:{five} http2; http2_max_concurrent_streams 5; location / {{ return 200 "ok"; }} }}
    server {{ listen 127.0.0.1:{status}; location = /nginx_status {{ stub_status; }} }}
}}
"#,
            h2c = n.h2c,
            h2 = n.h2,
            h1_tls = n.h1_tls,
            goaway = n.goaway,
            five = n.five,
            status = n.status,
        );
        std::fs::write(prefix.join("nginx.conf"), conf).unwrap();
        let mut cmd = Command::new(nginx_binary());
        cmd.arg("-p")
            .arg(&prefix)
            .arg("-c")
            .arg(prefix.join("nginx.conf"))
            .arg("-e")
            .arg(prefix.join("logs/error.log"));
        // The keeper thread never ends, so the server lives as long as this binary.
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _nginx = Killed(dies_with_us(&mut cmd));
            let _ = tx.send(());
            loop {
                std::thread::park();
            }
        });
        rx.recv().unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while n.served().is_none() {
            assert!(Instant::now() < deadline, "nginx did not answer; see {}", prefix.display());
            std::thread::sleep(Duration::from_millis(50));
        }
        n
    })
}

/// A child killed and reaped when dropped.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts a child that dies with this process (not with the test that started it).
fn dies_with_us(cmd: &mut Command) -> Child {
    use std::os::unix::process::CommandExt;
    // SAFETY: prctl is async-signal-safe, and the closure touches nothing else.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    cmd.stdout(Stdio::null()).stderr(Stdio::null()).spawn().expect("nginx starts")
}

impl Nginx {
    /// Requests served so far (stub_status; the status request counts itself).
    fn served(&self) -> Option<u64> {
        let mut s = TcpStream::connect(("127.0.0.1", self.status)).ok()?;
        s.write_all(b"GET /nginx_status HTTP/1.0\r\n\r\n").ok()?;
        let mut text = String::new();
        s.read_to_string(&mut text).ok()?;
        let body = text.split("\r\n\r\n").nth(1)?;
        body.lines().nth(2)?.split_whitespace().nth(2)?.parse().ok()
    }

    /// Runs a blast; returns its summary and what nginx served meanwhile.
    fn blast(&self, args: &[&str]) -> (serde_json::Value, u64) {
        let before = self.served().unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_engine"))
            .arg("blast")
            .args(args)
            .args(["--json", "-", "-q", "--shards", "1"])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "engine failed: {err}");
        let summary: serde_json::Value = serde_json::from_slice(&out.stdout).expect("summary JSON");
        // Less the status request that asks.
        (summary, self.served().unwrap() - before - 1)
    }
}

/// Every request ended well, and each one nginx served was measured (a stream still in
/// flight at the end may have been served, never measured: at most one per stream).
fn served_as_counted(s: &serde_json::Value, served: u64, in_flight: u64, what: &str) {
    let requests = s["requests"].as_u64().unwrap();
    assert_eq!(s["errors"]["total"], 0, "{what}: {}", s["errors"]);
    assert!(requests > 1000, "{what}: {requests} requests");
    assert!(
        requests <= served && served - requests <= in_flight,
        "{what}: engine counted {requests}, nginx served {served}"
    );
    assert_eq!(s["abandoned"].as_u64().unwrap(), served - requests, "{what}: served but unmeasured");
}

#[test]
fn http2_requests_equal_nginx_served_over_h2c_and_tls() {
    require!("nginx");
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let n = nginx();
    let ca = n.cacert.to_str().unwrap();
    let h2c = format!("http://127.0.0.1:{}/", n.h2c);
    let (s, served) = n.blast(&[&h2c, "--http2-prior-knowledge", "-c", "64", "--streams", "10", "-d", "2s"]);
    served_as_counted(&s, served, 640, "h2c");
    assert_eq!(s["http2"]["mode"], "h2c");
    assert_eq!(s["http2"]["streams"], 10);
    assert_eq!(s["http2"]["connections"], serde_json::json!({"h2": 64}));
    assert_eq!(s["connections"]["opened"], 64);

    let h2 = format!("https://127.0.0.1:{}/", n.h2);
    let (s, served) = n.blast(&[&h2, "--http2", "--cacert", ca, "-c", "64", "--streams", "10", "-d", "2s"]);
    served_as_counted(&s, served, 640, "h2 over TLS");
    assert_eq!(s["http2"]["mode"], "h2,http/1.1");
    assert_eq!(s["http2"]["connections"], serde_json::json!({"h2": 64}));
    assert_eq!(s["tls"]["handshakes_full"].as_u64().unwrap() + s["tls"]["handshakes_resumed"].as_u64().unwrap(), 64);

    // A server that chooses HTTP/1.1: each connection carries one request at a time, and the
    // summary says what was spoken.
    let h1 = format!("https://127.0.0.1:{}/", n.h1_tls);
    let (s, served) = n.blast(&[&h1, "--http2", "--cacert", ca, "-c", "16", "--streams", "10", "-d", "2s"]);
    served_as_counted(&s, served, 16, "--http2 to an HTTP/1.1 server");
    assert_eq!(s["http2"]["connections"], serde_json::json!({"http/1.1": 16}));

    // A ramp: connections (with all their streams) are admitted and let go together.
    let (s, served) =
        n.blast(&[&h2c, "--http2-prior-knowledge", "--streams", "4", "--stages", "8:1s,8:500ms,2:1s,2:500ms"]);
    served_as_counted(&s, served, 32, "h2c stages");
    assert_eq!(s["connections"]["opened"], 8, "{}", s["connections"]);

    // The open model over h2c: the schedule is kept, latency from when each was due.
    let (s, served) =
        n.blast(&[&h2c, "--http2-prior-knowledge", "-c", "8", "--streams", "4", "--rate", "2000", "-d", "2s"]);
    served_as_counted(&s, served, 32, "h2c at a rate");
    assert_eq!(s["schedule"]["sent"], 4000, "{}", s["schedule"]);
}

#[test]
fn a_goaway_after_keepalive_requests_is_sent_again_not_failed() {
    require!("nginx");
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let n = nginx();
    // nginx ends an HTTP/2 connection after 1,000 streams (keepalive_requests) with a GOAWAY;
    // streams sent after it are refused unprocessed and go again on a new connection.
    let url = format!("http://127.0.0.1:{}/", n.goaway);
    let (s, served) = n.blast(&[&url, "--http2-prior-knowledge", "-c", "16", "--streams", "10", "-d", "10s"]);
    served_as_counted(&s, served, 160, "GOAWAY");
    let requests = s["requests"].as_u64().unwrap();
    let goaways = s["http2"]["goaways"].as_u64().unwrap();
    let opened = s["connections"]["opened"].as_u64().unwrap();
    // Each connection carried at most 1,000 requests, and each but the last ones ended in a
    // GOAWAY the engine counted.
    assert!(opened >= requests / 1000, "{opened} connections for {requests} requests");
    assert!(goaways + 16 >= opened && goaways <= opened, "{goaways} GOAWAYs, {opened} connections");
    // With 10 streams in flight, those past a connection's 1,000th are refused and sent again.
    assert!(s["http2"]["retried"].as_u64().unwrap() > 0, "{}", s["http2"]);
    assert_eq!(s["http2"]["connections"]["h2"], opened);
}

#[test]
fn a_server_that_allows_5_streams_caps_streams_and_is_said_to() {
    require!("nginx");
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let n = nginx();
    let url = format!("http://127.0.0.1:{}/", n.five);
    let (s, served) = n.blast(&[&url, "--http2-prior-knowledge", "-c", "4", "--streams", "10", "-d", "2s"]);
    served_as_counted(&s, served, 20, "5 streams");
    assert_eq!(s["http2"]["capped_at"], 5, "{}", s["http2"]);
    let text = Command::new(env!("CARGO_BIN_EXE_engine"))
        .args(["blast", &url, "--http2-prior-knowledge", "-c", "1", "--streams", "10", "-d", "300ms", "--shards", "1"])
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&text.stdout);
    assert!(out.contains("the server capped streams at 5"), "{out}");
}

/// A flow over h2c: a templated POST body (encoded per request), a header captured and sent
/// back, checks on the body and a header; nginx counts what the engine counts.
#[test]
fn a_flow_with_templates_captures_and_checks_runs_over_h2c() {
    require!("nginx");
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let n = nginx();
    let dir = std::env::temp_dir().join(format!("engine-h2-flow-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let plan = dir.join("flow.toml");
    std::fs::write(
        &plan,
        format!(
            r#"target = "http://127.0.0.1:{}"
[[flow]]
name = "user"
[[flow.step]]
name = "login"
method = "POST"
path = "/login"
body = '{{"user":"u{{{{seq}}}}"}}'
capture = {{ kind = "header:content-type" }}
check = ['body contains "ok"', "header content-type ~ text"]
[[flow.step]]
name = "me"
path = "/me"
headers = {{ X-Kind = "{{{{cap.kind}}}}" }}
check = ["status == 200"]
"#,
            n.h2c
        ),
    )
    .unwrap();
    let (s, served) = n.blast(&[
        "--scenario",
        plan.to_str().unwrap(),
        "--http2-prior-knowledge",
        "-c",
        "8",
        "--streams",
        "4",
        "-d",
        "2s",
    ]);
    served_as_counted(&s, served, 32, "flow over h2c");
    let requests = s["requests"].as_u64().unwrap();
    assert_eq!(s["checks"]["failed"], 0, "{}", s["checks"]);
    // Two checks on a login, one on a visit to /me: a login for every visit, give or take
    // the users cut off between the two at the end.
    let passed = s["checks"]["passed"].as_u64().unwrap();
    assert!(passed >= requests && passed <= requests * 3 / 2 + 32, "{passed} checks for {requests} requests");
    let _ = std::fs::remove_dir_all(&dir);
}

/// `engine proxy` with `args`, listening on its own port: killed when dropped.
struct Proxy {
    child: Killed,
    port: u16,
    admin: u16,
}

impl Proxy {
    fn start(args: &[&str]) -> Proxy {
        let (port, admin) = (free_port(), free_port());
        let child = Killed(
            Command::new(env!("CARGO_BIN_EXE_engine"))
                .args(["proxy", "--listen", &format!("127.0.0.1:{port}"), "--admin", &format!("127.0.0.1:{admin}")])
                .args(["--shards", "1"])
                .args(args)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        );
        ports::wait_listening(admin, &format!("the proxy ({args:?})"));
        Proxy { child, port, admin }
    }

    fn stats(&self) -> serde_json::Value {
        std::thread::sleep(Duration::from_millis(300));
        let mut s = TcpStream::connect(("127.0.0.1", self.admin)).unwrap();
        s.write_all(b"GET /stats HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").unwrap();
        let mut text = String::new();
        s.read_to_string(&mut text).unwrap();
        serde_json::from_str(text.split("\r\n\r\n").nth(1).unwrap()).unwrap()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.0.kill();
    }
}

fn curl_status(args: &[&str]) -> String {
    let out = Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-w", "%{http_version} %{http_code}"])
        .args(args)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The proxy in front of nginx (issue 31, acceptance 2): h2c through h2c, h2 by ALPN on both
/// sides of TLS, HTTP/1.1 clients translated to nginx's h2 listener and HTTP/2 clients to its
/// HTTP/1.1 one; the engine's requests and curl's counted as nginx served them, by the proxy
/// too.
#[test]
fn http2_through_the_proxy_counts_as_nginx_serves() {
    require!("nginx");
    require!("curl");
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let n = nginx();
    let ca = n.cacert.to_str().unwrap();

    let p = Proxy::start(&["--upstream", &format!("127.0.0.1:{}", n.h2c), "--fault-headers"]);
    let url = format!("http://127.0.0.1:{}/", p.port);
    let (s, served) = n.blast(&[&url, "--http2-prior-knowledge", "-c", "8", "--streams", "10", "-d", "2s"]);
    served_as_counted(&s, served, 80, "h2c through the proxy");
    assert_eq!(curl_status(&["--http2-prior-knowledge", &url]), "2 200");
    let stats = p.stats();
    assert_eq!(stats["protocols"]["h2"].as_u64(), Some(served + 1), "{}", stats["protocols"]);
    assert_eq!(stats["responses"]["2xx"].as_u64(), Some(served + 1), "{}", stats["responses"]);
    // Faults an HTTP/2 request asks for itself (a loopback client, --fault-headers).
    let h2c = "--http2-prior-knowledge";
    assert_eq!(curl_status(&[h2c, "-H", "x-engine-fault-abort-status: 429", &url]), "2 429");
    assert_eq!(curl_status(&[h2c, "-H", "x-engine-fault-abort-status: 99", &url]), "2 400");
    let t0 = Instant::now();
    assert_eq!(curl_status(&[h2c, "-H", "x-engine-fault-delay-ms: 300", &url]), "2 200");
    assert!(t0.elapsed() >= Duration::from_millis(300), "{:?}", t0.elapsed());
    drop(p);

    let (cert, key) = (rig_tls().join("cert.pem"), rig_tls().join("key.pem"));
    let p = Proxy::start(&[
        "--upstream",
        &format!("https://127.0.0.1:{}", n.h2),
        "--upstream-ca",
        ca,
        "--upstream-protocol",
        "h2",
        "--tls-cert",
        cert.to_str().unwrap(),
        "--tls-key",
        key.to_str().unwrap(),
    ]);
    let url = format!("https://127.0.0.1:{}/", p.port);
    let (s, served) = n.blast(&[&url, "--http2", "--cacert", ca, "-c", "8", "--streams", "10", "-d", "2s"]);
    served_as_counted(&s, served, 80, "h2 through the proxy over TLS");
    assert_eq!(s["http2"]["connections"], serde_json::json!({"h2": 8}));
    assert_eq!(curl_status(&["--http2", "--cacert", ca, &url]), "2 200");
    let h2_served = served + 1;
    // HTTP/1.1 clients through the h2 upstream: translated, on the same upstream connection.
    let (s, served) = n.blast(&[&url, "--cacert", ca, "-c", "8", "-d", "2s"]);
    served_as_counted(&s, served, 8, "HTTP/1.1 through the proxy to h2");
    assert_eq!(curl_status(&["--http1.1", "--cacert", ca, &url]), "1.1 200");
    let stats = p.stats();
    assert_eq!(stats["protocols"]["h2"].as_u64(), Some(h2_served), "{}", stats["protocols"]);
    assert_eq!(stats["protocols"]["http/1.1"].as_u64(), Some(served + 1), "{}", stats["protocols"]);
    assert_eq!(stats["tls"]["upstream"]["handshakes_full"], 1, "one upstream connection: {}", stats["tls"]);
    drop(p);

    // HTTP/2 clients translated to an HTTP/1.1 upstream (nginx's TLS listener without h2).
    let p = Proxy::start(&[
        "--upstream",
        &format!("https://127.0.0.1:{}", n.h1_tls),
        "--upstream-ca",
        ca,
        "--upstream-protocol",
        "h1",
    ]);
    let url = format!("http://127.0.0.1:{}/", p.port);
    let (s, served) = n.blast(&[&url, "--http2-prior-knowledge", "-c", "8", "--streams", "10", "-d", "2s"]);
    served_as_counted(&s, served, 80, "h2c through the proxy to HTTP/1.1");
    assert_eq!(curl_status(&["--http2-prior-knowledge", "-d", "a body", &url]), "2 200");
    assert_eq!(curl_status(&[&url]), "1.1 200", "HTTP/1.1 clients pass as before");
    let stats = p.stats();
    assert_eq!(stats["protocols"]["h2"].as_u64(), Some(served + 1), "{}", stats["protocols"]);
    assert_eq!(stats["protocols"]["http/1.1"], 1, "{}", stats["protocols"]);
}

/// What an HTTP/1.1 upstream sees of an HTTP/2 client's request, and what the client gets of
/// a chunked response (`--upstream-protocol h1`): RFC 9113 §8.2's translation both ways.
#[test]
fn an_http1_upstream_gets_http2_requests_translated_and_chunks_come_back_as_data() {
    require!("curl");
    let upstream = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = upstream.local_addr().unwrap();
    let seen = std::thread::spawn(move || {
        let mut heads = Vec::new();
        for _ in 0..2 {
            let (mut c, _) = upstream.accept().unwrap();
            let mut got = Vec::new();
            let mut chunk = [0u8; 4096];
            // The head, and a body of the length it says or to its last chunk.
            while !(got.windows(4).any(|w| w == b"\r\n\r\n")
                && (got.ends_with(b"0\r\n\r\n") || got.ends_with(b"a body") || got.starts_with(b"GET")))
            {
                let n = c.read(&mut chunk).unwrap();
                assert!(n > 0, "{}", String::from_utf8_lossy(&got));
                got.extend_from_slice(&chunk[..n]);
            }
            c.write_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\nX-Up: 1\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n").unwrap();
            heads.push(String::from_utf8_lossy(&got).into_owned());
        }
        heads
    });
    let p = Proxy::start(&["--upstream", &addr.to_string(), "--upstream-protocol", "h1"]);
    let url = format!("http://127.0.0.1:{}/path?q=1", p.port);
    let out = Command::new("curl")
        .args(["-s", "-i", "--http2-prior-knowledge", "-H", "te: trailers", &url])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("HTTP/2 200"), "{text}");
    assert!(text.contains("x-up: 1") && !text.contains("transfer-encoding"), "{text}");
    assert!(text.ends_with("hello world"), "{text}");
    let out = Command::new("curl").args(["-s", "--http2-prior-knowledge", "-d", "a body", &url]).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hello world");
    let heads = seen.join().unwrap();
    let get = &heads[0];
    assert!(get.starts_with("GET /path?q=1 HTTP/1.1\r\nHost: 127.0.0.1:"), "{get}");
    assert!(get.contains("\r\nVia: 2 engine-proxy\r\n") && get.contains("\r\nX-Forwarded-For: 127.0.0.1\r\n"), "{get}");
    assert!(!get.to_ascii_lowercase().contains("\r\nte:"), "{get}");
    let post = &heads[1];
    assert!(post.starts_with("POST /path?q=1 HTTP/1.1\r\n") && post.ends_with("\r\n\r\na body"), "{post}");
    assert!(post.to_ascii_lowercase().contains("\r\ncontent-length: 6\r\n"), "{post}");
}

/// An HTTP/1.1 upstream that closes a kept-alive connection while it idles in the proxy's
/// pool: the next HTTP/2 client's request goes on a fresh connection, not into the closed one
/// (which would be a 502: the translated path does not retry).
#[test]
fn a_pooled_connection_the_upstream_closed_is_not_used_for_an_http2_client() {
    require!("curl");
    let upstream = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = upstream.local_addr().unwrap();
    let accepted = std::thread::spawn(move || {
        for _ in 0..2 {
            let (mut c, _) = upstream.accept().unwrap();
            let mut got = Vec::new();
            let mut chunk = [0u8; 4096];
            while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = c.read(&mut chunk).unwrap();
                assert!(n > 0);
                got.extend_from_slice(&chunk[..n]);
            }
            // Kept alive, then closed while idle (an upstream's short keep-alive timeout).
            c.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok").unwrap();
            std::thread::sleep(Duration::from_millis(100));
        }
    });
    let p = Proxy::start(&["--upstream", &addr.to_string(), "--upstream-protocol", "h1"]);
    let url = format!("http://127.0.0.1:{}/", p.port);
    assert_eq!(curl_status(&["--http2-prior-knowledge", &url]), "2 200");
    std::thread::sleep(Duration::from_millis(400));
    assert_eq!(curl_status(&["--http2-prior-knowledge", &url]), "2 200", "the closed pooled connection was used");
    accepted.join().unwrap();
}
