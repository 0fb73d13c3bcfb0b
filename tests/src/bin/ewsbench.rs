//! GetItem throughput of ferry-ews against the EWS simulator, beside the
//! simulator's own serving rate.
//!
//! `cargo run --release -p ferry-tests --bin ewsbench [-- --messages N]`
//! fills a simulated Exchange 2016 mailbox with N messages (10,000 by
//! default), lists them with SyncFolderItems, then fetches them all with
//! GetItem (MIME included) in batches over NTLM, at most `--parallel`
//! calls at once. It prints items per second and HTTP requests per item (as
//! the simulator counts them, NTLM legs included),
//! then the same GetItem requests served by the simulator in-process (no
//! TLS, no HTTP, no client): the baseline, and the ratio between the two.
//!
//! Then the product itself: ferryd copies the same mailbox to a Maildir
//! tree in a full pass (acting through an impersonating admin, as a
//! migration account does), and a delta pass that finds no change. Its
//! items per second, requests per item and peak memory print beside the
//! two rates above.

use std::time::Instant;

use clap::Parser;
use ferry_connectors::maildir;
use ferry_ews::{
    AuthKind, Change, Credentials, Endpoint, EndpointConfig, FolderKind, ItemId, Mailbox, ops,
};
use ferry_tests::Ferryd;
use ferry_tests::bench::try_status_mb;
use ferry_tests::ews_sim::{EwsSim, SimConfig};
use ferry_tests::sample::{self, SampleSpec};

#[derive(Parser)]
struct Args {
    #[arg(long, default_value_t = 10_000)]
    messages: usize,
    /// Items per GetItem call.
    #[arg(long, default_value_t = 100)]
    batch: usize,
    #[arg(long, default_value_t = 4)]
    parallel: usize,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let sim = EwsSim::start(SimConfig::default());
    let alice = sim.add_user("alice", "bench-pw");
    sim.populate_spec(&alice, &spec(args.messages), 0);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let (ids, fetched_bytes, secs, http, ops_sent, version) = rt.block_on(async {
        let mut cfg = EndpointConfig::new(sim.url());
        cfg.ca_file = Some(sim.ca_file());
        let ep = Endpoint::new(&cfg)?;
        let creds = Credentials::new(AuthKind::Ntlm, "SIM\\alice", "bench-pw");
        let mb = Mailbox::open(&ep, creds, None).await?;
        let mut ids: Vec<ItemId> = Vec::new();
        for f in mb.folders().await? {
            if f.kind != FolderKind::Mail {
                continue;
            }
            let mut state = None;
            loop {
                let page = mb.sync_items(&f.id, state.as_deref(), 512).await?;
                ids.extend(page.changes.into_iter().filter_map(|c| match c {
                    Change::Create(i) => Some(i.id),
                    _ => None,
                }));
                state = Some(page.sync_state);
                if page.last {
                    break;
                }
            }
        }
        anyhow::ensure!(
            ids.len() == args.messages,
            "listed {} of {}",
            ids.len(),
            args.messages
        );
        let stats = ep.stats();
        // Counted by the server: every NTLM leg is a request.
        let http0 = sim.counters().http_requests;
        let ops0 = stats.operations.load(std::sync::atomic::Ordering::Relaxed);
        let t = Instant::now();
        let sem = std::sync::Arc::new(tokio::sync::Semaphore::new(args.parallel));
        let mut set = tokio::task::JoinSet::new();
        for batch in ids.chunks(args.batch) {
            let (mb, batch, sem) = (mb.clone(), batch.to_vec(), sem.clone());
            set.spawn(async move {
                let _p = sem.acquire_owned().await.unwrap();
                let got = mb.get_items(&batch).await?;
                Ok::<u64, ferry_ews::EwsError>(
                    got.iter()
                        .map(|f| match f {
                            ferry_ews::Fetched::Item(i) => i.mime.len() as u64,
                            ferry_ews::Fetched::Missing { .. } => 0,
                        })
                        .sum(),
                )
            });
        }
        let mut bytes = 0;
        while let Some(r) = set.join_next().await {
            bytes += r??;
        }
        let secs = t.elapsed().as_secs_f64();
        let http = sim.counters().http_requests - http0;
        let ops_sent = stats.operations.load(std::sync::atomic::Ordering::Relaxed) - ops0;
        Ok::<_, anyhow::Error>((ids, bytes, secs, http, ops_sent, mb.version()))
    })?;
    let n = ids.len() as f64;
    println!(
        "ferry-ews GetItem: {} messages ({:.1} MB of MIME) in {secs:.2} s: {:.0} items/s, \
         {:.4} HTTP requests/item, {:.4} SOAP calls/item (batches of {}, {} at once)",
        ids.len(),
        fetched_bytes as f64 / 1e6,
        n / secs,
        http as f64 / n,
        ops_sent as f64 / n,
        args.batch,
        args.parallel
    );
    // Baseline: the same requests, served in-process.
    let bodies: Vec<Vec<u8>> = ids
        .chunks(args.batch)
        .map(|b| ops::envelope(version, None, |x| ops::get_items(x, version, b)))
        .collect();
    let t = Instant::now();
    for b in &bodies {
        let (status, _) = sim.serve_direct("alice@sim.example", b);
        anyhow::ensure!(status == 200, "the simulator answered {status}");
    }
    let base = t.elapsed().as_secs_f64();
    println!(
        "simulator alone (baseline, same {} requests in-process): {:.0} items/s",
        bodies.len(),
        n / base
    );
    println!("ratio ferry-ews / simulator alone: {:.2}", base / secs);
    through_ferryd(&sim, ids.len(), n / secs, n / base)
}

/// A full pass and a no-change delta pass of alice's mailbox by ferryd.
fn through_ferryd(sim: &EwsSim, items: usize, client: f64, alone: f64) -> anyhow::Result<()> {
    sim.add_account("migrator", "bench-admin-pw", true, false);
    let ferry = Ferryd::start();
    ferry.add_ews_endpoint("ex", sim, ("migrator", "bench-admin-pw"), &[]);
    let root = ferry.dir().join("maildirs");
    std::fs::create_dir_all(&root)?;
    ferry.add_maildir_endpoint("md", &root);
    ferry.create_ews_batch("wave", ["ex", "md"], &["alice"], &[]);
    let n = items as f64;
    let mut full_rate = 0.0;
    for pass in ["full", "delta"] {
        let before = sim.counters();
        let t = Instant::now();
        ferry.ctl_ok(&["batch", "start", "wave", "--pass", pass]);
        ferry.ctl_ok(&["batch", "wait", "wave", "--timeout", "3600"]);
        let secs = t.elapsed().as_secs_f64();
        let after = sim.counters();
        let soap = |c: &ferry_tests::ews_sim::Counters| c.operations.values().sum::<u64>();
        let http = after.http_requests - before.http_requests;
        let calls = soap(&after) - soap(&before);
        if pass == "full" {
            full_rate = n / secs;
            let copied = ferry.events_of("ItemCopied").len();
            anyhow::ensure!(copied == items, "ferryd copied {copied} of {items}");
            let peak = try_status_mb(ferry.pid(), "VmHWM").unwrap_or(0.0);
            println!(
                "ferryd full pass to Maildir: {items} messages in {secs:.2} s: {:.0} items/s, \
                 {:.4} HTTP requests/item, {:.4} SOAP calls/item, ferryd peak {peak:.0} MB",
                n / secs,
                http as f64 / n,
                calls as f64 / n,
            );
            println!(
                "ratio ferryd / ferry-ews alone: {:.2}; ferryd / simulator alone: {:.2}",
                n / secs / client,
                n / secs / alone
            );
        } else {
            println!(
                "ferryd no-change delta pass: {secs:.2} s, {http} HTTP requests, {calls} SOAP calls"
            );
        }
    }
    // Baseline: the same messages from a Maildir source, to the same kind
    // of destination, in the same ferryd.
    let src = ferry.dir().join("source");
    let spec = spec(items);
    tokio::runtime::Builder::new_current_thread()
        .build()?
        .block_on(async {
            let mut s = maildir::open(&src.join("alice@old.example"), true)?;
            sample::fill(&mut s, &spec).await
        })?;
    ferry.add_maildir_endpoint("old", &src);
    ferry.create_batch("base", "old", "md", &["alice"], &[]);
    let t = Instant::now();
    ferry.run_pass("base", "full");
    let secs = t.elapsed().as_secs_f64();
    println!(
        "ferryd full pass Maildir to Maildir, same messages (baseline): {secs:.2} s: {:.0} items/s",
        n / secs
    );
    println!(
        "ratio ferryd from EWS / ferryd from Maildir: {:.2}",
        full_rate / (n / secs)
    );
    Ok(())
}

/// The sample both sources hold.
fn spec(messages: usize) -> SampleSpec {
    SampleSpec {
        seed: 42,
        messages,
        attachment_percent: 0,
        huge: 0,
    }
}
