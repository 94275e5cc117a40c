//! Safety stops on the target's own resources: `--abort-on 'promql:QUERY>0.9 for 3'` asks a
//! Prometheus server (`--prometheus URL`) for QUERY's value at the end of every interval and
//! stops the run when the comparison holds for its grace, as any safety stop does.
//!
//! A query that fails (Prometheus unreachable, an error, no series, several series) does not
//! count as holding or as not holding: its streak starts again, and the summary carries a
//! warning naming the stop, how many intervals it could not be read and the first reason. A
//! stop that could never be read must not look like a stop that never fired.
//!
//! The queries run on a thread of their own: the collector waits at most 300 ms an interval
//! for them, so a slow Prometheus can neither hold up the run's intervals nor its end.
//!
//! Before the load starts, every query is asked once: a query Prometheus refuses, or a server
//! that does not answer, is a configuration error then, not a surprise ten minutes in.

use std::sync::mpsc;
use std::time::Duration;

use engine_results::observe::{Flow, Interval, Observer};
use engine_results::summary::Fired;
use engine_results::thresholds::Expr;
use engine_results::Summary;

use crate::client::{self, ClientError};

/// The longest a query may take: it runs on the collector's thread, between intervals.
const QUERY_TIMEOUT: Duration = Duration::from_secs(2);

/// A Prometheus server's HTTP API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prometheus {
    /// As given, for messages.
    pub url: String,
    /// `host:port`, sent as the Host header.
    authority: String,
    /// The path the API hangs under (`""`, or `/prometheus` behind a prefix).
    prefix: String,
}

/// Why a query has no value.
#[derive(Debug, thiserror::Error)]
pub enum PromError {
    #[error("--prometheus {url:?}: {why} (give the server's base URL: http://HOST:9090)")]
    Url { url: String, why: String },
    #[error("Prometheus at {url}: {cause}")]
    Request { url: String, cause: ClientError },
    #[error("Prometheus answered {status}: {message}")]
    Refused { status: u16, message: String },
    #[error("Prometheus's answer is not its API's JSON: {0}")]
    Answer(String),
    #[error("the query returned no series (nothing scraped yet, or a label that matches nothing)")]
    NoSeries,
    #[error("the query returned {0} series; a stop compares one number (wrap it in sum(), avg() or max())")]
    Series(usize),
    #[error("the query returned {0:?}, not a number")]
    NotANumber(String),
}

impl Prometheus {
    /// `http://HOST:PORT[/PREFIX]`.
    pub fn parse(url: &str) -> Result<Self, PromError> {
        let bad = |why: &str| PromError::Url { url: url.to_string(), why: why.to_string() };
        let u = url::Url::parse(url).map_err(|e| bad(&e.to_string()))?;
        if u.scheme() != "http" {
            return Err(bad("only http:// is supported"));
        }
        if u.query().is_some() {
            return Err(bad("no query string: the engine adds /api/v1/query?query=..."));
        }
        let host = u.host_str().ok_or_else(|| bad("no host"))?;
        let port = u.port_or_known_default().unwrap_or(9090);
        let authority = if host.contains(':') { format!("[{host}]:{port}") } else { format!("{host}:{port}") };
        let prefix = u.path().trim_end_matches('/').to_string();
        Ok(Prometheus { url: url.to_string(), authority, prefix })
    }

    /// The query's value now: one number, from a scalar or a vector of one series.
    pub fn query(&self, query: &str) -> Result<f64, PromError> {
        let path = format!(
            "{}/api/v1/query?query={}",
            self.prefix,
            url::form_urlencoded::byte_serialize(query.as_bytes()).collect::<String>()
        );
        let answer = client::resolve(&self.authority)
            .and_then(|addr| client::get(addr, &self.authority, &path, QUERY_TIMEOUT))
            .map_err(|cause| PromError::Request { url: self.url.clone(), cause })?;
        value_of(answer.status, &answer.body)
    }
}

/// The value in an answer of `/api/v1/query`.
fn value_of(status: u16, body: &[u8]) -> Result<f64, PromError> {
    let json: serde_json::Value = serde_json::from_slice(body).map_err(|e| {
        if status == 200 {
            PromError::Answer(e.to_string())
        } else {
            PromError::Refused { status, message: String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned() }
        }
    })?;
    if json["status"] != "success" {
        let message = json["error"].as_str().unwrap_or("no error message").to_string();
        return Err(PromError::Refused { status, message });
    }
    let data = &json["data"];
    // A sample is [unix time, "value"]; Prometheus writes the value as a string (NaN, +Inf).
    let sample = match data["resultType"].as_str() {
        Some("scalar") => &data["result"],
        Some("vector") => match data["result"].as_array().map(Vec::as_slice) {
            Some([one]) => &one["value"],
            Some([]) => return Err(PromError::NoSeries),
            Some(many) => return Err(PromError::Series(many.len())),
            None => return Err(PromError::Answer("a vector without a result list".into())),
        },
        Some(other) => return Err(PromError::Answer(format!("a {other}, not a scalar or an instant vector"))),
        None => return Err(PromError::Answer("no resultType".into())),
    };
    let text = sample[1].as_str().ok_or_else(|| PromError::Answer("a sample without a value".into()))?;
    text.parse::<f64>().ok().filter(|v| !v.is_nan()).ok_or_else(|| PromError::NotANumber(text.to_string()))
}

/// One `promql:` stop's state over the run.
struct Stop {
    expr: Expr,
    streak: u32,
    /// Intervals whose query had no value, and the first reason.
    failed: u32,
    first_failure: Option<String>,
}

/// What one round of queries gave: a value or why not, a stop each.
type Answers = Vec<Result<f64, String>>;

/// Asks Prometheus on a thread of its own, so a slow or silent server costs the collector at
/// most [`ANSWER_WAIT`] an interval, never a backlog of intervals or a late end: a round not
/// answered in time is not judged, and a new one is asked only once the late one is back.
struct Asker {
    ask: mpsc::Sender<()>,
    answers: mpsc::Receiver<Answers>,
    /// A round was asked and its answers have not come back.
    busy: bool,
}

/// How long the collector waits for a round's answers.
const ANSWER_WAIT: Duration = Duration::from_millis(300);

impl Asker {
    fn new(prometheus: Prometheus, queries: Vec<String>) -> std::io::Result<Self> {
        let (ask, asked) = mpsc::channel::<()>();
        let (answer, answers) = mpsc::channel();
        std::thread::Builder::new().name("promql".into()).spawn(move || {
            // Ends when the watch (and its sender) is gone.
            while asked.recv().is_ok() {
                let round = queries.iter().map(|q| prometheus.query(q).map_err(|e| e.to_string())).collect();
                if answer.send(round).is_err() {
                    return;
                }
            }
        })?;
        Ok(Asker { ask, answers, busy: false })
    }

    /// This interval's answers, or why there are none.
    fn round(&mut self) -> Result<Answers, String> {
        let late = || format!("Prometheus did not answer within {} ms", ANSWER_WAIT.as_millis());
        if self.busy {
            match self.answers.try_recv() {
                // The last round's answers came too late to judge: asked again below.
                Ok(_) => self.busy = false,
                Err(mpsc::TryRecvError::Empty) => return Err(late()),
                Err(mpsc::TryRecvError::Disconnected) => return Err("the query thread ended".into()),
            }
        }
        self.ask.send(()).map_err(|_| "the query thread ended".to_string())?;
        self.busy = true;
        match self.answers.recv_timeout(ANSWER_WAIT) {
            Ok(a) => {
                self.busy = false;
                Ok(a)
            }
            Err(_) => Err(late()),
        }
    }
}

/// The `promql:` safety stops, read from Prometheus each interval.
pub struct PromWatch {
    prometheus: Prometheus,
    stops: Vec<Stop>,
    grace: u32,
    intervals: u32,
    fired: Option<Fired>,
    /// Made when the run starts ([`PromWatch::probe`]).
    asker: Option<Asker>,
}

impl PromWatch {
    /// `exprs`: the `promql:` stops; `grace`: for those without a `for N` of their own.
    pub fn new(prometheus: Prometheus, exprs: Vec<Expr>, grace: u32) -> Self {
        let stops = exprs.into_iter().map(|expr| Stop { expr, streak: 0, failed: 0, first_failure: None }).collect();
        PromWatch { prometheus, stops, grace, intervals: 0, fired: None, asker: None }
    }

    /// Asks every query once: each must give a number now, or the run should not start.
    /// Then starts the thread that asks them during the run.
    pub fn probe(&mut self) -> Result<(), (String, PromError)> {
        for s in &self.stops {
            let query = s.expr.query().unwrap_or_default();
            match self.prometheus.query(query) {
                // A query over series not scraped yet has no value before the load: that is
                // what the warning during the run is for.
                Ok(_) | Err(PromError::NoSeries) => {}
                Err(e) => return Err((s.expr.text.clone(), e)),
            }
        }
        let queries = self.stops.iter().map(|s| s.expr.query().unwrap_or_default().to_string()).collect();
        let asker = Asker::new(self.prometheus.clone(), queries).map_err(|e| {
            let stop = self.stops.first().map(|s| s.expr.text.clone()).unwrap_or_default();
            (stop, PromError::Request { url: self.prometheus.url.clone(), cause: ClientError::Io(e) })
        })?;
        self.asker = Some(asker);
        Ok(())
    }
}

impl Observer for PromWatch {
    fn interval(&mut self, i: &Interval<'_>) -> Flow {
        if self.fired.is_some() {
            return Flow::Continue;
        }
        self.intervals += 1;
        let round = match self.asker.as_mut() {
            Some(a) => a.round(),
            None => Err("not started".into()),
        };
        for (k, s) in self.stops.iter_mut().enumerate() {
            let answer = match &round {
                Ok(answers) => answers.get(k).cloned().unwrap_or_else(|| Err("no answer".into())),
                Err(why) => Err(why.clone()),
            };
            match answer {
                Ok(value) => {
                    s.streak = if s.expr.compare(value) { s.streak + 1 } else { 0 };
                    if s.streak >= s.expr.stop_grace(self.grace) {
                        self.fired = Some(Fired { expr: s.expr.text.clone(), at_s: i.elapsed_s, value });
                        return Flow::Stop;
                    }
                }
                Err(e) => {
                    s.streak = 0;
                    s.failed += 1;
                    s.first_failure.get_or_insert(e);
                }
            }
        }
        Flow::Continue
    }

    fn finish(&mut self, summary: &mut Summary) {
        for s in self.stops.iter().filter(|s| s.failed > 0) {
            summary.warnings.push(format!(
                "safety stop '{}' could not be read in {} of {} intervals (first: {}); it was not judged then",
                s.expr.text,
                s.failed,
                self.intervals,
                s.first_failure.as_deref().unwrap_or("?")
            ));
        }
        // The run's other safety stops finished first; the stop that fired first is theirs
        // when both fired in one interval.
        if summary.stopped_by.is_none() {
            summary.stopped_by = self.fired.clone();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let p = Prometheus::parse("http://127.0.0.1:9090").unwrap();
        assert_eq!((p.authority.as_str(), p.prefix.as_str()), ("127.0.0.1:9090", ""));
        let p = Prometheus::parse("http://prom/prometheus/").unwrap();
        assert_eq!((p.authority.as_str(), p.prefix.as_str()), ("prom:80", "/prometheus"));
        assert!(Prometheus::parse("https://prom:9090").is_err());
        assert!(Prometheus::parse("prom:9090").is_err());
        assert!(Prometheus::parse("http://prom:9090/?x=1").is_err());
    }

    #[test]
    fn answers() {
        let v = |body: &str| value_of(200, body.as_bytes());
        let vector = r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1733353200.1,"0.93"]}]}}"#;
        assert_eq!(v(vector).unwrap(), 0.93);
        let scalar = r#"{"status":"success","data":{"resultType":"scalar","result":[1733353200.1,"4"]}}"#;
        assert_eq!(v(scalar).unwrap(), 4.0);
        let none = r#"{"status":"success","data":{"resultType":"vector","result":[]}}"#;
        assert!(matches!(v(none), Err(PromError::NoSeries)));
        let two =
            r#"{"status":"success","data":{"resultType":"vector","result":[{"value":[1,"1"]},{"value":[1,"2"]}]}}"#;
        assert!(matches!(v(two), Err(PromError::Series(2))));
        let nan = r#"{"status":"success","data":{"resultType":"scalar","result":[1,"NaN"]}}"#;
        assert!(matches!(v(nan), Err(PromError::NotANumber(_))));
        let matrix = r#"{"status":"success","data":{"resultType":"matrix","result":[]}}"#;
        assert!(matches!(v(matrix), Err(PromError::Answer(_))));
        let refused = r#"{"status":"error","errorType":"bad_data","error":"parse error at char 4"}"#;
        let e = value_of(400, refused.as_bytes()).unwrap_err();
        assert_eq!(e.to_string(), "Prometheus answered 400: parse error at char 4");
        assert!(matches!(value_of(502, b"<html>bad gateway</html>"), Err(PromError::Refused { status: 502, .. })));
        assert!(matches!(v("not json"), Err(PromError::Answer(_))));
        assert!(v(r#"{"status":"success","data":{"resultType":"scalar","result":[1]}}"#).is_err());
    }

    /// A Prometheus that answers `value` to its first `answered` queries and then never again.
    fn prometheus(value: &'static str, answered: usize) -> Prometheus {
        use std::io::{Read, Write};
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", l.local_addr().unwrap());
        std::thread::spawn(move || {
            for (n, c) in l.incoming().enumerate() {
                let Ok(mut c) = c else { continue };
                std::thread::spawn(move || {
                    let mut buf = [0u8; 4096];
                    let _ = c.read(&mut buf);
                    if n >= answered {
                        std::thread::sleep(Duration::from_secs(5));
                        return;
                    }
                    let body =
                        format!(r#"{{"status":"success","data":{{"resultType":"scalar","result":[1,"{value}"]}}}}"#);
                    let _ = write!(c, "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}", body.len());
                });
            }
        });
        Prometheus::parse(&url).unwrap()
    }

    fn interval(watch: &mut PromWatch, seq: u64) -> Flow {
        let (totals, point) = (engine_results::stats::Totals::default(), engine_results::summary::Point::default());
        let i = Interval {
            seq,
            elapsed_s: seq as f64,
            from_s: seq as f64 - 1.0,
            planned_s: 10.0,
            stage: 1,
            started: std::time::SystemTime::now(),
            totals: &totals,
            running: &totals,
            point: &point,
            busy: &[],
        };
        watch.interval(&i)
    }

    #[test]
    fn a_stop_fires_on_the_values_prometheus_gives() {
        let mut w = PromWatch::new(prometheus("2", 100), vec![Expr::parse("promql:x>1 for 2").unwrap()], 3);
        w.probe().unwrap();
        assert_eq!(interval(&mut w, 1), Flow::Continue);
        assert_eq!(interval(&mut w, 2), Flow::Stop);
        let mut s = Summary::new("http://h/", 1, 1, &engine_results::stats::Totals::default(), 1.0);
        w.finish(&mut s);
        let fired = s.stopped_by.unwrap();
        assert_eq!((fired.expr.as_str(), fired.at_s, fired.value), ("promql:x>1 for 2", 2.0, 2.0));
        assert!(s.warnings.is_empty(), "{:?}", s.warnings);
    }

    /// A Prometheus that stops answering costs each interval at most the wait, and the
    /// intervals it did not answer are a warning, not a pass.
    #[test]
    fn a_silent_prometheus_does_not_hold_up_the_run() {
        let mut w = PromWatch::new(prometheus("0", 1), vec![Expr::parse("promql:x>1").unwrap()], 1);
        w.probe().unwrap();
        let begun = std::time::Instant::now();
        for seq in 1..=4 {
            assert_eq!(interval(&mut w, seq), Flow::Continue);
        }
        // One wait for the round asked; the intervals after it do not ask again.
        assert!(begun.elapsed() < Duration::from_millis(900), "{:?}", begun.elapsed());
        let mut s = Summary::new("http://h/", 1, 1, &engine_results::stats::Totals::default(), 1.0);
        w.finish(&mut s);
        assert!(s.stopped_by.is_none());
        let w = &s.warnings[0];
        assert!(
            w.contains("could not be read in 4 of 4 intervals") && w.contains("did not answer within 300 ms"),
            "{w}"
        );
    }
}
