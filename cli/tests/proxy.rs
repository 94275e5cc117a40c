//! `engine proxy` as a user runs it: flags and their errors, bounded memory while bodies
//! stream through, SIGTERM drains, the rules' first/every/exclude/regex and their counts, and
//! TCP mode in front of a real Redis.

// A test reads as one story from setup to the last assertion; the CLI's 60-line limit
// (cli/clippy.toml) is for its code.
#![allow(clippy::too_many_lines)]

mod ports;
mod require;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

fn engine(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_engine")).args(args).output().expect("engine runs")
}

/// A running `engine proxy`, and the address it printed.
struct Running {
    child: Child,
    addr: SocketAddr,
    stdout: BufReader<std::process::ChildStdout>,
    /// The line the proxy printed as it started.
    line: String,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A server the test started, stopped when the test ends, by its end or a failed assertion.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `engine target` with `args`, on the free port `port`, once it listens.
fn target(port: u16, args: &[&str]) -> Killed {
    let child = Command::new(env!("CARGO_BIN_EXE_engine"))
        .args(["target", "--listen", &format!("127.0.0.1:{port}")])
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let t = Killed(child);
    ports::wait_listening(port, "the target");
    t
}

fn start(args: &[&str]) -> Running {
    let mut child = Command::new(env!("CARGO_BIN_EXE_engine"))
        .args(["proxy", "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0"])
        .args(if args.contains(&"--shards") { &[][..] } else { &["--shards", "1"][..] })
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    // "engine proxy on http://127.0.0.1:PORT/ -> upstream ..." (tcp:// in TCP mode)
    let addr = line.split("://").nth(1).and_then(|s| s.split('/').next()).unwrap_or_else(|| panic!("{line}"));
    Running { addr: addr.parse().unwrap(), child, stdout, line }
}

fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[test]
fn bad_flags_exit_2_with_one_line() {
    let cases: &[(&[&str], &str)] = &[
        (
            &["proxy", "--upstream", "127.0.0.1:1", "--upstream-ca", "ca.pem"],
            "--upstream-ca is for an https:// upstream",
        ),
        (&["proxy", "--upstream", "https://127.0.0.1:1", "--upstream-ca", "/nonexistent.pem"], "/nonexistent.pem"),
        (&["proxy", "--upstream", "127.0.0.1:1", "--tls-cert", "c.pem"], "--tls-key"),
        (&["proxy", "--upstream", "127.0.0.1:1", "--tls-cert", "/no/c.pem", "--tls-key", "/no/k.pem"], "/no/c.pem"),
        (&["proxy", "--upstream", "127.0.0.1:1/path"], "HOST:PORT only"),
        (&["proxy", "--upstream", "no-port"], "is not a HOST:PORT"),
        (&["proxy", "--upstream", "127.0.0.1:1", "--admin", "0.0.0.0:0"], "needs --admin-token-file"),
        (&["proxy", "--upstream", "127.0.0.1:1", "--shards", "0"], "--shards must be at least 1"),
        (&["proxy", "--upstream", "127.0.0.1:1", "--faults", "/nonexistent.toml"], "cannot read /nonexistent.toml"),
        (&["proxy", "--upstream", "127.0.0.1:1", "--route", "api"], "must start with /"),
        (&["proxy", "--upstream", "127.0.0.1:1", "--route", "/a", "--route", "/a"], "\"/a\" is given twice"),
        (
            &["proxy", "--upstream", "127.0.0.1:1", "--listen", "127.0.0.1:18099", "--admin", "127.0.0.1:18099"],
            "needs a port of its own",
        ),
        (&["proxy", "--upstream", "127.0.0.1:1", "--shards", "1025"], "--shards 1025 is more than 1024"),
        (&["proxy", "--upstream", "127.0.0.1:1", "--max-conns", "99999999"], "lower --max-conns to "),
        (&["proxy", "--upstream", "127.0.0.1:1", "--busy-poll", "2s"], "--busy-poll 2s is over 1s"),
        (&["proxy"], "--upstream"),
        (&["proxy", "--upstream", "127.0.0.1:1", "--upstream-protocol", "h2"], "h2 is HTTP/2 over TLS"),
        (&["proxy", "--upstream", "https://127.0.0.1:1", "--upstream-protocol", "h2c"], "give h2"),
        (&["proxy", "--upstream", "127.0.0.1:1", "--upstream-protocol", "h3"], "give auto, h1, h2"),
        (&["proxy", "--tcp", "--upstream", "127.0.0.1:1", "--upstream-protocol", "h2c"], "--tcp passes bytes"),
    ];
    for (args, want) in cases {
        let o = engine(args);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(want), "{args:?}: {err}");
    }
    let dir = std::env::temp_dir().join(format!("engine-faults-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("bad.toml");
    std::fs::write(
        &file,
        "[[fault]]\nprobability = 0.5\naction = { delay = { ms = 5 } }\n\n[[fault]]\naction = { explode = {} }\n",
    )
    .unwrap();
    let o = engine(&["proxy", "--upstream", "127.0.0.1:1", "--faults", file.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("bad.toml") && err.contains("line 6") && err.contains("explode"), "{err}");
    for (text, want) in [
        (
            "[[fault]]\nid = \"a\"\naction = { reset = {} }\n[[fault]]\nid = \"a\"\naction = { hang = {} }\n",
            "two faults have id \"a\"",
        ),
        ("[[fault]]\naction = { concurrency = { limit = 0, queue = 5 } }\n", "concurrency limit must be at least 1"),
    ] {
        std::fs::write(&file, text).unwrap();
        let o = engine(&["proxy", "--upstream", "127.0.0.1:1", "--faults", file.to_str().unwrap()]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{err}");
        assert!(err.contains("bad.toml") && err.contains(want), "{err}");
    }
    let o = engine(&["proxy", "--help"]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("Admin API") && out.contains("[[fault]]") && out.contains("SIGTERM"), "{out}");
}

/// An upstream answering each request with a `size`-byte Content-Length body, fast.
fn bulk_upstream(size: usize) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    thread::spawn(move || {
        for conn in l.incoming() {
            let Ok(mut conn) = conn else { return };
            thread::spawn(move || {
                let chunk = vec![b'z'; 1 << 20];
                let mut head = [0u8; 4096];
                while matches!(conn.read(&mut head), Ok(n) if n > 0) {
                    if conn.write_all(format!("HTTP/1.1 200 OK\r\nContent-Length: {size}\r\n\r\n").as_bytes()).is_err()
                    {
                        return;
                    }
                    for _ in 0..size / chunk.len() {
                        if conn.write_all(&chunk).is_err() {
                            return;
                        }
                    }
                }
            });
        }
    });
    addr
}

#[test]
fn a_256_mib_body_streams_through_in_bounded_memory() {
    let size = 256 << 20;
    let upstream = bulk_upstream(size).to_string();
    let p = start(&["--upstream", &upstream]);
    let pid = p.child.id();
    let mut c = TcpStream::connect(p.addr).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    c.write_all(b"GET /small HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    // Read the head, then count the body without keeping it.
    let mut buf = vec![0u8; 1 << 16];
    let mut got = 0usize;
    let mut head_end = None;
    let mut head = Vec::new();
    let before = Instant::now();
    while head_end.is_none() || got < size {
        // The read can fail with EINTR when this process takes a signal (2 in 300 runs).
        let n = match c.read(&mut buf) {
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            r => r.unwrap(),
        };
        assert!(n > 0, "closed after {got} body bytes");
        if head_end.is_none() {
            head.extend_from_slice(&buf[..n]);
            if let Some(i) = head.windows(4).position(|w| w == b"\r\n\r\n") {
                head_end = Some(i + 4);
                got = head.len() - i - 4;
            }
        } else {
            got += n;
        }
    }
    assert_eq!(got, size);
    assert!(String::from_utf8_lossy(&head).starts_with("HTTP/1.1 200 OK"));
    let peak = peak_rss_kib(pid);
    // A proxy that buffered the body would hold 256 MiB; ours keeps 16 KiB per exchange.
    assert!(peak < 40 * 1024, "peak RSS {peak} KiB after streaming 256 MiB in {:?}", before.elapsed());
}

#[test]
fn sigterm_drains_and_prints_what_the_proxy_saw() {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let upstream = l.local_addr().unwrap().to_string();
    // A slow upstream: the request is in flight when SIGTERM arrives.
    thread::spawn(move || {
        for conn in l.incoming() {
            let Ok(mut conn) = conn else { return };
            thread::spawn(move || {
                let mut b = [0u8; 4096];
                while matches!(conn.read(&mut b), Ok(n) if n > 0) {
                    thread::sleep(Duration::from_millis(500));
                    let _ = conn.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
                }
            });
        }
    });
    let mut p = start(&["--upstream", &upstream]);
    let addr = p.addr;
    let client = thread::spawn(move || {
        let mut c = TcpStream::connect(addr).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        c.write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
        let mut all = Vec::new();
        let _ = c.read_to_end(&mut all);
        String::from_utf8_lossy(&all).to_string()
    });
    thread::sleep(Duration::from_millis(200));
    // SAFETY: signalling our own child process.
    unsafe { libc::kill(p.child.id() as i32, libc::SIGTERM) };
    let reply = client.join().unwrap();
    assert!(
        reply.starts_with("HTTP/1.1 200 OK") && reply.contains("Connection: close") && reply.ends_with("ok"),
        "{reply}"
    );
    let status = p.child.wait().unwrap();
    assert_eq!(status.code(), Some(0));
    let mut rest = String::new();
    p.stdout.read_to_string(&mut rest).unwrap();
    assert!(rest.contains("draining") && rest.contains("engine proxy stopped: 1 requests"), "{rest}");
}

/// Without --max-conns the proxy holds what the open-files limit allows (two descriptors a
/// client) and says so, rather than accepting clients it could not forward.
#[test]
fn the_default_connection_limit_follows_the_open_files_limit() {
    use std::os::unix::process::CommandExt;
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_engine"));
    cmd.args(["proxy", "--listen", "127.0.0.1:0", "--upstream", "127.0.0.1:9", "--admin", "off", "--shards", "1"]);
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    // SAFETY: setrlimit is async-signal-safe, and `rl` lives on this frame.
    unsafe {
        cmd.pre_exec(|| {
            let rl = libc::rlimit { rlim_cur: 1000, rlim_max: 1000 };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &rl) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let _ = child.kill();
    let _ = child.wait();
    // (1000 - 64 reserved - 16 for the shard) / 2 = 460.
    assert!(line.contains("at most 460 client connections (open-files limit)"), "{line}");
}

/// `--fault-headers` from a client that is not on loopback: ignored without the admin token,
/// honoured with it. In a network namespace of its own, with a non-loopback address on its
/// loopback interface, so no packet leaves the machine.
#[test]
fn fault_fields_from_a_remote_client_need_the_admin_token() {
    require!("root", "curl");
    let dir = std::env::temp_dir().join(format!("engine-fault-fields-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("token"), "fault-token-0123456789\n").unwrap();
    let script = format!(
        r#"set -e
ip link set lo up
ip addr add 10.9.9.9/32 dev lo
{engine} target --listen 127.0.0.1:8090 > /dev/null 2>&1 &
T=$!
{engine} proxy --listen 0.0.0.0:8091 --upstream 127.0.0.1:8090 --admin 127.0.0.1:9901 --admin-token-file {dir}/token --fault-headers > /dev/null 2>&1 &
P=$!
trap 'kill $T $P' EXIT
for i in $(seq 50); do (echo > /dev/tcp/10.9.9.9/8091) 2>/dev/null && break; sleep 0.1; done
took() {{ curl -s -o /dev/null -w '%{{time_total}}' -H 'x-engine-fault-delay-ms: 300' "$@"; }}
echo "remote=$(took --interface 10.9.9.9 http://10.9.9.9:8091/)"
echo "remote_token=$(took --interface 10.9.9.9 -H 'x-engine-fault-token: fault-token-0123456789' http://10.9.9.9:8091/)"
echo "remote_wrong=$(took --interface 10.9.9.9 -H 'x-engine-fault-token: guess' http://10.9.9.9:8091/)"
echo "local=$(took http://127.0.0.1:8091/)"
"#,
        engine = env!("CARGO_BIN_EXE_engine"),
        dir = dir.display(),
    );
    let o = Command::new("unshare").args(["-n", "bash", "-c", &script]).output().expect("unshare runs (root)");
    let out = String::from_utf8_lossy(&o.stdout).to_string();
    let secs = |k: &str| -> f64 {
        out.lines().find_map(|l| l.strip_prefix(&format!("{k}="))).and_then(|v| v.trim().parse().ok()).unwrap_or(-1.0)
    };
    let _ = std::fs::remove_dir_all(&dir);
    for (who, delayed) in [("remote", false), ("remote_wrong", false), ("remote_token", true), ("local", true)] {
        let t = secs(who);
        assert!(t >= 0.0, "{who}: no answer\n{out}{}", String::from_utf8_lossy(&o.stderr));
        assert_eq!(t >= 0.3, delayed, "{who} took {t} s\n{out}");
    }
}

/// An upstream that answers every request `200 ok`, keep-alive, a thread per connection.
fn ok_upstream() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    thread::spawn(move || {
        for conn in l.incoming() {
            let Ok(mut conn) = conn else { return };
            thread::spawn(move || {
                let mut buf = Vec::new();
                let mut got = [0u8; 4096];
                while let Ok(n) = conn.read(&mut got) {
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&got[..n]);
                    while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        buf.drain(..end + 4);
                        if conn.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok").is_err() {
                            return;
                        }
                    }
                }
            });
        }
    });
    addr
}

/// One keep-alive request on `conn` (reconnecting to `addr` when the proxy closed it);
/// returns the status.
fn get(conn: &mut Option<TcpStream>, addr: SocketAddr, path: &str, extra: &str) -> u16 {
    let c = conn.get_or_insert_with(|| TcpStream::connect(addr).unwrap());
    c.write_all(format!("GET {path} HTTP/1.1\r\nHost: t\r\n{extra}\r\n").as_bytes()).unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(c.read(&mut byte).unwrap(), 1, "the proxy closed before answering {path}");
        head.push(byte[0]);
    }
    let text = String::from_utf8_lossy(&head).to_lowercase();
    let status: u16 = text[9..12].parse().unwrap();
    let len: usize =
        text.lines().find_map(|l| l.strip_prefix("content-length:")).map_or(0, |v| v.trim().parse().unwrap());
    let mut body = vec![0u8; len];
    c.read_exact(&mut body).unwrap();
    if text.contains("connection: close") {
        *conn = None;
    }
    status
}

/// GET on the admin API: the body.
fn admin_get(admin: &str, path: &str) -> String {
    let mut s = TcpStream::connect(admin).unwrap();
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: {admin}\r\n\r\n").as_bytes()).unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    text.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default()
}

#[test]
fn rules_fault_the_first_n_every_nth_a_header_share_and_never_what_they_exclude() {
    let dir = std::env::temp_dir().join(format!("engine-rules-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let faults = dir.join("faults.toml");
    std::fs::write(
        &faults,
        r#"
[[fault]]
id = "first3"
match = { path_prefix = "/first" }
first = 3
action = { abort = { status = 503 } }

[[fault]]
id = "every10"
match = { path_prefix = "/every" }
every = 10
action = { abort = { status = 500 } }

[[fault]]
id = "all-but-health"
match = { path_prefix = "/x" }
exclude = ["/x/healthz"]
action = { abort = { status = 418 } }

[[fault]]
id = "beta"
match = { path_prefix = "/hdr", header = { name = "x-user", regex = "^beta-[0-9]+$" } }
probability = 0.3
action = { abort = { status = 429 } }

[[fault]]
id = "slow"
match = { path_prefix = "/slow" }
action = { delay = { ms = 400 } }
"#,
    )
    .unwrap();
    let up = ok_upstream().to_string();
    let p =
        start(&["--upstream", &up, "--faults", faults.to_str().unwrap(), "--shards", "2", "--max-active-faults", "3"]);
    // "...; admin http://127.0.0.1:PORT/..."
    let admin = p.line.split("admin http://").nth(1).and_then(|s| s.split(['/', ' ', ';']).next()).unwrap().to_string();
    let addr = p.addr;
    // Four connections, spread over both shards: `first` and `every` count across them.
    let mut conns: Vec<Option<TcpStream>> = (0..4).map(|_| None).collect();
    let mut statuses = |path: &str, extra: &str, n: usize| -> Vec<u16> {
        (0..n).map(|i| get(&mut conns[i % 4], addr, path, extra)).collect()
    };
    let first = statuses("/first", "", 10);
    assert_eq!(first, [503, 503, 503, 200, 200, 200, 200, 200, 200, 200]);
    let every = statuses("/every", "", 30);
    let failed: Vec<usize> = every.iter().enumerate().filter(|(_, s)| **s == 500).map(|(i, _)| i + 1).collect();
    assert_eq!(failed, [10, 20, 30]);
    assert!(statuses("/x/api", "", 20).iter().all(|s| *s == 418));
    assert!(statuses("/x/healthz", "", 20).iter().all(|s| *s == 200), "excluded from a 100% rule");
    assert!(statuses("/hdr", "x-user: alpha-1\r\n", 50).iter().all(|s| *s == 200), "the regex does not match");
    let n = 10_000;
    let beta = statuses("/hdr", "x-user: beta-42\r\n", n);
    let share = beta.iter().filter(|s| **s == 429).count() as f64 / n as f64;
    assert!((share - 0.3).abs() <= 0.02, "a 30% rule faulted {:.1}%", share * 100.0);

    // Ten at once under a 400 ms delay rule, at most three faults active: three wait.
    let slow: Vec<_> = (0..10)
        .map(|_| {
            thread::spawn(move || {
                let t0 = Instant::now();
                assert_eq!(get(&mut None, addr, "/slow", ""), 200);
                t0.elapsed()
            })
        })
        .collect();
    let delayed = slow.into_iter().map(|t| t.join().unwrap()).filter(|d| *d >= Duration::from_millis(400)).count();
    assert_eq!(delayed, 3, "requests delayed with --max-active-faults 3");

    let stats: serde_json::Value = serde_json::from_str(&admin_get(&admin, "/stats")).unwrap();
    let rule = |id: &str| stats["fault_rules"].as_array().unwrap().iter().find(|r| r["id"] == id).unwrap().clone();
    assert_eq!((rule("first3")["matched"].as_u64(), rule("first3")["injected"].as_u64()), (Some(10), Some(3)));
    assert_eq!((rule("every10")["matched"].as_u64(), rule("every10")["injected"].as_u64()), (Some(30), Some(3)));
    assert_eq!(rule("all-but-health")["matched"], 20, "the excluded path is not even matched");
    assert_eq!(rule("slow")["injected"], 3);
    assert_eq!(stats["faults_overflow"], 7);
    assert_eq!(stats["faults_active"], 0);
    let metrics = admin_get(&admin, "/metrics");
    for line in [
        r#"engine_proxy_fault_rule_injected_total{rule="first3"} 3"#,
        r#"engine_proxy_fault_rule_matched_total{rule="every10"} 30"#,
        "engine_proxy_faults_overflow_total 7",
    ] {
        assert!(metrics.lines().any(|l| l == line), "no {line} in\n{metrics}");
    }
    drop(p);
    let _ = std::fs::remove_dir_all(&dir);
}

/// POST or DELETE on the admin API: the status.
fn admin_send(admin: &str, method: &str, path: &str, body: &str) -> u16 {
    let mut s = TcpStream::connect(admin).unwrap();
    let req = format!(
        "{method} {path} HTTP/1.0\r\nHost: {admin}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    text[9..12].parse().unwrap()
}

/// The median of ten PING round trips on `c` (a Redis connection).
fn ping_rtt(c: &mut TcpStream) -> Duration {
    let mut took: Vec<Duration> = (0..10)
        .map(|_| {
            let t0 = Instant::now();
            c.write_all(b"PING\r\n").unwrap();
            let mut pong = [0u8; 7];
            c.read_exact(&mut pong).unwrap();
            assert_eq!(&pong, b"+PONG\r\n");
            t0.elapsed()
        })
        .collect();
    took.sort();
    took[5]
}

#[test]
fn tcp_mode_passes_redis_and_its_faults_act_on_connections() {
    require!("redis-server", "redis-cli");
    let port = ports::free_port().to_string();
    let redis = Command::new("redis-server")
        .args(["--port", &port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let _redis = Killed(redis);
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(format!("127.0.0.1:{port}")).is_err() {
        assert!(Instant::now() < deadline, "redis-server did not start");
        thread::sleep(Duration::from_millis(20));
    }
    let p = start(&["--tcp", "--upstream", &format!("127.0.0.1:{port}")]);
    assert!(p.line.contains("on tcp://"), "{}", p.line);
    let admin = p.line.split("admin http://").nth(1).and_then(|s| s.split(['/', ' ', ';']).next()).unwrap().to_string();
    let cli = |args: &[&str]| {
        let o = Command::new("redis-cli")
            .args(["-h", "127.0.0.1", "-p", &p.addr.port().to_string()])
            .args(args)
            .output()
            .unwrap();
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    };
    assert_eq!(cli(&["SET", "k", "through the proxy"]), "OK");
    assert_eq!(cli(&["GET", "k"]), "through the proxy");

    // A latency rule added while a connection is open applies to its next bytes; redis-cli's
    // own round trips (20 PINGs on a new connection) take it too.
    let mut c = TcpStream::connect(p.addr).unwrap();
    let before = ping_rtt(&mut c);
    let pings = || {
        let t0 = Instant::now();
        assert_eq!(cli(&["-r", "20", "PING"]).lines().filter(|l| *l == "PONG").count(), 20);
        t0.elapsed()
    };
    let cli_before = pings();
    assert_eq!(admin_send(&admin, "POST", "/faults", r#"{"id": "lag", "action": {"latency": {"ms": 20}}}"#), 201);
    thread::sleep(Duration::from_millis(300));
    // Moved by 20-30 ms: each round trip now takes the whole 20 ms on top of a path of a few
    // hundred microseconds (whose own jitter is why the floor is on the round trip itself,
    // not on the difference of two noisy ones), and at most 30 ms more than before.
    let after = ping_rtt(&mut c);
    let lag = Duration::from_millis(20);
    assert!(after >= lag && after <= before + Duration::from_millis(30), "{before:?} -> {after:?}");
    let (cli_after, n) = (pings(), 20);
    assert!(
        cli_after >= lag * n && cli_after <= cli_before + Duration::from_millis(30) * n,
        "redis-cli's 20 round trips: {cli_before:?} -> {cli_after:?}"
    );
    assert_eq!(admin_send(&admin, "DELETE", "/faults/lag", ""), 204);
    thread::sleep(Duration::from_millis(300));

    // limit_data: ten bytes to the client, then the connection ends.
    assert_eq!(admin_send(&admin, "POST", "/faults", r#"{"id": "cut", "action": {"limit_data": {"bytes": 10}}}"#), 201);
    thread::sleep(Duration::from_millis(300));
    let mut c = TcpStream::connect(p.addr).unwrap();
    c.write_all(b"PING\r\nPING\r\nPING\r\n").unwrap();
    let mut got = Vec::new();
    let _ = c.read_to_end(&mut got);
    assert_eq!(got, b"+PONG\r\n+PO", "what passed before the limit");
    assert_eq!(admin_send(&admin, "DELETE", "/faults/cut", ""), 204);
    thread::sleep(Duration::from_millis(300));

    // reset_peer: a reset rule resets new connections, and an open one on its next bytes.
    let mut open = TcpStream::connect(p.addr).unwrap();
    assert!(ping_rtt(&mut open) < Duration::from_millis(20), "no latency left on a new connection");
    assert_eq!(admin_send(&admin, "POST", "/faults", r#"{"id": "rst", "action": "reset"}"#), 201);
    thread::sleep(Duration::from_millis(300));
    for mut c in [TcpStream::connect(p.addr).unwrap(), open] {
        let _ = c.write_all(b"PING\r\n");
        let mut buf = [0u8; 16];
        let e = c.read(&mut buf).expect_err("a reset, not an answer");
        assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset);
    }
    // The shards publish their figures every tick.
    thread::sleep(Duration::from_millis(300));
    let stats: serde_json::Value = serde_json::from_str(&admin_get(&admin, "/stats")).unwrap();
    assert!(stats["tunnels"]["opened"].as_u64().unwrap() >= 4, "{}", stats["tunnels"]);
    assert!(stats["faults_injected"]["reset"].as_u64().unwrap() >= 2, "{}", stats["faults_injected"]);
}

/// Stream faults on HTTP/2 bodies (issue 31: "delays and stream faults per message stream"):
/// with curl over h2c through the proxy to an h2c `engine target`, a downstream bandwidth rule
/// paces a 40 KB body to its rate, a data limit resets the stream after it (curl fails, having
/// got no more than the limit), an upstream latency rule holds a request body's DATA, and the
/// faults are counted as for HTTP/1.1.
#[test]
fn stream_faults_act_on_http2_bodies() {
    require!("curl");
    let port = ports::free_port();
    let _target = target(port, &["--http2", "--body-size", "40000"]);
    // HTTP/2 both sides, then the two translations: h2c clients to an HTTP/1.1 upstream, and
    // HTTP/1.1 clients to an h2c upstream.
    for (upstream_protocol, client) in
        [("auto", "--http2-prior-knowledge"), ("h1", "--http2-prior-knowledge"), ("h2c", "--http1.1")]
    {
        stream_faults_through(port, upstream_protocol, client);
    }
}

/// The stream faults on one path through the proxy to the HTTP/2-capable target on `port`.
fn stream_faults_through(port: u16, upstream_protocol: &str, client: &str) {
    let path = format!("{client} through --upstream-protocol {upstream_protocol}");
    let p = start(&["--upstream", &format!("127.0.0.1:{port}"), "--upstream-protocol", upstream_protocol]);
    let admin = p.line.split("admin http://").nth(1).and_then(|s| s.split(['/', ' ', ';']).next()).unwrap().to_string();
    let url = |path: &str| format!("http://{}{path}", p.addr);
    // (status or curl's failure, bytes received, seconds)
    let curl = |path: &str, extra: &[&str]| -> (String, u64, f64) {
        let o = Command::new("curl")
            .args(["-s", client, "-o", "/dev/null", "-w", "%{http_code} %{size_download} %{time_total}"])
            .args(extra)
            .arg(url(path))
            .output()
            .unwrap();
        let out = String::from_utf8_lossy(&o.stdout).to_string();
        let w: Vec<&str> = out.split_whitespace().collect();
        let code = if o.status.success() { w[0].to_string() } else { format!("curl exit {:?}", o.status.code()) };
        (code, w[1].parse().unwrap(), w[2].parse().unwrap())
    };
    let (code, size, fast) = curl("/plain", &[]);
    assert_eq!((code.as_str(), size), ("200", 40_000), "{path}");
    let rules = [
        r#"{"id": "slow", "match": {"path_prefix": "/slow"}, "action": {"bandwidth": {"bytes_per_s": 20000, "direction": "downstream"}}}"#,
        r#"{"id": "cut", "match": {"path_prefix": "/cut"}, "action": {"limit_data": {"bytes": 10000, "direction": "downstream"}}}"#,
        r#"{"id": "held", "match": {"path_prefix": "/held"}, "action": {"latency": {"ms": 400, "direction": "upstream"}}}"#,
        r#"{"id": "capped", "match": {"path_prefix": "/capped"}, "action": {"limit_data": {"bytes": 1000, "direction": "upstream"}}}"#,
    ];
    for r in rules {
        assert_eq!(admin_send(&admin, "POST", "/faults", r), 201);
    }
    thread::sleep(Duration::from_millis(300));
    // 40 KB at 20 KB/s: about two seconds, where it took a few milliseconds unfaulted.
    let (code, size, slow) = curl("/slow", &[]);
    assert_eq!((code.as_str(), size), ("200", 40_000), "{path}");
    assert!((1.6..4.0).contains(&slow), "{path}: {slow} s (unfaulted {fast} s)");
    // The data limit: the response is cut once 10 KB passed.
    let (code, size, _) = curl("/cut", &[]);
    assert!(code.starts_with("curl exit"), "{path}: {code}");
    assert!(size <= 10_000, "{path}: {size} bytes passed a 10,000-byte limit");
    // Upstream latency acts on the request body on its way up.
    let (code, _, held) = curl("/held", &["--data-binary", "0123456789"]);
    assert_eq!(code, "200", "{path}");
    assert!(held >= 0.4, "{path}: {held} s");
    // An upstream data limit: a 5,000-byte body is cut at 1,000 and the client gets no answer.
    let body = "x".repeat(5000);
    let (code, _, _) = curl("/capped", &["--data-binary", &body]);
    assert!(code.starts_with("curl exit"), "{path}: {code}");
    // The proxy still serves after the cuts.
    let (code, size, _) = curl("/plain", &[]);
    assert_eq!((code.as_str(), size), ("200", 40_000), "{path}");
    // The shards publish their counts each tick.
    thread::sleep(Duration::from_millis(300));
    let stats = admin_get(&admin, "/stats");
    let stats: serde_json::Value = serde_json::from_str(&stats).unwrap();
    let f = &stats["faults_injected"];
    assert_eq!(
        (f["bandwidth"].as_u64(), f["limit_data"].as_u64(), f["latency"].as_u64()),
        (Some(1), Some(2), Some(1)),
        "{path}: {f}"
    );
}

/// Established connections whose far end is `port` on this host (the clients' side of them).
fn connections_to(port: u16) -> usize {
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap();
    let far = format!(":{port:04X}");
    table
        .lines()
        .skip(1)
        .filter(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.len() > 3 && f[2].ends_with(&far) && f[3] == "01"
        })
        .count()
}

/// An HTTP/2 upstream that allows one stream at a time per connection: the proxy opens more
/// connections rather than queueing every stream on one, up to its cap (16 a shard), and
/// closes them once unused for the idle timeout. 40 clients, each request held 100 ms
/// upstream: one connection would serve about 20 a second, no cap 400, the pool of 16 about
/// 160.
#[test]
fn an_h2_upstream_with_full_connections_gets_more_up_to_the_cap() {
    let port = ports::free_port();
    let _target = target(port, &["--max-streams", "1", "--delay", "100ms", "--shards", "1"]);
    // HTTP/1.1 clients translated to the h2c upstream, and h2c clients (40 streams on 4
    // connections) passed as HTTP/2.
    let clients: [(&str, &[&str]); 2] =
        [("h2c", &["-c", "40"]), ("auto", &["--http2-prior-knowledge", "-c", "4", "--streams", "10"])];
    for (upstream_protocol, client) in clients {
        let upstream = format!("127.0.0.1:{port}");
        let p = start(&["--upstream", &upstream, "--upstream-protocol", upstream_protocol, "--idle-timeout", "1s"]);
        let url = format!("http://{}/", p.addr);
        let blast = Command::new(env!("CARGO_BIN_EXE_engine"))
            .args(["blast", &url, "-d", "3s", "--shards", "1", "--json", "-", "-q"])
            .args(client)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut most = 0;
        let until = Instant::now() + Duration::from_millis(2500);
        while Instant::now() < until {
            thread::sleep(Duration::from_millis(100));
            most = most.max(connections_to(port));
        }
        let out = blast.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let s: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let (requests, errors) = (s["requests"].as_u64().unwrap(), s["errors"]["total"].as_u64().unwrap());
        // Streams the upstream refused before its SETTINGS arrived were sent again.
        assert_eq!(errors, 0, "{client:?}: {}", s["errors"]);
        assert!((2..=16).contains(&most), "{client:?}: {most} connections to the upstream");
        // 16 streams at once for 3 s at 100 ms each: 480, and the 40 in flight at the end
        // finish too (uncapped, 40 at once would make 1,200; one connection 30 + 40).
        assert!((240..=540).contains(&requests), "{client:?}: {requests} requests over {most} connections");
        // Unused for the idle timeout (1 s, seen at the shard's 100 ms tick), they close.
        thread::sleep(Duration::from_millis(1600));
        assert_eq!(connections_to(port), 0, "{client:?}: upstream connections left open after the idle timeout");
        drop(p);
    }
}

/// An upstream that answers one request per connection with a keep-alive response, then
/// closes the connection 50 ms later (an idle close the proxy only sees on its next use).
fn closing_upstream() -> (SocketAddr, std::sync::Arc<std::sync::atomic::AtomicU64>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let conns = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let counted = conns.clone();
    thread::spawn(move || {
        for mut c in listener.incoming().flatten() {
            counted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            thread::spawn(move || {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    match c.read(&mut chunk) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                let _ = c.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
                thread::sleep(Duration::from_millis(50));
            });
        }
    });
    (addr, conns)
}

/// A bodiless request that meets a pooled connection the upstream closed while idle is sent
/// again on a new connection, from HTTP/1.1 clients and from HTTP/2 clients translated to
/// HTTP/1.1 alike: the client sees 200 each time, never 502.
#[test]
fn a_pooled_connection_closed_while_idle_is_retried_for_bodiless_requests() {
    require!("curl");
    let (upstream, conns) = closing_upstream();
    let p = start(&["--upstream", &upstream.to_string(), "--upstream-protocol", "h1"]);
    // HTTP/1.1: two requests 300 ms apart on one client connection.
    let mut c = TcpStream::connect(p.addr).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    for _ in 0..2 {
        c.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let mut got = Vec::new();
        let mut chunk = [0u8; 4096];
        while !got.ends_with(b"ok") {
            let n = c.read(&mut chunk).unwrap();
            assert!(n > 0, "the proxy closed: {}", String::from_utf8_lossy(&got));
            got.extend_from_slice(&chunk[..n]);
        }
        assert!(got.starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&got));
        thread::sleep(Duration::from_millis(300));
    }
    // HTTP/2: five streams 200 ms apart on one h2c connection.
    let o = Command::new(env!("CARGO_BIN_EXE_engine"))
        .args(["blast", &format!("http://{}/", p.addr), "--http2-prior-knowledge", "-c", "1", "--streams", "1"])
        .args(["-R", "5", "-d", "1s", "--shards", "1", "--json", "-", "-q"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let s: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let requests = s["requests"].as_u64().unwrap();
    assert_eq!((requests, s["errors"]["total"].as_u64()), (5, Some(0)), "{}", s["errors"]);
    assert_eq!(s["status"]["200"].as_u64(), Some(5), "{}", s["status"]);
    // Each request after the first found its pooled connection closed and opened another.
    assert_eq!(conns.load(std::sync::atomic::Ordering::Relaxed), 2 + requests);
}
