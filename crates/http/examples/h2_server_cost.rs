//! What one request costs the HTTP/2 server codec alone, without I/O: a request as the blast
//! sends it taken, an nginx-like response head and a 615-byte body sent, the stream released,
//! the output consumed. For instruction counts run it under valgrind (benches/RESULTS.md):
//!
//!     cargo build --release --example h2_server_cost -p engine-http
//!     valgrind --tool=callgrind target/release/examples/h2_server_cost 20000
use std::time::Instant;

use engine_http::h2::frame;
use engine_http::h2::hpack;
use engine_http::h2::server::{Config, Server};

fn main() {
    let n: u32 = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(1_000_000);
    let mut s = Server::new(Config::default());
    let mut hello = frame::PREFACE.to_vec();
    frame::put_head(&mut hello, 0, frame::SETTINGS, 0, 0);
    s.feed(&hello).expect("handshake");
    let mut block = Vec::new();
    hpack::encode_pseudo(&mut block, b"GET", b"http", b"127.0.0.1:18091", b"/");
    hpack::encode_field(&mut block, b"user-agent", b"engine");
    let fields: [(&[u8], &[u8]); 7] = [
        (b"server", b"nginx/1.22.1"),
        (b"date", b"Sat, 05 Dec 2026 20:00:00 GMT"),
        (b"content-type", b"text/html"),
        (b"content-length", b"615"),
        (b"last-modified", b"Tue, 01 Dec 2026 10:00:00 GMT"),
        (b"etag", b"\"692d6e00-267\""),
        (b"accept-ranges", b"bytes"),
    ];
    let body = [b'x'; 615];
    let (mut input, mut written) = (Vec::new(), 0usize);
    let start = Instant::now();
    for i in 0..n {
        let id = 2 * (i % (1 << 29)) + 1;
        input.clear();
        frame::put_headers(&mut input, id, &block, true, 16_384);
        // The connection window the last response took, back (as a client gives it).
        frame::put_u32(&mut input, frame::WINDOW_UPDATE, 0, body.len() as u32);
        if id == 1 && i > 0 {
            // Stream ids ran out: a new connection, as a client would open.
            s = Server::new(Config::default());
            s.feed(&hello).expect("handshake");
        }
        s.feed(&input).expect("request");
        let (id, head, _) = s.accept().expect("a stream");
        std::hint::black_box(head.path());
        s.send_head(id, 200, fields, false).expect("head");
        s.send_data(id, &body, true).expect("body");
        s.release(id);
        written += s.output().len();
        let len = s.output().len();
        s.wrote(len);
    }
    let took = start.elapsed();
    println!(
        "{n} requests, {:.0} ns a request, {} bytes written a request",
        took.as_nanos() as f64 / f64::from(n),
        written / n as usize
    );
}
