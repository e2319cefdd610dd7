//! A shard's journal on disk (`docs/store.md`, "Group commit" and "Compaction"). The core's
//! records are encoded into the shard's batch as they are made, with no I/O and no waiting on
//! the message path, into a [`Batch`] whose header's room is reserved when it begins; the
//! shard's journal task takes the batch, and the segment writer fills in its header (one CRC
//! pass) and writes it with one io_uring write to a segment opened `O_DSYNC`, then the task
//! tells the core how many records are durable, which releases the output they held. While one
//! write runs, the next batch gathers: a disk round trip per batch, however many records (and
//! clients) it holds.
//!
//! The same task keeps the files bounded by the live state: once the journal written since the
//! last snapshot outgrows twice that snapshot (and four segments), it begins a new segment and
//! takes a snapshot of the shard into it in slices of [`SNAPSHOT_SLICE`] sessions, one slice per
//! batch, so that clients are served between slices; once the snapshot is durable, the segments
//! before it are removed.

use std::cell::RefCell;
use std::path::Path;
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Poll, Waker};

use ironsight_core::journal::{Journal, Record};
use ironsight_core::shard::SnapshotCursor;
use ironsight_store::batch::Batch;
use ironsight_store::records::{Clock, RecordEncoder};
use ironsight_store::segment::SegmentHeader;
use ironsight_store::writer::{Removal, SegmentWriter, WriteError};

use crate::shard_io::ShardIo;

/// The largest batch buffer kept for the next batch: a scheduling round's records at the
/// highest rates measured take a few hundred KiB.
const SPARE_BYTES_MAX: usize = 4 << 20;

/// How often a batch is tried again while the journal's disk is full.
const FULL_RETRY: std::time::Duration = std::time::Duration::from_secs(1);

/// Sessions (or retained topics) per slice of a compaction snapshot: a few hundred
/// microseconds of the shard's time, between which its clients are served.
pub const SNAPSHOT_SLICE: usize = 256;

/// The bytes of the snapshot at start gathered before they are written: the snapshot is
/// written as it is made, not made whole first, which held the whole encoded state (and
/// glommio's copy of it) beside the state itself at the moment of the start's highest memory.
/// Half of what a spare batch keeps, so that one buffer serves every batch.
pub const START_SNAPSHOT_BATCH_BYTES: usize = SPARE_BYTES_MAX / 2;

/// What the core has recorded and the journal task has not written yet.
struct Gathering {
    batch: Batch,
    /// Records made since the shard started (the core counts the same).
    records: u64,
    encoder: RecordEncoder,
    /// The journal task, waiting for records.
    waiting: Option<Waker>,
}

/// The core's side: what `Shard::set_journal` is given.
pub struct DiskJournal {
    gathering: Rc<RefCell<Gathering>>,
    full: Arc<FullShards>,
}

/// How many shards' journals find the disk full now. The shards share the data directory's
/// disk, so while any of them does, every shard refuses new durable work (`Journal::full`).
#[derive(Debug, Default)]
pub struct FullShards(AtomicUsize);

impl Journal for DiskJournal {
    fn record(&mut self, record: Record<'_>) {
        let gathering = &mut *self.gathering.borrow_mut();
        gathering
            .encoder
            .encode(&record, gathering.batch.frames_out());
        gathering.records += 1;
        if let Some(task) = gathering.waiting.take() {
            task.wake();
        }
    }

    fn synchronous(&self) -> bool {
        false
    }

    fn full(&self) -> bool {
        self.full.0.load(Ordering::Relaxed) > 0
    }
}

/// The journal task's side: writes what gathered, and compacts.
pub struct JournalWriter {
    gathering: Rc<RefCell<Gathering>>,
    writer: SegmentWriter,
    full: Arc<FullShards>,
    segment_bytes: u64,
    /// The previous batch, cleared, kept for its capacity.
    spare: Batch,
    /// Bytes written since the last snapshot began.
    since_snapshot: u64,
    /// Bytes from the last snapshot's start to its end: what the live state takes, at most.
    snapshot_bytes: u64,
    compaction: Compaction,
}

/// Where compaction stands.
enum Compaction {
    Idle,
    /// A snapshot is being taken, into segments from `first` on.
    Slicing {
        cursor: SnapshotCursor,
        first: u64,
    },
    /// Its last slice is in the batch being gathered; once that is durable, the segments
    /// before `first` go.
    Finishing {
        first: u64,
    },
    /// They are being removed, beside the batches (`SegmentWriter::remove_before`).
    Removing(Removal),
}

/// Opens shard `shard`'s journal in the generation directory `dir`, its first segment begun,
/// its segments `segment_bytes` long (`Store.PersistFileSizeMB`).
pub async fn open(
    dir: &Path,
    shard: u16,
    shard_count: u16,
    segment_bytes: u64,
    full: Arc<FullShards>,
) -> Result<(DiskJournal, JournalWriter), WriteError> {
    let header = SegmentHeader::new(shard, shard_count, 0);
    let writer = SegmentWriter::create(dir, header, segment_bytes).await?;
    let gathering = Rc::new(RefCell::new(Gathering {
        batch: Batch::new(),
        records: 0,
        encoder: RecordEncoder::new(Clock::now()),
        waiting: None,
    }));
    let journal = DiskJournal {
        gathering: gathering.clone(),
        full: full.clone(),
    };
    let writer = JournalWriter {
        gathering,
        writer,
        full,
        segment_bytes,
        spare: Batch::new(),
        since_snapshot: 0,
        snapshot_bytes: 0,
        compaction: Compaction::Idle,
    };
    Ok((journal, writer))
}

impl JournalWriter {
    /// Waits until records have gathered.
    pub async fn gathered(&self) {
        futures_lite::future::poll_fn(|cx| {
            let mut gathering = self.gathering.borrow_mut();
            if gathering.batch.is_empty() {
                gathering.waiting = Some(cx.waker().clone());
                Poll::Pending
            } else {
                Poll::Ready(())
            }
        })
        .await
    }

    /// Writes and syncs what gathered; returns how many records are durable now.
    pub async fn write(&mut self) -> Result<u64, WriteError> {
        let (mut batch, records) = {
            let mut gathering = self.gathering.borrow_mut();
            let spare = std::mem::take(&mut self.spare);
            let batch = std::mem::replace(&mut gathering.batch, spare);
            // The next batch names its messages again, and takes the clocks afresh.
            gathering.encoder.new_batch(Clock::now());
            (batch, gathering.records)
        };
        if !batch.is_empty() {
            if let Err(error) = self.writer.append(&mut batch).await {
                // Nothing of it is on disk (the writer cut the file back): it goes again, one
                // batch with what gathered since, under one header.
                let mut gathering = self.gathering.borrow_mut();
                let since = std::mem::replace(&mut gathering.batch, batch);
                gathering.batch.append(&since);
                return Err(error);
            }
            self.since_snapshot += batch.len() as u64;
        }
        batch.clear();
        // A batch far larger than the usual (a burst) does not keep its memory for the rest of
        // the shard's life.
        if batch.capacity() <= SPARE_BYTES_MAX {
            self.spare = batch;
        }
        Ok(records)
    }

    /// The bytes gathered and not yet written.
    pub fn gathered_bytes(&self) -> usize {
        self.gathering.borrow().batch.len()
    }

    /// What was written so far is a snapshot (the one at start): compaction measures the
    /// journal against it.
    pub fn snapshot_written(&mut self) {
        self.snapshot_bytes = self.since_snapshot;
        self.since_snapshot = 0;
    }

    /// Writes each batch as it gathers, lets what waited for it go, and compacts between
    /// batches. A full disk is waited out: every shard refuses new durable work meanwhile
    /// ([`FullShards`]), the batch is tried again every [`FULL_RETRY`], and what it
    /// holds is acknowledged once it is on disk. Returns only when the journal cannot be
    /// written for another reason.
    pub async fn run(mut self, io: Rc<ShardIo>) -> WriteError {
        let mut full = false;
        loop {
            self.gathered().await;
            match self.write().await {
                Ok(durable) => io.durable(durable),
                Err(WriteError::DiskFull { path }) => {
                    if !full {
                        full = true;
                        self.full.0.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(
                            shard = io.id,
                            path = %path.display(),
                            "the journal's disk is full: new durable work is refused until it has room"
                        );
                    }
                    glommio::timer::sleep(FULL_RETRY).await;
                    continue;
                }
                Err(error) => return error,
            }
            if full {
                full = false;
                self.full.0.fetch_sub(1, Ordering::Relaxed);
                tracing::info!(shard = io.id, "the journal's disk has room again");
            }
            match self.compact(&io).await {
                Ok(()) => {}
                // Compaction begins again later; the journal itself is whole.
                Err(WriteError::DiskFull { path }) => {
                    tracing::warn!(shard = io.id, path = %path.display(), "no room to compact the journal");
                }
                Err(error) => return error,
            }
        }
    }

    /// One step of compaction, after a batch was written.
    async fn compact(&mut self, io: &ShardIo) -> Result<(), WriteError> {
        match std::mem::replace(&mut self.compaction, Compaction::Idle) {
            Compaction::Finishing { first } => {
                // The snapshot's last slice was in the batch just written: it is whole.
                self.snapshot_bytes = self.since_snapshot;
                self.compaction = Compaction::Removing(self.writer.remove_before(first)?);
            }
            Compaction::Removing(removal) if !removal.is_done() => {
                self.compaction = Compaction::Removing(removal);
            }
            Compaction::Removing(removal) => {
                let removed = removal.outcome()?;
                tracing::debug!(
                    shard = io.id,
                    removed,
                    bytes = self.snapshot_bytes,
                    "journal compacted"
                );
            }
            Compaction::Slicing { mut cursor, first } => {
                let done = io.core().snapshot_slice(&mut cursor, SNAPSHOT_SLICE);
                self.compaction = if done {
                    Compaction::Finishing { first }
                } else {
                    Compaction::Slicing { cursor, first }
                };
            }
            Compaction::Idle => {
                let due =
                    self.since_snapshot > (4 * self.segment_bytes).max(2 * self.snapshot_bytes);
                if due {
                    let first = self.writer.begin_segment().await?;
                    self.since_snapshot = 0;
                    self.compaction = Compaction::Slicing {
                        cursor: SnapshotCursor::default(),
                        first,
                    };
                }
            }
        }
        Ok(())
    }
}
