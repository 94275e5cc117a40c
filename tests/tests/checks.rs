//! Checks on responses against a real server on loopback that answers `{"cached": true}` to
//! 19 requests of 20 and `{"cached": false}` to the 20th, counting what it served.

mod support;

use std::io::Write;
use std::net::TcpStream;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use engine_blast::check::CheckSpec;
use engine_blast::{Control, PlanInput, Summary};
use engine_results::thresholds::{judge, Expr};
use support::{read_request, Scripted};

/// Answers each request of a connection, counting them in `counter` (one per server): the
/// 20th, 40th, … answer is a miss.
fn cache_server(counter: &'static AtomicU64) -> impl Fn(TcpStream) {
    move |mut c: TcpStream| {
        let _ = c.set_nodelay(true);
        while read_request(&mut c) {
            let miss = (counter.fetch_add(1, Ordering::Relaxed) + 1).is_multiple_of(20);
            let body: &[u8] = if miss { b"{\"cached\": false}" } else { b"{\"cached\": true} " };
            let mut answer = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nX-Cache: {}\r\nContent-Length: {}\r\n\r\n",
                if miss { "MISS" } else { "HIT" },
                body.len()
            )
            .into_bytes();
            answer.extend_from_slice(body);
            if c.write_all(&answer).is_err() {
                return;
            }
        }
    }
}

static SOFT: AtomicU64 = AtomicU64::new(0);
static HARD: AtomicU64 = AtomicU64::new(0);

fn soft_server(c: TcpStream) {
    cache_server(&SOFT)(c);
}

fn hard_server(c: TcpStream) {
    cache_server(&HARD)(c);
}

fn run(url: &str, checks: Vec<CheckSpec>) -> Summary {
    let mut input = PlanInput::new(url);
    input.conns = 4;
    input.duration = Duration::from_millis(1500);
    input.shards = Some(1);
    input.checks = checks;
    let plan = input.build().expect("valid plan");
    engine_blast::run(&plan, &Control::new(), &mut []).expect("run completes")
}

fn named(name: &str, expr: &str, soft: bool) -> CheckSpec {
    CheckSpec { name: Some(name.into()), expr: expr.into(), soft }
}

#[test]
fn a_soft_check_counts_its_share_and_thresholds_judge_it() {
    let s = Scripted::start(soft_server);
    let r = run(
        &s.url(),
        vec![
            named("cache", "json $.cached == true", true),
            CheckSpec::new("status == 200"),
            CheckSpec::new("header content-type ~ json"),
            named("hit", "header x-cache == HIT", true),
        ],
    );
    std::thread::sleep(Duration::from_millis(50));
    let served = SOFT.load(Ordering::Relaxed);
    assert!(r.requests > 1000, "{}", r.requests);
    let c = r.checks.as_ref().expect("checks in the summary");
    let cache = c.by_name["cache"];
    // Every response was checked: the server's count, less any cut off at the end.
    assert_eq!(cache.passed + cache.failed, r.requests);
    assert!(served >= r.requests && served <= r.requests + r.abandoned, "{served} vs {}", r.requests);
    assert!((cache.rate - 0.95).abs() < 0.01, "{cache:?}");
    assert_eq!(c.by_name["hit"], cache, "the header agrees with the body");
    assert_eq!(c.by_name["status == 200"].failed, 0);
    assert_eq!(c.by_name["header content-type ~ json"].passed, r.requests);
    // Soft: counted, never an error.
    assert_eq!((r.errors.total, r.errors.check), (0, 0), "{:?}", r.errors);
    assert_eq!(c.passed + c.failed, 4 * r.requests);

    let exprs: Vec<Expr> = [
        "checks{name=cache}>94%",
        "checks{name=cache}>96%",
        "check_rate{name=cache}<=0.96",
        "checks>97%",
        "checks>98%",
    ]
    .iter()
    .map(|e| Expr::parse(e).unwrap())
    .collect();
    let verdicts: Vec<bool> = judge(&exprs, &r).iter().map(|t| t.pass).collect();
    // All checks: two always pass, cache and hit 95% of the time: 97.5% in all.
    assert_eq!(verdicts, [true, false, true, true, false], "{:?}", judge(&exprs, &r));
}

#[test]
fn a_failed_check_is_an_error_of_kind_check() {
    let s = Scripted::start(hard_server);
    let r = run(&s.url(), vec![named("cache", "json $.cached == true", false)]);
    let cache = r.checks.as_ref().unwrap().by_name["cache"];
    assert!(cache.failed > 0 && (cache.rate - 0.95).abs() < 0.01, "{cache:?}");
    assert_eq!((r.errors.check, r.errors.total), (cache.failed, cache.failed), "{:?}", r.errors);
    // A failed check is a response: the error rate is of responses, not more attempts.
    let f = engine_results::thresholds::Figures::of_summary(&r, &engine_results::thresholds::Selector::All).unwrap();
    assert_eq!(f.attempts, r.requests);
    assert!((f.error_rate - 0.05).abs() < 0.01, "{}", f.error_rate);
    // The status was fine: every response counts under 200.
    assert_eq!(r.status["200"], r.requests);
}

#[test]
fn a_run_without_checks_has_no_checks_in_its_summary() {
    static PLAIN: AtomicU64 = AtomicU64::new(0);
    fn plain(c: TcpStream) {
        cache_server(&PLAIN)(c);
    }
    let s = Scripted::start(plain);
    let r = run(&s.url(), Vec::new());
    assert!(r.checks.is_none());
    let json = serde_json::to_value(&r).unwrap();
    assert!(json.get("checks").is_none() && json["errors"]["check"] == 0, "{}", json["errors"]);
}
