//! The engine with an Exchange source: real ferryd reading the EWS
//! simulator over TLS with NTLM and impersonation, writing to a Maildir
//! tree and to Dovecot. What lands at the destination is compared byte for
//! byte with the MIME the simulator holds.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use ferry_connectors::ews::flags_of;
use ferry_connectors::{MailSession, digest, maildir};
use ferry_ews::FlagStatus;
use ferry_tests::Ferryd;
use ferry_tests::ews_sim::{EwsSim, ItemKind, SimConfig, Throttle};
use ferry_tests::mailcmp::{self, Contents};
use ferry_testservers::Dovecot;

const PW: &str = "Winter-2024!pw";
const ADMIN_PW: &str = "Admin-pw-77";

/// (digest, flags lower-cased and sorted, received time as the internal
/// date in Unix seconds) of every message, any folder.
type Bag = Vec<(String, Vec<String>, Option<i64>)>;

/// Folder path → what the simulator's mail folders hold, as a copy
/// should carry it.
fn source_mail(sim: &EwsSim, smtp: &str) -> BTreeMap<String, Bag> {
    sim.with(|s| {
        let mb = s.mailbox(smtp).expect("mailbox");
        let mut out: BTreeMap<String, Bag> = BTreeMap::new();
        for it in mb.items.values().filter(|i| i.kind == ItemKind::Message) {
            let mut flags: Vec<String> = flags_of(it.is_read, it.flag, &it.categories)
                .into_iter()
                .map(|f| f.to_ascii_lowercase())
                .collect();
            flags.sort();
            let folder = mb.folder(&it.folder).expect("folder").name.clone();
            let date = Some(it.received.timestamp());
            out.entry(folder)
                .or_default()
                .push((digest(&it.mime), flags, date));
        }
        out.values_mut().for_each(|b| b.sort());
        out
    })
}

fn bag_of(c: &Contents) -> Bag {
    let mut b: Bag = c
        .values()
        .flatten()
        .map(|s| (s.digest.clone(), s.flags.clone(), s.date))
        .collect();
    b.sort();
    b
}

fn all(src: &BTreeMap<String, Bag>) -> Bag {
    let mut b: Bag = src.values().flatten().cloned().collect();
    b.sort();
    b
}

async fn maildir_contents(root: &Path, address: &str) -> Contents {
    let mut s = maildir::open(&root.join(address), false).expect("maildir");
    mailcmp::contents(&mut s).await
}

async fn dovecot_contents(d: &Dovecot, user: &str) -> Contents {
    let mut s = ferry_tests::imap_login(d.port(), user, PW).await;
    let c = mailcmp::contents(&mut s).await;
    let _ = s.logout().await;
    c
}

/// `endpoint add ex --kind ews` acting through `admin`.
fn add_ews(ferry: &Ferryd, sim: &EwsSim, admin: &str, pw: &str) {
    ferry.add_ews_endpoint("ex", sim, (admin, pw), &["--max-connections", "4"]);
}

/// A batch `wave` from `ex` to `dst` for `users`.
fn batch(ferry: &Ferryd, dst: &str, users: &[&str], extra: &[&str]) {
    ferry.create_ews_batch("wave", ["ex", dst], users, extra);
}

/// A simulator with `user`'s mailbox filled, an admin that may (or may
/// not) impersonate, and ferryd with the `ex` endpoint acting through it
/// and an `md` Maildir endpoint; the Maildir root comes back too.
fn start(
    user: &str,
    messages: usize,
    seed: u64,
    may_impersonate: bool,
) -> (EwsSim, String, Ferryd, std::path::PathBuf) {
    let sim = EwsSim::start(SimConfig::default());
    let smtp = sim.add_user(user, PW);
    sim.populate(&smtp, messages, 3, seed);
    sim.add_account("migrator", ADMIN_PW, may_impersonate, false);
    let ferry = Ferryd::start();
    add_ews(&ferry, &sim, "migrator", ADMIN_PW);
    let root = ferry.dir().join("maildirs");
    std::fs::create_dir_all(&root).unwrap();
    ferry.add_maildir_endpoint("md", &root);
    (sim, smtp, ferry, root)
}

fn count(ferry: &Ferryd, kind: &str) -> usize {
    ferry.events_of(kind).len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ews_to_maildir_full_deltas_and_a_refused_sync_state() {
    let (sim, alice, ferry, root) = start("alice", 60, 31, true);
    let ok = ferry.ctl_ok(&["endpoint", "verify", "ex", "--as", &alice]);
    assert!(ok.contains("EWS") && ok.contains("impersonates"), "{ok}");
    batch(&ferry, "md", &["alice"], &["--propagate-deletions"]);

    // The plan reads the folders as a pass would and records nothing.
    let plan = ferry.ctl_json(&["batch", "plan", "wave"]);
    let rows = plan["data"]["mailboxes"][0]["folders"].as_array().unwrap();
    let to_copy: u64 = rows.iter().map(|r| r["copy_items"].as_u64().unwrap()).sum();
    assert_eq!(to_copy, 60, "{plan}");
    assert_eq!(count(&ferry, "SourceSynced"), 0);

    ferry.run_pass("wave", "full");
    let src = source_mail(&sim, &alice);
    let dst = maildir_contents(&root, "alice@new.example").await;
    assert_eq!(
        bag_of(&dst),
        all(&src),
        "every message, byte for byte, with its flags"
    );
    assert_eq!(dst["INBOX"].len(), src["Inbox"].len());
    assert_eq!(count(&ferry, "ItemCopied"), 60);
    // The log records the real ids beside the numbers it gave them.
    let synced = ferry.events_of("SourceSynced");
    let ids: usize = synced
        .iter()
        .map(|e| e["event"]["SourceSynced"]["seen"].as_array().unwrap().len())
        .sum();
    assert_eq!(ids, 60, "{synced:?}");

    // Calendars, contacts and tasks are skipped, with why, in mailbox show.
    let skipped = ferry.events_of("FolderSkipped");
    let names: Vec<&str> = skipped
        .iter()
        .map(|e| e["event"]["FolderSkipped"]["folder"].as_str().unwrap())
        .collect();
    for f in ["Calendar", "Calendar/Holidays", "Contacts", "Tasks"] {
        assert!(names.contains(&f), "{f} not in {names:?}");
    }
    let show = ferry.ctl_ok(&["mailbox", "show", &alice]);
    assert!(
        show.contains("folder Calendar skipped: IPF.Appointment: calendar items"),
        "{show}"
    );
    let out = ferry.dir().join("report.html");
    ferry.ctl_ok(&["report", "wave", "-o", out.to_str().unwrap()]);
    let report = std::fs::read_to_string(&out).unwrap();
    assert!(report.contains("folder skipped"), "the report names them");
    assert!(report.contains("Calendar/Holidays"));

    // A quiet delta records nothing about the source and copies nothing.
    let before = count(&ferry, "SourceSynced");
    ferry.run_pass("wave", "delta");
    assert_eq!(count(&ferry, "SourceSynced"), before);
    assert_eq!(count(&ferry, "ItemCopied"), 60);

    // Creates, a read-state change, a flag and category change, a move and
    // a deletion: the delta carries each.
    let inbox = sim.folder_id(&alice, "inbox");
    let archive = sim.folder_id(&alice, "archive");
    let in_inbox: Vec<String> = sim.with(|s| {
        s.mailbox(&alice)
            .unwrap()
            .items_in(&inbox)
            .iter()
            .map(|i| i.id.clone())
            .collect()
    });
    sim.add_message(
        &alice,
        &inbox,
        b"From: a@b\r\nSubject: new one\r\nMessage-ID: <n1@x>\r\n\r\nhello\r\n",
        false,
    );
    sim.add_message(
        &alice,
        &archive,
        b"From: a@b\r\nSubject: new two\r\nMessage-ID: <n2@x>\r\n\r\nhi\r\n",
        true,
    );
    let read_now = sim.with(|s| {
        let mb = s.mailbox(&alice).unwrap();
        in_inbox
            .iter()
            .find(|id| !mb.items[*id].is_read)
            .cloned()
            .expect("an unread one")
    });
    sim.set_read(&alice, &read_now, true);
    sim.update_item(
        &alice,
        &in_inbox[0],
        vec!["Red Category".into()],
        FlagStatus::Flagged,
    );
    let moved = in_inbox
        .iter()
        .find(|i| **i != read_now && **i != in_inbox[0])
        .unwrap()
        .clone();
    sim.move_item(&alice, &moved, &archive);
    let deleted = in_inbox
        .iter()
        .rev()
        .find(|i| **i != read_now && **i != in_inbox[0] && **i != moved)
        .unwrap()
        .clone();
    sim.delete_item(&alice, &deleted);
    ferry.run_pass("wave", "delta");
    let src = source_mail(&sim, &alice);
    let dst = maildir_contents(&root, "alice@new.example").await;
    assert_eq!(bag_of(&dst), all(&src), "after the delta");
    assert_eq!(dst["INBOX"].len(), src["Inbox"].len());
    // Two new messages and the moved one; nothing else copied again.
    assert_eq!(count(&ferry, "ItemCopied"), 63);
    assert!(count(&ferry, "FlagsSynced") >= 2);
    assert_eq!(count(&ferry, "ItemRemovedAtDestination"), 2);

    // The server forgets the inbox's sync state: the folder is read again
    // from none and paired by content; only the new message is copied.
    let intents = count(&ferry, "ItemCopyIntent");
    sim.invalidate_sync_states(&alice, &inbox);
    sim.add_message(
        &alice,
        &inbox,
        b"From: a@b\r\nSubject: after reset\r\nMessage-ID: <n3@x>\r\n\r\nagain\r\n",
        false,
    );
    ferry.run_pass("wave", "delta");
    assert_eq!(count(&ferry, "UidValidityChanged"), 1);
    // Every append has its intent first: one new intent, one append.
    assert_eq!(
        count(&ferry, "ItemCopyIntent"),
        intents + 1,
        "nothing copied twice"
    );
    let src = source_mail(&sim, &alice);
    let dst = maildir_contents(&root, "alice@new.example").await;
    assert_eq!(bag_of(&dst), all(&src), "after the reset");
    let show = ferry.ctl_json(&["batch", "show", "wave"]);
    assert_eq!(show["data"]["state"], "Synced", "{show}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ews_to_dovecot_survives_sigkill_mid_pass() {
    let sim = EwsSim::start(SimConfig {
        latency: Duration::from_millis(10),
        ..SimConfig::default()
    });
    let bob = sim.add_user("bob", PW);
    sim.populate(&bob, 400, 1, 41);
    sim.add_account("migrator", ADMIN_PW, true, false);
    let dst = Dovecot::start().unwrap();
    dst.add_user("bob", PW).unwrap();
    // Dovecot's \Sent folder exists: Exchange's Sent Items goes there.
    {
        let mut d = ferry_tests::imap_login(dst.port(), "bob", PW).await;
        let sent = ferry_connectors::FolderName {
            raw: "Sent".into(),
            delimiter: Some('/'),
            segments: vec!["Sent".into()],
        };
        d.create_folder(&sent).await.unwrap();
        let _ = d.logout().await;
    }
    let mut ferry = Ferryd::configured("");
    let log = ferry.dir().join("ferryd.log");
    ferry.launch_logged(&log);
    add_ews(&ferry, &sim, "migrator", ADMIN_PW);
    ferry.add_imap_endpoint("dov", dst.port(), dst.master_user());
    batch(&ferry, "dov", &["bob"], &[]);

    ferry.ctl_ok(&["batch", "start", "wave", "--pass", "full"]);
    ferry.wait_for(120, "some copies", |f| {
        f.events_of("ItemCopied").len() >= 40
    });
    ferry.kill();
    ferry.launch_logged(&log);
    ferry.ctl_ok(&["batch", "wait", "wave", "--timeout", "300"]);
    // The Inbox holds most of the mailbox: its ranges went at once.
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(ferry_tests::ranges_at_once(&text) >= 2, "no ranges at once");

    let src = source_mail(&sim, &bob);
    let got = dovecot_contents(&dst, "bob").await;
    assert_eq!(bag_of(&got), all(&src), "nothing lost, nothing twice");
    assert_eq!(got["INBOX"].len(), src["Inbox"].len());
    assert_eq!(got["Sent"].len(), src["Sent Items"].len());
    assert!(!got.contains_key("Sent Items"), "{:?}", got.keys());
    let copied: std::collections::BTreeSet<String> = ferry
        .events_of("ItemCopied")
        .iter()
        .map(|e| e["event"]["ItemCopied"]["key"].to_string())
        .collect();
    assert_eq!(copied.len(), 400, "each item recorded copied once");

    // A delta into Dovecot after a create and a read-state change.
    let intents = count(&ferry, "ItemCopyIntent");
    let inbox = sim.folder_id(&bob, "inbox");
    let first = sim.with(|s| s.mailbox(&bob).unwrap().items_in(&inbox)[0].id.clone());
    let was_read = sim.with(|s| s.mailbox(&bob).unwrap().items[&first].is_read);
    sim.set_read(&bob, &first, !was_read);
    sim.add_message(
        &bob,
        &inbox,
        b"From: a@b\r\nSubject: later\r\n\r\nlater\r\n",
        true,
    );
    ferry.run_pass("wave", "delta");
    let src = source_mail(&sim, &bob);
    let got = dovecot_contents(&dst, "bob").await;
    assert_eq!(bag_of(&got), all(&src), "after the delta");
    assert_eq!(count(&ferry, "ItemCopyIntent"), intents + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn impersonation_refused_is_named() {
    let (_sim, carol, ferry, _root) = start("carol", 5, 51, false);
    let err = ferry.ctl_err(&["endpoint", "verify", "ex", "--as", &carol]);
    assert!(err.contains("ErrorImpersonateUserDenied"), "{err}");
    assert!(!err.contains(ADMIN_PW));
    batch(&ferry, "md", &["carol"], &[]);
    ferry.ctl_ok(&["batch", "start", "wave", "--pass", "full"]);
    let waited = ferry.ctl(&["batch", "wait", "wave", "--timeout", "300"]);
    assert!(!waited.status.success(), "the pass fails");
    let mb = ferry.ctl_json(&["mailbox", "show", &carol]);
    assert_eq!(mb["data"]["state"], "Failed", "{mb}");
    let detail = mb["data"]["last_pass"]["detail"].as_str().unwrap();
    assert!(detail.contains("ErrorImpersonateUserDenied"), "{detail}");
    assert_eq!(count(&ferry, "ItemCopied"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttled_answers_are_waited_out_within_the_connection_cap() {
    let (sim, dora, ferry, root) = start("dora", 80, 61, true);
    sim.throttle(Some("GetItem"), Throttle::Busy { back_off_ms: 300 });
    sim.throttle(Some("SyncFolderItems"), Throttle::Unavailable);
    sim.throttle(Some("GetItem"), Throttle::ConnectionCount);
    batch(&ferry, "md", &["dora"], &[]);
    ferry.run_pass("wave", "full");
    let src = source_mail(&sim, &dora);
    let dst = maildir_contents(&root, "dora@new.example").await;
    assert_eq!(bag_of(&dst), all(&src));
    let c = sim.counters();
    assert_eq!(c.throttled, 3, "{c:?}");
    // Each throttled request is sent again, byte for byte, after the wait
    // it was told: BackOffMilliseconds exactly, else the engine's back-off
    // (one second, doubled with each attempt).
    let served = sim.served();
    for (i, s) in served.iter().enumerate() {
        let Some(t) = &s.throttled else { continue };
        let again = served[i + 1..]
            .iter()
            .find(|r| r.body == s.body)
            .unwrap_or_else(|| panic!("{} throttled ({t:?}) was never sent again", s.op));
        let waited = again.at - s.at;
        let least = match t {
            Throttle::Busy { back_off_ms } => *back_off_ms,
            _ => {
                // Doubling from the first back-off with each attempt.
                let before = served[..i].iter().filter(|r| r.body == s.body).count();
                1_000 << before
            }
        };
        let most = least + 250;
        assert!(
            waited >= Duration::from_millis(least) && waited < Duration::from_millis(most),
            "{} throttled ({t:?}) was sent again after {waited:?}",
            s.op
        );
    }
    // The endpoint's --max-connections 4 holds across the mailbox's lanes.
    assert!(c.max_in_flight <= 4, "{c:?}");
    let show = ferry.ctl_json(&["batch", "show", "wave"]);
    assert_eq!(show["data"]["state"], "Synced", "{show}");
}
