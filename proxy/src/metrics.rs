//! `GET /metrics`: the published statistics in the Prometheus text format (0.0.4). Names
//! begin `engine_proxy_`, latencies are histograms in seconds whose cumulative bucket counts
//! come straight from the HdrHistograms.

use std::fmt::Write;

use hdrhistogram::Histogram;

use crate::faults::FaultKind;
use crate::stats::{route_name, Published, UpstreamError, CLASSES};

/// Bucket bounds in seconds: fine below a millisecond (a sidecar adds microseconds), coarse
/// up to the 30 s upstream timeout.
pub const BUCKETS_S: [f64; 20] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5,
    5.0, 10.0, 30.0,
];

pub(crate) fn render(p: &Published, routes: &[String]) -> String {
    let t = &p.totals;
    let mut text = String::with_capacity(8192);

    family(&mut text, "engine_proxy_requests_total", "counter", "Client requests whose head was accepted.");
    let _ = writeln!(text, "engine_proxy_requests_total {}", t.requests);

    family(
        &mut text,
        "engine_proxy_responses_total",
        "counter",
        "Responses sent to clients by status class, the proxy's own answers included.",
    );
    for (c, n) in CLASSES.iter().zip(t.responses) {
        let _ = writeln!(text, "engine_proxy_responses_total{{status_class=\"{c}\"}} {n}");
    }

    for (name, help, pick) in [
        (
            "engine_proxy_upstream_ttfb_seconds",
            "Upstream time to first response byte, from the request fully sent.",
            0usize,
        ),
        (
            "engine_proxy_upstream_duration_seconds",
            "Upstream time to the last response byte, from the request fully sent.",
            1,
        ),
    ] {
        family(&mut text, name, "histogram", help);
        for (r, cells) in t.cells.iter().enumerate() {
            for (c, cell) in cells.iter().enumerate() {
                let h = if pick == 0 { &cell.ttfb } else { &cell.total };
                if let Some(h) = h.as_deref().filter(|h| !h.is_empty()) {
                    let labels = format!("route=\"{}\",status_class=\"{}\"", escape(route_name(routes, r)), CLASSES[c]);
                    histogram(&mut text, name, &labels, h);
                }
            }
        }
    }

    family(&mut text, "engine_proxy_faults_injected_total", "counter", "Requests a fault rule acted on, by kind.");
    for k in FaultKind::ALL {
        let _ = writeln!(text, "engine_proxy_faults_injected_total{{kind=\"{}\"}} {}", k.name(), t.faults[k as usize]);
    }
    family(
        &mut text,
        "engine_proxy_upstream_errors_total",
        "counter",
        "Failed upstream exchanges by kind (refused, reset, invalid: 502; timeout: 504).",
    );
    for e in UpstreamError::ALL {
        let _ = writeln!(
            text,
            "engine_proxy_upstream_errors_total{{kind=\"{}\"}} {}",
            e.name(),
            t.upstream_errors[e as usize]
        );
    }
    family(
        &mut text,
        "engine_proxy_rejected_requests_total",
        "counter",
        "Requests refused before forwarding (malformed, hostile, too slow), by status.",
    );
    for (status, n) in &t.rejected {
        let _ = writeln!(text, "engine_proxy_rejected_requests_total{{status=\"{status}\"}} {n}");
    }
    family(&mut text, "engine_proxy_connections_accepted_total", "counter", "Client connections accepted.");
    let _ = writeln!(text, "engine_proxy_connections_accepted_total {}", t.conns_accepted);
    family(
        &mut text,
        "engine_proxy_connections_refused_total",
        "counter",
        "Client connections turned away at the connection limit.",
    );
    let _ = writeln!(text, "engine_proxy_connections_refused_total {}", t.conns_refused);
    for (name, help, value) in [
        (
            "engine_proxy_connections_open",
            "Client connections open.",
            p.gauges.iter().map(|g| g.connections_open).sum::<u64>(),
        ),
        (
            "engine_proxy_concurrency_in_use",
            "Requests holding a slot of a concurrency fault.",
            p.gauges.iter().map(|g| g.concurrency_in_use).sum(),
        ),
        (
            "engine_proxy_queue_depth",
            "Requests queued for a concurrency fault's slot.",
            p.gauges.iter().map(|g| g.queue_depth).sum(),
        ),
    ] {
        family(&mut text, name, "gauge", help);
        let _ = writeln!(text, "{name} {value}");
    }
    text
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// One histogram series: cumulative buckets, `+Inf`, sum and count. Values are recorded in
/// microseconds, so each bound counts the samples at or below it.
fn histogram(out: &mut String, name: &str, labels: &str, h: &Histogram<u64>) {
    for le in BUCKETS_S {
        let us = (le * 1e6).round() as u64;
        let n = h.count_between(0, us);
        let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{le}\"}} {n}");
    }
    let _ = writeln!(out, "{name}_bucket{{{labels},le=\"+Inf\"}} {}", h.len());
    let _ = writeln!(out, "{name}_sum{{{labels}}} {}", h.mean() * h.len() as f64 / 1e6);
    let _ = writeln!(out, "{name}_count{{{labels}}} {}", h.len());
}

/// A label value with `\`, `"` and newlines escaped.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}
