//! What leaving a segment for the next costs (`writer.rs`, "roll"), beside what the batches
//! that stay in their segment cost: a writer appends 32 KiB batches, one a millisecond (slowly
//! enough that every next segment is prewritten in time), into 8 MiB segments in `<dir>`, and
//! leaves every other segment early, after 16 batches, as compaction does
//! (`SegmentWriter::begin_segment`), most of its prewritten zeros unused. It prints one JSON
//! line of microseconds (median, p99, max): the appends that began a new segment because the
//! batch did not fit, the early leaves, and the other appends.
//!
//! `cargo run --release -p ironsight-store --example segment_roll -- <dir on the disk to measure>`

use std::path::PathBuf;
use std::time::{Duration, Instant};

use glommio::{LocalExecutorBuilder, Placement};
use ironsight_store::batch::Batch;
use ironsight_store::frame;
use ironsight_store::segment::SegmentHeader;
use ironsight_store::writer::SegmentWriter;

const SEGMENT_BYTES: u64 = 8 << 20;
const BATCH_BYTES: usize = 32 << 10;
const SEGMENTS: u64 = 24;
const PACE: Duration = Duration::from_millis(1);
/// Batches after which every other segment is left early.
const EARLY_AFTER: usize = 16;

fn main() {
    let dir: PathBuf = std::env::args_os()
        .nth(1)
        .expect("usage: segment_roll <dir>")
        .into();
    let data = tempfile::tempdir_in(&dir).expect("a data directory in <dir>");
    let (rolls, early, stays) = LocalExecutorBuilder::new(Placement::Unbound)
        .make()
        .expect("a glommio executor")
        .run(async move {
            let header = SegmentHeader::new(0, 1, 0);
            let mut writer = SegmentWriter::create(data.path(), header, SEGMENT_BYTES)
                .await
                .expect("the first segment");
            let mut batch = Batch::new();
            let (mut rolls, mut early, mut stays) = (Vec::new(), Vec::new(), Vec::new());
            let mut in_segment = 0;
            while writer.header().sequence < SEGMENTS {
                batch.clear();
                while batch.len() < BATCH_BYTES {
                    frame::encode(batch.frames_out(), 6, |b| {
                        b.extend_from_slice(&[0x5A; 1000])
                    });
                }
                let sequence = writer.header().sequence;
                let start = Instant::now();
                writer.append(&mut batch).await.expect("an append");
                let took = start.elapsed();
                if writer.header().sequence == sequence {
                    stays.push(took);
                    in_segment += 1;
                } else {
                    rolls.push(took);
                    in_segment = 1;
                }
                glommio::timer::sleep(PACE).await;
                if in_segment == EARLY_AFTER && writer.header().sequence % 2 == 1 {
                    let start = Instant::now();
                    writer.begin_segment().await.expect("an early leave");
                    early.push(start.elapsed());
                    in_segment = 0;
                    glommio::timer::sleep(PACE).await;
                }
            }
            writer.close().await.expect("closing");
            (rolls, early, stays)
        });
    let line = serde_json::json!({
        "segment_bytes": SEGMENT_BYTES,
        "batch_bytes": BATCH_BYTES,
        "rolls": summary(rolls),
        "early_leaves": summary(early),
        "other_batches": summary(stays),
    });
    println!("{line}");
}

/// Count, median, p99 and max, in microseconds.
fn summary(mut times: Vec<Duration>) -> serde_json::Value {
    times.sort_unstable();
    let at = |q: f64| times[((times.len() - 1) as f64 * q).round() as usize].as_micros() as u64;
    serde_json::json!({
        "count": times.len(),
        "median_us": at(0.5),
        "p99_us": at(0.99),
        "max_us": at(1.0),
    })
}
