//! Readers of the segments: by sequence, and by stream through its runs.

use std::fs::File;
use std::io::{BufRead, BufReader, Seek, SeekFrom};
use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use crate::codec;
use crate::envelope::Envelope;

use super::super::{RawRecord, StoreError};
use super::log::{FRAME, Index, JUMP, MORE, read_frame, segment_path};

/// Walks records in sequence order from a position up to a head fixed at
/// creation, so a reader never sees a group before its `fdatasync`.
pub(super) struct Cursor {
    dir: PathBuf,
    index: Arc<RwLock<Index>>,
    head: u64,
    /// Position of the open segment in the index's list.
    seg: usize,
    file: Option<BufReader<File>>,
    next_seq: u64,
    /// Where in the open segment the next record starts.
    offset: u64,
    pub buf: Vec<u8>,
    done: bool,
}

impl Cursor {
    pub fn new(dir: PathBuf, index: Arc<RwLock<Index>>, head: u64) -> Cursor {
        Cursor {
            dir,
            index,
            head,
            seg: 0,
            file: None,
            next_seq: u64::MAX,
            offset: 0,
            buf: Vec::new(),
            done: false,
        }
    }

    fn path(&self, first: u64) -> String {
        segment_path(&self.dir, first).display().to_string()
    }

    fn fail(&mut self, first: u64, what: &str) -> StoreError {
        self.done = true;
        StoreError::Damaged {
            segment: self.path(first),
            offset: self.offset,
            seq: self.next_seq,
            what: what.into(),
        }
    }

    /// Places the cursor so the next record read is `seq`.
    pub fn seek(&mut self, seq: u64) -> Result<(), StoreError> {
        let seq = seq.max(1);
        if seq > self.head {
            self.done = true;
            return Ok(());
        }
        if self.file.is_some() && self.next_seq <= seq && seq - self.next_seq < JUMP {
            return self.skip_to(seq);
        }
        let (mark, seg) = {
            let idx = self.index.read().unwrap();
            let Some(mark) = idx.mark_before(seq) else {
                self.done = true;
                return Ok(());
            };
            let seg = idx.segments.binary_search(&mark.segment).unwrap_or(0);
            (mark, seg)
        };
        let path = segment_path(&self.dir, mark.segment);
        let mut file = BufReader::with_capacity(
            256 << 10,
            File::open(&path).map_err(|source| StoreError::Io {
                path: path.display().to_string(),
                source,
            })?,
        );
        file.seek(SeekFrom::Start(mark.offset))
            .map_err(|source| StoreError::Io {
                path: path.display().to_string(),
                source,
            })?;
        self.file = Some(file);
        self.seg = seg;
        self.next_seq = mark.seq;
        self.offset = mark.offset;
        self.done = false;
        self.skip_to(seq)
    }

    /// Skips records (their frames only) until `seq` is next.
    fn skip_to(&mut self, seq: u64) -> Result<(), StoreError> {
        while self.next_seq < seq {
            if !self.at_record()? {
                return Ok(());
            }
            let file = self.file.as_mut().expect("open");
            let mut head = [0u8; FRAME as usize];
            let first = self.index.read().unwrap().segments[self.seg];
            if std::io::Read::read_exact(file, &mut head).is_err() {
                return Err(self.fail(first, "a record cut short"));
            }
            let len = u32::from_le_bytes(head[..4].try_into().expect("4")) & !MORE;
            if file.seek_relative(i64::from(len)).is_err() {
                return Err(self.fail(first, "a record cut short"));
            }
            self.next_seq += 1;
            self.offset += FRAME + u64::from(len);
        }
        Ok(())
    }

    /// Makes sure a record follows, moving to the next segment at the end
    /// of one. False when the head is reached.
    fn at_record(&mut self) -> Result<bool, StoreError> {
        if self.done || self.next_seq > self.head {
            return Ok(false);
        }
        loop {
            let file = self.file.as_mut().expect("open");
            let empty = file
                .fill_buf()
                .map(|b| b.is_empty())
                .map_err(|source| StoreError::Io {
                    path: self.dir.display().to_string(),
                    source,
                })?;
            if !empty {
                return Ok(true);
            }
            let next = {
                let idx = self.index.read().unwrap();
                idx.segments.get(self.seg + 1).copied()
            };
            let Some(first) = next else {
                let first = self.index.read().unwrap().segments[self.seg];
                return Err(self.fail(first, "the log ends before its head"));
            };
            let path = segment_path(&self.dir, first);
            let f = File::open(&path).map_err(|source| StoreError::Io {
                path: path.display().to_string(),
                source,
            })?;
            self.file = Some(BufReader::with_capacity(256 << 10, f));
            self.seg += 1;
            self.offset = 0;
        }
    }

    /// The next record's sequence; its bytes are in `self.buf`.
    pub fn next_record(&mut self) -> Option<Result<u64, StoreError>> {
        match self.at_record() {
            Ok(false) => return None,
            Ok(true) => {}
            Err(e) => return Some(Err(e)),
        }
        let file = self.file.as_mut().expect("open");
        if let Err(why) = read_frame(file, u64::MAX, &mut self.buf) {
            let first = self.index.read().unwrap().segments[self.seg];
            return Some(Err(self.fail(first, why)));
        }
        let seq = self.next_seq;
        match codec::peek(&self.buf) {
            Ok(p) if p.seq == seq => {}
            _ => {
                let first = self.index.read().unwrap().segments[self.seg];
                return Some(Err(self.fail(first, "out of sequence")));
            }
        }
        self.next_seq += 1;
        self.offset += FRAME + self.buf.len() as u64;
        Some(Ok(seq))
    }
}

pub(super) struct Envelopes(pub Cursor);

impl Iterator for Envelopes {
    type Item = Result<Envelope, StoreError>;

    fn next(&mut self) -> Option<Self::Item> {
        let seq = match self.0.next_record()? {
            Ok(seq) => seq,
            Err(e) => return Some(Err(e)),
        };
        Some(codec::decode(&self.0.buf).map_err(|source| StoreError::Codec { seq, source }))
    }
}

pub(super) struct Raw(pub Cursor);

impl Iterator for Raw {
    type Item = Result<RawRecord, StoreError>;

    fn next(&mut self) -> Option<Self::Item> {
        let seq = match self.0.next_record()? {
            Ok(seq) => seq,
            Err(e) => return Some(Err(e)),
        };
        Some(Ok(RawRecord {
            seq,
            bytes: self.0.buf.clone(),
        }))
    }
}

/// One stream's events: from run entry to run entry, skipping records of
/// other streams by their head alone, and jumping over long stretches.
pub(super) struct StreamEvents {
    pub cursor: Cursor,
    pub stream: String,
    pub from: u64,
    /// The stream's version when the read began: the last one to return.
    pub last: u64,
    pub runs: Vec<(u64, u64)>,
    pub run: usize,
}

impl Iterator for StreamEvents {
    type Item = Result<Envelope, StoreError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let seq = match self.cursor.next_record()? {
                Ok(seq) => seq,
                Err(e) => return Some(Err(e)),
            };
            let version = match codec::peek(&self.cursor.buf) {
                Ok(p) if p.stream == self.stream => p.stream_version,
                _ => continue,
            };
            if version >= self.last {
                self.cursor.done = true;
            }
            while self.run + 1 < self.runs.len() && self.runs[self.run + 1].0 <= version {
                self.run += 1;
            }
            if version < self.last
                && let Some(&(v, s)) = self.runs.get(self.run + 1)
                && v == version + 1
                && s > seq + JUMP
                && let Err(e) = self.cursor.seek(s)
            {
                return Some(Err(e));
            }
            if version < self.from {
                continue;
            }
            return Some(
                codec::decode(&self.cursor.buf).map_err(|source| StoreError::Codec { seq, source }),
            );
        }
    }
}
