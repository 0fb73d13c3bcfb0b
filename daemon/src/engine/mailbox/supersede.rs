//! Copies that a changed source item replaces.
//!
//! Items copied whole (calendar, contacts and tasks into Graph's import
//! API) cannot be changed in place: a change at the source is a new
//! stream, and `keyed` gives the changed item a new number and records
//! `CopySuperseded`. Once the new number is done in the folder, the old
//! copy is removed at the destination, found by the digest its copy
//! recorded, and `SupersededRemoved` follows. A crash between the two
//! repeats the removal, which then finds nothing to remove.

use std::collections::{BTreeMap, HashMap, HashSet};

use ferry_connectors::{Folder, FolderName, FolderStatus};
use ferry_events::{Event, ItemKey};

use super::copy::origin;
use super::{Work, WorkErr};

/// Removes the superseded copies in `dname` whose replacement is done.
pub(super) async fn folder(
    w: &mut Work<'_>,
    f: &Folder,
    dname: &FolderName,
    st: &FolderStatus,
) -> Result<(), WorkErr> {
    let whole = w
        .src
        .as_ref()
        .and_then(|c| c.keyed.as_ref())
        .and_then(|k| k.class_of(&f.name.raw))
        .is_some_and(|c| c != ferry_connectors::source::FolderClass::Mail);
    if !whole {
        return Ok(());
    }
    let (pending, digests) = pending(w, &f.name.raw, &dname.raw, st.uidvalidity);
    if pending.is_empty() {
        return Ok(());
    }
    let done: HashSet<u32> = {
        let views = w.app.views.read().unwrap();
        let Some(mark) = views
            .watermarks
            .get(&w.mailbox.address, &f.name.raw)
            .filter(|m| m.uidvalidity == st.uidvalidity)
        else {
            return Ok(());
        };
        pending
            .values()
            .copied()
            .filter(|by| mark.is_done(*by))
            .collect()
    };
    let mut events = Vec::new();
    for (key, by) in pending {
        // Only a copied replacement removes the old copy: one skipped (too
        // large) or failed leaves it, the best the destination holds.
        if !done.contains(&by) || !digests.contains_key(&by) {
            continue;
        }
        if let Some(d) = digests.get(&key.uid) {
            // An unchanged stream was imported again: one copy stays.
            let keep = usize::from(digests.get(&by) == Some(d));
            let dst = w.dst.as_mut().expect("connected").session.as_mut();
            let Some(dst) = dst.by_origin() else {
                return Ok(());
            };
            dst.remove_copies(dname, &origin(&key, d), keep).await?;
        }
        events.push(Event::SupersededRemoved {
            mailbox: w.mailbox.address.clone(),
            key,
            dest_folder: dname.raw.clone(),
        });
    }
    w.record(events).await
}

/// The superseded items of `folder` at `uidvalidity` not yet removed
/// (key → the number that replaces it), and the digest of each copy in
/// `dest` by source number.
fn pending(
    w: &Work<'_>,
    folder: &str,
    dest: &str,
    uidvalidity: u32,
) -> (BTreeMap<ItemKey, u32>, HashMap<u32, String>) {
    let stream = ferry_events::stream::mailbox(&w.mailbox.address);
    let mut pending = BTreeMap::new();
    let mut digests = HashMap::new();
    let ours = |k: &ItemKey| k.folder == folder && k.uidvalidity == uidvalidity;
    let events = ferry_events::EventStore::scan_stream(w.app.store.as_ref(), &stream, 1)
        .filter_map(Result::ok);
    for e in events {
        match e.event {
            Event::CopySuperseded { key, by, .. } if ours(&key) => {
                pending.insert(key, by);
            }
            Event::SupersededRemoved { key, .. } if ours(&key) => {
                pending.remove(&key);
            }
            Event::ItemCopied {
                key,
                digest,
                dest_folder,
                ..
            } if ours(&key) && dest_folder == dest => {
                digests.insert(key.uid, digest);
            }
            _ => {}
        }
    }
    (pending, digests)
}
