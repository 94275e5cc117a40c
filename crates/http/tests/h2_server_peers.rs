//! The HTTP/2 server codec against real clients: curl, nghttp and h2load over h2c by prior
//! knowledge, on 127.0.0.1, served by a blocking loop around `engine_http::h2::server`. Each
//! answer names the path and the body bytes received, so a request mangled on the way (HPACK
//! with the client's dynamic table, flow control of an upload) shows in what comes back.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::Command;
use std::task::{Context, Poll, Waker};
use std::thread;

use engine_http::h2::server::{Config, Recv, Server};

fn serve(mut sock: TcpStream) {
    let mut s = Server::new(Config::default());
    let mut cx = Context::from_waker(Waker::noop());
    let (mut buf, mut chunk) = (vec![0; 64 << 10], Vec::new());
    // Streams whose request body is still arriving: id, path, bytes so far.
    let mut open: Vec<(u32, Vec<u8>, usize)> = Vec::new();
    loop {
        while !s.output().is_empty() {
            match sock.write(s.output()) {
                Ok(n) if n > 0 => s.wrote(n),
                _ => return,
            }
        }
        if s.finished() {
            return;
        }
        let n = match sock.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        let failed = s.feed(&buf[..n]).is_err();
        while let Some((id, head, _)) = s.accept() {
            open.push((id, head.path().unwrap_or_default().to_vec(), 0));
        }
        open.retain_mut(|(id, path, got)| loop {
            match s.poll_recv(*id, &mut chunk, &mut cx) {
                Poll::Ready(Recv::Data) => *got += chunk.len(),
                Poll::Ready(Recv::End | Recv::Trailers(_)) => {
                    let body = format!("{} {got}\n", String::from_utf8_lossy(path));
                    let len = body.len().to_string();
                    let fields = [(&b"content-type"[..], &b"text/plain"[..]), (b"content-length", len.as_bytes())];
                    let _ = s.send_head(*id, 200, fields, false);
                    let _ = s.send_data(*id, body.as_bytes(), true);
                    s.release(*id);
                    return false;
                }
                Poll::Ready(Recv::Reset(_)) => {
                    s.release(*id);
                    return false;
                }
                Poll::Pending => return true,
            }
        });
        if failed {
            let _ = sock.write_all(s.output());
            return;
        }
    }
}

fn server() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    thread::spawn(move || {
        for sock in l.incoming().flatten() {
            thread::spawn(move || serve(sock));
        }
    });
    port
}

#[test]
fn curl_gets_and_uploads_through_the_server_codec() {
    let port = server();
    let url = format!("http://127.0.0.1:{port}");
    let out = Command::new("curl")
        .args(["-sS", "--http2-prior-knowledge", "-H", "x-trace: abc", &format!("{url}/a?x=1")])
        .output()
        .expect("curl");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "/a?x=1 0\n");
    // 3 MB up: many times the 64 KiB stream window, so its updates are what let it through.
    let upload = std::env::temp_dir().join(format!("h2-server-upload-{port}"));
    std::fs::write(&upload, vec![b'u'; 3_000_000]).unwrap();
    let out = Command::new("curl")
        .args(["-sS", "--http2-prior-knowledge", "--data-binary"])
        .arg(format!("@{}", upload.display()))
        .arg(format!("{url}/up"))
        .output()
        .expect("curl");
    let _ = std::fs::remove_file(&upload);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "/up 3000000\n");
}

#[test]
fn nghttp_sends_several_requests_on_one_connection() {
    // curl 7.88 cannot reuse an h2c connection (its second transfer fails the same way against
    // nginx); nghttp sends them together, its later fields from its HPACK table, with
    // PRIORITY frames for idle streams first.
    let port = server();
    let urls: Vec<String> = ["/a", "/b?c=d", "/e"].iter().map(|p| format!("http://127.0.0.1:{port}{p}")).collect();
    let out = Command::new("nghttp").arg("-H").arg("x-trace: abc").args(&urls).output().expect("nghttp");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let mut got: Vec<String> = String::from_utf8_lossy(&out.stdout).lines().map(String::from).collect();
    got.sort();
    assert_eq!(got, ["/a 0", "/b?c=d 0", "/e 0"]);
}

#[test]
fn h2load_is_served_every_request_over_multiplexed_streams() {
    let port = server();
    let out = Command::new("h2load")
        .args(["-n", "4000", "-c", "4", "-m", "10", &format!("http://127.0.0.1:{port}/load")])
        .output()
        .expect("h2load");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("4000 total, 4000 started, 4000 done, 4000 succeeded, 0 failed, 0 errored"), "{text}");
    assert!(text.contains("status codes: 4000 2xx"), "{text}");
}
