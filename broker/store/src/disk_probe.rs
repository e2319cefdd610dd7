//! The disk's own sync figures, which every durable benchmark prints beside its results: a
//! batch costs at least one `fdatasync`, so these bound what group commit can do per batch.
//!
//! [`probe_sync`] writes small pieces to a file in the directory given (so on the data
//! directory's file system) and syncs after each, as the writer does with a batch that holds
//! a record or two: appended ([`Writes::Append`]: the file grows, as a segment begun empty
//! does) or over zeros written and synced first ([`Writes::Overwrite`]: as into a prewritten
//! segment, `writer.rs`). The file is removed afterwards. Blocking std I/O: the probe runs on
//! its own, before or beside a benchmark, never on a shard.
//!
//! [`probe_group_commit`] is the disk alone doing what the journal does at a paced rate:
//! records arriving evenly, one write in flight, each record durable once the write holding
//! it returns. A record waits for the write in flight, then for its own, so its latency is
//! about one to two syncs, and its 99th percentile is the disk's tail over as many syncs as a
//! benchmark's window holds: what no broker that acknowledges after one such write can beat,
//! measured rather than taken from a probe of a few hundred quiet syncs.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex};
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
    let probe = ProbeFile::create(dir, 0)?;
    let file = &probe.file;
    if writes == Writes::Overwrite {
        write_zeros(file, syncs * PROBE_APPEND_BYTES)?;
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
    Ok(SyncProbe {
        syncs: latencies.len(),
        median: nearest_rank(&latencies, 0.5),
        p99: nearest_rank(&latencies, 0.99),
        syncs_per_s: latencies.len() as f64 / elapsed.as_secs_f64(),
    })
}

/// What the disk alone did as the journal's group commit ([`probe_group_commit`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GroupCommitProbe {
    pub records: usize,
    /// Writes made: records per write is what group commit gathered.
    pub writes: usize,
    /// From a record's arrival to the return of the write that made it durable (nearest rank).
    pub p50: Duration,
    pub p99: Duration,
}

/// Records of `record_bytes` arriving `rate` a second for `duration`, gathered while a write
/// is in flight and written together, one `O_DSYNC` write at a time over zeros (as into a
/// prewritten segment), in a file of its own in `dir`: see the module's comment.
pub fn probe_group_commit(
    dir: &Path,
    rate: f64,
    duration: Duration,
    record_bytes: usize,
) -> io::Result<GroupCommitProbe> {
    assert!(rate > 0.0 && record_bytes > 0);
    let records = ((rate * duration.as_secs_f64()).ceil() as usize).max(1);
    let probe = ProbeFile::create(dir, nix::libc::O_DSYNC)?;
    write_zeros(&probe.file, records * record_bytes)?;
    let gathered = Mutex::new(Arrivals::default());
    let arrived = Condvar::new();
    let (latencies, writes) = std::thread::scope(|scope| {
        let writer =
            scope.spawn(|| commit_as_gathered(&probe.file, record_bytes, &gathered, &arrived));
        let start = Instant::now();
        for n in 0..records {
            let due = start + Duration::from_secs_f64(n as f64 / rate);
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
            gathered.lock().unwrap().waiting.push(Instant::now());
            arrived.notify_one();
        }
        gathered.lock().unwrap().all_arrived = true;
        arrived.notify_one();
        writer.join().expect("the probe's writer thread")
    })?;
    Ok(GroupCommitProbe {
        records: latencies.len(),
        writes,
        p50: nearest_rank(&latencies, 0.5),
        p99: nearest_rank(&latencies, 0.99),
    })
}

/// The records that arrived and wait for a write.
#[derive(Default)]
struct Arrivals {
    waiting: Vec<Instant>,
    all_arrived: bool,
}

/// The writer's side of [`probe_group_commit`]: writes whatever arrived since its last write
/// returned, until every record is durable. Returns each record's latency, sorted, and the
/// writes made.
fn commit_as_gathered(
    file: &File,
    record_bytes: usize,
    gathered: &Mutex<Arrivals>,
    arrived: &Condvar,
) -> io::Result<(Vec<Duration>, usize)> {
    let mut latencies = Vec::new();
    let mut writes = 0;
    let mut batch = Vec::new();
    let mut at = 0;
    loop {
        let taken = {
            let mut arrivals = gathered.lock().unwrap();
            while arrivals.waiting.is_empty() && !arrivals.all_arrived {
                arrivals = arrived.wait(arrivals).unwrap();
            }
            std::mem::take(&mut arrivals.waiting)
        };
        if taken.is_empty() {
            latencies.sort_unstable();
            return Ok((latencies, writes));
        }
        batch.resize(taken.len() * record_bytes, 0xA5);
        file.write_all_at(&batch, at)?;
        let durable = Instant::now();
        at += batch.len() as u64;
        writes += 1;
        latencies.extend(taken.iter().map(|arrival| durable - *arrival));
    }
}

/// The value at `fraction` of `sorted` (not empty), by nearest rank.
fn nearest_rank(sorted: &[Duration], fraction: f64) -> Duration {
    let n = sorted.len();
    sorted[((fraction * n as f64).ceil() as usize).clamp(1, n) - 1]
}

/// Writes `len` zeros at the start of `file` and syncs them with its size: what later writes
/// overwrite.
fn write_zeros(file: &File, len: usize) -> io::Result<()> {
    file.write_all_at(&vec![0u8; len], 0)?;
    file.sync_all()
}

/// The probe's file, removed when the probe ends, however it ends.
struct ProbeFile {
    path: PathBuf,
    file: File,
}

impl ProbeFile {
    /// A new file in `dir`, opened for writing with `flags` besides.
    fn create(dir: &Path, flags: i32) -> io::Result<ProbeFile> {
        let path = dir.join(format!(".ironsight-disk-probe-{}", std::process::id()));
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .custom_flags(flags)
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

    /// Proves the group commit probe makes every record durable, gathers them into no more
    /// writes than records, orders its figures, and leaves nothing behind.
    #[test]
    fn the_group_commit_probe_makes_every_record_durable() {
        let dir = tempfile::tempdir().unwrap();
        let probe =
            probe_group_commit(dir.path(), 2_000.0, Duration::from_millis(200), 100).unwrap();
        assert_eq!(probe.records, 400);
        assert!(0 < probe.writes && probe.writes <= 400, "{probe:?}");
        assert!(
            Duration::ZERO < probe.p50 && probe.p50 <= probe.p99,
            "{probe:?}"
        );
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
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
