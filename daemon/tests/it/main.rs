//! ferryd's integration tests, one binary.

mod batch_rules;
mod csv_golden;
mod scheduler;
