//! The PostgreSQL store against a real PostgreSQL started for each test.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use ferry_events::envelope::ChainVerifier;
use ferry_events::store::contract::{self, contract, ev};
use ferry_events::*;
use ferry_pgstore::PgStore;
use ferry_testservers::Postgres;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_store_keeps_the_contract() {
    let pg = Postgres::start().unwrap();
    let store = PgStore::open(&pg.url()).unwrap();
    contract(&store).await;
}

/// Checks the whole log: sequences 1..=n without holes, an unbroken chain.
fn check_log(store: &PgStore) -> Vec<Envelope> {
    let mut chain = ChainVerifier::new();
    let mut all = Vec::new();
    for (i, r) in store.read_raw(0).enumerate() {
        let r = r.unwrap();
        assert_eq!(r.seq, i as u64 + 1, "a hole in the sequence");
        let env = codec::decode(&r.bytes).unwrap();
        chain.check(&env, &r.bytes).unwrap();
        all.push(env);
    }
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_workers_write_one_gapless_chain() {
    let pg = Postgres::start().unwrap();
    let a = Arc::new(PgStore::open(&pg.url()).unwrap());
    let b = Arc::new(PgStore::open(&pg.url()).unwrap());
    let mut follow_b = b.follow();
    let mut tasks = Vec::new();
    for (w, store) in [a.clone(), b.clone()].into_iter().enumerate() {
        for t in 0..8 {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                for i in 0..25u64 {
                    // One stream per task, shared streams under `Any`.
                    let own = format!("w{w}/t{t}");
                    store
                        .append(
                            &own,
                            ExpectedVersion::Exact(i),
                            Actor::Engine,
                            vec![ev("x")],
                        )
                        .await
                        .unwrap();
                    store
                        .append("shared", ExpectedVersion::Any, Actor::Engine, vec![ev("y")])
                        .await
                        .unwrap();
                }
            }));
        }
    }
    for t in tasks {
        t.await.unwrap();
    }
    let all = check_log(&a);
    assert_eq!(all.len(), 2 * 8 * 25 * 2);
    assert_eq!(a.stream_version("shared"), 400);
    assert_eq!(b.stream_version("w0/t3"), 25);
    let versions: Vec<u64> = b
        .read_stream("shared", 1)
        .unwrap()
        .iter()
        .map(|e| e.stream_version)
        .collect();
    assert_eq!(versions, (1..=400).collect::<Vec<_>>());
    // Each worker learns of the other's appends.
    let mut follow_a = a.follow();
    tokio::time::timeout(Duration::from_secs(5), async {
        while *follow_b.borrow_and_update() < 800 {
            follow_b.changed().await.unwrap();
        }
        while *follow_a.borrow_and_update() < 800 {
            follow_a.changed().await.unwrap();
        }
    })
    .await
    .expect("both workers saw the head reach 800");

    // Optimistic concurrency holds across workers.
    let v = a.stream_version("w1/t0");
    a.append(
        "w1/t0",
        ExpectedVersion::Exact(v),
        Actor::Engine,
        vec![ev("z")],
    )
    .await
    .unwrap();
    let err = b
        .append(
            "w1/t0",
            ExpectedVersion::Exact(v),
            Actor::Engine,
            vec![ev("z")],
        )
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::WrongVersion { .. }), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reopened_store_continues_the_chain() {
    let pg = Postgres::start().unwrap();
    {
        let store = PgStore::open(&pg.url()).unwrap();
        for i in 0..3 {
            store
                .append(
                    "m/1",
                    ExpectedVersion::Exact(i),
                    Actor::Engine,
                    vec![ev("a")],
                )
                .await
                .unwrap();
        }
    }
    let store = PgStore::open(&pg.url()).unwrap();
    assert_eq!(store.head(), 3);
    let next = store
        .append(
            "m/1",
            ExpectedVersion::Exact(3),
            Actor::Engine,
            vec![ev("b")],
        )
        .await
        .unwrap();
    assert_eq!(next[0].seq, 4);
    assert_eq!(check_log(&store).len(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_of_postgres_loses_and_doubles_nothing() {
    let mut pg = Postgres::start().unwrap();
    let store = Arc::new(PgStore::open(&pg.url()).unwrap());
    let writer = {
        let store = store.clone();
        tokio::spawn(async move {
            let mut written = Vec::new();
            for i in 0..300u64 {
                let envs = store
                    .append(
                        "m/a",
                        ExpectedVersion::Exact(i),
                        Actor::Engine,
                        vec![ev("a")],
                    )
                    .await
                    .unwrap_or_else(|e| panic!("append {i}: {e}"));
                written.push(envs[0].seq);
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            written
        })
    };
    tokio::time::sleep(Duration::from_millis(400)).await;
    // Kept until the end: dropping it stops the server.
    let _pg = tokio::task::spawn_blocking(move || {
        pg.restart().unwrap();
        pg
    })
    .await
    .unwrap();
    let written = writer.await.unwrap();
    assert_eq!(written.len(), 300);
    let all = check_log(&store);
    assert_eq!(all.len(), 300, "every append exactly once");
    let versions: HashSet<u64> = all.iter().map(|e| e.stream_version).collect();
    assert_eq!(versions.len(), 300);
}

#[test]
fn an_unreachable_store_says_where_without_the_password() {
    let port = ferry_testservers::free_port().unwrap();
    let url = format!("postgres://ferry:hunter2-secret@127.0.0.1:{port}/ferry?connect_timeout=2");
    let err = PgStore::open(&url).err().expect("nothing listens there");
    let shown = err.to_string();
    assert!(
        shown.contains(&format!("127.0.0.1:{port}/ferry")),
        "{shown}"
    );
    assert!(!shown.contains("hunter2"), "{shown}");
}

async fn until(what: &str, mut cond: impl FnMut() -> bool) {
    for _ in 0..100 {
        if cond() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{what} within 10 s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_leader_writes_engine_events_and_a_deposed_one_is_fenced() {
    let pg = Postgres::start().unwrap();
    let a = PgStore::open(&pg.url()).unwrap();
    let b = PgStore::open(&pg.url()).unwrap();
    let lead_a = a.lead("worker-a").unwrap();
    until("a leads", || lead_a.leads()).await;
    let lead_b = b.lead("worker-b").unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(!lead_b.leads(), "two leaders");

    a.append("m/1", ExpectedVersion::Any, Actor::Engine, vec![ev("a")])
        .await
        .unwrap();
    let err = b
        .append("m/1", ExpectedVersion::Any, Actor::Engine, vec![ev("b")])
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotLeader { .. }), "{err}");
    // A command from any worker's socket is written.
    b.append(
        "batch/x",
        ExpectedVersion::Any,
        contract::user(),
        vec![ev("x")],
    )
    .await
    .unwrap();

    // Another worker taking the lead bumps the epoch: a, which believes it
    // leads until its next look, can no longer write.
    pg.psql("UPDATE ferry_leader SET epoch = epoch + 1")
        .unwrap();
    let err = a
        .append("m/1", ExpectedVersion::Any, Actor::Engine, vec![ev("a2")])
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotLeader { epoch: 2 }), "{err}");

    // A leader that goes away hands the lead to the next worker.
    drop(lead_a);
    drop(a);
    until("b leads", || lead_b.leads()).await;
    b.append(
        "m/1",
        ExpectedVersion::Any,
        Actor::Scheduler,
        vec![ev("b2")],
    )
    .await
    .unwrap();
    let epoch = pg.psql("SELECT epoch, holder FROM ferry_leader").unwrap();
    assert_eq!(epoch.trim(), "3|worker-b");
    assert_eq!(check_log(&b).len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mailbox_is_written_only_under_its_current_lease() {
    let pg = Postgres::start().unwrap();
    let a = PgStore::open(&pg.url()).unwrap();
    let b = PgStore::open(&pg.url()).unwrap();
    let ttl = Duration::from_secs(30);
    let (la, lb) = (a.leases("a", ttl).unwrap(), b.leases("b", ttl).unwrap());
    let (a_lead, b_lead) = (a.lead("a").unwrap(), b.lead("b").unwrap());
    until("a leader", || a_lead.leads() || b_lead.leads()).await;
    let boxes = ["m1@x".to_string(), "m2@x".to_string()];
    la.open_pass("wave", 1, &boxes).unwrap();
    // Each worker takes what is free; nothing is taken twice.
    let got_a = la.take("wave", 1, 1).unwrap();
    let got_b = lb.take("wave", 1, 5).unwrap();
    assert_eq!(got_a.len(), 1);
    assert_eq!(got_b.len(), 1);
    assert_ne!(got_a[0].mailbox, got_b[0].mailbox);
    assert!(lb.take("wave", 1, 5).unwrap().is_empty());
    let m = got_a[0].mailbox.clone();
    let stream = stream::mailbox(&m);
    // Written under the lease by its holder, whoever leads.
    a.append(&stream, ExpectedVersion::Any, Actor::Engine, vec![ev("a1")])
        .await
        .unwrap();

    // a's lease expires (a paused): b takes the mailbox over, and a, which
    // still believes it holds it, is refused.
    pg.psql(&format!(
        "UPDATE ferry_leases SET expires_us = 0 WHERE mailbox = '{m}'"
    ))
    .unwrap();
    let over = lb.take("wave", 1, 5).unwrap();
    assert_eq!(over.len(), 1);
    assert_eq!(over[0].mailbox, m);
    assert_eq!(over[0].version, got_a[0].version + 1);
    assert_eq!(over[0].previous.as_deref(), Some("a"));
    let err = a
        .append(&stream, ExpectedVersion::Any, Actor::Engine, vec![ev("a2")])
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::LeaseLost { .. }), "{err}");
    b.append(&stream, ExpectedVersion::Any, Actor::Engine, vec![ev("b1")])
        .await
        .unwrap();
    // a finds out at its next renewal.
    tokio::time::timeout(Duration::from_secs(30), got_a[0].lost())
        .await
        .expect("a learns its lease is lost");

    // A finished mailbox is taken by nobody; the pass is done when all are.
    lb.finish(&over[0]).unwrap();
    lb.finish(&got_b[0]).unwrap();
    assert!(la.take("wave", 1, 5).unwrap().is_empty());
    let members = la.members("wave", 1).unwrap();
    assert!(members.iter().all(|(_, done)| *done), "{members:?}");
    check_log(&a);
}

/// The event that ends a mailbox's share of a pass finishes its lease in
/// the same transaction: a worker that dies (or pauses) right after it
/// leaves nothing for another worker to take over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mailbox_whose_end_is_recorded_is_never_taken_over() {
    let pg = Postgres::start().unwrap();
    let a = PgStore::open(&pg.url()).unwrap();
    let b = PgStore::open(&pg.url()).unwrap();
    let ttl = Duration::from_secs(30);
    let (la, lb) = (a.leases("a", ttl).unwrap(), b.leases("b", ttl).unwrap());
    let boxes = ["m1@x".to_string(), "m2@x".to_string()];
    la.open_pass("wave", 7, &boxes).unwrap();
    let got = la.take("wave", 7, 2).unwrap();
    assert_eq!(got.len(), 2);
    let end = |mailbox: &str, pass_id: u64| Event::MailboxPassFinished {
        mailbox: mailbox.to_string(),
        pass_id,
        outcome: Outcome::Succeeded,
        detail: String::new(),
    };
    // m1: another pass's end does not finish this pass's lease; its own does.
    let s1 = stream::mailbox("m1@x");
    a.append(
        &s1,
        ExpectedVersion::Any,
        Actor::Engine,
        vec![end("m1@x", 6)],
    )
    .await
    .unwrap();
    let done = |m: &str| {
        pg.psql(&format!(
            "SELECT done FROM ferry_leases WHERE mailbox = '{m}'"
        ))
        .unwrap()
        .trim()
        .to_string()
    };
    assert_eq!(done("m1@x"), "f");
    a.append(
        &s1,
        ExpectedVersion::Any,
        Actor::Engine,
        vec![ev("last item"), end("m1@x", 7)],
    )
    .await
    .unwrap();
    assert_eq!(done("m1@x"), "t");
    // m2: taken over after a's lease lapsed; a's late end is refused and
    // finishes nothing.
    pg.psql("UPDATE ferry_leases SET expires_us = 0 WHERE mailbox = 'm2@x'")
        .unwrap();
    let s2 = stream::mailbox("m2@x");
    let err = a
        .append(
            &s2,
            ExpectedVersion::Any,
            Actor::Engine,
            vec![end("m2@x", 7)],
        )
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::LeaseLost { .. }), "{err}");
    assert_eq!(done("m2@x"), "f");
    // Both leases lapse (a dies): only the unfinished mailbox is taken.
    pg.psql("UPDATE ferry_leases SET expires_us = 0").unwrap();
    let over = lb.take("wave", 7, 5).unwrap();
    let taken: Vec<&str> = over.iter().map(|l| l.mailbox.as_str()).collect();
    assert_eq!(taken, ["m2@x"]);
    check_log(&a);
}

/// Mailboxes waiting for a connection get one in the order they began to
/// wait, whichever worker they are on: a release goes to the longest
/// waiter, not to whoever asks first after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_freed_connection_goes_to_the_longest_waiter_fleet_wide() {
    let pg = Postgres::start().unwrap();
    let store = PgStore::open(&pg.url()).unwrap();
    let ttl = Duration::from_secs(30);
    let (a, c) = (store.caps("a", ttl).unwrap(), store.caps("c", ttl).unwrap());
    let held = a.acquire("imap", 1).await.unwrap();
    // Worker b's mailbox has waited longest; b is slow to wake (its row
    // is there, its next try not yet).
    pg.psql(
        "INSERT INTO ferry_slot_waiters (endpoint, holder, token, expires_us) \
         VALUES ('imap', 'b', 1, \
           (extract(epoch from clock_timestamp()) * 1000000)::bigint + 60000000)",
    )
    .unwrap();
    let waiting = tokio::spawn({
        let c = c.clone();
        async move { c.acquire("imap", 1).await.unwrap() }
    });
    until("c's mailbox is listed behind b's", || {
        pg.psql("SELECT count(*) FROM ferry_slot_waiters")
            .unwrap()
            .trim()
            == "2"
    })
    .await;
    drop(held);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        !waiting.is_finished(),
        "c took the place b waited for first"
    );
    assert!(
        c.try_acquire("imap", 1).await.unwrap().is_none(),
        "a spare took it"
    );
    // b takes it and gives it back: c's turn.
    pg.psql(
        "DELETE FROM ferry_slot_waiters WHERE holder = 'b'; SELECT pg_notify('ferry_fleet', 'slot')",
    )
    .unwrap();
    let got = tokio::time::timeout(Duration::from_secs(5), waiting)
        .await
        .expect("c's mailbox gets the place once nobody waits ahead of it")
        .unwrap();
    drop(got);
}
