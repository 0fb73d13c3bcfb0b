//! ferryd and ferryctl against real servers: one test binary, so the
//! workspace's dependency tree is linked once. The crash tests re-execute
//! it by a test's full path (`log_crash::crash_child`).

mod admin;
mod adopt;
mod audit;
mod cutover;
mod cyrus;
mod daemon;
mod day2_engine;
mod described;
mod dns;
mod engine;
mod engine_crash;
mod engine_faults;
mod ews;
mod ews_engine;
mod ews_graph;
mod fleet;
mod fuzz_corpora;
mod graph;
mod graph_delta;
mod graph_engine;
mod graph_source;
mod hardening;
mod layout;
mod log_crash;
mod notify;
mod passes;
mod pg_store;
mod progress;
mod runbook;
mod schedule;
mod upgrade;
