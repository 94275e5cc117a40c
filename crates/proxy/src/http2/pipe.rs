//! Moving one stream's body from one HTTP/2 connection to another under both flow controls:
//! a chunk is sent as the receiving side grants window, and only then is the window it took
//! on the sending side given back, so a slow reader slows its own stream's writer and the
//! proxy holds at most a window's worth per stream. The stream faults of its direction
//! (latency per DATA frame, bandwidth, slices, a data limit, a held end) act on the way.

use bytes::Bytes;

use crate::shape::{pause, Shaper};
use h2::{RecvStream, SendStream};
use http::HeaderMap;

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

/// Moves the body and its trailers; the stream `to` is ended either way it ends. Returns
/// the trailers' `grpc-status`, if they had one, and the bytes moved.
pub(crate) async fn pipe(
    from: &mut RecvStream,
    to: &mut SendStream<Bytes>,
    shaper: &mut Shaper,
) -> Result<(Option<u32>, u64), Broken> {
    let mut moved = 0u64;
    while let Some(chunk) = from.data().await {
        let chunk = chunk.map_err(|_| Broken::From)?;
        let n = chunk.len();
        send_shaped(to, chunk, shaper).await?;
        moved += n as u64;
        let _ = from.flow_control().release_capacity(n);
    }
    if let Some(hold) = shaper.slow_close() {
        glommio::timer::sleep(hold).await;
    }
    match from.trailers().await.map_err(|_| Broken::From)? {
        Some(trailers) => {
            let code = grpc_status(&trailers);
            to.send_trailers(trailers).map_err(|_| Broken::To)?;
            Ok((code, moved))
        }
        None => {
            to.send_data(Bytes::new(), true).map_err(|_| Broken::To)?;
            Ok((None, moved))
        }
    }
}

/// Sends `chunk` as window and the direction's stream faults allow.
pub(crate) async fn send_shaped(to: &mut SendStream<Bytes>, chunk: Bytes, shaper: &mut Shaper) -> Result<(), Broken> {
    if shaper.active() {
        shaped(to, chunk, shaper).await
    } else {
        send_all(to, chunk).await
    }
}

/// Sends `chunk` as its stream faults allow: after the latency of a chunk, in the pieces and
/// at the pace they set, up to the data limit.
async fn shaped(to: &mut SendStream<Bytes>, mut chunk: Bytes, shaper: &mut Shaper) -> Result<(), Broken> {
    pause(shaper.before_chunk()).await;
    while !chunk.is_empty() {
        let n = shaper.piece(chunk.len()).map_err(|_| Broken::Limit)?;
        send_all(to, chunk.split_to(n)).await?;
        pause(shaper.wrote(n)).await;
    }
    Ok(())
}

/// Sends `chunk` as window allows.
pub(crate) async fn send_all(to: &mut SendStream<Bytes>, mut chunk: Bytes) -> Result<(), Broken> {
    while !chunk.is_empty() {
        to.reserve_capacity(chunk.len());
        let granted = match futures_lite::future::poll_fn(|cx| to.poll_capacity(cx)).await {
            Some(Ok(n)) => n,
            _ => return Err(Broken::To),
        };
        if granted == 0 {
            continue;
        }
        let piece = chunk.split_to(granted.min(chunk.len()));
        to.send_data(piece, false).map_err(|_| Broken::To)?;
    }
    Ok(())
}

/// A `grpc-status` field's code.
pub(crate) fn grpc_status(fields: &HeaderMap) -> Option<u32> {
    fields.get("grpc-status").and_then(|v| v.to_str().ok()).and_then(|v| v.trim().parse().ok())
}
