//! Certificates and keys from PEM files a user names (bounded reads: a wrong path such as
//! `/dev/zero` is an error, not a hang).

use std::path::{Path, PathBuf};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::SetupError;

/// A PEM file larger than this is not a certificate chain or a key.
const PEM_LIMIT: u64 = 4 * 1024 * 1024;

fn read(path: &Path) -> Result<Vec<u8>, SetupError> {
    engine_util::files::read_limited(path, PEM_LIMIT)
        .map_err(|e| SetupError::File { path: path.to_path_buf(), reason: e.to_string() })
}

/// Every certificate in the file, in order; at least one.
pub fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, SetupError> {
    let bytes = read(path)?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(path, format!("not PEM certificates: {e}")))?;
    if certs.is_empty() {
        return Err(bad(path, "holds no PEM certificate (-----BEGIN CERTIFICATE-----)".into()));
    }
    Ok(certs)
}

/// The private key in the file (PKCS#8, PKCS#1 or SEC1).
pub fn private_key(path: &Path) -> Result<PrivateKeyDer<'static>, SetupError> {
    let bytes = read(path)?;
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| bad(path, format!("holds no PEM private key: {e}")))
}

fn bad(path: &Path, reason: String) -> SetupError {
    SetupError::File { path: PathBuf::from(path), reason }
}
