//! A blocking HTTP/1.1 exchange for the blast's side conversations (Prometheus queries, the
//! Pushgateway), off the load's path: one request per connection, framed by the engine's own
//! response framer, the body kept up to 64 KiB, one deadline for the whole exchange.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use engine_http::body::dechunk;
use engine_http::response::{Capture, MAX_CAPTURED_BODY};
use engine_http::{FrameError, Progress, ResponseFramer};

/// A response: its status and body (de-chunked).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    pub body: Vec<u8>,
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("{0}")]
    Io(#[from] io::Error),
    #[error("the name resolved to no address")]
    NoAddress,
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("{0}")]
    Frame(#[from] FrameError),
    #[error("the answer's body is longer than {MAX_CAPTURED_BODY} bytes")]
    TooLong,
}

/// The first address `host:port` resolves to.
pub fn resolve(authority: &str) -> Result<SocketAddr, ClientError> {
    authority.to_socket_addrs()?.next().ok_or(ClientError::NoAddress)
}

/// `GET path` from `addr`, `authority` as the Host header.
pub fn get(addr: SocketAddr, authority: &str, path: &str, timeout: Duration) -> Result<Answer, ClientError> {
    let head =
        format!("GET {path} HTTP/1.1\r\nHost: {authority}\r\nAccept: application/json\r\nConnection: close\r\n\r\n");
    exchange(addr, &[head.as_bytes()], timeout)
}

/// `PUT path` of `body` (of `content_type`) to `addr`.
pub fn put(
    addr: SocketAddr,
    authority: &str,
    path: &str,
    content_type: &str,
    body: &[u8],
    timeout: Duration,
) -> Result<Answer, ClientError> {
    let head = format!(
        "PUT {path} HTTP/1.1\r\nHost: {authority}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    exchange(addr, &[head.as_bytes(), body], timeout)
}

fn exchange(addr: SocketAddr, parts: &[&[u8]], timeout: Duration) -> Result<Answer, ClientError> {
    let deadline = Instant::now() + timeout;
    let left = || deadline.checked_duration_since(Instant::now()).filter(|d| !d.is_zero());
    let mut s = TcpStream::connect_timeout(&addr, timeout)?;
    s.set_write_timeout(Some(left().ok_or(ClientError::Timeout(timeout))?))?;
    // One write: a server that answers after the head and closes with the body unread would
    // reset the connection before its answer is read.
    s.write_all(&parts.concat())?;
    let mut framer = ResponseFramer::new();
    let mut capture = Box::<Capture>::default();
    capture.body = true;
    framer.start_capturing(false, capture);
    let (mut buf, mut pending) = ([0u8; 8192], Vec::new());
    loop {
        s.set_read_timeout(Some(left().ok_or(ClientError::Timeout(timeout))?))?;
        let n = match s.read(&mut buf) {
            Ok(n) => n,
            Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {
                return Err(ClientError::Timeout(timeout))
            }
            Err(e) => return Err(e.into()),
        };
        let status = if n == 0 {
            framer.feed_eof()?.status
        } else {
            pending.extend_from_slice(&buf[..n]);
            match framer.feed(&pending)? {
                Progress::Complete { response, .. } => response.status,
                Progress::Incomplete { consumed } => {
                    pending.drain(..consumed);
                    continue;
                }
            }
        };
        let kept = framer.take_capture().unwrap_or_default();
        if kept.body_cut {
            return Err(ClientError::TooLong);
        }
        let body = if kept.chunked { dechunk(&kept.body_bytes)? } else { kept.body_bytes };
        return Ok(Answer { status, body });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    /// A server that reads one request and writes `reply`, then closes.
    fn serve(reply: &'static [u8]) -> SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            // The whole request (it comes in one write), then the reply.
            let mut buf = [0u8; 4096];
            let _ = s.set_read_timeout(Some(Duration::from_millis(100)));
            while matches!(s.read(&mut buf), Ok(1..)) {}
            let _ = s.write_all(reply);
        });
        addr
    }

    #[test]
    fn answers() {
        let t = Duration::from_secs(2);
        let a = serve(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello");
        assert_eq!(get(a, "x", "/", t).unwrap(), Answer { status: 200, body: b"hello".to_vec() });
        let a =
            serve(b"HTTP/1.1 400 Bad Request\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nbad\r\n2\r\n!!\r\n0\r\n\r\n");
        assert_eq!(get(a, "x", "/", t).unwrap(), Answer { status: 400, body: b"bad!!".to_vec() });
        let a = serve(b"HTTP/1.0 202 Accepted\r\n\r\nclose-delimited");
        assert_eq!(put(a, "x", "/p", "text/plain", b"m 1\n", t).unwrap().body, b"close-delimited");
        assert!(matches!(get(serve(b"SSH-2.0-OpenSSH\r\n"), "x", "/", t), Err(ClientError::Frame(_))));
        assert!(matches!(get(serve(b""), "x", "/", t), Err(ClientError::Frame(_))));
    }

    #[test]
    fn a_silent_server_times_out() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let t = Duration::from_millis(200);
        let begun = Instant::now();
        assert!(matches!(get(l.local_addr().unwrap(), "x", "/", t), Err(ClientError::Timeout(_))));
        assert!(begun.elapsed() < Duration::from_secs(1));
    }
}
