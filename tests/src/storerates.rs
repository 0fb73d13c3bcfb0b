//! The PostgreSQL event store's append and replay rates beside the segment
//! store's, measured in the same run (storebench, fleetbench).

use std::sync::Arc;
use std::time::{Duration, Instant};

use ferry_events::{Actor, EventStore, ExpectedVersion, SegmentStore};
use ferry_pgstore::PgStore;

use crate::loggen::{copied, mailbox};

/// Appends per second with `tasks` tasks each appending to its own stream.
pub async fn appends(store: Arc<dyn EventStore>, tasks: usize, total: u64, phase: usize) -> f64 {
    let per = total / tasks as u64;
    let elapsed = append_from(store, tasks, per, |w| format!("bench/{phase}/{w}")).await;
    (per * tasks as u64) as f64 / elapsed.as_secs_f64()
}

/// `per` single-event appends from each of `tasks` tasks, task `w` on
/// stream `stream(w)` from its start; how long they all took.
pub async fn append_from(
    store: Arc<dyn EventStore>,
    tasks: usize,
    per: u64,
    stream: impl Fn(usize) -> String,
) -> Duration {
    let t = Instant::now();
    let mut handles = Vec::new();
    for w in 0..tasks {
        let store = store.clone();
        let stream = stream(w);
        handles.push(tokio::spawn(async move {
            let addr = mailbox(w);
            for i in 0..per {
                store
                    .append(
                        &stream,
                        ExpectedVersion::Exact(i),
                        Actor::Engine,
                        vec![copied(&addr, i as u32 + 1)],
                    )
                    .await
                    .expect("append");
            }
        }));
    }
    for h in handles {
        h.await.expect("writer");
    }
    t.elapsed()
}

pub async fn fill(store: &dyn EventStore, n: u64) {
    const PER: u64 = 1_000;
    for a in 0..n.div_ceil(PER) {
        let addr = mailbox(a as usize % 200);
        let events = (0..PER)
            .map(|i| copied(&addr, (a * PER + i) as u32 + 1))
            .collect();
        store
            .append(
                &format!("fill/{}", a % 200),
                ExpectedVersion::Any,
                Actor::Engine,
                events,
            )
            .await
            .expect("fill");
    }
}

/// Events read and decoded per second, and how many.
pub fn replay(store: &dyn EventStore) -> (f64, u64) {
    let t = Instant::now();
    let mut n = 0u64;
    for env in store.read_all(1) {
        env.expect("read");
        n += 1;
    }
    (n as f64 / t.elapsed().as_secs_f64(), n)
}

/// Measures both stores (the segment store in a temporary directory, the
/// PostgreSQL one at `url`) and prints the tables: appends of one event
/// from 1, 16 and 64 tasks, `total` per phase, then a replay of what was
/// written plus `bulk` more.
pub async fn compare(url: &str, total: u64, bulk: u64) {
    let dir = tempfile::tempdir().expect("temp dir");
    let segments: Arc<dyn EventStore> =
        Arc::new(SegmentStore::open(&dir.path().join("log")).expect("open segments"));
    let postgres: Arc<dyn EventStore> = Arc::new(PgStore::open(url).expect("open pg"));

    println!("appends of one event, {total} per phase (PostgreSQL with fsync on)");
    println!("| tasks | segment store | PostgreSQL | PostgreSQL / segment |");
    println!("|---|---|---|---|");
    for (phase, tasks) in [1usize, 16, 64].into_iter().enumerate() {
        let s = appends(segments.clone(), tasks, total, phase).await;
        let p = appends(postgres.clone(), tasks, total, phase).await;
        println!("| {tasks} | {s:.0}/s | {p:.0}/s | {:.2}x |", p / s);
    }
    fill(segments.as_ref(), bulk).await;
    fill(postgres.as_ref(), bulk).await;
    let (s, n) = replay(segments.as_ref());
    let (p, m) = replay(postgres.as_ref());
    assert_eq!(n, m, "both stores hold the same events");
    println!();
    println!("replay (read and decode) of {n} events");
    println!("| segment store | PostgreSQL | PostgreSQL / segment |");
    println!("|---|---|---|");
    println!("| {s:.0} ev/s | {p:.0} ev/s | {:.2}x |", p / s);
}
