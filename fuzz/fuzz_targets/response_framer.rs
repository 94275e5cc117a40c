//! Any bytes a server sends, split at any point: the framer never panics, never claims more
//! bytes than it was given, and frames the same whole or split.
#![no_main]

use engine_http::{Progress, ResponseFramer};
use libfuzzer_sys::fuzz_target;

/// Frames `input` fed as two pieces split at `split`; returns the statuses and the error.
fn frame(input: &[u8], split: usize) -> (Vec<u16>, bool) {
    let mut f = ResponseFramer::new();
    let mut pending = Vec::new();
    let mut out = Vec::new();
    for piece in [&input[..split], &input[split..]] {
        pending.extend_from_slice(piece);
        loop {
            match f.feed(&pending) {
                Ok(Progress::Incomplete { consumed }) => {
                    assert!(consumed <= pending.len());
                    pending.drain(..consumed);
                    break;
                }
                Ok(Progress::Complete { consumed, response }) => {
                    assert!(consumed <= pending.len());
                    pending.drain(..consumed);
                    out.push(response.status);
                    f.start(false);
                }
                Err(_) => return (out, true),
            }
        }
    }
    (out, false)
}

fuzz_target!(|data: &[u8]| {
    if data.is_empty() {
        return;
    }
    let split = data[0] as usize % data.len();
    let input = &data[1..];
    let whole = frame(input, input.len());
    assert_eq!(frame(input, split.min(input.len())), whole);
});
