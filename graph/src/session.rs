//! A user's mailbox in Exchange Online as a copy destination.
//!
//! Folders are named by their path of display names joined with `/`, the
//! inbox as `INBOX`, and the well-known folders carry their special-use.
//! Items are written as received mail (`create_message`) stamped with
//! their origin, and found again by it: Graph has no UIDs and gives back
//! no exact bytes, so the session answers [`MailSession::by_origin`] and
//! refuses what only a source does.
//!
//! Calendar, contacts and tasks folders are made with their class through
//! the mailbox API (`items`), and their items are full-fidelity streams
//! posted through the import API. An imported item is the stream as
//! given: the import takes no property of ours, and the mailbox API can
//! only read extended properties, never set them, so no origin is stamped
//! on it. Such an item is found by what Graph lists: the folder's items,
//! exported back, whose stream's digest is the origin's digest. Exchange
//! Online re-exports an item from its own store, so its stream need not
//! be the bytes imported; there, an item left in doubt by a crash between
//! the import and its record may be imported a second time.
//!
//! Mail from a Graph source comes as its `exportItems` streams too (see
//! [`MailSession::mail_as_streams`]): imported whole, then stamped with
//! its origin by a PATCH of the new message, so it is found, flagged and
//! removed as created mail is. One imported but not yet stamped when a
//! crash came is found as the other classes' are, and stamped then.

use std::collections::{HashMap, HashSet};

use async_trait::async_trait;
use bytes::Bytes;
use ferry_connectors::origin::{Changes, Held, Origin as ItemOrigin, OriginStore};
use ferry_connectors::source::FolderClass;
use ferry_connectors::{
    AppendUid, ConnectorError, ErrorClass, Flag, Folder, FolderName, FolderStatus, Item, ItemMeta,
    MailSession, SpecialUse,
};

use crate::import::Importer;
use crate::messages::Found;
use crate::messages::ORIGIN_PROPERTY;
use crate::model::{ImportedItem, Message, NewMessage, Origin, WellKnown};
use crate::{Error, Mailbox};

const DELIMITER: char = '/';

pub struct GraphSession {
    pub(crate) mailbox: Mailbox,
    /// Where the session is, as errors name it (the endpoint's host).
    pub(crate) endpoint: String,
    /// Folder ids by name, from the last listing and the folders made since.
    pub(crate) ids: HashMap<String, String>,
    listed: bool,
    /// Folders of a class besides mail, by name: as listed through the
    /// mailbox API, or as the engine said before making them.
    classes: HashMap<String, FolderClass>,
    /// The path of display names of each folder of a class, by its key.
    box_paths: HashMap<String, Vec<String>>,
    /// Whether the mailbox API's folders were listed since the last listing.
    boxes_listed: bool,
    /// The import session, made at the first import.
    importer: Option<Importer>,
    /// Mail folders whose mail comes as full-fidelity streams, by key.
    streamed: HashSet<String>,
}

impl GraphSession {
    pub fn new(mailbox: Mailbox, endpoint: &str) -> GraphSession {
        GraphSession {
            mailbox,
            endpoint: endpoint.to_string(),
            ids: HashMap::new(),
            listed: false,
            classes: HashMap::new(),
            box_paths: HashMap::new(),
            boxes_listed: false,
            importer: None,
            streamed: HashSet::new(),
        }
    }

    async fn importer(&mut self) -> Result<&mut Importer, ConnectorError> {
        if self.importer.is_none() {
            let made = self
                .mailbox
                .importer()
                .await
                .map_err(|e| self.err("reading the mailbox id", e, ErrorClass::Other))?;
            self.importer = Some(made);
        }
        Ok(self.importer.as_mut().expect("made"))
    }

    pub(crate) async fn mailbox_id(&mut self) -> Result<String, ConnectorError> {
        Ok(self.importer().await?.mailbox_id().to_string())
    }

    /// The class of a folder that holds no mail, or `None` for mail.
    fn class(&self, folder: &FolderName) -> Option<FolderClass> {
        self.classes.get(&key_of(&path_of(folder))).copied()
    }

    /// Reads the folders of a class besides mail through the mailbox API.
    async fn list_boxes(&mut self) -> Result<(), ConnectorError> {
        let mid = self.mailbox_id().await?;
        let all = self
            .mailbox
            .box_folders(&mid)
            .await
            .map_err(|e| self.err("listing mailbox folders", e, ErrorClass::Other))?;
        for (f, path) in all {
            let class = FolderClass::of_container(&f.class);
            if matches!(class, FolderClass::Mail | FolderClass::Other) {
                continue;
            }
            let key = key_of(&path);
            self.classes.insert(key.clone(), class);
            self.box_paths.insert(key.clone(), path);
            self.ids.insert(key, f.id);
        }
        self.boxes_listed = true;
        Ok(())
    }

    /// Imports a full-fidelity stream into a folder.
    async fn import(
        &mut self,
        folder: &FolderName,
        body: &[u8],
    ) -> Result<ImportedItem, ConnectorError> {
        let id = self.id_of(folder).await?;
        let endpoint = self.endpoint.clone();
        let importer = self.importer().await?;
        importer
            .import(&id, body)
            .await
            .map_err(|e| graph_err(&endpoint, "importing item", e, ErrorClass::Item))
    }

    /// Imports a message's stream into a mail folder and stamps the new
    /// message with its origin. The stream carries the message whole,
    /// state included (read, flag, categories): only the origin is set.
    async fn import_mail(
        &mut self,
        folder: &FolderName,
        body: &[u8],
        origin: &ItemOrigin,
    ) -> Result<(), ConnectorError> {
        let made = self.import(folder, body).await?;
        let Err(e) = self.mailbox.stamp(&made.item_id, &stamp(origin)).await else {
            return Ok(());
        };
        let e = self.err("stamping the imported message", e, ErrorClass::Item);
        if e.class() == ErrorClass::Item {
            // Refused: a copy no lookup finds is removed now, as the item
            // is recorded failed, not in doubt.
            let _ = self.mailbox.delete_message(&made.item_id).await;
        }
        Err(e)
    }

    /// Whether a folder of a class holds an item whose stream has `digest`.
    async fn holds_imported(
        &mut self,
        folder: &FolderName,
        digest: &str,
    ) -> Result<bool, ConnectorError> {
        let ids = self.box_item_ids(folder).await?;
        Ok(self.exported_with(&ids, digest).await?.is_some())
    }

    /// The ids of the items of a folder of a class.
    async fn box_item_ids(&mut self, folder: &FolderName) -> Result<Vec<String>, ConnectorError> {
        let id = self.id_of(folder).await?;
        let mid = self.mailbox_id().await?;
        let items = self
            .mailbox
            .box_items(&mid, &id)
            .await
            .map_err(|e| self.err("listing mailbox items", e, ErrorClass::Other))?;
        Ok(items.into_iter().map(|i| i.id).collect())
    }

    /// An imported message a crash left unstamped: among the folder's
    /// messages that carry no origin, the one whose stream has the origin's
    /// digest, stamped now. Whether there was one.
    async fn stamp_unstamped(
        &mut self,
        folder: &FolderName,
        origin: &ItemOrigin,
    ) -> Result<bool, ConnectorError> {
        let id = self.id_of(folder).await?;
        let ids = self
            .mailbox
            .unstamped(&id)
            .await
            .map_err(|e| self.err("listing messages", e, ErrorClass::Other))?;
        let Some(found) = self.exported_with(&ids, &origin.digest).await? else {
            return Ok(false);
        };
        self.mailbox
            .stamp(&found, &stamp(origin))
            .await
            .map_err(|e| self.err("stamping the imported message", e, ErrorClass::Other))?;
        Ok(true)
    }

    /// The first of `ids` whose exported stream has `digest`: the import
    /// API keeps no origin, so a copy is known by its stream.
    async fn exported_with(
        &mut self,
        ids: &[String],
        digest: &str,
    ) -> Result<Option<String>, ConnectorError> {
        Ok(self
            .exported(ids)
            .await?
            .into_iter()
            .find(|s| ferry_connectors::digest(&s.data) == digest)
            .map(|s| s.id))
    }

    /// The items `ids`, exported.
    async fn exported(
        &mut self,
        ids: &[String],
    ) -> Result<Vec<crate::items::ExportedItem>, ConnectorError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mid = self.mailbox_id().await?;
        self.mailbox
            .export_items(&mid, ids)
            .await
            .map_err(|e| self.err("exporting items", e, ErrorClass::Other))
    }

    pub fn mailbox(&self) -> &Mailbox {
        &self.mailbox
    }

    /// A Graph failure as the engine classes it; `refused` is the class of
    /// a plain refusal (4xx) of this call: the item's, or the folder's.
    pub(crate) fn err(&self, op: &'static str, e: Error, refused: ErrorClass) -> ConnectorError {
        graph_err(&self.endpoint, op, e, refused)
    }
}

/// A Graph failure as the engine classes it (see [`GraphSession::err`]).
pub(crate) fn graph_err(
    endpoint: &str,
    op: &'static str,
    e: Error,
    refused: ErrorClass,
) -> ConnectorError {
    {
        let class = match &e {
            Error::Http { status, .. } => match status {
                429 | 500 | 502 | 503 | 504 => ErrorClass::Throttled,
                401 | 403 => ErrorClass::Auth,
                _ => refused,
            },
            Error::Transport { .. } => ErrorClass::Connection,
            Error::SignIn { .. } | Error::Credential { .. } => ErrorClass::Auth,
            Error::Invalid(_) => refused,
            Error::Protocol { .. } => ErrorClass::Other,
        };
        ConnectorError::Server {
            endpoint: endpoint.to_string(),
            op,
            class,
            text: e.to_string(),
        }
    }
}

impl GraphSession {
    fn source_only(&self, op: &'static str) -> ConnectorError {
        ConnectorError::Refused {
            endpoint: self.endpoint.clone(),
            op,
            class: ErrorClass::Other,
            text: "a graph endpoint is a destination only".into(),
        }
    }

    async fn id_of(&mut self, folder: &FolderName) -> Result<String, ConnectorError> {
        let key = key_of(&path_of(folder));
        // Another session of the mailbox may have made it since the listing.
        if !self.listed || !self.ids.contains_key(&key) {
            self.list_folders().await?;
        }
        if !self.ids.contains_key(&key) && self.classes.contains_key(&key) {
            self.list_boxes().await?;
        }
        self.ids
            .get(&key_of(&path_of(folder)))
            .cloned()
            .ok_or_else(|| ConnectorError::Server {
                endpoint: self.endpoint.clone(),
                op: "opening folder",
                class: ErrorClass::Folder,
                text: format!("no folder {:?}", folder.raw),
            })
    }

    async fn find(
        &mut self,
        folder: &FolderName,
        origin: &ItemOrigin,
    ) -> Result<Found, ConnectorError> {
        let id = self.id_of(folder).await?;
        self.mailbox
            .find_by_origin(Some(&id), &stamp(origin))
            .await
            .map_err(|e| self.err("finding by origin", e, ErrorClass::Other))
    }

    async fn status(&mut self, folder: &FolderName) -> Result<FolderStatus, ConnectorError> {
        let id = self.id_of(folder).await?;
        if self.class(folder).is_some() {
            let mid = self.mailbox_id().await?;
            let f = self
                .mailbox
                .box_folder(&mid, &id)
                .await
                .map_err(|e| self.err("reading folder", e, ErrorClass::Folder))?;
            return Ok(FolderStatus {
                uidvalidity: 1,
                uidnext: 1,
                exists: f.total_item_count,
                highest_modseq: None,
            });
        }
        let f = self
            .mailbox
            .folder(&id)
            .await
            .map_err(|e| self.err("reading folder", e, ErrorClass::Folder))?;
        // No UIDs at a graph destination: copies are found by origin.
        Ok(FolderStatus {
            uidvalidity: 1,
            uidnext: 1,
            exists: f.total_item_count,
            highest_modseq: None,
        })
    }
}

/// A folder's name as the engine's mapping spells it: the raw name in
/// modified UTF-7 (as an IMAP destination's), the segments as shown.
pub(crate) fn name(path: &[String]) -> FolderName {
    FolderName {
        raw: ferry_connectors::utf7::encode(&path.join(&DELIMITER.to_string())),
        delimiter: Some(DELIMITER),
        segments: path.to_vec(),
    }
}

/// The key of a folder's id: its path of display names.
pub(crate) fn path_of(folder: &FolderName) -> Vec<String> {
    if !folder.segments.is_empty() {
        return folder.segments.clone();
    }
    let raw = ferry_connectors::utf7::decode(&folder.raw).unwrap_or_else(|| folder.raw.clone());
    raw.split(DELIMITER)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

/// Exchange's folder names ignore case, and the engine may name the inbox
/// `Inbox` or `INBOX`: one key for both.
pub(crate) fn key_of(path: &[String]) -> String {
    path.join(&DELIMITER.to_string()).to_lowercase()
}

fn special_use(w: WellKnown) -> SpecialUse {
    match w {
        WellKnown::Inbox => SpecialUse::Inbox,
        WellKnown::SentItems => SpecialUse::Sent,
        WellKnown::Drafts => SpecialUse::Drafts,
        WellKnown::DeletedItems => SpecialUse::Trash,
        WellKnown::JunkEmail => SpecialUse::Junk,
        WellKnown::Archive => SpecialUse::Archive,
    }
}

/// A message's state as the flags a copy takes it from.
fn held_flags(m: &Message) -> Vec<Flag> {
    let mut out = Vec::new();
    if m.is_read == Some(true) {
        out.push("\\Seen".to_string());
    }
    if m.flag.as_ref().is_some_and(|f| f.flag_status == "flagged") {
        out.push("\\Flagged".to_string());
    }
    out.extend(m.categories.iter().cloned());
    out
}

/// The categories a flag sync sets: none when the copy's are the wanted
/// ones as keywords (the flags a source's categories travel as), so a name
/// no keyword spells (a blank, a letter beyond ASCII) is kept.
fn categories_to_set<'a>(want: &'a [String], have: &[String]) -> Option<&'a [String]> {
    let keywords = |v: &[String]| -> HashSet<String> {
        v.iter()
            .map(|c| ferry_connectors::source::keyword_of(c).to_ascii_lowercase())
            .collect()
    };
    (keywords(want) != keywords(have)).then_some(want)
}

/// A message as the change feed shows it. A write cut short half-way
/// carries a `partial` stamp, which does not parse as an origin.
fn held(m: Message) -> Held {
    let origin = m
        .single_value_extended_properties
        .iter()
        .find(|p| p.id.eq_ignore_ascii_case(ORIGIN_PROPERTY))
        .and_then(|p| Origin::parse(&p.value))
        .filter(|o| o.digest != "partial")
        .map(|o| ItemOrigin {
            key: o.key,
            digest: o.digest,
        });
    Held {
        flags: held_flags(&m),
        id: m.id,
        origin,
    }
}

/// The stamp of a copy: the source key and digest.
fn stamp(o: &ItemOrigin) -> Origin {
    Origin {
        key: o.key.clone(),
        digest: o.digest.clone(),
    }
}

#[async_trait]
impl MailSession for GraphSession {
    async fn capabilities(&mut self) -> ferry_connectors::Result<Vec<String>> {
        Ok(vec!["GRAPH".into(), "ORIGIN".into()])
    }

    async fn list_folders(&mut self) -> ferry_connectors::Result<Vec<Folder>> {
        let nodes = self
            .mailbox
            .folders()
            .await
            .map_err(|e| self.err("listing folders", e, ErrorClass::Other))?;
        let inbox: Option<&str> = nodes
            .iter()
            .find(|n| n.well_known == Some(WellKnown::Inbox))
            .map(|n| n.folder.id.as_str());
        let ids: HashMap<&str, &crate::model::FolderNode> =
            nodes.iter().map(|n| (n.folder.id.as_str(), n)).collect();
        let mut out = Vec::with_capacity(nodes.len());
        self.ids.clear();
        self.boxes_listed = false;
        for n in &nodes {
            // Below the inbox, the path starts at INBOX as IMAP names it.
            let mut path = n.path.clone();
            let mut top = n;
            while let Some(p) = top
                .folder
                .parent_folder_id
                .as_deref()
                .and_then(|p| ids.get(p))
            {
                top = p;
            }
            if Some(top.folder.id.as_str()) == inbox {
                path[0] = "INBOX".into();
            }
            let fname = name(&path);
            self.ids.insert(key_of(&path), n.folder.id.clone());
            out.push(Folder {
                name: fname,
                special_use: n.well_known.map(special_use),
                selectable: true,
                subscribed: !n.folder.is_hidden,
            });
        }
        self.listed = true;
        // Folders of a class are listed through the mailbox API, only once
        // the engine copies one: a mail-only migration needs no more rights.
        if !self.classes.is_empty() {
            self.list_boxes().await?;
            for (key, path) in &self.box_paths {
                if !self.ids.contains_key(key) {
                    continue;
                }
                out.push(Folder {
                    name: name(path),
                    special_use: None,
                    selectable: true,
                    subscribed: true,
                });
            }
        }
        Ok(out)
    }

    async fn examine(&mut self, folder: &FolderName) -> ferry_connectors::Result<FolderStatus> {
        self.status(folder).await
    }

    async fn select(&mut self, folder: &FolderName) -> ferry_connectors::Result<FolderStatus> {
        // A pass reads only UIDs from it, which Graph has not: no request,
        // so a quiet delta pass costs just the folder's delta.
        self.id_of(folder).await?;
        Ok(FolderStatus {
            uidvalidity: 1,
            uidnext: 1,
            exists: 0,
            highest_modseq: None,
        })
    }

    async fn list_items(
        &mut self,
        _from_uid: u32,
        _max: usize,
    ) -> ferry_connectors::Result<Vec<ItemMeta>> {
        Err(self.source_only("listing items"))
    }

    async fn changed_since(
        &mut self,
        _modseq: u64,
    ) -> ferry_connectors::Result<Option<Vec<ItemMeta>>> {
        Ok(None)
    }

    async fn fetch(&mut self, _uids: &[u32]) -> ferry_connectors::Result<Vec<Item>> {
        Err(self.source_only("fetching items"))
    }

    async fn create_folder(&mut self, folder: &FolderName) -> ferry_connectors::Result<()> {
        if !self.listed {
            self.list_folders().await?;
        }
        // A folder of another class (and any missing parent of the same
        // class) is made through the mailbox API.
        let class = self.class(folder);
        let mid = match class {
            Some(_) => {
                if !self.boxes_listed {
                    self.list_boxes().await?;
                }
                Some(self.mailbox_id().await?)
            }
            None => None,
        };
        let segments = path_of(folder);
        let mut parent: Option<String> = None;
        for i in 1..=segments.len() {
            let path = key_of(&segments[..i]);
            if let Some(id) = self.ids.get(&path) {
                parent = Some(id.clone());
                continue;
            }
            let name = &segments[i - 1];
            let made = match (class, &mid) {
                (Some(class), Some(mid)) => self
                    .mailbox
                    .create_box_folder(mid, parent.as_deref(), name, class.container_class())
                    .await
                    .map(|f| f.id),
                _ => self
                    .mailbox
                    .create_folder(parent.as_deref(), name)
                    .await
                    .map(|f| f.id),
            }
            .map_err(|e| self.err("creating folder", e, ErrorClass::Folder))?;
            self.ids.insert(path.clone(), made.clone());
            if let Some(class) = class {
                self.box_paths.insert(path.clone(), segments[..i].to_vec());
                self.classes.insert(path, class);
            }
            parent = Some(made);
        }
        Ok(())
    }

    async fn subscribe(&mut self, _folder: &FolderName) -> ferry_connectors::Result<()> {
        // Exchange has no subscriptions: every visible folder is shown.
        Ok(())
    }

    async fn append(
        &mut self,
        _folder: &FolderName,
        _flags: &[Flag],
        _internal_date: Option<chrono::DateTime<chrono::FixedOffset>>,
        _body: Bytes,
    ) -> ferry_connectors::Result<Option<AppendUid>> {
        // Every item is stamped with its origin, or it could not be found.
        Err(ConnectorError::Refused {
            endpoint: self.endpoint.clone(),
            op: "appending",
            class: ErrorClass::Other,
            text: "a graph endpoint writes items only with their origin".into(),
        })
    }

    async fn store_flags(&mut self, _uid: u32, _flags: &[Flag]) -> ferry_connectors::Result<()> {
        Err(self.source_only("storing flags by UID"))
    }

    async fn remove(&mut self, _uids: &[u32]) -> ferry_connectors::Result<()> {
        Err(self.source_only("removing items by UID"))
    }

    async fn logout(&mut self) -> ferry_connectors::Result<()> {
        Ok(())
    }

    fn by_origin(&mut self) -> Option<&mut dyn OriginStore> {
        Some(self)
    }

    fn item_classes(&self) -> &'static [FolderClass] {
        &[
            FolderClass::Calendar,
            FolderClass::Contacts,
            FolderClass::Tasks,
        ]
    }

    fn set_folder_class(&mut self, folder: &FolderName, class: FolderClass) {
        if self.item_classes().contains(&class) {
            self.classes.insert(key_of(&path_of(folder)), class);
        }
    }

    fn imports_mail(&self) -> bool {
        true
    }

    fn mail_as_streams(&mut self, folder: &FolderName) {
        self.streamed.insert(key_of(&path_of(folder)));
    }
}

#[async_trait]
impl OriginStore for GraphSession {
    async fn write_stamped(
        &mut self,
        folder: &FolderName,
        flags: &[Flag],
        internal_date: Option<chrono::DateTime<chrono::FixedOffset>>,
        body: Bytes,
        origin: &ItemOrigin,
    ) -> ferry_connectors::Result<()> {
        if self.class(folder).is_some() {
            // The stream carries the item whole, flags and times included.
            return self.import(folder, &body).await.map(|_| ());
        }
        if self.streamed.contains(&key_of(&path_of(folder))) {
            return self.import_mail(folder, &body, origin).await;
        }
        let id = self.id_of(folder).await?;
        let received = internal_date.map_or_else(chrono::Utc::now, Into::into);
        let mut m = NewMessage::from_mime(&body, received)
            .map_err(|e| self.err("reading the message", e, ErrorClass::Item))?
            .with_imap_flags(flags);
        m.origin = Some(stamp(origin));
        match self.mailbox.create_message(&id, &m).await {
            Ok(_) => Ok(()),
            Err(e) => {
                let e = self.err("creating message", e, ErrorClass::Item);
                if e.class() == ErrorClass::Item {
                    // A refused attachment leaves a partial item: removed
                    // now, as the item is recorded failed, not in doubt.
                    let _ = self.holds(folder, origin).await;
                }
                Err(e)
            }
        }
    }

    async fn holds(
        &mut self,
        folder: &FolderName,
        origin: &ItemOrigin,
    ) -> ferry_connectors::Result<bool> {
        if self.class(folder).is_some() {
            return self.holds_imported(folder, &origin.digest).await;
        }
        match self.find(folder, origin).await? {
            Found::Complete(_) => return Ok(true),
            Found::Nothing => {}
            Found::Partial(list) => {
                for m in list {
                    self.mailbox
                        .delete_message(&m.id)
                        .await
                        .map_err(|e| self.err("removing a partial item", e, ErrorClass::Other))?;
                }
            }
        }
        if self.streamed.contains(&key_of(&path_of(folder))) {
            return self.stamp_unstamped(folder, origin).await;
        }
        Ok(false)
    }

    async fn set_flags(
        &mut self,
        folder: &FolderName,
        origin: &ItemOrigin,
        flags: &[Flag],
    ) -> ferry_connectors::Result<bool> {
        // An imported item keeps what its stream says; a change at the
        // source comes as a new stream.
        if self.class(folder).is_some() {
            return Ok(false);
        }
        let Found::Complete(have) = self.find(folder, origin).await? else {
            return Ok(false);
        };
        let want = NewMessage::default().with_imap_flags(flags);
        let have_flagged = have
            .flag
            .as_ref()
            .is_some_and(|f| f.flag_status == "flagged");
        let categories = categories_to_set(&want.categories, &have.categories);
        if have.is_read == Some(want.is_read)
            && have_flagged == want.flagged
            && categories.is_none()
        {
            return Ok(false);
        }
        self.mailbox
            .update_state(&have.id, want.is_read, want.flagged, categories)
            .await
            .map_err(|e| self.err("updating message", e, ErrorClass::Item))?;
        Ok(true)
    }

    async fn remove_copies(
        &mut self,
        folder: &FolderName,
        origin: &ItemOrigin,
        keep: usize,
    ) -> ferry_connectors::Result<()> {
        let Some(class) = self.class(folder) else {
            return Err(self.source_only("removing a replaced message"));
        };
        let ids = self.box_item_ids(folder).await?;
        let streams = self.exported(&ids).await?;
        let matching = streams
            .iter()
            .filter(|s| ferry_connectors::digest(&s.data) == origin.digest);
        for s in matching.skip(keep) {
            self.mailbox
                .delete_item(class.container_class(), &s.id)
                .await
                .map_err(|e| self.err("removing a replaced item", e, ErrorClass::Other))?;
        }
        Ok(())
    }

    async fn changes(
        &mut self,
        folder: &FolderName,
        link: Option<&str>,
    ) -> ferry_connectors::Result<Changes> {
        let id = self.id_of(folder).await?;
        let d = self
            .mailbox
            .stamped_message_delta(&id, link)
            .await
            .map_err(|e| self.err("following the folder's delta", e, ErrorClass::Folder))?;
        Ok(Changes {
            seen: d.changed.into_iter().map(held).collect(),
            gone: d.removed,
            link: d.delta_link,
            // No link is a start from nothing as well.
            restarted: d.restarted || link.is_none(),
        })
    }

    fn kept_flags(&self, flags: &[Flag]) -> Vec<Flag> {
        let m = NewMessage::default().with_imap_flags(flags);
        let mut out = Vec::new();
        if m.is_read {
            out.push("\\Seen".to_string());
        }
        if m.flagged {
            out.push("\\Flagged".to_string());
        }
        out.extend(m.categories);
        out
    }

    async fn set_flags_of(
        &mut self,
        id: &str,
        flags: &[Flag],
        have: &[Flag],
    ) -> ferry_connectors::Result<()> {
        let want = NewMessage::default().with_imap_flags(flags);
        let held = NewMessage::default().with_imap_flags(have).categories;
        let categories = categories_to_set(&want.categories, &held);
        self.mailbox
            .update_state(id, want.is_read, want.flagged, categories)
            .await
            .map_err(|e| self.err("updating message", e, ErrorClass::Item))
    }

    async fn stamp_id(&mut self, id: &str, origin: &ItemOrigin) -> ferry_connectors::Result<()> {
        self.mailbox
            .stamp(id, &stamp(origin))
            .await
            .map_err(|e| self.err("stamping a copy", e, ErrorClass::Item))
    }

    async fn remove_ids(&mut self, ids: &[String]) -> ferry_connectors::Result<()> {
        self.mailbox
            .delete_messages(ids)
            .await
            .map_err(|e| self.err("removing messages", e, ErrorClass::Other))
    }
}
