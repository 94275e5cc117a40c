//! Prometheus for both modes, with the real thing: `promtool check metrics` on both
//! endpoints, a real Prometheus server scraping a blast and a proxy, the deploy/ files, and
//! `--push` to a Pushgateway-shaped listener. `.ci/run` installs Debian's `prometheus`
//! package (prometheus and promtool).

// A test reads as one story from setup to the last assertion; the CLI's 60-line limit
// (cli/clippy.toml) is for its code.
#![allow(clippy::too_many_lines)]

mod ports;
#[macro_use]
mod require;

use ports::free_port;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use engine_target::{Target, TargetConfig};

/// These tests load the machine; one at a time, so the rate checks are not starved.
static HEAVY: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn heavy() -> std::sync::MutexGuard<'static, ()> {
    HEAVY.lock().unwrap_or_else(|e| e.into_inner())
}

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("engine-prom-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// GET over a fresh connection; the body of a 200.
fn get(addr: SocketAddr, path: &str) -> Option<String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes()).ok()?;
    let mut all = String::new();
    s.read_to_string(&mut all).ok()?;
    let (head, body) = all.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.1 200").then(|| body.to_string())
}

/// `promtool check metrics` on `text`: its exit status and what it printed.
fn promtool_check(text: &str) -> (bool, String) {
    let mut p = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool runs (.ci/run installs Debian's prometheus package)");
    p.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let o = p.wait_with_output().unwrap();
    (o.status.success(), format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr)))
}

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `engine proxy` in front of `upstream`, its admin API on `admin`.
/// The admin port is the shared Prometheus's, so tests take turns on it: a proxy killed a
/// moment ago may hold it until the kernel has torn its io_uring down, so this tries for 2 s.
fn proxy(upstream: &str, listen: u16, admin: u16, extra: &[&str]) -> Killed {
    let begun = Instant::now();
    loop {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_engine"));
        cmd.args(["proxy", "--listen", &format!("127.0.0.1:{listen}"), "--upstream", upstream]).args([
            "--admin",
            &format!("127.0.0.1:{admin}"),
            "--shards",
            "1",
            "--route",
            "/api",
        ]);
        cmd.args(extra);
        let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        if line.contains("engine proxy on") {
            return Killed(child);
        }
        let o = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains("Address already in use") && begun.elapsed() < Duration::from_secs(2), "{line}{err}");
        thread::sleep(Duration::from_millis(100));
    }
}

/// The metric families a text exposition declares (`# TYPE name kind`).
fn families(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .map(String::from)
        .collect()
}

#[test]
fn both_endpoints_pass_promtool_and_the_dashboard_names_only_real_metrics() {
    require!("promtool");
    let _heavy = heavy();
    let target = Target::start(TargetConfig::loopback(Duration::ZERO).unwrap()).unwrap();
    let (listen, admin, metrics) = (free_port(), free_port(), free_port());
    let dir = scratch("promtool");
    let faults = dir.join("faults.toml");
    std::fs::write(&faults, "[[fault]]\nprobability = 0.1\naction = { abort = { status = 503 } }\n").unwrap();
    let _proxy = proxy(&target.local_addr().to_string(), listen, admin, &["--faults", faults.to_str().unwrap()]);
    // The same over TLS: a blast to a proxy that terminates TLS, in front of an https target.
    let (tls_listen, tls_admin, tls_metrics) = (free_port(), free_port(), free_port());
    let made = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).unwrap();
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert, made.cert.pem()).unwrap();
    std::fs::write(&key, made.key_pair.serialize_pem()).unwrap();
    let mut tls_cfg = TargetConfig::loopback(Duration::ZERO).unwrap();
    tls_cfg.tls = Some(engine_tls::server_config(&cert, &key).unwrap());
    let tls_target = Target::start(tls_cfg).unwrap();
    let (cert, key) = (cert.to_str().unwrap(), key.to_str().unwrap());
    let _tls_proxy = proxy(
        &format!("https://{}", tls_target.local_addr()),
        tls_listen,
        tls_admin,
        &["--tls-cert", cert, "--tls-key", key, "--upstream-ca", cert],
    );
    let scenario = dir.join("two.toml");
    std::fs::write(
        &scenario,
        format!(
            "target = \"http://127.0.0.1:{listen}\"\n[[request]]\nname = \"home\"\npath = \"/\"\n\
             check = ['body contains \"ok\"']\n[[request]]\nname = \"api\"\npath = \"/api/x\"\n"
        ),
    )
    .unwrap();
    let blast = Command::new(env!("CARGO_BIN_EXE_engine"))
        .current_dir(&dir)
        .args(["blast", "--scenario", scenario.to_str().unwrap(), "-c", "8", "-d", "3s", "-q"])
        .args(["--metrics-addr", &format!("127.0.0.1:{metrics}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let blast = Killed(blast);
    let tls_blast = Command::new(env!("CARGO_BIN_EXE_engine"))
        .current_dir(&dir)
        .args(["blast", &format!("https://127.0.0.1:{tls_listen}/"), "--cacert", cert, "-c", "2", "-d", "3s", "-q"])
        .args(["--metrics-addr", &format!("127.0.0.1:{tls_metrics}"), "-H", "Connection: close"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let tls_blast = Killed(tls_blast);
    // Scrape after two intervals, while the run goes on.
    thread::sleep(Duration::from_millis(2500));
    let blast_text = get(([127, 0, 0, 1], metrics).into(), "/metrics").expect("the blast serves /metrics");
    let tls_blast_text = get(([127, 0, 0, 1], tls_metrics).into(), "/metrics").expect("the TLS blast's /metrics");
    thread::sleep(Duration::from_millis(700));
    let proxy_text = get(([127, 0, 0, 1], admin).into(), "/metrics").expect("the proxy serves /metrics");
    let tls_proxy_text = get(([127, 0, 0, 1], tls_admin).into(), "/metrics").expect("the TLS proxy's /metrics");
    drop((blast, tls_blast));

    for (what, text) in
        [("blast", &blast_text), ("proxy", &proxy_text), ("TLS blast", &tls_blast_text), ("TLS proxy", &tls_proxy_text)]
    {
        let (ok, said) = promtool_check(text);
        assert!(ok && said.trim().is_empty(), "promtool on the {what}'s /metrics: {said}\n{text}");
    }
    for want in [
        "engine_blast_requests_total ",
        "engine_blast_errors_total{kind=\"timeout\"} 0",
        "engine_blast_responses_total{status=\"503\"}",
        "engine_blast_request_duration_seconds_bucket{le=\"0.0001\"}",
        "engine_blast_named_requests_total{name=\"api\"}",
        "engine_blast_named_request_duration_seconds_bucket{name=\"home\",le=\"0.001\"}",
        // A check's name is its expression, quotes and all: escaped in the label.
        "engine_blast_checks_total{name=\"body contains \\\"ok\\\"\",result=\"pass\"}",
        "engine_blast_connections_open 8",
        "engine_blast_target_connections 8",
    ] {
        assert!(blast_text.contains(want), "blast /metrics lacks {want}\n{blast_text}");
    }
    for want in [
        "engine_proxy_upstream_ttfb_seconds_bucket{route=\"/api\",status_class=\"2xx\",le=\"0.001\"}",
        "engine_proxy_upstream_duration_seconds_count{route=\"other\",status_class=\"2xx\"}",
        "engine_proxy_faults_injected_total{kind=\"abort\"}",
        "engine_proxy_queue_depth 0",
    ] {
        assert!(proxy_text.contains(want), "proxy /metrics lacks {want}\n{proxy_text}");
    }

    for want in [
        "engine_blast_tls_handshakes_total{kind=\"resumed\"}",
        "engine_blast_tls_errors_total{reason=\"certificate\"} 0",
        "engine_blast_tls_handshake_seconds_bucket{le=\"0.01\"}",
        "engine_blast_connect_seconds_count",
    ] {
        assert!(tls_blast_text.contains(want), "TLS blast /metrics lacks {want}\n{tls_blast_text}");
    }
    for want in [
        "engine_proxy_tls_handshakes_total{side=\"downstream\",kind=\"resumed\"}",
        "engine_proxy_upstream_tls_handshake_seconds_count",
    ] {
        assert!(tls_proxy_text.contains(want), "TLS proxy /metrics lacks {want}\n{tls_proxy_text}");
    }

    // Every query of the Grafana dashboard names metrics one of the endpoints has.
    let mut known = families(&blast_text);
    for text in [&proxy_text, &tls_blast_text, &tls_proxy_text] {
        known.extend(families(text));
    }
    let dash: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(repo().join("deploy/grafana/engine-dashboard.json")).unwrap())
            .expect("the dashboard is valid JSON");
    let panels = dash["panels"].as_array().expect("panels");
    assert!(panels.len() >= 6);
    for p in panels {
        let targets = p["targets"].as_array().unwrap_or_else(|| panic!("panel {} has no targets", p["title"]));
        assert!(!targets.is_empty());
        for t in targets {
            let expr = t["expr"].as_str().unwrap();
            let names: Vec<&str> = expr
                .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .filter(|w| w.starts_with("engine_"))
                .collect();
            assert!(!names.is_empty(), "{expr}");
            for n in names {
                let family = n.strip_suffix("_bucket").unwrap_or(n);
                assert!(known.iter().any(|k| k == family), "panel {}: {n} is not exported", p["title"]);
            }
        }
    }

    // The scrape configuration is what promtool accepts.
    let o = Command::new("promtool")
        .args(["check", "config", repo().join("deploy/prometheus/prometheus.yml").to_str().unwrap()])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
}

/// Runs a query against Prometheus' HTTP API; the first result's value.
fn query(prom: SocketAddr, q: &str) -> Option<f64> {
    let enc: String = q
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    let body = get(prom, &format!("/api/v1/query?query={enc}"))?;
    let v: serde_json::Value = serde_json::from_str(&body).ok()?;
    v["data"]["result"][0]["value"][1].as_str()?.parse().ok()
}

/// The one Prometheus of this test binary, scraping every second: a blast's `/metrics` on
/// `blast`, a proxy's admin API on `proxy`, and a node exporter (the host's CPU) on `node`.
/// Tests that use it hold [`heavy`], so one blast or proxy at a time owns those ports.
struct Prom {
    addr: SocketAddr,
    blast: u16,
    proxy: u16,
}

static PROM: std::sync::OnceLock<Prom> = std::sync::OnceLock::new();

/// Starts a child that dies with this process (not with the test that started it: the
/// keeper thread that spawns it never ends).
fn dies_with_us(cmd: &mut Command) -> Child {
    use std::os::unix::process::CommandExt;
    // SAFETY: prctl is async-signal-safe, and the closure touches nothing else.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    cmd.stdout(Stdio::null()).stderr(Stdio::null()).spawn().expect("the server starts")
}

fn prometheus() -> &'static Prom {
    PROM.get_or_init(|| {
        let (blast, proxy, node, port) = (free_port(), free_port(), free_port(), free_port());
        let dir = scratch("server");
        std::fs::write(
            dir.join("prometheus.yml"),
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n\
                 \x20 - job_name: blast\n    static_configs:\n      - targets: ['127.0.0.1:{blast}']\n\
                 \x20 - job_name: proxy\n    static_configs:\n      - targets: ['127.0.0.1:{proxy}']\n\
                 \x20 - job_name: node\n    static_configs:\n      - targets: ['127.0.0.1:{node}']\n"
            ),
        )
        .unwrap();
        let exporter = require::find(&["prometheus-node-exporter", "node_exporter"]).expect("a node exporter");
        let (tx, rx) = std::sync::mpsc::channel();
        thread::spawn(move || {
            let _node = Killed(dies_with_us(
                Command::new(exporter)
                    .args(["--collector.disable-defaults", "--collector.cpu", "--collector.meminfo"])
                    .arg(format!("--web.listen-address=127.0.0.1:{node}")),
            ));
            let _prom = Killed(dies_with_us(
                Command::new("prometheus")
                    .current_dir(&dir)
                    .args(["--config.file=prometheus.yml", "--storage.tsdb.path=data", "--log.level=warn"])
                    .arg(format!("--web.listen-address=127.0.0.1:{port}")),
            ));
            let _ = tx.send(());
            loop {
                thread::park();
            }
        });
        rx.recv().unwrap();
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let started = Instant::now();
        while get(addr, "/-/ready").is_none() {
            assert!(started.elapsed() < Duration::from_secs(30), "prometheus not ready in 30 s");
            thread::sleep(Duration::from_millis(200));
        }
        Prom { addr, blast, proxy }
    })
}

#[test]
fn a_real_prometheus_scrapes_a_blast_and_a_proxy() {
    require!("prometheus", "node-exporter");
    let _heavy = heavy();
    let target = Target::start(TargetConfig::loopback(Duration::ZERO).unwrap()).unwrap();
    let listen = free_port();
    let p = prometheus();
    let (prom, metrics, dir) = (p.addr, p.blast, scratch("scrape"));
    let _proxy = proxy(&target.local_addr().to_string(), listen, p.proxy, &[]);

    // Open model at a fixed rate: the rate Prometheus computes has one right answer.
    let json = dir.join("summary.json");
    let blast = Command::new(env!("CARGO_BIN_EXE_engine"))
        .current_dir(&dir)
        .args(["blast", &format!("http://127.0.0.1:{listen}/api/x"), "-R", "1000", "-c", "16", "-d", "20s", "-q"])
        .args(["--metrics-addr", &format!("127.0.0.1:{metrics}"), "--json", json.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut blast = Killed(blast);
    // Query while the blast still runs (its endpoint goes away with it): rates over the
    // steady middle of the run, and the quantile over everything recorded so far.
    thread::sleep(Duration::from_secs(18));
    let client_rate = query(prom, "rate(engine_blast_requests_total[12s])");
    let proxy_rate = query(prom, "sum(rate(engine_proxy_requests_total[12s]))");
    let p99 = query(prom, "histogram_quantile(0.99, engine_blast_request_duration_seconds_bucket)");
    let buckets = get(([127, 0, 0, 1], metrics).into(), "/metrics").unwrap_or_default();
    let samples = get(prom, "/api/v1/query?query=engine_blast_requests_total%5B14s%5D").unwrap_or_default();
    let status = blast.0.wait().unwrap();
    assert!(status.success(), "blast exit {status}");
    let summary: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let rps = summary["rps"].as_f64().unwrap();
    let summary_p99_s = summary["latency_ms"]["p99"].as_f64().unwrap() / 1000.0;

    let client_rate = client_rate.expect("Prometheus has the blast's request rate");
    let proxy_rate = proxy_rate.expect("Prometheus has the proxy's request rate");
    assert!(
        (client_rate / rps - 1.0).abs() < 0.05,
        "Prometheus rate {client_rate} vs the blast's {rps} req/s\n{samples}"
    );
    assert!((proxy_rate / rps - 1.0).abs() < 0.05, "proxy rate {proxy_rate} vs the blast's {rps} req/s");
    // The same bucket: Prometheus interpolates inside a bucket, the summary reports the
    // HdrHistogram value; both must fall between the same two bounds.
    let p99 = p99.expect("Prometheus has the latency histogram");
    let bounds = engine_results::stats::LATENCY_BUCKETS_S;
    let bucket = |v: f64| bounds.iter().position(|&le| v <= le * (1.0 + 1e-9)).unwrap_or(bounds.len());
    let (during, after) = (bucket(p99), bucket(summary_p99_s));
    if during != after {
        // Prometheus saw the run up to the query, the summary all of it: they may fall either
        // side of a bound only when 99% of the requests sat right at that bound then.
        assert_eq!(
            during.abs_diff(after),
            1,
            "histogram_quantile p99 {p99} s vs summary p99 {summary_p99_s} s\n{buckets}"
        );
        let bound = bounds[during.min(after)];
        let share = share_under(&buckets, "engine_blast_request_duration_seconds", bound);
        assert!(
            share.is_some_and(|s| (s - 0.99).abs() < 0.002),
            "histogram_quantile p99 {p99} s vs summary p99 {summary_p99_s} s, and {share:?} of requests under \
             {bound} s at the query\n{buckets}"
        );
    }
}

/// The share of a histogram's samples at or under `le`, from a /metrics text.
fn share_under(text: &str, name: &str, le: f64) -> Option<f64> {
    let value = |prefix: &str| {
        text.lines()
            .find(|l| l.starts_with(prefix))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse::<f64>().ok())
    };
    let count = value(&format!("{name}_count "))?;
    let under = text
        .lines()
        .filter_map(|l| l.strip_prefix(&format!("{name}_bucket{{le=\"")))
        .filter_map(|rest| rest.split_once("\"}"))
        .find(|(b, _)| b.parse::<f64>().is_ok_and(|b| (b - le).abs() <= le * 1e-9))
        .and_then(|(_, n)| n.trim().parse::<f64>().ok())?;
    Some(under / count)
}

#[test]
fn push_sends_the_final_metrics_to_a_pushgateway() {
    require!("promtool");
    let _heavy = heavy();
    let target = Target::start(TargetConfig::loopback(Duration::ZERO).unwrap()).unwrap();
    let gw = TcpListener::bind("127.0.0.1:0").unwrap();
    let gw_addr = gw.local_addr().unwrap();
    let received = thread::spawn(move || {
        let (mut c, _) = gw.accept().unwrap();
        c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut all = Vec::new();
        let mut chunk = [0u8; 65536];
        loop {
            let n = c.read(&mut chunk).unwrap();
            all.extend_from_slice(&chunk[..n]);
            let text = String::from_utf8_lossy(&all);
            if let Some((head, body)) = text.split_once("\r\n\r\n") {
                let len: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("Content-Length: "))
                    .and_then(|v| v.trim().parse().ok())
                    .unwrap();
                if body.len() >= len {
                    c.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n").unwrap();
                    return (head.to_string(), body.to_string());
                }
            }
        }
    });
    let dir = scratch("push");
    let o = Command::new(env!("CARGO_BIN_EXE_engine"))
        .current_dir(&dir)
        .args(["blast", &format!("http://{}/", target.local_addr()), "-c", "4", "-d", "1s", "-q"])
        .args(["--push", &format!("http://{gw_addr}/metrics/job/load/instance/w1")])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
    let (head, body) = received.join().unwrap();
    assert!(head.starts_with("PUT /metrics/job/load/instance/w1 HTTP/1.1"), "{head}");
    let requests: u64 = body
        .lines()
        .find_map(|l| l.strip_prefix("engine_blast_requests_total "))
        .and_then(|v| v.parse().ok())
        .expect("the pushed text holds the request count");
    assert!(requests > 0);
    let (ok, said) = promtool_check(&body);
    assert!(ok && said.trim().is_empty(), "{said}");
    // A bad URL is a usage error before the run.
    let o = Command::new(env!("CARGO_BIN_EXE_engine"))
        .args(["blast", "http://127.0.0.1:1/", "--push", "https://gw/"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("only http://"));
}

/// A blast against `url` with `args`, its summary written to `dir`: the exit code, the
/// summary (empty when none was written) and what it printed.
fn blast_json(dir: &Path, url: &str, args: &[&str]) -> (Option<i32>, serde_json::Value, String) {
    let json = dir.join("summary.json");
    let _ = std::fs::remove_file(&json);
    let o = Command::new(env!("CARGO_BIN_EXE_engine"))
        .current_dir(dir)
        .args(["blast", url, "-q", "--json", json.to_str().unwrap()])
        .args(args)
        .output()
        .unwrap();
    let summary = std::fs::read_to_string(&json).ok().and_then(|t| serde_json::from_str(&t).ok());
    (o.status.code(), summary.unwrap_or_default(), String::from_utf8_lossy(&o.stderr).into_owned())
}

/// Stops on the target's own figures, read from a real Prometheus: the proxy in front of the
/// target (its sidecar) counts what the target served, and a node exporter gives the host's
/// CPU. A line the load stays under never fires, and every interval's query was answered (no
/// warning); driven past the line, the target stops the run, and the summary names the stop
/// and the value Prometheus gave. The host's CPU reads as a share of it. A query that has no
/// value is a warning, never a silent pass; one Prometheus refuses is an error before the load.
#[test]
fn a_promql_stop_fires_when_the_target_passes_the_line() {
    require!("prometheus", "node-exporter");
    let _heavy = heavy();
    let p = prometheus();
    let target = Target::start(TargetConfig::loopback(Duration::ZERO).unwrap()).unwrap();
    let listen = free_port();
    let _proxy = proxy(&target.local_addr().to_string(), listen, p.proxy, &[]);
    let (url, dir) = (format!("http://127.0.0.1:{listen}/api/x"), scratch("promql"));
    let prom_url = format!("http://{}", p.addr);
    let served = "sum(rate(engine_proxy_requests_total[3s]))";
    let cpu = r#"1 - avg(rate(node_cpu_seconds_total{mode="idle"}[4s]))"#;
    // Both series exist once the proxy has served and both were scraped twice.
    let started = Instant::now();
    while query(p.addr, served).is_none() || query(p.addr, cpu).is_none() {
        let _ = get(([127, 0, 0, 1], listen).into(), "/api/x");
        assert!(started.elapsed() < Duration::from_secs(20), "Prometheus has no proxy or CPU figure after 20 s");
        thread::sleep(Duration::from_millis(300));
    }
    let load = ["--prometheus", prom_url.as_str(), "--abort-on"];

    // 100 requests a second stay under a line of 1,000.
    let line = format!("promql:{served}>1000 for 2");
    let (code, s, err) = blast_json(&dir, &url, &[&["-R", "100", "-c", "4", "-d", "4s"], &load[..], &[&line]].concat());
    assert_eq!(code, Some(0), "{err}");
    assert!(s["stopped_by"].is_null() && s["warnings"].as_array().unwrap().is_empty(), "{s}");

    // As fast as 16 connections go, the proxy passes it (the machine does thousands a second).
    let (code, s, err) = blast_json(&dir, &url, &[&["-c", "16", "-d", "40s"], &load[..], &[&line]].concat());
    assert_eq!(code, Some(5), "{err}");
    let fired = &s["stopped_by"];
    assert_eq!(fired["expr"], line.as_str(), "{s}");
    assert!(fired["value"].as_f64().unwrap() > 1000.0, "{fired}");
    assert!(fired["at_s"].as_f64().unwrap() < 30.0 && s["duration_s"].as_f64().unwrap() < 32.0, "{s}");

    // The host's CPU busy share is a number from 0 to 1: a stop at >= 0 fires at its grace.
    let host = format!("promql:{cpu}>=0 for 2");
    let (code, s, err) = blast_json(&dir, &url, &[&["-c", "4", "-d", "20s"], &load[..], &[&host]].concat());
    assert_eq!(code, Some(5), "{err}");
    let busy = s["stopped_by"]["value"].as_f64().unwrap_or(-1.0);
    assert!((0.0..=1.0).contains(&busy) && s["stopped_by"]["at_s"].as_f64() == Some(2.0), "{s}");

    let nothing = r#"promql:up{job="none"}<1"#;
    let (code, s, err) = blast_json(&dir, &url, &[&["-c", "4", "-d", "2s"], &load[..], &[nothing]].concat());
    assert_eq!(code, Some(0), "{err}");
    let warning = s["warnings"][0].as_str().unwrap_or_default();
    // Every interval, the drain's short last one too.
    let (n, m) = warning
        .split_once(" intervals")
        .map(|(a, _)| a)
        .and_then(|a| a.rsplit_once(" in "))
        .map_or(("", ""), |(_, nm)| nm.split_once(" of ").unwrap_or(("", "")));
    assert!(n == m && !n.is_empty() && warning.contains("no series"), "{s}");

    let typo = "promql:rate(x[5s]>1";
    let (code, s, err) = blast_json(&dir, &url, &[&["-c", "4", "-d", "2s"], &load[..], &[typo]].concat());
    assert_eq!(code, Some(2), "{err}");
    assert!(s.is_null() && err.contains("Prometheus answered 400") && err.contains("parse error"), "{err}");
    let (code, _, err) = blast_json(&dir, &url, &["-d", "1s", "--abort-on", &line]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("--prometheus http://HOST:9090"), "{err}");
    // A Prometheus no stop asks is said, not ignored.
    let (code, _, err) = blast_json(&dir, &url, &["--prometheus", &prom_url, "--print-plan"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(err.contains("is asked only by promql: safety stops, and this run has none"), "{err}");
}
