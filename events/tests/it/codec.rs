//! The codec's bytes are frozen: committed fixtures must decode forever.

use crate::common;

use ferry_events::codec::{self, CodecError};
use ferry_events::envelope::{ChainVerifier, hash_bytes};
use ferry_events::*;
use proptest::prelude::*;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");

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

/// Writes the fixture files of today's schema once; after that they are
/// never rewritten.
fn write_fixture(name: &str, envs: &[(Envelope, Vec<u8>)]) {
    let mut bin = Vec::new();
    let mut txt = String::new();
    for (env, bytes) in envs {
        bin.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
        bin.extend_from_slice(bytes);
        txt.push_str(&format!("{env:?}\n"));
    }
    std::fs::write(format!("{FIXTURES}/{name}.bin"), bin).unwrap();
    std::fs::write(format!("{FIXTURES}/{name}.txt"), txt).unwrap();
}

/// Decodes a committed fixture, checks each record against its text and
/// the chain, and gives the records.
fn check_fixture(name: &str) -> Vec<(Envelope, Vec<u8>)> {
    let bin = std::fs::read(format!("{FIXTURES}/{name}.bin")).expect("committed fixture");
    let txt = std::fs::read_to_string(format!("{FIXTURES}/{name}.txt")).expect("committed fixture");
    let records = read_fixture(&bin);
    let lines: Vec<&str> = txt.lines().collect();
    assert_eq!(records.len(), lines.len());
    let mut chain = ChainVerifier::new();
    let mut out = Vec::new();
    for (rec, line) in records.into_iter().zip(&lines) {
        let env = codec::decode(&rec).expect("old record decodes");
        assert_eq!(format!("{env:?}"), *line);
        chain.check(&env, &rec).expect("fixture chain holds");
        // Re-encoding keeps a record's own schema, so its hash never changes.
        assert_eq!(
            codec::encode(&env).unwrap(),
            rec,
            "{name}: {}",
            env.event_type
        );
        out.push((env, rec));
    }
    out
}

#[test]
fn schema1_fixture_still_decodes() {
    let old = check_fixture("schema1");
    assert!(old.iter().all(|(e, _)| e.schema_version == 1));
    // The same events as today's writer makes them, field for field.
    for ((was, _), (now, _)) in old.iter().zip(&fixture_envelopes()) {
        assert_eq!(was.event, now.event);
        assert_eq!(was.event_type, now.event_type);
        assert_eq!(
            (&was.stream, was.seq, was.time_us),
            (&now.stream, now.seq, now.time_us)
        );
    }
}

#[test]
fn schema2_fixture_still_decodes() {
    let fresh = fixture_envelopes();
    if std::env::var_os("FERRY_WRITE_FIXTURES").is_some() {
        write_fixture("schema2", &fresh);
    }
    let records = check_fixture("schema2");
    assert!(records.iter().all(|(e, _)| e.schema_version == 2));
    for ((env, bytes), (_, rec)) in fresh.iter().zip(&records) {
        assert_eq!(bytes, rec, "encoding of {} changed", env.event_type);
    }
}

/// The two records the engine writes per item, in the shape the engine
/// writes them (on a mailbox stream), old schema against new.
#[test]
fn item_records_are_compact() {
    let mb = "anna@example.org";
    let digest = "9f".repeat(32);
    let events = [
        Event::ItemCopyIntent {
            mailbox: mb.into(),
            key: common::key(4711),
            size: 23_456,
            digest: digest.clone(),
            dest_folder: common::key(1).folder,
            dest_uidnext: Some(4711),
        },
        Event::ItemCopied {
            mailbox: mb.into(),
            key: common::key(4711),
            size: 23_456,
            digest,
            dest_folder: common::key(1).folder,
            dest_uid: Some((1_800_000_000, 4711)),
        },
    ];
    for event in events {
        let mut env = Envelope {
            seq: 1_234_567,
            stream: stream::mailbox(mb),
            stream_version: 12_345,
            time_us: 1_765_000_000_000_000,
            actor: Actor::Engine,
            event_type: event.event_type().into(),
            schema_version: 1,
            prev_hash: [7; 32],
            event,
        };
        let v1 = codec::encode(&env).unwrap();
        env.schema_version = codec::SCHEMA_VERSION;
        let v2 = codec::encode(&env).unwrap();
        println!(
            "{}: schema 1 {} bytes, schema 2 {} bytes",
            env.event_type,
            v1.len(),
            v2.len()
        );
        assert!(
            v2.len() * 10 <= v1.len() * 7,
            "{} is {} bytes, was {}",
            env.event_type,
            v2.len(),
            v1.len()
        );
        assert_eq!(codec::decode(&v2).unwrap(), env);
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
    other[1] = 9;
    assert!(matches!(
        codec::decode(&other),
        Err(CodecError::UnknownSchema(9))
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

fn item_event(
    copied: bool,
    mailbox: String,
    folder: String,
    dest: String,
    digest: String,
    uid: u32,
) -> Event {
    let key = ItemKey {
        folder,
        uidvalidity: 7,
        uid,
    };
    if copied {
        Event::ItemCopied {
            mailbox,
            key,
            size: 99,
            digest,
            dest_folder: dest,
            dest_uid: Some((7, uid)),
        }
    } else {
        Event::ItemCopyIntent {
            mailbox,
            key,
            size: 99,
            digest,
            dest_folder: dest,
            dest_uidnext: None,
        }
    }
}

proptest! {
    /// Compact item records give back exactly what was written, whether
    /// or not the digest is hex, the stream names the mailbox, the folder moves.
    #[test]
    fn item_records_round_trip(
        copied in any::<bool>(),
        on_stream in any::<bool>(),
        mailbox in "[a-z@.]{0,12}",
        folder in "\\PC{0,12}",
        moved in any::<bool>(),
        digest in prop_oneof!["[0-9a-f]{64}", "[0-9a-fA-F]{64}", "\\PC{0,70}"],
        uid in any::<u32>(),
    ) {
        let dest = if moved { format!("{folder}/x") } else { folder.clone() };
        let stream = if on_stream { stream::mailbox(&mailbox) } else { format!("other/{mailbox}") };
        let event = item_event(copied, mailbox, folder, dest, digest, uid);
        let env = Envelope {
            seq: 3,
            stream,
            stream_version: 2,
            time_us: 1,
            actor: Actor::Engine,
            event_type: event.event_type().into(),
            schema_version: codec::SCHEMA_VERSION,
            prev_hash: ZERO_HASH,
            event,
        };
        let bytes = codec::encode(&env).unwrap();
        prop_assert_eq!(codec::decode(&bytes).unwrap(), env);
        let peek = codec::peek(&bytes).unwrap();
        prop_assert_eq!((peek.seq, peek.stream_version), (3, 2));
    }

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

/// A length prefix is not believed beyond the decode limit: a hostile or
/// damaged record fails to decode rather than asking for petabytes (found
/// by fuzzing `audit verify`).
#[test]
fn huge_length_prefixes_fail_without_allocating() {
    for schema in [1u16, 2] {
        let mut rec = vec![codec::FORMAT_BINCODE_V1];
        rec.extend_from_slice(&schema.to_le_bytes());
        rec.push(1); // seq
        rec.push(253); // the stream's length, as a u64 ...
        rec.extend_from_slice(&(1u64 << 50).to_le_bytes()); // ... of a petabyte
        rec.extend_from_slice(b"endpoint/old");
        assert!(codec::decode(&rec).is_err(), "schema {schema}");
    }
    // The record the fuzzer found: an EndpointRegistered whose host length says 3.5 PB.
    use base64::Engine;
    let raw = base64::engine::general_purpose::STANDARD
        .decode("AQEAAQplbmRwb2ludC9vbGQB/e665en2wwwAAAAEcm9vdBJFbmRwb2ludFJlZ2lzdGVyZWQBAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA29sZAAJMTI3LjAuMC4xjwAAAAAUAA==")
        .unwrap();
    assert!(codec::decode(&raw).is_err());
}
