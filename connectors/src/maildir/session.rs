//! [`MaildirSession`]: the [`MailSession`] over a Maildir++ tree.
//!
//! A folder's contents are read when it is opened (EXAMINE/SELECT), like an
//! IMAP server's view: files another program drops in later show up at the
//! next open, with fresh UIDs. Opening a folder writes its uidlist, even
//! read-only, since that is what keeps UIDs stable: beside the messages for
//! a tree we write ([`open`]), in a directory of the caller's for a source
//! ([`open_source`]), which is never written. The session assumes it is the
//! only mailferry writer of the tree; Dovecot or a delivery agent may add
//! files alongside.
//!
//! A file that is not a regular file (a symlink, a FIFO) or whose name holds
//! a control character is listed with the reason it cannot be copied
//! ([`ItemMeta::refused`]) and never read; a file read past the session's
//! item limit (whatever its size said) is fetched with that reason instead.
//!
//! File system calls are blocking, so each trait call runs on tokio's
//! blocking pool; a call cancelled half-way leaves the session unusable
//! (later calls fail), never the tree inconsistent.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{Read, Write};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, FixedOffset, Utc};

use crate::error::{ConnectorError, ErrorClass, Result};
use crate::model::{
    AppendUid, Flag, Folder, FolderName, FolderStatus, Headline, Item, ItemMeta, SpecialUse,
};
use crate::{DEFAULT_ITEM_LIMIT, MailSession};

use super::flags::{self, Keywords};
use super::layout;
use super::uidlist::{UIDLIST_FILE, UidList};
use super::{create_new, describe, io_err, open_regular, read_capped, sync_dir};

/// The most of a file read for its headline.
const HEADER_MAX: u64 = 64 * 1024;

/// Opens the Maildir++ tree at `root` (INBOX). With `create`, a missing
/// root gets `cur/ new/ tmp/`; without, a root lacking `cur/` is an error.
pub fn open(root: &Path, create: bool) -> Result<MaildirSession> {
    let endpoint = format!("maildir:{}", root.display());
    if create {
        make_maildir(root)?;
    }
    check_maildir(root, &endpoint)?;
    Ok(MaildirSession {
        inner: Some(Store {
            root: root.to_path_buf(),
            endpoint,
            host: hostname(),
            uid_dir: None,
            item_limit: DEFAULT_ITEM_LIMIT,
            open: None,
        }),
    })
}

/// Opens the Maildir++ tree at `root` as a source: read-only, never written
/// (every write is refused); its folders' UIDs are kept in `uid_dir`, which
/// is created (mode 0700) when missing.
pub fn open_source(root: &Path, uid_dir: &Path) -> Result<MaildirSession> {
    let endpoint = format!("maildir:{}", root.display());
    check_maildir(root, &endpoint)?;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(uid_dir)
        .map_err(io_err("create directory", uid_dir))?;
    Ok(MaildirSession {
        inner: Some(Store {
            root: root.to_path_buf(),
            endpoint,
            host: hostname(),
            uid_dir: Some(uid_dir.to_path_buf()),
            item_limit: DEFAULT_ITEM_LIMIT,
            open: None,
        }),
    })
}

/// A real directory (not a symlink to one) holding real `cur/` and `new/`:
/// a symlinked one would lead files opened below it anywhere.
fn is_maildir(dir: &Path) -> bool {
    let real_dir = |p: &Path| std::fs::symlink_metadata(p).is_ok_and(|m| m.is_dir());
    real_dir(dir) && real_dir(&dir.join("cur")) && real_dir(&dir.join("new"))
}

fn check_maildir(root: &Path, endpoint: &str) -> Result<()> {
    if is_maildir(root) {
        return Ok(());
    }
    Err(ConnectorError::Refused {
        endpoint: endpoint.to_string(),
        op: "open",
        class: ErrorClass::Folder,
        text: "not a Maildir (no cur/ and new/ directories, or a symbolic link)".into(),
    })
}

/// One user's Maildir++ tree. See the [module docs](self).
pub struct MaildirSession {
    /// Taken while a blocking call runs; `None` afterwards only when that
    /// call was cancelled or panicked.
    inner: Option<Store>,
}

impl MaildirSession {
    async fn run<T, F>(&mut self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Store) -> Result<T> + Send + 'static,
    {
        let mut store = self.inner.take().ok_or_else(|| ConnectorError::Protocol {
            endpoint: "maildir".into(),
            op: "session",
            text: "an earlier call was cancelled; open a new session".into(),
        })?;
        let endpoint = store.endpoint.clone();
        let (store, result) = tokio::task::spawn_blocking(move || {
            let result = f(&mut store);
            (store, result)
        })
        .await
        .map_err(|e| ConnectorError::Protocol {
            endpoint,
            op: "session",
            text: format!("blocking task failed: {e}"),
        })?;
        self.inner = Some(store);
        result
    }
}

#[async_trait]
impl MailSession for MaildirSession {
    async fn capabilities(&mut self) -> Result<Vec<String>> {
        Ok(vec!["MAILDIR".into(), "UIDPLUS".into()])
    }

    async fn list_folders(&mut self) -> Result<Vec<Folder>> {
        self.run(|s| s.list_folders()).await
    }

    async fn examine(&mut self, folder: &FolderName) -> Result<FolderStatus> {
        let folder = folder.clone();
        self.run(move |s| s.open_folder(&folder, true)).await
    }

    async fn select(&mut self, folder: &FolderName) -> Result<FolderStatus> {
        let folder = folder.clone();
        self.run(move |s| s.open_folder(&folder, false)).await
    }

    async fn list_items(&mut self, from_uid: u32, max: usize) -> Result<Vec<ItemMeta>> {
        self.run(move |s| s.list_items(from_uid, max)).await
    }

    async fn changed_since(&mut self, _modseq: u64) -> Result<Option<Vec<ItemMeta>>> {
        // No MODSEQs in a Maildir: the caller compares flags.
        Ok(None)
    }

    async fn fetch(&mut self, uids: &[u32]) -> Result<Vec<Item>> {
        let uids = uids.to_vec();
        self.run(move |s| s.fetch(&uids)).await
    }

    async fn headlines(&mut self, uids: &[u32]) -> Result<HashMap<u32, Headline>> {
        let uids = uids.to_vec();
        self.run(move |s| s.headlines(&uids)).await
    }

    async fn create_folder(&mut self, folder: &FolderName) -> Result<()> {
        let folder = folder.clone();
        self.run(move |s| s.create_folder(&folder)).await
    }

    async fn subscribe(&mut self, folder: &FolderName) -> Result<()> {
        let folder = folder.clone();
        self.run(move |s| {
            s.writable("subscribe")?;
            let segments = s.segments(&folder)?;
            layout::add_subscription(&s.root, &segments)
        })
        .await
    }

    async fn append(
        &mut self,
        folder: &FolderName,
        flags: &[Flag],
        internal_date: Option<DateTime<FixedOffset>>,
        body: Bytes,
    ) -> Result<Option<AppendUid>> {
        let (folder, flags) = (folder.clone(), flags.to_vec());
        self.run(move |s| s.append(&folder, &flags, internal_date, &body).map(Some))
            .await
    }

    async fn store_flags(&mut self, uid: u32, flags: &[Flag]) -> Result<()> {
        let flags = flags.to_vec();
        self.run(move |s| s.store_flags(uid, &flags)).await
    }

    async fn remove(&mut self, uids: &[u32]) -> Result<()> {
        let uids = uids.to_vec();
        self.run(move |s| s.remove(&uids)).await
    }

    async fn logout(&mut self) -> Result<()> {
        if let Some(store) = self.inner.as_mut() {
            store.open = None;
        }
        Ok(())
    }

    fn limit_items(&mut self, max_bytes: u64) {
        if let Some(store) = self.inner.as_mut() {
            store.item_limit = max_bytes;
        }
    }
}

/// Where a message file is now.
#[derive(Debug, Clone)]
struct Entry {
    /// `cur` or `new`.
    sub: &'static str,
    file_name: String,
}

struct OpenFolder {
    dir: PathBuf,
    segments: Vec<String>,
    read_only: bool,
    uids: UidList,
    keywords: Keywords,
    entries: BTreeMap<u32, Entry>,
}

struct Store {
    root: PathBuf,
    endpoint: String,
    host: String,
    /// Where a source's uidlists live; `None`: beside the messages, and the
    /// tree may be written.
    uid_dir: Option<PathBuf>,
    /// Items over this many bytes are refused, never read whole.
    item_limit: u64,
    open: Option<OpenFolder>,
}

/// Folders that Dovecot's default configuration marks special-use.
const DOVECOT_SPECIAL: &[(&str, SpecialUse)] = &[
    ("Drafts", SpecialUse::Drafts),
    ("Junk", SpecialUse::Junk),
    ("Trash", SpecialUse::Trash),
    ("Sent", SpecialUse::Sent),
    ("Sent Messages", SpecialUse::Sent),
];

impl Store {
    fn refuse(&self, op: &'static str, class: ErrorClass, text: String) -> ConnectorError {
        ConnectorError::Refused {
            endpoint: self.endpoint.clone(),
            op,
            class,
            text,
        }
    }

    /// Refuses every write to a source tree.
    fn writable(&self, op: &'static str) -> Result<()> {
        match self.uid_dir {
            None => Ok(()),
            Some(_) => Err(self.refuse(op, ErrorClass::Folder, "a source is never written".into())),
        }
    }

    /// The uidlist of the folder in `dir` with these segments.
    fn uidlist(&self, segments: &[String], dir: &Path) -> Result<UidList> {
        let path = match &self.uid_dir {
            None => dir.join(UIDLIST_FILE),
            Some(uid_dir) => {
                let name = layout::dir_name(segments, &self.endpoint)?;
                uid_dir.join(format!("{}.uidlist", name.as_deref().unwrap_or("INBOX")))
            }
        };
        UidList::load_or_create(path, &self.endpoint)
    }

    fn segments(&self, folder: &FolderName) -> Result<Vec<String>> {
        layout::segments_of(folder).ok_or_else(|| {
            self.refuse(
                "folder name",
                ErrorClass::Folder,
                format!("{:?} is not valid modified UTF-7", folder.raw),
            )
        })
    }

    fn dir_of(&self, folder: &FolderName) -> Result<(Vec<String>, PathBuf)> {
        let segments = self.segments(folder)?;
        let dir = layout::folder_dir(&self.root, &segments, &self.endpoint)?;
        Ok((segments, dir))
    }

    fn list_folders(&mut self) -> Result<Vec<Folder>> {
        let subscribed: HashSet<Vec<String>> = layout::read_subscriptions(&self.root)?
            .into_iter()
            .collect();
        let mut found: BTreeMap<Vec<String>, bool> = BTreeMap::new();
        found.insert(vec!["INBOX".into()], true);
        let entries = std::fs::read_dir(&self.root).map_err(io_err("list", &self.root))?;
        for entry in entries {
            let entry = entry.map_err(io_err("list", &self.root))?;
            let Some(name) = entry.file_name().to_str().map(str::to_string) else {
                continue;
            };
            let Some(segments) = layout::parse_dir_name(&name) else {
                continue;
            };
            // A symlinked folder could lead anywhere: not ours to read.
            if !entry.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            let selectable = is_maildir(&entry.path());
            // Maildir++ needs no directory for a parent: show it as \NoSelect.
            for depth in 1..segments.len() {
                found.entry(segments[..depth].to_vec()).or_insert(false);
            }
            let slot = found.entry(segments).or_insert(false);
            *slot |= selectable;
        }
        Ok(found
            .into_iter()
            .map(|(segments, selectable)| {
                let special_use = if layout::is_inbox(&segments) {
                    Some(SpecialUse::Inbox)
                } else if segments.len() == 1 {
                    DOVECOT_SPECIAL
                        .iter()
                        .find(|(n, _)| *n == segments[0])
                        .map(|&(_, u)| u)
                } else {
                    None
                };
                Folder {
                    subscribed: subscribed.contains(&segments),
                    name: layout::folder_name(segments),
                    special_use,
                    selectable,
                }
            })
            .collect())
    }

    fn open_folder(&mut self, folder: &FolderName, read_only: bool) -> Result<FolderStatus> {
        self.open = None;
        let (segments, dir) = self.dir_of(folder)?;
        if !is_maildir(&dir) {
            return Err(self.refuse(
                "open folder",
                ErrorClass::Folder,
                format!("no folder {:?}", folder.raw),
            ));
        }
        let read_only = read_only || self.uid_dir.is_some();
        let mut uids = self.uidlist(&segments, &dir)?;
        let keywords = Keywords::load(&dir)?;
        let entries = scan(&dir, &mut uids)?;
        let status = FolderStatus {
            uidvalidity: uids.uidvalidity(),
            uidnext: uids.next_uid(),
            exists: entries.len() as u32,
            highest_modseq: None,
        };
        self.open = Some(OpenFolder {
            dir,
            segments,
            read_only,
            uids,
            keywords,
            entries,
        });
        Ok(status)
    }

    fn list_items(&mut self, from_uid: u32, max: usize) -> Result<Vec<ItemMeta>> {
        let open = self.open.as_mut().ok_or(ConnectorError::NoFolder)?;
        let wanted: Vec<u32> = open
            .entries
            .range(from_uid..)
            .map(|(&uid, _)| uid)
            .collect();
        let mut out = Vec::with_capacity(max.min(wanted.len()));
        for uid in wanted {
            if out.len() >= max {
                break;
            }
            let Some((path, entry)) = locate(open, uid)? else {
                continue;
            };
            let meta = match std::fs::symlink_metadata(&path) {
                Ok(meta) => meta,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(io_err("stat", &path)(e)),
            };
            let mut item = item_meta(uid, &entry, &meta, &open.keywords);
            item.refused = refusal(&entry.file_name, &meta);
            out.push(item);
        }
        Ok(out)
    }

    fn fetch(&mut self, uids: &[u32]) -> Result<Vec<Item>> {
        let open = self.open.as_mut().ok_or(ConnectorError::NoFolder)?;
        let mut uids = uids.to_vec();
        uids.sort_unstable();
        uids.dedup();
        let mut out = Vec::with_capacity(uids.len());
        for uid in uids {
            let Some((path, entry)) = locate(open, uid)? else {
                continue;
            };
            let refused = |meta: ItemMeta, why: String| Item {
                meta: ItemMeta {
                    refused: Some(why),
                    ..meta
                },
                body: Bytes::new(),
            };
            let lstat = match std::fs::symlink_metadata(&path) {
                Ok(meta) => meta,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(io_err("stat", &path)(e)),
            };
            let meta = item_meta(uid, &entry, &lstat, &open.keywords);
            if let Some(why) = refusal(&entry.file_name, &lstat) {
                out.push(refused(meta, why));
                continue;
            }
            // Opened without following a symlink swapped in since the stat,
            // and read through the limit whatever the size said.
            let read = open_regular(&path).and_then(|f| read_capped(f, self.item_limit));
            match read {
                Ok(Ok(body)) => out.push(Item {
                    meta: ItemMeta {
                        size: body.len() as u64,
                        ..meta
                    },
                    body: Bytes::from(body),
                }),
                Ok(Err(read)) => {
                    let why = over_limit(read, self.item_limit);
                    out.push(refused(meta, why));
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) if e.kind() == std::io::ErrorKind::InvalidInput => {
                    out.push(refused(meta, e.to_string()));
                }
                Err(e) => return Err(io_err("read", &path)(e)),
            }
        }
        Ok(out)
    }

    /// Each item's headline from the start of its file: a header longer
    /// than [`HEADER_MAX`] is read that far. Items that cannot be read are
    /// left out.
    fn headlines(&mut self, uids: &[u32]) -> Result<HashMap<u32, Headline>> {
        let open = self.open.as_mut().ok_or(ConnectorError::NoFolder)?;
        let mut out = HashMap::new();
        for &uid in uids {
            let Some((path, _)) = locate(open, uid)? else {
                continue;
            };
            let mut head = Vec::new();
            let read = open_regular(&path).and_then(|f| f.take(HEADER_MAX).read_to_end(&mut head));
            if read.is_ok() {
                out.insert(uid, Headline::of(&head));
            }
        }
        Ok(out)
    }

    fn create_folder(&mut self, folder: &FolderName) -> Result<()> {
        self.writable("create folder")?;
        let (segments, dir) = self.dir_of(folder)?;
        make_maildir(&dir)?;
        if dir != self.root {
            let marker = dir.join("maildirfolder");
            if std::fs::symlink_metadata(&marker).is_err() {
                create_new(&marker).map_err(io_err("create", &marker))?;
                sync_dir(&dir)?;
            }
        }
        // Fixes UIDVALIDITY at creation.
        self.uidlist(&segments, &dir)?;
        Ok(())
    }

    fn append(
        &mut self,
        folder: &FolderName,
        flags: &[Flag],
        internal_date: Option<DateTime<FixedOffset>>,
        body: &[u8],
    ) -> Result<AppendUid> {
        self.writable("append")?;
        let (segments, dir) = self.dir_of(folder)?;
        if !is_maildir(&dir) {
            // IMAP's [TRYCREATE]: the caller creates the folder and retries.
            return Err(self.refuse(
                "append",
                ErrorClass::Folder,
                format!("no folder {:?}", folder.raw),
            ));
        }
        let endpoint = self.endpoint.clone();
        let into_open = self.open.as_ref().is_some_and(|o| o.dir == dir);
        let mut loaded;
        let (uids, keywords) = if into_open {
            let open = self.open.as_mut().expect("checked above");
            (&mut open.uids, &mut open.keywords)
        } else {
            loaded = (self.uidlist(&segments, &dir)?, Keywords::load(&dir)?);
            (&mut loaded.0, &mut loaded.1)
        };

        let mut new_keywords = keywords.clone();
        let (info, added) = flags::info_for(flags, "", &mut new_keywords, &endpoint)?;
        if added {
            new_keywords.save()?;
            *keywords = new_keywords;
        }

        let base = unique_base(&self.host, body.len());
        let tmp = dir.join("tmp").join(&base);
        let mut file = create_new(&tmp).map_err(io_err("create", &tmp))?;
        file.write_all(body).map_err(io_err("write", &tmp))?;
        if let Some(date) = internal_date {
            let when = SystemTime::from(date.with_timezone(&Utc));
            let times = std::fs::FileTimes::new()
                .set_modified(when)
                .set_accessed(when);
            file.set_times(times).map_err(io_err("set times", &tmp))?;
        }
        file.sync_all().map_err(io_err("fsync", &tmp))?;
        drop(file);

        // UID first: a crash before the rename leaves a harmless unused line,
        // never a listed file without a UID the caller was told.
        let uid = uids.assign(std::slice::from_ref(&base))?[0];
        let uidvalidity = uids.uidvalidity();
        let file_name = format!("{base}:2,{info}");
        let cur = dir.join("cur");
        let dest = cur.join(&file_name);
        std::fs::rename(&tmp, &dest).map_err(io_err("rename into cur", &dest))?;
        sync_dir(&cur)?;

        if let Some(open) = self.open.as_mut().filter(|o| o.dir == dir) {
            open.entries.insert(
                uid,
                Entry {
                    sub: "cur",
                    file_name,
                },
            );
        }
        Ok(AppendUid { uidvalidity, uid })
    }

    /// The open folder, for `op` to change it.
    fn open_writable(&mut self, op: &'static str) -> Result<&mut OpenFolder> {
        self.writable(op)?;
        let endpoint = self.endpoint.clone();
        let open = self.open.as_mut().ok_or(ConnectorError::NoFolder)?;
        if open.read_only {
            return Err(ConnectorError::Refused {
                endpoint,
                op,
                class: ErrorClass::Folder,
                text: format!("folder {:?} is open read-only", open.segments.join("/")),
            });
        }
        Ok(open)
    }

    fn remove(&mut self, uids: &[u32]) -> Result<()> {
        let open = self.open_writable("remove")?;
        for &uid in uids {
            if let Some((path, entry)) = locate(open, uid)? {
                std::fs::remove_file(&path).map_err(io_err("remove", &path))?;
                sync_dir(&open.dir.join(entry.sub))?;
                open.entries.remove(&uid);
            }
        }
        Ok(())
    }

    fn store_flags(&mut self, uid: u32, flags: &[Flag]) -> Result<()> {
        let endpoint = self.endpoint.clone();
        let open = self.open_writable("store flags")?;
        let Some((path, entry)) = locate(open, uid)? else {
            return Err(ConnectorError::Refused {
                endpoint,
                op: "store flags",
                class: ErrorClass::Item,
                text: format!("no message with UID {uid}"),
            });
        };
        let (base, old_info) = flags::split_file_name(&entry.file_name);
        let mut new_keywords = open.keywords.clone();
        let (info, added) = flags::info_for(flags, old_info, &mut new_keywords, &endpoint)?;
        if added {
            new_keywords.save()?;
            open.keywords = new_keywords;
        }
        let file_name = format!("{base}:2,{info}");
        if entry.sub == "cur" && file_name == entry.file_name {
            return Ok(());
        }
        let cur = open.dir.join("cur");
        let dest = cur.join(&file_name);
        std::fs::rename(&path, &dest).map_err(io_err("rename", &path))?;
        sync_dir(&cur)?;
        if entry.sub != "cur" {
            sync_dir(&open.dir.join(entry.sub))?;
        }
        open.entries.insert(
            uid,
            Entry {
                sub: "cur",
                file_name,
            },
        );
        Ok(())
    }
}

/// Creates `dir` with `cur/ new/ tmp/` (and missing parents), fsyncing what
/// it creates.
fn make_maildir(dir: &Path) -> Result<()> {
    let existed = dir.is_dir();
    std::fs::create_dir_all(dir).map_err(io_err("create directory", dir))?;
    for sub in ["cur", "new", "tmp"] {
        let path = dir.join(sub);
        if !path.is_dir() {
            std::fs::create_dir(&path).map_err(io_err("create directory", &path))?;
        }
    }
    sync_dir(dir)?;
    if !existed && let Some(parent) = dir.parent() {
        sync_dir(parent)?;
    }
    Ok(())
}

/// Reads `cur/` and `new/` (names only), gives unseen bases UIDs in
/// file-name order, and returns the present messages by UID.
fn scan(dir: &Path, uids: &mut UidList) -> Result<BTreeMap<u32, Entry>> {
    let mut by_base: HashMap<String, Entry> = HashMap::new();
    for sub in ["new", "cur"] {
        let path = dir.join(sub);
        let listing = std::fs::read_dir(&path).map_err(io_err("list", &path))?;
        for entry in listing {
            let entry = entry.map_err(io_err("list", &path))?;
            let Some(name) = entry.file_name().to_str().map(str::to_string) else {
                tracing::warn!(dir = %path.display(), "skipping a file whose name is not UTF-8");
                continue;
            };
            if name.starts_with('.') {
                continue;
            }
            let base = flags::split_file_name(&name).0.to_string();
            // Seen in both while another program moves it: `cur` wins.
            by_base.insert(
                base,
                Entry {
                    sub,
                    file_name: name,
                },
            );
        }
    }
    let mut unknown: Vec<&String> = by_base.keys().filter(|b| uids.uid(b).is_none()).collect();
    unknown.sort_by(|a, b| by_base[*a].file_name.cmp(&by_base[*b].file_name));
    let unknown: Vec<String> = unknown.into_iter().cloned().collect();
    uids.assign(&unknown)?;
    Ok(by_base
        .into_iter()
        .filter_map(|(base, entry)| Some((uids.uid(&base)?, entry)))
        .collect())
}

/// The current path of `uid`: if its file moved (flags changed by another
/// program, or `new/` → `cur/`), finds it again by its base. `None` when
/// it is gone.
fn locate(open: &mut OpenFolder, uid: u32) -> Result<Option<(PathBuf, Entry)>> {
    let Some(entry) = open.entries.get(&uid).cloned() else {
        return Ok(None);
    };
    let path = open.dir.join(entry.sub).join(&entry.file_name);
    if std::fs::symlink_metadata(&path).is_ok() {
        return Ok(Some((path, entry)));
    }
    let base = flags::split_file_name(&entry.file_name).0.to_string();
    for sub in ["cur", "new"] {
        let dir = open.dir.join(sub);
        let listing = std::fs::read_dir(&dir).map_err(io_err("list", &dir))?;
        for found in listing {
            let found = found.map_err(io_err("list", &dir))?;
            let Some(name) = found.file_name().to_str().map(str::to_string) else {
                continue;
            };
            if flags::split_file_name(&name).0 == base {
                let entry = Entry {
                    sub,
                    file_name: name,
                };
                open.entries.insert(uid, entry.clone());
                return Ok(Some((found.path(), entry)));
            }
        }
    }
    open.entries.remove(&uid);
    Ok(None)
}

fn item_meta(uid: u32, entry: &Entry, meta: &std::fs::Metadata, keywords: &Keywords) -> ItemMeta {
    let (_, info) = flags::split_file_name(&entry.file_name);
    ItemMeta {
        uid,
        size: meta.len(),
        flags: flags::flags_of(info, keywords),
        internal_date: meta
            .modified()
            .ok()
            .map(|t| DateTime::<Utc>::from(t).fixed_offset()),
        modseq: None,
        refused: None,
    }
}

/// Why a message file is not copied, seen from its name and `lstat`: a
/// control character in the name, not a regular file. (A size over the
/// limit the engine sees itself; reads stop at the limit whatever the size.)
fn refusal(file_name: &str, lstat: &std::fs::Metadata) -> Option<String> {
    if file_name.chars().any(char::is_control) {
        return Some(format!("file name {file_name:?} holds a control character"));
    }
    if !lstat.file_type().is_file() {
        return Some(format!(
            "not a regular file but {}",
            describe(lstat.file_type())
        ));
    }
    None
}

fn over_limit(size: u64, limit: u64) -> String {
    format!("{size} bytes or more, over the limit of {limit} bytes")
}

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// A new file base in the usual Maildir form, `SECS.M<usec>P<pid>Q<n>.HOST,S=SIZE`
/// (Dovecot reads the size from `S=`).
fn unique_base(host: &str, size: usize) -> String {
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    format!(
        "{}.M{}P{}Q{}.{},S={}",
        now.as_secs(),
        now.subsec_micros(),
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed),
        host,
        size
    )
}

/// This machine's name with `/` and `:` escaped, as the Maildir spec asks.
fn hostname() -> String {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let name = name.trim();
    let name = if name.is_empty() { "localhost" } else { name };
    name.replace('/', "\\057").replace(':', "\\072")
}
