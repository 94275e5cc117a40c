//! Micro benchmarks: response framing and latency recording, the per-request work of a shard.

use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use engine_http::{Progress, ResponseFramer};
use engine_results::stats::ShardStats;

fn responses() -> Vec<(&'static str, Vec<u8>)> {
    let small = b"HTTP/1.1 200 OK\r\nServer: nginx\r\nDate: Sun, 22 Nov 2026 20:00:00 GMT\r\nContent-Type: text/plain\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\nok".to_vec();
    let mut chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    for _ in 0..16 {
        chunked.extend_from_slice(b"400\r\n");
        chunked.extend_from_slice(&[b'x'; 0x400]);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    vec![("small", small), ("chunked_16k", chunked)]
}

fn framing(c: &mut Criterion) {
    let mut group = c.benchmark_group("frame");
    for (name, input) in responses() {
        group.throughput(Throughput::Bytes(input.len() as u64));
        group.bench_with_input(BenchmarkId::from_parameter(name), &input, |b, input| {
            let mut framer = ResponseFramer::new();
            b.iter(|| {
                framer.start(false);
                match framer.feed(input) {
                    Ok(Progress::Complete { response, .. }) => response.status,
                    other => panic!("benchmark input did not frame: {other:?}"),
                }
            })
        });
    }
    group.finish();
}

fn recording(c: &mut Criterion) {
    let mut stats = ShardStats::default();
    let mut v = 0u64;
    c.bench_function("record", |b| {
        b.iter(|| {
            v = (v + 7919) % 100_000;
            stats.record(200, Duration::from_micros(v + 50), Duration::from_micros(v + 40), true);
        })
    });
}

criterion_group!(benches, framing, recording);
criterion_main!(benches);
