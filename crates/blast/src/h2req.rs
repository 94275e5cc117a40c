//! A rendered HTTP/1.1 request as HTTP/2 sends it (RFC 9113 §8.2–8.3): the request line and
//! `Host` become the pseudo-headers, connection-specific fields are dropped (`Connection`,
//! `Keep-Alive`, `Proxy-Connection`, `Transfer-Encoding`, `Upgrade`, and `TE` but `trailers`),
//! names are lower-cased, the body is what follows the head; the fields are HPACK-encoded
//! once ([`engine_http::h2::hpack`]: literals, never indexed, so a block does not depend on
//! what the connection sent before). Every plan renders its requests as HTTP/1.1 once
//! ([`crate::render`]); an HTTP/2 run encodes each request that is not templated once more,
//! when the shard starts, and a templated one per request into the connection's buffer.

use engine_http::h2::hpack;

/// Most header fields a rendered request has (the renderer's own and the user's).
const MAX_FIELDS: usize = 128;

/// A request ready for HTTP/2: its header block and body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct H2Request {
    pub block: Vec<u8>,
    pub body: Vec<u8>,
}

/// Converts `bytes` (a whole HTTP/1.1 request with a Content-Length body, or none) for
/// `scheme` (`http` or `https`); the reason when HTTP/2 cannot carry it.
pub fn convert(bytes: &[u8], scheme: &str) -> Result<H2Request, String> {
    let mut block = Vec::new();
    let head_len = encode(bytes, scheme, &mut block)?;
    Ok(H2Request { block, body: bytes[head_len..].to_vec() })
}

/// Encodes the head of `bytes` as a header block into `block` (cleared first); returns the
/// head's length (the body follows it).
pub fn encode(bytes: &[u8], scheme: &str, block: &mut Vec<u8>) -> Result<usize, String> {
    let mut fields = [httparse::EMPTY_HEADER; MAX_FIELDS];
    let mut req = httparse::Request::new(&mut fields);
    let head_len = match req.parse(bytes) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Err("the request's head is incomplete".into()),
        Err(e) => return Err(format!("the request does not parse: {e}")),
    };
    let method = req.method.unwrap_or("GET");
    let path = req.path.unwrap_or("/");
    let authority = req.headers.iter().find(|f| f.name.eq_ignore_ascii_case("host")).map(|f| f.value);
    let authority = authority.ok_or("the request has no Host")?;
    let uri_ok = !authority.is_empty()
        && authority.iter().all(|&b| b.is_ascii_graphic() && !b"/?#@\\\"<>{}|^`".contains(&b))
        && (path.starts_with('/') || path == "*");
    if !uri_ok {
        let authority = String::from_utf8_lossy(authority);
        return Err(format!("'{scheme}://{authority}{path}' is not a URI"));
    }
    block.clear();
    hpack::encode_pseudo(block, method.as_bytes(), scheme.as_bytes(), authority, path.as_bytes());
    let mut name = [0u8; 256];
    for f in req.headers.iter() {
        let n = f.name.len();
        if n > name.len() {
            return Err(format!("header '{}': a name over {} bytes", f.name, name.len()));
        }
        let lower = &mut name[..n];
        lower.copy_from_slice(f.name.as_bytes());
        lower.make_ascii_lowercase();
        match &*lower {
            b"host" | b"connection" | b"keep-alive" | b"proxy-connection" | b"transfer-encoding" | b"upgrade" => {}
            b"te" if !f.value.eq_ignore_ascii_case(b"trailers") => {}
            _ => {
                if f.value.iter().any(|&b| b == 0 || b == b'\r' || b == b'\n') {
                    return Err(format!("header '{}': a value with CR, LF or NUL", f.name));
                }
                hpack::encode_field(block, lower, f.value);
            }
        }
    }
    Ok(head_len)
}

#[cfg(test)]
mod tests {
    use super::*;
    use engine_http::h2::hpack::{Name, STATIC};

    fn fields(block: &[u8]) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let mut scratch = Vec::new();
        hpack::decode::<hpack::HpackError>(block, |f| {
            let name = match f.name {
                Name::Static(i) => STATIC[i].0.to_string(),
                Name::Literal(t) => String::from_utf8_lossy(t.get(&mut scratch).unwrap()).into_owned(),
            };
            out.push((name, String::from_utf8_lossy(f.value.get(&mut scratch).unwrap()).into_owned()));
            Ok(())
        })
        .unwrap();
        out
    }

    #[test]
    fn a_request_loses_its_connection_fields_and_keeps_its_body() {
        let r = convert(
            b"POST /a?b=1 HTTP/1.1\r\nHost: example.com:8443\r\nConnection: keep-alive\r\nTE: gzip\r\nX-Id: 7\r\nContent-Length: 2\r\n\r\nhi",
            "https",
        )
        .unwrap();
        let got = fields(&r.block);
        let want = [
            (":method", "POST"),
            (":scheme", "https"),
            (":authority", "example.com:8443"),
            (":path", "/a?b=1"),
            ("x-id", "7"),
            ("content-length", "2"),
        ];
        assert_eq!(got, want.map(|(a, b)| (a.to_string(), b.to_string())));
        assert_eq!(&r.body[..], b"hi");
        let te = convert(b"GET / HTTP/1.1\r\nHost: h\r\nTE: trailers\r\n\r\n", "http").unwrap();
        assert!(fields(&te.block).contains(&("te".to_string(), "trailers".to_string())));
    }

    #[test]
    fn what_http2_cannot_carry_is_refused_with_a_reason() {
        assert!(convert(b"GET / HTTP/1.1\r\n\r\n", "http").unwrap_err().contains("no Host"));
        assert!(convert(b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n", "http").unwrap_err().contains("not a URI"));
        assert!(convert(b"GET / HTTP/1.1\r\nHost: h\r\n", "http").unwrap_err().contains("incomplete"));
    }
}
