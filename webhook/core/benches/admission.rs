//! Decoding real AdmissionReviews (`testdata/admission-review`) into what
//! gating needs: the review, then its workload and images.
//!
//! cargo bench -p portcullis-core --bench admission

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "benchmark set-up"
)]

use std::hint::black_box;
use std::path::PathBuf;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use portcullis_core::admission::{Operation, OwnerTrust, decode_review};
use portcullis_core::reference::ImageRef;

fn fixture(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../testdata/admission-review")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn admission(c: &mut Criterion) {
    let trust = OwnerTrust::default();
    let mut g = c.benchmark_group("admission");
    for name in [
        "connaisseur-19_pod_initcontainer.json",
        "whorf-request-deployment.json",
        "connaisseur-10_update_replicaset.json",
    ] {
        let body = fixture(name);
        // The fixture must be a gated workload, or the benchmark measures an
        // early exit; the UPDATE keeps its image, so nothing in it is gated
        // again, but both objects are read.
        let review = decode_review(&body).unwrap();
        let workload = review.request.workload(&trust).unwrap().unwrap();
        let update = review.request.operation == Operation::Update;
        assert_eq!(workload.containers.is_empty(), update, "{name}");
        g.throughput(Throughput::Bytes(body.len() as u64));
        g.bench_function(format!("decode review + workload: {name}"), |b| {
            b.iter(|| {
                let review = decode_review(black_box(&body)).unwrap();
                black_box(review.request.workload(&trust).unwrap())
            })
        });
        g.bench_function(format!("decode + workload + parse images: {name}"), |b| {
            b.iter(|| {
                let review = decode_review(black_box(&body)).unwrap();
                let workload = review.request.workload(&trust).unwrap().unwrap();
                for c in &workload.containers {
                    black_box(ImageRef::parse(&c.image).ok());
                }
            })
        });
    }
    g.finish();
}

criterion_group!(benches, admission);
criterion_main!(benches);
