//! An Exchange source (the EWS simulator) into Microsoft Graph (the Graph
//! simulator), through a real ferryd: mail goes as received mail (JSON
//! create, stamped with its origin); calendar, contacts and tasks folders
//! are made with their class and their items go whole, as the stream
//! `ExportItems` served, through the import API. Each item lands exactly
//! once, across delta passes and a SIGKILL mid-pass.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::graph_engine::origin_digest;
use chrono::Utc;
use ferry_connectors::digest;
use ferry_ews::FlagStatus;
use ferry_tests::Ferryd;
use ferry_tests::ews_sim::{self, EwsSim, ItemKind};
use ferry_tests::graph_sim::{self, GraphSim, SimMessage};

const PW: &str = "Winter-2024!pw";
const ADMIN_PW: &str = "Admin-pw-77";
const APP: &str = "4a1c2e3f-0000-4000-8000-00000000e002";
const SECRET: &str = "Zr5~ews.graph.secret-never-in-logs_42";
const DEST: &str = "alice@new.example";

struct Rig {
    ews: EwsSim,
    smtp: String,
    graph: GraphSim,
    ferry: Ferryd,
}

/// The EWS simulator with alice's mailbox (`messages` mails, `others` each
/// of calendar items, contacts and tasks), the Graph simulator with her
/// new mailbox, and ferryd with batch `wave` from `ex` to `m365`.
fn rig(messages: usize, others: usize, ews_latency: Duration, graph_latency: Duration) -> Rig {
    rig_of(
        messages,
        others,
        ews_sim::SimConfig {
            latency: ews_latency,
            ..ews_sim::SimConfig::default()
        },
        graph_latency,
    )
}

fn rig_of(
    messages: usize,
    others: usize,
    ews_cfg: ews_sim::SimConfig,
    graph_latency: Duration,
) -> Rig {
    let ews = EwsSim::start(ews_cfg);
    let smtp = ews.add_user("alice", PW);
    ews.populate(&smtp, messages, others, 57);
    ews.add_account("migrator", ADMIN_PW, true, false);
    let graph = GraphSim::start(graph_sim::SimConfig {
        latency: graph_latency,
        ..graph_sim::SimConfig::default()
    });
    graph.add_app_secret(APP, SECRET);
    graph.add_user(DEST);
    let ferry = Ferryd::start();
    ferry.add_ews_endpoint(
        "ex",
        &ews,
        ("migrator", ADMIN_PW),
        &["--max-connections", "4"],
    );
    let secret = ferry.file("m365.secret", &format!("{SECRET}\n"));
    ferry.ctl_ok(&[
        "endpoint",
        "add",
        "m365",
        "--kind",
        "graph",
        "--tenant",
        &graph.tenant_domain(),
        "--client-id",
        APP,
        "--client-secret-file",
        secret.to_str().unwrap(),
        "--authority",
        graph.authority(),
        "--graph-url",
        &graph.graph_url(),
        "--ca-file",
        graph.ca_path().to_str().unwrap(),
    ]);
    ferry.create_ews_batch("wave", ["ex", "m365"], &["alice"], &[]);
    Rig {
        ews,
        smtp,
        graph,
        ferry,
    }
}

/// (folder path, stream) of every item at the source that is not mail, as
/// `ExportItems` serves it, sorted.
fn source_others(r: &Rig) -> Vec<(String, Vec<u8>)> {
    r.ews.with(|s| {
        let mb = s.mailbox(&r.smtp).expect("mailbox");
        let path = |mut id: String| {
            let mut names = Vec::new();
            while let Some(f) = mb.folder(&id) {
                if f.distinguished == Some("msgfolderroot") {
                    break;
                }
                names.push(f.name.clone());
                match &f.parent {
                    Some(p) => id = p.clone(),
                    None => break,
                }
            }
            names.reverse();
            names.join("/")
        };
        let mut out: Vec<(String, Vec<u8>)> = mb
            .items
            .values()
            .filter(|i| i.kind != ItemKind::Message)
            .map(|i| (path(i.folder.clone()), ews_sim::export_stream(i)))
            .collect();
        out.sort();
        out
    })
}

/// Digests of every mail message at the source, sorted.
fn source_mail(r: &Rig) -> Vec<String> {
    r.ews.with(|s| {
        let mb = s.mailbox(&r.smtp).expect("mailbox");
        let mut out: Vec<String> = mb
            .items
            .values()
            .filter(|i| i.kind == ItemKind::Message)
            .map(|i| digest(&i.mime))
            .collect();
        out.sort();
        out
    })
}

/// (folder path, stream) of every imported item at the destination, sorted.
pub(crate) fn imported(msgs: &[SimMessage]) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<(String, Vec<u8>)> = msgs
        .iter()
        .filter_map(|m| Some((m.folder_path.clone(), m.fts.clone()?)))
        .collect();
    out.sort();
    out
}

/// The origin digests of the mail written by JSON create, sorted.
pub(crate) fn created_mail(msgs: &[SimMessage]) -> Vec<String> {
    let mut out: Vec<String> = msgs
        .iter()
        .filter(|m| m.fts.is_none())
        .map(origin_digest)
        .collect();
    out.sort();
    out
}

/// Everything at the source is at the destination exactly once: mail by
/// origin, the other items byte-equal to their export, each in a folder
/// of its class.
fn check_all(r: &Rig) {
    let msgs = r.graph.messages(DEST);
    assert_eq!(created_mail(&msgs), source_mail(r), "every mail once");
    let want = source_others(r);
    assert_eq!(imported(&msgs), want, "every other item once, whole");
    let classes: BTreeMap<String, String> = r.graph.folder_classes(DEST).into_iter().collect();
    for m in msgs.iter().filter(|m| m.fts.is_some()) {
        let class = &classes[&m.folder_path];
        let want = match m.folder_path.split('/').next().unwrap() {
            "Calendar" => "IPF.Appointment",
            "Contacts" => "IPF.Contact",
            "Tasks" => "IPF.Task",
            p => panic!("an imported item in {p}"),
        };
        assert_eq!(class, want, "{} is made with its class", m.folder_path);
    }
}

/// SIGKILLs ferryd each time `progress` reaches a mark, and starts it
/// again, until the pass finishes: how many kills landed.
pub(crate) fn kill_at(
    ferry: &mut Ferryd,
    marks: &[usize],
    progress: impl Fn(&Ferryd) -> usize,
) -> usize {
    let mut kills = 0;
    for wanted in marks {
        ferry.wait_for(180, "progress", |f| {
            progress(f) >= *wanted || !f.events_of("PassFinished").is_empty()
        });
        if !ferry.events_of("PassFinished").is_empty() {
            break;
        }
        ferry.kill();
        kills += 1;
        ferry.launch();
    }
    kills
}

/// How many times each item key was recorded copied.
pub(crate) fn copied_per_key(ferry: &Ferryd) -> BTreeMap<String, usize> {
    ferry
        .events_of("ItemCopied")
        .iter()
        .fold(BTreeMap::new(), |mut m, e| {
            *m.entry(e["event"]["ItemCopied"]["key"].to_string())
                .or_default() += 1;
            m
        })
}

/// The reason each skipped folder class was recorded with.
pub(crate) fn skip_reasons(ferry: &Ferryd) -> BTreeMap<String, String> {
    ferry
        .events_of("FolderSkipped")
        .iter()
        .map(|e| {
            let s = &e["event"]["FolderSkipped"];
            (
                s["class"].as_str().unwrap().to_string(),
                s["reason"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn skipped_classes(ferry: &Ferryd) -> Vec<String> {
    ferry
        .events_of("FolderSkipped")
        .iter()
        .map(|e| {
            e["event"]["FolderSkipped"]["class"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ews_to_graph_copies_every_class_once() {
    let r = rig(24, 4, Duration::ZERO, Duration::ZERO);
    r.ferry.run_pass("wave", "full");
    let show = r.ferry.ctl_json(&["batch", "show", "wave"]);
    assert_eq!(show["data"]["state"], "Synced", "{show}");
    assert!(r.ferry.events_of("ItemFailed").is_empty());
    let others = source_others(&r);
    // 4 of each class; a third of the calendar items are in a subfolder.
    assert_eq!(others.len(), 12);
    assert!(others.iter().any(|(p, _)| p == "Calendar/Holidays"));
    check_all(&r);
    let skipped = skipped_classes(&r.ferry);
    for class in ["IPF.Appointment", "IPF.Contact", "IPF.Task"] {
        assert!(
            !skipped.iter().any(|c| c == class),
            "{class} skipped: {skipped:?}"
        );
    }
    // The import API took them: one session, no bearer token on its URL.
    let imports = r
        .graph
        .requests()
        .iter()
        .filter(|q| q.path.starts_with("/import/") && q.status == 200)
        .count();
    assert_eq!(imports, 12);

    // A second pass writes nothing.
    let intents = r.ferry.events_of("ItemCopyIntent").len();
    let held = r.graph.messages(DEST).len();
    r.ferry.run_pass("wave", "delta");
    assert_eq!(r.ferry.events_of("ItemCopyIntent").len(), intents);
    assert_eq!(r.graph.messages(DEST).len(), held);
    check_all(&r);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delta_imports_a_created_and_an_updated_calendar_item_only() {
    let r = rig(6, 3, Duration::ZERO, Duration::ZERO);
    r.ferry.run_pass("wave", "full");
    check_all(&r);
    let intents = r.ferry.events_of("ItemCopyIntent").len();
    let imports_before = r
        .graph
        .requests()
        .iter()
        .filter(|q| q.path.starts_with("/import/"))
        .count();

    let cal = r.ews.folder_id(&r.smtp, "calendar");
    let (changed, old_stream) = r.ews.with(|s| {
        let it = s.mailbox(&r.smtp).unwrap().items_in(&cal)[0];
        (it.id.clone(), ews_sim::export_stream(it))
    });
    r.ews.update_content(
        &r.smtp,
        &changed,
        b"Content-Type: text/calendar; charset=\"utf-8\"; method=PUBLISH\r\n\r\n\
          BEGIN:VCALENDAR\r\nVERSION:2.0\r\nBEGIN:VEVENT\r\nUID:moved@sim.example\r\n\
          SUMMARY:Moved to Thursday\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"
            .to_vec(),
    );
    r.ews.with(|s| {
        s.add_item(
            &r.smtp,
            &cal,
            ItemKind::CalendarItem,
            b"Content-Type: text/calendar; charset=\"utf-8\"; method=PUBLISH\r\n\r\n\
              BEGIN:VCALENDAR\r\nVERSION:2.0\r\nBEGIN:VEVENT\r\nUID:new@sim.example\r\n\
              SUMMARY:New one\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"
                .to_vec(),
            true,
            FlagStatus::NotFlagged,
            vec![],
            Utc::now(),
        )
    });
    r.ferry.run_pass("wave", "delta");
    let show = r.ferry.ctl_json(&["batch", "show", "wave"]);
    assert_eq!(show["data"]["state"], "Synced", "{show}");
    assert_eq!(
        r.ferry.events_of("ItemCopyIntent").len(),
        intents + 2,
        "only the created and the updated item"
    );
    let imports = r
        .graph
        .requests()
        .iter()
        .filter(|q| q.path.starts_with("/import/"))
        .count();
    assert_eq!(imports, imports_before + 2);
    // The update replaced the earlier copy: nothing of it is left.
    check_all(&r);
    let msgs = r.graph.messages(DEST);
    assert!(
        !imported(&msgs).iter().any(|(_, s)| *s == old_stream),
        "the old copy is left"
    );

    // And a pass after that writes nothing.
    let intents = r.ferry.events_of("ItemCopyIntent").len();
    r.ferry.run_pass("wave", "delta");
    assert_eq!(r.ferry.events_of("ItemCopyIntent").len(), intents);
    check_all(&r);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_pass_loses_and_duplicates_no_item_of_any_class() {
    let mut r = rig(20, 30, Duration::from_millis(60), Duration::from_millis(8));
    r.ferry
        .ctl_ok(&["batch", "start", "wave", "--pass", "full"]);
    // Each kill lands while calendar, contacts and tasks items are being
    // imported (90 of them).
    let imported_so_far = |f: &Ferryd| {
        f.events_of("ItemCopied")
            .iter()
            .filter(|e| {
                let d = e["event"]["ItemCopied"]["dest_folder"].as_str().unwrap();
                ["Calendar", "Contacts", "Tasks"]
                    .iter()
                    .any(|c| d.starts_with(c))
            })
            .count()
    };
    let kills = kill_at(&mut r.ferry, &[10, 35, 60], imported_so_far);
    assert_eq!(kills, 3, "the pass ended before the kills");
    r.ferry
        .ctl_ok(&["batch", "wait", "wave", "--timeout", "300"]);
    let show = r.ferry.ctl_json(&["batch", "show", "wave"]);
    assert_eq!(show["data"]["state"], "Synced", "{show}");
    check_all(&r);
    let per_key = copied_per_key(&r.ferry);
    assert_eq!(per_key.len(), 20 + 90);
    assert!(
        per_key.values().all(|n| *n == 1),
        "an item recorded copied twice"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn before_exchange_2010_sp1_the_other_classes_are_skipped_with_the_reason() {
    let r = rig_of(
        6,
        2,
        ews_sim::SimConfig {
            version: ews_sim::SimVersion::Exchange2010,
            ..ews_sim::SimConfig::default()
        },
        Duration::ZERO,
    );
    r.ferry.run_pass("wave", "full");
    let msgs = r.graph.messages(DEST);
    assert_eq!(created_mail(&msgs), source_mail(&r), "the mail is copied");
    assert!(imported(&msgs).is_empty(), "nothing is imported");
    let reasons = skip_reasons(&r.ferry);
    for class in ["IPF.Appointment", "IPF.Contact", "IPF.Task"] {
        let why = reasons
            .get(class)
            .unwrap_or_else(|| panic!("{class} not skipped"));
        assert!(why.contains("Exchange 2010 SP1"), "{why}");
    }
}
