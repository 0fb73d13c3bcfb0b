//! Moving a single daemon's log into PostgreSQL: the records are copied
//! byte for byte, so the hash chain goes on unchanged, and the chain is
//! checked record by record on the way.

use ferry_events::envelope::{ChainBreak, ChainVerifier};
use ferry_events::store::RawRecord;
use ferry_events::{StoreError, codec};
use postgres::NoTls;

use crate::threads::create_schema;

/// Records inserted per statement.
const CHUNK: usize = 1000;

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the log to import breaks its chain at sequence {seq}: {what}; nothing was imported")]
    Chain { seq: u64, what: String },
    #[error(
        "the PostgreSQL store at {at} already holds {head} events; an import goes into an empty store only"
    )]
    NotEmpty { at: String, head: u64 },
}

/// What an import moved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Imported {
    pub events: u64,
    pub head: u64,
}

/// Copies `records` (a whole log, from sequence 1) into the empty store at
/// `url`, in one transaction: a break in the chain, or any failure, leaves
/// the store as empty as it was.
pub fn import(
    url: &str,
    records: impl Iterator<Item = Result<RawRecord, StoreError>>,
) -> Result<Imported, ImportError> {
    let (config, at) = crate::parse(url)?;
    let db = |e: postgres::Error| ImportError::Store(crate::threads::db_error(&at, e));
    let mut client = config.connect(NoTls).map_err(db)?;
    create_schema(&mut client).map_err(db)?;
    let mut tx = client.transaction().map_err(db)?;
    let head: i64 = tx
        .query_one("SELECT seq FROM ferry_head FOR UPDATE", &[])
        .map_err(db)?
        .get(0);
    if head != 0 {
        return Err(ImportError::NotEmpty {
            at: at.clone(),
            head: head as u64,
        });
    }
    let mut chain = ChainVerifier::new();
    let mut last = None;
    let mut chunk: Vec<(i64, String, i64, Vec<u8>)> = Vec::with_capacity(CHUNK);
    let mut events = 0u64;
    let flush = |tx: &mut postgres::Transaction<'_>,
                 chunk: &mut Vec<(i64, String, i64, Vec<u8>)>|
     -> Result<(), postgres::Error> {
        let seqs: Vec<i64> = chunk.iter().map(|c| c.0).collect();
        let streams: Vec<&str> = chunk.iter().map(|c| c.1.as_str()).collect();
        let versions: Vec<i64> = chunk.iter().map(|c| c.2).collect();
        let records: Vec<&[u8]> = chunk.iter().map(|c| c.3.as_slice()).collect();
        tx.execute(
            "INSERT INTO ferry_log (seq, stream, stream_version, record) \
             SELECT * FROM unnest($1::int8[], $2::text[], $3::int8[], $4::bytea[])",
            &[&seqs, &streams, &versions, &records],
        )?;
        chunk.clear();
        Ok(())
    };
    for r in records {
        let r = r?;
        let env = codec::decode(&r.bytes).map_err(|e| ImportError::Chain {
            seq: r.seq,
            what: e.to_string(),
        })?;
        let hash = chain.check(&env, &r.bytes).map_err(|b| match b {
            ChainBreak::Gap { expected, found } => ImportError::Chain {
                seq: found,
                what: format!("sequence {expected} was expected"),
            },
            ChainBreak::Hash { seq } => ImportError::Chain {
                seq,
                what: "its previous hash is not that of the record before".into(),
            },
        })?;
        last = Some((env.seq, hash, env.time_us));
        events += 1;
        chunk.push((
            env.seq as i64,
            env.stream,
            env.stream_version as i64,
            r.bytes,
        ));
        if chunk.len() == CHUNK {
            flush(&mut tx, &mut chunk).map_err(db)?;
        }
    }
    if !chunk.is_empty() {
        flush(&mut tx, &mut chunk).map_err(db)?;
    }
    let Some((seq, hash, time_us)) = last else {
        return Ok(Imported { events: 0, head: 0 });
    };
    tx.execute(
        "UPDATE ferry_head SET seq = $1, hash = $2, time_us = $3",
        &[&(seq as i64), &hash.as_slice(), &time_us],
    )
    .map_err(db)?;
    tx.commit().map_err(db)?;
    Ok(Imported { events, head: seq })
}
