//! What goes wrong with TLS: setting it up (a user's files and flags: exit 2) and on a
//! connection (counted as an error of kind `tls`, by reason), with the words that say which
//! flag would change the outcome.

use std::fmt;
use std::io;
use std::path::PathBuf;

use rustls::{AlertDescription, CertificateError};

/// A TLS configuration that cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("{}: {reason}", path.display())]
    File { path: PathBuf, reason: String },
    #[error("no trusted roots: the system store gave none ({0}); pass --cacert FILE, or -k to skip verification")]
    NoRoots(String),
    #[error("{0}")]
    Rustls(rustls::Error),
    #[error("cannot make a self-signed certificate: {0}")]
    Generate(String),
    #[error("'{0}' is not a host name or an IP address a certificate can be verified against")]
    BadName(String),
}

impl From<rustls::Error> for SetupError {
    fn from(e: rustls::Error) -> Self {
        SetupError::Rustls(e)
    }
}

/// The server's own certificate is marked as a CA: a self-signed certificate.
pub(crate) fn self_signed(e: &rustls::Error) -> bool {
    matches!(e, rustls::Error::InvalidCertificate(CertificateError::Other(rustls::OtherError(o)))
        if matches!(o.downcast_ref::<webpki::Error>(), Some(webpki::Error::CaUsedAsEndEntity)))
}

/// Why a TLS connection failed: the reasons the summary counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    /// The peer's certificate was refused (untrusted, expired, another name), or ours was.
    Certificate,
    /// The peer sent a fatal alert.
    Alert,
    /// Bytes that are not a valid TLS record or message, or do not decrypt.
    BadRecord,
    /// The connection closed without close_notify where that loses data (a close-delimited
    /// body), or in the middle of a record.
    Truncated,
    /// The handshake did not complete: no common version or cipher, closed or timed out.
    Handshake,
    Other,
}

impl Reason {
    pub const ALL: [Reason; 6] =
        [Self::Certificate, Self::Alert, Self::BadRecord, Self::Truncated, Self::Handshake, Self::Other];

    pub fn name(self) -> &'static str {
        match self {
            Self::Certificate => "certificate",
            Self::Alert => "alert",
            Self::BadRecord => "bad_record",
            Self::Truncated => "truncated",
            Self::Handshake => "handshake",
            Self::Other => "other",
        }
    }

    fn of(e: &rustls::Error) -> Reason {
        use rustls::Error as E;
        match e {
            E::InvalidCertificate(_) | E::NoCertificatesPresented | E::InvalidCertRevocationList(_) => {
                Self::Certificate
            }
            E::AlertReceived(_) => Self::Alert,
            E::InvalidMessage(_)
            | E::DecryptError
            | E::PeerSentOversizedRecord
            | E::InappropriateMessage { .. }
            | E::InappropriateHandshakeMessage { .. }
            | E::PeerMisbehaved(_) => Self::BadRecord,
            E::PeerIncompatible(_) | E::NoApplicationProtocol | E::HandshakeNotComplete => Self::Handshake,
            _ => Self::Other,
        }
    }
}

/// A failed TLS connection: the reason and what happened, carried inside an `io::Error`
/// (kind `InvalidData`) so the transport keeps one error type.
#[derive(Debug)]
pub struct Failure {
    pub reason: Reason,
    detail: Detail,
}

#[derive(Debug)]
enum Detail {
    Rustls(rustls::Error),
    Text(&'static str),
    /// The server asked for a client certificate, none was given, and it refused a request
    /// with this status.
    ClientCertificateRequired(u16),
}

impl Failure {
    pub(crate) fn rustls(e: rustls::Error) -> io::Error {
        Self::wrap(Failure { reason: Reason::of(&e), detail: Detail::Rustls(e) })
    }

    /// A rustls error as a TLS failure.
    pub fn from_rustls(e: rustls::Error) -> io::Error {
        Self::rustls(e)
    }

    pub(crate) fn client_certificate_required(status: u16) -> io::Error {
        Self::wrap(Failure { reason: Reason::Certificate, detail: Detail::ClientCertificateRequired(status) })
    }

    /// The handshake did not complete in time.
    pub fn timed_out() -> io::Error {
        Self::io(Reason::Handshake, "the handshake did not complete within the connect timeout")
    }

    /// A server that answered a ClientHello in plain HTTP: the wrong scheme or port.
    pub(crate) fn plain_http() -> io::Error {
        Self::io(Reason::BadRecord, "the server answered in plain HTTP, not TLS: try http:// (or its TLS port)")
    }

    /// A close without close_notify that cut data short.
    pub fn truncated() -> io::Error {
        Self::io(Reason::Truncated, "the peer closed without close_notify before the body's end")
    }

    /// The index of the reason in `Reason::ALL` (the summary's order).
    pub fn reason_index(&self) -> usize {
        Reason::ALL.iter().position(|r| *r == self.reason).unwrap_or(Reason::ALL.len() - 1)
    }

    pub(crate) fn io(reason: Reason, text: &'static str) -> io::Error {
        Self::wrap(Failure { reason, detail: Detail::Text(text) })
    }

    fn wrap(f: Failure) -> io::Error {
        io::Error::new(io::ErrorKind::InvalidData, f)
    }

    /// The TLS failure inside an I/O error, if that is what it is.
    pub fn of(e: &io::Error) -> Option<&Failure> {
        e.get_ref().and_then(|inner| inner.downcast_ref::<Failure>())
    }

    /// What a user should do about it, for a pre-flight that failed: the flag that changes it.
    pub fn advice(&self) -> Option<&'static str> {
        let e = match &self.detail {
            Detail::Rustls(e) => e,
            Detail::ClientCertificateRequired(_) => {
                return Some("pass a client certificate with --cert FILE --key FILE")
            }
            Detail::Text(_) => return None,
        };
        use rustls::Error as E;
        Some(match e {
            e if self_signed(e) => "the server presents a self-signed certificate: trust it with --cacert FILE (that certificate), or -k to skip verification",
            E::InvalidCertificate(CertificateError::UnknownIssuer | CertificateError::BadSignature) => {
                "pass --cacert FILE with the certificate authority that signed it, or -k to skip verification"
            }
            E::InvalidCertificate(CertificateError::Expired | CertificateError::ExpiredContext { .. }) => {
                "renew the server's certificate, or -k to skip verification"
            }
            E::InvalidCertificate(CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. }) => {
                "--servername NAME verifies (and sends as SNI) the name the certificate is for, or -k skips verification"
            }
            E::InvalidCertificate(_) => "-k skips verification",
            E::AlertReceived(AlertDescription::CertificateRequired)
            | E::AlertReceived(AlertDescription::HandshakeFailure)
            | E::AlertReceived(AlertDescription::BadCertificate) => {
                "if the server requires a client certificate, pass --cert FILE --key FILE"
            }
            E::AlertReceived(AlertDescription::ProtocolVersion) | E::PeerIncompatible(_) => {
                "--tls-version 1.2 or 1.3 chooses the version offered"
            }
            _ => return None,
        })
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.detail {
            Detail::Rustls(e) if self_signed(e) => {
                write!(
                    f,
                    "TLS {}: the server's certificate is self-signed (a CA certificate as its own) and not trusted",
                    self.reason.name()
                )
            }
            Detail::Rustls(e) => write!(f, "TLS {}: {e}", self.reason.name()),
            Detail::Text(t) => write!(f, "TLS {}: {t}", self.reason.name()),
            Detail::ClientCertificateRequired(status) => write!(
                f,
                "TLS {}: the server asked for a client certificate, none was given, and it answered {status} without one",
                self.reason.name()
            ),
        }
    }
}

impl std::error::Error for Failure {}
