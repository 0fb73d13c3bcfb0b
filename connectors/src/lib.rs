//! Mail endpoints behind one trait.
//!
//! - [`model`]: folders, items, flags and the statuses a session reports;
//! - [`MailSession`]: what the copy engine needs from any endpoint;
//! - `imap`: IMAP4rev1 over TCP, STARTTLS or implicit TLS (async-imap);
//! - `maildir`: a local Maildir++ tree, Dovecot-compatible;
//! - `utf7`: modified UTF-7 folder names (RFC 3501 §5.1.3);
//! - `mapping`: special-use and regex folder mapping, include/exclude filters;
//! - [`paging`]: a folder's items a page at a time.
//! - [`index`]: which source items a destination folder already holds.
//! - [`source`]: the seam for sources with opaque item keys and a change
//!   cursor per folder; [`ews`] is Exchange Web Services behind it.
//!
//! Sessions never touch the event log: they move bytes and report facts.

pub mod error;
pub mod ews;
pub mod imap;
pub mod index;
pub mod maildir;
pub mod mapping;
pub mod model;
pub mod origin;
pub mod paging;
pub mod source;
pub mod utf7;

pub use error::{ConnectorError, ErrorClass, Result};
pub use model::*;

use async_trait::async_trait;
use bytes::Bytes;
use std::collections::HashMap;

/// Largest item a session reads when the caller sets no limit: 150 MB,
/// Exchange Online's own limit.
pub const DEFAULT_ITEM_LIMIT: u64 = 150 * 1024 * 1024;

/// One logged-in connection to one user's mailbox.
///
/// A session has at most one folder open at a time; item calls act on it.
#[async_trait]
pub trait MailSession: Send {
    /// Capabilities as the server names them (IMAP) or a fixed list (Maildir).
    async fn capabilities(&mut self) -> Result<Vec<String>>;

    /// Every folder, selectable or not, with subscription and special-use.
    async fn list_folders(&mut self) -> Result<Vec<Folder>>;

    /// Opens a folder read-only (source side).
    async fn examine(&mut self, folder: &FolderName) -> Result<FolderStatus>;

    /// Opens a folder read-write (destination side).
    async fn select(&mut self, folder: &FolderName) -> Result<FolderStatus>;

    /// Metadata of up to `max` items with UID >= `from_uid` in the open folder,
    /// ascending by UID. An empty answer means there is nothing at or past `from_uid`.
    async fn list_items(&mut self, from_uid: u32, max: usize) -> Result<Vec<ItemMeta>>;

    /// Items whose flags changed since `modseq` (CONDSTORE). `None` when the
    /// endpoint cannot tell, so the caller falls back to comparing flags.
    async fn changed_since(&mut self, modseq: u64) -> Result<Option<Vec<ItemMeta>>>;

    /// Full items (exact bytes) for the given UIDs of the open folder, in UID order.
    /// UIDs that no longer exist are left out.
    async fn fetch(&mut self, uids: &[u32]) -> Result<Vec<Item>>;

    /// The Message-ID header of each given UID of the open folder that has
    /// one. The default reads whole items; IMAP asks for the header alone.
    async fn message_ids(&mut self, uids: &[u32]) -> Result<HashMap<u32, String>> {
        let mut out = HashMap::new();
        for chunk in uids.chunks(50) {
            for it in self.fetch(chunk).await? {
                if let Some(id) = message_id(&it.body) {
                    out.insert(it.meta.uid, id);
                }
            }
        }
        Ok(out)
    }

    /// The [`Headline`] of each given UID of the open folder, to name items
    /// to people. The default reads whole items; IMAP asks for the three
    /// header fields alone, Maildir reads the header of the file.
    async fn headlines(&mut self, uids: &[u32]) -> Result<HashMap<u32, Headline>> {
        let mut out = HashMap::new();
        for chunk in uids.chunks(50) {
            for it in self.fetch(chunk).await? {
                out.insert(it.meta.uid, Headline::of(&it.body));
            }
        }
        Ok(out)
    }

    /// Creates a folder (and its parents where needed); no error if it exists.
    async fn create_folder(&mut self, folder: &FolderName) -> Result<()>;

    /// Subscribes to a folder.
    async fn subscribe(&mut self, folder: &FolderName) -> Result<()>;

    /// What `examine` would report of each folder, asked all at once where
    /// the endpoint can (pipelined IMAP STATUS, or the answer of the last
    /// LIST-STATUS). A folder's own refusal is its entry's; a lost line is
    /// the call's. Which folder is open afterwards is unspecified.
    async fn statuses(&mut self, folders: &[FolderName]) -> Result<Vec<Result<FolderStatus>>> {
        let mut out = Vec::with_capacity(folders.len());
        for f in folders {
            match self.examine(f).await {
                Err(e) if e.is_transient() => return Err(e),
                r => out.push(r),
            }
        }
        Ok(out)
    }

    /// Creates each folder and subscribes it when asked, all at once where
    /// the endpoint can; each entry says how its folder fared.
    async fn prepare_folders(&mut self, folders: &[(FolderName, bool)]) -> Result<Vec<Result<()>>> {
        let mut out = Vec::with_capacity(folders.len());
        for (f, subscribe) in folders {
            let mut r = self.create_folder(f).await;
            if r.is_ok() && *subscribe {
                r = self.subscribe(f).await;
            }
            match r {
                Err(e) if e.is_transient() => return Err(e),
                r => out.push(r),
            }
        }
        Ok(out)
    }

    /// Appends one message to `folder`; returns its key when the endpoint
    /// tells it (UIDPLUS APPENDUID, or a Maildir's own uidlist).
    async fn append(
        &mut self,
        folder: &FolderName,
        flags: &[Flag],
        internal_date: Option<chrono::DateTime<chrono::FixedOffset>>,
        body: Bytes,
    ) -> Result<Option<AppendUid>>;

    /// Whether `append_many` sends one all-or-nothing command (IMAP MULTIAPPEND).
    fn can_append_many(&self) -> bool {
        false
    }

    /// Appends `items` to `folder` in one command, all or nothing: on `Ok` every
    /// item was stored, in order, with its key when the endpoint tells it
    /// (UIDPLUS APPENDUID with a UID set); on `Err` from a tagged NO/BAD nothing
    /// was stored. Only called when `can_append_many()`; the default appends one
    /// by one (not atomic).
    async fn append_many(
        &mut self,
        folder: &FolderName,
        items: &[AppendItem],
    ) -> Result<Vec<Option<AppendUid>>> {
        let mut uids = Vec::with_capacity(items.len());
        for item in items {
            let uid = self
                .append(folder, &item.flags, item.internal_date, item.body.clone())
                .await?;
            uids.push(uid);
        }
        Ok(uids)
    }

    /// Replaces the flags and keywords of one item in the open folder.
    async fn store_flags(&mut self, uid: u32, flags: &[Flag]) -> Result<()>;

    /// UIDs of the open folder expunged since `modseq` (QRESYNC `VANISHED
    /// (EARLIER)`; it may name UIDs that were never there). `None` when the
    /// endpoint cannot tell, so the caller compares UID sets.
    async fn vanished_since(
        &mut self,
        _modseq: u64,
    ) -> Result<Option<Vec<std::ops::RangeInclusive<u32>>>> {
        Ok(None)
    }

    /// Removes the given UIDs from the open folder (destination side) and
    /// only them; UIDs already gone are no error, so a repeat is harmless.
    async fn remove(&mut self, uids: &[u32]) -> Result<()>;

    /// Ends the session politely.
    async fn logout(&mut self) -> Result<()>;

    /// Items over `max_bytes` are listed and fetched with a reason in
    /// [`ItemMeta::refused`] and no body, however large they say they are.
    fn limit_items(&mut self, _max_bytes: u64) {}

    /// A destination that finds items by their stamped origin, not by
    /// UID and bytes (see [`origin`]).
    fn by_origin(&mut self) -> Option<&mut dyn origin::OriginStore> {
        None
    }

    /// The classes of folders besides mail this destination holds, as
    /// full-fidelity items (a Graph mailbox: calendar, contacts, tasks).
    fn item_classes(&self) -> &'static [source::FolderClass] {
        &[]
    }

    /// Tells the destination that `folder` holds items of `class`, before
    /// it is created or written: a folder is made with its class.
    fn set_folder_class(&mut self, _folder: &FolderName, _class: source::FolderClass) {}

    /// Whether this destination takes mail as the full-fidelity streams a
    /// source that [`source::ChangeSource::exports_mail`] serves (a Graph
    /// mailbox: Graph's own `exportItems`).
    fn imports_mail(&self) -> bool {
        false
    }

    /// Tells such a destination that `folder`'s mail comes as those
    /// streams, before it is written or its items in doubt are looked for.
    fn mail_as_streams(&mut self, _folder: &FolderName) {}
}
