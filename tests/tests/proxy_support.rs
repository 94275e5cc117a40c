//! Helpers for the proxy tests: a proxy in front of an upstream, a raw HTTP/1.1 client,
//! and an upstream that counts what reaches it.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use engine_proxy::{Proxy, ProxyConfig};

/// A proxy on a free loopback port in front of `upstream`, with an admin API, on `shards`
/// shards; `tune` adjusts the configuration first.
pub fn proxy(upstream: SocketAddr, shards: usize, tune: impl FnOnce(&mut ProxyConfig)) -> Proxy {
    let mut cfg = ProxyConfig::new("127.0.0.1:0".parse().unwrap(), upstream).unwrap();
    let cpus = engine_runtime::affinity::allowed_cpus().unwrap();
    cfg.shard_cpus = (0..shards).map(|i| cpus[i % cpus.len()]).collect();
    cfg.admin = Some("127.0.0.1:0".parse().unwrap());
    tune(&mut cfg);
    Proxy::start(cfg).expect("proxy starts")
}

/// A response read by [`Client`].
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub head: String,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().skip(1).find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }
}

/// A blocking HTTP/1.1 client on one connection, for exact bytes and exact checks.
pub struct Client {
    pub conn: TcpStream,
    buf: Vec<u8>,
}

impl Client {
    pub fn connect(addr: SocketAddr) -> Client {
        let conn = TcpStream::connect(addr).unwrap();
        conn.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        Client { conn, buf: Vec::new() }
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.conn.write_all(bytes).unwrap();
    }

    fn fill(&mut self) -> bool {
        let mut chunk = [0u8; 65536];
        match self.conn.read(&mut chunk) {
            Ok(0) | Err(_) => false,
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                true
            }
        }
    }

    /// Reads one response (Content-Length, chunked, or until close); `None` if the
    /// connection ended before a complete head.
    pub fn read(&mut self) -> Option<Reply> {
        let end = loop {
            if let Some(i) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            if !self.fill() {
                return None;
            }
        };
        let head = String::from_utf8_lossy(&self.buf[..end]).to_string();
        self.buf.drain(..end);
        let status = head.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
        let mut reply = Reply { status, head, body: Vec::new() };
        if let Some(n) = reply.header("content-length").and_then(|v| v.parse::<usize>().ok()) {
            while self.buf.len() < n {
                if !self.fill() {
                    break;
                }
            }
            let n = n.min(self.buf.len());
            reply.body = self.buf.drain(..n).collect();
        } else if reply.header("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
            reply.body = self.dechunk();
        } else if !(100..200).contains(&status) && status != 204 && status != 304 {
            while self.fill() {}
            reply.body = std::mem::take(&mut self.buf);
        }
        Some(reply)
    }

    fn line(&mut self) -> String {
        loop {
            if let Some(i) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let l = String::from_utf8_lossy(&self.buf[..i]).to_string();
                self.buf.drain(..i + 2);
                return l;
            }
            if !self.fill() {
                return String::new();
            }
        }
    }

    fn dechunk(&mut self) -> Vec<u8> {
        let mut body = Vec::new();
        loop {
            let size = usize::from_str_radix(self.line().split(';').next().unwrap_or("").trim(), 16).unwrap_or(0);
            if size == 0 {
                while !self.line().is_empty() {}
                return body;
            }
            while self.buf.len() < size + 2 {
                if !self.fill() {
                    return body;
                }
            }
            body.extend_from_slice(&self.buf[..size]);
            self.buf.drain(..size + 2);
        }
    }

    /// True when the peer closed (or reset) the connection.
    pub fn closed(&mut self) -> bool {
        self.conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut b = [0u8; 1];
        !matches!(self.conn.read(&mut b), Ok(n) if n > 0)
    }

    /// One GET of `path`.
    pub fn get(&mut self, path: &str) -> Reply {
        self.send(format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n").as_bytes());
        self.read().expect("a response")
    }
}

/// An upstream that answers every request `200 ok` after `delay`, one thread per connection,
/// counting requests and the most it ever had in progress at once.
pub struct Upstream {
    pub addr: SocketAddr,
    pub requests: Arc<AtomicU64>,
    pub max_in_flight: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
}

impl Upstream {
    pub fn start(delay: Duration) -> Upstream {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(AtomicU64::new(0));
        let max_in_flight = Arc::new(AtomicU64::new(0));
        let in_flight = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (r, m, s) = (requests.clone(), max_in_flight.clone(), stop.clone());
        thread::spawn(move || {
            for conn in listener.incoming() {
                if s.load(Ordering::Relaxed) {
                    break;
                }
                let Ok(mut conn) = conn else { continue };
                let (r, m, f) = (r.clone(), m.clone(), in_flight.clone());
                thread::spawn(move || {
                    while read_head(&mut conn) {
                        r.fetch_add(1, Ordering::SeqCst);
                        let now = f.fetch_add(1, Ordering::SeqCst) + 1;
                        m.fetch_max(now, Ordering::SeqCst);
                        thread::sleep(delay);
                        f.fetch_sub(1, Ordering::SeqCst);
                        if conn.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok").is_err() {
                            return;
                        }
                    }
                });
            }
        });
        Upstream { addr, requests, max_in_flight, stop }
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = TcpStream::connect(self.addr);
    }
}

/// A server on a free loopback port that hands each connection to `handle`, a thread each.
pub fn serve_each(handle: impl Fn(TcpStream) + Send + Sync + 'static) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let handle = Arc::new(handle);
    thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            let handle = handle.clone();
            thread::spawn(move || handle(conn));
        }
    });
    addr
}

/// Reads from `conn` into `buf` until it holds a whole head: the head's length, final CRLF
/// included, or `None` if the connection ended first.
pub fn read_head_into(conn: &mut TcpStream, buf: &mut Vec<u8>) -> Option<usize> {
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            return Some(i + 4);
        }
        match conn.read(&mut chunk) {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// An admin API request; returns the status and body.
pub fn admin(addr: SocketAddr, method: &str, path: &str, body: Option<&str>, extra: &str) -> (u16, String) {
    let mut c = Client::connect(addr);
    let body = body.unwrap_or("");
    let ctype = if body.is_empty() { "" } else { "Content-Type: application/json\r\n" };
    c.send(
        format!(
            "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{ctype}{extra}Content-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    );
    let r = c.read().expect("admin answers");
    (r.status, String::from_utf8_lossy(&r.body).to_string())
}

/// Reads one bodiless request head. False at end of stream. (support.rs has the same; this
/// file is also compiled on its own, as every file in tests/ is, so it cannot reach it.)
fn read_head(conn: &mut TcpStream) -> bool {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match conn.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => return false,
        }
    }
    true
}
