//! `--push URL`: the final metrics of a run sent to a Prometheus Pushgateway, for runs too
//! short to be scraped. A plain HTTP/1.1 PUT of the text format (the Pushgateway replaces the
//! group's metrics with it). The answer is framed by the engine's own response framer.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use anyhow::{anyhow, bail, Context};

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
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).with_context(|| format!("connect {addr}"))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    s.set_write_timeout(Some(Duration::from_secs(10)))?;
    let head = format!(
        "PUT {} HTTP/1.1\r\nHost: {}\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        target.path,
        target.hostport,
        body.len()
    );
    s.write_all(head.as_bytes())?;
    s.write_all(body.as_bytes())?;
    let status = read_status(&mut s).with_context(|| format!("the Pushgateway at {addr}"))?;
    if !(200..300).contains(&status) {
        bail!("the Pushgateway at {addr} answered {status}");
    }
    Ok(())
}

/// The status of the one response on `s`, read until the framer says it is whole.
fn read_status(s: &mut impl Read) -> anyhow::Result<u16> {
    let mut framer = engine_http::ResponseFramer::new();
    framer.start(false);
    let (mut buf, mut pending) = ([0u8; 8192], Vec::new());
    loop {
        let n = s.read(&mut buf)?;
        if n == 0 {
            return Ok(framer.feed_eof()?.status);
        }
        pending.extend_from_slice(&buf[..n]);
        match framer.feed(&pending)? {
            engine_http::Progress::Complete { response, .. } => return Ok(response.status),
            engine_http::Progress::Incomplete { consumed } => drop(pending.drain(..consumed)),
        }
    }
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

    #[test]
    fn answers() {
        let status = |reply: &[u8]| read_status(&mut &reply[..]);
        assert_eq!(status(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n").unwrap(), 200);
        assert_eq!(status(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 3\r\n\r\nbad").unwrap(), 400);
        assert_eq!(status(b"HTTP/1.0 202 Accepted\r\n\r\nclose-delimited").unwrap(), 202);
        assert!(status(b"SSH-2.0-OpenSSH\r\n").is_err());
        assert!(status(b"").is_err());
    }
}
