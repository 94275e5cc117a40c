//! Prometheus metrics of a blast, through the `metrics` facade into a
//! `metrics-exporter-prometheus` recorder that is never installed globally (a process may run
//! a blast and a proxy, as `engine demo` does). The shards never touch it: the collector
//! publishes each interval's merged figures once, and [`serve`] answers scrapes from a small
//! glommio HTTP handler.
//!
//! Names follow DESIGN.md: `engine_blast_` prefix, base units, `_total` counters, latency as a
//! histogram in seconds with buckets fine enough for sub-millisecond targets.

use std::net::SocketAddr;

use engine_runtime::endpoint::{Endpoint, Reply};
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
    /// Check names, by the plan's index.
    checks: Vec<String>,
    /// The model every part of the plan has (`None`: scenarios of both).
    open_model: Option<bool>,
    /// https: the TLS series are published.
    tls: bool,
    /// HTTP/2 runs: the `engine_blast_http2_*` series; gRPC runs: calls by code.
    http2: bool,
    grpc: bool,
}

impl BlastMetrics {
    pub fn new(plan: &Plan) -> Self {
        let recorder =
            PrometheusBuilder::new().set_buckets(&LATENCY_BUCKETS_S).expect("a non-empty bucket list").build_recorder();
        let handle = recorder.handle();
        let names = if plan.named() { plan.requests.iter().map(|r| r.name.clone()).collect() } else { vec![] };
        let open = |p: &crate::plan::Part| matches!(p.model, Model::Open(_));
        let m = BlastMetrics {
            recorder,
            handle,
            names,
            checks: plan.check_names.clone(),
            open_model: match (plan.parts.iter().all(open), plan.parts.iter().any(open)) {
                (true, _) => Some(true),
                (false, false) => Some(false),
                (false, true) => None,
            },
            tls: plan.tls.is_some(),
            http2: plan.http2.is_some(),
            grpc: plan.grpc.is_some(),
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
            describe_counter!("engine_blast_grpc_calls_total", "gRPC calls answered, by grpc-status code name.");
            describe_counter!("engine_blast_http2_goaways_total", "HTTP/2 GOAWAY frames received.");
            describe_counter!(
                "engine_blast_http2_retried_total",
                "HTTP/2 requests a GOAWAY refused unprocessed, sent again on a new connection."
            );
            describe_counter!("engine_blast_http2_reset_streams_total", "HTTP/2 streams the server reset, by code.");
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
            describe_counter!(
                "engine_blast_checks_total",
                "Checks on responses, by check name and result (pass, fail)."
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
            for name in &plan.check_names {
                for result in ["pass", "fail"] {
                    counter!("engine_blast_checks_total", "name" => name.clone(), "result" => result).absolute(0);
                }
            }
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
            let (rate, conns) = match self.open_model {
                Some(true) => (i.point.target, f64::NAN),
                Some(false) => (f64::NAN, i.point.target),
                None => (f64::NAN, f64::NAN),
            };
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
            for (name, c) in self.checks.iter().zip(&t.checks) {
                counter!("engine_blast_checks_total", "name" => name.clone(), "result" => "pass").increment(c.passed);
                counter!("engine_blast_checks_total", "name" => name.clone(), "result" => "fail").increment(c.failed);
            }
            if self.http2 {
                let h = t.http2.as_deref().cloned().unwrap_or_default();
                counter!("engine_blast_http2_goaways_total").increment(h.goaways);
                counter!("engine_blast_http2_retried_total").increment(h.retried);
                let codes = engine_results::http2::H2_CODES.iter().copied().chain(["OTHER"]);
                for (code, n) in codes.zip(h.resets) {
                    counter!("engine_blast_http2_reset_streams_total", "code" => code).increment(n);
                }
            }
            if self.grpc {
                let g = t.grpc.as_deref().cloned().unwrap_or_default();
                let codes = engine_results::grpc::GRPC_CODES.iter().copied().chain(["OTHER"]);
                for (code, n) in codes.zip(g.codes) {
                    counter!("engine_blast_grpc_calls_total", "code" => code).increment(n);
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
pub type MetricsServer = engine_runtime::endpoint::Endpoint;

/// Serves `GET /metrics` (the text `render` returns) on `addr` from its own unpinned
/// executor, so scrapes never run on a shard.
pub fn serve(addr: SocketAddr, render: PrometheusHandle) -> Result<MetricsServer, engine_runtime::listen::ListenError> {
    Endpoint::serve("metrics", addr, 0, text_refusal, move |req| match (req.method, req.path) {
        ("GET", "/metrics") => Reply::new(200, PROMETHEUS_TEXT, render.render()),
        ("GET", _) => Reply::new(404, "text/plain", "see /metrics\n"),
        _ => Reply::new(405, "text/plain", "GET /metrics only\n"),
    })
}

/// The content type of Prometheus's text format.
const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

fn text_refusal(status: u16, message: &str) -> Reply {
    Reply::new(status, "text/plain", format!("{message}\n"))
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
    use std::time::Duration;

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
