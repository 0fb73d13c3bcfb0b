//! Integration tests, one binary.

mod golden;
mod hooks;
mod preflight_input;
