//! Moving one stream's body between the client's HTTP/2 connection and the upstream's under
//! both flow controls: a chunk is sent as the receiving side grants room, and only then is
//! the window it took on the sending side given back, so a slow reader slows its own
//! stream's writer and the proxy holds at most a window's worth per stream. The stream
//! faults of its direction (latency per DATA frame, bandwidth, slices, a data limit, a held
//! end) act on the way.

use bytes::Bytes;
use h2::{RecvStream, SendStream};
use http::{HeaderMap, HeaderName, HeaderValue};

use super::down::Down;
use crate::shape::{pause, Shaper};

/// Why a pipe stopped early.
#[derive(Debug)]
pub(crate) enum Broken {
    /// The side sending the body failed (reset, closed, malformed).
    From,
    /// The side receiving it went away.
    To,
    /// A `limit_data` fault: the stream is to be reset both ways.
    Limit,
}

/// Where a body's chunks go: the upstream's stream (`h2`'s) or the client's (the engine's codec).
pub(crate) trait Sink {
    /// Sends all of `chunk` as the receiver's window allows.
    async fn put(&mut self, chunk: Bytes) -> Result<(), Broken>;
}

impl Sink for SendStream<Bytes> {
    async fn put(&mut self, mut chunk: Bytes) -> Result<(), Broken> {
        while !chunk.is_empty() {
            self.reserve_capacity(chunk.len());
            let granted = match futures_lite::future::poll_fn(|cx| self.poll_capacity(cx)).await {
                Some(Ok(n)) => n,
                _ => return Err(Broken::To),
            };
            if granted == 0 {
                continue;
            }
            let piece = chunk.split_to(granted.min(chunk.len()));
            self.send_data(piece, false).map_err(|_| Broken::To)?;
        }
        Ok(())
    }
}

impl Sink for &Down {
    async fn put(&mut self, chunk: Bytes) -> Result<(), Broken> {
        self.send(&chunk, false).await.map_err(|_| Broken::To)
    }
}

/// The upstream's response body and trailers to the client; the client's stream is ended
/// either way the body ends. Returns the trailers' `grpc-status`, if they had one.
pub(crate) async fn pipe_down(
    from: &mut RecvStream,
    mut to: &Down,
    shaper: &mut Shaper,
) -> Result<Option<u32>, Broken> {
    while let Some(chunk) = from.data().await {
        let chunk = chunk.map_err(|_| Broken::From)?;
        let n = chunk.len();
        send_shaped(&mut to, chunk, shaper).await?;
        let _ = from.flow_control().release_capacity(n);
    }
    if let Some(hold) = shaper.slow_close() {
        glommio::timer::sleep(hold).await;
    }
    match from.trailers().await.map_err(|_| Broken::From)? {
        Some(trailers) => {
            let code = grpc_status(&trailers);
            let fields = trailers.iter().map(|(n, v)| (n.as_str().as_bytes(), v.as_bytes()));
            to.send_trailers(fields).map_err(|_| Broken::To)?;
            Ok(code)
        }
        None => {
            to.send(&[], true).await.map_err(|_| Broken::To)?;
            Ok(None)
        }
    }
}

/// The client's request body and trailers to the upstream; its stream is ended either way.
pub(crate) async fn pipe_up(from: &Down, to: &mut SendStream<Bytes>, shaper: &mut Shaper) -> Result<(), Broken> {
    while let Some(chunk) = from.data().await.map_err(|_| Broken::From)? {
        send_shaped(to, Bytes::from(chunk), shaper).await?;
    }
    if let Some(hold) = shaper.slow_close() {
        glommio::timer::sleep(hold).await;
    }
    match from.trailers() {
        Some(fields) => {
            let mut map = HeaderMap::with_capacity(fields.len());
            for (n, v) in fields.iter() {
                if let (Ok(n), Ok(v)) = (HeaderName::from_bytes(n), HeaderValue::from_bytes(v)) {
                    map.append(n, v);
                }
            }
            to.send_trailers(map).map_err(|_| Broken::To)
        }
        None => to.send_data(Bytes::new(), true).map_err(|_| Broken::To),
    }
}

/// Sends `chunk` as window and the direction's stream faults allow.
pub(crate) async fn send_shaped<S: Sink>(to: &mut S, chunk: Bytes, shaper: &mut Shaper) -> Result<(), Broken> {
    if shaper.active() {
        shaped(to, chunk, shaper).await
    } else {
        to.put(chunk).await
    }
}

/// Sends `chunk` as its stream faults allow: after the latency of a chunk, in the pieces and
/// at the pace they set, up to the data limit.
async fn shaped<S: Sink>(to: &mut S, mut chunk: Bytes, shaper: &mut Shaper) -> Result<(), Broken> {
    pause(shaper.before_chunk()).await;
    while !chunk.is_empty() {
        let n = shaper.piece(chunk.len()).map_err(|_| Broken::Limit)?;
        to.put(chunk.split_to(n)).await?;
        pause(shaper.wrote(n)).await;
    }
    Ok(())
}

/// A `grpc-status` field's code.
pub(crate) fn grpc_status(fields: &HeaderMap) -> Option<u32> {
    fields.get("grpc-status").and_then(|v| v.to_str().ok()).and_then(|v| v.trim().parse().ok())
}
