//! A user's mailbox in Exchange Online as a keyed source (tenant to
//! tenant): mail folders named as the destination session names them
//! (`mailFolders`, `INBOX` first), the folders of other classes through
//! the mailbox API. A mail folder's changes are its message delta, read
//! as MIME (`$value`), or as `exportItems` streams for a Graph destination
//! that imports them; another folder's are the mailbox API's item delta,
//! read as `exportItems` streams. The delta's next or delta link is the
//! cursor; a link the service no longer knows is `CursorInvalid`.
//!
//! Mail folders are followed by their ids across passes: one renamed or
//! moved at the source keeps the name it was first listed by, so its
//! items keep their table and their destination folder. The folder
//! delta's link (`mailFolders/delta`) is kept with the ids; a folder
//! delta that tells no change lets the recorded folders serve, unlisted.

use std::collections::{HashMap, HashSet};

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, FixedOffset};
use ferry_connectors::source::{
    Change, ChangeSource, Changes, Cursor, FolderClass, FolderId, FolderIds, SourceFolder,
    SourceItem, SourceKey, SourceMeta, item_flags,
};
use ferry_connectors::{ConnectorError, ErrorClass, Folder, FolderName, MailSession, Result};
use serde::de::DeserializeOwned;

use crate::Mailbox;
use crate::delta::{DeltaLink, Removable};
use crate::items::BoxItem;
use crate::model::Message;
use crate::session::{GraphSession, key_of, name, path_of};

/// PR_MESSAGE_SIZE: a message's size, known before its bytes are read
/// (for the size limit and `batch plan`).
const PR_MESSAGE_SIZE: &str = "Integer 0x0E08";

/// What a message delta selects: the state a copy carries.
const SOURCE_SELECT: &str = "isRead,receivedDateTime,categories,flag";

pub struct GraphSource {
    session: GraphSession,
    /// Folder name → (id, class), from the last listing.
    folders: HashMap<String, (String, FolderClass)>,
    /// The mail folders by id: as recorded, then as last listed.
    ids: FolderIds,
}

impl GraphSource {
    pub fn new(mailbox: Mailbox, endpoint: &str) -> GraphSource {
        GraphSource {
            session: GraphSession::new(mailbox, endpoint),
            folders: HashMap::new(),
            ids: FolderIds::default(),
        }
    }

    fn mailbox(&self) -> &Mailbox {
        &self.session.mailbox
    }

    /// One page of a folder's delta as changes, and where it leads.
    async fn page<T: DeserializeOwned + Removable>(
        &self,
        folder: &FolderName,
        url: &str,
        max: usize,
        meta: impl Fn(&T) -> SourceMeta,
    ) -> Result<(Vec<Change>, DeltaLink)> {
        let op = self.mailbox().op("folder delta");
        let page = self
            .mailbox()
            .delta_page::<T>(&op, url, Some(max))
            .await
            .map_err(|e| {
                self.session
                    .err("following the folder's delta", e, ErrorClass::Folder)
            })?
            .ok_or_else(|| ConnectorError::CursorInvalid {
                endpoint: self.session.endpoint.clone(),
                folder: folder.raw.clone(),
            })?;
        let mut changes: Vec<Change> = page
            .changed
            .iter()
            .map(|i| Change::Updated(meta(i)))
            .collect();
        changes.extend(
            page.removed
                .into_iter()
                .map(|k| Change::Deleted(SourceKey(k))),
        );
        Ok((changes, page.link))
    }

    fn err(&self, op: &'static str, e: crate::Error) -> ConnectorError {
        self.session.err(op, e, ErrorClass::Item)
    }

    /// The mail folders as recorded, under the names their items are
    /// copied under.
    fn recorded_mail(&mut self) -> Vec<SourceFolder> {
        self.folders.clear();
        let mut out = Vec::with_capacity(self.ids.folders.len());
        for f in &self.ids.folders {
            let folder = Folder {
                name: named(&f.folder),
                special_use: f.special_use,
                selectable: true,
                subscribed: f.subscribed,
            };
            self.folders
                .insert(f.folder.clone(), (f.id.clone(), FolderClass::Mail));
            out.push(mail_folder(folder));
        }
        out
    }

    /// The mail folders as listed now, each under the name it was first
    /// listed by; the ids recorded take what the listing says.
    async fn listed_mail(&mut self) -> Result<Vec<SourceFolder>> {
        let mail = self.session.list_folders().await?;
        let first: HashMap<String, String> = self
            .ids
            .folders
            .drain(..)
            .map(|f| (f.id, f.folder))
            .collect();
        let listed: Vec<(Folder, String)> = mail
            .into_iter()
            .filter_map(|f| {
                let id = self.session.ids.get(&key_of(&path_of(&f.name)))?.clone();
                Some((f, id))
            })
            .collect();
        let taken: HashSet<&String> = listed.iter().filter_map(|(_, id)| first.get(id)).collect();
        self.folders.clear();
        let mut out = Vec::with_capacity(listed.len());
        for (mut f, id) in listed {
            let now = match first.get(&id) {
                Some(was) if *was != f.name.raw => {
                    let now = f.name.raw.clone();
                    f.name = named(was);
                    Some(now)
                }
                Some(_) => None,
                None if taken.contains(&f.name.raw) => {
                    // A new folder by a renamed one's first name: its
                    // items would share that folder's table.
                    tracing::warn!(folder = %f.name.raw,
                        "a new source folder has the first name of a renamed one; not copied");
                    continue;
                }
                None => None,
            };
            self.ids.folders.push(FolderId {
                id: id.clone(),
                folder: f.name.raw.clone(),
                now,
                special_use: f.special_use,
                subscribed: f.subscribed,
            });
            self.folders
                .insert(f.name.raw.clone(), (id, FolderClass::Mail));
            out.push(mail_folder(f));
        }
        Ok(out)
    }

    async fn folder(&mut self, folder: &FolderName) -> Result<(String, FolderClass)> {
        // A session that has not listed the tree yet (a spare) lists it once.
        if !self.folders.contains_key(&folder.raw) {
            self.folders().await?;
        }
        self.folders
            .get(&folder.raw)
            .cloned()
            .ok_or_else(|| ConnectorError::Server {
                endpoint: self.session.endpoint.clone(),
                op: "following the folder's delta",
                class: ErrorClass::Folder,
                text: format!("no folder {} at the source", folder.raw),
            })
    }
}

/// The folder name a raw name stands for, as a listing gives it.
fn named(raw: &str) -> FolderName {
    name(&path_of(&FolderName {
        raw: raw.to_string(),
        delimiter: None,
        segments: Vec::new(),
    }))
}

fn mail_folder(folder: Folder) -> SourceFolder {
    SourceFolder {
        folder,
        class: FolderClass::Mail,
        class_name: FolderClass::Mail.container_class().into(),
    }
}

fn date(t: Option<&str>) -> Option<DateTime<FixedOffset>> {
    t.and_then(|t| DateTime::parse_from_rfc3339(t).ok())
}

fn message_meta(m: &Message) -> SourceMeta {
    let size = m
        .single_value_extended_properties
        .iter()
        .find(|p| p.id.eq_ignore_ascii_case(PR_MESSAGE_SIZE))
        .and_then(|p| p.value.parse().ok())
        .unwrap_or(0);
    let flagged = m.flag.as_ref().is_some_and(|f| f.flag_status == "flagged");
    SourceMeta {
        key: SourceKey(m.id.clone()),
        size,
        flags: item_flags(m.is_read == Some(true), flagged, &m.categories),
        internal_date: date(m.received_date_time.as_deref()),
    }
}

fn item_meta(i: &BoxItem) -> SourceMeta {
    SourceMeta {
        key: SourceKey(i.id.clone()),
        size: i.size,
        flags: Vec::new(),
        internal_date: None,
    }
}

#[async_trait]
impl ChangeSource for GraphSource {
    async fn folders(&mut self) -> Result<Vec<SourceFolder>> {
        // A link the service forgot (410) starts the feed over: the ids
        // stay, so nothing is copied twice.
        let link = Some(self.ids.link.clone()).filter(|l| !l.is_empty());
        let delta = self
            .mailbox()
            .folder_delta(link.as_deref())
            .await
            .map_err(|e| {
                self.session
                    .err("following folder changes", e, ErrorClass::Other)
            })?;
        let quiet = link.is_some()
            && !delta.restarted
            && delta.changed.is_empty()
            && delta.removed.is_empty();
        let mut out = if quiet {
            // No folder made, renamed, moved or deleted since the recorded
            // tree: it serves, and the tree is not listed.
            self.recorded_mail()
        } else {
            self.listed_mail().await?
        };
        self.ids.link = delta.delta_link;
        let mid = self.session.mailbox_id().await?;
        let boxes = self.mailbox().box_folders(&mid).await.map_err(|e| {
            self.session
                .err("listing mailbox folders", e, ErrorClass::Other)
        })?;
        for (f, path) in boxes {
            let class = FolderClass::of_container(&f.class);
            // Mail folders are listed above, by the names mail is copied under.
            if class == FolderClass::Mail {
                continue;
            }
            let folder = Folder {
                name: name(&path),
                special_use: None,
                selectable: true,
                subscribed: true,
            };
            self.folders.insert(folder.name.raw.clone(), (f.id, class));
            out.push(SourceFolder {
                folder,
                class,
                class_name: f.class,
            });
        }
        Ok(out)
    }

    fn known_folders(&mut self, known: FolderIds) {
        self.ids = known;
    }

    fn folder_ids(&self) -> Option<FolderIds> {
        Some(self.ids.clone())
    }

    async fn changes(
        &mut self,
        folder: &FolderName,
        cursor: Option<&Cursor>,
        max: usize,
    ) -> Result<Changes> {
        let (id, class) = self.folder(folder).await?;
        let url = match (cursor, class) {
            (Some(c), _) => c.0.clone(),
            (None, FolderClass::Mail) => {
                let expand: String = form_urlencoded::byte_serialize(
                    format!("singleValueExtendedProperties($filter=id eq '{PR_MESSAGE_SIZE}')")
                        .as_bytes(),
                )
                .collect();
                self.mailbox().url(&format!(
                    "/mailFolders/{id}/messages/delta?$select={SOURCE_SELECT}&$expand={expand}"
                ))
            }
            (None, _) => {
                let mid = self.session.mailbox_id().await?;
                let rest =
                    format!("/folders/{id}/items/delta?$select=id,type,size,lastModifiedDateTime");
                self.mailbox().boxes(&mid, &rest)
            }
        };
        // Every entry of a round is stated whole: an item seen before is
        // changed, one not seen is new, as the engine's table tells.
        let (changes, link) = if class == FolderClass::Mail {
            self.page::<Message>(folder, &url, max, message_meta)
                .await?
        } else {
            self.page::<BoxItem>(folder, &url, max, item_meta).await?
        };
        let (cursor, last) = match link {
            DeltaLink::Next(l) => (l, false),
            DeltaLink::Delta(l) => (l, true),
        };
        Ok(Changes {
            changes,
            cursor: Cursor(cursor),
            last,
        })
    }

    /// The MIME of each message, one request each; its state (read,
    /// flag, categories, received time) is what the folder's delta said,
    /// which the engine recorded in this pass.
    async fn fetch(&mut self, keys: &[SourceKey]) -> Result<Vec<SourceItem>> {
        let mut out = Vec::with_capacity(keys.len());
        for k in keys {
            let got = self
                .mailbox()
                .mime_if_any(&k.0)
                .await
                .map_err(|e| self.err("reading MIME", e))?;
            // Gone since the delta: left out.
            let Some(body) = got else { continue };
            out.push(SourceItem {
                meta: SourceMeta {
                    key: k.clone(),
                    size: body.len() as u64,
                    flags: Vec::new(),
                    internal_date: None,
                },
                body,
            });
        }
        Ok(out)
    }

    fn exports(&self) -> bool {
        true
    }

    fn exports_mail(&self) -> bool {
        true
    }

    async fn export(&mut self, keys: &[SourceKey]) -> Result<Vec<SourceItem>> {
        let mid = self.session.mailbox_id().await?;
        let ids: Vec<String> = keys.iter().map(|k| k.0.clone()).collect();
        let got = self
            .mailbox()
            .export_items(&mid, &ids)
            .await
            .map_err(|e| self.err("exporting items", e))?;
        Ok(got
            .into_iter()
            .map(|e| SourceItem {
                meta: SourceMeta {
                    key: SourceKey(e.id),
                    size: e.data.len() as u64,
                    flags: Vec::new(),
                    internal_date: None,
                },
                body: Bytes::from(e.data),
            })
            .collect())
    }
}
