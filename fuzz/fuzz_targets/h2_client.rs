//! Any bytes an HTTP/2 server sends, after a valid SETTINGS, split at any point: the client
//! never panics, its output stays bounded, and every stream ends the same whole or split.
#![no_main]

use std::task::{Context, Poll, Waker};

use engine_http::h2::hpack;
use engine_http::h2::{Client, Config, Ended};
use libfuzzer_sys::fuzz_target;

const STREAMS: usize = 4;

/// Feeds `input` in two pieces split at `split`; returns how each stream ended (None: not
/// yet) and whether the connection failed.
fn run(input: &[u8], split: usize) -> (Vec<Option<Ended>>, bool) {
    let cfg = Config { streams: STREAMS, window: 1 << 16, connection_window: 1 << 20, max_header_list: 4096, grpc: true };
    let mut c = Client::new(cfg);
    let mut cx = Context::from_waker(Waker::noop());
    let mut block = Vec::new();
    hpack::encode_pseudo(&mut block, b"POST", b"http", b"h", b"/");
    // The server's SETTINGS first (any stream limit in the input lowers it later).
    let _ = c.feed(&[0, 0, 0, 4, 0, 0, 0, 0, 0]);
    for k in 0..STREAMS {
        if c.poll_open(&mut cx) == Poll::Ready(true) {
            c.send(k, &block, b"body", None);
        }
    }
    let mut failed = false;
    for piece in [&input[..split], &input[split..]] {
        failed |= c.feed(piece).is_err();
        assert!(c.output().len() < 256 * 1024, "output grew to {}", c.output().len());
        let n = c.output().len();
        c.wrote(n);
    }
    let ended = (0..STREAMS)
        .map(|k| match c.poll_done(k, &mut cx) {
            Poll::Ready((e, _)) => Some(e),
            Poll::Pending => None,
        })
        .collect();
    (ended, failed)
}

fuzz_target!(|data: &[u8]| {
    if data.is_empty() {
        return;
    }
    let split = data[0] as usize % data.len();
    let input = &data[1..];
    let whole = run(input, input.len());
    assert_eq!(run(input, split.min(input.len())), whole);
});
