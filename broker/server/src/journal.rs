//! A shard's journal on disk (`docs/store.md`, "Group commit"). The core's records are encoded
//! into the shard's batch as they are made, with no I/O and no waiting on the message path; the
//! shard's journal task writes the batch with one io_uring write and one `fdatasync`, then
//! tells the core how many records are durable, which releases the output they held. While one
//! sync runs, the next batch gathers: a disk round trip per batch, however many records (and
//! clients) it holds.

use std::cell::RefCell;
use std::path::Path;
use std::rc::Rc;
use std::task::{Poll, Waker};

use ironsight_core::journal::{Journal, Record};
use ironsight_store::records::{Clock, RecordEncoder};
use ironsight_store::segment::{SegmentHeader, SEGMENT_BYTES};
use ironsight_store::writer::{SegmentWriter, WriteError};

/// What the core has recorded and the journal task has not written yet.
struct Gathering {
    bytes: Vec<u8>,
    /// Records made since the shard started (the core counts the same).
    records: u64,
    encoder: RecordEncoder,
    /// The journal task, waiting for records.
    waiting: Option<Waker>,
}

/// The core's side: what `Shard::set_journal` is given.
pub struct DiskJournal(Rc<RefCell<Gathering>>);

impl Journal for DiskJournal {
    fn record(&mut self, record: Record<'_>) {
        let gathering = &mut *self.0.borrow_mut();
        gathering.encoder.encode(&record, &mut gathering.bytes);
        gathering.records += 1;
        if let Some(task) = gathering.waiting.take() {
            task.wake();
        }
    }

    fn synchronous(&self) -> bool {
        false
    }
}

/// The journal task's side: writes what gathered.
pub struct JournalWriter {
    gathering: Rc<RefCell<Gathering>>,
    writer: SegmentWriter,
    /// The previous batch's buffer, cleared, kept for its capacity.
    spare: Vec<u8>,
}

/// Opens shard `shard`'s journal in the generation directory `dir`, its first segment begun.
pub async fn open(
    dir: &Path,
    shard: u16,
    shard_count: u16,
) -> Result<(DiskJournal, JournalWriter), WriteError> {
    let header = SegmentHeader {
        shard,
        shard_count,
        sequence: 0,
    };
    let writer = SegmentWriter::create(dir, header, SEGMENT_BYTES).await?;
    let gathering = Rc::new(RefCell::new(Gathering {
        bytes: Vec::new(),
        records: 0,
        encoder: RecordEncoder::new(Clock::now()),
        waiting: None,
    }));
    let journal = DiskJournal(gathering.clone());
    let writer = JournalWriter {
        gathering,
        writer,
        spare: Vec::new(),
    };
    Ok((journal, writer))
}

impl JournalWriter {
    /// Waits until records have gathered.
    pub async fn gathered(&self) {
        futures_lite::future::poll_fn(|cx| {
            let mut gathering = self.gathering.borrow_mut();
            if gathering.bytes.is_empty() {
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
        let (batch, records) = {
            let mut gathering = self.gathering.borrow_mut();
            let spare = std::mem::take(&mut self.spare);
            let batch = std::mem::replace(&mut gathering.bytes, spare);
            // The next batch names its messages again, and takes the clocks afresh.
            gathering.encoder.new_batch(Clock::now());
            (batch, gathering.records)
        };
        if !batch.is_empty() {
            self.writer.append(&batch).await?;
        }
        let mut batch = batch;
        batch.clear();
        self.spare = batch;
        Ok(records)
    }
}
