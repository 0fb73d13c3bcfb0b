//! The engine following each Graph destination folder's message delta: a
//! real ferryd copies from a Maildir (no CONDSTORE, so every delta pass
//! compares every item) into the Graph simulator. Flag changes reach the
//! copies by the ids the delta showed, a pass where nothing changed costs
//! one delta request per folder, a refused delta link (`410 Gone`) starts
//! the folder's delta over without copying anything again, and deletions
//! at the source are removed at the destination.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use ferry_connectors::{FolderName, MailSession};
use ferry_graph::messages::ORIGIN_PROPERTY;
use ferry_tests::Ferryd;
use ferry_tests::graph_sim::{GraphSim, Record, SimConfig, SimMessage};
use ferry_tests::sample::{self, SampleSpec};

use super::graph_engine::{APP, SECRET};
use super::graph_engine::{add_graph_endpoint, dest};

struct Rig {
    /// Keeps the Maildir alive.
    _root: tempfile::TempDir,
    anna: PathBuf,
    sim: GraphSim,
    ferry: Ferryd,
}

/// A Maildir `anna` with `n` sample messages in a few folders, the
/// simulator, and ferryd with batch `wave` (with `extra` options) between.
async fn rig(n: usize, extra: &[&str]) -> Rig {
    let root = tempfile::tempdir().unwrap();
    let anna = root.path().join("anna@old.example");
    {
        let mut m = ferry_connectors::maildir::open(&anna, true).unwrap();
        let spec = SampleSpec {
            seed: 81,
            messages: n,
            attachment_percent: 0,
            huge: 0,
        };
        sample::fill(&mut m, &spec).await.unwrap();
    }
    let sim = GraphSim::start(SimConfig::default());
    sim.add_app_secret(APP, SECRET);
    sim.add_user(&dest("anna"));
    let ferry = Ferryd::start();
    ferry.add_maildir_endpoint("old", root.path());
    add_graph_endpoint(&ferry, &sim);
    ferry.create_batch("wave", "old", "m365", &["anna"], extra);
    Rig {
        _root: root,
        anna,
        sim,
        ferry,
    }
}

fn inbox() -> FolderName {
    FolderName {
        raw: "INBOX".into(),
        delimiter: Some('/'),
        segments: vec!["INBOX".into()],
    }
}

/// Toggles `\Seen` and sets `\Flagged` on the first `n` items of the inbox;
/// answers their digests.
async fn change_flags(anna: &Path, n: usize) -> Vec<String> {
    let mut m = ferry_connectors::maildir::open(anna, false).unwrap();
    m.select(&inbox()).await.unwrap();
    let metas = m.list_items(1, n).await.unwrap();
    for it in &metas {
        let mut flags: Vec<String> = it.flags.clone();
        if flags.iter().any(|f| f == "\\Seen") {
            flags.retain(|f| f != "\\Seen");
        } else {
            flags.push("\\Seen".into());
        }
        flags.retain(|f| f != "\\Flagged");
        flags.push("\\Flagged".into());
        m.store_flags(it.uid, &flags).await.unwrap();
    }
    let uids: Vec<u32> = metas.iter().map(|m| m.uid).collect();
    m.fetch(&uids)
        .await
        .unwrap()
        .iter()
        .map(|i| i.digest())
        .collect()
}

/// Whether `m` is the copy of the item whose bytes have `digest` (the
/// test's Maildir session numbers UIDs apart from ferryd's source).
fn is_copy_of(m: &SimMessage, digest: &str) -> bool {
    m.ext.iter().any(|(id, v)| {
        id.eq_ignore_ascii_case(ORIGIN_PROPERTY) && v.split(' ').next() == Some(digest)
    })
}

/// The simulator's copy of the item with `digest`.
fn copy_of<'a>(msgs: &'a [SimMessage], digest: &str) -> &'a SimMessage {
    msgs.iter()
        .find(|m| is_copy_of(m, digest))
        .unwrap_or_else(|| panic!("no copy of {digest}"))
}

/// Every copy carries a distinct origin: nothing was written twice.
fn one_copy_per_origin(msgs: &[SimMessage]) {
    let mut per: HashMap<&str, usize> = HashMap::new();
    for m in msgs {
        let (_, v) = m
            .ext
            .iter()
            .find(|(id, _)| id.eq_ignore_ascii_case(ORIGIN_PROPERTY))
            .unwrap_or_else(|| panic!("{:?} carries no origin", m.subject));
        *per.entry(v.as_str()).or_default() += 1;
    }
    let twice: Vec<_> = per.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "written twice: {twice:?}");
}

fn mine(sim: &GraphSim) -> Vec<Record> {
    sim.requests()
        .into_iter()
        .filter(|q| q.mailbox == dest("anna"))
        .collect()
}

fn is_delta(q: &Record) -> bool {
    q.method == "GET" && q.path.ends_with("/messages/delta")
}

/// A lookup of messages by their origin (or any listing of a folder's
/// messages): what a delta-following pass never needs.
fn is_lookup(q: &Record) -> bool {
    q.method == "GET" && q.path.ends_with("/messages")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delta_pass_follows_each_folders_message_delta() {
    let r = rig(40, &[]).await;
    r.ferry.run_pass("wave", "full");
    let copies = r.sim.messages(&dest("anna")).len();
    assert_eq!(copies, 40);
    let folders: std::collections::BTreeSet<String> = r
        .sim
        .messages(&dest("anna"))
        .iter()
        .map(|m| m.folder_path.clone())
        .collect();
    // The first delta pass reads each folder's delta from nothing.
    r.ferry.run_pass("wave", "delta");
    assert!(!r.ferry.events_of("DestinationSynced").is_empty());

    // Flag changes at the source reach the copies by the delta's ids.
    let changed = change_flags(&r.anna, 5).await;
    r.sim.clear_requests();
    r.ferry.run_pass("wave", "delta");
    let log = mine(&r.sim);
    assert!(!log.iter().any(is_lookup), "items looked up: {log:#?}");
    let patches = log.iter().filter(|q| q.method == "PATCH").count();
    assert_eq!(patches, changed.len(), "{log:#?}");
    assert_eq!(r.ferry.events_of("FlagsSynced").len(), changed.len());
    let msgs = r.sim.messages(&dest("anna"));
    let mut m = ferry_connectors::maildir::open(&r.anna, false).unwrap();
    m.select(&inbox()).await.unwrap();
    let metas = m.list_items(1, 5).await.unwrap();
    let uids: Vec<u32> = metas.iter().map(|i| i.uid).collect();
    for it in m.fetch(&uids).await.unwrap() {
        let c = copy_of(&msgs, &it.digest());
        let it = it.meta;
        assert_eq!(c.is_read, it.flags.iter().any(|f| f == "\\Seen"));
        assert_eq!(c.flag, "flagged");
    }
    // Each link the log keeps is a sync state on the simulator's host.
    for e in r.ferry.events_of("DestinationSynced") {
        if let Some(link) = e["event"]["DestinationSynced"]["link"].as_str() {
            assert!(link.starts_with(&r.sim.graph_url()), "{link}");
            assert!(!link.contains(SECRET));
        }
    }

    // Nothing changed: one delta request per folder, nothing else but the
    // folder listing, whatever the number of items.
    r.ferry.run_pass("wave", "delta");
    r.sim.clear_requests();
    r.ferry.run_pass("wave", "delta");
    let log = mine(&r.sim);
    let deltas = log.iter().filter(|q| is_delta(q)).count();
    assert_eq!(deltas, folders.len(), "{log:#?}");
    // The rest is each session's folder listing, the same for any number
    // of items: nothing reads or writes a message.
    let other: Vec<&Record> = log.iter().filter(|q| !is_delta(q)).collect();
    assert!(
        other
            .iter()
            .all(|q| q.method == "GET" && !q.path.contains("/messages")),
        "more than the folder listing: {other:#?}"
    );
    assert!(
        other.len() <= 40,
        "{} folder reads: {other:#?}",
        other.len()
    );
    assert_eq!(r.ferry.events_of("FlagsSynced").len(), changed.len());
    assert_eq!(r.sim.messages(&dest("anna")).len(), copies);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_delta_link_starts_the_folder_over_copying_nothing_again() {
    let r = rig(30, &[]).await;
    r.ferry.run_pass("wave", "full");
    r.ferry.run_pass("wave", "delta");
    let copies = r.sim.messages(&dest("anna")).len();
    let restarts_before = restarts(&r.ferry);

    // The service forgets every delta link (as after a long pause).
    r.sim.expire_delta_links();
    let changed = change_flags(&r.anna, 3).await;
    r.sim.clear_requests();
    r.ferry.run_pass("wave", "delta");
    let log = mine(&r.sim);
    assert!(
        log.iter().any(|q| is_delta(q) && q.status == 410),
        "no link was refused: {log:#?}"
    );
    assert!(restarts(&r.ferry) > restarts_before, "no delta restarted");
    assert!(
        !log.iter()
            .any(|q| q.method == "POST" && q.path.ends_with("/messages"))
    );
    let msgs = r.sim.messages(&dest("anna"));
    assert_eq!(msgs.len(), copies, "copied again");
    one_copy_per_origin(&msgs);
    for d in changed {
        assert_eq!(copy_of(&msgs, &d).flag, "flagged");
    }
    assert!(r.ferry.events_of("ItemFailed").is_empty());
}

fn restarts(f: &Ferryd) -> usize {
    f.events_of("DestinationSynced")
        .iter()
        .filter(|e| e["event"]["DestinationSynced"]["restart"] == true)
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deletions_at_the_source_are_removed_at_graph() {
    let r = rig(30, &["--propagate-deletions"]).await;
    r.ferry.run_pass("wave", "full");
    let before = r.sim.messages(&dest("anna"));
    assert_eq!(before.len(), 30);
    let gone: Vec<String> = {
        let mut m = ferry_connectors::maildir::open(&r.anna, false).unwrap();
        m.select(&inbox()).await.unwrap();
        let uids: Vec<u32> = m
            .list_items(1, 100)
            .await
            .unwrap()
            .iter()
            .map(|i| i.uid)
            .step_by(2)
            .take(4)
            .collect();
        let digests = m
            .fetch(&uids)
            .await
            .unwrap()
            .iter()
            .map(|i| i.digest())
            .collect();
        m.remove(&uids).await.unwrap();
        digests
    };
    r.ferry.run_pass("wave", "delta");
    let after = r.sim.messages(&dest("anna"));
    assert_eq!(after.len(), before.len() - gone.len());
    for d in &gone {
        let left = after.iter().any(|m| is_copy_of(m, d));
        assert!(!left, "the copy of {d} is still there");
    }
    assert_eq!(r.ferry.events_of("ItemVanished").len(), gone.len());
    let removed = r.ferry.events_of("ItemRemovedAtDestination");
    assert_eq!(removed.len(), gone.len());
    for e in &removed {
        assert_eq!(
            e["event"]["ItemRemovedAtDestination"]["dest_folder"],
            "INBOX"
        );
    }
    // Once removed, a later pass removes nothing more.
    r.ferry.run_pass("wave", "delta");
    assert_eq!(r.sim.messages(&dest("anna")).len(), after.len());
    assert_eq!(
        r.ferry.events_of("ItemRemovedAtDestination").len(),
        gone.len()
    );
}
