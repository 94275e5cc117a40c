//! The two heads a proxy rewrites: the request it sends upstream and the response it sends
//! back. Bodies pass through unchanged; only hop-by-hop fields (RFC 9110 §7.6.1) are dropped,
//! framing is restated canonically, and `Via` / `X-Forwarded-For` are added.

use std::io::Write;

use crate::body::tokens;
use crate::push_u64;
use crate::response::{framing, parse_response_head};
use crate::{header_slots, BodyDecoder, FrameError};

use crate::request::{Framing, RequestHead, HOP_BY_HOP};

/// Request fields addressed to the proxy's fault injection (`x-engine-fault-delay-ms`, ...):
/// never forwarded, whether or not the proxy honours them.
pub const FAULT_FIELD_PREFIX: &str = "x-engine-fault-";

pub fn is_fault_field(name: &str) -> bool {
    let p = FAULT_FIELD_PREFIX.as_bytes();
    name.len() > p.len() && name.as_bytes()[..p.len()].eq_ignore_ascii_case(p)
}

/// Fields of an HTTP/1.1 message that HTTP/2 does not carry (RFC 9113 §8.2.2), and `host`
/// (HTTP/2's `:authority` carries it): left out when a message crosses between the versions.
/// `te` is not among them: HTTP/2 keeps `te: trailers` (the caller drops any other value).
pub fn not_in_h2(name: &str) -> bool {
    ["connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade", "host"]
        .iter()
        .any(|f| name.eq_ignore_ascii_case(f))
}

/// Writes the request for the upstream into `out`. The upstream request uses the client's
/// HTTP version (a 1.0 client gets no chunked response it cannot read), keeps every end-to-end
/// field, and restates the body framing the parser validated. `client` is the client's
/// address as text (formatted once per connection). `upgrade`: the protocols offered to the
/// upstream (see [`allowed_upgrades`]), if the request is to upgrade. `expect`: the upstream,
/// not the proxy, answers the request's `Expect: 100-continue` (a request with a body).
pub fn upstream_request(
    head: &RequestHead<'_, '_>,
    client: &[u8],
    upstream_host: &str,
    upgrade: Option<&[u8]>,
    expect: bool,
    out: &mut Vec<u8>,
) {
    out.clear();
    let v = head.version;
    let version: &[u8] = if v == 0 { b"HTTP/1.0" } else { b"HTTP/1.1" };
    for piece in [head.method.as_bytes(), b" ", head.target.as_bytes(), b" ", version, b"\r\n"] {
        out.extend_from_slice(piece);
    }
    let hop = HopByHop::of(head.headers, &HOP_BY_HOP);
    let mut has_host = false;
    let mut forwarded_for: Option<&[u8]> = None;
    for h in head.headers {
        if h.name.eq_ignore_ascii_case("x-forwarded-for") {
            // Several fields are one list (RFC 9110 §5.3); keep the first and append below.
            if forwarded_for.is_none() {
                forwarded_for = Some(h.value);
                continue;
            }
        } else if h.name.eq_ignore_ascii_case("content-length") || hop.contains(h.name) || is_fault_field(h.name) {
            continue;
        }
        has_host |= h.name.eq_ignore_ascii_case("host");
        push_field(out, h.name.as_bytes(), h.value);
    }
    if !has_host {
        push_field(out, b"Host", upstream_host.as_bytes());
    }
    out.extend_from_slice(b"X-Forwarded-For: ");
    if let Some(prior) = forwarded_for {
        out.extend_from_slice(prior);
        out.extend_from_slice(b", ");
    }
    out.extend_from_slice(client);
    out.extend_from_slice(if v == 0 { b"\r\nVia: 1.0 engine-proxy\r\n" } else { b"\r\nVia: 1.1 engine-proxy\r\n" });
    match head.framing {
        Framing::None => {}
        Framing::Length(n) => {
            out.extend_from_slice(b"Content-Length: ");
            push_u64(out, n);
            out.extend_from_slice(b"\r\n");
        }
        Framing::Chunked => out.extend_from_slice(b"Transfer-Encoding: chunked\r\n"),
    }
    if expect && head.expect_continue && head.framing != Framing::None {
        out.extend_from_slice(b"Expect: 100-continue\r\n");
    }
    if let Some(protocols) = upgrade {
        out.extend_from_slice(b"Connection: upgrade\r\n");
        push_field(out, b"Upgrade", protocols);
    } else if v == 0 {
        out.extend_from_slice(b"Connection: keep-alive\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// The protocols of a request's `Upgrade` field (`name[/version]`, RFC 9110 §7.8) whose names
/// `allowed` holds (case-insensitively), in the client's order, into `out`: empty when none.
pub fn allowed_upgrades<A: AsRef<str>>(offered: &[u8], allowed: &[A], out: &mut Vec<u8>) {
    out.clear();
    for t in tokens(offered) {
        let name = t.split(|&b| b == b'/').next().unwrap_or(t);
        if allowed.iter().any(|a| a.as_ref().as_bytes().eq_ignore_ascii_case(name)) {
            if !out.is_empty() {
                out.extend_from_slice(b", ");
            }
            out.extend_from_slice(t);
        }
    }
}

/// A `101` names in its `Upgrade` field only protocols the request offered (RFC 9110 §7.8).
fn switches_to_offered(headers: &[httparse::Header<'_>], offered: &[u8]) -> bool {
    let mut fields = headers.iter().filter(|h| h.name.eq_ignore_ascii_case("upgrade")).peekable();
    fields.peek().is_some()
        && fields.all(|h| {
            let mut chosen = tokens(h.value).peekable();
            chosen.peek().is_some() && chosen.all(|c| tokens(offered).any(|o| o.eq_ignore_ascii_case(c)))
        })
}

/// Response fields for the proxy itself, never relayed, besides those `Connection` names.
const RESPONSE_HOP_BY_HOP: [&str; 5] =
    ["connection", "keep-alive", "proxy-connection", "upgrade", "proxy-authenticate"];

/// The fields a head addresses to the proxy itself (RFC 9110 §7.6.1): a fixed set and the
/// ones its `Connection` fields name, collected once per head (up to a bound) rather than
/// looked up again for every field.
struct HopByHop<'a, 'b> {
    headers: &'a [httparse::Header<'b>],
    fixed: &'static [&'static str],
    /// Bit `n` set: some name in `fixed` is `n` bytes long. Most fields are then passed over
    /// without a comparison.
    fixed_lengths: u64,
    named: [&'b [u8]; 8],
    n: usize,
    /// More names than fit: fall back to scanning the headers.
    overflow: bool,
}

impl<'a, 'b> HopByHop<'a, 'b> {
    fn of(headers: &'a [httparse::Header<'b>], fixed: &'static [&'static str]) -> Self {
        let fixed_lengths = fixed.iter().fold(0, |m, h| m | 1u64 << h.len());
        let mut hop = HopByHop { headers, fixed, fixed_lengths, named: [&[]; 8], n: 0, overflow: false };
        for t in connection_tokens(headers) {
            if hop.n < hop.named.len() {
                hop.named[hop.n] = t;
                hop.n += 1;
            } else {
                hop.overflow = true;
            }
        }
        hop
    }

    fn contains(&self, name: &str) -> bool {
        let named = |t: &[u8]| t.eq_ignore_ascii_case(name.as_bytes());
        (name.len() < 64
            && self.fixed_lengths & 1 << name.len() != 0
            && self.fixed.iter().any(|h| name.eq_ignore_ascii_case(h)))
            || if self.overflow {
                connection_tokens(self.headers).any(named)
            } else {
                self.named[..self.n].iter().any(|t| named(t))
            }
    }
}

fn connection_tokens<'a, 'b>(headers: &'a [httparse::Header<'b>]) -> impl Iterator<Item = &'b [u8]> + 'a {
    headers.iter().filter(|h| h.name.eq_ignore_ascii_case("connection")).flat_map(|h| tokens(h.value))
}

fn push_field(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// An upstream response head, as far as the proxy needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamHead {
    /// A 1xx interim response of `len` bytes. `relay`: its head for the client is written (a
    /// `103 Early Hints`, say); a `100 Continue` is dropped (the proxy answers `Expect`
    /// itself), and so is any 1xx to an HTTP/1.0 client, which cannot take one.
    Interim { len: usize, relay: bool },
    /// `101 Switching Protocols` to a protocol the request offered: the head for the client is
    /// written; after its `len` bytes the connection is the new protocol's, both ways.
    Switch { len: usize },
    Final {
        status: u16,
        len: usize,
        body: BodyDecoder,
        /// The upstream connection may carry another request after this response.
        reusable: bool,
        /// The client connection must close after this response.
        close: bool,
    },
}

/// Parses a response head at the start of `input` and, for a final one, writes the head for
/// the client into `out`. `Ok(None)`: more bytes needed. `close` asks for `Connection: close`;
/// a close-delimited body forces it. `upgrade`: the protocols the request offered, if any;
/// a `101` to anything else is an error (the connection would otherwise become a tunnel the
/// client never asked for).
pub fn downstream_response(
    input: &[u8],
    head_request: bool,
    mut close: bool,
    client_version: u8,
    upgrade: Option<&[u8]>,
    out: &mut Vec<u8>,
) -> Result<Option<UpstreamHead>, FrameError> {
    let mut slots = header_slots();
    let Some((len, parsed)) = parse_response_head(input, &mut slots)? else { return Ok(None) };
    let status = parsed.code.unwrap_or(0);
    if status == 101 {
        let headers = &*parsed.headers;
        if !upgrade.is_some_and(|offered| switches_to_offered(headers, offered)) {
            return Err(FrameError::Upgrade);
        }
        out.clear();
        out.extend_from_slice(b"HTTP/1.1 101 Switching Protocols\r\n");
        let hop = HopByHop::of(headers, &RESPONSE_HOP_BY_HOP);
        for h in headers.iter().filter(|h| !hop.contains(h.name)) {
            push_field(out, h.name.as_bytes(), h.value);
        }
        out.extend_from_slice(b"Via: 1.1 engine-proxy\r\nConnection: upgrade\r\n");
        for h in headers.iter().filter(|h| h.name.eq_ignore_ascii_case("upgrade")) {
            push_field(out, b"Upgrade", h.value);
        }
        out.extend_from_slice(b"\r\n");
        return Ok(Some(UpstreamHead::Switch { len }));
    }
    if (100..200).contains(&status) {
        let relay = status != 100 && client_version == 1;
        if relay {
            out.clear();
            let reason = parsed.reason.filter(|r| !r.is_empty()).unwrap_or("Early Hints");
            let _ = write!(out, "HTTP/1.1 {status} {reason}\r\n");
            let hop = HopByHop::of(parsed.headers, &RESPONSE_HOP_BY_HOP);
            for h in parsed.headers.iter().filter(|h| !hop.contains(h.name)) {
                push_field(out, h.name.as_bytes(), h.value);
            }
            out.extend_from_slice(b"\r\n");
        }
        return Ok(Some(UpstreamHead::Interim { len, relay }));
    }
    let headers = &*parsed.headers;
    let framing = framing(status, parsed.version.unwrap_or(1), headers, head_request)?;
    let body = framing.body;
    close |= body.is_until_eof();

    out.clear();
    if parsed.version == Some(1) {
        // The status line as the upstream wrote it, up to its CRLF.
        let line = input.iter().position(|&b| b == b'\n').map_or(0, |i| i + 1);
        out.extend_from_slice(&input[..line]);
    } else {
        let reason = parsed.reason.filter(|r| !r.is_empty()).unwrap_or_else(|| reason(status));
        let _ = write!(out, "HTTP/1.1 {status} {reason}\r\n");
    }
    let hop = HopByHop::of(headers, &RESPONSE_HOP_BY_HOP);
    for h in headers.iter().filter(|h| !hop.contains(h.name)) {
        push_field(out, h.name.as_bytes(), h.value);
    }
    out.extend_from_slice(b"Via: 1.1 engine-proxy\r\n");
    if close {
        out.extend_from_slice(b"Connection: close\r\n");
    } else if client_version == 0 {
        out.extend_from_slice(b"Connection: keep-alive\r\n");
    }
    out.extend_from_slice(b"\r\n");
    Ok(Some(UpstreamHead::Final { status, len, body, reusable: framing.keep_alive, close }))
}

/// Parses a response head at the start of `input` for an HTTP/2 client: a final head's status,
/// length and framing, with each end-to-end field given to `field` (hop-by-hop ones and those
/// HTTP/2 does not carry left out); an interim (1xx) head's length. `Ok(None)`: more bytes
/// needed. A `101` is an error: an HTTP/2 stream cannot switch protocols.
pub fn h2_response(
    input: &[u8],
    head_request: bool,
    mut field: impl FnMut(&str, &[u8]),
) -> Result<Option<UpstreamHead>, FrameError> {
    let mut slots = header_slots();
    let Some((len, parsed)) = parse_response_head(input, &mut slots)? else { return Ok(None) };
    let status = parsed.code.unwrap_or(0);
    if status == 101 {
        return Err(FrameError::Upgrade);
    }
    if (100..200).contains(&status) {
        return Ok(Some(UpstreamHead::Interim { len, relay: false }));
    }
    let headers = &*parsed.headers;
    let framing = framing(status, parsed.version.unwrap_or(1), headers, head_request)?;
    let hop = HopByHop::of(headers, &RESPONSE_HOP_BY_HOP);
    for h in headers.iter().filter(|h| !hop.contains(h.name) && !not_in_h2(h.name)) {
        field(h.name, h.value);
    }
    let close = framing.body.is_until_eof();
    Ok(Some(UpstreamHead::Final { status, len, body: framing.body, reusable: framing.keep_alive, close }))
}

/// The reason phrase of the statuses the proxy itself sends or is likely to relay.
pub fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        301 => "Moved Permanently",
        302 => "Found",
        304 => "Not Modified",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        413 => "Content Too Large",
        415 => "Unsupported Media Type",
        417 => "Expectation Failed",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        _ => "Unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::parse;

    fn upstream(input: &[u8]) -> String {
        let mut slots = header_slots();
        let head = parse(input, &mut slots).unwrap().unwrap();
        let mut out = Vec::new();
        upstream_request(&head, b"10.0.0.7", "127.0.0.1:9000", None, false, &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn hop_by_hop_includes_fields_named_by_connection() {
        let input = b"GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, X-Secret\r\nX-Secret: 1\r\n\r\n";
        let mut slots = header_slots();
        let head = parse(input, &mut slots).unwrap().unwrap();
        let hop = HopByHop::of(head.headers, &HOP_BY_HOP);
        assert!(hop.contains("x-secret") && hop.contains("Keep-Alive") && hop.contains("TE"));
        assert!(!hop.contains("host"));
        // More names than the hop set keeps: the ninth and later are found by a scan.
        let many =
            b"GET / HTTP/1.1\r\nHost: a\r\nConnection: a1, a2, a3, a4, a5, a6, a7, a8, a9\r\nConnection: a10\r\n\r\n";
        let mut slots = header_slots();
        let head = parse(many, &mut slots).unwrap().unwrap();
        let hop = HopByHop::of(head.headers, &HOP_BY_HOP);
        assert!(hop.overflow);
        assert!(["A1", "a8", "a9", "a10", "connection"].iter().all(|n| hop.contains(n)));
        assert!(!hop.contains("a11"));
    }

    #[test]
    fn request_drops_hop_by_hop_and_adds_forwarding_fields() {
        let out = upstream(
            b"POST /a?b=1 HTTP/1.1\r\nHost: svc\r\nConnection: keep-alive, X-Hop\r\nX-Hop: 1\r\nKeep-Alive: 5\r\n\
              X-Forwarded-For: 1.2.3.4\r\nContent-Length: 2\r\nExpect: 100-continue\r\nX-End: 2\r\n\r\nhi",
        );
        assert_eq!(
            out,
            "POST /a?b=1 HTTP/1.1\r\nHost: svc\r\nX-End: 2\r\nX-Forwarded-For: 1.2.3.4, 10.0.0.7\r\n\
             Via: 1.1 engine-proxy\r\nContent-Length: 2\r\n\r\n"
        );
    }

    #[test]
    fn http10_request_gets_a_host_and_keeps_alive_upstream() {
        let out = upstream(b"GET / HTTP/1.0\r\n\r\n");
        assert_eq!(
            out,
            "GET / HTTP/1.0\r\nHost: 127.0.0.1:9000\r\nX-Forwarded-For: 10.0.0.7\r\nVia: 1.0 engine-proxy\r\n\
             Connection: keep-alive\r\n\r\n"
        );
    }

    #[test]
    fn expect_goes_upstream_only_when_the_upstream_is_to_answer_it() {
        let raw = b"PUT / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nExpect: 100-continue\r\n\r\n";
        let mut slots = header_slots();
        let head = parse(raw, &mut slots).unwrap().unwrap();
        let mut out = Vec::new();
        upstream_request(&head, b"c", "u", None, false, &mut out);
        assert!(!String::from_utf8_lossy(&out).to_ascii_lowercase().contains("expect"));
        upstream_request(&head, b"c", "u", None, true, &mut out);
        assert!(
            out.ends_with(b"Content-Length: 1\r\nExpect: 100-continue\r\n\r\n"),
            "{}",
            String::from_utf8_lossy(&out)
        );
    }

    #[test]
    fn chunked_request_is_restated() {
        let out = upstream(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n");
        assert!(out.ends_with("Transfer-Encoding: chunked\r\n\r\n"), "{out}");
    }

    #[test]
    fn response_head_is_rewritten() {
        let mut out = Vec::new();
        let r = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: keep-alive\r\nKeep-Alive: timeout=5\r\n\r\nok";
        let head = downstream_response(r, false, false, 1, None, &mut out).unwrap().unwrap();
        assert_eq!(
            head,
            UpstreamHead::Final {
                status: 200,
                len: r.len() - 2,
                body: BodyDecoder::length(2),
                reusable: true,
                close: false
            }
        );
        assert_eq!(
            String::from_utf8(out.clone()).unwrap(),
            "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nVia: 1.1 engine-proxy\r\n\r\n"
        );

        let eof = b"HTTP/1.0 200 OK\r\n\r\nbody until close";
        match downstream_response(eof, false, false, 1, None, &mut out).unwrap().unwrap() {
            UpstreamHead::Final { reusable, close, .. } => assert!(!reusable && close),
            other => panic!("{other:?}"),
        }
        assert!(String::from_utf8_lossy(&out).contains("Connection: close\r\n"));
        assert_eq!(
            downstream_response(b"HTTP/1.1 100 Continue\r\n\r\n", false, false, 1, None, &mut out),
            Ok(Some(UpstreamHead::Interim { len: 25, relay: false }))
        );
        // Fields the upstream's Connection names stay between it and the proxy.
        let named =
            b"HTTP/1.1 204 No Content\r\nConnection: X-Internal\r\nX-Internal: 1\r\nUpgrade: h2\r\nX-Kept: 2\r\n\r\n";
        downstream_response(named, false, false, 1, None, &mut out).unwrap().unwrap();
        assert_eq!(
            String::from_utf8(out.clone()).unwrap(),
            "HTTP/1.1 204 No Content\r\nX-Kept: 2\r\nVia: 1.1 engine-proxy\r\n\r\n"
        );
        assert_eq!(downstream_response(b"HTTP/1.1 200 OK\r\n", false, false, 1, None, &mut out), Ok(None));
        assert!(downstream_response(b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n", false, false, 1, None, &mut out)
            .is_err());
    }

    #[test]
    fn early_hints_are_relayed_to_http_1_1_clients_only() {
        let hints = b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\nConnection: x\r\nX: 1\r\n\r\n";
        let mut out = Vec::new();
        assert_eq!(
            downstream_response(hints, false, false, 1, None, &mut out),
            Ok(Some(UpstreamHead::Interim { len: hints.len(), relay: true }))
        );
        assert_eq!(out, b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n");
        assert_eq!(
            downstream_response(hints, false, false, 0, None, &mut out),
            Ok(Some(UpstreamHead::Interim { len: hints.len(), relay: false }))
        );
    }

    #[test]
    fn fault_fields_never_go_upstream() {
        let out = upstream(b"GET / HTTP/1.1\r\nHost: a\r\nX-Engine-Fault-Delay-Ms: 50\r\nx-engine-fault-token: t\r\nX-Engine-Faulty: 1\r\n\r\n");
        assert!(!out.to_ascii_lowercase().contains("x-engine-fault-"), "{out}");
        assert!(out.contains("X-Engine-Faulty: 1\r\n"), "{out}");
    }

    #[test]
    fn upgrades_offer_only_allowed_protocols() {
        let mut out = Vec::new();
        allowed_upgrades(b"h2c, WebSocket, foo/2", &["websocket", "foo"], &mut out);
        assert_eq!(out, b"WebSocket, foo/2");
        allowed_upgrades(b"h2c", &["websocket"], &mut out);
        assert!(out.is_empty());

        let mut slots = header_slots();
        let head = parse(
            b"GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: k\r\n\r\n",
            &mut slots,
        )
        .unwrap()
        .unwrap();
        assert_eq!(head.upgrade, Some(&b"websocket"[..]));
        let mut req = Vec::new();
        upstream_request(&head, b"10.0.0.7", "u", Some(b"websocket"), false, &mut req);
        let req = String::from_utf8(req).unwrap();
        assert!(req.contains("Sec-WebSocket-Key: k\r\n"), "{req}");
        assert!(req.ends_with("Connection: upgrade\r\nUpgrade: websocket\r\n\r\n"), "{req}");
        assert_eq!(req.matches("pgrade").count(), 2, "{req}");
    }

    #[test]
    fn a_switch_is_taken_only_to_a_protocol_offered() {
        let mut out = Vec::new();
        let ok = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: x\r\n\r\nframe";
        let head = downstream_response(ok, false, false, 1, Some(b"websocket"), &mut out).unwrap().unwrap();
        assert_eq!(head, UpstreamHead::Switch { len: ok.len() - 5 });
        assert_eq!(
            String::from_utf8(out.clone()).unwrap(),
            "HTTP/1.1 101 Switching Protocols\r\nSec-WebSocket-Accept: x\r\nVia: 1.1 engine-proxy\r\n\
             Connection: upgrade\r\nUpgrade: websocket\r\n\r\n"
        );
        // Not asked for, to another protocol, or naming none: never a tunnel.
        let h2c = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\r\n";
        let bare = b"HTTP/1.1 101 Switching Protocols\r\n\r\n";
        for (r, offered) in [(&ok[..], None), (&h2c[..], Some(&b"websocket"[..])), (&bare[..], Some(&b"websocket"[..]))]
        {
            assert_eq!(downstream_response(r, false, false, 1, offered, &mut out), Err(FrameError::Upgrade));
        }
    }

    #[test]
    fn an_h2_response_gets_the_end_to_end_fields_only() {
        let input = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: x-hop, keep-alive\r\nX-Hop: 1\r\n\
            Keep-Alive: timeout=5\r\nVia: 1.1 origin\r\nX-Kept: yes\r\n\r\nok";
        let mut fields = Vec::new();
        let head = h2_response(input, false, |n, v| fields.push((n.to_string(), v.to_vec()))).unwrap().unwrap();
        let UpstreamHead::Final { status, len, body, reusable, close } = head else { panic!("{head:?}") };
        assert_eq!((status, len, body.is_empty(), reusable, close), (200, input.len() - 2, false, true, false));
        let names: Vec<&str> = fields.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["Content-Length", "Via", "X-Kept"]);
        let early = b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n";
        assert!(
            matches!(h2_response(early, false, |_, _| {}), Ok(Some(UpstreamHead::Interim { len, .. })) if len == early.len())
        );
        assert!(
            h2_response(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n", false, |_, _| {}).is_err()
        );
        assert!(matches!(h2_response(b"HTTP/1.1 200 OK\r\nContent-", false, |_, _| {}), Ok(None)));
    }
}
