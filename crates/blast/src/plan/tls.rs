//! TLS to the target: the client and what it verifies against, ALPN as HTTP/2 asks, and TLS
//! options refused for a plain target.

use super::{Http2Plan, PlanError, Target};

/// TLS to the target.
#[derive(Debug, Clone)]
pub struct TlsPlan {
    pub client: engine_tls::Client,
    /// What the server's certificate is verified against, for the banner.
    pub verify: String,
}

impl TlsPlan {
    pub(super) fn new(opts: &engine_tls::ClientOptions, target: &Target) -> Result<TlsPlan, PlanError> {
        let client = engine_tls::Client::new(opts, &target.host)?;
        let verify = match (&opts.cacert, opts.insecure) {
            (_, true) => "NOT VERIFIED (-k)".to_string(),
            (Some(ca), false) => format!("verified for {} against {}", client.server_name(), ca.display()),
            (None, false) => format!("verified for {} against the system's roots", client.server_name()),
        };
        Ok(TlsPlan { client, verify })
    }
}

/// TLS for an https:// (or grpcs://) target, offering by ALPN what HTTP/2 asks; TLS options
/// given for a plain target are refused.
pub(super) fn tls_plan(
    opts: &engine_tls::ClientOptions,
    target: &Target,
    http2: Option<&Http2Plan>,
) -> Result<Option<TlsPlan>, PlanError> {
    if !target.tls {
        return if tls_given(opts) { Err(PlanError::TlsOnPlain(target.url.clone())) } else { Ok(None) };
    }
    let mut t = TlsPlan::new(opts, target)?;
    if let Some(h) = http2 {
        // Prior knowledge offers only h2: a server that picks nothing is spoken h2 to all
        // the same (no fallback), as curl does.
        let offer: &[&[u8]] =
            if h.prior_knowledge { &[engine_tls::ALPN_H2] } else { &[engine_tls::ALPN_H2, engine_tls::ALPN_HTTP1] };
        t.client = t.client.with_alpn(offer);
    }
    Ok(Some(t))
}

/// Whether any TLS option differs from its default (a mistake on a plain target).
fn tls_given(o: &engine_tls::ClientOptions) -> bool {
    o.cacert.is_some()
        || o.insecure
        || o.servername.is_some()
        || o.cert.is_some()
        || o.key.is_some()
        || o.version.is_some()
        || !o.resume
}
