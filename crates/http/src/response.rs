//! Incremental HTTP/1.1 response framing (RFC 9112 §6).
//!
//! The framer is fed whatever bytes the socket produced and says how many it consumed and
//! whether a response completed. Only the status line and headers must be contiguous (the
//! caller keeps a partial head and feeds it again with more bytes); bodies are counted and
//! skipped, never stored, so a 4 MiB body costs no 4 MiB buffer.
//!
//! Like httparse, needing more bytes is not an error: [`Progress::Incomplete`].

use super::body::{eq_lower, last_token, parse_content_length, tokens, BodyDecoder};
use super::{header_slots, FrameError, HeaderSlots, MAX_HEAD, MAX_HEADERS};

/// What one [`ResponseFramer::feed`] call achieved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// All `consumed` bytes belonged to the current response, which is not finished yet.
    /// When nothing was consumed the framer is waiting for the rest of a head: the caller
    /// must keep the unconsumed bytes and feed them again with more appended.
    Incomplete { consumed: usize },
    /// The response ended after `consumed` bytes; any bytes past that are not part of it.
    Complete { consumed: usize, response: Response },
}

/// The facts about a framed response that a load generator records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    /// The connection may carry another request (HTTP/1.1 without `Connection: close`,
    /// or HTTP/1.0 with `Connection: keep-alive`, and the body was not close-delimited).
    pub keep_alive: bool,
    /// Head bytes of the final response and of any skipped 1xx responses.
    pub head_bytes: u64,
    /// Body bytes on the wire (chunk framing included).
    pub body_bytes: u64,
    /// A `Retry-After` the server sent with a status of 300 or more (RFC 9110 §10.2.3).
    pub retry_after: Option<RetryAfter>,
}

/// When a server asks to be tried again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryAfter {
    /// `Retry-After: 120`.
    Seconds(u32),
    /// `Retry-After: Fri, 04 Dec 2026 14:00:00 GMT`, as Unix seconds.
    At(i64),
}

impl RetryAfter {
    /// Parses a field value: delta-seconds or an HTTP-date; anything else is `None`.
    pub fn parse(value: &[u8]) -> Option<RetryAfter> {
        let text = std::str::from_utf8(value).ok()?.trim();
        if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
            // Beyond u32 is beyond any wait a run honours.
            return Some(RetryAfter::Seconds(text.parse().unwrap_or(u32::MAX)));
        }
        jiff::fmt::rfc2822::parse(text).ok().map(|t| RetryAfter::At(t.timestamp().as_second()))
    }

    /// How long from `now` (Unix seconds) it asks to wait; a date in the past is 0.
    pub fn seconds_from(self, now_unix_s: f64) -> f64 {
        match self {
            RetryAfter::Seconds(s) => f64::from(s),
            RetryAfter::At(at) => (at as f64 - now_unix_s).max(0.0),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Head,
    Body(BodyDecoder),
}

/// Frames one response after another on a connection. Reset it (or make a new one) for each
/// request with [`ResponseFramer::start`], which says whether the request was `HEAD`.
#[derive(Debug, Clone)]
pub struct ResponseFramer {
    state: State,
    head_request: bool,
    status: u16,
    keep_alive: bool,
    head_bytes: u64,
    body_bytes: u64,
    chunked: bool,
    retry_after: Option<RetryAfter>,
    /// What a flow step wants kept from this response; `None` for plain requests.
    capture: Option<Box<Capture>>,
}

/// Parts of a response kept for a flow's captures and a request's checks: the headers they
/// name and the body, bounded. The buffers are reused from response to response.
#[derive(Debug, Clone, Default)]
pub struct Capture {
    /// Lower-case names of the headers to keep.
    pub headers: Vec<String>,
    /// `values[i]` is `headers[i]`'s value (the first of a repeated field) when `found[i]`.
    values: Vec<Vec<u8>>,
    found: Vec<bool>,
    /// Keep the body (up to [`MAX_CAPTURED_BODY`] bytes).
    pub body: bool,
    pub body_bytes: Vec<u8>,
    /// The body was chunked: `body_bytes` holds the chunk framing too.
    pub chunked: bool,
    /// The body was longer than what was kept.
    pub body_cut: bool,
}

impl Capture {
    /// Keeps `names` (lower-case) from now on; the same list again costs nothing.
    pub fn want_headers(&mut self, names: &[String]) {
        if self.headers != names {
            self.headers = names.to_vec();
        }
    }

    /// The value of the `i`th header asked for, if the response had it.
    pub fn header(&self, i: usize) -> Option<&[u8]> {
        self.found.get(i).copied().unwrap_or(false).then(|| self.values[i].as_slice())
    }

    /// The value of header `name` (lower-case), if it was asked for and the response had it.
    pub fn header_named(&self, name: &str) -> Option<&[u8]> {
        self.headers.iter().position(|h| h == name).and_then(|i| self.header(i))
    }

    /// Readies the buffers for a response that is not framed here (HTTP/2's): fill them with
    /// [`Self::keep_header`] and [`Self::keep_body`].
    pub fn begin(&mut self) {
        self.clear();
    }

    /// Keeps header `name` (lower-case) if it is asked for and not kept yet (the first of a
    /// repeated field, as the framer keeps).
    pub fn keep_header(&mut self, name: &str, value: &[u8]) {
        if let Some(i) = self.headers.iter().position(|h| h == name) {
            if !self.found[i] {
                self.values[i].clear();
                self.values[i].extend_from_slice(value);
                self.found[i] = true;
            }
        }
    }

    /// Keeps body bytes as they arrive (when asked), up to [`MAX_CAPTURED_BODY`].
    pub fn keep_body(&mut self, data: &[u8]) {
        if !self.body {
            return;
        }
        let room = MAX_CAPTURED_BODY.saturating_sub(self.body_bytes.len());
        self.body_bytes.extend_from_slice(&data[..data.len().min(room)]);
        self.body_cut |= data.len() > room;
    }

    fn clear(&mut self) {
        self.found.clear();
        self.found.resize(self.headers.len(), false);
        self.values.resize_with(self.headers.len(), Vec::new);
        self.body_bytes.clear();
        self.chunked = false;
        self.body_cut = false;
    }

    fn keep_headers(&mut self, fields: &[httparse::Header<'_>]) {
        for (i, name) in self.headers.iter().enumerate() {
            if let Some(h) = fields.iter().find(|h| h.name.eq_ignore_ascii_case(name)) {
                self.values[i].clear();
                self.values[i].extend_from_slice(h.value);
                self.found[i] = true;
            }
        }
    }
}

/// The most of a body kept for a capture.
pub const MAX_CAPTURED_BODY: usize = 64 * 1024;

impl Default for ResponseFramer {
    fn default() -> Self {
        Self::new()
    }
}

impl ResponseFramer {
    pub fn new() -> Self {
        Self {
            state: State::Head,
            head_request: false,
            status: 0,
            keep_alive: false,
            head_bytes: 0,
            body_bytes: 0,
            chunked: false,
            retry_after: None,
            capture: None,
        }
    }

    /// Like [`Self::start`], keeping what `capture` asks for (its buffers are reused).
    pub fn start_capturing(&mut self, head_request: bool, mut capture: Box<Capture>) {
        self.start(head_request);
        capture.clear();
        self.capture = Some(capture);
    }

    /// What was kept of the last response, handing the buffers back.
    pub fn take_capture(&mut self) -> Option<Box<Capture>> {
        self.capture.take()
    }

    /// Prepares for the response to a new request. A `HEAD` request's response has no body
    /// whatever its headers say (RFC 9112 §6.3 p1).
    pub fn start(&mut self, head_request: bool) {
        let capture = self.capture.take();
        *self = Self::new();
        self.head_request = head_request;
        // A capture survives only through start_capturing.
        drop(capture);
    }

    /// True while nothing of the current response has been consumed.
    pub fn is_idle(&self) -> bool {
        self.state == State::Head && self.head_bytes == 0
    }

    /// Feeds bytes that arrived; see [`Progress`].
    pub fn feed(&mut self, input: &[u8]) -> Result<Progress, FrameError> {
        let mut pos = 0;
        loop {
            match self.state {
                State::Head => match self.parse_head(&input[pos..])? {
                    None => return Ok(Progress::Incomplete { consumed: pos }),
                    Some(n) => {
                        pos += n;
                        if let Some(response) = self.finished() {
                            return Ok(Progress::Complete { consumed: pos, response });
                        }
                    }
                },
                State::Body(ref mut body) => {
                    let (n, done) = body.feed(&input[pos..])?;
                    if let Some(c) = self.capture.as_mut().filter(|c| c.body) {
                        let room = MAX_CAPTURED_BODY.saturating_sub(c.body_bytes.len());
                        c.body_bytes.extend_from_slice(&input[pos..pos + n.min(room)]);
                        c.body_cut |= n > room;
                        c.chunked = self.chunked;
                    }
                    pos += n;
                    self.body_bytes += n as u64;
                    if done {
                        let response = self.response();
                        return Ok(Progress::Complete { consumed: pos, response });
                    }
                    return Ok(Progress::Incomplete { consumed: pos });
                }
            }
        }
    }

    /// The server closed the connection: completes a close-delimited body; anything else
    /// still open is a truncated response.
    pub fn feed_eof(&mut self) -> Result<Response, FrameError> {
        match self.state {
            State::Body(b) if b.is_until_eof() => Ok(self.response()),
            State::Head if self.head_bytes == 0 => Err(FrameError::ClosedBeforeResponse),
            _ => Err(FrameError::Truncated),
        }
    }

    fn response(&self) -> Response {
        Response {
            status: self.status,
            keep_alive: self.keep_alive,
            head_bytes: self.head_bytes,
            body_bytes: self.body_bytes,
            retry_after: self.retry_after,
        }
    }

    /// A response whose head says it has no body is complete right after the head.
    fn finished(&mut self) -> Option<Response> {
        match self.state {
            State::Body(b) if b.is_empty() => Some(self.response()),
            _ => None,
        }
    }

    /// Parses a head at the start of `input`. Returns the bytes consumed, or `None` when the
    /// head is not complete yet. A 1xx interim response is consumed and the state stays `Head`.
    fn parse_head(&mut self, input: &[u8]) -> Result<Option<usize>, FrameError> {
        if input.is_empty() {
            return Ok(None);
        }
        let mut slots = header_slots();
        let Some((n, parsed)) = parse_response_head(input, &mut slots)? else { return Ok(None) };
        self.head_bytes += n as u64;
        let status = parsed.code.unwrap_or(0);
        let version = parsed.version.unwrap_or(1);
        if status == 101 {
            return Err(FrameError::Upgrade);
        }
        if (100..200).contains(&status) {
            // Interim responses (100 Continue, 103 Early Hints) precede the real one.
            return Ok(Some(n));
        }
        self.status = status;

        let framing = framing(status, version, parsed.headers, self.head_request)?;
        // Only answers that refuse or redirect carry a Retry-After worth reading (RFC 9110
        // §10.2.3): a 2xx costs no extra look at its fields.
        if status >= 300 {
            self.retry_after = parsed
                .headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case("retry-after"))
                .and_then(|h| RetryAfter::parse(h.value));
        }
        self.keep_alive = framing.keep_alive;
        self.chunked = framing.chunked;
        if let Some(c) = self.capture.as_mut() {
            c.keep_headers(parsed.headers);
        }
        let body = framing.body;
        self.state = State::Body(body);
        Ok(Some(n))
    }
}

/// Parses a response head at the start of `input` within the limits ([`MAX_HEAD`] bytes,
/// [`MAX_HEADERS`] fields): its length and the parsed head, or `None` when more bytes are
/// needed. Shared by the blast's framer and the proxy.
pub fn parse_response_head<'h, 'b>(
    input: &'b [u8],
    slots: &'h mut HeaderSlots<'b, MAX_HEADERS>,
) -> Result<Option<(usize, httparse::Response<'h, 'b>)>, FrameError> {
    let mut parsed = httparse::Response::new(&mut []);
    match httparse::ParserConfig::default().parse_response_with_uninit_headers(&mut parsed, input, slots) {
        Ok(httparse::Status::Complete(n)) if n <= MAX_HEAD => Ok(Some((n, parsed))),
        Ok(httparse::Status::Complete(_)) => Err(FrameError::HeadTooLarge),
        Ok(httparse::Status::Partial) if input.len() >= MAX_HEAD => Err(FrameError::HeadTooLarge),
        Ok(httparse::Status::Partial) => Ok(None),
        Err(httparse::Error::TooManyHeaders) => Err(FrameError::TooManyHeaders),
        Err(e) => Err(FrameError::InvalidHead(e)),
    }
}

/// How a final response is framed (RFC 9112 §6.3) and whether its connection stays open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Framing {
    pub body: BodyDecoder,
    /// Another request may follow on the connection: HTTP/1.1 without `Connection: close`, or
    /// HTTP/1.0 with `keep-alive`, and the body is not close-delimited.
    pub keep_alive: bool,
    /// The body is chunked (its bytes include the chunk framing).
    pub chunked: bool,
}

/// The framing of a final response from its status, minor version and fields; `head_request`
/// when it answers a HEAD. Shared by the blast's framer and the proxy.
pub fn framing(
    status: u16,
    version: u8,
    headers: &[httparse::Header<'_>],
    head_request: bool,
) -> Result<Framing, FrameError> {
    let mut length: Option<u64> = None;
    let mut chunked = false;
    let mut transfer_encoding = false;
    let mut close = false;
    let mut keep_alive_token = false;
    for h in headers {
        if eq_lower(h.name.as_bytes(), b"content-length") {
            let v = parse_content_length(h.value)?;
            // Repeated identical values are tolerated (RFC 9110 §8.6), different ones not.
            if length.is_some_and(|l| l != v) {
                return Err(FrameError::InvalidContentLength);
            }
            length = Some(v);
        } else if eq_lower(h.name.as_bytes(), b"transfer-encoding") {
            transfer_encoding = true;
            // Only a final `chunked` coding frames the body (RFC 9112 §6.3 p4).
            chunked = last_token(h.value).is_some_and(|t| eq_lower(t, b"chunked"));
        } else if eq_lower(h.name.as_bytes(), b"connection") {
            for t in tokens(h.value) {
                close |= eq_lower(t, b"close");
                keep_alive_token |= eq_lower(t, b"keep-alive");
            }
        }
    }
    let body = if head_request || status == 204 || status == 304 {
        BodyDecoder::length(0)
    } else if transfer_encoding {
        // Transfer-Encoding overrides Content-Length (RFC 9112 §6.3 p3).
        if chunked {
            BodyDecoder::chunked()
        } else {
            BodyDecoder::until_eof()
        }
    } else if let Some(l) = length {
        BodyDecoder::length(l)
    } else {
        BodyDecoder::until_eof()
    };
    let keep_alive = !close && (version == 1 || keep_alive_token) && !body.is_until_eof();
    Ok(Framing { body, keep_alive, chunked: transfer_encoding && chunked })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{MAX_CHUNK_LINE, MAX_TRAILERS};

    /// Frames `input` fed in pieces of `step` bytes, keeping unconsumed bytes as a caller
    /// would, and returns every completed response and the final error, if any.
    fn frame(input: &[u8], step: usize, head_request: bool) -> (Vec<Response>, Option<FrameError>) {
        let mut f = ResponseFramer::new();
        f.start(head_request);
        let mut pending: Vec<u8> = Vec::new();
        let mut out = Vec::new();
        for piece in input.chunks(step.max(1)) {
            pending.extend_from_slice(piece);
            loop {
                match f.feed(&pending) {
                    Ok(Progress::Incomplete { consumed }) => {
                        pending.drain(..consumed);
                        break;
                    }
                    Ok(Progress::Complete { consumed, response }) => {
                        pending.drain(..consumed);
                        out.push(response);
                        f.start(head_request);
                        if pending.is_empty() {
                            break;
                        }
                    }
                    Err(e) => return (out, Some(e)),
                }
            }
        }
        if !f.is_idle() || !pending.is_empty() {
            match f.feed_eof() {
                Ok(r) => out.push(r),
                Err(e) => return (out, Some(e)),
            }
        }
        (out, None)
    }

    /// Every split of the input must frame the same as the whole.
    fn frame_all_splits(input: &[u8], head_request: bool) -> (Vec<Response>, Option<FrameError>) {
        let whole = frame(input, input.len(), head_request);
        for step in 1..input.len().min(64) {
            assert_eq!(frame(input, step, head_request), whole, "step {step}");
        }
        whole
    }

    fn ok(status: u16, keep_alive: bool, head: u64, body: u64) -> Response {
        Response { status, keep_alive, head_bytes: head, body_bytes: body, retry_after: None }
    }

    #[test]
    fn retry_after_is_read_from_refusals_only() {
        let (got, err) = frame(
            b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 7\r\nContent-Length: 0\r\n\r\n\
              HTTP/1.1 429 Too Many Requests\r\nretry-after: Fri, 04 Dec 2026 14:00:00 GMT\r\nContent-Length: 0\r\n\r\n\
              HTTP/1.1 503 Service Unavailable\r\nRetry-After: soon\r\nContent-Length: 0\r\n\r\n\
              HTTP/1.1 200 OK\r\nRetry-After: 5\r\nContent-Length: 0\r\n\r\n",
            7,
            false,
        );
        assert_eq!(err, None);
        let after: Vec<_> = got.iter().map(|r| r.retry_after).collect();
        assert_eq!(after, vec![Some(RetryAfter::Seconds(7)), Some(RetryAfter::At(1_796_392_800)), None, None]);
        assert_eq!(RetryAfter::At(100).seconds_from(40.0), 60.0);
        assert_eq!(RetryAfter::At(100).seconds_from(400.0), 0.0);
        assert_eq!(RetryAfter::parse(b"99999999999"), Some(RetryAfter::Seconds(u32::MAX)));
    }

    #[test]
    fn content_length() {
        let r = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello";
        assert_eq!(frame_all_splits(r, false), (vec![ok(200, true, 38, 5)], None));
    }

    #[test]
    fn two_responses_back_to_back() {
        let r = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n";
        let (out, err) = frame_all_splits(r, false);
        assert_eq!(err, None);
        assert_eq!(out.iter().map(|r| r.status).collect::<Vec<_>>(), vec![200, 404]);
    }

    #[test]
    fn chunked_with_extensions_and_trailers() {
        let r = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;name=val\r\nhello\r\nA\r\n0123456789\r\n0\r\nX-Trailer: yes\r\nX-Other: 1\r\n\r\n";
        let (out, err) = frame_all_splits(r, false);
        assert_eq!(err, None);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].status, 200);
        assert!(out[0].keep_alive);
        assert_eq!(out[0].head_bytes + out[0].body_bytes, r.len() as u64);
    }

    #[test]
    fn chunked_overrides_content_length() {
        let r = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n";
        let (out, err) = frame_all_splits(r, false);
        assert_eq!((out.len(), err), (1, None));
    }

    #[test]
    fn close_delimited() {
        let r = b"HTTP/1.0 200 OK\r\n\r\nthe body runs to the end";
        let (out, err) = frame_all_splits(r, false);
        assert_eq!(err, None);
        assert_eq!(out, vec![ok(200, false, 19, 24)]);
    }

    #[test]
    fn http10_keep_alive_and_connection_close() {
        let r = b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n";
        assert!(frame_all_splits(r, false).0[0].keep_alive);
        let r = b"HTTP/1.1 200 OK\r\nConnection: foo, close\r\nContent-Length: 0\r\n\r\n";
        assert!(!frame_all_splits(r, false).0[0].keep_alive);
    }

    #[test]
    fn interim_responses_are_skipped() {
        let r = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 1\r\n\r\nx";
        let (out, err) = frame_all_splits(r, false);
        assert_eq!(err, None);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].status, 201);
        assert_eq!(out[0].head_bytes + out[0].body_bytes, r.len() as u64);
    }

    #[test]
    fn bodiless_responses() {
        for r in [
            &b"HTTP/1.1 204 No Content\r\nContent-Length: 10\r\n\r\n"[..],
            b"HTTP/1.1 304 Not Modified\r\nTransfer-Encoding: chunked\r\n\r\n",
        ] {
            let (out, err) = frame_all_splits(r, false);
            assert_eq!((out.len(), err, out[0].body_bytes), (1, None, 0));
        }
        let r = b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n";
        let (out, err) = frame_all_splits(r, true);
        assert_eq!((out.len(), err), (1, None));
    }

    #[test]
    fn large_body_is_counted_not_stored() {
        let mut r = b"HTTP/1.1 200 OK\r\nContent-Length: 4194304\r\n\r\n".to_vec();
        r.resize(r.len() + 4 * 1024 * 1024, b'x');
        let (out, err) = frame(&r, 65536, false);
        assert_eq!(err, None);
        assert_eq!(out[0].body_bytes, 4 * 1024 * 1024);
    }

    #[test]
    fn malformed_responses_are_errors() {
        let cases: &[(&[u8], FrameError)] = &[
            (b"garbage\r\n\r\n", FrameError::InvalidHead(httparse::Error::Version)),
            (b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", FrameError::InvalidContentLength),
            (b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", FrameError::InvalidContentLength),
            (b"HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999\r\n\r\n", FrameError::InvalidContentLength),
            (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", FrameError::InvalidChunkSize),
            (
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n11111111111111111\r\n",
                FrameError::InvalidChunkSize,
            ),
            (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabc\r\n", FrameError::InvalidChunkData),
            (b"HTTP/1.1 101 Switching Protocols\r\n\r\n", FrameError::Upgrade),
            (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort", FrameError::Truncated),
        ];
        for (input, want) in cases {
            assert_eq!(frame_all_splits(input, false).1, Some(*want), "{:?}", String::from_utf8_lossy(input));
        }
    }

    #[test]
    fn limits_bound_memory() {
        let mut head = b"HTTP/1.1 200 OK\r\nX: ".to_vec();
        head.resize(MAX_HEAD + 10, b'a');
        assert_eq!(frame(&head, 4096, false).1, Some(FrameError::HeadTooLarge));

        let mut chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1;".to_vec();
        chunked.resize(chunked.len() + MAX_CHUNK_LINE + 10, b'a');
        assert_eq!(frame(&chunked, 100, false).1, Some(FrameError::ChunkLineTooLong));

        let mut trailers = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n".to_vec();
        for _ in 0..MAX_TRAILERS {
            trailers.extend_from_slice(b"X: 1\r\n");
        }
        assert_eq!(frame(&trailers, 100, false).1, Some(FrameError::TrailersTooLarge));

        let mut many = b"HTTP/1.1 200 OK\r\n".to_vec();
        for _ in 0..=MAX_HEADERS {
            many.extend_from_slice(b"X: 1\r\n");
        }
        many.extend_from_slice(b"\r\n");
        assert_eq!(frame(&many, many.len(), false).1, Some(FrameError::TooManyHeaders));
    }

    #[test]
    fn captures_a_header_and_the_body() {
        let r =
            b"HTTP/1.1 200 OK\r\nX-Token: abc\r\nTransfer-Encoding: chunked\r\n\r\n3\r\n{\"a\r\n2\r\n\":\r\n0\r\n\r\n";
        let mut f = ResponseFramer::new();
        let mut want = Capture { body: true, ..Default::default() };
        want.want_headers(&["x-token".into(), "x-none".into()]);
        f.start_capturing(false, Box::new(want));
        assert!(matches!(f.feed(r), Ok(Progress::Complete { .. })));
        let mut c = f.take_capture().unwrap();
        assert_eq!(c.header_named("x-token"), Some(&b"abc"[..]));
        assert_eq!((c.header(1), c.header_named("x-other")), (None, None));
        assert!(c.chunked && !c.body_cut);
        assert_eq!(c.body_bytes, b"3\r\n{\"a\r\n2\r\n\":\r\n0\r\n\r\n");
        // The next response without the header does not keep the last one's value.
        c.body = false;
        f.start_capturing(false, c);
        assert!(matches!(f.feed(b"HTTP/1.1 204 No Content\r\n\r\n"), Ok(Progress::Complete { .. })));
        let c = f.take_capture().unwrap();
        assert_eq!(c.header_named("x-token"), None);
    }

    #[test]
    fn eof_before_anything_is_distinct_from_truncation() {
        assert_eq!(ResponseFramer::new().feed_eof(), Err(FrameError::ClosedBeforeResponse));
    }

    /// Random bytes never panic and never make the framer claim more than it was given.
    #[test]
    fn random_input_never_panics() {
        let mut seed = 0x9e3779b97f4a7c15u64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let alphabet = b"HTTP/1.0 2\r\n:;chunked Content-Length Transfer-Encoding 0123456789abcdefxyz";
        for _ in 0..20_000 {
            let len = (next() % 200) as usize;
            let mut input: Vec<u8> = (0..len).map(|_| alphabet[(next() % alphabet.len() as u64) as usize]).collect();
            if next() % 2 == 0 {
                let prefix = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
                input.splice(0..0, prefix.iter().copied());
            }
            let mut f = ResponseFramer::new();
            let mut pos = 0;
            while pos < input.len() {
                match f.feed(&input[pos..]) {
                    Ok(Progress::Incomplete { consumed: 0 }) | Err(_) => break,
                    Ok(Progress::Incomplete { consumed }) => pos += consumed,
                    Ok(Progress::Complete { consumed, .. }) => {
                        pos += consumed;
                        f.start(false);
                    }
                }
                assert!(pos <= input.len());
            }
            let _ = f.feed_eof();
        }
    }
}
