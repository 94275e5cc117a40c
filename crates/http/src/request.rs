//! The downstream request parser: strict where leniency lets one request be read two ways.
//!
//! A proxy and the server behind it must agree on where each request ends, or a client can
//! smuggle a second request past the proxy's rules (RFC 9112 §11.2). So everything with two
//! readings is refused before a byte goes upstream: `Content-Length` with `Transfer-Encoding`,
//! repeated or malformed `Content-Length`, codings other than a lone `chunked`, obs-fold
//! continuation lines, bare CR or LF, and missing or repeated `Host`.

use crate::body::{tokens, trim};
use crate::HeaderSlots;

/// Largest request head accepted; more is answered with 431. nginx's default
/// (`large_client_header_buffers 4 8k`) allows 8 KiB per line; 32 KiB in all is generous.
pub const MAX_REQUEST_HEAD: usize = 32 * 1024;
/// Header fields per request (httparse needs the slots up front).
pub const MAX_REQUEST_HEADERS: usize = 100;

/// Request fields for the proxy itself, never forwarded (RFC 9110 §7.6.1), besides those the
/// `Connection` field names. `Expect` is answered by the proxy; framing is restated.
pub const HOP_BY_HOP: [&str; 9] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "proxy-authorization",
    "expect",
];

/// How the request body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body: no `Content-Length`, no `Transfer-Encoding` (RFC 9112 §6.3 p6).
    None,
    Length(u64),
    Chunked,
}

/// A complete, validated request head, borrowed from the read buffer.
#[derive(Debug)]
pub struct RequestHead<'h, 'b> {
    pub method: &'b str,
    /// The origin-form target (`/path?query`), or `*` for `OPTIONS *`.
    pub target: &'b str,
    /// Minor version: 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub version: u8,
    pub headers: &'h [httparse::Header<'b>],
    /// Bytes of the head, final CRLF included.
    pub len: usize,
    pub framing: Framing,
    /// The client allows the connection to carry another request.
    pub keep_alive: bool,
    /// `Expect: 100-continue`: the client waits for a 100 before sending the body.
    pub expect_continue: bool,
    /// The protocols of the one `Upgrade` field of an HTTP/1.1 request whose `Connection`
    /// names `upgrade` (RFC 9110 §7.8); `None` otherwise (an HTTP/1.0 upgrade is ignored).
    pub upgrade: Option<&'b [u8]>,
}

/// Why a request was refused; each maps to the status the client gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    #[error("request head larger than {MAX_REQUEST_HEAD} bytes")]
    HeadTooLarge,
    #[error("more than {MAX_REQUEST_HEADERS} header fields")]
    TooManyHeaders,
    #[error("malformed request head: {0}")]
    Malformed(httparse::Error),
    #[error("bare CR or LF in the request head")]
    BareLineEnding,
    #[error("obsolete line folding in a header field")]
    ObsFold,
    #[error("HTTP/1.1 request without a Host header")]
    MissingHost,
    #[error("more than one Host header")]
    DuplicateHost,
    #[error("invalid Content-Length")]
    InvalidContentLength,
    #[error("more than one Content-Length")]
    DuplicateContentLength,
    #[error("both Content-Length and Transfer-Encoding")]
    LengthAndTransferEncoding,
    #[error("transfer coding other than a single chunked")]
    UnsupportedTransferEncoding,
    #[error("Transfer-Encoding in an HTTP/1.0 request")]
    TransferEncodingInHttp10,
    #[error("CONNECT is not proxied")]
    Connect,
    #[error("request target is not in origin form")]
    NotOriginForm,
    #[error("unsupported expectation")]
    Expectation,
}

impl RequestError {
    /// The status answered before closing the connection.
    pub fn status(self) -> u16 {
        match self {
            RequestError::HeadTooLarge | RequestError::TooManyHeaders => 431,
            RequestError::UnsupportedTransferEncoding => 501,
            RequestError::Connect => 405,
            RequestError::Expectation => 417,
            _ => 400,
        }
    }
}

/// Parses a request head at the start of `buf`. `Ok(None)` means more bytes are needed.
pub fn parse<'h, 'b>(
    buf: &'b [u8],
    slots: &'h mut HeaderSlots<'b, MAX_REQUEST_HEADERS>,
) -> Result<Option<RequestHead<'h, 'b>>, RequestError> {
    let mut req = httparse::Request::new(&mut []);
    let len = match req.parse_with_uninit_headers(buf, slots) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buf.len() >= MAX_REQUEST_HEAD => {
            check_line_endings(buf)?;
            return Err(RequestError::HeadTooLarge);
        }
        Ok(httparse::Status::Partial) => return check_line_endings(buf).map(|()| None),
        Err(httparse::Error::TooManyHeaders) => return Err(RequestError::TooManyHeaders),
        Err(e) => {
            // httparse stops at obs-fold or a stray CR; say which, it helps whoever debugs the client.
            check_line_endings(buf)?;
            return Err(RequestError::Malformed(e));
        }
    };
    if len > MAX_REQUEST_HEAD {
        return Err(RequestError::HeadTooLarge);
    }
    check_line_endings(&buf[..len])?;

    let method = req.method.unwrap_or("");
    let target = req.path.unwrap_or("");
    let version = req.version.unwrap_or(1);
    if method == "CONNECT" {
        return Err(RequestError::Connect);
    }
    // Absolute-form would let the client name the host to reach; a reverse proxy forwards only
    // to its one upstream, so only origin-form (and `OPTIONS *`) is taken.
    if !(target.starts_with('/') || (target == "*" && method == "OPTIONS")) {
        return Err(RequestError::NotOriginForm);
    }

    let headers: &'h [httparse::Header<'b>] = req.headers;
    let mut hosts = 0;
    let mut length: Option<u64> = None;
    let mut transfer_encoding = false;
    let mut close = false;
    let mut keep_alive_token = false;
    let mut expect_continue = false;
    let mut upgrade_token = false;
    let (mut upgrade, mut upgrades) = (None, 0);
    for h in headers {
        let name = h.name;
        if name.eq_ignore_ascii_case("host") {
            hosts += 1;
        } else if name.eq_ignore_ascii_case("content-length") {
            if length.is_some() {
                return Err(RequestError::DuplicateContentLength);
            }
            length = Some(content_length(h.value)?);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            // Two fields, or a list, is a coding chain we do not decode: 501 (RFC 9112 §6.1).
            if transfer_encoding || !trim(h.value).eq_ignore_ascii_case(b"chunked") {
                return Err(RequestError::UnsupportedTransferEncoding);
            }
            transfer_encoding = true;
        } else if name.eq_ignore_ascii_case("connection") {
            for t in tokens(h.value) {
                close |= t.eq_ignore_ascii_case(b"close");
                keep_alive_token |= t.eq_ignore_ascii_case(b"keep-alive");
                upgrade_token |= t.eq_ignore_ascii_case(b"upgrade");
            }
        } else if name.eq_ignore_ascii_case("upgrade") {
            upgrades += 1;
            upgrade = Some(h.value);
        } else if name.eq_ignore_ascii_case("expect") {
            if !trim(h.value).eq_ignore_ascii_case(b"100-continue") {
                return Err(RequestError::Expectation);
            }
            expect_continue = version == 1;
        }
    }
    match hosts {
        0 if version == 1 => return Err(RequestError::MissingHost),
        0 | 1 => {}
        _ => return Err(RequestError::DuplicateHost),
    }
    let framing = match (length, transfer_encoding) {
        (Some(_), true) => return Err(RequestError::LengthAndTransferEncoding),
        (_, true) if version == 0 => return Err(RequestError::TransferEncodingInHttp10),
        (_, true) => Framing::Chunked,
        (Some(0), false) | (None, false) => Framing::None,
        (Some(n), false) => Framing::Length(n),
    };
    let keep_alive = !close && (version == 1 || keep_alive_token);
    // Two Upgrade fields are one list split in two: rare enough to read as no upgrade.
    let upgrade = upgrade.filter(|_| version == 1 && upgrade_token && upgrades == 1);
    Ok(Some(RequestHead { method, target, version, headers, len, framing, keep_alive, expect_continue, upgrade }))
}

/// `Content-Length = 1*DIGIT`, one value: the list form RFC 9110 §8.6 tolerates is exactly
/// the ambiguity a smuggler needs, so it is refused here.
fn content_length(value: &[u8]) -> Result<u64, RequestError> {
    let v = trim(value);
    if v.contains(&b',') {
        return Err(RequestError::DuplicateContentLength);
    }
    if v.is_empty() || v.len() > 18 || !v.iter().all(u8::is_ascii_digit) {
        return Err(RequestError::InvalidContentLength);
    }
    Ok(v.iter().fold(0u64, |acc, &d| acc * 10 + u64::from(d - b'0')))
}

/// Every line of the head ends in CRLF, and no line starts with whitespace (obs-fold, RFC
/// 9112 §5.2: a server must reject it or unfold it; unfolding is a second reading).
fn check_line_endings(head: &[u8]) -> Result<(), RequestError> {
    // This runs on every request: first one pass without branches, which the compiler
    // vectorises, that only says whether any pair of bytes is wrong (a CR at the very end may
    // still be followed by its LF in the next read).
    let wrong = |a: u8, b: u8| {
        (b == b'\n') & (a != b'\r') | (a == b'\r') & (b != b'\n') | (a == b'\n') & ((b == b' ') | (b == b'\t'))
    };
    let any = head
        .iter()
        .zip(head.get(1..).unwrap_or_default())
        .fold(head.first() == Some(&b'\n'), |w, (&a, &b)| w | wrong(a, b));
    if any {
        first_line_ending_error(head)
    } else {
        Ok(())
    }
}

/// The line-ending error a byte-by-byte reading of `head` meets first, if any.
fn first_line_ending_error(head: &[u8]) -> Result<(), RequestError> {
    let mut prev = 0u8;
    for (i, &b) in head.iter().enumerate() {
        match b {
            b'\n' if prev != b'\r' => return Err(RequestError::BareLineEnding),
            b'\n' if matches!(head.get(i + 1), Some(b' ' | b'\t')) => return Err(RequestError::ObsFold),
            _ if prev == b'\r' && b != b'\n' => return Err(RequestError::BareLineEnding),
            _ => {}
        }
        prev = b;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::header_slots;

    fn run(input: &[u8]) -> Result<Option<(Framing, bool, usize)>, RequestError> {
        let mut slots = header_slots();
        parse(input, &mut slots).map(|r| r.map(|h| (h.framing, h.keep_alive, h.len)))
    }

    #[test]
    fn valid_requests() {
        assert_eq!(run(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"), Ok(Some((Framing::None, true, 27))));
        assert_eq!(
            run(b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello").unwrap().unwrap().0,
            Framing::Length(5)
        );
        assert_eq!(
            run(b"POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: Chunked\r\n\r\n").unwrap().unwrap().0,
            Framing::Chunked
        );
        assert!(!run(b"GET / HTTP/1.0\r\n\r\n").unwrap().unwrap().1);
        assert!(run(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n").unwrap().unwrap().1);
        assert!(!run(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n").unwrap().unwrap().1);
        assert_eq!(run(b"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n").unwrap().unwrap().0, Framing::None);
        assert_eq!(run(b"GET / HTTP/1.1\r\nHost: a\r\n"), Ok(None));
    }

    #[test]
    fn ambiguous_or_hostile_requests_are_refused() {
        use RequestError::*;
        let cases: &[(&[u8], RequestError)] = &[
            (
                b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
                LengthAndTransferEncoding,
            ),
            (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\n", DuplicateContentLength),
            (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3, 3\r\n\r\n", DuplicateContentLength),
            (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +3\r\n\r\n", InvalidContentLength),
            (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999\r\n\r\n", InvalidContentLength),
            (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", UnsupportedTransferEncoding),
            (
                b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
                UnsupportedTransferEncoding,
            ),
            (b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", TransferEncodingInHttp10),
            (b"GET / HTTP/1.1\r\nHost: a\r\nX-A: 1\r\n folded\r\n\r\n", ObsFold),
            (b"GET / HTTP/1.1\r\nHost: a\r\nX-A: 1\rX-B: 2\r\n\r\n", BareLineEnding),
            (b"GET / HTTP/1.1\nHost: a\n\n", BareLineEnding),
            (b"GET / HTTP/1.1\r\n\r\n", MissingHost),
            (b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", DuplicateHost),
            (b"CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n", Connect),
            (b"GET http://evil/ HTTP/1.1\r\nHost: a\r\n\r\n", NotOriginForm),
            (b"GET / HTTP/1.1\r\nHost: a\r\nExpect: 200-ok\r\n\r\n", Expectation),
        ];
        for (input, want) in cases {
            assert_eq!(run(input), Err(*want), "{}", String::from_utf8_lossy(input));
        }
    }

    #[test]
    fn huge_heads_are_431() {
        let mut big = b"GET / HTTP/1.1\r\nHost: a\r\nX-Big: ".to_vec();
        big.resize(MAX_REQUEST_HEAD + 10, b'a');
        assert_eq!(run(&big), Err(RequestError::HeadTooLarge));
        assert_eq!(RequestError::HeadTooLarge.status(), 431);
        let mut many = b"GET / HTTP/1.1\r\nHost: a\r\n".to_vec();
        for i in 0..MAX_REQUEST_HEADERS {
            many.extend_from_slice(format!("X-{i}: 1\r\n").as_bytes());
        }
        many.extend_from_slice(b"\r\n");
        assert_eq!(run(&many), Err(RequestError::TooManyHeaders));
    }

    #[test]
    fn line_endings_agree_with_a_byte_scan() {
        // Heads built from the bytes that matter, so every mix of CR, LF, SP and HTAB occurs.
        let alphabet = [b'\r', b'\n', b' ', b'\t', b'a', b':'];
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..200_000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let len = (seed % 24) as usize;
            let head: Vec<u8> = (0..len).map(|k| alphabet[((seed >> (k * 2 % 60)) % 6) as usize]).collect();
            assert_eq!(check_line_endings(&head), first_line_ending_error(&head), "{head:?}");
        }
        for head in [&b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"[..], b"\r", b"a\r", b"\n", b"a\r\n b", b"a\rb\n c"] {
            assert_eq!(check_line_endings(head), first_line_ending_error(head), "{head:?}");
        }
    }

    #[test]
    fn upgrade_needs_http_1_1_and_connection_upgrade() {
        let upgrade = |raw: &[u8]| {
            let mut slots = crate::header_slots();
            parse(raw, &mut slots).unwrap().unwrap().upgrade.map(<[u8]>::to_vec)
        };
        assert_eq!(
            upgrade(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, Upgrade\r\nUpgrade: websocket\r\n\r\n"),
            Some(b"websocket".to_vec())
        );
        // Upgrade without Connection: upgrade, in HTTP/1.0, or in two fields: no upgrade.
        assert_eq!(upgrade(b"GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n\r\n"), None);
        assert_eq!(upgrade(b"GET / HTTP/1.0\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n"), None);
        assert_eq!(
            upgrade(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\nUpgrade: a\r\nUpgrade: b\r\n\r\n"),
            None
        );
    }
}
