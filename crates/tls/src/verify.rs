//! Server certificate verification as curl does it with `--cacert`: the chain to a trusted
//! root (webpki), and also a self-signed certificate trusted as itself. webpki refuses a
//! certificate marked as a CA when it is the server's own (`CaUsedAsEndEntity`); OpenSSL
//! accepts one the user trusts explicitly, and test and staging servers are full of them
//! (`openssl req -x509` marks its certificates CA:TRUE). Its dates were checked before that
//! refusal, so only the name is left to check.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::ParsedCertificate;
use rustls::{DigitallySignedStruct, SignatureScheme};

#[derive(Debug)]
pub(crate) struct TrustedSelfSigned {
    inner: Arc<WebPkiServerVerifier>,
    /// The certificates the user trusts (`--cacert`), any of which may be the server's own.
    trusted: Vec<CertificateDer<'static>>,
}

impl TrustedSelfSigned {
    pub fn new(inner: Arc<WebPkiServerVerifier>, trusted: Vec<CertificateDer<'static>>) -> Self {
        TrustedSelfSigned { inner, trusted }
    }
}

impl ServerCertVerifier for TrustedSelfSigned {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self.inner.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now) {
            Err(e)
                if crate::error::self_signed(&e) && self.trusted.iter().any(|t| t.as_ref() == end_entity.as_ref()) =>
            {
                rustls::client::verify_server_name(&ParsedCertificate::try_from(end_entity)?, server_name)?;
                Ok(ServerCertVerified::assertion())
            }
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}
