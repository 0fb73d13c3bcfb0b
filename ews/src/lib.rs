//! An Exchange Web Services client for reading mailboxes out of Exchange
//! 2010 SP1 to 2019.
//!
//! - `client`: the [`Endpoint`] (URL, TLS, connection cap, learned server
//!   version, throttling) and the [`Mailbox`] operations: the folder tree,
//!   `SyncFolderItems`, `GetItem` with MIME, `ExportItems`.
//! - `ops`: each request written and each answer read; no I/O.
//! - `transport`: HTTP/1.1 connections with Basic or NTLM on them.
//! - `ntlm`: the NTLMv2 messages, both sides ([MS-NLMP]).
//! - `xml`: the SOAP envelope, a writer that escapes, tree helpers.
//! - `types`: versions, folders, item ids, changes, items.

pub mod client;
pub mod error;
pub mod ntlm;
pub mod ops;
pub mod tls;
pub mod transport;
pub mod types;
pub mod xml;

pub use client::{
    Endpoint, EndpointConfig, MAX_SYNC_CHANGES, Mailbox, RetryPolicy, SharedBackoff,
    SharedBackoffs, Stats,
};
pub use error::{EwsError, Result};
pub use transport::{AuthKind, Credentials};
pub use types::*;
