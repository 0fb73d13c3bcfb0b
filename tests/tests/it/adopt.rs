//! Re-runs never duplicate: before the first copy into a destination folder
//! that holds mail, the destination is indexed and the source items found
//! there are adopted, not copied; a verify pass reports what the
//! destination holds beyond the source. `batch plan` predicts a full pass
//! and writes nothing.

use bytes::Bytes;
use ferry_connectors::{FolderName, MailSession};
use ferry_tests::Ferryd;
use ferry_tests::pair::{self, Pair, contents, count};
use ferry_tests::sample::{self, SampleSpec};

const ADDR: &str = "anna@old.example";

fn inbox() -> FolderName {
    FolderName {
        raw: "INBOX".into(),
        delimiter: Some('/'),
        segments: vec!["INBOX".into()],
    }
}

/// A message with no Message-ID; `n` makes its bytes distinct.
fn idless(n: usize) -> Bytes {
    Bytes::from(format!(
        "From: a@old.example\r\nTo: anna@old.example\r\nSubject: no id {n}\r\n\r\nbody {n}\r\n"
    ))
}

/// Sample mail for anna at the source, with two byte-identical messages
/// that have no Message-ID; returns how many items the source holds.
async fn fill_source(p: &Pair, messages: usize) -> usize {
    let mut s = pair::login(&p.src, "anna").await;
    sample::fill(
        &mut s,
        &SampleSpec {
            seed: 12,
            messages,
            attachment_percent: 5,
            huge: 0,
        },
    )
    .await
    .unwrap();
    for _ in 0..2 {
        s.append(&inbox(), &[], None, idless(0)).await.unwrap();
    }
    s.logout().await.unwrap();
    count(&contents(&p.src, "anna").await)
}

fn adopted(f: &Ferryd) -> usize {
    f.events_of("ItemAdopted").len()
}

fn copied(f: &Ferryd) -> usize {
    f.events_of("ItemCopied").len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recreated_batch_adopts_what_the_destination_holds() {
    let p = Pair::start("b", &["anna"], None);
    let n = fill_source(&p, 60).await;
    p.ferry.run_pass("b", "full");
    assert_eq!(copied(&p.ferry), n);
    assert_eq!(count(&contents(&p.dst, "anna").await), n);

    p.ferry.ctl_ok(&["batch", "delete", "b"]);
    p.ferry.create_batch("b2", "old", "new", &["anna"], &[]);
    p.ferry.run_pass("b2", "full");
    assert_eq!(copied(&p.ferry), n, "the second full pass copied again");
    assert_eq!(adopted(&p.ferry), n);
    assert_eq!(count(&contents(&p.dst, "anna").await), n);
    let m = p.ferry.ctl_json(&["mailbox", "show", ADDR])["data"].clone();
    assert_eq!(m["totals"]["copied"], 0);
    assert_eq!(m["totals"]["adopted"], n as u64);
    assert_eq!(m["state"], "Synced");
    let table = p.ferry.ctl_ok(&["mailbox", "show", ADDR]);
    assert!(table.contains(&format!("adopted {n}")), "{table}");

    // A delta afterwards neither indexes nor copies again.
    p.ferry.run_pass("b2", "delta");
    assert_eq!(copied(&p.ferry), n);
    assert_eq!(adopted(&p.ferry), n);

    // A deleted batch's own name may be used again, and adopts too.
    p.ferry.ctl_ok(&["batch", "delete", "b2"]);
    p.ferry.create_batch("b", "old", "new", &["anna"], &[]);
    p.ferry.run_pass("b", "full");
    assert_eq!(copied(&p.ferry), n, "the recreated batch copied again");
    assert_eq!(adopted(&p.ferry), 2 * n);
    assert_eq!(count(&contents(&p.dst, "anna").await), n);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fresh_data_directory_and_another_tool_copy_nothing_twice() {
    let p = Pair::start("b", &["anna"], None);
    let n = fill_source(&p, 40).await;
    // Another tool copied part of INBOX before ferryd ever ran; one of its
    // messages has no Message-ID.
    let src = contents(&p.src, "anna").await;
    {
        let mut d = pair::login(&p.dst, "anna").await;
        let mut s = pair::login(&p.src, "anna").await;
        s.examine(&inbox()).await.unwrap();
        let metas = s.list_items(1, 1000).await.unwrap();
        let half: Vec<u32> = metas.iter().map(|m| m.uid).take(metas.len() / 2).collect();
        for it in s.fetch(&half).await.unwrap() {
            d.append(&inbox(), &[], it.meta.internal_date, it.body)
                .await
                .unwrap();
        }
        d.append(&inbox(), &[], None, idless(0)).await.unwrap();
        let _ = (s.logout().await, d.logout().await);
    }
    let pre = count(&contents(&p.dst, "anna").await);
    assert!(pre > 1);
    p.ferry.run_pass("b", "full");
    assert_eq!(
        adopted(&p.ferry),
        pre,
        "what the other tool copied is adopted"
    );
    assert_eq!(copied(&p.ferry), n - pre);
    assert_eq!(count(&contents(&p.dst, "anna").await), n);
    assert_eq!(contents(&p.dst, "anna").await.len(), src.len());

    // A new data directory over the same servers: everything adopted.
    let fresh = Ferryd::start();
    fresh.add_imap_endpoint("old", p.src.port(), p.src.master_user());
    fresh.add_imap_endpoint("new", p.dst.port(), p.src.master_user());
    fresh.create_batch("b", "old", "new", &["anna"], &[]);
    fresh.run_pass("b", "full");
    assert_eq!(copied(&fresh), 0);
    assert_eq!(adopted(&fresh), n);
    assert_eq!(count(&contents(&p.dst, "anna").await), n);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_reports_extra_and_duplicate_destination_items() {
    let p = Pair::start("b", &["anna"], None);
    fill_source(&p, 20).await;
    p.ferry.run_pass("b", "full");
    {
        let mut d = pair::login(&p.dst, "anna").await;
        // An item the source never had, and a second copy of one it has.
        d.append(&inbox(), &[], None, idless(7)).await.unwrap();
        let st = d.select(&inbox()).await.unwrap();
        let first = d.list_items(1, 1).await.unwrap();
        let again = d.fetch(&[first[0].uid]).await.unwrap().remove(0);
        d.append(&inbox(), &[], again.meta.internal_date, again.body)
            .await
            .unwrap();
        assert!(st.exists > 0);
        let _ = d.logout().await;
    }
    p.ferry.run_pass("b", "verify");
    let m = p.ferry.ctl_json(&["mailbox", "show", ADDR])["data"].clone();
    let c = &m["folders"]["INBOX"]["comparison"];
    assert_eq!(c["unmatched"], 2, "{m}");
    assert_eq!(c["duplicates"].as_array().unwrap().len(), 1, "{c}");
    assert_eq!(
        c["destination_items"].as_u64().unwrap(),
        c["source_items"].as_u64().unwrap() + 2
    );
    // The other folders hold exactly the source's items.
    for (name, f) in m["folders"].as_object().unwrap() {
        if name != "INBOX" && !f["comparison"].is_null() {
            assert_eq!(f["comparison"]["unmatched"], 0, "{name}: {f}");
        }
    }
    let table = p.ferry.ctl_ok(&["mailbox", "show", ADDR]);
    assert!(table.contains("not in source"), "{table}");
    assert!(table.contains("duplicate in"), "{table}");
    let batch = p.ferry.ctl_json(&["batch", "show", "b"])["data"].clone();
    assert_eq!(
        batch["mailbox_stats"][0]["verified"]["INBOX"]["unmatched"],
        2
    );
    assert!(
        p.ferry
            .ctl_ok(&["batch", "show", "b"])
            .contains("duplicate groups")
    );
}

/// A message of `kib` KiB with a Message-ID.
fn sized(n: usize, kib: usize) -> Bytes {
    let line = "x".repeat(1022);
    let body: String = (0..kib).map(|_| format!("{line}\r\n")).collect();
    Bytes::from(format!(
        "From: a@old.example\r\nMessage-ID: <big{n}@old.example>\r\nSubject: big {n}\r\n\r\n{body}"
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_plan_matches_the_full_pass_and_writes_nothing() {
    let src = ferry_testservers::Dovecot::start().unwrap();
    let dst = ferry_testservers::Dovecot::start().unwrap();
    src.add_user("anna", pair::PW).unwrap();
    dst.add_user("anna", pair::PW).unwrap();
    let f = Ferryd::start();
    f.add_imap_endpoint("old", src.port(), src.master_user());
    f.add_imap_endpoint("new", dst.port(), dst.master_user());
    f.create_batch("b", "old", "new", &["anna"], &["--max-item-size", "100KB"]);
    {
        let mut s = pair::login(&src, "anna").await;
        sample::fill(
            &mut s,
            &SampleSpec {
                seed: 5,
                messages: 40,
                attachment_percent: 0,
                huge: 0,
            },
        )
        .await
        .unwrap();
        for n in 0..2 {
            s.append(&inbox(), &[], None, sized(n, 150)).await.unwrap();
        }
        // Part of INBOX is already at the destination.
        let mut d = pair::login(&dst, "anna").await;
        copy_a_third(&mut s, &mut d).await;
        let _ = (s.logout().await, d.logout().await);
    }
    let before = contents(&dst, "anna").await;
    let head = f.head();

    let plan = f.ctl_json(&["batch", "plan", "b"])["data"].clone();
    let table = f.ctl_ok(&["batch", "plan", "b", "--exclude-folder", "^Sent$"]);
    assert!(table.contains("(filtered out)"), "{table}");
    assert!(table.contains("would copy"), "{table}");
    let narrowed =
        f.ctl_json(&["batch", "plan", "b", "--exclude-folder", "^Sent$"])["data"].clone();
    let sent = narrowed["mailboxes"][0]["folders"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["folder"] == "Sent")
        .cloned()
        .unwrap();
    assert!(sent["destination"].is_null(), "{sent}");
    assert_eq!(sent["copy_items"], 0);

    // Nothing written anywhere: no folder made, no item, no event.
    assert_eq!(contents(&dst, "anna").await, before);
    assert_eq!(f.head(), head);

    f.run_pass("b", "full");
    let (copy, adopt, skip) = plan_matches(&f, &plan["mailboxes"][0]);
    assert!(copy > 0 && adopt > 0, "{plan}");
    assert_eq!(skip, 2, "{plan}");
}

/// Copies every third INBOX item under 100 KB from `s` to `d`, as another
/// tool might have.
async fn copy_a_third(s: &mut dyn MailSession, d: &mut dyn MailSession) {
    s.examine(&inbox()).await.unwrap();
    let metas = s.list_items(1, 1000).await.unwrap();
    let some: Vec<u32> = metas
        .iter()
        .filter(|m| m.size < 100_000)
        .map(|m| m.uid)
        .step_by(3)
        .collect();
    for it in s.fetch(&some).await.unwrap() {
        d.append(&inbox(), &[], it.meta.internal_date, it.body)
            .await
            .unwrap();
    }
}

/// Checks one mailbox's plan against what the full pass since did, folder
/// by folder; gives the plan's items to copy, adopt and skip.
fn plan_matches(f: &Ferryd, plan: &serde_json::Value) -> (u64, u64, u64) {
    assert!(plan["error"].is_null(), "{plan}");
    let address = plan["address"].as_str().unwrap();
    let m = f.ctl_json(&["mailbox", "show", address])["data"].clone();
    let (mut copy, mut adopt, mut skip) = (0, 0, 0);
    for r in plan["folders"].as_array().unwrap() {
        let folder = r["folder"].as_str().unwrap();
        let done = &m["folders"][folder]["counts"];
        assert_eq!(r["copy_items"], done["copied"], "{folder}: {r} vs {done}");
        assert_eq!(r["copy_bytes"], done["bytes"], "{folder}: {r} vs {done}");
        assert_eq!(r["adopt_items"], done["adopted"], "{folder}: {r} vs {done}");
        assert_eq!(r["skip_items"], done["skipped"], "{folder}: {r} vs {done}");
        assert_eq!(
            r["destination"], m["folders"][folder]["destination"],
            "{folder}"
        );
        copy += r["copy_items"].as_u64().unwrap();
        adopt += r["adopt_items"].as_u64().unwrap();
        skip += r["skip_items"].as_u64().unwrap();
    }
    (copy, adopt, skip)
}

/// Every file under `dir`, with its size: what a plan must leave as it was.
fn tree(dir: &std::path::Path) -> Vec<(std::path::PathBuf, u64)> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries {
            let e = e.unwrap();
            let meta = e.metadata().unwrap();
            if meta.is_dir() {
                out.extend(tree(&e.path()));
            } else {
                out.push((e.path(), meta.len()));
            }
        }
    }
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_plan_against_a_maildir_destination_writes_nothing_and_matches() {
    let src = ferry_testservers::Dovecot::start().unwrap();
    src.add_users(&["anna", "bob"], pair::PW).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("new");
    std::fs::create_dir(&root).unwrap();
    let f = Ferryd::start();
    f.add_imap_endpoint("old", src.port(), src.master_user());
    f.add_maildir_endpoint("new", &root);
    f.create_batch(
        "b",
        "old",
        "new",
        &["anna", "bob"],
        &["--max-item-size", "100KB"],
    );
    for (u, seed) in [("anna", 7), ("bob", 8)] {
        pair::add_mail(&src, u, seed, 30).await;
    }
    {
        let mut s = pair::login(&src, "anna").await;
        s.append(&inbox(), &[], None, sized(1, 150)).await.unwrap();
        // A third of anna's INBOX is already in her Maildir; bob has none yet.
        let mut d = ferry_connectors::maildir::open(&root.join("anna@new.example"), true).unwrap();
        copy_a_third(&mut s, &mut d).await;
        let _ = s.logout().await;
    }
    let before = tree(&root);
    let head = f.head();

    let plan = f.ctl_json(&["batch", "plan", "b"])["data"].clone();
    assert_eq!(tree(&root), before, "the plan wrote to the Maildir tree");
    assert!(!root.join("bob@new.example").exists());
    assert_eq!(f.head(), head);

    f.run_pass("b", "full");
    let (copy, adopt, skip) = plan_matches(&f, &plan["mailboxes"][0]);
    assert!(copy > 0 && adopt > 0 && skip == 1, "{plan}");
    let (copy, adopt, _) = plan_matches(&f, &plan["mailboxes"][1]);
    assert!(copy > 0 && adopt == 0, "{plan}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_plan_shows_items_in_doubt_apart_from_those_to_copy() {
    use ferry_tests::faultproxy::{Dir, Fault, FaultProxy};
    let src = ferry_testservers::Dovecot::start().unwrap();
    let dst = ferry_testservers::Dovecot::start().unwrap();
    src.add_user("anna", pair::PW).unwrap();
    dst.add_user("anna", pair::PW).unwrap();
    pair::add_mail(&src, "anna", 9, 40).await;
    let proxy = FaultProxy::start(dst.port());
    // No retry: the pass fails as soon as the destination drops the line.
    let f = Ferryd::start_with_config("[engine]\noutage_window_s = 0\nfetch_batch = 4\n");
    f.add_imap_endpoint("old", src.port(), src.master_user());
    f.add_imap_endpoint("new", proxy.port(), dst.master_user());
    f.create_batch("b", "old", "new", &["anna"], &[]);
    // The destination stores the first APPEND, and its answer is lost.
    proxy.arm(Fault::Drop, Dir::AppendAnswer, 0);
    f.ctl_ok(&["batch", "start", "b", "--pass", "full"]);
    f.ctl(&["batch", "wait", "b", "--timeout", "120"]);
    assert_eq!(proxy.fired().drops, 1);
    let m = f.ctl_json(&["mailbox", "show", ADDR])["data"].clone();
    assert_eq!(m["state"], "Failed", "{m}");

    let plan = f.ctl_json(&["batch", "plan", "b"])["data"].clone();
    let rows = plan["mailboxes"][0]["folders"].as_array().unwrap();
    let in_doubt: u64 = rows
        .iter()
        .map(|r| r["in_doubt_items"].as_u64().unwrap())
        .sum();
    assert!(in_doubt > 0, "{plan}");
    let table = f.ctl_ok(&["batch", "plan", "b"]);
    assert!(
        table.contains(&format!(
            "{in_doubt} items in doubt, settled on the next pass"
        )),
        "{table}"
    );

    // The next pass settles them (found at the destination, not copied
    // again) and copies the rest: the plan's copy plus in-doubt items.
    let copied_before: Vec<u64> = rows
        .iter()
        .map(|r| {
            m["folders"][r["folder"].as_str().unwrap()]["counts"]["copied"]
                .as_u64()
                .unwrap_or(0)
        })
        .collect();
    f.run_pass("b", "full");
    let after = f.ctl_json(&["mailbox", "show", ADDR])["data"].clone();
    assert_eq!(after["state"], "Synced", "{after}");
    for (r, before) in rows.iter().zip(copied_before) {
        let folder = r["folder"].as_str().unwrap();
        let now = after["folders"][folder]["counts"]["copied"]
            .as_u64()
            .unwrap();
        let planned = r["copy_items"].as_u64().unwrap() + r["in_doubt_items"].as_u64().unwrap();
        assert_eq!(now - before, planned, "{folder}: {r}");
    }
    let (s, d) = (contents(&src, "anna").await, contents(&dst, "anna").await);
    assert_eq!(count(&s), count(&d), "nothing copied twice");
}
