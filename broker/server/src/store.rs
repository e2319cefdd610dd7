//! The durable store at start (`docs/store.md`, "Files" and "Recovery"): the data directory
//! locked, the committed generation of journals read back into a `Recovery`, and a new
//! generation begun, into which every shard writes its snapshot; once all are durable the new
//! generation is committed (`CURRENT` names it) and the old one removed. Only then do the
//! listeners open, so a record made for a client is always in the generation a restart reads.
//!
//! ```text
//! <DiskPersistPath>/LOCK                     one broker per directory
//! <DiskPersistPath>/CURRENT                  the committed generation's number
//! <DiskPersistPath>/gen-<n>/shard-<k>/*.seg  shard k's journal in generation n
//! <DiskPersistPath>/gen-<n>/shard-<k>/next.prewritten  its next segment, zeros (writer.rs)
//! ```
//!
//! All of this runs once, before the shards, with blocking std I/O.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use ironsight_config::Config;
use ironsight_core::recovery::{Recovered, Recovery};
use ironsight_store::lock::{lock_data_dir, DataDirLock};
use ironsight_store::reader::{self, ReadError};
use ironsight_store::records::{Clock, CodecError, RecordDecoder};

const CURRENT: &str = "CURRENT";
const GENERATION_PREFIX: &str = "gen-";

/// An open data directory: locked, read, with the generation the shards write next.
pub struct Opened {
    _lock: DataDirLock,
    dir: PathBuf,
    /// The generation the shards write their snapshots and journals into.
    next: u64,
}

/// What start does with a journal damaged elsewhere than at its end.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnCorruption {
    /// Refuse to start, naming the file and offset.
    Stop,
    /// Keep everything before the damage, drop the rest of that shard's journal
    /// (`--recover-truncate`).
    Truncate,
}

/// Why a record could not be read back.
#[derive(Debug, thiserror::Error)]
enum Unreadable {
    #[error(transparent)]
    Read(#[from] ReadError),
    #[error("{}, byte offset {offset}: {error}", file.display())]
    Record {
        file: PathBuf,
        offset: u64,
        error: CodecError,
    },
}

/// Locks and reads the data directory of `config`'s Store, and makes the next generation's
/// directory.
pub fn open(config: &Config, on_corruption: OnCorruption) -> Result<(Opened, Recovered), String> {
    let dir = config.file(&config.store.disk_persist_path);
    fs::create_dir_all(&dir).map_err(|e| format!("cannot make {}: {e}", dir.display()))?;
    let lock = lock_data_dir(&dir).map_err(|e| e.to_string())?;
    let started = Instant::now();
    let current = committed(&dir)?;
    let mut recovery = Recovery::default();
    if let Some(generation) = current {
        read_generation(
            &generation_dir(&dir, generation),
            &mut recovery,
            on_corruption,
        )?;
    }
    let recovered = recovery.finish();
    tracing::info!(
        dir = %dir.display(),
        generation = current,
        sessions = recovered.sessions.len(),
        messages = recovered.sessions.iter().map(|s| s.queued.len() + s.inflight.len()).sum::<usize>(),
        retained = recovered.retained.len(),
        records = recovered.records,
        ms = started.elapsed().as_millis() as u64,
        "recovered"
    );
    let next = current.map_or(1, |n| n + 1);
    let next_dir = generation_dir(&dir, next);
    // A generation begun by a start that did not commit it holds nothing anyone acknowledged.
    if next_dir.exists() {
        fs::remove_dir_all(&next_dir)
            .map_err(|e| format!("cannot remove {}: {e}", next_dir.display()))?;
    }
    fs::create_dir(&next_dir).map_err(|e| format!("cannot make {}: {e}", next_dir.display()))?;
    sync_dir(&dir)?;
    Ok((
        Opened {
            _lock: lock,
            dir,
            next,
        },
        recovered,
    ))
}

impl Opened {
    /// Where the shards write.
    pub fn generation_dir(&self) -> PathBuf {
        generation_dir(&self.dir, self.next)
    }

    /// Every shard's snapshot is durable: the new generation becomes the one a restart reads,
    /// and the older ones go.
    pub fn commit(&self) -> Result<(), String> {
        let temporary = self.dir.join("CURRENT.new");
        let written = fs::File::create(&temporary).and_then(|mut f| {
            writeln!(f, "{}", self.next)?;
            f.sync_all()
        });
        written.map_err(|e| format!("cannot write {}: {e}", temporary.display()))?;
        let current = self.dir.join(CURRENT);
        fs::rename(&temporary, &current)
            .map_err(|e| format!("cannot replace {}: {e}", current.display()))?;
        sync_dir(&self.dir)?;
        for entry in fs::read_dir(&self.dir).map_err(|e| format!("{}: {e}", self.dir.display()))? {
            let path = entry.map_err(|e| e.to_string())?.path();
            let older = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_prefix(GENERATION_PREFIX))
                .and_then(|n| n.parse::<u64>().ok())
                .is_some_and(|n| n != self.next);
            if older {
                fs::remove_dir_all(&path)
                    .map_err(|e| format!("cannot remove {}: {e}", path.display()))?;
            }
        }
        sync_dir(&self.dir)
    }
}

fn generation_dir(dir: &Path, generation: u64) -> PathBuf {
    dir.join(format!("{GENERATION_PREFIX}{generation:08}"))
}

/// The committed generation, if any.
fn committed(dir: &Path) -> Result<Option<u64>, String> {
    let path = dir.join(CURRENT);
    match fs::read_to_string(&path) {
        Ok(text) => text
            .trim()
            .parse()
            .map(Some)
            .map_err(|_| format!("{}: not a generation number: {text:?}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("cannot read {}: {e}", path.display())),
    }
}

/// Folds every shard's journal of one generation into `recovery`. Each shard is read into a
/// recovery of its own, so that one read again after a repair applies nothing twice.
fn read_generation(
    dir: &Path,
    recovery: &mut Recovery,
    on_corruption: OnCorruption,
) -> Result<(), String> {
    let shards = reader::shard_dirs(dir).map_err(|e| e.to_string())?;
    for (_, shard_dir) in shards {
        loop {
            let mut shard = Recovery::default();
            match read_shard(&shard_dir, &mut shard) {
                Ok(()) => {
                    recovery.merge(shard);
                    break;
                }
                Err(Unreadable::Read(ReadError::Corrupt(corruption)))
                    if on_corruption == OnCorruption::Truncate =>
                {
                    let repaired =
                        reader::recover_truncate(&corruption).map_err(|e| e.to_string())?;
                    tracing::warn!(
                        %corruption,
                        truncated = ?repaired.truncated,
                        removed = ?repaired.removed,
                        "journal cut before the damage (--recover-truncate); what followed it is lost"
                    );
                }
                Err(Unreadable::Read(ReadError::Corrupt(corruption))) => {
                    return Err(format!(
                        "the journal is damaged: {corruption}. Nothing was changed. To start \
                         with everything before the damage (and lose what follows it in this \
                         shard's journal), run ironsight with --recover-truncate"
                    ))
                }
                Err(error) => return Err(format!("the journal cannot be read: {error}")),
            }
        }
    }
    Ok(())
}

/// Folds one shard's journal into `recovery`; a torn tail is cut off and logged.
fn read_shard(shard_dir: &Path, recovery: &mut Recovery) -> Result<(), Unreadable> {
    let mut decoder = RecordDecoder::new(Clock::now());
    let mut segment: Option<PathBuf> = None;
    let read = reader::read_shard(shard_dir, |frame| {
        if segment.as_deref() != Some(frame.file) {
            segment = Some(frame.file.to_owned());
            decoder.new_segment();
        }
        decoder
            .apply(frame.kind, frame.body, recovery)
            .map_err(|error| Unreadable::Record {
                file: frame.file.to_owned(),
                offset: frame.offset,
                error,
            })
    })?;
    if let Some(torn) = &read.torn {
        tracing::warn!(%torn, "journal ends in a torn write (the broker or the machine stopped during it, so nothing in it was acknowledged); cut there");
        reader::cut_torn_tail(torn)?;
    }
    Ok(())
}

fn sync_dir(dir: &Path) -> Result<(), String> {
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| format!("cannot sync {}: {e}", dir.display()))
}
