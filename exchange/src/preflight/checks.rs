//! The rules applied to every source mailbox, its MailUser and its batch.

use std::collections::{BTreeMap, HashMap, HashSet};

use super::join::{Join, join};
use super::proxies::{domain, is_smtp, is_x500, lower};
use super::{Finding, MAX_BATCH, Options, Rule, Severity, SourceMailbox, TargetMailUser};

fn batch_of(s: &SourceMailbox) -> &str {
    s.batch.as_deref().unwrap_or("(unnamed)")
}

fn ps(s: &str) -> String {
    crate::runbook::ps_quote(s)
}

/// Checks every source mailbox against its target MailUser and the batch
/// rules. Findings come in source order, batch findings last.
pub fn check(
    sources: &[SourceMailbox],
    targets: &[TargetMailUser],
    opts: &Options,
) -> Vec<Finding> {
    let owned: HashSet<String> = owned_domains(targets, opts).into_iter().collect();
    // Delegates are named by address, alias or name.
    let mut by_key: HashMap<String, usize> = HashMap::new();
    for (i, s) in sources.iter().enumerate() {
        let mut keys = s.smtp_addresses();
        keys.extend(
            [&s.alias, &s.name, &s.display_name]
                .into_iter()
                .flatten()
                .map(|k| lower(k)),
        );
        for k in keys {
            by_key.entry(k).or_insert(i);
        }
    }

    let mut out = Vec::new();
    for src in sources {
        let object = src.primary_smtp.clone();
        let mut find = |severity, rule, message: String, fix: String| {
            out.push(Finding {
                severity,
                object: object.clone(),
                rule,
                message,
                fix,
            })
        };
        match join(src, targets) {
            Join::None => find(
                Severity::Error,
                Rule::NoTarget,
                "no MailUser in the target export matches this mailbox".into(),
                format!(
                    "create one with New-MailUser -ExternalEmailAddress {}, then stamp its \
                     ExchangeGuid and x500 proxies",
                    ps(&src.primary_smtp)
                ),
            ),
            Join::Many(hits) => find(
                Severity::Error,
                Rule::AmbiguousTarget,
                format!(
                    "several MailUsers match: {}",
                    hits.iter()
                        .map(|&i| targets[i].primary_smtp.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                "set ExternalEmailAddress of the right one to this mailbox's address".into(),
            ),
            Join::One(i) => {
                let t = &targets[i];
                let id = ps(&t.primary_smtp);
                match (src.exchange_guid, t.exchange_guid) {
                    (Some(want), None) if t.licensed => find(
                        Severity::Error,
                        Rule::LicenceBeforeGuid,
                        format!(
                            "target {} is licensed for Exchange but has no ExchangeGuid; \
                             a new, empty mailbox will be provisioned instead of the move",
                            t.primary_smtp
                        ),
                        format!(
                            "remove the Exchange licence, run Set-MailUser {id} -ExchangeGuid \
                             {want}, then license it again"
                        ),
                    ),
                    (Some(want), None) => find(
                        Severity::Error,
                        Rule::ExchangeGuid,
                        format!("target {} has no ExchangeGuid", t.primary_smtp),
                        format!("Set-MailUser {id} -ExchangeGuid {want}"),
                    ),
                    (Some(want), Some(have)) if want != have => find(
                        Severity::Error,
                        Rule::ExchangeGuid,
                        format!(
                            "target {} has ExchangeGuid {have}, the source {want}",
                            t.primary_smtp
                        ),
                        format!(
                            "clear the target's previous mailbox (Set-User {id} \
                             -PermanentlyClearPreviousMailboxInfo), then Set-MailUser {id} \
                             -ExchangeGuid {want}"
                        ),
                    ),
                    (None, _) => find(
                        Severity::Error,
                        Rule::ExchangeGuid,
                        "the source mailbox has no ExchangeGuid in the export".into(),
                        "export the source again with the ExchangeGuid column filled".into(),
                    ),
                    _ => {}
                }
                if let Some(want) = src.archive_guid
                    && t.archive_guid != Some(want)
                {
                    let have = t
                        .archive_guid
                        .map(|g| format!("ArchiveGuid {g}"))
                        .unwrap_or_else(|| "no ArchiveGuid".into());
                    find(
                        Severity::Error,
                        Rule::ArchiveGuid,
                        format!(
                            "the source has an archive {want}; target {} has {have}",
                            t.primary_smtp
                        ),
                        format!("Set-MailUser {id} -ArchiveGuid {want}"),
                    );
                }
                let target_proxies: HashSet<String> =
                    t.email_addresses.iter().map(|p| lower(p)).collect();
                let legacy = format!("x500:{}", src.legacy_dn);
                if !target_proxies.contains(&lower(&legacy)) {
                    find(
                        Severity::Error,
                        Rule::LegacyDnX500,
                        format!(
                            "target {} lacks the source LegacyExchangeDN as an x500 proxy; \
                             replies to old messages would bounce (5.1.1)",
                            t.primary_smtp
                        ),
                        format!("Set-MailUser {id} -EmailAddresses @{{add={}}}", ps(&legacy)),
                    );
                }
                let missing: Vec<&String> = src
                    .email_addresses
                    .iter()
                    .filter(|p| is_x500(p) && !target_proxies.contains(&lower(p)))
                    .filter(|p| !p[5..].eq_ignore_ascii_case(&src.legacy_dn))
                    .collect();
                if !missing.is_empty() {
                    find(
                        Severity::Error,
                        Rule::X500Proxies,
                        format!(
                            "target {} lacks x500 proxies of the source ({}): {}",
                            t.primary_smtp,
                            missing.len(),
                            missing
                                .iter()
                                .map(|s| s.as_str())
                                .collect::<Vec<_>>()
                                .join("; ")
                        ),
                        format!(
                            "Set-MailUser {id} -EmailAddresses @{{add={}}}",
                            missing.iter().map(|p| ps(p)).collect::<Vec<_>>().join(",")
                        ),
                    );
                }
                let foreign: Vec<&String> = t
                    .email_addresses
                    .iter()
                    .filter(|p| is_smtp(p) && !owned.contains(&domain(&p[5..])))
                    .collect();
                if !foreign.is_empty() {
                    find(
                        Severity::Error,
                        Rule::ForeignSmtpProxy,
                        format!(
                            "target {} has SMTP proxies in domains the target tenant does not \
                             own: {}; they block the MailUser's conversion to a mailbox",
                            t.primary_smtp,
                            foreign
                                .iter()
                                .map(|s| s.as_str())
                                .collect::<Vec<_>>()
                                .join("; ")
                        ),
                        format!(
                            "Set-MailUser {id} -EmailAddresses @{{remove={}}}",
                            foreign.iter().map(|p| ps(p)).collect::<Vec<_>>().join(",")
                        ),
                    );
                }
            }
        }
        for d in &src.delegates {
            match by_key.get(&lower(d)) {
                None => find(
                    Severity::Warning,
                    Rule::DelegateNotMigrated,
                    format!("delegate {d} is not among the mailboxes to move"),
                    format!(
                        "add {d} to the migration with {}, or plan for the lost permission: \
                         cross-tenant permissions are not supported",
                        src.primary_smtp
                    ),
                ),
                Some(&j) if batch_of(&sources[j]) != batch_of(src) => find(
                    Severity::Error,
                    Rule::DelegateBatch,
                    format!(
                        "delegate {} is in batch {}, this mailbox in batch {}",
                        sources[j].primary_smtp,
                        batch_of(&sources[j]),
                        batch_of(src)
                    ),
                    format!(
                        "move {} and {} in the same batch",
                        sources[j].primary_smtp, src.primary_smtp
                    ),
                ),
                Some(_) => {}
            }
        }
    }

    let mut sizes: BTreeMap<&str, usize> = BTreeMap::new();
    for s in sources {
        *sizes.entry(batch_of(s)).or_default() += 1;
    }
    for (batch, n) in sizes {
        if n > MAX_BATCH {
            out.push(Finding {
                severity: Severity::Error,
                object: format!("batch {batch}"),
                rule: Rule::BatchSize,
                message: format!("{n} mailboxes; a batch holds at most {MAX_BATCH}"),
                fix: format!(
                    "split it into {} batches, keeping delegates with their principals",
                    n.div_ceil(MAX_BATCH)
                ),
            });
        }
    }
    out
}

/// The domains [`check`] takes the target tenant to own: the given ones,
/// or else those of the targets' primary addresses plus any
/// `onmicrosoft.com` domain found on more than half of the targets (the
/// tenant's own; another tenant's would appear on a few at most).
pub fn owned_domains(targets: &[TargetMailUser], opts: &Options) -> Vec<String> {
    let mut v: Vec<String> = if opts.target_domains.is_empty() {
        let mut v: Vec<String> = targets.iter().map(|t| domain(&t.primary_smtp)).collect();
        let mut seen: HashMap<String, usize> = HashMap::new();
        for t in targets {
            let domains: HashSet<String> = t
                .email_addresses
                .iter()
                .filter(|p| is_smtp(p))
                .map(|p| domain(&p[5..]))
                .filter(|d| d.ends_with(".onmicrosoft.com"))
                .collect();
            for d in domains {
                *seen.entry(d).or_default() += 1;
            }
        }
        v.extend(
            seen.into_iter()
                .filter(|(_, n)| n * 2 > targets.len())
                .map(|(d, _)| d),
        );
        v
    } else {
        opts.target_domains
            .iter()
            .map(|d| ferry_events::domain::normal_domain(d))
            .collect()
    };
    v.sort();
    v.dedup();
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    fn guid(n: u128) -> Option<Uuid> {
        Some(Uuid::from_u128(n))
    }

    fn pair(local: &str, n: u128) -> (SourceMailbox, TargetMailUser) {
        let dn = format!("/o=Org/cn={local}");
        (
            SourceMailbox {
                primary_smtp: format!("{local}@source.example"),
                exchange_guid: guid(n),
                legacy_dn: dn.clone(),
                ..Default::default()
            },
            TargetMailUser {
                primary_smtp: format!("{local}@target.example"),
                external_email_address: Some(format!("{local}@source.example")),
                exchange_guid: guid(n),
                email_addresses: vec![
                    format!("SMTP:{local}@target.example"),
                    format!("smtp:{local}@target.onmicrosoft.com"),
                    format!("X500:{dn}"),
                ],
                ..Default::default()
            },
        )
    }

    #[test]
    fn derived_domains_keep_the_tenant_onmicrosoft_domain_only() {
        let (mut sources, mut targets) = (Vec::new(), Vec::new());
        for (i, l) in ["a", "b", "c"].iter().enumerate() {
            let (s, t) = pair(l, i as u128 + 1);
            sources.push(s);
            targets.push(t);
        }
        targets[2]
            .email_addresses
            .push("smtp:c@source.onmicrosoft.com".into());
        let opts = Options::default();
        assert_eq!(
            owned_domains(&targets, &opts),
            ["target.example", "target.onmicrosoft.com"]
        );
        let f = check(&sources, &targets, &opts);
        assert_eq!(f.len(), 1, "{f:?}");
        assert_eq!(f[0].rule, Rule::ForeignSmtpProxy);
        assert_eq!(f[0].object, "c@source.example");
    }

    #[test]
    fn licence_with_the_guid_stamped_is_fine() {
        let (s, mut t) = pair("a", 1);
        t.licensed = true;
        assert!(
            check(
                std::slice::from_ref(&s),
                std::slice::from_ref(&t),
                &Options::default()
            )
            .is_empty()
        );
        t.exchange_guid = None;
        let f = check(&[s], &[t], &Options::default());
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].rule, Rule::LicenceBeforeGuid);
    }
}
