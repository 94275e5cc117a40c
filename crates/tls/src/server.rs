//! A server's TLS configuration (`engine target` and `engine proxy --tls-cert/--tls-key`):
//! the certificate chain and key from PEM files, ALPN `http/1.1`, stateless session tickets
//! so clients resume without a shared session cache.

use std::path::Path;
use std::sync::Arc;

use rustls::server::UnbufferedServerConnection;
use rustls::ServerConfig;

use crate::{pem, SetupError, ALPN_HTTP1};

/// A server configuration, built from the files now.
pub fn server_config(cert: &Path, key: &Path) -> Result<Arc<ServerConfig>, SetupError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(crate::versions(None))?
        .with_no_client_auth()
        .with_single_cert(pem::certificates(cert)?, pem::private_key(key)?)?;
    config.alpn_protocols = vec![ALPN_HTTP1.to_vec()];
    config.ticketer = rustls::crypto::ring::Ticketer::new()?;
    config.key_log = Arc::new(rustls::KeyLogFile::new());
    Ok(Arc::new(config))
}

/// A new server-side connection's TLS state.
pub fn accept(config: &Arc<ServerConfig>) -> Result<UnbufferedServerConnection, rustls::Error> {
    UnbufferedServerConnection::new(config.clone())
}
