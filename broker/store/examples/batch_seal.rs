//! What sealing a batch costs the shard's thread (`writer.rs`, `docs/store.md`): one CRC-32C
//! pass over a 1 MiB batch of 1 KB records, beside what encoding those records as frames cost
//! (each frame's own CRC and the copy), as one JSON line of nanoseconds.
//!
//! `cargo run --release -p ironsight-store --example batch_seal`

use std::time::{Duration, Instant};

use ironsight_store::batch::Batch;
use ironsight_store::frame;

const BATCH_BYTES: usize = 1 << 20;
const BODY_BYTES: usize = 1000;
const ROUNDS: usize = 2000;

fn main() {
    let body = vec![0x5A; BODY_BYTES];
    let mut batch = Batch::new();
    let encode = median(|| {
        batch.clear();
        while batch.len() < BATCH_BYTES {
            frame::encode(batch.frames_out(), 6, |b| b.extend_from_slice(&body));
        }
    });
    let mut offset = 0;
    let seal = median(|| {
        offset += 1;
        std::hint::black_box(batch.seal(0x5A17, offset));
    });
    let line = serde_json::json!({
        "batch_bytes": batch.len(),
        "records": batch.frames().len() / (BODY_BYTES + frame::HEADER_BYTES),
        "seal_median_ns": seal.as_nanos() as u64,
        "encode_median_ns": encode.as_nanos() as u64,
    });
    println!("{line}");
}

/// The median time of `ROUNDS` runs of `f`.
fn median(mut f: impl FnMut()) -> Duration {
    let mut times: Vec<Duration> = (0..ROUNDS)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed()
        })
        .collect();
    times.sort_unstable();
    times[ROUNDS / 2]
}
