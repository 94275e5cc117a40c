//! Stream faults on a real socket: each acts on the bytes going one way, of bodies and of
//! upgrade tunnels, and each test measures its effect (arrival times, byte counts).

mod proxy_support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use engine_proxy::Rule;
use proxy_support::{proxy, serve_each};

fn rule(json: &str) -> Rule {
    serde_json::from_str(json).unwrap()
}

/// An upstream answering each request with `size` bytes of body in one write; for a request
/// with a body it reports how long the body took to arrive from the first byte of the request.
fn upstream(size: usize) -> (SocketAddr, mpsc::Receiver<(usize, Duration)>) {
    let (tx, rx) = mpsc::channel();
    let addr = serve_each(move |mut conn| {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 65536];
        let mut first = None;
        loop {
            let head_end = buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4);
            if let Some(end) = head_end {
                let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                let len: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse().ok())
                    .unwrap_or(0);
                if buf.len() >= end + len {
                    let took = first.map_or(Duration::ZERO, |f: Instant| f.elapsed());
                    let _ = tx.send((len, took));
                    buf.drain(..end + len);
                    first = None;
                    let mut reply = format!("HTTP/1.1 200 OK\r\nContent-Length: {size}\r\n\r\n").into_bytes();
                    reply.extend(std::iter::repeat_n(b'b', size));
                    if conn.write_all(&reply).is_err() {
                        return;
                    }
                    continue;
                }
            }
            match conn.read(&mut chunk) {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    first.get_or_insert_with(Instant::now);
                    buf.extend_from_slice(&chunk[..n]);
                }
            }
        }
    });
    (addr, rx)
}

/// What a client saw of one response: each read's size and time from the request, and
/// whether (and when) the connection closed after it.
struct Seen {
    reads: Vec<(usize, Duration)>,
    closed_at: Option<Duration>,
}

impl Seen {
    fn bytes(&self) -> usize {
        self.reads.iter().map(|r| r.0).sum()
    }
}

/// Sends `request` and reads until `want` bytes came or the connection closed (then also
/// waits up to 2 s for the close when `close` is set).
fn fetch(addr: SocketAddr, request: &[u8], want: usize, close: bool) -> Seen {
    let mut c = TcpStream::connect(addr).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let start = Instant::now();
    c.write_all(request).unwrap();
    let mut seen = Seen { reads: Vec::new(), closed_at: None };
    let mut chunk = [0u8; 65536];
    loop {
        if seen.bytes() >= want && !close {
            return seen;
        }
        match c.read(&mut chunk) {
            Ok(0) | Err(_) => {
                seen.closed_at = Some(start.elapsed());
                return seen;
            }
            Ok(n) => seen.reads.push((n, start.elapsed())),
        }
    }
}

const GET: &[u8] = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n";
/// The response head of `upstream(10_000)` through the proxy.
const HEAD: usize = "HTTP/1.1 200 OK\r\nContent-Length: 10000\r\nVia: 1.1 engine-proxy\r\n\r\n".len();

#[test]
fn bandwidth_downstream_paces_the_response_and_upstream_the_request() {
    let (up, bodies) = upstream(10_000);
    let p = proxy(up, 1, |c| {
        c.faults = vec![
            rule(r#"{"match": {"method": "GET"}, "action": {"bandwidth": {"bytes_per_s": 20000}}}"#),
            rule(
                r#"{"match": {"method": "POST"}, "action": {"bandwidth": {"bytes_per_s": 20000, "direction": "upstream"}}}"#,
            ),
        ]
    });
    // 10 kB at 20 kB/s: half a second, the head included.
    let got = fetch(p.local_addr(), GET, HEAD + 10_000, false);
    let took = got.reads.last().unwrap().1;
    assert!(took >= Duration::from_millis(450) && took < Duration::from_millis(900), "10 kB at 20 kB/s took {took:?}");

    let mut post = b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 10000\r\n\r\n".to_vec();
    post.extend(std::iter::repeat_n(b'a', 10_000));
    let back = fetch(p.local_addr(), &post, HEAD + 10_000, false);
    let (len, took) = std::iter::from_fn(|| bodies.recv_timeout(Duration::from_secs(5)).ok())
        .find(|b| b.0 > 0)
        .expect("the upstream got the POST");
    assert_eq!(len, 10_000);
    assert!(
        took >= Duration::from_millis(400) && took < Duration::from_millis(900),
        "the body took {took:?} to arrive"
    );
    // The response is not paced: it came at once after the request.
    let response = back.reads.last().unwrap().1 - back.reads[0].1;
    assert!(response < Duration::from_millis(50), "{response:?}");
}

#[test]
fn slicer_cuts_writes_into_slices_with_gaps() {
    let (up, _) = upstream(1000);
    let p = proxy(up, 1, |c| c.faults = vec![rule(r#"{"action": {"slicer": {"max_bytes": 100, "gap_ms": 10}}}"#)]);
    let head = HEAD - 1;
    let got = fetch(p.local_addr(), GET, head + 1000, false);
    assert_eq!(got.bytes(), head + 1000);
    let slices = (head + 1000).div_ceil(100);
    // Every read is one slice (or two that met in the socket buffer), the last one came a gap
    // per slice after the first.
    assert!(got.reads.iter().all(|r| r.0 <= 200), "{:?}", got.reads);
    assert!(got.reads.len() >= slices / 2, "{} reads for {slices} slices", got.reads.len());
    let spread = got.reads.last().unwrap().1 - got.reads[0].1;
    assert!(spread >= Duration::from_millis(10 * (slices as u64 - 1)), "{slices} slices over {spread:?}");
}

#[test]
fn limit_data_cuts_the_connection_after_its_bytes() {
    let (up, _) = upstream(10_000);
    let p = proxy(up, 1, |c| c.faults = vec![rule(r#"{"action": {"limit_data": {"bytes": 500}}}"#)]);
    let got = fetch(p.local_addr(), GET, usize::MAX, true);
    assert_eq!(got.bytes(), 500);
    assert!(got.closed_at.is_some());
}

#[test]
fn slow_close_holds_the_close_after_the_response() {
    let (up, _) = upstream(10);
    let p = proxy(up, 1, |c| c.faults = vec![rule(r#"{"action": {"slow_close": {"ms": 300}}}"#)]);
    let got = fetch(p.local_addr(), b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n", usize::MAX, true);
    let answered = got.reads.last().unwrap().1;
    let closed = got.closed_at.unwrap();
    assert!(answered < Duration::from_millis(100), "the response itself took {answered:?}");
    assert!(closed - answered >= Duration::from_millis(290), "closed {:?} after the response", closed - answered);
}

#[test]
fn latency_delays_each_chunk_in_its_direction_only() {
    let (up, _) = upstream(100);
    let p = proxy(up, 1, |c| {
        c.faults = vec![rule(r#"{"match": {"method": "GET"}, "action": {"latency": {"ms": 60, "jitter_ms": 10}}}"#)]
    });
    let got = fetch(p.local_addr(), GET, HEAD - 2 + 100, false);
    let first = got.reads[0].1;
    assert!(first >= Duration::from_millis(60) && first < Duration::from_millis(150), "first byte after {first:?}");
    // A POST matches no rule: its body goes upstream at once.
    let back =
        fetch(p.local_addr(), b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc", HEAD - 2 + 100, false);
    assert!(back.reads[0].1 < Duration::from_millis(50), "{:?}", back.reads[0].1);
}
