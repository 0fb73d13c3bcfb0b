//! The durable store: append-only segment files, a small index in sled,
//! group commit.
//!
//! - [`log`]: segments, record frames, recovery, the index and its sled copy;
//! - [`read`]: cursors by sequence and by stream;
//! - [`convert`]: the one-time move of a log written by the sled-only store.
//!
//! An append is checked and sequenced (versions, positions, encoding, the
//! hash chain) on the caller's thread, under one lock, and handed to the
//! writer thread. The writer takes everything handed over while it synced
//! the last group as the next group: one write, one `fdatasync`; only then
//! does it index the group, move the head and pass the answers to a third
//! thread that wakes each caller. A failed write or sync
//! poisons the store: nothing after it is acknowledged, so no caller ever
//! holds an `Ok` for an event not on disk.
//!
//! Memory stays flat as the log grows: closed segments are plain files, and
//! the index keeps a few bytes per hundred events.

mod convert;
mod log;
mod read;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, RwLock};
use std::thread::JoinHandle;

use async_trait::async_trait;
use tokio::sync::{oneshot, watch};

pub use self::log::{Recovery, SEGMENT_BYTES};

use self::log::{Index, Log, Rec};
use self::read::{Cursor, Envelopes, Raw, StreamEvents};
use super::sequencer::{Sequenced, Sequencer, now_us};
use super::{EnvelopeIter, EventStore, ExpectedVersion, RawIter, StoreError};
use crate::envelope::{Actor, Envelope};
use crate::event::Event;

/// Counters for benchmarks and metrics.
#[derive(Debug, Default)]
pub struct StoreStats {
    pub groups: AtomicU64,
    pub appends: AtomicU64,
    pub events: AtomicU64,
    /// Bytes of a torn last write cut off at open.
    pub truncated_bytes: AtomicU64,
    /// Microseconds spent writing and syncing groups.
    pub sync_us: AtomicU64,
}

/// How a store is opened.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// A segment rolls once it holds this many bytes.
    pub segment_bytes: u64,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            segment_bytes: SEGMENT_BYTES,
        }
    }
}

pub struct SegmentStore {
    path: PathBuf,
    segments: PathBuf,
    index: Arc<RwLock<Index>>,
    /// Sequencing is one critical section: the hand-over receives
    /// appends in the order of their sequences.
    sequencer: Mutex<Sequencer>,
    handover: Arc<Handover>,
    writer: Mutex<Option<JoinHandle<()>>>,
    head: watch::Sender<u64>,
    stats: Arc<StoreStats>,
    recovery: Recovery,
}

impl SegmentStore {
    /// Opens (or creates) the log under `dir`: recovers the tail, and moves
    /// a log written by the sled-only store into segments first.
    pub fn open(dir: &Path) -> Result<SegmentStore, StoreError> {
        Self::open_with(dir, StoreOptions::default())
    }

    pub fn open_with(dir: &Path, options: StoreOptions) -> Result<SegmentStore, StoreError> {
        let mut log = Log::open(dir, options.segment_bytes)?;
        if convert::has_v1(dir) {
            convert::convert(dir, &mut log)?;
        }
        let versions: HashMap<String, u64> = log
            .index
            .read()
            .unwrap()
            .streams
            .iter()
            .map(|(s, r)| (s.clone(), r.version))
            .collect();
        let sequencer = Sequencer::resume(log.head, log.head_hash, log.last_time_us, versions);
        let (head_tx, _) = watch::channel(log.head);
        let stats = Arc::new(StoreStats::default());
        stats
            .truncated_bytes
            .store(log.recovery.truncated_bytes, Ordering::Relaxed);
        let recovery = log.recovery.clone();
        let index = log.index.clone();
        let segments = log.segments_dir.clone();
        let (answers, to_answer) = std::sync::mpsc::channel::<Group>();
        let answerer = std::thread::Builder::new()
            .name("ferry-log-answer".into())
            .spawn(move || {
                for group in to_answer {
                    for (reply, res) in group.answers {
                        let _ = reply.send(res.map(|s| s.envelopes));
                    }
                }
            })
            .expect("spawn log answer thread");
        let syncer = Syncer {
            log,
            head: head_tx.clone(),
            stats: stats.clone(),
            poisoned: None,
            answers,
        };
        let handover = Arc::new(Handover::default());
        let handle = {
            let handover = handover.clone();
            std::thread::Builder::new()
                .name("ferry-log-writer".into())
                .spawn(move || {
                    syncer.run(&handover);
                    let _ = answerer.join();
                })
                .expect("spawn log writer thread")
        };
        Ok(SegmentStore {
            path: dir.to_path_buf(),
            segments,
            index,
            sequencer: Mutex::new(sequencer),
            handover,
            writer: Mutex::new(Some(handle)),
            head: head_tx,
            stats,
            recovery,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn stats(&self) -> &StoreStats {
        &self.stats
    }

    /// What the open found at the end of the log.
    pub fn recovery(&self) -> &Recovery {
        &self.recovery
    }

    /// Stops taking appends, lets queued ones finish, saves the index,
    /// joins the writer.
    pub fn close(&self) {
        self.handover.close();
        if let Some(h) = self.writer.lock().unwrap().take() {
            let _ = h.join();
        }
    }

    fn cursor(&self, from_seq: u64) -> Cursor {
        let head = *self.head.borrow();
        let mut c = Cursor::new(self.segments.clone(), self.index.clone(), head);
        if let Err(e) = c.seek(from_seq) {
            tracing::error!(error = %e, "event log: cannot position a reader");
        }
        c
    }
}

impl Drop for SegmentStore {
    fn drop(&mut self) {
        self.close();
    }
}

/// Groups of at most this many appends are answered by the writer itself.
const ANSWER_HERE: usize = 4;

type Reply = oneshot::Sender<Result<Vec<Envelope>, StoreError>>;

/// One group on its way from the sequencer to the syncer.
#[derive(Default)]
struct Group {
    answers: Vec<(Reply, Result<Sequenced, StoreError>)>,
}

/// Appends sequenced and waiting for the syncer, which takes them all at
/// once: whatever arrived while it synced the last group is the next group.
#[derive(Default)]
struct Handover {
    waiting: Mutex<(Group, bool)>,
    ready: Condvar,
}

impl Handover {
    /// Hands one append over; false once closed.
    fn put(&self, reply: Reply, sequenced: Sequenced) -> Result<(), Reply> {
        let mut w = self.waiting.lock().unwrap();
        if w.1 {
            return Err(reply);
        }
        w.0.answers.push((reply, Ok(sequenced)));
        drop(w);
        self.ready.notify_one();
        Ok(())
    }

    fn is_closed(&self) -> bool {
        self.waiting.lock().unwrap().1
    }

    fn close(&self) {
        self.waiting.lock().unwrap().1 = true;
        self.ready.notify_one();
    }

    /// The next group, or `None` once closed and drained.
    fn take(&self) -> Option<Group> {
        let mut w = self.waiting.lock().unwrap();
        while w.0.answers.is_empty() && !w.1 {
            w = self.ready.wait(w).unwrap();
        }
        if w.0.answers.is_empty() {
            return None;
        }
        Some(std::mem::take(&mut w.0))
    }
}

/// Writes each group (one write, one `fdatasync`), then indexes it, moves
/// the head and answers its callers. A failed write poisons the store.
struct Syncer {
    log: Log,
    head: watch::Sender<u64>,
    stats: Arc<StoreStats>,
    poisoned: Option<String>,
    /// Answers go out on their own thread, so waking hundreds of callers
    /// does not delay the next group's write.
    answers: std::sync::mpsc::Sender<Group>,
}

impl Syncer {
    fn run(mut self, from: &Handover) {
        while let Some(group) = from.take() {
            self.commit(group);
        }
        self.log.close();
    }

    fn answer(&self, answers: Vec<(Reply, Result<Sequenced, StoreError>)>) {
        // A few callers are woken here at once: handing them over would
        // cost a thread's wake-up more than the sends themselves.
        if answers.len() <= ANSWER_HERE {
            for (reply, res) in answers {
                let _ = reply.send(res.map(|s| s.envelopes));
            }
            return;
        }
        if let Err(unsent) = self.answers.send(Group { answers }) {
            for (reply, res) in unsent.0.answers {
                let _ = reply.send(res.map(|s| s.envelopes));
            }
        }
    }

    fn commit(&mut self, group: Group) {
        let answers = group.answers;
        if let Some(why) = &self.poisoned {
            for (reply, _) in answers {
                let _ = reply.send(Err(StoreError::Poisoned(why.clone())));
            }
            return;
        }
        let recs: Vec<Rec<'_>> = answers
            .iter()
            .filter_map(|(_, res)| res.as_ref().ok())
            .flat_map(|s| {
                s.envelopes.iter().zip(&s.records).map(|(env, bytes)| Rec {
                    seq: env.seq,
                    stream: &env.stream,
                    version: env.stream_version,
                    bytes,
                })
            })
            .collect();
        let events = recs.len() as u64;
        let last = answers
            .iter()
            .rev()
            .find_map(|(_, r)| r.as_ref().ok().and_then(|s| s.envelopes.last()))
            .map(|e| (e.seq, e.time_us));
        if let Some((_, time_us)) = last {
            self.log.set_last_time(time_us);
        }
        let t = std::time::Instant::now();
        let written = self.log.write_group(&recs);
        self.stats
            .sync_us
            .fetch_add(t.elapsed().as_micros() as u64, Ordering::Relaxed);
        if let Err(e) = written {
            drop(recs);
            let why = e.to_string();
            tracing::error!(error = %why, "event log write failed; store poisoned");
            self.poisoned = Some(why.clone());
            for (reply, _) in answers {
                let _ = reply.send(Err(StoreError::Poisoned(why.clone())));
            }
            return;
        }
        drop(recs);
        self.stats.groups.fetch_add(1, Ordering::Relaxed);
        self.stats
            .appends
            .fetch_add(answers.len() as u64, Ordering::Relaxed);
        self.stats.events.fetch_add(events, Ordering::Relaxed);
        if let Some((seq, _)) = last {
            self.head.send_replace(seq);
        }
        self.answer(answers);
    }
}

#[async_trait]
impl EventStore for SegmentStore {
    async fn append(
        &self,
        stream: &str,
        expected: ExpectedVersion,
        actor: Actor,
        events: Vec<Event>,
    ) -> Result<Vec<Envelope>, StoreError> {
        let (reply, answer) = oneshot::channel();
        {
            let mut sequencer = self.sequencer.lock().unwrap();
            if self.handover.is_closed() {
                return Err(StoreError::Closed);
            }
            let sequenced = sequencer.sequence(stream, expected, &actor, events, now_us())?;
            if self.handover.put(reply, sequenced).is_err() {
                return Err(StoreError::Closed);
            }
        }
        answer.await.map_err(|_| StoreError::Closed)?
    }

    fn read_all(&self, from_seq: u64) -> EnvelopeIter<'_> {
        Box::new(Envelopes(self.cursor(from_seq)))
    }

    fn read_raw(&self, from_seq: u64) -> RawIter<'_> {
        Box::new(Raw(self.cursor(from_seq)))
    }

    fn scan_stream(&self, stream: &str, from_version: u64) -> EnvelopeIter<'_> {
        if let Err(e) = super::check_stream(stream) {
            return Box::new(std::iter::once(Err(e)));
        }
        let from = from_version.max(1);
        // The head first: every run the index shows up to it is durable.
        let head = *self.head.borrow();
        let (last, runs) = {
            let idx = self.index.read().unwrap();
            match idx.streams.get(stream) {
                Some(s) => {
                    let start = s
                        .runs
                        .partition_point(|&(v, _)| v <= from)
                        .saturating_sub(1);
                    let runs: Vec<(u64, u64)> = s.runs[start..]
                        .iter()
                        .copied()
                        .filter(|&(_, seq)| seq <= head)
                        .collect();
                    (s.version, runs)
                }
                None => (0, Vec::new()),
            }
        };
        let Some(&(_, first_seq)) = runs.first() else {
            return Box::new(std::iter::empty());
        };
        if from > last {
            return Box::new(std::iter::empty());
        }
        let mut cursor = Cursor::new(self.segments.clone(), self.index.clone(), head);
        if let Err(e) = cursor.seek(first_seq) {
            return Box::new(std::iter::once(Err(e)));
        }
        Box::new(StreamEvents {
            cursor,
            stream: stream.to_string(),
            from,
            last,
            runs,
            run: 0,
        })
    }

    fn stream_version(&self, stream: &str) -> u64 {
        self.index
            .read()
            .unwrap()
            .streams
            .get(stream)
            .map_or(0, |s| s.version)
    }

    fn head(&self) -> u64 {
        *self.head.borrow()
    }

    fn follow(&self) -> watch::Receiver<u64> {
        self.head.subscribe()
    }
}
