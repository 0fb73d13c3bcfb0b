//! The PostgreSQL event store beside the segment store, in the same run.
//!
//! `cargo run --release -p ferry-tests --bin storebench` starts a
//! PostgreSQL (fsync on) and, for each store: appends of one ItemCopied
//! from 1, 16 and 64 tasks, then a replay (read and decode) of what was
//! written plus a bulk fill. `-- --appends N` sets the appends per phase
//! (default 4,000), `-- --fill N` the bulk events (default 200,000).

use ferry_testservers::Postgres;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let total = ferry_tests::bench::arg("--appends", 4_000);
    let bulk = ferry_tests::bench::arg("--fill", 200_000);
    let pg = Postgres::start_with(true).expect("start PostgreSQL (apt-get install postgresql)");
    ferry_tests::storerates::compare(&pg.url(), total, bulk).await;
}
