//! Per mailbox and destination folder, the copies a destination's change
//! feed (Graph's message delta) showed: each item by its destination id,
//! with its origin and state, and the link to ask the feed from next.

use std::collections::BTreeMap;

use ferry_events::{DestinationItem, Envelope, Event};
use serde::{Deserialize, Serialize};

/// One copy as the feed last showed it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Replica {
    /// The source key and digest stamped on it, if any.
    pub origin: Option<(String, String)>,
    pub flags: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaTable {
    /// Where the feed continues; `None` until a round was recorded whole.
    pub link: Option<String>,
    /// Destination id → copy.
    pub items: BTreeMap<String, Replica>,
}

impl ReplicaTable {
    /// Destination ids by source key, for the items stamped with one.
    pub fn by_origin(&self) -> BTreeMap<&str, Vec<(&str, &Replica)>> {
        let mut out: BTreeMap<&str, Vec<(&str, &Replica)>> = BTreeMap::new();
        for (id, r) in &self.items {
            if let Some((key, _)) = &r.origin {
                out.entry(key.as_str()).or_default().push((id, r));
            }
        }
        out
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Replicas {
    /// mailbox → destination folder → table.
    pub tables: BTreeMap<String, BTreeMap<String, ReplicaTable>>,
}

impl Replicas {
    pub fn get(&self, mailbox: &str, folder: &str) -> Option<&ReplicaTable> {
        self.tables.get(mailbox)?.get(folder)
    }

    pub fn forget_mailbox(&mut self, mailbox: &str) {
        self.tables.remove(mailbox);
    }

    pub fn apply(&mut self, env: &Envelope) {
        let Event::DestinationSynced {
            mailbox,
            folder,
            restart,
            seen,
            gone,
            link,
        } = &env.event
        else {
            return;
        };
        let t = self
            .tables
            .entry(mailbox.clone())
            .or_default()
            .entry(folder.clone())
            .or_default();
        if *restart {
            *t = ReplicaTable::default();
        }
        for id in gone {
            t.items.remove(id);
        }
        for DestinationItem { id, origin, flags } in seen {
            t.items.insert(
                id.clone(),
                Replica {
                    origin: origin.clone(),
                    flags: flags.clone(),
                },
            );
        }
        if link.is_some() {
            t.link = link.clone();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(seq: u64, event: Event) -> Envelope {
        Envelope {
            seq,
            stream: "mailbox/a".into(),
            stream_version: seq,
            time_us: 0,
            actor: ferry_events::Actor::Scheduler,
            event_type: event.event_type().into(),
            schema_version: 1,
            prev_hash: ferry_events::ZERO_HASH,
            event,
        }
    }

    fn synced(restart: bool, seen: &[(&str, &str)], gone: &[&str], link: Option<&str>) -> Event {
        Event::DestinationSynced {
            mailbox: "a".into(),
            folder: "INBOX".into(),
            restart,
            seen: seen
                .iter()
                .map(|(id, k)| DestinationItem {
                    id: id.to_string(),
                    origin: Some((k.to_string(), "d".into())),
                    flags: vec![],
                })
                .collect(),
            gone: gone.iter().map(|s| s.to_string()).collect(),
            link: link.map(str::to_string),
        }
    }

    #[test]
    fn a_restart_drops_what_was_known_and_parts_keep_the_old_link() {
        let mut r = Replicas::default();
        r.apply(&env(
            1,
            synced(true, &[("m1", "I/1:1"), ("m2", "I/1:2")], &[], Some("l1")),
        ));
        r.apply(&env(2, synced(false, &[], &["m1"], Some("l2"))));
        let t = r.get("a", "INBOX").unwrap();
        assert_eq!(t.items.len(), 1);
        assert_eq!(t.link.as_deref(), Some("l2"));
        r.apply(&env(3, synced(true, &[("m3", "I/1:3")], &[], None)));
        let t = r.get("a", "INBOX").unwrap();
        assert_eq!(t.items.keys().collect::<Vec<_>>(), ["m3"]);
        assert_eq!(t.link, None, "a restart's link comes with its last part");
        assert_eq!(t.by_origin()["I/1:3"][0].0, "m3");
    }
}
