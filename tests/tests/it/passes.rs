//! Pass kinds and batch options, from a Maildir source (easy to alter under
//! the daemon's feet) to a real Dovecot destination on 127.0.0.1.

use std::path::{Path, PathBuf};
use std::time::Duration;

use ferry_connectors::{FolderName, MailSession, maildir};
use ferry_tests::Ferryd;
use ferry_tests::mailcmp::{self, Contents, Seen};
use ferry_tests::sample::{self, SampleSpec};
use ferry_testservers::Dovecot;

const PW: &str = "pw-ünïcode";
const ADDR: &str = "anna@old.example";

struct Setup {
    root: PathBuf,
    dst: Dovecot,
    ferry: Ferryd,
    _tmp: tempfile::TempDir,
}

fn inbox() -> FolderName {
    FolderName {
        raw: "INBOX".into(),
        delimiter: Some('/'),
        segments: vec!["INBOX".into()],
    }
}

async fn dst_contents(d: &Dovecot) -> Contents {
    let mut s = ferry_tests::imap_login(d.port(), "anna", PW).await;
    mailcmp::contents(&mut s).await
}

async fn src_contents(root: &Path) -> Contents {
    let mut s = maildir::open(&root.join(ADDR), false).unwrap();
    mailcmp::contents(&mut s).await
}

/// A Maildir source with `messages` sample items for anna, a Dovecot
/// destination, and batch `b` created with `extra` options.
async fn setup(messages: usize, extra: &[&str]) -> Setup {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("old");
    let mut s = maildir::open(&root.join(ADDR), true).unwrap();
    sample::fill(
        &mut s,
        &SampleSpec {
            seed: 3,
            messages,
            attachment_percent: 5,
            huge: 0,
        },
    )
    .await
    .unwrap();
    let dst = Dovecot::start().unwrap();
    dst.add_user("anna", PW).unwrap();
    let ferry = Ferryd::start();
    ferry.ctl_ok(&[
        "endpoint",
        "add",
        "old",
        "--kind",
        "maildir",
        "--host",
        root.to_str().unwrap(),
    ]);
    let (master, master_pw) = dst.master_user();
    let pw = ferry.file("m.pw", master_pw);
    ferry.ctl_ok(&[
        "endpoint",
        "add",
        "new",
        "--kind",
        "imap",
        "--host",
        "127.0.0.1",
        "--port",
        &dst.port().to_string(),
        "--tls",
        "none",
        "--admin-user",
        master,
        "--password-file",
        pw.to_str().unwrap(),
    ]);
    let csv = ferry.file(
        "b.csv",
        &format!("SourceEmail,DestinationEmail,DestinationLogin\n{ADDR},anna@new.example,anna\n"),
    );
    let mut args = vec![
        "batch",
        "create",
        "b",
        "--source",
        "old",
        "--destination",
        "new",
        "--csv",
        csv.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    ferry.ctl_ok(&args);
    Setup {
        root,
        dst,
        ferry,
        _tmp: tmp,
    }
}

fn pass(f: &Ferryd, args: &[&str]) -> bool {
    let mut a = vec!["batch", "start", "b", "--pass"];
    a.extend_from_slice(args);
    f.ctl_ok(&a);
    f.ctl(&["batch", "wait", "b", "--timeout", "300"])
        .status
        .success()
}

fn events(f: &Ferryd, kind: &str) -> Vec<serde_json::Value> {
    f.ctl_ok(&["--json", "events"])
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|e| e["event_type"] == kind)
        .collect()
}

fn all(c: &Contents) -> Vec<Seen> {
    let mut v: Vec<Seen> = c.values().flatten().cloned().collect();
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prestage_then_full_with_oversize_items_skipped() {
    let s = setup(80, &["--max-item-size", "300KB"]).await;
    // One message well over the limit.
    let big = sample::messages(&SampleSpec {
        seed: 5,
        messages: 1,
        attachment_percent: 100,
        huge: 0,
    })
    .next()
    .unwrap();
    assert!(big.body.len() > 300_000);
    let mut m = maildir::open(&s.root.join(ADDR), false).unwrap();
    m.append(&inbox(), &[], Some(big.date), big.body)
        .await
        .unwrap();
    let src = src_contents(&s.root).await;
    let cutoff = (chrono::Utc::now() - chrono::Duration::days(365)).timestamp();
    let fits = |i: &&Seen| i.size <= 300_000;
    let old: Vec<Seen> = all(&src)
        .into_iter()
        .filter(|i| i.date.is_some_and(|d| d < cutoff))
        .filter(|i| fits(&i))
        .collect();
    assert!(
        !old.is_empty() && old.len() < all(&src).len(),
        "sample spans the cut-off"
    );

    assert!(pass(&s.ferry, &["prestage", "--older-than", "365d"]));
    assert_eq!(
        all(&dst_contents(&s.dst).await),
        old,
        "only old items pre-staged"
    );

    assert!(pass(&s.ferry, &["full"]));
    let fitting: Vec<Seen> = all(&src).into_iter().filter(|i| fits(&i)).collect();
    let oversize = all(&src).len() - fitting.len();
    assert!(oversize >= 1);
    assert_eq!(all(&dst_contents(&s.dst).await), fitting);
    let skipped = events(&s.ferry, "ItemSkipped");
    assert_eq!(skipped.len(), oversize);
    assert!(
        skipped[0]["event"]["ItemSkipped"]["reason"]
            .as_str()
            .unwrap()
            .contains("over the batch's limit of 300000 bytes")
    );
    let mb = s.ferry.ctl_json(&["mailbox", "show", ADDR]);
    assert_eq!(mb["data"]["totals"]["skipped"], oversize as u64);
    // Folder layout came across too, including the empty and nested ones.
    let dst = dst_contents(&s.dst).await;
    assert!(dst.contains_key("Empty") && dst.contains_key("Archive/2024/Février"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_uidvalidity_change_rematches_by_content_and_copies_nothing() {
    let s = setup(40, &[]).await;
    assert!(pass(&s.ferry, &["full"]));
    let before = dst_contents(&s.dst).await;
    assert_eq!(
        mailcmp::diff(&src_contents(&s.root).await, &before),
        Vec::<String>::new()
    );
    let copied = events(&s.ferry, "ItemCopied").len();

    // Flags change at a source without CONDSTORE: a delta compares and syncs.
    {
        let mut m = maildir::open(&s.root.join(ADDR), false).unwrap();
        m.select(&inbox()).await.unwrap();
        m.store_flags(1, &["\\Answered".into(), "Project-Z".into()])
            .await
            .unwrap();
    }
    assert!(pass(&s.ferry, &["delta"]));
    assert_eq!(events(&s.ferry, "FlagsSynced").len(), 1);
    let before = dst_contents(&s.dst).await;
    assert_eq!(
        mailcmp::diff(&src_contents(&s.root).await, &before),
        Vec::<String>::new()
    );
    assert_eq!(events(&s.ferry, "ItemCopied").len(), copied);

    // The source forgets its UIDs: every INBOX item gets a new key.
    std::thread::sleep(Duration::from_millis(1100));
    let kept = s.ferry.data_dir.join("maildir-uids");
    for tree in std::fs::read_dir(kept).unwrap() {
        std::fs::remove_file(tree.unwrap().path().join("INBOX.uidlist")).unwrap();
    }
    assert!(pass(&s.ferry, &["delta"]));
    let changed = events(&s.ferry, "UidValidityChanged");
    assert_eq!(changed.len(), 1, "{changed:?}");
    let after = dst_contents(&s.dst).await;
    assert_eq!(after, before, "nothing copied twice");
    let rematched = events(&s.ferry, "ItemCopied").len() - copied;
    assert_eq!(rematched, before["INBOX"].len());

    // And the next delta finds nothing to do.
    assert!(pass(&s.ferry, &["delta"]));
    assert_eq!(events(&s.ferry, "ItemCopied").len(), copied + rematched);
    assert_eq!(dst_contents(&s.dst).await, before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_errors_reattempts_only_the_failed_items() {
    let s = setup(20, &[]).await;
    // retry-errors is refused while there is nothing to retry.
    let err = s
        .ferry
        .ctl_err(&["batch", "start", "b", "--pass", "retry-errors"]);
    assert!(
        err.contains("no mailbox has a finished pass with errors"),
        "{err}"
    );

    // A message the destination refuses: Dovecot will not store an empty one.
    let mut m = maildir::open(&s.root.join(ADDR), false).unwrap();
    m.append(&inbox(), &[], None, bytes::Bytes::new())
        .await
        .unwrap();
    drop(m);
    pass(&s.ferry, &["full"]);
    let failed = events(&s.ferry, "ItemFailed");
    assert_eq!(failed.len(), 1, "{failed:?}");
    let mb = s.ferry.ctl_json(&["mailbox", "show", ADDR]);
    assert_eq!(mb["data"]["state"], "SyncedWithErrors");
    let shown = s.ferry.ctl_ok(&["mailbox", "show", ADDR]);
    assert!(shown.contains("errors:"), "{shown}");
    let copied = events(&s.ferry, "ItemCopied").len();
    assert_eq!(copied, 20);

    // The admin mends the message at the source (same file, same UID).
    ferry_tests::mend_empty_message(
        &s.root.join(ADDR).join("cur"),
        b"Subject: mended\r\nMessage-ID: <nul@x>\r\n\r\nbody\r\n",
    );

    assert!(pass(&s.ferry, &["retry-errors"]));
    let copies = events(&s.ferry, "ItemCopied");
    assert_eq!(copies.len(), copied + 1, "only the failed item was copied");
    let last = &copies.last().unwrap()["event"]["ItemCopied"]["key"];
    assert_eq!(last, &failed[0]["event"]["ItemFailed"]["key"]);
    let mb = s.ferry.ctl_json(&["mailbox", "show", ADDR]);
    assert_eq!(mb["data"]["state"], "Synced");
    assert_eq!(mb["data"]["errors"], serde_json::json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_batch_resumes_without_duplicates() {
    let s = setup(400, &["--max-concurrent", "1"]).await;
    s.ferry.ctl_ok(&["batch", "start", "b", "--pass", "full"]);
    // Stop as soon as copying has begun.
    for _ in 0..200 {
        if !events(&s.ferry, "ItemCopied").is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    s.ferry.ctl_ok(&["batch", "stop", "b"]);
    s.ferry.ctl(&["batch", "wait", "b", "--timeout", "120"]);
    let show = s.ferry.ctl_json(&["batch", "show", "b"]);
    assert_eq!(show["data"]["state"], "Stopped", "{show}");
    let partial = events(&s.ferry, "ItemCopied").len();
    assert!(partial < 400, "stopped before the end ({partial})");

    assert!(pass(&s.ferry, &["full"]));
    let src = src_contents(&s.root).await;
    let dst = dst_contents(&s.dst).await;
    assert_eq!(mailcmp::diff(&src, &dst), Vec::<String>::new());
    assert_eq!(events(&s.ferry, "ItemCopied").len(), 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_its_error_budget_a_mailbox_fails() {
    let s = setup(10, &["--error-budget", "1"]).await;
    // Two messages the destination refuses (Dovecot stores no empty message).
    let mut m = maildir::open(&s.root.join(ADDR), false).unwrap();
    for _ in 0..2 {
        m.append(&inbox(), &[], None, bytes::Bytes::new())
            .await
            .unwrap();
    }
    drop(m);
    assert!(!pass(&s.ferry, &["full"]), "batch wait reports the failure");
    let mb = s.ferry.ctl_json(&["mailbox", "show", ADDR]);
    assert_eq!(mb["data"]["state"], "Failed", "{mb}");
    let detail = mb["data"]["last_pass"]["detail"].as_str().unwrap();
    assert!(detail.contains("error budget of 1"), "{detail}");
    assert_eq!(events(&s.ferry, "ItemFailed").len(), 2);
    let show = s.ferry.ctl_json(&["batch", "show", "b"]);
    assert_eq!(show["data"]["state"], "Failed", "{show}");
}
