//! HTTP/2 frames (RFC 9113 §4, §6): the 9-byte header, and the frames a client writes.

pub const DATA: u8 = 0;
pub const HEADERS: u8 = 1;
pub const PRIORITY: u8 = 2;
pub const RST_STREAM: u8 = 3;
pub const SETTINGS: u8 = 4;
pub const PUSH_PROMISE: u8 = 5;
pub const PING: u8 = 6;
pub const GOAWAY: u8 = 7;
pub const WINDOW_UPDATE: u8 = 8;
pub const CONTINUATION: u8 = 9;

pub const END_STREAM: u8 = 0x1;
pub const ACK: u8 = 0x1;
pub const END_HEADERS: u8 = 0x4;
pub const PADDED: u8 = 0x8;
pub const PRIORITY_FLAG: u8 = 0x20;

pub const HEADER_TABLE_SIZE: u16 = 1;
pub const ENABLE_PUSH: u16 = 2;
pub const MAX_CONCURRENT_STREAMS: u16 = 3;
pub const INITIAL_WINDOW_SIZE: u16 = 4;
pub const MAX_FRAME_SIZE: u16 = 5;
pub const MAX_HEADER_LIST_SIZE: u16 = 6;

/// The client's connection preface (RFC 9113 §3.4).
pub const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Whether the bytes a server has read so far open an HTTP/2 connection by prior knowledge
/// (`Some(true)`), cannot (`Some(false)`: HTTP/1.1, say), or may once more arrive (`None`).
pub fn sniff(read: &[u8]) -> Option<bool> {
    let n = read.len().min(PREFACE.len());
    match (read[..n] == PREFACE[..n], n == PREFACE.len()) {
        (false, _) => Some(false),
        (true, true) => Some(true),
        (true, false) => None,
    }
}
/// The frame size every endpoint accepts, and the largest the client accepts.
pub const DEFAULT_MAX_FRAME: usize = 16_384;
/// The window every stream and the connection start with.
pub const DEFAULT_WINDOW: u32 = 65_535;
/// The largest window (2^31 − 1).
pub const MAX_WINDOW: u32 = (1 << 31) - 1;
pub const HEAD_LEN: usize = 9;

/// A frame's header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Head {
    pub len: usize,
    pub kind: u8,
    pub flags: u8,
    pub stream: u32,
}

impl Head {
    /// Reads the header at the start of `b` (at least [`HEAD_LEN`] bytes).
    pub fn parse(b: &[u8]) -> Head {
        Head {
            len: (usize::from(b[0]) << 16) | (usize::from(b[1]) << 8) | usize::from(b[2]),
            kind: b[3],
            flags: b[4],
            stream: u32::from_be_bytes([b[5], b[6], b[7], b[8]]) & MAX_WINDOW,
        }
    }
}

/// Appends a frame header.
pub fn put_head(out: &mut Vec<u8>, len: usize, kind: u8, flags: u8, stream: u32) {
    out.extend_from_slice(&[(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags]);
    out.extend_from_slice(&stream.to_be_bytes());
}

/// Appends a frame with a 4-byte payload (RST_STREAM, WINDOW_UPDATE).
pub fn put_u32(out: &mut Vec<u8>, kind: u8, stream: u32, v: u32) {
    put_head(out, 4, kind, 0, stream);
    out.extend_from_slice(&v.to_be_bytes());
}

/// Appends a GOAWAY with no debug data.
pub fn put_goaway(out: &mut Vec<u8>, last: u32, code: u32) {
    put_head(out, 8, GOAWAY, 0, 0);
    out.extend_from_slice(&last.to_be_bytes());
    out.extend_from_slice(&code.to_be_bytes());
}

/// Appends a header block as HEADERS and as many CONTINUATIONs as `max_frame` needs.
pub fn put_headers(out: &mut Vec<u8>, stream: u32, block: &[u8], end_stream: bool, max_frame: usize) {
    let mut chunks = block.chunks(max_frame.max(1)).peekable();
    let mut kind = HEADERS;
    let mut flags = if end_stream { END_STREAM } else { 0 };
    loop {
        let chunk = chunks.next().unwrap_or(&[]);
        let last = chunks.peek().is_none();
        put_head(out, chunk.len(), kind, flags | if last { END_HEADERS } else { 0 }, stream);
        out.extend_from_slice(chunk);
        if last {
            return;
        }
        (kind, flags) = (CONTINUATION, 0);
    }
}

/// Error codes (RFC 9113 §7) the client and the server send; the summary names them (engine_results::http2).
pub const PROTOCOL_ERROR: u32 = 1;
pub const INTERNAL_ERROR: u32 = 2;
pub const FLOW_CONTROL_ERROR: u32 = 3;
pub const STREAM_CLOSED: u32 = 5;
pub const FRAME_SIZE_ERROR: u32 = 6;
pub const REFUSED_STREAM: u32 = 7;
pub const CANCEL: u32 = 8;
pub const COMPRESSION_ERROR: u32 = 9;
pub const ENHANCE_YOUR_CALM: u32 = 11;

#[cfg(test)]
mod sniff_tests {
    use super::sniff;

    #[test]
    fn the_preface_is_told_apart_from_http1_as_soon_as_it_can_be() {
        assert_eq!(sniff(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0"), Some(true));
        assert_eq!(sniff(b"PRI * HTTP/2"), None);
        assert_eq!(sniff(b"GET / HTTP/1.1\r\n"), Some(false));
        assert_eq!(sniff(b"P"), None);
        assert_eq!(sniff(b"PUT /"), Some(false));
    }
}
