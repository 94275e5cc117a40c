//! `engine blast https://...` against real TLS servers: nginx (verification, ground truth,
//! mutual TLS, handshake capacity) and hostile peers written here on rustls (garbage, an
//! alert mid-stream, a truncated record, a close without close_notify, a handshake that never
//! ends). Certificates are made per test with rcgen: a CA, a server certificate it signed, an
//! expired one, and a client CA with its client certificate.

mod ports;
#[macro_use]
mod require;

mod tls_support;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::pem::PemObject;
use tls_support::{blast, blast_exit, engine, refused, Certs, Nginx};

#[test]
fn https_counts_match_nginx_and_a_certificate_problem_names_its_flag() {
    require!("nginx");
    let certs = Certs::make("verify");
    let n = Nginx::start(&certs);
    let url = format!("https://127.0.0.1:{}/", n.good);
    let ca = certs.path("ca.pem");
    let out = certs.dir.join("out");

    let before = n.served().unwrap();
    let s = blast(&url, &["--cacert", &ca, "-c", "16", "-d", "2s"], &out);
    let served = n.served().unwrap() - before - 1;
    assert_eq!(s["requests"].as_u64().unwrap(), served, "engine vs nginx: {s}");
    assert_eq!(s["errors"]["total"], 0, "{s}");
    assert_eq!(s["tls"]["version"], "TLSv1.3", "{s}");
    assert_eq!(s["tls"]["handshakes_full"].as_u64().unwrap() + s["tls"]["handshakes_resumed"].as_u64().unwrap(), 16);
    for key in ["connect_ms", "tls_handshake_ms"] {
        assert!(s[key]["p50"].as_f64().unwrap() > 0.0, "{key}: {s}");
    }

    let no_roots = refused(&url, &[]);
    assert!(no_roots.contains("certificate") && no_roots.contains("--cacert"), "{no_roots}");
    let wrong = refused(&url, &["--cacert", &ca, "--servername", "wrong.example"]);
    assert!(wrong.contains("not valid for name") && wrong.contains("--servername"), "{wrong}");
    let expired = refused(&format!("https://127.0.0.1:{}/", n.expired), &["--cacert", &ca]);
    assert!(expired.contains("expired"), "{expired}");

    // -k: no verification, and the start line says so.
    let o = engine(&["blast", &url, "-k", "-d", "1s", "-c", "2", "--out", &out.display().to_string()]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(0), "{err}");
    assert!(err.contains("NOT VERIFIED (-k)"), "{err}");
    // The name in the certificate, asked for by name, verifies.
    let s = blast(&url, &["--cacert", &ca, "--servername", "localhost", "-d", "1s", "-c", "2"], &out);
    assert_eq!(s["errors"]["total"], 0, "{s}");
}

#[test]
fn a_server_that_requires_a_client_certificate() {
    require!("nginx");
    let certs = Certs::make("mtls");
    let n = Nginx::start(&certs);
    let url = format!("https://127.0.0.1:{}/", n.mtls);
    let ca = certs.path("ca.pem");
    let (cert, key) = (certs.path("client.pem"), certs.path("client.key"));
    let s =
        blast(&url, &["--cacert", &ca, "--cert", &cert, "--key", &key, "-c", "4", "-d", "1s"], &certs.dir.join("out"));
    assert!(s["requests"].as_u64().unwrap() > 100, "{s}");
    assert_eq!(s["status"]["200"], s["requests"], "{s}");
    assert_eq!(s["errors"]["total"], 0, "{s}");
    for version in ["1.3", "1.2"] {
        let line = refused(&url, &["--cacert", &ca, "--tls-version", version]);
        assert!(line.contains("--cert FILE --key FILE"), "TLS {version}: {line}");
    }
}

/// With `Connection: close` every request is a handshake: resumed sessions by default (as a
/// browser reconnects), full ones with --no-tls-resume.
#[test]
fn handshake_capacity_with_and_without_resumption() {
    require!("nginx");
    let certs = Certs::make("resume");
    let n = Nginx::start(&certs);
    let url = format!("https://127.0.0.1:{}/", n.good);
    let ca = certs.path("ca.pem");
    let out = certs.dir.join("out");
    for version in ["1.3", "1.2"] {
        let args = ["--cacert", &ca, "-H", "Connection: close", "-c", "4", "-d", "2s", "--tls-version", version];
        let s = blast(&url, &args, &out);
        let (full, resumed) =
            (s["tls"]["handshakes_full"].as_u64().unwrap(), s["tls"]["handshakes_resumed"].as_u64().unwrap());
        let requests = s["requests"].as_u64().unwrap();
        assert!(
            requests > 50 && resumed > full,
            "TLS {version}: {requests} requests, {full} full, {resumed} resumed: {s}"
        );
        assert!(s["tls"]["resumed_share"].as_f64().unwrap() > 0.5, "{s}");
        assert!(s["tls"]["handshakes_per_s"].as_f64().unwrap() > 25.0, "{s}");

        let mut args = args.to_vec();
        args.push("--no-tls-resume");
        let s = blast(&url, &args, &out);
        let (full, resumed) =
            (s["tls"]["handshakes_full"].as_u64().unwrap(), s["tls"]["handshakes_resumed"].as_u64().unwrap());
        let requests = s["requests"].as_u64().unwrap();
        assert_eq!(resumed, 0, "{s}");
        assert!(full >= requests && full <= requests + 4, "TLS {version}: {requests} requests, {full} handshakes: {s}");
        assert_eq!(s["errors"]["total"], 0, "{s}");
    }
}

/// How a hostile server misbehaves after the pre-flight's connection, which it serves well.
#[derive(Clone, Copy, Debug)]
enum Hostile {
    /// Bytes that are not TLS, instead of a ServerHello.
    Garbage,
    /// A fatal alert record after the handshake, instead of a response.
    Alert,
    /// A record header promising more than follows, then a close.
    TruncatedRecord,
    /// A close-delimited response, then a TCP close without close_notify.
    NoCloseNotify,
    /// Accepts and never answers the ClientHello.
    Silent,
}

/// A TLS server on rustls that serves the pre-flight's handshake (connection 0) and then
/// misbehaves on every connection. Returns its port.
fn hostile_server(certs: &Certs, how: Hostile) -> u16 {
    let cert = rustls::pki_types::CertificateDer::pem_file_iter(certs.path("server.pem"))
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = rustls::pki_types::PrivateKeyDer::from_pem_file(certs.path("server.key")).unwrap();
    let config = Arc::new(
        rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(cert, key)
            .unwrap(),
    );
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let accepted = Arc::new(AtomicUsize::new(0));
    std::thread::spawn(move || {
        for tcp in listener.incoming().flatten() {
            let first = accepted.fetch_add(1, Ordering::Relaxed) == 0;
            let config = config.clone();
            std::thread::spawn(move || serve_hostile(tcp, config, if first { None } else { Some(how) }));
        }
    });
    port
}

fn serve_hostile(mut tcp: TcpStream, config: Arc<rustls::ServerConfig>, how: Option<Hostile>) {
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    match how {
        Some(Hostile::Garbage) => {
            let _ = tcp.write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\nthis is not TLS at all");
            std::thread::sleep(Duration::from_millis(200));
            return;
        }
        Some(Hostile::Silent) => {
            std::thread::sleep(Duration::from_secs(3));
            return;
        }
        _ => {}
    }
    let mut conn = rustls::ServerConnection::new(config).unwrap();
    while conn.is_handshaking() {
        if conn.complete_io(&mut tcp).is_err() {
            return;
        }
    }
    while conn.wants_write() {
        if conn.write_tls(&mut tcp).is_err() {
            return;
        }
    }
    let Some(how) = how else {
        // The pre-flight: wait for its close.
        let mut buf = [0u8; 1024];
        let _ = tcp.read(&mut buf);
        return;
    };
    // Read the request, then misbehave.
    let _ = conn.read_tls(&mut tcp);
    let _ = conn.process_new_packets();
    match how {
        Hostile::Alert => {
            // A plaintext fatal alert (handshake_failure) where an encrypted record belongs.
            let _ = tcp.write_all(&[0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x28]);
        }
        Hostile::TruncatedRecord => {
            let _ = tcp.write_all(&[0x17, 0x03, 0x03, 0x01, 0x00, 1, 2, 3, 4, 5, 6, 7, 8]);
        }
        Hostile::NoCloseNotify => {
            let _ = conn.process_new_packets();
            let _ = conn
                .writer()
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nthe body ends at the close");
            while conn.wants_write() {
                if conn.write_tls(&mut tcp).is_err() {
                    break;
                }
            }
        }
        Hostile::Garbage | Hostile::Silent => unreachable!(),
    }
    std::thread::sleep(Duration::from_millis(50));
    // Dropped without close_notify.
}

#[test]
fn hostile_tls_peers_are_counted_errors_with_a_summary_every_time() {
    let certs = Certs::make("hostile");
    let ca = certs.path("ca.pem");
    let out = certs.dir.join("out");
    for (how, reasons) in [
        (Hostile::Garbage, &["bad_record", "handshake"][..]),
        (Hostile::Alert, &["alert", "bad_record"][..]),
        (Hostile::TruncatedRecord, &["truncated"][..]),
        (Hostile::NoCloseNotify, &["truncated"][..]),
        (Hostile::Silent, &["handshake"][..]),
    ] {
        let port = hostile_server(&certs, how);
        let url = format!("https://127.0.0.1:{port}/");
        let started = Instant::now();
        let (s, code) = blast_exit(&url, &["--cacert", &ca, "-c", "2", "-d", "2s", "--connect-timeout", "1s"], &out);
        assert!(started.elapsed() < Duration::from_secs(15), "{how:?} took {:?}", started.elapsed());
        // Not one response: the run says so and exits 3.
        assert_eq!(code, Some(3), "{how:?}: {s}");
        let tls = s["errors"]["tls"].as_u64().unwrap();
        assert!(tls > 0, "{how:?}: no TLS errors: {s}");
        assert_eq!(s["errors"]["total"].as_u64().unwrap(), tls, "{how:?}: {s}");
        let counted: u64 = reasons.iter().map(|r| s["tls"]["errors"][r].as_u64().unwrap()).sum();
        assert_eq!(counted, tls, "{how:?}: reasons {reasons:?}: {}", s["tls"]);
    }
}

#[test]
fn a_plain_http_server_behind_an_https_url_is_named() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for mut tcp in listener.incoming().flatten() {
            let mut buf = [0u8; 1024];
            let _ = tcp.read(&mut buf);
            let _ = tcp.write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        }
    });
    let line = refused(&format!("https://127.0.0.1:{port}/"), &["-k"]);
    assert!(line.contains("plain HTTP") && line.contains("try http://"), "{line}");
}
