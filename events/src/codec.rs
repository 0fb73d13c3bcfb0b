//! Bytes of an envelope: `[format][schema version: u16 LE][payload]`.
//!
//! The format byte names the payload encoding (1 = bincode 2 over serde,
//! standard config), so the encoding can change without rewriting the log;
//! the schema version names the shape of [`Envelope`] and [`crate::Event`],
//! so old shapes can be decoded by their own types and upcast.

use thiserror::Error;

use crate::envelope::Envelope;

/// bincode 2.0.1, serde, `config::standard()`.
pub const FORMAT_BINCODE_V1: u8 = 1;
/// The shape of today's envelope and events.
pub const SCHEMA_VERSION: u16 = 1;

const HEADER: usize = 3;

#[derive(Debug, Error)]
pub enum CodecError {
    #[error("record of {0} bytes is shorter than its header")]
    Short(usize),
    #[error("unknown record format {0}")]
    UnknownFormat(u8),
    #[error("unknown schema version {0} (this build reads up to {SCHEMA_VERSION})")]
    UnknownSchema(u16),
    #[error("undecodable record: {0}")]
    Decode(#[from] bincode::error::DecodeError),
    #[error("unencodable record: {0}")]
    Encode(#[from] bincode::error::EncodeError),
    #[error("record has {0} trailing bytes")]
    Trailing(usize),
}

fn config() -> bincode::config::Configuration {
    bincode::config::standard()
}

pub fn encode(env: &Envelope) -> Result<Vec<u8>, CodecError> {
    let mut out = Vec::with_capacity(128);
    out.push(FORMAT_BINCODE_V1);
    out.extend_from_slice(&env.schema_version.to_le_bytes());
    bincode::serde::encode_into_std_write(env, &mut out, config())?;
    Ok(out)
}

pub fn decode(bytes: &[u8]) -> Result<Envelope, CodecError> {
    if bytes.len() < HEADER {
        return Err(CodecError::Short(bytes.len()));
    }
    if bytes[0] != FORMAT_BINCODE_V1 {
        return Err(CodecError::UnknownFormat(bytes[0]));
    }
    let schema = u16::from_le_bytes([bytes[1], bytes[2]]);
    match schema {
        SCHEMA_VERSION => {
            let (env, used): (Envelope, usize) =
                bincode::serde::decode_from_slice(&bytes[HEADER..], config())?;
            let rest = bytes.len() - HEADER - used;
            if rest != 0 {
                return Err(CodecError::Trailing(rest));
            }
            Ok(env)
        }
        // Older schemas get their own decoder and an upcast here.
        other => Err(CodecError::UnknownSchema(other)),
    }
}
