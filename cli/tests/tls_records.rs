//! `engine blast https://...` against TLS 1.3 servers that seal their own records after a
//! real handshake (`engine_tls::hostile`): records a server may send (one byte each, padded,
//! key updates between responses, tickets split small, a body that ends with close_notify)
//! keep zero errors and counts equal to what the server served; records no server may send
//! (floods of empty records, key updates or warning alerts, oversized content, data inside a
//! split handshake message, endless tickets, a stalled handshake) end the run within `-d`
//! plus 2.5 s with errors of the right kind, and a summary every time.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use engine_tls::hostile::{config, content, HostilePeer};

const RESPONSE: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";

#[derive(Clone, Copy, Debug, PartialEq)]
enum How {
    // Valid.
    OneByteRecords,
    Padded,
    KeyUpdates,
    SplitTickets,
    CloseDelimited,
    // Hostile.
    EmptyFlood,
    PaddingFlood,
    KeyUpdateFlood,
    UserCanceledFlood,
    Oversized,
    Interleaved,
    TicketFlood,
    StalledHandshake,
}

/// A server that behaves as `how` on every connection but the first (the pre-flight's,
/// which only handshakes). Returns its port and its count of responses sent.
fn server(how: How) -> (u16, Arc<AtomicU64>) {
    let (config, _) = config().unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let served = Arc::new(AtomicU64::new(0));
    let count = served.clone();
    let accepted = AtomicUsize::new(0);
    std::thread::spawn(move || {
        for tcp in listener.incoming().flatten() {
            let first = accepted.fetch_add(1, Ordering::Relaxed) == 0;
            let (config, count) = (config.clone(), count.clone());
            std::thread::spawn(move || {
                if how == How::StalledHandshake && !first {
                    // Reads the ClientHello and never answers.
                    let mut tcp = tcp;
                    let mut buf = [0u8; 4096];
                    while matches!(tcp.read(&mut buf), Ok(n) if n > 0) {}
                    return;
                }
                let _ = serve(tcp, &config, how, &count);
            });
        }
    });
    (port, served)
}

/// Reads one request (up to its blank line) through the peer's record layer.
fn request(tcp: &mut TcpStream, peer: &mut HostilePeer, got: &mut Vec<u8>) -> std::io::Result<bool> {
    let mut buf = [0u8; 4096];
    // Records that came with the client's Finished wait in the peer.
    for (kind, data) in peer.open(&[])? {
        if kind == content::APPLICATION_DATA {
            got.extend_from_slice(&data);
        }
    }
    loop {
        if let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") {
            got.drain(..end + 4);
            return Ok(true);
        }
        let n = tcp.read(&mut buf)?;
        if n == 0 {
            return Ok(false);
        }
        for (kind, data) in peer.open(&buf[..n])? {
            if kind == content::APPLICATION_DATA {
                got.extend_from_slice(&data);
            }
        }
    }
}

fn serve(mut tcp: TcpStream, config: &Arc<rustls::ServerConfig>, how: How, served: &AtomicU64) -> std::io::Result<()> {
    tcp.set_read_timeout(Some(Duration::from_secs(10)))?;
    // Each flight and response is one write: Nagle would hold the next for a delayed ACK.
    tcp.set_nodelay(true)?;
    let mut peer = HostilePeer::accept(&mut tcp, config)?;
    let mut got = Vec::new();
    let mut round = 0u8;
    while request(&mut tcp, &mut peer, &mut got)? {
        round = round.wrapping_add(1);
        let wire: Vec<u8> = match how {
            How::OneByteRecords => {
                RESPONSE.iter().flat_map(|b| peer.record(content::APPLICATION_DATA, &[*b], 0)).collect()
            }
            How::Padded => {
                let mut w = peer.record(content::APPLICATION_DATA, b"", 300);
                w.extend(peer.record(content::APPLICATION_DATA, RESPONSE, 1000));
                w
            }
            How::KeyUpdates => {
                let mut w = peer.key_update(round.is_multiple_of(2));
                w.extend(peer.data(RESPONSE));
                w
            }
            How::SplitTickets => {
                let mut w: Vec<u8> = HostilePeer::ticket(round)
                    .chunks(3)
                    .flat_map(|part| peer.record(content::HANDSHAKE, part, 0))
                    .collect();
                w.extend(peer.data(RESPONSE));
                w
            }
            How::CloseDelimited => {
                let mut w = peer.data(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nthe body ends with close_notify");
                w.extend(peer.record(content::ALERT, &[1, 0], 0));
                tcp.write_all(&w)?;
                served.fetch_add(1, Ordering::Relaxed);
                return Ok(());
            }
            How::Oversized => {
                let mut r = b"HTTP/1.1 200 OK\r\nContent-Length: 16347\r\n\r\n".to_vec();
                r.resize(16_385, b'x');
                peer.record(content::APPLICATION_DATA, &r, 0)
            }
            How::Interleaved => {
                let mut w = peer.record(content::HANDSHAKE, &HostilePeer::ticket(round)[..9], 0);
                w.extend(peer.data(RESPONSE));
                w
            }
            How::EmptyFlood | How::PaddingFlood | How::KeyUpdateFlood | How::UserCanceledFlood | How::TicketFlood => {
                return flood(&mut tcp, &mut peer, how);
            }
            How::StalledHandshake => unreachable!(),
        };
        tcp.write_all(&wire)?;
        served.fetch_add(1, Ordering::Relaxed);
    }
    Ok(())
}

/// Sends records that carry nothing until the client goes (or 8 s pass).
fn flood(tcp: &mut TcpStream, peer: &mut HostilePeer, how: How) -> std::io::Result<()> {
    let until = Instant::now() + Duration::from_secs(8);
    let mut n = 0u8;
    while Instant::now() < until {
        let mut w = Vec::new();
        for _ in 0..64 {
            n = n.wrapping_add(1);
            w.extend(match how {
                How::EmptyFlood => peer.record(content::APPLICATION_DATA, b"", 0),
                How::PaddingFlood => peer.record(content::APPLICATION_DATA, b"", 64),
                How::KeyUpdateFlood => peer.key_update(false),
                How::UserCanceledFlood => peer.record(content::ALERT, &[1, 90], 0),
                _ => peer.record(content::HANDSHAKE, &HostilePeer::ticket(n), 0),
            });
        }
        tcp.write_all(&w)?;
    }
    Ok(())
}

/// A blast of `-d 2s` at `how`: its summary, exit code and how long the process took.
fn blast(how: How, extra: &[&str]) -> (serde_json::Value, Option<i32>, Duration, u64) {
    let (port, served) = server(how);
    let out = std::env::temp_dir().join(format!("engine-tls-records-{how:?}-{}", std::process::id()));
    let url = format!("https://127.0.0.1:{port}/");
    let mut args = vec!["blast", &url, "-k", "--shards", "1", "-q", "--json", "-", "-d", "2s", "--timeout", "1s"];
    let out_s = out.display().to_string();
    args.extend(["--out", &out_s]);
    args.extend_from_slice(extra);
    let started = Instant::now();
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_engine")).args(&args).output().unwrap();
    let took = started.elapsed();
    let _ = std::fs::remove_dir_all(&out);
    let s: serde_json::Value = serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("{how:?}: no summary ({e}): {}", String::from_utf8_lossy(&o.stderr)));
    // The server counts a response once it is written; the client may still be reading it.
    std::thread::sleep(Duration::from_millis(100));
    (s, o.status.code(), took, served.load(Ordering::Relaxed))
}

#[test]
fn records_a_server_may_send_keep_every_count_exact() {
    for how in [How::OneByteRecords, How::Padded, How::KeyUpdates, How::SplitTickets, How::CloseDelimited] {
        let (s, code, _, served) = blast(how, &["-c", "4"]);
        assert_eq!(code, Some(0), "{how:?}: {s}");
        assert_eq!(s["errors"]["total"], 0, "{how:?}: {s}");
        let requests = s["requests"].as_u64().unwrap();
        assert!(requests > 10, "{how:?}: {s}");
        // The run's responses, and at most one a connection still had on the wire at the end.
        assert!((requests..=requests + 4).contains(&served), "{how:?}: served {served}, counted {requests}");
    }
}

#[test]
fn records_no_server_may_send_end_the_run_in_time_as_errors_of_their_kind() {
    for (how, kind) in [
        (How::EmptyFlood, "bad_record"),
        (How::PaddingFlood, "bad_record"),
        (How::KeyUpdateFlood, "bad_record"),
        (How::UserCanceledFlood, "bad_record"),
        (How::Oversized, "bad_record"),
        (How::Interleaved, "bad_record"),
        (How::TicketFlood, "timeout"),
        (How::StalledHandshake, "handshake"),
    ] {
        let (s, code, took, _) = blast(how, &["-c", "2"]);
        assert!(took < Duration::from_millis(4500), "{how:?}: -d 2s took {took:?}: {s}");
        assert_ne!(code, Some(0), "{how:?}: {s}");
        let errors = s["errors"]["total"].as_u64().unwrap();
        assert!(errors > 0, "{how:?}: no errors: {s}");
        let counted = match kind {
            "timeout" => s["errors"]["timeout"].as_u64().unwrap(),
            reason => s["tls"]["errors"][reason].as_u64().unwrap(),
        };
        assert_eq!(counted, errors, "{how:?}: every error a {kind}: {s}");
    }
}
