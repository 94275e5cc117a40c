//! Watching and steering a running blast (issue 32): the live page (`GET /`), its
//! server-sent events (`GET /events`, one frame a second), and the control API (`GET /run`,
//! `POST /run/rate`, `/run/conns`, `/run/pause`, `/run/resume`, `/run/stop`), on one address
//! of the engine's control endpoint.
//!
//! Nothing on the request path changes: [`LiveFeed`] is an observer of the per-second
//! intervals the other observers get, and keeps the frames a page needs to draw the run so
//! far (at most [`HISTORY`]); each client reads them at its own pace from its own task on the
//! endpoint's executor, so a client that stops reading holds one socket buffer and is dropped,
//! and never slows a shard.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use engine_results::hlog;
use engine_results::observe::{Flow, Interval, Observer};
use engine_results::stats::ErrorKind;
use engine_results::thresholds::Expr;
use engine_results::Summary;
use engine_runtime::endpoint::{guard, Endpoint, Feed, Reply, Request};
use engine_runtime::listen::ListenError;
use serde_json::json;

use crate::plan::Plan;
use crate::steer::{Change, SteerError};
use crate::Control;

/// Frames kept for a page that opens late: an hour of a run at one a second.
pub const HISTORY: usize = 3600;
/// Largest control request body (`{"rate": 3000}`).
const MAX_BODY: usize = 4096;
/// Percentiles each frame carries (the page shows those `?p=` asks for among them).
const PERCENTILES: [f64; 7] = [50.0, 75.0, 90.0, 95.0, 99.0, 99.9, 99.99];

/// What the live page adds above the report: the controls and the last second's figures.
const TOP: &str = include_str!("../assets/live.html");
const LIVE_JS: &str = include_str!("../assets/live.js");

#[derive(Default)]
struct Frames {
    /// Each frame's event name and JSON, newest last; `first` is the mark of the oldest.
    kept: VecDeque<(&'static str, String)>,
    first: u64,
    ended: bool,
    /// The summary so far (without its time series, which the frames carry), after the
    /// newest frame: sent after any new frames, and embedded in the page.
    summary: Option<serde_json::Value>,
}

/// The frames of the run so far, for the page's event stream.
#[derive(Default)]
pub struct LiveFeed {
    frames: Mutex<Frames>,
}

impl LiveFeed {
    pub fn new() -> Arc<LiveFeed> {
        Arc::new(LiveFeed::default())
    }

    fn push(&self, event: &'static str, data: &serde_json::Value) {
        let mut f = self.frames.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        f.kept.push_back((event, data.to_string()));
        if f.kept.len() > HISTORY {
            f.kept.pop_front();
            f.first += 1;
        }
    }
}

/// One second's figures for the page: this interval's rate and latency, the run's counts so
/// far (its running totals).
fn frame(i: &Interval<'_>) -> serde_json::Value {
    let (t, c) = (i.totals, &i.running.counters);
    let mut classes = [0u64; 6];
    for (code, n) in c.statuses() {
        classes[(code as usize / 100).min(5)] += n;
    }
    let ms = |us: u64| us as f64 / 1000.0;
    let p: serde_json::Map<String, serde_json::Value> = PERCENTILES
        .iter()
        .map(|&q| {
            (
                q.to_string(),
                json!(if t.latency.is_empty() { None } else { Some(ms(t.latency.value_at_quantile(q / 100.0))) }),
            )
        })
        .chain([("max".to_string(), json!(if t.latency.is_empty() { None } else { Some(ms(t.latency.max())) }))])
        .collect();
    let errors: serde_json::Map<String, serde_json::Value> =
        ErrorKind::ALL.iter().map(|k| (k.name().to_string(), json!(c.errors_of(*k)))).collect();
    let classes: serde_json::Map<String, serde_json::Value> =
        (1..6).map(|k| (format!("{k}xx"), json!(classes[k]))).collect();
    json!({
        "t_s": i.elapsed_s,
        "planned_s": i.planned_s,
        "stage": i.stage,
        "rps": i.point.rps,
        "target": i.point.target,
        "sent": t.counters.sent,
        "requests": c.requests,
        "errors": c.errors_total(),
        "errors_by_kind": errors,
        "status": classes,
        "latency_ms": p,
        "open": t.open,
        "in_flight": t.in_flight,
        "busy": i.point.busy,
    })
}

impl Feed for LiveFeed {
    fn after(&self, seen: u64) -> Option<(String, u64)> {
        let f = self.frames.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let end = f.first + f.kept.len() as u64;
        if seen >= end {
            return (!f.ended).then(|| (String::new(), seen));
        }
        let from = seen.max(f.first);
        let mut text = String::new();
        for (event, data) in f.kept.iter().skip((from - f.first) as usize) {
            let _ = write!(text, "event: {event}\ndata: {data}\n\n");
        }
        if let Some(summary) = f.summary.as_ref().filter(|_| !f.ended) {
            let _ = write!(text, "event: summary\ndata: {summary}\n\n");
        }
        Some((text, end))
    }
}

/// The observer that feeds the page: each second's figures, and the summary so far.
pub struct LiveObserver {
    feed: Arc<LiveFeed>,
    /// The run's latency log, as latency.hlog has it: each frame carries its interval's lines
    /// (`engine report live` merges blasts exactly from them).
    hlog: hlog::Writer,
    lines: Arc<Mutex<Vec<u8>>>,
    plan: Arc<Plan>,
    control: Control,
    /// Judged on the summary so far each second, so a page shows them pass or fail live (the
    /// verdict is still the one at the end).
    thresholds: Vec<Expr>,
}

impl LiveObserver {
    pub fn new(feed: Arc<LiveFeed>, plan: &Plan, control: &Control, thresholds: Vec<Expr>) -> LiveObserver {
        let lines = Arc::new(Mutex::new(Vec::new()));
        let hlog = hlog::Writer::into_sink(Box::new(Lines(lines.clone())), plan.latency_names());
        LiveObserver { feed, hlog, lines, plan: Arc::new(plan.clone()), control: control.clone(), thresholds }
    }
}

impl Observer for LiveObserver {
    fn interval(&mut self, i: &Interval<'_>) -> Flow {
        let mut frame = frame(i);
        frame["point"] = json!(i.point);
        let began = if i.seq == 1 { self.hlog.begin(i.started) } else { Ok(()) };
        // Into memory: it cannot fail but for a log begun twice, which would be a bug here.
        let _ = began.and_then(|()| self.hlog.write(i.from_s, i.elapsed_s, i.totals));
        let lines = std::mem::take(&mut *self.lines.lock().unwrap_or_else(std::sync::PoisonError::into_inner));
        frame["hlog"] = json!(String::from_utf8_lossy(&lines));
        let mut summary = crate::collect::so_far(&self.plan, i.running, i.elapsed_s);
        summary.start_unix_s = crate::collect::unix_s(i.started);
        summary.interventions = self.control.steering.interventions();
        summary.thresholds = engine_results::thresholds::judge(&self.thresholds, &summary);
        let summary = serde_json::to_value(&summary).unwrap_or_default();
        self.feed.push("interval", &frame);
        self.feed.frames.lock().unwrap_or_else(std::sync::PoisonError::into_inner).summary = Some(summary);
        Flow::Continue
    }

    fn finish(&mut self, summary: &mut Summary) {
        // Watchers finish after the judges: this is the summary with its verdicts, as the
        // results folder gets it.
        let end = serde_json::to_value(&*summary).unwrap_or_default();
        self.feed.push("end", &end);
        self.feed.frames.lock().unwrap_or_else(std::sync::PoisonError::into_inner).ended = true;
    }
}

/// The latency log's lines of the interval being written.
struct Lines(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Lines {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner).extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// What the endpoint serves: the control API always, the page when `feed` is given.
pub struct Live {
    pub control: Control,
    pub token: Option<String>,
    pub feed: Option<Arc<LiveFeed>>,
}

/// Why the page and the control API cannot be served as asked.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum LiveFlagError {
    #[error("--dashboard serves the control API too: give --control only without it, or the same address")]
    TwoAddresses,
    #[error("--control-token without --dashboard or --control has nothing to protect")]
    TokenAlone,
    #[error("{0} is not a loopback address: anyone who reaches it could steer the run; give --control-token (at least 16 characters)")]
    NeedsToken(SocketAddr),
    #[error("--control-token is shorter than 16 characters")]
    ShortToken,
}

/// Where the page and the control API are served (`None`: nowhere), from `--dashboard`,
/// `--control` and `--control-token`; the page is served when `dashboard` is given.
pub fn address(
    dashboard: Option<SocketAddr>,
    control: Option<SocketAddr>,
    token: Option<&str>,
) -> Result<Option<SocketAddr>, LiveFlagError> {
    let addr = match (dashboard, control) {
        (Some(d), Some(c)) if d != c => return Err(LiveFlagError::TwoAddresses),
        (Some(a), _) | (None, Some(a)) => a,
        (None, None) if token.is_some() => return Err(LiveFlagError::TokenAlone),
        (None, None) => return Ok(None),
    };
    match token {
        Some(t) if t.len() < 16 => Err(LiveFlagError::ShortToken),
        None if !addr.ip().is_loopback() => Err(LiveFlagError::NeedsToken(addr)),
        _ => Ok(Some(addr)),
    }
}

/// Serves `live` on `addr`.
pub fn serve(addr: SocketAddr, live: Live) -> Result<Endpoint, ListenError> {
    let live = Arc::new(live);
    Endpoint::serve(
        "blast-control",
        addr,
        MAX_BODY,
        |status, message| error(status, message),
        move |req| route(&live, req),
    )
}

fn json_reply(status: u16, value: &impl serde::Serialize) -> Reply {
    let mut body = serde_json::to_vec_pretty(value).unwrap_or_default();
    body.push(b'\n');
    Reply::new(status, "application/json", body)
}

fn error(status: u16, message: impl std::fmt::Display) -> Reply {
    json_reply(status, &json!({ "error": message.to_string() }))
}

impl LiveFeed {
    /// The frames so far as one JSON array of `{event, data}`, and the summary to open with:
    /// the final one once the run ended, else the summary so far with the frames' points.
    fn history(&self) -> (String, String) {
        let f = self.frames.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut out = String::from("[");
        let mut points = Vec::with_capacity(f.kept.len());
        let mut last = None;
        for (i, (event, data)) in f.kept.iter().enumerate() {
            let _ = write!(out, "{}{{\"event\":\"{event}\",\"data\":{data}}}", if i > 0 { "," } else { "" });
            if *event == "interval" {
                points.push(data.as_str());
            } else {
                last = Some(data.as_str());
            }
        }
        out.push(']');
        let summary = match (last, &f.summary) {
            (Some(end), _) => end.to_string(),
            (None, Some(s)) => {
                let mut s = s.clone();
                let points: Vec<serde_json::Value> = points
                    .iter()
                    .filter_map(|p| serde_json::from_str::<serde_json::Value>(p).ok().map(|v| v["point"].clone()))
                    .collect();
                s["timeseries"] = serde_json::Value::Array(points);
                s["live"] = json!(true);
                s.to_string()
            }
            (None, None) => String::new(),
        };
        (out, summary)
    }
}

/// The page: report.html's (one page, one code to draw it), with the controls and the last
/// second's figures on top and the run so far in it, so it draws at once, then follows the
/// events. JSON sits in `<script type="application/json">`, so only `</` needs escaping.
fn page(feed: &LiveFeed) -> String {
    let (history, summary) = feed.history();
    let scripts = format!(
        "\n<script type=\"application/json\" id=\"history\">{}</script>\n<script type=\"application/json\" id=\"now\">{{}}</script>\n<script>{LIVE_JS}</script>",
        history.replace("</", "<\\/")
    );
    engine_results::html::page(&summary, TOP, &scripts)
}

/// The number a change's body gives (`{"rate": 3000}`).
fn number(body: &[u8], field: &str) -> Result<f64, Reply> {
    let v: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| error(400, format!("send {{\"{field}\": N}} as JSON: {e}")))?;
    v.get(field).and_then(serde_json::Value::as_f64).ok_or_else(|| error(400, format!("send {{\"{field}\": N}}")))
}

fn route(live: &Live, req: &Request<'_>) -> Reply {
    let pages = live.feed.is_some();
    if let Err(refused) = guard(req, live.token.as_deref(), pages) {
        let mut r = error(refused.status, refused.message);
        r.extra = refused.challenge();
        return r;
    }
    let change = match (req.method, req.path, &live.feed) {
        ("GET", "/", Some(feed)) => return Reply::new(200, "text/html; charset=utf-8", page(feed)),
        ("GET", "/events", Some(feed)) => return Reply::events(feed.clone()),
        ("GET", "/run", _) => {
            return match live.control.run_state() {
                Some(state) => json_reply(200, &state),
                None => error(409, SteerError::NotStarted),
            };
        }
        ("POST", "/run/rate", _) => match number(req.body, "rate") {
            Ok(r) => Change::Rate(r),
            Err(reply) => return reply,
        },
        ("POST", "/run/conns", _) => match number(req.body, "conns") {
            Ok(n) if n >= 0.0 && n.fract() == 0.0 => Change::Conns(n as u64),
            Ok(_) => return error(400, "connections are a whole number, 0 or more"),
            Err(reply) => return reply,
        },
        ("POST", "/run/pause", _) => Change::Pause,
        ("POST", "/run/resume", _) => Change::Resume,
        ("POST", "/run/stop", _) => Change::Stop,
        (_, "/run" | "/run/rate" | "/run/conns" | "/run/pause" | "/run/resume" | "/run/stop", _) => {
            return error(405, "method not allowed");
        }
        _ => {
            return error(
                404,
                "no such endpoint; see GET /run, POST /run/rate, /run/conns, /run/pause, /run/resume, /run/stop",
            )
        }
    };
    match live.control.steer(change) {
        Ok(done) => json_reply(200, &done),
        Err(e @ SteerError::Value(_)) => error(400, e),
        Err(e) => error(409, e),
    }
}
