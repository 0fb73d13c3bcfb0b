//! Progress has its totals before anything is copied: a full pass counts
//! every source folder first, so `watch`'s bars never jump back.

use ferry_connectors::maildir;
use ferry_tests::Ferryd;
use ferry_tests::sample::{self, SampleSpec};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_pass_counts_every_folder_before_it_copies() {
    let tmp = tempfile::tempdir().unwrap();
    let (old, new) = (tmp.path().join("old"), tmp.path().join("new"));
    let mut s = maildir::open(&old.join("anna@old.example"), true).unwrap();
    let spec = SampleSpec {
        seed: 11,
        messages: 80,
        attachment_percent: 0,
        huge: 0,
    };
    sample::fill(&mut s, &spec).await.unwrap();
    std::fs::create_dir_all(&new).unwrap();

    let ferry = Ferryd::start();
    ferry.add_maildir_endpoint("old", &old);
    ferry.add_maildir_endpoint("new", &new);
    ferry.create_batch("b", "old", "new", &["anna"], &[]);
    ferry.run_pass("b", "full");

    let events = ferry.events();
    let first_copy = events
        .iter()
        .position(|e| e["event_type"] == "ItemCopyIntent")
        .expect("items were copied");
    let mut counted = std::collections::BTreeMap::new();
    for e in &events[..first_copy] {
        if e["event_type"] == "FolderCounted" && e["event"]["FolderCounted"]["side"] == "Source" {
            for c in e["event"]["FolderCounted"]["counts"].as_array().unwrap() {
                counted.insert(
                    c["folder"].as_str().unwrap().to_string(),
                    c["items"].as_u64().unwrap(),
                );
            }
        }
    }
    // Every folder holding mail is counted before the first copy, and the
    // counts add up to what the pass then copied.
    let copied = ferry.events_of("ItemCopied").len() as u64;
    assert_eq!(counted.values().sum::<u64>(), copied, "{counted:?}");
    let with_mail = counted.values().filter(|n| **n > 0).count();
    assert!(with_mail >= 5, "{counted:?}");

    // A second full pass over unchanged folders counts nothing again.
    let before = ferry.events_of("FolderCounted").len();
    ferry.run_pass("b", "full");
    assert_eq!(ferry.events_of("FolderCounted").len(), before);
}
