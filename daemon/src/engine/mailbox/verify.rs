//! A verify pass: items and bytes per folder on both sides, copying
//! nothing, recorded once the mailbox is counted.

use ferry_connectors::paging;
use ferry_connectors::{Folder, FolderName};
use ferry_events::{Event, FolderCount, Side};

use super::{Work, WorkErr};

/// Counts gathered folder by folder.
#[derive(Default)]
pub(super) struct Tally {
    source: Vec<FolderCount>,
    destination: Vec<FolderCount>,
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
        dst.examine(dname).await?;
        let (items, bytes) = paging::count(dst.session.as_mut()).await?;
        tally.destination.push(FolderCount {
            folder: dname.raw.clone(),
            items,
            bytes,
        });
    }
    Ok(())
}

/// Records both sides' counts.
pub(super) async fn record(w: &mut Work<'_>, tally: Tally) -> Result<(), WorkErr> {
    let mailbox = w.mailbox.address.clone();
    w.record(vec![
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
    ])
    .await
}
