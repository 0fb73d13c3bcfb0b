//! Destinations that find an item by the origin stamped on it.
//!
//! An IMAP or Maildir destination gives back an item's exact bytes, so an
//! item in doubt is found by its digest from the UIDNEXT its intent
//! recorded. Microsoft Graph gives back neither the bytes (Exchange
//! rebuilds the headers) nor a UID: it is asked instead whether it holds
//! an item stamped with the source item's key and digest. A session that
//! can be asked so says it by [`crate::MailSession::by_origin`].

use async_trait::async_trait;
use bytes::Bytes;

use crate::{Flag, FolderName, Result};

/// Where a copy came from: the source item's key and the digest of its
/// bytes, stamped on the copy when it is written.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Origin {
    pub key: String,
    pub digest: String,
}

/// A copy as a folder's change feed shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Held {
    /// The destination's own id of the item.
    pub id: String,
    /// What is stamped on it; `None` for an item mailferry did not write.
    pub origin: Option<Origin>,
    /// Its state as flags, only those the destination keeps
    /// (see [`OriginStore::kept_flags`]).
    pub flags: Vec<Flag>,
}

/// A folder's changes since a link: one round of its change feed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Changes {
    /// Items added or changed (every item on a first or restarted round).
    pub seen: Vec<Held>,
    /// Ids of items deleted or moved out.
    pub gone: Vec<String>,
    /// Where the next round starts.
    pub link: String,
    /// The given link was refused and the round started over: what was
    /// known of the folder no longer holds.
    pub restarted: bool,
}

/// The write, lookup and flag change of a destination that keeps origins.
#[async_trait]
pub trait OriginStore: Send {
    /// Writes one message into `folder` stamped with `origin`, with its
    /// flags and keywords, and its internal date as the received time.
    async fn write_stamped(
        &mut self,
        folder: &FolderName,
        flags: &[Flag],
        internal_date: Option<chrono::DateTime<chrono::FixedOffset>>,
        body: Bytes,
        origin: &Origin,
    ) -> Result<()>;

    /// Whether `folder` holds a complete item stamped with `origin`. A
    /// write cut short half-way is removed here, so it is written again.
    async fn holds(&mut self, folder: &FolderName, origin: &Origin) -> Result<bool>;

    /// Brings the item stamped `origin` to `flags`; `Ok(false)` when it
    /// already had them or is not there, so only a change is recorded.
    async fn set_flags(
        &mut self,
        folder: &FolderName,
        origin: &Origin,
        flags: &[Flag],
    ) -> Result<bool>;

    /// Removes the copies in `folder` that carry `origin`'s digest, all
    /// but the first `keep`: a copy that a changed source item replaced.
    async fn remove_copies(
        &mut self,
        folder: &FolderName,
        origin: &Origin,
        keep: usize,
    ) -> Result<()> {
        let _ = (folder, origin, keep);
        Err(crate::ConnectorError::Refused {
            endpoint: String::new(),
            op: "removing a replaced copy",
            class: crate::ErrorClass::Other,
            text: "the destination replaces no copies".into(),
        })
    }

    /// The folder's changes since `link` (every item without one), each
    /// with its origin: what lets a pass compare and act without asking
    /// item by item.
    async fn changes(&mut self, folder: &FolderName, link: Option<&str>) -> Result<Changes>;

    /// Of `flags`, those the destination keeps, as [`Held::flags`] shows them.
    fn kept_flags(&self, flags: &[Flag]) -> Vec<Flag>;

    /// Brings the item `id`, which holds `have` (as [`Held::flags`]), to
    /// `flags`.
    async fn set_flags_of(&mut self, id: &str, flags: &[Flag], have: &[Flag]) -> Result<()>;

    /// Stamps the copy `id` with `origin` in place of the one it carries:
    /// its source item, numbered anew, is paired with it again.
    async fn stamp_id(&mut self, id: &str, origin: &Origin) -> Result<()>;

    /// Removes the items `ids`; one already gone is not an error.
    async fn remove_ids(&mut self, ids: &[String]) -> Result<()>;
}
