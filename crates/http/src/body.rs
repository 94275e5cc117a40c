//! Message body framing shared by both sides of the codec (RFC 9112 §6): `Content-Length`,
//! `chunked` (extensions and trailers skipped, bounded) and close-delimited. The decoder only
//! finds where a body ends; the bytes stay where they are, so a caller can count them (the
//! blast) or forward them unchanged (the proxy).

use super::{FrameError, MAX_CHUNK_LINE, MAX_TRAILERS};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Body {
    /// `Content-Length`: this many bytes are still to come.
    Length(u64),
    Chunked(Chunk),
    /// No length and no chunking: the body runs until the server closes (RFC 9112 §6.3 p8).
    Eof,
}

/// Where the chunked decoder stands. Each state is one position in the grammar
/// `chunk-size [ chunk-ext ] CRLF chunk-data CRLF ... last-chunk trailer-section CRLF`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunk {
    /// Reading hex digits; `line` counts the bytes of the size line so far.
    Size {
        size: u64,
        digits: u8,
        line: usize,
    },
    /// After the size: optional whitespace and `;ext` until CR.
    Ext {
        size: u64,
        line: usize,
    },
    /// Saw CR after the size line; LF must follow.
    SizeLf {
        size: u64,
    },
    Data(u64),
    DataCr,
    DataLf,
    /// After the last chunk: trailer fields, each ending in CRLF, then an empty line.
    /// `line` is the length of the current trailer line, `total` of all trailers.
    Trailer {
        line: usize,
        total: usize,
        cr: bool,
    },
}

/// Finds the end of one message body, fed in pieces of any size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BodyDecoder(Body);

impl BodyDecoder {
    /// A body of exactly `n` bytes.
    pub fn length(n: u64) -> Self {
        Self(Body::Length(n))
    }

    /// A `Transfer-Encoding: chunked` body.
    pub fn chunked() -> Self {
        Self(Body::Chunked(Chunk::Size { size: 0, digits: 0, line: 0 }))
    }

    /// A body that runs until the connection closes (responses only).
    pub fn until_eof() -> Self {
        Self(Body::Eof)
    }

    /// True for a close-delimited body, which only the end of the connection completes.
    pub fn is_until_eof(&self) -> bool {
        self.0 == Body::Eof
    }

    /// True when no (more) body bytes are expected.
    pub fn is_empty(&self) -> bool {
        self.0 == Body::Length(0)
    }

    /// Advances through body bytes. Returns the bytes consumed and whether the body ended;
    /// bytes past the end are not consumed.
    pub fn feed(&mut self, input: &[u8]) -> Result<(usize, bool), FrameError> {
        self.feed_payload(input, |_| {})
    }

    /// [`Self::feed`], handing each piece of the body's data (its framing removed: chunk
    /// sizes, extensions and trailers) to `data`, for a hop that frames it anew (HTTP/2).
    pub fn feed_payload(&mut self, input: &[u8], mut data: impl FnMut(&[u8])) -> Result<(usize, bool), FrameError> {
        match self.0 {
            Body::Length(remaining) => {
                let take = remaining.min(input.len() as u64);
                let left = remaining - take;
                self.0 = Body::Length(left);
                if take > 0 {
                    data(&input[..take as usize]);
                }
                Ok((take as usize, left == 0))
            }
            Body::Eof => {
                if !input.is_empty() {
                    data(input);
                }
                Ok((input.len(), false))
            }
            Body::Chunked(chunk) => self.feed_chunked(chunk, input, &mut data),
        }
    }

    fn feed_chunked(
        &mut self,
        mut chunk: Chunk,
        input: &[u8],
        data: &mut impl FnMut(&[u8]),
    ) -> Result<(usize, bool), FrameError> {
        let mut pos = 0;
        while pos < input.len() {
            let b = input[pos];
            chunk = match chunk {
                Chunk::Data(remaining) => {
                    let take = remaining.min((input.len() - pos) as u64);
                    data(&input[pos..pos + take as usize]);
                    pos += take as usize;
                    chunk = if take == remaining { Chunk::DataCr } else { Chunk::Data(remaining - take) };
                    continue;
                }
                Chunk::Size { size, digits, line } => {
                    check_line(line)?;
                    match hex_value(b) {
                        Some(d) => {
                            if digits >= 16 {
                                return Err(FrameError::InvalidChunkSize);
                            }
                            Chunk::Size { size: size << 4 | d as u64, digits: digits + 1, line: line + 1 }
                        }
                        None if digits == 0 => return Err(FrameError::InvalidChunkSize),
                        None => ext_byte(b, size, line)?,
                    }
                }
                Chunk::Ext { size, line } => {
                    check_line(line)?;
                    ext_byte(b, size, line)?
                }
                Chunk::SizeLf { size } => {
                    if b != b'\n' {
                        return Err(FrameError::InvalidChunkSize);
                    }
                    if size == 0 {
                        Chunk::Trailer { line: 0, total: 0, cr: false }
                    } else {
                        Chunk::Data(size)
                    }
                }
                Chunk::DataCr => {
                    if b != b'\r' {
                        return Err(FrameError::InvalidChunkData);
                    }
                    Chunk::DataLf
                }
                Chunk::DataLf => {
                    if b != b'\n' {
                        return Err(FrameError::InvalidChunkData);
                    }
                    Chunk::Size { size: 0, digits: 0, line: 0 }
                }
                Chunk::Trailer { line, total, cr } => {
                    if total >= MAX_TRAILERS {
                        return Err(FrameError::TrailersTooLarge);
                    }
                    match (b, cr) {
                        (b'\n', true) if line == 0 => {
                            // The empty line that ends the trailer section ends the message.
                            pos += 1;
                            self.0 = Body::Chunked(chunk);
                            return Ok((pos, true));
                        }
                        (b'\n', true) => Chunk::Trailer { line: 0, total: total + 1, cr: false },
                        (_, true) => return Err(FrameError::InvalidTrailer),
                        (b'\r', false) => Chunk::Trailer { line, total: total + 1, cr: true },
                        (b'\n', false) => return Err(FrameError::InvalidTrailer),
                        _ => Chunk::Trailer { line: line + 1, total: total + 1, cr: false },
                    }
                }
            };
            pos += 1;
        }
        self.0 = Body::Chunked(chunk);
        Ok((pos, false))
    }
}

/// The data of a whole chunked body, its framing removed (what a flow's capture reads a JSON
/// value from). `raw` is the body as it came, last chunk and trailers included.
pub fn dechunk(raw: &[u8]) -> Result<Vec<u8>, FrameError> {
    let mut decoder = BodyDecoder::chunked();
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < raw.len() {
        // Chunk data is copied a run at a time; the framing around it a byte at a time.
        let step = match decoder.0 {
            Body::Chunked(Chunk::Data(n)) => {
                let run = n.min((raw.len() - pos) as u64) as usize;
                out.extend_from_slice(&raw[pos..pos + run]);
                run
            }
            _ => 1,
        };
        let (used, done) = decoder.feed(&raw[pos..pos + step])?;
        pos += used;
        if done {
            return Ok(out);
        }
    }
    Err(FrameError::Truncated)
}

fn check_line(line: usize) -> Result<(), FrameError> {
    if line >= MAX_CHUNK_LINE {
        Err(FrameError::ChunkLineTooLong)
    } else {
        Ok(())
    }
}

/// A byte after the chunk size: extensions are skipped, CR ends the line.
fn ext_byte(b: u8, size: u64, line: usize) -> Result<Chunk, FrameError> {
    match b {
        b'\r' => Ok(Chunk::SizeLf { size }),
        b'\n' => Err(FrameError::InvalidChunkSize),
        // chunk-ext = *( BWS ";" BWS ext-name [ BWS "=" BWS ext-val ] ), any visible text.
        b'\t' | b' '..=b'~' | 0x80..=0xff => Ok(Chunk::Ext { size, line: line + 1 }),
        _ => Err(FrameError::InvalidChunkSize),
    }
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// `Content-Length = 1*DIGIT` (RFC 9110 §8.6); a comma-separated list of equal values is accepted as one.
pub fn parse_content_length(value: &[u8]) -> Result<u64, FrameError> {
    let mut result: Option<u64> = None;
    for part in value.split(|&b| b == b',') {
        let part = trim(part);
        if part.is_empty() || part.len() > 19 || !part.iter().all(u8::is_ascii_digit) {
            return Err(FrameError::InvalidContentLength);
        }
        let v = part.iter().fold(0u64, |acc, &d| acc * 10 + u64::from(d - b'0'));
        if result.is_some_and(|r| r != v) {
            return Err(FrameError::InvalidContentLength);
        }
        result = Some(v);
    }
    result.ok_or(FrameError::InvalidContentLength)
}

pub fn trim(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

/// Whether `s` equals `lower`, a lower-case field name or token, ignoring ASCII case: what
/// `eq_ignore_ascii_case` answers, without its early exits or lower-casing of both sides, so a
/// name of known length compares in a few vector instructions (field names are compared on
/// every response).
pub fn eq_lower<const N: usize>(s: &[u8], lower: &[u8; N]) -> bool {
    <&[u8; N]>::try_from(s)
        .is_ok_and(|s| s.iter().zip(lower).fold(0, |diff, (a, b)| diff | (a.to_ascii_lowercase() ^ b)) == 0)
}

pub fn tokens(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value.split(|&b| b == b',').map(trim).filter(|t| !t.is_empty())
}

pub fn last_token(value: &[u8]) -> Option<&[u8]> {
    tokens(value).last()
}

#[cfg(test)]
mod tests {

    #[test]
    fn the_payload_comes_out_without_its_framing_however_the_bytes_are_cut() {
        let raw = b"5;ext=1\r\nhello\r\n7\r\n, world\r\n0\r\nx-t: 1\r\n\r\nNEXT";
        for cut in 1..raw.len() {
            let mut d = BodyDecoder::chunked();
            let mut payload = Vec::new();
            let (a, done_a) = d.feed_payload(&raw[..cut], |p| payload.extend_from_slice(p)).unwrap();
            let (b, done_b) =
                if done_a { (0, true) } else { d.feed_payload(&raw[a..], |p| payload.extend_from_slice(p)).unwrap() };
            assert!(done_b && a + b == raw.len() - 4, "cut at {cut}");
            assert_eq!(payload, b"hello, world", "cut at {cut}");
        }
        let mut d = BodyDecoder::length(3);
        let mut payload = Vec::new();
        assert_eq!(d.feed_payload(b"abcdef", |p| payload.extend_from_slice(p)).unwrap(), (3, true));
        assert_eq!(payload, b"abc");
    }

    use super::*;

    #[test]
    fn eq_lower_is_eq_ignore_ascii_case() {
        assert!(eq_lower(b"Content-Length", b"content-length"));
        assert!(eq_lower(b"CONNECTION", b"connection"));
        assert!(!eq_lower(b"Content-Lengths", b"content-length"));
        assert!(!eq_lower(b"Content-Lengt", b"content-length"));
        // Every byte against every letter, digit and '-': the same answer as the std method.
        for b in 0..=255u8 {
            for t in (b'a'..=b'z').chain(b'0'..=b'9').chain([b'-']) {
                assert_eq!(eq_lower(&[b], &[t]), [b].eq_ignore_ascii_case(&[t]), "{b:#x} vs {t:#x}");
            }
        }
    }
}
