//! Audit export lines and their offline verification.
//!
//! Each exported record carries its readable fields, the chain hashes and
//! the exact stored bytes (base64). `verify` decodes the bytes, checks the
//! readable fields say the same, and walks the hash chain; a closing line
//! carries the count and last hash, so a truncated file is caught too.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use ferry_events::codec;
use ferry_events::envelope::{ChainVerifier, Envelope, Hash, hash_bytes};
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
}

/// The closing line of an export.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEnd {
    pub count: u64,
    pub last_hash: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum JsonLine {
    End(AuditEnd),
}

pub const CSV_HEADER: &str =
    "seq,time,stream,stream_version,actor,event_type,event,prev_hash,hash,raw";

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
    }
}

/// Writes exports record by record, then the closing line.
pub struct Writer {
    format: Format,
    count: u64,
    last_hash: String,
    started: bool,
}

impl Writer {
    pub fn new(format: Format) -> Self {
        Writer {
            format,
            count: 0,
            last_hash: String::new(),
            started: false,
        }
    }

    /// The text for one record (with the CSV header before the first).
    pub fn record(&mut self, env: &Envelope, bytes: &[u8]) -> String {
        let l = line(env, bytes);
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
                    out.push_str(CSV_HEADER);
                    out.push('\n');
                }
                out.push_str(&csv_row(&[
                    &l.record.seq.to_string(),
                    &l.record.time,
                    &l.record.stream,
                    &l.record.stream_version.to_string(),
                    &l.record.actor,
                    &l.record.event_type,
                    &l.record.event.to_string(),
                    &l.prev_hash,
                    &l.hash,
                    &l.raw,
                ]));
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
                    out.push_str(CSV_HEADER);
                    out.push('\n');
                }
                out.push_str(&csv_row(&[
                    "end",
                    &end.count.to_string(),
                    "",
                    "",
                    "",
                    "",
                    "",
                    "",
                    &end.last_hash,
                    "",
                ]));
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
    /// `line` is where the closing line should have been.
    #[error("line {line}: the file is truncated: no closing line after {count} records")]
    Truncated { line: usize, count: u64 },
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
}

impl VerifyError {
    /// Exit status of `ferryctl audit verify`: 2 edited, 3 removed or
    /// reordered, 4 truncated, 5 unreadable.
    pub fn exit_code(&self) -> i32 {
        match self {
            VerifyError::Edited { .. } | VerifyError::Chain { .. } => 2,
            VerifyError::Gap { .. } => 3,
            VerifyError::Truncated { .. } | VerifyError::Trailer { .. } => 4,
            VerifyError::Unreadable { .. } | VerifyError::AfterEnd { .. } => 5,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub count: u64,
    pub first_seq: Option<u64>,
    pub last_seq: Option<u64>,
    pub last_hash: String,
}

/// Verifies an export read as text (JSONL or CSV, told apart by the header).
pub fn verify(text: &str) -> Result<Verified, VerifyError> {
    if text.starts_with(CSV_HEADER) {
        verify_csv(text)
    } else {
        verify_jsonl(text)
    }
}

struct Walk {
    chain: Option<ChainVerifier>,
    count: u64,
    first_seq: Option<u64>,
    last_seq: Option<u64>,
    last_hash: String,
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
        // A range export starts mid-chain: trust the first record's link.
        let chain = self
            .chain
            .get_or_insert_with(|| ChainVerifier::resume(env.seq.saturating_sub(1), env.prev_hash));
        chain.check(&env, &bytes).map_err(|b| match b {
            ferry_events::envelope::ChainBreak::Gap { expected, found } => VerifyError::Gap {
                line: n,
                expected,
                found,
            },
            ferry_events::envelope::ChainBreak::Hash { seq } => VerifyError::Chain { line: n, seq },
        })?;
        self.count += 1;
        self.first_seq.get_or_insert(env.seq);
        self.last_seq = Some(env.seq);
        self.last_hash = l.hash.clone();
        Ok(())
    }

    fn end(&mut self, n: usize, end: &AuditEnd) -> Result<(), VerifyError> {
        if self.ended {
            return Err(VerifyError::AfterEnd { line: n });
        }
        if end.count != self.count || end.last_hash != self.last_hash {
            return Err(VerifyError::Trailer {
                line: n,
                claimed: end.count,
                claimed_hash: end.last_hash.clone(),
                count: self.count,
            });
        }
        self.ended = true;
        Ok(())
    }

    fn done(self, text: &str) -> Result<Verified, VerifyError> {
        if !self.ended {
            return Err(VerifyError::Truncated {
                line: text.lines().count() + 1,
                count: self.count,
            });
        }
        Ok(Verified {
            count: self.count,
            first_seq: self.first_seq,
            last_seq: self.last_seq,
            last_hash: self.last_hash,
        })
    }
}

fn verify_jsonl(text: &str) -> Result<Verified, VerifyError> {
    let mut walk = Walk::new();
    for (i, raw) in text.lines().enumerate() {
        let n = i + 1;
        if raw.trim().is_empty() {
            continue;
        }
        if let Ok(JsonLine::End(end)) = serde_json::from_str::<JsonLine>(raw) {
            walk.end(n, &end)?;
            continue;
        }
        let l: AuditLine = serde_json::from_str(raw).map_err(|e| VerifyError::Unreadable {
            line: n,
            reason: e.to_string(),
        })?;
        walk.record(n, &l)?;
    }
    walk.done(text)
}

fn verify_csv(text: &str) -> Result<Verified, VerifyError> {
    let mut walk = Walk::new();
    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .from_reader(text.as_bytes());
    for row in reader.records() {
        let row = row.map_err(|e| VerifyError::Unreadable {
            line: e.position().map_or(0, |p| p.line() as usize),
            reason: e.to_string(),
        })?;
        let n = row.position().map_or(0, |p| p.line() as usize);
        let unreadable = |reason: &str| VerifyError::Unreadable {
            line: n,
            reason: reason.to_string(),
        };
        let row: Vec<String> = row.iter().map(str::to_string).collect();
        if row.len() != 10 {
            return Err(unreadable("wrong number of columns"));
        }
        if row[0] == "end" {
            let count = row[1].parse().map_err(|_| unreadable("bad count"))?;
            walk.end(
                n,
                &AuditEnd {
                    count,
                    last_hash: row[8].clone(),
                },
            )?;
            continue;
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
        };
        walk.record(n, &l)?;
    }
    walk.done(text)
}

/// The hash as hex, for display.
pub fn hex_hash(h: &Hash) -> String {
    hex::encode(h)
}
