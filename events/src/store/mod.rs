//! Where events live.
//!
//! [`EventStore`] is the only way in or out of the log. Appends name the
//! stream version they expect (optimistic concurrency); reads go by global
//! sequence or by stream; followers watch the head. [`SegmentStore`] is the
//! durable default, [`MemoryStore`] serves tests. Both assign sequence,
//! time and hash chain through the same [`Sequencer`].

#[cfg(feature = "contract")]
pub mod contract;
mod memory;
mod segment;
mod sequencer;

pub use memory::MemoryStore;
pub use segment::{Recovery, SEGMENT_BYTES, SegmentStore, StoreOptions, StoreStats};
pub use sequencer::{Sequenced, Sequencer};

use async_trait::async_trait;
use thiserror::Error;
use tokio::sync::watch;

use crate::codec::CodecError;
use crate::envelope::{Actor, Envelope};
use crate::event::Event;

/// What the caller believes the stream's version is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum ExpectedVersion {
    /// No check (for facts that cannot conflict, such as engine progress).
    Any,
    /// The stream must not exist yet.
    NoStream,
    /// The stream's last event has exactly this version.
    Exact(u64),
}

impl std::fmt::Display for ExpectedVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ExpectedVersion::Any => f.write_str("any version"),
            ExpectedVersion::NoStream => f.write_str("a new stream"),
            ExpectedVersion::Exact(v) => write!(f, "version {v}"),
        }
    }
}

#[derive(Debug, Error)]
pub enum StoreError {
    #[error("stream {stream} is at version {actual}, expected {expected}")]
    WrongVersion {
        stream: String,
        expected: ExpectedVersion,
        actual: u64,
    },
    #[error("invalid stream name {0:?}")]
    BadStream(String),
    #[error("nothing to append")]
    Empty,
    #[error("store at {path}: {source}")]
    Sled {
        path: String,
        #[source]
        source: sled::Error,
    },
    #[error("record {seq}: {source}")]
    Codec {
        seq: u64,
        #[source]
        source: CodecError,
    },
    #[error("event log at {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// Bytes that are not an intact record, where no torn write can be.
    #[error(
        "event log damaged in {segment} at offset {offset} (sequence {seq}): {what}; refusing to go on"
    )]
    Damaged {
        segment: String,
        offset: u64,
        seq: u64,
        what: String,
    },
    #[error("moving the event log at {path} into segments stopped at sequence {seq}: {what}")]
    Conversion {
        path: String,
        seq: u64,
        what: String,
    },
    #[error("the store failed to write earlier ({0}) and accepts no more appends")]
    Poisoned(String),
    #[error("the store is closed")]
    Closed,
    /// An engine or scheduler append from a worker that does not lead the
    /// fleet (it never did, or another worker has taken over since).
    #[error(
        "this worker does not lead the fleet (leader epoch {epoch}); only the leader's engine writes"
    )]
    NotLeader { epoch: u64 },
    /// An engine append for a mailbox whose lease this worker no longer
    /// holds (it expired, or another worker has taken the mailbox over).
    #[error(
        "the lease on {mailbox} (lease {lease}) is no longer this worker's: another worker may have taken it over; its work stops here"
    )]
    LeaseLost { mailbox: String, lease: u64 },
    /// A database behind the store (PostgreSQL) failed or could not be reached.
    #[error("event store at {at}: {what}")]
    Database { at: String, what: String },
}

/// A record as stored: its envelope and the exact bytes the chain hashes.
#[derive(Debug, Clone)]
pub struct RawRecord {
    pub seq: u64,
    pub bytes: Vec<u8>,
}

pub type EnvelopeIter<'a> = Box<dyn Iterator<Item = Result<Envelope, StoreError>> + Send + 'a>;
pub type RawIter<'a> = Box<dyn Iterator<Item = Result<RawRecord, StoreError>> + Send + 'a>;

/// The event log. Implementations must make an `Ok` from `append` mean the
/// events are durable and visible to every later read.
#[async_trait]
pub trait EventStore: Send + Sync + 'static {
    /// Appends `events` to `stream` atomically, if the stream is at `expected`.
    async fn append(
        &self,
        stream: &str,
        expected: ExpectedVersion,
        actor: Actor,
        events: Vec<Event>,
    ) -> Result<Vec<Envelope>, StoreError>;

    /// Every envelope with `seq >= from_seq`, in order.
    fn read_all(&self, from_seq: u64) -> EnvelopeIter<'_>;

    /// The stored bytes with `seq >= from_seq`, in order (for export and checks).
    fn read_raw(&self, from_seq: u64) -> RawIter<'_>;

    /// The envelopes of one stream with `stream_version >= from_version`,
    /// read lazily (a mailbox's stream can hold millions of events).
    fn scan_stream(&self, stream: &str, from_version: u64) -> EnvelopeIter<'_>;

    /// [`EventStore::scan_stream`], collected.
    fn read_stream(&self, stream: &str, from_version: u64) -> Result<Vec<Envelope>, StoreError> {
        self.scan_stream(stream, from_version).collect()
    }

    /// The stream's version (0 when it does not exist).
    fn stream_version(&self, stream: &str) -> u64;

    /// Sequence of the last durable event (0 for an empty log).
    fn head(&self) -> u64;

    /// A receiver of the head sequence, changed after each durable append.
    fn follow(&self) -> watch::Receiver<u64>;
}

/// Checks a stream name: non-empty, at most 512 bytes, no NUL (the key separator).
pub fn check_stream(stream: &str) -> Result<(), StoreError> {
    if stream.is_empty() || stream.len() > 512 || stream.contains('\0') {
        return Err(StoreError::BadStream(stream.to_string()));
    }
    Ok(())
}
