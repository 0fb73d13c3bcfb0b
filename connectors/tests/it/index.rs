//! Pairing a source folder with a destination folder: the bytes fetched to
//! compare messages without a Message-ID are held against the caller's
//! allowance, group by group. Two Maildir trees on disk.

use std::sync::Mutex;

use bytes::Bytes;
use ferry_connectors::index::{self, Allowance};
use ferry_connectors::{FolderName, ItemMeta, MailSession, maildir};

fn inbox() -> FolderName {
    FolderName {
        raw: "INBOX".into(),
        delimiter: Some('/'),
        segments: vec!["INBOX".into()],
    }
}

/// Records each hold (its UIDs and bytes) and how many are held at once.
#[derive(Default)]
struct Recorder {
    holds: Mutex<Vec<(Vec<u32>, u64)>>,
    held: Mutex<u32>,
    most: Mutex<u32>,
}

struct Guard<'a>(&'a Recorder);

impl Drop for Guard<'_> {
    fn drop(&mut self) {
        *self.0.held.lock().unwrap() -= 1;
    }
}

impl Allowance for Recorder {
    type Held<'a> = Guard<'a>;

    async fn hold(&self, items: &[ItemMeta]) -> Guard<'_> {
        let uids = items.iter().map(|m| m.uid).collect();
        let bytes = items.iter().map(|m| m.size).sum();
        self.holds.lock().unwrap().push((uids, bytes));
        let mut held = self.held.lock().unwrap();
        *held += 1;
        let mut most = self.most.lock().unwrap();
        *most = (*most).max(*held);
        Guard(self)
    }
}

/// A message without a Message-ID, `n` making its bytes distinct.
fn idless(n: usize) -> Bytes {
    Bytes::from(format!(
        "From: a@x\r\nSubject: {n}\r\n\r\n{}\r\n",
        "b".repeat(n * 100)
    ))
}

#[tokio::test]
async fn digest_fetches_are_held_against_the_allowance() {
    let dir = tempfile::tempdir().unwrap();
    let mut src = maildir::open(&dir.path().join("src"), true).unwrap();
    let mut dst = maildir::open(&dir.path().join("dst"), true).unwrap();
    for n in 0..45 {
        src.append(&inbox(), &[], None, idless(n)).await.unwrap();
        if n % 3 == 0 {
            dst.append(&inbox(), &[], None, idless(n)).await.unwrap();
        }
    }
    src.examine(&inbox()).await.unwrap();
    dst.examine(&inbox()).await.unwrap();
    let source = index::list(&mut src).await.unwrap();
    let dest = index::list(&mut dst).await.unwrap();
    let rec = Recorder::default();
    let pairing = index::pair(&mut src, &source, |_| true, &mut dst, &dest, |_| true, &rec)
        .await
        .unwrap();
    assert_eq!(pairing.pairs.len(), 15);

    let holds = rec.holds.lock().unwrap().clone();
    // Every byte compared was held first: all 45 id-less source items and
    // the 15 destination items, in groups of at most 20.
    let held: u64 = holds.iter().map(|(_, b)| b).sum();
    let bytes = |list: &[index::Indexed]| -> u64 { list.iter().map(|i| i.meta.size).sum() };
    assert_eq!(held, bytes(&source) + bytes(&dest), "{holds:?}");
    assert!(
        holds.len() >= 2 && holds.iter().all(|(u, _)| u.len() <= 20),
        "{holds:?}"
    );
    // Each hold is given back before the next group is asked for.
    assert_eq!(*rec.most.lock().unwrap(), 1);
    assert_eq!(*rec.held.lock().unwrap(), 0);
}
