//! The segment store at its edges: many segments, stream reads across
//! long gaps, reopening with and without its saved index, torn tails,
//! damage, and the move of a log written by the sled-only store.

use std::path::{Path, PathBuf};

use ferry_events::envelope::ChainVerifier;
use ferry_events::*;

fn ev(n: u64) -> Event {
    Event::ScheduleFired {
        batch: "wave".into(),
        due_us: n as i64,
    }
}

fn small() -> StoreOptions {
    StoreOptions {
        segment_bytes: 16 << 10,
    }
}

/// One dense stream, a few interleaved ones, and a sparse one that writes
/// once every 3,000 events: stream reads must jump and must not miss.
/// Returns the number of events of each append.
async fn fill(store: &SegmentStore, n: u64) -> Vec<usize> {
    let mut appends = Vec::new();
    let mut i = 0;
    while i < n {
        // Up to three events an append, so the test stays quick.
        let (stream, take) = if i % 3000 < 3 {
            ("sparse".to_string(), 1)
        } else if i % 2 == 0 {
            ("dense".to_string(), 3)
        } else {
            (format!("m/{}", i % 7), 2)
        };
        let take = take.min(n - i);
        let events = (i..i + take).map(ev).collect();
        store
            .append(&stream, ExpectedVersion::Any, Actor::Engine, events)
            .await
            .unwrap();
        appends.push(take as usize);
        i += take;
    }
    appends
}

fn streams() -> Vec<String> {
    let mut s: Vec<String> = (0..7).map(|i| format!("m/{i}")).collect();
    s.push("dense".into());
    s.push("sparse".into());
    s
}

/// Every stream read, from several versions, equals a filter of the whole log.
fn check_reads(store: &SegmentStore) {
    let all: Vec<Envelope> = store.read_all(0).map(Result::unwrap).collect();
    assert_eq!(all.len() as u64, store.head());
    let mut chain = ChainVerifier::new();
    for raw in store.read_raw(1) {
        let raw = raw.unwrap();
        chain
            .check(&codec::decode(&raw.bytes).unwrap(), &raw.bytes)
            .unwrap();
    }
    for s in streams() {
        let want: Vec<&Envelope> = all.iter().filter(|e| e.stream == s).collect();
        assert_eq!(store.stream_version(&s), want.len() as u64, "{s}");
        for from in [0, 1, 2, 255, 256, 257, 700, want.len() as u64] {
            let got = store.read_stream(&s, from).unwrap();
            let expect: Vec<Envelope> = want
                .iter()
                .filter(|e| e.stream_version >= from.max(1))
                .map(|e| (*e).clone())
                .collect();
            assert_eq!(got, expect, "stream {s} from {from}");
        }
    }
    for from in [1, 2, 1023, 1024, 1025, 5000, store.head()] {
        let first = store.read_all(from).next().unwrap().unwrap();
        assert_eq!(first.seq, from);
    }
}

/// A copy of a store's directory, as a crash or a backup leaves it.
fn copy_of(dir: &Path) -> tempfile::TempDir {
    let copy = tempfile::tempdir().unwrap();
    let status = std::process::Command::new("cp")
        .arg("-a")
        .arg(format!("{}/.", dir.display()))
        .arg(copy.path())
        .status()
        .unwrap();
    assert!(status.success());
    copy
}

fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut s: Vec<PathBuf> = std::fs::read_dir(dir.join("segments"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    s.sort();
    s
}

#[tokio::test]
async fn reads_across_segments_and_reopens_with_or_without_its_index() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = SegmentStore::open_with(dir.path(), small()).unwrap();
        fill(&store, 20_000).await;
        check_reads(&store);
    }
    assert!(segments(dir.path()).len() > 50, "segments rolled");
    let store = SegmentStore::open_with(dir.path(), small()).unwrap();
    assert_eq!(store.head(), 20_000);
    assert_eq!(store.recovery().reindexed, 0, "the saved index was used");
    check_reads(&store);
    drop(store);

    // The index is only a copy: without it, the segments say everything.
    std::fs::remove_dir_all(dir.path().join("index")).unwrap();
    let store = SegmentStore::open_with(dir.path(), small()).unwrap();
    assert_eq!(store.recovery().reindexed, 20_000);
    check_reads(&store);
    store
        .append(
            "sparse",
            ExpectedVersion::Exact(store.stream_version("sparse")),
            Actor::Engine,
            vec![ev(1)],
        )
        .await
        .unwrap();
    assert_eq!(store.head(), 20_001);
}

/// A copy of the directory taken while the store runs is what a crash
/// leaves: the saved index lags, the segments do not.
#[tokio::test]
async fn a_crash_copy_reopens_with_every_acknowledged_event() {
    let dir = tempfile::tempdir().unwrap();
    let store = SegmentStore::open_with(dir.path(), small()).unwrap();
    fill(&store, 30_000).await;
    let copy = copy_of(dir.path());
    let reopened = SegmentStore::open_with(copy.path(), small()).unwrap();
    assert_eq!(reopened.head(), 30_000);
    assert!(
        reopened.recovery().reindexed > 0,
        "the index lagged the log"
    );
    check_reads(&reopened);
}

/// A store of `n` events, their records, and how many records the log
/// holds at the end of each append.
async fn written(n: u64) -> (tempfile::TempDir, Vec<Vec<u8>>, Vec<usize>) {
    let dir = tempfile::tempdir().unwrap();
    let store = SegmentStore::open(dir.path()).unwrap();
    let ends = fill(&store, n)
        .await
        .into_iter()
        .scan(0, |total, len| {
            *total += len;
            Some(*total)
        })
        .collect();
    let raw = store.read_raw(1).map(|r| r.unwrap().bytes).collect();
    (dir, raw, ends)
}

#[tokio::test]
async fn a_torn_tail_is_cut_and_reported() {
    let (dir, raw, ends) = written(300).await;
    let seg = segments(dir.path()).pop().unwrap();
    let full = std::fs::metadata(&seg).unwrap().len();
    let frame = |i: usize| 8 + raw[i].len() as u64;
    let last_three: u64 = (297..300).map(frame).sum();
    // Fixed cuts inside each of the last three records, between them (a
    // write that stopped after whole records of a multi-event append), and
    // random ones.
    let mut cuts = vec![
        1,
        frame(299) - 1,
        frame(299),
        frame(299) + 3,
        frame(299) + frame(298),
        last_three - 2,
    ];
    let mut rng = rand::rng();
    cuts.extend((0..6).map(|_| rand::Rng::random_range(&mut rng, 1..last_three)));
    for cut in cuts {
        let copy = copy_of(dir.path());
        let seg = segments(copy.path()).pop().unwrap();
        std::fs::OpenOptions::new()
            .write(true)
            .open(&seg)
            .unwrap()
            .set_len(full - cut)
            .unwrap();
        // The saved index must not vouch for what was cut.
        std::fs::remove_dir_all(copy.path().join("index")).unwrap();
        let store = SegmentStore::open(copy.path()).unwrap();
        // What is left: the appends wholly before the cut, never a part of one.
        let whole = ends
            .iter()
            .copied()
            .take_while(|&end| (0..end).map(frame).sum::<u64>() <= full - cut)
            .last()
            .unwrap_or(0);
        assert_eq!(store.head(), whole as u64, "cut {cut}");
        // A cut between two appends leaves nothing torn.
        let between = ends
            .iter()
            .any(|&end| (0..end).map(frame).sum::<u64>() == full - cut);
        assert_eq!(
            store.recovery().truncated_bytes > 0,
            !between,
            "cut {cut} reported"
        );
        assert_eq!(
            store
                .stats()
                .truncated_bytes
                .load(std::sync::atomic::Ordering::Relaxed),
            store.recovery().truncated_bytes
        );
        // The chain goes on from the last whole record.
        let next = store
            .append("dense", ExpectedVersion::Any, Actor::Engine, vec![ev(1)])
            .await
            .unwrap();
        assert_eq!(next[0].seq, whole as u64 + 1);
        assert_eq!(next[0].prev_hash, envelope::hash_bytes(&raw[whole - 1]));
        drop(store);
        let store = SegmentStore::open(copy.path()).unwrap();
        assert_eq!(store.recovery().truncated_bytes, 0);
        assert_eq!(store.head(), whole as u64 + 1);
    }

    // Zeros after the last record (a file extended, never written).
    let copy = copy_of(dir.path());
    let seg = segments(copy.path()).pop().unwrap();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&seg)
        .unwrap()
        .set_len(full + 4096)
        .unwrap();
    let store = SegmentStore::open(copy.path()).unwrap();
    assert_eq!(store.head(), 300);
    assert_eq!(store.recovery().truncated_bytes, 4096);
}

#[tokio::test]
async fn damage_before_the_tail_refuses_to_open() {
    let (dir, raw, _) = written(300).await;
    let frame = |i: usize| 8 + raw[i].len() as u64;
    for (record, within) in [(0usize, 20u64), (150, 3), (150, 30), (296, 12)] {
        let copy = copy_of(dir.path());
        std::fs::remove_dir_all(copy.path().join("index")).unwrap();
        let seg = segments(copy.path()).pop().unwrap();
        let mut bytes = std::fs::read(&seg).unwrap();
        let offset: u64 = (0..record).map(frame).sum();
        bytes[(offset + within) as usize] ^= 0x40;
        std::fs::write(&seg, &bytes).unwrap();
        let err = SegmentStore::open(copy.path()).err().expect("refused");
        match &err {
            StoreError::Damaged {
                segment,
                offset: at,
                seq,
                ..
            } => {
                assert_eq!(*at, offset, "{err}");
                assert_eq!(*seq, record as u64 + 1, "{err}");
                assert!(segment.ends_with(".seg"), "{err}");
            }
            other => panic!("record {record}: {other}"),
        }
        let msg = err.to_string();
        assert!(msg.contains(&format!("offset {offset}")), "{msg}");
        assert!(msg.contains(&format!("sequence {}", record + 1)), "{msg}");
    }
}

/// With its index saved, an open reads nothing already indexed; the
/// damage is then named by the first read that reaches it.
#[tokio::test]
async fn damage_in_indexed_records_is_named_when_read() {
    let (dir, raw, _) = written(300).await;
    let frame = |i: usize| 8 + raw[i].len() as u64;
    let seg = segments(dir.path()).pop().unwrap();
    let mut bytes = std::fs::read(&seg).unwrap();
    let offset: u64 = (0..150).map(frame).sum();
    bytes[(offset + 30) as usize] ^= 0x40;
    std::fs::write(&seg, &bytes).unwrap();
    let store = SegmentStore::open(dir.path()).unwrap();
    let err = store
        .read_all(100)
        .find_map(Result::err)
        .expect("the damage is read");
    match err {
        StoreError::Damaged {
            offset: at, seq, ..
        } => assert_eq!((at, seq), (offset, 151)),
        other => panic!("{other}"),
    }
}

const FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../tests/fixtures/datadir-v1/log"
);

fn fixture_copy() -> tempfile::TempDir {
    copy_of(Path::new(FIXTURE))
}

/// The log a release before the segment store wrote (181 events of a real
/// migration, by the sled-only store) moves into segments once, byte for
/// byte, with its chain verified; it then takes appends.
#[tokio::test]
async fn a_sled_only_log_moves_into_segments() {
    let dir = fixture_copy();
    let store = SegmentStore::open(dir.path()).unwrap();
    assert_eq!(store.head(), 181);
    assert!(!dir.path().join("db").exists());
    assert!(dir.path().join("retired-v1/db").exists());
    let mut chain = ChainVerifier::new();
    let mut copied = 0;
    for raw in store.read_raw(1) {
        let raw = raw.unwrap();
        let env = codec::decode(&raw.bytes).unwrap();
        assert_eq!(env.schema_version, 1, "moved as written");
        chain.check(&env, &raw.bytes).unwrap();
        copied += matches!(env.event, Event::ItemCopied { .. }) as u32;
    }
    assert_eq!(copied, 60);
    assert_eq!(
        store.read_stream("batch/wave1", 1).unwrap().len() as u64,
        store.stream_version("batch/wave1")
    );
    let next = store
        .append(
            "batch/wave1",
            ExpectedVersion::Any,
            Actor::Daemon,
            vec![ev(1)],
        )
        .await
        .unwrap();
    assert_eq!(next[0].seq, 182);
    assert_eq!(next[0].prev_hash, chain.last_hash());
    drop(store);
    let store = SegmentStore::open(dir.path()).unwrap();
    assert_eq!(store.head(), 182);
}

/// A move cut short (here, after 100 records, index lost) resumes where
/// the segments end.
#[tokio::test]
async fn an_interrupted_move_resumes() {
    let done = fixture_copy();
    let raw: Vec<Vec<u8>> = {
        let store = SegmentStore::open(done.path()).unwrap();
        store.read_raw(1).map(|r| r.unwrap().bytes).collect()
    };
    let dir = fixture_copy();
    std::fs::create_dir_all(dir.path().join("segments")).unwrap();
    let seg = segments(done.path()).remove(0);
    let keep: u64 = raw[..100].iter().map(|r| 8 + r.len() as u64).sum();
    let mut bytes = std::fs::read(&seg).unwrap();
    bytes.truncate(keep as usize);
    std::fs::write(
        dir.path().join("segments").join(seg.file_name().unwrap()),
        bytes,
    )
    .unwrap();
    let store = SegmentStore::open(dir.path()).unwrap();
    assert_eq!(store.head(), 181);
    let again: Vec<Vec<u8>> = store.read_raw(1).map(|r| r.unwrap().bytes).collect();
    assert_eq!(again, raw);
}
