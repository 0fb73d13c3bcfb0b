//! The common rig: a source and a destination Dovecot on 127.0.0.1 with the
//! same users, and ferryd with endpoints `old` and `new` (admin = Dovecot's
//! master user) and a batch of those users.

use ferry_connectors::imap::ImapSession;
use ferry_testservers::Dovecot;

use crate::Ferryd;
use crate::delayproxy::{DelayProxy, Link};
use crate::mailcmp::{self, Contents};

/// Every test user's password on both servers.
pub const PW: &str = "pässword-1";

pub struct Pair {
    pub src: Dovecot,
    pub dst: Dovecot,
    pub ferry: Ferryd,
    /// Between ferryd and the source, when the source must be far away.
    pub link: Option<DelayProxy>,
}

impl Pair {
    /// Batch `batch` of `users` (`USER@old.example` → `USER@new.example`),
    /// ferryd with `config` when given.
    pub fn start(batch: &str, users: &[&str], config: Option<&str>) -> Pair {
        Pair::start_with(batch, users, config, None)
    }

    /// As [`Pair::start`], ferryd reaching the source over `link`.
    pub fn start_over(batch: &str, users: &[&str], link: Link) -> Pair {
        Pair::start_with(batch, users, None, Some(link))
    }

    fn start_with(batch: &str, users: &[&str], config: Option<&str>, link: Option<Link>) -> Pair {
        let src = Dovecot::start().unwrap();
        let dst = Dovecot::start().unwrap();
        src.add_users(users, PW).unwrap();
        dst.add_users(users, PW).unwrap();
        let ferry = match config {
            Some(c) => Ferryd::start_with_config(c),
            None => Ferryd::start(),
        };
        let link = link.map(|l| DelayProxy::start(src.port(), l));
        let src_port = link.as_ref().map_or(src.port(), DelayProxy::port);
        ferry.add_imap_endpoint("old", src_port, src.master_user());
        ferry.add_imap_endpoint("new", dst.port(), src.master_user());
        ferry.create_batch(batch, "old", "new", users, &[]);
        Pair {
            src,
            dst,
            ferry,
            link,
        }
    }
}

pub async fn login(d: &Dovecot, user: &str) -> ImapSession {
    crate::imap_login(d.port(), user, PW).await
}

/// What `user` holds on `d`, folder by folder.
pub async fn contents(d: &Dovecot, user: &str) -> Contents {
    use ferry_connectors::MailSession;
    let mut s = login(d, user).await;
    let c = mailcmp::contents(&mut s).await;
    let _ = s.logout().await;
    c
}

pub fn count(c: &Contents) -> usize {
    c.values().map(Vec::len).sum()
}

/// `messages` sample messages (no attachments) appended for `user` on `d`.
pub async fn add_mail(d: &Dovecot, user: &str, seed: u64, messages: usize) {
    use crate::sample::{self, SampleSpec};
    let mut s = login(d, user).await;
    let spec = SampleSpec {
        seed,
        messages,
        attachment_percent: 0,
        huge: 0,
    };
    sample::fill(&mut s, &spec).await.unwrap();
}
