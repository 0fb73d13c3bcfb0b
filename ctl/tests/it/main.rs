//! ferryctl's integration tests, one binary.

mod preflight;
