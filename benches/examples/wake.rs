//! The cost of one sleep and wake-up of a server thread, glommio (io_uring, built as every
//! engine executor is: `engine_runtime::Executor`) against an epoll loop (nginx's way), with
//! nothing else in the server: a 64-byte echo. The client sends one message at a time at a
//! fixed rate, so the server sleeps between messages as a proxy does at light load.
//!
//! ```sh
//! cargo build --release -p engine-benches --example wake
//! target/release/examples/wake glommio 2000 8    # server kind, messages a second, seconds
//! target/release/examples/wake epoll 2000 8
//! ```
//!
//! Prints the round trip's p50 and p99 and the server thread's CPU (user + system, from
//! `CLOCK_THREAD_CPUTIME_ID`) per message. The server runs on CPU 1 and the client on CPU 0.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd};
use std::time::{Duration, Instant};

use engine_runtime::executor::Executor;
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::Placement;

const MSG: usize = 64;

fn thread_cpu() -> Duration {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid, writable timespec for the call's duration.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

fn pin(cpu: usize) {
    // SAFETY: a zeroed cpu_set_t is a valid empty set; CPU_SET and sched_setaffinity get
    // pointers to it that live for the calls.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

/// Echoes `count` messages on the first connection, then returns the thread's CPU for them.
fn serve_glommio(listener: TcpListener, count: usize) -> Duration {
    let handle = Executor::new("wake-glommio", Placement::Fixed(1))
        .spawn(move || async move {
            // SAFETY: the descriptor is the std listener's, handed over with `into_raw_fd`.
            let listener = unsafe { glommio::net::TcpListener::from_raw_fd(listener.into_raw_fd()) };
            let mut s = listener.accept().await.unwrap();
            s.set_nodelay(true).unwrap();
            let mut buf = [0u8; MSG];
            s.read_exact(&mut buf).await.unwrap();
            s.write_all(&buf).await.unwrap();
            let start = thread_cpu();
            for _ in 1..count {
                s.read_exact(&mut buf).await.unwrap();
                s.write_all(&buf).await.unwrap();
            }
            thread_cpu() - start
        })
        .unwrap();
    handle.join().unwrap()
}

fn serve_epoll(listener: TcpListener, count: usize) -> Duration {
    std::thread::Builder::new()
        .name("wake-epoll".into())
        .spawn(move || {
            pin(1);
            let (mut s, _) = listener.accept().unwrap();
            s.set_nodelay(true).unwrap();
            s.set_nonblocking(true).unwrap();
            // SAFETY: plain system calls on descriptors this thread owns; `ev` outlives them.
            let ep = unsafe { libc::epoll_create1(0) };
            let mut ev = libc::epoll_event { events: libc::EPOLLIN as u32, u64: 0 };
            // SAFETY: as above.
            unsafe { libc::epoll_ctl(ep, libc::EPOLL_CTL_ADD, s.as_raw_fd(), &mut ev) };
            let mut buf = [0u8; MSG];
            let mut events = [libc::epoll_event { events: 0, u64: 0 }; 8];
            let mut start = None;
            let mut done = 0;
            let mut have = 0;
            while done < count {
                match s.read(&mut buf[have..]) {
                    Ok(0) => break,
                    Ok(n) => have += n,
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        // SAFETY: `events` is writable for its length.
                        unsafe { libc::epoll_wait(ep, events.as_mut_ptr(), events.len() as i32, -1) };
                        continue;
                    }
                    Err(e) => panic!("{e}"),
                }
                if have == MSG {
                    s.write_all(&buf).unwrap();
                    have = 0;
                    done += 1;
                    if done == 1 {
                        start = Some(thread_cpu());
                    }
                }
            }
            thread_cpu() - start.unwrap()
        })
        .unwrap()
        .join()
        .unwrap()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let usage = "usage: wake glommio|epoll RATE SECONDS";
    let kind = args.get(1).expect(usage).clone();
    let rate: u64 = args.get(2).and_then(|s| s.parse().ok()).expect(usage);
    let secs: u64 = args.get(3).and_then(|s| s.parse().ok()).expect(usage);
    let count = (rate * secs) as usize;
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = std::thread::spawn(move || match kind.as_str() {
        "glommio" => serve_glommio(listener, count),
        "epoll" => serve_epoll(listener, count),
        _ => panic!("{usage}"),
    });
    pin(0);
    let mut c = TcpStream::connect(addr).unwrap();
    c.set_nodelay(true).unwrap();
    let msg = [7u8; MSG];
    let mut back = [0u8; MSG];
    let gap = Duration::from_nanos(1_000_000_000 / rate);
    let mut rtts = Vec::with_capacity(count);
    let mut due = Instant::now();
    for _ in 0..count {
        let now = Instant::now();
        if due > now {
            std::thread::sleep(due - now);
        }
        let sent = Instant::now();
        c.write_all(&msg).unwrap();
        c.read_exact(&mut back).unwrap();
        rtts.push(sent.elapsed());
        due += gap;
    }
    let cpu = server.join().unwrap();
    rtts.sort();
    let q = |p: f64| rtts[((rtts.len() as f64 * p) as usize).min(rtts.len() - 1)].as_secs_f64() * 1e6;
    println!(
        "{} {rate}/s: rtt p50 {:.1} us p99 {:.1} us; server CPU {:.2} us a message",
        args[1],
        q(0.5),
        q(0.99),
        cpu.as_secs_f64() * 1e6 / (count - 1) as f64
    );
}
