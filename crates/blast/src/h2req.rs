//! A rendered HTTP/1.1 request as HTTP/2 sends it (RFC 9113 §8.2–8.3): the request line and
//! `Host` become the pseudo-headers, connection-specific fields are dropped (`Connection`,
//! `Keep-Alive`, `Proxy-Connection`, `Transfer-Encoding`, `Upgrade`, and `TE` but `trailers`),
//! names are lower-cased, the body is what follows the head. Every plan renders its requests
//! as HTTP/1.1 once ([`crate::render`]); an HTTP/2 run converts each request that is not
//! templated once more, when the shard starts, and a templated one per request.

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue};
use http::{Method, Request, Uri};

/// Most header fields a rendered request has (the renderer's own and the user's).
const MAX_FIELDS: usize = 128;

/// A request ready for `h2`: its head (cloned per send: `h2` takes it by value) and body.
#[derive(Debug, Clone)]
pub struct H2Request {
    pub head: Request<()>,
    pub body: Bytes,
}

/// Converts `bytes` (a whole HTTP/1.1 request with a Content-Length body, or none) for
/// `scheme` (`http` or `https`); the reason when HTTP/2 cannot carry it.
pub fn convert(bytes: &[u8], scheme: &str) -> Result<H2Request, String> {
    let mut fields = [httparse::EMPTY_HEADER; MAX_FIELDS];
    let mut req = httparse::Request::new(&mut fields);
    let head_len = match req.parse(bytes) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Err("the request's head is incomplete".into()),
        Err(e) => return Err(format!("the request does not parse: {e}")),
    };
    let method = Method::from_bytes(req.method.unwrap_or("GET").as_bytes()).map_err(|e| e.to_string())?;
    let path = req.path.unwrap_or("/");
    let mut authority = None;
    let mut builder = Request::builder().method(method);
    for f in req.headers.iter() {
        let name = f.name.to_ascii_lowercase();
        match name.as_str() {
            "host" => authority = Some(std::str::from_utf8(f.value).map_err(|_| "a Host that is not text")?),
            "connection" | "keep-alive" | "proxy-connection" | "transfer-encoding" | "upgrade" => {}
            "te" if !f.value.eq_ignore_ascii_case(b"trailers") => {}
            _ => {
                let n = HeaderName::from_bytes(name.as_bytes()).map_err(|e| format!("header '{}': {e}", f.name))?;
                let v = HeaderValue::from_bytes(f.value).map_err(|e| format!("header '{}': {e}", f.name))?;
                builder = builder.header(n, v);
            }
        }
    }
    let authority = authority.ok_or("the request has no Host")?;
    let uri = Uri::builder()
        .scheme(scheme)
        .authority(authority)
        .path_and_query(path)
        .build()
        .map_err(|e| format!("'{scheme}://{authority}{path}' is not a URI: {e}"))?;
    let head = builder.uri(uri).body(()).map_err(|e| e.to_string())?;
    Ok(H2Request { head, body: Bytes::copy_from_slice(&bytes[head_len..]) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_loses_its_connection_fields_and_keeps_its_body() {
        let r = convert(
            b"POST /a?b=1 HTTP/1.1\r\nHost: example.com:8443\r\nConnection: keep-alive\r\nTE: gzip\r\nX-Id: 7\r\nContent-Length: 2\r\n\r\nhi",
            "https",
        )
        .unwrap();
        assert_eq!(r.head.method(), Method::POST);
        assert_eq!(r.head.uri().to_string(), "https://example.com:8443/a?b=1");
        let names: Vec<&str> = r.head.headers().keys().map(|k| k.as_str()).collect();
        assert_eq!(names, ["x-id", "content-length"]);
        assert_eq!(&r.body[..], b"hi");
        let te = convert(b"GET / HTTP/1.1\r\nHost: h\r\nTE: trailers\r\n\r\n", "http").unwrap();
        assert_eq!(te.head.headers()["te"], "trailers");
    }

    #[test]
    fn what_http2_cannot_carry_is_refused_with_a_reason() {
        assert!(convert(b"GET / HTTP/1.1\r\n\r\n", "http").unwrap_err().contains("no Host"));
        assert!(convert(b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n", "http").unwrap_err().contains("not a URI"));
        assert!(convert(b"GET / HTTP/1.1\r\nHost: h\r\n", "http").unwrap_err().contains("incomplete"));
    }
}
