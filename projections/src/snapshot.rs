//! A checkpoint of every view: `[format][version][bincode of Projections]`.
//!
//! A snapshot is a cache: when it cannot be read (other version, torn file),
//! the daemon rebuilds from sequence 0 and writes a new one.

use thiserror::Error;

use crate::Projections;

const FORMAT: u8 = 1;
/// Bumped whenever a view's shape changes; an old snapshot is then ignored.
pub const VERSION: u16 = 10;

#[derive(Debug, Error)]
pub enum SnapshotError {
    #[error("snapshot has format {0}, version {1}; this build writes {FORMAT}, {VERSION}")]
    Version(u8, u16),
    #[error("snapshot is truncated")]
    Short,
    #[error("undecodable snapshot: {0}")]
    Decode(#[from] bincode::error::DecodeError),
    #[error("unencodable snapshot: {0}")]
    Encode(#[from] bincode::error::EncodeError),
}

pub fn encode(p: &Projections) -> Result<Vec<u8>, SnapshotError> {
    let mut out = vec![FORMAT];
    out.extend_from_slice(&VERSION.to_le_bytes());
    bincode::serde::encode_into_std_write(p, &mut out, bincode::config::standard())?;
    Ok(out)
}

pub fn decode(bytes: &[u8]) -> Result<Projections, SnapshotError> {
    if bytes.len() < 3 {
        return Err(SnapshotError::Short);
    }
    let version = u16::from_le_bytes([bytes[1], bytes[2]]);
    if bytes[0] != FORMAT || version != VERSION {
        return Err(SnapshotError::Version(bytes[0], version));
    }
    let (p, _) = bincode::serde::decode_from_slice(&bytes[3..], bincode::config::standard())?;
    Ok(p)
}
