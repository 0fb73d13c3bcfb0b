//! The store's contract, held by both implementations.

use crate::common;

use std::sync::Arc;

use ferry_events::store::contract::{contract, ev, user};
use ferry_events::*;

#[tokio::test]
async fn memory_store_keeps_the_contract() {
    contract(&MemoryStore::new()).await;
}

#[tokio::test]
async fn segment_store_keeps_the_contract() {
    let dir = tempfile::tempdir().unwrap();
    contract(&SegmentStore::open(dir.path()).unwrap()).await;
}

#[tokio::test]
async fn segment_store_reopens_where_it_was() {
    let dir = tempfile::tempdir().unwrap();
    let before: Vec<Envelope> = {
        let store = SegmentStore::open(dir.path()).unwrap();
        for (i, e) in common::every_event().into_iter().enumerate() {
            store
                .append(
                    &format!("m/{}", i % 4),
                    ExpectedVersion::Any,
                    user(),
                    vec![e],
                )
                .await
                .unwrap();
        }
        store.read_all(0).map(Result::unwrap).collect()
    };
    let store = SegmentStore::open(dir.path()).unwrap();
    assert_eq!(store.head(), before.len() as u64);
    let after: Vec<Envelope> = store.read_all(0).map(Result::unwrap).collect();
    assert_eq!(before, after);
    let m1 = (0..before.len()).filter(|i| i % 4 == 1).count() as u64;
    assert_eq!(store.stream_version("m/1"), m1);
    // The chain continues across the reopen.
    let next = store
        .append("m/1", ExpectedVersion::Exact(m1), user(), vec![ev("x")])
        .await
        .unwrap();
    let last = store.read_raw(before.len() as u64).next().unwrap().unwrap();
    assert_eq!(next[0].prev_hash, envelope::hash_bytes(&last.bytes));
    assert_eq!(next[0].seq, before.len() as u64 + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_appends_share_group_commits() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SegmentStore::open(dir.path()).unwrap());
    let mut tasks = Vec::new();
    for w in 0..64 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..10u64 {
                let stream = format!("w/{w}");
                store
                    .append(
                        &stream,
                        ExpectedVersion::Exact(i),
                        Actor::Engine,
                        vec![ev("x")],
                    )
                    .await
                    .unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let stats = store.stats();
    let groups = stats.groups.load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(store.head(), 640);
    assert!(
        groups < 640,
        "{groups} flushes for 640 appends: no grouping"
    );
    let seqs: Vec<u64> = store.read_all(0).map(|e| e.unwrap().seq).collect();
    assert_eq!(seqs, (1..=640).collect::<Vec<_>>());
}

#[tokio::test]
async fn followers_see_the_head_move() {
    let store = MemoryStore::new();
    let mut rx = store.follow();
    assert_eq!(*rx.borrow_and_update(), 0);
    store
        .append("a", ExpectedVersion::Any, user(), vec![ev("a")])
        .await
        .unwrap();
    rx.changed().await.unwrap();
    assert_eq!(*rx.borrow(), 1);
}

#[tokio::test]
async fn a_closed_store_refuses_appends() {
    let dir = tempfile::tempdir().unwrap();
    let store = SegmentStore::open(dir.path()).unwrap();
    store.close();
    assert!(matches!(
        store
            .append("a", ExpectedVersion::Any, user(), vec![ev("a")])
            .await,
        Err(StoreError::Closed)
    ));
}
