//! Loopback ports for servers a test starts with a port written into their command line or
//! configuration (nginx, Prometheus, the docs' examples), where port 0 cannot be passed.
//!
//! Binding port 0 and releasing it hands back a port from the kernel's ephemeral range, the
//! same range every outgoing connection (a blast's, a proxy's upstream pool) takes its local
//! port from: in the window before the server binds it, one of them may take it ("Address
//! already in use", seen in CI). Ports below that range are never handed to a connection, so
//! the only race left is with another test choosing the same port, which the bind check and a
//! per-process starting point make rare.
#![allow(dead_code)] // each test file uses its own part

use std::net::TcpListener;
use std::sync::atomic::{AtomicU32, Ordering};

static NEXT: AtomicU32 = AtomicU32::new(0);

/// The first port of the kernel's ephemeral range (Linux's default when it cannot be read).
fn ephemeral_start() -> u32 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|w| w.parse().ok()))
        .unwrap_or(32768)
}

/// A loopback port free now and outside the ephemeral range.
pub fn free_port() -> u16 {
    const LOW: u32 = 10_000;
    let high = ephemeral_start().min(u32::from(u16::MAX));
    if high <= LOW + 1_000 {
        // A host whose ephemeral range starts low: fall back to the kernel's choice.
        return TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    }
    let span = high - LOW;
    let seed = std::process::id().wrapping_mul(7919).wrapping_add(NEXT.fetch_add(1, Ordering::Relaxed) * 101);
    for i in 0..span {
        let port = LOW + (seed.wrapping_add(i) % span);
        if TcpListener::bind(("127.0.0.1", port as u16)).is_ok() {
            return port as u16;
        }
    }
    panic!("no free loopback port in {LOW}..{high}");
}

/// Waits until something accepts on loopback `port` (a server a test started), for at most
/// 10 s; `what` names it in the failure.
pub fn wait_listening(port: u16, what: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(std::time::Instant::now() < deadline, "{what} never listened on port {port}");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}
