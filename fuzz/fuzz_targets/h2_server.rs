//! Any bytes an HTTP/2 client sends after its preface and SETTINGS, split at any point: the
//! server codec never panics, its output stays bounded, and what it takes and answers is the
//! same whole or split.
#![no_main]

use engine_http::h2::server::{Config, Server};
use libfuzzer_sys::fuzz_target;

const PREFACE_AND_SETTINGS: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0";

/// Feeds `input` in two pieces split at `split`, then takes and answers every stream; returns
/// the streams taken (id, method, path, fields) and whether the connection failed.
fn run(input: &[u8], split: usize) -> (Vec<(u32, Vec<u8>, Vec<u8>, usize)>, bool) {
    let cfg = Config { max_streams: 8, max_header_list: 4096, ..Config::default() };
    let mut s = Server::new(cfg);
    let _ = s.feed(PREFACE_AND_SETTINGS);
    let mut taken = Vec::new();
    let mut failed = false;
    for piece in [&input[..split], &input[split..]] {
        failed |= s.feed(piece).is_err();
        assert!(s.output().len() < 512 * 1024, "output grew to {}", s.output().len());
        let n = s.output().len();
        s.wrote(n);
    }
    while let Some((id, head, _)) = s.accept() {
        taken.push((id, head.method().to_vec(), head.path().unwrap_or_default().to_vec(), head.fields.len()));
        let _ = s.send_head(id, 200, [(&b"x"[..], &b"y"[..])], false);
        let _ = s.send_data(id, &[0; 100], true);
        s.release(id);
    }
    (taken, failed)
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
