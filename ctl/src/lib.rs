//! What of ferryctl other crates reach: the audit export verifier, which
//! the fuzz targets exercise too.

pub mod verify;
