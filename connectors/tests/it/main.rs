//! The connectors' integration tests, one binary.

mod imap;
mod index;
mod maildir;
