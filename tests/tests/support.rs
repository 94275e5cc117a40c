//! Scripted HTTP servers on 127.0.0.1 with an ephemeral port, and a short blast against them.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use engine_blast::{Control, PlanInput, Summary};

/// A server whose every connection is handed to `behave`. Stops (and stops accepting) on drop.
pub struct Scripted {
    pub addr: SocketAddr,
    stop: Arc<AtomicBool>,
    /// Connections accepted.
    pub accepted: Arc<AtomicU64>,
}

impl Scripted {
    pub fn start(behave: fn(TcpStream)) -> Scripted {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let accepted = Arc::new(AtomicU64::new(0));
        let (s, a) = (stop.clone(), accepted.clone());
        thread::spawn(move || {
            for conn in listener.incoming() {
                if s.load(Ordering::Relaxed) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                a.fetch_add(1, Ordering::Relaxed);
                thread::spawn(move || behave(conn));
            }
        });
        Scripted { addr, stop, accepted }
    }

    pub fn url(&self) -> String {
        format!("http://{}/", self.addr)
    }
}

impl Drop for Scripted {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect(self.addr);
    }
}

/// Reads one request head (the blast sends no body by default). False at end of stream.
pub fn read_request(conn: &mut TcpStream) -> bool {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match conn.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => return false,
        }
        if head.len() > 64 * 1024 {
            return false;
        }
    }
    true
}

/// Answers every request on the connection with `response`.
pub fn answer_each(mut conn: TcpStream, response: &[u8]) {
    while read_request(&mut conn) {
        if conn.write_all(response).is_err() {
            return;
        }
    }
}

/// Blasts `url` with `conns` connections on one shard for `ms` milliseconds.
pub fn blast(url: &str, conns: u64, ms: u64, timeout_ms: u64) -> Summary {
    let mut input = PlanInput::new(url);
    input.conns = conns;
    input.duration = Duration::from_millis(ms);
    input.timeout = Duration::from_millis(timeout_ms);
    input.shards = Some(1);
    let plan = input.build().expect("valid plan");
    engine_blast::run(&plan, &Control::new(), &mut []).expect("run completes")
}
