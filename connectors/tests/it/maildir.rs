//! The Maildir session against real trees: our own, and one Dovecot wrote.

use std::path::Path;
use std::process::{Command, Stdio};

use bytes::Bytes;
use chrono::{DateTime, FixedOffset};
use ferry_connectors::maildir;
use ferry_connectors::{ErrorClass, FolderName, MailSession, SpecialUse};

fn name(segments: &[&str]) -> FolderName {
    FolderName {
        raw: String::new(),
        delimiter: Some('/'),
        segments: segments.iter().map(|s| s.to_string()).collect(),
    }
}

fn date(s: &str) -> DateTime<FixedOffset> {
    DateTime::parse_from_rfc3339(s).unwrap()
}

fn flags(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

fn file_names(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect()
}

const MSG: &[u8] = b"From: a@example.org\r\nSubject: hi\r\n\r\nbody\r\n";

#[tokio::test]
async fn append_and_read_back_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("Maildir");
    let mut s = maildir::open(&root, true).unwrap();
    assert_eq!(s.capabilities().await.unwrap(), ["MAILDIR", "UIDPLUS"]);
    let inbox = name(&["INBOX"]);
    let when = date("2021-03-04T05:06:07+02:00");
    let uid1 = s
        .append(
            &inbox,
            &flags(&["\\Seen", "$Forwarded", "\\Flagged", "Project-X"]),
            Some(when),
            Bytes::from_static(MSG),
        )
        .await
        .unwrap()
        .unwrap();
    let uid2 = s
        .append(&inbox, &[], None, Bytes::from_static(b"x"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!((uid1.uid, uid2.uid), (1, 2));
    assert_eq!(uid1.uidvalidity, uid2.uidvalidity);

    let status = s.examine(&inbox).await.unwrap();
    assert_eq!(
        (status.exists, status.uidnext, status.uidvalidity),
        (2, 3, uid1.uidvalidity)
    );
    let items = s.fetch(&[2, 1, 99]).await.unwrap();
    assert_eq!(items.len(), 2);
    assert_eq!(&items[0].body[..], MSG);
    assert_eq!(items[0].meta.uid, 1);
    assert_eq!(items[0].meta.size, MSG.len() as u64);
    assert_eq!(
        items[0].meta.flags,
        flags(&["\\Flagged", "\\Seen", "$Forwarded", "Project-X"])
    );
    assert_eq!(items[0].meta.internal_date.unwrap(), when);
    assert_eq!(&items[1].body[..], b"x");

    // On disk: Dovecot's letters and keyword file, nothing left in tmp/.
    let names = file_names(&root.join("cur"));
    assert!(names.iter().any(|n| n.ends_with(":2,FSab")), "{names:?}");
    assert_eq!(
        std::fs::read_to_string(root.join("dovecot-keywords")).unwrap(),
        "0 $Forwarded\n1 Project-X\n"
    );
    assert!(file_names(&root.join("tmp")).is_empty());
    s.logout().await.unwrap();
}

#[tokio::test]
async fn nested_and_non_ascii_folders_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let mut s = maildir::open(root, true).unwrap();
    for f in [
        &["Projects", "日本語"][..],
        &["Entwürfe"][..],
        &["INBOX", "Sub"][..],
        &["Sent"][..],
    ] {
        s.create_folder(&name(f)).await.unwrap();
    }
    s.create_folder(&name(&["Entwürfe"])).await.unwrap(); // exists: fine
    assert!(root.join(".Projects.&ZeVnLIqe-/maildirfolder").is_file());
    assert!(root.join(".Entw&APw-rfe/cur").is_dir());
    assert!(root.join(".INBOX.Sub/new").is_dir());

    let folders = s.list_folders().await.unwrap();
    let listed: Vec<(&str, bool)> = folders
        .iter()
        .map(|f| (f.name.raw.as_str(), f.selectable))
        .collect();
    assert_eq!(
        listed,
        [
            ("Entw&APw-rfe", true),
            ("INBOX", true),
            ("INBOX/Sub", true),
            ("Projects", false),
            ("Projects/&ZeVnLIqe-", true),
            ("Sent", true),
        ]
    );
    let jp = folders
        .iter()
        .find(|f| f.name.raw == "Projects/&ZeVnLIqe-")
        .unwrap();
    assert_eq!(jp.name.segments, ["Projects", "日本語"]);
    let sent = folders.iter().find(|f| f.name.raw == "Sent").unwrap();
    assert_eq!(sent.special_use, Some(SpecialUse::Sent));

    // The listed name (by segments, or by raw alone) opens the same folder.
    let got = s
        .append(&jp.name, &[], None, Bytes::from_static(MSG))
        .await
        .unwrap()
        .unwrap();
    let by_raw = FolderName {
        segments: vec![],
        ..jp.name.clone()
    };
    assert_eq!(s.examine(&by_raw).await.unwrap().exists, 1);
    assert_eq!(
        s.fetch(&[got.uid]).await.unwrap()[0].body,
        Bytes::from_static(MSG)
    );

    // Names Maildir++ cannot hold, and folders that do not exist.
    let err = s.create_folder(&name(&["v1.2"])).await.unwrap_err();
    assert_eq!(err.class(), ErrorClass::Folder);
    let err = s.examine(&name(&["Nope"])).await.unwrap_err();
    assert_eq!(err.class(), ErrorClass::Folder);
    let err = s
        .append(&name(&["Nope"]), &[], None, Bytes::from_static(MSG))
        .await
        .unwrap_err();
    assert_eq!(err.class(), ErrorClass::Folder);
}

#[tokio::test]
async fn uids_are_stable_and_dropped_in_files_get_fresh_ones() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let inbox = name(&["INBOX"]);
    let validity;
    {
        let mut s = maildir::open(root, true).unwrap();
        for i in 0..3 {
            s.append(&inbox, &[], None, Bytes::from(format!("m{i}")))
                .await
                .unwrap();
        }
        validity = s.examine(&inbox).await.unwrap().uidvalidity;
    }
    // Another program delivers two files into new/ (no info part).
    std::fs::write(root.join("new/2000000000.M2P1.other"), "late-b").unwrap();
    std::fs::write(root.join("new/1000000000.M1P1.other"), "late-a").unwrap();

    let mut s = maildir::open(root, false).unwrap();
    let status = s.examine(&inbox).await.unwrap();
    assert_eq!(
        (status.uidvalidity, status.exists, status.uidnext),
        (validity, 5, 6)
    );
    let items = s.fetch(&[1, 2, 3, 4, 5]).await.unwrap();
    let bodies: Vec<&[u8]> = items.iter().map(|i| &i.body[..]).collect();
    assert_eq!(bodies, [&b"m0"[..], b"m1", b"m2", b"late-a", b"late-b"]);

    // Dovecot moves a file to cur/ with flags: same UID, new flags, even
    // for a session that had it open already.
    std::fs::rename(
        root.join("new/1000000000.M1P1.other"),
        root.join("cur/1000000000.M1P1.other:2,S"),
    )
    .unwrap();
    let meta = s.list_items(4, 1).await.unwrap();
    assert_eq!(
        (meta[0].uid, meta[0].flags.clone()),
        (4, flags(&["\\Seen"]))
    );
    let mut s = maildir::open(root, false).unwrap();
    s.examine(&inbox).await.unwrap();
    let meta = s.list_items(4, 1).await.unwrap();
    assert_eq!(
        (meta[0].uid, meta[0].flags.clone()),
        (4, flags(&["\\Seen"]))
    );

    // An expunged file leaves a gap, never a reused UID.
    let m1 = std::fs::read_dir(root.join("cur"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| std::fs::read(p).unwrap() == b"m1")
        .unwrap();
    std::fs::remove_file(m1).unwrap();
    let status = s.select(&inbox).await.unwrap();
    assert_eq!((status.exists, status.uidnext), (4, 6));
    let uids: Vec<u32> = s
        .list_items(1, 100)
        .await
        .unwrap()
        .iter()
        .map(|m| m.uid)
        .collect();
    assert_eq!(uids, [1, 3, 4, 5]);
    let next = s
        .append(&inbox, &[], None, Bytes::from_static(b"n"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(next.uid, 6);
}

#[tokio::test]
async fn list_items_pages() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = maildir::open(dir.path(), true).unwrap();
    let inbox = name(&["INBOX"]);
    for i in 0..7 {
        s.append(&inbox, &[], None, Bytes::from(vec![b'x'; i + 1]))
            .await
            .unwrap();
    }
    assert!(matches!(
        s.list_items(1, 10).await,
        Err(ferry_connectors::ConnectorError::NoFolder)
    ));
    s.examine(&inbox).await.unwrap();
    let mut from = 1;
    let mut pages = Vec::new();
    loop {
        let page = s.list_items(from, 3).await.unwrap();
        if page.is_empty() {
            break;
        }
        from = page.last().unwrap().uid + 1;
        pages.push(page.iter().map(|m| (m.uid, m.size)).collect::<Vec<_>>());
    }
    assert_eq!(
        pages,
        vec![
            vec![(1, 1), (2, 2), (3, 3)],
            vec![(4, 4), (5, 5), (6, 6)],
            vec![(7, 7)]
        ]
    );
    assert!(s.list_items(8, 3).await.unwrap().is_empty());
    assert!(s.list_items(1, 0).await.unwrap().is_empty());
    assert_eq!(s.changed_since(0).await.unwrap(), None);
}

#[tokio::test]
async fn remove_unlinks_only_the_given_uids_and_may_repeat() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = maildir::open(dir.path(), true).unwrap();
    let inbox = name(&["INBOX"]);
    for i in 0..3 {
        s.append(&inbox, &[], None, Bytes::from(vec![b'x'; i + 1]))
            .await
            .unwrap();
    }
    s.examine(&inbox).await.unwrap();
    let err = s.remove(&[2]).await.unwrap_err();
    assert_eq!(err.class(), ErrorClass::Folder, "read-only after EXAMINE");
    s.select(&inbox).await.unwrap();
    s.remove(&[2]).await.unwrap();
    s.remove(&[2, 9]).await.unwrap();
    let left: Vec<u32> = s
        .list_items(1, 10)
        .await
        .unwrap()
        .iter()
        .map(|m| m.uid)
        .collect();
    assert_eq!(left, vec![1, 3]);
    assert_eq!(file_names(&dir.path().join("cur")).len(), 2);
}

#[tokio::test]
async fn store_flags_renames_and_keeps_unknown_letters() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let mut s = maildir::open(root, true).unwrap();
    let inbox = name(&["INBOX"]);
    let when = date("2020-01-02T03:04:05Z");
    s.append(
        &inbox,
        &flags(&["\\Seen"]),
        Some(when),
        Bytes::from_static(MSG),
    )
    .await
    .unwrap();
    // A P (passed) letter set by another program must survive.
    let file = std::fs::read_dir(root.join("cur"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let passed = file.to_str().unwrap().replace(":2,S", ":2,PS");
    std::fs::rename(&file, &passed).unwrap();

    s.examine(&inbox).await.unwrap();
    let err = s.store_flags(1, &flags(&["\\Answered"])).await.unwrap_err();
    assert_eq!(err.class(), ErrorClass::Folder, "read-only after EXAMINE");

    s.select(&inbox).await.unwrap();
    s.store_flags(1, &flags(&["\\Answered", "\\Deleted", "Later"]))
        .await
        .unwrap();
    let meta = s.list_items(1, 10).await.unwrap();
    assert_eq!(meta[0].flags, flags(&["\\Answered", "\\Deleted", "Later"]));
    assert_eq!(
        meta[0].internal_date.unwrap(),
        when,
        "rename keeps the mtime"
    );
    let names = file_names(&root.join("cur"));
    assert_eq!(names.len(), 1);
    assert!(names[0].ends_with(":2,PRTa"), "{names:?}");
    assert_eq!(
        std::fs::read_to_string(root.join("dovecot-keywords")).unwrap(),
        "0 Later\n"
    );

    s.store_flags(1, &[]).await.unwrap();
    assert!(s.list_items(1, 10).await.unwrap()[0].flags.is_empty());
    let err = s.store_flags(42, &[]).await.unwrap_err();
    assert_eq!(err.class(), ErrorClass::Item);

    // A reopened session sees the same.
    let mut s = maildir::open(root, false).unwrap();
    s.examine(&inbox).await.unwrap();
    assert_eq!(
        s.fetch(&[1]).await.unwrap()[0].body,
        Bytes::from_static(MSG)
    );
}

#[tokio::test]
async fn subscriptions() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = maildir::open(dir.path(), true).unwrap();
    s.create_folder(&name(&["Archive", "Février"]))
        .await
        .unwrap();
    s.create_folder(&name(&["Other"])).await.unwrap();
    s.subscribe(&name(&["Archive", "Février"])).await.unwrap();
    s.subscribe(&name(&["INBOX"])).await.unwrap();
    s.subscribe(&name(&["INBOX"])).await.unwrap();
    let subscribed: Vec<String> = s
        .list_folders()
        .await
        .unwrap()
        .into_iter()
        .filter(|f| f.subscribed)
        .map(|f| f.name.raw)
        .collect();
    assert_eq!(subscribed, ["Archive/F&AOk-vrier", "INBOX"]);
    assert_eq!(
        std::fs::read_to_string(dir.path().join("subscriptions")).unwrap(),
        "V\t2\n\nArchive\tF&AOk-vrier\nINBOX\n"
    );
}

#[tokio::test]
async fn open_without_create_needs_a_maildir() {
    let dir = tempfile::tempdir().unwrap();
    assert!(maildir::open(&dir.path().join("missing"), false).is_err());
}

/// Runs doveadm against a private config as uid 65534.
fn doveadm(conf: &Path, home: &Path, args: &[&str], stdin: Option<&[u8]>) {
    let mut child = Command::new("doveadm")
        .arg("-c")
        .arg(conf)
        .args(["-o", "mail_uid=65534", "-o", "mail_gid=65534"])
        .args(args)
        .env("USER", "nobody")
        .env("HOME", home)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn doveadm");
    if let Some(input) = stdin {
        use std::io::Write;
        child.stdin.take().unwrap().write_all(input).unwrap();
    }
    drop(child.stdin.take());
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "doveadm {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self")
        .map(|m| m.uid() == 0)
        .unwrap_or(false)
}

/// A Maildir written by Dovecot 2.3 itself (doveadm, no daemon needed) is
/// read with its folders, flags, keywords and subscriptions. Skipped without
/// doveadm, or when not root (doveadm drops to uid 65534).
#[tokio::test]
async fn reads_a_maildir_dovecot_wrote() {
    if Command::new("doveadm").arg("-V").output().is_err() || !is_root() {
        eprintln!("skipped: needs doveadm and root");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    std::fs::create_dir(&home).unwrap();
    let conf = dir.path().join("dovecot.conf");
    std::fs::write(
        &conf,
        format!(
            "base_dir = {d}/run\nstate_dir = {d}/run\nlog_path = {d}/log\nprotocols =\nssl = no\n\
             mail_location = maildir:~/Maildir\nnamespace inbox {{\n  inbox = yes\n  separator = /\n}}\n",
            d = dir.path().display()
        ),
    )
    .unwrap();
    // Hand the tree to the unprivileged user doveadm runs as.
    let chown = Command::new("chown")
        .args(["-R", "65534:65534"])
        .arg(dir.path())
        .status()
        .unwrap();
    assert!(chown.success());
    let run = |args: &[&str], stdin: Option<&[u8]>| doveadm(&conf, &home, args, stdin);
    run(
        &["mailbox", "create", "-s", "Entwürfe", "Projects/日本語"],
        None,
    );
    run(
        &["save", "-m", "Projects/日本語"],
        Some(b"Subject: one\n\nfirst\n"),
    );
    // Dovecot stores Maildir files with bare LF, so save LF to compare bytes.
    let lf_msg = b"From: a@example.org\nSubject: hi\n\nbody\n";
    run(&["save"], Some(lf_msg));
    run(
        &[
            "flags",
            "add",
            "\\Seen \\Answered $Forwarded Project-X",
            "mailbox",
            "INBOX",
            "all",
        ],
        None,
    );

    let root = home.join("Maildir");
    let mut s = maildir::open(&root, false).unwrap();
    let folders = s.list_folders().await.unwrap();
    let listed: Vec<(&str, bool, bool)> = folders
        .iter()
        .map(|f| (f.name.raw.as_str(), f.selectable, f.subscribed))
        .collect();
    assert_eq!(
        listed,
        [
            ("Entw&APw-rfe", true, true),
            ("INBOX", true, false),
            ("Projects", false, false),
            ("Projects/&ZeVnLIqe-", true, true),
        ]
    );
    s.examine(&name(&["INBOX"])).await.unwrap();
    let items = s.fetch(&[1]).await.unwrap();
    assert_eq!(&items[0].body[..], lf_msg);
    assert_eq!(
        items[0].meta.flags,
        flags(&["\\Answered", "\\Seen", "$Forwarded", "Project-X"])
    );
    s.examine(&name(&["Projects", "日本語"])).await.unwrap();
    let items = s.fetch(&[1]).await.unwrap();
    assert_eq!(&items[0].body[..], b"Subject: one\n\nfirst\n");
}
