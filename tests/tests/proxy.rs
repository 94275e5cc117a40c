//! The proxy against real upstreams on loopback: pass-through correctness, streaming, the
//! faults of the acceptance list, the admin API under load, and the drain.

mod proxy_support;
mod support;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::Ordering;
use std::thread;
use std::time::{Duration, Instant};

use engine_blast::{Control, PlanInput, Summary};
use engine_proxy::Rule;
use engine_target::{Target, TargetConfig};
use proxy_support::{admin, proxy, Client, Upstream};

fn target(delay: Duration) -> Target {
    Target::start(TargetConfig::loopback(delay).unwrap()).unwrap()
}

fn rule(json: &str) -> Rule {
    serde_json::from_str(json).unwrap()
}

/// A closed-model blast of `conns` connections on one shard for `ms` milliseconds.
fn blast(addr: std::net::SocketAddr, conns: u64, ms: u64) -> Summary {
    support::blast(&format!("http://{addr}/"), conns, ms, 10_000)
}

/// Published statistics that count everything completed before this call: read until every
/// shard has published a tick after it (`as_of_s`). A client may read a response a moment
/// before the proxy counts it (the count follows the write's completion), so the tick after.
fn stats(p: &engine_proxy::Proxy) -> engine_proxy::StatsReport {
    let asked = p.stats().uptime_s + 0.1;
    let deadline = std::time::Instant::now() + Duration::from_secs(2);
    loop {
        let s = p.stats();
        if s.as_of_s >= asked {
            assert!(s.uptime_s - s.as_of_s < 0.5, "published {:.3} s before it was read", s.uptime_s - s.as_of_s);
            return s;
        }
        assert!(std::time::Instant::now() < deadline, "no publication since {asked} s: {s:?}");
        thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn traffic_passes_unchanged_with_no_faults() {
    let t = target(Duration::ZERO);
    let p = proxy(t.local_addr(), 1, |_| {});
    let direct = blast(t.local_addr(), 8, 500);
    let via = blast(p.local_addr(), 8, 500);
    assert_eq!(direct.errors.total, 0, "{:?}", direct.errors);
    assert_eq!(via.errors.total, 0, "{:?}", via.errors);
    assert_eq!(via.status.keys().collect::<Vec<_>>(), vec!["200"]);
    // Same response, plus exactly the proxy's `Via: 1.1 engine-proxy\r\n` (23 bytes).
    assert_eq!(direct.bytes.received % direct.requests, 0);
    assert_eq!(via.bytes.received % via.requests, 0);
    assert_eq!(via.bytes.received / via.requests, direct.bytes.received / direct.requests + 23);
    let s = stats(&p);
    // Requests the blast abandoned at its end may or may not have reached the proxy.
    assert!((via.requests..=via.requests + via.abandoned).contains(&s.requests), "{} vs {}", s.requests, via.requests);
    assert_eq!(s.server_latency_ms.count, via.requests);
    assert!(s.server_latency_ms.total.p50 > 0.0);
    assert_eq!(s.upstream_errors.values().sum::<u64>(), 0);

    // Forwarding fields reach the upstream; hop-by-hop ones do not.
    let seen = TcpListener::bind("127.0.0.1:0").unwrap();
    let p2 = proxy(seen.local_addr().unwrap(), 1, |_| {});
    let upstream = thread::spawn(move || {
        let (mut c, _) = seen.accept().unwrap();
        let mut head = Vec::new();
        let mut b = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") && c.read(&mut b).unwrap() == 1 {
            head.push(b[0]);
        }
        c.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: keep-alive\r\nKeep-Alive: timeout=5\r\n\r\n")
            .unwrap();
        String::from_utf8(head).unwrap()
    });
    let mut c = Client::connect(p2.local_addr());
    c.send(
        b"GET /x?y=1 HTTP/1.1\r\nHost: svc\r\nConnection: X-Hop\r\nX-Hop: secret\r\nX-Forwarded-For: 10.9.9.9\r\n\r\n",
    );
    let reply = c.read().unwrap();
    let head = upstream.join().unwrap();
    assert!(head.starts_with("GET /x?y=1 HTTP/1.1\r\nHost: svc\r\n"), "{head}");
    assert!(
        head.contains("X-Forwarded-For: 10.9.9.9, 127.0.0.1\r\n") && head.contains("Via: 1.1 engine-proxy\r\n"),
        "{head}"
    );
    assert!(!head.contains("X-Hop") && !head.contains("Connection"), "{head}");
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("via"), Some("1.1 engine-proxy"));
    assert_eq!(reply.header("keep-alive"), None);
}

/// An upstream with large bodies: `/length` (Content-Length), `/chunked`, and `/echo`
/// (counts a chunked request body and answers its size).
fn big_bodies_upstream(size: usize) -> std::net::SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    thread::spawn(move || {
        for conn in l.incoming() {
            let Ok(mut conn) = conn else { return };
            thread::spawn(move || {
                let mut head = Vec::new();
                let mut b = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    if conn.read(&mut b).unwrap_or(0) != 1 {
                        return;
                    }
                    head.push(b[0]);
                }
                let body: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
                let head = String::from_utf8(head).unwrap();
                if head.starts_with("GET /length") {
                    conn.write_all(format!("HTTP/1.1 200 OK\r\nContent-Length: {size}\r\n\r\n").as_bytes()).unwrap();
                    let _ = conn.write_all(&body);
                } else if head.starts_with("GET /chunked") {
                    conn.write_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n").unwrap();
                    for piece in body.chunks(65_536) {
                        let _ = conn.write_all(format!("{:x};ext=1\r\n", piece.len()).as_bytes());
                        let _ = conn.write_all(piece);
                        let _ = conn.write_all(b"\r\n");
                    }
                    let _ = conn.write_all(b"0\r\nX-Trailer: done\r\n\r\n");
                } else {
                    // Count the chunked request body to its end (the last chunk and trailers).
                    let mut seen = Vec::new();
                    let mut chunk = [0u8; 65_536];
                    while !seen.ends_with(b"\r\n0\r\n\r\n") {
                        match conn.read(&mut chunk) {
                            Ok(0) | Err(_) => return,
                            Ok(n) => seen.extend_from_slice(&chunk[..n]),
                        }
                    }
                    let body = format!("{}", seen.len());
                    let _ = conn.write_all(
                        format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}", body.len()).as_bytes(),
                    );
                }
            });
        }
    });
    addr
}

#[test]
fn large_and_chunked_bodies_stream_both_ways() {
    let size = 8 << 20;
    let p = proxy(big_bodies_upstream(size), 1, |_| {});
    let want: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
    let mut c = Client::connect(p.local_addr());
    let r = c.get("/length");
    assert_eq!((r.status, r.body.len()), (200, size));
    assert!(r.body == want, "Content-Length body changed in transit");
    let r = c.get("/chunked");
    assert_eq!(r.header("transfer-encoding"), Some("chunked"));
    assert!(r.body == want, "chunked body changed in transit");

    // A chunked request body of 8 MiB goes up whole, as the client framed it.
    let mut c = Client::connect(p.local_addr());
    c.send(b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n");
    let mut sent = 0;
    for piece in want.chunks(100_000) {
        let line = format!("{:x}\r\n", piece.len());
        c.send(line.as_bytes());
        c.send(piece);
        c.send(b"\r\n");
        sent += line.len() + piece.len() + 2;
    }
    c.send(b"0\r\n\r\n");
    sent += 5;
    let r = c.read().unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(String::from_utf8_lossy(&r.body), sent.to_string());
}

#[test]
fn abort_at_20_percent_gives_20_percent_503s() {
    let t = target(Duration::ZERO);
    let p = proxy(t.local_addr(), 1, |c| {
        c.faults = vec![rule(r#"{"probability": 0.2, "action": {"abort": {"status": 503, "retry_after_s": 1}}}"#)]
    });
    // At least 50,000 requests, in runs of one second.
    let (mut total, mut aborted) = (0u64, 0u64);
    let started = Instant::now();
    while total < 50_000 && started.elapsed() < Duration::from_secs(60) {
        let r = blast(p.local_addr(), 16, 1000);
        // The injected 503s are the run's only failures: errors of kind status, one each.
        let shed = r.status.get("503").copied().unwrap_or(0);
        assert_eq!((r.errors.total, r.errors.status), (shed, shed), "{:?}", r.errors);
        total += r.requests;
        aborted += shed;
        assert_eq!(r.status.values().sum::<u64>(), r.requests);
    }
    assert!(total >= 50_000, "only {total} requests in 60 s");
    let share = aborted as f64 / total as f64;
    assert!((0.19..=0.21).contains(&share), "503 share {share:.4} of {total}");
    assert_eq!(stats(&p).faults_injected["abort"], aborted);
}

#[test]
fn a_delay_shows_client_side_but_not_server_side() {
    let t = target(Duration::from_millis(5));
    let p = proxy(t.local_addr(), 1, |c| c.faults = vec![rule(r#"{"action": {"delay": {"ms": 50}}}"#)]);
    let r = blast(p.local_addr(), 8, 1500);
    assert_eq!(r.errors.total, 0);
    assert!(r.latency_ms.p50 >= 55.0, "client p50 {} must hold 50 ms delay + 5 ms upstream", r.latency_ms.p50);
    let s = stats(&p);
    let server = s.server_latency_ms.total.p50;
    // The upstream's own time is its 5 ms delay plus loopback: near it, far from 55.
    assert!((5.0..15.0).contains(&server), "server-side p50 {server} ms");
    assert_eq!(s.faults_injected["delay"], s.requests);
}

#[test]
fn a_concurrency_limit_sheds_excess_and_caps_the_upstream() {
    let up = Upstream::start(Duration::from_millis(50));
    let p = proxy(up.addr, 2, |c| {
        c.faults = vec![rule(r#"{"action": {"concurrency": {"limit": 10, "queue": 20, "queue_timeout_ms": 100}}}"#)]
    });
    let r = blast(p.local_addr(), 60, 1500);
    let (ok, shed) = (r.status.get("200").copied().unwrap_or(0), r.status.get("503").copied().unwrap_or(0));
    assert_eq!((r.errors.total, r.errors.status), (shed, shed), "{:?}", r.errors);
    assert!(ok > 0 && shed > 0, "{:?}", r.status);
    let max = up.max_in_flight.load(Ordering::SeqCst);
    assert!((2..=10).contains(&max), "the upstream saw {max} requests at once");
    // 10 slots for 50 ms each: at most 200/s reach the upstream.
    assert!(up.requests.load(Ordering::SeqCst) <= 2 * 200 + 20, "{}", up.requests.load(Ordering::SeqCst));
    let s = stats(&p);
    assert_eq!(s.faults_injected["concurrency"], shed);
    assert_eq!(s.concurrency_in_use, 0);
    assert_eq!(s.queue_depth, 0);
}

#[test]
fn faults_change_through_the_admin_api_under_load_within_a_second() {
    let t = target(Duration::ZERO);
    let p = proxy(t.local_addr(), 2, |_| {});
    let admin_addr = p.admin_addr().unwrap();
    let addr = p.local_addr();
    // Background load for the whole test.
    let load = thread::spawn(move || {
        let mut input = PlanInput::new(format!("http://{addr}/"));
        input.conns = 8;
        input.duration = Duration::from_millis(4000);
        input.shards = Some(1);
        engine_blast::run(&input.build().unwrap(), &Control::new(), &mut []).unwrap()
    });
    // A probe records (start, status, body) of sequential requests.
    let probe = thread::spawn(move || {
        let mut c = Client::connect(addr);
        let mut seen = Vec::new();
        let started = Instant::now();
        while started.elapsed() < Duration::from_millis(3800) {
            let at = Instant::now();
            let r = c.get("/probe");
            seen.push((at, r.status, String::from_utf8_lossy(&r.body).to_string()));
            thread::sleep(Duration::from_millis(5));
        }
        seen
    });
    thread::sleep(Duration::from_millis(800));
    let (code, stored) =
        admin(admin_addr, "POST", "/faults", Some(r#"{"id": "shed", "action": {"abort": {"body": "injected"}}}"#), "");
    assert_eq!(code, 201, "{stored}");
    let added = Instant::now();
    assert!(stored.contains("\"id\": \"shed\""), "{stored}");
    thread::sleep(Duration::from_millis(1300));
    let (code, body) = admin(admin_addr, "DELETE", "/faults/shed", None, "");
    assert_eq!(code, 204, "{body}");
    let removed = Instant::now();

    let seen = probe.join().unwrap();
    let load = load.join().unwrap();
    let shed = load.status.get("503").copied().unwrap_or(0);
    assert_eq!((load.errors.total, load.errors.status), (shed, shed), "{:?}", load.errors);
    assert!(load.status.keys().all(|k| k == "200" || k == "503"), "{:?}", load.status);
    assert!(load.status.get("503").copied().unwrap_or(0) > 0);
    let second = Duration::from_secs(1);
    for (at, status, body) in &seen {
        // Every failure is the fault's own answer; none outside its window (+1 s to apply).
        assert!(*status == 200 || (*status == 503 && body == "injected"), "{status} {body}");
        if *at + Duration::from_millis(20) < added || *at > removed + second {
            assert_eq!(*status, 200, "at {:?} before the fault or after its removal", at.duration_since(added));
        }
        if *at > added + second && *at + Duration::from_millis(20) < removed {
            assert_eq!(*status, 503, "{:?} after the fault was added", at.duration_since(added));
        }
    }
    assert!(seen.iter().any(|s| s.1 == 503) && seen.last().unwrap().1 == 200);
}

#[test]
fn the_admin_api_guards_its_changes() {
    let t = target(Duration::ZERO);
    let p = proxy(t.local_addr(), 1, |c| c.admin_token = Some("0123456789abcdef-token".into()));
    let a = p.admin_addr().unwrap();
    let auth = "Authorization: Bearer 0123456789abcdef-token\r\n";
    let rule = r#"{"action": {"reset": {}}}"#;
    assert_eq!(admin(a, "GET", "/healthz", None, "").0, 200);
    assert_eq!(admin(a, "GET", "/stats", None, "").0, 401);
    assert_eq!(admin(a, "GET", "/stats", None, "Authorization: Bearer wrong\r\n").0, 401);
    assert_eq!(admin(a, "GET", "/stats", None, auth).0, 200);
    // A page in a browser: refused even with the token (a browser could hold it in a cookie jar
    // or the page could guess it; neither should change live traffic).
    assert_eq!(admin(a, "POST", "/faults", Some(rule), &format!("{auth}Origin: http://evil.example\r\n")).0, 403);
    assert_eq!(admin(a, "POST", "/faults", Some(rule), &format!("{auth}Sec-Fetch-Site: cross-site\r\n")).0, 403);
    let mut c = Client::connect(a);
    c.send(format!("GET /stats HTTP/1.1\r\nHost: rebound.example:9901\r\n{auth}\r\n").as_bytes());
    assert_eq!(c.read().unwrap().status, 403);
    assert_eq!(admin(a, "POST", "/faults", Some("{not json"), auth).0, 400);
    assert_eq!(admin(a, "POST", "/faults", Some(r#"{"action": {"abort": {"status": 42}}}"#), auth).0, 400);
    assert_eq!(admin(a, "DELETE", "/faults/nope", None, auth).0, 404);
    assert_eq!(admin(a, "PUT", "/faults", None, auth).0, 405);
    let (code, body) = admin(a, "POST", "/faults", Some(r#"{"id": "x", "action": {"hang": {}}}"#), auth);
    assert_eq!(code, 201, "{body}");
    assert_eq!(admin(a, "POST", "/faults", Some(r#"{"id": "x", "action": {"hang": {}}}"#), auth).0, 409);
    let (code, list) = admin(a, "GET", "/faults", None, auth);
    assert_eq!(code, 200);
    assert_eq!(serde_json::from_str::<Vec<Rule>>(&list).unwrap().len(), 1);
    assert_eq!(admin(a, "POST", "/faults/reset", None, auth).0, 204);
    assert!(p.faults().rules().is_empty());
    let (code, metrics) = admin(a, "GET", "/metrics", None, auth);
    assert_eq!(code, 200);
    assert!(metrics.contains("# TYPE engine_proxy_requests_total counter"), "{metrics}");
}

#[test]
fn reset_hang_and_upstream_failures_are_what_the_client_sees() {
    let t = target(Duration::ZERO);
    let p = proxy(t.local_addr(), 1, |c| {
        c.faults = vec![
            rule(r#"{"match": {"path_prefix": "/reset"}, "action": {"reset": {}}}"#),
            rule(r#"{"match": {"path_prefix": "/hang"}, "action": {"hang": {}}}"#),
            rule(r#"{"match": {"path_prefix": "/limited"}, "action": {"rate_limit": {"rps": 1, "burst": 1}}}"#),
            rule(r#"{"match": {"header": {"name": "x-slow"}}, "action": {"throttle": {"bytes_per_s": 2000}}}"#),
        ]
    });
    let mut c = Client::connect(p.local_addr());
    c.send(b"GET /reset HTTP/1.1\r\nHost: t\r\n\r\n");
    let mut b = [0u8; 1];
    let e = c.conn.read(&mut b).unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset);

    let mut c = Client::connect(p.local_addr());
    c.send(b"GET /hang HTTP/1.1\r\nHost: t\r\n\r\n");
    c.conn.set_read_timeout(Some(Duration::from_millis(700))).unwrap();
    assert_eq!(c.conn.read(&mut b).unwrap_err().kind(), std::io::ErrorKind::WouldBlock);

    let mut c = Client::connect(p.local_addr());
    assert_eq!(c.get("/limited").status, 200);
    let r = c.get("/limited");
    assert_eq!((r.status, r.header("retry-after")), (429, Some("1")));

    // The target's response is 80 bytes or so with the Via header: 2000 B/s takes >= 30 ms.
    let started = Instant::now();
    c.send(b"GET / HTTP/1.1\r\nHost: t\r\nX-Slow: 1\r\n\r\n");
    assert_eq!(c.read().unwrap().status, 200);
    assert!(started.elapsed() >= Duration::from_millis(30), "{:?}", started.elapsed());

    // Upstream down: 502; the connection to the client survives.
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let p = proxy(format!("127.0.0.1:{port}").parse().unwrap(), 1, |_| {});
    let mut c = Client::connect(p.local_addr());
    assert_eq!(c.get("/").status, 502);
    assert_eq!(c.get("/").status, 502);
    // Upstream silent: 504 after the upstream timeout.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let p = proxy(silent.local_addr().unwrap(), 1, |c| c.limits.upstream_timeout = Duration::from_millis(300));
    let mut c = Client::connect(p.local_addr());
    assert_eq!(c.get("/").status, 504);
    let s = stats(&p);
    assert_eq!(s.upstream_errors["timeout"], 1);
}

#[test]
fn a_drain_finishes_in_flight_requests_and_stops_accepting() {
    let up = Upstream::start(Duration::from_millis(400));
    let p = proxy(up.addr, 1, |_| {});
    let addr = p.local_addr();
    let mut idle = Client::connect(addr);
    assert_eq!(idle.get("/").status, 200);
    let busy = thread::spawn(move || {
        let mut c = Client::connect(addr);
        c.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n");
        let r = c.read().unwrap();
        (r.status, r.header("connection").map(str::to_string), c.closed())
    });
    thread::sleep(Duration::from_millis(150));
    let started = Instant::now();
    let report = p.drain();
    let (status, connection, closed) = busy.join().unwrap();
    assert_eq!(status, 200, "the in-flight request completes");
    assert_eq!(connection.as_deref(), Some("close"));
    assert!(closed);
    assert!(idle.closed(), "idle connections are closed at once");
    assert!(started.elapsed() < Duration::from_secs(3));
    assert_eq!(report.requests, 2);
    assert!(TcpStream::connect(addr).is_err(), "no longer accepting");
}

/// An upstream that answers every connection's first request with `reply`, then closes.
fn misbehaving(reply: &'static [u8]) -> std::net::SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    thread::spawn(move || {
        for conn in l.incoming() {
            let Ok(mut c) = conn else { return };
            thread::spawn(move || {
                let mut head = Vec::new();
                let mut b = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") && c.read(&mut b).unwrap_or(0) == 1 {
                    head.push(b[0]);
                }
                let _ = c.write_all(reply);
            });
        }
    });
    addr
}

#[test]
fn a_misbehaving_upstream_is_a_counted_502_or_a_cut_connection() {
    // Nothing usable before the head: the client gets a 502 and keeps its connection.
    for (reply, kind) in [
        (&b"NOT HTTP AT ALL\r\n\r\n"[..], "invalid"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello", "invalid"),
        (b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\n", "invalid"),
        (b"HTTP/1.1 200 OK\r\nContent-Len", "reset"),
        (b"", "reset"),
    ] {
        let p = proxy(misbehaving(reply), 1, |_| {});
        let mut c = Client::connect(p.local_addr());
        let r = c.get("/");
        assert_eq!(r.status, 502, "{:?}", String::from_utf8_lossy(reply));
        assert_eq!(stats(&p).upstream_errors[kind], 1, "{:?}", String::from_utf8_lossy(reply));
    }
    // A head over 64 KiB is refused too.
    let mut big = b"HTTP/1.1 200 OK\r\nX-Big: ".to_vec();
    big.resize(100_000, b'a');
    big.extend_from_slice(b"\r\n\r\n");
    let p = proxy(misbehaving(Box::leak(big.into_boxed_slice())), 1, |_| {});
    assert_eq!(Client::connect(p.local_addr()).get("/").status, 502);
    // Cut after the head: the client has the head, so the only honest signal is a close
    // before the promised length.
    let p = proxy(misbehaving(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nshort"), 1, |_| {});
    let mut c = Client::connect(p.local_addr());
    let r = c.get("/");
    assert_eq!((r.status, r.body.as_slice()), (200, &b"short"[..]));
    assert!(c.closed());
    assert_eq!(stats(&p).upstream_errors["reset"], 1);
}
