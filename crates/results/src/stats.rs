//! Per-shard measurements and their exact merge.
//!
//! A shard records into its own [`ShardStats`] with no synchronisation; once per interval it
//! takes the interval's delta ([`ShardStats::take`]) for the collector, which adds the
//! deltas into [`Totals`]. Histograms add exactly, so the final figures are those of all
//! samples.

use std::time::Duration;

use hdrhistogram::Histogram;

/// Lowest and highest latency the histograms hold, in microseconds: 1 µs .. 1 h.
pub const LATENCY_LOW_US: u64 = 1;
pub const LATENCY_HIGH_US: u64 = 3_600_000_000;
/// Significant decimal digits kept: 0.1% relative error.
pub const LATENCY_DIGITS: u8 = 3;

/// Prometheus latency bucket bounds (seconds), for the blast and the proxy alike: 50 µs steps at the bottom, because a loopback target
/// answers in tens of microseconds, up to the 30 s default timeout.
pub const LATENCY_BUCKETS_S: [f64; 22] = [
    0.00005, 0.0001, 0.00025, 0.0005, 0.00075, 0.001, 0.0025, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5,
    0.75, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// The named kinds every failure is counted as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The TCP connection could not be opened (refused, unreachable, connect timeout).
    Connect,
    /// No complete response within `--timeout`.
    Timeout,
    /// The peer reset the connection (ECONNRESET, EPIPE).
    Reset,
    /// The peer closed the connection before the response was complete.
    Closed,
    /// The response was not valid HTTP/1.1 (or exceeded a size limit).
    Parse,
    /// A complete response whose status the plan does not expect (by default 200–399): the
    /// server answered, and said it failed.
    Status,
    /// TLS failed: the handshake (a certificate, an alert, no common version) or a record
    /// (one that does not decrypt, a truncated stream). [`Setup::tls_errors`] has the reasons.
    Tls,
    /// A complete response of an expected status that failed one of its request's checks
    /// (one not marked soft).
    Check,
    /// HTTP/2: the server reset the request's stream (RST_STREAM; the codes are in the
    /// summary's `http2.reset_streams`).
    ResetStream,
    /// HTTP/2: the connection failed at the protocol level (a frame, a header list too long,
    /// a GOAWAY with an error), or the request could not be sent as HTTP/2.
    H2,
    /// gRPC: the call ended with a `grpc-status` the plan does not expect (by default any but
    /// OK), or with none; the codes are in the summary's `grpc.codes`.
    Grpc,
}

/// Error kinds counted.
pub const ERROR_KINDS: usize = 11;

impl ErrorKind {
    pub const ALL: [ErrorKind; ERROR_KINDS] = [
        Self::Connect,
        Self::Timeout,
        Self::Reset,
        Self::Closed,
        Self::Parse,
        Self::Status,
        Self::Tls,
        Self::Check,
        Self::ResetStream,
        Self::H2,
        Self::Grpc,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Self::Connect => "connect",
            Self::Timeout => "timeout",
            Self::Reset => "reset",
            Self::Closed => "closed",
            Self::Parse => "parse",
            Self::Status => "status",
            Self::Tls => "tls",
            Self::Check => "check",
            Self::ResetStream => "reset_stream",
            Self::H2 => "h2",
            Self::Grpc => "grpc",
        }
    }

    /// Maps an I/O error to its kind; anything unexpected counts as `reset`, the closest
    /// description of a connection the kernel gave up on.
    pub fn from_io(e: &std::io::Error) -> Self {
        use std::io::ErrorKind as K;
        match e.kind() {
            K::TimedOut | K::WouldBlock => Self::Timeout,
            K::UnexpectedEof => Self::Closed,
            _ => Self::Reset,
        }
    }
}

/// Status codes are three digits (httparse enforces it), so an array indexes them directly.
const STATUS_SLOTS: usize = 1000;

/// Additive counters: a shard's interval delta, or a merged total.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Counters {
    /// Completed responses, whatever their status.
    pub requests: u64,
    pub errors: [u64; ERROR_KINDS],
    status: Box<[u64; STATUS_SLOTS]>,
    pub bytes_sent: u64,
    pub bytes_received: u64,
    pub conns_opened: u64,
    /// Requests still in flight when the run ended, neither completed nor failed.
    pub abandoned: u64,
    /// Requests started (written, or tried).
    pub sent: u64,
}

impl Default for Counters {
    fn default() -> Self {
        Self {
            requests: 0,
            errors: [0; ERROR_KINDS],
            status: Box::new([0; STATUS_SLOTS]),
            bytes_sent: 0,
            bytes_received: 0,
            conns_opened: 0,
            abandoned: 0,
            sent: 0,
        }
    }
}

impl Counters {
    pub fn error(&mut self, kind: ErrorKind) {
        self.errors[kind as usize] += 1;
    }

    pub fn errors_of(&self, kind: ErrorKind) -> u64 {
        self.errors[kind as usize]
    }

    /// Failed requests: those without a response, and responses of an unexpected status.
    pub fn errors_total(&self) -> u64 {
        self.errors.iter().sum()
    }

    /// Failed requests that got a response: an unexpected status, a failed check, a gRPC
    /// status that is not expected.
    pub fn errors_answered(&self) -> u64 {
        self.errors_of(ErrorKind::Status) + self.errors_of(ErrorKind::Check) + self.errors_of(ErrorKind::Grpc)
    }

    /// Requests tried: responses, and failures that got none (a failed status or check is a
    /// response).
    pub fn attempts(&self) -> u64 {
        self.requests + self.errors_total() - self.errors_answered()
    }

    /// Failed requests over requests tried (0 when none was tried).
    pub fn error_rate(&self) -> f64 {
        match self.attempts() {
            0 => 0.0,
            n => self.errors_total() as f64 / n as f64,
        }
    }

    pub fn status(&mut self, code: u16) {
        self.status_n(code, 1);
    }

    /// Counts `n` responses of status `code` (merging runs).
    pub fn status_n(&mut self, code: u16, n: u64) {
        self.status[code as usize % STATUS_SLOTS] += n;
    }

    /// Counts a summary's responses by status (`"200": n`; merging runs). A key that is not a
    /// number is counted as status 0.
    pub fn add_statuses(&mut self, status: &std::collections::BTreeMap<String, u64>) {
        for (code, n) in status {
            self.status_n(code.parse().unwrap_or(0), *n);
        }
    }

    /// `(status, count)` for every status seen, ascending.
    pub fn statuses(&self) -> impl Iterator<Item = (u16, u64)> + '_ {
        self.status.iter().enumerate().filter(|(_, &n)| n > 0).map(|(c, &n)| (c as u16, n))
    }

    pub fn add(&mut self, other: &Counters) {
        self.requests += other.requests;
        for (a, b) in self.errors.iter_mut().zip(other.errors) {
            *a += b;
        }
        for (a, b) in self.status.iter_mut().zip(other.status.iter()) {
            *a += b;
        }
        self.bytes_sent += other.bytes_sent;
        self.bytes_received += other.bytes_received;
        self.conns_opened += other.conns_opened;
        self.abandoned += other.abandoned;
        self.sent += other.sent;
    }
}

/// Connection set-up times (TCP connect, TLS handshake) keep two digits, 1% relative error:
/// a tenth of a request histogram's memory, and a run carries one per shard, per interval
/// snapshot and per total.
pub const SETUP_DIGITS: u8 = 2;

/// A histogram for connection set-up times ([`SETUP_DIGITS`]).
pub fn new_setup_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(LATENCY_LOW_US, LATENCY_HIGH_US, SETUP_DIGITS).expect("valid histogram bounds")
}

pub fn new_histogram() -> Histogram<u64> {
    // The bounds are constants within hdrhistogram's valid range, so this cannot fail.
    Histogram::new_with_bounds(LATENCY_LOW_US, LATENCY_HIGH_US, LATENCY_DIGITS).expect("valid histogram bounds")
}

/// Microseconds of a duration, clamped into the histogram's range.
pub fn micros(d: Duration) -> u64 {
    (d.as_micros() as u64).clamp(LATENCY_LOW_US, LATENCY_HIGH_US)
}

/// Measurements: what a shard measures during one interval, and also the exact merge of
/// such intervals (of one interval across shards, or of a whole run), which has the same
/// shape.
#[derive(Debug, Clone)]
pub struct ShardStats {
    pub counters: Counters,
    /// Response complete − intended start.
    pub latency: Histogram<u64>,
    /// Response complete − actual write.
    pub latency_uncorrected: Histogram<u64>,
    /// Corrected latency of the responses whose status was expected, made when the first
    /// unexpected one comes (until then it is `latency`): most runs never need a second
    /// full-range histogram per shard, per snapshot and per total. Read it with
    /// [`ShardStats::ok_latency`].
    pub latency_ok: Option<Box<Histogram<u64>>>,
    /// Corrected latency per status class (`1xx` at 0 .. `5xx` at 4), made when a class is
    /// first seen: most runs see one or two.
    pub by_class: [Option<Box<Histogram<u64>>>; 5],
    /// Connections open now, and the most open at once this interval.
    pub open: u64,
    pub peak_open: u64,
    /// Requests written whose response has not completed.
    pub in_flight: u64,
    /// Open model: the most a request started after it was due, this interval (µs).
    pub max_lag_us: u64,
    /// Per named request, in the plan's order (empty when the plan has one request).
    pub names: Vec<NameStats>,
    /// Per scenario of a plan with several (`[[scenario]]`), in the plan's order: its counts,
    /// connection failures included (its latency is its requests' names' merged).
    pub scenarios: Vec<Counters>,
    /// Arrival-rate flows only.
    pub iterations: Option<Box<Iterations>>,
    /// Connection set-up (made at the first connect).
    pub setup: Option<Box<Setup>>,
    /// HTTP/2 runs only (made at the first connection).
    pub http2: Option<Box<crate::http2::Http2>>,
    /// gRPC runs only (made at the first call answered).
    pub grpc: Option<Box<crate::grpc::Grpc>>,
    /// Checks passed and failed, by the plan's check index (empty without checks).
    pub checks: Vec<CheckCount>,
}

/// How often one check passed and failed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CheckCount {
    pub passed: u64,
    pub failed: u64,
}

/// TLS failure reasons counted (the names are engine-tls's `Reason`s, in its order).
pub const TLS_REASONS: [&str; 6] = ["certificate", "alert", "bad_record", "truncated", "handshake", "other"];

/// How connections were set up: TCP connect time, TLS handshakes and their failures.
#[derive(Debug, Clone)]
pub struct Setup {
    /// SYN sent to connected.
    pub connect: Histogram<u64>,
    /// Connected to the handshake's end: made at the first TLS handshake, so plain HTTP
    /// runs do not carry a second full-range histogram per shard and per snapshot.
    pub handshake: Option<Box<Histogram<u64>>>,
    pub handshakes_full: u64,
    pub handshakes_resumed: u64,
    /// TLS failures by reason, indexed as [`TLS_REASONS`].
    pub tls_errors: [u64; 6],
}

impl Default for Setup {
    fn default() -> Self {
        Setup {
            connect: new_setup_histogram(),
            handshake: None,
            handshakes_full: 0,
            handshakes_resumed: 0,
            tls_errors: [0; 6],
        }
    }
}

impl Setup {
    fn add(&mut self, o: &Setup) {
        let _ = self.connect.add(&o.connect);
        if let Some(h) = &o.handshake {
            let _ = self.handshake_histogram().add(h.as_ref());
        }
        self.handshakes_full += o.handshakes_full;
        self.handshakes_resumed += o.handshakes_resumed;
        for (a, b) in self.tls_errors.iter_mut().zip(o.tls_errors) {
            *a += b;
        }
    }

    fn take(&mut self) -> Setup {
        let taken = self.clone();
        self.connect.reset();
        if let Some(h) = &mut self.handshake {
            h.reset();
        }
        self.handshakes_full = 0;
        self.handshakes_resumed = 0;
        self.tls_errors = [0; 6];
        taken
    }

    /// The handshake histogram, made when first needed.
    pub fn handshake_histogram(&mut self) -> &mut Histogram<u64> {
        self.handshake.get_or_insert_with(|| Box::new(new_setup_histogram()))
    }

    /// A TLS handshake ended, in `took`; `resumed`: an abbreviated one.
    pub fn handshake(&mut self, took: Duration, resumed: bool) {
        self.handshake_histogram().saturating_record(micros(took));
        if resumed {
            self.handshakes_resumed += 1;
        } else {
            self.handshakes_full += 1;
        }
    }
}

/// Arrival-rate flows: iterations (a user walking a whole flow) started, ended and dropped,
/// and how long they took from when each was due.
#[derive(Debug, Clone)]
pub struct Iterations {
    pub started: u64,
    /// Walked to the flow's end.
    pub completed: u64,
    /// Ended at a step that failed.
    pub failed: u64,
    /// Due while every user was busy: never started.
    pub dropped: u64,
    /// Users walking a flow now, and the most at once this interval.
    pub users: u64,
    pub peak_users: u64,
    /// Iteration end − when it was due.
    pub latency: Histogram<u64>,
}

impl Default for Iterations {
    fn default() -> Self {
        Iterations {
            started: 0,
            completed: 0,
            failed: 0,
            dropped: 0,
            users: 0,
            peak_users: 0,
            latency: new_histogram(),
        }
    }
}

impl Iterations {
    fn add(&mut self, o: &Iterations) {
        self.started += o.started;
        self.completed += o.completed;
        self.failed += o.failed;
        self.dropped += o.dropped;
        let _ = self.latency.add(&o.latency);
    }

    /// This interval's figures, leaving the gauge (users now) in place.
    fn take(&mut self) -> Iterations {
        let taken = Iterations {
            latency: self.latency.clone(),
            peak_users: self.peak_users,
            users: self.users,
            ..std::mem::take(self)
        };
        self.users = taken.users;
        self.peak_users = taken.users;
        taken
    }
}

/// What is measured per named request: its counts and its (corrected) latency.
#[derive(Debug, Clone)]
pub struct NameStats {
    pub counters: Counters,
    pub latency: Histogram<u64>,
}

impl Default for NameStats {
    fn default() -> Self {
        Self { counters: Counters::default(), latency: new_histogram() }
    }
}

/// The merge of [`ShardStats`] across shards or intervals.
pub type Totals = ShardStats;

impl Default for ShardStats {
    fn default() -> Self {
        Self {
            counters: Counters::default(),
            latency: new_histogram(),
            latency_uncorrected: new_histogram(),
            latency_ok: None,
            by_class: Default::default(),
            open: 0,
            peak_open: 0,
            in_flight: 0,
            max_lag_us: 0,
            names: Vec::new(),
            scenarios: Vec::new(),
            iterations: None,
            setup: None,
            http2: None,
            grpc: None,
            checks: Vec::new(),
        }
    }
}

impl ShardStats {
    /// Measurements with a slot per named request and one per scenario (none: the plan has
    /// one request, or no `[[scenario]]`).
    pub fn with_names(n: usize, scenarios: usize) -> Self {
        Self {
            names: (0..n).map(|_| NameStats::default()).collect(),
            scenarios: (0..scenarios).map(|_| Counters::default()).collect(),
            ..Self::default()
        }
    }

    /// A complete response of scenario `which` (nothing in a plan without `[[scenario]]`).
    pub fn record_scenario(&mut self, which: usize, status: u16, expected: bool) {
        if let Some(c) = self.scenarios.get_mut(which) {
            c.requests += 1;
            c.status(status);
            if !expected {
                c.error(ErrorKind::Status);
            }
        }
    }

    /// A failure of scenario `which`, counted in the run's counters too.
    pub fn error_in(&mut self, which: usize, kind: ErrorKind) {
        self.counters.error(kind);
        if let Some(c) = self.scenarios.get_mut(which) {
            c.error(kind);
        }
    }

    /// A TLS failure of scenario `which`, counted by reason for the run ([`Self::tls_error`]).
    pub fn tls_error_in(&mut self, which: usize, reason: usize) {
        self.tls_error(reason);
        if let Some(c) = self.scenarios.get_mut(which) {
            c.error(ErrorKind::Tls);
        }
    }

    /// A request of scenario `which` started ([`Self::sent`]).
    pub fn sent_in(&mut self, which: usize, lag: Duration) {
        self.sent(lag);
        if let Some(c) = self.scenarios.get_mut(which) {
            c.sent += 1;
        }
    }

    /// A request of scenario `which` was still in flight at the end.
    pub fn abandoned_in(&mut self, which: usize) {
        self.counters.abandoned += 1;
        if let Some(c) = self.scenarios.get_mut(which) {
            c.abandoned += 1;
        }
    }

    pub fn record_named(&mut self, which: usize, status: u16, corrected: Duration, expected: bool) {
        if let Some(n) = self.names.get_mut(which) {
            n.counters.requests += 1;
            n.counters.status(status);
            if !expected {
                n.counters.error(ErrorKind::Status);
            }
            n.latency.saturating_record(micros(corrected));
        }
    }

    /// Check `which` (the plan's index) passed or failed.
    pub fn check(&mut self, which: usize, passed: bool) {
        if self.checks.len() <= which {
            self.checks.resize(which + 1, CheckCount::default());
        }
        let c = &mut self.checks[which];
        if passed {
            c.passed += 1;
        } else {
            c.failed += 1;
        }
    }

    pub fn error_named(&mut self, which: usize, kind: ErrorKind) {
        if let Some(n) = self.names.get_mut(which) {
            n.counters.error(kind);
        }
    }

    /// The connection set-up figures (made on first use).
    /// The gRPC counts, made when first needed.
    pub fn grpc(&mut self) -> &mut crate::grpc::Grpc {
        self.grpc.get_or_insert_with(Box::default)
    }

    /// The HTTP/2 counts, made when first needed.
    pub fn http2(&mut self) -> &mut crate::http2::Http2 {
        self.http2.get_or_insert_with(Box::default)
    }

    pub fn setup(&mut self) -> &mut Setup {
        self.setup.get_or_insert_with(Box::default)
    }

    /// A TLS failure: an error of kind `tls`, counted by reason (an index of [`TLS_REASONS`]).
    pub fn tls_error(&mut self, reason: usize) {
        self.counters.error(ErrorKind::Tls);
        if let Some(n) = self.setup().tls_errors.get_mut(reason) {
            *n += 1;
        }
    }

    /// The arrival-rate flows' figures (made on first use).
    pub fn iterations(&mut self) -> &mut Iterations {
        self.iterations.get_or_insert_with(Box::default)
    }

    /// A request starts, `lag` after it was due (zero in the closed model).
    pub fn sent(&mut self, lag: Duration) {
        self.counters.sent += 1;
        self.max_lag_us = self.max_lag_us.max(lag.as_micros() as u64);
    }

    /// A complete response; `expected`: its status is one the plan expects, else it also
    /// counts as an error of kind [`ErrorKind::Status`].
    pub fn record(&mut self, status: u16, corrected: Duration, uncorrected: Duration, expected: bool) {
        let us = micros(corrected);
        if !expected {
            // From here on the expected responses' latency is not all of it.
            self.split_ok();
        }
        self.counters.requests += 1;
        self.counters.status(status);
        self.latency.saturating_record(us);
        self.latency_uncorrected.saturating_record(micros(uncorrected));
        if expected {
            if let Some(ok) = self.latency_ok.as_deref_mut() {
                ok.saturating_record(us);
            }
        } else {
            self.counters.error(ErrorKind::Status);
        }
        if let Some(slot) = self.by_class.get_mut(usize::from(status / 100).wrapping_sub(1)) {
            slot.get_or_insert_with(|| Box::new(new_histogram())).saturating_record(us);
        }
    }

    /// The corrected latency of the responses whose status was expected.
    pub fn ok_latency(&self) -> &Histogram<u64> {
        self.latency_ok.as_deref().unwrap_or(&self.latency)
    }

    /// Makes the expected responses' histogram its own (a copy of `latency` so far), before
    /// anything but an expected response is added to `latency`.
    pub fn split_ok(&mut self) {
        if self.latency_ok.is_none() {
            self.latency_ok = Some(Box::new(self.latency.clone()));
        }
    }

    /// The latency of status class `class` (1 for 1xx .. 5 for 5xx), if any was seen.
    pub fn class(&self, class: u16) -> Option<&Histogram<u64>> {
        self.by_class.get(usize::from(class).wrapping_sub(1)).and_then(|h| h.as_deref())
    }

    pub fn opened(&mut self) {
        self.counters.conns_opened += 1;
        self.open += 1;
        self.peak_open = self.peak_open.max(self.open);
    }

    pub fn closed(&mut self) {
        self.open = self.open.saturating_sub(1);
    }

    /// Takes this interval's figures, leaving the gauges (open, in flight) in place.
    pub fn take(&mut self) -> ShardStats {
        let stats = ShardStats {
            counters: std::mem::take(&mut self.counters),
            latency: self.latency.clone(),
            latency_uncorrected: self.latency_uncorrected.clone(),
            latency_ok: self.latency_ok.clone(),
            by_class: self.by_class.clone(),
            max_lag_us: std::mem::take(&mut self.max_lag_us),
            iterations: self.iterations.as_mut().map(|i| Box::new(i.take())),
            setup: self.setup.as_mut().map(|s| Box::new(s.take())),
            http2: self.http2.as_mut().map(|h| Box::new(h.take())),
            grpc: self.grpc.as_mut().map(|g| Box::new(std::mem::take(g.as_mut()))),
            checks: self.checks.iter_mut().map(std::mem::take).collect(),
            names: self
                .names
                .iter_mut()
                .map(|n| {
                    let taken = NameStats { counters: std::mem::take(&mut n.counters), latency: n.latency.clone() };
                    n.latency.reset();
                    taken
                })
                .collect(),
            scenarios: self.scenarios.iter_mut().map(std::mem::take).collect(),
            ..*self
        };
        self.latency.reset();
        self.latency_uncorrected.reset();
        if let Some(ok) = self.latency_ok.as_deref_mut() {
            ok.reset();
        }
        for h in self.by_class.iter_mut().flatten() {
            h.reset();
        }
        self.peak_open = self.open;
        stats
    }

    /// Adds one shard's figures of an interval. Gauges are summed, which is right for
    /// figures of one interval from different shards.
    pub fn add(&mut self, s: &ShardStats) {
        self.add_counts(s);
        self.open += s.open;
        self.peak_open += s.peak_open;
        self.in_flight += s.in_flight;
        if let Some(o) = &s.iterations {
            let i = self.iterations();
            i.users += o.users;
            i.peak_users += o.peak_users;
        }
    }

    /// Adds a whole interval (already merged across shards) to a run total: counts add,
    /// gauges are the latest, the peak is the highest interval's.
    pub fn add_interval(&mut self, i: &ShardStats) {
        self.add_counts(i);
        self.open = i.open;
        self.peak_open = self.peak_open.max(i.peak_open);
        self.in_flight = i.in_flight;
        if let Some(o) = &i.iterations {
            let t = self.iterations();
            t.users = o.users;
            t.peak_users = t.peak_users.max(o.peak_users);
        }
    }

    fn add_counts(&mut self, o: &ShardStats) {
        self.counters.add(&o.counters);
        if o.latency_ok.is_some() {
            self.split_ok();
        }
        // Same bounds on both sides, so adding cannot fail.
        let _ = self.latency.add(&o.latency);
        let _ = self.latency_uncorrected.add(&o.latency_uncorrected);
        if let Some(ok) = self.latency_ok.as_deref_mut() {
            let _ = ok.add(o.ok_latency());
        }
        for (a, b) in self.by_class.iter_mut().zip(&o.by_class) {
            if let Some(b) = b.as_deref().filter(|b| !b.is_empty()) {
                let _ = a.get_or_insert_with(|| Box::new(new_histogram())).add(b);
            }
        }
        self.max_lag_us = self.max_lag_us.max(o.max_lag_us);
        if self.checks.len() < o.checks.len() {
            self.checks.resize(o.checks.len(), CheckCount::default());
        }
        for (a, b) in self.checks.iter_mut().zip(&o.checks) {
            a.passed += b.passed;
            a.failed += b.failed;
        }
        if let Some(it) = &o.iterations {
            self.iterations().add(it);
        }
        if let Some(su) = &o.setup {
            self.setup().add(su);
        }
        if let Some(h) = &o.http2 {
            self.http2().add(h);
        }
        if let Some(g) = &o.grpc {
            self.grpc().add(g);
        }
        if self.names.len() < o.names.len() {
            self.names.resize_with(o.names.len(), NameStats::default);
        }
        for (a, b) in self.names.iter_mut().zip(&o.names) {
            a.counters.add(&b.counters);
            let _ = a.latency.add(&b.latency);
        }
        if self.scenarios.len() < o.scenarios.len() {
            self.scenarios.resize_with(o.scenarios.len(), Counters::default);
        }
        for (a, b) in self.scenarios.iter_mut().zip(&o.scenarios) {
            a.add(b);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_is_exact() {
        let mut a = ShardStats::default();
        let mut b = ShardStats::default();
        for v in 1..=1000u64 {
            a.record(200, Duration::from_micros(v), Duration::from_micros(v), true);
            b.record(503, Duration::from_micros(v * 1000), Duration::from_micros(v), false);
        }
        a.counters.error(ErrorKind::Timeout);
        let mut t = Totals::default();
        t.add(&a.take());
        t.add(&b.take());
        assert_eq!(t.counters.requests, 2000);
        assert_eq!(t.latency.len(), 2000);
        assert_eq!(t.counters.statuses().collect::<Vec<_>>(), vec![(200, 1000), (503, 1000)]);
        assert_eq!(t.counters.errors_of(ErrorKind::Timeout), 1);
        // The 503s failed: 1,001 failures over 2,001 attempts (the timeout had no response).
        assert_eq!(t.counters.errors_of(ErrorKind::Status), 1000);
        assert_eq!(t.counters.attempts(), 2001);
        assert_eq!(t.ok_latency().len(), 1000);
        assert!(t.ok_latency().max() <= 1001);
        assert_eq!(t.class(5).unwrap().len(), 1000);
        assert_eq!(t.class(2).unwrap().len(), 1000);
        assert!(t.class(4).is_none());
        // The median of the union lies between the two shards' ranges.
        assert!(t.latency.value_at_quantile(0.5) <= 1001);
        assert!(t.latency.value_at_quantile(0.51) >= 10_000);
        // Taking resets the interval.
        assert_eq!(a.take().counters.requests, 0);
    }

    /// The expected responses' histogram is `latency` until a status is unexpected, then its
    /// own, and merges by the same rule: the figures are those of a histogram kept throughout.
    #[test]
    fn the_expected_latency_splits_off_at_the_first_unexpected_status() {
        let ms = Duration::from_millis;
        let mut a = ShardStats::default();
        a.record(200, ms(1), ms(1), true);
        assert!(a.latency_ok.is_none());
        a.record(503, ms(50), ms(50), false);
        a.record(200, ms(2), ms(2), true);
        assert_eq!((a.latency.len(), a.ok_latency().len()), (3, 2));
        assert!(a.ok_latency().max() < 3000);
        let mut b = ShardStats::default();
        b.record(200, ms(3), ms(3), true);
        // A total that has seen only expected responses splits when it meets one that has not.
        let mut t = Totals::default();
        t.add(&b.take());
        assert!(t.latency_ok.is_none());
        t.add(&a.take());
        assert_eq!((t.latency.len(), t.ok_latency().len()), (4, 3));
        assert!(t.ok_latency().max() < 4000, "the 50 ms 503 is not in it");
        // After a take a's are empty; its next interval counts from nothing.
        a.record(200, ms(4), ms(4), true);
        assert_eq!((a.latency.len(), a.ok_latency().len()), (1, 1));
    }
}
