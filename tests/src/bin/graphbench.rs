//! Microsoft Graph destination benchmark: messages created into the Graph
//! simulator with Exchange Online's throttling on, the achieved rate beside
//! the rate the budget allows, and beside a baseline measured in the same
//! run (the same client and simulator with no throttling).
//!
//! `cargo run --release -p ferry-tests --bin graphbench` creates 10,000
//! messages under a budget scaled in time: `--requests` (1,000) per
//! `--window` (10 s), 4 at once, the simulator enforcing the same limits
//! and answering each request `--latency-ms` (20) late. Exchange Online's
//! own budget, 10,000 per 600 s, has the same shape; at full scale one run
//! would last an hour to show six windows. `--baseline N` (1,000) messages
//! without throttling come first. Goal: at least 90% of what the budget
//! allows.
//!
//! `--ferryd` instead runs a real ferryd: a full pass copies `--messages`
//! Maildir messages into the simulator under the same scaled budget (set
//! in ferryd's `[graph]` and enforced by the simulator), and prints the
//! request rate the mailbox achieved beside the budget's ceiling, with
//! items/s. It needs the binaries of the same profile
//! (`cargo build --release -p ferryd -p ferry-ctl`).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use clap::Parser;
use ferry_graph::model::{Address, NewMessage, Origin};
use ferry_graph::{Budgets, Credential, Graph, GraphConfig, Limits};
use ferry_tests::graph_sim::{GraphSim, SimConfig, SimLimits};

const GOAL: f64 = 0.90;
const APP: &str = "b0000000-0000-4000-8000-00000000bench";
const SECRET: &str = "bench-secret";
const USER: &str = "bench@contoso.example";
const WORKERS: usize = 8;

#[derive(Parser)]
struct Args {
    #[arg(long, default_value_t = 10_000)]
    messages: usize,
    #[arg(long, default_value_t = 1_000)]
    requests: u32,
    /// Seconds.
    #[arg(long, default_value_t = 10)]
    window: u64,
    #[arg(long, default_value_t = 20)]
    latency_ms: u64,
    #[arg(long, default_value_t = 1_000)]
    baseline: usize,
    /// Through a real ferryd from a Maildir instead of the client alone.
    #[arg(long)]
    ferryd: bool,
}

struct Run {
    elapsed: Duration,
    requests: usize,
    refused: usize,
}

/// Creates `n` messages from `WORKERS` tasks; counts what the simulator saw.
async fn run(sim: &GraphSim, limits: Limits, n: usize) -> Run {
    let graph = Graph::new(GraphConfig {
        authority: sim.authority().into(),
        tenant: sim.tenant_domain(),
        client_id: APP.into(),
        credential: Credential::Secret(SECRET.into()),
        graph_url: sim.graph_url(),
        extra_root_pem: Some(sim.ca_pem().as_bytes().to_vec()),
        budgets: Some(Arc::new(Budgets::new(limits))),
        retries: 20,
    })
    .expect("client");
    // Sign in and find the inbox outside the measured requests.
    graph
        .auth()
        .token(ferry_graph::GRAPH_SCOPE)
        .await
        .expect("sign-in");
    let inbox = sim
        .folders(USER)
        .into_iter()
        .find(|(_, _, w)| w.as_deref() == Some("inbox"))
        .expect("inbox")
        .0;
    sim.clear_requests();
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..WORKERS {
        let mb = graph.mailbox(USER).expect("mailbox");
        let (inbox, next) = (inbox.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    return;
                }
                mb.create_message(&inbox, &message(i))
                    .await
                    .expect("create");
            }
        }));
    }
    for t in tasks {
        t.await.expect("worker");
    }
    let elapsed = start.elapsed();
    let log = sim.requests();
    Run {
        elapsed,
        requests: log.iter().filter(|r| r.mailbox == USER).count(),
        refused: log.iter().filter(|r| r.status == 429).count(),
    }
}

fn message(i: usize) -> NewMessage {
    NewMessage {
        subject: format!("message {i}"),
        body: "x".repeat(2000),
        from: Some(Address {
            name: "Sender".into(),
            address: "sender@fabrikam.example".into(),
        }),
        to: vec![Address {
            name: String::new(),
            address: USER.into(),
        }],
        received: chrono::Utc::now(),
        is_read: i.is_multiple_of(2),
        origin: Some(Origin {
            key: format!("INBOX/1:{i}"),
            digest: format!("{i:064x}"),
        }),
        ..Default::default()
    }
}

/// A full pass of ferryd from a Maildir of `a.messages` into the
/// simulator, under `a.requests` per `a.window`, 4 at once.
fn through_ferryd(a: &Args) {
    let user = "bench";
    let address = format!("{user}@new.example");
    let window = Duration::from_secs(a.window);
    let root = tempfile::tempdir().expect("temp dir");
    let spec = ferry_tests::sample::SampleSpec {
        seed: 5,
        messages: a.messages,
        attachment_percent: 0,
        huge: 0,
    };
    tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime")
        .block_on(async {
            let path = root.path().join(format!("{user}@old.example"));
            let mut m = ferry_connectors::maildir::open(&path, true).expect("maildir");
            ferry_tests::sample::fill(&mut m, &spec)
                .await
                .expect("fill");
        });
    let sim = GraphSim::start(SimConfig {
        latency: Duration::from_millis(a.latency_ms),
        limits: Some(SimLimits {
            concurrent: 4,
            requests: a.requests + a.requests / 100,
            window,
            ..SimLimits::EXCHANGE_ONLINE
        }),
        ..SimConfig::default()
    });
    sim.add_app_secret(APP, SECRET);
    sim.add_user(&address);
    let config = format!(
        "[graph]\nrequests = {}\nrequest_window_s = {}\nconcurrent = 4\n",
        a.requests, a.window
    );
    let ferry = ferry_tests::Ferryd::start_with_config(&config);
    ferry.add_maildir_endpoint("old", root.path());
    let secret = ferry.file("bench.secret", &format!("{SECRET}\n"));
    ferry.ctl_ok(&[
        "endpoint",
        "add",
        "m365",
        "--kind",
        "graph",
        "--tenant",
        &sim.tenant_domain(),
        "--client-id",
        APP,
        "--client-secret-file",
        secret.to_str().expect("path"),
        "--authority",
        sim.authority(),
        "--graph-url",
        &sim.graph_url(),
        "--ca-file",
        sim.ca_path().to_str().expect("path"),
    ]);
    ferry.create_batch("wave", "old", "m365", &[user], &[]);
    sim.clear_requests();
    let t = Instant::now();
    ferry.ctl_ok(&["batch", "start", "wave", "--pass", "full"]);
    ferry.ctl_ok(&["batch", "wait", "wave", "--timeout", "3600"]);
    let secs = t.elapsed().as_secs_f64();
    let log = sim.requests();
    let requests = log.iter().filter(|r| r.mailbox == address).count();
    let refused = log.iter().filter(|r| r.status == 429).count();
    let batches = log.iter().filter(|r| r.path.ends_with("$batch")).count();
    let copied = ferry.events_of("ItemCopied").len();
    let held = sim.messages(&address).len();
    // The mailbox's requests from its first to its last: the rate while
    // copying, without the pass's start and `batch wait`'s polling.
    let times: Vec<Duration> = log
        .iter()
        .filter(|r| r.mailbox == address)
        .map(|r| r.at)
        .collect();
    let span = match (times.iter().min(), times.iter().max()) {
        (Some(a), Some(b)) => (*b - *a).as_secs_f64(),
        _ => 0.0,
    };
    let ceiling = f64::from(a.requests) / a.window as f64;
    let rate = requests as f64 / secs;
    // The budget lets the k-th group of `requests` start at (k-1) windows.
    let groups = requests.div_ceil(a.requests as usize) as u32;
    let fastest = (window * groups.saturating_sub(1)).as_secs_f64();
    println!(
        "graphbench --ferryd: {} Maildir messages through ferryd, {} requests per {} s (Exchange Online's 10,000 per 600 s, scaled), 4 at once, {} ms per request",
        a.messages, a.requests, a.window, a.latency_ms
    );
    println!(
        "full pass: {copied} copied ({held} at the simulator) in {secs:.1} s: {:.1} items/s; {requests} requests ({batches} $batch), {refused} answered 429",
        copied as f64 / secs
    );
    println!(
        "request rate {rate:.1}/s against the budget's ceiling {ceiling:.1}/s: {:.1}% (goal {:.0}%); the budget's fastest schedule for {requests} requests takes {fastest:.1} s: {:.1}% of that",
        rate / ceiling * 100.0,
        GOAL * 100.0,
        fastest / secs * 100.0
    );
    println!(
        "while copying (first to last request, {span:.1} s): {:.1}/s, {:.1}% of the ceiling",
        requests as f64 / span.max(1e-9),
        requests as f64 / span.max(1e-9) / ceiling * 100.0
    );
    if rate / ceiling < GOAL {
        println!("BELOW GOAL");
    }
}

fn main() {
    let a = Args::parse();
    if a.ferryd {
        through_ferryd(&a);
        return;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let window = Duration::from_secs(a.window);
    let latency = Duration::from_millis(a.latency_ms);

    // Baseline: no budget, no service limits; 4 at once as the budget has it.
    let sim = GraphSim::start(SimConfig {
        latency,
        limits: None,
        ..SimConfig::default()
    });
    sim.add_app_secret(APP, SECRET);
    sim.add_user(USER);
    let open = Limits {
        requests: u32::MAX,
        upload_bytes: u64::MAX,
        ..Limits::EXCHANGE_ONLINE
    };
    let base = rt.block_on(run(&sim, open, a.baseline));
    drop(sim);
    let base_rate = a.baseline as f64 / base.elapsed.as_secs_f64();

    // Throttled: the client's budget and the service's limits alike (the
    // service with 1% of slack for loopback jitter, as a count at the
    // server is a few milliseconds late).
    let limits = Limits {
        concurrent: 4,
        requests: a.requests,
        request_window: window,
        ..Limits::EXCHANGE_ONLINE
    };
    let sim = GraphSim::start(SimConfig {
        latency,
        limits: Some(SimLimits {
            concurrent: 4,
            requests: a.requests + a.requests / 100,
            window,
            ..SimLimits::EXCHANGE_ONLINE
        }),
        ..SimConfig::default()
    });
    sim.add_app_secret(APP, SECRET);
    sim.add_user(USER);
    let t = rt.block_on(run(&sim, limits, a.messages));
    let rate = a.messages as f64 / t.elapsed.as_secs_f64();
    // The budget lets the k-th group of `requests` start at (k-1) windows.
    let groups = a.messages.div_ceil(a.requests as usize) as u32;
    let fastest = window * groups.saturating_sub(1);
    let allowed = a.messages as f64 / fastest.as_secs_f64().max(1e-9);
    let share = fastest.as_secs_f64() / t.elapsed.as_secs_f64();
    // The same bound with the last group taking as long as the baseline
    // needs for it: what the budget allows on this machine.
    let last_group = a.messages - (groups as usize - 1) * a.requests as usize;
    let reachable = fastest.as_secs_f64() + last_group as f64 / base_rate;
    let share_here = reachable / t.elapsed.as_secs_f64();

    println!(
        "graphbench: {} messages, {} workers, {} ms per request at the simulator",
        a.messages, WORKERS, a.latency_ms
    );
    println!(
        "baseline (no throttling, {} messages): {:.0} messages/s",
        a.baseline, base_rate
    );
    println!(
        "throttled ({} requests per {} s, 4 at once): {:.1} messages/s in {:.1} s, {} requests, {} answered 429",
        a.requests,
        a.window,
        rate,
        t.elapsed.as_secs_f64(),
        t.requests,
        t.refused
    );
    println!(
        "the budget allows {:.1} messages/s over this run (long-run ceiling {:.1}/s); achieved {:.1}% of it (goal {:.0}%), {:.2}x the baseline",
        allowed,
        a.requests as f64 / a.window as f64,
        share * 100.0,
        GOAL * 100.0,
        rate / base_rate
    );
    println!(
        "with the last group at the baseline's speed the budget allows the run {:.1} s: achieved {:.1}% of that",
        reachable,
        share_here * 100.0
    );
    if share < GOAL {
        println!("BELOW GOAL");
    }
}
