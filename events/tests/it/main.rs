//! The event log's integration tests, one binary.

mod codec;
mod common;
mod segments;
mod store;
