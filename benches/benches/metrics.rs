//! What `--metrics-addr` costs the collector: publishing one interval of 100,000 requests into
//! the Prometheus recorder (counters, gauges, and the latency histogram, which the exporter
//! fills one sample per request), and rendering a scrape.

use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use engine_blast::metrics::BlastMetrics;
use engine_blast::PlanInput;
use engine_results::observe::Interval;
use engine_results::stats::Totals;
use engine_results::summary::Point;

fn interval(requests: u64) -> Totals {
    let mut t = Totals::default();
    // A loopback-like spread: 60 µs .. 6 ms, many distinct values.
    for i in 0..requests {
        let us = 60 + (i * 7919) % 6000;
        t.record(200, Duration::from_micros(us), Duration::from_micros(us), true);
    }
    t
}

fn publish(c: &mut Criterion) {
    let plan = PlanInput::new("http://127.0.0.1:9/").build().expect("a valid plan");
    let metrics = BlastMetrics::new(&plan);
    let totals = interval(100_000);
    let point = Point::new(1.0, 1.0, 64.0, &totals);
    let report = Interval {
        seq: 1,
        elapsed_s: 1.0,
        from_s: 0.0,
        planned_s: 10.0,
        stage: 1,
        started: std::time::SystemTime::now(),
        totals: &totals,
        running: &totals,
        point: &point,
        busy: &[0.5],
    };
    let mut g = c.benchmark_group("metrics");
    g.throughput(Throughput::Elements(100_000));
    g.bench_function("publish 100k requests", |b| b.iter(|| metrics.publish(&report)));
    g.bench_function("render", |b| b.iter(|| metrics.render()));
    g.finish();
}

criterion_group!(benches, publish);
criterion_main!(benches);
