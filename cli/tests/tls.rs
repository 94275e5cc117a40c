//! `engine blast https://...` against real TLS servers: nginx (verification, ground truth,
//! mutual TLS, handshake capacity) and hostile peers written here on rustls (garbage, an
//! alert mid-stream, a truncated record, a close without close_notify, a handshake that never
//! ends). Certificates are made per test with rcgen: a CA, a server certificate it signed, an
//! expired one, and a client CA with its client certificate.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rcgen::{BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair};
use rustls::pki_types::pem::PemObject;

/// PEM files of one test's certificates.
struct Certs {
    dir: PathBuf,
}

impl Certs {
    fn make(tag: &str) -> Certs {
        let dir = std::env::temp_dir().join(format!("engine-tls-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (ca, ca_key) = authority("engine test CA");
        let leaf = |name: &str, expired: bool, client: bool| {
            let mut p = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
            p.distinguished_name.push(DnType::CommonName, name);
            if expired {
                p.not_before = rcgen::date_time_ymd(2020, 1, 1);
                p.not_after = rcgen::date_time_ymd(2021, 1, 1);
            }
            p.extended_key_usages =
                vec![if client { ExtendedKeyUsagePurpose::ClientAuth } else { ExtendedKeyUsagePurpose::ServerAuth }];
            let key = KeyPair::generate().unwrap();
            (p, key)
        };
        let write = |name: &str, text: String| std::fs::write(dir.join(name), text).unwrap();
        write("ca.pem", ca.pem());
        for (name, expired) in [("server", false), ("expired", true)] {
            let (p, key) = leaf(name, expired, false);
            write(&format!("{name}.pem"), p.signed_by(&key, &ca, &ca_key).unwrap().pem());
            write(&format!("{name}.key"), key.serialize_pem());
        }
        let (client_ca, client_ca_key) = authority("engine test client CA");
        write("client-ca.pem", client_ca.pem());
        let (p, key) = leaf("client", false, true);
        write("client.pem", p.signed_by(&key, &client_ca, &client_ca_key).unwrap().pem());
        write("client.key", key.serialize_pem());
        Certs { dir }
    }

    fn path(&self, name: &str) -> String {
        self.dir.join(name).display().to_string()
    }
}

impl Drop for Certs {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn authority(name: &str) -> (rcgen::Certificate, KeyPair) {
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.distinguished_name.push(DnType::CommonName, name);
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let key = KeyPair::generate().unwrap();
    (p.self_signed(&key).unwrap(), key)
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// nginx with three TLS servers (a good certificate, an expired one, one that requires a
/// client certificate) and its status page.
struct Nginx {
    child: Child,
    good: u16,
    expired: u16,
    mtls: u16,
    status: u16,
    prefix: PathBuf,
}

impl Nginx {
    fn start(certs: &Certs) -> Nginx {
        let (good, expired, mtls, status) = (free_port(), free_port(), free_port(), free_port());
        let prefix = certs.dir.join("nginx");
        std::fs::create_dir_all(prefix.join("logs")).unwrap();
        let p = |n: &str| certs.path(n);
        let conf = format!(
            r#"worker_processes 1;
daemon off;
pid logs/nginx.pid;
error_log logs/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    keepalive_requests 1000000;
    client_body_temp_path logs/cb; proxy_temp_path logs/p; fastcgi_temp_path logs/f;
    uwsgi_temp_path logs/u; scgi_temp_path logs/s;
    ssl_session_cache shared:tls:1m;
    ssl_protocols TLSv1.2 TLSv1.3;
    server {{ listen 127.0.0.1:{good} ssl; ssl_certificate {}; ssl_certificate_key {};
             location / {{ return 200 "ok"; }} }}
    server {{ listen 127.0.0.1:{expired} ssl; ssl_certificate {}; ssl_certificate_key {};
             location / {{ return 200 "ok"; }} }}
    server {{ listen 127.0.0.1:{mtls} ssl; ssl_certificate {}; ssl_certificate_key {};
             ssl_verify_client on; ssl_client_certificate {};
             location / {{ return 200 "ok"; }} }}
    server {{ listen 127.0.0.1:{status}; location = /nginx_status {{ stub_status; }} }}
}}
"#,
            p("server.pem"),
            p("server.key"),
            p("expired.pem"),
            p("expired.key"),
            p("server.pem"),
            p("server.key"),
            p("client-ca.pem"),
        );
        std::fs::write(prefix.join("nginx.conf"), conf).unwrap();
        let bin = ["/usr/sbin/nginx", "/usr/local/sbin/nginx", "/usr/bin/nginx"]
            .into_iter()
            .find(|b| Path::new(b).exists())
            .expect("nginx not found: install it (apt-get install -y nginx-light); .ci/run does");
        let child = Command::new(bin)
            .arg("-p")
            .arg(&prefix)
            .arg("-c")
            .arg(prefix.join("nginx.conf"))
            .arg("-e")
            .arg(prefix.join("logs/error.log"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let n = Nginx { child, good, expired, mtls, status, prefix };
        let deadline = Instant::now() + Duration::from_secs(10);
        while n.served().is_none() {
            assert!(Instant::now() < deadline, "nginx did not start; see {}", n.prefix.display());
            std::thread::sleep(Duration::from_millis(50));
        }
        n
    }

    /// Requests served (stub_status counts its own request too).
    fn served(&self) -> Option<u64> {
        let mut s = TcpStream::connect(("127.0.0.1", self.status)).ok()?;
        s.write_all(b"GET /nginx_status HTTP/1.0\r\n\r\n").ok()?;
        let mut text = String::new();
        s.read_to_string(&mut text).ok()?;
        text.split("\r\n\r\n").nth(1)?.lines().nth(2)?.split_whitespace().nth(2)?.parse().ok()
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // SAFETY: SIGTERM to the nginx master we started.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let _ = self.child.wait();
    }
}

fn engine(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_engine")).args(args).env_remove("RUST_BACKTRACE").output().unwrap()
}

/// A blast that must run: its summary.
fn blast(url: &str, extra: &[&str], out: &Path) -> serde_json::Value {
    let mut args = vec!["blast", url, "--shards", "1", "-q", "--json", "-", "--out"];
    let out = out.display().to_string();
    args.push(&out);
    args.extend_from_slice(extra);
    let o = engine(&args);
    assert_eq!(o.status.code(), Some(0), "{args:?}: {}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&o.stdout).unwrap()
}

/// A blast that must stop at the pre-flight: exit 3, and its one line.
fn refused(url: &str, extra: &[&str]) -> String {
    let mut args = vec!["blast", url, "-d", "1s", "-q"];
    args.extend_from_slice(extra);
    let o = engine(&args);
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    assert_eq!(o.status.code(), Some(3), "{args:?}: {err}");
    err.lines().last().unwrap_or_default().to_string()
}

#[test]
fn https_counts_match_nginx_and_a_certificate_problem_names_its_flag() {
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
        let s = blast(&url, &["--cacert", &ca, "-c", "2", "-d", "2s", "--connect-timeout", "1s"], &out);
        assert!(started.elapsed() < Duration::from_secs(15), "{how:?} took {:?}", started.elapsed());
        let tls = s["errors"]["tls"].as_u64().unwrap();
        assert!(tls > 0, "{how:?}: no TLS errors: {s}");
        assert_eq!(s["errors"]["total"].as_u64().unwrap(), tls, "{how:?}: {s}");
        let counted: u64 = reasons.iter().map(|r| s["tls"]["errors"][r].as_u64().unwrap()).sum();
        assert_eq!(counted, tls, "{how:?}: reasons {reasons:?}: {}", s["tls"]);
    }
}
