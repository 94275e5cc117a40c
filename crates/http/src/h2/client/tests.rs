//! The client against a scripted server: frames written by hand, fed whole, split, and
//! byte by byte.

use std::task::{Context, Poll, Waker};

use super::*;
use crate::h2::frame::*;
use crate::h2::hpack;

fn cfg(streams: usize) -> Config {
    Config { streams, window: 1 << 20, connection_window: 1 << 24, max_header_list: 1024, grpc: false }
}

fn cx() -> Context<'static> {
    Context::from_waker(Waker::noop())
}

fn f(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    put_head(&mut v, payload.len(), kind, flags, stream);
    v.extend_from_slice(payload);
    v
}

fn settings(pairs: &[(u16, u32)]) -> Vec<u8> {
    let p: Vec<u8> = pairs.iter().flat_map(|(i, v)| i.to_be_bytes().into_iter().chain(v.to_be_bytes())).collect();
    f(SETTINGS, 0, 0, &p)
}

fn request_block() -> Vec<u8> {
    let mut b = Vec::new();
    hpack::encode_pseudo(&mut b, b"GET", b"http", b"h", b"/");
    b
}

/// An opened client that has read the server's SETTINGS and written everything.
fn opened(c: Config, server: &[(u16, u32)]) -> Client {
    let mut client = Client::new(c);
    client.feed(&settings(server)).unwrap();
    let n = client.output().len();
    client.wrote(n);
    client
}

fn send(c: &mut Client, k: usize, body: &[u8]) -> u32 {
    assert_eq!(c.poll_open(&mut cx()), Poll::Ready(true));
    let id = c.next_id;
    c.send(k, &request_block(), body, None);
    id
}

fn done(c: &mut Client, k: usize) -> Option<Ended> {
    match c.poll_done(k, &mut cx()) {
        Poll::Ready((e, _)) => Some(e),
        Poll::Pending => None,
    }
}

/// The frames in `out`, as (kind, flags, stream, payload).
fn written(out: &[u8]) -> Vec<(u8, u8, u32, Vec<u8>)> {
    let mut v = Vec::new();
    let mut at = 0;
    while at + HEAD_LEN <= out.len() {
        let h = Head::parse(&out[at..]);
        v.push((h.kind, h.flags, h.stream, out[at + HEAD_LEN..at + HEAD_LEN + h.len].to_vec()));
        at += HEAD_LEN + h.len;
    }
    v
}

fn ok_response(id: u32, body: &[u8]) -> Vec<u8> {
    let mut v = f(HEADERS, END_HEADERS, id, &[0x88]);
    v.extend(f(DATA, END_STREAM, id, body));
    v
}

#[test]
fn the_preface_offers_the_settings_asked() {
    let c = Client::new(cfg(10));
    let out = c.output();
    assert!(out.starts_with(PREFACE));
    let frames = written(&out[PREFACE.len()..]);
    assert_eq!(frames[0].0, SETTINGS);
    assert_eq!(&frames[0].3[..6], &[0, 1, 0, 0, 0, 0], "a dynamic table of 0 bytes");
    assert_eq!(frames[1], (WINDOW_UPDATE, 0, 0, ((1u32 << 24) - 65_535).to_be_bytes().to_vec()));
}

#[test]
fn a_response_read_whole_split_or_byte_by_byte_is_the_same() {
    for step in [usize::MAX, 7, 1] {
        let mut c = opened(cfg(2), &[]);
        let id = send(&mut c, 0, b"");
        let out = written(c.output());
        assert_eq!((out[0].0, out[0].1, out[0].2), (HEADERS, END_HEADERS | END_STREAM, id));
        let mut wire = ok_response(id, b"hello");
        wire.extend(f(PING, 0, 0, b"12345678"));
        for chunk in wire.chunks(step.min(wire.len())) {
            c.feed(chunk).unwrap();
        }
        let Some(Ended::Response(r, None)) = done(&mut c, 0) else { panic!("step {step}") };
        assert_eq!((r.status, r.body_bytes), (200, 5));
        assert!(written(c.output()).iter().any(|f| f.0 == PING && f.1 == ACK && f.3 == b"12345678"));
        assert!(c.carry.is_empty());
    }
}

#[test]
fn the_servers_stream_limit_holds_and_starts_at_one() {
    let mut c = Client::new(cfg(10));
    assert_eq!(c.poll_open(&mut cx()), Poll::Ready(true));
    c.send(0, &request_block(), b"", None);
    assert_eq!(c.poll_open(&mut cx()), Poll::Pending, "one stream until the server's SETTINGS");
    c.feed(&settings(&[(MAX_CONCURRENT_STREAMS, 2)])).unwrap();
    assert_eq!(c.poll_open(&mut cx()), Poll::Ready(true));
    c.send(1, &request_block(), b"", None);
    assert_eq!(c.poll_open(&mut cx()), Poll::Pending);
    c.feed(&ok_response(1, b"")).unwrap();
    assert!(done(&mut c, 0).is_some());
    assert_eq!(c.poll_open(&mut cx()), Poll::Ready(true));
    assert_eq!(c.max_streams(), 2);
}

#[test]
fn a_goaway_refuses_the_streams_above_its_last_id_and_lets_the_others_finish() {
    let mut c = opened(cfg(3), &[]);
    let ids: Vec<u32> = (0..3).map(|k| send(&mut c, k, b"")).collect();
    let mut p = ids[0].to_be_bytes().to_vec();
    p.extend(0u32.to_be_bytes());
    c.feed(&f(GOAWAY, 0, 0, &p)).unwrap();
    assert_eq!(done(&mut c, 1), Some(Ended::Refused));
    assert_eq!(done(&mut c, 2), Some(Ended::Refused));
    assert_eq!(done(&mut c, 0), None);
    assert_eq!(c.poll_open(&mut cx()), Poll::Ready(false), "no new stream after a GOAWAY");
    assert!(!c.finished());
    c.feed(&ok_response(ids[0], b"x")).unwrap();
    assert!(matches!(done(&mut c, 0), Some(Ended::Response(..))));
    assert!(c.finished());
}

#[test]
fn resets_and_timeouts_end_one_stream_only() {
    let mut c = opened(cfg(2), &[]);
    let (a, b) = (send(&mut c, 0, b""), send(&mut c, 1, b""));
    c.feed(&f(RST_STREAM, 0, a, &7u32.to_be_bytes())).unwrap();
    assert_eq!(done(&mut c, 0), Some(Ended::Reset(7)));
    c.wrote(c.output().len());
    c.cancel(1);
    assert_eq!(written(c.output()), [(RST_STREAM, 0, b, CANCEL.to_be_bytes().to_vec())]);
    // What the server still sends for the cancelled stream is dropped, its DATA counted.
    c.feed(&ok_response(b, &[0; 100])).unwrap();
    assert_eq!(done(&mut c, 1), None);
    let c2 = send(&mut c, 1, b"");
    c.feed(&ok_response(c2, b"")).unwrap();
    assert!(matches!(done(&mut c, 1), Some(Ended::Response(..))));
}

#[test]
fn a_body_waits_for_the_servers_windows() {
    let mut c = opened(cfg(1), &[(INITIAL_WINDOW_SIZE, 0)]);
    let id = send(&mut c, 0, b"abcdef");
    let out = written(c.output());
    assert_eq!(out.len(), 1, "HEADERS only: {out:?}");
    assert_eq!(out[0].1 & END_STREAM, 0);
    c.wrote(c.output().len());
    c.feed(&f(WINDOW_UPDATE, 0, id, &4u32.to_be_bytes())).unwrap();
    assert_eq!(written(c.output()), [(DATA, 0, id, b"abcd".to_vec())]);
    c.wrote(c.output().len());
    c.feed(&settings(&[(INITIAL_WINDOW_SIZE, 10)])).unwrap();
    let out = written(c.output());
    assert!(out.contains(&(DATA, END_STREAM, id, b"ef".to_vec())), "{out:?}");
}

#[test]
fn grpc_status_comes_from_trailers_or_a_trailers_only_answer() {
    let mut g = cfg(2);
    g.grpc = true;
    let mut c = opened(g, &[]);
    let (a, b) = (send(&mut c, 0, b"\0\0\0\0\0"), send(&mut c, 1, b"\0\0\0\0\0"));
    let mut trailers = Vec::new();
    hpack::encode_field(&mut trailers, b"grpc-status", b"14");
    let mut wire = f(HEADERS, END_HEADERS, a, &[0x88]);
    wire.extend(f(DATA, 0, a, b"\0\0\0\0\0"));
    wire.extend(f(HEADERS, END_HEADERS | END_STREAM, a, &trailers));
    let mut only = vec![0x88];
    only.extend(&trailers[..]);
    wire.extend(f(HEADERS, END_HEADERS | END_STREAM, b, &only));
    c.feed(&wire).unwrap();
    assert!(matches!(done(&mut c, 0), Some(Ended::Response(r, Some(14))) if r.body_bytes == 5));
    assert!(matches!(done(&mut c, 1), Some(Ended::Response(_, Some(14)))));
    let d = send(&mut c, 0, b"");
    c.feed(&ok_response(d, b"")).unwrap();
    assert!(matches!(done(&mut c, 0), Some(Ended::Response(_, Some(2)))), "no status at all is UNKNOWN");
}

#[test]
fn a_capture_gets_the_headers_it_names_and_the_body() {
    let mut c = opened(cfg(1), &[]);
    assert_eq!(c.poll_open(&mut cx()), Poll::Ready(true));
    let mut cap = Box::<Capture>::default();
    cap.want_headers(&["x-token".to_string(), "content-type".to_string()]);
    cap.body = true;
    c.send(0, &request_block(), b"", Some(cap));
    let mut block = vec![0x88];
    hpack::encode_field(&mut block, b"content-type", b"text/plain");
    hpack::encode_field(&mut block, b"x-token", b"abc");
    let mut wire = f(HEADERS, END_HEADERS, 1, &block);
    wire.extend(f(DATA, END_STREAM, 1, b"{\"a\":1}"));
    c.feed(&wire).unwrap();
    let Poll::Ready((Ended::Response(..), Some(cap))) = c.poll_done(0, &mut cx()) else { panic!() };
    assert_eq!(cap.header_named("x-token"), Some(&b"abc"[..]));
    assert_eq!(cap.header_named("content-type"), Some(&b"text/plain"[..]));
    assert_eq!(cap.body_bytes, b"{\"a\":1}");
}

#[test]
fn interim_responses_are_skipped() {
    let mut c = opened(cfg(1), &[]);
    let id = send(&mut c, 0, b"");
    let mut interim = Vec::new();
    hpack::encode_field(&mut interim, b":status", b"103");
    let mut wire = f(HEADERS, END_HEADERS, id, &interim);
    wire.extend(ok_response(id, b""));
    c.feed(&wire).unwrap();
    assert!(matches!(done(&mut c, 0), Some(Ended::Response(r, _)) if r.status == 200));
}

#[test]
fn hostile_input_ends_in_a_connection_error_or_a_malformed_stream() {
    // Not SETTINGS first, a frame over 16 KiB, a push, HEADERS for a stream never opened.
    for wire in [
        b"garbage garbage garbage".to_vec(),
        [settings(&[]), vec![0xff, 0xff, 0xff, 0, 0, 0, 0, 0, 1]].concat(),
        [settings(&[]), f(PUSH_PROMISE, END_HEADERS, 1, &[0, 0, 0, 2, 0x88])].concat(),
        [settings(&[]), f(HEADERS, END_HEADERS, 99, &[0x88])].concat(),
        [settings(&[]), f(HEADERS, END_HEADERS, 1, &[0xbe])].concat(),
    ] {
        let mut c = Client::new(cfg(1));
        assert_eq!(c.poll_open(&mut cx()), Poll::Ready(true));
        c.send(0, &request_block(), b"", None);
        assert!(c.feed(&wire).is_err(), "{wire:?}");
        assert_eq!(done(&mut c, 0), Some(Ended::Failed));
        assert!(c.finished());
        assert!(written(&c.output()[PREFACE.len()..]).iter().any(|f| f.0 == GOAWAY));
    }
    // A flood of CONTINUATIONs: the connection ends, its memory bounded.
    let mut c = opened(cfg(1), &[]);
    let id = send(&mut c, 0, b"");
    let mut wire = f(HEADERS, END_STREAM, id, &[0x88]);
    for _ in 0..1000 {
        wire.extend(f(CONTINUATION, 0, id, &[0x00, 0x01, b'a', 0x00]));
    }
    assert_eq!(c.feed(&wire), Err(ConnError(ENHANCE_YOUR_CALM)));
    assert!(c.block_buf.capacity() <= 1024);
    // A header list over the limit: that stream alone is malformed.
    let mut c = opened(cfg(1), &[]);
    let id = send(&mut c, 0, b"");
    let mut big = vec![0x88];
    hpack::encode_field(&mut big, b"x-big", &[b'a'; 2000]);
    c.feed(&f(HEADERS, END_HEADERS, id, &big)).unwrap();
    assert_eq!(done(&mut c, 0), Some(Ended::Malformed));
    assert!(!c.finished());
}

#[test]
fn the_windows_are_given_back_as_data_is_read() {
    let mut c = opened(Config { window: 100, connection_window: 70_000, ..cfg(1) }, &[]);
    let id = send(&mut c, 0, b"");
    c.wrote(c.output().len());
    let mut wire = f(HEADERS, END_HEADERS, id, &[0x88]);
    wire.extend(f(DATA, 0, id, &[0; 60]));
    c.feed(&wire).unwrap();
    assert_eq!(written(c.output()), [(WINDOW_UPDATE, 0, id, 60u32.to_be_bytes().to_vec())]);
    // Over the stream's window: that stream is reset.
    c.feed(&f(DATA, 0, id, &[0; 200])).unwrap();
    assert_eq!(done(&mut c, 0), Some(Ended::Malformed));
}
