//! Event log benchmark: append, replay and rebuild, each beside its goal.
//!
//! `cargo run --release -p ferry-tests --bin logbench` does the documented
//! full run (rebuild of 10,000,000 events); `-- --quick` rebuilds 1,000,000;
//! `-- --events N` picks N. `--appends N` scales the append phases.
//!
//! Appends go through `SegmentStore` from 1, 16 and 256 tokio tasks (one
//! ItemCopied per append). Each is compared with raw sled writing the very
//! same keys and bytes in batches of the mean group size the store achieved,
//! each batch followed by `flush`, which is the least any durable group
//! commit on sled has to do.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use ferry_events::{Actor, EventStore, ExpectedVersion, SegmentStore};
use ferry_projections::Projections;
use ferry_tests::loggen::{copied, generate, mailbox};

const APPEND_GOAL: f64 = 1.5;
const REPLAY_GOAL: f64 = 1_000_000.0;
const REBUILD_GOAL: Duration = Duration::from_secs(15);

struct Args {
    events: u64,
    appends: u64,
}

fn args() -> Args {
    let mut a = Args {
        events: 10_000_000,
        appends: 20_000,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut num = |name: &str| -> u64 {
            it.next()
                .and_then(|v| v.replace('_', "").parse().ok())
                .unwrap_or_else(|| panic!("{name} takes a number"))
        };
        match arg.as_str() {
            "--quick" => a.events = 1_000_000,
            "--events" => a.events = num("--events"),
            "--appends" => a.appends = num("--appends"),
            other => panic!("unknown argument {other}; use --quick, --events N, --appends N"),
        }
    }
    a
}

fn sled_db(dir: &Path) -> sled::Db {
    // The store's own settings, so the baseline differs only in the code path.
    sled::Config::new()
        .path(dir)
        .mode(sled::Mode::HighThroughput)
        .open()
        .expect("open raw sled")
}

fn peak_rss() -> String {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .map(|l| l["VmHWM:".len()..].trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into())
}

struct AppendResult {
    writers: usize,
    events: u64,
    ferry_eps: f64,
    mean_group: f64,
    raw_eps: f64,
}

/// `events` single-event appends from `writers` tasks, each on its own stream.
async fn append_run(writers: usize, events: u64) -> AppendResult {
    let tmp = tempfile::tempdir().expect("temp dir");
    let store = Arc::new(SegmentStore::open(&tmp.path().join("log")).expect("open store"));
    let per = events / writers as u64;
    let t = Instant::now();
    let tasks: Vec<_> = (0..writers)
        .map(|w| {
            let store = store.clone();
            tokio::spawn(async move {
                let addr = mailbox(w);
                let stream = ferry_events::stream::mailbox(&addr);
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
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("writer");
    }
    let elapsed = t.elapsed();
    let stats = store.stats();
    let groups = stats.groups.load(Ordering::Relaxed);
    let written = stats.events.load(Ordering::Relaxed);
    let mean_group = written as f64 / groups as f64;

    // The very same keys and bytes the store wrote, in commit order.
    let mut records: Vec<Vec<(Vec<u8>, Vec<u8>)>> = Vec::with_capacity(written as usize);
    for env in store.read_all(0) {
        let env = env.expect("read back");
        let bytes = ferry_events::codec::encode(&env).expect("encode");
        let mut l = vec![b'l'];
        l.extend_from_slice(&env.seq.to_be_bytes());
        let mut s = vec![b's'];
        s.extend_from_slice(env.stream.as_bytes());
        s.push(0);
        s.extend_from_slice(&env.stream_version.to_be_bytes());
        let mut v = vec![b'v'];
        v.extend_from_slice(env.stream.as_bytes());
        records.push(vec![
            (l, bytes),
            (s, env.seq.to_be_bytes().to_vec()),
            (v, env.stream_version.to_be_bytes().to_vec()),
        ]);
    }
    store.close();
    drop(store);

    let raw_dir = tempfile::tempdir().expect("temp dir");
    let db = sled_db(raw_dir.path());
    let tree = db.open_tree("log").expect("tree");
    let group = (mean_group.round() as usize).max(1);
    let t = Instant::now();
    for chunk in records.chunks(group) {
        let mut batch = sled::Batch::default();
        for rec in chunk {
            for (k, v) in rec {
                batch.insert(k.as_slice(), v.as_slice());
            }
        }
        tree.apply_batch(batch).expect("raw batch");
        db.flush().expect("raw flush");
    }
    let raw_elapsed = t.elapsed();
    AppendResult {
        writers,
        events: written,
        ferry_eps: written as f64 / elapsed.as_secs_f64(),
        mean_group,
        raw_eps: written as f64 / raw_elapsed.as_secs_f64(),
    }
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let args = args();
    println!("logbench: rebuild of {} events", args.events);
    let sample = ferry_events::codec::encode(&ferry_events::Envelope {
        seq: 1,
        stream: ferry_events::stream::mailbox(&mailbox(0)),
        stream_version: 1,
        time_us: 1_760_000_000_000_000,
        actor: Actor::Engine,
        event_type: "ItemCopied".into(),
        schema_version: ferry_events::codec::SCHEMA_VERSION,
        prev_hash: ferry_events::ZERO_HASH,
        event: copied(&mailbox(0), 1),
    })
    .expect("encode");
    println!("record size of one ItemCopied: {} bytes", sample.len());

    let mut appends = Vec::new();
    for (writers, scale) in [(1usize, 1u64), (16, 4), (256, 8)] {
        // One writer waits a full flush per event; give it fewer events.
        let n = (args.appends * scale / 4).max(writers as u64);
        appends.push(append_run(writers, n - n % writers as u64).await);
    }

    let tmp = tempfile::tempdir().expect("temp dir");
    let dir = tmp.path().join("log");
    let store = Arc::new(SegmentStore::open(&dir).expect("open store"));
    let t = Instant::now();
    generate(store.clone(), args.events).await;
    let gen_time = t.elapsed();
    let head = store.head();

    store.close();
    drop(store);

    // Raw scan first, warm (one untimed pass), so both sides read cached pages.
    let raw_scan = |tree: &sled::Tree| {
        let mut n = 0u64;
        let mut bytes = 0u64;
        for kv in tree.range(&b"l"[..]..&b"m"[..]) {
            let (k, v) = kv.expect("raw scan");
            bytes += (k.len() + v.len()) as u64;
            n += 1;
        }
        std::hint::black_box(bytes);
        n
    };
    let (scanned, scan_time) = {
        let db = sled_db(&dir);
        let tree = db.open_tree("log").expect("tree");
        raw_scan(&tree);
        let t = Instant::now();
        (raw_scan(&tree), t.elapsed())
    };

    // The rebuild is what a restart does: a freshly opened store, cold.
    let store = SegmentStore::open(&dir).expect("reopen store");
    let t = Instant::now();
    // ferryd's own start-up path: decoding and folding on two threads.
    let mut p = Projections::default();
    ferryd::app::replay(&store, &mut p).expect("replay");
    let rebuild_time = t.elapsed();
    assert_eq!(p.head, head, "rebuild reached the head");
    drop(p);

    // Replay after the rebuild's pass, so it is warm like the raw scan.
    let t = Instant::now();
    let mut replayed = 0u64;
    for env in store.read_all(0) {
        std::hint::black_box(env.expect("decode"));
        replayed += 1;
    }
    let replay_time = t.elapsed();
    assert_eq!(scanned, replayed, "raw scan saw every record");
    store.close();
    drop(store);

    let eps = |n: u64, d: Duration| n as f64 / d.as_secs_f64();
    let ok = |pass: bool| if pass { "ok" } else { "MISSED" };
    println!();
    println!(
        "{:<34} {:>12} {:>14} {:>8} {:>22} {:>7}",
        "measure", "ferry", "raw sled", "ratio", "goal", ""
    );
    for a in &appends {
        let ratio = a.raw_eps / a.ferry_eps;
        println!(
            "{:<34} {:>8.0} ev/s {:>9.0} ev/s {:>7.2}x {:>22} {:>7}",
            format!(
                "append, {} writers (group {:.1}, {} ev)",
                a.writers, a.mean_group, a.events
            ),
            a.ferry_eps,
            a.raw_eps,
            ratio,
            "raw/ferry <= 1.5x",
            ok(ratio <= APPEND_GOAL)
        );
    }
    let replay = eps(replayed, replay_time);
    let scan = eps(scanned, scan_time);
    println!(
        "{:<34} {:>8.0} ev/s {:>9.0} ev/s {:>7.2}x {:>22} {:>7}",
        format!("replay read_all+decode ({replayed} ev, warm)"),
        replay,
        scan,
        scan / replay,
        ">= 1,000,000 ev/s",
        ok(replay >= REPLAY_GOAL)
    );
    println!(
        "{:<34} {:>12.2?} {:>14} {:>8} {:>22} {:>7}",
        format!("rebuild of {head} ev (cold open)"),
        rebuild_time,
        format!("{:.0} ev/s", eps(head, rebuild_time)),
        "",
        if args.events >= 10_000_000 {
            "10M ev < 15 s"
        } else {
            "(goal is for 10M)"
        },
        if args.events >= 10_000_000 {
            ok(rebuild_time < REBUILD_GOAL)
        } else {
            "-"
        }
    );
    println!(
        "generation of the log: {gen_time:.2?} ({:.0} ev/s in appends of 2000)",
        eps(head, gen_time)
    );
    println!("peak RSS (VmHWM): {}", peak_rss());
}
