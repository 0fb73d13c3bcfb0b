//! Crash test of the event log and the daemon's snapshots.
//!
//! A child process (this same test binary, re-executed on `crash_child`)
//! opens `ferryd::App` on a data directory and appends realistic events from
//! many tokio tasks, printing `ack ...` for every envelope of every append
//! that returned `Ok`. The parent SIGKILLs it at a random instant, then
//! checks what the log promises:
//! - every acknowledged envelope is in the log, byte for byte (by hash);
//! - sequences run 1..=head without a hole and the hash chain verifies;
//! - every stream's versions run 1..=n and match the stored stream version;
//! - a multi-event append is all or nothing (an intent is always followed
//!   by its outcome in the same stream);
//! - the snapshot on disk, when not ahead of the log, equals the rebuild of
//!   the log up to its head;
//! - `App::open` (snapshot + tail) yields the views of a full rebuild.
//!
//! Rounds share one data directory, so crashes accumulate. The default run
//! does 50 rounds; `FERRY_CRASH_ROUNDS=1000` does a long one, and
//! `FERRY_CRASH_SEED=N` replays a run's kill timings.

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ferry_events::envelope::{ChainVerifier, hash_bytes};
use ferry_events::{
    Actor, BatchOptions, Envelope, Event, EventStore, ExpectedVersion, ItemKey, MailboxSpec,
    PassKind, SegmentStore, codec,
};
use ferry_projections::{Projections, snapshot};
use rand::{Rng, SeedableRng};

/// Carries the data directory to the child; its absence makes `crash_child` a no-op.
const CHILD_DIR_ENV: &str = "FERRY_CRASH_CHILD_DIR";
const WRITERS: usize = 24;
const BATCHES: usize = 4;
const SNAPSHOT_EVERY: u64 = 50;

fn hex(h: &[u8]) -> String {
    h.iter().map(|b| format!("{b:02x}")).collect()
}

fn config(dir: &Path) -> ferryd::config::Config {
    let mut config = ferryd::config::Config::for_dir(dir, &dir.join("ferryd.sock"));
    // Small, so snapshots are written often and some die half-written.
    config.snapshot_every = SNAPSHOT_EVERY;
    config
}

fn batch_stream(b: usize) -> String {
    ferry_events::stream::batch(&format!("wave-{b}"))
}

fn address(t: usize) -> String {
    format!("user{t}@example.org")
}

fn key(uid: u32) -> ItemKey {
    ItemKey {
        folder: "Archive/2024/Février".into(),
        uidvalidity: 1_700_000_000,
        uid,
    }
}

fn digest(uid: u32) -> String {
    format!(
        "{:064x}",
        u64::from(uid).wrapping_mul(0x9e37_79b9_7f4a_7c15)
    )
}

/// Prints one `ack` line per envelope, in one write, flushed before the
/// task appends again: a line the parent reads is an `Ok` the child got.
fn ack(envs: &[Envelope]) {
    let mut out = String::new();
    for env in envs {
        let bytes = codec::encode(env).expect("encode acknowledged envelope");
        out.push_str(&format!(
            "ack {} {} {} {}\n",
            env.seq,
            env.stream,
            env.stream_version,
            hex(&hash_bytes(&bytes))
        ));
    }
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(out.as_bytes()).expect("write ack");
    stdout.flush().expect("flush ack");
}

/// A refused append is a bug in the store (every expected version here is
/// exact and single-writer); leave at once so the parent sees an exit
/// instead of its SIGKILL.
fn must(res: Result<Vec<Envelope>, ferry_events::StoreError>, what: &str) -> Vec<Envelope> {
    match res {
        Ok(envs) => {
            ack(&envs);
            envs
        }
        Err(e) => {
            eprintln!("child: {what}: {e}");
            std::process::exit(3);
        }
    }
}

/// One writer: its own mailbox stream, with exact expected versions, so a
/// stream version lost or invented by recovery makes the append fail.
async fn writer(app: Arc<ferryd::app::App>, t: usize) {
    let batch = format!("wave-{}", t % BATCHES);
    let bstream = batch_stream(t % BATCHES);
    if t < BATCHES && app.store.stream_version(&bstream) == 0 {
        must(
            app.append(
                &bstream,
                ExpectedVersion::NoStream,
                Actor::User {
                    uid: 1000,
                    name: "admin".into(),
                },
                vec![Event::BatchCreated {
                    name: batch.clone(),
                    source: "old-exchange".into(),
                    destination: "m365".into(),
                    options: BatchOptions::default(),
                }],
            )
            .await,
            "create batch",
        );
    }
    while app.store.stream_version(&bstream) == 0 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let addr = address(t);
    let mstream = ferry_events::stream::mailbox(&addr);
    let mut version = app.store.stream_version(&mstream);
    if version == 0 {
        must(
            app.append(
                &bstream,
                ExpectedVersion::Any,
                Actor::User {
                    uid: 1000,
                    name: "admin".into(),
                },
                vec![Event::MailboxAdded {
                    batch: batch.clone(),
                    mailbox: MailboxSpec {
                        address: addr.clone(),
                        destination_address: format!("user{t}@new.example.com"),
                        source_login: Some(format!("user{t}")),
                        source_secret: None,
                        destination_login: None,
                        destination_secret: None,
                    },
                }],
            )
            .await,
            "add mailbox",
        );
        version = must(
            app.append(
                &mstream,
                ExpectedVersion::NoStream,
                Actor::Engine,
                vec![Event::MailboxPassStarted {
                    mailbox: addr.clone(),
                    batch: batch.clone(),
                    pass_id: 1,
                    pass: PassKind::Full,
                }],
            )
            .await,
            "start mailbox pass",
        )[0]
        .stream_version;
    }
    for i in 0u64.. {
        // The stream version makes the UID unique across rounds.
        let uid = version as u32 + 1;
        let intent = Event::ItemCopyIntent {
            mailbox: addr.clone(),
            key: key(uid),
            size: 20_000 + u64::from(uid % 977) * 31,
            digest: digest(uid),
            dest_folder: "Archive/2024/Février".into(),
            dest_uidnext: Some(uid),
        };
        // Intent and outcome in one append: recovery must keep both or neither.
        let outcome = if i % 13 == 7 {
            Event::ItemFailed {
                mailbox: addr.clone(),
                key: key(uid),
                class: "transient".into(),
                reason: "NO [UNAVAILABLE] try again later".into(),
            }
        } else {
            Event::ItemCopied {
                mailbox: addr.clone(),
                key: key(uid),
                size: 20_000 + u64::from(uid % 977) * 31,
                digest: digest(uid),
                dest_folder: "Archive/2024/Février".into(),
                dest_uid: Some((1_800_000_000, uid)),
            }
        };
        let mut events = vec![intent, outcome];
        if i % 10 == 9 {
            events.push(Event::Checkpoint {
                mailbox: addr.clone(),
                folder: "Archive/2024/Février".into(),
                uidvalidity: 1_700_000_000,
                highest_uid: uid,
                highest_modseq: Some(u64::from(uid) * 3),
            });
        }
        let envs = must(
            app.append(
                &mstream,
                ExpectedVersion::Exact(version),
                Actor::Engine,
                events,
            )
            .await,
            "append items",
        );
        version = envs.last().expect("non-empty append").stream_version;
    }
}

/// The child half: runs only when re-executed by `crash_rounds`.
#[test]
fn crash_child() {
    let Some(dir) = std::env::var_os(CHILD_DIR_ENV) else {
        return;
    };
    let app = Arc::new(ferryd::app::App::open(config(Path::new(&dir))).expect("open app"));
    println!("\nferry-crash-child ready head={}", app.store.head());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let tasks: Vec<_> = (0..WRITERS)
            .map(|t| tokio::spawn(writer(app.clone(), t)))
            .collect();
        for task in tasks {
            task.await.expect("writer task");
        }
    });
}

/// One acknowledged envelope as the child printed it.
struct Ack {
    seq: u64,
    stream: String,
    version: u64,
    hash: String,
}

fn parse_ack(line: &str) -> Option<Ack> {
    let mut f = line.strip_prefix("ack ")?.split(' ');
    let ack = Ack {
        seq: f.next()?.parse().ok()?,
        stream: f.next()?.to_string(),
        version: f.next()?.parse().ok()?,
        hash: f.next()?.to_string(),
    };
    f.next().is_none().then_some(ack)
}

/// Kills the child if the parent panics half-way through a round.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

struct Round {
    acks: Vec<Ack>,
    ready_seen: bool,
}

/// Runs the child and SIGKILLs it after `delay`, counted from its start or,
/// when `from_ready`, from the moment its App is open and appending.
fn run_child(dir: &Path, delay: Duration, from_ready: bool) -> Round {
    let mut child = Guard(
        Command::new(std::env::current_exe().expect("test binary"))
            .args([
                "--exact",
                "log_crash::crash_child",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_DIR_ENV, dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn child"),
    );
    let started = Instant::now();
    let stdout = child.0.stdout.take().expect("child stdout");
    let mut stderr = child.0.stderr.take().expect("child stderr");
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let acks = Arc::new(Mutex::new(Vec::new()));
    let reader = {
        let acks = acks.clone();
        std::thread::spawn(move || {
            let mut r = BufReader::new(stdout);
            let mut line = String::new();
            loop {
                line.clear();
                match r.read_line(&mut line) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
                // A line cut by the kill was never completely written.
                let Some(l) = line.strip_suffix('\n') else {
                    break;
                };
                // libtest may print "test crash_child ... " before it.
                if l.contains("ferry-crash-child ready") {
                    let _ = ready_tx.send(());
                } else if l.starts_with("ack ") {
                    let a = parse_ack(l).unwrap_or_else(|| panic!("bad ack line {l:?}"));
                    acks.lock().unwrap().push(a);
                }
            }
        })
    };
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let mut ready_seen = false;
    if from_ready {
        // Opening grows with the log; give it a generous bound.
        ready_seen = ready_rx.recv_timeout(Duration::from_secs(30)).is_ok();
        std::thread::sleep(delay);
    } else {
        std::thread::sleep(delay.saturating_sub(started.elapsed()));
        ready_seen = ready_seen || ready_rx.try_recv().is_ok();
    }
    let exited = child.0.try_wait().expect("poll child");
    child.0.kill().expect("SIGKILL child");
    let status = child.0.wait().expect("reap child");
    reader.join().expect("stdout reader");
    let stderr = err_reader.join().expect("stderr reader");
    use std::os::unix::process::ExitStatusExt;
    assert!(
        exited.is_none() && status.signal() == Some(libc::SIGKILL),
        "the child ended on its own ({status:?}) before the kill:\n{stderr}"
    );
    let acks = std::mem::take(&mut *acks.lock().unwrap());
    Round { acks, ready_seen }
}

/// Checks the log on disk; returns every envelope, in order.
/// `full_index` reads every stream's index back; otherwise only the tail of
/// each stream, where a crash can leave it (debug-build decoding is slow).
fn check_log(dir: &Path, acked: &HashMap<u64, Ack>, full_index: bool) -> Vec<Envelope> {
    let store = SegmentStore::open(&dir.join("log")).expect("reopen the log after a crash");
    let mut chain = ChainVerifier::new();
    let mut envs = Vec::new();
    let mut streams: BTreeMap<String, u64> = BTreeMap::new();
    for raw in store.read_raw(0) {
        let raw = raw.expect("read record");
        let env = codec::decode(&raw.bytes)
            .unwrap_or_else(|e| panic!("record {} undecodable: {e}", raw.seq));
        assert_eq!(env.seq, raw.seq, "key and envelope disagree");
        let h = chain
            .check(&env, &raw.bytes)
            .unwrap_or_else(|b| panic!("hash chain broken: {b:?}"));
        if let Some(a) = acked.get(&env.seq) {
            assert_eq!(
                (a.stream.as_str(), a.version, a.hash.as_str()),
                (env.stream.as_str(), env.stream_version, hex(&h).as_str()),
                "acknowledged seq {} differs on disk",
                env.seq
            );
        }
        let v = streams.entry(env.stream.clone()).or_insert(0);
        assert_eq!(
            env.stream_version,
            *v + 1,
            "stream {} jumps at seq {}",
            env.stream,
            env.seq
        );
        *v += 1;
        envs.push(env);
    }
    let head = envs.len() as u64;
    assert_eq!(store.head(), head, "head is not the last record");
    if let Some(max) = acked.keys().max() {
        assert!(
            *max <= head,
            "acknowledged seq {max} lost: the log ends at {head}"
        );
    }
    for (stream, n) in &streams {
        assert_eq!(store.stream_version(stream), *n, "stream {stream} version");
        let from = if full_index {
            1
        } else {
            n.saturating_sub(8).max(1)
        };
        let by_stream = store.read_stream(stream, from).expect("read stream");
        assert_eq!(
            by_stream.len() as u64,
            n + 1 - from,
            "stream index of {stream}"
        );
        for (i, env) in by_stream.iter().enumerate() {
            assert_eq!(env, &envs[env.seq as usize - 1], "stream index of {stream}");
            assert_eq!(env.stream_version, from + i as u64);
        }
    }
    // An append's events are kept together: no intent without its outcome.
    let mut by_stream: HashMap<&str, Vec<&Envelope>> = HashMap::new();
    for env in &envs {
        by_stream.entry(&env.stream).or_default().push(env);
    }
    for list in by_stream.values() {
        for (i, env) in list.iter().enumerate() {
            if let Event::ItemCopyIntent { key, .. } = &env.event {
                let ok = matches!(list.get(i + 1).map(|e| &e.event),
                    Some(Event::ItemCopied { key: k, .. } | Event::ItemFailed { key: k, .. }) if k == key);
                assert!(
                    ok,
                    "seq {}: intent without its outcome (torn append)",
                    env.seq
                );
            }
        }
    }
    store.close();
    envs
}

#[test]
fn crash_rounds() {
    if std::env::var_os(CHILD_DIR_ENV).is_some() {
        return;
    }
    let rounds: usize = std::env::var("FERRY_CRASH_ROUNDS")
        .ok()
        .map(|s| s.parse().expect("FERRY_CRASH_ROUNDS is a number"))
        .unwrap_or(50);
    let seed: u64 = std::env::var("FERRY_CRASH_SEED")
        .ok()
        .map(|s| s.parse().expect("FERRY_CRASH_SEED is a number"))
        .unwrap_or_else(rand::random);
    eprintln!("log_crash: {rounds} rounds, FERRY_CRASH_SEED={seed}");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let tmp = tempfile::tempdir().expect("temp dir");
    let dir: PathBuf = tmp.path().join("data");
    let mut acked: HashMap<u64, Ack> = HashMap::new();
    let mut during_open = 0;
    let mut stale_snapshots = 0;
    let t0 = Instant::now();
    for round in 0..rounds {
        // Mostly under load; one round in five counts from the spawn, so
        // some kills land while the child is still recovering.
        let from_ready = !rng.random_ratio(1, 5);
        let ms = if rng.random_ratio(1, 10) {
            rng.random_range(200..=600)
        } else {
            rng.random_range(10..=200)
        };
        let r = run_child(&dir, Duration::from_millis(ms), from_ready);
        if !r.ready_seen {
            during_open += 1;
        }
        for a in r.acks {
            if let Some(old) = acked.get(&a.seq) {
                panic!(
                    "round {round}: seq {} acknowledged twice ({} v{} then {} v{})",
                    a.seq, old.stream, old.version, a.stream, a.version
                );
            }
            acked.insert(a.seq, a);
        }
        let full_index = round % 10 == 9 || round + 1 == rounds;
        let envs = check_log(&dir, &acked, full_index);

        // The snapshot is written by rename, so a SIGKILL never tears it.
        // One fold serves both checks: up to the snapshot's head, then on.
        let mut rebuilt = Projections::default();
        let snap_path = dir.join("views.snapshot");
        if let Ok(bytes) = std::fs::read(&snap_path) {
            let snap = snapshot::decode(&bytes)
                .unwrap_or_else(|e| panic!("round {round}: snapshot unreadable: {e}"));
            if snap.head as usize <= envs.len() {
                envs[..snap.head as usize]
                    .iter()
                    .for_each(|e| rebuilt.apply(e));
                assert!(
                    snap == rebuilt,
                    "round {round}: snapshot at {} is not the rebuild of the log up to it \
                     (log head {})",
                    snap.head,
                    envs.len()
                );
            } else {
                // Tolerated by App::open (it rebuilds), as long as the file
                // is replaced before the log grows past it: checked above in
                // later rounds.
                stale_snapshots += 1;
                eprintln!(
                    "round {round}: snapshot at {} is ahead of the log ({})",
                    snap.head,
                    envs.len()
                );
            }
        }
        envs.iter().for_each(|e| rebuilt.apply(e));

        let app = ferryd::app::App::open(config(&dir)).expect("reopen the app");
        let views = app.views.read().unwrap().clone();
        drop(app);
        assert!(
            views == rebuilt,
            "round {round}: App::open views (head {}) differ from a rebuild of the log (head {})",
            views.head,
            rebuilt.head
        );
    }
    let head = acked.keys().max().copied().unwrap_or(0);
    eprintln!(
        "log_crash: {rounds} rounds in {:.1?}: {} acknowledged envelopes, last acked seq {head}, \
         {during_open} kills before the app was open, {stale_snapshots} snapshots found ahead of \
         the log",
        t0.elapsed(),
        acked.len()
    );
    // A run that acknowledged nothing proved nothing.
    assert!(
        acked.len() as u64 >= rounds as u64,
        "too few acknowledged appends to mean anything"
    );
}
