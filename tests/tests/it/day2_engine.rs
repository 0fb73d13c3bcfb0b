//! Day two in the engine: items and folders deleted at the source, found by
//! a delta pass and, with `--propagate-deletions`, removed at the
//! destination; a destination that goes down mid-pass, waited out within
//! the outage window, or past it failing the mailbox until a later pass
//! resumes it. Real Dovecot on both sides; outages through a [`FaultProxy`].

use std::time::{Duration, Instant};

use bytes::Bytes;
use ferry_connectors::{FolderName, MailSession};
use ferry_events::Side;
use ferry_tests::faultproxy::FaultProxy;
use ferry_tests::mailcmp::{self, Contents, Seen};
use ferry_tests::sample::{self, SampleSpec};
use ferry_tests::{Ferryd, imap_login};
use ferry_testservers::Dovecot;

const PW: &str = "day2-pw";

fn folder(name: &str) -> FolderName {
    FolderName {
        raw: name.into(),
        delimiter: Some('/'),
        segments: vec![name.into()],
    }
}

fn message(subject: &str, n: usize) -> Bytes {
    Bytes::from(format!(
        "From: a@old.example\r\nTo: b@old.example\r\nSubject: {subject}\r\n\
         Message-ID: <{subject}-{n}@day2.example>\r\nDate: Mon, 2 Mar 2026 10:00:00 +0000\r\n\
         \r\nbody {n}\r\n"
    ))
}

async fn contents(d: &Dovecot, user: &str) -> Contents {
    let mut s = imap_login(d.port(), user, PW).await;
    let c = mailcmp::contents(&mut s).await;
    let _ = s.logout().await;
    c
}

fn all(c: &Contents) -> Vec<Seen> {
    let mut v: Vec<Seen> = c.values().flatten().cloned().collect();
    v.sort();
    v
}

fn doveadm(d: &Dovecot, args: &[&str]) {
    let out = d.doveadm(args).unwrap();
    assert!(
        out.status.success(),
        "doveadm {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn of_mailbox(f: &Ferryd, kind: &str, user: &str) -> Vec<serde_json::Value> {
    let address = format!("{user}@old.example");
    f.events_of(kind)
        .into_iter()
        .filter(|e| e["event"][kind]["mailbox"] == address.as_str())
        .collect()
}

/// A source mailbox with sample mail, two items to delete in INBOX and a
/// folder `Old` of two items to delete whole.
async fn fill_with_doomed(src: &Dovecot, user: &str, seed: u64) {
    let mut s = imap_login(src.port(), user, PW).await;
    let spec = SampleSpec {
        seed,
        messages: 40,
        attachment_percent: 0,
        huge: 0,
    };
    sample::fill(&mut s, &spec).await.unwrap();
    s.create_folder(&folder("Old")).await.unwrap();
    for n in 0..2 {
        s.append(&folder("INBOX"), &[], None, message("vanish-me", n))
            .await
            .unwrap();
        s.append(&folder("Old"), &[], None, message("old", n))
            .await
            .unwrap();
    }
    let _ = s.logout().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deletions_at_the_source_are_reported_and_removed_only_with_the_option() {
    let src = Dovecot::start().unwrap();
    let dst = Dovecot::start().unwrap();
    src.add_users(&["anna", "bert"], PW).unwrap();
    dst.add_users(&["anna", "bert"], PW).unwrap();
    fill_with_doomed(&src, "anna", 5).await;
    fill_with_doomed(&src, "bert", 6).await;
    let ferry = Ferryd::start();
    ferry.add_imap_endpoint("old", src.port(), src.master_user());
    ferry.add_imap_endpoint("new", dst.port(), src.master_user());
    ferry.create_batch("keep", "old", "new", &["anna"], &[]);
    ferry.create_batch("prop", "old", "new", &["bert"], &["--propagate-deletions"]);
    assert!(
        ferry
            .ctl_ok(&["batch", "show", "prop"])
            .contains("--propagate-deletions")
    );
    for b in ["keep", "prop"] {
        ferry.run_pass(b, "full");
    }
    let copied_before = ferry.events_of("ItemCopied").len();

    for u in ["anna", "bert"] {
        doveadm(
            &src,
            &[
                "expunge",
                "-u",
                u,
                "mailbox",
                "INBOX",
                "header",
                "Subject",
                "vanish-me",
            ],
        );
        doveadm(&src, &["expunge", "-u", u, "mailbox", "Old", "all"]);
        doveadm(&src, &["mailbox", "delete", "-u", u, "Old"]);
    }
    for b in ["keep", "prop"] {
        ferry.run_pass(b, "delta");
    }

    // Found once each: two in INBOX, two in the deleted folder.
    for u in ["anna", "bert"] {
        let vanished = of_mailbox(&ferry, "ItemVanished", u);
        assert_eq!(vanished.len(), 4, "{u}: {vanished:?}");
        assert!(
            vanished
                .iter()
                .all(|e| !e["event"]["ItemVanished"]["dest_uid"].is_null()),
            "{vanished:?}"
        );
        let folders = of_mailbox(&ferry, "FolderVanished", u);
        assert_eq!(folders.len(), 1, "{u}: {folders:?}");
        assert_eq!(folders[0]["event"]["FolderVanished"]["folder"], "Old");
    }
    assert_eq!(ferry.events_of("ItemCopied").len(), copied_before);

    // Without the option the copies stay; with it they are removed.
    assert!(of_mailbox(&ferry, "ItemRemovedAtDestination", "anna").is_empty());
    assert_eq!(
        of_mailbox(&ferry, "ItemRemovedAtDestination", "bert").len(),
        4
    );
    let (sa, da) = (contents(&src, "anna").await, contents(&dst, "anna").await);
    assert_eq!(all(&da).len(), all(&sa).len() + 4);
    let (sb, db) = (contents(&src, "bert").await, contents(&dst, "bert").await);
    assert_eq!(all(&db), all(&sb), "bert's destination is not the source");

    let shown = ferry.ctl_ok(&["mailbox", "show", "bert@old.example"]);
    assert!(
        shown.contains("deleted at the source since copied 4, removed at the destination 4"),
        "{shown}"
    );
    assert!(
        shown.contains("folder Old was deleted at the source"),
        "{shown}"
    );
    let shown = ferry.ctl_json(&["mailbox", "show", "anna@old.example"]);
    assert_eq!(shown["data"]["totals"]["vanished"], 4, "{shown}");
    assert_eq!(shown["data"]["totals"]["removed"], 0, "{shown}");
    let report = ferry.dir().join("keep.html");
    ferry.ctl_ok(&["report", "keep", "-o", report.to_str().unwrap()]);
    let html = std::fs::read_to_string(&report).unwrap();
    assert!(
        html.contains("4 items were deleted at the source after their copy (0 removed"),
        "{html}"
    );

    // A quiet delta finds nothing again and removes nothing twice.
    for b in ["keep", "prop"] {
        ferry.run_pass(b, "delta");
    }
    assert_eq!(ferry.events_of("ItemVanished").len(), 8);
    assert_eq!(ferry.events_of("FolderVanished").len(), 2);
    assert_eq!(ferry.events_of("ItemRemovedAtDestination").len(), 4);
}

/// A source that cannot say what was expunged (Maildir: no QRESYNC) is
/// compared UID by UID; a removal is done once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_qresync_a_file_deleted_at_the_source_is_found_by_its_uid() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("old");
    let mut m = ferry_connectors::maildir::open(&root.join("anna@old.example"), true).unwrap();
    for n in 0..3 {
        m.append(&folder("INBOX"), &[], None, message("kept", n))
            .await
            .unwrap();
    }
    let dst = Dovecot::start().unwrap();
    dst.add_user("anna", PW).unwrap();
    let ferry = Ferryd::start();
    ferry.add_maildir_endpoint("old", &root);
    ferry.add_imap_endpoint("new", dst.port(), dst.master_user());
    ferry.create_batch("b", "old", "new", &["anna"], &["--propagate-deletions"]);
    ferry.run_pass("b", "full");
    let cur = root.join("anna@old.example").join("cur");
    let file = std::fs::read_dir(&cur).unwrap().next().unwrap().unwrap();
    std::fs::remove_file(file.path()).unwrap();
    ferry.run_pass("b", "delta");
    ferry.run_pass("b", "delta");
    assert_eq!(ferry.events_of("ItemVanished").len(), 1);
    assert_eq!(ferry.events_of("ItemRemovedAtDestination").len(), 1);
    let d = contents(&dst, "anna").await;
    assert_eq!(all(&d).len(), 2);
}

/// A source of sample mail for anna, a destination, the `proxied` one of
/// them behind a proxy, and ferryd with `engine` settings; the batch `b` is
/// created.
async fn outage_setup(engine: &str, proxied: Side) -> (Dovecot, Dovecot, FaultProxy, Ferryd) {
    let src = Dovecot::start().unwrap();
    let dst = Dovecot::start().unwrap();
    src.add_user("anna", PW).unwrap();
    dst.add_user("anna", PW).unwrap();
    let mut s = imap_login(src.port(), "anna", PW).await;
    let spec = SampleSpec {
        seed: 12,
        messages: 500,
        attachment_percent: 2,
        huge: 0,
    };
    sample::fill(&mut s, &spec).await.unwrap();
    let _ = s.logout().await;
    let proxy = FaultProxy::start(match proxied {
        Side::Source => src.port(),
        Side::Destination => dst.port(),
    });
    let port = |side: Side, d: &Dovecot| match side == proxied {
        true => proxy.port(),
        false => d.port(),
    };
    let ferry = Ferryd::start_with_config(engine);
    ferry.add_imap_endpoint("old", port(Side::Source, &src), src.master_user());
    ferry.add_imap_endpoint("new", port(Side::Destination, &dst), dst.master_user());
    ferry.create_batch("b", "old", "new", &["anna"], &[]);
    (src, dst, proxy, ferry)
}

/// Starts a full pass and takes the destination down once some mail went up.
fn down_mid_pass(ferry: &Ferryd, proxy: &FaultProxy) {
    ferry.ctl_ok(&["batch", "start", "b", "--pass", "full"]);
    let deadline = Instant::now() + Duration::from_secs(120);
    while proxy.bytes().0 < 300_000 {
        assert!(Instant::now() < deadline, "the pass sent too little");
        std::thread::sleep(Duration::from_millis(2));
    }
    // Several folders go at once: their first groups may all be in flight.
    ferry.wait_for(60, "a first copy recorded", |f| {
        !f.events_of("ItemCopied").is_empty()
    });
    proxy.set_down(true);
}

/// Waits for the outage to be recorded and `mailbox show` to say
/// `waiting for SIDE HOST:PORT since …, next attempt in …`; gives that
/// start of the line.
fn waiting_shown(ferry: &Ferryd, side: &str, proxy: &FaultProxy) -> String {
    ferry.wait_for(30, "the outage recorded", |f| {
        !f.events_of("OutageStarted").is_empty()
    });
    let host = format!("waiting for {side} 127.0.0.1:{} since", proxy.port());
    ferry.wait_for(10, "mailbox show to say when it tries again", |f| {
        let shown = f.ctl_ok(&["mailbox", "show", "anna@old.example"]);
        shown.contains(&host) && shown.contains(", next attempt in ")
    });
    host
}

/// The one `OutageStarted` and the one `OutageEnded` of the log.
fn recorded_once(ferry: &Ferryd) -> (serde_json::Value, serde_json::Value) {
    let started = ferry.events_of("OutageStarted");
    let ended = ferry.events_of("OutageEnded");
    assert_eq!(
        (started.len(), ended.len()),
        (1, 1),
        "{started:?} {ended:?}"
    );
    (
        started[0]["event"]["OutageStarted"].clone(),
        ended[0]["event"]["OutageEnded"].clone(),
    )
}

/// Every source item at the destination exactly once, each copy recorded once.
async fn exactly_once(ferry: &Ferryd, src: &Dovecot, dst: &Dovecot) {
    let (s, d) = (contents(src, "anna").await, contents(dst, "anna").await);
    let diff = mailcmp::diff(&s, &d);
    assert!(diff.is_empty(), "{diff:#?}");
    let mut keys: Vec<String> = ferry
        .events_of("ItemCopied")
        .iter()
        .map(|e| e["event"]["ItemCopied"]["key"].to_string())
        .collect();
    let n = keys.len();
    keys.sort();
    keys.dedup();
    assert_eq!(keys.len(), n, "an item was recorded copied twice");
    assert_eq!(n, all(&s).len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_destination_down_mid_pass_is_waited_out_and_recorded_once() {
    // Backoff capped at 2 s: the old six retries gave up after about 5 s.
    let (src, dst, proxy, ferry) = outage_setup(
        "[engine]\nio_timeout_s = 3\nbackoff_ms = 100\nmax_backoff_ms = 2000\n\
         outage_window_s = 120\nfetch_batch = 8\n",
        Side::Destination,
    )
    .await;
    down_mid_pass(&ferry, &proxy);
    let down_at = Instant::now();
    // `watch` (plain lines: not a terminal) follows the pass to its end.
    let watch = std::process::Command::new(ferry_tests::bin("ferryctl"))
        .arg("--socket")
        .arg(&ferry.socket)
        .args(["watch", "b"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let host = waiting_shown(&ferry, "destination", &proxy);
    std::thread::sleep(Duration::from_secs(30).saturating_sub(down_at.elapsed()));
    proxy.set_down(false);
    ferry.ctl_ok(&["batch", "wait", "b", "--timeout", "300"]);
    let watched = watch.wait_with_output().unwrap();
    let watched = String::from_utf8_lossy(&watched.stdout);
    assert!(
        watched.contains(&host) && watched.contains(", next attempt in "),
        "{watched}"
    );

    let mb = ferry.ctl_json(&["mailbox", "show", "anna@old.example"]);
    assert_eq!(mb["data"]["state"], "Synced", "{mb}");
    assert!(mb["data"]["outage"].is_null(), "{mb}");
    let (s, e) = recorded_once(&ferry);
    assert_eq!(s["side"], "Destination");
    assert!(e["attempts"].as_u64().unwrap() > 1, "{e}");
    assert!(e["duration_us"].as_i64().unwrap() > 20_000_000, "{e}");
    exactly_once(&ferry, &src, &dst).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_outage_window_the_mailbox_fails_and_a_later_pass_resumes_it() {
    let (src, dst, proxy, ferry) = outage_setup(
        "[engine]\nio_timeout_s = 3\nbackoff_ms = 100\nmax_backoff_ms = 1000\n\
         outage_window_s = 4\nfetch_batch = 8\n",
        Side::Destination,
    )
    .await;
    down_mid_pass(&ferry, &proxy);
    assert!(
        !ferry
            .ctl(&["batch", "wait", "b", "--timeout", "120"])
            .status
            .success()
    );
    let mb = ferry.ctl_json(&["mailbox", "show", "anna@old.example"]);
    assert_eq!(mb["data"]["state"], "Failed", "{mb}");
    assert_eq!(mb["data"]["errors"], serde_json::json!([]), "{mb}");
    assert_eq!(ferry.events_of("OutageStarted").len(), 1);
    assert_eq!(ferry.events_of("OutageEnded").len(), 1);
    let copied = ferry.events_of("ItemCopied").len();
    assert!(copied > 0 && copied < 500, "{copied}");

    // No item failed, yet the failed mailbox is resumed, not recreated.
    proxy.set_down(false);
    ferry.run_pass("b", "retry-errors");
    let mb = ferry.ctl_json(&["mailbox", "show", "anna@old.example"]);
    assert_eq!(mb["data"]["state"], "Synced", "{mb}");
    exactly_once(&ferry, &src, &dst).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_unavailable_after_login_mid_pass_is_waited_out_and_recorded_once() {
    let (src, dst, proxy, ferry) = outage_setup(
        "[engine]\nio_timeout_s = 3\nbackoff_ms = 100\nmax_backoff_ms = 1000\n\
         outage_window_s = 120\nfetch_batch = 8\n",
        Side::Source,
    )
    .await;
    ferry.ctl_ok(&["batch", "start", "b", "--pass", "full"]);
    let deadline = Instant::now() + Duration::from_secs(120);
    while proxy.bytes().1 < 300_000 {
        assert!(Instant::now() < deadline, "the pass read too little");
        std::thread::sleep(Duration::from_millis(2));
    }
    // Logins still work; every command that reads mail is refused.
    proxy.set_unavailable(true);
    let since = Instant::now();
    waiting_shown(&ferry, "source", &proxy);
    std::thread::sleep(Duration::from_secs(8).saturating_sub(since.elapsed()));
    let refused = proxy.refused();
    proxy.set_unavailable(false);
    ferry.ctl_ok(&["batch", "wait", "b", "--timeout", "300"]);

    assert!(refused > 3, "{refused} commands refused");
    let mb = ferry.ctl_json(&["mailbox", "show", "anna@old.example"]);
    assert_eq!(mb["data"]["state"], "Synced", "{mb}");
    let (s, e) = recorded_once(&ferry);
    assert_eq!(s["side"], "Source", "{s}");
    assert_eq!(s["host"], format!("127.0.0.1:{}", proxy.port()).as_str());
    assert!(s["reason"].as_str().unwrap().contains("UNAVAILABLE"), "{s}");
    assert!(e["attempts"].as_u64().unwrap() > 2, "{e}");
    assert!(e["duration_us"].as_i64().unwrap() > 6_000_000, "{e}");
    exactly_once(&ferry, &src, &dst).await;
}
