//! Requests are rendered to bytes once, when the plan is built; connections share them.

use std::fmt::Write as _;
use std::sync::Arc;

use engine_http::push_u64;

use crate::template::{Template, TemplateError, Values};

/// One request, ready to write as is on any connection to the target; or, when its path,
/// headers or body hold `{{...}}`, a template rendered per request by [`Self::write_to`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderedRequest {
    bytes: Vec<u8>,
    head_request: bool,
    /// The request asks the server to close after its response (`Connection: close`).
    closes: bool,
    templated: Option<Box<Templated>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Templated {
    /// Request line and headers, without Content-Length and the blank line.
    head: Template,
    body: Template,
    /// Whether to send Content-Length (computed per request).
    length: bool,
    /// What the rendered body becomes before it is sent (a gRPC call's JSON, its message).
    encoder: Option<Encoder>,
}

/// Turns a rendered body into the bytes sent: a gRPC call's JSON into its framed message.
pub trait BodyEncoder: std::fmt::Debug + Send + Sync {
    /// Appends the encoding of `rendered` to `out`; the reason when it does not encode.
    fn encode(&self, rendered: &[u8], out: &mut Vec<u8>) -> Result<(), String>;
}

/// A shared [`BodyEncoder`], equal to itself only (requests compare by what they render).
#[derive(Debug, Clone)]
pub struct Encoder(pub Arc<dyn BodyEncoder>);

impl PartialEq for Encoder {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for Encoder {}

impl RenderedRequest {
    /// Renders `method path HTTP/1.1` with `Host`, the caller's headers and the body.
    /// `headers` must already be validated (token names, no CR/LF in values).
    /// `Host`, `User-Agent` and `Accept` are added unless the caller sets them;
    /// `Content-Length` is added for a body or a method that expects one.
    pub fn render(
        method: &str,
        path: &str,
        host: &str,
        headers: &[(String, String)],
        body: &[u8],
    ) -> Result<Self, TemplateError> {
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
        let length = !has("content-length") && !has("transfer-encoding") && (!body.is_empty() || wants_body);
        let body_text = std::str::from_utf8(body).ok().filter(|b| b.contains("{{"));
        let templated = if head.contains("{{") || body_text.is_some() {
            let body_template = match body_text {
                Some(b) => Template::parse(b)?,
                // A plain or binary body behind a templated head is sent as it is.
                None => Template::literal(body),
            };
            Some(Box::new(Templated { head: Template::parse(&head)?, body: body_template, length, encoder: None }))
        } else {
            None
        };
        if length {
            let _ = write!(head, "Content-Length: {}\r\n", body.len());
        }
        head.push_str("\r\n");
        let mut bytes = head.into_bytes();
        bytes.extend_from_slice(body);
        let closes = headers.iter().any(|(k, v)| {
            k.eq_ignore_ascii_case("connection") && v.split(',').any(|t| t.trim().eq_ignore_ascii_case("close"))
        });
        Ok(Self { bytes, head_request: method == "HEAD", closes, templated })
    }

    /// Resolves `{{cap.NAME}}` against the flow's capture names.
    pub fn resolve_captures(&mut self, vars: &[String]) -> Result<(), TemplateError> {
        if let Some(t) = self.templated.as_mut() {
            t.head.resolve_captures(vars)?;
            t.body.resolve_captures(vars)?;
        }
        Ok(())
    }

    /// Resolves `{{csv.COLUMN}}` against the data file's columns (none without a data file).
    pub fn resolve_columns(&mut self, columns: &[String]) -> Result<(), TemplateError> {
        if let Some(t) = self.templated.as_mut() {
            t.head.resolve_columns(columns)?;
            t.body.resolve_columns(columns)?;
        }
        Ok(())
    }

    /// The request carries `Connection: close`: its connection ends with the response, even
    /// when the server does not say so.
    pub fn closes(&self) -> bool {
        self.closes
    }

    /// Encodes the templated body with `encoder` once rendered (a gRPC call's JSON); a request
    /// that is not templated was encoded whole when it was planned.
    pub fn set_encoder(&mut self, encoder: Encoder) {
        if let Some(t) = self.templated.as_mut() {
            t.encoder = Some(encoder);
        }
    }

    /// Whether the request must be rendered per request with [`Self::write_to`].
    pub fn is_templated(&self) -> bool {
        self.templated.is_some()
    }

    /// Renders a templated request into `out` (cleared first), using `scratch` for the body;
    /// both buffers are reused from request to request. `Err` when the rendered body does not
    /// encode (the request is not sent).
    pub fn write_to(
        &self,
        out: &mut Vec<u8>,
        scratch: &mut Vec<u8>,
        values: &mut Values,
        caps: &[Vec<u8>],
    ) -> Result<(), String> {
        out.clear();
        let Some(t) = &self.templated else {
            out.extend_from_slice(&self.bytes);
            return Ok(());
        };
        t.head.render(out, values, caps);
        scratch.clear();
        t.body.render(scratch, values, caps);
        if let Some(e) = &t.encoder {
            // Encoded after the head in `out`, then moved behind its Content-Length.
            let at = out.len();
            e.0.encode(scratch, out)?;
            scratch.clear();
            scratch.extend_from_slice(&out[at..]);
            out.truncate(at);
        }
        if t.length {
            out.extend_from_slice(b"Content-Length: ");
            push_u64(out, scratch.len() as u64);
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(scratch);
        Ok(())
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
        let r = RenderedRequest::render("POST", "/a?b=1", "127.0.0.1:8080", &[("X-Test".into(), "1".into())], b"hi")
            .unwrap();
        let text = String::from_utf8(r.bytes().to_vec()).unwrap();
        assert!(text.starts_with("POST /a?b=1 HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n"));
        assert!(text.contains("X-Test: 1\r\n"));
        assert!(text.ends_with("Content-Length: 2\r\n\r\nhi"));
        assert!(!r.is_head());
    }

    #[test]
    fn caller_headers_replace_defaults() {
        let r = RenderedRequest::render("HEAD", "/", "h", &[("host".into(), "other".into())], b"").unwrap();
        let text = String::from_utf8(r.bytes().to_vec()).unwrap();
        assert!(text.contains("host: other\r\n") && !text.contains("Host: h"));
        assert!(!text.contains("Content-Length"));
        assert!(r.is_head());
    }

    #[test]
    fn templates_render_per_request_with_their_length() {
        use crate::template::Values;
        use engine_util::Rng;
        let r = RenderedRequest::render(
            "POST",
            "/users/{{seq}}",
            "h",
            &[("X-Id".into(), "{{rand_int:1:9}}".into())],
            b"{\"id\": {{seq}}}",
        )
        .unwrap();
        assert!(r.is_templated());
        let (mut out, mut scratch) = (Vec::new(), Vec::new());
        let mut v = Values { seq: 12345, rng: Rng::new(7), data: None, row: 0 };
        r.write_to(&mut out, &mut scratch, &mut v, &[]).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("POST /users/12345 HTTP/1.1\r\n"), "{text}");
        assert!(text.ends_with("Content-Length: 13\r\n\r\n{\"id\": 12345}"), "{text}");
        assert!(RenderedRequest::render("GET", "/{{nothing}}", "h", &[], b"").is_err());
        assert!(!RenderedRequest::render("GET", "/", "h", &[], b"").unwrap().is_templated());
    }
}
