//! `engine proxy` as a user runs it: flags and their errors, bounded memory while bodies
//! stream through, SIGTERM drains.

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
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(args: &[&str]) -> Running {
    let mut child = Command::new(env!("CARGO_BIN_EXE_engine"))
        .args(["proxy", "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0", "--shards", "1"])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    // "engine proxy on http://127.0.0.1:PORT/ -> upstream ..."
    let addr = line.split("http://").nth(1).and_then(|s| s.split('/').next()).unwrap_or_else(|| panic!("{line}"));
    Running { addr: addr.parse().unwrap(), child, stdout }
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
