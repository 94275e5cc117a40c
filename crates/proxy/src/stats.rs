//! What the proxy measures: server-side latency (upstream time to first byte and total) by
//! route and status class, faults injected, upstream errors, refused requests. Each shard
//! records into its own [`ShardStats`] and adds it into the shared [`Published`] once per tick;
//! `/stats` and `/metrics` read only the published merge.

use std::collections::BTreeMap;
use std::time::Duration;

use engine_results::stats::{micros, new_histogram};
use engine_results::summary::Latency;
use hdrhistogram::Histogram;
use serde::Serialize;

use crate::faults::FaultKind;
use engine_tls::Reason;

/// TLS handshakes and failures on one side of the proxy.
#[derive(Debug, Clone, Default)]
pub struct TlsCounts {
    pub full: u64,
    pub resumed: u64,
    /// Failed handshakes and sessions, by [`Reason`].
    pub errors: [u64; Reason::ALL.len()],
    /// Handshake durations (upstream only: a client's handshake is the client's time).
    pub handshake: Option<Box<Histogram<u64>>>,
}

impl TlsCounts {
    pub fn handshake(&mut self, took: Option<Duration>, resumed: bool) {
        if resumed {
            self.resumed += 1;
        } else {
            self.full += 1;
        }
        if let Some(t) = took {
            let _ = self.handshake.get_or_insert_with(|| Box::new(new_histogram())).record(micros(t));
        }
    }

    /// A failure: by its reason when TLS said why, else `other`.
    pub fn failed(&mut self, e: &std::io::Error) {
        let i = engine_tls::Failure::of(e).map_or(Reason::Other as usize, |f| f.reason_index());
        self.errors[i] += 1;
    }

    fn add(&mut self, o: &TlsCounts) {
        self.full += o.full;
        self.resumed += o.resumed;
        add_arrays(&mut self.errors, &o.errors);
        add_histogram(&mut self.handshake, &o.handshake);
    }

    fn reset(&mut self) {
        self.full = 0;
        self.resumed = 0;
        self.errors = [0; Reason::ALL.len()];
        if let Some(h) = &mut self.handshake {
            clear(h);
        }
    }
}

/// Why an exchange with the upstream failed. `Refused` and `Reset` and `Invalid` answer the
/// client 502, `Timeout` 504 (or a closed connection once the response had begun).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamError {
    /// The connection could not be opened.
    Refused,
    /// Reset or closed before the response was complete.
    Reset,
    /// No response (or no more of it) within the upstream timeout.
    Timeout,
    /// The response could not be framed.
    Invalid,
}

impl UpstreamError {
    pub const ALL: [UpstreamError; 4] =
        [UpstreamError::Refused, UpstreamError::Reset, UpstreamError::Timeout, UpstreamError::Invalid];

    pub fn name(self) -> &'static str {
        match self {
            UpstreamError::Refused => "refused",
            UpstreamError::Reset => "reset",
            UpstreamError::Timeout => "timeout",
            UpstreamError::Invalid => "invalid",
        }
    }

    pub fn status(self) -> u16 {
        if self == UpstreamError::Timeout {
            504
        } else {
            502
        }
    }
}

/// Upgrade tunnels (WebSocket and the other protocols `--upgrade` allows).
#[derive(Debug, Clone, Default)]
pub struct TunnelCounts {
    pub opened: u64,
    pub closed: u64,
    /// Client to upstream, and upstream to client, through open and closed tunnels.
    pub bytes_up: u64,
    pub bytes_down: u64,
    /// How long closed tunnels were open.
    pub duration: Option<Box<Histogram<u64>>>,
}

impl TunnelCounts {
    /// Open now: the totals count every tunnel opened and closed since the start, published
    /// together each tick.
    pub fn open(&self) -> u64 {
        self.opened.saturating_sub(self.closed)
    }

    fn add(&mut self, o: &TunnelCounts) {
        self.opened += o.opened;
        self.closed += o.closed;
        self.bytes_up += o.bytes_up;
        self.bytes_down += o.bytes_down;
        add_histogram(&mut self.duration, &o.duration);
    }

    fn reset(&mut self) {
        let duration = self.duration.take().map(|mut h| {
            clear(&mut h);
            h
        });
        *self = TunnelCounts { duration, ..Default::default() };
    }
}

/// Status classes 1xx..5xx as indexes 0..5.
pub const CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

fn class_of(status: u16) -> usize {
    usize::from(status / 100).clamp(1, 5) - 1
}

/// Upstream latency of one route and status class. Histograms are allocated at the first
/// sample: most (route, class) pairs never see one.
#[derive(Debug, Clone, Default)]
pub struct Cell {
    pub count: u64,
    pub ttfb: Option<Box<Histogram<u64>>>,
    pub total: Option<Box<Histogram<u64>>>,
    /// A shard's samples of this tick not yet in its histograms (microseconds: time to the
    /// head, and to the end if the response completed). Publishing a tick of a few hundred
    /// samples records them into the totals, where adding and zeroing whole histograms
    /// walked all their counts (about 150 µs a tick).
    recent: Vec<(u64, Option<u64>)>,
}

/// Samples a cell keeps unrecorded; past it they go into its own histograms.
const RECENT: usize = 4096;

impl Cell {
    fn record(&mut self, ttfb: u64, total: Option<u64>) {
        self.count += 1;
        if self.recent.len() >= RECENT {
            for (t, total) in std::mem::take(&mut self.recent) {
                record_into(&mut self.ttfb, &mut self.total, t, total);
            }
        }
        self.recent.push((ttfb, total));
    }

    fn add(&mut self, other: &Cell) {
        self.count += other.count;
        for &(t, total) in &other.recent {
            record_into(&mut self.ttfb, &mut self.total, t, total);
        }
        add_histogram(&mut self.ttfb, &other.ttfb);
        add_histogram(&mut self.total, &other.total);
    }

    fn reset(&mut self) {
        self.count = 0;
        self.recent.clear();
        self.ttfb.iter_mut().chain(self.total.iter_mut()).for_each(|h| clear(h));
    }
}

fn record_into(
    ttfb: &mut Option<Box<Histogram<u64>>>,
    total: &mut Option<Box<Histogram<u64>>>,
    t: u64,
    all: Option<u64>,
) {
    let _ = ttfb.get_or_insert_with(|| Box::new(new_histogram())).record(t);
    if let Some(a) = all {
        let _ = total.get_or_insert_with(|| Box::new(new_histogram())).record(a);
    }
}

/// Counters and histograms of one shard over one tick, or the merge of all of them.
#[derive(Debug, Clone)]
pub struct ShardStats {
    /// `[route][class]`; the last route is everything no prefix matched.
    pub cells: Vec<[Cell; 5]>,
    /// Requests whose head was read and accepted.
    pub requests: u64,
    /// Responses sent to clients by status class (the proxy's own answers included).
    pub responses: [u64; 5],
    pub faults: [u64; FaultKind::ALL.len()],
    pub upstream_errors: [u64; UpstreamError::ALL.len()],
    /// Requests refused before forwarding (bad or hostile), by the status answered.
    pub rejected: BTreeMap<u16, u64>,
    pub conns_accepted: u64,
    /// Connections turned away at the connection limit.
    pub conns_refused: u64,
    /// TLS with clients (termination) and with the upstream.
    pub tls_downstream: TlsCounts,
    pub tls_upstream: TlsCounts,
    pub tunnels: TunnelCounts,
    /// Requests by the client's protocol: `[HTTP/1.1, HTTP/2]`.
    pub protocols: [u64; 2],
    /// Answers to gRPC calls by `grpc-status` (the last: a code beyond the known ones), the
    /// proxy's own included.
    pub grpc: [u64; GRPC_SLOTS],
    /// HTTP/2 connections ended for resetting too many streams (rapid reset).
    pub h2_abusers: u64,
}

/// gRPC's 17 codes and one for any other.
pub const GRPC_SLOTS: usize = engine_http::grpc::GRPC_CODES.len() + 1;

impl ShardStats {
    pub fn new(routes: usize) -> Self {
        ShardStats {
            cells: vec![Default::default(); routes + 1],
            requests: 0,
            responses: [0; 5],
            faults: [0; FaultKind::ALL.len()],
            upstream_errors: [0; UpstreamError::ALL.len()],
            rejected: BTreeMap::new(),
            conns_accepted: 0,
            conns_refused: 0,
            tls_downstream: TlsCounts::default(),
            tls_upstream: TlsCounts::default(),
            tunnels: TunnelCounts::default(),
            protocols: [0; 2],
            grpc: [0; GRPC_SLOTS],
            h2_abusers: 0,
        }
    }

    /// A gRPC call answered with `code`.
    pub fn grpc(&mut self, code: u32) {
        self.grpc[(code as usize).min(GRPC_SLOTS - 1)] += 1;
    }

    pub fn tunnel_opened(&mut self) {
        self.tunnels.opened += 1;
    }

    pub fn tunnel_bytes(&mut self, up: u64, down: u64) {
        self.tunnels.bytes_up += up;
        self.tunnels.bytes_down += down;
    }

    pub fn tunnel_closed(&mut self, open_for: Duration) {
        self.tunnels.closed += 1;
        let _ = self.tunnels.duration.get_or_insert_with(|| Box::new(new_histogram())).record(micros(open_for));
    }

    /// One upstream exchange that produced a response head (`total` is `None` when the body
    /// did not complete).
    pub fn upstream(&mut self, route: usize, status: u16, ttfb: Duration, total: Option<Duration>) {
        self.cells[route][class_of(status)].record(micros(ttfb), total.map(micros));
    }

    pub fn response(&mut self, status: u16) {
        self.responses[class_of(status)] += 1;
    }

    pub fn fault(&mut self, kind: FaultKind) {
        self.faults[kind as usize] += 1;
    }

    /// The stream faults a decision applies (bit `FaultKind as usize` of `kinds`), once each.
    pub fn stream_faults(&mut self, kinds: u32) {
        if kinds == 0 {
            return;
        }
        FaultKind::ALL.iter().filter(|k| kinds & 1 << **k as u32 != 0).for_each(|k| self.fault(*k));
    }

    pub fn upstream_error(&mut self, e: UpstreamError) {
        self.upstream_errors[e as usize] += 1;
    }

    pub fn rejected(&mut self, status: u16) {
        *self.rejected.entry(status).or_default() += 1;
    }

    pub fn add(&mut self, o: &ShardStats) {
        for (mine, theirs) in self.cells.iter_mut().zip(&o.cells) {
            for (m, t) in mine.iter_mut().zip(theirs) {
                m.add(t);
            }
        }
        self.requests += o.requests;
        self.conns_accepted += o.conns_accepted;
        self.conns_refused += o.conns_refused;
        add_arrays(&mut self.responses, &o.responses);
        add_arrays(&mut self.faults, &o.faults);
        add_arrays(&mut self.upstream_errors, &o.upstream_errors);
        add_arrays(&mut self.protocols, &o.protocols);
        add_arrays(&mut self.grpc, &o.grpc);
        self.h2_abusers += o.h2_abusers;
        for (k, v) in &o.rejected {
            *self.rejected.entry(*k).or_default() += v;
        }
        self.tls_downstream.add(&o.tls_downstream);
        self.tls_upstream.add(&o.tls_upstream);
        self.tunnels.add(&o.tunnels);
    }

    /// Zeroes everything, keeping the histograms' memory for the next tick.
    pub fn reset(&mut self) {
        self.cells.iter_mut().flatten().for_each(Cell::reset);
        self.requests = 0;
        self.conns_accepted = 0;
        self.conns_refused = 0;
        self.responses = [0; 5];
        self.faults = [0; FaultKind::ALL.len()];
        self.upstream_errors = [0; UpstreamError::ALL.len()];
        self.protocols = [0; 2];
        self.grpc = [0; GRPC_SLOTS];
        self.h2_abusers = 0;
        self.rejected.clear();
        self.tls_downstream.reset();
        self.tls_upstream.reset();
        self.tunnels.reset();
    }
}

/// Adds `theirs` into `mine`. An empty histogram is skipped: adding one walks all its
/// counts, and a shard publishes every tick, busy or not.
fn add_histogram(mine: &mut Option<Box<Histogram<u64>>>, theirs: &Option<Box<Histogram<u64>>>) {
    if let Some(t) = theirs.as_deref().filter(|t| !t.is_empty()) {
        // Same bounds on both sides, so adding cannot fail.
        let _ = mine.get_or_insert_with(|| Box::new(new_histogram())).add(t);
    }
}

/// Zeroes a histogram that holds anything (a reset writes all its counts).
fn clear(h: &mut Histogram<u64>) {
    if !h.is_empty() {
        h.reset();
    }
}

fn add_arrays<const N: usize>(a: &mut [u64; N], b: &[u64; N]) {
    a.iter_mut().zip(b).for_each(|(x, y)| *x += y);
}

/// A shard's instantaneous figures, replaced (not added) at each tick.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Gauges {
    pub connections_open: u64,
    pub concurrency_in_use: u64,
    pub queue_depth: u64,
}

/// The merge of every shard's published ticks since the start.
#[derive(Debug, Clone)]
pub struct Published {
    pub totals: ShardStats,
    pub gauges: Vec<Gauges>,
    /// Per shard: the uptime of its last publication.
    pub as_of: Vec<Duration>,
}

impl Published {
    pub fn new(shards: usize) -> Self {
        Published {
            totals: ShardStats::new(0),
            gauges: vec![Gauges::default(); shards],
            as_of: vec![Duration::ZERO; shards],
        }
    }
}

/// `GET /stats`: the published figures as JSON, latencies in milliseconds.
#[derive(Debug, Clone, Serialize)]
pub struct StatsReport {
    pub uptime_s: f64,
    /// The figures count everything the shards had counted by this uptime: each has
    /// published since (every 100 ms, and at its drain's end). A response is counted just
    /// after its last byte is written, so a reader waits a tick past the moment it stopped.
    pub as_of_s: f64,
    pub requests: u64,
    /// Requests by the client's protocol (`http/1.1`, `h2`).
    pub protocols: BTreeMap<&'static str, u64>,
    pub responses: BTreeMap<&'static str, u64>,
    /// Answers to gRPC calls by `grpc-status` code name (those seen).
    pub grpc_responses: BTreeMap<&'static str, u64>,
    /// HTTP/2 connections the proxy ended with GOAWAY ENHANCE_YOUR_CALM for resetting more
    /// than 200 streams in a second (rapid reset).
    pub h2_abusive_connections: u64,
    /// Upstream latency over every route and class.
    pub server_latency_ms: ServerLatency,
    pub routes: Vec<RouteReport>,
    pub faults_injected: BTreeMap<&'static str, u64>,
    /// Each rule in force: requests it matched and acted on.
    pub fault_rules: Vec<crate::book::RuleReport>,
    /// Requests under a fault now (counted with or without a cap), and those a rule left
    /// alone because `--max-active-faults` were active.
    pub faults_active: u64,
    pub faults_overflow: u64,
    pub upstream_errors: BTreeMap<&'static str, u64>,
    pub rejected: BTreeMap<String, u64>,
    pub connections: ConnectionsReport,
    pub concurrency_in_use: u64,
    pub queue_depth: u64,
    /// TLS handshakes with clients and with the upstream, apart from the upstream's latency.
    pub tls: TlsReport,
    /// Upgrade tunnels; the time to each `101` is the upstream's latency of its request
    /// (status class `1xx`).
    pub tunnels: TunnelReport,
}

#[derive(Debug, Clone, Serialize)]
pub struct TunnelReport {
    pub open: u64,
    pub opened: u64,
    pub closed: u64,
    pub bytes_upstream: u64,
    pub bytes_downstream: u64,
    /// How long closed tunnels were open.
    pub duration_ms: Latency,
}

#[derive(Debug, Clone, Serialize)]
pub struct TlsReport {
    pub downstream: TlsSide,
    pub upstream: TlsSide,
}

#[derive(Debug, Clone, Serialize)]
pub struct TlsSide {
    pub handshakes_full: u64,
    pub handshakes_resumed: u64,
    /// Upstream only: how long the handshakes took (after the TCP connect).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub handshake_ms: Option<Latency>,
    pub errors: BTreeMap<&'static str, u64>,
}

impl TlsSide {
    fn of(c: &TlsCounts, timed: bool) -> Self {
        TlsSide {
            handshakes_full: c.full,
            handshakes_resumed: c.resumed,
            handshake_ms: timed.then(|| c.handshake.as_deref().map(Latency::from_histogram).unwrap_or_default()),
            errors: Reason::ALL.iter().map(|r| (r.name(), c.errors[*r as usize])).collect(),
        }
    }
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct ServerLatency {
    pub count: u64,
    pub ttfb: Latency,
    pub total: Latency,
}

#[derive(Debug, Clone, Serialize)]
pub struct RouteReport {
    pub route: String,
    pub status_class: &'static str,
    pub count: u64,
    pub ttfb_ms: Latency,
    pub total_ms: Latency,
}

#[derive(Debug, Clone, Serialize)]
pub struct ConnectionsReport {
    pub open: u64,
    pub accepted: u64,
    pub refused: u64,
}

impl StatsReport {
    pub fn new(p: &Published, route_names: &[String], uptime: Duration) -> Self {
        let t = &p.totals;
        let gauge = |f: fn(&Gauges) -> u64| p.gauges.iter().map(f).sum::<u64>();
        let (mut all_ttfb, mut all_total) = (new_histogram(), new_histogram());
        let mut routes = Vec::new();
        for (r, cells) in t.cells.iter().enumerate() {
            for (c, cell) in cells.iter().enumerate() {
                if cell.count == 0 {
                    continue;
                }
                let lat =
                    |h: &Option<Box<Histogram<u64>>>| h.as_deref().map(Latency::from_histogram).unwrap_or_default();
                if let Some(h) = &cell.ttfb {
                    let _ = all_ttfb.add(h.as_ref());
                }
                if let Some(h) = &cell.total {
                    let _ = all_total.add(h.as_ref());
                }
                routes.push(RouteReport {
                    route: route_name(route_names, r).to_string(),
                    status_class: CLASSES[c],
                    count: cell.count,
                    ttfb_ms: lat(&cell.ttfb),
                    total_ms: lat(&cell.total),
                });
            }
        }
        StatsReport {
            uptime_s: (uptime.as_secs_f64() * 1000.0).round() / 1000.0,
            as_of_s: (p.as_of.iter().min().copied().unwrap_or_default().as_secs_f64() * 1000.0).round() / 1000.0,
            requests: t.requests,
            protocols: PROTOCOLS.iter().zip(t.protocols).map(|(p, n)| (*p, n)).collect(),
            h2_abusive_connections: t.h2_abusers,
            grpc_responses: grpc_names().zip(t.grpc).filter(|(_, n)| *n > 0).collect(),
            responses: CLASSES.iter().zip(t.responses).map(|(c, n)| (*c, n)).collect(),
            server_latency_ms: ServerLatency {
                count: all_ttfb.len(),
                ttfb: Latency::from_histogram(&all_ttfb),
                total: Latency::from_histogram(&all_total),
            },
            routes,
            faults_injected: FaultKind::ALL.iter().map(|k| (k.name(), t.faults[*k as usize])).collect(),
            fault_rules: Vec::new(),
            faults_active: 0,
            faults_overflow: 0,
            upstream_errors: UpstreamError::ALL.iter().map(|k| (k.name(), t.upstream_errors[*k as usize])).collect(),
            rejected: t.rejected.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
            connections: ConnectionsReport {
                open: gauge(|g| g.connections_open),
                accepted: t.conns_accepted,
                refused: t.conns_refused,
            },
            concurrency_in_use: gauge(|g| g.concurrency_in_use),
            queue_depth: gauge(|g| g.queue_depth),
            tls: TlsReport {
                downstream: TlsSide::of(&t.tls_downstream, false),
                upstream: TlsSide::of(&t.tls_upstream, true),
            },
            tunnels: TunnelReport {
                open: t.tunnels.open(),
                opened: t.tunnels.opened,
                closed: t.tunnels.closed,
                bytes_upstream: t.tunnels.bytes_up,
                bytes_downstream: t.tunnels.bytes_down,
                duration_ms: t.tunnels.duration.as_deref().map(Latency::from_histogram).unwrap_or_default(),
            },
        }
    }
}

/// The client protocols requests are counted by.
pub const PROTOCOLS: [&str; 2] = ["http/1.1", "h2"];

/// The names of the gRPC counters' slots, in order.
pub fn grpc_names() -> impl Iterator<Item = &'static str> {
    engine_http::grpc::GRPC_CODES.iter().copied().chain(["OTHER"])
}

/// The label of route `i`: its prefix, or `other` for the catch-all.
pub fn route_name(routes: &[String], i: usize) -> &str {
    routes.get(i).map_or("other", String::as_str)
}

/// The route of a path: the longest configured prefix it starts with, else the catch-all.
pub fn route_of(routes: &[String], path: &str) -> usize {
    routes
        .iter()
        .enumerate()
        .filter(|(_, p)| path.starts_with(p.as_str()))
        .max_by_key(|(_, p)| p.len())
        .map_or(routes.len(), |(i, _)| i)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_take_the_longest_prefix() {
        let routes = vec!["/api".to_string(), "/api/v2".to_string()];
        assert_eq!(route_of(&routes, "/api/v2/x"), 1);
        assert_eq!(route_of(&routes, "/api/v1"), 0);
        assert_eq!(route_of(&routes, "/"), 2);
        assert_eq!(route_name(&routes, 2), "other");
    }

    #[test]
    fn merge_is_exact_and_reset_keeps_shape() {
        let mut a = ShardStats::new(1);
        let mut b = ShardStats::new(1);
        for i in 1..=100u64 {
            a.upstream(0, 200, Duration::from_micros(i * 10), Some(Duration::from_micros(i * 20)));
            b.upstream(1, 503, Duration::from_micros(i * 1000), None);
        }
        a.fault(FaultKind::Abort);
        b.rejected(431);
        let mut total = ShardStats::new(1);
        total.add(&a);
        total.add(&b);
        let p = Published {
            totals: total,
            gauges: vec![Gauges { connections_open: 3, ..Default::default() }; 2],
            as_of: vec![Duration::from_millis(900), Duration::from_millis(1000)],
        };
        let r = StatsReport::new(&p, &["/api".to_string()], Duration::from_secs(1));
        assert_eq!(r.server_latency_ms.count, 200);
        assert_eq!(r.routes.len(), 2);
        assert_eq!((r.routes[0].route.as_str(), r.routes[0].status_class, r.routes[0].count), ("/api", "2xx", 100));
        assert_eq!(r.routes[1].route, "other");
        assert_eq!(r.routes[1].total_ms.p50, 0.0);
        assert_eq!(r.faults_injected["abort"], 1);
        assert_eq!(r.rejected["431"], 1);
        assert_eq!(r.connections.open, 6);
        a.reset();
        assert_eq!(a.cells[0][1].count, 0);
        assert!(a.cells[0][1].recent.is_empty() && a.cells[0][1].ttfb.is_none());
        // Past RECENT samples a shard's cell records into its own histograms, and the
        // totals still count every sample.
        for i in 0..(RECENT as u64 + 10) {
            a.upstream(0, 200, Duration::from_micros(i), Some(Duration::from_micros(2 * i)));
        }
        let mut total = ShardStats::new(1);
        total.add(&a);
        let cell = &total.cells[0][1];
        assert_eq!(cell.count, RECENT as u64 + 10);
        assert_eq!(cell.ttfb.as_ref().unwrap().len(), RECENT as u64 + 10);
        assert_eq!(cell.total.as_ref().unwrap().len(), RECENT as u64 + 10);
    }
}
