//! Folding live, in pieces, through snapshots, always equals a rebuild.

use ferry_events::*;
use ferry_projections::{BatchState, MailboxState, Projections, snapshot};
use proptest::prelude::*;

fn key(folder: u8, uid: u32, uidvalidity: u32) -> ItemKey {
    ItemKey {
        folder: ["INBOX", "Sent", "Archive/Février"][folder as usize % 3].into(),
        uidvalidity,
        uid,
    }
}

fn spec(addr: &str) -> MailboxSpec {
    MailboxSpec {
        address: addr.into(),
        destination_address: addr.into(),
        source_login: None,
        source_secret: None,
        destination_login: None,
        destination_secret: None,
    }
}

fn arb_event() -> impl Strategy<Value = Event> {
    let batch = prop::sample::select(vec!["b1", "b2"]).prop_map(String::from);
    let mb = prop::sample::select(vec!["a@x", "b@x", "c@x"]).prop_map(String::from);
    let k =
        (0u8..3, 1u32..50, prop::sample::select(vec![7u32, 8])).prop_map(|(f, u, v)| key(f, u, v));
    let outcome = prop::sample::select(vec![
        Outcome::Succeeded,
        Outcome::SucceededWithErrors,
        Outcome::Failed,
        Outcome::Stopped,
    ]);
    prop_oneof![
        batch.clone().prop_map(|name| Event::BatchCreated {
            name,
            source: "s".into(),
            destination: "d".into(),
            options: BatchOptions::default()
        }),
        (batch.clone(), mb.clone()).prop_map(|(batch, m)| Event::MailboxAdded {
            batch,
            mailbox: spec(&m)
        }),
        batch.clone().prop_map(|batch| Event::PassRequested {
            batch,
            pass: PassKind::Full,
            older_than_days: None,
            not_before_us: None
        }),
        (batch.clone(), 1u64..20).prop_map(|(batch, pass_id)| Event::PassStarted {
            batch,
            pass_id,
            pass: PassKind::Delta
        }),
        (batch.clone(), 1u64..20, outcome.clone()).prop_map(|(batch, pass_id, outcome)| {
            Event::PassFinished {
                batch,
                pass_id,
                outcome,
            }
        }),
        (mb.clone(), batch.clone(), 1u64..20).prop_map(|(mailbox, batch, pass_id)| {
            Event::MailboxPassStarted {
                mailbox,
                batch,
                pass_id,
                pass: PassKind::Full,
            }
        }),
        (mb.clone(), 1u64..20, outcome).prop_map(|(mailbox, pass_id, outcome)| {
            Event::MailboxPassFinished {
                mailbox,
                pass_id,
                outcome,
                detail: String::new(),
            }
        }),
        (mb.clone(), k.clone()).prop_map(|(mailbox, key)| Event::ItemCopyIntent {
            mailbox,
            key,
            size: 10,
            digest: "d".into(),
            dest_folder: "INBOX".into(),
            dest_uidnext: Some(3)
        }),
        (mb.clone(), k.clone(), 1u64..100).prop_map(|(mailbox, key, size)| Event::ItemCopied {
            mailbox,
            key,
            size,
            digest: "d".into(),
            dest_folder: "INBOX".into(),
            dest_uid: None
        }),
        (mb.clone(), k.clone()).prop_map(|(mailbox, key)| Event::ItemSkipped {
            mailbox,
            key,
            size: 1,
            reason: "too big".into()
        }),
        (mb.clone(), k.clone()).prop_map(|(mailbox, key)| Event::ItemFailed {
            mailbox,
            key,
            class: "Item".into(),
            reason: "NO".into()
        }),
        (mb.clone(), 1u32..3, 1u32..6, any::<bool>()).prop_map(|(mailbox, generation, o, seen)| {
            Event::SourceSynced {
                mailbox,
                folder: "INBOX".into(),
                generation,
                seen: vec![ferry_events::SourceItem {
                    ordinal: o,
                    key: format!("id-{o}"),
                    size: 10,
                    flags: if seen { vec!["\\Seen".into()] } else { vec![] },
                    received_us: None,
                }],
                gone: vec![o % 3],
                cursor: format!("c{o}"),
            }
        }),
        (mb.clone(), 1u32..6, any::<bool>()).prop_map(|(mailbox, o, restart)| {
            Event::DestinationSynced {
                mailbox,
                folder: "INBOX".into(),
                restart,
                seen: vec![ferry_events::DestinationItem {
                    id: format!("m{o}"),
                    origin: Some((format!("INBOX/1:{o}"), "d".into())),
                    flags: vec![],
                }],
                gone: vec![format!("m{}", o % 3)],
                link: restart.then(|| format!("l{o}")),
            }
        }),
        mb.clone().prop_map(|mailbox| Event::FolderSkipped {
            mailbox,
            folder: "Calendar".into(),
            class: "IPF.Appointment".into(),
            reason: "mail only".into()
        }),
        (mb.clone(), k.clone()).prop_map(|(mailbox, key)| Event::ItemDescribed {
            mailbox,
            key,
            about: ferry_events::ItemDescription::new(Some("s"), Some("<m@x>"), None)
        }),
        (mb.clone(), batch.clone()).prop_map(|(mailbox, batch)| Event::UserCutOver {
            mailbox,
            batch,
            forced: false
        }),
        batch
            .clone()
            .prop_map(|batch| Event::BatchStopped { batch }),
        (batch.clone(), any::<bool>())
            .prop_map(|(batch, with_errors)| Event::BatchCompleted { batch, with_errors }),
        batch.prop_map(|batch| Event::BatchDeleted {
            batch,
            forced: false
        }),
        mb.prop_map(|mailbox| Event::Checkpoint {
            mailbox,
            folder: "INBOX".into(),
            uidvalidity: 7,
            highest_uid: 40,
            highest_modseq: Some(9)
        }),
    ]
}

/// Envelopes as the store would make them (seq from 1, streams by aggregate).
fn log(events: Vec<Event>) -> Vec<Envelope> {
    let mut seq = Sequencer::default();
    events
        .into_iter()
        .enumerate()
        .map(|(i, e)| {
            let s = format!("s/{}", i % 5);
            seq.sequence(&s, ExpectedVersion::Any, &Actor::Engine, vec![e], i as i64)
                .unwrap()
                .envelopes
                .remove(0)
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn incremental_and_snapshotted_folds_equal_a_rebuild(
        events in prop::collection::vec(arb_event(), 0..120),
        cut in any::<prop::sample::Index>(),
    ) {
        let log = log(events);
        let rebuilt = Projections::rebuild(&log);
        let k = if log.is_empty() { 0 } else { cut.index(log.len() + 1) };

        // Live: first part, snapshot to bytes and back, then the tail.
        let mut live = Projections::rebuild(&log[..k]);
        live = snapshot::decode(&snapshot::encode(&live).unwrap()).unwrap();
        for env in &log[k..] {
            live.apply(env);
        }
        prop_assert_eq!(&live, &rebuilt);

        // Folding the tail again changes nothing.
        for env in &log[k..] {
            live.apply(env);
        }
        prop_assert_eq!(&live, &rebuilt);
        prop_assert_eq!(rebuilt.head, log.len() as u64);
    }
}

#[test]
fn a_full_pass_moves_batch_and_mailbox_states() {
    let log = log(vec![
        Event::BatchCreated {
            name: "b".into(),
            source: "s".into(),
            destination: "d".into(),
            options: BatchOptions::default(),
        },
        Event::MailboxAdded {
            batch: "b".into(),
            mailbox: spec("a@x"),
        },
        Event::PassRequested {
            batch: "b".into(),
            pass: PassKind::Full,
            older_than_days: None,
            not_before_us: None,
        },
        Event::PassStarted {
            batch: "b".into(),
            pass_id: 3,
            pass: PassKind::Full,
        },
        Event::MailboxPassStarted {
            mailbox: "a@x".into(),
            batch: "b".into(),
            pass_id: 3,
            pass: PassKind::Full,
        },
        Event::ItemFailed {
            mailbox: "a@x".into(),
            key: key(0, 1, 7),
            class: "Item".into(),
            reason: "NO".into(),
        },
        Event::ItemCopied {
            mailbox: "a@x".into(),
            key: key(0, 2, 7),
            size: 100,
            digest: "d".into(),
            dest_folder: "INBOX".into(),
            dest_uid: Some((1, 1)),
        },
    ]);
    let mut p = Projections::rebuild(&log);
    assert_eq!(p.batches["b"].state, BatchState::Syncing);
    assert!(p.batches["b"].pending.is_empty());
    assert_eq!(p.mailboxes["a@x"].state, MailboxState::Syncing);
    assert_eq!(p.mailboxes["a@x"].errors.len(), 1);
    assert!(p.watermarks.get("a@x", "INBOX").unwrap().is_done(2));
    assert!(!p.watermarks.get("a@x", "INBOX").unwrap().is_done(1));

    let tail = {
        let mut seq = Sequencer::resume(log.len() as u64, ZERO_HASH, 0, Default::default());
        let mut out = Vec::new();
        for e in [
            Event::MailboxPassFinished {
                mailbox: "a@x".into(),
                pass_id: 3,
                outcome: Outcome::SucceededWithErrors,
                detail: String::new(),
            },
            Event::PassFinished {
                batch: "b".into(),
                pass_id: 3,
                outcome: Outcome::SucceededWithErrors,
            },
        ] {
            out.extend(
                seq.sequence("x", ExpectedVersion::Any, &Actor::Engine, vec![e], 0)
                    .unwrap()
                    .envelopes,
            );
        }
        out
    };
    for env in &tail {
        p.apply(env);
    }
    assert_eq!(p.batches["b"].state, BatchState::SyncedWithErrors);
    assert_eq!(p.mailboxes["a@x"].state, MailboxState::SyncedWithErrors);
    assert_eq!(p.mailboxes["a@x"].totals.copied, 1);
    assert_eq!(p.mailboxes["a@x"].totals.bytes, 100);
    assert_eq!(p.stats.items_failed, 1);
}

/// A pass's summary counts only its own items, each mailbox once across a
/// resume, and names the mailboxes with errors; an owed notice carries it.
#[test]
fn a_finished_pass_keeps_its_summary_for_the_notice() {
    let copied = |mailbox: &str, uid, size| Event::ItemCopied {
        mailbox: mailbox.into(),
        key: key(0, uid, 1),
        size,
        digest: String::new(),
        dest_folder: "INBOX".into(),
        dest_uid: None,
    };
    let started = |mailbox: &str, batch: &str, pass_id| Event::MailboxPassStarted {
        mailbox: mailbox.into(),
        batch: batch.into(),
        pass_id,
        pass: PassKind::Full,
    };
    let mut events = Vec::new();
    for b in ["b", "other"] {
        events.push(Event::BatchCreated {
            name: b.into(),
            source: "s".into(),
            destination: "d".into(),
            options: BatchOptions::default(),
        });
    }
    for (b, m) in [("b", "a@x"), ("b", "c@x"), ("other", "z@x")] {
        events.push(Event::MailboxAdded {
            batch: b.into(),
            mailbox: spec(m),
        });
    }
    events.extend([
        Event::NotifySet {
            batch: "b".into(),
            emails: vec!["ops@x".into()],
            webhook: None,
            webhook_shown: None,
        },
        Event::PassRequested {
            batch: "b".into(),
            pass: PassKind::Full,
            older_than_days: None,
            not_before_us: None,
        },
        Event::PassStarted {
            batch: "b".into(),
            pass_id: 7,
            pass: PassKind::Full,
        },
        started("a@x", "b", 7),
        started("c@x", "b", 7),
        // Resumed after a restart: still one mailbox.
        started("c@x", "b", 7),
        // Another batch's mailbox copies meanwhile.
        copied("z@x", 1, 5_000),
        copied("a@x", 1, 100),
        copied("c@x", 1, 10),
        Event::ItemSkipped {
            mailbox: "a@x".into(),
            key: key(0, 2, 1),
            size: 9,
            reason: "too large".into(),
        },
        Event::ItemFailed {
            mailbox: "c@x".into(),
            key: key(0, 2, 1),
            class: "permanent".into(),
            reason: "refused".into(),
        },
        Event::MailboxPassFinished {
            mailbox: "a@x".into(),
            pass_id: 7,
            outcome: Outcome::Succeeded,
            detail: String::new(),
        },
        Event::MailboxPassFinished {
            mailbox: "c@x".into(),
            pass_id: 7,
            outcome: Outcome::SucceededWithErrors,
            detail: "1 item failed".into(),
        },
        Event::PassFinished {
            batch: "b".into(),
            pass_id: 7,
            outcome: Outcome::SucceededWithErrors,
        },
        // After the pass: not counted.
        copied("a@x", 3, 1_000),
    ]);
    let p = Projections::rebuild(&log(events));
    let owed = &p.notices.owed;
    assert_eq!(owed.len(), 1, "{owed:?}");
    let pass = owed[0].pass.as_ref().expect("the pass ran");
    assert_eq!(pass.pass, PassKind::Full);
    assert_eq!(pass.mailboxes, 2);
    let c = pass.counts;
    assert_eq!((c.copied, c.bytes, c.skipped, c.failed), (2, 110, 1, 1));
    let troubled: Vec<_> = pass.troubled.iter().collect();
    assert_eq!(troubled.len(), 1);
    assert_eq!(troubled[0].0, "c@x");
    assert_eq!(troubled[0].1.failed, 1);
    assert_eq!(troubled[0].1.outcome, Some(Outcome::SucceededWithErrors));
    assert!(pass.taking_part.is_empty(), "emptied when the pass ends");
    assert_eq!(
        (owed[0].source.as_str(), owed[0].destination.as_str()),
        ("s", "d")
    );
}
