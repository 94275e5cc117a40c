//! Prometheus metrics of a blast, through the `metrics` facade into a
//! `metrics-exporter-prometheus` recorder that is never installed globally (a process may run
//! a blast and a proxy, as `engine demo` does). The shards never touch it: the collector
//! publishes each interval's merged figures once, and [`serve`] answers scrapes from a small
//! glommio HTTP handler.
//!
//! Names follow DESIGN.md: `engine_blast_` prefix, base units, `_total` counters, latency as a
//! histogram in seconds with buckets fine enough for sub-millisecond targets.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_lite::io::{AsyncReadExt, AsyncWriteExt};
use glommio::net::TcpStream;
use glommio::Placement;
use hdrhistogram::Histogram;
use metrics::{counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram, Unit};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle, PrometheusRecorder};

use crate::plan::{Model, Plan};
use engine_results::observe::{Flow, Interval, Observer};
use engine_results::stats::{ErrorKind, TLS_REASONS};

use engine_results::stats::LATENCY_BUCKETS_S;

/// The recorder of one blast and what it needs to publish into it.
pub struct BlastMetrics {
    recorder: PrometheusRecorder,
    handle: PrometheusHandle,
    /// Request names (scenarios), for the per-name series; empty for a single request.
    names: Vec<String>,
    open_model: bool,
    /// https: the TLS series are published.
    tls: bool,
}

impl BlastMetrics {
    pub fn new(plan: &Plan) -> Self {
        let recorder =
            PrometheusBuilder::new().set_buckets(&LATENCY_BUCKETS_S).expect("a non-empty bucket list").build_recorder();
        let handle = recorder.handle();
        let names =
            if plan.requests.len() > 1 { plan.requests.iter().map(|r| r.name.clone()).collect() } else { vec![] };
        let m = BlastMetrics {
            recorder,
            handle,
            names,
            open_model: matches!(plan.model, Model::Open(_)),
            tls: plan.tls.is_some(),
        };
        metrics::with_local_recorder(&m.recorder, || {
            describe_counter!("engine_blast_requests_total", "Completed responses.");
            describe_counter!(
                "engine_blast_errors_total",
                "Failed requests by kind (connect, timeout, reset, closed, parse)."
            );
            describe_counter!("engine_blast_responses_total", "Completed responses by status code.");
            describe_counter!("engine_blast_sent_bytes_total", Unit::Bytes, "Request bytes written.");
            describe_counter!("engine_blast_received_bytes_total", Unit::Bytes, "Response bytes read.");
            describe_gauge!("engine_blast_connections_open", "Connections open at the end of the last interval.");
            describe_gauge!("engine_blast_target_connections", "Connections the plan asks for now (closed model).");
            describe_gauge!("engine_blast_target_rate", "Requests per second the plan asks for now (open model).");
            describe_gauge!("engine_blast_achieved_rate", "Requests per second completed in the last interval.");
            describe_gauge!("engine_blast_stage", "The stage the run is in, counted from 1.");
            describe_histogram!(
                "engine_blast_request_duration_seconds",
                Unit::Seconds,
                "Latency from the intended start (corrected for coordinated omission) to the complete response."
            );
            describe_gauge!(
                "engine_blast_shard_busy_ratio",
                "Share of the last interval each shard's thread was on the CPU; near 1 the generator is the bottleneck."
            );
            describe_counter!("engine_blast_named_requests_total", "Completed responses by request name (scenarios).");
            describe_histogram!(
                "engine_blast_connect_seconds",
                Unit::Seconds,
                "TCP connect time of each new connection (SYN sent to connected)."
            );
            describe_histogram!(
                "engine_blast_tls_handshake_seconds",
                Unit::Seconds,
                "TLS handshake time of each new connection, after its TCP connect (https only)."
            );
            describe_counter!(
                "engine_blast_tls_handshakes_total",
                "TLS handshakes completed, by kind (full, resumed)."
            );
            describe_counter!(
                "engine_blast_tls_errors_total",
                "TLS failures by reason (certificate, alert, bad_record, truncated, handshake, other)."
            );
            describe_histogram!(
                "engine_blast_named_request_duration_seconds",
                Unit::Seconds,
                "Corrected latency by request name (scenarios)."
            );
            // Every series exists from the first scrape, before the first interval ends.
            counter!("engine_blast_requests_total").absolute(0);
            for kind in ErrorKind::ALL {
                counter!("engine_blast_errors_total", "kind" => kind.name()).absolute(0);
            }
            gauge!("engine_blast_connections_open").set(0.0);
            gauge!("engine_blast_achieved_rate").set(0.0);
            gauge!("engine_blast_stage").set(1.0);
            if plan.tls.is_some() {
                for kind in ["full", "resumed"] {
                    counter!("engine_blast_tls_handshakes_total", "kind" => kind).absolute(0);
                }
                for reason in TLS_REASONS {
                    counter!("engine_blast_tls_errors_total", "reason" => reason).absolute(0);
                }
            }
        });
        m
    }

    /// Publishes one interval: counters grow by its counts, gauges take its values, and its
    /// latency samples go into the histograms.
    pub fn publish(&self, i: &Interval<'_>) {
        let t = i.totals;
        metrics::with_local_recorder(&self.recorder, || {
            counter!("engine_blast_requests_total").increment(t.counters.requests);
            for kind in ErrorKind::ALL {
                counter!("engine_blast_errors_total", "kind" => kind.name()).increment(t.counters.errors_of(kind));
            }
            for (code, n) in t.counters.statuses() {
                counter!("engine_blast_responses_total", "status" => code.to_string()).increment(n);
            }
            counter!("engine_blast_sent_bytes_total").increment(t.counters.bytes_sent);
            counter!("engine_blast_received_bytes_total").increment(t.counters.bytes_received);
            gauge!("engine_blast_connections_open").set(t.open as f64);
            // The other model's target does not apply: NaN, which graphs show as a gap.
            let (rate, conns) = if self.open_model { (i.point.target, f64::NAN) } else { (f64::NAN, i.point.target) };
            gauge!("engine_blast_target_rate").set(rate);
            gauge!("engine_blast_target_connections").set(conns);
            gauge!("engine_blast_achieved_rate").set(i.point.rps);
            gauge!("engine_blast_stage").set(i.stage as f64);
            for (shard, busy) in i.busy.iter().enumerate() {
                gauge!("engine_blast_shard_busy_ratio", "shard" => shard.to_string()).set(*busy);
            }
            record(&histogram!("engine_blast_request_duration_seconds"), &t.latency);
            if let Some(s) = t.setup.as_deref() {
                record(&histogram!("engine_blast_connect_seconds"), &s.connect);
            }
            if let Some(s) = t.setup.as_deref().filter(|_| self.tls) {
                let handshakes = histogram!("engine_blast_tls_handshake_seconds");
                if let Some(h) = &s.handshake {
                    record(&handshakes, h);
                }
                counter!("engine_blast_tls_handshakes_total", "kind" => "full").increment(s.handshakes_full);
                counter!("engine_blast_tls_handshakes_total", "kind" => "resumed").increment(s.handshakes_resumed);
                for (reason, n) in TLS_REASONS.iter().zip(s.tls_errors) {
                    counter!("engine_blast_tls_errors_total", "reason" => *reason).increment(n);
                }
            }
            for (name, n) in self.names.iter().zip(&t.names) {
                counter!("engine_blast_named_requests_total", "name" => name.clone()).increment(n.counters.requests);
                record(&histogram!("engine_blast_named_request_duration_seconds", "name" => name.clone()), &n.latency);
            }
        });
        // Folds the samples into the bucket counts now, so they do not pile up between scrapes.
        self.handle.run_upkeep();
    }

    /// The text format of the current figures.
    pub fn render(&self) -> String {
        self.handle.render()
    }

    /// A cheap handle for rendering from another thread (the scrape server).
    pub fn handle(&self) -> PrometheusHandle {
        self.handle.clone()
    }
}

/// Feeds an interval's HdrHistogram (microseconds) into a Prometheus histogram (seconds), one
/// call per distinct recorded value. (The exporter still keeps a sample per request until
/// `run_upkeep` folds them into bucket counts, which `publish` does every interval.)
fn record(h: &metrics::Histogram, latency: &Histogram<u64>) {
    for v in latency.iter_recorded() {
        h.record_many(v.value_iterated_to() as f64 / 1e6, v.count_at_value() as usize);
    }
}

/// A running `/metrics` endpoint. Dropping it stops it.
pub struct MetricsServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    handle: Option<glommio::ExecutorJoinHandle<()>>,
}

impl MetricsServer {
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// Serves `GET /metrics` (the text `render` returns) on `addr` from its own unpinned
/// executor, so scrapes never run on a shard.
pub fn serve(addr: SocketAddr, render: PrometheusHandle) -> Result<MetricsServer, engine_runtime::listen::ListenError> {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let (bound, handle) = engine_runtime::listen::spawn_bound(
        engine_runtime::Executor::new("metrics", Placement::Unbound),
        engine_runtime::listen::Bind::Own(addr),
        move |listener| async move {
            engine_runtime::listen::accept_until(
                &listener,
                || flag.load(Ordering::Relaxed),
                |s| {
                    glommio::spawn_local(answer(s, render.clone())).detach();
                },
            )
            .await;
        },
    )?;
    Ok(MetricsServer { addr: bound, stop, handle: Some(handle) })
}

/// One scrape: reads the request head (up to 8 KiB, 5 s), answers, closes.
async fn answer(mut s: TcpStream, render: PrometheusHandle) {
    // One deadline for the whole head: a per-read timeout would let a client that sends a
    // byte every few seconds hold the connection for hours.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let mut head = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() || s.set_read_timeout(Some(left.max(Duration::from_millis(1)))).is_err() {
            return;
        }
        match s.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&chunk[..n]),
        }
        if head.len() > 8192 {
            return;
        }
    }
    let line = head.split(|&b| b == b'\n').next().unwrap_or(&[]);
    let (status, ctype, body) = if line.starts_with(b"GET /metrics ") || line.starts_with(b"GET /metrics?") {
        ("200 OK", "text/plain; version=0.0.4; charset=utf-8", render.render())
    } else if line.starts_with(b"GET ") {
        ("404 Not Found", "text/plain", "see /metrics\n".to_string())
    } else {
        ("405 Method Not Allowed", "text/plain", "GET /metrics only\n".to_string())
    };
    let reply = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = s.write_all(reply.as_bytes()).await;
}

impl Observer for BlastMetrics {
    fn interval(&mut self, i: &Interval<'_>) -> Flow {
        self.publish(i);
        Flow::Continue
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    /// A client that sends a byte now and then never completes a head: it is cut off at the
    /// head deadline, not kept for as long as it trickles.
    #[test]
    fn a_trickling_scraper_is_cut_off_at_the_head_deadline() {
        let plan = crate::PlanInput::new("http://127.0.0.1:9/").build().unwrap();
        let m = BlastMetrics::new(&plan);
        let server = serve("127.0.0.1:0".parse().unwrap(), m.handle()).unwrap();
        let mut c = std::net::TcpStream::connect(server.local_addr()).unwrap();
        let started = std::time::Instant::now();
        let closed = loop {
            if c.write_all(b"G").is_err() {
                break true;
            }
            c.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
            match c.read(&mut [0u8; 16]) {
                Ok(0) | Err(_) if started.elapsed() > Duration::from_secs(9) => break false,
                Ok(0) => break true,
                _ => {}
            }
        };
        assert!(closed, "still open after {:?}", started.elapsed());
        assert!(started.elapsed() < Duration::from_secs(8), "closed after {:?}", started.elapsed());
    }
}
