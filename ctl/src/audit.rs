//! Audit export lines and their offline verification.
//!
//! Each exported record carries its readable fields, the chain hashes and
//! the exact stored bytes (base64). `verify` decodes the bytes, checks the
//! readable fields say the same, and walks the hash chain; a closing line
//! carries the count and last hash, so a truncated file is caught too.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use ferry_events::codec;
use ferry_events::envelope::{ChainBreak, ChainVerifier, Envelope, Hash, hash_bytes};
use serde::{Deserialize, Serialize};

use crate::wire::EventRecord;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Jsonl,
    Csv,
}

/// One exported record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditLine {
    #[serde(flatten)]
    pub record: EventRecord,
    pub prev_hash: String,
    pub hash: String,
    /// The stored bytes, base64: what the hash covers.
    pub raw: String,
    /// Filtered exports only: the `hash` of the record before this one in
    /// the file ("" for the first), so a removed or moved line is named.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prev_in_export: Option<String>,
}

/// The closing line of an export.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEnd {
    pub count: u64,
    pub last_hash: String,
    /// What a filtered export selected (absent for a contiguous range).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum JsonLine {
    End(AuditEnd),
}

pub const CSV_HEADER: &str =
    "seq,time,stream,stream_version,actor,event_type,event,prev_hash,hash,raw";
/// The header of a filtered CSV export: one more column.
pub const CSV_HEADER_FILTERED: &str =
    "seq,time,stream,stream_version,actor,event_type,event,prev_hash,hash,raw,prev_in_export";

/// The API's view of an envelope.
pub fn record(env: &Envelope) -> EventRecord {
    EventRecord {
        seq: env.seq,
        time: env
            .time()
            .to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        stream: env.stream.clone(),
        stream_version: env.stream_version,
        actor: env.actor.to_string(),
        event_type: env.event_type.clone(),
        event: serde_json::to_value(&env.event).expect("events serialize"),
    }
}

/// Builds the export line of one stored record.
pub fn line(env: &Envelope, bytes: &[u8]) -> AuditLine {
    AuditLine {
        record: record(env),
        prev_hash: hex::encode(env.prev_hash),
        hash: hex::encode(hash_bytes(bytes)),
        raw: B64.encode(bytes),
        prev_in_export: None,
    }
}

/// Writes exports record by record, then the closing line.
///
/// A contiguous export (every record of a sequence or time range) is
/// checked by the log's own hash chain. A filtered export (by batch,
/// mailbox or event type) leaves holes in that chain, so each of its
/// records also names the hash of the record before it in the file
/// (`prev_in_export`) and the closing line says what was selected; `verify`
/// then checks every record against its own stored bytes, that sequences
/// increase, the log chain wherever two records are neighbours in the log,
/// and the file's own links. That proves each record is genuine and that
/// none was removed, moved or edited after the export; whether the filter
/// picked every matching record is proven against the live log, by
/// exporting again.
pub struct Writer {
    format: Format,
    filter: Option<String>,
    count: u64,
    last_hash: String,
    started: bool,
}

impl Writer {
    pub fn new(format: Format) -> Self {
        Writer {
            format,
            filter: None,
            count: 0,
            last_hash: String::new(),
            started: false,
        }
    }

    /// A writer for a filtered export; `filter` describes the selection.
    pub fn filtered(format: Format, filter: String) -> Self {
        Writer {
            filter: Some(filter),
            ..Writer::new(format)
        }
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    fn header(&self) -> &'static str {
        if self.filter.is_some() {
            CSV_HEADER_FILTERED
        } else {
            CSV_HEADER
        }
    }

    /// The text for one record (with the CSV header before the first).
    pub fn record(&mut self, env: &Envelope, bytes: &[u8]) -> String {
        let mut l = line(env, bytes);
        if self.filter.is_some() {
            l.prev_in_export = Some(self.last_hash.clone());
        }
        self.count += 1;
        self.last_hash = l.hash.clone();
        let mut out = String::new();
        match self.format {
            Format::Jsonl => {
                out.push_str(&serde_json::to_string(&l).expect("lines serialize"));
                out.push('\n');
            }
            Format::Csv => {
                if !self.started {
                    out.push_str(self.header());
                    out.push('\n');
                }
                let seq = l.record.seq.to_string();
                let version = l.record.stream_version.to_string();
                let event = l.record.event.to_string();
                let mut fields = vec![
                    seq.as_str(),
                    &l.record.time,
                    &l.record.stream,
                    &version,
                    &l.record.actor,
                    &l.record.event_type,
                    &event,
                    &l.prev_hash,
                    &l.hash,
                    &l.raw,
                ];
                if let Some(p) = &l.prev_in_export {
                    fields.push(p);
                }
                out.push_str(&csv_row(&fields));
            }
        }
        self.started = true;
        out
    }

    /// The closing line (with the CSV header when nothing was written).
    pub fn finish(&mut self) -> String {
        let end = AuditEnd {
            count: self.count,
            last_hash: self.last_hash.clone(),
            filter: self.filter.clone(),
        };
        match self.format {
            Format::Jsonl => {
                let mut s = serde_json::to_string(&JsonLine::End(end)).expect("serializes");
                s.push('\n');
                s
            }
            Format::Csv => {
                let mut out = String::new();
                if !self.started {
                    out.push_str(self.header());
                    out.push('\n');
                }
                let count = end.count.to_string();
                let filter = end.filter.clone().unwrap_or_default();
                let mut fields = vec![
                    "end",
                    &count,
                    &filter,
                    "",
                    "",
                    "",
                    "",
                    "",
                    &end.last_hash,
                    "",
                ];
                if self.filter.is_some() {
                    fields.push("");
                }
                out.push_str(&csv_row(&fields));
                out
            }
        }
    }
}

fn csv_row(fields: &[&str]) -> String {
    let mut w = csv::WriterBuilder::new()
        .terminator(csv::Terminator::Any(b'\n'))
        .from_writer(Vec::new());
    w.write_record(fields).expect("writing to memory");
    String::from_utf8(w.into_inner().expect("flushing to memory")).expect("fields are UTF-8")
}

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

    /// The checks of a filtered export's record (see [`Writer`]).
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

/// The hash as hex, for display.
pub fn hex_hash(h: &Hash) -> String {
    hex::encode(h)
}
