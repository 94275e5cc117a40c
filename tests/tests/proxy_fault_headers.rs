//! Faults a request asks for (`--fault-headers`): they act on that request only, and the
//! `x-engine-fault-*` fields never reach the upstream, with the flag or without it.

mod proxy_support;

use std::io::Write;
use std::net::SocketAddr;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use proxy_support::{proxy, read_head_into, serve_each, Client};

/// A keep-alive upstream answering `200 ok` at once, sending every request head it reads.
fn recording_upstream() -> (SocketAddr, mpsc::Receiver<String>) {
    let (tx, rx) = mpsc::channel();
    let addr = serve_each(move |mut conn| {
        let mut buf = Vec::new();
        while let Some(end) = read_head_into(&mut conn, &mut buf) {
            let head: Vec<u8> = buf.drain(..end).collect();
            let _ = tx.send(String::from_utf8_lossy(&head).into_owned());
            if conn.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok").is_err() {
                return;
            }
        }
    });
    (addr, rx)
}

/// The median time of `n` GETs on one connection, each with `extra` fields.
fn median(c: &mut Client, extra: &str, n: usize) -> Duration {
    let mut took: Vec<Duration> = (0..n)
        .map(|_| {
            let start = Instant::now();
            c.send(format!("GET /x HTTP/1.1\r\nHost: a\r\n{extra}\r\n").as_bytes());
            assert_eq!(c.read().map(|r| r.status), Some(200));
            start.elapsed()
        })
        .collect();
    took.sort();
    took[n / 2]
}

#[test]
fn a_request_asks_for_its_own_delay_and_the_upstream_never_sees_it() {
    let (up, heads) = recording_upstream();
    let p = proxy(up, 1, |c| c.fault_headers = true);
    let mut c = Client::connect(p.local_addr());
    let plain = median(&mut c, "", 21);
    let delayed = median(&mut c, "X-Engine-Fault-Delay-Ms: 50\r\n", 21);
    let added = delayed.saturating_sub(plain);
    assert!(
        added >= Duration::from_millis(45) && added <= Duration::from_millis(55),
        "the asked 50 ms added {added:?} (p50 {plain:?} -> {delayed:?})"
    );
    let seen: Vec<String> = heads.try_iter().collect();
    assert_eq!(seen.len(), 42);
    assert!(seen.iter().all(|h| !h.to_ascii_lowercase().contains("x-engine-fault")), "{seen:?}");

    // An abort asked for is answered by the proxy; a value it cannot use is a 400 that says why.
    c.send(b"GET /x HTTP/1.1\r\nHost: a\r\nx-engine-fault-abort-status: 503\r\n\r\n");
    assert_eq!(c.read().map(|r| r.status), Some(503));
    c.send(b"GET /x HTTP/1.1\r\nHost: a\r\nx-engine-fault-delay-ms: soon\r\n\r\n");
    let bad = c.read().unwrap();
    assert_eq!(bad.status, 400);
    assert!(String::from_utf8_lossy(&bad.body).contains("x-engine-fault-delay-ms"), "{bad:?}");
    assert!(heads.try_iter().next().is_none(), "neither reached the upstream");
    // The shards publish twice a second.
    thread::sleep(Duration::from_millis(700));
    assert_eq!(p.stats().faults_injected["abort"], 1);
}

#[test]
fn without_the_flag_fault_fields_are_dropped_and_ignored() {
    let (up, heads) = recording_upstream();
    let p = proxy(up, 1, |_| {});
    let mut c = Client::connect(p.local_addr());
    let asked = median(&mut c, "x-engine-fault-delay-ms: 50\r\nx-engine-fault-abort-status: 503\r\n", 11);
    assert!(asked < Duration::from_millis(20), "an ignored delay still took {asked:?}");
    let seen: Vec<String> = heads.try_iter().collect();
    assert_eq!(seen.len(), 11);
    assert!(seen.iter().all(|h| !h.to_ascii_lowercase().contains("x-engine-fault")), "{seen:?}");
}
