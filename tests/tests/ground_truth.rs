//! What the engine reports as completed equals what the server served.

mod support;

use std::time::Duration;

use engine_blast::{Control, PlanInput, RunError};
use engine_results::observe::{Flow, Interval, Observer};
use engine_target::{Target, TargetConfig};

fn target(delay: Duration) -> Target {
    Target::start(TargetConfig::loopback(delay).unwrap()).unwrap()
}

#[test]
fn requests_equal_what_the_target_served() {
    let t = target(Duration::ZERO);
    let r = support::blast(&format!("http://{}/", t.local_addr()), 50, 1000, 5000);
    std::thread::sleep(Duration::from_millis(100));
    let served = t.served();
    assert_eq!(r.errors.total, 0, "{:?}", r.errors);
    assert_eq!(r.abandoned, 0);
    assert_eq!(r.requests, served);
    assert_eq!(r.status.get("200"), Some(&r.requests));
    assert_eq!(r.connections.opened, 50);
    assert_eq!(r.connections.peak_open, 50);
    assert!(r.latency_ms.p50 > 0.0 && r.latency_ms.p50 <= r.latency_ms.p99 && r.latency_ms.p99 <= r.latency_ms.max);
    assert!(!r.timeseries.is_empty());
}

#[test]
fn latency_reflects_the_server_delay() {
    let t = target(Duration::from_millis(20));
    let r = support::blast(&format!("http://{}/", t.local_addr()), 4, 500, 5000);
    assert!(r.requests > 10);
    assert!(r.latency_ms.p50 >= 20.0, "p50 {} must include the 20 ms delay", r.latency_ms.p50);
    assert!(r.latency_ms.p50 < 60.0, "p50 {}", r.latency_ms.p50);
}

#[test]
fn shards_split_connections_and_merge_exactly() {
    let t = target(Duration::ZERO);
    let cpus = engine_runtime::affinity::allowed_cpus().unwrap();
    let mut input = PlanInput::new(format!("http://{}/", t.local_addr()));
    input.conns = 9;
    input.duration = Duration::from_millis(600);
    input.shards = Some(3);
    input.cores = Some(cpus);
    let plan = input.build().unwrap();
    assert_eq!(plan.shard_cpus.len(), 3);
    let r = engine_blast::run(&plan, &Control::new(), &mut []).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(r.shards, 3);
    assert_eq!(r.connections.opened, 9);
    assert_eq!(r.requests, t.served());
    assert_eq!(r.errors.total, 0);
}

#[test]
fn stop_ends_the_run_early_with_a_summary() {
    let t = target(Duration::ZERO);
    let mut input = PlanInput::new(format!("http://{}/", t.local_addr()));
    input.conns = 4;
    input.duration = Duration::from_secs(30);
    input.shards = Some(1);
    let plan = input.build().unwrap();
    let control = Control::new();
    let stopper = control.clone();
    let started = std::time::Instant::now();
    /// Stops the run from outside after its first interval, as Ctrl-C would.
    struct StopAfterFirst(Control);
    impl Observer for StopAfterFirst {
        fn interval(&mut self, _: &Interval<'_>) -> Flow {
            self.0.stop();
            Flow::Continue
        }
    }
    let r = engine_blast::run(&plan, &control, &mut [&mut StopAfterFirst(stopper)]).unwrap();
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(r.interrupted);
    assert!(r.requests > 0);
}

#[test]
fn unreachable_target_fails_before_the_start() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let plan = PlanInput::new(format!("http://127.0.0.1:{port}/")).build().unwrap();
    let r = engine_blast::run(&plan, &Control::new(), &mut []);
    assert!(matches!(r, Err(RunError::Unreachable { .. })));
}
