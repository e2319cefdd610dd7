//! The disk's own sync figures, which every durable benchmark prints beside its results: a
//! batch costs at least one `fdatasync`, so these bound what group commit can do per batch.
//!
//! [`probe_sync`] writes small pieces to a file in the directory given (so on the data
//! directory's file system) and syncs after each, as the writer does with a batch that holds
//! a record or two: appended ([`Writes::Append`]: the file grows, as a segment begun empty
//! does) or over zeros written and synced first ([`Writes::Overwrite`]: as into a prewritten
//! segment, `writer.rs`). The file is removed afterwards. Blocking std I/O: the probe runs on
//! its own, before or beside a benchmark, never on a shard.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The bytes written before each sync: a batch of one small record.
pub const PROBE_APPEND_BYTES: usize = 256;

/// Where the probe's writes go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Writes {
    /// At the end of the file, which grows: its sync commits the file system's journal too.
    Append,
    /// Over zeros the file already holds, synced before the probe: its sync needs the data.
    Overwrite,
}

/// What the disk did.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SyncProbe {
    pub syncs: usize,
    /// The median and 99th percentile (nearest rank) of the `fdatasync` calls alone.
    pub median: Duration,
    pub p99: Duration,
    /// Appends with their syncs, one after the other, per second of the whole run.
    pub syncs_per_s: f64,
}

/// Writes [`PROBE_APPEND_BYTES`] and syncs, `syncs` times or until `time_limit` has passed
/// (at least once), in a file of its own in `dir`.
pub fn probe_sync(
    dir: &Path,
    syncs: usize,
    time_limit: Duration,
    writes: Writes,
) -> io::Result<SyncProbe> {
    assert!(syncs > 0);
    let probe = ProbeFile::create(dir)?;
    let file = &probe.file;
    if writes == Writes::Overwrite {
        file.write_all_at(&vec![0u8; syncs * PROBE_APPEND_BYTES], 0)?;
        file.sync_all()?;
    }
    let piece = [0xA5u8; PROBE_APPEND_BYTES];
    let mut latencies = Vec::with_capacity(syncs);
    let start = Instant::now();
    while latencies.len() < syncs && (latencies.is_empty() || start.elapsed() < time_limit) {
        file.write_all_at(&piece, (latencies.len() * PROBE_APPEND_BYTES) as u64)?;
        let before = Instant::now();
        file.sync_data()?;
        latencies.push(before.elapsed());
    }
    let elapsed = start.elapsed();
    latencies.sort_unstable();
    let rank = |fraction: f64| {
        let n = latencies.len();
        latencies[((fraction * n as f64).ceil() as usize).clamp(1, n) - 1]
    };
    Ok(SyncProbe {
        syncs: latencies.len(),
        median: rank(0.5),
        p99: rank(0.99),
        syncs_per_s: latencies.len() as f64 / elapsed.as_secs_f64(),
    })
}

/// The probe's file, removed when the probe ends, however it ends.
struct ProbeFile {
    path: PathBuf,
    file: File,
}

impl ProbeFile {
    fn create(dir: &Path) -> io::Result<ProbeFile> {
        let path = dir.join(format!(".ironsight-disk-probe-{}", std::process::id()));
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)?;
        Ok(ProbeFile { path, file })
    }
}

impl Drop for ProbeFile {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Proves the probe makes the syncs asked for, either way, orders its figures, and leaves
    /// nothing behind.
    #[test]
    fn the_probe_syncs_and_cleans_up() {
        for writes in [Writes::Append, Writes::Overwrite] {
            let dir = tempfile::tempdir().unwrap();
            let probe = probe_sync(dir.path(), 20, Duration::from_secs(60), writes).unwrap();
            assert_eq!(probe.syncs, 20);
            assert!(
                Duration::ZERO < probe.median && probe.median <= probe.p99,
                "{probe:?}"
            );
            assert!(probe.syncs_per_s > 0.0);
            assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
        }
    }

    /// Proves the time limit ends the probe, after one sync at least.
    #[test]
    fn the_time_limit_ends_the_probe() {
        let dir = tempfile::tempdir().unwrap();
        let probe = probe_sync(dir.path(), 1_000, Duration::ZERO, Writes::Append).unwrap();
        assert_eq!(probe.syncs, 1);
        assert_eq!(probe.median, probe.p99);
    }
}
