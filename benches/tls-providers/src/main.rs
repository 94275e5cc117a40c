//! ring against aws-lc-rs in rustls, in one process (no sockets): full and resumed TLS 1.3
//! handshakes (client and server both here), and AES-GCM bulk data (16 KiB records sealed by
//! the server and opened by the client). Alternates the providers, three rounds.
use std::io::{Read, Write};
use std::sync::Arc;
use std::time::Instant;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, ServerConfig, ServerConnection};

fn configs(p: Arc<CryptoProvider>, resume: bool) -> (Arc<ClientConfig>, Arc<ServerConfig>) {
    let made = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let cert: CertificateDer<'static> = made.cert.der().clone();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(made.key_pair.serialize_der()));
    let mut roots = RootCertStore::empty();
    roots.add(cert.clone()).unwrap();
    let mut s = ServerConfig::builder_with_provider(p.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert], key)
        .unwrap();
    if !resume {
        s.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
        s.send_tls13_tickets = 0;
    }
    let mut c = ClientConfig::builder_with_provider(p)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    if !resume {
        c.resumption = rustls::client::Resumption::disabled();
    }
    (Arc::new(c), Arc::new(s))
}

fn pump(c: &mut ClientConnection, s: &mut ServerConnection) {
    let mut buf = Vec::new();
    loop {
        let mut moved = false;
        buf.clear();
        while c.wants_write() {
            c.write_tls(&mut buf).unwrap();
        }
        if !buf.is_empty() {
            moved = true;
            s.read_tls(&mut &buf[..]).unwrap();
            s.process_new_packets().unwrap();
        }
        buf.clear();
        while s.wants_write() {
            s.write_tls(&mut buf).unwrap();
        }
        if !buf.is_empty() {
            moved = true;
            let mut r = &buf[..];
            while !r.is_empty() {
                c.read_tls(&mut r).unwrap();
                c.process_new_packets().unwrap();
            }
        }
        if !moved {
            break;
        }
    }
}

fn handshakes(p: &Arc<CryptoProvider>, n: u32, resume: bool) -> f64 {
    let (cc, sc) = configs(p.clone(), resume);
    let name = ServerName::try_from("localhost").unwrap();
    let t = Instant::now();
    for _ in 0..n {
        let mut c = ClientConnection::new(cc.clone(), name.clone()).unwrap();
        let mut s = ServerConnection::new(sc.clone()).unwrap();
        pump(&mut c, &mut s);
        assert!(!c.is_handshaking() && !s.is_handshaking());
    }
    n as f64 / t.elapsed().as_secs_f64()
}

fn bulk(p: &Arc<CryptoProvider>, mib: usize) -> f64 {
    let (cc, sc) = configs(p.clone(), false);
    let mut c = ClientConnection::new(cc, ServerName::try_from("localhost").unwrap()).unwrap();
    let mut s = ServerConnection::new(sc).unwrap();
    pump(&mut c, &mut s);
    let chunk = vec![7u8; 16 * 1024];
    let mut wire = Vec::with_capacity(1 << 20);
    let mut out = vec![0u8; 64 * 1024];
    let t = Instant::now();
    for _ in 0..mib * 64 {
        s.writer().write_all(&chunk).unwrap();
        wire.clear();
        while s.wants_write() {
            s.write_tls(&mut wire).unwrap();
        }
        let mut r = &wire[..];
        while !r.is_empty() {
            c.read_tls(&mut r).unwrap();
            c.process_new_packets().unwrap();
        }
        loop {
            match c.reader().read(&mut out) {
                Ok(0) => break,
                Ok(_) => {}
                Err(_) => break,
            }
        }
    }
    mib as f64 / t.elapsed().as_secs_f64()
}

fn main() {
    let providers = [
        ("ring", Arc::new(rustls::crypto::ring::default_provider())),
        ("aws-lc-rs", Arc::new(rustls::crypto::aws_lc_rs::default_provider())),
    ];
    for round in 1..=3 {
        for (name, p) in &providers {
            let full = handshakes(p, 1500, false);
            let resumed = handshakes(p, 3000, true);
            let mibs = bulk(p, 512);
            println!("round {round} {name:10} full {full:8.0}/s  resumed {resumed:8.0}/s  bulk {mibs:7.0} MiB/s");
        }
    }
}
