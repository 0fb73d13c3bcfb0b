//! Microsoft Graph as a source, through a real ferryd: a tenant-to-tenant
//! move between two Graph simulators (every item, mail included, as the
//! stream `exportItems` served, through the import API; mail then stamped
//! with its origin), deltas from the folders' delta links, a SIGKILL
//! mid-pass, and Graph into a Maildir, where only mail goes.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use crate::ews_graph::{copied_per_key, kill_at, skip_reasons};
use crate::graph_engine::{origin_digest, sign_in_args};
use ferry_connectors::digest;
use ferry_tests::Ferryd;
use ferry_tests::graph_sim::{GraphSim, SimConfig, SimMessage, assert_budget_kept};

const SRC: &str = "alice@sim.example";
const DEST: &str = "alice@new.example";

fn mime(n: usize) -> Vec<u8> {
    format!(
        "From: Bob <bob@sim.example>\r\nTo: Alice <alice@sim.example>\r\n\
         Subject: Report {n}\r\nMessage-ID: <r{n}@sim.example>\r\n\
         Date: Mon, 2 Mar 2026 10:{:02}:00 +0000\r\nMIME-Version: 1.0\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\r\nFigures for week {n}.\r\n",
        n % 60
    )
    .into_bytes()
}

fn stream(kind: &str, n: usize) -> Vec<u8> {
    format!("FTS {kind} #{n}: opaque full-fidelity bytes \u{1}\u{2}").into_bytes()
}

/// Alice's source mailbox: `mails` messages (two thirds in the inbox, the
/// rest in Sent Items, the first read, flagged and categorized) and
/// `others` items each of calendar, contacts and tasks.
fn populate(sim: &GraphSim, mails: usize, others: usize) -> Vec<String> {
    let mut ids = Vec::new();
    for n in 0..mails {
        let folder = if n % 3 == 2 { "sentitems" } else { "inbox" };
        ids.push(sim.deliver_mime(SRC, folder, &mime(n)));
    }
    if let Some(first) = ids.first() {
        sim.set_state(SRC, first, true, true, &["Red Category"]);
    }
    for n in 0..others {
        sim.add_item(
            SRC,
            "Calendar",
            "IPF.Appointment",
            "IPM.Appointment",
            &stream("event", n),
        );
        sim.add_item(
            SRC,
            "Contacts",
            "IPF.Contact",
            "IPM.Contact",
            &stream("contact", n),
        );
        sim.add_item(SRC, "Tasks", "IPF.Task", "IPM.Task", &stream("task", n));
    }
    ids
}

fn source_sim(latency: Duration) -> GraphSim {
    let sim = GraphSim::start(SimConfig {
        latency,
        ..SimConfig::default()
    });
    sim.add_app_secret(crate::graph_engine::APP, crate::graph_engine::SECRET);
    sim.add_user(SRC);
    sim
}

/// `endpoint add NAME --kind graph`, signed in to `sim`.
fn add_endpoint(ferry: &Ferryd, name: &str, sim: &GraphSim) {
    let mut args = vec!["endpoint", "add", name, "--kind", "graph"];
    let sign_in = sign_in_args(ferry, sim);
    args.extend(sign_in.iter().map(String::as_str));
    let graph_url = sim.graph_url();
    args.extend(["--graph-url", &graph_url]);
    ferry.ctl_ok(&args);
}

struct Rig {
    src: GraphSim,
    dst: GraphSim,
    ferry: Ferryd,
}

/// Two tenants: the source simulator (Contoso) and the destination's
/// (Fabrikam), ferryd with batch `t2t` from `old365` to `new365`.
fn tenants(mails: usize, others: usize, latency: Duration, extra: &[&str]) -> Rig {
    let src = source_sim(latency);
    populate(&src, mails, others);
    let dst = GraphSim::start(SimConfig {
        tenant_id: "2f0c6a55-1b7e-4d0b-9a3c-6e1d8f7a9b10".into(),
        tenant_domain: "fabrikam.onmicrosoft.com".into(),
        ..SimConfig::default()
    });
    dst.add_app_secret(crate::graph_engine::APP, crate::graph_engine::SECRET);
    dst.add_user(DEST);
    let ferry = Ferryd::start();
    add_endpoint(&ferry, "old365", &src);
    add_endpoint(&ferry, "new365", &dst);
    let rows = "SourceEmail,DestinationEmail\nalice@sim.example,alice@new.example\n";
    let csv = ferry.file("t2t.csv", rows);
    let mut args = vec![
        "batch",
        "create",
        "t2t",
        "--source",
        "old365",
        "--destination",
        "new365",
        "--csv",
        csv.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    ferry.ctl_ok(&args);
    Rig { src, dst, ferry }
}

/// The digests of the bytes `$value` serves for each source message, sorted.
fn source_mail(src: &GraphSim) -> Vec<String> {
    let mut out: Vec<String> = src
        .messages(SRC)
        .iter()
        .filter(|m| m.class == "IPM.Note")
        .map(|m| digest(&src.value(SRC, &m.id).unwrap()))
        .collect();
    out.sort();
    out
}

/// Each message of `user`: the digest of its MIME, its subject, read
/// state, flag and categories, sorted.
type MailState = (String, String, bool, String, Vec<String>);
fn mail_states(sim: &GraphSim, user: &str) -> Vec<MailState> {
    let mut out: Vec<MailState> = sim
        .messages(user)
        .into_iter()
        .filter(|m| m.class == "IPM.Note")
        .map(|m| {
            let mime = digest(&sim.value(user, &m.id).unwrap());
            (mime, m.subject, m.is_read, m.flag, m.categories)
        })
        .collect();
    out.sort();
    out
}

/// The streams `exportItems` serves for each source message, sorted.
fn source_mail_streams(src: &GraphSim) -> Vec<Vec<u8>> {
    let mut out: Vec<Vec<u8>> = src
        .messages(SRC)
        .iter()
        .filter(|m| m.class == "IPM.Note")
        .map(|m| src.exported(SRC, &m.id).unwrap())
        .collect();
    out.sort();
    out
}

/// The streams the destination's messages were imported from, sorted.
fn imported_mail(msgs: &[SimMessage]) -> Vec<Vec<u8>> {
    let mut out: Vec<Vec<u8>> = msgs
        .iter()
        .filter(|m| m.class == "IPM.Note")
        .filter_map(|m| m.fts.clone())
        .collect();
    out.sort();
    out
}

/// (folder path, stream) of each imported item that is not mail, sorted.
fn imported_others(msgs: &[SimMessage]) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<(String, Vec<u8>)> = msgs
        .iter()
        .filter(|m| m.class != "IPM.Note")
        .filter_map(|m| Some((m.folder_path.clone(), m.fts.clone()?)))
        .collect();
    out.sort();
    out
}

fn by_subject(sim: &GraphSim, user: &str, subject: &str) -> SimMessage {
    let all = sim.messages(user);
    all.into_iter().find(|m| m.subject == subject).unwrap()
}

/// Requests to `sim` that write (anything but a read), after `from`.
fn writes(sim: &GraphSim, from: usize) -> Vec<String> {
    sim.requests()
        .into_iter()
        .skip(from)
        .filter(|q| q.method != "GET" && !q.path.ends_with("/exportItems"))
        .filter(|q| !q.path.contains("/oauth2/") && !q.path.ends_with("/$batch"))
        .map(|q| format!("{} {}", q.method, q.path))
        .collect()
}

/// (folder path, stream `exportItems` serves) of each other source item.
fn source_others(src: &GraphSim) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<(String, Vec<u8>)> = src
        .messages(SRC)
        .iter()
        .filter(|m| m.class != "IPM.Note")
        .map(|m| (m.folder_path.clone(), src.exported(SRC, &m.id).unwrap()))
        .collect();
    out.sort();
    out
}

/// Every source item is at the destination exactly once: mail imported
/// (never created from JSON) with the source's MIME, read state, flag and
/// categories, stamped with the digest of the stream it came as; the other
/// items byte-equal to their export, in folders made with their class.
fn check_all(r: &Rig) {
    let msgs = r.dst.messages(DEST);
    assert_eq!(
        mail_states(&r.dst, DEST),
        mail_states(&r.src, SRC),
        "every mail once, with its state"
    );
    let mail: Vec<&SimMessage> = msgs.iter().filter(|m| m.class == "IPM.Note").collect();
    assert_eq!(mail.len(), source_mail(&r.src).len());
    for m in mail {
        assert_eq!(m.made_by, "import", "{} not imported", m.subject);
        assert!(!m.is_draft, "{} is a draft", m.subject);
        let stream = m.fts.as_ref().expect("imported from a stream");
        assert_eq!(origin_digest(m), digest(stream), "{}'s origin", m.subject);
    }
    assert_eq!(
        imported_others(&msgs),
        source_others(&r.src),
        "every other item once, whole"
    );
    let classes: BTreeMap<String, String> = r.dst.folder_classes(DEST).into_iter().collect();
    for (folder, class) in [
        ("Calendar", "IPF.Appointment"),
        ("Contacts", "IPF.Contact"),
        ("Tasks", "IPF.Task"),
    ] {
        assert_eq!(classes.get(folder).map(String::as_str), Some(class));
    }
}

fn intents(ferry: &Ferryd) -> usize {
    ferry.events_of("ItemCopyIntent").len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenant_to_tenant_copies_every_class_once_and_deltas_copy_only_changes() {
    let r = tenants(9, 3, Duration::ZERO, &["--propagate-deletions"]);
    let verified = r
        .ferry
        .ctl_ok(&["endpoint", "verify", "old365", "--as", SRC]);
    assert!(verified.contains("SOURCE-CLASSES="), "{verified}");
    assert!(verified.contains("calendar"), "{verified}");
    r.ferry.run_pass("t2t", "full");
    let show = r.ferry.ctl_json(&["batch", "show", "t2t"]);
    assert_eq!(show["data"]["state"], "Synced", "{show}");
    assert!(r.ferry.events_of("ItemFailed").is_empty());
    assert_eq!(source_others(&r.src).len(), 9);
    check_all(&r);
    // Each message is byte-equal to the stream the source exports.
    let msgs = r.dst.messages(DEST);
    assert_eq!(imported_mail(&msgs), source_mail_streams(&r.src));
    // The first message's state came along, its category's name whole.
    let first = msgs.iter().find(|m| m.subject == "Report 0").unwrap();
    assert!(first.is_read);
    assert_eq!(first.flag, "flagged");
    assert_eq!(first.categories, vec!["Red Category".to_string()]);
    assert!(
        r.dst
            .requests()
            .iter()
            .all(|q| !(q.method == "POST" && q.path.contains("/messages"))),
        "a message created from JSON or MIME"
    );
    // Exported in calls of at most 20 items.
    assert!(
        r.src
            .requests()
            .iter()
            .any(|q| q.path.ends_with("/exportItems") && q.status == 200)
    );

    // Neither tenant's secret nor an import URL is in the log.
    let log = serde_json::to_string(&r.ferry.events()).unwrap();
    assert!(!log.contains(crate::graph_engine::SECRET));
    assert!(!log.contains("/import/"));

    // A quiet delta copies nothing and writes nothing.
    let before = intents(&r.ferry);
    let asked = r.dst.requests().len();
    r.ferry.run_pass("t2t", "delta");
    assert_eq!(intents(&r.ferry), before);
    assert_eq!(writes(&r.dst, asked), Vec::<String>::new());
    check_all(&r);

    // A message read at the source, and one marked unread, are so at the
    // destination: the state is set on the copy, nothing imported again,
    // and a category keeps its name.
    let unread = by_subject(&r.src, SRC, "Report 1");
    assert!(!unread.is_read);
    r.src.set_state(SRC, &unread.id, true, false, &[]);
    let first = by_subject(&r.src, SRC, "Report 0");
    r.src
        .set_state(SRC, &first.id, false, true, &["Red Category"]);
    let asked = r.dst.requests().len();
    r.ferry.run_pass("t2t", "delta");
    assert_eq!(intents(&r.ferry), before, "a state change re-imported");
    let written = writes(&r.dst, asked);
    assert_eq!(written.len(), 2, "{written:?}");
    assert!(
        written.iter().all(|w| w.starts_with("PATCH ")),
        "{written:?}"
    );
    assert!(by_subject(&r.dst, DEST, "Report 1").is_read);
    let first = by_subject(&r.dst, DEST, "Report 0");
    assert!(!first.is_read);
    assert_eq!(first.categories, vec!["Red Category".to_string()]);
    check_all(&r);

    // A create, an update and a delete.
    let src_msgs = r.src.messages(SRC);
    let cal = src_msgs
        .iter()
        .find(|m| m.class == "IPM.Appointment")
        .unwrap();
    let old_stream = r.src.exported(SRC, &cal.id).unwrap();
    r.src
        .change_stream(SRC, &cal.id, b"FTS event moved to Thursday");
    let gone = src_msgs
        .iter()
        .find(|m| m.subject == "Report 4")
        .unwrap()
        .id
        .clone();
    r.src.delete(SRC, &gone);
    r.src.deliver_mime(SRC, "inbox", &mime(100));
    r.ferry.run_pass("t2t", "delta");
    let show = r.ferry.ctl_json(&["batch", "show", "t2t"]);
    assert_eq!(show["data"]["state"], "Synced", "{show}");
    assert_eq!(
        intents(&r.ferry),
        before + 2,
        "only the created and the updated item"
    );
    // The deleted mail vanished (the updated item's old number does too).
    let vanished_mail = r
        .ferry
        .events_of("ItemVanished")
        .iter()
        .filter(|e| e["event"]["ItemVanished"]["key"]["folder"] == "INBOX")
        .count();
    assert_eq!(vanished_mail, 1);
    check_all(&r);
    let msgs = r.dst.messages(DEST);
    assert!(
        !imported_others(&msgs).iter().any(|(_, s)| *s == old_stream),
        "the old copy of the updated item is left"
    );
    assert!(
        !msgs.iter().any(|m| m.subject == "Report 4"),
        "the deleted mail is left"
    );

    // The source forgets the delta links: the folders are read again from
    // the start, and nothing is copied twice.
    r.src.expire_delta_links();
    let before = intents(&r.ferry);
    r.ferry.run_pass("t2t", "delta");
    let show = r.ferry.ctl_json(&["batch", "show", "t2t"]);
    assert_eq!(show["data"]["state"], "Synced", "{show}");
    assert_eq!(intents(&r.ferry), before);
    let restarted = r
        .ferry
        .events_of("SourceSynced")
        .iter()
        .filter(|e| e["event"]["SourceSynced"]["generation"] == 2)
        .count();
    assert!(restarted >= 5, "each folder read again: {restarted}");
    check_all(&r);

    // Each copy was stamped with its new number: a state change and a
    // deletion at the source still find it.
    let read = by_subject(&r.src, SRC, "Report 3");
    r.src.set_state(SRC, &read.id, true, false, &[]);
    let gone = by_subject(&r.src, SRC, "Report 6");
    r.src.delete(SRC, &gone.id);
    r.ferry.run_pass("t2t", "delta");
    assert_eq!(intents(&r.ferry), before);
    assert!(by_subject(&r.dst, DEST, "Report 3").is_read);
    let left = r.dst.messages(DEST);
    assert!(
        !left.iter().any(|m| m.subject == "Report 6"),
        "Report 6 is left"
    );
    check_all(&r);
}

/// The destination's mail as (folder path, subject), sorted.
fn placed(sim: &GraphSim, user: &str) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = sim
        .messages(user)
        .into_iter()
        .filter(|m| m.class == "IPM.Note")
        .map(|m| (m.folder_path, m.subject))
        .collect();
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_folder_renamed_or_moved_at_the_source_is_followed_by_its_id() {
    let r = tenants(3, 0, Duration::ZERO, &[]);
    let projects = r.src.make_folder(SRC, None, "Projects");
    let clients = r.src.make_folder(SRC, None, "Clients");
    r.src.deliver_mime(SRC, &projects, &mime(10));
    r.src.deliver_mime(SRC, &projects, &mime(11));
    r.src.deliver_mime(SRC, &clients, &mime(12));
    r.ferry.run_pass("t2t", "full");
    assert_eq!(mail_states(&r.dst, DEST), mail_states(&r.src, SRC));
    let first = placed(&r.dst, DEST);
    assert!(
        first.contains(&("Projects".into(), "Report 10".into())),
        "{first:?}"
    );
    assert!(
        first.contains(&("Clients".into(), "Report 12".into())),
        "{first:?}"
    );

    // Projects is renamed, Clients moved under the inbox; a message
    // arrives in the renamed folder.
    r.src.rename_folder(SRC, &projects, "Projects 2026", None);
    let inbox = r
        .src
        .folders(SRC)
        .into_iter()
        .find(|(_, _, w)| w.as_deref() == Some("inbox"))
        .unwrap()
        .0;
    r.src.rename_folder(SRC, &clients, "Clients", Some(&inbox));
    r.src.deliver_mime(SRC, &projects, &mime(13));
    let before = intents(&r.ferry);
    r.ferry.run_pass("t2t", "delta");
    let show = r.ferry.ctl_json(&["batch", "show", "t2t"]);
    assert_eq!(show["data"]["state"], "Synced", "{show}");
    assert_eq!(intents(&r.ferry), before + 1, "only the new message");
    // Each source message once at the destination, in the folder its
    // folder was first mapped to.
    assert_eq!(mail_states(&r.dst, DEST), mail_states(&r.src, SRC));
    let mut want = first.clone();
    want.push(("Projects".into(), "Report 13".into()));
    want.sort();
    assert_eq!(placed(&r.dst, DEST), want);
    let dst_folders: Vec<String> = r.dst.folders(DEST).into_iter().map(|f| f.1).collect();
    assert!(
        !dst_folders
            .iter()
            .any(|f| f == "Projects 2026" || f.ends_with("/Clients")),
        "{dst_folders:?}"
    );
    // The log and `mailbox show` tell the rename and the move.
    let synced = r.ferry.events_of("SourceFoldersSynced");
    let last = &synced.last().unwrap()["event"]["SourceFoldersSynced"];
    let now_of = |folder: &str| {
        last["folders"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["folder"] == folder)
            .map(|f| f["now"].clone())
    };
    assert_eq!(now_of("Projects"), Some("Projects 2026".into()), "{last}");
    assert_eq!(now_of("Clients"), Some("INBOX/Clients".into()), "{last}");
    let shown = r.ferry.ctl_ok(&["mailbox", "show", SRC]);
    assert!(
        shown.contains("folder Projects is Projects 2026 at the source now"),
        "{shown}"
    );
    let link = last["link"].as_str().unwrap();
    assert!(link.contains("/mailFolders/delta"), "{link}");

    // A pass with no change at the source follows the folder delta from
    // its link: the tree is not listed.
    let asked = r.src.requests().len();
    let before = intents(&r.ferry);
    r.ferry.run_pass("t2t", "delta");
    assert_eq!(intents(&r.ferry), before);
    let quiet: Vec<String> = r
        .src
        .requests()
        .into_iter()
        .skip(asked)
        .filter(|q| !q.path.contains("/oauth2/"))
        .map(|q| format!("{} {}", q.method, q.path))
        .collect();
    eprintln!(
        "requests to the source in a pass with no change: {}",
        quiet.len()
    );
    assert!(
        !quiet.iter().any(|q| q.ends_with("/mailFolders")
            || q.contains("/mailFolders/") && q.ends_with("/childFolders")),
        "{quiet:#?}"
    );
    assert_eq!(
        quiet
            .iter()
            .filter(|q| q.ends_with("/mailFolders/delta"))
            .count(),
        1,
        "{quiet:#?}"
    );
    assert_eq!(placed(&r.dst, DEST), want);

    // The source forgets its delta links: the folders are listed afresh,
    // still by id, and nothing is copied twice.
    r.src.expire_delta_links();
    r.src.deliver_mime(SRC, &clients, &mime(14));
    let before = intents(&r.ferry);
    r.ferry.run_pass("t2t", "delta");
    assert_eq!(intents(&r.ferry), before + 1, "only the new message");
    assert_eq!(mail_states(&r.dst, DEST), mail_states(&r.src, SRC));
    assert!(placed(&r.dst, DEST).contains(&("Clients".into(), "Report 14".into())));

    // A folder deleted at the source, after its move, vanishes under the
    // name it was copied as.
    r.src.delete_folder(SRC, &clients);
    r.ferry.run_pass("t2t", "delta");
    let vanished: Vec<_> = r
        .ferry
        .events_of("FolderVanished")
        .iter()
        .map(|e| e["event"]["FolderVanished"]["folder"].clone())
        .collect();
    assert_eq!(vanished, vec![serde_json::Value::from("Clients")]);
    let shown = r.ferry.ctl_ok(&["mailbox", "show", SRC]);
    assert!(
        shown.contains("folder Clients was deleted at the source"),
        "{shown}"
    );
    assert!(!shown.contains("folder Clients is"), "{shown}");
}

/// Every message file under a Maildir tree, with its file name.
fn maildir_files(root: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                dirs.push(p);
            } else if matches!(
                p.parent()
                    .and_then(|x| x.file_name())
                    .and_then(|x| x.to_str()),
                Some("cur" | "new")
            ) {
                let name = p.file_name().unwrap().to_string_lossy().to_string();
                out.push((name, std::fs::read(&p).unwrap()));
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graph_to_maildir_copies_the_mime_served_and_skips_other_classes() {
    let src = source_sim(Duration::ZERO);
    let ids = populate(&src, 7, 2);
    let ferry = Ferryd::start();
    add_endpoint(&ferry, "old365", &src);
    let root = ferry.dir().join("maildirs");
    std::fs::create_dir_all(&root).unwrap();
    ferry.add_maildir_endpoint("md", &root);
    let csv = ferry.file(
        "md.csv",
        "SourceEmail,DestinationEmail\nalice@sim.example,alice@new.example\n",
    );
    ferry.ctl_ok(&[
        "batch",
        "create",
        "out",
        "--source",
        "old365",
        "--destination",
        "md",
        "--csv",
        csv.to_str().unwrap(),
    ]);
    // A plan knows each message's size before reading it (PR_MESSAGE_SIZE).
    let plan = ferry.ctl_ok(&["batch", "plan", "out"]);
    assert!(plan.contains("would copy 7 items ("), "{plan}");
    assert!(!plan.contains("would copy 7 items (0 B)"), "{plan}");

    // The source throttles the first requests: each waits its Retry-After.
    src.throttle_next(3, 1);
    ferry.run_pass("out", "full");
    let show = ferry.ctl_json(&["batch", "show", "out"]);
    assert_eq!(show["data"]["state"], "Synced", "{show}");
    assert!(ferry.events_of("ItemFailed").is_empty());

    // Nothing starts within a 429's Retry-After, and work resumes within
    // 100 ms of its end.
    // (The first requests are the parts of the well-known folders' $batch.)
    let log: Vec<(Duration, u16)> = src
        .requests()
        .into_iter()
        .filter(|q| q.mailbox == SRC)
        .map(|q| (q.at, q.status))
        .collect();
    let throttled = assert_budget_kept(
        &log,
        10_000,
        Duration::from_secs(600),
        Duration::from_secs(1),
    );
    assert_eq!(throttled.len(), 3);
    let asked = src.requests();
    let per_message = asked
        .iter()
        .filter(|q| q.path.contains("/messages/") && !q.path.contains("/delta"))
        .filter(|q| q.status == 200)
        .count();
    eprintln!(
        "graph source: {} requests for 7 messages and 6 other items, {per_message} of them reads of a message",
        asked.len()
    );

    let files = maildir_files(&root.join(DEST));
    let mut got: Vec<Vec<u8>> = files.iter().map(|(_, b)| b.clone()).collect();
    got.sort();
    let mut want: Vec<Vec<u8>> = ids.iter().map(|i| src.value(SRC, i).unwrap()).collect();
    want.sort();
    assert_eq!(got.len(), 7, "every message once");
    assert_eq!(got, want, "the bytes the source served");
    // Read state and flag travel as Maildir flags.
    let first = src.value(SRC, &ids[0]).unwrap();
    let (name, _) = files.iter().find(|(_, b)| *b == first).unwrap();
    let info = name.rsplit(":2,").next().unwrap();
    assert!(info.contains('S') && info.contains('F'), "{name}");

    let reasons = skip_reasons(&ferry);
    for class in ["IPF.Appointment", "IPF.Contact", "IPF.Task"] {
        let why = reasons
            .get(class)
            .unwrap_or_else(|| panic!("{class} not skipped: {reasons:?}"));
        assert!(why.contains("mail only"), "{why}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_pass_loses_and_duplicates_nothing_from_a_graph_source() {
    let mut r = tenants(20, 25, Duration::from_millis(40), &[]);
    // Each import and stamp takes a while too, and the last kill leaves
    // nearly half the items, so the kills land mid-pass however fast the
    // resumed passes go between two looks at the log.
    r.dst.set_latency(Duration::from_millis(30));
    r.ferry.ctl_ok(&["batch", "start", "t2t", "--pass", "full"]);
    let copied = |f: &Ferryd| f.events_of("ItemCopied").len();
    let kills = kill_at(&mut r.ferry, &[10, 30, 50], copied);
    assert_eq!(kills, 3, "the pass ended before the kills");
    r.ferry
        .ctl_ok(&["batch", "wait", "t2t", "--timeout", "300"]);
    let show = r.ferry.ctl_json(&["batch", "show", "t2t"]);
    assert_eq!(show["data"]["state"], "Synced", "{show}");
    check_all(&r);
    let per_key = copied_per_key(&r.ferry);
    assert_eq!(per_key.len(), 20 + 75);
    assert!(
        per_key.values().all(|n| *n == 1),
        "an item recorded copied twice"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_imported_but_not_stamped_is_stamped_not_imported_again() {
    let r = tenants(6, 1, Duration::ZERO, &[]);
    // The first stamp fails (a 500 the client does not retry): the item
    // is imported, unstamped, and its copy in doubt.
    r.dst
        .fail_next_on(&format!("/v1.0/users/{DEST}/messages/"), 1, 500);
    r.ferry.run_pass("t2t", "full");
    let show = r.ferry.ctl_json(&["batch", "show", "t2t"]);
    assert_eq!(show["data"]["state"], "Synced", "{show}");
    let asked = r.dst.requests();
    let refused = asked
        .iter()
        .filter(|q| q.method == "PATCH" && q.status == 500);
    assert_eq!(refused.count(), 1, "the stamp was refused once");
    let imports = asked
        .iter()
        .filter(|q| q.path.starts_with("/import/") && q.status == 200);
    assert_eq!(imports.count(), 6 + 3, "an item imported twice");
    check_all(&r);
    let per_key = copied_per_key(&r.ferry);
    assert_eq!(per_key.len(), 6 + 3);
    assert!(per_key.values().all(|n| *n == 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_the_import_refuses_is_named_from_the_source_mime() {
    // Mail only: the one refused import is a message's.
    let r = tenants(3, 0, Duration::ZERO, &[]);
    r.dst.fail_next_on("/import/", 1, 400);
    r.ferry.run_pass("t2t", "full");
    let failed = r.ferry.events_of("ItemFailed");
    assert_eq!(failed.len(), 1, "{failed:?}");
    let described = r.ferry.events_of("ItemDescribed");
    let about = &described[0]["event"]["ItemDescribed"]["about"];
    assert!(
        about["subject"].as_str().unwrap().starts_with("Report "),
        "{about}"
    );
}
