//! A realistic event log, written fast: what the engine writes while it
//! copies (intent, copied, a checkpoint every 100 items) for 200 mailboxes
//! in four batches. Shared by the log and export benchmarks.

use std::sync::Arc;

use ferry_events::{
    Actor, BatchOptions, Event, EventStore, ExpectedVersion, ItemKey, MailboxSpec, SegmentStore,
};

pub fn key(uid: u32) -> ItemKey {
    ItemKey {
        folder: "Archive/2024/Février".into(),
        uidvalidity: 1_700_000_000,
        uid,
    }
}

pub fn mailbox(m: usize) -> String {
    format!("user{m}@example.org")
}

/// An ItemCopied as the engine writes it (about 200 bytes encoded).
pub fn copied(addr: &str, uid: u32) -> Event {
    Event::ItemCopied {
        mailbox: addr.to_string(),
        key: key(uid),
        size: 20_000 + u64::from(uid % 977) * 31,
        digest: format!(
            "{:064x}",
            u64::from(uid).wrapping_mul(0x9e37_79b9_7f4a_7c15)
        ),
        dest_folder: "Archive/2024/Février".into(),
        dest_uid: Some((1_800_000_000, uid)),
    }
}

pub fn intent(addr: &str, uid: u32) -> Event {
    Event::ItemCopyIntent {
        mailbox: addr.to_string(),
        key: key(uid),
        size: 20_000 + u64::from(uid % 977) * 31,
        digest: format!(
            "{:064x}",
            u64::from(uid).wrapping_mul(0x9e37_79b9_7f4a_7c15)
        ),
        dest_folder: "Archive/2024/Février".into(),
        dest_uidnext: Some(uid),
    }
}

/// Writes `n` events as the engine would: per mailbox, intent then copied,
/// a checkpoint every 100 items; big appends from a few writers, for speed.
pub async fn generate(store: Arc<SegmentStore>, n: u64) {
    const MAILBOXES: usize = 200;
    const WRITERS: usize = 4;
    const PER_APPEND: usize = 2_000;
    for b in 0..4 {
        let name = format!("wave-{b}");
        let mut events = vec![Event::BatchCreated {
            name: name.clone(),
            source: "old-exchange".into(),
            destination: "m365".into(),
            options: BatchOptions::default(),
        }];
        for m in (b..MAILBOXES).step_by(4) {
            events.push(Event::MailboxAdded {
                batch: name.clone(),
                mailbox: MailboxSpec {
                    address: mailbox(m),
                    destination_address: format!("user{m}@new.example.com"),
                    source_login: Some(format!("user{m}")),
                    source_secret: None,
                    destination_login: None,
                    destination_secret: None,
                },
            });
        }
        store
            .append(
                &ferry_events::stream::batch(&name),
                ExpectedVersion::NoStream,
                Actor::Daemon,
                events,
            )
            .await
            .expect("create batch");
    }
    let remaining = n.saturating_sub(store.head());
    let per_writer = remaining / WRITERS as u64;
    let tasks: Vec<_> = (0..WRITERS)
        .map(|w| {
            let store = store.clone();
            let quota = per_writer
                + if w == 0 {
                    remaining % WRITERS as u64
                } else {
                    0
                };
            tokio::spawn(async move {
                let mut uid = vec![0u32; MAILBOXES];
                let mut written = 0u64;
                let mut m = w;
                while written < quota {
                    let addr = mailbox(m);
                    let stream = ferry_events::stream::mailbox(&addr);
                    let take = (quota - written).min(PER_APPEND as u64) as usize;
                    let mut events = Vec::with_capacity(take);
                    while events.len() < take {
                        let u = &mut uid[m];
                        *u += 1;
                        events.push(intent(&addr, *u));
                        if events.len() < take {
                            events.push(copied(&addr, *u));
                        }
                        if u.is_multiple_of(100) && events.len() < take {
                            events.push(Event::Checkpoint {
                                mailbox: addr.clone(),
                                folder: "Archive/2024/Février".into(),
                                uidvalidity: 1_700_000_000,
                                highest_uid: *u,
                                highest_modseq: None,
                            });
                        }
                    }
                    written += events.len() as u64;
                    store
                        .append(&stream, ExpectedVersion::Any, Actor::Engine, events)
                        .await
                        .expect("append");
                    // Each writer owns the mailboxes w, w+WRITERS, ...
                    m = (m + WRITERS) % MAILBOXES;
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("generator");
    }
}
