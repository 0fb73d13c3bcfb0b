//! A verify pass: items and bytes per folder on both sides, and how the
//! destination's items pair with the source's (items with no source
//! counterpart, duplicates), copying nothing; recorded once the mailbox
//! is counted.

use std::collections::HashSet;

use ferry_connectors::{Folder, FolderName, FolderStatus, index, paging};
use ferry_events::{DuplicateGroup, Event, FolderCount, Side};

use super::copy::{key, origin, src};
use super::{Work, WorkErr, replica};

/// Counts gathered folder by folder.
#[derive(Default)]
pub(super) struct Tally {
    source: Vec<FolderCount>,
    destination: Vec<FolderCount>,
    compared: Vec<Event>,
}

/// Counts a source folder and, when it exists, its destination folder.
pub(super) async fn count(
    w: &mut Work<'_>,
    f: &Folder,
    dname: &FolderName,
    tally: &mut Tally,
) -> Result<(), WorkErr> {
    let src = w.src.as_mut().expect("connected");
    let st = src.examine(&f.name).await?;
    let (items, bytes) = paging::count(src.session.as_mut()).await?;
    tally.source.push(FolderCount {
        folder: f.name.raw.clone(),
        items,
        bytes,
    });
    if w.dst_folders.contains(&dname.raw) {
        let dst = w.dst.as_mut().expect("connected");
        if dst.session.by_origin().is_some() {
            return by_origin(w, f, &st, dname, tally).await;
        }
        dst.examine(dname).await?;
        let (items, bytes) = paging::count(dst.session.as_mut()).await?;
        tally.destination.push(FolderCount {
            folder: dname.raw.clone(),
            items,
            bytes,
        });
        let budget = w.app.budget.clone();
        let src = w.src.as_mut().expect("connected").session.as_mut();
        let dst = w.dst.as_mut().expect("connected").session.as_mut();
        let source = index::list(src).await?;
        let dest = index::list(dst).await?;
        let pairing = index::pair(src, &source, |_| true, dst, &dest, |_| true, &*budget).await?;
        tally.compared.push(Event::FolderCompared {
            mailbox: w.mailbox.address.clone(),
            folder: f.name.raw.clone(),
            destination: dname.raw.clone(),
            source_items: source.len() as u64,
            destination_items: dest.len() as u64,
            unmatched: pairing.unmatched.len() as u64,
            duplicates: pairing
                .duplicates
                .into_iter()
                .map(|(key, uids)| DuplicateGroup { key, uids })
                .collect(),
        });
    }
    Ok(())
}

/// At a destination that keeps origins (no bytes to count or pair): the
/// folder's items from its change feed, paired with the source's by the
/// origin stamped on them.
async fn by_origin(
    w: &mut Work<'_>,
    f: &Folder,
    st: &FolderStatus,
    dname: &FolderName,
    tally: &mut Tally,
) -> Result<(), WorkErr> {
    let table = replica::refresh(w, dname).await?;
    let mut present: HashSet<String> = HashSet::new();
    let mut pages = paging::Pages::from(1);
    while let Some(page) = {
        w.check_stop()?;
        pages.next(src(w)).await?
    } {
        present.extend(page.iter().map(|m| origin(&key(f, st, m.uid), "").key));
    }
    tally.destination.push(FolderCount {
        folder: dname.raw.clone(),
        items: table.items.len() as u64,
        bytes: 0,
    });
    let unmatched = table
        .items
        .values()
        .filter(|r| r.origin.as_ref().is_none_or(|(k, _)| !present.contains(k)))
        .count();
    // No UIDs to name a duplicate by: its origin, held more than once.
    let duplicates = table
        .by_origin()
        .into_iter()
        .filter(|(_, held)| held.len() > 1)
        .map(|(k, _)| DuplicateGroup {
            key: format!("origin {k}"),
            uids: Vec::new(),
        })
        .collect();
    tally.compared.push(Event::FolderCompared {
        mailbox: w.mailbox.address.clone(),
        folder: f.name.raw.clone(),
        destination: dname.raw.clone(),
        source_items: present.len() as u64,
        destination_items: table.items.len() as u64,
        unmatched: unmatched as u64,
        duplicates,
    });
    Ok(())
}

/// Records both sides' counts and the comparisons.
pub(super) async fn record(w: &mut Work<'_>, tally: Tally) -> Result<(), WorkErr> {
    let mailbox = w.mailbox.address.clone();
    let mut events = vec![
        Event::FolderCounted {
            mailbox: mailbox.clone(),
            side: Side::Source,
            counts: tally.source,
        },
        Event::FolderCounted {
            mailbox,
            side: Side::Destination,
            counts: tally.destination,
        },
    ];
    events.extend(tally.compared);
    w.record(events).await
}
