//! `engine proxy --busy-poll`: a shard that polls instead of sleeping must still see each
//! event as it comes. Its own binary, so that no other test competes for the CPUs while it
//! times requests.

mod proxy_support;
mod support;

use std::thread;
use std::time::{Duration, Instant};

use engine_core::target::{Target, TargetConfig};
use proxy_support::{proxy, Client};

#[test]
fn busy_polling_shards_see_each_event_without_sleeping_first() {
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
