//! Domains as the log keys them: trimmed, lower case, no final dot. Every
//! crate that compares or records a domain writes it this way.

/// A domain as the log keys domains: trimmed, lower case, no final dot.
pub fn normal_domain(raw: &str) -> String {
    raw.trim().trim_end_matches('.').to_ascii_lowercase()
}

/// The domain of an address, normalised; `None` without one.
pub fn domain_of(address: &str) -> Option<String> {
    address
        .rsplit_once('@')
        .map(|(_, d)| normal_domain(d))
        .filter(|d| !d.is_empty())
}

/// A domain name given by a person, normalised, when it is one (labels of
/// letters, digits, `-` and `_`, up to 63 each and 253 in all).
pub fn domain_name(raw: &str) -> Option<String> {
    let d = normal_domain(raw);
    let ok = !d.is_empty()
        && d.len() <= 253
        && d.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        });
    ok.then_some(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domains_are_written_one_way() {
        assert_eq!(
            domain_of("Ann@Example.COM.").as_deref(),
            Some("example.com")
        );
        assert_eq!(domain_of("ann"), None);
        assert_eq!(domain_of("ann@."), None);
        assert_eq!(
            domain_name(" Example.com. ").as_deref(),
            Some("example.com")
        );
        assert_eq!(domain_name("-bad.example"), None);
        assert_eq!(domain_name("a..b"), None);
    }
}
