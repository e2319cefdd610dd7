//! Reading a shard's journal back at start, and repairing its end.
//!
//! [`read_shard`] reads `shard-<n>/`'s segments in sequence order, one file in memory at a
//! time, and hands every good frame to the caller with the file and offset it came from. A torn
//! tail ends the read quietly and is reported in [`ShardRead::torn`]: [`cut_torn_tail`] cuts it
//! off. Corruption stops the read with a [`Corruption`] that names the file and byte offset:
//! [`recover_truncate`] is the documented way past it (`docs/store.md`, "Files").
//!
//! [`read_segment`] is the same over one segment's bytes, which is what the fuzzer drives.
//!
//! All of this runs once, at start, before any listener opens; it uses blocking std I/O.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};

use crate::frame::FrameError;
use crate::scan::{self, End, NotTorn};
use crate::segment::{self, HeaderError, SegmentHeader, SEGMENT_HEADER_BYTES};

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

/// The end of a shard's newest segment that a crash cut short: everything from `offset` on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}, byte offset {offset}: torn tail ({tear})", file.display())]
pub struct TornTail {
    pub file: PathBuf,
    pub offset: u64,
    pub tear: Tear,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Tear {
    #[error("the segment header is cut short")]
    Header,
    #[error(transparent)]
    Frame(FrameError),
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
    #[error("bad frame ({error}), and it is not a torn tail: {why}")]
    Frame { error: FrameError, why: NotTorn },
    #[error("bad segment header: {0}")]
    Header(HeaderError),
    #[error("segment {missing} is missing before this one")]
    Gap { missing: u64 },
}

#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
    #[error("{}: not a shard directory (shard-<n>) or segment file (<20 digits>.seg) name", path.display())]
    BadName { path: PathBuf },
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
        let newest = i + 1 == segments.len();
        let bytes = fs::read(path).map_err(|source| io_error(path, source))?;
        let place = Place {
            file: path,
            shard,
            sequence: *sequence,
            newest,
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
    /// The shard's newest segment: the only one a crash can tear.
    pub newest: bool,
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
    let end = scan::scan(bytes, SEGMENT_HEADER_BYTES, place.newest).map_err(|c| {
        let (error, why) = (c.error, c.why);
        corrupt(file, c.offset as u64, Damage::Frame { error, why })
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
        End::Clean => None,
        End::Torn { offset, error } => Some(TornTail {
            file: file.to_owned(),
            offset: offset as u64,
            tear: Tear::Frame(error),
        }),
    };
    Ok(SegmentRead {
        header: Some(header),
        frames,
        torn,
    })
}

/// The segment's header, checked against where the file lies; none if a crash cut it short
/// in the newest segment (the writer syncs a header before anything goes after it).
fn segment_header(bytes: &[u8], place: Place<'_>) -> Result<Option<SegmentHeader>, ReadError> {
    let bad = |error| corrupt(place.file, 0, Damage::Header(error));
    let header = match SegmentHeader::decode(bytes) {
        Ok(header) => header,
        Err(HeaderError::Short) if place.newest => return Ok(None),
        Err(error) => return Err(bad(error)),
    };
    header
        .check_place(place.shard, place.sequence)
        .map_err(bad)?;
    Ok(Some(header))
}

fn corrupt(file: &Path, offset: u64, damage: Damage) -> ReadError {
    ReadError::Corrupt(Corruption {
        file: file.to_owned(),
        offset,
        damage,
    })
}

/// Cuts a torn tail off, durably: the file ends where its good frames end (a segment whose
/// header was torn holds nothing and is removed).
pub fn cut_torn_tail(torn: &TornTail) -> Result<(), ReadError> {
    if torn.offset < SEGMENT_HEADER_BYTES as u64 {
        remove_durably(&torn.file)
    } else {
        truncate_durably(&torn.file, torn.offset)
    }
}

/// The documented recovery from corruption: keep everything before the damage. The damaged
/// segment is cut at the damaged frame (removed, if its header is the damage), and every later
/// segment of the shard is removed. The frames a read before this handed out past the damage
/// are gone: read the shard again.
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
        Damage::Frame { .. } => {
            truncate_durably(file, corruption.offset)?;
            Some((file.clone(), corruption.offset))
        }
        Damage::Header(_) | Damage::Gap { .. } => {
            remove_durably(file)?;
            removed.push(file.clone());
            None
        }
    };
    Ok(Recovered { truncated, removed })
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
    use crate::frame;
    use crate::segment::{segment_file_name, shard_dir};

    const SHARD: u16 = 1;
    const SHARD_COUNT: u16 = 2;

    /// Writes segment `sequence` of shard 1 with one frame per body (kind = its index), and
    /// returns its path and the frames' offsets.
    fn write_segment(dir: &Path, sequence: u64, bodies: &[&[u8]]) -> (PathBuf, Vec<u64>) {
        let header = SegmentHeader {
            shard: SHARD,
            shard_count: SHARD_COUNT,
            sequence,
        };
        let mut bytes = header.encode().to_vec();
        let mut offsets = Vec::new();
        for (kind, body) in bodies.iter().enumerate() {
            offsets.push(bytes.len() as u64);
            frame::encode(&mut bytes, kind as u8, |b| b.extend_from_slice(body));
        }
        let path = dir.join(segment_file_name(sequence));
        fs::write(&path, bytes).unwrap();
        (path, offsets)
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

    fn corruption(result: Result<(ShardRead, Seen), ReadError>) -> Corruption {
        match result {
            Err(ReadError::Corrupt(c)) => c,
            other => panic!("expected corruption, got {other:?}"),
        }
    }

    /// Proves the frames of every segment come back in order, with their files and offsets.
    #[test]
    fn segments_read_back_in_order() {
        let (_data, dir) = new_shard();
        let (_, first) = write_segment(&dir, 4, &[b"a", b"bb"]);
        let (_, second) = write_segment(&dir, 5, &[b"ccc"]);
        fs::write(dir.join("notes.txt"), "not a segment").unwrap();
        let (read, seen) = read_all(&dir).unwrap();
        let name = |s| segment_file_name(s);
        assert_eq!(
            seen,
            [
                (name(4), first[0], 0, b"a".to_vec()),
                (name(4), first[1], 1, b"bb".to_vec()),
                (name(5), second[0], 0, b"ccc".to_vec()),
            ]
        );
        assert_eq!((read.segments, read.frames, read.torn), (2, 3, None));
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

    /// Proves the torn-tail rule at every offset inside the newest segment's last frame: the
    /// read hands out exactly the frames before it and reports the tail, and cutting it leaves
    /// a file that reads clean with the same frames.
    #[test]
    fn a_torn_last_frame_is_cut_at_every_offset() {
        let (_data, dir) = new_shard();
        write_segment(&dir, 0, &[b"an older segment"]);
        let bodies: [&[u8]; 3] = [b"first", b"second", b"the last frame, torn anywhere"];
        let (path, offsets) = write_segment(&dir, 1, &bodies);
        let whole = fs::read(&path).unwrap();
        let last = offsets[2];
        let (_, expected) = read_all(&dir).unwrap();
        let expected = &expected[..3];
        for cut in last + 1..whole.len() as u64 {
            fs::write(&path, &whole[..cut as usize]).unwrap();
            let (read, seen) = read_all(&dir).unwrap();
            assert_eq!(seen, expected, "cut at {cut}");
            let torn = read.torn.expect("a torn tail");
            assert_eq!((&torn.file, torn.offset), (&path, last), "cut at {cut}");
            assert_eq!(torn.tear, Tear::Frame(FrameError::Short));

            cut_torn_tail(&torn).unwrap();
            assert_eq!(fs::metadata(&path).unwrap().len(), last);
            let (read, seen) = read_all(&dir).unwrap();
            assert_eq!((read.torn, seen.as_slice()), (None, expected));
        }
    }

    /// Proves a newest segment whose header a crash cut short is a torn tail that removes it,
    /// and that the same in an older segment is corruption.
    #[test]
    fn a_torn_segment_header() {
        let (_data, dir) = new_shard();
        write_segment(&dir, 0, &[b"kept"]);
        let (path, _) = write_segment(&dir, 1, &[]);
        fs::write(&path, &fs::read(&path).unwrap()[..SEGMENT_HEADER_BYTES - 1]).unwrap();
        let (read, seen) = read_all(&dir).unwrap();
        assert_eq!(seen.len(), 1);
        assert_eq!(read.last.map(|h| h.sequence), Some(0));
        let torn = read.torn.unwrap();
        assert_eq!((torn.offset, torn.tear), (0, Tear::Header));
        cut_torn_tail(&torn).unwrap();
        assert!(!path.exists());

        write_segment(&dir, 1, &[b"newer"]);
        fs::write(dir.join(segment_file_name(0)), b"ISEG").unwrap();
        let c = corruption(read_all(&dir));
        assert_eq!(
            (c.offset, c.damage),
            (0, Damage::Header(HeaderError::Short))
        );
    }

    /// Proves one flipped byte anywhere in a middle frame, header or body, stops the read with
    /// the file and that frame's exact offset, in the newest segment (a good frame follows) and
    /// in an older one, and that the message names both.
    #[test]
    fn a_flipped_byte_in_a_middle_frame_is_corruption_at_its_offset() {
        let (_data, dir) = new_shard();
        let bodies: [&[u8]; 3] = [b"before", b"the middle frame", b"after"];
        let (older, older_offsets) = write_segment(&dir, 0, &bodies);
        let (newest, newest_offsets) = write_segment(&dir, 1, &bodies);
        for (path, offsets, why) in [
            (&older, &older_offsets, NotTorn::NotNewest),
            (
                &newest,
                &newest_offsets,
                NotTorn::GoodFrameFollows {
                    offset: newest_offsets[2] as usize,
                },
            ),
        ] {
            let whole = fs::read(path).unwrap();
            let middle = offsets[1];
            for at in middle..offsets[2] {
                let mut bad = whole.clone();
                bad[at as usize] ^= 0x40;
                fs::write(path, &bad).unwrap();
                let c = corruption(read_all(&dir));
                assert_eq!((&c.file, c.offset), (path, middle), "byte {at}");
                assert!(
                    matches!(c.damage, Damage::Frame { why: w, .. } if w == why),
                    "byte {at}: {:?}",
                    c.damage
                );
                let message = c.to_string();
                assert!(
                    message.contains(&format!("{}, byte offset {middle}:", path.display())),
                    "{message}"
                );
            }
            fs::write(path, &whole).unwrap();
        }
    }

    /// Proves `recover_truncate` keeps exactly what came before the damage: the damaged
    /// segment is cut at the bad frame and later segments go, and the shard then reads clean.
    #[test]
    fn recover_truncate_keeps_everything_before_the_damage() {
        let (_data, dir) = new_shard();
        write_segment(&dir, 0, &[b"zero"]);
        let (damaged, offsets) = write_segment(&dir, 1, &[b"one", b"two", b"three"]);
        let (later, _) = write_segment(&dir, 2, &[b"four"]);
        let mut bytes = fs::read(&damaged).unwrap();
        bytes[offsets[1] as usize + 12] ^= 1;
        fs::write(&damaged, bytes).unwrap();

        let c = corruption(read_all(&dir));
        let recovered = recover_truncate(&c).unwrap();
        assert_eq!(recovered.truncated, Some((damaged.clone(), offsets[1])));
        assert_eq!(recovered.removed, std::slice::from_ref(&later));
        assert!(!later.exists());

        let (read, seen) = read_all(&dir).unwrap();
        let bodies: Vec<&[u8]> = seen.iter().map(|s| s.3.as_slice()).collect();
        assert_eq!(bodies, [&b"zero"[..], b"one"]);
        assert_eq!((read.torn, read.last.map(|h| h.sequence)), (None, Some(1)));
    }

    /// Proves a header that is bad, or that does not belong where it lies, is corruption at
    /// offset 0, and that recovering from it removes that segment and the ones after it.
    #[test]
    fn a_bad_segment_header_is_corruption() {
        let (_data, dir) = new_shard();
        write_segment(&dir, 0, &[b"zero"]);
        let (bad, _) = write_segment(&dir, 1, &[b"one"]);
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
        bytes[..SEGMENT_HEADER_BYTES].copy_from_slice(
            &SegmentHeader {
                shard: 0,
                shard_count: SHARD_COUNT,
                sequence: 1,
            }
            .encode(),
        );
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

    /// Proves a missing segment between two others is found, named by the one after the gap.
    #[test]
    fn a_missing_segment_is_corruption() {
        let (_data, dir) = new_shard();
        write_segment(&dir, 3, &[b"three"]);
        let (after_gap, _) = write_segment(&dir, 5, &[b"five"]);
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
        let (_, offsets) = write_segment(&dir, 0, &[b"ok", b"refused", b"never seen"]);
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
