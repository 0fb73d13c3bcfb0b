//! The connectors' integration tests, one binary.

mod imap;
mod maildir;
