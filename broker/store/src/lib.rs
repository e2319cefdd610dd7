//! The durable store (`docs/store.md`): a record-agnostic layer that carries `(kind, body)`
//! frames to disk and back, and the record codec (`records`) that gives the kinds and bodies
//! their meaning: the core's journal records.
//!
//! # Layout
//!
//! - `frame`: one frame, one record: magic byte, CRC-32C, kind, body length, body;
//!   [`frame::encode`] appends one to a batch, [`frame::decode`] reads one back.
//! - `batch`: one batch, what one write makes durable: a header (where the batch lies, its
//!   length, a CRC over it) and frames; [`batch::Batch`] gathers them and seals the header.
//! - `segment`: segment files: their names (`shard-<n>/<sequence>.seg`), the header each
//!   begins with ([`segment::SegmentHeader`]) and [`segment::SEGMENT_BYTES`].
//! - `scan`: where a segment's good batches end, and whether a bad batch there is a torn tail
//!   (the newest segment's last batch) or corruption; pure functions over bytes.
//! - `reader`: a shard directory's segments read back in order ([`reader::read_shard`]), the
//!   torn tail cut off, and [`reader::recover_truncate`] past corruption.
//! - `records`: the record codec: the core's journal records as frame bodies, each message
//!   once per batch, times on the wall clock; decoded back into a `recovery::Recovery`.
//! - `lock`: the data directory's `LOCK` file ([`lock::lock_data_dir`]), one broker per
//!   directory.
//! - `writer`: [`writer::SegmentWriter`], on glommio: a batch sealed and appended with one
//!   io_uring write to a segment opened `O_DSYNC`, segments rolled at `SEGMENT_BYTES`, a full
//!   disk as its own error.
//! - `disk_probe`: the disk's own `fdatasync` latency and rate ([`disk_probe::probe_sync`]),
//!   and the disk alone doing the journal's group commit at a paced rate
//!   ([`disk_probe::probe_group_commit`]), printed beside every durable benchmark;
//!   `examples/disk_sync.rs` prints them as JSON.

pub mod batch;
pub mod disk_probe;
pub mod frame;
pub mod lock;
pub mod reader;
pub mod records;
pub mod scan;
pub mod segment;
#[cfg(feature = "writer")]
pub mod writer;
