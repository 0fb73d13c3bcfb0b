//! The copy engine between Dovecot and Cyrus IMAP on 127.0.0.1, driven
//! through ferryctl, compared item by item (bytes, flags and keywords,
//! INTERNALDATE, folders). Each side impersonates users with its own admin:
//! Dovecot's master user, Cyrus's `admins`/`proxyservers` account.
//!
//! Cyrus comes from `scripts/cyrus.sh` (Debian's package unpacked into
//! target/cyrus-root); without it these tests print why and pass.

use ferry_connectors::imap;
use ferry_connectors::{FolderName, MailSession};
use ferry_tests::Ferryd;
use ferry_tests::mailcmp::{self, Contents};
use ferry_tests::sample::{self, SampleSpec};
use ferry_testservers::{Cyrus, CyrusOptions, Dovecot};

const PW: &str = "pässword-1";

/// Cyrus, or `None` (with the reason printed) when it is not unpacked.
fn cyrus() -> Option<Cyrus> {
    cyrus_with(CyrusOptions::default())
}

fn cyrus_with(options: CyrusOptions) -> Option<Cyrus> {
    match Cyrus::start_with(options) {
        Ok(c) => Some(c),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            eprintln!("skipped: {e}");
            None
        }
        Err(e) => panic!("cyrus: {e}"),
    }
}

async fn login(port: u16, user: &str) -> imap::ImapSession {
    ferry_tests::imap_login(port, user, PW).await
}

async fn contents(port: u16, user: &str) -> Contents {
    let mut s = login(port, user).await;
    let c = mailcmp::contents(&mut s).await;
    let _ = s.logout().await;
    c
}

fn count(c: &Contents) -> usize {
    c.values().map(Vec::len).sum()
}

fn inbox() -> FolderName {
    FolderName {
        raw: "INBOX".into(),
        delimiter: Some('/'),
        segments: vec!["INBOX".into()],
    }
}

/// One side of a migration as ferryctl sees it: port and admin login.
struct Side {
    port: u16,
    admin: (&'static str, &'static str),
}

impl Side {
    fn dovecot(d: &Dovecot) -> Side {
        Side {
            port: d.port(),
            admin: d.master_user(),
        }
    }
    fn cyrus(c: &Cyrus) -> Side {
        Side {
            port: c.port(),
            admin: c.admin_user(),
        }
    }
}

/// ferryd with endpoints `old` and `new` and batch `wave1` of `users`.
fn ferry(old: &Side, new: &Side, users: &[&str]) -> Ferryd {
    ferry_with(old, new, users, &[])
}

/// Like [`ferry`], with more `batch create` options.
fn ferry_with(old: &Side, new: &Side, users: &[&str], batch_options: &[&str]) -> Ferryd {
    let ferry = Ferryd::start();
    for (name, side) in [("old", old), ("new", new)] {
        ferry.add_imap_endpoint(name, side.port, side.admin);
        // The admin acting as a user proves impersonation on both servers.
        ferry.ctl_ok(&["endpoint", "verify", name, "--as", users[0]]);
    }
    ferry.create_batch("wave1", "old", "new", users, batch_options);
    ferry
}

fn run_pass(f: &Ferryd, pass: &str) {
    f.ctl_ok(&["batch", "start", "wave1", "--pass", pass]);
    f.ctl_ok(&["batch", "wait", "wave1", "--timeout", "300"]);
}

fn events_of(f: &Ferryd, kind: &str) -> usize {
    let out = f.ctl_ok(&["--json", "events"]);
    out.lines()
        .filter(|l| l.contains(&format!("\"event_type\":\"{kind}\"")))
        .count()
}

fn spec(seed: u64, messages: usize) -> SampleSpec {
    SampleSpec {
        seed,
        messages,
        attachment_percent: 5,
        huge: 0,
    }
}

/// Every sample folder, with its nested and non-ASCII names, is there.
fn assert_sample_folders(c: &Contents) {
    for f in sample::folders() {
        let path = f.join("/");
        assert!(c.contains_key(&path), "folder {path} in {:?}", c.keys());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dovecot_to_cyrus_full_then_delta() {
    let Some(dst) = cyrus() else { return };
    let src = Dovecot::start().unwrap();
    src.add_user("anna", PW).unwrap();
    dst.add_user("anna", PW).unwrap();
    {
        let mut a = login(src.port(), "anna").await;
        sample::fill(&mut a, &spec(31, 80)).await.unwrap();
    }
    let src_anna = contents(src.port(), "anna").await;
    assert_eq!(count(&src_anna), 80);
    assert_sample_folders(&src_anna);
    assert!(
        src_anna
            .values()
            .flatten()
            .any(|m| m.flags.contains(&"project-x".to_string())),
        "the sample carries keywords"
    );

    let f = ferry(&Side::dovecot(&src), &Side::cyrus(&dst), &["anna"]);
    run_pass(&f, "full");
    let dst_anna = contents(dst.port(), "anna").await;
    assert_eq!(mailcmp::diff(&src_anna, &dst_anna), Vec::<String>::new());
    let show = f.ctl_json(&["batch", "show", "wave1"]);
    assert_eq!(show["data"]["state"], "Synced", "{show}");
    assert_eq!(events_of(&f, "ItemCopied"), 80);

    // New mail and changed flags at the source; a delta carries both.
    {
        let mut a = login(src.port(), "anna").await;
        for m in sample::messages(&spec(32, 5)) {
            a.append(&inbox(), &m.flags, Some(m.date), m.body)
                .await
                .unwrap();
        }
        a.select(&inbox()).await.unwrap();
        a.store_flags(1, &["\\Flagged".to_string(), "Project-Y".to_string()])
            .await
            .unwrap();
    }
    run_pass(&f, "delta");
    let src_anna = contents(src.port(), "anna").await;
    let dst_anna = contents(dst.port(), "anna").await;
    assert_eq!(count(&src_anna), 85);
    assert_eq!(mailcmp::diff(&src_anna, &dst_anna), Vec::<String>::new());
    assert_eq!(events_of(&f, "ItemCopied"), 85);
    assert!(events_of(&f, "FlagsSynced") >= 1);

    // A delta with nothing new copies nothing.
    run_pass(&f, "delta");
    assert_eq!(events_of(&f, "ItemCopied"), 85);
    assert_eq!(count(&contents(dst.port(), "anna").await), 85);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cyrus_to_dovecot_full_then_delta() {
    let Some(src) = cyrus() else { return };
    let dst = Dovecot::start().unwrap();
    src.add_user("bert", PW).unwrap();
    dst.add_user("bert", PW).unwrap();
    {
        let mut b = login(src.port(), "bert").await;
        sample::fill(&mut b, &spec(41, 60)).await.unwrap();
    }
    let src_bert = contents(src.port(), "bert").await;
    assert_eq!(count(&src_bert), 60);
    assert_sample_folders(&src_bert);

    let f = ferry(&Side::cyrus(&src), &Side::dovecot(&dst), &["bert"]);
    run_pass(&f, "full");
    let dst_bert = contents(dst.port(), "bert").await;
    assert_eq!(mailcmp::diff(&src_bert, &dst_bert), Vec::<String>::new());
    assert_eq!(events_of(&f, "ItemCopied"), 60);

    {
        let mut b = login(src.port(), "bert").await;
        for m in sample::messages(&spec(42, 3)) {
            b.append(&inbox(), &m.flags, Some(m.date), m.body)
                .await
                .unwrap();
        }
        b.select(&inbox()).await.unwrap();
        b.store_flags(1, &["\\Answered".to_string(), "Project-Z".to_string()])
            .await
            .unwrap();
    }
    run_pass(&f, "delta");
    let src_bert = contents(src.port(), "bert").await;
    assert_eq!(count(&src_bert), 63);
    assert_eq!(
        mailcmp::diff(&src_bert, &contents(dst.port(), "bert").await),
        Vec::<String>::new()
    );
    assert_eq!(events_of(&f, "ItemCopied"), 63);
    assert!(events_of(&f, "FlagsSynced") >= 1);
}

/// Per folder, each item's size, flags and date, sorted: all but the bytes.
type Shape = Vec<(String, Vec<(usize, Vec<String>, Option<i64>)>)>;

fn shape(c: &Contents) -> Shape {
    c.iter()
        .map(|(k, v)| {
            let mut items: Vec<_> = v
                .iter()
                .map(|m| (m.size, m.flags.clone(), m.date))
                .collect();
            items.sort();
            (k.clone(), items)
        })
        .collect()
}

/// Cyrus's default `munge8bit: yes` turns raw 8-bit header bytes into 'X'
/// on APPEND (the sample's "Subject: Résumé"): same size, other bytes. The
/// copy still completes, and a delta relies on the UID map, not on digests,
/// so it copies nothing again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cyrus_munging_8bit_headers_does_not_cause_duplicates() {
    let Some(dst) = cyrus_with(CyrusOptions {
        munge8bit: true,
        ..CyrusOptions::default()
    }) else {
        return;
    };
    let src = Dovecot::start().unwrap();
    src.add_user("anna", PW).unwrap();
    dst.add_user("anna", PW).unwrap();
    {
        let mut a = login(src.port(), "anna").await;
        sample::fill(&mut a, &spec(51, 40)).await.unwrap();
    }
    let f = ferry(&Side::dovecot(&src), &Side::cyrus(&dst), &["anna"]);
    run_pass(&f, "full");
    let src_anna = contents(src.port(), "anna").await;
    let dst_anna = contents(dst.port(), "anna").await;
    assert!(
        !mailcmp::diff(&src_anna, &dst_anna).is_empty(),
        "Cyrus rewrote 8-bit headers"
    );
    // Everything but the digest matches, folder by folder.
    assert_eq!(shape(&src_anna), shape(&dst_anna));
    assert_eq!(events_of(&f, "ItemCopied"), 40);
    run_pass(&f, "delta");
    assert_eq!(events_of(&f, "ItemCopied"), 40);
    assert_eq!(count(&contents(dst.port(), "anna").await), 40);
}

/// Debian's shipped imapd.conf says `altnamespace: no`: the user's folders
/// live below INBOX (`INBOX/Archive`) and Cyrus refuses to create any other
/// top-level folder. The engine does not read the destination's NAMESPACE,
/// so unmapped folders fail to be created (the batch ends with errors, INBOX
/// alone is copied); two folder rules put them below INBOX.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dovecot_to_cyrus_without_altnamespace_needs_inbox_rules() {
    let Some(dst) = cyrus_with(CyrusOptions {
        altnamespace: false,
        ..CyrusOptions::default()
    }) else {
        return;
    };
    let src = Dovecot::start().unwrap();
    for u in ["anna", "bert"] {
        src.add_user(u, PW).unwrap();
        dst.add_user(u, PW).unwrap();
        let mut s = login(src.port(), u).await;
        sample::fill(&mut s, &spec(61, 30)).await.unwrap();
    }
    let src_anna = contents(src.port(), "anna").await;

    let f = ferry(&Side::dovecot(&src), &Side::cyrus(&dst), &["anna"]);
    f.ctl_ok(&["batch", "start", "wave1", "--pass", "full"]);
    f.ctl_ok(&["batch", "wait", "wave1", "--timeout", "300"]);
    let show = f.ctl_json(&["batch", "show", "wave1"]);
    assert_eq!(show["data"]["state"], "SyncedWithErrors", "{show}");
    let mb = f.ctl_ok(&["mailbox", "show", "anna@old.example"]);
    assert!(
        mb.contains("folder Archive: create") && mb.contains("Permission denied"),
        "{mb}"
    );
    // Each refused folder is an event and shows in the mailbox's view.
    let mbj = f.ctl_json(&["mailbox", "show", "anna@old.example"]);
    let err = mbj["data"]["folders"]["Archive"]["error"]
        .as_str()
        .unwrap_or("");
    assert!(err.contains("Permission denied"), "{mbj}");
    assert!(mb.contains("folder Archive not copied"), "{mb}");
    let dst_anna = contents(dst.port(), "anna").await;
    assert_eq!(dst_anna.keys().collect::<Vec<_>>(), ["INBOX"]);
    assert_eq!(dst_anna["INBOX"], src_anna["INBOX"]);

    // INBOX stays; everything else goes below it.
    let f = ferry_with(
        &Side::dovecot(&src),
        &Side::cyrus(&dst),
        &["bert"],
        &[
            "--folder-rule",
            "^INBOX$->INBOX",
            "--folder-rule",
            "^(.+)$->INBOX/$1",
        ],
    );
    run_pass(&f, "full");
    let show = f.ctl_json(&["batch", "show", "wave1"]);
    assert_eq!(show["data"]["state"], "Synced", "{show}");
    let expected: Contents = contents(src.port(), "bert")
        .await
        .into_iter()
        .map(|(k, v)| match k.as_str() {
            "INBOX" => (k, v),
            _ => (format!("INBOX/{k}"), v),
        })
        .collect();
    assert!(expected.contains_key("INBOX/Archive/2024/Février"));
    assert_eq!(
        mailcmp::diff(&expected, &contents(dst.port(), "bert").await),
        Vec::<String>::new()
    );
}
