//! The HTTP codecs, with no runtime: they work on byte slices, so they are fuzzed and
//! benchmarked alone.
//!
//! # Layout
//! - [`response`]: responses framed incrementally (Content-Length, chunked, close-delimited,
//!   1xx, HEAD/204/304), with the framing rules the proxy shares.
//! - [`body`]: the body decoder and the header-value helpers.
//! - [`request`]: the strict request parser of servers (the proxy, `engine target`):
//!   smuggling-safe framing, hop-by-hop headers.
//! - [`forward`]: the proxy's rewriting of heads: the request sent upstream, the response
//!   head sent back.
//! - [`h2`]: HTTP/2 frames and HPACK, the blast's client connection and a server connection.
//! - [`grpc`]: gRPC's status codes.

pub mod body;
pub mod forward;
pub mod grpc;
pub mod h2;
pub mod request;
pub mod response;

pub use body::BodyDecoder;
pub use response::{Progress, Response, ResponseFramer, RetryAfter};

/// Largest response head (status line and headers) accepted. Heads are the one part of a
/// response that must sit in memory whole; 64 KiB is well above what real servers send
/// (nginx's default `large_client_header_buffers` is 32 KiB) and bounds a hostile one.
pub const MAX_HEAD: usize = 64 * 1024;
/// Header slots parsed per head (httparse needs them up front, on the stack).
pub const MAX_HEADERS: usize = 100;

/// Appends the decimal digits of `n`, without the formatting machinery (a hot path).
pub fn push_u64(out: &mut Vec<u8>, n: u64) {
    out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
}

/// Header slots for httparse's `*_with_uninit_headers` calls. Left uninitialised: zeroing
/// 100 slots (3.2 KB) before every parse took 60% of the samples `ResponseFramer::feed` had
/// outside httparse in a profile of the blast.
pub type HeaderSlots<'b, const N: usize> = [std::mem::MaybeUninit<httparse::Header<'b>>; N];

/// A fresh set of [`HeaderSlots`].
pub const fn header_slots<'b, const N: usize>() -> HeaderSlots<'b, N> {
    [const { std::mem::MaybeUninit::uninit() }; N]
}

/// Longest chunk-size line, extensions included: a server that never sends the CRLF
/// cannot make us scan forever.
pub const MAX_CHUNK_LINE: usize = 4096;
/// Total bytes of a chunked trailer section.
pub const MAX_TRAILERS: usize = 16 * 1024;

/// Why a response could not be framed. Each variant is a server's fault, never ours.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("invalid response head: {0}")]
    InvalidHead(httparse::Error),
    #[error("response head larger than {MAX_HEAD} bytes")]
    HeadTooLarge,
    #[error("more than {MAX_HEADERS} response headers")]
    TooManyHeaders,
    #[error("invalid or conflicting Content-Length")]
    InvalidContentLength,
    #[error("invalid chunk size line")]
    InvalidChunkSize,
    #[error("chunk size line longer than {MAX_CHUNK_LINE} bytes")]
    ChunkLineTooLong,
    #[error("chunk data not followed by CRLF")]
    InvalidChunkData,
    #[error("invalid chunked trailer")]
    InvalidTrailer,
    #[error("chunked trailers larger than {MAX_TRAILERS} bytes")]
    TrailersTooLarge,
    #[error("101 Switching Protocols that was not asked for (or to a protocol not offered)")]
    Upgrade,
    #[error("server closed the connection in the middle of a response")]
    Truncated,
    #[error("server closed the connection before responding")]
    ClosedBeforeResponse,
}

impl FrameError {
    /// Truncation is the server closing early (`closed`); everything else is `parse`.
    pub fn is_close(self) -> bool {
        matches!(self, FrameError::Truncated | FrameError::ClosedBeforeResponse)
    }
}
