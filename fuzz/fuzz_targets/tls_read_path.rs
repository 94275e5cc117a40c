//! Any bytes a TLS server sends as application data, sealed into records and delivered in any
//! split, with or without one flipped bit, through the client's read path (engine-tls's
//! session: the held front of a split record, plaintext that does not fit the reader's
//! buffer) and into the response framer: no panic; without the flip the plaintext comes out
//! whole, and with it either an error by reason or a prefix of what was sent.
#![no_main]

use engine_http::{Progress, ResponseFramer};
use engine_tls::memory::{connected_pair, seal};
use engine_tls::{Failure, SCRATCH};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() < 4 {
        return;
    }
    let (tls12, split, buf_len, flip) = (data[0] & 1 == 1, data[1] as usize + 1, data[2] as usize * 64 + 1, data[3]);
    let plain = &data[4..];
    let Ok((mut c, mut s)) = connected_pair(tls12) else { return };
    let Ok(mut wire) = seal(&mut s, plain) else { return };
    let flipped = flip & 0x80 != 0 && !wire.is_empty();
    if flipped {
        let at = (flip as usize * 7919) % wire.len();
        wire[at] ^= 1 << (flip & 7);
    }
    let mut scratch = vec![0u8; SCRATCH];
    let mut buf = vec![0u8; buf_len];
    let mut got = Vec::new();
    let mut framer = ResponseFramer::new();
    let mut framed = 0;
    for piece in wire.chunks(split) {
        let n = match c.read(piece, &mut scratch, &mut buf) {
            Ok(n) => n,
            Err(e) => {
                assert!(flipped, "an error without a flip: {e}");
                assert!(Failure::of(&e).is_some(), "not a TLS failure: {e}");
                return;
            }
        };
        got.extend_from_slice(&buf[..n]);
        while let Some(m) = c.buffered(&mut buf).filter(|&m| m > 0) {
            got.extend_from_slice(&buf[..m]);
        }
        // The framer sees the plaintext as it comes; it must never claim more than it got.
        while framed < got.len() {
            match framer.feed(&got[framed..]) {
                Ok(Progress::Incomplete { consumed }) => {
                    assert!(framed + consumed <= got.len());
                    framed += consumed;
                    break;
                }
                Ok(Progress::Complete { consumed, .. }) => {
                    assert!(framed + consumed <= got.len());
                    framed += consumed;
                    framer.start(false);
                }
                Err(_) => {
                    framed = got.len();
                    break;
                }
            }
        }
    }
    if flipped {
        assert!(plain.starts_with(&got), "made-up bytes after a flip");
    } else {
        assert_eq!(got, plain, "plaintext not whole");
    }
});
