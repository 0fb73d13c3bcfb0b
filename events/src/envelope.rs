//! The envelope every event travels in, and the hash chain over envelopes.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::event::Event;

pub type Hash = [u8; 32];

/// The chain's anchor: the `prev_hash` of sequence 1.
pub const ZERO_HASH: Hash = [0; 32];

/// Who caused an event.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Actor {
    /// A Unix user, from the control socket's peer credentials.
    User {
        uid: u32,
        name: String,
    },
    Scheduler,
    Engine,
    /// The daemon itself (start-up recovery, housekeeping).
    Daemon,
}

impl std::fmt::Display for Actor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Actor::User { uid, name } => write!(f, "{name}({uid})"),
            Actor::Scheduler => f.write_str("scheduler"),
            Actor::Engine => f.write_str("engine"),
            Actor::Daemon => f.write_str("daemon"),
        }
    }
}

/// One recorded event with everything needed to order, attribute and verify it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    /// Global position, from 1, without holes.
    pub seq: u64,
    pub stream: String,
    /// Position within `stream`, from 1, without holes.
    pub stream_version: u64,
    /// UTC, microseconds since the Unix epoch; never decreases along `seq`.
    pub time_us: i64,
    pub actor: Actor,
    /// `event.event_type()`, kept so readers need not decode the payload.
    pub event_type: String,
    /// The schema the payload was written with (see [`crate::codec`]).
    pub schema_version: u16,
    /// Hash of the encoded envelope at `seq - 1` ([`ZERO_HASH`] for seq 1).
    pub prev_hash: Hash,
    pub event: Event,
}

impl Envelope {
    pub fn time(&self) -> chrono::DateTime<chrono::Utc> {
        chrono::DateTime::from_timestamp_micros(self.time_us).unwrap_or_default()
    }
}

/// The hash of an envelope is the SHA-256 of its encoded bytes.
pub fn hash_bytes(encoded: &[u8]) -> Hash {
    Sha256::digest(encoded).into()
}

/// Where a chain check stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChainBreak {
    /// `seq` does not follow its predecessor.
    Gap { expected: u64, found: u64 },
    /// `prev_hash` of `seq` is not the hash of its predecessor.
    Hash { seq: u64 },
}

/// Checks envelopes, given as (envelope, its encoded bytes), form an unbroken
/// chain continuing from `prev` (seq and hash of the record before the first).
pub struct ChainVerifier {
    next_seq: u64,
    prev_hash: Hash,
}

impl ChainVerifier {
    pub fn new() -> Self {
        Self::resume(0, ZERO_HASH)
    }

    pub fn resume(prev_seq: u64, prev_hash: Hash) -> Self {
        ChainVerifier {
            next_seq: prev_seq + 1,
            prev_hash,
        }
    }

    pub fn check(&mut self, env: &Envelope, encoded: &[u8]) -> Result<Hash, ChainBreak> {
        if env.seq != self.next_seq {
            return Err(ChainBreak::Gap {
                expected: self.next_seq,
                found: env.seq,
            });
        }
        if env.prev_hash != self.prev_hash {
            return Err(ChainBreak::Hash { seq: env.seq });
        }
        let h = hash_bytes(encoded);
        self.prev_hash = h;
        self.next_seq += 1;
        Ok(h)
    }

    pub fn last_hash(&self) -> Hash {
        self.prev_hash
    }
}

impl Default for ChainVerifier {
    fn default() -> Self {
        Self::new()
    }
}
