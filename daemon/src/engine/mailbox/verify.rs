//! A verify pass: items and bytes per folder on both sides, and how the
//! destination's items pair with the source's (items with no source
//! counterpart, duplicates), copying nothing; recorded once the mailbox
//! is counted.

use ferry_connectors::{Folder, FolderName, index, paging};
use ferry_events::{DuplicateGroup, Event, FolderCount, Side};

use super::{Work, WorkErr};

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
    src.examine(&f.name).await?;
    let (items, bytes) = paging::count(src.session.as_mut()).await?;
    tally.source.push(FolderCount {
        folder: f.name.raw.clone(),
        items,
        bytes,
    });
    if w.dst_folders.contains(&dname.raw) {
        let dst = w.dst.as_mut().expect("connected");
        let st = dst.examine(dname).await?;
        if dst.session.by_origin().is_some() {
            // No bytes to count or pair at such a destination: its count.
            tally.destination.push(FolderCount {
                folder: dname.raw.clone(),
                items: u64::from(st.exists),
                bytes: 0,
            });
            return Ok(());
        }
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
