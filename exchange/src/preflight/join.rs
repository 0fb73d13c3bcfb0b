//! A source mailbox's MailUser: by ExternalEmailAddress, then alias, then
//! local part; more than one candidate at a step is reported, not guessed.

use super::proxies::{local_part, lower};
use super::{SourceMailbox, TargetMailUser};

pub(super) enum Join {
    One(usize),
    None,
    Many(Vec<usize>),
}

pub(super) fn join(src: &SourceMailbox, targets: &[TargetMailUser]) -> Join {
    let smtp = src.smtp_addresses();
    let steps: [&dyn Fn(&TargetMailUser) -> bool; 3] = [
        &|t| {
            t.external_email_address
                .as_deref()
                .is_some_and(|e| smtp.contains(&lower(e)))
        },
        &|t| matches!((&src.alias, &t.alias), (Some(a), Some(b)) if a.eq_ignore_ascii_case(b)),
        &|t| local_part(&t.primary_smtp).eq_ignore_ascii_case(local_part(&src.primary_smtp)),
    ];
    for step in steps {
        let hits: Vec<usize> = (0..targets.len()).filter(|&i| step(&targets[i])).collect();
        match hits.len() {
            0 => continue,
            1 => return Join::One(hits[0]),
            _ => return Join::Many(hits),
        }
    }
    Join::None
}
