//! gRPC unary load (issue 30, acceptance 4): against `engine target --grpc`, and against an
//! independent server (tonic, hyperium's gRPC: the service below is what its code generator
//! writes, by hand), the calls counted equal the server's count, and the calls a method is made
//! to fail (every tenth, with UNAVAILABLE) are exactly the `grpc` errors, by code.
//!
//! gRPC through the proxy (issue 31, acceptance 1): the blast's calls and a real tonic client's
//! (unary and server streaming), over h2c and over TLS on both sides, faulted by method.

// A test reads as one story from setup to the last assertion; the CLI's 60-line limit
// (cli/clippy.toml) is for its code.
#![allow(clippy::too_many_lines)]

mod ports;

use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::Ordering;
use std::sync::Mutex;
use std::time::Duration;

use engine_target::{GrpcFail, Target, TargetConfig};

/// Two cores: one blast at a time.
static SERIAL: Mutex<()> = Mutex::new(());

const PROTO: &str = "syntax = \"proto3\";\npackage demo;\n\
    message Say { string text = 1; }\n\
    service Echo { rpc Echo (Say) returns (Say); rpc Fail (Say) returns (Say); \
    rpc Count (Say) returns (stream Say); }\n";

fn scratch() -> PathBuf {
    let d = std::env::temp_dir().join(format!("engine-grpc-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn proto() -> String {
    let p = scratch().join("echo.proto");
    std::fs::write(&p, PROTO).unwrap();
    p.display().to_string()
}

/// A blast of gRPC calls: its summary.
fn blast(url: &str, call: &str, extra: &[&str]) -> serde_json::Value {
    let proto = proto();
    let out = Command::new(env!("CARGO_BIN_EXE_engine"))
        .args(["blast", url, "--call", call, "--proto", &proto])
        .args(if extra.contains(&"--data") { &[][..] } else { &["--data", r#"{"text":"hello"}"#][..] })
        .args(["-c", "4", "--streams", "4", "-d", "1s", "--shards", "1", "--json", "-", "-q"])
        .args(extra)
        .current_dir(scratch())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.code().is_some_and(|c| c == 0), "engine failed: {err}");
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("no summary ({e}): {err}"))
}

/// Every call the server answered was measured; those it failed are the `grpc` errors.
fn counted(s: &serde_json::Value, served: u64, failed: u64, what: &str) {
    let requests = s["requests"].as_u64().unwrap();
    let abandoned = s["abandoned"].as_u64().unwrap();
    assert!(requests > 500, "{what}: {requests} calls");
    assert_eq!(requests + abandoned, served, "{what}: engine {requests} (+{abandoned} abandoned), server {served}");
    let codes = &s["grpc"]["codes"];
    assert_eq!(codes["OK"].as_u64().unwrap() + codes["UNAVAILABLE"].as_u64().unwrap_or(0), requests, "{what}: {codes}");
    // A failed call still in flight at the end is the server's and not the engine's.
    let unavailable = codes["UNAVAILABLE"].as_u64().unwrap_or(0);
    assert!(
        unavailable <= failed && failed <= unavailable + abandoned,
        "{what}: {unavailable} UNAVAILABLE, {failed} failed"
    );
    assert_eq!(s["errors"]["grpc"].as_u64().unwrap(), unavailable, "{what}: {}", s["errors"]);
    assert_eq!(s["errors"]["total"], s["errors"]["grpc"], "{what}: {}", s["errors"]);
}

#[test]
fn calls_to_the_target_count_as_it_does_and_fail_by_code() {
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut cfg = TargetConfig::loopback(Duration::ZERO).unwrap();
    cfg.grpc = Some(vec![GrpcFail::parse("demo.Echo/Fail:UNAVAILABLE:10").unwrap()]);
    let t = Target::start(cfg).unwrap();
    let url = format!("grpc://{}", t.local_addr());

    let s = blast(&url, "demo.Echo/Echo", &[]);
    std::thread::sleep(Duration::from_millis(100));
    counted(&s, t.served(), 0, "Echo");
    assert_eq!(s["grpc"]["call"], "demo.Echo/Echo");
    assert_eq!(s["http2"]["mode"], "h2c");
    let before = t.served();

    let s = blast(&url, "demo.Echo/Fail", &[]);
    std::thread::sleep(Duration::from_millis(100));
    let served = t.served() - before;
    counted(&s, served, served / 10, "Fail");
    assert!(s["errors"]["grpc"].as_u64().unwrap() > 50, "{}", s["errors"]);
    // What the plan expects is not an error; Prometheus has the calls by code (pushed at the
    // end to a listener standing in for a Pushgateway).
    let gw = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let push = format!("http://{}/metrics/job/grpc", gw.local_addr().unwrap());
    let pushed = std::thread::spawn(move || {
        use std::io::{Read, Write};
        let (mut c, _) = gw.accept().unwrap();
        let mut all = String::new();
        let mut chunk = [0u8; 65536];
        loop {
            let n = c.read(&mut chunk).unwrap();
            assert!(n > 0, "the push ended early: {all}");
            all.push_str(&String::from_utf8_lossy(&chunk[..n]));
            let Some((head, body)) = all.split_once("\r\n\r\n") else { continue };
            let len: usize =
                head.lines().find_map(|l| l.strip_prefix("Content-Length: ")).unwrap().trim().parse().unwrap();
            if body.len() >= len {
                c.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n").unwrap();
                return body.to_string();
            }
        }
    });
    let s = blast(&url, "demo.Echo/Fail", &["--expect-grpc-status", "OK,UNAVAILABLE", "--push", &push]);
    assert_eq!(s["errors"]["total"], 0, "{}", s["errors"]);
    let unavailable = s["grpc"]["codes"]["UNAVAILABLE"].as_u64().unwrap();
    assert!(unavailable > 50, "{}", s["grpc"]);
    let text = pushed.join().unwrap();
    let series = |line: &str| text.lines().find_map(|l| l.strip_prefix(line)).map(|v| v.trim().parse::<u64>().unwrap());
    assert_eq!(series(r#"engine_blast_grpc_calls_total{code="UNAVAILABLE"} "#), Some(unavailable), "{text}");
    assert_eq!(series(r#"engine_blast_grpc_calls_total{code="OK"} "#), s["grpc"]["codes"]["OK"].as_u64(), "{text}");
    assert_eq!(series("engine_blast_http2_goaways_total "), Some(0), "{text}");
    t.stop();

    // Over TLS (grpcs://), h2 by ALPN without fallback.
    let (config, pem) = engine_tls::self_signed(&["127.0.0.1"]).unwrap();
    let ca = scratch().join("ca.pem");
    std::fs::write(&ca, pem).unwrap();
    let mut cfg = TargetConfig::loopback(Duration::ZERO).unwrap();
    cfg.grpc = Some(Vec::new());
    cfg.tls = Some(config);
    let t = Target::start(cfg).unwrap();
    let s = blast(&format!("grpcs://{}", t.local_addr()), "demo.Echo/Echo", &["--cacert", ca.to_str().unwrap()]);
    std::thread::sleep(Duration::from_millis(100));
    counted(&s, t.served(), 0, "grpcs");
    assert_eq!(s["http2"]["connections"], serde_json::json!({"h2": 4}));
    t.stop();
}

/// The tonic service: `demo.Echo`, counting calls; `Fail` fails every tenth with UNAVAILABLE.
mod tonic_echo {
    use std::convert::Infallible;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;

    use tonic::codegen::{http, Body, BoxFuture, Service, StdError};
    use tonic::{Request, Response, Status};

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Say {
        #[prost(string, tag = "1")]
        pub text: String,
    }

    #[derive(Clone, Default)]
    pub struct Echo {
        pub calls: Arc<AtomicU64>,
        pub fails: Arc<AtomicU64>,
        /// The texts of the Echo calls, each once.
        pub texts: Arc<std::sync::Mutex<std::collections::HashSet<String>>>,
    }

    impl tonic::server::NamedService for Echo {
        const NAME: &'static str = "demo.Echo";
    }

    struct Unary(Echo, bool);

    impl tonic::server::UnaryService<Say> for Unary {
        type Response = Say;
        type Future = BoxFuture<Response<Say>, Status>;
        fn call(&mut self, request: Request<Say>) -> Self::Future {
            let (e, fail) = (self.0.clone(), self.1);
            Box::pin(async move {
                let n = e.calls.fetch_add(1, Ordering::Relaxed) + 1;
                if !fail {
                    e.texts.lock().unwrap().insert(request.get_ref().text.clone());
                }
                if fail && n % 10 == 0 {
                    e.fails.fetch_add(1, Ordering::Relaxed);
                    return Err(Status::unavailable("every tenth call fails"));
                }
                Ok(Response::new(request.into_inner()))
            })
        }
    }

    /// `Count`: `COUNT` messages, `text-0` to `text-19`.
    struct Counting;

    pub const COUNT: usize = 20;

    impl tonic::server::ServerStreamingService<Say> for Counting {
        type Response = Say;
        type ResponseStream = tonic::codegen::BoxStream<Say>;
        type Future = BoxFuture<Response<Self::ResponseStream>, Status>;
        fn call(&mut self, request: Request<Say>) -> Self::Future {
            let text = request.into_inner().text;
            let says: Vec<Result<Say, Status>> = (0..COUNT).map(|i| Ok(Say { text: format!("{text}-{i}") })).collect();
            Box::pin(async move {
                let stream: Self::ResponseStream = Box::pin(tonic::codegen::tokio_stream::iter(says));
                Ok(Response::new(stream))
            })
        }
    }

    /// hyper's HTTP/2 server on one connection, as tonic's own transport runs it (without its
    /// router).
    pub async fn serve<I>(io: I, echo: Echo)
    where
        I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    {
        let svc = hyper_util::service::TowerToHyperService::new(echo);
        let _ = hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new())
            .http2_only()
            .serve_connection(io, svc)
            .await;
    }

    impl<B> Service<http::Request<B>> for Echo
    where
        B: Body + Send + 'static,
        B::Error: Into<StdError> + Send + 'static,
    {
        type Response = http::Response<tonic::body::Body>;
        type Error = Infallible;
        type Future = BoxFuture<Self::Response, Self::Error>;

        fn poll_ready(&mut self, _: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), Infallible>> {
            std::task::Poll::Ready(Ok(()))
        }

        fn call(&mut self, req: http::Request<B>) -> Self::Future {
            let fail = match req.uri().path() {
                "/demo.Echo/Count" => {
                    return Box::pin(async move {
                        let mut grpc = tonic::server::Grpc::new(tonic_prost::ProstCodec::<Say, Say>::default());
                        Ok(grpc.server_streaming(Counting, req).await)
                    })
                }
                "/demo.Echo/Echo" => false,
                "/demo.Echo/Fail" => true,
                _ => return Box::pin(async { Ok(Status::unimplemented("no such method").into_http()) }),
            };
            let svc = Unary(self.clone(), fail);
            Box::pin(async move {
                let mut grpc = tonic::server::Grpc::new(tonic_prost::ProstCodec::<Say, Say>::default());
                Ok(grpc.unary(svc, req).await)
            })
        }
    }
}

/// The tonic server, one for the test binary: plain and over TLS (h2 by ALPN, its own
/// self-signed certificate for 127.0.0.1), with its service's counters.
struct Tonic {
    addr: std::net::SocketAddr,
    tls_addr: std::net::SocketAddr,
    echo: tonic_echo::Echo,
    /// The certificate (also the clients' CA) and key, as PEM files.
    cert: PathBuf,
    key: PathBuf,
}

fn tonic() -> &'static Tonic {
    static SERVER: std::sync::OnceLock<Tonic> = std::sync::OnceLock::new();
    SERVER.get_or_init(|| {
        let made = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).unwrap();
        let (cert, key) = (scratch().join("tonic-cert.pem"), scratch().join("tonic-key.pem"));
        std::fs::write(&cert, made.cert.pem()).unwrap();
        std::fs::write(&key, made.key_pair.serialize_pem()).unwrap();
        let tls = engine_tls::offering_h2(&engine_tls::server_config(&cert, &key).unwrap());
        let echo = tonic_echo::Echo::default();
        let served = echo.clone();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async move {
                let plain = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                let secure = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                tx.send((plain.local_addr().unwrap(), secure.local_addr().unwrap())).unwrap();
                let acceptor = tokio_rustls::TlsAcceptor::from(tls);
                let tls_echo = served.clone();
                tokio::spawn(async move {
                    loop {
                        let Ok((s, _)) = secure.accept().await else { continue };
                        let (acceptor, echo) = (acceptor.clone(), tls_echo.clone());
                        tokio::spawn(async move {
                            if let Ok(s) = acceptor.accept(s).await {
                                tonic_echo::serve(hyper_util::rt::TokioIo::new(s), echo).await;
                            }
                        });
                    }
                });
                // The server serves until the test binary ends.
                loop {
                    let Ok((s, _)) = plain.accept().await else { continue };
                    tokio::spawn(tonic_echo::serve(hyper_util::rt::TokioIo::new(s), served.clone()));
                }
            });
        });
        let (addr, tls_addr) = rx.recv().unwrap();
        Tonic { addr, tls_addr, echo, cert, key }
    })
}

#[test]
fn calls_to_a_tonic_server_count_as_it_does() {
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let Tonic { addr, echo, .. } = tonic();
    let (calls, fails, texts) = (&echo.calls, &echo.fails, &echo.texts);
    let url = format!("grpc://{addr}");
    let before = calls.load(Ordering::Relaxed);
    let s = blast(&url, "demo.Echo/Echo", &[]);
    counted(&s, calls.load(Ordering::Relaxed) - before, 0, "tonic Echo");
    let (before, failed) = (calls.load(Ordering::Relaxed), fails.load(Ordering::Relaxed));
    let s = blast(&url, "demo.Echo/Fail", &[]);
    counted(&s, calls.load(Ordering::Relaxed) - before, fails.load(Ordering::Relaxed) - failed, "tonic Fail");

    // Templated JSON: each call renders and encodes its own message.
    texts.lock().unwrap().clear();
    let before = calls.load(Ordering::Relaxed);
    let s = blast(&url, "demo.Echo/Echo", &["--data", r#"{"text":"user-{{seq}}"}"#]);
    let served = calls.load(Ordering::Relaxed) - before;
    counted(&s, served, 0, "tonic templated Echo");
    let texts = texts.lock().unwrap();
    assert_eq!(texts.len() as u64, served, "a message of its own for every call");
    assert!(texts.iter().all(|t| t.starts_with("user-") && t[5..].parse::<u64>().is_ok()), "{:?}", texts.iter().next());
}

/// The proxy in front of the tonic server, both sides h2c (issue 31, acceptance 1): a rule
/// aborting 20% of one method's calls with UNAVAILABLE shows exactly those to the client and
/// in the proxy's counters by code; a 50 ms delay on one method moves its p50 by 45-55 ms and
/// the other's not at all.
#[test]
fn grpc_through_the_proxy_is_faulted_by_method_and_counted_by_code() {
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let Tonic { addr, echo, .. } = tonic();
    let mut cfg = engine_proxy::ProxyConfig::new("127.0.0.1:0".parse().unwrap(), *addr).unwrap();
    cfg.faults = vec![serde_json::from_str(
        r#"{"id": "unavailable", "match": {"grpc_method": "/demo.Echo/Echo"}, "probability": 0.2,
            "action": {"abort": {"grpc_status": "UNAVAILABLE", "grpc_message": "shed by the proxy"}}}"#,
    )
    .unwrap()];
    let proxy = engine_proxy::Proxy::start(cfg).unwrap();
    let url = format!("grpc://{}", proxy.local_addr());
    let settle = || std::thread::sleep(Duration::from_millis(300));

    let before = echo.calls.load(Ordering::Relaxed);
    let s = blast(&url, "demo.Echo/Echo", &[]);
    settle();
    let stats = proxy.stats();
    let rule = &stats.fault_rules[0];
    let served = echo.calls.load(Ordering::Relaxed) - before;
    counted(&s, served + rule.injected, rule.injected, "Echo through the proxy");
    assert_eq!(s["grpc"]["codes"]["UNAVAILABLE"].as_u64(), Some(rule.injected), "{}", s["grpc"]);
    let share = rule.injected as f64 / rule.matched as f64;
    assert!((0.17..0.23).contains(&share), "{} of {} calls aborted", rule.injected, rule.matched);
    assert_eq!(stats.grpc_responses["UNAVAILABLE"], rule.injected, "{:?}", stats.grpc_responses);
    assert_eq!(stats.grpc_responses["OK"], served, "{:?}", stats.grpc_responses);
    assert_eq!(stats.protocols["h2"], rule.matched);
    let metrics = proxy.metrics();
    let unavailable = format!("engine_proxy_grpc_responses_total{{code=\"UNAVAILABLE\"}} {}", rule.injected);
    assert!(metrics.lines().any(|l| l == unavailable), "{metrics}");

    // The p50 of each method, before and after a 50 ms delay on Fail.
    let p50 = |call: &str| blast(&url, call, &[])["latency_ms"]["p50"].as_f64().unwrap();
    let (echo_before, fail_before) = (p50("demo.Echo/Echo"), p50("demo.Echo/Fail"));
    proxy
        .faults()
        .add(
            serde_json::from_str(r#"{"match": {"grpc_method": "/demo.Echo/Fail"}, "action": {"delay": {"ms": 50}}}"#)
                .unwrap(),
        )
        .unwrap();
    settle();
    let (echo_after, fail_after) = (p50("demo.Echo/Echo"), p50("demo.Echo/Fail"));
    let moved = fail_after - fail_before;
    assert!((45.0..=55.0).contains(&moved), "Fail p50 {fail_before} -> {fail_after} ms");
    assert!((echo_after - echo_before).abs() < 5.0, "Echo p50 {echo_before} -> {echo_after} ms");
    proxy.drain();
}

/// A real gRPC client: tonic's, over hyper's HTTP/2 client on one connection, plain or TLS.
mod tonic_client {
    use std::net::SocketAddr;
    use std::path::Path;
    use std::sync::Arc;
    use std::task::{Context, Poll};

    use rustls::pki_types::pem::PemObject;
    use tonic::client::Grpc;
    use tonic::codegen::{http, BoxFuture, Service};
    use tonic::{Request, Status};

    use super::tonic_echo::Say;

    /// hyper's HTTP/2 connection as the service tonic's client calls.
    #[derive(Clone)]
    pub struct H2(hyper::client::conn::http2::SendRequest<tonic::body::Body>);

    impl Service<http::Request<tonic::body::Body>> for H2 {
        type Response = http::Response<hyper::body::Incoming>;
        type Error = hyper::Error;
        type Future = BoxFuture<Self::Response, Self::Error>;

        fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), hyper::Error>> {
            self.0.poll_ready(cx)
        }

        fn call(&mut self, request: http::Request<tonic::body::Body>) -> Self::Future {
            Box::pin(self.0.send_request(request))
        }
    }

    /// A client of `addr`; over TLS (ALPN h2) trusting the certificate in `ca`.
    pub async fn connect(addr: SocketAddr, ca: Option<&Path>) -> Grpc<H2> {
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let exec = hyper_util::rt::TokioExecutor::new();
        let send = match ca {
            None => {
                let (send, conn) =
                    hyper::client::conn::http2::handshake(exec, hyper_util::rt::TokioIo::new(tcp)).await.unwrap();
                tokio::spawn(conn);
                send
            }
            Some(ca) => {
                let mut roots = rustls::RootCertStore::empty();
                roots.add(rustls::pki_types::CertificateDer::from_pem_file(ca).unwrap()).unwrap();
                let provider = Arc::new(rustls::crypto::ring::default_provider());
                let mut config = rustls::ClientConfig::builder_with_provider(provider)
                    .with_safe_default_protocol_versions()
                    .unwrap()
                    .with_root_certificates(roots)
                    .with_no_client_auth();
                config.alpn_protocols = vec![b"h2".to_vec()];
                let name = rustls::pki_types::ServerName::IpAddress(addr.ip().into());
                let tls = tokio_rustls::TlsConnector::from(Arc::new(config)).connect(name, tcp).await.unwrap();
                assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]), "h2 by ALPN");
                let (send, conn) =
                    hyper::client::conn::http2::handshake(exec, hyper_util::rt::TokioIo::new(tls)).await.unwrap();
                tokio::spawn(conn);
                send
            }
        };
        let scheme = if ca.is_some() { "https" } else { "http" };
        Grpc::with_origin(H2(send), format!("{scheme}://127.0.0.1").parse().unwrap())
    }

    fn codec() -> tonic_prost::ProstCodec<Say, Say> {
        tonic_prost::ProstCodec::default()
    }

    /// A unary call to `method` (`/demo.Echo/Echo`): the text it answered.
    pub async fn unary(g: &mut Grpc<H2>, method: &'static str, text: &str) -> Result<String, Status> {
        g.ready().await.map_err(|e| Status::unknown(e.to_string()))?;
        let path = http::uri::PathAndQuery::from_static(method);
        let said = g.unary(Request::new(Say { text: text.to_string() }), path, codec()).await?;
        Ok(said.into_inner().text)
    }

    /// A `Count` call: every message of its stream.
    pub async fn count(g: &mut Grpc<H2>, text: &str) -> Result<Vec<String>, Status> {
        g.ready().await.map_err(|e| Status::unknown(e.to_string()))?;
        let path = http::uri::PathAndQuery::from_static("/demo.Echo/Count");
        let mut stream =
            g.server_streaming(Request::new(Say { text: text.to_string() }), path, codec()).await?.into_inner();
        let mut out = Vec::new();
        while let Some(m) = stream.message().await? {
            out.push(m.text);
        }
        Ok(out)
    }
}

/// What a tonic client gets through the proxy: unary and server-streaming calls intact, the
/// server's own failure with its status and message, and a proxy rule's answer as a gRPC status.
async fn calls_pass_intact(g: &mut tonic::client::Grpc<tonic_client::H2>, what: &str) {
    use tonic_client::{count, unary};
    let n = tonic_echo::COUNT;
    assert_eq!(count(g, "n").await.unwrap(), (0..n).map(|i| format!("n-{i}")).collect::<Vec<_>>(), "{what}");
    assert_eq!(unary(g, "/demo.Echo/Echo", "héllo, wörld").await.unwrap(), "héllo, wörld", "{what}");
    // The tonic server fails every tenth call it takes: one of ten in a row.
    let mut failed = Vec::new();
    for i in 0..10 {
        match unary(g, "/demo.Echo/Fail", &i.to_string()).await {
            Ok(text) => assert_eq!(text, i.to_string(), "{what}"),
            Err(s) => failed.push((s.code(), s.message().to_string())),
        }
    }
    assert_eq!(failed, [(tonic::Code::Unavailable, "every tenth call fails".to_string())], "{what}");
}

/// Issue 31, acceptance 1 with a real gRPC client: unary and server-streaming calls through
/// the proxy over h2c on both sides and over TLS on both sides (h2 by ALPN).
#[test]
fn grpc_unary_and_server_streaming_pass_the_proxy_over_h2c_and_tls() {
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let t = tonic();
    let mut cfg = engine_proxy::ProxyConfig::new("127.0.0.1:0".parse().unwrap(), t.addr).unwrap();
    cfg.faults = vec![serde_json::from_str(
        r#"{"match": {"grpc_method": "/demo.Echo/Count"}, "first": 1,
            "action": {"abort": {"grpc_status": "RESOURCE_EXHAUSTED", "grpc_message": "quota: 100% used"}}}"#,
    )
    .unwrap()];
    let proxy = engine_proxy::Proxy::start(cfg).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let mut g = tonic_client::connect(proxy.local_addr(), None).await;
        let e = tonic_client::count(&mut g, "n").await.unwrap_err();
        assert_eq!((e.code(), e.message()), (tonic::Code::ResourceExhausted, "quota: 100% used"));
        calls_pass_intact(&mut g, "h2c").await;
    });
    std::thread::sleep(Duration::from_millis(300));
    let stats = proxy.stats();
    let codes: Vec<(&str, u64)> = stats.grpc_responses.iter().map(|(k, v)| (*k, *v)).collect();
    assert_eq!(codes, [("OK", 11), ("RESOURCE_EXHAUSTED", 1), ("UNAVAILABLE", 1)]);
    proxy.drain();

    // TLS on both sides: the engine binary, as a user runs it.
    let (cert, key) = (t.cert.to_str().unwrap(), t.key.to_str().unwrap());
    let port = ports::free_port();
    let listen = format!("127.0.0.1:{port}");
    let mut child = Command::new(env!("CARGO_BIN_EXE_engine"))
        .args(["proxy", "--listen", &listen, "--admin", "off", "--shards", "1", "--upstream-protocol", "h2"])
        .args(["--upstream", &format!("https://{}", t.tls_addr), "--upstream-ca", cert])
        .args(["--tls-cert", cert, "--tls-key", key])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(&listen).is_err() {
        assert!(std::time::Instant::now() < deadline, "the TLS proxy did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    rt.block_on(async {
        let mut g = tonic_client::connect(listen.parse().unwrap(), Some(&t.cert)).await;
        calls_pass_intact(&mut g, "TLS both sides").await;
    });
    let _ = child.kill();
    let _ = child.wait();
}
