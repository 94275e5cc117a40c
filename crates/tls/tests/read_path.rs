//! The read path in memory: whatever the split of the ciphertext into reads and whatever the
//! size of the reader's buffer, the plaintext comes out whole and in order; a corrupted or
//! cut stream is an error by reason, never a panic or made-up bytes.

use engine_tls::memory::{connected_pair, seal};
use engine_tls::{Failure, Reason, SCRATCH};
use proptest::prelude::*;

/// Feeds `wire` to the client in reads of the given sizes (cycled), taking plaintext into a
/// buffer of `buf_len`; returns the plaintext, or the first error.
fn drain(
    c: &mut engine_tls::Session<engine_tls::ClientConnection>,
    wire: &[u8],
    splits: &[usize],
    buf_len: usize,
) -> std::io::Result<Vec<u8>> {
    let mut scratch = vec![0u8; SCRATCH];
    let mut buf = vec![0u8; buf_len];
    let (mut plain, mut at, mut i) = (Vec::new(), 0, 0);
    while at < wire.len() {
        let n = splits[i % splits.len()].clamp(1, wire.len() - at);
        i += 1;
        let got = c.read(&wire[at..at + n], &mut scratch, &mut buf)?;
        plain.extend_from_slice(&buf[..got]);
        at += n;
        while let Some(more) = c.buffered(&mut buf).filter(|&m| m > 0) {
            plain.extend_from_slice(&buf[..more]);
        }
    }
    Ok(plain)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn plaintext_comes_out_whole_whatever_the_splits(
        sizes in proptest::collection::vec(1usize..40_000, 1..4),
        splits in proptest::collection::vec(1usize..20_000, 1..8),
        buf_len in 1usize..70_000,
        tls12 in any::<bool>(),
    ) {
        let (mut c, mut s) = connected_pair(tls12).unwrap();
        let mut sent = Vec::new();
        let mut wire = Vec::new();
        for (k, size) in sizes.iter().enumerate() {
            let piece: Vec<u8> = (0..*size).map(|j| (j * 31 + k) as u8).collect();
            wire.extend_from_slice(&seal(&mut s, &piece).unwrap());
            sent.extend_from_slice(&piece);
        }
        let got = drain(&mut c, &wire, &splits, buf_len).unwrap();
        prop_assert_eq!(got.len(), sent.len());
        prop_assert!(got == sent);
    }

    #[test]
    fn a_flipped_byte_is_a_bad_record_not_a_panic(at in 0usize..5_000, bit in 0u8..8, tls12 in any::<bool>()) {
        let (mut c, mut s) = connected_pair(tls12).unwrap();
        let sent = vec![b'x'; 4_000];
        let mut wire = seal(&mut s, &sent).unwrap();
        let at = at % wire.len();
        wire[at] ^= 1 << bit;
        match drain(&mut c, &wire, &[wire.len()], 8_192) {
            // A flip in a record's length can leave it waiting for bytes that never come.
            Ok(got) => prop_assert!(got.is_empty() || got == sent[..got.len()]),
            Err(e) => {
                let f = Failure::of(&e).expect("a TLS failure");
                prop_assert!(f.reason_index() < Reason::ALL.len());
            }
        }
    }
}

#[test]
fn a_stream_cut_in_a_record_is_truncated() {
    let (mut c, mut s) = connected_pair(false).unwrap();
    let wire = seal(&mut s, b"HTTP/1.1 200 OK\r\n\r\nhello").unwrap();
    let mut scratch = vec![0u8; SCRATCH];
    let mut buf = [0u8; 64];
    assert_eq!(c.read(&wire[..wire.len() - 3], &mut scratch, &mut buf).unwrap(), 0);
    let e = c.eof().unwrap_err();
    assert_eq!(
        Failure::of(&e).unwrap().reason_index(),
        Reason::ALL.iter().position(|r| *r == Reason::Truncated).unwrap()
    );
}

/// An idle session keeps no handshake-sized buffer: at 10,000 connections the handshake's
/// send buffer alone, kept, was 19.5 MB (heaptrack).
#[test]
fn an_idle_session_holds_no_handshake_buffer() {
    for tls12 in [false, true] {
        let (mut c, mut s) = connected_pair(tls12).unwrap();
        let request = b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n";
        let mut scratch = vec![0u8; SCRATCH];
        let mut buf = [0u8; 256];
        for _ in 0..3 {
            let wire = seal(&mut c, request).unwrap();
            assert_eq!(s.read(&wire, &mut scratch, &mut buf).unwrap(), request.len());
            s.sent();
            let wire = seal(&mut s, b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok").unwrap();
            assert_eq!(c.read(&wire, &mut scratch, &mut buf).unwrap(), 40);
            c.sent();
        }
        // What stays is the send buffer sized for one request and its record's overhead.
        let held = c.buffer_capacity();
        assert!(held <= request.len() + 128, "client holds {held} bytes idle (tls12 {tls12})");
        // A large body read in pieces that split its 16 KiB records leaves nothing behind.
        let body = vec![b'x'; 100_000];
        let wire = seal(&mut s, &body).unwrap();
        s.sent();
        assert_eq!(drain(&mut c, &wire, &[7_001, 13], 300).unwrap(), body);
        let held = c.buffer_capacity();
        assert!(held <= request.len() + 128, "client holds {held} bytes after a large body (tls12 {tls12})");
    }
}

/// A client's TLS 1.3 records are the engine's own after the handshake (TLS 1.2's stay with
/// rustls), and key updates work whichever side asks, each side's reply going out before its
/// next data.
#[test]
fn key_updates_either_way() {
    let mut scratch = vec![0u8; SCRATCH];
    let mut buf = vec![0u8; 4096];
    let (c12, _) = connected_pair(true).unwrap();
    assert!(!c12.own_records());
    let (mut c, mut s) = connected_pair(false).unwrap();
    assert!(c.own_records());
    assert!(!s.own_records(), "a server's records stay with rustls");
    for round in 0..3 {
        // The server (rustls) asks; the client updates both keys.
        s.refresh_keys().unwrap();
        let wire = seal(&mut s, format!("server {round}").as_bytes()).unwrap();
        let n = c.read(&wire, &mut scratch, &mut buf).unwrap();
        assert_eq!(&buf[..n], format!("server {round}").as_bytes());
        let wire = seal(&mut c, format!("client {round}").as_bytes()).unwrap();
        let n = s.read(&wire, &mut scratch, &mut buf).unwrap();
        assert_eq!(&buf[..n], format!("client {round}").as_bytes());
        // The client (the engine's records) asks; the server updates both keys.
        c.refresh_keys().unwrap();
        let wire = seal(&mut c, b"asked").unwrap();
        let n = s.read(&wire, &mut scratch, &mut buf).unwrap();
        assert_eq!(&buf[..n], b"asked");
        let wire = seal(&mut s, b"answered").unwrap();
        let n = c.read(&wire, &mut scratch, &mut buf).unwrap();
        assert_eq!(&buf[..n], b"answered");
    }
}
