//! Smuggling attempts and hostile clients, over raw sockets: each gets the right 4xx (or a
//! close) and nothing of it reaches the upstream.

mod proxy_support;

use std::io::Write;
use std::sync::atomic::Ordering;
use std::thread;
use std::time::{Duration, Instant};

use proxy_support::{proxy, Client, Upstream};

#[test]
fn ambiguous_and_hostile_requests_are_refused_before_the_upstream() {
    let up = Upstream::start(Duration::ZERO);
    let p = proxy(up.addr, 1, |_| {});
    let mut big = b"GET / HTTP/1.1\r\nHost: t\r\nX-Big: ".to_vec();
    big.resize(1 << 20, b'a');
    big.extend_from_slice(b"\r\n\r\n");
    let cases: Vec<(&str, Vec<u8>, u16)> = vec![
        (
            "CL.TE: a body the upstream would read as a second request",
            b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 13\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /admin HTTP/1.1\r\nHost: t\r\n\r\n".to_vec(),
            400,
        ),
        (
            "TE.CL with an obfuscated coding",
            b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: xchunked\r\nContent-Length: 4\r\n\r\n5c\r\n".to_vec(),
            501,
        ),
        ("duplicate Content-Length", b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!".to_vec(), 400),
        ("Content-Length list", b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 5, 5\r\n\r\nhello".to_vec(), 400),
        ("invalid Content-Length", b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: -1\r\n\r\n".to_vec(), 400),
        ("obs-fold", b"GET / HTTP/1.1\r\nHost: t\r\nX-A: 1\r\n Transfer-Encoding: chunked\r\n\r\n".to_vec(), 400),
        ("bare CR", b"GET / HTTP/1.1\r\nHost: t\r\nX-A: 1\rTransfer-Encoding: chunked\r\n\r\n".to_vec(), 400),
        ("bare LF", b"GET / HTTP/1.1\nHost: t\n\n".to_vec(), 400),
        ("missing Host", b"GET / HTTP/1.1\r\n\r\n".to_vec(), 400),
        ("duplicate Host", b"GET / HTTP/1.1\r\nHost: t\r\nHost: evil\r\n\r\n".to_vec(), 400),
        ("absolute-form to another host", b"GET http://evil.example/ HTTP/1.1\r\nHost: t\r\n\r\n".to_vec(), 400),
        ("CONNECT", b"CONNECT evil.example:443 HTTP/1.1\r\nHost: evil.example:443\r\n\r\n".to_vec(), 405),
        ("1 MB header", big, 431),
        ("garbage", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 not http\r\n\r\n".to_vec(), 400),
    ];
    for (what, bytes, status) in &cases {
        let mut c = Client::connect(p.local_addr());
        // The proxy may answer and close before a large request is fully written.
        let _ = c.conn.write_all(bytes);
        let r = c.read().unwrap_or_else(|| panic!("{what}: no response"));
        assert_eq!(r.status, *status, "{what}: {}", r.head);
        assert!(c.closed(), "{what}: the connection must close");
    }
    thread::sleep(Duration::from_millis(200));
    assert_eq!(up.requests.load(Ordering::SeqCst), 0, "a hostile request reached the upstream");
    thread::sleep(Duration::from_millis(600));
    let s = p.stats();
    assert_eq!(s.rejected.values().sum::<u64>(), cases.len() as u64, "{:?}", s.rejected);
    assert_eq!(s.requests, 0);
}

#[test]
fn a_slowloris_client_gets_408_at_the_header_timeout() {
    let up = Upstream::start(Duration::ZERO);
    let p = proxy(up.addr, 1, |c| c.limits.header_timeout = Duration::from_millis(800));
    let mut c = Client::connect(p.local_addr());
    let started = Instant::now();
    c.send(b"GET / HTTP/1.1\r\nHost: t\r\n");
    // One header byte every 100 ms: every read resets a per-read timeout; the head's deadline holds.
    let mut sent = 0;
    let writer = c.conn.try_clone().unwrap();
    let trickle = thread::spawn(move || {
        let mut w = writer;
        while w.write_all(b"X").is_ok() && sent < 50 {
            sent += 1;
            thread::sleep(Duration::from_millis(100));
        }
    });
    let r = c.read().expect("a 408");
    let took = started.elapsed();
    assert_eq!(r.status, 408);
    assert!(took >= Duration::from_millis(750) && took < Duration::from_millis(2000), "{took:?}");
    assert!(c.closed());
    trickle.join().unwrap();
    assert_eq!(up.requests.load(Ordering::SeqCst), 0);
}

#[test]
fn the_connection_limit_turns_away_the_excess() {
    let up = Upstream::start(Duration::ZERO);
    let p = proxy(up.addr, 1, |c| c.limits.max_conns = 3);
    let mut held: Vec<Client> = (0..3).map(|_| Client::connect(p.local_addr())).collect();
    for c in &mut held {
        assert_eq!(c.get("/").status, 200);
    }
    let mut extra = Client::connect(p.local_addr());
    let r = extra.read().expect("a 503");
    assert_eq!((r.status, r.header("retry-after")), (503, Some("1")));
    drop(held);
    thread::sleep(Duration::from_millis(100));
    assert_eq!(Client::connect(p.local_addr()).get("/").status, 200);
}

#[test]
fn pipelined_and_http10_requests_are_framed_one_by_one() {
    let up = Upstream::start(Duration::ZERO);
    let p = proxy(up.addr, 1, |_| {});
    let mut c = Client::connect(p.local_addr());
    c.send(b"GET /1 HTTP/1.1\r\nHost: t\r\n\r\nGET /2 HTTP/1.1\r\nHost: t\r\n\r\nGET /3 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    for _ in 0..3 {
        assert_eq!(c.read().unwrap().status, 200);
    }
    assert!(c.closed());
    let mut c = Client::connect(p.local_addr());
    c.send(b"GET / HTTP/1.0\r\n\r\n");
    let r = c.read().unwrap();
    assert_eq!((r.status, r.header("connection")), (200, Some("close")));
    assert!(c.closed());
    let mut c = Client::connect(p.local_addr());
    c.send(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n");
    assert_eq!(c.read().unwrap().status, 100);
    c.send(b"hello");
    assert_eq!(c.read().unwrap().status, 200);
    assert_eq!(up.requests.load(Ordering::SeqCst), 5);
}

/// An upstream that sends without end: every read of that exchange is ready at once (1xx
/// after 1xx that the proxy drops, or a body to a client that reads as fast). The shard must
/// still serve its other clients: the proxy yields every 16th read of one response, as the
/// blast does (`misbehaving.rs`), and gives up after 32 interim answers. (Before, it relied on
/// its reads waiting for glommio's readiness poll often enough; a clean-clone CI on
/// 2026-12-04 saw a plain request wait 2.79 s behind the 1xx flood.)
#[test]
fn an_endless_response_does_not_stall_the_shards_other_clients() {
    use std::io::Read;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let up = listener.local_addr().unwrap();
    thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut c) = conn else { continue };
            thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n) = c.read(&mut buf) {
                    let head = &buf[..n];
                    let (first, unit): (&[u8], &[u8]) = if head.windows(5).any(|w| w == b"/body") {
                        (b"HTTP/1.1 200 OK\r\nContent-Length: 1000000000000\r\n\r\n", &[b'x'; 4096])
                    } else if head.windows(4).any(|w| w == b"/1xx") {
                        (b"", b"HTTP/1.1 100 Continue\r\n\r\n")
                    } else if n > 0 && c.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok").is_ok() {
                        continue;
                    } else {
                        return;
                    };
                    let burst = unit.repeat(65536 / unit.len());
                    let until = Instant::now() + Duration::from_secs(3);
                    if c.write_all(first).is_ok() {
                        while Instant::now() < until && c.write_all(&burst).is_ok() {}
                    }
                    return;
                }
            });
        }
    });
    for path in ["/body", "/1xx"] {
        let p = proxy(up, 1, |_| {});
        let addr = p.local_addr();
        let reader = thread::spawn(move || {
            let mut s = std::net::TcpStream::connect(addr).unwrap();
            s.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
            s.write_all(format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes()).unwrap();
            let mut buf = vec![0u8; 1 << 20];
            let (until, mut total, mut first) = (Instant::now() + Duration::from_millis(1500), 0u64, Vec::new());
            while Instant::now() < until {
                match s.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => {
                        total += n as u64;
                        if first.len() < 64 {
                            first.extend_from_slice(&buf[..n.min(64)]);
                        }
                    }
                    Err(_) => {}
                }
            }
            (total, String::from_utf8_lossy(&first).into_owned())
        });
        thread::sleep(Duration::from_millis(300));
        let mut c = Client::connect(addr);
        let mut slowest = Duration::ZERO;
        for _ in 0..20 {
            let t = Instant::now();
            assert_eq!(c.get("/").status, 200, "{path}");
            slowest = slowest.max(t.elapsed());
        }
        let (streamed, first) = reader.join().unwrap();
        if path == "/body" {
            assert!(streamed > 100 << 20, "the endless body flowed too: {streamed} bytes");
        } else {
            // Interim answers without end are no answer: after 32 the client gets a 502.
            assert!(first.starts_with("HTTP/1.1 502"), "{first:?}");
        }
        assert!(
            slowest < Duration::from_millis(250),
            "{path}: a plain request waited {slowest:?} behind the endless one"
        );
    }
}
