//! `--busy-poll` (proxy and blast): a shard that polls instead of sleeping must still see
//! each event as it comes. Its own binary, and one test at a time, so that no other test
//! competes for the CPUs while these time requests.

mod proxy_support;
mod support;

use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

use engine_blast::{Control, PlanInput};
use engine_target::{Target, TargetConfig};
use proxy_support::{proxy, Client};

/// Polling shards take a CPU each: the tests of this file run one after the other.
static ALONE: Mutex<()> = Mutex::new(());

#[test]
fn busy_polling_proxy_shards_see_each_event_without_sleeping_first() {
    let _alone = ALONE.lock().unwrap_or_else(|e| e.into_inner());
    let t = Target::start(TargetConfig::loopback(Duration::ZERO).unwrap()).unwrap();
    // With io_uring's COOP_TASKRUN, completions wait as task work until the thread enters the
    // kernel; a shard that polled only the rings would see each one at the next timer tick
    // (milliseconds) or when it gave up polling, not as it came.
    let p = proxy(t.local_addr(), 1, |c| c.busy_poll = Some(Duration::from_secs(1)));
    let mut c = Client::connect(p.local_addr());
    let mut took = Vec::new();
    for i in 0..300 {
        let started = Instant::now();
        assert_eq!(c.get("/").status, 200);
        took.push(started.elapsed());
        if i % 10 == 0 {
            // Light traffic too: gaps long enough for a shard that does not poll to sleep.
            thread::sleep(Duration::from_millis(3));
        }
    }
    took.sort();
    let median = took[took.len() / 2];
    eprintln!("median {median:?}, p90 {:?}", took[took.len() * 9 / 10]);
    assert!(median < Duration::from_micros(500), "median request through a busy-polling proxy: {median:?}");

    let via = support::blast(&format!("http://{}/", p.local_addr()), 8, 300, 10_000);
    assert_eq!(via.errors.total, 0, "{:?}", via.errors);
    let started = Instant::now();
    let report = p.drain();
    assert!(started.elapsed() < Duration::from_secs(3), "the drain took {:?}", started.elapsed());
    let served = 300 + via.requests;
    assert!((served..=served + via.abandoned).contains(&report.requests), "{} vs {served}", report.requests);
}

#[test]
fn busy_polling_blast_shards_see_each_response_without_sleeping_first() {
    let _alone = ALONE.lock().unwrap_or_else(|e| e.into_inner());
    let t = Target::start(TargetConfig::loopback(Duration::ZERO).unwrap()).unwrap();
    // One connection, closed model: a shard that polls must still stop on time, and see
    // each response as it comes.
    let mut input = PlanInput::new(format!("http://{}/", t.local_addr()));
    input.conns = 1;
    input.shards = Some(1);
    input.duration = Duration::from_millis(500);
    input.busy_poll = Some(Duration::from_secs(1));
    let plan = input.build().expect("valid plan");
    let started = Instant::now();
    let s = engine_blast::run(&plan, &Control::new(), &mut []).expect("run completes");
    assert!(started.elapsed() < Duration::from_secs(3), "the run took {:?}", started.elapsed());
    assert_eq!(s.errors.total, 0, "{:?}", s.errors);
    eprintln!("{} requests, p50 {} ms", s.requests, s.latency_ms.p50);
    assert!(s.latency_ms.p50 < 0.5, "p50 through a busy-polling blast shard: {} ms", s.latency_ms.p50);
    assert!(s.requests > 500, "{} requests in 500 ms over one connection", s.requests);
}
