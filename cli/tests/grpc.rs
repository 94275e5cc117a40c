//! gRPC unary load (issue 30, acceptance 4): against `engine target --grpc`, and against an
//! independent server (tonic, hyperium's gRPC: the service below is what its code generator
//! writes, by hand), the calls counted equal the server's count, and the calls a method is made
//! to fail (every tenth, with UNAVAILABLE) are exactly the `grpc` errors, by code.

// A test reads as one story from setup to the last assertion; the CLI's 60-line limit
// (cli/clippy.toml) is for its code.
#![allow(clippy::too_many_lines)]

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
    service Echo { rpc Echo (Say) returns (Say); rpc Fail (Say) returns (Say); }\n";

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

/// The tonic server, one for the test binary: its address and its service's counters.
fn tonic() -> &'static (std::net::SocketAddr, tonic_echo::Echo) {
    static SERVER: std::sync::OnceLock<(std::net::SocketAddr, tonic_echo::Echo)> = std::sync::OnceLock::new();
    SERVER.get_or_init(|| {
        let echo = tonic_echo::Echo::default();
        let served = echo.clone();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            #[allow(clippy::infinite_loop)] // the server serves until the test binary ends
            rt.block_on(async move {
                let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                tx.send(l.local_addr().unwrap()).unwrap();
                // hyper's HTTP/2 server, as tonic's own transport runs it (without its router).
                loop {
                    let Ok((s, _)) = l.accept().await else { continue };
                    let svc = hyper_util::service::TowerToHyperService::new(served.clone());
                    tokio::spawn(async move {
                        let io = hyper_util::rt::TokioIo::new(s);
                        let _ = hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new())
                            .http2_only()
                            .serve_connection(io, svc)
                            .await;
                    });
                }
            });
        });
        (rx.recv().unwrap(), echo)
    })
}

#[test]
fn calls_to_a_tonic_server_count_as_it_does() {
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (addr, echo) = tonic();
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
    let (addr, echo) = tonic();
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
