//! Sources that name items by opaque keys and tell their changes from a
//! cursor per folder (EWS, and Graph as a source), under the engine's item
//! names.
//!
//! The engine names an item `(folder, uidvalidity, uid)` in every event it
//! writes. For a keyed source the log gives those names itself: before a
//! folder's job, [`sync`] reads the folder's changes since its recorded
//! cursor and records them as `SourceSynced`, each new key under the next
//! number of the folder (its ordinal), in the folder's generation; the
//! `sources` view folds these into the folder's table. [`KeyedSession`]
//! then answers the engine's source calls from that table, and fetches by
//! key. So intents, outcomes, in-doubt settling, flags and deletions work
//! as for IMAP, and the log holds the real ids beside the numbers.
//!
//! A refused cursor starts the folder's next generation from no cursor,
//! with new numbers: the engine sees a new UIDVALIDITY and pairs what is
//! already copied by content, copying nothing twice.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, FixedOffset};
use ferry_connectors::source::{
    Change, ChangeSource, Cursor, FolderClass, FolderId, FolderIds, SourceFolder, SourceKey,
    SourceMeta,
};
use ferry_connectors::{
    AppendUid, ConnectorError, ErrorClass, Flag, Folder, FolderName, FolderStatus, Headline, Item,
    ItemMeta, MailSession, Result,
};
use ferry_events::{Event, ItemKey, SourceFolderId, SourceItem};
use ferry_projections::SourceTable;

use super::mailbox::{Work, WorkErr};
use crate::app::App;

/// Changes asked per `SyncFolderItems` (its maximum is 512).
pub const SYNC_PAGE: usize = 512;

/// What the engine and the session of one keyed source share.
#[derive(Clone)]
pub struct Keyed {
    source: Arc<tokio::sync::Mutex<Box<dyn ChangeSource>>>,
    /// Folder → its table as last recorded, for the session to answer from.
    tables: Arc<Mutex<HashMap<String, SourceTable>>>,
    /// Every folder of the last listing, with its class.
    folders: Arc<Mutex<Vec<SourceFolder>>>,
    /// The classes besides mail the destination holds; their folders are
    /// copied as full-fidelity exports when the source can export.
    accepted: Arc<Mutex<Vec<FolderClass>>>,
    /// Whether the source serves full-fidelity exports.
    exports: Arc<Mutex<bool>>,
    /// Whether mail travels as the source's streams: it exports mail and
    /// the destination imports it.
    mail_streams: Arc<Mutex<(bool, bool)>>,
}

impl Keyed {
    pub fn new(source: Box<dyn ChangeSource>) -> Keyed {
        Keyed {
            source: Arc::new(tokio::sync::Mutex::new(source)),
            tables: Arc::default(),
            folders: Arc::default(),
            accepted: Arc::default(),
            exports: Arc::default(),
            mail_streams: Arc::default(),
        }
    }

    /// What the destination holds: its classes besides mail (see
    /// `MailSession::item_classes`) and whether it imports mail as streams
    /// (`MailSession::imports_mail`), before the source's folders are listed.
    pub fn accept(&self, dst: &dyn MailSession) {
        *self.accepted.lock().unwrap() = dst.item_classes().to_vec();
        self.mail_streams.lock().unwrap().1 = dst.imports_mail();
    }

    /// Whether mail folders are copied as the source's full-fidelity
    /// streams rather than as MIME.
    pub fn mail_streamed(&self) -> bool {
        *self.mail_streams.lock().unwrap() == (true, true)
    }

    /// What the source serves, from a session that has just listed it.
    fn serves(&self, source: &dyn ChangeSource) {
        *self.exports.lock().unwrap() = source.exports();
        self.mail_streams.lock().unwrap().0 = source.exports_mail();
    }

    /// Whether a folder of `class` is copied.
    fn copied(&self, class: FolderClass) -> bool {
        class == FolderClass::Mail
            || (*self.exports.lock().unwrap() && self.accepted.lock().unwrap().contains(&class))
    }

    /// The class of a folder of the last listing.
    pub fn class_of(&self, folder: &str) -> Option<FolderClass> {
        self.folders
            .lock()
            .unwrap()
            .iter()
            .find(|f| f.folder.name.raw == folder)
            .map(|f| f.class)
    }

    /// The class of a folder, the tree listed first if this session has
    /// not listed it (a spare lane's); `None` when it cannot be asked.
    pub async fn class_of_listed(&self, folder: &str) -> Option<FolderClass> {
        if self.folders.lock().unwrap().is_empty() {
            let mut source = self.source.lock().await;
            if self.folders.lock().unwrap().is_empty() {
                let all = source.folders().await.ok()?;
                self.serves(&**source);
                *self.folders.lock().unwrap() = all;
            }
        }
        self.class_of(folder)
    }

    /// The folders of the last listing that are not copied, each with why.
    pub fn others(&self) -> Vec<(SourceFolder, String)> {
        let exports = *self.exports.lock().unwrap();
        let accepted = self.accepted.lock().unwrap().clone();
        self.folders
            .lock()
            .unwrap()
            .iter()
            .filter(|f| !self.copied(f.class))
            .map(|f| {
                let why = if accepted.contains(&f.class) && !exports {
                    "items: their full-fidelity export needs Exchange 2010 SP1 or later"
                } else {
                    "items: the destination holds mail only"
                };
                (f.clone(), format!("{} {why}", f.class.as_str()))
            })
            .collect()
    }
}

/// The engine's source session over a keyed source.
pub struct KeyedSession {
    keyed: Keyed,
    endpoint: String,
    /// What `capabilities` names the endpoint's kind by (`EWS`, `GRAPH`).
    kind: &'static str,
    /// The examined folder and its table.
    open: Option<(String, SourceTable)>,
    limit: u64,
}

impl KeyedSession {
    pub fn new(keyed: Keyed, endpoint: String, kind: &'static str) -> KeyedSession {
        KeyedSession {
            keyed,
            endpoint,
            kind,
            open: None,
            limit: ferry_connectors::DEFAULT_ITEM_LIMIT,
        }
    }

    fn refuse(&self, op: &'static str) -> ConnectorError {
        ConnectorError::Refused {
            endpoint: self.endpoint.clone(),
            op,
            class: ErrorClass::Other,
            text: "this endpoint is read as a source here".into(),
        }
    }

    fn table(&self) -> Result<&SourceTable> {
        self.open
            .as_ref()
            .map(|(_, t)| t)
            .ok_or(ConnectorError::NoFolder)
    }

    fn meta(&self, ordinal: u32, i: &ferry_projections::sources::TableItem) -> ItemMeta {
        ItemMeta {
            uid: ordinal,
            size: i.size,
            flags: i.flags.clone(),
            internal_date: date(i.received_us),
            modseq: Some(i.changed),
            refused: self.too_big(i.size),
        }
    }

    fn too_big(&self, size: u64) -> Option<String> {
        (size > self.limit).then(|| format!("{size} bytes is over the limit of {}", self.limit))
    }
}

/// An item as the log records it, under the log's number `ordinal`.
fn source_item(ordinal: u32, m: SourceMeta) -> SourceItem {
    SourceItem {
        ordinal,
        key: m.key.0,
        size: m.size,
        flags: m.flags,
        received_us: m.internal_date.map(|d| d.timestamp_micros()),
    }
}

fn date(us: Option<i64>) -> Option<DateTime<FixedOffset>> {
    us.and_then(DateTime::from_timestamp_micros)
        .map(|d| d.fixed_offset())
}

#[async_trait]
impl MailSession for KeyedSession {
    async fn capabilities(&mut self) -> Result<Vec<String>> {
        Ok(vec![self.kind.into()])
    }

    /// The folders copied (mail, and the classes the destination holds
    /// when the source exports them); the others are kept for
    /// [`Keyed::others`].
    async fn list_folders(&mut self) -> Result<Vec<Folder>> {
        let all = {
            let mut source = self.keyed.source.lock().await;
            let all = source.folders().await?;
            self.keyed.serves(&**source);
            all
        };
        let copied = all
            .iter()
            .filter(|f| self.keyed.copied(f.class))
            .map(|f| f.folder.clone())
            .collect();
        *self.keyed.folders.lock().unwrap() = all;
        Ok(copied)
    }

    async fn examine(&mut self, folder: &FolderName) -> Result<FolderStatus> {
        let table = self.keyed.tables.lock().unwrap().get(&folder.raw).cloned();
        // Not read yet this session: its job reads it first.
        let Some(table) = table else {
            return Err(ConnectorError::Server {
                endpoint: self.endpoint.clone(),
                op: "examining",
                class: ErrorClass::Folder,
                text: format!("folder {} is not synced yet", folder.raw),
            });
        };
        let st = FolderStatus {
            uidvalidity: table.generation,
            uidnext: table.next.max(1),
            exists: u32::try_from(table.items.len()).unwrap_or(u32::MAX),
            highest_modseq: Some(table.round),
        };
        self.open = Some((folder.raw.clone(), table));
        Ok(st)
    }

    async fn select(&mut self, _folder: &FolderName) -> Result<FolderStatus> {
        Err(self.refuse("selecting"))
    }

    async fn list_items(&mut self, from_uid: u32, max: usize) -> Result<Vec<ItemMeta>> {
        let t = self.table()?;
        Ok(t.items
            .range(from_uid..)
            .take(max)
            .map(|(o, i)| self.meta(*o, i))
            .collect())
    }

    async fn changed_since(&mut self, modseq: u64) -> Result<Option<Vec<ItemMeta>>> {
        let t = self.table()?;
        Ok(Some(
            t.items
                .iter()
                .filter(|(_, i)| i.changed > modseq)
                .map(|(o, i)| self.meta(*o, i))
                .collect(),
        ))
    }

    async fn fetch(&mut self, uids: &[u32]) -> Result<Vec<Item>> {
        let t = self.table()?;
        let mut keys = Vec::new();
        let mut out: Vec<Item> = Vec::new();
        let mut ordinal_of: HashMap<String, u32> = HashMap::new();
        for u in uids {
            let Some(i) = t.items.get(u) else { continue };
            match self.too_big(i.size) {
                Some(reason) => out.push(Item {
                    meta: ItemMeta {
                        refused: Some(reason),
                        ..self.meta(*u, i)
                    },
                    body: Bytes::new(),
                }),
                None => {
                    ordinal_of.insert(i.key.clone(), *u);
                    keys.push(SourceKey(i.key.clone()));
                }
            }
        }
        let folder = self
            .open
            .as_ref()
            .map(|(f, _)| f.clone())
            .unwrap_or_default();
        let class = self.keyed.class_of_listed(&folder).await;
        let streamed = self.keyed.mail_streamed();
        let got = {
            let mut source = self.keyed.source.lock().await;
            match class {
                // Items that are not mail travel whole, as the source
                // exports them; no MIME keeps them so. Mail does too where
                // the destination imports the source's streams.
                Some(c) if c != FolderClass::Mail || streamed => source.export(&keys).await?,
                _ => source.fetch(&keys).await?,
            }
        };
        for g in got {
            let Some(ordinal) = ordinal_of.get(&g.meta.key.0) else {
                continue;
            };
            // A source that reads bytes alone (Graph's `$value`) leaves the
            // state to what its change feed recorded in this pass.
            let (flags, internal_date) = match self.table()?.items.get(ordinal) {
                Some(i) if g.meta.flags.is_empty() && g.meta.internal_date.is_none() => {
                    (i.flags.clone(), date(i.received_us))
                }
                _ => (g.meta.flags, g.meta.internal_date),
            };
            out.push(Item {
                meta: ItemMeta {
                    uid: *ordinal,
                    size: g.body.len() as u64,
                    flags,
                    internal_date,
                    modseq: None,
                    refused: self.too_big(g.body.len() as u64),
                },
                body: g.body,
            });
        }
        out.sort_by_key(|i| i.meta.uid);
        Ok(out)
    }

    /// Mail that travels as streams is named from the source's MIME: a
    /// stream is no message to read a header from.
    async fn headlines(&mut self, uids: &[u32]) -> Result<HashMap<u32, Headline>> {
        let folder = self
            .open
            .as_ref()
            .map(|(f, _)| f.clone())
            .unwrap_or_default();
        let mail = self.keyed.class_of_listed(&folder).await == Some(FolderClass::Mail);
        let mut out = HashMap::new();
        let read: Vec<(u32, Bytes)> = if mail && self.keyed.mail_streamed() {
            let t = self.table()?;
            let ordinal_of: HashMap<String, u32> = uids
                .iter()
                .filter_map(|u| Some((t.items.get(u)?.key.clone(), *u)))
                .collect();
            let keys: Vec<SourceKey> = ordinal_of.keys().cloned().map(SourceKey).collect();
            let mut source = self.keyed.source.lock().await;
            let mut read = Vec::with_capacity(keys.len());
            for chunk in keys.chunks(50) {
                for g in source.fetch(chunk).await? {
                    read.extend(ordinal_of.get(&g.meta.key.0).map(|o| (*o, g.body)));
                }
            }
            read
        } else {
            let mut read = Vec::with_capacity(uids.len());
            for chunk in uids.chunks(50) {
                read.extend(
                    self.fetch(chunk)
                        .await?
                        .into_iter()
                        .map(|i| (i.meta.uid, i.body)),
                );
            }
            read
        };
        for (uid, body) in read {
            out.insert(uid, Headline::of(&body));
        }
        Ok(out)
    }

    async fn create_folder(&mut self, _folder: &FolderName) -> Result<()> {
        Err(self.refuse("creating a folder"))
    }

    async fn subscribe(&mut self, _folder: &FolderName) -> Result<()> {
        Err(self.refuse("subscribing"))
    }

    async fn append(
        &mut self,
        _folder: &FolderName,
        _flags: &[Flag],
        _internal_date: Option<DateTime<FixedOffset>>,
        _body: Bytes,
    ) -> Result<Option<AppendUid>> {
        Err(self.refuse("appending"))
    }

    async fn store_flags(&mut self, _uid: u32, _flags: &[Flag]) -> Result<()> {
        Err(self.refuse("storing flags"))
    }

    async fn remove(&mut self, _uids: &[u32]) -> Result<()> {
        Err(self.refuse("removing"))
    }

    async fn logout(&mut self) -> Result<()> {
        Ok(())
    }

    fn limit_items(&mut self, max_bytes: u64) {
        self.limit = max_bytes;
    }
}

/// Reads `folder`'s changes since its recorded cursor and records them,
/// a page at a time, each page before anything acts on it; then hands the
/// table to the session. A quiet folder records nothing.
pub async fn sync(w: &mut Work<'_>, keyed: &Keyed, folder: &FolderName) -> Result<(), WorkErr> {
    let table = recorded(w.app, &w.mailbox.address, folder);
    // Read already in this pass, maybe by another lane: the log's table
    // serves, and nothing is read or recorded twice.
    if w.keyed_read.lock().unwrap().contains(&folder.raw) {
        keyed
            .tables
            .lock()
            .unwrap()
            .insert(folder.raw.clone(), table);
        return Ok(());
    }
    read(Some(w), keyed, folder, table).await?;
    w.keyed_read.lock().unwrap().insert(folder.raw.clone());
    Ok(())
}

/// What [`sync`] would read, without recording it (`batch plan`).
pub async fn preview(
    app: &App,
    mailbox: &str,
    keyed: &Keyed,
    folder: &FolderName,
) -> Result<(), ConnectorError> {
    let table = recorded(app, mailbox, folder);
    match read(None, keyed, folder, table).await {
        Ok(()) => Ok(()),
        Err(WorkErr::Conn(e)) => Err(e),
        Err(e) => unreachable!("only recording fails otherwise: {e}"),
    }
}

/// The folder's table as the log has it, or a first one.
fn recorded(app: &App, mailbox: &str, folder: &FolderName) -> SourceTable {
    let views = app.views.read().unwrap();
    views
        .sources
        .get(mailbox, &folder.raw)
        .cloned()
        .unwrap_or_else(|| SourceTable {
            generation: 1,
            next: 1,
            ..SourceTable::default()
        })
}

/// Reads the folder's changes onto `table`, recording each page first
/// when `w` is given.
async fn read(
    mut w: Option<&mut Work<'_>>,
    keyed: &Keyed,
    folder: &FolderName,
    mut table: SourceTable,
) -> Result<(), WorkErr> {
    // Items copied whole: a change is a new stream, copied again.
    let whole = keyed
        .class_of(&folder.raw)
        .is_some_and(|c| c != FolderClass::Mail);
    loop {
        if let Some(w) = w.as_deref() {
            w.check_stop()?;
        }
        let cursor = table.cursor.clone().map(Cursor);
        let asked = {
            let mut source = keyed.source.lock().await;
            source.changes(folder, cursor.as_ref(), SYNC_PAGE).await
        };
        let page = match asked {
            Ok(page) => page,
            Err(ConnectorError::CursorInvalid { .. }) if cursor.is_some() => {
                tracing::warn!(folder = %folder.raw,
                    "the source refused the folder's cursor; reading it again from the start");
                table = SourceTable {
                    generation: table.generation + 1,
                    next: 1,
                    ..SourceTable::default()
                };
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        let quiet = page.changes.is_empty() && cursor.is_some();
        if !quiet {
            let address = w.as_deref().map(|w| w.mailbox.address.clone());
            let address = address.as_deref().unwrap_or_default();
            let (event, superseded) =
                synced(address, folder, &table, page.changes, page.cursor.0, whole);
            if let Some(w) = w.as_deref_mut() {
                let mut events = vec![event.clone()];
                events.extend(
                    superseded
                        .into_iter()
                        .map(|(old, by)| Event::CopySuperseded {
                            mailbox: address.to_string(),
                            key: ItemKey {
                                folder: folder.raw.clone(),
                                uidvalidity: table.generation,
                                uid: old,
                            },
                            by,
                        }),
                );
                w.record(events).await?;
            }
            // The same fold as the `sources` view's.
            table.apply(&event);
        }
        if page.last {
            break;
        }
    }
    keyed
        .tables
        .lock()
        .unwrap()
        .insert(folder.raw.clone(), table);
    Ok(())
}

/// The `SourceSynced` of one page of changes against `table`: new keys
/// numbered from its next ordinal, changed ones restated whole. When the
/// folder's items are copied `whole`, a changed item already in the table
/// gets a new number instead and its old one is gone: the pairs (old, new)
/// come back, for the old copy to be removed once the new one is copied.
fn synced(
    mailbox: &str,
    folder: &FolderName,
    table: &SourceTable,
    changes: Vec<Change>,
    cursor: String,
    whole: bool,
) -> (Event, Vec<(u32, u32)>) {
    let mut superseded: Vec<(u32, u32)> = Vec::new();
    let mut by_key: HashMap<String, u32> = table
        .items
        .iter()
        .map(|(o, i)| (i.key.clone(), *o))
        .collect();
    let mut next = table.next.max(1);
    let mut seen: Vec<SourceItem> = Vec::new();
    let mut gone = Vec::new();
    let current = |seen: &[SourceItem], o: u32| -> Option<SourceItem> {
        if let Some(s) = seen.iter().rev().find(|s| s.ordinal == o) {
            return Some(s.clone());
        }
        table.items.get(&o).map(|i| SourceItem {
            ordinal: o,
            key: i.key.clone(),
            size: i.size,
            flags: i.flags.clone(),
            received_us: i.received_us,
        })
    };
    for c in changes {
        match c {
            Change::Updated(m)
                if whole
                    && by_key
                        .get(&m.key.0)
                        .is_some_and(|o| table.items.contains_key(o)) =>
            {
                let old = by_key.remove(&m.key.0).expect("checked");
                seen.retain(|s| s.ordinal != old);
                if !gone.contains(&old) {
                    gone.push(old);
                }
                let ordinal = next;
                next += 1;
                by_key.insert(m.key.0.clone(), ordinal);
                superseded.push((old, ordinal));
                seen.push(source_item(ordinal, m));
            }
            Change::Created(m) | Change::Updated(m) => {
                let ordinal = *by_key.entry(m.key.0.clone()).or_insert_with(|| {
                    next += 1;
                    next - 1
                });
                seen.retain(|s| s.ordinal != ordinal);
                seen.push(source_item(ordinal, m));
            }
            Change::Read { key, seen: read } => {
                let Some(o) = by_key.get(&key.0).copied() else {
                    continue;
                };
                let Some(mut item) = current(&seen, o) else {
                    continue;
                };
                item.flags.retain(|f| !f.eq_ignore_ascii_case("\\Seen"));
                if read {
                    item.flags.insert(0, "\\Seen".into());
                }
                seen.retain(|s| s.ordinal != o);
                seen.push(item);
            }
            Change::Deleted(key) => {
                if let Some(o) = by_key.remove(&key.0) {
                    seen.retain(|s| s.ordinal != o);
                    if table.items.contains_key(&o) {
                        gone.push(o);
                    }
                }
            }
        }
    }
    let event = Event::SourceSynced {
        mailbox: mailbox.to_string(),
        folder: folder.raw.clone(),
        generation: table.generation,
        seen,
        gone,
        cursor,
    };
    (event, superseded)
}

/// The source's folders by id as the log has them.
pub fn recorded_folders(app: &App, mailbox: &str) -> FolderIds {
    let views = app.views.read().unwrap();
    let Some(known) = views.sources.folders.get(mailbox) else {
        return FolderIds::default();
    };
    FolderIds {
        folders: known
            .folders
            .iter()
            .map(|f| FolderId {
                id: f.id.clone(),
                folder: f.folder.clone(),
                now: f.now.clone(),
                special_use: f
                    .special_use
                    .as_ref()
                    .and_then(|u| serde_json::from_value(u.as_str().into()).ok()),
                subscribed: f.subscribed,
            })
            .collect(),
        link: known.link.clone(),
    }
}

/// Records the source's folders by id as its last listing left them,
/// when they differ from the log's.
pub async fn record_folders(w: &mut Work<'_>, keyed: &Keyed) -> Result<(), WorkErr> {
    let Some(ids) = keyed.source.lock().await.folder_ids() else {
        return Ok(());
    };
    if ids == recorded_folders(w.app, &w.mailbox.address) {
        return Ok(());
    }
    let event = Event::SourceFoldersSynced {
        mailbox: w.mailbox.address.clone(),
        folders: ids
            .folders
            .into_iter()
            .map(|f| SourceFolderId {
                id: f.id,
                folder: f.folder,
                now: f.now,
                special_use: f
                    .special_use
                    .and_then(|u| serde_json::to_value(u).ok()?.as_str().map(str::to_string)),
                subscribed: f.subscribed,
            })
            .collect(),
        link: ids.link,
    };
    w.record(vec![event]).await
}

/// Records, once, each folder that is not copied as skipped: its class is
/// one the destination does not hold (IMAP and Maildir hold mail only), or
/// the source cannot export its items whole.
pub async fn skip_others(w: &mut Work<'_>, keyed: &Keyed) -> Result<(), WorkErr> {
    let events: Vec<Event> = {
        let views = w.app.views.read().unwrap();
        let known = views.mailboxes.get(&w.mailbox.address);
        keyed
            .others()
            .into_iter()
            .filter(|(f, _)| {
                known
                    .and_then(|m| m.folders.get(&f.folder.name.raw))
                    .is_none_or(|p| p.skipped.is_none())
            })
            .map(|(f, reason)| Event::FolderSkipped {
                mailbox: w.mailbox.address.clone(),
                folder: f.folder.name.raw.clone(),
                class: f.class_name.clone(),
                reason,
            })
            .collect()
    };
    w.record(events).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_connectors::source::SourceMeta;

    fn name(raw: &str) -> FolderName {
        FolderName {
            raw: raw.into(),
            delimiter: Some('/'),
            segments: vec![raw.into()],
        }
    }

    fn meta(key: &str, flags: &[&str]) -> SourceMeta {
        SourceMeta {
            key: SourceKey(key.into()),
            size: 10,
            flags: flags.iter().map(|f| f.to_string()).collect(),
            internal_date: None,
        }
    }

    fn fold(table: &mut SourceTable, e: &Event) {
        table.apply(e);
    }

    #[test]
    fn keys_are_numbered_once_and_changes_restate_them() {
        let mut t = SourceTable {
            generation: 1,
            next: 1,
            ..SourceTable::default()
        };
        let e = synced(
            "m",
            &name("Inbox"),
            &t,
            vec![
                Change::Created(meta("a", &[])),
                Change::Created(meta("b", &["\\Seen"])),
            ],
            "c1".into(),
            false,
        )
        .0;
        fold(&mut t, &e);
        assert_eq!(t.ordinal_of("a"), Some(1));
        assert_eq!(t.ordinal_of("b"), Some(2));
        assert_eq!(t.next, 3);
        let e = synced(
            "m",
            &name("Inbox"),
            &t,
            vec![
                Change::Read {
                    key: SourceKey("a".into()),
                    seen: true,
                },
                Change::Deleted(SourceKey("b".into())),
                Change::Created(meta("c", &[])),
            ],
            "c2".into(),
            false,
        )
        .0;
        let Event::SourceSynced { gone, .. } = &e else {
            unreachable!()
        };
        assert_eq!(gone, &vec![2]);
        fold(&mut t, &e);
        assert_eq!(t.items[&1].flags, vec!["\\Seen"]);
        assert_eq!(t.ordinal_of("c"), Some(3));
        assert!(!t.items.contains_key(&2));
        assert_eq!(t.cursor.as_deref(), Some("c2"));
        assert_eq!(t.round, 2);
    }

    #[test]
    fn a_changed_item_copied_whole_gets_a_new_number() {
        let mut t = SourceTable {
            generation: 1,
            next: 1,
            ..SourceTable::default()
        };
        let cal = name("Calendar");
        let made = vec![
            Change::Created(meta("a", &[])),
            Change::Created(meta("b", &[])),
        ];
        let (e, superseded) = synced("m", &cal, &t, made, "c1".into(), true);
        assert!(superseded.is_empty());
        fold(&mut t, &e);
        let changed = vec![Change::Updated(meta("a", &[]))];
        let (e, superseded) = synced("m", &cal, &t, changed.clone(), "c2".into(), true);
        assert_eq!(superseded, vec![(1, 3)]);
        let Event::SourceSynced { gone, .. } = &e else {
            unreachable!()
        };
        assert_eq!(gone, &vec![1]);
        fold(&mut t, &e);
        assert_eq!(t.ordinal_of("a"), Some(3));
        assert!(!t.items.contains_key(&1));
        // Mail keeps its number: a change there is flags only.
        let (_, superseded) = synced("m", &cal, &t, changed, "c3".into(), false);
        assert!(superseded.is_empty());
    }
}
