//! HPACK (RFC 7541) as a load generator needs it.
//!
//! Encoding: a request's fields as literals without indexing (static-table names where there
//! are, no Huffman), so a block is rendered once per request and never depends on what was
//! sent before. Decoding: the client advertises a dynamic table of 0 bytes
//! (`SETTINGS_HEADER_TABLE_SIZE`), so a server may reference only the static table and a
//! connection keeps no HPACK state at all; a field's strings are handed over still encoded
//! ([`Text`]) and decoded only by whoever reads them.

use thiserror::Error;

use super::huffman::{self, HuffmanError};

/// RFC 7541 Appendix A.
pub const STATIC: [(&str, &str); 61] = [
    (":authority", ""),
    (":method", "GET"),
    (":method", "POST"),
    (":path", "/"),
    (":path", "/index.html"),
    (":scheme", "http"),
    (":scheme", "https"),
    (":status", "200"),
    (":status", "204"),
    (":status", "206"),
    (":status", "304"),
    (":status", "400"),
    (":status", "404"),
    (":status", "500"),
    ("accept-charset", ""),
    ("accept-encoding", "gzip, deflate"),
    ("accept-language", ""),
    ("accept-ranges", ""),
    ("accept", ""),
    ("access-control-allow-origin", ""),
    ("age", ""),
    ("allow", ""),
    ("authorization", ""),
    ("cache-control", ""),
    ("content-disposition", ""),
    ("content-encoding", ""),
    ("content-language", ""),
    ("content-length", ""),
    ("content-location", ""),
    ("content-range", ""),
    ("content-type", ""),
    ("cookie", ""),
    ("date", ""),
    ("etag", ""),
    ("expect", ""),
    ("expires", ""),
    ("from", ""),
    ("host", ""),
    ("if-match", ""),
    ("if-modified-since", ""),
    ("if-none-match", ""),
    ("if-range", ""),
    ("if-unmodified-since", ""),
    ("last-modified", ""),
    ("link", ""),
    ("location", ""),
    ("max-forwards", ""),
    ("proxy-authenticate", ""),
    ("proxy-authorization", ""),
    ("range", ""),
    ("referer", ""),
    ("refresh", ""),
    ("retry-after", ""),
    ("server", ""),
    ("set-cookie", ""),
    ("strict-transport-security", ""),
    ("transfer-encoding", ""),
    ("user-agent", ""),
    ("vary", ""),
    ("via", ""),
    ("www-authenticate", ""),
];

/// A header block that does not decode (a connection error, COMPRESSION_ERROR).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum HpackError {
    #[error("a header block ends inside a field")]
    Truncated,
    #[error("an HPACK integer overflows")]
    Overflow,
    #[error("index {0} is in neither the static nor the dynamic table")]
    Index(usize),
    #[error("a dynamic table size update to {0} bytes, over the size advertised")]
    TableSize(usize),
    #[error("a dynamic table size update after a field")]
    LateSizeUpdate,
    #[error(transparent)]
    Huffman(#[from] HuffmanError),
}

/// A string as the block holds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Text<'a> {
    Raw(&'a [u8]),
    Huffman(&'a [u8]),
}

impl<'a> Text<'a> {
    /// The string: borrowed when raw, else decoded into `scratch` (cleared first).
    pub fn get<'s>(&self, scratch: &'s mut Vec<u8>) -> Result<&'s [u8], HuffmanError>
    where
        'a: 's,
    {
        match *self {
            Text::Raw(b) => Ok(b),
            Text::Huffman(b) => {
                scratch.clear();
                huffman::decode(b, scratch)?;
                Ok(scratch.as_slice())
            }
        }
    }

    /// Whether the string is `want` (decoding a Huffman string into `scratch`).
    pub fn is(&self, want: &[u8], scratch: &mut Vec<u8>) -> bool {
        match *self {
            Text::Raw(b) => b == want,
            // A Huffman string is at least 5 bits a byte: a quick length test first.
            Text::Huffman(b) => b.len() * 8 >= want.len() * 5 && self.get(scratch).is_ok_and(|s| s == want),
        }
    }

    /// Its length as sent: what header list sizes are counted by here.
    pub fn wire_len(&self) -> usize {
        match *self {
            Text::Raw(b) | Text::Huffman(b) => b.len(),
        }
    }
}

/// A field's name: a static-table entry's, or a literal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Name<'a> {
    Static(usize),
    Literal(Text<'a>),
}

impl Name<'_> {
    /// Whether the name is `want` (lower-case).
    pub fn is(&self, want: &str, scratch: &mut Vec<u8>) -> bool {
        match self {
            Name::Static(i) => STATIC[*i].0 == want,
            Name::Literal(t) => t.is(want.as_bytes(), scratch),
        }
    }

    pub fn wire_len(&self) -> usize {
        match self {
            Name::Static(i) => STATIC[*i].0.len(),
            Name::Literal(t) => t.wire_len(),
        }
    }
}

/// One decoded field; `value` of an indexed field is the static table's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Field<'a> {
    pub name: Name<'a>,
    pub value: Text<'a>,
}

impl Field<'_> {
    /// The field's size in a header list (RFC 9113 §6.5.2), counting its strings as sent.
    pub fn list_size(&self) -> usize {
        self.name.wire_len() + self.value.wire_len() + 32
    }
}

/// Reads an HPACK integer with an `n`-bit prefix from `block` at `*at`.
pub(super) fn integer(block: &[u8], at: &mut usize, n: u8) -> Result<usize, HpackError> {
    let mask = (1usize << n) - 1;
    let first = *block.get(*at).ok_or(HpackError::Truncated)? as usize & mask;
    *at += 1;
    if first < mask {
        return Ok(first);
    }
    let mut v = mask;
    let mut shift = 0u32;
    loop {
        let b = *block.get(*at).ok_or(HpackError::Truncated)?;
        *at += 1;
        // Far beyond any length a frame can hold: a hostile encoding, not a big field.
        if shift > 21 {
            return Err(HpackError::Overflow);
        }
        v += ((b & 0x7f) as usize) << shift;
        shift += 7;
        if b & 0x80 == 0 {
            return Ok(v);
        }
    }
}

pub(super) fn string<'a>(block: &'a [u8], at: &mut usize) -> Result<Text<'a>, HpackError> {
    let huffman = block.get(*at).ok_or(HpackError::Truncated)? & 0x80 != 0;
    let len = integer(block, at, 7)?;
    let end = at.checked_add(len).filter(|&e| e <= block.len()).ok_or(HpackError::Truncated)?;
    let s = &block[*at..end];
    *at = end;
    Ok(if huffman { Text::Huffman(s) } else { Text::Raw(s) })
}

fn static_entry(i: usize) -> Result<usize, HpackError> {
    if (1..=STATIC.len()).contains(&i) {
        Ok(i - 1)
    } else {
        Err(HpackError::Index(i))
    }
}

/// Decodes `block` field by field into `each`, which may stop it with its own error.
pub fn decode<E: From<HpackError>>(block: &[u8], mut each: impl FnMut(Field<'_>) -> Result<(), E>) -> Result<(), E> {
    let mut at = 0;
    while at < block.len() {
        let b = block[at];
        let field = if b & 0x80 != 0 {
            let i = static_entry(integer(block, &mut at, 7)?)?;
            Field { name: Name::Static(i), value: Text::Raw(STATIC[i].1.as_bytes()) }
        } else if b & 0xe0 == 0x20 {
            // A size update: only to the 0 bytes advertised.
            let size = integer(block, &mut at, 5)?;
            if size > 0 {
                return Err(HpackError::TableSize(size).into());
            }
            continue;
        } else {
            // With incremental indexing (01), without (0000), never indexed (0001): a table of
            // 0 bytes keeps none of them.
            let prefix = if b & 0xc0 == 0x40 { 6 } else { 4 };
            let name = match integer(block, &mut at, prefix)? {
                0 => Name::Literal(string(block, &mut at)?),
                i => Name::Static(static_entry(i)?),
            };
            Field { name, value: string(block, &mut at)? }
        };
        each(field)?;
    }
    Ok(())
}

fn put_integer(out: &mut Vec<u8>, first: u8, n: u8, mut v: usize) {
    let mask = (1usize << n) - 1;
    if v < mask {
        out.push(first | v as u8);
        return;
    }
    out.push(first | mask as u8);
    v -= mask;
    while v >= 128 {
        out.push((v % 128) as u8 | 0x80);
        v /= 128;
    }
    out.push(v as u8);
}

fn put_string(out: &mut Vec<u8>, s: &[u8]) {
    put_integer(out, 0, 7, s.len());
    out.extend_from_slice(s);
}

/// The HPACK index of the first static entry named `name` (lower-case): a match the compiler
/// turns into a length switch, where a scan of the table compared every name (a response
/// head's fields are looked up once each).
fn static_name(name: &[u8]) -> Option<usize> {
    Some(match name {
        b":authority" => 1,
        b":method" => 2,
        b":path" => 4,
        b":scheme" => 6,
        b":status" => 8,
        b"accept-charset" => 15,
        b"accept-encoding" => 16,
        b"accept-language" => 17,
        b"accept-ranges" => 18,
        b"accept" => 19,
        b"access-control-allow-origin" => 20,
        b"age" => 21,
        b"allow" => 22,
        b"authorization" => 23,
        b"cache-control" => 24,
        b"content-disposition" => 25,
        b"content-encoding" => 26,
        b"content-language" => 27,
        b"content-length" => 28,
        b"content-location" => 29,
        b"content-range" => 30,
        b"content-type" => 31,
        b"cookie" => 32,
        b"date" => 33,
        b"etag" => 34,
        b"expect" => 35,
        b"expires" => 36,
        b"from" => 37,
        b"host" => 38,
        b"if-match" => 39,
        b"if-modified-since" => 40,
        b"if-none-match" => 41,
        b"if-range" => 42,
        b"if-unmodified-since" => 43,
        b"last-modified" => 44,
        b"link" => 45,
        b"location" => 46,
        b"max-forwards" => 47,
        b"proxy-authenticate" => 48,
        b"proxy-authorization" => 49,
        b"range" => 50,
        b"referer" => 51,
        b"refresh" => 52,
        b"retry-after" => 53,
        b"server" => 54,
        b"set-cookie" => 55,
        b"strict-transport-security" => 56,
        b"transfer-encoding" => 57,
        b"user-agent" => 58,
        b"vary" => 59,
        b"via" => 60,
        b"www-authenticate" => 61,
        _ => return None,
    })
}

/// Appends a field as a literal without indexing, naming a static entry when one has the
/// name (`name` lower-case).
pub fn encode_field(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    match static_name(name) {
        Some(i) => put_integer(out, 0, 4, i),
        None => {
            out.push(0);
            put_string(out, name);
        }
    }
    put_string(out, value);
}

/// Appends a request's pseudo-header fields, indexed where the static table has them whole.
pub fn encode_pseudo(out: &mut Vec<u8>, method: &[u8], scheme: &[u8], authority: &[u8], path: &[u8]) {
    let whole = |name: &str, value: &[u8]| STATIC.iter().position(|(n, v)| *n == name && v.as_bytes() == value);
    for (name, value) in [(":method", method), (":scheme", scheme), (":authority", authority), (":path", path)] {
        match whole(name, value) {
            Some(i) => put_integer(out, 0x80, 7, i + 1),
            None => encode_field(out, name.as_bytes(), value),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(block: &[u8]) -> Result<Vec<(String, String)>, HpackError> {
        let mut out = Vec::new();
        let mut scratch = Vec::new();
        decode::<HpackError>(block, |f| {
            let name = match f.name {
                Name::Static(i) => STATIC[i].0.to_string(),
                Name::Literal(t) => String::from_utf8_lossy(t.get(&mut scratch)?).into_owned(),
            };
            let value = String::from_utf8_lossy(f.value.get(&mut scratch)?).into_owned();
            out.push((name, value));
            Ok(())
        })?;
        Ok(out)
    }

    #[test]
    fn a_request_encodes_and_decodes_back() {
        let mut b = Vec::new();
        encode_pseudo(&mut b, b"GET", b"https", b"example.com", b"/");
        encode_field(&mut b, b"user-agent", b"engine");
        encode_field(&mut b, b"x-id", b"7");
        assert_eq!(&b[..3], &[0x82, 0x87, 0x01]);
        let got = fields(&b).unwrap();
        let want = [
            (":method", "GET"),
            (":scheme", "https"),
            (":authority", "example.com"),
            (":path", "/"),
            ("user-agent", "engine"),
            ("x-id", "7"),
        ];
        assert_eq!(got, want.map(|(a, b)| (a.to_string(), b.to_string())));
    }

    #[test]
    fn the_rfc_response_example_decodes_without_a_dynamic_table() {
        // RFC 7541 C.6.1 less its incremental indexing's later use: literals with indexing
        // (kept by a 0-byte table as nothing) and Huffman strings.
        let block: Vec<u8> = [
            "4882 6402 5885 aec3 771a 4b61 96d0 7abe 9410 54d4 44a8 2005 9504 0b81 66e0 82a6",
            "2d1b ff6e 919d 29ad 1718 63c7 8f0b 97c8 e9ae 82ae 43d3",
        ]
        .concat()
        .split_whitespace()
        .collect::<String>()
        .as_bytes()
        .chunks(2)
        .map(|h| u8::from_str_radix(std::str::from_utf8(h).unwrap(), 16).unwrap())
        .collect();
        let got = fields(&block).unwrap();
        assert_eq!(got[0], (":status".into(), "302".into()));
        assert_eq!(got[1], ("cache-control".into(), "private".into()));
        assert_eq!(got[2], ("date".into(), "Mon, 21 Oct 2013 20:13:21 GMT".into()));
        assert_eq!(got[3], ("location".into(), "https://www.example.com".into()));
    }

    #[test]
    fn what_a_zero_byte_table_cannot_hold_is_refused() {
        assert_eq!(fields(&[0x80 | 62]), Err(HpackError::Index(62)));
        assert_eq!(fields(&[0x80]), Err(HpackError::Index(0)));
        assert_eq!(fields(&[0x3f, 0xe1, 0x1f]), Err(HpackError::TableSize(4096)));
        assert_eq!(fields(&[0x20, 0x88]).unwrap().len(), 1);
        assert_eq!(fields(&[0x00, 0x05, b'a']), Err(HpackError::Truncated));
        assert_eq!(fields(&[0x7f, 0xff, 0xff, 0xff, 0xff, 0xff]), Err(HpackError::Overflow));
    }

    #[test]
    fn static_names_are_found_as_the_table_has_them() {
        for (i, (name, _)) in STATIC.iter().enumerate() {
            let first = STATIC.iter().position(|(n, _)| n == name).unwrap() + 1;
            assert_eq!(static_name(name.as_bytes()), Some(first), "{name} at {i}");
        }
        assert_eq!(static_name(b"x-id"), None);
        assert_eq!(static_name(b"Content-Type"), None);
    }

    #[test]
    fn long_integers_round_trip() {
        for v in [0usize, 14, 15, 16, 127, 128, 300, 16_383, 70_000] {
            let mut b = Vec::new();
            put_integer(&mut b, 0, 4, v);
            let mut at = 0;
            assert_eq!(integer(&b, &mut at, 4).unwrap(), v);
            assert_eq!(at, b.len());
        }
    }
}
