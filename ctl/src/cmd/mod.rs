//! One module per command group of the clap tree.

pub mod audit;
pub mod batch;
pub mod endpoint;
pub mod events;
pub mod mailbox;
pub mod mx;
pub mod preflight;
pub mod report;
pub mod runbook;
pub mod watch;
