//! Reading a shard's journal back at start, and repairing its end.
//!
//! [`read_shard`] reads `shard-<n>/`'s segments in sequence order, one file in memory at a
//! time, and hands every frame of its good batches to the caller with the file and offset it
//! came from, each older segment up to where the next one's header says its batches end (the
//! writer may have left zeros after them, `writer.rs`). A torn tail (damage in the newest
//! segment's last batch, `scan.rs`) ends the read quietly and is reported in
//! [`ShardRead::torn`]: [`cut_torn_tail`] cuts it off at the batch's start. Corruption stops the read with a [`Corruption`] that names the file and byte offset:
//! [`recover_truncate`] is the documented way past it (`docs/store.md`, "Files"). A segment of
//! another format version is refused as such ([`ReadError::Format`]), not as corruption: there
//! is nothing to repair, and `--recover-truncate` would remove it.
//!
//! [`read_segment`] is the same over one segment's bytes, which is what the fuzzer drives.
//!
//! All of this runs once, at start, before any listener opens; it uses blocking std I/O.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::batch::{self, BatchError};
use crate::frame::FrameError;
use crate::scan::{self, End, NotTorn, Tail};
use crate::segment::{self, HeaderError, SegmentHeader, PREVIOUS_END_AT, SEGMENT_HEADER_BYTES};

/// A good frame, with where it lies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameAt<'a> {
    pub kind: u8,
    pub body: &'a [u8],
    pub file: &'a Path,
    pub offset: u64,
}

/// What reading a shard found.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ShardRead {
    pub segments: usize,
    pub frames: u64,
    /// The header of the last segment read whole (a new writer continues after its sequence).
    pub last: Option<SegmentHeader>,
    /// The end of the newest segment that a crash cut short, if one did.
    pub torn: Option<TornTail>,
}

/// The end of a shard's newest segment that a crash cut short or tore: everything from
/// `offset` on (a batch's start, or 0 for a segment whose header was never written whole).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}, byte offset {offset}: torn tail ({tear})", file.display())]
pub struct TornTail {
    pub file: PathBuf,
    pub offset: u64,
    pub tear: Tear,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Tear {
    #[error("the segment header was not written whole, and nothing follows it")]
    Header,
    #[error("the last batch: {0}")]
    Batch(BatchError),
}

/// Damage a crash cannot explain: the start stops here.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}, byte offset {offset}: {damage}", file.display())]
pub struct Corruption {
    pub file: PathBuf,
    pub offset: u64,
    pub damage: Damage,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Damage {
    /// `Corruption::offset` is where the damage begins: the first bad frame in the batch, or
    /// the batch's start.
    #[error(
        "bad batch at byte offset {batch} ({error}{}), and it is not a torn tail: {why}",
        frame.map(|e| format!("; its first bad frame: {e}")).unwrap_or_default()
    )]
    Batch {
        batch: u64,
        error: BatchError,
        frame: Option<FrameError>,
        why: NotTorn,
    },
    #[error("bad segment header: {0}")]
    Header(HeaderError),
    #[error("segment {missing} is missing before this one")]
    Gap { missing: u64 },
    /// `Corruption::file` is the later segment, whose header names an end the one before it
    /// cannot have.
    #[error(
        "the header says the previous segment's batches end at byte offset {end}, but that \
         segment is {len} bytes long"
    )]
    PreviousEnd { end: u64, len: u64 },
}

#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
    #[error("{}: not a shard directory (shard-<n>) or segment file (<20 digits>.seg) name", path.display())]
    BadName { path: PathBuf },
    #[error("{}: {error}", path.display())]
    Format { path: PathBuf, error: HeaderError },
    #[error(transparent)]
    Corrupt(#[from] Corruption),
}

/// What [`recover_truncate`] did.
#[derive(Debug, PartialEq, Eq)]
pub struct Recovered {
    /// The file cut, and its length now (none: the damaged file was removed whole).
    pub truncated: Option<(PathBuf, u64)>,
    pub removed: Vec<PathBuf>,
}

/// The shard directories in `data_dir`, by shard number. Other entries (the `LOCK` file) are
/// not the reader's; an entry named `shard-...` that is not a shard's name is refused.
pub fn shard_dirs(data_dir: &Path) -> Result<Vec<(u16, PathBuf)>, ReadError> {
    let mut shards = Vec::new();
    for (name, path) in entries(data_dir)? {
        if let Some(shard) = segment::parse_shard_dir_name(&name) {
            shards.push((shard, path));
        } else if name.starts_with("shard-") {
            return Err(ReadError::BadName { path });
        }
    }
    shards.sort_unstable();
    Ok(shards)
}

/// Reads every segment of `shard_dir` in order and hands each good frame to `visit`. An error
/// from `visit` (the record codec above could not decode a body) stops the read and is returned.
pub fn read_shard<E: From<ReadError>>(
    shard_dir: &Path,
    mut visit: impl FnMut(FrameAt<'_>) -> Result<(), E>,
) -> Result<ShardRead, E> {
    let shard = shard_dir
        .file_name()
        .and_then(|name| segment::parse_shard_dir_name(&name.to_string_lossy()))
        .ok_or_else(|| ReadError::BadName {
            path: shard_dir.to_owned(),
        })?;
    let segments = segments(shard_dir)?;
    let mut read = ShardRead::default();
    for (i, (sequence, path)) in segments.iter().enumerate() {
        if let Some(last) = read.last {
            if *sequence != last.sequence + 1 {
                let missing = last.sequence + 1;
                return Err(corrupt(path, 0, Damage::Gap { missing }).into());
            }
        }
        let mut bytes = fs::read(path).map_err(|source| io_error(path, source))?;
        let tail = cut_at_recorded_end(&mut bytes, shard, *sequence, segments.get(i + 1))?;
        let place = Place {
            file: path,
            shard,
            sequence: *sequence,
            tail,
        };
        let segment = read_segment(place, &bytes, &mut visit)?;
        read.frames += segment.frames;
        read.torn = segment.torn;
        let Some(header) = segment.header else {
            break;
        };
        read.segments += 1;
        read.last = Some(header);
    }
    Ok(read)
}

/// Where a segment's bytes came from: what [`read_segment`] checks them against.
#[derive(Debug, Clone, Copy)]
pub struct Place<'a> {
    pub file: &'a Path,
    pub shard: u16,
    pub sequence: u64,
    /// What may follow its batches: whether it is the shard's newest segment, the only one a
    /// crash can tear, and if not, whether the next one's header says where its batches end
    /// (and the bytes are cut there).
    pub tail: Tail,
}

/// What one segment held.
#[derive(Debug, PartialEq, Eq)]
pub struct SegmentRead {
    /// None: the header was torn (and `torn` says so).
    pub header: Option<SegmentHeader>,
    pub frames: u64,
    pub torn: Option<TornTail>,
}

/// Reads one segment's bytes, as [`read_shard`] does for each file (and the fuzzer for its
/// inputs): checks the header against `place`, and hands each good frame to `visit`.
pub fn read_segment<E: From<ReadError>>(
    place: Place<'_>,
    bytes: &[u8],
    mut visit: impl FnMut(FrameAt<'_>) -> Result<(), E>,
) -> Result<SegmentRead, E> {
    let file = place.file;
    let Some(header) = segment_header(bytes, place)? else {
        let tear = Tear::Header;
        let torn = TornTail {
            file: file.to_owned(),
            offset: 0,
            tear,
        };
        return Ok(SegmentRead {
            header: None,
            frames: 0,
            torn: Some(torn),
        });
    };
    let end = scan::scan(bytes, SEGMENT_HEADER_BYTES, header.salt, place.tail).map_err(|c| {
        let damage = Damage::Batch {
            batch: c.batch as u64,
            error: c.error,
            frame: c.frame.map(|(_, error)| error),
            why: c.why,
        };
        corrupt(file, c.offset() as u64, damage)
    })?;
    let mut frames = 0;
    for (offset, frame) in scan::frames(bytes, SEGMENT_HEADER_BYTES, end.good_until(bytes.len())) {
        visit(FrameAt {
            kind: frame.kind,
            body: frame.body,
            file,
            offset: offset as u64,
        })?;
        frames += 1;
    }
    let torn = match end {
        End::Clean | End::Zeros { .. } => None,
        End::Torn { offset, error } => Some(TornTail {
            file: file.to_owned(),
            offset: offset as u64,
            tear: Tear::Batch(error),
        }),
    };
    Ok(SegmentRead {
        header: Some(header),
        frames,
        torn,
    })
}

/// The segment's header, checked against where the file lies; none if a crash tore it in the
/// newest segment. The writer writes a header as a write of its own and lets nothing follow
/// it until it is durable, so a header that is bad or cut short with nothing after it is that
/// write torn (a cut, or a hole: zeros or old bytes).
fn segment_header(bytes: &[u8], place: Place<'_>) -> Result<Option<SegmentHeader>, ReadError> {
    let bad = |error| corrupt(place.file, 0, Damage::Header(error));
    let header = match SegmentHeader::decode(bytes) {
        Ok(header) => header,
        Err(error @ HeaderError::UnsupportedVersion { .. }) => {
            return Err(ReadError::Format {
                path: place.file.to_owned(),
                error,
            })
        }
        Err(HeaderError::Short | HeaderError::BadMagic | HeaderError::BadCrc)
            if place.tail == Tail::Newest && bytes.len() <= SEGMENT_HEADER_BYTES =>
        {
            return Ok(None)
        }
        Err(error) => return Err(bad(error)),
    };
    header
        .check_place(place.shard, place.sequence)
        .map_err(bad)?;
    Ok(Some(header))
}

/// Cuts the bytes of segment `sequence` where the header of the `next` segment says its
/// batches end (what follows is zeros the writer had not cut off yet), and says what may follow
/// them.
fn cut_at_recorded_end(
    bytes: &mut Vec<u8>,
    shard: u16,
    sequence: u64,
    next: Option<&(u64, PathBuf)>,
) -> Result<Tail, ReadError> {
    let Some((next_sequence, next)) = next else {
        return Ok(Tail::Newest);
    };
    // A gap, or a next header that a crash tore or that is damaged: reading on says which.
    let recorded = if *next_sequence == sequence + 1 {
        previous_end(next, shard, *next_sequence)?
    } else {
        None
    };
    let Some(end) = recorded else {
        return Ok(Tail::Left);
    };
    let len = bytes.len() as u64;
    if (SEGMENT_HEADER_BYTES as u64..=len).contains(&end) {
        bytes.truncate(end as usize);
        return Ok(Tail::Recorded);
    }
    // Damage to this segment's own header is named as such, by reading it.
    if SegmentHeader::decode(bytes).is_err() {
        return Ok(Tail::Left);
    }
    let damage = Damage::PreviousEnd { end, len };
    Err(corrupt(next, PREVIOUS_END_AT as u64, damage))
}

/// Where the batches of the segment before `next` end, as `next`'s header says; none if that
/// header is not good where it lies.
fn previous_end(next: &Path, shard: u16, sequence: u64) -> Result<Option<u64>, ReadError> {
    let mut header = [0; SEGMENT_HEADER_BYTES];
    let file = File::open(next).map_err(|source| io_error(next, source))?;
    let mut read = 0;
    while read < header.len() {
        match file.read_at(&mut header[read..], read as u64) {
            Ok(0) => break,
            Ok(n) => read += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(source) => return Err(io_error(next, source)),
        }
    }
    Ok(SegmentHeader::decode(&header[..read])
        .ok()
        .filter(|h| h.check_place(shard, sequence).is_ok())
        .map(|h| h.previous_end))
}

fn corrupt(file: &Path, offset: u64, damage: Damage) -> ReadError {
    ReadError::Corrupt(Corruption {
        file: file.to_owned(),
        offset,
        damage,
    })
}

/// Cuts a torn tail off, durably: the file ends where its good batches end (a segment whose
/// header was torn holds nothing and is removed).
pub fn cut_torn_tail(torn: &TornTail) -> Result<(), ReadError> {
    if torn.offset < SEGMENT_HEADER_BYTES as u64 {
        remove_durably(&torn.file)
    } else {
        truncate_durably(&torn.file, torn.offset)
    }
}

/// The documented recovery from corruption: keep everything before the damage. The damaged
/// segment is cut where the damage begins (removed, if its header is the damage), and every
/// later segment of the shard is removed. Damage that begins inside a batch, at a bad frame
/// after good ones, keeps those: the batch's header is written again for them (first, and
/// synced, so that a crash between the two steps leaves either the old batch, still corrupt,
/// or the new one followed by bytes that are no batch, which the next read reports again).
/// The frames a read before this handed out past the damage are gone: read the shard again.
pub fn recover_truncate(corruption: &Corruption) -> Result<Recovered, ReadError> {
    let file = &corruption.file;
    let shard_dir = file
        .parent()
        .ok_or_else(|| ReadError::BadName { path: file.clone() })?;
    let sequence = file
        .file_name()
        .and_then(|name| segment::parse_segment_file_name(&name.to_string_lossy()))
        .ok_or_else(|| ReadError::BadName { path: file.clone() })?;
    let mut removed = Vec::new();
    // Newest first: a crash part way leaves the shard's segments a contiguous run.
    for (later, path) in segments(shard_dir)?.into_iter().rev() {
        if later > sequence {
            remove_durably(&path)?;
            removed.push(path);
        }
    }
    let truncated = match corruption.damage {
        Damage::Batch { batch, .. } => {
            let frames = batch + batch::HEADER_BYTES as u64;
            let keep = if corruption.offset > frames {
                rewrite_batch_header(file, batch, corruption.offset)?;
                corruption.offset
            } else {
                batch
            };
            truncate_durably(file, keep)?;
            Some((file.clone(), keep))
        }
        Damage::Header(_) | Damage::Gap { .. } => {
            remove_durably(file)?;
            removed.push(file.clone());
            None
        }
        Damage::PreviousEnd { .. } => {
            remove_durably(file)?;
            removed.push(file.clone());
            // The segment before lost bytes this header recorded. Its last batch, cut short,
            // was acknowledged: it goes here, named, not as a torn tail at the next read,
            // which would say that nothing in it was.
            let previous = shard_dir.join(segment::segment_file_name(sequence - 1));
            cut_to_whole_batches(&previous)?
        }
    };
    Ok(Recovered { truncated, removed })
}

/// Cuts a segment that ends inside a batch back to its whole batches, durably; the file and
/// its length now, if it was cut. Other damage in it is left for the next read to report.
fn cut_to_whole_batches(file: &Path) -> Result<Option<(PathBuf, u64)>, ReadError> {
    let bytes = fs::read(file).map_err(|source| io_error(file, source))?;
    let salt = SegmentHeader::decode(&bytes)
        .map_err(|error| corrupt(file, 0, Damage::Header(error)))?
        .salt;
    match scan::scan(&bytes, SEGMENT_HEADER_BYTES, salt, Tail::Newest) {
        Ok(End::Torn { offset, .. }) => {
            truncate_durably(file, offset as u64)?;
            Ok(Some((file.to_owned(), offset as u64)))
        }
        Ok(End::Clean | End::Zeros { .. }) | Err(_) => Ok(None),
    }
}

/// The segment files of a shard directory, by sequence.
fn segments(shard_dir: &Path) -> Result<Vec<(u64, PathBuf)>, ReadError> {
    let mut segments = Vec::new();
    for (name, path) in entries(shard_dir)? {
        if !segment::looks_like_segment(&name) {
            continue;
        }
        let sequence = segment::parse_segment_file_name(&name)
            .ok_or(ReadError::BadName { path: path.clone() })?;
        segments.push((sequence, path));
    }
    segments.sort_unstable();
    Ok(segments)
}

fn entries(dir: &Path) -> Result<Vec<(String, PathBuf)>, ReadError> {
    let mut entries = Vec::new();
    for entry in fs::read_dir(dir).map_err(|source| io_error(dir, source))? {
        let entry = entry.map_err(|source| io_error(dir, source))?;
        entries.push((
            entry.file_name().to_string_lossy().into_owned(),
            entry.path(),
        ));
    }
    Ok(entries)
}

/// Writes the header of the batch at `batch` again, for its frames up to `until`, durably.
fn rewrite_batch_header(file: &Path, batch: u64, until: u64) -> Result<(), ReadError> {
    let bytes = fs::read(file).map_err(|source| io_error(file, source))?;
    let salt = SegmentHeader::decode(&bytes)
        .map_err(|error| corrupt(file, 0, Damage::Header(error)))?
        .salt;
    let frames = bytes
        .get(batch as usize + batch::HEADER_BYTES..until as usize)
        .ok_or_else(|| io_error(file, io::ErrorKind::UnexpectedEof.into()))?;
    let header = batch::header(salt, batch, frames);
    let f = OpenOptions::new()
        .write(true)
        .open(file)
        .map_err(|source| io_error(file, source))?;
    f.write_all_at(&header, batch)
        .and_then(|()| f.sync_data())
        .map_err(|source| io_error(file, source))
}

fn truncate_durably(file: &Path, len: u64) -> Result<(), ReadError> {
    let f = OpenOptions::new()
        .write(true)
        .open(file)
        .map_err(|source| io_error(file, source))?;
    f.set_len(len).map_err(|source| io_error(file, source))?;
    f.sync_all().map_err(|source| io_error(file, source))
}

fn remove_durably(file: &Path) -> Result<(), ReadError> {
    fs::remove_file(file).map_err(|source| io_error(file, source))?;
    let dir = file.parent().unwrap_or(Path::new("."));
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|source| io_error(dir, source))
}

fn io_error(path: &Path, source: io::Error) -> ReadError {
    ReadError::Io {
        path: path.to_owned(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::Batch;
    use crate::frame;
    use crate::segment::{segment_file_name, shard_dir};

    const SHARD: u16 = 1;
    const SHARD_COUNT: u16 = 2;
    /// A page, as the page cache writes them: what a power cut leaves unwritten at a time.
    const PAGE: usize = 4096;

    /// Where a segment's batches and frames lie.
    struct Written {
        path: PathBuf,
        /// Each batch's offset, and its frames' offsets.
        batches: Vec<(u64, Vec<u64>)>,
    }

    impl Written {
        /// The offsets of every frame, in order.
        fn frames(&self) -> Vec<u64> {
            self.batches.iter().flat_map(|(_, f)| f.clone()).collect()
        }
    }

    /// Writes segment `sequence` of shard 1: one batch per slice of bodies, one frame per body
    /// (kind = its index in the batch), as the writer would; its header records where the
    /// segment before it in `dir` ends, if there is one.
    fn write_batches(dir: &Path, sequence: u64, batches: &[&[&[u8]]]) -> Written {
        let previous = dir.join(segment_file_name(sequence.wrapping_sub(1)));
        let header = SegmentHeader {
            previous_end: fs::metadata(previous).map_or(0, |m| m.len()),
            ..SegmentHeader::new(SHARD, SHARD_COUNT, sequence)
        };
        let mut bytes = header.encode().to_vec();
        let mut offsets = Vec::new();
        for bodies in batches {
            let at = bytes.len();
            let mut batch = Batch::new();
            let mut frames = Vec::new();
            for (kind, body) in bodies.iter().enumerate() {
                frames.push((at + batch.len()) as u64);
                frame::encode(batch.frames_out(), kind as u8, |b| {
                    b.extend_from_slice(body)
                });
            }
            bytes.extend_from_slice(batch.seal(header.salt, at as u64));
            offsets.push((at as u64, frames));
        }
        let path = dir.join(segment_file_name(sequence));
        fs::write(&path, bytes).unwrap();
        Written {
            path,
            batches: offsets,
        }
    }

    /// A segment of one batch per body, each of one frame.
    fn write_segment(dir: &Path, sequence: u64, bodies: &[&[u8]]) -> Written {
        let batches: Vec<&[&[u8]]> = bodies.iter().map(std::slice::from_ref).collect();
        write_batches(dir, sequence, &batches)
    }

    fn new_shard() -> (tempfile::TempDir, PathBuf) {
        let data = tempfile::tempdir().unwrap();
        let dir = shard_dir(data.path(), SHARD);
        fs::create_dir(&dir).unwrap();
        (data, dir)
    }

    /// Everything a read hands out: (file name, offset, kind, body).
    type Seen = Vec<(String, u64, u8, Vec<u8>)>;

    fn read_all(dir: &Path) -> Result<(ShardRead, Seen), ReadError> {
        let mut seen = Vec::new();
        let read = read_shard(dir, |f: FrameAt<'_>| {
            let name = f.file.file_name().unwrap().to_string_lossy().into_owned();
            seen.push((name, f.offset, f.kind, f.body.to_vec()));
            Ok::<_, ReadError>(())
        })?;
        Ok((read, seen))
    }

    fn bodies(seen: &Seen) -> Vec<&[u8]> {
        seen.iter().map(|s| s.3.as_slice()).collect()
    }

    fn corruption(result: Result<(ShardRead, Seen), ReadError>) -> Corruption {
        match result {
            Err(ReadError::Corrupt(c)) => c,
            other => panic!("expected corruption, got {other:?}"),
        }
    }

    /// Proves the frames of every batch of every segment come back in order, with their files
    /// and offsets.
    #[test]
    fn segments_read_back_in_order() {
        let (_data, dir) = new_shard();
        let first = write_batches(&dir, 4, &[&[b"a", b"bb"], &[b"c"]]).frames();
        let second = write_segment(&dir, 5, &[b"ddd"]).frames();
        fs::write(dir.join("notes.txt"), "not a segment").unwrap();
        let (read, seen) = read_all(&dir).unwrap();
        let name = |s| segment_file_name(s);
        assert_eq!(
            seen,
            [
                (name(4), first[0], 0, b"a".to_vec()),
                (name(4), first[1], 1, b"bb".to_vec()),
                (name(4), first[2], 0, b"c".to_vec()),
                (name(5), second[0], 0, b"ddd".to_vec()),
            ]
        );
        assert_eq!((read.segments, read.frames, read.torn), (2, 4, None));
        assert_eq!(
            read.last.map(|h| (h.sequence, h.shard_count)),
            Some((5, SHARD_COUNT))
        );
    }

    #[test]
    fn an_empty_shard_directory_reads_as_nothing() {
        let (_data, dir) = new_shard();
        let (read, seen) = read_all(&dir).unwrap();
        assert_eq!(read, ShardRead::default());
        assert!(seen.is_empty());
    }

    /// Proves the torn-tail rule at every offset inside the newest segment's last batch: the
    /// read hands out exactly the frames before it and reports the tail at the batch's start,
    /// and cutting it leaves a file that reads clean with the same frames.
    #[test]
    fn a_torn_last_batch_is_cut_at_every_offset() {
        let (_data, dir) = new_shard();
        write_segment(&dir, 0, &[b"an older segment"]);
        let last: &[&[u8]] = &[b"the last batch", b"torn anywhere"];
        let written = write_batches(&dir, 1, &[&[b"first", b"second"], last]);
        let path = &written.path;
        let whole = fs::read(path).unwrap();
        let last = written.batches[1].0;
        let (_, expected) = read_all(&dir).unwrap();
        let expected = &expected[..3];
        for cut in last + 1..whole.len() as u64 {
            fs::write(path, &whole[..cut as usize]).unwrap();
            let (read, seen) = read_all(&dir).unwrap();
            assert_eq!(seen, expected, "cut at {cut}");
            let torn = read.torn.expect("a torn tail");
            assert_eq!((&torn.file, torn.offset), (path, last), "cut at {cut}");
            assert!(
                matches!(
                    torn.tear,
                    Tear::Batch(BatchError::Short | BatchError::Cut { .. })
                ),
                "cut at {cut}: {:?}",
                torn.tear
            );

            cut_torn_tail(&torn).unwrap();
            assert_eq!(fs::metadata(path).unwrap().len(), last);
            let (read, seen) = read_all(&dir).unwrap();
            assert_eq!((read.torn, seen.as_slice()), (None, expected));
        }
    }

    /// The newest segment of a shard whose last batch holds a frame large enough to span pages,
    /// with frames before and after it: (the shard's directory, the segment, the last batch's
    /// offset, a page-aligned range of it inside the large frame, past its first page).
    fn a_large_last_batch(dir: &Path) -> (Written, u64, std::ops::Range<usize>) {
        let large = vec![0x5Au8; 5 * PAGE];
        let last: &[&[u8]] = &[b"before the hole", &large, b"after the hole"];
        let written = write_batches(dir, 0, &[&[b"kept"], last]);
        let batch = written.batches[1].0;
        let large_at = written.batches[1].1[1] as usize;
        let page = large_at.next_multiple_of(PAGE) + PAGE;
        (written, batch, page..page + PAGE)
    }

    /// Proves what a power cut during the last batch's write can leave, a page of zeros in the
    /// middle of the batch with good frames after it inside the batch, is a torn tail: nothing
    /// of that batch is handed out, the tail is cut exactly at the batch's start, and the shard
    /// then reads clean.
    #[test]
    fn a_hole_in_the_last_batch_is_a_torn_tail() {
        let (_data, dir) = new_shard();
        let (written, batch, hole) = a_large_last_batch(&dir);
        let mut bytes = fs::read(&written.path).unwrap();
        bytes[hole].fill(0);
        let after = written.batches[1].1[2] as usize;
        assert_eq!(
            frame::decode(&bytes[after..]).unwrap().body,
            b"after the hole"
        );
        fs::write(&written.path, &bytes).unwrap();

        let (read, seen) = read_all(&dir).unwrap();
        assert_eq!(bodies(&seen), [b"kept"]);
        let torn = read.torn.expect("a torn tail");
        assert_eq!((&torn.file, torn.offset), (&written.path, batch));
        assert!(
            matches!(torn.tear, Tear::Batch(BatchError::BadCrc { .. })),
            "{:?}",
            torn.tear
        );
        assert!(torn.to_string().contains("torn tail"), "{torn}");
        cut_torn_tail(&torn).unwrap();
        assert_eq!(fs::metadata(&written.path).unwrap().len(), batch);
        let (read, seen) = read_all(&dir).unwrap();
        assert_eq!((read.torn, bodies(&seen)), (None, vec![&b"kept"[..]]));
    }

    /// Proves the same hole in a batch that a good batch follows is corruption: the read stops
    /// before handing out anything, naming the file and the frame the hole hit, and
    /// `recover_truncate` keeps what came before it, the frame before the hole in the same
    /// batch included.
    #[test]
    fn a_hole_in_a_batch_that_another_follows_is_corruption() {
        let (_data, dir) = new_shard();
        let (written, batch, hole) = a_large_last_batch(&dir);
        let mut bytes = fs::read(&written.path).unwrap();
        bytes[hole].fill(0);
        let later = bytes.len() as u64;
        let salt = SegmentHeader::decode(&bytes).unwrap().salt;
        let mut next = Batch::new();
        frame::encode(next.frames_out(), 0, |b| b.extend_from_slice(b"later"));
        bytes.extend_from_slice(next.seal(salt, later));
        fs::write(&written.path, &bytes).unwrap();

        let mut seen = 0;
        let result = read_shard(&dir, |_| {
            seen += 1;
            Ok::<_, ReadError>(())
        });
        let c = corruption(result.map(|read| (read, Vec::new())));
        assert_eq!(
            seen, 0,
            "nothing is handed out before the corruption is found"
        );
        let large = written.batches[1].1[1];
        assert_eq!((&c.file, c.offset), (&written.path, large));
        assert!(
            matches!(
                c.damage,
                Damage::Batch {
                    batch: b,
                    error: BatchError::BadCrc { .. },
                    frame: Some(FrameError::BadCrc { .. }),
                    why: NotTorn::BatchFollows { offset },
                } if b == batch && offset as u64 == later
            ),
            "{:?}",
            c.damage
        );
        let message = c.to_string();
        assert!(
            message.contains(&format!("{}, byte offset {large}:", written.path.display())),
            "{message}"
        );

        let recovered = recover_truncate(&c).unwrap();
        assert_eq!(recovered.truncated, Some((written.path.clone(), large)));
        let (read, seen) = read_all(&dir).unwrap();
        assert_eq!(read.torn, None);
        assert_eq!(bodies(&seen), [&b"kept"[..], b"before the hole"]);
    }

    /// Proves a last batch whose header a hole hit is a torn tail, although good frames follow
    /// the header, and that a good batch header after it makes it corruption at its start.
    #[test]
    fn a_torn_batch_header() {
        let (_data, dir) = new_shard();
        let written = write_batches(&dir, 0, &[&[b"kept"], &[b"one", b"two", b"three"]]);
        let batch = written.batches[1].0 as usize;
        let whole = fs::read(&written.path).unwrap();
        let mut bytes = whole.clone();
        bytes[batch..batch + batch::HEADER_BYTES].fill(0);
        fs::write(&written.path, &bytes).unwrap();
        let (read, seen) = read_all(&dir).unwrap();
        assert_eq!(bodies(&seen), [b"kept"]);
        let torn = read.torn.unwrap();
        assert_eq!(torn.offset, batch as u64);
        assert_eq!(torn.tear, Tear::Batch(BatchError::BadMagic { found: 0 }));

        let salt = SegmentHeader::decode(&bytes).unwrap().salt;
        let mut next = Batch::new();
        frame::encode(next.frames_out(), 0, |b| b.extend_from_slice(b"later"));
        let later = bytes.len() as u64;
        bytes.extend_from_slice(next.seal(salt, later));
        fs::write(&written.path, &bytes).unwrap();
        let c = corruption(read_all(&dir));
        assert_eq!(c.offset, batch as u64);
        assert_eq!(
            c.damage,
            Damage::Batch {
                batch: batch as u64,
                error: BatchError::BadMagic { found: 0 },
                frame: None,
                why: NotTorn::BatchFollows {
                    offset: later as usize
                },
            }
        );
    }

    /// Proves a newest segment whose header a crash cut short, or left as a hole with nothing
    /// after it, is a torn tail that removes it, and that the same in an older segment, or with
    /// batches after it, is corruption.
    #[test]
    fn a_torn_segment_header() {
        let (_data, dir) = new_shard();
        write_segment(&dir, 0, &[b"kept"]);
        let path = write_segment(&dir, 1, &[]).path;
        let header = fs::read(&path).unwrap();
        for torn_header in [
            header[..SEGMENT_HEADER_BYTES - 1].to_vec(),
            vec![0; SEGMENT_HEADER_BYTES],
        ] {
            fs::write(&path, &torn_header).unwrap();
            let (read, seen) = read_all(&dir).unwrap();
            assert_eq!(seen.len(), 1);
            assert_eq!(read.last.map(|h| h.sequence), Some(0));
            let torn = read.torn.unwrap();
            assert_eq!((torn.offset, torn.tear), (0, Tear::Header));
            cut_torn_tail(&torn).unwrap();
            assert!(!path.exists());
        }

        let path = write_segment(&dir, 1, &[b"newer"]).path;
        let mut bytes = fs::read(&path).unwrap();
        bytes[..SEGMENT_HEADER_BYTES].fill(0);
        fs::write(&path, &bytes).unwrap();
        let c = corruption(read_all(&dir));
        assert_eq!(
            (c.offset, c.damage),
            (0, Damage::Header(HeaderError::BadMagic))
        );

        write_segment(&dir, 1, &[b"newer"]);
        fs::write(dir.join(segment_file_name(0)), b"ISEG").unwrap();
        let c = corruption(read_all(&dir));
        assert_eq!(
            (c.offset, c.damage),
            (0, Damage::Header(HeaderError::Short))
        );
    }

    /// Appends `zeros` zero bytes to a segment, as prewriting leaves them after its batches.
    fn add_zeros(path: &Path, zeros: usize) {
        let mut bytes = fs::read(path).unwrap();
        bytes.resize(bytes.len() + zeros, 0);
        fs::write(path, bytes).unwrap();
    }

    /// Proves an older segment that the writer left with zeros after its batches reads up to
    /// where the next segment's header says they end, with every frame; that zeros or a cut
    /// before that end are corruption; and that where the next header was torn, the older
    /// segment may end in zeros but not in a torn batch.
    #[test]
    fn an_older_segment_is_read_to_the_end_the_next_one_records() {
        let (_data, dir) = new_shard();
        let older = write_batches(&dir, 0, &[&[b"one"], &[b"two", b"three"]]);
        let whole = fs::read(&older.path).unwrap();
        let newer = write_segment(&dir, 1, &[b"four"]).path;
        add_zeros(&older.path, 4096);
        let (read, seen) = read_all(&dir).unwrap();
        assert_eq!(bodies(&seen), [&b"one"[..], b"two", b"three", b"four"]);
        assert_eq!((read.segments, read.torn), (2, None));

        let last = older.batches[1].0 as usize;
        let mut lost = whole.clone();
        lost[last..].fill(0);
        lost.resize(whole.len() + 4096, 0);
        fs::write(&older.path, &lost).unwrap();
        let c = corruption(read_all(&dir));
        assert_eq!((&c.file, c.offset), (&older.path, last as u64));
        assert!(
            matches!(
                c.damage,
                Damage::Batch {
                    why: NotTorn::NotNewest,
                    ..
                }
            ),
            "{c}"
        );

        fs::write(&newer, vec![0; SEGMENT_HEADER_BYTES]).unwrap();
        fs::write(&older.path, &whole).unwrap();
        add_zeros(&older.path, 4096);
        let (read, seen) = read_all(&dir).unwrap();
        assert_eq!(bodies(&seen), [&b"one"[..], b"two", b"three"]);
        let torn = read.torn.unwrap();
        assert_eq!((&torn.file, torn.tear), (&newer, Tear::Header));
        fs::write(&older.path, &whole[..whole.len() - 1]).unwrap();
        let c = corruption(read_all(&dir));
        assert_eq!(c.file, older.path);
        let Damage::Batch { batch, why, .. } = c.damage else {
            panic!("{c}");
        };
        assert_eq!((batch, why), (last as u64, NotTorn::NotNewest));
    }

    /// Proves a next segment whose header says the one before it ends past its last byte is
    /// corruption named at that header's field, and that `--recover-truncate` removes it and
    /// the ones after it, and cuts the older segment's last batch, cut short, off with them
    /// (named: it was acknowledged); the older segment then reads clean as the newest.
    #[test]
    fn a_recorded_end_past_the_older_segment_is_corruption() {
        let (_data, dir) = new_shard();
        let older = write_batches(&dir, 0, &[&[b"one"], &[b"two"]]);
        let whole = fs::read(&older.path).unwrap();
        let newer = write_segment(&dir, 1, &[b"three"]).path;
        let newest = write_segment(&dir, 2, &[b"four"]).path;
        fs::write(&older.path, &whole[..whole.len() - 1]).unwrap();
        let c = corruption(read_all(&dir));
        assert_eq!((&c.file, c.offset), (&newer, PREVIOUS_END_AT as u64));
        let (end, len) = (whole.len() as u64, whole.len() as u64 - 1);
        assert_eq!(c.damage, Damage::PreviousEnd { end, len });
        assert!(
            c.to_string().contains(&format!("end at byte offset {end}")),
            "{c}"
        );

        let recovered = recover_truncate(&c).unwrap();
        assert_eq!(recovered.removed, [newest, newer]);
        let last = older.batches[1].0;
        assert_eq!(recovered.truncated, Some((older.path.clone(), last)));
        assert_eq!(fs::metadata(&older.path).unwrap().len(), last);
        let (read, seen) = read_all(&dir).unwrap();
        assert_eq!(bodies(&seen), [b"one"]);
        assert_eq!(read.torn, None);
    }

    /// Proves one flipped byte anywhere in a middle batch stops the read with the file and the
    /// offset where the damage begins (the batch, for its header; the frame, for a frame), in
    /// the newest segment (a good batch follows) and in an older one, and that the message
    /// names both.
    #[test]
    fn a_flipped_byte_in_a_middle_batch_is_corruption_at_its_offset() {
        let (_data, dir) = new_shard();
        let batches: &[&[&[u8]]] = &[&[b"before"], &[b"the middle", b"batch"], &[b"after"]];
        let older = write_batches(&dir, 0, batches);
        let newest = write_batches(&dir, 1, batches);
        for (written, newest) in [(&older, false), (&newest, true)] {
            let path = &written.path;
            let whole = fs::read(path).unwrap();
            let (middle, frames) = &written.batches[1];
            let after = written.batches[2].0;
            for at in *middle..after {
                let mut bad = whole.clone();
                bad[at as usize] ^= 0x40;
                fs::write(path, &bad).unwrap();
                let c = corruption(read_all(&dir));
                let expected = frames.iter().rev().find(|&&f| f <= at).unwrap_or(middle);
                assert_eq!((&c.file, c.offset), (path, *expected), "byte {at}");
                let Damage::Batch { batch, why, .. } = c.damage else {
                    panic!("byte {at}: {:?}", c.damage);
                };
                assert_eq!(batch, *middle);
                let expected_why = if newest {
                    NotTorn::BatchFollows {
                        offset: after as usize,
                    }
                } else {
                    NotTorn::NotNewest
                };
                assert_eq!(why, expected_why, "byte {at}");
                let message = c.to_string();
                assert!(
                    message.contains(&format!("{}, byte offset {expected}:", path.display())),
                    "{message}"
                );
            }
            fs::write(path, &whole).unwrap();
        }
    }

    /// Proves `recover_truncate` keeps exactly what came before the damage: the damaged
    /// segment is cut at the bad frame, the frames before it in its batch kept under a header
    /// written again, later segments go, and the shard then reads clean.
    #[test]
    fn recover_truncate_keeps_everything_before_the_damage() {
        let (_data, dir) = new_shard();
        write_segment(&dir, 0, &[b"zero"]);
        let damaged = write_batches(&dir, 1, &[&[b"one"], &[b"two", b"three"], &[b"four"]]);
        let later = write_segment(&dir, 2, &[b"five"]).path;
        let three = damaged.batches[1].1[1];
        let mut bytes = fs::read(&damaged.path).unwrap();
        bytes[three as usize + 12] ^= 1;
        fs::write(&damaged.path, bytes).unwrap();

        let c = corruption(read_all(&dir));
        assert_eq!(c.offset, three);
        let recovered = recover_truncate(&c).unwrap();
        assert_eq!(recovered.truncated, Some((damaged.path.clone(), three)));
        assert_eq!(recovered.removed, std::slice::from_ref(&later));
        assert!(!later.exists());

        let (read, seen) = read_all(&dir).unwrap();
        assert_eq!(bodies(&seen), [&b"zero"[..], b"one", b"two"]);
        assert_eq!((read.torn, read.last.map(|h| h.sequence)), (None, Some(1)));
    }

    /// Proves damage at a batch's first frame, or in its header, keeps nothing of that batch.
    #[test]
    fn recover_truncate_at_a_batch_start_keeps_none_of_it() {
        let (_data, dir) = new_shard();
        let older = write_batches(&dir, 0, &[&[b"one"], &[b"two", b"three"], &[b"four"]]);
        write_segment(&dir, 1, &[b"five"]);
        let whole = fs::read(&older.path).unwrap();
        let (batch, frames) = older.batches[1].clone();
        for at in [batch, frames[0] + 11] {
            let mut bytes = whole.clone();
            bytes[at as usize] ^= 1;
            fs::write(&older.path, bytes).unwrap();
            let c = corruption(read_all(&dir));
            let damage_begins = if at == batch { batch } else { frames[0] };
            assert_eq!(c.offset, damage_begins);
            let recovered = recover_truncate(&c).unwrap();
            assert_eq!(recovered.truncated, Some((older.path.clone(), batch)));
            let (_, seen) = read_all(&dir).unwrap();
            assert_eq!(bodies(&seen), [b"one"]);
        }
    }

    /// Proves a header that is bad, or that does not belong where it lies, is corruption at
    /// offset 0, and that recovering from it removes that segment and the ones after it.
    #[test]
    fn a_bad_segment_header_is_corruption() {
        let (_data, dir) = new_shard();
        write_segment(&dir, 0, &[b"zero"]);
        let bad = write_segment(&dir, 1, &[b"one"]).path;
        write_segment(&dir, 2, &[b"two"]);
        let whole = fs::read(&bad).unwrap();

        let mut bytes = whole.clone();
        bytes[0] = b'X';
        fs::write(&bad, &bytes).unwrap();
        let c = corruption(read_all(&dir));
        assert_eq!((&c.file, c.offset), (&bad, 0));
        assert_eq!(c.damage, Damage::Header(HeaderError::BadMagic));

        // A segment of shard 0 in shard 1's directory.
        let mut bytes = whole.clone();
        bytes[..SEGMENT_HEADER_BYTES]
            .copy_from_slice(&SegmentHeader::new(0, SHARD_COUNT, 1).encode());
        fs::write(&bad, &bytes).unwrap();
        let c = corruption(read_all(&dir));
        assert_eq!(
            c.damage,
            Damage::Header(HeaderError::WrongShard {
                found: 0,
                expected: SHARD
            })
        );

        let recovered = recover_truncate(&c).unwrap();
        assert_eq!(recovered.truncated, None);
        assert_eq!(recovered.removed.len(), 2);
        let (read, _) = read_all(&dir).unwrap();
        assert_eq!((read.segments, read.frames), (1, 1));
    }

    /// Proves a segment of format version 1 (before batch headers) is refused as a format
    /// the build does not read, naming the file, whether it is the newest or not, and is not
    /// taken for corruption (which `--recover-truncate` would remove) or a torn tail.
    #[test]
    fn an_old_format_segment_is_refused_by_name() {
        let (_data, dir) = new_shard();
        let path = write_segment(&dir, 0, &[b"zero"]).path;
        let mut bytes = fs::read(&path).unwrap();
        bytes[4..6].copy_from_slice(&1u16.to_le_bytes());
        for len in [bytes.len(), 22] {
            fs::write(&path, &bytes[..len]).unwrap();
            let error = read_all(&dir).unwrap_err();
            assert!(
                matches!(
                    &error,
                    ReadError::Format {
                        path: p,
                        error: HeaderError::UnsupportedVersion { found: 1 }
                    } if p == &path
                ),
                "{error:?}"
            );
            let message = error.to_string();
            assert!(
                message.starts_with(&path.display().to_string()),
                "{message}"
            );
            assert!(message.contains("format version 1"), "{message}");
        }
    }

    /// Proves a missing segment between two others is found, named by the one after the gap.
    #[test]
    fn a_missing_segment_is_corruption() {
        let (_data, dir) = new_shard();
        write_segment(&dir, 3, &[b"three"]);
        let after_gap = write_segment(&dir, 5, &[b"five"]).path;
        let c = corruption(read_all(&dir));
        assert_eq!((&c.file, c.offset), (&after_gap, 0));
        assert_eq!(c.damage, Damage::Gap { missing: 4 });
    }

    /// Proves a read stops at the first error of the caller's own (a body its codec refuses)
    /// and returns it.
    #[test]
    fn the_callers_error_stops_the_read() {
        #[derive(Debug, PartialEq)]
        enum Mine {
            Refused(u64),
            Read,
        }
        impl From<ReadError> for Mine {
            fn from(_: ReadError) -> Mine {
                Mine::Read
            }
        }
        let (_data, dir) = new_shard();
        let offsets = write_segment(&dir, 0, &[b"ok", b"refused", b"never seen"]).frames();
        let mut seen = 0;
        let result = read_shard(&dir, |f| {
            seen += 1;
            if f.body == b"refused" {
                return Err(Mine::Refused(f.offset));
            }
            Ok(())
        });
        assert_eq!(result, Err(Mine::Refused(offsets[1])));
        assert_eq!(seen, 2);
    }

    /// Proves names the store does not write are refused, not skipped: a journal is never read
    /// in part.
    #[test]
    fn malformed_names_are_refused() {
        let (data, dir) = new_shard();
        fs::create_dir(data.path().join("shard-7")).unwrap();
        fs::write(data.path().join("LOCK"), "").unwrap();
        let shards = shard_dirs(data.path()).unwrap();
        assert_eq!(
            shards,
            [(SHARD, dir.clone()), (7, data.path().join("shard-7"))]
        );

        fs::write(dir.join("7.seg"), "").unwrap();
        assert!(
            matches!(read_all(&dir), Err(ReadError::BadName { path }) if path.ends_with("7.seg"))
        );

        fs::create_dir(data.path().join("shard-07")).unwrap();
        assert!(matches!(
            shard_dirs(data.path()),
            Err(ReadError::BadName { .. })
        ));
    }
}
