//! `audit export`: the log streamed as JSONL or CSV, with its hash chain.
//!
//! Records are read one at a time on a blocking thread and sent through a
//! small channel, so memory stays flat however long the log is. A range
//! (time or sequence) is contiguous and verified by the log's chain; a
//! selection by batch, mailbox or event type is a filtered export (see
//! [`ferry_api::audit::Writer`] for how it stays verifiable).
//!
//! Archived batches stay in live exports: the log is append-only and a whole
//! export must verify as one chain; an archive is a verifiable copy of a
//! deleted batch's events, and archiving drops the batch from the views only.

use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;

use bytes::Bytes;
use ferry_api::ApiError;
use ferry_api::audit::{ExportQuery, Format, Writer};
use ferry_events::{Envelope, Event, codec, stream};

use super::{conflict, invalid, not_found, parse_time, store_error};
use crate::app::App;

/// Whether an event names the mailbox `address`.
pub fn names_mailbox(e: &Event, address: &str) -> bool {
    match e {
        Event::MailboxAdded { mailbox, .. } | Event::MailboxUpdated { mailbox, .. } => {
            mailbox.address == address
        }
        Event::MailboxRemoved { address: a, .. } => a == address,
        Event::CutoverRequested { mailboxes, .. } => mailboxes.iter().any(|m| m == address),
        Event::MailboxPassStarted { mailbox, .. }
        | Event::MailboxPassFinished { mailbox, .. }
        | Event::FolderMapped { mailbox, .. }
        | Event::FolderCounted { mailbox, .. }
        | Event::ItemCopyIntent { mailbox, .. }
        | Event::ItemCopied { mailbox, .. }
        | Event::ItemSkipped { mailbox, .. }
        | Event::ItemFailed { mailbox, .. }
        | Event::FlagsSynced { mailbox, .. }
        | Event::Checkpoint { mailbox, .. }
        | Event::UserCutOver { mailbox, .. }
        | Event::UidValidityChanged { mailbox, .. }
        | Event::FolderFailed { mailbox, .. }
        | Event::RoutingAction { mailbox, .. }
        | Event::ItemVanished { mailbox, .. }
        | Event::FolderVanished { mailbox, .. }
        | Event::ItemRemovedAtDestination { mailbox, .. }
        | Event::OutageStarted { mailbox, .. }
        | Event::OutageEnded { mailbox, .. }
        | Event::ItemAdopted { mailbox, .. }
        | Event::FolderCompared { mailbox, .. }
        | Event::ItemDescribed { mailbox, .. }
        | Event::SourceSynced { mailbox, .. }
        | Event::FolderSkipped { mailbox, .. }
        | Event::CopySuperseded { mailbox, .. }
        | Event::DestinationSynced { mailbox, .. }
        | Event::SourceFoldersSynced { mailbox, .. }
        | Event::SupersededRemoved { mailbox, .. } => mailbox == address,
        _ => false,
    }
}

/// Which records an export holds.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    since_us: Option<i64>,
    until_us: Option<i64>,
    from_seq: u64,
    to_seq: Option<u64>,
    batch: Option<String>,
    mailbox: Option<String>,
    types: BTreeSet<String>,
    /// The batch's mailboxes so far in the scan.
    members: HashSet<String>,
}

pub enum Step {
    Keep,
    Skip,
    Stop,
}

impl Selection {
    /// Checks a query against the log: bad times, unknown batches,
    /// mailboxes and event types are refused.
    pub fn parse(app: &App, q: &ExportQuery) -> Result<Selection, ApiError> {
        if let Some(name) = &q.archive {
            let other = q.since.is_some()
                || q.until.is_some()
                || q.from_seq.is_some()
                || q.to_seq.is_some()
                || q.batch.is_some()
                || q.mailbox.is_some()
                || !q.types.is_empty();
            if other {
                return Err(invalid("an archive takes no other selection"));
            }
            return Selection::archived(app, name);
        }
        let since_us = q
            .since
            .as_deref()
            .map(|t| parse_time("--since", t))
            .transpose()?;
        let until_us = q
            .until
            .as_deref()
            .map(|t| parse_time("--until", t))
            .transpose()?;
        if let (Some(a), Some(b)) = (q.from_seq, q.to_seq)
            && a > b
        {
            return Err(invalid(format!("--from-seq {a} is after --to-seq {b}")));
        }
        if let Some(b) = &q.batch
            && app.store.stream_version(&stream::batch(b)) == 0
        {
            return Err(not_found("batch", b));
        }
        let mailbox = q.mailbox.as_ref().map(|m| m.to_lowercase());
        if let Some(m) = &mailbox
            && app.store.stream_version(&stream::mailbox(m)) == 0
            && !app.views.read().unwrap().mailboxes.contains_key(m)
        {
            return Err(not_found("mailbox", m));
        }
        let known = app.views.read().unwrap().stats.events_by_type.clone();
        for t in &q.types {
            if !known.contains_key(t) {
                let list: Vec<&str> = known.keys().map(String::as_str).collect();
                return Err(invalid(format!(
                    "--type {t:?}: no such event in the log (recorded types: {})",
                    list.join(", ")
                )));
            }
        }
        Ok(Selection {
            since_us,
            until_us,
            from_seq: q.from_seq.unwrap_or(1).max(1),
            to_seq: q.to_seq,
            batch: q.batch.clone(),
            mailbox,
            types: q.types.iter().cloned().collect(),
            members: HashSet::new(),
        })
    }

    /// The archive of deleted batch `name`: its events from its creation
    /// to its deletion.
    pub fn archived(app: &App, name: &str) -> Result<Selection, ApiError> {
        let (from, to) = deleted_span(app, name)?;
        Ok(Selection::archive(name, from, to))
    }

    /// A selection of one deleted batch's events, from its creation to its deletion.
    pub fn archive(batch: &str, from_seq: u64, to_seq: u64) -> Selection {
        Selection {
            from_seq,
            to_seq: Some(to_seq),
            batch: Some(batch.to_string()),
            ..Selection::default()
        }
    }

    /// What a filtered export selected; `None` for a contiguous range.
    pub fn filter(&self) -> Option<String> {
        let mut parts = Vec::new();
        if let Some(b) = &self.batch {
            parts.push(format!("batch={b}"));
        }
        if let Some(m) = &self.mailbox {
            parts.push(format!("mailbox={m}"));
        }
        if !self.types.is_empty() {
            let t: Vec<&str> = self.types.iter().map(String::as_str).collect();
            parts.push(format!("type={}", t.join("|")));
        }
        (!parts.is_empty()).then(|| parts.join(" "))
    }

    /// Where the scan starts: a batch's membership is learnt from its
    /// `MailboxAdded` events, which may lie before the range.
    pub fn start(&self) -> u64 {
        if self.batch.is_some() {
            1
        } else {
            self.from_seq
        }
    }

    pub fn step(&mut self, env: &Envelope) -> Step {
        // Time never decreases along the log, so `until` ends the scan.
        if self.to_seq.is_some_and(|t| env.seq > t)
            || self.until_us.is_some_and(|u| env.time_us >= u)
        {
            return Step::Stop;
        }
        let mut keep = env.seq >= self.from_seq && self.since_us.is_none_or(|s| env.time_us >= s);
        if let Some(b) = &self.batch {
            if let Event::MailboxAdded { batch, mailbox } = &env.event
                && batch == b
            {
                self.members.insert(stream::mailbox(&mailbox.address));
            }
            keep &= env.stream == stream::batch(b)
                || env.event.batch() == Some(b.as_str())
                || self.members.contains(&env.stream);
            if let Event::BatchDeleted { batch, .. } = &env.event
                && batch == b
            {
                self.members.clear();
            }
            if let Event::MailboxRemoved { batch, address } = &env.event
                && batch == b
            {
                self.members.remove(&stream::mailbox(address));
            }
        }
        if let Some(m) = &self.mailbox {
            keep &= env.stream == stream::mailbox(m) || names_mailbox(&env.event, m);
        }
        if !self.types.is_empty() {
            keep &= self.types.contains(&env.event_type);
        }
        if keep { Step::Keep } else { Step::Skip }
    }
}

/// Writes the selected records through `sink` in chunks (blocking; run it
/// off the async threads). Stops early when `sink` says false. Returns the
/// number of records written.
pub fn write(
    app: &App,
    mut sel: Selection,
    format: Format,
    mut sink: impl FnMut(Bytes) -> bool,
) -> Result<u64, std::io::Error> {
    let mut w = match sel.filter() {
        Some(f) => Writer::filtered(format, f),
        None => Writer::new(format),
    };
    let mut buf = String::new();
    for raw in app.store.read_raw(sel.start()) {
        let raw = raw.map_err(std::io::Error::other)?;
        let env = codec::decode(&raw.bytes).map_err(std::io::Error::other)?;
        match sel.step(&env) {
            Step::Stop => break,
            Step::Skip => continue,
            Step::Keep => {}
        }
        buf.push_str(&w.record(&env, &raw.bytes));
        if buf.len() >= CHUNK && !sink(Bytes::from(std::mem::take(&mut buf))) {
            return Ok(w.count());
        }
    }
    buf.push_str(&w.finish());
    sink(Bytes::from(buf));
    Ok(w.count())
}

/// Flush to the client after this many bytes.
const CHUNK: usize = 64 << 10;

/// An export under way: its media type and its chunks, as the blocking
/// writer produces them.
pub struct Export {
    pub content_type: &'static str,
    pub chunks: tokio::sync::mpsc::Receiver<Result<Bytes, std::io::Error>>,
}

/// Checks the query, then starts writing the selected records.
pub fn export(app: &Arc<App>, q: ExportQuery) -> Result<Export, ApiError> {
    let sel = Selection::parse(app, &q)?;
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(8);
    let app = app.clone();
    let format = q.format;
    tokio::task::spawn_blocking(move || {
        let res = write(&app, sel, format, |b| tx.blocking_send(Ok(b)).is_ok());
        if let Err(e) = res {
            let _ = tx.blocking_send(Err(e));
        }
    });
    Ok(Export {
        content_type: match format {
            Format::Jsonl => "application/x-ndjson",
            Format::Csv => "text/csv",
        },
        chunks: rx,
    })
}

/// The sequences of a deleted batch's last life: (created, deleted).
/// Refused while the batch exists, or when it never did.
pub fn deleted_span(app: &App, name: &str) -> Result<(u64, u64), ApiError> {
    if app.views.read().unwrap().batches.contains_key(name) {
        return Err(conflict(format!(
            "batch {name} is not deleted; only a deleted batch is archived"
        )));
    }
    let (mut created, mut deleted) = (None, None);
    for env in app.store.scan_stream(&stream::batch(name), 1) {
        let env = env.map_err(store_error)?;
        match env.event {
            Event::BatchCreated { .. } => (created, deleted) = (Some(env.seq), None),
            Event::BatchDeleted { .. } => deleted = Some(env.seq),
            _ => {}
        }
    }
    match (created, deleted) {
        (Some(c), Some(d)) => Ok((c, d)),
        _ => Err(not_found("batch", name)),
    }
}
