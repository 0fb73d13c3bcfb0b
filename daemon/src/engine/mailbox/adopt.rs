//! Before the first copy into a destination folder that already holds
//! items (an earlier batch or data directory, another tool): the source
//! items found there are recorded adopted and never appended. `batch plan`
//! counts the same pairs without recording them.

use std::collections::HashSet;

use ferry_connectors::index::{self, Pairing};
use ferry_connectors::{ConnectorError, Folder, FolderName, FolderStatus, MailSession};
use ferry_events::Event;

use super::copy::key;
use super::{Work, WorkErr, copies};
use crate::app::App;

/// Adoptions recorded per append.
const PER_APPEND: usize = 1000;

/// What a destination folder holds of a source folder's items not yet done.
pub struct Found {
    pub dest_uidvalidity: u32,
    pub pairing: Pairing,
}

/// Pairs the items of `f` (open on `src`) not yet done with what `dname`
/// holds, when nothing was copied from `f` and no pass scanned it: the only
/// time the destination is indexed (an adoption cut short is redone, as it
/// changes neither). `None` otherwise, or when `dname` is empty.
pub async fn adoptable(
    app: &App,
    mailbox: &str,
    src: &mut dyn MailSession,
    dst: &mut dyn MailSession,
    f: &Folder,
    dname: &FolderName,
    st: &FolderStatus,
) -> Result<Option<Found>, ConnectorError> {
    let marks = {
        let views = app.views.read().unwrap();
        if !views.first_copy(mailbox, &f.name.raw) {
            return Ok(None);
        }
        views
            .watermarks
            .marks
            .get(mailbox)
            .cloned()
            .unwrap_or_default()
    };
    // Such a destination gives back no bytes to pair by; its copies are
    // found by their origin.
    if dst.by_origin().is_some() {
        return Ok(None);
    }
    let dst_st = dst.examine(dname).await?;
    if dst_st.exists == 0 {
        return Ok(None);
    }
    // Only copies the views still count: a deleted batch's copies of this
    // mailbox are in its stream but claim nothing any more.
    let claimed: HashSet<u32> = copies(app, mailbox, |k, df, (v, _)| {
        df == dname.raw
            && v == dst_st.uidvalidity
            && marks
                .get(&k.folder)
                .is_some_and(|m| m.uidvalidity == k.uidvalidity && m.is_done(k.uid))
    })
    .map(|(_, _, (_, u))| u)
    .collect();
    let done = marks
        .get(&f.name.raw)
        .filter(|m| m.uidvalidity == st.uidvalidity)
        .map(|m| m.done.clone())
        .unwrap_or_default();
    let dest = index::list(dst).await?;
    if dest.iter().all(|d| claimed.contains(&d.meta.uid)) {
        return Ok(None);
    }
    let source = index::list(src).await?;
    let open_src = |u: u32| !done.contains(&u);
    let open_dst = |u: u32| !claimed.contains(&u);
    let pairing = index::pair(src, &source, open_src, dst, &dest, open_dst, &*app.budget).await?;
    tracing::info!(%mailbox, folder = %f.name.raw, destination_items = dest.len(),
        found = pairing.pairs.len(), "indexed the destination before the first copy");
    Ok(Some(Found {
        dest_uidvalidity: dst_st.uidvalidity,
        pairing,
    }))
}

/// Records as adopted the source items of `f` (open at the source) that
/// `dname` already holds, before the first copy into it.
pub(super) async fn adopt(
    w: &mut Work<'_>,
    f: &Folder,
    dname: &FolderName,
    st: &FolderStatus,
) -> Result<(), WorkErr> {
    let src = w.src.as_mut().expect("connected").session.as_mut();
    let dst = w.dst.as_mut().expect("connected").session.as_mut();
    let Some(found) = adoptable(w.app, &w.mailbox.address, src, dst, f, dname, st).await? else {
        return Ok(());
    };
    let events: Vec<Event> = found
        .pairing
        .pairs
        .into_iter()
        .map(|p| Event::ItemAdopted {
            mailbox: w.mailbox.address.clone(),
            key: key(f, st, p.source),
            size: p.size,
            message_id: p.message_id,
            digest: p.digest,
            dest_folder: dname.raw.clone(),
            dest_uid: (found.dest_uidvalidity, p.dest),
        })
        .collect();
    for chunk in events.chunks(PER_APPEND) {
        w.record(chunk.to_vec()).await?;
    }
    Ok(())
}
