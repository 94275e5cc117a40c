//! `--push URL`: the final metrics of a run sent to a Prometheus Pushgateway, for runs too
//! short to be scraped. A plain HTTP/1.1 PUT of the text format (the Pushgateway replaces the
//! group's metrics with it), through the blast's side-conversation client.

use std::time::Duration;

use crate::client::{self, ClientError};

/// Connecting, sending and the answer together.
const TIMEOUT: Duration = Duration::from_secs(10);

/// Where to push: `host:port` to connect to, and the request path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pushgateway {
    pub hostport: String,
    pub path: String,
}

#[derive(Debug, thiserror::Error)]
pub enum PushError {
    #[error("--push {url:?}: {why}")]
    Url { url: String, why: String },
    #[error("cannot resolve {0}")]
    Resolve(String),
    #[error("the Pushgateway at {hostport}: {cause}")]
    Request { hostport: String, cause: ClientError },
    #[error("the Pushgateway at {hostport} answered {status}")]
    Refused { hostport: String, status: u16 },
}

impl Pushgateway {
    /// `http://HOST:PORT[/metrics/job/NAME[/LABEL/VALUE...]]`; without a path the job is
    /// `engine_blast`.
    pub fn parse(url: &str) -> Result<Self, PushError> {
        let bad = |why: String| PushError::Url { url: url.to_string(), why };
        let u = url::Url::parse(url).map_err(|e| bad(e.to_string()))?;
        if u.scheme() != "http" {
            return Err(bad("only http:// Pushgateways are supported".into()));
        }
        let host = u.host_str().ok_or_else(|| bad("no host".into()))?;
        let port = u.port_or_known_default().unwrap_or(9091);
        let path = match u.path() {
            "" | "/" => "/metrics/job/engine_blast".to_string(),
            p if p.starts_with("/metrics/job/") => p.to_string(),
            p => return Err(bad(format!("the path must be /metrics/job/NAME[/LABEL/VALUE...] (got {p})"))),
        };
        let hostport = if host.contains(':') { format!("[{host}]:{port}") } else { format!("{host}:{port}") };
        Ok(Pushgateway { hostport, path })
    }

    /// PUTs `body` and checks for a 2xx answer.
    pub fn push(&self, body: &str) -> Result<(), PushError> {
        let hostport = self.hostport.clone();
        let addr = client::resolve(&self.hostport).map_err(|_| PushError::Resolve(hostport.clone()))?;
        let content_type = "text/plain; version=0.0.4";
        let answer = client::put(addr, &self.hostport, &self.path, content_type, body.as_bytes(), TIMEOUT)
            .map_err(|cause| PushError::Request { hostport: hostport.clone(), cause })?;
        if !(200..300).contains(&answer.status) {
            return Err(PushError::Refused { hostport, status: answer.status });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let t = Pushgateway::parse("http://pushgw:9091").unwrap();
        assert_eq!((t.hostport.as_str(), t.path.as_str()), ("pushgw:9091", "/metrics/job/engine_blast"));
        let t = Pushgateway::parse("http://127.0.0.1:1/metrics/job/load/instance/w1").unwrap();
        assert_eq!(t.path, "/metrics/job/load/instance/w1");
        assert!(Pushgateway::parse("https://x/").is_err());
        assert!(Pushgateway::parse("http://x/elsewhere").is_err());
        assert!(Pushgateway::parse("not a url").is_err());
    }
}
