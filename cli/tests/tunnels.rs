//! Upgrade tunnels at scale, by hand (minutes, thousands of threads): the proxy binary holds
//! N WebSocket tunnels with echo traffic while a blast sends plain requests through it, and
//! the blast's p99 is compared with a run without tunnels.
//!
//!   ENGINE_TUNNELS=1000 ENGINE_TUNNEL_SECS=10 ENGINE_TUNNEL_ROUNDS=5 cargo test --release -p engine-cli --test tunnels -- --ignored --nocapture

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use tungstenite::Message;

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// One upstream for both kinds of traffic: a WebSocket echo for upgrade requests, `200 ok`
/// (keep-alive) for the rest. A thread per connection, with small stacks.
fn upstream() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(conn) = conn else { continue };
            let _ = thread::Builder::new().stack_size(128 * 1024).spawn(move || serve(conn));
        }
    });
    addr
}

fn serve(mut conn: TcpStream) {
    // A pooled connection may carry plain requests first and an upgrade after: look at each
    // request before reading it, so tungstenite reads an upgrade's head itself.
    let mut peek = [0u8; 2048];
    let mut chunk = [0u8; 4096];
    loop {
        let n = conn.peek(&mut peek).unwrap_or(0);
        if n == 0 {
            return;
        }
        if String::from_utf8_lossy(&peek[..n]).to_ascii_lowercase().contains("upgrade: websocket") {
            lower_priority();
            let Ok(mut ws) = tungstenite::accept(conn) else { return };
            while let Ok(m) = ws.read() {
                if (m.is_text() || m.is_binary()) && ws.send(m).is_err() {
                    return;
                }
            }
            return;
        }
        // A plain GET: its head alone (the blast sends one request at a time per connection).
        let mut head = Vec::new();
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            match conn.read(&mut chunk) {
                Ok(0) | Err(_) => return,
                Ok(n) => head.extend_from_slice(&chunk[..n]),
            }
        }
        if conn.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok").is_err() {
            return;
        }
    }
}

struct Proxy {
    child: Child,
    addr: SocketAddr,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn proxy(upstream: SocketAddr) -> Proxy {
    // The proxy alone on the last CPU; this process (clients, upstream, blast) on the others.
    let mut child = Command::new("taskset")
        .args(["-c", &last_cpu().to_string(), env!("CARGO_BIN_EXE_engine")])
        .args(["proxy", "--listen", "127.0.0.1:0", "--admin", "off", "--shards", "1", "--upstream"])
        .arg(upstream.to_string())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let addr = line.split("http://").nth(1).and_then(|s| s.split('/').next()).unwrap().parse().unwrap();
    Proxy { child, addr }
}

/// The tunnels' own threads (two thousand of them, on the CPU the blast and the plain
/// upstream share) yield to the plain requests' hops: the test measures the proxy, not how
/// the scheduler orders a crowded CPU.
fn lower_priority() {
    // SAFETY: plain syscalls on the calling thread (Linux applies PRIO_PROCESS to a thread id).
    unsafe {
        let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
        libc::setpriority(libc::PRIO_PROCESS, tid, 19);
    }
}

fn last_cpu() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get()) - 1
}

/// Keeps this process (and what it starts later) off the proxy's CPU.
fn leave_last_cpu() {
    let last = last_cpu();
    if last == 0 {
        return;
    }
    // SAFETY: a zeroed cpu_set_t is valid, CPU_SET stays within its size, and the call only
    // reads the set.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        for cpu in 0..last {
            libc::CPU_SET(cpu, &mut set);
        }
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

fn rss_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with(field)).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// A blast of plain requests through the proxy: its p99 (ms) and errors.
fn blast(proxy: SocketAddr, secs: u64) -> (f64, u64) {
    let out = Command::new(env!("CARGO_BIN_EXE_engine"))
        .args(["blast", &format!("http://{proxy}/"), "-R", "1000", "-c", "16", "--shards", "1", "-q", "--json", "-"])
        .args(["-d", &format!("{secs}s")])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {out:?}"));
    (v["latency_ms"]["p99"].as_f64().unwrap(), v["errors"]["total"].as_u64().unwrap())
}

#[derive(Default, Clone)]
struct Counts {
    open: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
    echoed: Arc<AtomicU64>,
}

/// Tunnel `i`: a WebSocket through the proxy that echoes a message a second (staggered over
/// the second) until `stop`.
fn tunnel(addr: SocketAddr, i: u64, stop: Arc<AtomicBool>, counts: Counts) -> thread::JoinHandle<()> {
    let Counts { open, failed, echoed } = counts;
    thread::Builder::new()
        .stack_size(128 * 1024)
        .spawn(move || {
            lower_priority();
            let tcp = TcpStream::connect(addr).unwrap();
            tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            let mut ws = match tungstenite::client(format!("ws://{addr}/ws/{i}"), tcp) {
                Ok((ws, _)) => ws,
                Err(e) => {
                    if failed.fetch_add(1, Ordering::Relaxed) < 3 {
                        eprintln!("tunnel {i}: {e}");
                    }
                    return;
                }
            };
            open.fetch_add(1, Ordering::Relaxed);
            thread::sleep(Duration::from_millis(i % 1000));
            while !stop.load(Ordering::Relaxed) {
                let text = format!("tunnel {i}");
                let ok = ws.send(Message::text(text.clone())).is_ok()
                    && matches!(ws.read(), Ok(Message::Text(t)) if t.as_str() == text);
                if !ok {
                    if failed.fetch_add(1, Ordering::Relaxed) < 3 {
                        eprintln!("tunnel {i}: the echo failed");
                    }
                    return;
                }
                echoed.fetch_add(1, Ordering::Relaxed);
                thread::sleep(Duration::from_secs(1));
            }
            let _ = ws.close(None);
        })
        .unwrap()
}

#[test]
#[ignore = "minutes and thousands of threads: run by hand (see the file's comment)"]
fn a_thousand_tunnels_beside_plain_requests() {
    let (tunnels, secs, rounds) =
        (env("ENGINE_TUNNELS", 1000), env("ENGINE_TUNNEL_SECS", 30), env("ENGINE_TUNNEL_ROUNDS", 1));
    leave_last_cpu();
    let up = upstream();
    let p = proxy(up);
    let idle_rss = rss_kib(p.child.id(), "VmRSS:");
    // ENGINE_TUNNEL_CONTROL=1 sends the plain requests straight to the upstream: what the
    // test's own threads cost the blast, with the proxy out of the plain path.
    let plain = if env("ENGINE_TUNNEL_CONTROL", 0) == 1 { up } else { p.addr };
    // Rounds of a blast alone, then one beside the tunnels: the baseline of a shared VM moves
    // from minute to minute, so each pair is compared within itself.
    let mut ratios = Vec::new();
    let mut held_rss = 0;
    for round in 1..=rounds {
        let (alone_p99, alone_errors) = blast(plain, secs);
        let counts = Counts::default();
        let stop = Arc::new(AtomicBool::new(false));
        let clients: Vec<_> = (0..tunnels).map(|i| tunnel(p.addr, i, stop.clone(), counts.clone())).collect();
        let started = Instant::now();
        while counts.open.load(Ordering::Relaxed) + counts.failed.load(Ordering::Relaxed) < tunnels
            && started.elapsed() < Duration::from_secs(60)
        {
            thread::sleep(Duration::from_millis(100));
        }
        let (with_p99, with_errors) = blast(plain, secs);
        held_rss = held_rss.max(rss_kib(p.child.id(), "VmRSS:"));
        stop.store(true, Ordering::Relaxed);
        for c in clients {
            let _ = c.join();
        }
        let (open, echoed, failed) = (
            counts.open.load(Ordering::Relaxed),
            counts.echoed.load(Ordering::Relaxed),
            counts.failed.load(Ordering::Relaxed),
        );
        eprintln!(
            "round {round}: {open} tunnels open at once, {echoed} echoes, {failed} failed; plain p99 {alone_p99:.3} ms \
             alone, {with_p99:.3} ms beside the tunnels ({:.2}x); blast errors {alone_errors}, {with_errors}",
            with_p99 / alone_p99
        );
        assert_eq!((open, failed), (tunnels, 0));
        assert_eq!((alone_errors, with_errors), (0, 0));
        ratios.push(with_p99 / alone_p99);
    }
    ratios.sort_by(f64::total_cmp);
    let median = ratios[ratios.len() / 2];
    let peak = rss_kib(p.child.id(), "VmHWM:");
    eprintln!(
        "{tunnels} tunnels, {rounds} rounds of {secs} s: proxy RSS idle {idle_rss} KiB, with the tunnels {held_rss} KiB, \
         peak {peak} KiB; p99 beside / alone per round {ratios:.2?}, median {median:.2}x"
    );
    assert!(median <= 2.0, "plain p99 beside the tunnels / alone: {ratios:.2?}");
}
