//! The durable store on sled, with group commit.
//!
//! One tree holds three kinds of key, so one sled batch writes an append
//! atomically:
//! - `l` + seq (u64 BE) → the encoded envelope;
//! - `s` + stream + NUL + version (u64 BE) → seq, the stream index;
//! - `v` + stream → the stream's version, read back at open.
//!
//! Appends go to one writer thread. It takes every append waiting in its
//! queue, checks and sequences them, applies them as one batch, flushes once
//! (sled's writes are durable only after `flush`), and only then answers each
//! caller. A failed write or flush poisons the store: nothing after it is
//! acknowledged, so no caller ever holds an `Ok` for an event not on disk.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::thread::JoinHandle;

use async_trait::async_trait;
use tokio::sync::{oneshot, watch};

use super::sequencer::{Sequenced, Sequencer, now_us};
use super::{EnvelopeIter, EventStore, ExpectedVersion, RawIter, RawRecord, StoreError};
use crate::codec;
use crate::envelope::{Actor, Envelope, ZERO_HASH, hash_bytes};
use crate::event::Event;

/// Most appends one group commit takes, to bound the batch's memory.
const MAX_GROUP: usize = 4096;

struct AppendRequest {
    stream: String,
    expected: ExpectedVersion,
    actor: Actor,
    events: Vec<Event>,
    reply: oneshot::Sender<Result<Vec<Envelope>, StoreError>>,
}

/// Counters for benchmarks and metrics.
#[derive(Debug, Default)]
pub struct StoreStats {
    pub groups: AtomicU64,
    pub appends: AtomicU64,
    pub events: AtomicU64,
}

pub struct SledStore {
    path: PathBuf,
    tree: sled::Tree,
    queue: Mutex<Option<mpsc::Sender<AppendRequest>>>,
    writer: Mutex<Option<JoinHandle<()>>>,
    head: watch::Sender<u64>,
    versions: Arc<Mutex<HashMap<String, u64>>>,
    stats: Arc<StoreStats>,
}

fn log_key(seq: u64) -> [u8; 9] {
    let mut k = [0u8; 9];
    k[0] = b'l';
    k[1..].copy_from_slice(&seq.to_be_bytes());
    k
}

fn stream_prefix(stream: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(stream.len() + 10);
    k.push(b's');
    k.extend_from_slice(stream.as_bytes());
    k.push(0);
    k
}

fn stream_key(stream: &str, version: u64) -> Vec<u8> {
    let mut k = stream_prefix(stream);
    k.extend_from_slice(&version.to_be_bytes());
    k
}

fn version_key(stream: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(stream.len() + 1);
    k.push(b'v');
    k.extend_from_slice(stream.as_bytes());
    k
}

fn be_u64(bytes: &[u8]) -> u64 {
    let mut b = [0u8; 8];
    let n = bytes.len().min(8);
    b[8 - n..].copy_from_slice(&bytes[bytes.len() - n..]);
    u64::from_be_bytes(b)
}

impl SledStore {
    /// Opens (or creates) the log under `dir`, recovering the tail.
    pub fn open(dir: &Path) -> Result<SledStore, StoreError> {
        let sled_err = |source| StoreError::Sled {
            path: dir.display().to_string(),
            source,
        };
        let db = sled::Config::new()
            .path(dir)
            .mode(sled::Mode::HighThroughput)
            .open()
            .map_err(sled_err)?;
        let tree = db.open_tree("log").map_err(sled_err)?;

        let mut versions = HashMap::new();
        for kv in tree.scan_prefix(b"v") {
            let (k, v) = kv.map_err(sled_err)?;
            let stream = String::from_utf8_lossy(&k[1..]).into_owned();
            versions.insert(stream, be_u64(&v));
        }
        let (head, head_hash, last_time_us) =
            match tree.range(log_key(0)..=log_key(u64::MAX)).next_back() {
                None => (0, ZERO_HASH, 0),
                Some(kv) => {
                    let (k, v) = kv.map_err(sled_err)?;
                    let seq = be_u64(&k[1..]);
                    let env =
                        codec::decode(&v).map_err(|source| StoreError::Codec { seq, source })?;
                    (seq, hash_bytes(&v), env.time_us)
                }
            };
        let sequencer = Sequencer::resume(head, head_hash, last_time_us, versions.clone());
        let versions = Arc::new(Mutex::new(versions));
        let (head_tx, _) = watch::channel(head);
        let stats = Arc::new(StoreStats::default());
        let (tx, rx) = mpsc::channel();
        let writer = Writer {
            db,
            tree: tree.clone(),
            path: dir.display().to_string(),
            sequencer,
            head: head_tx.clone(),
            versions: versions.clone(),
            stats: stats.clone(),
            poisoned: None,
        };
        let handle = std::thread::Builder::new()
            .name("ferry-log-writer".into())
            .spawn(move || writer.run(rx))
            .expect("spawn log writer thread");
        Ok(SledStore {
            path: dir.to_path_buf(),
            tree,
            queue: Mutex::new(Some(tx)),
            writer: Mutex::new(Some(handle)),
            head: head_tx,
            versions,
            stats,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn stats(&self) -> &StoreStats {
        &self.stats
    }

    /// Stops taking appends, lets queued ones finish (flushed), joins the writer.
    pub fn close(&self) {
        drop(self.queue.lock().unwrap().take());
        if let Some(h) = self.writer.lock().unwrap().take() {
            let _ = h.join();
        }
    }

    /// Log records from `from_seq` up to the durable head. sled shows a
    /// batch to readers as soon as it is applied, before its flush; reading
    /// past the head could fold in (and snapshot) events a crash then loses.
    fn durable(&self, from_seq: u64) -> sled::Iter {
        let head = *self.head.borrow();
        self.tree.range(log_key(from_seq.max(1))..=log_key(head))
    }

    fn sled_err(&self, source: sled::Error) -> StoreError {
        StoreError::Sled {
            path: self.path.display().to_string(),
            source,
        }
    }
}

impl Drop for SledStore {
    fn drop(&mut self) {
        self.close();
    }
}

struct Writer {
    db: sled::Db,
    tree: sled::Tree,
    path: String,
    sequencer: Sequencer,
    head: watch::Sender<u64>,
    versions: Arc<Mutex<HashMap<String, u64>>>,
    stats: Arc<StoreStats>,
    poisoned: Option<String>,
}

impl Writer {
    fn run(mut self, rx: mpsc::Receiver<AppendRequest>) {
        while let Ok(first) = rx.recv() {
            let mut group = vec![first];
            while group.len() < MAX_GROUP {
                match rx.try_recv() {
                    Ok(r) => group.push(r),
                    Err(_) => break,
                }
            }
            self.commit(group);
        }
    }

    fn commit(&mut self, group: Vec<AppendRequest>) {
        if let Some(why) = &self.poisoned {
            for r in group {
                let _ = r.reply.send(Err(StoreError::Poisoned(why.clone())));
            }
            return;
        }
        let now = now_us();
        let mut batch = sled::Batch::default();
        let mut answers: Vec<(oneshot::Sender<_>, Result<Sequenced, StoreError>)> =
            Vec::with_capacity(group.len());
        let mut events = 0u64;
        for r in group {
            let res = self
                .sequencer
                .sequence(&r.stream, r.expected, &r.actor, r.events, now);
            if let Ok(s) = &res {
                for (env, bytes) in s.envelopes.iter().zip(&s.records) {
                    batch.insert(&log_key(env.seq), bytes.as_slice());
                    batch.insert(
                        stream_key(&env.stream, env.stream_version),
                        &env.seq.to_be_bytes(),
                    );
                }
                batch.insert(version_key(&s.stream), &s.new_version.to_be_bytes());
                events += s.envelopes.len() as u64;
            }
            answers.push((r.reply, res));
        }
        if events > 0 {
            let written = self
                .tree
                .apply_batch(batch)
                .and_then(|()| self.db.flush().map(|_| ()));
            if let Err(e) = written {
                let why = format!("{}: {e}", self.path);
                tracing::error!(error = %why, "event log write failed; store poisoned");
                self.poisoned = Some(why.clone());
                for (reply, _) in answers {
                    let _ = reply.send(Err(StoreError::Poisoned(why.clone())));
                }
                return;
            }
        }
        {
            let mut versions = self.versions.lock().unwrap();
            for (_, res) in &answers {
                if let Ok(s) = res {
                    versions.insert(s.stream.clone(), s.new_version);
                }
            }
        }
        self.stats.groups.fetch_add(1, Ordering::Relaxed);
        self.stats
            .appends
            .fetch_add(answers.len() as u64, Ordering::Relaxed);
        self.stats.events.fetch_add(events, Ordering::Relaxed);
        self.head.send_replace(self.sequencer.head());
        for (reply, res) in answers {
            let _ = reply.send(res.map(|s| s.envelopes));
        }
    }
}

#[async_trait]
impl EventStore for SledStore {
    async fn append(
        &self,
        stream: &str,
        expected: ExpectedVersion,
        actor: Actor,
        events: Vec<Event>,
    ) -> Result<Vec<Envelope>, StoreError> {
        let (reply, answer) = oneshot::channel();
        let req = AppendRequest {
            stream: stream.to_string(),
            expected,
            actor,
            events,
            reply,
        };
        {
            let q = self.queue.lock().unwrap();
            let q = q.as_ref().ok_or(StoreError::Closed)?;
            q.send(req).map_err(|_| StoreError::Closed)?;
        }
        answer.await.map_err(|_| StoreError::Closed)?
    }

    fn read_all(&self, from_seq: u64) -> EnvelopeIter<'_> {
        // Decoded straight from sled's buffer: replay is the hot path of a rebuild.
        Box::new(self.durable(from_seq).map(move |kv| {
            let (k, v) = kv.map_err(|e| self.sled_err(e))?;
            let seq = be_u64(&k[1..]);
            codec::decode(&v).map_err(|source| StoreError::Codec { seq, source })
        }))
    }

    fn read_raw(&self, from_seq: u64) -> RawIter<'_> {
        Box::new(self.durable(from_seq).map(move |kv| {
            let (k, v) = kv.map_err(|e| self.sled_err(e))?;
            Ok(RawRecord {
                seq: be_u64(&k[1..]),
                bytes: v.to_vec(),
            })
        }))
    }

    fn scan_stream(&self, stream: &str, from_version: u64) -> EnvelopeIter<'_> {
        if let Err(e) = super::check_stream(stream) {
            return Box::new(std::iter::once(Err(e)));
        }
        let prefix = stream_prefix(stream);
        let start = stream_key(stream, from_version.max(1));
        let head = *self.head.borrow();
        Box::new(
            self.tree
                .range(start..)
                .take_while(move |kv| kv.as_ref().map_or(true, |(k, _)| k.starts_with(&prefix)))
                // Only what is durable (see `durable`).
                .take_while(move |kv| kv.as_ref().map_or(true, |(_, v)| be_u64(v) <= head))
                .map(move |kv| {
                    let (_, v) = kv.map_err(|e| self.sled_err(e))?;
                    let seq = be_u64(&v);
                    let bytes = self
                        .tree
                        .get(log_key(seq))
                        .map_err(|e| self.sled_err(e))?
                        .ok_or(StoreError::Codec {
                            seq,
                            source: codec::CodecError::Short(0),
                        })?;
                    codec::decode(&bytes).map_err(|source| StoreError::Codec { seq, source })
                }),
        )
    }

    fn stream_version(&self, stream: &str) -> u64 {
        self.versions
            .lock()
            .unwrap()
            .get(stream)
            .copied()
            .unwrap_or(0)
    }

    fn head(&self) -> u64 {
        *self.head.borrow()
    }

    fn follow(&self) -> watch::Receiver<u64> {
        self.head.subscribe()
    }
}
