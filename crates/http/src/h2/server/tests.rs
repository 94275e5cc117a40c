use std::task::{Context, Poll, Waker};

use super::*;
use crate::h2::frame::{self, Head};
use crate::h2::hpack;

fn cx() -> Context<'static> {
    Context::from_waker(Waker::noop())
}

/// The client's preface and an empty SETTINGS (or these settings).
fn hello(settings: &[(u16, u32)]) -> Vec<u8> {
    let mut out = frame::PREFACE.to_vec();
    frame::put_head(&mut out, settings.len() * 6, frame::SETTINGS, 0, 0);
    for (id, v) in settings {
        out.extend_from_slice(&id.to_be_bytes());
        out.extend_from_slice(&v.to_be_bytes());
    }
    out
}

fn request(method: &str, path: &str, fields: &[(&str, &str)]) -> Vec<u8> {
    let mut b = Vec::new();
    hpack::encode_pseudo(&mut b, method.as_bytes(), b"http", b"example", path.as_bytes());
    for (n, v) in fields {
        hpack::encode_field(&mut b, n.as_bytes(), v.as_bytes());
    }
    b
}

fn headers(out: &mut Vec<u8>, id: u32, block: &[u8], end: bool) {
    frame::put_headers(out, id, block, end, 16_384);
}

fn data(out: &mut Vec<u8>, id: u32, body: &[u8], end: bool) {
    frame::put_head(out, body.len(), frame::DATA, if end { frame::END_STREAM } else { 0 }, id);
    out.extend_from_slice(body);
}

/// The frames the server wrote since the last call (taken from its output).
fn frames(s: &mut Server) -> Vec<(Head, Vec<u8>)> {
    let bytes = s.output().to_vec();
    s.wrote(bytes.len());
    let mut at = 0;
    let mut out = Vec::new();
    while at + frame::HEAD_LEN <= bytes.len() {
        let h = Head::parse(&bytes[at..]);
        out.push((h, bytes[at + 9..at + 9 + h.len].to_vec()));
        at += 9 + h.len;
    }
    assert_eq!(at, bytes.len(), "a partial frame in the output");
    out
}

fn code(p: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([p[at], p[at + 1], p[at + 2], p[at + 3]])
}

/// A server past the handshake (its own SETTINGS and the ACK of the client's taken).
fn ready(cfg: Config, settings: &[(u16, u32)]) -> Server {
    let mut s = Server::new(cfg);
    s.feed(&hello(settings)).unwrap();
    let f = frames(&mut s);
    assert_eq!(f[0].0.kind, frame::SETTINGS);
    assert!(f.iter().any(|(h, _)| h.kind == frame::SETTINGS && h.flags == frame::ACK));
    s
}

fn decoded(block: &[u8]) -> Vec<(String, String)> {
    let mut d = crate::h2::table::Decoder::new(4096);
    let mut out = Vec::new();
    d.decode::<hpack::HpackError>(block, &mut Default::default(), |n, v| {
        out.push((String::from_utf8_lossy(n).into_owned(), String::from_utf8_lossy(v).into_owned()));
        Ok(())
    })
    .unwrap();
    out
}

fn goaway(f: &[(Head, Vec<u8>)]) -> Option<u32> {
    f.iter().find(|(h, _)| h.kind == frame::GOAWAY).map(|(_, p)| code(p, 4))
}

fn resets(f: &[(Head, Vec<u8>)]) -> Vec<(u32, u32)> {
    f.iter().filter(|(h, _)| h.kind == frame::RST_STREAM).map(|(h, p)| (h.stream, code(p, 0))).collect()
}

#[test]
fn a_request_is_taken_and_answered() {
    let mut s = ready(Config::default(), &[]);
    let mut out = Vec::new();
    headers(&mut out, 1, &request("GET", "/a?b", &[("x-id", "7")]), true);
    // Fed a byte at a time: frames straddle reads.
    for b in &out {
        s.feed(std::slice::from_ref(b)).unwrap();
    }
    let (id, head, end) = s.accept().unwrap();
    assert_eq!((id, end), (1, true));
    assert_eq!(
        (head.method(), head.path(), head.authority()),
        (&b"GET"[..], Some(&b"/a?b"[..]), Some(&b"example"[..]))
    );
    assert_eq!(head.fields.get("x-id"), Some(&b"7"[..]));
    assert!(s.accept().is_none());
    s.send_head(1, 200, [(&b"Content-Type"[..], &b"text/plain"[..])], false).unwrap();
    s.send_data(1, b"hello", true).unwrap();
    let f = frames(&mut s);
    assert_eq!(f.len(), 2, "{f:?}");
    assert_eq!((f[0].0.kind, f[0].0.flags), (frame::HEADERS, frame::END_HEADERS));
    assert_eq!(decoded(&f[0].1), vec![(":status".into(), "200".into()), ("content-type".into(), "text/plain".into())]);
    assert_eq!((f[1].0.kind, f[1].0.flags, &f[1].1[..]), (frame::DATA, frame::END_STREAM, &b"hello"[..]));
    s.release(1);
    assert_eq!(s.active(), 0);
    assert!(frames(&mut s).is_empty(), "a stream answered whole is not reset");
}

#[test]
fn a_body_and_trailers_reach_the_reader_and_its_window_comes_back() {
    let mut s = ready(Config::default(), &[]);
    let mut out = Vec::new();
    headers(&mut out, 1, &request("POST", "/up", &[("content-length", "40000")]), false);
    for _ in 0..3 {
        data(&mut out, 1, &[b'x'; 10_000], false);
    }
    data(&mut out, 1, &[b'y'; 10_000], false);
    let mut t = Vec::new();
    hpack::encode_field(&mut t, b"x-sum", b"1");
    headers(&mut out, 1, &t, true);
    s.feed(&out).unwrap();
    let (id, head, end) = s.accept().unwrap();
    assert_eq!((id, end, head.content_length), (1, false, Some(40_000)));
    let mut buf = Vec::new();
    assert_eq!(s.poll_recv(1, &mut buf, &mut cx()), Poll::Ready(Recv::Data));
    assert_eq!(buf.len(), 40_000);
    let f = frames(&mut s);
    // The client has ended its body: no window to give back to the stream (the
    // connection's 1 MiB is announced back past half of it).
    assert_eq!(f.iter().filter(|(h, _)| h.kind == frame::WINDOW_UPDATE && h.stream == 1).count(), 0, "{f:?}");
    let Poll::Ready(Recv::Trailers(t)) = s.poll_recv(1, &mut buf, &mut cx()) else { panic!("no trailers") };
    assert_eq!(t.get("x-sum"), Some(&b"1"[..]));
    // A longer body, read as it comes: the window is given back past half of it.
    let mut out = Vec::new();
    headers(&mut out, 3, &request("POST", "/up", &[]), false);
    for _ in 0..3 {
        data(&mut out, 3, &[b'z'; 16_000], false);
    }
    s.feed(&out).unwrap();
    s.accept().unwrap();
    assert_eq!(s.poll_recv(3, &mut buf, &mut cx()), Poll::Ready(Recv::Data));
    let f = frames(&mut s);
    let updates: Vec<_> =
        f.iter().filter(|(h, _)| h.kind == frame::WINDOW_UPDATE).map(|(h, p)| (h.stream, code(p, 0))).collect();
    assert_eq!(updates, vec![(3, 48_000)]);
    assert_eq!(s.poll_recv(3, &mut buf, &mut cx()), Poll::Pending);
}

#[test]
fn a_body_past_the_window_or_its_length_resets_the_stream() {
    let mut s = ready(Config::default(), &[]);
    let mut out = Vec::new();
    headers(&mut out, 1, &request("POST", "/", &[]), false);
    for _ in 0..5 {
        data(&mut out, 1, &[0; 16_000], false);
    }
    s.feed(&out).unwrap();
    assert_eq!(resets(&frames(&mut s)), vec![(1, frame::FLOW_CONTROL_ERROR)]);
    for (cl, body, end) in [("5", 10, true), ("20", 10, true), ("5", 6, false)] {
        let mut s = ready(Config::default(), &[]);
        let mut out = Vec::new();
        headers(&mut out, 1, &request("POST", "/", &[("content-length", cl)]), false);
        data(&mut out, 1, &vec![0; body], end);
        s.feed(&out).unwrap();
        // Taken at its HEADERS, then reset: its reader hears of it.
        let mut buf = Vec::new();
        if s.accept().is_some() {
            assert_eq!(s.poll_recv(1, &mut buf, &mut cx()), Poll::Ready(Recv::Reset(frame::PROTOCOL_ERROR)));
        }
        assert_eq!(resets(&frames(&mut s)), vec![(1, frame::PROTOCOL_ERROR)], "content-length {cl}, {body} bytes");
    }
}

#[test]
fn a_response_waits_for_the_clients_windows() {
    let mut s = ready(Config::default(), &[(frame::INITIAL_WINDOW_SIZE, 10)]);
    let mut out = Vec::new();
    headers(&mut out, 1, &request("GET", "/", &[]), true);
    s.feed(&out).unwrap();
    s.accept().unwrap();
    s.send_head(1, 200, [], false).unwrap();
    assert_eq!(s.poll_capacity(1, &mut cx()), Poll::Ready(Ok(64 << 10)));
    s.send_data(1, &[b'a'; 25], false).unwrap();
    s.send_trailers(1, [(&b"grpc-status"[..], &b"0"[..])]).unwrap();
    let f = frames(&mut s);
    assert_eq!(
        f.iter().map(|(h, p)| (h.kind, p.len())).collect::<Vec<_>>(),
        vec![(frame::HEADERS, 1), (frame::DATA, 10)]
    );
    let mut out = Vec::new();
    frame::put_u32(&mut out, frame::WINDOW_UPDATE, 1, 100);
    s.feed(&out).unwrap();
    let f = frames(&mut s);
    assert_eq!(
        f.iter().map(|(h, p)| (h.kind, h.flags, p.len())).collect::<Vec<_>>(),
        vec![(frame::DATA, 0, 15), (frame::HEADERS, frame::END_STREAM | frame::END_HEADERS, 15)]
    );
    assert_eq!(decoded(&f[1].1), vec![("grpc-status".into(), "0".into())]);
    s.release(1);
    assert!(frames(&mut s).is_empty());
}

#[test]
fn the_smuggling_cases_are_reset_and_never_taken() {
    for field in
        [("transfer-encoding", "chunked"), ("connection", "close"), ("te", "gzip"), ("X-Up", "1"), ("x-a", "1\r\nx: y")]
    {
        let mut s = ready(Config::default(), &[]);
        let mut out = Vec::new();
        headers(&mut out, 1, &request("GET", "/", &[field]), true);
        s.feed(&out).unwrap();
        assert!(s.accept().is_none(), "{field:?}");
        assert_eq!(resets(&frames(&mut s)), vec![(1, frame::PROTOCOL_ERROR)], "{field:?}");
        // The connection goes on.
        let mut out = Vec::new();
        headers(&mut out, 3, &request("GET", "/", &[]), true);
        s.feed(&out).unwrap();
        assert_eq!(s.accept().map(|a| a.0), Some(3));
    }
}

#[test]
fn streams_over_the_limit_are_refused() {
    let mut s = ready(Config { max_streams: 2, ..Config::default() }, &[]);
    let mut out = Vec::new();
    for id in [1, 3, 5] {
        headers(&mut out, id, &request("GET", "/", &[]), true);
    }
    s.feed(&out).unwrap();
    assert_eq!(resets(&frames(&mut s)), vec![(5, frame::REFUSED_STREAM)]);
    assert_eq!((s.accept().map(|a| a.0), s.accept().map(|a| a.0), s.accept().is_none()), (Some(1), Some(3), true));
}

#[test]
fn a_rapid_reset_flood_ends_the_connection_and_answered_streams_forgive() {
    let reset_burst = |s: &mut Server, first: u32, n: u32| {
        let mut out = Vec::new();
        for i in 0..n {
            let id = first + 2 * i;
            headers(&mut out, id, &request("GET", "/", &[]), true);
            frame::put_u32(&mut out, frame::RST_STREAM, id, frame::CANCEL);
        }
        s.feed(&out)
    };
    let mut s = ready(Config::default(), &[]);
    assert_eq!(reset_burst(&mut s, 1, 65), Err(ConnError(frame::ENHANCE_YOUR_CALM)));
    assert_eq!(goaway(&frames(&mut s)), Some(frame::ENHANCE_YOUR_CALM));
    assert!(s.accept().is_none());
    // A client that cancels now and then, with answers between: never.
    let mut s = ready(Config::default(), &[]);
    let mut id = 1;
    for _ in 0..10 {
        reset_burst(&mut s, id, 60).unwrap();
        id += 120;
        let mut out = Vec::new();
        headers(&mut out, id, &request("GET", "/", &[]), true);
        s.feed(&out).unwrap();
        assert_eq!(s.accept().map(|a| a.0), Some(id));
        s.send_head(id, 204, [], true).unwrap();
        s.release(id);
        id += 2;
    }
    assert_eq!(goaway(&frames(&mut s)), None);
    assert_eq!(s.active(), 0);
    // Resets of streams taken are the caller's to count.
    let mut out = Vec::new();
    headers(&mut out, id, &request("GET", "/", &[]), true);
    s.feed(&out).unwrap();
    s.accept().unwrap();
    let mut out = Vec::new();
    frame::put_u32(&mut out, frame::RST_STREAM, id, frame::CANCEL);
    s.feed(&out).unwrap();
    assert_eq!(s.resets(), 1);
    assert_eq!(s.poll_reset(id, &mut cx()), Poll::Ready(frame::CANCEL));
    s.release(id);
    assert!(resets(&frames(&mut s)).is_empty(), "a stream the client reset is not reset again");
}

#[test]
fn floods_of_continuations_and_unread_pings_end_the_connection() {
    let mut s = ready(Config::default(), &[]);
    let mut out = Vec::new();
    frame::put_head(&mut out, 2, frame::HEADERS, 0, 1);
    out.extend_from_slice(&[0x82, 0x86]);
    let mut err = Ok(());
    for _ in 0..200 {
        let mut c = Vec::new();
        frame::put_head(&mut c, 1000, frame::CONTINUATION, 0, 1);
        c.extend_from_slice(&[0x40; 1000]);
        out.extend_from_slice(&c);
        err = s.feed(&std::mem::take(&mut out));
        if err.is_err() {
            break;
        }
    }
    assert_eq!(err, Err(ConnError(frame::ENHANCE_YOUR_CALM)));
    let mut s = ready(Config::default(), &[]);
    let mut out = Vec::new();
    frame::put_head(&mut out, 8, frame::PING, 0, 0);
    out.extend_from_slice(b"12345678");
    s.feed(&out).unwrap();
    let f = frames(&mut s);
    assert_eq!((f[0].0.kind, f[0].0.flags, &f[0].1[..]), (frame::PING, frame::ACK, &b"12345678"[..]));
    let mut err = Ok(());
    for _ in 0..20_000 {
        err = s.feed(&out);
        if err.is_err() {
            break;
        }
    }
    assert_eq!(err, Err(ConnError(frame::ENHANCE_YOUR_CALM)), "PINGs never read");
}

#[test]
fn broken_framing_is_a_connection_error() {
    let cases: Vec<(&str, Vec<u8>, u32)> = vec![
        ("no preface", b"GET / HTTP/1.1\r\n\r\n".to_vec(), frame::PROTOCOL_ERROR),
        (
            "HEADERS before SETTINGS",
            {
                let mut o = frame::PREFACE.to_vec();
                headers(&mut o, 1, &request("GET", "/", &[]), true);
                o
            },
            frame::PROTOCOL_ERROR,
        ),
        (
            "an even stream",
            {
                let mut o = hello(&[]);
                headers(&mut o, 2, &request("GET", "/", &[]), true);
                o
            },
            frame::PROTOCOL_ERROR,
        ),
        (
            "DATA on an idle stream",
            {
                let mut o = hello(&[]);
                data(&mut o, 1, b"x", true);
                o
            },
            frame::PROTOCOL_ERROR,
        ),
        (
            "a frame too big",
            {
                let mut o = hello(&[]);
                frame::put_head(&mut o, 20_000, frame::DATA, 0, 1);
                o
            },
            frame::FRAME_SIZE_ERROR,
        ),
        (
            "a bad HPACK index",
            {
                let mut o = hello(&[]);
                headers(&mut o, 1, &[0xff, 0x7f], true);
                o
            },
            frame::COMPRESSION_ERROR,
        ),
        (
            "PUSH_PROMISE",
            {
                let mut o = hello(&[]);
                frame::put_head(&mut o, 4, frame::PUSH_PROMISE, frame::END_HEADERS, 1);
                o.extend_from_slice(&[0, 0, 0, 2]);
                o
            },
            frame::PROTOCOL_ERROR,
        ),
        ("a window past 2^31-1", hello(&[(frame::INITIAL_WINDOW_SIZE, 1 << 31)]), frame::FLOW_CONTROL_ERROR),
        (
            "interleaved header blocks",
            {
                let mut o = hello(&[]);
                frame::put_head(&mut o, 1, frame::HEADERS, 0, 1);
                o.push(0x82);
                frame::put_head(&mut o, 8, frame::PING, 0, 0);
                o.extend_from_slice(&[0; 8]);
                o
            },
            frame::PROTOCOL_ERROR,
        ),
    ];
    for (what, bytes, want) in cases {
        let mut s = Server::new(Config::default());
        assert_eq!(s.feed(&bytes), Err(ConnError(want)), "{what}");
        assert_eq!(goaway(&frames(&mut s)), Some(want), "{what}");
        assert!(s.finished());
    }
}

#[test]
fn a_graceful_shutdown_lets_open_streams_finish_and_ignores_new_ones() {
    let mut s = ready(Config::default(), &[]);
    let mut out = Vec::new();
    headers(&mut out, 1, &request("GET", "/", &[]), true);
    s.feed(&out).unwrap();
    s.accept().unwrap();
    s.graceful_shutdown();
    let f = frames(&mut s);
    assert_eq!((goaway(&f), code(&f[0].1, 0)), (Some(0), 1));
    let mut out = Vec::new();
    headers(&mut out, 3, &request("GET", "/", &[]), true);
    s.feed(&out).unwrap();
    assert!(s.accept().is_none());
    assert!(!s.finished());
    s.send_head(1, 200, [], true).unwrap();
    s.release(1);
    assert!(s.finished());
}

#[test]
fn a_stream_let_go_unanswered_is_cancelled() {
    let mut s = ready(Config::default(), &[]);
    let mut out = Vec::new();
    headers(&mut out, 1, &request("POST", "/", &[]), false);
    s.feed(&out).unwrap();
    s.accept().unwrap();
    s.release(1);
    assert_eq!(resets(&frames(&mut s)), vec![(1, frame::CANCEL)]);
    // Its body, still arriving, is dropped and its window given back.
    let mut out = Vec::new();
    data(&mut out, 1, &[0; 16_000], false);
    s.feed(&out).unwrap();
    assert_eq!(s.active(), 0);
}

#[test]
fn any_bytes_after_the_preface_end_in_an_answer_or_an_error_never_a_panic() {
    // xorshift: the same inputs every run.
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for _ in 0..20_000 {
        let mut s = Server::new(Config { max_streams: 4, ..Config::default() });
        let mut input = hello(&[]);
        for _ in 0..(next() % 6) {
            let kind = (next() % 11) as u8;
            let len = (next() % 40) as usize;
            let flags = (next() % 64) as u8;
            let stream = (next() % 8) as u32;
            frame::put_head(&mut input, len, kind, flags, stream);
            input.extend((0..len).map(|_| next() as u8));
        }
        let _ = s.feed(&input);
        while let Some((id, _, _)) = s.accept() {
            let _ = s.send_head(id, 200, [], false);
            let _ = s.send_data(id, b"x", true);
            s.release(id);
        }
        let _ = frames(&mut s);
    }
}

#[test]
fn a_client_that_does_not_read_holds_a_budget_of_output_not_every_response() {
    // Wide windows (as h2load opens them), many streams, and output never written.
    let mut s = ready(Config::default(), &[(frame::INITIAL_WINDOW_SIZE, frame::MAX_WINDOW)]);
    let mut out = Vec::new();
    frame::put_u32(&mut out, frame::WINDOW_UPDATE, 0, frame::MAX_WINDOW - frame::DEFAULT_WINDOW);
    for id in (1..=39).step_by(2) {
        headers(&mut out, id, &request("GET", "/big", &[]), true);
    }
    s.feed(&out).unwrap();
    let _ = s.output().len();
    let mut ids = Vec::new();
    while let Some((id, _, _)) = s.accept() {
        s.send_head(id, 200, [], false).unwrap();
        ids.push(id);
    }
    let chunk = vec![b'x'; 16 << 10];
    let mut handed = 0usize;
    'fill: for _ in 0..100 {
        for &id in &ids {
            match s.poll_capacity(id, &mut cx()) {
                Poll::Ready(Ok(room)) => {
                    let n = room.min(chunk.len());
                    s.send_data(id, &chunk[..n], false).unwrap();
                    handed += n;
                }
                Poll::Ready(Err(_)) => panic!("stream {id} gone"),
                Poll::Pending => break 'fill,
            }
        }
    }
    let held = s.output().len();
    assert!(held <= (128 << 10) + (16 << 10), "{held} bytes of output held");
    assert!(handed < 200 << 10, "{handed} bytes handed over");
    // Written, the streams may go on.
    s.wrote(held);
    assert!(matches!(s.poll_capacity(ids[0], &mut cx()), Poll::Ready(Ok(n)) if n > 0));
    // A slow reader is not taken for a flood: its WINDOW_UPDATEs and PINGs are answered.
    let mut more = Vec::new();
    frame::put_head(&mut more, 8, frame::PING, 0, 0);
    more.extend_from_slice(b"87654321");
    s.feed(&more).unwrap();
}
