//! An HTTP/1.1 client's request forwarded to an HTTP/2 upstream (`--upstream-protocol h2` or
//! `h2c`), translated as RFC 9113 §8.2 has it: the request as rendered for the upstream (Host,
//! X-Forwarded-For, Via, framing restated) becomes the pseudo-fields and fields of a stream on
//! the shard's HTTP/2 connection, its body is de-chunked into DATA under flow control, and the
//! response comes back with a Content-Length when it had one, else chunked (its trailers in
//! the last chunk), or close-delimited to an HTTP/1.0 client. Stream faults act as on the
//! HTTP/1.1 path: upstream ones on the DATA sent up (a data limit resets the upstream's stream
//! and cuts the client), downstream ones on the bytes written to the client.

use std::time::Instant;

use bytes::Bytes;
use h2::RecvStream;
use http::{HeaderName, HeaderValue, Request};

use engine_http::forward::reason;
use engine_http::request::{self, Framing};
use engine_http::{header_slots, BodyDecoder};

use super::{Conn, Failed, Next, Prepared};
use crate::http2::{send_shaped, Broken};
use crate::pool_h2::{refused, REFUSED_RETRIES};
use crate::shape::Shaper;
use crate::slot::Wait;
use crate::stats::UpstreamError;

/// The interim answer to `Expect: 100-continue`, given by the proxy on this path.
const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

/// Why the exchange failed: the upstream's (the client gets 502/504 if it has no head yet), or
/// the client's.
enum Lost {
    Upstream(UpstreamError),
    Client,
}

impl Conn {
    /// Forwards the current request (its head rendered in `up_head`) on the upstream's HTTP/2
    /// connection and writes the response to the client.
    pub(super) async fn exchange_h2(&mut self, prep: &Prepared) -> Result<Next, Failed> {
        let mut answered = false;
        self.forward_h2(prep, &mut answered).await.map_err(|lost| match lost {
            Lost::Client => Failed::Client,
            Lost::Upstream(error) => Failed::Upstream { error, answered, retryable: false },
        })
    }

    /// The request as an HTTP/2 request, from the head rendered for the upstream.
    fn h2_request(&self) -> Option<Request<()>> {
        let mut slots = header_slots();
        let head = request::parse(&self.up_head, &mut slots).ok()??;
        let host = head.headers.iter().find(|h| h.name.eq_ignore_ascii_case("host")).map(|h| h.value)?;
        let scheme = if self.shard.shared.upstream_tls.is_some() { "https" } else { "http" };
        let uri = format!("{scheme}://{}{}", std::str::from_utf8(host).ok()?, head.target);
        let mut b = Request::builder().method(head.method).uri(uri).version(http::Version::HTTP_2);
        let fields = b.headers_mut()?;
        for h in head.headers {
            if engine_http::forward::not_in_h2(h.name) || h.name.eq_ignore_ascii_case("te") && h.value != b"trailers" {
                continue;
            }
            let (Ok(name), Ok(value)) = (HeaderName::from_bytes(h.name.as_bytes()), HeaderValue::from_bytes(h.value))
            else {
                return None;
            };
            fields.append(name, value);
        }
        b.body(()).ok()
    }

    async fn forward_h2(&mut self, prep: &Prepared, answered: &mut bool) -> Result<Next, Lost> {
        let shard = self.shard.clone();
        let request = self.h2_request().ok_or(Lost::Upstream(UpstreamError::Invalid))?;
        let end = prep.framing == Framing::None;
        let mut opened = shard.h2_upstream.open(request, end).await.map_err(Lost::Upstream)?;
        crate::http2::handshaken(&shard, opened.handshake.take());
        let timeout = shard.shared.limits.upstream_timeout;
        if !end {
            if prep.expect_continue {
                self.write_client(CONTINUE).await.map_err(|_| Lost::Client)?;
            }
            self.body_to_h2(prep.framing, &mut opened.body, &mut Shaper::new(self.shapes.0)).await?;
        }
        let sent = Instant::now();
        let mut tries = 0;
        let response = loop {
            match engine_runtime::within(timeout, opened.response).await {
                None => return Err(Lost::Upstream(UpstreamError::Timeout)),
                Some(Ok(r)) => break r,
                // A stream refused unread is sent again when it had no body to replay.
                Some(Err(e)) if end && refused(&e) && tries < REFUSED_RETRIES => {
                    tries += 1;
                    let request = self.h2_request().ok_or(Lost::Upstream(UpstreamError::Invalid))?;
                    opened = shard.h2_upstream.open(request, true).await.map_err(Lost::Upstream)?;
                    crate::http2::handshaken(&shard, opened.handshake.take());
                }
                Some(Err(_)) => return Err(Lost::Upstream(UpstreamError::Reset)),
            }
        };
        let ttfb = sent.elapsed();
        let (parts, mut body) = response.into_parts();
        let status = parts.status.as_u16();
        let close = !prep.keep_alive || shard.draining();
        let length = parts.headers.get("content-length").is_some();
        let bodiless = prep.head_request || body.is_end_stream() || matches!(status, 204 | 304);
        // HTTP/1.0 cannot take chunks: its body ends with the connection.
        let chunked = !bodiless && !length && prep.version == 1;
        let close = close || !bodiless && !length && !chunked;
        let mut out = std::mem::take(&mut self.out);
        out.clear();
        out.extend_from_slice(format!("HTTP/1.{} {status} {}\r\n", prep.version, reason(status)).as_bytes());
        for (name, value) in &parts.headers {
            out.extend_from_slice(name.as_str().as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(value.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        if !length && !chunked && bodiless && !matches!(status, 204 | 304) && !prep.head_request {
            out.extend_from_slice(b"Content-Length: 0\r\n");
        }
        if chunked {
            out.extend_from_slice(b"Transfer-Encoding: chunked\r\n");
        }
        if close {
            out.extend_from_slice(b"Connection: close\r\n");
        }
        out.extend_from_slice(b"Via: 2 engine-proxy\r\n\r\n");
        let mut to_down = Shaper::new(self.shapes.1);
        let wrote = self.write_shaped(&out, &mut to_down).await;
        self.out = out;
        wrote.map_err(|_| Lost::Client)?;
        *answered = true;
        if !bodiless {
            self.body_from_h2(&mut body, chunked, &mut to_down).await?;
        }
        let mut stats = shard.stats.borrow_mut();
        stats.upstream(prep.route, status, ttfb, Some(sent.elapsed()));
        stats.response(status);
        Ok(if close { Next::Close } else { Next::KeepAlive })
    }

    /// The client's body, de-chunked, to the upstream's stream as DATA under the upstream
    /// stream faults.
    async fn body_to_h2(
        &mut self,
        framing: Framing,
        to_up: &mut h2::SendStream<Bytes>,
        shaper: &mut Shaper,
    ) -> Result<(), Lost> {
        let mut decoder = match framing {
            Framing::Length(n) => BodyDecoder::length(n),
            _ => BodyDecoder::chunked(),
        };
        let idle = self.shard.shared.limits.idle_timeout;
        let mut payload = Vec::new();
        loop {
            if !self.buf.is_empty() {
                let (n, done) =
                    decoder.feed_payload(&self.buf, |p| payload.extend_from_slice(p)).map_err(|_| Lost::Client)?;
                self.buf.consume(n);
                if !payload.is_empty() {
                    let data = Bytes::from(std::mem::take(&mut payload));
                    match send_shaped(to_up, data, shaper).await {
                        Ok(()) => {}
                        // A data limit: the upstream's stream is reset and the client cut.
                        Err(Broken::Limit) => {
                            to_up.send_reset(h2::Reason::CANCEL);
                            return Err(Lost::Client);
                        }
                        Err(_) => return Err(Lost::Upstream(UpstreamError::Reset)),
                    }
                }
                if done {
                    if let Some(hold) = shaper.slow_close() {
                        glommio::timer::sleep(hold).await;
                    }
                    return to_up.send_data(Bytes::new(), true).map_err(|_| Lost::Upstream(UpstreamError::Reset));
                }
            }
            match self.read_client(Wait::Body, self.deadline(idle)).await {
                Ok(n) if n > 0 => {}
                _ => return Err(Lost::Client),
            }
        }
    }

    /// The upstream's body and trailers to the client, chunked when `chunked`, under the
    /// downstream stream faults (a data limit cuts the client; dropping `body` resets the
    /// upstream's stream).
    async fn body_from_h2(&mut self, body: &mut RecvStream, chunked: bool, shaper: &mut Shaper) -> Result<(), Lost> {
        let timeout = self.shard.shared.limits.upstream_timeout;
        let mut framed = Vec::new();
        loop {
            let chunk = match engine_runtime::within(timeout, body.data()).await {
                None => return Err(Lost::Upstream(UpstreamError::Timeout)),
                Some(None) => break,
                Some(Some(Err(_))) => return Err(Lost::Upstream(UpstreamError::Reset)),
                Some(Some(Ok(c))) => c,
            };
            let n = chunk.len();
            if chunked && n > 0 {
                framed.clear();
                framed.extend_from_slice(format!("{n:x}\r\n").as_bytes());
                framed.extend_from_slice(&chunk);
                framed.extend_from_slice(b"\r\n");
                self.write_shaped(&framed, shaper).await.map_err(|_| Lost::Client)?;
            } else {
                self.write_shaped(&chunk, shaper).await.map_err(|_| Lost::Client)?;
            }
            let _ = body.flow_control().release_capacity(n);
        }
        if chunked {
            let mut end = b"0\r\n".to_vec();
            if let Some(Ok(Some(trailers))) = engine_runtime::within(timeout, body.trailers()).await {
                for (name, value) in &trailers {
                    end.extend_from_slice(name.as_str().as_bytes());
                    end.extend_from_slice(b": ");
                    end.extend_from_slice(value.as_bytes());
                    end.extend_from_slice(b"\r\n");
                }
            }
            end.extend_from_slice(b"\r\n");
            self.write_client(&end).await.map_err(|_| Lost::Client)?;
        }
        Ok(())
    }
}
