//! Addresses and proxy addresses (`SMTP:`, `x500:`) as the checks compare them.

use super::SourceMailbox;

pub(super) fn lower(s: &str) -> String {
    s.to_lowercase()
}

pub(super) fn local_part(a: &str) -> &str {
    a.split('@').next().unwrap_or(a)
}

/// An address's domain as the log keys domains; empty without one.
pub(super) fn domain(a: &str) -> String {
    ferry_events::domain::domain_of(a).unwrap_or_default()
}

pub(super) fn is_smtp(proxy: &str) -> bool {
    proxy.len() > 5 && proxy[..5].eq_ignore_ascii_case("smtp:")
}

pub(super) fn is_x500(proxy: &str) -> bool {
    proxy.len() > 5 && proxy[..5].eq_ignore_ascii_case("x500:")
}

impl SourceMailbox {
    /// Primary and proxy SMTP addresses, lower-cased.
    pub(super) fn smtp_addresses(&self) -> Vec<String> {
        let mut v = vec![lower(&self.primary_smtp)];
        v.extend(
            self.email_addresses
                .iter()
                .filter(|p| is_smtp(p))
                .map(|p| lower(&p[5..])),
        );
        v
    }
}
