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
//! Files are glommio `BufferedFile`s (the page cache), not `DmaFile`s (`O_DIRECT`): frames end
//! at any byte, and direct I/O writes whole aligned blocks, so every batch would rewrite the
//! partly filled last block from memory and pad the file, which the reader would then have to
//! skip. The copy into the page cache costs microseconds against the sync every batch waits
//! for anyway, and it needs none of glommio's registered I/O memory, which the server keeps
//! small.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

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
    broken: bool,
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
        Ok(SegmentWriter {
            shard_dir,
            segment_bytes,
            header,
            path,
            file,
            durable_len: SEGMENT_HEADER_BYTES as u64,
            broken: false,
        })
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
        if holds_frames && self.durable_len + batch.len() as u64 > self.segment_bytes {
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
    pub async fn remove_before(&self, sequence: u64) -> Result<usize, WriteError> {
        let dir = self.shard_dir.clone();
        let removed = glommio::executor()
            .spawn_blocking(move || -> io::Result<usize> {
                let mut older: Vec<(u64, PathBuf)> = Vec::new();
                for entry in std::fs::read_dir(&dir)? {
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
                Ok(older.len())
            })
            .await
            .map_err(|e| io_error("removing old segments in", &self.shard_dir, e))?;
        sync_dir(&self.shard_dir).await?;
        Ok(removed)
    }

    async fn roll(&mut self) -> Result<(), WriteError> {
        let next = SegmentHeader::new(
            self.header.shard,
            self.header.shard_count,
            self.header.sequence + 1,
        );
        let (path, file) = match begin_segment(&self.shard_dir, next).await {
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
        self.header = next;
        self.path = path;
        self.durable_len = SEGMENT_HEADER_BYTES as u64;
        Ok(())
    }
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
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        // Every write durable when it returns: see the module's comment.
        .custom_flags(nix::libc::O_DSYNC)
        .buffered_open(&path)
        .await
        .map_err(|e| BeginFailed {
            error: classify("creating", &path, e),
            cleaned_up: true,
        })?;
    let made = async {
        write_all_at(&file, &path, &header.encode(), 0).await?;
        sync_dir(shard_dir).await
    };
    if let Err(error) = made.await {
        let cleaned_up = file.remove().await.is_ok() && sync_dir(shard_dir).await.is_ok();
        let _ = file.close().await;
        return Err(BeginFailed { error, cleaned_up });
    }
    Ok((path, file))
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
            assert_eq!(writer.remove_before(first_kept).await.unwrap(), 2);
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
