//! `GET /metrics`: the proxy's figures through the `metrics` facade into a
//! `metrics-exporter-prometheus` recorder (never installed globally). The shards never touch
//! it: at each scrape the admin API brings the recorder up to date from the published merge —
//! counters and gauges take their current values, histograms get the samples recorded since
//! the previous scrape.

use std::sync::Mutex;

use engine_results::stats::LATENCY_BUCKETS_S;
use hdrhistogram::Histogram;
use metrics::{counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram, Unit};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder};

use crate::book::RuleReport;
use crate::faults::FaultKind;
use crate::stats::{route_name, Published, ShardStats, UpstreamError, CLASSES};

/// The statuses of requests refused before forwarding (see `request::RequestError::status`
/// and the header timeout).
const REFUSALS: [u16; 6] = [400, 405, 408, 417, 431, 501];

/// Tunnel lifetimes (seconds): a WebSocket lives for seconds to hours, not milliseconds.
const TUNNEL_BUCKETS_S: [f64; 10] = [0.1, 1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 3600.0, 14400.0, 86400.0];

pub(crate) struct ProxyMetrics {
    recorder: PrometheusRecorder,
    handle: PrometheusHandle,
    /// What the recorder has been given so far.
    given: Mutex<Option<ShardStats>>,
}

impl ProxyMetrics {
    pub fn new() -> Self {
        let recorder = PrometheusBuilder::new()
            .set_buckets(&LATENCY_BUCKETS_S)
            .and_then(|b| {
                b.set_buckets_for_metric(
                    Matcher::Full("engine_proxy_tunnel_duration_seconds".into()),
                    &TUNNEL_BUCKETS_S,
                )
            })
            .expect("non-empty bucket lists")
            .build_recorder();
        let handle = recorder.handle();
        metrics::with_local_recorder(&recorder, || {
            describe_counter!("engine_proxy_requests_total", "Client requests whose head was accepted.");
            describe_counter!(
                "engine_proxy_responses_total",
                "Responses sent to clients by status class, the proxy's own answers included."
            );
            describe_histogram!(
                "engine_proxy_upstream_ttfb_seconds",
                Unit::Seconds,
                "Upstream time to the first response byte, from the request fully sent."
            );
            describe_histogram!(
                "engine_proxy_upstream_duration_seconds",
                Unit::Seconds,
                "Upstream time to the last response byte, from the request fully sent."
            );
            describe_counter!(
                "engine_proxy_requests_by_protocol_total",
                "Client requests by protocol (http/1.1, h2; gRPC calls are h2)."
            );
            describe_counter!(
                "engine_proxy_grpc_responses_total",
                "Answers to gRPC calls by grpc-status code name, the proxy's own (aborts) included."
            );
            describe_counter!(
                "engine_proxy_h2_abusive_connections_total",
                "HTTP/2 client connections ended with GOAWAY for resetting too many streams (rapid reset)."
            );
            describe_counter!("engine_proxy_faults_injected_total", "Requests a fault rule acted on, by kind.");
            describe_counter!("engine_proxy_fault_rule_matched_total", "Requests a fault rule matched, by rule id.");
            describe_counter!("engine_proxy_fault_rule_injected_total", "Requests a fault rule acted on, by rule id.");
            describe_gauge!("engine_proxy_faults_active", "Requests under a fault now.");
            describe_counter!(
                "engine_proxy_faults_overflow_total",
                "Requests a rule would have faulted, passed unfaulted because --max-active-faults were active."
            );
            describe_counter!(
                "engine_proxy_upstream_errors_total",
                "Failed upstream exchanges by kind (refused, reset, invalid: 502; timeout: 504)."
            );
            describe_counter!(
                "engine_proxy_rejected_requests_total",
                "Requests refused before forwarding (malformed, hostile, too slow), by status."
            );
            describe_counter!("engine_proxy_connections_accepted_total", "Client connections accepted.");
            describe_counter!("engine_proxy_connections_refused_total", "Client connections turned away at the limit.");
            describe_gauge!("engine_proxy_connections_open", "Client connections open.");
            describe_gauge!("engine_proxy_concurrency_in_use", "Requests holding a slot of a concurrency fault.");
            describe_gauge!("engine_proxy_queue_depth", "Requests queued for a concurrency fault's slot.");
            describe_counter!(
                "engine_proxy_tls_handshakes_total",
                "TLS handshakes completed, by side (downstream: clients; upstream) and kind (full, resumed)."
            );
            describe_counter!("engine_proxy_tls_errors_total", "TLS failures by side and reason.");
            describe_histogram!(
                "engine_proxy_upstream_tls_handshake_seconds",
                Unit::Seconds,
                "TLS handshakes with the upstream, after the TCP connect (not in the upstream's latency)."
            );
            describe_gauge!("engine_proxy_tunnels_open", "Upgrade tunnels (WebSocket, ...) open.");
            describe_counter!("engine_proxy_tunnels_total", "Upgrade tunnels opened (a 101 passed to the client).");
            describe_counter!(
                "engine_proxy_tunnel_bytes_total",
                "Bytes through upgrade tunnels, by direction (upstream: from clients; downstream: to them)."
            );
            describe_histogram!(
                "engine_proxy_tunnel_duration_seconds",
                Unit::Seconds,
                "How long closed upgrade tunnels were open."
            );
            // Every status the proxy refuses with exists from the first scrape, at 0.
            for status in REFUSALS {
                counter!("engine_proxy_rejected_requests_total", "status" => status.to_string()).absolute(0);
            }
        });
        ProxyMetrics { recorder, handle, given: Mutex::new(None) }
    }

    /// Brings the recorder up to date with `p` and renders the text format.
    pub fn render(&self, p: &Published, routes: &[String], rules: &(Vec<RuleReport>, u64, u64)) -> String {
        let mut given = self.given.lock().unwrap_or_else(|e| e.into_inner());
        let t = &p.totals;
        metrics::with_local_recorder(&self.recorder, || {
            counter!("engine_proxy_requests_total").absolute(t.requests);
            for (c, n) in CLASSES.iter().zip(t.responses) {
                counter!("engine_proxy_responses_total", "status_class" => *c).absolute(n);
            }
            for (p, n) in crate::stats::PROTOCOLS.iter().zip(t.protocols) {
                counter!("engine_proxy_requests_by_protocol_total", "protocol" => *p).absolute(n);
            }
            for (code, n) in crate::stats::grpc_names().zip(t.grpc) {
                counter!("engine_proxy_grpc_responses_total", "code" => code).absolute(n);
            }
            counter!("engine_proxy_h2_abusive_connections_total").absolute(t.h2_abusers);
            for k in FaultKind::ALL {
                counter!("engine_proxy_faults_injected_total", "kind" => k.name()).absolute(t.faults[k as usize]);
            }
            let (rules, active, overflow) = rules;
            for r in rules {
                counter!("engine_proxy_fault_rule_matched_total", "rule" => r.id.clone()).absolute(r.matched);
                counter!("engine_proxy_fault_rule_injected_total", "rule" => r.id.clone()).absolute(r.injected);
            }
            gauge!("engine_proxy_faults_active").set(*active as f64);
            counter!("engine_proxy_faults_overflow_total").absolute(*overflow);
            for e in UpstreamError::ALL {
                counter!("engine_proxy_upstream_errors_total", "kind" => e.name())
                    .absolute(t.upstream_errors[e as usize]);
            }
            for (status, n) in &t.rejected {
                counter!("engine_proxy_rejected_requests_total", "status" => status.to_string()).absolute(*n);
            }
            counter!("engine_proxy_connections_accepted_total").absolute(t.conns_accepted);
            counter!("engine_proxy_connections_refused_total").absolute(t.conns_refused);
            let sum = |f: fn(&crate::stats::Gauges) -> u64| p.gauges.iter().map(f).sum::<u64>() as f64;
            gauge!("engine_proxy_connections_open").set(sum(|g| g.connections_open));
            gauge!("engine_proxy_concurrency_in_use").set(sum(|g| g.concurrency_in_use));
            gauge!("engine_proxy_queue_depth").set(sum(|g| g.queue_depth));
            gauge!("engine_proxy_tunnels_open").set(t.tunnels.open() as f64);
            counter!("engine_proxy_tunnels_total").absolute(t.tunnels.opened);
            counter!("engine_proxy_tunnel_bytes_total", "direction" => "upstream").absolute(t.tunnels.bytes_up);
            counter!("engine_proxy_tunnel_bytes_total", "direction" => "downstream").absolute(t.tunnels.bytes_down);
            if let Some(now) = t.tunnels.duration.as_deref() {
                let then = given.as_ref().and_then(|g| g.tunnels.duration.as_deref());
                record_since(&histogram!("engine_proxy_tunnel_duration_seconds"), now, then);
            }
            for (side, c) in [("downstream", &t.tls_downstream), ("upstream", &t.tls_upstream)] {
                counter!("engine_proxy_tls_handshakes_total", "side" => side, "kind" => "full").absolute(c.full);
                counter!("engine_proxy_tls_handshakes_total", "side" => side, "kind" => "resumed").absolute(c.resumed);
                for r in engine_tls::Reason::ALL {
                    counter!("engine_proxy_tls_errors_total", "side" => side, "reason" => r.name())
                        .absolute(c.errors[r as usize]);
                }
            }
            if let Some(now) = t.tls_upstream.handshake.as_deref() {
                let then = given.as_ref().and_then(|g| g.tls_upstream.handshake.as_deref());
                record_since(&histogram!("engine_proxy_upstream_tls_handshake_seconds"), now, then);
            }
            for (r, cells) in t.cells.iter().enumerate() {
                for (c, cell) in cells.iter().enumerate() {
                    let before = given.as_ref().map(|g| &g.cells[r][c]);
                    let labels =
                        [("route", route_name(routes, r).to_string()), ("status_class", CLASSES[c].to_string())];
                    let pairs = [
                        (&cell.ttfb, before.and_then(|b| b.ttfb.as_deref())),
                        (&cell.total, before.and_then(|b| b.total.as_deref())),
                    ];
                    for ((now, then), name) in pairs
                        .into_iter()
                        .zip(["engine_proxy_upstream_ttfb_seconds", "engine_proxy_upstream_duration_seconds"])
                    {
                        if let Some(now) = now.as_deref() {
                            record_since(&histogram!(name, &labels), now, then);
                        }
                    }
                }
            }
        });
        *given = Some(t.clone());
        self.handle.run_upkeep();
        self.handle.render()
    }
}

/// Records into `h` the samples of `now` (cumulative, microseconds) that `then` lacks.
fn record_since(h: &metrics::Histogram, now: &Histogram<u64>, then: Option<&Histogram<u64>>) {
    let mut delta = now.clone();
    if let Some(then) = then {
        // `then` is an earlier state of the same cumulative histogram, so this cannot underflow.
        let _ = delta.subtract(then);
    }
    for v in delta.iter_recorded() {
        h.record_many(v.value_iterated_to() as f64 / 1e6, v.count_at_value() as usize);
    }
}
