//! The projections' integration tests, one binary.

mod fold;
