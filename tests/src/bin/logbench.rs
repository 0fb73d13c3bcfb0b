//! Event log benchmark: each figure beside a baseline measured in the same run.
//!
//! `cargo run --release -p ferry-tests --bin logbench` is the documented
//! run (10,000,000 events); `-- --quick` writes 1,000,000; `-- --events N`
//! picks N (30,000,000 for the long run). `--appends N` scales the append
//! phases; `--no-ferryd` skips starting the daemon on the log.
//!
//! - appends through `SegmentStore` from 1, 16 and 256 tasks (one
//!   ItemCopied per append), against a baseline that writes the very same
//!   framed bytes to a file in the same group sizes, one `fdatasync` a group
//!   (each side's best of three runs, taken in turns);
//! - the writer's resident memory, sampled every 500,000 events while the
//!   log is written (what the engine writes: intent, copied, checkpoints for
//!   200 mailboxes in 4 batches), and its growth per event after the first
//!   million;
//! - bytes per event: records in today's schema against the same events in
//!   schema 1, and on disk; beside them raw sled, as the sled-only store
//!   kept schema 1 records, for the first `--sled-events` events (500,000);
//! - the rebuild of the views from a freshly opened store (ferryd's own
//!   two-thread path), the warm replay against a plain read of the segment
//!   files, and an open with a snapshot;
//! - ferryd started on the log, without and then with a snapshot: its idle
//!   memory and start-up time.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use ferry_events::{Actor, Envelope, EventStore, SegmentStore, codec};
use ferry_projections::{Projections, snapshot};
use ferry_tests::bench::{start_ferryd, status_mb};
use ferry_tests::loggen::{copied, generate, intent, mailbox};

const APPEND_GOAL: f64 = 1.5;
const REPLAY_GOAL: f64 = 2_000_000.0;
const REBUILD_GOAL: Duration = Duration::from_secs(15);
const SNAPSHOT_START_GOAL: Duration = Duration::from_secs(2);
const GROWTH_GOAL: f64 = 32.0;
const FERRYD_GOAL_MB: f64 = 250.0;
const SAMPLE_EVERY: u64 = 500_000;

struct Args {
    events: u64,
    appends: u64,
    sled_events: u64,
    ferryd: bool,
}

fn args() -> Args {
    let mut a = Args {
        events: 10_000_000,
        appends: 20_000,
        sled_events: 500_000,
        ferryd: true,
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
            "--sled-events" => a.sled_events = num("--sled-events"),
            "--no-ferryd" => a.ferryd = false,
            other => panic!(
                "unknown argument {other}; use --quick, --events N, --appends N, --sled-events N, --no-ferryd"
            ),
        }
    }
    a
}

fn own_mb(field: &str) -> f64 {
    status_mb(std::process::id(), field)
}

fn dir_bytes(dir: &Path) -> u64 {
    let mut n = 0;
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let m = e.metadata().expect("metadata");
        n += if m.is_dir() {
            dir_bytes(&e.path())
        } else {
            m.len()
        };
    }
    n
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
    let elapsed = ferry_tests::storerates::append_from(store.clone(), writers, per, |w| {
        ferry_events::stream::mailbox(&mailbox(w))
    })
    .await;
    let stats = store.stats();
    let groups = stats.groups.load(Ordering::Relaxed);
    let written = stats.events.load(Ordering::Relaxed);
    let mean_group = written as f64 / groups as f64;
    let sync_us = stats.sync_us.load(Ordering::Relaxed) as f64 / groups as f64;

    // The very same framed bytes, in commit order, in groups of the mean size.
    let mut frames: Vec<Vec<u8>> = Vec::with_capacity(written as usize);
    for raw in store.read_raw(1) {
        let raw = raw.expect("read back");
        let mut f = Vec::with_capacity(raw.bytes.len() + 8);
        f.extend_from_slice(&(raw.bytes.len() as u32).to_le_bytes());
        f.extend_from_slice(&crc32c::crc32c(&raw.bytes).to_le_bytes());
        f.extend_from_slice(&raw.bytes);
        frames.push(f);
    }
    store.close();
    drop(store);

    let raw_dir = tempfile::tempdir().expect("temp dir");
    let file = std::fs::File::create(raw_dir.path().join("raw.log")).expect("raw file");
    let group = (mean_group.round() as usize).max(1);
    let t = Instant::now();
    let mut buf = Vec::new();
    for chunk in frames.chunks(group) {
        buf.clear();
        for f in chunk {
            buf.extend_from_slice(f);
        }
        std::io::Write::write_all(&mut &file, &buf).expect("raw write");
        file.sync_data().expect("raw fdatasync");
    }
    let raw_elapsed = t.elapsed();
    eprintln!(
        "  {writers} writers: {:.0} us a group writing and syncing in the store, {:.0} us in the baseline",
        sync_us,
        raw_elapsed.as_micros() as f64 / frames.len().div_ceil(group) as f64
    );
    AppendResult {
        writers,
        events: written,
        ferry_eps: written as f64 / elapsed.as_secs_f64(),
        mean_group,
        raw_eps: written as f64 / raw_elapsed.as_secs_f64(),
    }
}

/// Writes the log through the store, sampling this process's memory.
async fn write_log(dir: &Path, n: u64) -> (Vec<(u64, f64)>, Duration) {
    let store = Arc::new(SegmentStore::open(dir).expect("open store"));
    let done = Arc::new(AtomicBool::new(false));
    let sampler = {
        let store = store.clone();
        let done = done.clone();
        std::thread::spawn(move || {
            let mut samples = vec![(0u64, own_mb("VmRSS"))];
            let mut next = SAMPLE_EVERY;
            while !done.load(Ordering::Relaxed) {
                let head = store.head();
                if head >= next {
                    samples.push((head, own_mb("VmRSS")));
                    next += SAMPLE_EVERY;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            samples
        })
    };
    let t = Instant::now();
    generate(store.clone(), n).await;
    let took = t.elapsed();
    done.store(true, Ordering::Relaxed);
    let mut samples = sampler.join().expect("sampler");
    samples.push((store.head(), own_mb("VmRSS")));
    store.close();
    (samples, took)
}

/// The sled-only store's layout for the first `n` records, in schema 1:
/// its disk bytes and this process's memory growth, per event.
fn sled_baseline(store: &SegmentStore, n: u64) -> (f64, f64) {
    let tmp = tempfile::tempdir().expect("temp dir");
    let db = sled::Config::new()
        .path(tmp.path())
        .mode(sled::Mode::HighThroughput)
        .open()
        .expect("open raw sled");
    let tree = db.open_tree("log").expect("tree");
    let before = own_mb("VmRSS");
    let mut batch = sled::Batch::default();
    let mut in_batch = 0;
    let mut written = 0u64;
    for env in store.read_all(1).take(n as usize) {
        let mut env = env.expect("read");
        env.schema_version = codec::SCHEMA_V1;
        let bytes = codec::encode(&env).expect("encode");
        let mut l = vec![b'l'];
        l.extend_from_slice(&env.seq.to_be_bytes());
        let mut s = vec![b's'];
        s.extend_from_slice(env.stream.as_bytes());
        s.push(0);
        s.extend_from_slice(&env.stream_version.to_be_bytes());
        let mut v = vec![b'v'];
        v.extend_from_slice(env.stream.as_bytes());
        batch.insert(l, bytes);
        batch.insert(s, &env.seq.to_be_bytes());
        batch.insert(v, &env.stream_version.to_be_bytes());
        in_batch += 1;
        written += 1;
        if in_batch == 2000 {
            tree.apply_batch(std::mem::take(&mut batch)).expect("batch");
            db.flush().expect("flush");
            in_batch = 0;
        }
    }
    tree.apply_batch(batch).expect("batch");
    db.flush().expect("flush");
    let grown = (own_mb("VmRSS") - before) * 1024.0 * 1024.0 / written as f64;
    drop(tree);
    drop(db);
    (dir_bytes(tmp.path()) as f64 / written as f64, grown)
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let args = args();
    println!("logbench: {} events", args.events);
    let ok = |pass: bool| if pass { "ok" } else { "MISSED" };

    // Record sizes of the two records the engine writes per item.
    let addr = mailbox(0);
    for event in [intent(&addr, 4711), copied(&addr, 4711)] {
        let mut env = Envelope {
            seq: 5_000_000,
            stream: ferry_events::stream::mailbox(&addr),
            stream_version: 25_000,
            time_us: 1_765_000_000_000_000,
            actor: Actor::Engine,
            event_type: event.event_type().into(),
            schema_version: codec::SCHEMA_V1,
            prev_hash: [9; 32],
            event,
        };
        let v1 = codec::encode(&env).expect("encode").len();
        env.schema_version = codec::SCHEMA_VERSION;
        let v2 = codec::encode(&env).expect("encode").len();
        println!(
            "record of one {}: schema 1 {v1} bytes, schema 2 {v2} bytes ({:.2}x)",
            env.event_type,
            v2 as f64 / v1 as f64
        );
    }

    // Disk speed drifts: each side's best of three, taken in turns.
    let mut appends = Vec::new();
    for (writers, scale) in [(1usize, 1u64), (16, 4), (256, 8)] {
        // One writer waits a full fdatasync per event; give it fewer events.
        let n = (args.appends * scale / 4).max(writers as u64);
        let mut best: Option<AppendResult> = None;
        for _ in 0..3 {
            let r = append_run(writers, n - n % writers as u64).await;
            best = Some(match best {
                None => r,
                Some(b) => AppendResult {
                    ferry_eps: b.ferry_eps.max(r.ferry_eps),
                    raw_eps: b.raw_eps.max(r.raw_eps),
                    ..r
                },
            });
        }
        appends.push(best.expect("three runs"));
    }

    let tmp = tempfile::tempdir().expect("temp dir");
    let data = tmp.path().join("data");
    let dir = data.join("log");
    let (samples, gen_time) = write_log(&dir, args.events).await;
    let head = samples.last().expect("samples").0;

    // Rebuild: ferryd's start-up path on a freshly opened store.
    let store = SegmentStore::open(&dir).expect("reopen store");
    let t = Instant::now();
    let mut views = Projections::default();
    ferryd::app::replay(&store, &mut views).expect("replay");
    let rebuild_time = t.elapsed();
    assert_eq!(views.head, head, "rebuild reached the head");
    let streams = 4 + views.mailboxes.len();
    let mailboxes = views.mailboxes.len();
    let snap = snapshot::encode(&views).expect("snapshot");
    std::fs::write(data.join("views.snapshot"), &snap).expect("write snapshot");
    drop(views);

    // Warm replay (read and decode), against a plain read of the segments.
    let t = Instant::now();
    let mut replayed = 0u64;
    let (mut v1_bytes, mut v2_bytes, mut sampled) = (0u64, 0u64, 0u64);
    for env in store.read_all(1) {
        std::hint::black_box(env.expect("decode"));
        replayed += 1;
    }
    let replay_time = t.elapsed();
    let t = Instant::now();
    let mut plain = 0u64;
    let mut seg_paths: Vec<_> = std::fs::read_dir(dir.join("segments"))
        .expect("segments")
        .map(|e| e.expect("entry").path())
        .collect();
    seg_paths.sort();
    for p in &seg_paths {
        plain += std::hint::black_box(std::fs::read(p).expect("read segment")).len() as u64;
    }
    let plain_time = t.elapsed();
    for env in store.read_all(1).step_by(50) {
        let mut env = env.expect("decode");
        v2_bytes += codec::encode(&env).expect("encode").len() as u64;
        env.schema_version = codec::SCHEMA_V1;
        v1_bytes += codec::encode(&env).expect("encode").len() as u64;
        sampled += 1;
    }
    let sled = (args.sled_events > 0).then(|| sled_baseline(&store, args.sled_events));
    store.close();
    drop(store);

    // A start with a snapshot: open the store, load the views, fold the tail.
    let t = Instant::now();
    let store = SegmentStore::open(&dir).expect("reopen store");
    let mut views =
        snapshot::decode(&std::fs::read(data.join("views.snapshot")).expect("read snapshot"))
            .expect("decode snapshot");
    ferryd::app::replay(&store, &mut views).expect("replay tail");
    let snapshot_start = t.elapsed();
    assert_eq!(views.head, head);
    drop(views);
    store.close();
    drop(store);

    let mut ferryd_rows = Vec::new();
    if args.ferryd {
        std::fs::remove_file(data.join("views.snapshot")).expect("remove snapshot");
        for label in ["without a snapshot", "with a snapshot"] {
            let socket = tmp.path().join("ferryd.sock");
            let t = Instant::now();
            let mut child = start_ferryd(&data, &socket);
            let started = t.elapsed();
            std::thread::sleep(Duration::from_secs(2));
            let idle = status_mb(child.id(), "VmRSS");
            let peak = status_mb(child.id(), "VmHWM");
            ferry_tests::signal(child.id(), libc::SIGTERM);
            let _ = ferry_tests::wait_timeout(&mut child, Duration::from_secs(120));
            ferryd_rows.push((label, started, idle, peak));
        }
    }

    let eps = |n: u64, d: Duration| n as f64 / d.as_secs_f64();
    println!();
    println!(
        "{:<44} {:>14} {:>14} {:>8} {:>22} {:>7}",
        "measure", "ferry", "baseline", "ratio", "goal", ""
    );
    for a in &appends {
        let ratio = a.raw_eps / a.ferry_eps;
        println!(
            "{:<44} {:>9.0} ev/s {:>9.0} ev/s {:>7.2}x {:>22} {:>7}",
            format!(
                "append, {} writers (group {:.1}, {} ev)",
                a.writers, a.mean_group, a.events
            ),
            a.ferry_eps,
            a.raw_eps,
            ratio,
            "write+fdatasync <= 1.5x",
            ok(ratio <= APPEND_GOAL)
        );
    }
    let replay = eps(replayed, replay_time);
    let plain_eps = eps(replayed, plain_time);
    println!(
        "{:<44} {:>9.0} ev/s {:>9.0} ev/s {:>7.2}x {:>22} {:>7}",
        format!("replay read_all+decode ({replayed} ev, warm)"),
        replay,
        plain_eps,
        plain_eps / replay,
        ">= 2,000,000 ev/s",
        ok(replay >= REPLAY_GOAL)
    );
    let big = args.events >= 10_000_000;
    println!(
        "{:<44} {:>14.2?} {:>14} {:>8} {:>22} {:>7}",
        format!("rebuild of {head} ev (fresh open)"),
        rebuild_time,
        format!("{:.0} ev/s", eps(head, rebuild_time)),
        "",
        if big {
            "10M ev < 15 s"
        } else {
            "(goal is for 10M)"
        },
        if big {
            ok(rebuild_time <= REBUILD_GOAL * (head as u32 / 10_000_000).max(1))
        } else {
            "-"
        }
    );
    println!(
        "{:<44} {:>14.2?} {:>14} {:>8} {:>22} {:>7}",
        "open with a snapshot, fold the tail",
        snapshot_start,
        "",
        "",
        "< 2 s",
        ok(snapshot_start < SNAPSHOT_START_GOAL)
    );

    println!();
    println!("writer's resident memory while writing ({mailboxes} mailboxes, {streams} streams):");
    for (events, mb) in &samples {
        println!("  {events:>11} events  {mb:>8.1} MB");
    }
    let at_1m = samples
        .iter()
        .find(|(e, _)| *e >= 1_000_000)
        .copied()
        .unwrap_or(samples[0]);
    let last = *samples.last().expect("samples");
    if last.0 > at_1m.0 {
        let per = (last.1 - at_1m.1) * 1024.0 * 1024.0 / (last.0 - at_1m.0) as f64;
        println!(
            "  growth after {} events: {per:.1} bytes/event (goal <= {GROWTH_GOAL}) {}",
            at_1m.0,
            ok(per <= GROWTH_GOAL)
        );
    }
    println!(
        "  generation: {gen_time:.2?} ({:.0} ev/s, appends of up to 2000 from 4 writers)",
        eps(head, gen_time)
    );

    println!();
    let disk = dir_bytes(&dir) as f64 / head as f64;
    let (v1, v2) = (
        v1_bytes as f64 / sampled as f64,
        v2_bytes as f64 / sampled as f64,
    );
    println!(
        "bytes per event (every 50th record): {v2:.1} in schema 2 vs {v1:.1} for the same events in schema 1, {:.2}x",
        v2 / v1
    );
    print!("  on disk: {disk:.1} bytes/event (segments and index, {plain} segment bytes)");
    if let Some((sled_disk, sled_mem)) = sled {
        println!(
            "; raw sled with schema 1 records and the old keys, first {} events: {sled_disk:.1} bytes/event on disk ({:.2}x), memory +{sled_mem:.0} bytes/event",
            args.sled_events.min(head),
            disk / sled_disk
        );
    } else {
        println!();
    }

    for (label, started, idle, peak) in ferryd_rows {
        println!(
            "ferryd on the {head}-event log {label}: started in {started:.2?}, idle RSS {idle:.1} MB (peak {peak:.1}); goal <= {FERRYD_GOAL_MB} MB {}",
            ok(idle <= FERRYD_GOAL_MB)
        );
    }
    println!(
        "peak RSS of this process (VmHWM): {:.1} MB",
        own_mb("VmHWM")
    );
}
