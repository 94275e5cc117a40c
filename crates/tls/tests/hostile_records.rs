//! The client's TLS 1.3 record layer against a server that seals its own records (RFC 8446
//! §5 and §6): what a well-behaved server may send keeps working, and what no server may send
//! fails at once, by reason, with the fatal alert owed to the peer.

use engine_tls::hostile::{content, pair, HostilePeer};
use engine_tls::{ClientConnection, Failure, Reason, Session, SCRATCH};
use rustls::AlertDescription;

/// Feeds `wire` to the client in reads of `split` bytes; returns the plaintext or the error.
fn read(c: &mut Session<ClientConnection>, wire: &[u8], split: usize) -> std::io::Result<Vec<u8>> {
    let mut scratch = vec![0u8; SCRATCH];
    let mut buf = vec![0u8; 4096];
    let mut plain = Vec::new();
    for piece in wire.chunks(split.max(1)) {
        let n = c.read(piece, &mut scratch, &mut buf)?;
        plain.extend_from_slice(&buf[..n]);
        while let Some(m) = c.buffered(&mut buf).filter(|&m| m > 0) {
            plain.extend_from_slice(&buf[..m]);
        }
    }
    Ok(plain)
}

/// The stream fails with `reason`, and the client owes the peer a fatal `alert`.
fn fails(c: &mut Session<ClientConnection>, s: &mut HostilePeer, wire: &[u8], reason: Reason, alert: AlertDescription) {
    let e = read(c, wire, wire.len()).expect_err("a hostile stream must fail");
    let f = Failure::of(&e).unwrap_or_else(|| panic!("not a TLS failure: {e}"));
    assert_eq!(f.reason, reason, "{e}");
    let sent = s.open(c.outgoing()).expect("the client's records open");
    assert_eq!(sent.last(), Some(&(content::ALERT, vec![2, u8::from(alert)])), "{e}: the client sent {sent:?}");
}

fn empty_records(s: &mut HostilePeer, n: usize, padding: usize) -> Vec<u8> {
    (0..n).flat_map(|_| s.record(content::APPLICATION_DATA, b"", padding)).collect()
}

#[test]
fn empty_records_are_capped_as_rustls_caps_them() {
    for padding in [0, 100] {
        let (mut c, mut s) = pair().unwrap();
        let mut wire = empty_records(&mut s, 32, padding);
        wire.extend(s.data(b"after 32 empty records"));
        wire.extend(empty_records(&mut s, 32, padding));
        wire.extend(s.data(b", and 32 more"));
        assert_eq!(read(&mut c, &wire, 7).unwrap(), b"after 32 empty records, and 32 more");

        let (mut c, mut s) = pair().unwrap();
        let wire = empty_records(&mut s, 33, padding);
        fails(&mut c, &mut s, &wire, Reason::BadRecord, AlertDescription::UnexpectedMessage);
    }
}

#[test]
fn content_over_16_kib_is_a_record_overflow() {
    let (mut c, mut s) = pair().unwrap();
    let full = vec![b'x'; 16_384];
    let wire = s.record(content::APPLICATION_DATA, &full, 200);
    assert_eq!(read(&mut c, &wire, 1000).unwrap(), full);

    let (mut c, mut s) = pair().unwrap();
    let wire = s.record(content::APPLICATION_DATA, &[b'x'; 16_385], 0);
    fails(&mut c, &mut s, &wire, Reason::BadRecord, AlertDescription::RecordOverflow);
}

#[test]
fn a_split_handshake_message_is_whole_or_refused() {
    // A ticket one byte a record is valid; data between its records is not (§5.1).
    let (mut c, mut s) = pair().unwrap();
    let ticket = HostilePeer::ticket(1);
    let mut wire: Vec<u8> = ticket.iter().flat_map(|b| s.record(content::HANDSHAKE, &[*b], 0)).collect();
    wire.extend(s.data(b"HTTP/1.1 200 OK\r\n\r\n"));
    assert_eq!(read(&mut c, &wire, 3).unwrap(), b"HTTP/1.1 200 OK\r\n\r\n");

    let (mut c, mut s) = pair().unwrap();
    let mut wire = s.record(content::HANDSHAKE, &ticket[..10], 0);
    wire.extend(s.data(b"HTTP/1.1 200 OK\r\n\r\n"));
    fails(&mut c, &mut s, &wire, Reason::BadRecord, AlertDescription::UnexpectedMessage);

    let (mut c, mut s) = pair().unwrap();
    let wire = s.record(content::HANDSHAKE, b"", 10);
    fails(&mut c, &mut s, &wire, Reason::BadRecord, AlertDescription::DecodeError);
}

#[test]
fn key_updates_are_capped_between_data() {
    let (mut c, mut s) = pair().unwrap();
    let mut wire = Vec::new();
    for round in 0..3 {
        for _ in 0..32 {
            wire.extend(s.key_update(false));
        }
        wire.extend(s.data(format!("round {round};").as_bytes()));
    }
    assert_eq!(read(&mut c, &wire, 50).unwrap(), b"round 0;round 1;round 2;");

    let (mut c, mut s) = pair().unwrap();
    let wire: Vec<u8> = (0..33).flat_map(|_| s.key_update(true)).collect();
    fails(&mut c, &mut s, &wire, Reason::BadRecord, AlertDescription::UnexpectedMessage);
}

#[test]
fn warning_alerts_are_capped_and_fatal_ones_counted_as_alerts() {
    let user_canceled = [1, u8::from(AlertDescription::UserCanceled)];
    let (mut c, mut s) = pair().unwrap();
    let mut wire: Vec<u8> = (0..4).flat_map(|_| s.record(content::ALERT, &user_canceled, 0)).collect();
    wire.extend(s.data(b"still here"));
    assert_eq!(read(&mut c, &wire, 11).unwrap(), b"still here");

    let (mut c, mut s) = pair().unwrap();
    let wire: Vec<u8> = (0..5).flat_map(|_| s.record(content::ALERT, &user_canceled, 0)).collect();
    fails(&mut c, &mut s, &wire, Reason::BadRecord, AlertDescription::UnexpectedMessage);

    // An encrypted fatal alert ends the session as an alert, and none is sent back.
    let (mut c, mut s) = pair().unwrap();
    let wire = s.record(content::ALERT, &[2, u8::from(AlertDescription::HandshakeFailure)], 0);
    let e = read(&mut c, &wire, wire.len()).unwrap_err();
    assert_eq!(Failure::of(&e).unwrap().reason, Reason::Alert, "{e}");
    assert!(c.outgoing().is_empty(), "an alert answered with an alert");
}

#[test]
fn a_record_that_does_not_open_owes_bad_record_mac() {
    let (mut c, mut s) = pair().unwrap();
    let mut wire = s.data(b"HTTP/1.1 200 OK\r\n\r\n");
    let last = wire.len() - 1;
    wire[last] ^= 1;
    fails(&mut c, &mut s, &wire, Reason::BadRecord, AlertDescription::BadRecordMac);
}

#[test]
fn a_key_update_the_server_asks_for_is_answered_under_the_new_key() {
    let (mut c, mut s) = pair().unwrap();
    let mut wire = s.key_update(true);
    wire.extend(s.data(b"after the update"));
    assert_eq!(read(&mut c, &wire, 9).unwrap(), b"after the update");
    let sent = s.open(c.outgoing()).unwrap();
    assert_eq!(sent, vec![(content::HANDSHAKE, vec![24, 0, 0, 1, 0])]);
    c.sent();
    c.encrypt(b"GET / HTTP/1.1\r\n\r\n").unwrap();
    let sent = s.open(c.outgoing()).unwrap();
    assert_eq!(sent, vec![(content::APPLICATION_DATA, b"GET / HTTP/1.1\r\n\r\n".to_vec())]);
}

#[test]
fn close_notify_ends_the_data_cleanly() {
    let (mut c, mut s) = pair().unwrap();
    let mut wire = s.data(b"HTTP/1.1 200 OK\r\n\r\nthe body");
    wire.extend(s.record(content::ALERT, &[1, 0], 0));
    assert_eq!(read(&mut c, &wire, wire.len()).unwrap(), b"HTTP/1.1 200 OK\r\n\r\nthe body");
    let mut buf = [0u8; 64];
    assert_eq!(c.buffered(&mut buf), Some(0), "the end of the data");
    assert!(c.peer_closed() && !c.truncated());
}

#[test]
fn a_resumed_session_reads_like_a_full_one() {
    let (config, _) = engine_tls::hostile::config().unwrap();
    let opts =
        engine_tls::ClientOptions { insecure: true, version: Some(engine_tls::Version::Tls13), ..Default::default() };
    let client = engine_tls::Client::new(&opts, "localhost").unwrap();
    for round in 0..3 {
        let (mut c, mut s) = engine_tls::hostile::pair_with(&client, &config).unwrap();
        assert_eq!(c.negotiated().resumed, round > 0, "round {round}");
        c.encrypt(b"GET / HTTP/1.1\r\n\r\n").unwrap();
        let got = s.open(c.outgoing()).unwrap();
        assert_eq!(got.last().unwrap().1, b"GET / HTTP/1.1\r\n\r\n", "round {round}");
        c.sent();
        let wire = s.data(b"HTTP/1.1 200 OK\r\n\r\n");
        assert_eq!(read(&mut c, &wire, 5).unwrap(), b"HTTP/1.1 200 OK\r\n\r\n", "round {round}");
    }
}
