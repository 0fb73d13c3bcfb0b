//! A data directory written by the release before the segment store (a
//! real migration of 60 messages: 181 events in sled, a views snapshot,
//! secrets) opens with this one and loses nothing.

use std::path::Path;

use ferry_tests::Ferryd;

const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/datadir-v1");

#[test]
fn a_data_directory_of_the_sled_only_release_opens_verifies_and_appends() {
    let mut d = Ferryd::start_on_copy(Path::new(FIXTURE));
    let log = d.data_dir.join("log");
    assert!(!log.join("db").exists(), "the old log was retired");
    assert!(log.join("retired-v1/db").is_file(), "and kept");
    assert_eq!(d.head(), 181);

    let b = d.ctl_json(&["batch", "show", "wave1"])["data"].clone();
    assert_eq!(b["state"], "Synced", "{b}");
    assert_eq!(b["totals"]["copied"], 60, "{b}");
    let m = d.ctl_json(&["mailbox", "show", "bert@old.example"])["data"].clone();
    assert_eq!(m["totals"]["copied"], 30, "{m}");

    let export = d.dir().join("audit.jsonl");
    d.ctl_ok(&["audit", "export", "-o", export.to_str().unwrap()]);
    let v = d.ctl_json(&["audit", "verify", export.to_str().unwrap()]);
    assert_eq!((&v["count"], &v["ok"]), (&181.into(), &true.into()), "{v}");

    // The chain goes on: a command appends in today's schema.
    d.ctl_ok(&["batch", "schedule", "wave1", "--delta", "off"]);
    assert_eq!(d.head(), 182);
    d.restart();
    assert_eq!(d.head(), 182);
    d.ctl_ok(&["audit", "export", "-o", export.to_str().unwrap()]);
    let v = d.ctl_json(&["audit", "verify", export.to_str().unwrap()]);
    assert_eq!((&v["count"], &v["ok"]), (&182.into(), &true.into()), "{v}");
    let b = d.ctl_json(&["batch", "show", "wave1"])["data"].clone();
    assert_eq!(b["totals"]["copied"], 60, "{b}");
}
