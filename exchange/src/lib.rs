//! Mail routing around cutover, for the daemon and for `ferryctl`:
//! - [`runbook`]: PowerShell runbooks for criteria-based routing in Exchange
//!   Online, forwarding without a local copy and conversion to mail-enabled
//!   users on-premises;
//! - [`preflight`]: checks of source and target exports against the rules of
//!   a cross-tenant mailbox migration;
//! - [`hooks`]: a command or webhook run per cutover with a JSON payload.

pub mod hooks;
pub mod preflight;
pub mod runbook;
