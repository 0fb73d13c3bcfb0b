//! An in-memory store with the same rules as the segment store, for tests.

use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;
use tokio::sync::watch;

use super::sequencer::{Sequencer, now_us};
use super::{EnvelopeIter, EventStore, ExpectedVersion, RawIter, RawRecord, StoreError};
use crate::envelope::{Actor, Envelope};
use crate::event::Event;

#[derive(Default)]
struct Inner {
    sequencer: Sequencer,
    records: Vec<Vec<u8>>,
    envelopes: Vec<Envelope>,
    streams: HashMap<String, Vec<u64>>,
}

pub struct MemoryStore {
    inner: Mutex<Inner>,
    head: watch::Sender<u64>,
}

impl Default for MemoryStore {
    fn default() -> Self {
        MemoryStore {
            inner: Mutex::default(),
            head: watch::channel(0).0,
        }
    }
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait]
impl EventStore for MemoryStore {
    async fn append(
        &self,
        stream: &str,
        expected: ExpectedVersion,
        actor: Actor,
        events: Vec<Event>,
    ) -> Result<Vec<Envelope>, StoreError> {
        let mut inner = self.inner.lock().unwrap();
        let s = inner
            .sequencer
            .sequence(stream, expected, &actor, events, now_us())?;
        let seqs = inner.streams.entry(s.stream.clone()).or_default();
        seqs.extend(s.envelopes.iter().map(|e| e.seq));
        inner.records.extend(s.records);
        inner.envelopes.extend(s.envelopes.iter().cloned());
        self.head.send_replace(inner.sequencer.head());
        Ok(s.envelopes)
    }

    fn read_all(&self, from_seq: u64) -> EnvelopeIter<'_> {
        let inner = self.inner.lock().unwrap();
        let from = from_seq.max(1) as usize - 1;
        let v: Vec<_> = inner.envelopes.iter().skip(from).cloned().map(Ok).collect();
        Box::new(v.into_iter())
    }

    fn read_raw(&self, from_seq: u64) -> RawIter<'_> {
        let inner = self.inner.lock().unwrap();
        let from = from_seq.max(1) as usize - 1;
        let v: Vec<_> = inner
            .records
            .iter()
            .enumerate()
            .skip(from)
            .map(|(i, b)| {
                Ok(RawRecord {
                    seq: i as u64 + 1,
                    bytes: b.clone(),
                })
            })
            .collect();
        Box::new(v.into_iter())
    }

    fn scan_stream(&self, stream: &str, from_version: u64) -> EnvelopeIter<'_> {
        if let Err(e) = super::check_stream(stream) {
            return Box::new(std::iter::once(Err(e)));
        }
        let inner = self.inner.lock().unwrap();
        let from = from_version.max(1) as usize - 1;
        let v: Vec<_> = inner
            .streams
            .get(stream)
            .map(|seqs| {
                seqs.iter()
                    .skip(from)
                    .map(|s| Ok(inner.envelopes[*s as usize - 1].clone()))
                    .collect()
            })
            .unwrap_or_default();
        Box::new(v.into_iter())
    }

    fn stream_version(&self, stream: &str) -> u64 {
        self.inner.lock().unwrap().sequencer.version(stream)
    }

    fn head(&self) -> u64 {
        *self.head.borrow()
    }

    fn follow(&self) -> watch::Receiver<u64> {
        self.head.subscribe()
    }
}
