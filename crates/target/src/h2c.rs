//! HTTP/2 on the target: by prior knowledge (h2c) on the plain port, where a connection that
//! opens with the client preface is HTTP/2 and any other HTTP/1.1; and over TLS when ALPN
//! agrees on `h2`. Served by `h2` (hyperium's); every stream gets the same answer as an
//! HTTP/1.1 request, counted the same way.

use std::rc::Rc;

use bytes::Bytes;
use engine_tls::{ServerConnection, Stream};
use tokio::io::{AsyncRead, AsyncWrite};

use engine_runtime::compat::Prefixed;

use crate::TargetShard;

pub(crate) use engine_http::h2::frame::sniff;

/// Serves one h2c connection; `read`: the bytes already read (the preface, and what came
/// with it).
pub(crate) async fn serve_h2c(shard: Rc<TargetShard>, stream: Stream<ServerConnection>, read: Vec<u8>) {
    serve(shard, Prefixed::new(stream, read)).await
}

/// Serves one HTTP/2 connection until the client or the target's stop closes it.
pub(crate) async fn serve<T: AsyncRead + AsyncWrite + Unpin>(shard: Rc<TargetShard>, io: T) {
    let mut builder = h2::server::Builder::new();
    if let Some(n) = shard.max_streams {
        builder.max_concurrent_streams(n);
    }
    let Ok(mut conn) = builder.handshake(io).await else { return };
    let body = Bytes::copy_from_slice(shard.response.body());
    // The connection makes progress only while polled: accepting the next stream does that,
    // so answers spawned for earlier streams are written as they are ready.
    while let Some(Ok((request, respond))) = conn.accept().await {
        glommio::spawn_local(answer(shard.clone(), request, respond, body.clone())).detach();
    }
}

/// The most of a gRPC request's message the target keeps (to echo it).
const MAX_GRPC_MESSAGE: usize = 4 * 1024 * 1024 + 5;

/// One stream: its request body read (and dropped, or for a gRPC call kept to echo), the
/// delay, the response.
async fn answer(
    shard: Rc<TargetShard>,
    request: http::Request<h2::RecvStream>,
    mut respond: h2::server::SendResponse<Bytes>,
    body: Bytes,
) {
    let head_only = request.method() == http::Method::HEAD;
    let grpc = shard.grpc.is_some()
        && request.headers().get("content-type").is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"));
    // Decided as the call arrives: no copy of its path is kept.
    let code = if grpc { shard.grpc.as_ref().map_or(0, |c| c.status(request.uri().path())) } else { 0 };
    let mut incoming = request.into_body();
    let mut message = Vec::new();
    while let Some(chunk) = incoming.data().await {
        let Ok(chunk) = chunk else { return };
        let _ = incoming.flow_control().release_capacity(chunk.len());
        if grpc && message.len() + chunk.len() <= MAX_GRPC_MESSAGE {
            message.extend_from_slice(&chunk);
        }
    }
    if !shard.delay.is_zero() {
        glommio::timer::sleep(shard.delay).await;
    }
    if grpc {
        return answer_grpc(&shard, respond, Bytes::from(message), code);
    }
    let response = http::Response::builder()
        .status(200)
        .header("content-type", "text/plain")
        .header("content-length", body.len())
        .body(())
        .expect("a valid response");
    let Ok(mut send) = respond.send_response(response, head_only || body.is_empty()) else { return };
    if !head_only && !body.is_empty() && send.send_data(body, true).is_err() {
        return;
    }
    shard.served.set(shard.served.get() + 1);
}

/// A gRPC call's answer: its own message back and `grpc-status` 0, or (a failure asked for)
/// no message and `code`.
fn answer_grpc(shard: &TargetShard, mut respond: h2::server::SendResponse<Bytes>, message: Bytes, code: u8) {
    let response = http::Response::builder()
        .status(200)
        .header("content-type", "application/grpc")
        .body(())
        .expect("a valid response");
    let Ok(mut send) = respond.send_response(response, false) else { return };
    if code == 0 && !message.is_empty() && send.send_data(message, false).is_err() {
        return;
    }
    let mut trailers = http::HeaderMap::new();
    trailers.insert("grpc-status", http::HeaderValue::from(u16::from(code)));
    if code != 0 {
        trailers.insert("grpc-message", http::HeaderValue::from_static("failed by engine target --grpc-fail"));
    }
    if send.send_trailers(trailers).is_ok() {
        shard.served.set(shard.served.get() + 1);
    }
}
