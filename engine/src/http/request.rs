//! Requests are rendered to bytes once, when the plan is built; connections share them.

use std::fmt::Write as _;

/// One request, ready to write as is on any connection to the target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderedRequest {
    bytes: Vec<u8>,
    head_request: bool,
}

impl RenderedRequest {
    /// Renders `method path HTTP/1.1` with `Host`, the caller's headers and the body.
    /// `headers` must already be validated (token names, no CR/LF in values).
    /// `Host`, `User-Agent` and `Accept` are added unless the caller sets them;
    /// `Content-Length` is added for a body or a method that expects one.
    pub fn render(method: &str, path: &str, host: &str, headers: &[(String, String)], body: &[u8]) -> Self {
        let has = |name: &str| headers.iter().any(|(k, _)| k.eq_ignore_ascii_case(name));
        let mut head = String::with_capacity(128);
        let _ = write!(head, "{method} {path} HTTP/1.1\r\n");
        if !has("host") {
            let _ = write!(head, "Host: {host}\r\n");
        }
        if !has("user-agent") {
            let _ = write!(head, "User-Agent: engine/{}\r\n", env!("CARGO_PKG_VERSION"));
        }
        if !has("accept") {
            head.push_str("Accept: */*\r\n");
        }
        for (k, v) in headers {
            let _ = write!(head, "{k}: {v}\r\n");
        }
        let wants_body = matches!(method, "POST" | "PUT" | "PATCH");
        if !has("content-length") && !has("transfer-encoding") && (!body.is_empty() || wants_body) {
            let _ = write!(head, "Content-Length: {}\r\n", body.len());
        }
        head.push_str("\r\n");
        let mut bytes = head.into_bytes();
        bytes.extend_from_slice(body);
        Self { bytes, head_request: method == "HEAD" }
    }

    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The response to a HEAD request has no body whatever its headers say.
    pub fn is_head(&self) -> bool {
        self.head_request
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_defaults_and_body() {
        let r = RenderedRequest::render("POST", "/a?b=1", "127.0.0.1:8080", &[("X-Test".into(), "1".into())], b"hi");
        let text = String::from_utf8(r.bytes().to_vec()).unwrap();
        assert!(text.starts_with("POST /a?b=1 HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n"));
        assert!(text.contains("X-Test: 1\r\n"));
        assert!(text.ends_with("Content-Length: 2\r\n\r\nhi"));
        assert!(!r.is_head());
    }

    #[test]
    fn caller_headers_replace_defaults() {
        let r = RenderedRequest::render("HEAD", "/", "h", &[("host".into(), "other".into())], b"");
        let text = String::from_utf8(r.bytes().to_vec()).unwrap();
        assert!(text.contains("host: other\r\n") && !text.contains("Host: h"));
        assert!(!text.contains("Content-Length"));
        assert!(r.is_head());
    }
}
