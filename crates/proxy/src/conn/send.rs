//! Sending a request upstream: its head and body under the upstream-direction stream
//! faults, and `Expect: 100-continue` answered by the proxy or (`--forward-expect`) by the
//! upstream.

use std::time::{Duration, Instant};

use engine_http::request::Framing;
use engine_http::response::parse_response_head;
use engine_http::{header_slots, BodyDecoder};

use super::{Conn, Failed, Prepared};
use crate::pool::Upstream;
use crate::shape::{pause, Shaper};
use crate::slot::Wait;
use crate::stats::UpstreamError;

/// The interim answer to `Expect: 100-continue`.
const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";
/// With `--forward-expect`, how long the upstream may stay silent before the proxy tells the
/// client to send its body anyway (curl waits one second, then sends it).
const EXPECT_WAIT: Duration = Duration::from_secs(1);

/// Why a shaped write to the upstream stopped.
enum UpWrite {
    /// The socket failed or timed out.
    Reset,
    /// A `limit_data` fault's bytes have passed: the connections are cut.
    Limit,
}

impl Conn {
    /// Sends the request's head and body upstream; `Ok(false)` when the upstream answered an
    /// `Expect: 100-continue` finally, before asking for the body (`--forward-expect`): the
    /// answer is in `up.buf` and the body was not sent.
    pub(super) async fn send_request(
        &mut self,
        up: &mut Upstream,
        prep: &Prepared,
        to_up: &mut Shaper,
        lost: &dyn Fn(UpstreamError, bool) -> Failed,
    ) -> Result<bool, Failed> {
        match self.send_up(up, &self.up_head, to_up).await {
            Ok(()) => {}
            Err(UpWrite::Reset) => return Err(lost(UpstreamError::Reset, false)),
            Err(UpWrite::Limit) => return Err(Failed::Client),
        }
        if prep.framing == Framing::None {
            return Ok(true);
        }
        if prep.expect_continue {
            if self.shard.shared.forward_expect {
                if !self.await_continue(up, lost).await? {
                    return Ok(false);
                }
            } else if self.write_client(CONTINUE).await.is_err() {
                return Err(Failed::Client);
            }
        }
        self.send_body(up, prep.framing, to_up).await?;
        Ok(true)
    }

    /// The upstream's answer to `Expect: 100-continue`: its `100` is relayed (`true`); a final
    /// answer stays in `up.buf` for the response loop (`false`); after [`EXPECT_WAIT`] of
    /// silence the proxy sends its own `100` (`true`), as clients do when they stop waiting.
    async fn await_continue(
        &mut self,
        up: &mut Upstream,
        lost: &dyn Fn(UpstreamError, bool) -> Failed,
    ) -> Result<bool, Failed> {
        let until = Instant::now() + EXPECT_WAIT;
        loop {
            let mut slots = header_slots();
            match parse_response_head(&up.buf, &mut slots) {
                Ok(Some((len, head))) if head.code == Some(100) => {
                    up.buf.consume(len);
                    break;
                }
                // Another interim answer (102, 103) is not the go-ahead.
                Ok(Some((len, head))) if head.code.is_some_and(|c| (102..200).contains(&c)) => up.buf.consume(len),
                // A final answer, or bytes the response loop will call invalid.
                Ok(Some(_)) | Err(_) => return Ok(false),
                Ok(None) => {
                    let wait = until.saturating_duration_since(Instant::now());
                    let read = async { Some(self.read_upstream(up).await) };
                    let silence = async {
                        glommio::timer::sleep(wait).await;
                        None
                    };
                    match futures_lite::future::or(read, silence).await {
                        None => break,
                        Some(Ok(n)) if n > 0 => {}
                        Some(Ok(_)) => return Err(lost(UpstreamError::Reset, false)),
                        Some(Err(e)) => return Err(lost(e, false)),
                    }
                }
            }
        }
        self.write_client(CONTINUE).await.map_err(|_| Failed::Client)?;
        Ok(true)
    }

    /// Streams the request body from the client to the upstream, starting with what is
    /// already buffered; bytes of a pipelined next request stay in the buffer.
    async fn send_body(&mut self, up: &mut Upstream, framing: Framing, to_up: &mut Shaper) -> Result<(), Failed> {
        let mut body = match framing {
            Framing::Length(n) => BodyDecoder::length(n),
            Framing::Chunked => BodyDecoder::chunked(),
            Framing::None => return Ok(()),
        };
        let idle = self.shard.shared.limits.idle_timeout;
        loop {
            if !self.buf.is_empty() {
                let (n, done) = body.feed(&self.buf).map_err(|_| Failed::Client)?;
                match self.send_up(up, &self.buf[..n], to_up).await {
                    Ok(()) => {}
                    Err(UpWrite::Reset) => {
                        return Err(Failed::Upstream { error: UpstreamError::Reset, answered: false, retryable: false })
                    }
                    Err(UpWrite::Limit) => return Err(Failed::Client),
                }
                self.buf.consume(n);
                if done {
                    return Ok(());
                }
            }
            match self.read_client(Wait::Body, self.deadline(idle)).await {
                Ok(n) if n > 0 => {}
                _ => return Err(Failed::Client),
            }
        }
    }

    /// Writes `bytes` to the upstream (within the upstream timeout) under the upstream stream faults.
    async fn send_up(&self, up: &mut Upstream, bytes: &[u8], s: &mut Shaper) -> Result<(), UpWrite> {
        let timeout = self.shard.shared.limits.upstream_timeout;
        pause(s.before_chunk()).await;
        let mut rest = bytes;
        while !rest.is_empty() {
            let n = if s.active() { s.piece(rest.len()).map_err(|_| UpWrite::Limit)? } else { rest.len() };
            let w = {
                let _armed = self.slot.arm(Wait::Upstream, up.stream.fd(), self.deadline(timeout));
                up.stream.write_all(&rest[..n]).await
            };
            if w.is_err() || self.slot.expired().is_some() {
                return Err(UpWrite::Reset);
            }
            rest = &rest[n..];
            pause(s.wrote(n)).await;
        }
        Ok(())
    }
}
