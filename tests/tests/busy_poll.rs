//! `--busy-poll` (proxy and blast): a shard that polls instead of sleeping must still see
//! each event as it comes; and a proxy shard keeps a timer while traffic flows (its CPU's tick). Its own binary, and one test at a time, so that no other test
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

/// Voluntary context switches of this process's threads whose names start with `prefix`.
fn switches(prefix: &str) -> u64 {
    let mut n = 0;
    for task in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        if !comm.starts_with(prefix) {
            continue;
        }
        let status = std::fs::read_to_string(task.path().join("status")).unwrap_or_default();
        n += status
            .lines()
            .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or(0);
    }
    n
}

/// While requests arrive, a proxy shard keeps a timer due every 3 ms (`engine_runtime::
/// keep_tick`), so that the kernel keeps its CPU's scheduler tick running and a wake-up does
/// not pay for restarting it (6–10 µs of each on a VM; benches/RESULTS.md, where the effect
/// itself is measured with kernel tracepoints); when requests stop, the timer stops too. Seen
/// here in the shard thread's sleeps: requests every 10 ms cost two wake-ups each, and the
/// keeper adds about one every 3 ms on top, but not once the traffic has stopped.
#[test]
fn a_proxy_shard_keeps_a_timer_while_requests_arrive_and_not_after() {
    let _alone = ALONE.lock().unwrap_or_else(|e| e.into_inner());
    let t = Target::start(TargetConfig::loopback(Duration::ZERO).unwrap()).unwrap();
    let p = proxy(t.local_addr(), 1, |_| {});
    let mut c = Client::connect(p.local_addr());
    let mut requests = 0u64;
    let busy = |c: &mut Client, requests: &mut u64, ms: u64| {
        let until = Instant::now() + Duration::from_millis(ms);
        while Instant::now() < until {
            assert_eq!(c.get("/").status, 200);
            *requests += 1;
            thread::sleep(Duration::from_millis(10));
        }
    };
    busy(&mut c, &mut requests, 300);
    let (before, counted) = (switches("proxy-0"), requests);
    busy(&mut c, &mut requests, 1500);
    let during = switches("proxy-0") - before;
    let served = requests - counted;
    // Quiet: the keeper looks every 100 ms, as the shard's own tick does (about 30 in 1.5 s,
    // and the executor's other thread).
    thread::sleep(Duration::from_millis(300));
    let before = switches("proxy-0");
    thread::sleep(Duration::from_millis(1500));
    let quiet = switches("proxy-0") - before;
    eprintln!("{served} requests: {during} sleeps of the shard; quiet 1.5 s: {quiet}");
    // At least a sleep a request (two when the upstream is slower than the shard), and the
    // keeper's: 1.5 s / 3 ms is 500, some of them while awake.
    assert!(during >= served + 250, "{during} sleeps for {served} requests");
    assert!(quiet <= 80, "{quiet} sleeps in a quiet 1.5 s");
    drop(p);
}
