//! Modes that run for days: nothing may grow per tick, a panic anywhere ends the process
//! promptly with one line, a stuck shard shows on `/healthz` and does not outlive SIGTERM,
//! and connections churned through the proxy leave nothing behind.
//!
//! `ENGINE_TEST_TICK_DIVISOR` shortens every periodic tick (stop-flag checks, sweeps,
//! heartbeats) so seconds run the ticks of hours; `ENGINE_TEST_FAULT` makes one executor
//! panic or stall (engine_runtime). The churn figure of a million connections is a run
//! by hand (`ENGINE_CHURN_SECS=60`); CI churns for a few seconds.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// These tests time what they see; one at a time, so they do not slow each other.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner())
}

/// A running `engine` and what it printed.
struct Proc {
    child: Child,
    /// The first http:// address of its start line.
    addr: SocketAddr,
    /// The admin address, for a proxy.
    admin: Option<SocketAddr>,
    /// Stderr lines with the time each arrived.
    stderr: Arc<Mutex<Vec<(Instant, String)>>>,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn command(args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_engine"));
    c.args(args).env_remove("RUST_BACKTRACE").env_remove("ENGINE_TEST_FAULT").env_remove("ENGINE_TEST_TICK_DIVISOR");
    for (k, v) in env {
        c.env(k, v);
    }
    c
}

fn collect_stderr(child: &mut Child) -> Arc<Mutex<Vec<(Instant, String)>>> {
    let lines = Arc::new(Mutex::new(Vec::new()));
    let sink = lines.clone();
    let err = BufReader::new(child.stderr.take().unwrap());
    std::thread::spawn(move || {
        for line in err.lines().map_while(Result::ok) {
            sink.lock().unwrap().push((Instant::now(), line));
        }
    });
    lines
}

/// Starts a server mode (`target` or `proxy`) and reads its start line.
fn start(args: &[&str], env: &[(&str, &str)]) -> Proc {
    let mut child = command(args, env).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let stderr = collect_stderr(&mut child);
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    let addr_after = |marker: &str| {
        line.split(marker).nth(1).and_then(|s| s.split('/').next()).and_then(|a| a.parse::<SocketAddr>().ok())
    };
    let addr = addr_after("http://").unwrap_or_else(|| panic!("no address in {line:?}: {:?}", stderr.lock()));
    let admin = addr_after("admin http://");
    // Keep reading stdout so the process never blocks on a full pipe.
    std::thread::spawn(move || {
        let mut sink = Vec::new();
        let _ = stdout.read_to_end(&mut sink);
    });
    Proc { child, addr, admin, stderr }
}

fn target(env: &[(&str, &str)]) -> Proc {
    start(&["target", "--listen", "127.0.0.1:0", "--shards", "1"], env)
}

fn proxy(upstream: SocketAddr, extra: &[&str], env: &[(&str, &str)]) -> Proc {
    let up = upstream.to_string();
    let mut args = vec!["proxy", "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0", "--upstream", &up];
    args.extend_from_slice(extra);
    start(&args, env)
}

/// One GET on a new connection: the status and the body, or None when nothing came in time.
fn get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let status = text.get(9..12)?.parse().ok()?;
    Some((status, text.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default()))
}

fn signal(p: &Proc, sig: libc::c_int) {
    // SAFETY: a plain kill(2) of our own child.
    unsafe { libc::kill(p.child.id() as libc::pid_t, sig) };
}

/// Waits for the process to exit, up to `limit`: its exit code and when it exited.
fn exit_within(p: &mut Proc, limit: Duration) -> (Option<i32>, Instant) {
    let until = Instant::now() + limit;
    loop {
        if let Some(status) = p.child.try_wait().unwrap() {
            return (status.code(), Instant::now());
        }
        assert!(Instant::now() < until, "still running after {limit:?}: {:?}", lines(p));
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn lines(p: &Proc) -> Vec<String> {
    p.stderr.lock().unwrap().iter().map(|(_, l)| l.clone()).collect()
}

/// The one panic line, and when it was printed.
fn panic_line(p: &Proc) -> Option<(Instant, String)> {
    let all = p.stderr.lock().unwrap();
    let panics: Vec<_> = all.iter().filter(|(_, l)| l.contains("panicked")).cloned().collect();
    assert!(panics.len() <= 1, "one panic line, not {panics:?}");
    panics.into_iter().next()
}

fn wait_for_panic_line(p: &Proc, limit: Duration) -> (Instant, String) {
    let until = Instant::now() + limit;
    loop {
        if let Some(l) = panic_line(p) {
            return l;
        }
        assert!(Instant::now() < until, "no panic line within {limit:?}: {:?}", lines(p));
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Every tick 10,000 times shorter: five seconds run the ticks of fourteen hours.
const FAST_TICKS: [(&str, &str); 1] = [("ENGINE_TEST_TICK_DIVISOR", "10000")];

/// The regression test of the waker leak (third_party/glommio/PATCHES.md, "One waker per
/// task"): each server loop re-polled its pending accept on every stop-flag tick and left a
/// task reference behind, so an idle target panicked after 32,767 ticks (10.9 minutes of
/// 20 ms ticks). Here each mode runs tens of thousands of ticks and must still answer.
#[test]
fn hours_of_ticks_leave_every_mode_alive() {
    let _serial = one_at_a_time();
    let mut t = target(&FAST_TICKS);
    let mut p = proxy(t.addr, &["--shards", "2"], &FAST_TICKS);
    let blast = command(
        &[
            "blast",
            &format!("http://{}/", t.addr),
            "--rate",
            "100",
            "-c",
            "4",
            "-d",
            "5s",
            "--shards",
            "1",
            "--metrics-addr",
            "127.0.0.1:0",
            "--json",
            "-",
            "-q",
            "--out",
            &std::env::temp_dir().join(format!("engine-ticks-{}", std::process::id())).display().to_string(),
        ],
        &FAST_TICKS,
    )
    .output()
    .unwrap();
    let err = String::from_utf8_lossy(&blast.stderr);
    assert_eq!(blast.status.code(), Some(0), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    let summary: serde_json::Value = serde_json::from_slice(&blast.stdout).unwrap();
    assert!(summary["requests"].as_u64().unwrap() >= 490, "{summary}");
    assert_eq!(summary["errors"]["total"], 0, "{summary}");

    // The target and the proxy idled through the same seconds.
    assert_eq!(get(t.addr, "/").map(|r| r.0), Some(200), "target: {:?}", lines(&t));
    assert_eq!(get(p.addr, "/").map(|r| r.0), Some(200), "proxy: {:?}", lines(&p));
    let admin = p.admin.unwrap();
    assert_eq!(get(admin, "/healthz"), Some((200, "ok\n".into())), "{:?}", lines(&p));
    for proc in [&mut p, &mut t] {
        assert!(panic_line(proc).is_none(), "{:?}", lines(proc));
        signal(proc, libc::SIGTERM);
        let (code, _) = exit_within(proc, Duration::from_secs(5));
        assert_eq!(code, Some(0), "{:?}", lines(proc));
    }
}

/// `ENGINE_TEST_FAULT=panic:NAME@SECS`: the mode ends within 2 s of the panic, with exit
/// 101 and one line naming the executor.
fn assert_panic_ends_it(p: &mut Proc, executor: &str) -> Instant {
    let (at, line) = wait_for_panic_line(p, Duration::from_secs(10));
    assert!(line.contains(&format!("executor '{executor}' panicked")), "{line}");
    let (code, exited) = exit_within(p, Duration::from_secs(5));
    assert_eq!(code, Some(101), "{:?}", lines(p));
    assert!(exited - at <= Duration::from_secs(2), "exited {:?} after the panic line", exited - at);
    at
}

#[test]
fn a_panicking_target_shard_ends_the_target() {
    let _serial = one_at_a_time();
    let mut t = target(&[("ENGINE_TEST_FAULT", "panic:target-0@0.5")]);
    assert_panic_ends_it(&mut t, "target-0");
}

#[test]
fn a_panicking_proxy_shard_turns_healthz_503_then_ends_the_proxy() {
    let _serial = one_at_a_time();
    let t = target(&[]);
    let mut p = proxy(t.addr, &["--shards", "2"], &[("ENGINE_TEST_FAULT", "panic:proxy-1@1")]);
    let admin = p.admin.unwrap();
    assert_eq!(get(admin, "/healthz").map(|r| r.0), Some(200));
    // /healthz says 503, naming the shard, before the process is gone.
    let mut said = None;
    while p.child.try_wait().unwrap().is_none() {
        if let Some((503, body)) = get(admin, "/healthz") {
            said = Some(body);
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let body = said.unwrap_or_else(|| panic!("no 503 before the exit: {:?}", lines(&p)));
    assert!(body.contains("shard 1 (proxy-1) died"), "{body}");
    assert_panic_ends_it(&mut p, "proxy-1");
}

#[test]
fn a_panicking_admin_api_ends_the_proxy() {
    let _serial = one_at_a_time();
    let t = target(&[]);
    let mut p = proxy(t.addr, &["--shards", "1"], &[("ENGINE_TEST_FAULT", "panic:proxy-admin@0.5")]);
    assert_panic_ends_it(&mut p, "proxy-admin");
}

#[test]
fn a_panicking_blast_shard_ends_the_run_and_keeps_what_it_measured() {
    let _serial = one_at_a_time();
    let t = target(&[]);
    let out = std::env::temp_dir().join(format!("engine-panic-blast-{}", std::process::id()));
    let mut child = command(
        &[
            "blast",
            &format!("http://{}/", t.addr),
            "--rate",
            "200",
            "-c",
            "4",
            "-d",
            "20s",
            "--shards",
            "1",
            "-q",
            "--out",
            &out.display().to_string(),
        ],
        &[("ENGINE_TEST_FAULT", "panic:blast-0@1.5")],
    )
    .stdout(Stdio::null())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    let stderr = collect_stderr(&mut child);
    let mut b = Proc { child, addr: t.addr, admin: None, stderr };
    assert_panic_ends_it(&mut b, "blast-0");
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    assert!(summary["requests"].as_u64().unwrap() > 100, "{summary}");
    assert!(summary["warnings"].to_string().contains("shard 0 died"), "{summary}");
    let _ = std::fs::remove_dir_all(&out);
}

/// A shard that stops running (a thread blocked for good) is not a panic: the process looks
/// alive. `/healthz` says which shard stopped beating, and SIGTERM still ends the process
/// within the drain time plus a second.
#[test]
fn a_stuck_proxy_shard_shows_on_healthz_and_sigterm_still_ends_the_proxy() {
    let _serial = one_at_a_time();
    let t = target(&[]);
    let mut p =
        proxy(t.addr, &["--shards", "2", "--drain-timeout", "1s"], &[("ENGINE_TEST_FAULT", "stall:proxy-1@0.2")]);
    let admin = p.admin.unwrap();
    let until = Instant::now() + Duration::from_secs(5);
    let body = loop {
        if let Some((503, body)) = get(admin, "/healthz") {
            break body;
        }
        assert!(Instant::now() < until, "/healthz never said 503: {:?}", lines(&p));
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(body.contains("shard 1 (proxy-1) has not beaten for"), "{body}");
    let asked = Instant::now();
    signal(&p, libc::SIGTERM);
    let (code, exited) = exit_within(&mut p, Duration::from_secs(5));
    assert_ne!(code, Some(0), "a drain that could not finish is a failure: {:?}", lines(&p));
    assert!(exited - asked <= Duration::from_millis(2500), "took {:?}", exited - asked);
    assert!(lines(&p).iter().any(|l| l.contains("the drain did not finish")), "{:?}", lines(&p));
}

#[test]
fn a_stuck_target_shard_does_not_outlive_sigterm() {
    let _serial = one_at_a_time();
    let mut t = target(&[("ENGINE_TEST_FAULT", "stall:target-0@0.2")]);
    std::thread::sleep(Duration::from_millis(500));
    let asked = Instant::now();
    signal(&t, libc::SIGTERM);
    let (code, exited) = exit_within(&mut t, Duration::from_secs(5));
    assert_eq!(code, Some(1), "{:?}", lines(&t));
    assert!(exited - asked <= Duration::from_millis(2500), "took {:?}", exited - asked);
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).unwrap().count()
}

/// Connections opened and closed through the proxy (`Connection: close`) leave its memory
/// and descriptors where they were. "Before" is after a one-second warm-up churn, so the
/// allocator's first growth is not counted.
#[test]
fn connections_churned_through_the_proxy_leave_nothing_behind() {
    let _serial = one_at_a_time();
    let secs: u64 = std::env::var("ENGINE_CHURN_SECS").ok().and_then(|v| v.parse().ok()).unwrap_or(4);
    let t = target(&[]);
    let p = proxy(t.addr, &["--shards", "1"], &[]);
    let churn = |duration: &str| -> u64 {
        let o = command(
            &[
                "blast",
                &format!("http://{}/", p.addr),
                "-H",
                "Connection: close",
                "-c",
                "32",
                "-d",
                duration,
                "--shards",
                "1",
                "--json",
                "-",
                "-q",
                "--out",
                &std::env::temp_dir().join(format!("engine-churn-{}", std::process::id())).display().to_string(),
            ],
            &[],
        )
        .output()
        .unwrap();
        assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
        let s: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        s["connections"]["opened"].as_u64().unwrap()
    };
    let settle = || std::thread::sleep(Duration::from_millis(700));
    churn("1s");
    settle();
    let pid = p.child.id();
    let (rss0, fds0) = (rss_kib(pid), open_fds(pid));
    let opened = churn(&format!("{secs}s"));
    settle();
    let (rss1, fds1) = (rss_kib(pid), open_fds(pid));
    eprintln!("churned {opened} connections: RSS {rss0} -> {rss1} KiB, descriptors {fds0} -> {fds1}");
    assert!(opened > 1000, "{opened}");
    assert!((rss1 as f64) <= rss0 as f64 * 1.05, "RSS {rss0} -> {rss1} KiB after {opened} connections");
    assert!(fds1.abs_diff(fds0) <= 16, "descriptors {fds0} -> {fds1} after {opened} connections");
    let stats = get(p.admin.unwrap(), "/stats").unwrap().1;
    let stats: serde_json::Value = serde_json::from_str(&stats).unwrap();
    assert_eq!(stats["connections"]["open"], 0, "{stats}");
}

/// A burst of concurrent requests grows the proxy's upstream pool; once those connections
/// have been idle for the idle timeout they are closed, and the descriptors on both sides
/// come back to what one connection at a time needs (a soak's descriptor count stays flat).
#[test]
fn a_bursts_upstream_connections_close_after_the_idle_timeout() {
    let _serial = one_at_a_time();
    let t = target(&[]);
    let p = proxy(t.addr, &["--shards", "1", "--idle-timeout", "1s"], &[]);
    let blast = |conns: &str| {
        let out = std::env::temp_dir().join(format!("engine-burst-{}-{conns}", std::process::id()));
        let o =
            command(&["blast", &format!("http://{}/", p.addr), "-c", conns, "-d", "1s", "--shards", "1", "-q"], &[])
                .arg("--out")
                .arg(&out)
                .output()
                .unwrap();
        assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
    };
    let (tpid, ppid) = (t.child.id(), p.child.id());
    let before = (open_fds(tpid), open_fds(ppid));
    blast("48");
    let burst = (open_fds(tpid), open_fds(ppid));
    assert!(
        burst.0 >= before.0 + 8,
        "the burst should have grown the pool: target descriptors {before:?} -> {burst:?}"
    );
    std::thread::sleep(Duration::from_millis(2600));
    let after = (open_fds(tpid), open_fds(ppid));
    eprintln!(
        "descriptors (target, proxy): before {before:?}, after the burst {burst:?}, idle timeout later {after:?}"
    );
    assert!(after.0 <= before.0 + 2, "target descriptors {before:?} -> {after:?}: the pool kept idle connections");
    assert!(after.1 <= before.1 + 2, "proxy descriptors {before:?} -> {after:?}: the pool kept idle connections");
}
