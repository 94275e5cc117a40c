//! A client's TLS configuration from curl's options: the roots (the system's, `--cacert`, or
//! none with `-k`), the name (`--servername`, else the URL's host), a client certificate,
//! the version, and session resumption (one session cache per shard: no lock is shared
//! between cores).

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{Resumption, UnbufferedClientConnection, WebPkiServerVerifier};
use rustls::crypto::{self, CryptoProvider};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

use crate::{pem, Failure, Negotiated, SetupError, Version, ALPN_HTTP1};

/// Servers whose sessions a shard remembers (rustls keeps up to 8 TLS 1.3 tickets each).
const SESSIONS: usize = 16;

/// The options, as the command line gives them.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// PEM roots instead of the system's.
    pub cacert: Option<PathBuf>,
    /// No verification of the server's certificate at all.
    pub insecure: bool,
    /// The name sent as SNI and verified, instead of the URL's host.
    pub servername: Option<String>,
    /// A client certificate chain and its key (mutual TLS).
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    /// Only this version; both when `None`.
    pub version: Option<Version>,
    /// Reconnects resume the previous session (as browsers do).
    pub resume: bool,
}

impl Default for ClientOptions {
    /// Verified against the system's roots, the URL's host, both versions, resumption on.
    fn default() -> Self {
        ClientOptions {
            cacert: None,
            insecure: false,
            servername: None,
            cert: None,
            key: None,
            version: None,
            resume: true,
        }
    }
}

/// A built client configuration and the server's name.
#[derive(Clone)]
pub struct Client {
    config: Arc<ClientConfig>,
    name: ServerName<'static>,
    resume: bool,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client").field("name", &self.name).field("resume", &self.resume).finish()
    }
}

impl Client {
    /// Builds the configuration for `host` (the URL's). Reads the files it names now, so a
    /// wrong path is one clear error before anything runs.
    pub fn new(opts: &ClientOptions, host: &str) -> Result<Client, SetupError> {
        let provider = Arc::new(crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(crate::versions(opts.version))?;
        let builder = if opts.insecure {
            builder.dangerous().with_custom_certificate_verifier(Arc::new(NoVerification(provider)))
        } else {
            let (roots, trusted) = roots(opts.cacert.as_ref())?;
            let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| SetupError::NoRoots(e.to_string()))?;
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(crate::verify::TrustedSelfSigned::new(webpki, trusted)))
        };
        let mut config = match (&opts.cert, &opts.key) {
            (Some(cert), Some(key)) => {
                builder.with_client_auth_cert(pem::certificates(cert)?, pem::private_key(key)?)?
            }
            (None, None) => builder.with_no_client_auth(),
            _ => {
                return Err(SetupError::File {
                    path: opts.cert.clone().or(opts.key.clone()).unwrap_or_default(),
                    reason: "--cert and --key go together".into(),
                })
            }
        };
        config.alpn_protocols = vec![ALPN_HTTP1.to_vec()];
        // SSLKEYLOGFILE, as curl and browsers honour it, so Wireshark can read a capture.
        config.key_log = Arc::new(rustls::KeyLogFile::new());
        // After the handshake the engine seals and opens TLS 1.3 records itself (records.rs).
        config.enable_secret_extraction = true;
        let name = opts.servername.as_deref().unwrap_or(host);
        let name = ServerName::try_from(name.trim_start_matches('[').trim_end_matches(']').to_string())
            .map_err(|_| SetupError::BadName(name.to_string()))?;
        Ok(Client { config: Arc::new(config), name, resume: opts.resume })
    }

    /// A copy that offers `protocols` by ALPN, in order of preference (`http/1.1` alone by
    /// default).
    pub fn with_alpn(&self, protocols: &[&[u8]]) -> Client {
        let mut config = (*self.config).clone();
        config.alpn_protocols = protocols.iter().map(|p| p.to_vec()).collect();
        Client { config: Arc::new(config), ..self.clone() }
    }

    /// A copy for one shard, with its own session cache.
    pub fn for_shard(&self) -> Client {
        let mut config = (*self.config).clone();
        config.resumption = if self.resume { Resumption::in_memory_sessions(SESSIONS) } else { Resumption::disabled() };
        Client { config: Arc::new(config), ..self.clone() }
    }

    /// A new connection's TLS state (nothing sent yet).
    pub fn connection(&self) -> Result<UnbufferedClientConnection, rustls::Error> {
        UnbufferedClientConnection::new(self.config.clone(), self.name.clone())
    }

    /// The name sent as SNI and verified.
    pub fn server_name(&self) -> String {
        self.name.to_str().into_owned()
    }
}

/// The roots, and the certificates the user named (`--cacert`), which a server may present
/// as its own.
fn roots(cacert: Option<&PathBuf>) -> Result<(RootCertStore, Vec<CertificateDer<'static>>), SetupError> {
    let mut store = RootCertStore::empty();
    let mut trusted = Vec::new();
    match cacert {
        Some(path) => {
            for cert in pem::certificates(path)? {
                store.add(cert.clone()).map_err(|e| SetupError::File { path: path.clone(), reason: e.to_string() })?;
                trusted.push(cert);
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            let (added, _) = store.add_parsable_certificates(found.certs);
            if added == 0 {
                let why = found.errors.first().map(|e| e.to_string()).unwrap_or_else(|| "none found".into());
                return Err(SetupError::NoRoots(why));
            }
        }
    }
    Ok((store, trusted))
}

/// `-k`: any certificate is accepted; the handshake's signatures are still checked, so the
/// connection is encrypted to whoever holds the key of the certificate presented.
#[derive(Debug)]
struct NoVerification(Arc<CryptoProvider>);

impl ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// What a pre-flight handshake waits, after the handshake, for an alert the server sends
/// once it has seen our Finished (TLS 1.3 refuses a missing client certificate so).
const AFTER_HANDSHAKE: std::time::Duration = std::time::Duration::from_millis(300);

impl Client {
    /// A full handshake on a blocking socket, as a check before the run: the certificate, the
    /// name, the version, a client certificate the server refuses. Sends no request, except
    /// when the server asks for a client certificate and none was given: then `probe` (one
    /// request) shows whether it requires one (nginx completes the handshake and answers 400).
    pub fn preflight(
        &self,
        tcp: &mut std::net::TcpStream,
        timeout: std::time::Duration,
        probe: &[u8],
    ) -> std::io::Result<Negotiated> {
        use std::io::ErrorKind as K;
        let mut config = (*self.config).clone();
        config.resumption = Resumption::disabled();
        let asked =
            Arc::new(AskRecorder { asked: AtomicBool::new(false), inner: config.client_auth_cert_resolver.clone() });
        config.client_auth_cert_resolver = asked.clone();
        let mut conn = rustls::ClientConnection::new(Arc::new(config), self.name.clone()).map_err(Failure::rustls)?;
        tcp.set_read_timeout(Some(timeout))?;
        tcp.set_write_timeout(Some(timeout))?;
        let tls_error = |e: std::io::Error| match e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
            Some(r) => Failure::rustls(r.clone()),
            None if matches!(e.kind(), K::WouldBlock | K::TimedOut) => Failure::timed_out(),
            None if e.kind() == K::UnexpectedEof => {
                Failure::io(crate::Reason::Handshake, "the server closed the connection during the handshake")
            }
            None => e,
        };
        // The server's first bytes, kept to say so when they are plain HTTP.
        let mut first = Vec::new();
        while conn.is_handshaking() || conn.wants_write() {
            let mut io = Sniff { tcp: &mut *tcp, first: &mut first };
            // A signal (a timer, a child) may interrupt a blocking read: go on.
            let step = loop {
                match conn.complete_io(&mut io) {
                    Err(e) if e.kind() == K::Interrupted => continue,
                    other => break other,
                }
            };
            if let Err(e) = step {
                return Err(if first.starts_with(b"HTTP/") { Failure::plain_http() } else { tls_error(e) });
            }
        }
        tcp.set_read_timeout(Some(AFTER_HANDSHAKE))?;
        loop {
            match conn.read_tls(tcp) {
                Ok(0) => break,
                Ok(_) => {
                    conn.process_new_packets().map_err(Failure::rustls)?;
                }
                Err(e) if e.kind() == K::Interrupted => {}
                Err(e) if matches!(e.kind(), K::WouldBlock | K::TimedOut) => break,
                Err(e) => return Err(e),
            }
        }
        if asked.asked.load(Ordering::Relaxed) && !asked.inner.has_certs() {
            tcp.set_read_timeout(Some(timeout))?;
            if let Some(status) = probe_status(&mut conn, tcp, probe)?.filter(|s| *s >= 400) {
                return Err(Failure::client_certificate_required(status));
            }
        }
        conn.send_close_notify();
        let _ = conn.write_tls(tcp);
        Ok(crate::session::negotiated_of(&conn))
    }
}

/// The socket under the pre-flight's handshake, keeping the first bytes the server sent.
struct Sniff<'a> {
    tcp: &'a mut std::net::TcpStream,
    first: &'a mut Vec<u8>,
}

impl std::io::Read for Sniff<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.tcp.read(buf)?;
        let room = 8usize.saturating_sub(self.first.len()).min(n);
        self.first.extend_from_slice(&buf[..room]);
        Ok(n)
    }
}

impl std::io::Write for Sniff<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.tcp.write(buf)
    }

    // rustls writes its queued records in one vectored write: the default would send only
    // the first (a last-gasp alert after a change_cipher_spec would be lost).
    fn write_vectored(&mut self, bufs: &[std::io::IoSlice<'_>]) -> std::io::Result<usize> {
        self.tcp.write_vectored(bufs)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.tcp.flush()
    }
}

/// Sends `probe` and reads the response's status (`None` if the server closed first).
fn probe_status(
    conn: &mut rustls::ClientConnection,
    tcp: &mut std::net::TcpStream,
    probe: &[u8],
) -> std::io::Result<Option<u16>> {
    use std::io::{Read, Write};
    conn.writer().write_all(probe)?;
    let mut head = Vec::new();
    let mut stream = rustls::Stream::new(conn, tcp);
    let mut buf = [0u8; 512];
    while head.len() < 12 {
        match stream.read(&mut buf) {
            Ok(0) => return Ok(None),
            Ok(n) => head.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => {
                return Err(match e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
                    Some(r) => Failure::rustls(r.clone()),
                    None => e,
                })
            }
        }
    }
    Ok(std::str::from_utf8(&head[9..12]).ok().and_then(|s| s.parse().ok()))
}

/// Passes the configured client certificate through, noting that the server asked for one.
#[derive(Debug)]
struct AskRecorder {
    asked: AtomicBool,
    inner: Arc<dyn rustls::client::ResolvesClientCert>,
}

impl rustls::client::ResolvesClientCert for AskRecorder {
    fn resolve(
        &self,
        root_hint_subjects: &[&[u8]],
        sigschemes: &[SignatureScheme],
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        self.asked.store(true, Ordering::Relaxed);
        self.inner.resolve(root_hint_subjects, sigschemes)
    }

    fn has_certs(&self) -> bool {
        self.inner.has_certs()
    }
}
