//! Offline verification of an audit export (`ferryctl audit verify`).
//!
//! Decodes each record's stored bytes, checks its readable fields say the
//! same, and walks the hash chain (or, for a filtered export, the file's own
//! links); the closing line's count and last hash catch a truncated file.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use ferry_api::audit::{
    AuditEnd, AuditLine, CSV_HEADER, CSV_HEADER_FILTERED, EventRecord, JsonLine, record,
};
use ferry_events::codec;
use ferry_events::envelope::{ChainBreak, ChainVerifier, Envelope, hash_bytes};

/// Why a file failed verification; `line` is 1-based in the file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("line {line}: unreadable record: {reason}")]
    Unreadable { line: usize, reason: String },
    #[error("line {line} (seq {seq}): record was edited: {reason}")]
    Edited {
        line: usize,
        seq: u64,
        reason: String,
    },
    #[error("line {line}: expected seq {expected}, found {found} (a record was removed or moved)")]
    Gap {
        line: usize,
        expected: u64,
        found: u64,
    },
    #[error("line {line} (seq {seq}): does not chain to the record before it")]
    Chain { line: usize, seq: u64 },
    #[error(
        "line {line} (seq {seq}): does not follow the record before it in this export (a record was removed or moved)"
    )]
    Unlinked { line: usize, seq: u64 },
    /// `line` is where the closing line should have been.
    #[error("line {line}: the file is truncated: no closing line after {count} records")]
    Truncated { line: usize, count: u64 },
    #[error(
        "line {line}: the file is truncated: its last record is cut short after {count} whole records"
    )]
    CutShort { line: usize, count: u64 },
    #[error(
        "line {line}: the closing line says {claimed} records ending in {claimed_hash}, the file has {count}"
    )]
    Trailer {
        line: usize,
        claimed: u64,
        claimed_hash: String,
        count: u64,
    },
    #[error("line {line}: data after the closing line")]
    AfterEnd { line: usize },
    #[error("reading the file: {0}")]
    Io(String),
}

impl VerifyError {
    /// Exit status of `ferryctl audit verify`: 2 edited, 3 removed or
    /// reordered, 4 truncated, 5 unreadable.
    pub fn exit_code(&self) -> i32 {
        match self {
            VerifyError::Edited { .. } | VerifyError::Chain { .. } => 2,
            VerifyError::Gap { .. } | VerifyError::Unlinked { .. } => 3,
            VerifyError::Truncated { .. }
            | VerifyError::CutShort { .. }
            | VerifyError::Trailer { .. } => 4,
            VerifyError::Unreadable { .. } | VerifyError::AfterEnd { .. } | VerifyError::Io(_) => 5,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub count: u64,
    pub first_seq: Option<u64>,
    pub last_seq: Option<u64>,
    pub last_hash: String,
    /// The selection of a filtered export.
    pub filter: Option<String>,
}

/// Verifies an export held in memory (JSONL or CSV, told apart by the header).
pub fn verify(text: &str) -> Result<Verified, VerifyError> {
    verify_reader(std::io::BufReader::new(text.as_bytes()))
}

/// Verifies an export read line by line: memory stays flat for any size.
pub fn verify_reader<R: std::io::BufRead>(mut r: R) -> Result<Verified, VerifyError> {
    let head = r.fill_buf().map_err(|e| VerifyError::Io(e.to_string()))?;
    if head.starts_with(CSV_HEADER.as_bytes()) {
        verify_csv(r)
    } else {
        verify_jsonl(r)
    }
}

struct Walk {
    chain: Option<ChainVerifier>,
    count: u64,
    first_seq: Option<u64>,
    last_seq: Option<u64>,
    last_hash: String,
    /// Whether the records carry `prev_in_export` (a filtered export).
    filtered: Option<bool>,
    filter: Option<String>,
    ended: bool,
}

impl Walk {
    fn new() -> Self {
        Walk {
            chain: None,
            count: 0,
            first_seq: None,
            last_seq: None,
            last_hash: String::new(),
            filtered: None,
            filter: None,
            ended: false,
        }
    }

    fn record(&mut self, n: usize, l: &AuditLine) -> Result<(), VerifyError> {
        if self.ended {
            return Err(VerifyError::AfterEnd { line: n });
        }
        let edited = |reason: &str| VerifyError::Edited {
            line: n,
            seq: l.record.seq,
            reason: reason.to_string(),
        };
        let bytes = B64
            .decode(&l.raw)
            .map_err(|_| edited("raw bytes are not base64"))?;
        let env = codec::decode(&bytes).map_err(|e| edited(&format!("raw bytes: {e}")))?;
        if record(&env) != l.record {
            return Err(edited("its fields differ from its recorded bytes"));
        }
        if hex::encode(hash_bytes(&bytes)) != l.hash || hex::encode(env.prev_hash) != l.prev_hash {
            return Err(edited("its hash does not match its bytes"));
        }
        let filtered = *self.filtered.get_or_insert(l.prev_in_export.is_some());
        if filtered != l.prev_in_export.is_some() {
            return Err(edited("filtered and whole-range records are mixed"));
        }
        if filtered {
            self.link(n, &env, &bytes, l)?;
        } else {
            // A range export starts mid-chain: trust the first record's link.
            let chain = self.chain.get_or_insert_with(|| {
                ChainVerifier::resume(env.seq.saturating_sub(1), env.prev_hash)
            });
            chain.check(&env, &bytes).map_err(|b| match b {
                ChainBreak::Gap { expected, found } => VerifyError::Gap {
                    line: n,
                    expected,
                    found,
                },
                ChainBreak::Hash { seq } => VerifyError::Chain { line: n, seq },
            })?;
        }
        self.count += 1;
        self.first_seq.get_or_insert(env.seq);
        self.last_seq = Some(env.seq);
        self.last_hash = l.hash.clone();
        Ok(())
    }

    /// The checks of a filtered export's record (see [`ferry_api::audit::Writer`]).
    fn link(
        &mut self,
        n: usize,
        env: &Envelope,
        bytes: &[u8],
        l: &AuditLine,
    ) -> Result<(), VerifyError> {
        let unlinked = VerifyError::Unlinked {
            line: n,
            seq: env.seq,
        };
        if self.last_seq.is_some_and(|s| env.seq <= s) {
            return Err(unlinked);
        }
        if l.prev_in_export.as_deref() != Some(self.last_hash.as_str()) {
            return Err(unlinked);
        }
        if let Some(last) = self.last_seq.filter(|s| s + 1 == env.seq) {
            let prev = hex::decode(&self.last_hash).unwrap_or_default();
            let mut chain =
                ChainVerifier::resume(last, prev.try_into().unwrap_or(ferry_events::ZERO_HASH));
            chain.check(env, bytes).map_err(|_| VerifyError::Chain {
                line: n,
                seq: env.seq,
            })?;
        }
        Ok(())
    }

    fn end(&mut self, n: usize, end: &AuditEnd) -> Result<(), VerifyError> {
        if self.ended {
            return Err(VerifyError::AfterEnd { line: n });
        }
        let filtered = self.filtered.unwrap_or(end.filter.is_some());
        if end.count != self.count
            || end.last_hash != self.last_hash
            || filtered != end.filter.is_some()
        {
            return Err(VerifyError::Trailer {
                line: n,
                claimed: end.count,
                claimed_hash: end.last_hash.clone(),
                count: self.count,
            });
        }
        self.filter = end.filter.clone();
        self.ended = true;
        Ok(())
    }

    fn done(self, lines: usize) -> Result<Verified, VerifyError> {
        if !self.ended {
            return Err(VerifyError::Truncated {
                line: lines + 1,
                count: self.count,
            });
        }
        Ok(Verified {
            count: self.count,
            first_seq: self.first_seq,
            last_seq: self.last_seq,
            last_hash: self.last_hash,
            filter: self.filter,
        })
    }
}

/// A bad record on the file's last line, with no closing line after it,
/// is a file cut short rather than an edit.
fn cut_short(e: VerifyError, last: bool, count: u64) -> VerifyError {
    match e {
        VerifyError::Unreadable { line, .. } | VerifyError::Edited { line, .. } if last => {
            VerifyError::CutShort { line, count }
        }
        other => other,
    }
}

fn verify_jsonl<R: std::io::BufRead>(r: R) -> Result<Verified, VerifyError> {
    let mut walk = Walk::new();
    let mut lines = r.lines().enumerate().peekable();
    let mut total = 0;
    while let Some((i, raw)) = lines.next() {
        let n = i + 1;
        total = n;
        let raw = raw.map_err(|e| VerifyError::Unreadable {
            line: n,
            reason: e.to_string(),
        })?;
        if raw.trim().is_empty() {
            continue;
        }
        if let Ok(JsonLine::End(end)) = serde_json::from_str::<JsonLine>(&raw) {
            walk.end(n, &end)?;
            continue;
        }
        let res = serde_json::from_str::<AuditLine>(&raw)
            .map_err(|e| VerifyError::Unreadable {
                line: n,
                reason: e.to_string(),
            })
            .and_then(|l| walk.record(n, &l));
        if let Err(e) = res {
            let last = lines.peek().is_none() && !walk.ended;
            return Err(cut_short(e, last, walk.count));
        }
    }
    walk.done(total)
}

fn verify_csv<R: std::io::BufRead>(r: R) -> Result<Verified, VerifyError> {
    let mut walk = Walk::new();
    let mut reader = csv::ReaderBuilder::new().flexible(true).from_reader(r);
    let columns = match reader.headers() {
        Ok(h) if h.iter().eq(CSV_HEADER_FILTERED.split(',')) => 11,
        Ok(h) if h.iter().eq(CSV_HEADER.split(',')) => 10,
        _ => {
            return Err(VerifyError::Unreadable {
                line: 1,
                reason: "not an export header".into(),
            });
        }
    };
    let mut records = reader.records().peekable();
    let mut total = 1;
    while let Some(row) = records.next() {
        let last = records.peek().is_none();
        let res = csv_record(&mut walk, row, columns, &mut total);
        if let Err(e) = res {
            return Err(cut_short(e, last && !walk.ended, walk.count));
        }
    }
    walk.done(total)
}

fn csv_record(
    walk: &mut Walk,
    row: Result<csv::StringRecord, csv::Error>,
    columns: usize,
    total: &mut usize,
) -> Result<(), VerifyError> {
    let row = row.map_err(|e| VerifyError::Unreadable {
        line: e.position().map_or(0, |p| p.line() as usize),
        reason: e.to_string(),
    })?;
    let n = row.position().map_or(0, |p| p.line() as usize);
    *total = n;
    let unreadable = |reason: &str| VerifyError::Unreadable {
        line: n,
        reason: reason.to_string(),
    };
    let row: Vec<String> = row.iter().map(str::to_string).collect();
    if row.len() != columns {
        return Err(unreadable("wrong number of columns"));
    }
    if row[0] == "end" {
        let count = row[1].parse().map_err(|_| unreadable("bad count"))?;
        return walk.end(
            n,
            &AuditEnd {
                count,
                last_hash: row[8].clone(),
                filter: (columns == 11).then(|| row[2].clone()),
            },
        );
    }
    let l = AuditLine {
        record: EventRecord {
            seq: row[0].parse().map_err(|_| unreadable("bad seq"))?,
            time: row[1].clone(),
            stream: row[2].clone(),
            stream_version: row[3].parse().map_err(|_| unreadable("bad version"))?,
            actor: row[4].clone(),
            event_type: row[5].clone(),
            event: serde_json::from_str(&row[6]).map_err(|_| unreadable("bad event"))?,
        },
        prev_hash: row[7].clone(),
        hash: row[8].clone(),
        raw: row[9].clone(),
        prev_in_export: row.get(10).cloned(),
    };
    walk.record(n, &l)
}
