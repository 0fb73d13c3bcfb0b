//! Turns accepted appends into envelopes: versions, sequence, time, chain.

use std::collections::HashMap;

use crate::codec::{self, SCHEMA_VERSION};
use crate::envelope::{Actor, Envelope, Hash, ZERO_HASH, hash_bytes};
use crate::event::Event;

use super::{ExpectedVersion, StoreError};

/// The writer's view of the log's tail. One per store, used by one writer.
#[derive(Debug, Clone)]
pub struct Sequencer {
    head: u64,
    head_hash: Hash,
    last_time_us: i64,
    versions: HashMap<String, u64>,
}

/// An append accepted by the sequencer, ready to be written.
pub struct Sequenced {
    pub envelopes: Vec<Envelope>,
    /// Encoded bytes, one per envelope, in order.
    pub records: Vec<Vec<u8>>,
    pub stream: String,
    pub new_version: u64,
}

impl Default for Sequencer {
    fn default() -> Self {
        Sequencer {
            head: 0,
            head_hash: ZERO_HASH,
            last_time_us: 0,
            versions: HashMap::new(),
        }
    }
}

impl Sequencer {
    pub fn resume(
        head: u64,
        head_hash: Hash,
        last_time_us: i64,
        versions: HashMap<String, u64>,
    ) -> Self {
        Sequencer {
            head,
            head_hash,
            last_time_us,
            versions,
        }
    }

    pub fn head(&self) -> u64 {
        self.head
    }

    pub fn version(&self, stream: &str) -> u64 {
        self.versions.get(stream).copied().unwrap_or(0)
    }

    /// Checks `expected` and assigns positions; on error nothing changes.
    pub fn sequence(
        &mut self,
        stream: &str,
        expected: ExpectedVersion,
        actor: &Actor,
        events: Vec<Event>,
        now_us: i64,
    ) -> Result<Sequenced, StoreError> {
        super::check_stream(stream)?;
        if events.is_empty() {
            return Err(StoreError::Empty);
        }
        let actual = self.version(stream);
        let ok = match expected {
            ExpectedVersion::Any => true,
            ExpectedVersion::NoStream => actual == 0,
            ExpectedVersion::Exact(v) => actual == v,
        };
        if !ok {
            return Err(StoreError::WrongVersion {
                stream: stream.to_string(),
                expected,
                actual,
            });
        }
        // Time never goes backwards along the sequence, whatever the clock does.
        let time_us = now_us.max(self.last_time_us);
        let mut head = self.head;
        let mut prev = self.head_hash;
        let mut envelopes = Vec::with_capacity(events.len());
        let mut records = Vec::with_capacity(events.len());
        for (i, event) in events.into_iter().enumerate() {
            head += 1;
            let env = Envelope {
                seq: head,
                stream: stream.to_string(),
                stream_version: actual + 1 + i as u64,
                time_us,
                actor: actor.clone(),
                event_type: event.event_type().to_string(),
                schema_version: SCHEMA_VERSION,
                prev_hash: prev,
                event,
            };
            let bytes =
                codec::encode(&env).map_err(|source| StoreError::Codec { seq: head, source })?;
            prev = hash_bytes(&bytes);
            envelopes.push(env);
            records.push(bytes);
        }
        let new_version = actual + envelopes.len() as u64;
        self.head = head;
        self.head_hash = prev;
        self.last_time_us = time_us;
        match self.versions.get_mut(stream) {
            Some(v) => *v = new_version,
            None => {
                self.versions.insert(stream.to_string(), new_version);
            }
        }
        Ok(Sequenced {
            envelopes,
            records,
            stream: stream.to_string(),
            new_version,
        })
    }
}

pub(crate) use crate::time::now_us;
