//! What the TLS tests share: certificates made with rcgen (a CA, a server certificate it
//! signed, an expired one, a client CA and its client certificate), nginx with a TLS server
//! for each case, and the engine binary.
#![allow(dead_code)] // each test file uses its own part

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use rcgen::{BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair};

/// PEM files of one test's certificates.
pub struct Certs {
    pub dir: PathBuf,
}

impl Certs {
    pub fn make(tag: &str) -> Certs {
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

    pub fn path(&self, name: &str) -> String {
        self.dir.join(name).display().to_string()
    }
}

impl Drop for Certs {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub fn authority(name: &str) -> (rcgen::Certificate, KeyPair) {
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.distinguished_name.push(DnType::CommonName, name);
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let key = KeyPair::generate().unwrap();
    (p.self_signed(&key).unwrap(), key)
}

pub use crate::ports::free_port;

/// nginx with three TLS servers (a good certificate, an expired one, one that requires a
/// client certificate) and its status page.
pub struct Nginx {
    child: Child,
    pub good: u16,
    pub expired: u16,
    pub mtls: u16,
    /// Closes every connection after one response (`keepalive_timeout 0`).
    pub oneshot: u16,
    pub status: u16,
    prefix: PathBuf,
}

impl Nginx {
    pub fn start(certs: &Certs) -> Nginx {
        let (good, expired, mtls, oneshot, status) = (free_port(), free_port(), free_port(), free_port(), free_port());
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
    server {{ listen 127.0.0.1:{oneshot} ssl; ssl_certificate {}; ssl_certificate_key {}; keepalive_timeout 0;
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
            p("server.pem"),
            p("server.key"),
        );
        std::fs::write(prefix.join("nginx.conf"), conf).unwrap();
        let child = Command::new(nginx_bin())
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
        let n = Nginx { child, good, expired, mtls, oneshot, status, prefix };
        let deadline = Instant::now() + Duration::from_secs(10);
        while n.served().is_none() {
            assert!(Instant::now() < deadline, "nginx did not start; see {}", n.prefix.display());
            std::thread::sleep(Duration::from_millis(50));
        }
        n
    }

    /// Requests served (stub_status counts its own request too).
    pub fn served(&self) -> Option<u64> {
        let mut s = TcpStream::connect(("127.0.0.1", self.status)).ok()?;
        s.write_all(b"GET /nginx_status HTTP/1.0\r\n\r\n").ok()?;
        let mut text = String::new();
        s.read_to_string(&mut text).ok()?;
        text.split("\r\n\r\n").nth(1)?.lines().nth(2)?.split_whitespace().nth(2)?.parse().ok()
    }
}

/// nginx where Debian puts it (the same places `require!("nginx")` looks).
fn nginx_bin() -> std::path::PathBuf {
    crate::require::find(&["/usr/sbin/nginx", "/usr/local/sbin/nginx", "/usr/bin/nginx"])
        .expect("nginx not found: install it (apt-get install -y nginx-light); .ci/run does")
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // SAFETY: SIGTERM to the nginx master we started.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let _ = self.child.wait();
    }
}

pub fn engine(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_engine")).args(args).env_remove("RUST_BACKTRACE").output().unwrap()
}

/// A blast that must run and pass: its summary.
pub fn blast(url: &str, extra: &[&str], out: &Path) -> serde_json::Value {
    let (summary, code) = blast_exit(url, extra, out);
    assert_eq!(code, Some(0), "{extra:?}: {summary}");
    summary
}

/// A blast that must run and write its summary, whatever its exit code: both.
pub fn blast_exit(url: &str, extra: &[&str], out: &Path) -> (serde_json::Value, Option<i32>) {
    let mut args = vec!["blast", url, "--shards", "1", "-q", "--json", "-", "--out"];
    let out = out.display().to_string();
    args.push(&out);
    args.extend_from_slice(extra);
    let o = engine(&args);
    let summary = serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("{args:?}: no summary ({e}): {}", String::from_utf8_lossy(&o.stderr)));
    (summary, o.status.code())
}

/// A blast that must stop at the pre-flight: exit 3, and its one line.
pub fn refused(url: &str, extra: &[&str]) -> String {
    let mut args = vec!["blast", url, "-d", "1s", "-q"];
    args.extend_from_slice(extra);
    let o = engine(&args);
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    assert_eq!(o.status.code(), Some(3), "{args:?}: {err}");
    err.lines().last().unwrap_or_default().to_string()
}
