//! The event log: every state change of mailferry, in order, forever.
//!
//! - [`event`]: the domain's event enum and the small types it carries;
//! - [`envelope`]: sequence, stream, version, time, actor, schema and the
//!   hash chain that makes the log verifiable;
//! - [`codec`]: the on-disk and on-wire bytes of an envelope (a format byte,
//!   a schema version, then bincode);
//! - [`store`]: the [`EventStore`] trait, the segment store (segment files,
//!   a small index in sled, group commit), and an in-memory store for tests;
//! - [`time`]: µs since the epoch, parsed and formatted in one place;
//! - [`domain`]: domains written one way.
//!
//! Nothing here knows about IMAP or the daemon.

pub mod codec;
pub mod domain;
pub mod envelope;
pub mod event;
pub mod store;
pub mod time;

pub use envelope::{Actor, Envelope, Hash, ZERO_HASH};
pub use event::*;
pub use store::{
    EventStore, ExpectedVersion, MemoryStore, RawRecord, SegmentStore, Sequencer, StoreError,
    StoreOptions,
};
