//! Audit exports: what `/v1/export` is asked for, and the record format
//! and writer ferryd produces it with.
//!
//! Each exported record carries its readable fields, the chain hashes and
//! the exact stored bytes (base64); a closing line carries the count and
//! last hash, so a truncated file is caught too. ferryctl's `audit verify`
//! checks a file against this format offline.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use ferry_events::envelope::{Envelope, Hash, hash_bytes};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Jsonl,
    Csv,
}

/// The body of `POST /v1/export`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportQuery {
    pub format: Format,
    /// RFC 3339 bounds on the event time: since ≤ time < until.
    pub since: Option<String>,
    pub until: Option<String>,
    /// Sequence bounds, both inclusive.
    #[serde(default)]
    pub from_seq: Option<u64>,
    #[serde(default)]
    pub to_seq: Option<u64>,
    /// Events of this batch: its stream, events naming it, and the streams
    /// of its mailboxes while they belong to it.
    #[serde(default)]
    pub batch: Option<String>,
    /// Events of this mailbox: its stream and events naming it.
    #[serde(default)]
    pub mailbox: Option<String>,
    /// Only these event types (any of them).
    #[serde(default)]
    pub types: Vec<String>,
    /// A deleted batch's events from its creation to its deletion, for
    /// `batch archive` (no other selection may be given with it).
    #[serde(default)]
    pub archive: Option<String>,
}

impl ExportQuery {
    /// The whole log, nothing selected.
    pub fn new(format: Format) -> Self {
        ExportQuery {
            format,
            since: None,
            until: None,
            from_seq: None,
            to_seq: None,
            batch: None,
            mailbox: None,
            types: Vec::new(),
            archive: None,
        }
    }
}

/// One event as the API shows it: in the event list, a report's
/// milestones and every exported record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventRecord {
    pub seq: u64,
    pub time: String,
    pub stream: String,
    pub stream_version: u64,
    pub actor: String,
    pub event_type: String,
    pub event: serde_json::Value,
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

/// A JSONL export's non-record line: `{"end": {...}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JsonLine {
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
        time: ferry_events::time::rfc3339_micros(env.time_us),
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
/// (`prev_in_export`) and the closing line says what was selected;
/// `ferryctl audit verify` then checks every record against its own stored
/// bytes, that sequences increase, the log chain wherever two records are
/// neighbours in the log, and the file's own links. That proves each record is genuine and that
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

/// The hash as hex, for display.
pub fn hex_hash(h: &Hash) -> String {
    hex::encode(h)
}
