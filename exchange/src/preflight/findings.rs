//! What [`check`](super::check) reports: findings, their rules and severities.

use std::fmt;

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
        })
    }
}

/// The rules checked, each named in its findings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Rule {
    /// Every source mailbox needs a MailUser in the target.
    NoTarget,
    /// The join found several MailUsers for one mailbox.
    AmbiguousTarget,
    /// The target's ExchangeGuid equals the source's.
    ExchangeGuid,
    /// When the source has an archive, the ArchiveGuids are equal.
    ArchiveGuid,
    /// The source LegacyExchangeDN is an x500 proxy of the target.
    LegacyDnX500,
    /// Every x500 proxy of the source is on the target.
    X500Proxies,
    /// No SMTP proxy of the target is in a domain the target does not own.
    ForeignSmtpProxy,
    /// No Exchange licence before the ExchangeGuid is stamped.
    LicenceBeforeGuid,
    /// At most 2,000 mailboxes per batch.
    BatchSize,
    /// A delegate moves in the same batch as its principal.
    DelegateBatch,
    /// A delegate is not among the mailboxes being moved.
    DelegateNotMigrated,
}

impl Rule {
    pub fn as_str(self) -> &'static str {
        match self {
            Rule::NoTarget => "no-target",
            Rule::AmbiguousTarget => "ambiguous-target",
            Rule::ExchangeGuid => "exchange-guid",
            Rule::ArchiveGuid => "archive-guid",
            Rule::LegacyDnX500 => "legacy-dn-x500",
            Rule::X500Proxies => "x500-proxies",
            Rule::ForeignSmtpProxy => "foreign-smtp-proxy",
            Rule::LicenceBeforeGuid => "licence-before-guid",
            Rule::BatchSize => "batch-size",
            Rule::DelegateBatch => "delegate-batch",
            Rule::DelegateNotMigrated => "delegate-not-migrated",
        }
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One problem: what is wrong with which object, and how to fix it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub severity: Severity,
    /// The source mailbox (or batch) concerned.
    pub object: String,
    pub rule: Rule,
    pub message: String,
    pub fix: String,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} [{}]: {}\n  fix: {}",
            self.severity, self.object, self.rule, self.message, self.fix
        )
    }
}
