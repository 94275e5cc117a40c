//! The TLS flags `engine blast` shares with curl, for https:// URLs.

use std::path::PathBuf;

use clap::Args;

#[derive(Args, Debug, Clone, Default)]
#[command(next_help_heading = "TLS (https:// URLs)")]
pub struct TlsArgs {
    /// Verify the server's certificate against the roots in this PEM file instead of the
    /// system's (a private CA, a self-signed certificate)
    #[arg(long, value_name = "FILE")]
    pub cacert: Option<PathBuf>,
    /// Do not verify the server's certificate at all (the start line says so); the traffic is
    /// still encrypted
    #[arg(short = 'k', long, conflicts_with = "cacert")]
    pub insecure: bool,
    /// The name sent as SNI and verified in the certificate, instead of the URL's host (a
    /// target addressed by IP, a virtual host)
    #[arg(long, value_name = "NAME")]
    pub servername: Option<String>,
    /// A client certificate chain (PEM) for servers that require one (mutual TLS); with --key
    #[arg(long, value_name = "FILE", requires = "key")]
    pub cert: Option<PathBuf>,
    /// The client certificate's private key (PEM: PKCS#8, PKCS#1 or SEC1); with --cert
    #[arg(long, value_name = "FILE", requires = "cert")]
    pub key: Option<PathBuf>,
    /// Offer only this TLS version: 1.2 or 1.3 [default: both]
    #[arg(long, value_name = "1.2|1.3", value_parser = parse_version)]
    pub tls_version: Option<engine_tls::Version>,
    /// Full handshakes only: reconnects do not resume the previous session (with
    /// -H 'Connection: close', a test of the server's handshake capacity)
    #[arg(long)]
    pub no_tls_resume: bool,
}

fn parse_version(text: &str) -> Result<engine_tls::Version, String> {
    match text {
        "1.2" => Ok(engine_tls::Version::Tls12),
        "1.3" => Ok(engine_tls::Version::Tls13),
        _ => Err(format!("'{text}' is not a TLS version this engine speaks: 1.2 or 1.3")),
    }
}

impl TlsArgs {
    /// The options for the plan (which refuses them for a plain target).
    pub fn options(&self) -> engine_tls::ClientOptions {
        engine_tls::ClientOptions {
            cacert: self.cacert.clone(),
            insecure: self.insecure,
            servername: self.servername.clone(),
            cert: self.cert.clone(),
            key: self.key.clone(),
            version: self.tls_version,
            resume: !self.no_tls_resume,
        }
    }
}
