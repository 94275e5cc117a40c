//! The client against real servers on loopback that misbehave, and that behave oddly but
//! validly. Every case must end in a summary: no panic, no hang, errors of the right kind.

mod support;

use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use support::{answer_each, blast, read_request, Scripted};

const MS: u64 = 400;

#[test]
fn garbage_is_a_parse_error() {
    let s = Scripted::start(|c| answer_each(c, b"garbage\r\n\r\n"));
    let r = blast(&s.url(), 2, MS, 1000);
    assert_eq!(r.requests, 0);
    assert!(r.errors.parse > 0, "{:?}", r.errors);
    assert_eq!(r.errors.total, r.errors.parse);
}

#[test]
fn truncated_body_is_closed() {
    let s = Scripted::start(|mut c| {
        if read_request(&mut c) {
            let _ = c.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nshort");
        }
    });
    let r = blast(&s.url(), 2, MS, 1000);
    assert_eq!(r.requests, 0);
    assert!(r.errors.closed > 0, "{:?}", r.errors);
    assert_eq!(r.errors.total, r.errors.closed);
}

#[test]
fn huge_header_is_a_parse_error_not_memory() {
    let s = Scripted::start(|mut c| {
        if read_request(&mut c) {
            let _ = c.write_all(b"HTTP/1.1 200 OK\r\nX-Huge: ");
            let chunk = vec![b'a'; 64 * 1024];
            for _ in 0..16 {
                if c.write_all(&chunk).is_err() {
                    return;
                }
            }
        }
    });
    let r = blast(&s.url(), 1, MS, 2000);
    assert_eq!(r.requests, 0);
    assert!(r.errors.parse > 0, "{:?}", r.errors);
}

#[test]
fn reset_is_counted_as_reset() {
    let s = Scripted::start(|mut c| {
        if read_request(&mut c) {
            // SO_LINGER 0: close sends RST.
            let _ = socket_linger_zero(&c);
        }
    });
    let r = blast(&s.url(), 2, MS, 1000);
    assert_eq!(r.requests, 0);
    assert!(r.errors.reset > 0, "{:?}", r.errors);
}

fn socket_linger_zero(c: &TcpStream) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let l = libc::linger { l_onoff: 1, l_linger: 0 };
    // SAFETY: setsockopt reads a linger struct of the size we pass.
    let rc = unsafe {
        libc::setsockopt(
            c.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            &l as *const libc::linger as *const libc::c_void,
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

#[test]
fn silence_is_a_timeout_and_the_run_still_ends() {
    let s = Scripted::start(|mut c| {
        if read_request(&mut c) {
            std::thread::sleep(Duration::from_secs(5));
        }
    });
    let t = Instant::now();
    let r = blast(&s.url(), 2, 600, 200);
    assert!(t.elapsed() < Duration::from_secs(4), "the run must not wait for a silent server");
    assert_eq!(r.requests, 0);
    assert!(r.errors.timeout >= 2, "{:?}", r.errors);
    assert_eq!(r.errors.total, r.errors.timeout);
}

/// Answers the first request with `head`, then `unit` over and over for up to 10 s.
fn flood(mut c: TcpStream, head: &[u8], unit: &[u8]) {
    if read_request(&mut c) && c.write_all(head).is_ok() {
        let burst = unit.repeat(64 * 1024 / unit.len());
        let until = Instant::now() + Duration::from_secs(10);
        while Instant::now() < until && c.write_all(&burst).is_ok() {}
    }
}

/// Servers whose bytes never stop: every read finds data waiting, so without a turn for the
/// shard's timers the request never timed out and the run overran its duration by seconds.
#[test]
fn a_server_that_never_stops_sending_times_out_and_the_run_ends() {
    type Server = fn(TcpStream);
    let floods: [(&str, Server); 3] = [
        ("1xx", |c| flood(c, b"", b"HTTP/1.1 100 Continue\r\n\r\n")),
        ("close-delimited body", |c| flood(c, b"HTTP/1.0 200 OK\r\n\r\n", &[b'x'; 4096])),
        ("chunked body", |c| flood(c, b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", b"1\r\nx\r\n")),
    ];
    for (name, server) in floods {
        let s = Scripted::start(server);
        let t = Instant::now();
        let r = blast(&s.url(), 2, 600, 300);
        // 0.6 s of run, then at most the 0.3 s timeout of a request still in flight.
        assert!(t.elapsed() < Duration::from_millis(2500), "{name}: the run took {:?}", t.elapsed());
        assert_eq!(r.requests, 0, "{name}");
        assert!(r.errors.timeout >= 2, "{name}: {:?}", r.errors);
    }
}

#[test]
fn bad_chunk_size_is_a_parse_error() {
    let s = Scripted::start(|c| {
        answer_each(c, b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nxyz\r\nhello\r\n0\r\n\r\n")
    });
    let r = blast(&s.url(), 2, MS, 1000);
    assert_eq!(r.requests, 0);
    assert!(r.errors.parse > 0, "{:?}", r.errors);
}

#[test]
fn extra_bytes_after_a_body_are_counted_and_the_connection_renewed() {
    let s = Scripted::start(|c| answer_each(c, b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokJUNK"));
    let r = blast(&s.url(), 1, MS, 1000);
    assert!(r.requests > 0);
    // Each response counts, each is followed by an unsolicited-bytes error and a reconnect.
    assert_eq!(r.errors.parse, r.requests);
    assert!(r.connections.opened >= r.requests);
}

#[test]
fn chunked_with_extensions_and_trailers() {
    let s = Scripted::start(|c| {
        answer_each(
            c,
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n0\r\nX-Trailer: t\r\n\r\n",
        )
    });
    let r = blast(&s.url(), 2, MS, 1000);
    assert!(r.requests > 100, "{}", r.requests);
    assert_eq!(r.errors.total, 0, "{:?}", r.errors);
    assert_eq!(r.connections.opened, 2, "keep-alive must hold");
}

#[test]
fn close_delimited_http10() {
    let s = Scripted::start(|mut c| {
        if read_request(&mut c) {
            let _ = c.write_all(b"HTTP/1.0 200 OK\r\n\r\nbody until close");
        }
    });
    let r = blast(&s.url(), 2, MS, 1000);
    assert!(r.requests > 10, "{}", r.requests);
    assert_eq!(r.errors.total, 0, "{:?}", r.errors);
    assert_eq!(r.status.get("200"), Some(&r.requests));
    // One connection per response, plus the ones open at the end.
    assert!(r.connections.opened >= r.requests);
}

#[test]
fn connection_close_is_honoured_with_a_reconnect() {
    let s = Scripted::start(|mut c| {
        if read_request(&mut c) {
            let _ = c.write_all(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok");
        }
    });
    let r = blast(&s.url(), 2, MS, 1000);
    assert!(r.requests > 10);
    assert_eq!(r.errors.total, 0, "{:?}", r.errors);
    assert!(r.connections.opened >= r.requests);
}

#[test]
fn interim_100_continue_is_skipped() {
    let s = Scripted::start(|c| {
        answer_each(c, b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n")
    });
    let r = blast(&s.url(), 2, MS, 1000);
    assert!(r.requests > 100);
    assert_eq!(r.errors.total, 0, "{:?}", r.errors);
    assert_eq!(r.status.keys().collect::<Vec<_>>(), vec!["201"]);
}

#[test]
fn no_content_204() {
    let s = Scripted::start(|c| answer_each(c, b"HTTP/1.1 204 No Content\r\n\r\n"));
    let r = blast(&s.url(), 2, MS, 1000);
    assert!(r.requests > 100);
    assert_eq!(r.errors.total, 0);
    assert_eq!(r.status.get("204"), Some(&r.requests));
}

#[test]
fn large_bodies_are_counted_not_stored() {
    let s = Scripted::start(|mut c| {
        let mut response = b"HTTP/1.1 200 OK\r\nContent-Length: 4194304\r\n\r\n".to_vec();
        response.resize(response.len() + 4 * 1024 * 1024, b'x');
        while read_request(&mut c) {
            if c.write_all(&response).is_err() {
                return;
            }
        }
    });
    let r = blast(&s.url(), 2, 600, 5000);
    assert!(r.requests > 0);
    assert_eq!(r.errors.total, 0, "{:?}", r.errors);
    assert!(r.bytes.received >= r.requests * 4 * 1024 * 1024);
}

#[test]
fn connect_refused_is_counted_during_the_run() {
    // The server accepts the pre-flight connection and then stops listening.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let handle = std::thread::spawn(move || {
        let _ = listener.accept();
        drop(listener);
    });
    let mut input = engine_blast::PlanInput::new(format!("http://{addr}/"));
    input.conns = 2;
    input.duration = Duration::from_millis(300);
    input.shards = Some(1);
    let plan = input.build().unwrap();
    let r = engine_blast::run(&plan, &engine_blast::Control::new(), &mut []);
    handle.join().unwrap();
    let r = r.unwrap();
    assert_eq!(r.requests, 0);
    assert!(r.errors.connect > 0, "{:?}", r.errors);
}
