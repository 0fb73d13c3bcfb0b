//! The one-time move of a log written by the sled-only store (every record
//! under `l` + seq in sled's tree `log`, in the same directory) into
//! segments. Records move byte for byte, so their hashes and the chain are
//! unchanged; the chain is verified as they move. A move cut short resumes
//! where the segments end. Once every record is in a segment, sled's files
//! are retired to `retired-v1/` (kept: the administrator deletes them).

use std::path::Path;

use crate::codec;
use crate::envelope::{ChainVerifier, hash_bytes};

use super::super::StoreError;
use super::log::{Log, Rec, open_sled};

/// The sled-only store's data file: its presence means a move is owed.
const V1_DB: &str = "db";
const RETIRED: &str = "retired-v1";
const GROUP: usize = 8192;

pub(super) fn has_v1(dir: &Path) -> bool {
    dir.join(V1_DB).is_file()
}

fn log_key(seq: u64) -> [u8; 9] {
    let mut k = [0u8; 9];
    k[0] = b'l';
    k[1..].copy_from_slice(&seq.to_be_bytes());
    k
}

pub(super) fn convert(dir: &Path, log: &mut Log) -> Result<(), StoreError> {
    let sled_err = |source| StoreError::Sled {
        path: dir.display().to_string(),
        source,
    };
    let codec_err = |seq| move |source| StoreError::Codec { seq, source };
    let broken = |seq: u64, what: String| StoreError::Conversion {
        path: dir.display().to_string(),
        seq,
        what,
    };
    let db = open_sled(sled::Config::new().path(dir).flush_every_ms(None)).map_err(sled_err)?;
    let tree = db.open_tree("log").map_err(sled_err)?;
    let start = log.head;
    if start > 0 {
        // A move cut short: what is in the segments must be the old log's prefix.
        let old = tree
            .get(log_key(start))
            .map_err(sled_err)?
            .ok_or_else(|| broken(start, "the segments hold more than the old log".into()))?;
        if hash_bytes(&old) != log.head_hash {
            return Err(broken(start, "the segments differ from the old log".into()));
        }
    }
    tracing::info!(
        from = start + 1,
        "event log: moving the sled-only log into segments"
    );
    let mut chain = ChainVerifier::resume(start, log.head_hash);
    let mut group: Vec<(u64, String, u64, Vec<u8>)> = Vec::with_capacity(GROUP);
    let mut moved = 0u64;
    let flush = |log: &mut Log, group: &mut Vec<(u64, String, u64, Vec<u8>)>| {
        let recs: Vec<Rec<'_>> = group
            .iter()
            .map(|(seq, stream, version, bytes)| Rec {
                seq: *seq,
                stream,
                version: *version,
                bytes,
            })
            .collect();
        let res = log.write_group(&recs);
        group.clear();
        res
    };
    for kv in tree.range(log_key(start + 1)..=log_key(u64::MAX)) {
        let (k, v) = kv.map_err(sled_err)?;
        let seq = u64::from_be_bytes(k[1..9].try_into().expect("9-byte key"));
        let env = codec::decode(&v).map_err(codec_err(seq))?;
        if env.seq != seq {
            return Err(broken(
                seq,
                format!("the record holds sequence {}", env.seq),
            ));
        }
        chain
            .check(&env, &v)
            .map_err(|b| broken(seq, format!("the hash chain breaks: {b:?}")))?;
        log.set_last_time(env.time_us);
        group.push((seq, env.stream, env.stream_version, v.to_vec()));
        moved += 1;
        if group.len() == GROUP {
            flush(log, &mut group)?;
        }
    }
    flush(log, &mut group)?;
    log.save_index()?;
    drop(tree);
    drop(db);

    // `db` first: once it is gone the move is done, whatever follows.
    let retired = dir.join(RETIRED);
    let io = |source| StoreError::Io {
        path: retired.display().to_string(),
        source,
    };
    std::fs::create_dir_all(&retired).map_err(io)?;
    std::fs::rename(dir.join(V1_DB), retired.join(V1_DB)).map_err(io)?;
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let name = entry.map_err(io)?.file_name();
        let keep = ["segments", "index", RETIRED];
        if keep.iter().any(|k| name == *k) {
            continue;
        }
        std::fs::rename(dir.join(&name), retired.join(&name)).map_err(io)?;
    }
    tracing::info!(
        events = moved,
        head = log.head,
        retired = %retired.display(),
        "event log moved into segments; the chain verified; the old files may be deleted"
    );
    Ok(())
}
