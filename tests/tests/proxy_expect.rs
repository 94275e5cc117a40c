//! `--forward-expect`: `Expect: 100-continue` goes to the upstream, whose answer decides
//! whether the client sends its body.

mod proxy_support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use proxy_support::{proxy, read_head_into, serve_each};

/// How the upstream answers the head of a request that expects 100-continue.
#[derive(Clone, Copy)]
enum Upstream {
    /// `100 Continue`, then `200` once the body is in.
    Continue,
    /// `417` at once, without reading a body.
    Refuse,
    /// Nothing until the body arrives, then `200`.
    Silent,
}

/// An upstream acting as `how`; it reports each request head, then the body it received.
fn upstream(how: Upstream) -> (SocketAddr, mpsc::Receiver<String>) {
    let (tx, rx) = mpsc::channel();
    let addr = serve_each(move |mut conn| {
        conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut buf = Vec::new();
        let Some(end) = read_head_into(&mut conn, &mut buf) else { return };
        let _ = tx.send(String::from_utf8_lossy(&buf[..end]).into_owned());
        let mut body = buf[end..].to_vec();
        match how {
            Upstream::Refuse => {
                let _ = conn.write_all(b"HTTP/1.1 417 Expectation Failed\r\nContent-Length: 0\r\n\r\n");
                return;
            }
            Upstream::Continue => {
                let _ = conn.write_all(b"HTTP/1.1 100 Continue\r\n\r\n");
            }
            Upstream::Silent => {}
        }
        let mut chunk = [0u8; 4096];
        while body.len() < 5 {
            match conn.read(&mut chunk) {
                Ok(0) | Err(_) => break,
                Ok(n) => body.extend_from_slice(&chunk[..n]),
            }
        }
        let _ = tx.send(String::from_utf8_lossy(&body).into_owned());
        let _ = conn.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
    });
    (addr, rx)
}

/// Reads from `c` until `until` has arrived (or 5 s pass): what came, and when.
fn read_until(c: &mut TcpStream, until: &str) -> (String, Duration) {
    let start = Instant::now();
    let mut got = Vec::new();
    let mut chunk = [0u8; 4096];
    while !String::from_utf8_lossy(&got).contains(until) {
        match c.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => got.extend_from_slice(&chunk[..n]),
        }
    }
    (String::from_utf8_lossy(&got).into_owned(), start.elapsed())
}

const REQUEST: &[u8] = b"PUT /up HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n";

fn client(addr: SocketAddr) -> TcpStream {
    let c = TcpStream::connect(addr).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    c
}

#[test]
fn the_upstreams_100_lets_the_body_through() {
    let (up, seen) = upstream(Upstream::Continue);
    let p = proxy(up, 1, |c| c.forward_expect = true);
    let mut c = client(p.local_addr());
    c.write_all(REQUEST).unwrap();
    let (got, _) = read_until(&mut c, "100 Continue\r\n\r\n");
    assert_eq!(got, "HTTP/1.1 100 Continue\r\n\r\n");
    assert!(seen.recv_timeout(Duration::from_secs(5)).unwrap().contains("Expect: 100-continue\r\n"));
    c.write_all(b"hello").unwrap();
    let (got, _) = read_until(&mut c, "ok");
    assert!(got.starts_with("HTTP/1.1 200 OK\r\n"), "{got}");
    assert_eq!(seen.recv_timeout(Duration::from_secs(5)).unwrap(), "hello");
}

#[test]
fn a_refusal_before_the_body_reaches_the_client_and_ends_the_connection() {
    let (up, _seen) = upstream(Upstream::Refuse);
    let p = proxy(up, 1, |c| c.forward_expect = true);
    let mut c = client(p.local_addr());
    c.write_all(REQUEST).unwrap();
    let (got, _) = read_until(&mut c, "\r\n\r\n");
    assert!(got.starts_with("HTTP/1.1 417 Expectation Failed\r\n"), "{got}");
    assert!(got.contains("Connection: close\r\n"), "the unsent body makes the connection unusable: {got}");
}

#[test]
fn a_silent_upstream_gets_the_body_after_a_second() {
    let (up, seen) = upstream(Upstream::Silent);
    let p = proxy(up, 1, |c| c.forward_expect = true);
    let mut c = client(p.local_addr());
    c.write_all(REQUEST).unwrap();
    let (got, waited) = read_until(&mut c, "100 Continue\r\n\r\n");
    assert_eq!(got, "HTTP/1.1 100 Continue\r\n\r\n");
    assert!(waited >= Duration::from_millis(900) && waited < Duration::from_secs(3), "{waited:?}");
    seen.recv_timeout(Duration::from_secs(5)).unwrap();
    c.write_all(b"hello").unwrap();
    let (got, _) = read_until(&mut c, "ok");
    assert!(got.starts_with("HTTP/1.1 200 OK\r\n"), "{got}");
    assert_eq!(seen.recv_timeout(Duration::from_secs(5)).unwrap(), "hello");
}

#[test]
fn without_the_flag_the_proxy_answers_100_itself() {
    let (up, seen) = upstream(Upstream::Silent);
    let p = proxy(up, 1, |_| {});
    let mut c = client(p.local_addr());
    c.write_all(REQUEST).unwrap();
    let (got, waited) = read_until(&mut c, "100 Continue\r\n\r\n");
    assert_eq!(got, "HTTP/1.1 100 Continue\r\n\r\n");
    assert!(waited < Duration::from_millis(500), "{waited:?}");
    assert!(!seen.recv_timeout(Duration::from_secs(5)).unwrap().to_ascii_lowercase().contains("expect"));
}
