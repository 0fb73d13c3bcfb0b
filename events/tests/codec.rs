//! The codec's bytes are frozen: committed fixtures must decode forever.

mod common;

use ferry_events::codec::{self, CodecError};
use ferry_events::envelope::{ChainVerifier, hash_bytes};
use ferry_events::*;
use proptest::prelude::*;

const FIXTURE_BIN: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/schema1.bin");
const FIXTURE_TXT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/schema1.txt");

/// Envelopes of every event as the writer makes them, with fixed times.
fn fixture_envelopes() -> Vec<(Envelope, Vec<u8>)> {
    let mut seq = Sequencer::default();
    let mut out = Vec::new();
    let actors = [
        Actor::User {
            uid: 1000,
            name: "anna".into(),
        },
        Actor::Scheduler,
        Actor::Engine,
        Actor::Daemon,
    ];
    for (i, ev) in common::every_event().into_iter().enumerate() {
        let stream = format!("s/{}", i % 3);
        let s = seq
            .sequence(
                &stream,
                ExpectedVersion::Any,
                &actors[i % actors.len()],
                vec![ev],
                1_763_700_000_000_000 + i as i64,
            )
            .unwrap();
        out.push((s.envelopes[0].clone(), s.records[0].clone()));
    }
    out
}

fn read_fixture(bytes: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut rest = bytes;
    while !rest.is_empty() {
        let n = u32::from_le_bytes(rest[..4].try_into().unwrap()) as usize;
        out.push(rest[4..4 + n].to_vec());
        rest = &rest[4 + n..];
    }
    out
}

#[test]
fn every_event_type_is_in_the_fixture() {
    let names: std::collections::BTreeSet<_> = common::every_event()
        .iter()
        .map(|e| e.event_type())
        .collect();
    assert_eq!(names.len(), common::every_event().len());
}

/// Writes the fixture files once; after that they are never rewritten.
#[test]
fn schema1_fixture_still_decodes() {
    let fresh = fixture_envelopes();
    if std::env::var_os("FERRY_WRITE_FIXTURES").is_some() {
        let mut bin = Vec::new();
        let mut txt = String::new();
        for (env, bytes) in &fresh {
            bin.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
            bin.extend_from_slice(bytes);
            txt.push_str(&format!("{env:?}\n"));
        }
        std::fs::write(FIXTURE_BIN, bin).unwrap();
        std::fs::write(FIXTURE_TXT, txt).unwrap();
    }
    let bin = std::fs::read(FIXTURE_BIN).expect("committed fixture");
    let txt = std::fs::read_to_string(FIXTURE_TXT).expect("committed fixture");
    let records = read_fixture(&bin);
    let lines: Vec<&str> = txt.lines().collect();
    assert_eq!(records.len(), lines.len());
    let mut chain = ChainVerifier::new();
    for (rec, line) in records.iter().zip(&lines) {
        let env = codec::decode(rec).expect("old record decodes");
        assert_eq!(format!("{env:?}"), *line);
        chain.check(&env, rec).expect("fixture chain holds");
    }
    // Today's encoder writes the very same bytes for the same envelopes.
    for ((env, bytes), rec) in fresh.iter().zip(&records) {
        assert_eq!(bytes, rec, "encoding of {} changed", env.event_type);
    }
}

#[test]
fn format_and_schema_are_checked() {
    let (_, bytes) = fixture_envelopes().remove(0);
    let mut other = bytes.clone();
    other[0] = 9;
    assert!(matches!(
        codec::decode(&other),
        Err(CodecError::UnknownFormat(9))
    ));
    let mut other = bytes.clone();
    other[1] = 2;
    assert!(matches!(
        codec::decode(&other),
        Err(CodecError::UnknownSchema(2))
    ));
    assert!(matches!(
        codec::decode(&bytes[..2]),
        Err(CodecError::Short(2))
    ));
    assert!(codec::decode(&bytes[..bytes.len() - 1]).is_err());
    let mut longer = bytes.clone();
    longer.push(0);
    assert!(matches!(
        codec::decode(&longer),
        Err(CodecError::Trailing(1))
    ));
}

#[test]
fn chain_detects_edits_and_gaps() {
    let envs = fixture_envelopes();
    let mut chain = ChainVerifier::new();
    chain.check(&envs[0].0, &envs[0].1).unwrap();
    // Skipping a record is a gap.
    assert!(chain.check(&envs[2].0, &envs[2].1).is_err());
    // An edited record no longer hashes to what its successor holds.
    let mut chain = ChainVerifier::new();
    let mut edited = envs[0].0.clone();
    edited.actor = Actor::Daemon;
    let edited_bytes = codec::encode(&edited).unwrap();
    assert_ne!(hash_bytes(&edited_bytes), hash_bytes(&envs[0].1));
    chain.check(&edited, &edited_bytes).unwrap();
    assert!(chain.check(&envs[1].0, &envs[1].1).is_err());
}

proptest! {
    #[test]
    fn any_text_round_trips(batch in ".{0,40}", reason in "\\PC{0,200}", uid in any::<u32>(), size in any::<u64>()) {
        let env = Envelope {
            seq: 1,
            stream: batch.clone(),
            stream_version: 1,
            time_us: -5,
            actor: Actor::Engine,
            event_type: "ItemSkipped".into(),
            schema_version: codec::SCHEMA_VERSION,
            prev_hash: ZERO_HASH,
            event: Event::ItemSkipped { mailbox: batch, key: common::key(uid), size, reason },
        };
        let bytes = codec::encode(&env).unwrap();
        prop_assert_eq!(codec::decode(&bytes).unwrap(), env);
    }
}
