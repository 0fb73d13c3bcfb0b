//! Items and folders deleted at the source since they were copied.
//!
//! A full or delta pass asks the source folder which UIDs were expunged
//! since the last checkpoint's MODSEQ (QRESYNC `VANISHED (EARLIER)`), or
//! else compares its UIDs, page by page, with the UIDs the log knows done,
//! and records each done one gone as `ItemVanished` with where its copy is.
//! Every pass that moves the checkpoint looks, so no expunge falls between
//! two checkpoints unseen. That record is the removal's intent: with the
//! batch's `--propagate-deletions`, every vanished copy not yet recorded
//! removed is removed by its destination UID, then `ItemRemovedAtDestination`
//! is recorded. A crash between the two repeats the removal, which is
//! harmless: a UID is never reused within a UIDVALIDITY. A destination
//! that keeps origins (Graph) tells no UIDs: its copies are found in the
//! folder's change feed by their origin and removed by id.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use ferry_connectors::paging::Pages;
use ferry_connectors::{Folder, FolderName, FolderStatus};
use ferry_events::{Event, ItemKey};

use super::copy::{origin, src};
use super::{Work, WorkErr, copied_places, copies, replica};

/// Records the done items of `folder` (at `uidvalidity`) that are `gone`.
async fn record(
    w: &mut Work<'_>,
    folder: &str,
    uidvalidity: u32,
    gone: impl Fn(u32) -> bool,
) -> Result<(), WorkErr> {
    let gone: BTreeSet<u32> = {
        let views = w.app.views.read().unwrap();
        let Some(mark) = views
            .watermarks
            .get(&w.mailbox.address, folder)
            .filter(|m| m.uidvalidity == uidvalidity)
        else {
            return Ok(());
        };
        mark.done
            .iter()
            .flat_map(|r| r.clone())
            .filter(|u| gone(*u))
            .collect()
    };
    if gone.is_empty() {
        return Ok(());
    }
    let mut copy: HashMap<u32, (String, Option<(u32, u32)>)> =
        copies(w.app, &w.mailbox.address, |k, _, _| {
            k.folder == folder && k.uidvalidity == uidvalidity && gone.contains(&k.uid)
        })
        .map(|(k, df, du)| (k.uid, (df, Some(du))))
        .collect();
    // A destination that keeps origins tells no UIDs: its copies are
    // found again by their origin, so the folder alone is their place.
    if stamped(w) {
        let found = copied_places(w.app, &w.mailbox.address, |k, _| {
            k.folder == folder && k.uidvalidity == uidvalidity && gone.contains(&k.uid)
        });
        for (k, df, _) in found {
            copy.entry(k.uid).or_insert((df, None));
        }
    }
    let events = gone
        .into_iter()
        .map(|uid| {
            let (dest_folder, dest_uid) = match copy.get(&uid).cloned() {
                Some((df, du)) => (Some(df), du),
                None => (None, None),
            };
            Event::ItemVanished {
                mailbox: w.mailbox.address.clone(),
                key: ItemKey {
                    folder: folder.to_string(),
                    uidvalidity,
                    uid,
                },
                dest_folder,
                dest_uid,
            }
        })
        .collect();
    w.record(events).await
}

/// After a pass's copying in the open source folder, before its
/// checkpoint: what is gone from it is recorded, and removed at `dname`
/// when the batch propagates. `fresh`: nothing was done in the folder
/// before this pass, so whatever was done was seen after `st` was read,
/// and the checkpoint's MODSEQ (or the next pass's comparison) finds any
/// expunge since: nothing to ask now.
pub(super) async fn folder(
    w: &mut Work<'_>,
    f: &Folder,
    dname: &FolderName,
    st: &FolderStatus,
    fresh: bool,
) -> Result<(), WorkErr> {
    let since = if fresh {
        None
    } else {
        let views = w.app.views.read().unwrap();
        views
            .watermarks
            .get(&w.mailbox.address, &f.name.raw)
            .filter(|m| m.uidvalidity == st.uidvalidity && !m.done.is_empty())
            .map(|m| m.highest_modseq)
    };
    // Nothing done here yet: nothing to find gone.
    if let Some(since) = since {
        let expunged = match since {
            Some(modseq) => src(w).vanished_since(modseq).await?,
            None => None,
        };
        match expunged {
            Some(ranges) => {
                let gone = |u: u32| ranges.iter().any(|r| r.contains(&u));
                record(w, &f.name.raw, st.uidvalidity, gone).await?;
            }
            None => {
                let mut present = HashSet::new();
                let mut pages = Pages::from(1);
                while let Some(page) = {
                    w.check_stop()?;
                    pages.next(src(w)).await?
                } {
                    present.extend(page.iter().map(|m| m.uid));
                }
                let gone = |u: u32| !present.contains(&u);
                record(w, &f.name.raw, st.uidvalidity, gone).await?;
            }
        }
    }
    if w.propagate_deletions {
        remove(w, dname).await?;
    }
    Ok(())
}

/// Source folders the log knows that the source no longer lists: recorded
/// once, with their items as vanished (and removed from their destination
/// folder, among `dst_listed`, when the batch propagates).
pub(super) async fn folders(
    w: &mut Work<'_>,
    listed: &[Folder],
    dst_listed: &[Folder],
) -> Result<(), WorkErr> {
    let listed: HashSet<&str> = listed.iter().map(|f| f.name.raw.as_str()).collect();
    // (folder, UIDVALIDITY, already recorded, destination folder)
    let gone: Vec<(String, u32, bool, String)> = {
        let views = w.app.views.read().unwrap();
        let Some(m) = views.mailboxes.get(&w.mailbox.address) else {
            return Ok(());
        };
        m.folders
            .iter()
            .filter(|(name, _)| !listed.contains(name.as_str()))
            // Once recorded, only its removals may be left to do.
            .filter(|(_, p)| !p.vanished || w.propagate_deletions)
            .filter_map(|(name, p)| {
                let uv = views
                    .watermarks
                    .get(&w.mailbox.address, name)
                    .map_or(0, |k| k.uidvalidity);
                Some((name.clone(), uv, p.vanished, p.destination.clone()?))
            })
            .collect()
    };
    for (folder, uidvalidity, known, dest) in gone {
        if !known {
            record(w, &folder, uidvalidity, |_| true).await?;
            w.record(vec![Event::FolderVanished {
                mailbox: w.mailbox.address.clone(),
                folder,
            }])
            .await?;
        }
        let dest = dst_listed.iter().find(|f| f.name.raw == dest);
        if let Some(d) = dest.filter(|_| w.propagate_deletions) {
            remove(w, &d.name).await?;
        }
    }
    Ok(())
}

/// Copies in `dname` recorded vanished and not yet recorded removed:
/// source key → destination (UIDVALIDITY, UID), `None` where the
/// destination keeps origins instead of UIDs.
fn vanished(w: &Work<'_>, dname: &str) -> BTreeMap<ItemKey, Option<(u32, u32)>> {
    let stream = ferry_events::stream::mailbox(&w.mailbox.address);
    let mut out = BTreeMap::new();
    let events = ferry_events::EventStore::scan_stream(w.app.store.as_ref(), &stream, 1)
        .filter_map(Result::ok);
    for e in events {
        match e.event {
            Event::ItemVanished {
                key,
                dest_folder: Some(df),
                dest_uid,
                ..
            } if df == dname => {
                out.insert(key, dest_uid);
            }
            Event::ItemRemovedAtDestination { key, .. } => {
                out.remove(&key);
            }
            _ => {}
        }
    }
    out
}

/// The pending copies in `dname` with a destination UID.
fn pending(w: &Work<'_>, dname: &str) -> BTreeMap<ItemKey, (u32, u32)> {
    vanished(w, dname)
        .into_iter()
        .filter_map(|(k, u)| Some((k, u?)))
        .collect()
}

/// The pending copies in `dname` without one (a destination of origins).
fn pending_stamped(w: &Work<'_>, dname: &str) -> BTreeSet<ItemKey> {
    vanished(w, dname)
        .into_iter()
        .filter(|(_, u)| u.is_none())
        .map(|(k, _)| k)
        .collect()
}

/// Whether the destination keeps origins (Graph) rather than UIDs.
fn stamped(w: &mut Work<'_>) -> bool {
    w.dst
        .as_mut()
        .is_some_and(|d| d.session.by_origin().is_some())
}

/// At a destination that keeps origins: the pending copies in `dname` are
/// found in the folder's change feed by their origin and removed by id
/// (twenty to a request). A copy the feed no longer shows is gone already;
/// each is recorded removed, with no destination UID (`(0, 0)`).
async fn remove_stamped(w: &mut Work<'_>, dname: &FolderName) -> Result<(), WorkErr> {
    let todo = pending_stamped(w, &dname.raw);
    if todo.is_empty() {
        return Ok(());
    }
    let keys: HashMap<String, ItemKey> = copied_places(w.app, &w.mailbox.address, |k, df| {
        df == dname.raw && todo.contains(k)
    })
    .map(|(k, _, digest)| (origin(&k, &digest).key, k))
    .collect();
    let table = replica::refresh(w, dname).await?;
    let ids: Vec<String> = table
        .items
        .iter()
        .filter(|(_, r)| r.origin.as_ref().is_some_and(|(k, _)| keys.contains_key(k)))
        .map(|(id, _)| id.clone())
        .collect();
    if !ids.is_empty() {
        let dst = w.dst.as_mut().expect("connected").session.as_mut();
        let store = dst.by_origin().expect("checked by the caller");
        store.remove_ids(&ids).await?;
    }
    let events = todo
        .into_iter()
        .map(|key| Event::ItemRemovedAtDestination {
            mailbox: w.mailbox.address.clone(),
            key,
            dest_folder: dname.raw.clone(),
            dest_uid: (0, 0),
        })
        .collect();
    w.record(events).await
}

/// Removes the pending copies in `dname` whose UIDVALIDITY still holds.
async fn remove(w: &mut Work<'_>, dname: &FolderName) -> Result<(), WorkErr> {
    if stamped(w) {
        return remove_stamped(w, dname).await;
    }
    let todo = pending(w, &dname.raw);
    if todo.is_empty() {
        return Ok(());
    }
    let dst = w.dst.as_mut().expect("connected");
    let st = dst.select(dname).await?;
    let todo: Vec<(ItemKey, (u32, u32))> = todo
        .into_iter()
        .filter(|(_, (v, _))| *v == st.uidvalidity)
        .collect();
    if todo.is_empty() {
        return Ok(());
    }
    let uids: Vec<u32> = todo.iter().map(|(_, (_, u))| *u).collect();
    dst.remove(&uids).await?;
    let events = todo
        .into_iter()
        .map(|(key, dest_uid)| Event::ItemRemovedAtDestination {
            mailbox: w.mailbox.address.clone(),
            key,
            dest_folder: dname.raw.clone(),
            dest_uid,
        })
        .collect();
    w.record(events).await
}
