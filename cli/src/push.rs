//! `--push URL`: the final metrics of a run sent to a Prometheus Pushgateway, for runs too
//! short to be scraped. A plain HTTP/1.1 PUT of the text format (the Pushgateway replaces the
//! group's metrics with it), through the blast's side-conversation client.

use std::net::ToSocketAddrs;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use engine_blast::client;

/// Connecting, sending and the answer together.
const TIMEOUT: Duration = Duration::from_secs(10);

/// Where to push: `host:port` to connect to, and the request path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushTarget {
    pub hostport: String,
    pub path: String,
}

/// `http://HOST:PORT[/metrics/job/NAME[/LABEL/VALUE...]]`; without a path the job is
/// `engine_blast`.
pub fn parse(url: &str) -> anyhow::Result<PushTarget> {
    let u = url::Url::parse(url).map_err(|e| anyhow!("--push {url:?}: {e}"))?;
    if u.scheme() != "http" {
        bail!("--push {url}: only http:// Pushgateways are supported");
    }
    let host = u.host_str().ok_or_else(|| anyhow!("--push {url}: no host"))?;
    let port = u.port_or_known_default().unwrap_or(9091);
    let path = match u.path() {
        "" | "/" => "/metrics/job/engine_blast".to_string(),
        p if p.starts_with("/metrics/job/") => p.to_string(),
        p => bail!("--push {url}: the path must be /metrics/job/NAME[/LABEL/VALUE...] (got {p})"),
    };
    let hostport = if host.contains(':') { format!("[{host}]:{port}") } else { format!("{host}:{port}") };
    Ok(PushTarget { hostport, path })
}

/// PUTs `body` and checks for a 2xx answer.
pub fn push(target: &PushTarget, body: &str) -> anyhow::Result<()> {
    let addr = target
        .hostport
        .to_socket_addrs()
        .with_context(|| format!("cannot resolve {}", target.hostport))?
        .next()
        .ok_or_else(|| anyhow!("{} resolved to no address", target.hostport))?;
    let content_type = "text/plain; version=0.0.4";
    let answer = client::put(addr, &target.hostport, &target.path, content_type, body.as_bytes(), TIMEOUT)
        .with_context(|| format!("the Pushgateway at {addr}"))?;
    if !(200..300).contains(&answer.status) {
        bail!("the Pushgateway at {addr} answered {}", answer.status);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let t = parse("http://pushgw:9091").unwrap();
        assert_eq!((t.hostport.as_str(), t.path.as_str()), ("pushgw:9091", "/metrics/job/engine_blast"));
        let t = parse("http://127.0.0.1:1/metrics/job/load/instance/w1").unwrap();
        assert_eq!(t.path, "/metrics/job/load/instance/w1");
        assert!(parse("https://x/").is_err());
        assert!(parse("http://x/elsewhere").is_err());
        assert!(parse("not a url").is_err());
    }
}
