//! Flag and keyword changes of copied items, brought to their copies.

use std::collections::{HashMap, HashSet};

use ferry_connectors::paging::{Pages, metas_in};
use ferry_connectors::{Folder, FolderName, FolderStatus, ItemMeta};
use ferry_events::Event;
use ferry_projections::FolderMark;

use super::copy::{key, origin, src};
use super::{Work, WorkErr, copied_digests, copies, replica};

pub(super) fn flags_to_copy(flags: &[String]) -> Vec<String> {
    flags
        .iter()
        .filter(|f| !f.eq_ignore_ascii_case("\\Recent"))
        .cloned()
        .collect()
}

/// Propagates flag and keyword changes of copied items to their copies.
///
/// With CONDSTORE and a known MODSEQ only the items changed since are
/// looked at; otherwise every item's flags are compared with its copy's,
/// page by page, so a large folder is never listed whole.
pub(super) async fn sync_flags(
    w: &mut Work<'_>,
    f: &Folder,
    dname: &FolderName,
    st: &FolderStatus,
    mark: &FolderMark,
) -> Result<(), WorkErr> {
    if mark.uidvalidity != st.uidvalidity {
        return Ok(());
    }
    let since = match (mark.highest_modseq, st.highest_modseq) {
        (Some(old), Some(now)) if old == now => return Ok(()),
        (Some(old), Some(_)) => Some(old),
        _ => None,
    };
    if w.dst
        .as_mut()
        .expect("connected")
        .session
        .by_origin()
        .is_some()
    {
        return by_origin(w, f, dname, st, since).await;
    }
    // Source UID → destination UID, from the log.
    let copies = copies_of(w, &f.name.raw, st.uidvalidity, &dname.raw);
    if copies.is_empty() {
        return Ok(());
    }
    let dst_uidvalidity = w
        .dst
        .as_mut()
        .expect("connected")
        .select(dname)
        .await?
        .uidvalidity;
    let changed = match since {
        Some(old) => {
            w.src
                .as_mut()
                .expect("connected")
                .changed_since(old)
                .await?
        }
        None => None,
    };
    if let Some(list) = changed {
        return sync_page(w, f, st, &copies, dst_uidvalidity, list).await;
    }
    let mut pages = Pages::from(1);
    while let Some(page) = {
        w.check_stop()?;
        pages.next(src(w)).await?
    } {
        sync_page(w, f, st, &copies, dst_uidvalidity, page).await?;
    }
    Ok(())
}

/// Brings the copies of `metas` to the source's flags.
async fn sync_page(
    w: &mut Work<'_>,
    f: &Folder,
    st: &FolderStatus,
    copies: &HashMap<u32, (u32, u32)>,
    dst_uidvalidity: u32,
    metas: Vec<ItemMeta>,
) -> Result<(), WorkErr> {
    let pairs: Vec<(ItemMeta, u32)> = metas
        .into_iter()
        .filter_map(|m| match copies.get(&m.uid) {
            Some((v, du)) if *v == dst_uidvalidity => Some((m, *du)),
            _ => None,
        })
        .collect();
    if pairs.is_empty() {
        return Ok(());
    }
    let dest_uids: Vec<u32> = pairs.iter().map(|(_, du)| *du).collect();
    let dst = w.dst.as_mut().expect("connected");
    let have: HashMap<u32, Vec<String>> = metas_in(dst.session.as_mut(), &dest_uids)
        .await?
        .into_iter()
        .map(|m| (m.uid, m.flags))
        .collect();
    let mut events = Vec::new();
    for (m, du) in pairs {
        let want = flags_to_copy(&m.flags);
        let Some(have) = have.get(&du) else {
            continue;
        };
        if same_flags(&want, &flags_to_copy(have)) {
            continue;
        }
        dst.store_flags(du, &want).await?;
        events.push(Event::FlagsSynced {
            mailbox: w.mailbox.address.clone(),
            key: key(f, st, m.uid),
            flags: want,
        });
    }
    w.record(events).await
}

/// At a destination that keeps origins: the destination folder's copies
/// come from its change feed (one request when nothing changed there), and
/// each copied item the source says changed (every copied item without
/// CONDSTORE) whose copy differs is brought to the source's flags by the
/// copy's id: no item is looked up by its origin.
async fn by_origin(
    w: &mut Work<'_>,
    f: &Folder,
    dname: &FolderName,
    st: &FolderStatus,
    since: Option<u64>,
) -> Result<(), WorkErr> {
    // Source UID → digest of the copies in `dname`, from the log.
    let copied: HashMap<u32, String> = copied_digests(w.app, &w.mailbox.address, |k, df| {
        k.folder == f.name.raw && k.uidvalidity == st.uidvalidity && df == dname.raw
    })
    .map(|(k, d)| (k.uid, d))
    .collect();
    if copied.is_empty() {
        return Ok(());
    }
    let table = replica::refresh(w, dname).await?;
    // Source key → (destination id, flags there).
    let held: HashMap<String, (String, Vec<String>)> = table
        .items
        .into_iter()
        .filter_map(|(id, r)| Some((r.origin?.0, (id, r.flags))))
        .collect();
    let changed = match since {
        Some(old) => src(w).changed_since(old).await?,
        None => None,
    };
    if let Some(list) = changed {
        return set_by_origin(w, f, st, &copied, &held, list).await;
    }
    let mut pages = Pages::from(1);
    while let Some(page) = {
        w.check_stop()?;
        pages.next(src(w)).await?
    } {
        set_by_origin(w, f, st, &copied, &held, page).await?;
    }
    Ok(())
}

/// Brings the copies of `metas` (source UID → digest in `copied`, source
/// key → copy in `held`) to the source's flags where they differ in what
/// the destination keeps, recording those changed.
async fn set_by_origin(
    w: &mut Work<'_>,
    f: &Folder,
    st: &FolderStatus,
    copied: &HashMap<u32, String>,
    held: &HashMap<String, (String, Vec<String>)>,
    metas: Vec<ItemMeta>,
) -> Result<(), WorkErr> {
    let mut events = Vec::new();
    for m in metas {
        let Some(digest) = copied.get(&m.uid) else {
            continue;
        };
        let k = key(f, st, m.uid);
        // A copy the feed does not show was removed at the destination.
        let Some((id, have)) = held.get(&origin(&k, digest).key) else {
            continue;
        };
        let want = flags_to_copy(&m.flags);
        let dst = w.dst.as_mut().expect("connected").session.as_mut();
        let dst = dst.by_origin().expect("checked by the caller");
        if same_flags(&dst.kept_flags(&want), have) {
            continue;
        }
        dst.set_flags_of(id, &want, have).await?;
        events.push(Event::FlagsSynced {
            mailbox: w.mailbox.address.clone(),
            key: k,
            flags: want,
        });
    }
    w.record(events).await
}

fn same_flags(a: &[String], b: &[String]) -> bool {
    let norm =
        |v: &[String]| -> HashSet<String> { v.iter().map(|s| s.to_ascii_lowercase()).collect() };
    norm(a) == norm(b)
}

/// Source UID → (destination UIDVALIDITY, UID) of the copies in `dest_folder`.
fn copies_of(
    w: &Work<'_>,
    folder: &str,
    uidvalidity: u32,
    dest_folder: &str,
) -> HashMap<u32, (u32, u32)> {
    copies(w.app, &w.mailbox.address, |k, df, _| {
        k.folder == folder && k.uidvalidity == uidvalidity && df == dest_folder
    })
    .map(|(k, _, du)| (k.uid, du))
    .collect()
}
