//! Hostile HTTP/2 clients of the proxy (issue 31, acceptance 5), written frame by frame: each
//! field that would smuggle a request past an HTTP/1.1 hop, a rapid-reset flood, a
//! CONTINUATION flood. Nothing malformed reaches the upstream (an HTTP/2 `engine target`
//! that counts what it served), the attacker's connection ends, the proxy's memory stays
//! bounded and other clients keep being served. And a quiet client, closed at the idle timeout.

mod proxy_support;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use engine_http::h2::frame::{self, Head, CANCEL, CONTINUATION, DATA, END_STREAM, GOAWAY, HEADERS, RST_STREAM};
use engine_http::h2::hpack::{encode_field, encode_pseudo};
use engine_target::{Target, TargetConfig};
use proxy_support::{proxy, Client};

/// One attack at a time: each one's time and memory are its own.
static SERIAL: Mutex<()> = Mutex::new(());

const ENHANCE_YOUR_CALM: u32 = 11;

fn h2_target(delay: Duration) -> Target {
    let mut cfg = TargetConfig::loopback(delay).unwrap();
    cfg.http2 = true;
    Target::start(cfg).unwrap()
}

/// A frame the proxy sent: its head and the first 40 bytes of its payload.
type Seen = (Head, [u8; 40]);

/// A client that writes frames by hand.
struct Raw(TcpStream);

impl Raw {
    fn connect(addr: SocketAddr) -> Raw {
        let mut c = TcpStream::connect(addr).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        let mut out = frame::PREFACE.to_vec();
        frame::put_head(&mut out, 0, frame::SETTINGS, 0, 0);
        c.write_all(&out).unwrap();
        Raw(c)
    }

    /// A request's header block: `GET /` or `POST /` and `fields` as given (names unchecked).
    fn block(method: &[u8], fields: &[(&[u8], &[u8])]) -> Vec<u8> {
        let mut block = Vec::new();
        encode_pseudo(&mut block, method, b"http", b"127.0.0.1", b"/");
        for (name, value) in fields {
            encode_field(&mut block, name, value);
        }
        block
    }

    /// Reads frames until the proxy closes or sends GOAWAY (or, with `first`, answers or
    /// resets stream 1), or sends nothing for the read timeout.
    fn frames(&mut self, first: bool) -> Vec<Seen> {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 16384];
        loop {
            match self.0.read(&mut chunk) {
                Ok(0) | Err(_) => break,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
            let decided =
                |(h, _): &Seen| h.kind == GOAWAY || first && h.stream == 1 && matches!(h.kind, HEADERS | RST_STREAM);
            if frames_of(&buf).iter().any(decided) {
                break;
            }
        }
        frames_of(&buf)
    }
}

fn frames_of(mut b: &[u8]) -> Vec<Seen> {
    let mut out = Vec::new();
    while b.len() >= frame::HEAD_LEN {
        let h = Head::parse(b);
        if b.len() < frame::HEAD_LEN + h.len {
            break;
        }
        let mut first = [0u8; 40];
        let payload = &b[frame::HEAD_LEN..frame::HEAD_LEN + h.len];
        first[..payload.len().min(40)].copy_from_slice(&payload[..payload.len().min(40)]);
        out.push((h, first));
        b = &b[frame::HEAD_LEN + h.len..];
    }
    out
}

fn code(first: &[u8; 40], at: usize) -> u32 {
    u32::from_be_bytes(first[at..at + 4].try_into().unwrap())
}

/// How stream 1 ended: `Ok(status)` for a response, `Err(reason)` for a reset or a GOAWAY.
fn outcome(frames: &[Seen]) -> Result<(), String> {
    for (h, first) in frames {
        match h.kind {
            HEADERS if h.stream == 1 => return Ok(()),
            RST_STREAM if h.stream == 1 => return Err(format!("RST_STREAM {}", code(first, 0))),
            GOAWAY => return Err(format!("GOAWAY {}", code(first, 4))),
            _ => {}
        }
    }
    Err("closed".into())
}

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status.lines().find_map(|l| l.strip_prefix("VmRSS:")).unwrap().trim().trim_end_matches(" kB").parse().unwrap()
}

#[test]
fn smuggling_fields_are_refused_and_never_reach_the_upstream() {
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let t = h2_target(Duration::ZERO);
    let p = proxy(t.local_addr(), 1, |_| {});
    // A body whose length disagrees with its content-length, either way.
    let long = |block: &[u8]| {
        let mut out = Vec::new();
        frame::put_headers(&mut out, 1, block, false, 16384);
        frame::put_head(&mut out, 10, DATA, END_STREAM, 1);
        out.extend_from_slice(b"0123456789");
        out
    };
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("transfer-encoding", Raw::block(b"GET", &[(b"transfer-encoding", b"chunked")])),
        ("connection", Raw::block(b"GET", &[(b"connection", b"keep-alive")])),
        ("keep-alive", Raw::block(b"GET", &[(b"keep-alive", b"timeout=5")])),
        ("upgrade", Raw::block(b"GET", &[(b"upgrade", b"websocket")])),
        ("te other than trailers", Raw::block(b"GET", &[(b"te", b"gzip")])),
        ("an upper-case name", Raw::block(b"GET", &[(b"X-Smuggle", b"1")])),
        ("CR LF in a value", Raw::block(b"GET", &[(b"x-a", b"1\r\nGET /admin HTTP/1.1")])),
        ("LF in a value", Raw::block(b"GET", &[(b"x-a", b"1\nx: y")])),
        ("NUL in a value", Raw::block(b"GET", &[(b"x-a", b"1\0")])),
        ("a space in a name", Raw::block(b"GET", &[(b"x a", b"1")])),
        ("a space in the method", Raw::block(b"GET /admin", &[])),
    ];
    for (what, block) in &cases {
        let mut c = Raw::connect(p.local_addr());
        let mut out = Vec::new();
        frame::put_headers(&mut out, 1, block, true, 16384);
        c.0.write_all(&out).unwrap();
        let got = outcome(&c.frames(true));
        assert!(got.as_ref().is_err_and(|e| e.contains(" 1")), "{what}: {got:?}, want a PROTOCOL_ERROR");
    }
    for (what, bytes) in [
        ("content-length 5, 10 bytes sent", long(&Raw::block(b"POST", &[(b"content-length", b"5")]))),
        ("content-length 20, 10 bytes sent", long(&Raw::block(b"POST", &[(b"content-length", b"20")]))),
    ] {
        let mut c = Raw::connect(p.local_addr());
        c.0.write_all(&bytes).unwrap();
        let got = outcome(&c.frames(true));
        assert!(got.as_ref().is_err_and(|e| e.contains(" 1")), "{what}: {got:?}, want a PROTOCOL_ERROR");
    }
    thread::sleep(Duration::from_millis(200));
    assert_eq!(t.served(), 0, "a malformed request reached the upstream");
    // The same path serves a well-formed request: the assertions above could fail.
    let mut c = Raw::connect(p.local_addr());
    let mut out = Vec::new();
    frame::put_headers(&mut out, 1, &Raw::block(b"GET", &[(b"x-a", b"1")]), true, 16384);
    c.0.write_all(&out).unwrap();
    c.0.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
    assert_eq!(outcome(&c.frames(true)), Ok(()));
    thread::sleep(Duration::from_millis(100));
    assert_eq!(t.served(), 1);
}

/// Writes HEADERS and RST_STREAM for stream after stream (at most `streams`, for at most
/// `within`) until the proxy ends the connection; returns the streams sent and what came back.
/// `patient`: each batch's streams are reset a few milliseconds after they were opened (the
/// proxy has taken them and asked the upstream), else at once (`h2` refuses those itself).
fn rapid_reset(addr: SocketAddr, streams: u32, within: Duration, patient: bool) -> (u32, Vec<Seen>) {
    let mut c = Raw::connect(addr);
    let mut reader = Raw(c.0.try_clone().unwrap());
    let seen = thread::spawn(move || reader.frames(false));
    let block = Raw::block(b"GET", &[]);
    let start = Instant::now();
    let mut sent = 0u32;
    while sent < streams && start.elapsed() < within {
        let (mut out, mut resets) = (Vec::new(), Vec::new());
        for _ in 0..if patient { 20 } else { 50 } {
            let id = 2 * sent + 1;
            frame::put_headers(&mut out, id, &block, true, 16384);
            frame::put_u32(if patient { &mut resets } else { &mut out }, RST_STREAM, id, CANCEL);
            sent += 1;
        }
        if c.0.write_all(&out).is_err() {
            break;
        }
        thread::sleep(Duration::from_millis(if patient { 20 } else { 2 }));
        if patient && c.0.write_all(&resets).is_err() {
            break;
        }
    }
    let _ = c.0.shutdown(std::net::Shutdown::Write);
    (sent, seen.join().unwrap())
}

#[test]
fn a_rapid_reset_flood_ends_its_connection_and_spares_the_upstream_and_others() {
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    // The upstream takes 20 ms an answer: a reset stream is one it is still working on.
    let t = h2_target(Duration::from_millis(20));
    let p = proxy(t.local_addr(), 1, |_| {});
    let idle = rss_kib();
    // Another client, HTTP/1.1, all along.
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, bad) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let other = {
        let (stop, ok, bad, addr) = (stop.clone(), ok.clone(), bad.clone(), p.local_addr());
        thread::spawn(move || {
            let mut c = Client::connect(addr);
            while !stop.load(Ordering::Relaxed) {
                let n = if c.get("/").status == 200 { &ok } else { &bad };
                n.fetch_add(1, Ordering::Relaxed);
            }
        })
    };
    // Attack after attack for two seconds, each on a new connection.
    let (start, mut attacks) = (Instant::now(), 0u64);
    while start.elapsed() < Duration::from_secs(2) {
        let patient = attacks % 2 == 1;
        let (sent, frames) = rapid_reset(p.local_addr(), 20_000, Duration::from_secs(5), patient);
        let goaway = frames.iter().find(|(h, _)| h.kind == GOAWAY).map(|(_, f)| code(f, 4));
        assert_eq!(goaway, Some(ENHANCE_YOUR_CALM), "{sent} streams sent");
        assert!(sent < 20_000, "the proxy let {sent} resets pass");
        attacks += 1;
    }
    stop.store(true, Ordering::Relaxed);
    other.join().unwrap();
    thread::sleep(Duration::from_millis(300));
    let s = p.stats();
    // Each attack cost the upstream at most the streams of one second's allowance, and a few
    // accepted before the first check.
    let (ok, bad) = (ok.load(Ordering::Relaxed), bad.load(Ordering::Relaxed));
    let served = t.served() - ok;
    assert!(served < attacks * 400, "the upstream took {served} requests of {attacks} attacks");
    assert_eq!(bad, 0, "the other client was refused");
    // One request at a time at 20 ms each: two seconds hold 100; half of that at least.
    assert!(ok > 50, "the other client was served {ok} times in two seconds");
    assert!(rss_kib() < 2 * idle.max(20_000), "RSS {} KiB, idle {idle} KiB", rss_kib());
    // The patient attacks are the proxy's own count to stop: h2 counts only the others.
    assert_eq!(s.h2_abusive_connections, attacks / 2, "{s:?}");
}

#[test]
fn a_continuation_flood_ends_at_the_header_limit() {
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let t = h2_target(Duration::ZERO);
    let p = proxy(t.local_addr(), 1, |_| {});
    let mut c = Raw::connect(p.local_addr());
    let mut reader = Raw(c.0.try_clone().unwrap());
    let seen = thread::spawn(move || reader.frames(false));
    let mut piece = Vec::new();
    while piece.len() < 16_000 {
        encode_field(&mut piece, b"x-flood", &[b'a'; 1000]);
    }
    let mut out = Vec::new();
    let block = Raw::block(b"GET", &[]);
    frame::put_head(&mut out, block.len(), HEADERS, END_STREAM, 1);
    out.extend_from_slice(&block);
    c.0.write_all(&out).unwrap();
    // Up to 64 MiB of CONTINUATION frames, none ending the block.
    let mut sent = 0usize;
    let start = Instant::now();
    while sent < 64 << 20 && start.elapsed() < Duration::from_secs(10) {
        let mut f = Vec::new();
        frame::put_head(&mut f, piece.len(), CONTINUATION, 0, 1);
        f.extend_from_slice(&piece);
        match c.0.write_all(&f) {
            Ok(()) => sent += f.len(),
            Err(e) => {
                assert!(matches!(e.kind(), ErrorKind::BrokenPipe | ErrorKind::ConnectionReset), "{e}");
                break;
            }
        }
    }
    let frames = seen.join().unwrap();
    assert!(sent < 8 << 20, "the proxy read {sent} bytes of one header block");
    let goaway = frames.iter().any(|(h, _)| h.kind == GOAWAY);
    assert!(goaway || sent < 8 << 20, "{frames:?}");
    thread::sleep(Duration::from_millis(200));
    assert_eq!(t.served(), 0);
    assert_eq!(p.stats().requests, 0);
}

/// Not an attack, a client that goes quiet: after the idle timeout its connection gets GOAWAY
/// (NO_ERROR) and closes, as an HTTP/1.1 connection would close.
#[test]
fn an_idle_http2_connection_ends_after_the_idle_timeout() {
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let t = h2_target(Duration::ZERO);
    let p = proxy(t.local_addr(), 1, |c| c.limits.idle_timeout = Duration::from_secs(1));
    let mut c = Raw::connect(p.local_addr());
    let mut out = Vec::new();
    frame::put_headers(&mut out, 1, &Raw::block(b"GET", &[]), true, 16384);
    c.0.write_all(&out).unwrap();
    let start = Instant::now();
    let frames = c.frames(false);
    let took = start.elapsed();
    assert_eq!(outcome(&frames), Ok(()), "the request was answered first");
    let goaway = frames.iter().find(|(h, _)| h.kind == GOAWAY).map(|(_, f)| code(f, 4));
    assert_eq!(goaway, Some(0), "{frames:?}");
    assert!(took >= Duration::from_secs(1) && took < Duration::from_millis(2500), "closed after {took:?}");
}
