//! Failed and skipped items named by subject, Message-ID and date, read
//! from the source's header (RFC 2047 words decoded): in the log, in
//! `mailbox show` (table and `--json`) and in the report (HTML and
//! `--json`). Over a Maildir source (a file header) and a Dovecot source
//! (a header fetch).

use bytes::Bytes;
use ferry_connectors::{FolderName, MailSession, maildir};
use ferry_tests::{Ferryd, imap_login};
use ferry_testservers::Dovecot;

const PW: &str = "described-pw";
const ADDR: &str = "anna@old.example";
/// "Réunion à Genève" in two encoded words, one per charset.
const SUBJECT: &str = "=?UTF-8?Q?R=C3=A9union_=C3=A0?=\r\n =?ISO-8859-1?Q?_Gen=E8ve?=";
const DECODED: &str = "Réunion à Genève";

fn inbox() -> FolderName {
    FolderName {
        raw: "INBOX".into(),
        delimiter: Some('/'),
        segments: vec!["INBOX".into()],
    }
}

/// A message over 20 KB with the encoded subject.
fn big(n: usize) -> Bytes {
    let body = "x".repeat(76) + "\r\n";
    Bytes::from(format!(
        "From: a@old.example\r\nTo: anna@old.example\r\nSubject: {SUBJECT}\r\n\
         Message-ID: <big-{n}@described.example>\r\nDate: Tue, 3 Mar 2026 09:30:00 +0100\r\n\
         \r\n{}",
        body.repeat(400)
    ))
}

fn small(n: usize) -> Bytes {
    Bytes::from(format!(
        "From: a@old.example\r\nSubject: small {n}\r\nMessage-ID: <small-{n}@described.example>\r\n\
         \r\nbody {n}\r\n"
    ))
}

/// `about` of the only item of `list` (errors or skipped in a view).
fn about(list: &serde_json::Value) -> &serde_json::Value {
    assert_eq!(list.as_array().map(Vec::len), Some(1), "{list}");
    &list[0]["about"]
}

/// A pass to its end, whatever its outcome.
fn pass(ferry: &Ferryd, kind: &str) {
    ferry.ctl_ok(&["batch", "start", "b", "--pass", kind]);
    ferry.ctl(&["batch", "wait", "b", "--timeout", "300"]);
}

fn report(ferry: &Ferryd) -> (serde_json::Value, String) {
    let out = ferry.dir().join("report.html");
    let json = ferry.ctl_json(&["report", "b", "-o", out.to_str().unwrap()]);
    (json, std::fs::read_to_string(out).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_and_skipped_items_are_named_from_a_maildir_source() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("old");
    let mut m = maildir::open(&root.join(ADDR), true).unwrap();
    for n in 0..3 {
        m.append(&inbox(), &[], None, small(n)).await.unwrap();
    }
    m.append(&inbox(), &[], None, big(1)).await.unwrap();
    // Dovecot will not store an empty message: it fails, with nothing to name it.
    m.append(&inbox(), &[], None, Bytes::new()).await.unwrap();
    drop(m);
    let dst = Dovecot::start().unwrap();
    dst.add_user("anna", PW).unwrap();
    let ferry = Ferryd::start();
    ferry.add_maildir_endpoint("old", &root);
    ferry.add_imap_endpoint("new", dst.port(), dst.master_user());
    ferry.create_batch("b", "old", "new", &["anna"], &["--max-item-size", "20KB"]);
    pass(&ferry, "full");

    let described = ferry.events_of("ItemDescribed");
    assert_eq!(described.len(), 2, "{described:?}");
    let mb = ferry.ctl_json(&["mailbox", "show", ADDR]);
    let skipped = about(&mb["data"]["skipped"]);
    assert_eq!(skipped["subject"], DECODED, "{mb}");
    assert_eq!(skipped["message_id"], "<big-1@described.example>");
    assert_eq!(skipped["date"], "2026-03-03T09:30:00+01:00");
    // Described, with nothing to say: never asked again.
    let failed = about(&mb["data"]["errors"]);
    assert_eq!(
        failed,
        &serde_json::json!({"subject": null, "message_id": null, "date": null})
    );

    let shown = ferry.ctl_ok(&["mailbox", "show", ADDR]);
    assert!(shown.contains("skipped:"), "{shown}");
    for s in [
        DECODED,
        "<big-1@described.example>",
        "2026-03-03T09:30:00+01:00",
    ] {
        assert!(shown.contains(s), "{s} in {shown}");
    }

    let (json, html) = report(&ferry);
    let m = &json["data"]["mailboxes"][0];
    assert_eq!(m["skipped"][0]["about"]["subject"], DECODED, "{m}");
    assert!(html.contains("Réunion à Genève<br>"), "{html}");
    assert!(html.contains("&lt;big-1@described.example&gt; · 2026-03-03T09:30:00+01:00"));

    // Another pass neither describes them again nor forgets them.
    pass(&ferry, "retry-errors");
    assert_eq!(ferry.events_of("ItemDescribed").len(), 2);
    let mb = ferry.ctl_json(&["mailbox", "show", ADDR]);
    assert_eq!(about(&mb["data"]["skipped"])["subject"], DECODED);
    assert!(mb["data"]["errors"][0]["about"].is_object(), "{mb}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skipped_items_are_named_from_an_imap_source_by_a_header_fetch() {
    let src = Dovecot::start().unwrap();
    let dst = Dovecot::start().unwrap();
    for d in [&src, &dst] {
        d.add_user("anna", PW).unwrap();
    }
    let mut s = imap_login(src.port(), "anna", PW).await;
    for n in 0..2 {
        s.append(&inbox(), &[], None, small(n)).await.unwrap();
        s.append(&inbox(), &[], None, big(n)).await.unwrap();
    }
    let _ = s.logout().await;
    let ferry = Ferryd::start();
    ferry.add_imap_endpoint("old", src.port(), src.master_user());
    ferry.add_imap_endpoint("new", dst.port(), dst.master_user());
    ferry.create_batch("b", "old", "new", &["anna"], &["--max-item-size", "20KB"]);
    ferry.run_pass("b", "full");

    let mb = ferry.ctl_json(&["mailbox", "show", ADDR]);
    let skipped = mb["data"]["skipped"].as_array().unwrap();
    assert_eq!(skipped.len(), 2, "{mb}");
    for (n, s) in skipped.iter().enumerate() {
        assert_eq!(s["about"]["subject"], DECODED, "{s}");
        assert_eq!(
            s["about"]["message_id"],
            format!("<big-{n}@described.example>").as_str()
        );
        assert_eq!(s["about"]["date"], "2026-03-03T09:30:00+01:00");
    }
    let (json, html) = report(&ferry);
    assert_eq!(
        json["data"]["mailboxes"][0]["skipped"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    assert_eq!(html.matches("Réunion à Genève<br>").count(), 2, "{html}");
}
