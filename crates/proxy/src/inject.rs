//! A shard's view of the fault rules: the list it last pulled from the [`FaultBook`], the
//! state of its stateful rules (concurrency limits, token buckets), and the per-request
//! decision. Limits and rates are split evenly between shards, like the blast splits its
//! rate: each shard enforces its share with no cross-core traffic per request.

use std::cell::Cell;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use engine_util::Rng;
use glommio::sync::Semaphore;

use crate::book::{Active, FaultBook, RuleCounters};
use crate::faults::{Action, Direction, Distribution, FaultKind, Rule};
use crate::shape::Shape;
use engine_http::forward::reason;

/// What the faults ask of one request.
#[derive(Default)]
pub(crate) struct Decision {
    /// Wait this long before forwarding.
    pub delay: Duration,
    /// Stream faults on the bytes to the upstream and to the client.
    pub up: Shape,
    pub down: Shape,
    /// The stream faults that acted (bit `FaultKind as usize`), counted once the request goes on.
    pub stream_kinds: u32,
    /// Hold a slot of this limit while upstream.
    pub limiter: Option<Rc<Limiter>>,
    /// Answer without forwarding.
    pub end: Option<End>,
    /// The request's place among the faults active across the proxy (`--max-active-faults`),
    /// held while the request lasts.
    pub active: Option<Active>,
}

impl Decision {
    /// A stream fault of `kind` on the bytes going `way`.
    pub fn stream(&mut self, kind: FaultKind, way: Direction, shape: Shape) {
        self.stream_kinds |= 1 << kind as u32;
        match way {
            Direction::Upstream => self.up.add(&shape),
            Direction::Downstream => self.down.add(&shape),
        }
    }
}

pub(crate) enum End {
    /// A canned answer: `head` (status line and fields, without the blank line) and body.
    Respond {
        head: Rc<[u8]>,
        body: Rc<[u8]>,
        kind: crate::faults::FaultKind,
        /// To a gRPC call: this status and message instead, trailers-only.
        grpc: Option<GrpcAnswer>,
    },
    /// Reset the connection (HTTP/1.1) or the stream with this code (HTTP/2).
    Reset(u32),
    Hang,
    /// Hold, then close (zero: hold until the client gives up).
    Timeout(Duration),
}

/// A gRPC status code and its message, as an abort rule answers a call.
pub(crate) type GrpcAnswer = Rc<(u8, Box<str>)>;

/// One shard's share of a concurrency rule: `limit` slots, `queue` waiters at most.
pub(crate) struct Limiter {
    slots: Rc<Semaphore>,
    limit: u64,
    queue: u64,
    waiting: Cell<u64>,
    timeout: Duration,
    /// The 503 for requests that find the queue full or wait too long: head and body.
    pub refusal: (Rc<[u8]>, Rc<[u8]>),
}

impl Limiter {
    pub fn in_use(&self) -> u64 {
        self.limit - self.slots.available().min(self.limit)
    }

    pub fn waiting(&self) -> u64 {
        self.waiting.get()
    }

    /// A slot, after waiting in the queue if need be; `None` when the queue is full or the
    /// wait timed out (the request is then refused).
    pub async fn acquire(&self) -> Option<glommio::sync::StaticPermit> {
        if let Ok(p) = self.slots.try_acquire_static_permit(1) {
            return Some(p);
        }
        if self.waiting.get() >= self.queue {
            return None;
        }
        self.waiting.set(self.waiting.get() + 1);
        let wait = async { self.slots.acquire_static_permit(1).await.ok() };
        let timeout = async {
            glommio::timer::sleep(self.timeout).await;
            None
        };
        let permit = futures_lite::future::or(wait, timeout).await;
        self.waiting.set(self.waiting.get() - 1);
        permit
    }
}

/// One shard's share of a token bucket.
struct Bucket {
    per_s: f64,
    burst: f64,
    tokens: Cell<f64>,
    last: Cell<Instant>,
    refusal: (Rc<[u8]>, Rc<[u8]>),
}

impl Bucket {
    fn take(&self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last.get()).as_secs_f64();
        self.last.set(now);
        let tokens = (self.tokens.get() + elapsed * self.per_s).min(self.burst);
        if tokens >= 1.0 {
            self.tokens.set(tokens - 1.0);
            true
        } else {
            self.tokens.set(tokens);
            false
        }
    }
}

enum State {
    Stateless,
    Abort { head: Rc<[u8]>, body: Rc<[u8]>, grpc: Option<GrpcAnswer> },
    Limit(Rc<Limiter>),
    Bucket(Rc<Bucket>),
}

pub(crate) struct ShardFaults {
    book: Arc<FaultBook>,
    version: u64,
    rules: Arc<Vec<Rule>>,
    counters: Arc<Vec<Arc<RuleCounters>>>,
    state: Vec<State>,
    /// Each rule's header regex, compiled.
    regexes: Vec<Option<regex::bytes::Regex>>,
    rng: Rng,
    start: Instant,
    shard: usize,
    shards: usize,
}

impl ShardFaults {
    pub fn new(book: Arc<FaultBook>, start: Instant, shard: usize, shards: usize) -> Self {
        let mut f = ShardFaults {
            book,
            version: u64::MAX,
            rules: Arc::new(Vec::new()),
            counters: Arc::new(Vec::new()),
            state: Vec::new(),
            regexes: Vec::new(),
            rng: Rng::new(0x9e37_79b9_7f4a_7c15 ^ (shard as u64 + 1).wrapping_mul(0xbf58_476d_1ce4_e5b9)),
            start,
            shard,
            shards,
        };
        f.refresh();
        f
    }

    /// Takes the book's rules if they changed since the last look (once per tick).
    pub fn refresh(&mut self) {
        let v = self.book.version();
        if v == self.version {
            return;
        }
        self.version = v;
        let current = self.book.current();
        // A rule that survives an edit (or is switched off and on) keeps its slots and tokens:
        // in-flight requests hold permits of the old limiter, and a rebuilt one would admit
        // `limit` more.
        let same = |o: &Rule, r: &Rule| o == &Rule { enabled: o.enabled, ..r.clone() };
        let state = current
            .rules
            .iter()
            .map(|r| match self.rules.iter().position(|o| same(o, r)) {
                Some(i) => self.state[i].clone_state(),
                None => self.build(r),
            })
            .collect();
        // Validated when added: a pattern that does not compile here matches nothing.
        self.regexes = current
            .rules
            .iter()
            .map(|r| {
                r.matcher
                    .header
                    .as_ref()
                    .and_then(|h| h.regex.as_deref())
                    .and_then(|p| crate::faults::header_regex(p).ok())
            })
            .collect();
        self.rules = current.rules;
        self.counters = current.counters;
        self.state = state;
    }

    /// This shard's share of `total`: `total / shards`, the remainder to the first shards.
    fn share(&self, total: u64) -> u64 {
        total / self.shards as u64 + u64::from((self.shard as u64) < total % self.shards as u64)
    }

    fn build(&self, rule: &Rule) -> State {
        match &rule.action {
            Action::Abort { status, retry_after_s, body, headers, grpc_status, grpc_message } => {
                let body = body.as_deref().unwrap_or_default().as_bytes();
                let (head, body) = canned(*status, *retry_after_s, headers.iter(), body);
                let message = grpc_message.as_deref().unwrap_or("fault injected by engine proxy");
                let grpc = grpc_status.map(|c| Rc::new((c.0, message.into())));
                State::Abort { head, body, grpc }
            }
            Action::Concurrency { limit, queue, queue_timeout_ms } => {
                let retry = queue_timeout_ms.div_ceil(1000).max(1);
                let limit = self.share(u64::from(*limit));
                State::Limit(Rc::new(Limiter {
                    slots: Rc::new(Semaphore::new(limit)),
                    limit,
                    queue: self.share(u64::from(*queue)),
                    waiting: Cell::new(0),
                    timeout: Duration::from_millis(*queue_timeout_ms),
                    refusal: refusal(503, retry),
                }))
            }
            Action::RateLimit { rps, burst } => {
                let per_s = rps / self.shards as f64;
                let burst = burst.map_or_else(|| per_s.ceil().max(1.0), |b| self.share(u64::from(b)) as f64);
                State::Bucket(Rc::new(Bucket {
                    per_s,
                    burst,
                    tokens: Cell::new(burst),
                    last: Cell::new(Instant::now()),
                    refusal: refusal(429, (1.0 / per_s).ceil().max(1.0) as u64),
                }))
            }
            _ => State::Stateless,
        }
    }

    /// Walks the rules in order for one request. Delays add up, stream faults combine (see
    /// [`Shape::add`]), and the first rule that answers (abort, reset, hang, a refused rate)
    /// ends the walk.
    pub fn decide<'a>(
        &mut self,
        method: &str,
        path: &str,
        header: impl Fn(&str) -> Option<&'a [u8]> + Copy,
    ) -> Decision {
        let mut d = Decision::default();
        if self.rules.is_empty() {
            return d;
        }
        let now = Instant::now();
        let t_s = now.saturating_duration_since(self.start).as_secs_f64();
        for (i, (rule, state)) in self.rules.iter().zip(&self.state).enumerate() {
            if !rule.enabled || !rule.active_at(t_s) || !rule.matches(method, path, header, self.regexes[i].as_ref()) {
                continue;
            }
            let counters = &self.counters[i];
            let n = counters.matched.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
            if !rule.selects(n) {
                continue;
            }
            if let Some(p) = rule.probability {
                // 53 random bits as a uniform draw in [0, 1).
                if (self.rng.next() >> 11) as f64 / (1u64 << 53) as f64 >= p {
                    continue;
                }
            }
            // A rate limit acts only on what it refuses.
            if let (Action::RateLimit { .. }, State::Bucket(b)) = (&rule.action, state) {
                if b.take(now) {
                    continue;
                }
            }
            if d.active.is_none() {
                match self.book.activate() {
                    Some(a) => d.active = Some(a),
                    // `--max-active-faults` are active: this request goes unfaulted.
                    None => return Decision::default(),
                }
            }
            counters.injected.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            if let Some((kind, way, shape)) = Shape::of(&rule.action) {
                d.stream(kind, way, shape);
                continue;
            }
            match (&rule.action, state) {
                (Action::Delay { ms, jitter_ms, distribution }, _) => {
                    let jitter = random_jitter(&mut self.rng, *jitter_ms as f64, *distribution);
                    d.delay += Duration::from_secs_f64((*ms as f64 + jitter).max(0.0) / 1000.0);
                }
                (Action::Concurrency { .. }, State::Limit(l)) if d.limiter.is_none() => {
                    d.limiter = Some(l.clone());
                }
                (Action::RateLimit { .. }, State::Bucket(b)) => {
                    d.end = Some(End::Respond {
                        head: b.refusal.0.clone(),
                        body: b.refusal.1.clone(),
                        kind: crate::faults::FaultKind::RateLimit,
                        grpc: None,
                    });
                    return d;
                }
                (Action::Abort { .. }, State::Abort { head, body, grpc }) => {
                    d.end = Some(End::Respond {
                        head: head.clone(),
                        body: body.clone(),
                        kind: crate::faults::FaultKind::Abort,
                        grpc: grpc.clone(),
                    });
                    return d;
                }
                (Action::Reset { h2_code }, _) => {
                    d.end = Some(End::Reset(h2_code.unwrap_or(2)));
                    return d;
                }
                (Action::Hang {}, _) => {
                    d.end = Some(End::Hang);
                    return d;
                }
                (Action::Timeout { ms }, _) => {
                    d.end = Some(End::Timeout(Duration::from_millis(*ms)));
                    return d;
                }
                _ => {}
            }
        }
        d
    }

    /// The decision for a whole connection in TCP mode: no method, path or fields (TCP rules
    /// match every connection).
    pub fn decide_connection(&mut self) -> Decision {
        self.decide("", "", |_| None)
    }

    /// The version of the rules this shard holds (it changes when they do).
    pub fn version(&self) -> u64 {
        self.version
    }

    /// Requests holding a concurrency slot, and requests queued for one, on this shard.
    pub fn occupancy(&self) -> (u64, u64) {
        self.state.iter().fold((0, 0), |(u, w), s| match s {
            State::Limit(l) => (u + l.in_use(), w + l.waiting()),
            _ => (u, w),
        })
    }
}

impl State {
    fn clone_state(&self) -> State {
        match self {
            State::Stateless => State::Stateless,
            State::Abort { head, body, grpc } => {
                State::Abort { head: head.clone(), body: body.clone(), grpc: grpc.clone() }
            }
            State::Limit(l) => State::Limit(l.clone()),
            State::Bucket(b) => State::Bucket(b.clone()),
        }
    }
}

/// The answer to a request a concurrency (503) or rate (429) rule turns away: head and body.
fn refusal(status: u16, retry_after_s: u64) -> (Rc<[u8]>, Rc<[u8]>) {
    let body: &[u8] = if status == 429 {
        b"rate limited by an engine-proxy fault\n"
    } else {
        b"overloaded: an engine-proxy concurrency fault\n"
    };
    canned(status, Some(retry_after_s), std::iter::empty::<(&str, &str)>(), body)
}

/// An answer the proxy gives itself: the head (status line and fields, without the blank
/// line) and the body.
pub(crate) fn canned<K: AsRef<str>, V: AsRef<str>>(
    status: u16,
    retry_after_s: Option<u64>,
    headers: impl IntoIterator<Item = (K, V)>,
    body: &[u8],
) -> (Rc<[u8]>, Rc<[u8]>) {
    let mut head = format!("HTTP/1.1 {status} {}\r\nContent-Length: {}\r\n", reason(status), body.len());
    if let Some(s) = retry_after_s {
        head.push_str(&format!("Retry-After: {s}\r\n"));
    }
    for (k, v) in headers {
        head.push_str(&format!("{}: {}\r\n", k.as_ref(), v.as_ref()));
    }
    head.push_str("Via: 1.1 engine-proxy\r\n");
    (head.into_bytes().into(), body.into())
}

/// A random delay part of scale `scale_ms` (milliseconds, may be negative for `normal`).
fn random_jitter(rng: &mut Rng, scale_ms: f64, dist: Distribution) -> f64 {
    if scale_ms <= 0.0 {
        return 0.0;
    }
    let u = || (rng.next() >> 11) as f64 / (1u64 << 53) as f64;
    let mut draw = u;
    match dist {
        Distribution::Uniform => draw() * scale_ms,
        Distribution::Exponential => -(1.0 - draw()).ln() * scale_ms,
        Distribution::Normal => {
            // Box-Muller; 1 - u keeps the logarithm finite.
            let (a, b) = (1.0 - draw(), draw());
            (-2.0 * a.ln()).sqrt() * (std::f64::consts::TAU * b).cos() * scale_ms
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_distributions_have_their_scale() {
        let mut rng = Rng::new(7);
        for (dist, mean, lo, hi) in [
            (Distribution::Uniform, 5.0, 0.0, 10.0),
            (Distribution::Exponential, 10.0, 0.0, f64::INFINITY),
            (Distribution::Normal, 0.0, f64::NEG_INFINITY, f64::INFINITY),
        ] {
            let n = 20_000;
            let xs: Vec<f64> = (0..n).map(|_| random_jitter(&mut rng, 10.0, dist)).collect();
            let m = xs.iter().sum::<f64>() / n as f64;
            assert!((m - mean).abs() < 0.5, "{dist:?} mean {m}");
            assert!(xs.iter().all(|x| (lo..hi).contains(x)), "{dist:?} range");
        }
    }

    #[test]
    fn token_bucket_allows_burst_then_rate() {
        let t0 = Instant::now();
        let b =
            Bucket { per_s: 10.0, burst: 3.0, tokens: Cell::new(3.0), last: Cell::new(t0), refusal: refusal(429, 1) };
        assert!((0..3).all(|_| b.take(t0)));
        assert!(!b.take(t0));
        assert!(b.take(t0 + Duration::from_millis(100)));
        assert!(!b.take(t0 + Duration::from_millis(150)));
    }
}
