//! A request's head and trailers as a server takes them from a decoded header block, and the
//! rules that make one malformed (RFC 9113 §8.1.1, §8.2, §8.3): what an HTTP/1.1 upstream must
//! never see (connection-specific fields, CR, LF or NUL in a value, an upper-case or empty
//! name: the downgrade-smuggling cases), and pseudo-fields out of place.

use std::ops::Range;

/// Fields as decoded: their bytes in one buffer, each a name and a value range.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Fields {
    buf: Vec<u8>,
    /// Name start, name end (= value start), value end.
    at: Vec<(u32, u32, u32)>,
}

impl Fields {
    /// Empty, with room for a usual head.
    pub fn new() -> Self {
        Fields { buf: Vec::with_capacity(256), at: Vec::with_capacity(8) }
    }

    /// Appends a field (taken as it is: judging it is the caller's).
    pub fn push(&mut self, name: &[u8], value: &[u8]) {
        let start = self.buf.len() as u32;
        self.buf.extend_from_slice(name);
        let mid = self.buf.len() as u32;
        self.buf.extend_from_slice(value);
        self.at.push((start, mid, self.buf.len() as u32));
    }

    /// The fields in the order received (names lower-case).
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], &[u8])> + '_ {
        self.at.iter().map(|&(s, m, e)| (&self.buf[s as usize..m as usize], &self.buf[m as usize..e as usize]))
    }

    /// The first field named `name` (in any case: the fields' own are lower-case).
    pub fn get(&self, name: &str) -> Option<&[u8]> {
        self.iter().find(|(n, _)| n.eq_ignore_ascii_case(name.as_bytes())).map(|(_, v)| v)
    }

    pub fn len(&self) -> usize {
        self.at.len()
    }

    pub fn is_empty(&self) -> bool {
        self.at.is_empty()
    }
}

/// A request's head: its pseudo-fields and its fields.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestHead {
    pseudo: Vec<u8>,
    method: Range<usize>,
    scheme: Option<Range<usize>>,
    authority: Option<Range<usize>>,
    path: Option<Range<usize>>,
    pub fields: Fields,
    /// The `content-length` the request announced, if any.
    pub content_length: Option<u64>,
}

impl RequestHead {
    pub fn method(&self) -> &[u8] {
        &self.pseudo[self.method.clone()]
    }

    pub fn scheme(&self) -> Option<&[u8]> {
        self.scheme.clone().map(|r| &self.pseudo[r])
    }

    pub fn authority(&self) -> Option<&[u8]> {
        self.authority.clone().map(|r| &self.pseudo[r])
    }

    /// The `:path` (absent only on CONNECT).
    pub fn path(&self) -> Option<&[u8]> {
        self.path.clone().map(|r| &self.pseudo[r])
    }
}

/// Why a header block is not a request (or trailers) the proxy may pass on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Malformed {
    /// The decoded list is over `SETTINGS_MAX_HEADER_LIST_SIZE`.
    TooLarge,
    Name,
    Value,
    /// `connection`, `keep-alive`, `proxy-connection`, `transfer-encoding`, `upgrade`, or a
    /// `te` other than `trailers`.
    ConnectionSpecific,
    Pseudo,
    ContentLength,
}

/// A name a field may have: lower-case token characters (RFC 9110 §5.6.2).
fn valid_name(n: &[u8]) -> bool {
    valid_token(n) && !n.iter().any(u8::is_ascii_uppercase)
}

/// A token (RFC 9110 §5.6.2): a method, a scheme, a field's name.
fn valid_token(n: &[u8]) -> bool {
    !n.is_empty() && n.iter().all(|&b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// A value without NUL, CR, LF or other control characters (horizontal tab allowed).
fn valid_value(v: &[u8]) -> bool {
    v.iter().all(|&b| b >= 0x20 && b != 0x7f || b == b'\t')
}

/// Builds a head (or trailers) field by field, judging each.
#[derive(Debug)]
pub(super) struct Builder {
    head: RequestHead,
    trailers: bool,
    size: usize,
    limit: usize,
    pub(super) bad: Option<Malformed>,
}

impl Builder {
    pub(super) fn new(trailers: bool, limit: usize) -> Self {
        // Sized for a usual head: no reallocation while it is built.
        let head = RequestHead {
            pseudo: Vec::with_capacity(if trailers { 0 } else { 64 }),
            fields: Fields { buf: Vec::with_capacity(256), at: Vec::with_capacity(8) },
            ..RequestHead::default()
        };
        Builder { head, trailers, size: 0, limit, bad: None }
    }

    /// Takes one field; the first fault is kept (the rest of the block is still decoded).
    pub(super) fn field(&mut self, name: &[u8], value: &[u8]) {
        if self.bad.is_some() {
            return;
        }
        self.size += name.len() + value.len() + 32;
        if let Err(m) = self.judge(name, value) {
            self.bad = Some(m);
        }
    }

    fn judge(&mut self, name: &[u8], value: &[u8]) -> Result<(), Malformed> {
        if self.size > self.limit {
            return Err(Malformed::TooLarge);
        }
        if !valid_value(value) {
            return Err(Malformed::Value);
        }
        let h = &mut self.head;
        if let Some(pseudo) = name.strip_prefix(b":") {
            if self.trailers || !h.fields.is_empty() {
                return Err(Malformed::Pseudo);
            }
            let start = h.pseudo.len();
            let slot = match pseudo {
                b"method" if h.method.is_empty() => {
                    h.pseudo.extend_from_slice(value);
                    h.method = start..h.pseudo.len();
                    return if value.is_empty() { Err(Malformed::Pseudo) } else { Ok(()) };
                }
                b"scheme" => &mut h.scheme,
                b"authority" => &mut h.authority,
                b"path" => &mut h.path,
                _ => return Err(Malformed::Pseudo),
            };
            if slot.is_some() {
                return Err(Malformed::Pseudo);
            }
            h.pseudo.extend_from_slice(value);
            *slot = Some(start..h.pseudo.len());
            return Ok(());
        }
        if !valid_name(name) {
            return Err(Malformed::Name);
        }
        match name {
            b"connection" | b"keep-alive" | b"proxy-connection" | b"transfer-encoding" | b"upgrade" => {
                return Err(Malformed::ConnectionSpecific)
            }
            b"te" if value != b"trailers" => return Err(Malformed::ConnectionSpecific),
            b"content-length" if !self.trailers => {
                let n =
                    std::str::from_utf8(value).ok().filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()));
                let n = n.and_then(|s| s.parse::<u64>().ok()).ok_or(Malformed::ContentLength)?;
                if h.content_length.is_some_and(|c| c != n) {
                    return Err(Malformed::ContentLength);
                }
                h.content_length = Some(n);
            }
            _ => {}
        }
        h.fields.push(name, value);
        Ok(())
    }

    /// The head, once the block is whole: a request needs `:method` (a token), and `:scheme`
    /// and a `:path` (`/...`, or `*`) unless it is a CONNECT (which has `:authority` and
    /// neither); no pseudo-field holds a space, so none can split the request line an
    /// HTTP/1.1 upstream is sent.
    pub(super) fn head(self) -> Result<RequestHead, Malformed> {
        if let Some(m) = self.bad {
            return Err(m);
        }
        let h = self.head;
        let connect = h.method() == b"CONNECT";
        let path_ok = |p: &[u8]| (p.first() == Some(&b'/') || p == b"*") && !p.contains(&b' ');
        let ok = valid_token(h.method())
            && h.authority()
                .is_none_or(|a| !a.is_empty() && !a.iter().any(|&b| matches!(b, b' ' | b'/' | b'?' | b'#' | b'@')))
            && h.scheme().is_none_or(valid_token)
            && if connect {
                h.authority.is_some() && h.scheme.is_none() && h.path.is_none()
            } else {
                h.scheme.is_some() && h.path().is_some_and(path_ok)
            };
        if ok {
            Ok(h)
        } else {
            Err(Malformed::Pseudo)
        }
    }

    /// The trailers, once the block is whole.
    pub(super) fn trailers(self) -> Result<Fields, Malformed> {
        match self.bad {
            Some(m) => Err(m),
            None => Ok(self.head.fields),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn build(fields: &[(&str, &str)]) -> Result<RequestHead, Malformed> {
        let mut b = Builder::new(false, 16 << 10);
        for (n, v) in fields {
            b.field(n.as_bytes(), v.as_bytes());
        }
        b.head()
    }

    const BASE: [(&str, &str); 4] = [(":method", "GET"), (":scheme", "http"), (":authority", "a"), (":path", "/x")];

    fn with(extra: &[(&'static str, &'static str)]) -> Vec<(&'static str, &'static str)> {
        BASE.iter().chain(extra).copied().collect()
    }

    #[test]
    fn a_request_head_is_taken_apart() {
        let h = build(&with(&[("x-a", "1"), ("te", "trailers"), ("content-length", "3")])).unwrap();
        assert_eq!(
            (h.method(), h.scheme(), h.authority(), h.path()),
            (&b"GET"[..], Some(&b"http"[..]), Some(&b"a"[..]), Some(&b"/x"[..]))
        );
        assert_eq!(
            h.fields.iter().collect::<Vec<_>>(),
            vec![(&b"x-a"[..], &b"1"[..]), (&b"te"[..], &b"trailers"[..]), (&b"content-length"[..], &b"3"[..])]
        );
        assert_eq!(h.fields.get("x-a"), Some(&b"1"[..]));
        assert_eq!(h.content_length, Some(3));
        let c = build(&[(":method", "CONNECT"), (":authority", "a:443")]).unwrap();
        assert_eq!(c.path(), None);
    }

    #[test]
    fn the_smuggling_cases_are_malformed() {
        use Malformed::*;
        for (extra, want) in [
            (("transfer-encoding", "chunked"), ConnectionSpecific),
            (("connection", "keep-alive"), ConnectionSpecific),
            (("keep-alive", "5"), ConnectionSpecific),
            (("proxy-connection", "x"), ConnectionSpecific),
            (("upgrade", "websocket"), ConnectionSpecific),
            (("te", "gzip"), ConnectionSpecific),
            (("X-Up", "1"), Name),
            (("x a", "1"), Name),
            (("", "1"), Name),
            (("x-a", "1\r\nGET / HTTP/1.1"), Value),
            (("x-a", "1\n"), Value),
            (("x-a", "1\0"), Value),
            (("content-length", "1, 2"), ContentLength),
            (("content-length", "-1"), ContentLength),
            ((":path", "/y"), Pseudo),
            ((":protocol", "websocket"), Pseudo),
        ] {
            assert_eq!(build(&with(&[extra])), Err(want), "{extra:?}");
        }
        assert_eq!(build(&with(&[("content-length", "1"), ("content-length", "2")])), Err(Malformed::ContentLength));
        assert!(build(&with(&[("content-length", "1"), ("content-length", "1")])).is_ok());
        assert!(build(&with(&[("x-a", "tab\there")])).is_ok());
    }

    #[test]
    fn pseudo_fields_in_the_wrong_place_or_missing_are_malformed() {
        assert_eq!(
            build(&[(":method", "GET"), ("x-a", "1"), (":scheme", "http"), (":path", "/")]),
            Err(Malformed::Pseudo)
        );
        assert_eq!(build(&[(":method", "GET"), (":scheme", "http")]), Err(Malformed::Pseudo));
        assert_eq!(build(&[(":method", "GET"), (":scheme", "http"), (":path", "")]), Err(Malformed::Pseudo));
        assert_eq!(build(&[(":scheme", "http"), (":path", "/")]), Err(Malformed::Pseudo));
        assert_eq!(build(&[(":method", "CONNECT"), (":authority", "a"), (":path", "/")]), Err(Malformed::Pseudo));
        let mut t = Builder::new(true, 1024);
        t.field(b":status", b"200");
        assert_eq!(t.trailers(), Err(Malformed::Pseudo));
    }

    #[test]
    fn pseudo_fields_that_would_split_an_http1_request_line_are_malformed() {
        for (name, value) in [
            (":method", "GET /admin"),
            (":method", "G(T"),
            (":path", "/a b"),
            (":path", "a"),
            (":authority", "a b"),
            (":authority", "a/b"),
            (":authority", "user@a"),
            (":scheme", "ht tp"),
        ] {
            let fields: Vec<_> = BASE.iter().map(|&(n, v)| if n == name { (n, value) } else { (n, v) }).collect();
            assert_eq!(build(&fields), Err(Malformed::Pseudo), "{name}: {value}");
        }
        let options: Vec<_> = BASE.iter().map(|&(n, v)| if n == ":path" { (n, "*") } else { (n, v) }).collect();
        assert!(build(&options).is_ok());
    }

    #[test]
    fn a_list_over_the_limit_is_too_large() {
        let mut b = Builder::new(false, 100);
        for (n, v) in BASE {
            b.field(n.as_bytes(), v.as_bytes());
        }
        assert_eq!(b.head(), Err(Malformed::TooLarge));
    }
}
