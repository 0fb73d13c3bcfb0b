//! Cross-tenant preflight: checks exports of the source mailboxes and of the
//! target MailUsers against the rules of Microsoft's cross-tenant mailbox
//! migration before a batch is submitted.
//!
//! # Input
//! CSV as `Export-Csv` writes it (a `#TYPE` first line is skipped, UTF-8 with
//! or without byte-order mark, or UTF-16LE with one) or JSON as
//! `ConvertTo-Json` writes it (an array of objects or a single object).
//! Column names are matched without regard to case. Multi-valued columns
//! (`EmailAddresses`, `GrantSendOnBehalfTo`, `Delegates`) hold their values
//! separated by `;`, as `@{n='EmailAddresses';e={$_.EmailAddresses -join ';'}}`
//! exports them; in JSON they may also be arrays.
//!
//! Source columns: `PrimarySmtpAddress`, `ExchangeGuid`, `LegacyExchangeDN`
//! (required); `Alias`, `Name`, `DisplayName`, `ArchiveGuid`, `ArchiveStatus`,
//! `EmailAddresses`, `GrantSendOnBehalfTo`, `Delegates`, `Batch`.
//! Target columns: `PrimarySmtpAddress` (required); `Alias`,
//! `ExternalEmailAddress`, `ExchangeGuid`, `ArchiveGuid`, `EmailAddresses`,
//! and the licence as `SKUAssigned`, `IsLicensed` or `Licenses`.
//!
//! # Join
//! A source mailbox's MailUser is the target whose `ExternalEmailAddress` is
//! one of the source's SMTP addresses; failing that, the one with the same
//! `Alias`; failing that, the one whose primary address has the same local
//! part. More than one candidate at a step is reported, not guessed.
//!
//! # Rules
//! See [`Rule`]. Delegates (`GrantSendOnBehalfTo`, `Delegates`) name other
//! mailboxes by address, alias or name; all mailboxes without a `Batch` are
//! one batch.

mod checks;
mod findings;
mod input;
mod join;
mod load;
mod proxies;

pub use checks::{check, owned_domains};
pub use findings::{Finding, Rule, Severity};
pub use input::{LoadError, Location};
pub use load::{load_sources, load_targets};

use uuid::Uuid;

/// At most this many mailboxes per cross-tenant batch.
pub const MAX_BATCH: usize = 2000;

/// A mailbox of the source tenant.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SourceMailbox {
    pub primary_smtp: String,
    pub alias: Option<String>,
    pub name: Option<String>,
    pub display_name: Option<String>,
    pub exchange_guid: Option<Uuid>,
    /// Set when the mailbox has an archive.
    pub archive_guid: Option<Uuid>,
    pub legacy_dn: String,
    /// Proxy addresses with their prefix, e.g. `smtp:a@x`, `X500:/o=…`.
    pub email_addresses: Vec<String>,
    /// Mailboxes that act for this one.
    pub delegates: Vec<String>,
    pub batch: Option<String>,
}

/// A MailUser of the target tenant.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TargetMailUser {
    pub primary_smtp: String,
    pub alias: Option<String>,
    pub external_email_address: Option<String>,
    pub exchange_guid: Option<Uuid>,
    pub archive_guid: Option<Uuid>,
    pub email_addresses: Vec<String>,
    /// An Exchange Online licence is assigned.
    pub licensed: bool,
}

#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Accepted domains of the target tenant; empty: the domains of the
    /// targets' primary addresses.
    pub target_domains: Vec<String>,
}
