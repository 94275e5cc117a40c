//! Upgrade tunnels through the proxy: a real WebSocket client and server (tungstenite) on
//! both sides, faults on the upgrade request, the tunnels' figures, and raw-socket cases where
//! an upgrade must not happen (RFC 9110 §7.8, RFC 9112).

mod proxy_support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use engine_proxy::Rule;
use proxy_support::{admin, proxy, read_head_into, serve_each, Client};
use tungstenite::{Message, WebSocket};

fn rule(json: &str) -> Rule {
    serde_json::from_str(json).unwrap()
}

/// A WebSocket echo server: a thread per connection, every data message sent back as is.
fn echo_server() -> SocketAddr {
    serve_each(|conn| {
        let Ok(mut ws) = tungstenite::accept(conn) else { return };
        while let Ok(m) = ws.read() {
            if (m.is_text() || m.is_binary()) && ws.send(m).is_err() {
                return;
            }
        }
    })
}

fn connect(proxy: SocketAddr, path: &str) -> WebSocket<TcpStream> {
    let tcp = TcpStream::connect(proxy).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let (ws, reply) = tungstenite::client(format!("ws://{proxy}{path}"), tcp).expect("the upgrade passes the proxy");
    assert_eq!(reply.status(), 101);
    ws
}

fn stats_json(p: &engine_proxy::Proxy) -> serde_json::Value {
    // The shards publish twice a second.
    thread::sleep(Duration::from_millis(700));
    serde_json::to_value(p.stats()).unwrap()
}

#[test]
fn websocket_messages_pass_intact_and_the_tunnel_is_counted() {
    let p = proxy(echo_server(), 1, |_| {});
    let mut ws = connect(p.local_addr(), "/chat");
    for i in 0..1000 {
        let text = format!("message {i} {}", "x".repeat(i % 97));
        ws.send(Message::text(text.clone())).unwrap();
        assert_eq!(ws.read().unwrap(), Message::text(text));
    }
    let big: Vec<u8> = (0..1 << 20).map(|i: u32| (i.wrapping_mul(2_654_435_761) >> 24) as u8).collect();
    ws.send(Message::binary(big.clone())).unwrap();
    match ws.read().unwrap() {
        Message::Binary(b) => assert!(b[..] == big[..], "the 1 MiB message came back changed"),
        other => panic!("expected the binary message back, got {other:?}"),
    }

    let open = stats_json(&p);
    assert_eq!(open["tunnels"]["open"], 1, "{open}");
    assert_eq!(open["tunnels"]["opened"], 1, "{open}");
    for way in ["bytes_upstream", "bytes_downstream"] {
        assert!(open["tunnels"][way].as_u64().unwrap() > 1 << 20, "{way}: {open}");
    }
    // The 101 is the upstream's answer to a request, measured as any other.
    let route = open["routes"].as_array().unwrap().iter().find(|r| r["status_class"] == "1xx").cloned();
    assert_eq!(route.map(|r| r["count"].clone()), Some(1.into()), "{open}");

    ws.close(None).unwrap();
    while ws.read().is_ok() {}
    drop(ws);
    let closed = stats_json(&p);
    assert_eq!(
        (closed["tunnels"]["open"].as_u64(), closed["tunnels"]["closed"].as_u64()),
        (Some(0), Some(1)),
        "{closed}"
    );
    let (status, metrics) = admin(p.admin_addr().unwrap(), "GET", "/metrics", None, "");
    assert_eq!(status, 200);
    for line in
        ["engine_proxy_tunnels_total 1", "engine_proxy_tunnels_open 0", "engine_proxy_tunnel_duration_seconds_count 1"]
    {
        assert!(metrics.lines().any(|l| l == line), "no {line:?} in\n{metrics}");
    }
    let bytes_up = metrics.lines().find(|l| l.starts_with("engine_proxy_tunnel_bytes_total{direction=\"upstream\"}"));
    let n: u64 = bytes_up.and_then(|l| l.rsplit(' ').next()).and_then(|v| v.parse().ok()).unwrap_or(0);
    assert_eq!(n, closed["tunnels"]["bytes_upstream"].as_u64().unwrap(), "{metrics}");
}

#[test]
fn a_delay_on_the_upgrade_path_delays_the_handshake_only() {
    let p = proxy(echo_server(), 1, |c| {
        c.faults = vec![rule(r#"{"match": {"path_prefix": "/slow"}, "action": {"delay": {"ms": 50}}}"#)]
    });
    let timed = |path: &str| {
        let start = Instant::now();
        let mut ws = connect(p.local_addr(), path);
        let handshake = start.elapsed();
        let mut trips = Vec::new();
        for _ in 0..50 {
            let t = Instant::now();
            ws.send(Message::text("ping")).unwrap();
            ws.read().unwrap();
            trips.push(t.elapsed());
        }
        trips.sort();
        (handshake, trips[trips.len() / 2])
    };
    let (fast, fast_trip) = timed("/fast");
    let (slow, slow_trip) = timed("/slow");
    assert!(slow >= Duration::from_millis(50), "the delayed handshake took {slow:?}");
    assert!(slow - fast.min(slow) >= Duration::from_millis(40), "handshakes {fast:?} and {slow:?}");
    // Messages through the tunnel are not delayed: a median round trip far under the 50 ms.
    assert!(slow_trip < Duration::from_millis(20), "round trips {fast_trip:?} and {slow_trip:?}");
}

/// An upstream that answers the first request with `reply` and keeps what it received.
fn scripted_upstream(reply: &'static [u8]) -> (SocketAddr, mpsc::Receiver<String>) {
    let (tx, rx) = mpsc::channel();
    let addr = serve_each(move |mut conn| {
        conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut got = Vec::new();
        if read_head_into(&mut conn, &mut got).is_none() {
            return;
        }
        let _ = tx.send(String::from_utf8_lossy(&got).into_owned());
        let _ = conn.write_all(reply);
        // Whatever comes next would be tunnel bytes: keep them too.
        let mut chunk = [0u8; 4096];
        if let Ok(n) = conn.read(&mut chunk) {
            let _ = tx.send(String::from_utf8_lossy(&chunk[..n]).into_owned());
        }
    });
    (addr, rx)
}

const SWITCH_WS: &[u8] = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n";
const SWITCH_H2C: &[u8] = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\r\n";

/// Sends `request` through a proxy in front of an upstream answering `reply`: the proxy, the
/// client's connection, the status it got and the request head the upstream saw.
fn exchange(request: &str, reply: &'static [u8]) -> (engine_proxy::Proxy, Client, u16, String) {
    let (up, seen) = scripted_upstream(reply);
    let p = proxy(up, 1, |_| {});
    let mut c = Client::connect(p.local_addr());
    c.send(request.as_bytes());
    let status = c.read().map_or(0, |r| r.status);
    let head = seen.recv_timeout(Duration::from_secs(5)).unwrap_or_default();
    (p, c, status, head)
}

#[test]
fn a_101_nobody_asked_for_is_a_bad_gateway_not_a_tunnel() {
    let (_p, mut c, status, head) = exchange("GET / HTTP/1.1\r\nHost: a\r\n\r\n", SWITCH_WS);
    assert_eq!(status, 502);
    assert!(!head.to_ascii_lowercase().contains("upgrade"), "{head}");
    // The connection is still HTTP: what follows is parsed as a request (and this is none).
    c.send(b"\x16\x03\x01 not a request\r\n\r\n");
    assert_eq!(c.read().map(|r| r.status), Some(400));
}

#[test]
fn upgrades_not_allowed_are_forwarded_as_plain_requests() {
    for upgrade in ["h2c", "foo", "h2c, foo/1"] {
        let (_p, _, status, head) = exchange(
            &format!("GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: {upgrade}\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n\r\n"),
            SWITCH_H2C,
        );
        let lower = head.to_ascii_lowercase();
        assert!(!lower.contains("upgrade") && !lower.contains("http2-settings"), "{upgrade}: {head}");
        assert_eq!(status, 502, "{upgrade}: a 101 to an upgrade never offered");
    }
}

#[test]
fn an_upgrade_with_a_body_is_a_plain_request() {
    let (_p, _, status, head) = exchange(
        "POST /ws HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\nUpgrade: websocket\r\nContent-Length: 5\r\n\r\nhello",
        SWITCH_WS,
    );
    assert!(!head.to_ascii_lowercase().contains("upgrade"), "{head}");
    assert_eq!(status, 502);
}

#[test]
fn a_switch_to_another_protocol_than_offered_is_refused() {
    let (_p, _, status, head) =
        exchange("GET / HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n", SWITCH_H2C);
    assert!(head.contains("Connection: upgrade\r\nUpgrade: websocket\r\n"), "{head}");
    assert_eq!(status, 502);
}

#[test]
fn an_upgrade_the_upstream_declines_stays_http() {
    let (_p, mut c, status, _) = exchange(
        "GET / HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n",
        b"HTTP/1.1 426 Upgrade Required\r\nContent-Length: 0\r\n\r\n",
    );
    assert_eq!(status, 426);
    c.send(b"not a request\r\n\r\n");
    assert_eq!(c.read().map(|r| r.status), Some(400));
}

#[test]
fn bytes_sent_with_the_upgrade_request_reach_the_upstream_after_the_101() {
    let (up, seen) = scripted_upstream(SWITCH_WS);
    let p = proxy(up, 1, |_| {});
    let mut c = Client::connect(p.local_addr());
    c.send(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\nearly bytes");
    assert_eq!(c.read().map(|r| r.status), Some(101));
    seen.recv_timeout(Duration::from_secs(5)).unwrap();
    assert_eq!(seen.recv_timeout(Duration::from_secs(5)).unwrap(), "early bytes");
}

#[test]
fn a_limit_data_fault_closes_the_tunnel_after_its_bytes() {
    let p = proxy(echo_server(), 1, |c| {
        c.faults = vec![rule(r#"{"match": {"path_prefix": "/cut"}, "action": {"limit_data": {"bytes": 1000}}}"#)]
    });
    let mut ws = connect(p.local_addr(), "/cut");
    let mut echoed = 0;
    for _ in 0..100 {
        if ws.send(Message::binary(vec![7u8; 100])).is_err() {
            break;
        }
        match ws.read() {
            Ok(_) => echoed += 1,
            Err(_) => break,
        }
    }
    // Each echo is 102 bytes on the wire (a 2-byte frame header): nine fit in 1000 bytes, the
    // tenth is cut, and the tunnel with it.
    assert_eq!(echoed, 9);
    assert!(ws.read().is_err());
}

#[test]
fn latency_upstream_delays_each_message_to_the_server() {
    let p = proxy(echo_server(), 1, |c| {
        c.faults = vec![rule(
            r#"{"match": {"path_prefix": "/far"}, "action": {"latency": {"ms": 30, "direction": "upstream"}}}"#,
        )]
    });
    let mut ws = connect(p.local_addr(), "/far");
    let mut trips: Vec<Duration> = (0..20)
        .map(|_| {
            let t = Instant::now();
            ws.send(Message::text("ping")).unwrap();
            ws.read().unwrap();
            t.elapsed()
        })
        .collect();
    trips.sort();
    let median = trips[trips.len() / 2];
    assert!(median >= Duration::from_millis(30) && median < Duration::from_millis(60), "median round trip {median:?}");
}

#[test]
fn early_hints_and_trailers_pass_through() {
    let (up, _seen) = scripted_upstream(
        b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n\
          HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-Checksum\r\n\r\n2\r\nok\r\n0\r\nX-Checksum: 47\r\n\r\n",
    );
    let p = proxy(up, 1, |_| {});
    let mut c = TcpStream::connect(p.local_addr()).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    c.write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n").unwrap();
    let mut got = Vec::new();
    let mut chunk = [0u8; 4096];
    while !got.ends_with(b"X-Checksum: 47\r\n\r\n") {
        match c.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => got.extend_from_slice(&chunk[..n]),
        }
    }
    let got = String::from_utf8_lossy(&got);
    assert!(
        got.starts_with("HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\nHTTP/1.1 200 OK\r\n"),
        "{got}"
    );
    assert!(got.ends_with("\r\n2\r\nok\r\n0\r\nX-Checksum: 47\r\n\r\n"), "{got}");
}

/// TLS on both sides of a tunnel: a client speaking wss:// to the proxy, the proxy speaking
/// TLS to a WebSocket echo server. Every byte crosses two sessions in poll-driven writes.
#[test]
fn a_websocket_tunnel_works_over_tls_on_both_sides() {
    use std::sync::Arc;
    let (config, pem) = engine_tls::self_signed(&["localhost"]).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let up = listener.local_addr().unwrap();
    let server_config = config.clone();
    thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(conn) = conn else { continue };
            let tls = rustls::ServerConnection::new(server_config.clone()).unwrap();
            let Ok(mut ws) = tungstenite::accept(rustls::StreamOwned::new(tls, conn)) else { continue };
            while let Ok(m) = ws.read() {
                if (m.is_text() || m.is_binary()) && ws.send(m).is_err() {
                    break;
                }
            }
        }
    });
    let dir = std::env::temp_dir().join(format!("engine-wss-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("ca.pem"), &pem).unwrap();
    let opts = engine_tls::ClientOptions { cacert: Some(dir.join("ca.pem")), ..Default::default() };
    let upstream_tls = engine_tls::Client::new(&opts, "localhost").unwrap();
    let p = proxy(up, 1, |c| {
        c.tls = Some(engine_proxy::ServerTls { config: config.clone(), files: None });
        c.upstream_tls = Some(upstream_tls);
    });

    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    roots.add(rustls::pki_types::CertificateDer::from_pem_slice(pem.as_bytes()).unwrap()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let client_config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tls = rustls::ClientConnection::new(Arc::new(client_config), "localhost".try_into().unwrap()).unwrap();
    let tcp = TcpStream::connect(p.local_addr()).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let (mut ws, reply) = tungstenite::client(
        format!("wss://localhost:{}/tls", p.local_addr().port()),
        rustls::StreamOwned::new(tls, tcp),
    )
    .expect("the upgrade passes the proxy over TLS");
    assert_eq!(reply.status(), 101);
    for i in 0..200 {
        let text = format!("over tls {i}");
        ws.send(Message::text(text.clone())).unwrap();
        assert_eq!(ws.read().unwrap(), Message::text(text));
    }
    let big: Vec<u8> = (0..1 << 20).map(|i: u32| (i % 251) as u8).collect();
    ws.send(Message::binary(big.clone())).unwrap();
    match ws.read().unwrap() {
        Message::Binary(b) => assert!(b[..] == big[..], "the 1 MiB message came back changed"),
        other => panic!("expected the binary message back, got {other:?}"),
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_drain_closes_open_tunnels_at_once() {
    let p = proxy(echo_server(), 1, |_| {});
    let mut ws = connect(p.local_addr(), "/held");
    ws.send(Message::text("before")).unwrap();
    assert_eq!(ws.read().unwrap(), Message::text("before"));
    let start = Instant::now();
    p.drain_handle().drain();
    // The tunnel carries no request a drain could wait for: it closes within a tick or two.
    assert!(ws.read().is_err() || ws.read().is_err());
    assert!(start.elapsed() < Duration::from_secs(2), "the tunnel outlived the drain by {:?}", start.elapsed());
}

#[test]
fn an_idle_tunnel_closes_after_the_idle_timeout_and_a_busy_one_does_not() {
    let p = proxy(echo_server(), 1, |c| c.limits.idle_timeout = Duration::from_millis(400));
    let mut busy = connect(p.local_addr(), "/busy");
    let mut idle = connect(p.local_addr(), "/idle");
    // Bytes every 100 ms keep one tunnel open well past the timeout.
    let mut keep_busy = |for_ms: u64| {
        let start = Instant::now();
        while start.elapsed() < Duration::from_millis(for_ms) {
            busy.send(Message::text("tick")).unwrap();
            assert_eq!(busy.read().unwrap(), Message::text("tick"));
            thread::sleep(Duration::from_millis(100));
        }
    };
    keep_busy(1200);
    // The other sat idle: closed between the timeout and the timeout plus two ticks.
    assert!(idle.read().is_err());
    // Still busy while the shards publish (twice a second).
    keep_busy(700);
    let stats = serde_json::to_value(p.stats()).unwrap();
    assert_eq!(stats["tunnels"]["closed"], 1, "{stats}");
    assert_eq!(stats["tunnels"]["open"], 1, "{stats}");
}
