//! Resolution of 10,000 synthetic manifests (chains of dependencies, declared conflicts,
//! one layered slot with ordering constraints), a seventh of them requested. Goal: < 50 ms.

use criterion::{criterion_group, criterion_main, Criterion};
use dubchain_host::{
    resolve::{resolve, Request, Source},
    session::host_api_version,
    workload::synthetic_manifests,
};

fn bench(c: &mut Criterion) {
    let manifests = synthetic_manifests(10_000);
    let requests: Vec<Request> = manifests
        .iter()
        .step_by(7)
        .map(|m| Request {
            name: m.name.clone(),
            enable: true,
            source: Source::CommandLine,
        })
        .collect();
    let api = host_api_version();
    assert!(resolve(&manifests, &requests, &api).is_ok());
    c.bench_function("resolve 10k manifests", |b| {
        b.iter(|| resolve(&manifests, &requests, &api))
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20);
    targets = bench
}
criterion_main!(benches);
