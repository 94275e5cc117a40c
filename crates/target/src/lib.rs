//! `engine target`: a small, fast HTTP/1.1 server to aim a blast at (demos, self-tests,
//! calibration). One glommio executor per CPU, all accepting on one port (SO_REUSEPORT).
//! Keep-alive, pipelining, a fixed body, an optional delay before each response; with
//! `http2`, HTTP/2 on the same port: by prior knowledge, or by ALPN over TLS (the `h2c`
//! module).

mod grpc;
mod h2c;

pub use grpc::GrpcFail;

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::io::{self, Write as _};
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use glommio::net::{TcpListener, TcpStream};
use glommio::Placement;

use engine_http::body::BodyDecoder;
use engine_http::forward::reason;
use engine_http::header_slots;
use engine_http::request::{self, Framing, MAX_REQUEST_HEADERS};
use engine_runtime::{listen, tick, Executor};
use engine_tls::{ServerConfig, ServerConnection, Stream};

/// Largest response body `engine target` serves: the whole response is held in memory, once.
pub const MAX_BODY_SIZE: usize = 1 << 30;

/// How often a shard reads the stop flag and publishes its count of responses.
const TICK: Duration = Duration::from_millis(20);

/// Largest request body the target skips over on a kept-alive connection (413 above).
const MAX_REQUEST_BODY: u64 = 64 * 1024 * 1024;

/// A client that has not finished its TLS handshake by then is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone)]
pub struct TargetConfig {
    pub listen: SocketAddr,
    /// Size of the response body (bytes of `x`; 2 bytes `ok` by default).
    pub body_size: usize,
    /// Wait this long before answering each request.
    pub delay: Duration,
    pub shard_cpus: Vec<usize>,
    /// Serve HTTPS with this configuration (`--tls-cert/--tls-key`, or a throwaway one).
    pub tls: Option<Arc<ServerConfig>>,
    /// Also answer HTTP/2: by prior knowledge (h2c) on a plain port, by ALPN over TLS.
    pub http2: bool,
    /// Answer gRPC calls over HTTP/2 (an echo), failing these calls (`None`: no gRPC).
    pub grpc: Option<Vec<GrpcFail>>,
    /// HTTP/2: streams a client may have open at once on a connection (the
    /// `SETTINGS_MAX_CONCURRENT_STREAMS` it is sent; `None`: `h2`'s default, no limit).
    pub max_streams: Option<u32>,
}

impl TargetConfig {
    /// One shard on the first CPU the process may use, on a free loopback port: the target
    /// for demos and tests.
    pub fn loopback(delay: Duration) -> io::Result<Self> {
        let cpu = engine_runtime::affinity::allowed_cpus()?.first().copied().unwrap_or(0);
        Ok(Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            body_size: 2,
            delay,
            shard_cpus: vec![cpu],
            tls: None,
            http2: false,
            grpc: None,
            max_streams: None,
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    #[error("cannot listen on {addr}: {cause}")]
    Bind { addr: SocketAddr, cause: io::Error },
    #[error("cannot start target shard on CPU {cpu}: {reason}")]
    Spawn { cpu: usize, reason: String },
}

/// A running target. Dropping it stops it.
pub struct Target {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    served: Arc<AtomicU64>,
    handles: Vec<glommio::ExecutorJoinHandle<()>>,
}

impl Target {
    /// Starts the shards and returns once every one of them is listening.
    pub fn start(cfg: TargetConfig) -> Result<Target, TargetError> {
        let stop = Arc::new(AtomicBool::new(false));
        let served = Arc::new(AtomicU64::new(0));
        let response = Arc::new(Responses::new(cfg.body_size));

        let mut addr = cfg.listen;
        let mut handles = Vec::new();
        for (i, &cpu) in cfg.shard_cpus.iter().enumerate() {
            // The first shard binds (port 0 picks a port); the others join its port.
            let (shard_stop, served, response) = (stop.clone(), served.clone(), response.clone());
            // Over TLS, HTTP/2 is what ALPN agrees on.
            let http2 = cfg.http2 || cfg.grpc.is_some();
            let tls = cfg.tls.as_ref().map(|c| if http2 { engine_tls::offering_h2(c) } else { c.clone() });
            let how = Serving { delay: cfg.delay, tls, http2, grpc: cfg.grpc.clone(), max_streams: cfg.max_streams };
            let bind = if i == 0 { listen::Bind::Own(addr) } else { listen::Bind::Join(addr) };
            let started =
                listen::spawn_bound(Executor::new(format!("target-{i}"), Placement::Fixed(cpu)), bind, move |l| {
                    serve(l, shard_stop, served, response, how)
                });
            let (bound, handle) = match started {
                Ok(s) => s,
                Err(e) => {
                    stop.store(true, Ordering::Relaxed);
                    return Err(match e {
                        listen::ListenError::Bind { addr, cause } => TargetError::Bind { addr, cause },
                        listen::ListenError::Spawn { reason, .. } => TargetError::Spawn { cpu, reason },
                    });
                }
            };
            addr = bound;
            handles.push(handle);
        }
        Ok(Target { addr, stop, served, handles })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Responses written so far, over all shards.
    pub fn served(&self) -> u64 {
        self.served.load(Ordering::Relaxed)
    }

    /// Stops accepting, closes connections and waits for the shards; returns every response
    /// written, the last tick's included (which [`Target::served`] read before the stop would
    /// miss: the shards publish their counts once a tick, and the rest as they end).
    pub fn stop(mut self) -> u64 {
        self.shutdown();
        self.served()
    }

    /// Blocks until the target is stopped by `stop_flag` (a signal handler, say).
    pub fn stop_flag(&self) -> Arc<AtomicBool> {
        self.stop.clone()
    }

    fn shutdown(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for h in self.handles.drain(..) {
            let _ = h.join();
        }
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// The bytes the target answers with, rendered once: kept alive, and closing (for a request
/// that asked `Connection: close`, the response says so).
struct Responses {
    full: Vec<u8>,
    head_len: usize,
    closing: Vec<u8>,
    closing_head_len: usize,
}

impl Responses {
    fn new(body_size: usize) -> Self {
        let body = if body_size == 2 { b"ok".to_vec() } else { vec![b'x'; body_size] };
        let render = |extra: &str| {
            let mut full =
                format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\nContent-Type: text/plain\r\n{extra}\r\n", body.len())
                    .into_bytes();
            let head_len = full.len();
            full.extend_from_slice(&body);
            (full, head_len)
        };
        let (full, head_len) = render("");
        let (closing, closing_head_len) = render("Connection: close\r\n");
        Self { full, head_len, closing, closing_head_len }
    }

    /// The body alone.
    fn body(&self) -> &[u8] {
        &self.full[self.head_len..]
    }

    /// The response to write: the head alone for HEAD.
    fn bytes(&self, head_only: bool, close: bool) -> &[u8] {
        let (full, head_len) = if close { (&self.closing, self.closing_head_len) } else { (&self.full, self.head_len) };
        if head_only {
            &full[..head_len]
        } else {
            full
        }
    }
}

/// How a shard answers (its part of the configuration).
struct Serving {
    delay: Duration,
    tls: Option<Arc<ServerConfig>>,
    http2: bool,
    grpc: Option<Vec<GrpcFail>>,
    max_streams: Option<u32>,
}

/// Per-shard state of the target.
struct TargetShard {
    response: Arc<Responses>,
    delay: Duration,
    tls: Option<Arc<ServerConfig>>,
    http2: bool,
    max_streams: Option<u32>,
    /// gRPC: the calls per method, and the failures asked for.
    grpc: Option<grpc::Calls>,
    /// Responses written since the last publication to the shared counter.
    served: Cell<u64>,
    /// Open connections' sockets, so a stop can wake every pending read.
    open: RefCell<HashMap<u64, RawFd>>,
    next_id: Cell<u64>,
}

async fn serve(
    listener: TcpListener,
    stop: Arc<AtomicBool>,
    served: Arc<AtomicU64>,
    response: Arc<Responses>,
    how: Serving,
) {
    let shard = Rc::new(TargetShard {
        response,
        delay: how.delay,
        tls: how.tls,
        http2: how.http2,
        max_streams: how.max_streams,
        grpc: how.grpc.map(grpc::Calls::new),
        served: Cell::new(0),
        open: RefCell::new(HashMap::new()),
        next_id: Cell::new(0),
    });
    let accept = async {
        loop {
            match listener.accept().await {
                Ok(stream) => {
                    glommio::spawn_local(connection(shard.clone(), stream)).detach();
                }
                // Out of descriptors, or a connection reset while queued: keep accepting.
                Err(_) => glommio::timer::sleep(Duration::from_millis(5)).await,
            }
        }
    };
    let watch = async {
        while !stop.load(Ordering::Relaxed) {
            glommio::timer::sleep(tick(TICK)).await;
            served.fetch_add(shard.served.replace(0), Ordering::Relaxed);
        }
    };
    futures_lite::future::or(accept, watch).await;
    drop(listener);
    // Wake every connection; each sees end of stream and finishes.
    for &fd in shard.open.borrow().values() {
        // The fd belongs to a connection still registered, hence still open.
        engine_runtime::fd::shutdown(fd, engine_runtime::fd::How::Both);
    }
    for _ in 0..100 {
        if shard.open.borrow().is_empty() {
            break;
        }
        glommio::timer::sleep(Duration::from_millis(5)).await;
    }
    served.fetch_add(shard.served.replace(0), Ordering::Relaxed);
}

/// Removes a connection from the registry however its task ends.
struct Registered<'a>(&'a TargetShard, u64);

impl Drop for Registered<'_> {
    fn drop(&mut self) {
        self.0.open.borrow_mut().remove(&self.1);
    }
}

/// The connection's stream, after the TLS handshake when the target serves HTTPS.
async fn open(shard: &TargetShard, tcp: TcpStream) -> Option<Stream<ServerConnection>> {
    let _ = tcp.set_nodelay(true);
    let Some(config) = &shard.tls else { return Some(Stream::Tcp(tcp)) };
    let conn = engine_tls::accept(config).ok()?;
    // Boxed: the handshake's state is kilobytes, and only a few are in flight at a time.
    let tls = Box::pin(engine_tls::handshake_within(tcp, conn, HANDSHAKE_TIMEOUT)).await.ok()?;
    Some(Stream::Tls(Box::new(tls)))
}

async fn connection(shard: Rc<TargetShard>, tcp: TcpStream) {
    let id = shard.next_id.get();
    shard.next_id.set(id + 1);
    shard.open.borrow_mut().insert(id, tcp.as_raw_fd());
    let _registered = Registered(&shard, id);
    let Some(mut stream) = open(&shard, tcp).await else { return };
    if let Stream::Tls(t) = &stream {
        if t.negotiated().alpn == Some("h2") {
            return h2c::serve(shard.clone(), stream).await;
        }
    }

    let mut buf: Vec<u8> = Vec::with_capacity(4096);
    // Bytes read and not answered yet: the ones a sniff for HTTP/2 read.
    let mut unanswered = false;
    if let (true, Stream::Tcp(_)) = (shard.http2, &stream) {
        let mut chunk = [0u8; 64];
        let is_h2 = loop {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
            if let Some(h2) = h2c::sniff(&buf) {
                break h2;
            }
        };
        if is_h2 {
            return h2c::serve_h2c(shard.clone(), stream, buf).await;
        }
        unanswered = true;
    }
    let mut out: Vec<u8> = Vec::new();
    // The body of the last request, skipped as it arrives.
    let mut body: Option<BodyDecoder> = None;
    loop {
        if !std::mem::take(&mut unanswered) {
            if buf.len() == buf.capacity() {
                buf.reserve(4096);
            }
            let old = buf.len();
            buf.resize(buf.capacity(), 0);
            let n = match stream.read(&mut buf[old..]).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            buf.truncate(old + n);
        }
        out.clear();
        let Ok((pos, answered, close)) = answer(&shard, &buf, &mut body, &mut out) else { return };
        buf.drain(..pos);
        if !out.is_empty() {
            if !shard.delay.is_zero() {
                glommio::timer::sleep(shard.delay).await;
            }
            if stream.write_all(&out).await.is_err() {
                return;
            }
            shard.served.set(shard.served.get() + answered);
        }
        if close {
            return;
        }
    }
}

/// Answers every complete request in `buf` into `out`, skipping bodies: returns the bytes
/// used, the responses written, and whether the connection closes after them. `Err`: a body
/// the client framed wrongly, after which nothing on the connection can be read.
fn answer(
    shard: &TargetShard,
    buf: &[u8],
    body: &mut Option<BodyDecoder>,
    out: &mut Vec<u8>,
) -> Result<(usize, u64, bool), engine_http::FrameError> {
    let (mut pos, mut answered) = (0, 0u64);
    loop {
        if let Some(b) = body.as_mut() {
            let (used, done) = b.feed(&buf[pos..])?;
            pos += used;
            if !done {
                return Ok((pos, answered, false));
            }
            *body = None;
        }
        if pos == buf.len() {
            return Ok((pos, answered, false));
        }
        let mut slots = header_slots::<MAX_REQUEST_HEADERS>();
        match request::parse(&buf[pos..], &mut slots) {
            Ok(None) => return Ok((pos, answered, false)),
            Err(e) => {
                let status = e.status();
                let _ = write!(
                    out,
                    "HTTP/1.1 {status} {}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                    reason(status)
                );
                return Ok((buf.len(), answered, true));
            }
            Ok(Some(head)) => {
                pos += head.len;
                *body = match head.framing {
                    Framing::None => None,
                    Framing::Length(n) if n > MAX_REQUEST_BODY => {
                        out.extend_from_slice(
                            b"HTTP/1.1 413 Content Too Large\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                        );
                        return Ok((buf.len(), answered, true));
                    }
                    Framing::Length(n) => Some(BodyDecoder::length(n)),
                    Framing::Chunked => Some(BodyDecoder::chunked()),
                };
                out.extend_from_slice(shard.response.bytes(head.method == "HEAD", !head.keep_alive));
                answered += 1;
                if !head.keep_alive {
                    return Ok((buf.len(), answered, true));
                }
            }
        }
    }
}
