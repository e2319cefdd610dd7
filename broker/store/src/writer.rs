//! The write side of a shard's journal, on the shard's glommio executor: batches of frames
//! sealed (`batch.rs`) and appended to the current segment with io_uring, each durable when its
//! write completes, and a new segment begun at `segment_bytes`.
//!
//! What the reader relies on, and this file keeps:
//! - A batch is one write, and is durable before the next is written
//!   ([`SegmentWriter::append`] returns after the write, which `O_DSYNC` makes durable), so
//!   only the newest segment's last batch can be torn. Torn anywhere, not only at its end: the
//!   page cache writes the batch's pages in any order, and a power cut can leave any of them
//!   unwritten. The batch's header (its length, its CRC, its place) is what lets the reader
//!   tell that from damage to an earlier batch (`scan.rs`).
//! - Every batch header carries the segment's salt and its own offset, so that old bytes a
//!   hole shows are never taken for a batch; each segment has a salt of its own
//!   (`SegmentHeader::new`).
//! - A new segment's header is durable, and its directory entry too, before any frame goes
//!   into it; the old segment was synced before. A segment's directory is synced whenever a
//!   file in it is created or removed.
//! - A failed write is undone: the file is cut back to what was durable and synced again, so
//!   the reader sees no more than a torn tail even after a full disk. If the undo fails too,
//!   the writer takes no more writes ([`WriteError::Broken`]): a new segment after a damaged
//!   one would turn its torn tail into corruption.
//!
//! Segments are opened `O_DSYNC`: a write returns once its data, and the file size it
//! changed, are on disk, as a write followed by `fdatasync` would. That is one io_uring
//! operation per batch instead of two, and so one trip through the kernel's io-wq worker
//! instead of two; under load the second trip cost as much as the sync itself (measured:
//! a batch took 0.9 to 1.3 ms as write plus `fdatasync`, 0.55 to 1.1 ms as one `O_DSYNC` write,
//! `docs/store.md`).
//!
//! Segments are **prewritten**: the file the next segment goes into is written with zeros, and
//! synced, in the background while the current one fills (`next.prewritten`, which the reader
//! does not take for a segment). A batch then overwrites blocks the file already has, within
//! its size, so its `O_DSYNC` write needs only the data on disk. An append must also commit the
//! new size and blocks through the file system's journal (ext4's jbd2 thread), which waits for
//! a CPU when they are busy: on the 2-CPU VM with both CPUs busy, appended 4 KiB `O_DSYNC`
//! writes took 0.15 ms median and 2.8 to 3.2 ms p99 in some runs, 4.0 and 8.0 ms in others (the
//! scheduler's tick), overwrites 0.09 to 0.12 ms median and 0.6 to 2.4 ms p99 (`docs/store.md`).
//! So:
//! - the newest segment may end in zeros after its last batch, which the reader takes for its
//!   end (a batch header never begins with a zero byte);
//! - the next segment's header records where the old one's batches end (`segment.rs`): the
//!   reader reads an older segment up to there, so zeros before that stay damage, and what
//!   follows is not read. The zeros are cut off on a thread of their own once the next
//!   segment is begun ([`SegmentWriter::roll`]), not before, on the batch path;
//! - where no prewritten file is ready (the first segment, a disk too full for one), a segment
//!   is begun and appended to as before, and left for a prewritten one once there is one;
//! - a journal that fills segments faster than twice the time the last one took to prewrite
//!   is bound by the disk's bandwidth, which zeros would halve, and its batches are large
//!   anyway: no segment is prewritten until one fills more slowly again.
//!
//! Files are glommio `BufferedFile`s (the page cache), not `DmaFile`s (`O_DIRECT`): frames end
//! at any byte, and direct I/O writes whole aligned blocks, so every batch would rewrite the
//! partly filled last block from memory and pad the file, which the reader would then have to
//! skip. The copy into the page cache costs microseconds against the sync every batch waits
//! for anyway, and it needs none of glommio's registered I/O memory, which the server keeps
//! small.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use glommio::io::{BufferedFile, OpenOptions};
use glommio::GlommioError;

use crate::batch::Batch;
use crate::segment::{self, SegmentHeader, SEGMENT_HEADER_BYTES};

#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// No space left (ENOSPC, or EDQUOT for a quota): new durable work is to be refused until
    /// space is freed, and nothing already durable is lost.
    #[error("{}: the disk is full", path.display())]
    DiskFull { path: PathBuf },
    #[error("{op} {}: {source}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("{}: a failed write could not be undone; this journal takes no more writes", path.display())]
    Broken { path: PathBuf },
}

/// The file in a shard's directory that the next segment goes into, prewritten with zeros.
pub const PREWRITTEN_FILE: &str = "next.prewritten";

/// Zeros written, and synced, at a time into a prewritten file: small enough that a batch's
/// write queued behind one at the disk waits a fraction of a millisecond.
const PREWRITE_CHUNK: usize = 256 << 10;

/// Appends batches of frames to a shard's journal.
#[derive(Debug)]
pub struct SegmentWriter {
    shard_dir: PathBuf,
    segment_bytes: u64,
    header: SegmentHeader,
    path: PathBuf,
    file: BufferedFile,
    /// The bytes of the current segment that are on disk: where the next batch goes.
    durable_len: u64,
    /// Whether the current segment was prewritten, and so has zeros after `durable_len`.
    prewritten: bool,
    /// Where the prewritten file for the next segment stands (a [`Next`]); the thread that
    /// writes it shares this.
    next: Arc<AtomicU8>,
    /// How long the last prewritten file took to write, in microseconds (0: none yet); the
    /// thread that writes it sets this.
    prewrite_took_us: Arc<AtomicU64>,
    /// When the current segment began, and how long the last one that filled up took.
    began: Instant,
    last_fill: Option<Duration>,
    broken: bool,
}

/// Where the prewritten file for the next segment stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
enum Next {
    /// None is being written (the last attempt failed, or a segment just took it).
    Missing,
    Writing,
    /// [`PREWRITTEN_FILE`] holds `segment_bytes` of zeros, durably.
    Ready,
}

impl SegmentWriter {
    /// Begins segment `header.sequence` in `<data_dir>/shard-<n>/` (made if missing), closing
    /// it for a new one once a batch would take it past `segment_bytes`
    /// ([`segment::SEGMENT_BYTES`], or less in tests). The segment must not exist: a writer
    /// continues after the last segment the reader found.
    pub async fn create(
        data_dir: &Path,
        header: SegmentHeader,
        segment_bytes: u64,
    ) -> Result<SegmentWriter, WriteError> {
        assert!(segment_bytes > SEGMENT_HEADER_BYTES as u64);
        let shard_dir = segment::shard_dir(data_dir, header.shard);
        make_dir_durably(&shard_dir).await?;
        let (path, file) = begin_segment(&shard_dir, header)
            .await
            .map_err(|e| e.error)?;
        let writer = SegmentWriter {
            shard_dir,
            segment_bytes,
            header,
            path,
            file,
            durable_len: SEGMENT_HEADER_BYTES as u64,
            prewritten: false,
            next: Arc::new(AtomicU8::new(Next::Missing as u8)),
            prewrite_took_us: Arc::default(),
            began: Instant::now(),
            last_fill: None,
            broken: false,
        };
        writer.prewrite_next();
        Ok(writer)
    }

    /// The segment being written.
    pub fn header(&self) -> SegmentHeader {
        self.header
    }

    /// Seals `batch` (its header filled in for where it goes) and appends it, returning once
    /// it is on disk. A batch is written whole into one segment, after rolling to a new one if
    /// it would take the current one past `segment_bytes`. Sealing is one CRC-32C pass over
    /// the batch on the shard's thread: 42 µs for a 1 MiB batch on the 2-CPU VM, less than
    /// half of what encoding its records took (`examples/batch_seal.rs`), and once per batch,
    /// against the disk's sync that the batch waits for anyway. glommio
    /// hands the kernel a buffer it owns, so the batch is copied once; the caller keeps its
    /// own buffer, and its capacity, for the next.
    pub async fn append(&mut self, batch: &mut Batch) -> Result<(), WriteError> {
        if self.broken {
            return Err(WriteError::Broken {
                path: self.path.clone(),
            });
        }
        let holds_frames = self.durable_len > SEGMENT_HEADER_BYTES as u64;
        let full = self.durable_len + batch.len() as u64 > self.segment_bytes;
        // A segment that is appended to is left as soon as a prewritten one is ready.
        let leave = !self.prewritten && self.next_is(Next::Ready);
        if holds_frames && (full || leave) {
            if full {
                self.last_fill = Some(self.began.elapsed());
            }
            self.roll().await?;
        }
        let bytes = batch.seal(self.header.salt, self.durable_len);
        if let Err(error) = write_all_at(&self.file, &self.path, bytes, self.durable_len).await {
            self.undo().await;
            return Err(error);
        }
        self.durable_len += batch.len() as u64;
        Ok(())
    }

    /// Closes the current segment (everything in it is durable already).
    pub async fn close(self) -> Result<(), WriteError> {
        let path = self.path;
        self.file
            .close()
            .await
            .map_err(|e| classify("closing", &path, e))
    }

    /// Cuts the segment back to what was durable, durably; if that fails, the writer is broken.
    async fn undo(&mut self) {
        let undone = match self.file.truncate(self.durable_len).await {
            Ok(()) => self.file.fdatasync().await,
            Err(e) => Err(e),
        };
        self.broken = undone.is_err();
        // Cut back, it has no zeros left after its batches.
        self.prewritten = false;
    }

    /// Closes the current segment and begins the next, whatever its size: compaction starts
    /// its snapshot in a segment of its own, so that the ones before it can go whole. Returns
    /// the new segment's sequence.
    pub async fn begin_segment(&mut self) -> Result<u64, WriteError> {
        if self.broken {
            return Err(WriteError::Broken {
                path: self.path.clone(),
            });
        }
        self.roll().await?;
        Ok(self.header.sequence)
    }

    /// Removes this shard's segments before `sequence`, oldest first (so that what is left is
    /// always a run without gaps, which the reader requires), durably. Compaction calls it once
    /// the snapshot that begins at `sequence` is durable.
    ///
    /// On a thread of its own, which the journal's batches do not wait for: unlinking segments
    /// frees their blocks through the file system's journal, which the directory sync then
    /// commits, and under load that takes milliseconds to tens of them (a compaction step
    /// that waited for it took up to 57 ms on the 2-CPU VM at 80,000 1 KB messages a second).
    /// Not on glommio's blocking thread either, where a roll's directory sync would queue
    /// behind it. Only older segments go, so the batches written meanwhile are untouched.
    pub fn remove_before(&self, sequence: u64) -> Result<Removal, WriteError> {
        let dir = self.shard_dir.clone();
        let thread = std::thread::Builder::new()
            .name("ironsight-compact".into())
            .spawn(move || {
                remove_segments_before(&dir, sequence)
                    .map_err(|e| io_error("removing old segments in", &dir, e))
            })
            .map_err(|e| {
                io_error(
                    "starting the removal of old segments in",
                    &self.shard_dir,
                    e,
                )
            })?;
        Ok(Removal { thread })
    }

    /// Begins the next segment, its header recording where this one's batches end, and leaves
    /// this one. A prewritten segment left has zeros after its batches: they are cut off on a
    /// thread of their own, without a sync, since the reader does not read past the recorded
    /// end. Cutting them before the next segment was begun, and syncing that, took a file
    /// system journal commit on the batch path, a few milliseconds under load, every 64 MiB.
    async fn roll(&mut self) -> Result<(), WriteError> {
        let next = self.header.next(self.durable_len);
        let prewritten = self.next_is(Next::Ready);
        let begun = if prewritten {
            self.next.store(Next::Missing as u8, Ordering::Release);
            self.begin_prewritten(next).await
        } else {
            begin_segment(&self.shard_dir, next).await
        };
        let (path, file) = match begun {
            Ok(begun) => begun,
            Err(failed) => {
                // A half-made segment left behind would be newer than the one still written.
                self.broken = !failed.cleaned_up;
                return Err(failed.error);
            }
        };
        let old = std::mem::replace(&mut self.file, file);
        // Everything in the old segment was synced: closing it cannot lose a byte.
        let _ = old.close().await;
        if self.prewritten {
            cut_zeros(self.path.clone(), self.durable_len);
        }
        self.header = next;
        self.path = path;
        self.durable_len = SEGMENT_HEADER_BYTES as u64;
        self.prewritten = prewritten;
        self.began = Instant::now();
        self.prewrite_next();
        Ok(())
    }

    /// Makes the prewritten file segment `header`: its header written, then the file named,
    /// each durable before the next.
    async fn begin_prewritten(
        &self,
        header: SegmentHeader,
    ) -> Result<(PathBuf, BufferedFile), BeginFailed> {
        let prewritten = self.shard_dir.join(PREWRITTEN_FILE);
        let path = self
            .shard_dir
            .join(segment::segment_file_name(header.sequence));
        let mut file = open_segment(&prewritten, false)
            .await
            .map_err(|error| BeginFailed {
                error,
                cleaned_up: true,
            })?;
        let named = async {
            write_all_at(&file, &prewritten, &header.encode(), 0).await?;
            file.rename(&path)
                .await
                .map_err(|e| classify("naming", &path, e))?;
            sync_dir(&self.shard_dir).await
        };
        if let Err(error) = named.await {
            return Err(abandon(file, &self.shard_dir, error).await);
        }
        Ok((path, file))
    }

    /// Starts writing the next segment's file with zeros in the background, unless it is being
    /// written or ready. If that fails (a full disk), the next segment is begun empty, and the
    /// one after it tries again.
    ///
    /// It is a thread of its own, not glommio's blocking thread: writing a segment's zeros takes
    /// a second or more, and the directory syncs that beginning a segment needs go to that one.
    fn prewrite_next(&self) {
        if !self.next_is(Next::Missing) || self.outpaces_prewriting() {
            return;
        }
        self.next.store(Next::Writing as u8, Ordering::Release);
        let (next, took_us, dir, bytes) = (
            self.next.clone(),
            self.prewrite_took_us.clone(),
            self.shard_dir.clone(),
            self.segment_bytes,
        );
        let started = std::thread::Builder::new()
            .name("ironsight-prewrite".into())
            .spawn(move || {
                let began = Instant::now();
                let state = match prewrite(&dir, bytes) {
                    Ok(()) => {
                        let took = began.elapsed().as_micros().max(1);
                        took_us.store(took.try_into().unwrap_or(u64::MAX), Ordering::Relaxed);
                        Next::Ready
                    }
                    Err(_) => Next::Missing,
                };
                next.store(state as u8, Ordering::Release);
            });
        if started.is_err() {
            self.next.store(Next::Missing as u8, Ordering::Release);
        }
    }

    /// Whether the last segment that filled up took less than twice as long as the last
    /// prewritten file took to write (see the module's comment).
    fn outpaces_prewriting(&self) -> bool {
        let took = Duration::from_micros(self.prewrite_took_us.load(Ordering::Relaxed));
        self.last_fill
            .is_some_and(|fill| !took.is_zero() && fill < 2 * took)
    }

    fn next_is(&self, state: Next) -> bool {
        self.next.load(Ordering::Acquire) == state as u8
    }
}

/// Writes [`PREWRITTEN_FILE`] in `shard_dir`: `bytes` of zeros, synced, and its directory
/// entry too; removes it if that fails. Blocking: it runs on a thread of its own
/// ([`SegmentWriter::prewrite_next`]). While it writes, it takes room on the disk that an
/// appended segment might have wanted: on a disk with less than a segment free, a batch can
/// find it full until this fails and removes the file, and is written again then.
fn prewrite(shard_dir: &Path, bytes: u64) -> io::Result<()> {
    let path = shard_dir.join(PREWRITTEN_FILE);
    let written = (|| {
        let file = File::create(&path)?;
        let zeros = vec![0u8; PREWRITE_CHUNK];
        let mut at = 0;
        while at < bytes {
            let n = (bytes - at).min(PREWRITE_CHUNK as u64) as usize;
            file.write_all_at(&zeros[..n], at)?;
            // A chunk at a time, so that the disk never has many megabytes of them queued
            // ahead of a batch's write.
            file.sync_data()?;
            at += n as u64;
        }
        // fsync, not fdatasync: the size and the blocks are what a later write must not wait for.
        file.sync_all()?;
        File::open(shard_dir)?.sync_all()
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&path);
    }
    written
}

/// Cuts a left segment's prewritten zeros off after its batches, which end at `end`
/// ([`SegmentWriter::roll`]). Compaction may remove the file first: then there is nothing to cut.
fn cut_zeros(path: PathBuf, end: u64) {
    let cut = move || match std::fs::OpenOptions::new().write(true).open(&path) {
        // Only ever shorter: a file already cut is not lengthened again.
        Ok(file) => match file.metadata() {
            Ok(meta) if meta.len() > end => file.set_len(end).map_err(|e| (path, e)),
            Ok(_) => Ok(()),
            Err(e) => Err((path, e)),
        },
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err((path, e)),
    };
    let outcome = std::thread::Builder::new()
        .name("ironsight-cut".into())
        .spawn(move || {
            if let Err((path, error)) = cut() {
                tracing::warn!(path = %path.display(), %error, "could not cut a segment's unused zeros off: nothing is lost, and they take room until compaction removes the segment");
            }
        });
    if let Err(error) = outcome {
        tracing::warn!(%error, "could not start cutting a segment's unused zeros off: nothing is lost, and they take room until compaction removes the segment");
    }
}

/// Old segments being removed ([`SegmentWriter::remove_before`]).
#[derive(Debug)]
pub struct Removal {
    thread: std::thread::JoinHandle<Result<usize, WriteError>>,
}

impl Removal {
    pub fn is_done(&self) -> bool {
        self.thread.is_finished()
    }

    /// How many segments went, or why not: waits for the removal if it is not done.
    pub fn outcome(self) -> Result<usize, WriteError> {
        self.thread
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    }
}

/// Removes the segments before `sequence` in `shard_dir`, oldest first, and syncs the directory.
fn remove_segments_before(shard_dir: &Path, sequence: u64) -> io::Result<usize> {
    let mut older: Vec<(u64, PathBuf)> = Vec::new();
    for entry in std::fs::read_dir(shard_dir)? {
        let path = entry?.path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        if let Some(n) = segment::parse_segment_file_name(name) {
            if n < sequence {
                older.push((n, path));
            }
        }
    }
    older.sort_unstable();
    for (_, path) in &older {
        std::fs::remove_file(path)?;
    }
    File::open(shard_dir)?.sync_all()?;
    Ok(older.len())
}

struct BeginFailed {
    error: WriteError,
    /// Whether the half-made file is gone (or was never made).
    cleaned_up: bool,
}

/// Creates a segment file with its header, durably (the file and its directory entry), or
/// leaves no file behind if it can.
async fn begin_segment(
    shard_dir: &Path,
    header: SegmentHeader,
) -> Result<(PathBuf, BufferedFile), BeginFailed> {
    let path = shard_dir.join(segment::segment_file_name(header.sequence));
    let file = open_segment(&path, true)
        .await
        .map_err(|error| BeginFailed {
            error,
            cleaned_up: true,
        })?;
    let made = async {
        write_all_at(&file, &path, &header.encode(), 0).await?;
        sync_dir(shard_dir).await
    };
    if let Err(error) = made.await {
        return Err(abandon(file, shard_dir, error).await);
    }
    Ok((path, file))
}

/// Opens a segment's file for writing, made new (`create`) or prewritten.
async fn open_segment(path: &Path, create: bool) -> Result<BufferedFile, WriteError> {
    OpenOptions::new()
        .write(true)
        .create_new(create)
        // Every write durable when it returns: see the module's comment.
        .custom_flags(nix::libc::O_DSYNC)
        .buffered_open(path)
        .await
        .map_err(|e| classify(if create { "creating" } else { "opening" }, path, e))
}

/// Removes a segment file that could not be begun, and closes it.
async fn abandon(file: BufferedFile, shard_dir: &Path, error: WriteError) -> BeginFailed {
    let cleaned_up = file.remove().await.is_ok() && sync_dir(shard_dir).await.is_ok();
    let _ = file.close().await;
    BeginFailed { error, cleaned_up }
}

/// Writes all of `bytes` at `pos`, durably (segments are `O_DSYNC`). A write may take fewer bytes than asked (a disk that fills
/// part way): the rest is written again, and the next attempt says why it cannot.
async fn write_all_at(
    file: &BufferedFile,
    path: &Path,
    bytes: &[u8],
    pos: u64,
) -> Result<(), WriteError> {
    let mut written = 0;
    while written < bytes.len() {
        let n = file
            .write_at(bytes[written..].to_vec(), pos + written as u64)
            .await
            .map_err(|e| classify("writing", path, e))?;
        if n == 0 {
            return Err(WriteError::Io {
                op: "writing",
                path: path.to_owned(),
                source: io::ErrorKind::WriteZero.into(),
            });
        }
        written += n;
    }
    Ok(())
}

/// Makes `dir` if it is missing, and syncs its parent so that the new entry survives a crash.
async fn make_dir_durably(dir: &Path) -> Result<(), WriteError> {
    let owned = dir.to_owned();
    let made = glommio::executor()
        .spawn_blocking(move || match std::fs::create_dir(&owned) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(false),
            Err(e) => Err(e),
        })
        .await
        .map_err(|e| io_error("creating", dir, e))?;
    match dir.parent() {
        Some(parent) if made => sync_dir(parent).await,
        _ => Ok(()),
    }
}

/// fsync on a directory, so that the files created or removed in it survive a crash. Not
/// fdatasync, the only sync glommio offers: on ext4 that need not commit a new directory entry.
/// It runs on glommio's blocking thread (io_uring's fsync would need the directory opened as a
/// glommio file); it happens once per segment, every 64 MiB.
async fn sync_dir(dir: &Path) -> Result<(), WriteError> {
    let owned = dir.to_owned();
    glommio::executor()
        .spawn_blocking(move || File::open(&owned)?.sync_all())
        .await
        .map_err(|e| io_error("syncing the directory", dir, e))
}

fn io_error(op: &'static str, path: &Path, source: io::Error) -> WriteError {
    if is_disk_full(&source) {
        return WriteError::DiskFull {
            path: path.to_owned(),
        };
    }
    WriteError::Io {
        op,
        path: path.to_owned(),
        source,
    }
}

fn classify(op: &'static str, path: &Path, error: GlommioError<()>) -> WriteError {
    let source = match error {
        GlommioError::IoError(source) | GlommioError::EnhancedIoError { source, .. } => source,
        other => io::Error::other(other.to_string()),
    };
    io_error(op, path, source)
}

/// ENOSPC and EDQUOT.
fn is_disk_full(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame;
    use crate::reader::{self, FrameAt, ReadError};
    use glommio::{LocalExecutorBuilder, Placement};
    use std::future::Future;
    use std::process::Command;

    fn on_glommio<T>(test: impl Future<Output = T>) -> T {
        LocalExecutorBuilder::new(Placement::Unbound)
            .make()
            .expect("a glommio executor")
            .run(test)
    }

    const SHARD: u16 = 3;

    fn header(sequence: u64) -> SegmentHeader {
        SegmentHeader::new(SHARD, 4, sequence)
    }

    /// A batch of `frames` frames, numbered from `first`, with bodies of varied lengths and
    /// contents (their kind is the number's low byte).
    fn batch(first: u32, frames: u32, body_len: usize) -> (Batch, Vec<(u8, Vec<u8>)>) {
        let mut bytes = Batch::new();
        let mut sent = Vec::new();
        for n in first..first + frames {
            let body: Vec<u8> = (0..body_len + n as usize % 97)
                .map(|i| (i as u32 ^ n.wrapping_mul(2_654_435_761)) as u8)
                .collect();
            frame::encode(bytes.frames_out(), n as u8, |b| b.extend_from_slice(&body));
            sent.push((n as u8, body));
        }
        (bytes, sent)
    }

    /// Every frame of the shard, and what the read found.
    fn read_back(data_dir: &Path) -> (reader::ShardRead, Vec<(u8, Vec<u8>)>) {
        let mut frames = Vec::new();
        let read = reader::read_shard(&segment::shard_dir(data_dir, SHARD), |f: FrameAt<'_>| {
            frames.push((f.kind, f.body.to_vec()));
            Ok::<_, ReadError>(())
        })
        .unwrap();
        (read, frames)
    }

    fn segment_sizes(data_dir: &Path) -> Vec<u64> {
        let dir = segment::shard_dir(data_dir, SHARD);
        let mut names: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| segment::looks_like_segment(&p.file_name().unwrap().to_string_lossy()))
            .collect();
        names.sort();
        names
            .iter()
            .map(|p| std::fs::metadata(p).unwrap().len())
            .collect()
    }

    /// Proves batches written and synced read back whole and in order, across segments rolled
    /// at `segment_bytes`: no segment passes it except by one batch that is larger on its own,
    /// and sequences follow on from the first.
    #[test]
    fn batches_roll_over_segments_and_read_back() {
        let data = tempfile::tempdir().unwrap();
        let segment_bytes = 4096;
        let sent = on_glommio(async {
            let mut writer = SegmentWriter::create(data.path(), header(5), segment_bytes)
                .await
                .unwrap();
            let mut sent = Vec::new();
            for round in 0..60 {
                let (mut bytes, frames) = batch(round * 4, 1 + round % 4, 200);
                writer.append(&mut bytes).await.unwrap();
                sent.extend(frames);
            }
            let (mut big, frames) = batch(1000, 3, 3000);
            writer.append(&mut big).await.unwrap();
            sent.extend(frames);
            let (mut bytes, frames) = batch(2000, 1, 10);
            writer.append(&mut bytes).await.unwrap();
            sent.extend(frames);
            let last = writer.header();
            writer.close().await.unwrap();
            (sent, last)
        });
        let (sent, last) = sent;

        let (read, frames) = read_back(data.path());
        assert_eq!(frames, sent);
        assert_eq!((read.torn, read.last), (None, Some(last)));
        let sizes = segment_sizes(data.path());
        assert_eq!(read.segments, sizes.len());
        assert!(sizes.len() > 10, "{sizes:?}");
        assert_eq!(read.last.unwrap().sequence, 5 + sizes.len() as u64 - 1);
        let (over, within): (Vec<u64>, Vec<u64>) =
            sizes.iter().partition(|&&size| size > segment_bytes);
        assert_eq!(over.len(), 1, "only the big batch's segment: {sizes:?}");
        assert!(within
            .iter()
            .all(|&size| size > SEGMENT_HEADER_BYTES as u64));
    }

    /// Waits for the writer's prewritten file to be ready.
    async fn prewritten_ready(writer: &SegmentWriter) {
        for _ in 0..2000 {
            if writer.next_is(Next::Ready) {
                return;
            }
            glommio::timer::sleep(std::time::Duration::from_millis(5)).await;
        }
        panic!("no prewritten file within 10 s");
    }

    /// Proves the prewritten path: the first segment, appended to, is left at the next batch
    /// once a prewritten file is ready; a prewritten segment holds zeros after its batches,
    /// the next segment's header records where they end, and the zeros are cut off once it
    /// is begun; everything reads back, with the zeros or without (a crash before the cut),
    /// and the prewritten file is never taken for a segment.
    #[test]
    fn a_left_prewritten_segment_is_read_to_the_end_the_next_one_records() {
        let data = tempfile::tempdir().unwrap();
        let segment_bytes = 64 * 1024;
        let shard_dir = segment::shard_dir(data.path(), SHARD);
        let sent = on_glommio(async {
            let mut writer = SegmentWriter::create(data.path(), header(0), segment_bytes)
                .await
                .unwrap();
            let mut sent = Vec::new();
            let (mut first, frames) = batch(0, 2, 100);
            writer.append(&mut first).await.unwrap();
            sent.extend(frames);
            prewritten_ready(&writer).await;
            let (mut second, frames) = batch(10, 2, 100);
            writer.append(&mut second).await.unwrap();
            sent.extend(frames);
            assert_eq!((writer.header().sequence, writer.prewritten), (1, true));
            let newest = std::fs::read(&writer.path).unwrap();
            assert_eq!(newest.len() as u64, segment_bytes);
            assert!(newest[writer.durable_len as usize..]
                .iter()
                .all(|&b| b == 0));
            prewritten_ready(&writer).await;
            let left = (writer.path.clone(), writer.durable_len);
            let (mut big, frames) = batch(20, 40, 2000);
            writer.append(&mut big).await.unwrap();
            sent.extend(frames);
            assert_eq!((writer.header().sequence, writer.prewritten), (2, true));
            assert_eq!(writer.header().previous_end, left.1);
            writer.close().await.unwrap();
            (sent, left)
        });
        let (sent, (left, left_end)) = sent;
        // Segment 1 was prewritten to 64 KiB: its zeros are cut off on a thread of their own.
        for _ in 0..1000 {
            if std::fs::metadata(&left).unwrap().len() == left_end {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let sizes = segment_sizes(data.path());
        assert!(
            sizes[1] == left_end && sizes[2] > segment_bytes,
            "{sizes:?}, segment 1's batches end at {left_end}"
        );
        // Whether the writer began prewriting a file for segment 3 depends on how fast segment
        // 1 filled (`outpaces_prewriting`); there is one either way, and it is not taken for a
        // segment.
        let prewritten = shard_dir.join(PREWRITTEN_FILE);
        if !prewritten.exists() {
            std::fs::write(&prewritten, vec![0; 4096]).unwrap();
        }
        let (read, frames) = read_back(data.path());
        assert_eq!(frames, sent);
        assert_eq!((read.segments, read.torn), (3, None));
        // As a crash before the cut leaves it.
        let file = std::fs::OpenOptions::new().write(true).open(&left).unwrap();
        file.set_len(segment_bytes).unwrap();
        let (read, frames) = read_back(data.path());
        assert_eq!(frames, sent);
        assert_eq!((read.segments, read.torn), (3, None));
    }

    /// Proves a journal that fills segments faster than twice the last prewrite took gets no
    /// prewritten file for its next segment, and one that fills them more slowly does.
    #[test]
    fn a_journal_that_outpaces_prewriting_appends() {
        let data = tempfile::tempdir().unwrap();
        on_glommio(async {
            let mut writer = SegmentWriter::create(data.path(), header(0), 4096)
                .await
                .unwrap();
            writer.append(&mut batch(0, 1, 10).0).await.unwrap();
            prewritten_ready(&writer).await;
            // Into the prewritten segment 1; the next is prewritten meanwhile.
            writer.append(&mut batch(10, 1, 3000).0).await.unwrap();
            prewritten_ready(&writer).await;
            writer.prewrite_took_us.store(10_000_000, Ordering::Relaxed);
            // Fills segment 1 within microseconds of its start.
            writer.append(&mut batch(20, 1, 3000).0).await.unwrap();
            assert_eq!(writer.header().sequence, 2);
            assert!(writer.last_fill.unwrap() < Duration::from_secs(20));
            assert!(writer.outpaces_prewriting());
            assert!(
                writer.next_is(Next::Missing),
                "no prewrite after a fast fill"
            );
            writer.prewrite_took_us.store(1, Ordering::Relaxed);
            writer.append(&mut batch(30, 1, 3000).0).await.unwrap();
            assert!(!writer.outpaces_prewriting());
            assert!(
                !writer.next_is(Next::Missing),
                "a prewrite after a slow fill"
            );
            writer.close().await.unwrap();
        });
    }

    /// Proves compaction's two steps: a segment begun on demand, however small the current
    /// one, and the segments before a sequence removed, after which the rest reads back as a
    /// run that begins there.
    #[test]
    fn a_segment_begun_on_demand_and_older_ones_removed() {
        let data = tempfile::tempdir().unwrap();
        let (kept, first_kept) = on_glommio(async {
            let mut writer = SegmentWriter::create(data.path(), header(0), 1 << 20)
                .await
                .unwrap();
            writer.append(&mut batch(0, 2, 10).0).await.unwrap();
            assert_eq!(writer.begin_segment().await.unwrap(), 1);
            writer.append(&mut batch(10, 1, 10).0).await.unwrap();
            let first_kept = writer.begin_segment().await.unwrap();
            let (mut bytes, kept) = batch(20, 3, 10);
            writer.append(&mut bytes).await.unwrap();
            assert_eq!(
                writer.remove_before(first_kept).unwrap().outcome().unwrap(),
                2
            );
            writer.close().await.unwrap();
            (kept, first_kept)
        });
        assert_eq!(segment_sizes(data.path()).len(), 1);
        let (read, frames) = read_back(data.path());
        assert_eq!(frames, kept);
        assert_eq!(read.last.unwrap().sequence, first_kept);
    }

    /// Proves a writer never reuses an existing segment: a sequence that exists is refused.
    #[test]
    fn an_existing_segment_is_never_overwritten() {
        let data = tempfile::tempdir().unwrap();
        on_glommio(async {
            let mut writer = SegmentWriter::create(data.path(), header(0), 4096)
                .await
                .unwrap();
            writer.append(&mut batch(0, 1, 10).0).await.unwrap();
            let again = SegmentWriter::create(data.path(), header(0), 4096).await;
            assert!(
                matches!(again, Err(WriteError::Io { op: "creating", .. })),
                "{again:?}"
            );
            writer.close().await.unwrap();
        });
        assert_eq!(read_back(data.path()).1.len(), 1);
    }

    /// A tmpfs of `size`, mounted for one test and unmounted by its path afterwards.
    struct Tmpfs {
        dir: tempfile::TempDir,
    }

    impl Tmpfs {
        fn mount(size: &str) -> Tmpfs {
            let dir = tempfile::tempdir().unwrap();
            let status = Command::new("mount")
                .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
                .arg(dir.path())
                .status();
            assert!(
                matches!(status, Ok(s) if s.success()),
                "could not mount a {size} tmpfs on {} ({status:?}): the disk-full test needs \
                 root, as `tests/run` has",
                dir.path().display()
            );
            Tmpfs { dir }
        }

        fn path(&self) -> &Path {
            self.dir.path()
        }
    }

    impl Drop for Tmpfs {
        /// Lazily (`-l`): after a failed assertion glommio may still hold a file open in it.
        fn drop(&mut self) {
            let _ = Command::new("umount")
                .arg("-l")
                .arg(self.dir.path())
                .status();
        }
    }

    /// Proves a full disk is `DiskFull`, that everything appended before reads back whole with
    /// no torn tail (the failed batch is cut back off), that the writer still refuses with
    /// `DiskFull` rather than breaking, and that it writes again once space is freed. The disk
    /// is a 256 KiB tmpfs; a filler file is removed to free space. It fills in the middle of a
    /// batch with segments larger than the disk, and while beginning a segment with 16 KiB ones
    /// (four pages: the segments fill their pages exactly).
    #[test]
    fn a_full_disk_is_disk_full_and_loses_nothing_synced() {
        for segment_bytes in [1024 * 1024, 16 * 1024] {
            fill_the_disk(segment_bytes);
        }
    }

    fn fill_the_disk(segment_bytes: u64) {
        let disk = Tmpfs::mount("256k");
        let filler = disk.path().join("filler");
        std::fs::write(&filler, vec![0u8; 64 * 1024]).unwrap();
        let sent = on_glommio(async {
            let mut writer = SegmentWriter::create(disk.path(), header(0), segment_bytes)
                .await
                .unwrap();
            let mut sent = Vec::new();
            let mut full = None;
            for round in 0..1000 {
                let (mut bytes, frames) = batch(round * 3, 3, 700);
                match writer.append(&mut bytes).await {
                    Ok(()) => sent.extend(frames),
                    Err(error) => {
                        full = Some(error);
                        break;
                    }
                }
            }
            let full = full.expect("1000 batches of 2 KiB filled a 256 KiB disk");
            assert!(matches!(full, WriteError::DiskFull { .. }), "{full}");
            let (mut bytes, _) = batch(5000, 3, 700);
            let again = writer.append(&mut bytes).await;
            assert!(
                matches!(again, Err(WriteError::DiskFull { .. })),
                "{again:?}"
            );

            let (read, frames) = read_back(disk.path());
            assert_eq!(read.torn, None);
            assert_eq!(frames, sent);

            std::fs::remove_file(&filler).unwrap();
            let (mut bytes, frames) = batch(6000, 3, 700);
            writer.append(&mut bytes).await.unwrap();
            sent.extend(frames);
            writer.close().await.unwrap();
            sent
        });
        let (read, frames) = read_back(disk.path());
        assert_eq!(read.torn, None);
        assert_eq!(frames, sent);
    }
}
