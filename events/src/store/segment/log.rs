//! Segment files and the small index beside them.
//!
//! A segment is `segments/<first seq, 20 digits>.seg`, records back to
//! back, each `[payload length: u32 LE][CRC32C of the payload: u32 LE]
//! [payload]`; the payload is the codec's bytes, which begin with the
//! record's sequence. A group commit is one write and one `fdatasync`; a
//! segment rolls between groups once it holds `segment_bytes`, and the
//! directory is synced when a new one is made.
//!
//! The length's top bit ([`MORE`]) marks every record of a group but its
//! last. A write cut by a crash can leave whole records of a group and
//! not the rest, so recovery cuts back to the start of a group left open:
//! a multi-event append is kept whole or not at all.
//!
//! The index answers "where is seq N" (a mark every [`MARK_EVERY`] records
//! and at each segment's start) and "where is version V of stream S" (a run
//! entry at a stream's first version, every [`RUN_EVERY`] versions, and
//! after a jump of more than [`JUMP`] records). It lives in memory, a few
//! bytes per hundred events, and is saved to sled every [`PERSIST_EVERY`]
//! events with the position it reaches, so an open reads only the records
//! written after that position. The segments are the truth: what sled lost
//! in a crash is read again from them.

use std::collections::{HashMap, HashSet};
use std::fs::{File, OpenOptions};
use std::io::{BufReader, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use crate::codec;
use crate::envelope::{Hash, ZERO_HASH, hash_bytes};

use super::super::StoreError;

/// Bytes of a record's frame before its payload.
pub(super) const FRAME: u64 = 8;
/// Larger lengths are damage, not records.
pub(super) const MAX_RECORD: u32 = 64 << 20;
/// Set in a record's length when more records of its group follow.
pub(super) const MORE: u32 = 1 << 31;
pub(super) const MARK_EVERY: u64 = 1024;
pub(super) const RUN_EVERY: u64 = 256;
/// A stream's next event this many records on gets its own run entry, so a
/// stream read skips the records of other streams in between.
pub(super) const JUMP: u64 = 2048;
const PERSIST_EVERY: u64 = 16_384;
pub const SEGMENT_BYTES: u64 = 256 << 20;

/// Where the record with sequence `seq` starts.
#[derive(Debug, Clone, Copy)]
pub(super) struct Mark {
    pub seq: u64,
    pub segment: u64,
    pub offset: u64,
}

#[derive(Debug, Default, Clone)]
pub(super) struct StreamRuns {
    pub version: u64,
    pub last_seq: u64,
    /// (version, seq), ascending.
    pub runs: Vec<(u64, u64)>,
}

#[derive(Debug, Default)]
pub(super) struct Index {
    /// First sequence of each segment, ascending.
    pub segments: Vec<u64>,
    pub marks: Vec<Mark>,
    pub streams: HashMap<String, StreamRuns>,
}

impl Index {
    /// The mark at or before `seq`.
    pub fn mark_before(&self, seq: u64) -> Option<Mark> {
        let i = self.marks.partition_point(|m| m.seq <= seq);
        i.checked_sub(1).map(|i| self.marks[i])
    }

    fn note(&mut self, seq: u64, stream: &str, version: u64, at: Mark, pending: &mut Pending) {
        if (seq - 1).is_multiple_of(MARK_EVERY) || at.offset == 0 {
            self.marks.push(at);
            pending.marks.push(at);
        }
        let s = match self.streams.get_mut(stream) {
            Some(s) => s,
            None => self.streams.entry(stream.to_string()).or_default(),
        };
        if version == 1 || (version - 1).is_multiple_of(RUN_EVERY) || seq > s.last_seq + JUMP {
            s.runs.push((version, seq));
            pending.runs.push((stream.to_string(), version, seq));
        }
        s.version = version;
        s.last_seq = seq;
        if !pending.dirty.contains(stream) {
            pending.dirty.insert(stream.to_string());
        }
    }
}

/// Index entries made since the last save to sled.
#[derive(Default)]
struct Pending {
    marks: Vec<Mark>,
    runs: Vec<(String, u64, u64)>,
    dirty: HashSet<String>,
    events: u64,
}

/// A record ready for its segment.
pub(super) struct Rec<'a> {
    pub seq: u64,
    pub stream: &'a str,
    pub version: u64,
    pub bytes: &'a [u8],
}

pub(super) fn segment_path(dir: &Path, first_seq: u64) -> PathBuf {
    dir.join(format!("{first_seq:020}.seg"))
}

/// What recovery found at the end of the last segment.
#[derive(Debug, Default, Clone)]
pub struct Recovery {
    /// Bytes of a torn last group cut off the last segment.
    pub truncated_bytes: u64,
    /// Records read from the segments because the saved index ended before them.
    pub reindexed: u64,
}

/// The writer's side of the log: segments, the index and its sled copy.
pub(super) struct Log {
    pub segments_dir: PathBuf,
    pub index: Arc<RwLock<Index>>,
    db: sled::Db,
    db_path: String,
    segment_bytes: u64,
    active: Option<(u64, File)>,
    active_len: u64,
    pending: Pending,
    buf: Vec<u8>,
    pub head: u64,
    pub head_hash: Hash,
    pub last_time_us: i64,
    pub recovery: Recovery,
}

fn io_err(path: &Path) -> impl Fn(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.display().to_string(),
        source,
    }
}

fn be(bytes: &[u8], at: usize) -> u64 {
    u64::from_be_bytes(bytes[at..at + 8].try_into().expect("8 bytes"))
}

impl Log {
    pub fn open(dir: &Path, segment_bytes: u64) -> Result<Log, StoreError> {
        let segments_dir = dir.join("segments");
        std::fs::create_dir_all(&segments_dir).map_err(io_err(&segments_dir))?;
        let db_dir = dir.join("index");
        let db_path = db_dir.display().to_string();
        let sled_err = |source| StoreError::Sled {
            path: db_path.clone(),
            source,
        };
        // The index is small; sled's cache need not be. It is flushed at
        // each save, so sled needs no flusher thread (whose exit, after a
        // close, would hold the directory's lock a while longer).
        let db = open_sled(
            sled::Config::new()
                .path(&db_dir)
                .cache_capacity(16 << 20)
                .flush_every_ms(None),
        )
        .map_err(sled_err)?;

        let mut segments = Vec::new();
        for entry in std::fs::read_dir(&segments_dir).map_err(io_err(&segments_dir))? {
            let entry = entry.map_err(io_err(&segments_dir))?;
            let name = entry.file_name();
            let Some(first) = name
                .to_str()
                .and_then(|n| n.strip_suffix(".seg"))
                .and_then(|n| n.parse::<u64>().ok())
            else {
                continue;
            };
            segments.push(first);
        }
        segments.sort_unstable();

        let mut log = Log {
            segments_dir,
            index: Arc::default(),
            db,
            db_path,
            segment_bytes,
            active: None,
            active_len: 0,
            pending: Pending::default(),
            buf: Vec::new(),
            head: 0,
            head_hash: ZERO_HASH,
            last_time_us: 0,
            recovery: Recovery::default(),
        };
        let saved = log.load_saved(&segments)?;
        log.index.write().unwrap().segments = segments;
        log.recover(saved)?;
        Ok(log)
    }

    fn sled_err(&self) -> impl Fn(sled::Error) -> StoreError + '_ {
        move |source| StoreError::Sled {
            path: self.db_path.clone(),
            source,
        }
    }

    /// The index as last saved, and where it ends: (seq, segment, end offset).
    fn load_saved(&mut self, segments: &[u64]) -> Result<Option<(u64, u64, u64)>, StoreError> {
        let Some(h) = self.db.get(b"h").map_err(self.sled_err())? else {
            return Ok(None);
        };
        if h.len() != 32 + 8 * 4 {
            return Ok(None);
        }
        let (seq, segment, end) = (be(&h, 0), be(&h, 8), be(&h, 16));
        if !segments.contains(&segment) {
            return Err(StoreError::Damaged {
                segment: segment_path(&self.segments_dir, segment)
                    .display()
                    .to_string(),
                offset: end,
                seq,
                what: "the segment the index ends in is missing".into(),
            });
        }
        let mut idx = Index::default();
        for kv in self.db.scan_prefix(b"m") {
            let (k, v) = kv.map_err(self.sled_err())?;
            let m = Mark {
                seq: be(&k, 1),
                segment: be(&v, 0),
                offset: be(&v, 8),
            };
            if m.seq <= seq {
                idx.marks.push(m);
            }
        }
        for kv in self.db.scan_prefix(b"v") {
            let (k, v) = kv.map_err(self.sled_err())?;
            let stream = String::from_utf8_lossy(&k[1..]).into_owned();
            idx.streams.insert(
                stream,
                StreamRuns {
                    version: be(&v, 0),
                    last_seq: be(&v, 8),
                    runs: Vec::new(),
                },
            );
        }
        for kv in self.db.scan_prefix(b"r") {
            let (k, v) = kv.map_err(self.sled_err())?;
            let Some(nul) = k.iter().position(|&b| b == 0) else {
                continue;
            };
            let stream = String::from_utf8_lossy(&k[1..nul]);
            let run = (be(&k, nul + 1), be(&v, 0));
            if run.1 <= seq
                && let Some(s) = idx.streams.get_mut(stream.as_ref())
            {
                s.runs.push(run);
            }
        }
        self.head = seq;
        self.head_hash = h[32..64].try_into().expect("32 bytes");
        self.last_time_us = be(&h, 24) as i64;
        *self.index.write().unwrap() = idx;
        Ok(Some((seq, segment, end)))
    }

    /// Reads every record past the saved index, checking each; cuts a torn
    /// last group off the last segment, refuses damage anywhere else.
    fn recover(&mut self, saved: Option<(u64, u64, u64)>) -> Result<(), StoreError> {
        let segments = self.index.read().unwrap().segments.clone();
        let Some(&last_segment) = segments.last() else {
            return Ok(());
        };
        let (mut seg_i, mut offset) = match saved {
            Some((_, segment, end)) => (segments.binary_search(&segment).expect("checked"), end),
            None => {
                if self.index.read().unwrap().streams.is_empty() && segments[0] != 1 {
                    return Err(self.damaged(
                        segments[0],
                        0,
                        "the log's first segment does not start at sequence 1",
                    ));
                }
                (0, 0)
            }
        };
        let mut pending = Pending::default();
        let mut last: Option<Vec<u8>> = None;
        // Records of a group whose last record is not read yet: noted in
        // the index only once the group is whole.
        let mut open: Vec<(u64, String, u64, Mark)> = Vec::new();
        let mut open_at = 0;
        loop {
            let first = segments[seg_i];
            let path = segment_path(&self.segments_dir, first);
            let file = File::open(&path).map_err(io_err(&path))?;
            let len = file.metadata().map_err(io_err(&path))?.len();
            if len < offset {
                return Err(self.damaged(first, offset, "the segment is shorter than the index"));
            }
            if offset == 0 && self.head + 1 != first && len > 0 {
                return Err(self.damaged(first, 0, "the segment does not follow the one before"));
            }
            let mut r = BufReader::with_capacity(1 << 20, &file);
            std::io::Seek::seek(&mut r, std::io::SeekFrom::Start(offset)).map_err(io_err(&path))?;
            let mut payload = Vec::new();
            let mut torn = None;
            while offset < len {
                let next = self.head + 1 + open.len() as u64;
                let read =
                    read_frame(&mut r, len - offset, &mut payload).and_then(
                        |more| match codec::peek(&payload) {
                            Ok(p) if p.seq == next => Ok(more),
                            Ok(_) => Err("a record out of sequence"),
                            Err(_) => Err("an unreadable record head"),
                        },
                    );
                let more = match read {
                    Ok(more) => more,
                    Err(why) => {
                        torn = Some(why);
                        break;
                    }
                };
                let peek = codec::peek(&payload).expect("checked above");
                if open.is_empty() {
                    open_at = offset;
                }
                let at = Mark {
                    seq: peek.seq,
                    segment: first,
                    offset,
                };
                open.push((peek.seq, peek.stream.to_string(), peek.stream_version, at));
                offset += FRAME + payload.len() as u64;
                if !more {
                    let mut idx = self.index.write().unwrap();
                    for (seq, stream, version, at) in open.drain(..) {
                        idx.note(seq, &stream, version, at, &mut pending);
                        self.head = seq;
                        self.recovery.reindexed += 1;
                    }
                    last = Some(std::mem::take(&mut payload));
                }
            }
            if torn.is_some() || !open.is_empty() {
                let why = torn.unwrap_or("a group of records cut short");
                // The bad bytes start where the torn group does.
                let cut_at = if open.is_empty() { offset } else { open_at };
                let at_tail = first == last_segment && !valid_record_after(&file, offset);
                if !at_tail {
                    // Named by the bad record itself, not its group.
                    let seq = self.head + 1 + open.len() as u64;
                    return Err(self.damaged_at(first, offset, seq, why));
                }
                let cut = len - cut_at;
                tracing::warn!(
                    segment = %path.display(),
                    offset = cut_at,
                    bytes = cut,
                    seq = self.head + 1,
                    reason = why,
                    "event log: a torn last write was cut off (it had not been acknowledged)"
                );
                let f = OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .map_err(io_err(&path))?;
                f.set_len(cut_at).map_err(io_err(&path))?;
                f.sync_all().map_err(io_err(&path))?;
                self.recovery.truncated_bytes += cut;
                open.clear();
            }
            if seg_i + 1 == segments.len() {
                break;
            }
            seg_i += 1;
            offset = 0;
        }
        if let Some(bytes) = last {
            let env = codec::decode(&bytes).map_err(|source| StoreError::Codec {
                seq: self.head,
                source,
            })?;
            self.head_hash = hash_bytes(&bytes);
            self.last_time_us = env.time_us;
        }
        let path = segment_path(&self.segments_dir, last_segment);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(io_err(&path))?;
        self.active_len = file.metadata().map_err(io_err(&path))?.len();
        self.active = Some((last_segment, file));
        self.pending = pending;
        self.pending.events = self.recovery.reindexed;
        if self.recovery.reindexed > 0 {
            self.save_index()?;
        }
        Ok(())
    }

    fn damaged(&self, segment: u64, offset: u64, what: &str) -> StoreError {
        self.damaged_at(segment, offset, self.head + 1, what)
    }

    fn damaged_at(&self, segment: u64, offset: u64, seq: u64, what: &str) -> StoreError {
        StoreError::Damaged {
            segment: segment_path(&self.segments_dir, segment)
                .display()
                .to_string(),
            offset,
            seq,
            what: what.into(),
        }
    }

    /// Writes `recs` (consecutive sequences) as one group: one write, one
    /// `fdatasync`. Only then are they indexed.
    pub fn write_group(&mut self, recs: &[Rec<'_>]) -> Result<(), StoreError> {
        let Some(first) = recs.first() else {
            return Ok(());
        };
        let size: u64 = recs.iter().map(|r| FRAME + r.bytes.len() as u64).sum();
        if self.active.is_none()
            || (self.active_len > 0 && self.active_len + size > self.segment_bytes)
        {
            self.roll(first.seq)?;
        }
        let (segment, file) = self.active.as_ref().expect("an active segment");
        let segment = *segment;
        self.buf.clear();
        for (i, r) in recs.iter().enumerate() {
            let more = if i + 1 < recs.len() { MORE } else { 0 };
            self.buf
                .extend_from_slice(&(r.bytes.len() as u32 | more).to_le_bytes());
            self.buf
                .extend_from_slice(&crc32c::crc32c(r.bytes).to_le_bytes());
            self.buf.extend_from_slice(r.bytes);
        }
        let path = segment_path(&self.segments_dir, segment);
        file.write_all_at(&self.buf, self.active_len)
            .and_then(|()| file.sync_data())
            .map_err(io_err(&path))?;
        // Keep the buffer's memory bounded by what one group needs.
        if self.buf.capacity() > 8 << 20 {
            self.buf = Vec::new();
        }
        {
            let mut idx = self.index.write().unwrap();
            let mut offset = self.active_len;
            for r in recs {
                let at = Mark {
                    seq: r.seq,
                    segment,
                    offset,
                };
                idx.note(r.seq, r.stream, r.version, at, &mut self.pending);
                offset += FRAME + r.bytes.len() as u64;
            }
        }
        self.active_len += size;
        let last = recs.last().expect("not empty");
        self.head = last.seq;
        self.head_hash = hash_bytes(last.bytes);
        self.pending.events += recs.len() as u64;
        if self.pending.events >= PERSIST_EVERY
            && let Err(e) = self.save_index()
        {
            // The segments hold everything; the next open reads more of them.
            tracing::warn!(error = %e, "event log index not saved");
        }
        Ok(())
    }

    fn roll(&mut self, first_seq: u64) -> Result<(), StoreError> {
        let path = segment_path(&self.segments_dir, first_seq);
        if let Some((seg, _)) = &self.active
            && *seg == first_seq
        {
            return Ok(());
        }
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(io_err(&path))?;
        File::open(&self.segments_dir)
            .and_then(|d| d.sync_all())
            .map_err(io_err(&self.segments_dir))?;
        self.index.write().unwrap().segments.push(first_seq);
        self.active = Some((first_seq, file));
        self.active_len = 0;
        Ok(())
    }

    /// Saves the index entries made since the last save, and where they end.
    pub fn save_index(&mut self) -> Result<(), StoreError> {
        let Some((segment, _)) = &self.active else {
            return Ok(());
        };
        let mut batch = sled::Batch::default();
        for m in self.pending.marks.drain(..) {
            let mut k = [0u8; 9];
            k[0] = b'm';
            k[1..].copy_from_slice(&m.seq.to_be_bytes());
            let mut v = [0u8; 16];
            v[..8].copy_from_slice(&m.segment.to_be_bytes());
            v[8..].copy_from_slice(&m.offset.to_be_bytes());
            batch.insert(&k, &v);
        }
        for (stream, version, seq) in self.pending.runs.drain(..) {
            let mut k = Vec::with_capacity(stream.len() + 10);
            k.push(b'r');
            k.extend_from_slice(stream.as_bytes());
            k.push(0);
            k.extend_from_slice(&version.to_be_bytes());
            batch.insert(k, &seq.to_be_bytes());
        }
        {
            let idx = self.index.read().unwrap();
            for stream in self.pending.dirty.drain() {
                let s = &idx.streams[&stream];
                let mut k = Vec::with_capacity(stream.len() + 1);
                k.push(b'v');
                k.extend_from_slice(stream.as_bytes());
                let mut v = [0u8; 16];
                v[..8].copy_from_slice(&s.version.to_be_bytes());
                v[8..].copy_from_slice(&s.last_seq.to_be_bytes());
                batch.insert(k, &v);
            }
        }
        let mut h = [0u8; 64];
        h[..8].copy_from_slice(&self.head.to_be_bytes());
        h[8..16].copy_from_slice(&segment.to_be_bytes());
        h[16..24].copy_from_slice(&self.active_len.to_be_bytes());
        h[24..32].copy_from_slice(&(self.last_time_us as u64).to_be_bytes());
        h[32..].copy_from_slice(&self.head_hash);
        batch.insert(b"h", &h[..]);
        self.pending.events = 0;
        self.pending.dirty.shrink_to(64);
        self.db.apply_batch(batch).map_err(self.sled_err())?;
        self.db.flush().map(|_| ()).map_err(self.sled_err())
    }

    /// Saves the index (at close).
    pub fn close(&mut self) {
        if let Err(e) = self.save_index() {
            tracing::warn!(error = %e, "event log index not saved at close");
        }
    }

    pub fn set_last_time(&mut self, time_us: i64) {
        self.last_time_us = time_us;
    }
}

/// Opens sled, waiting a little for its lock: a process that just closed
/// or died may hold it a moment longer (sled's own threads end after the
/// last handle is dropped).
pub(super) fn open_sled(config: sled::Config) -> sled::Result<sled::Db> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        match config.open() {
            Err(sled::Error::Io(e))
                if e.to_string().contains("could not acquire lock")
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            other => return other,
        }
    }
}

/// Reads one frame whose payload goes into `payload`, and whether more
/// records of its group follow; says what is wrong when the bytes are not
/// a whole, intact record. `left` bytes remain.
pub(super) fn read_frame(
    r: &mut impl Read,
    left: u64,
    payload: &mut Vec<u8>,
) -> Result<bool, &'static str> {
    if left < FRAME {
        return Err("a record cut short in its frame");
    }
    let mut head = [0u8; FRAME as usize];
    r.read_exact(&mut head).map_err(|_| "unreadable frame")?;
    let len = u32::from_le_bytes(head[..4].try_into().expect("4"));
    let (more, len) = (len & MORE != 0, len & !MORE);
    let crc = u32::from_le_bytes(head[4..].try_into().expect("4"));
    if len > MAX_RECORD {
        return Err("a record length beyond any record");
    }
    if u64::from(len) > left - FRAME {
        return Err("a record cut short");
    }
    payload.resize(len as usize, 0);
    r.read_exact(payload).map_err(|_| "unreadable record")?;
    if crc32c::crc32c(payload) != crc {
        return Err("a record whose checksum does not match");
    }
    Ok(more)
}

/// Whether an intact record starts anywhere after `offset`: if one does,
/// the bad bytes at `offset` are damage, not a torn last write.
fn valid_record_after(file: &File, offset: u64) -> bool {
    let mut rest = Vec::new();
    let mut r = BufReader::new(file);
    if std::io::Seek::seek(&mut r, std::io::SeekFrom::Start(offset + 1)).is_err()
        || r.read_to_end(&mut rest).is_err()
    {
        return false;
    }
    let n = rest.len();
    for p in 0..n.saturating_sub(FRAME as usize) {
        let l = (u32::from_le_bytes(rest[p..p + 4].try_into().expect("4")) & !MORE) as usize;
        let end = p + FRAME as usize + l;
        if l < 3 || end > n || rest[p + FRAME as usize] != codec::FORMAT_BINCODE_V1 {
            continue;
        }
        let crc = u32::from_le_bytes(rest[p + 4..p + 8].try_into().expect("4"));
        if crc32c::crc32c(&rest[p + FRAME as usize..end]) == crc {
            return true;
        }
    }
    false
}
