//! A server's TLS configuration (`engine target` and `engine proxy --tls-cert/--tls-key`):
//! the certificate chain and key from PEM files, ALPN `http/1.1`, stateless session tickets
//! so clients resume without a shared session cache.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::server::UnbufferedServerConnection;
use rustls::ServerConfig;

use crate::{pem, SetupError, ALPN_HTTP1};

/// A server configuration, built from the files now.
pub fn server_config(cert: &Path, key: &Path) -> Result<Arc<ServerConfig>, SetupError> {
    config_of(pem::certificates(cert)?, pem::private_key(key)?)
}

/// A throwaway self-signed certificate for `names` (host names or IP addresses), as
/// `engine demo --tls` uses: the server's configuration and the certificate in PEM, for the
/// client to trust.
pub fn self_signed(names: &[&str]) -> Result<(Arc<ServerConfig>, String), SetupError> {
    let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    let made = rcgen::generate_simple_self_signed(names).map_err(|e| SetupError::Generate(e.to_string()))?;
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(made.key_pair.serialize_der()));
    let chain: Vec<CertificateDer<'static>> = vec![made.cert.der().clone()];
    Ok((config_of(chain, key)?, made.cert.pem()))
}

fn config_of(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<Arc<ServerConfig>, SetupError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(crate::versions(None))?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    config.alpn_protocols = vec![ALPN_HTTP1.to_vec()];
    config.ticketer = rustls::crypto::ring::Ticketer::new()?;
    config.key_log = Arc::new(rustls::KeyLogFile::new());
    Ok(Arc::new(config))
}

/// `config` offering HTTP/2 first in ALPN, then HTTP/1.1 (a server that speaks both).
pub fn offering_h2(config: &Arc<ServerConfig>) -> Arc<ServerConfig> {
    let mut both = (**config).clone();
    both.alpn_protocols = vec![crate::ALPN_H2.to_vec(), ALPN_HTTP1.to_vec()];
    Arc::new(both)
}

/// A new server-side connection's TLS state.
pub fn accept(config: &Arc<ServerConfig>) -> Result<UnbufferedServerConnection, rustls::Error> {
    UnbufferedServerConnection::new(config.clone())
}
