//! Memory of `audit export` over a large log, beside its goal.
//!
//! `cargo run --release -p ferry-tests --bin exportbench` fills a store with
//! 10,000,000 events, starts ferryd on it, and streams `ferryctl audit
//! export` of the whole log to /dev/null. It prints ferryd's resident memory
//! idle after start-up (the baseline), ferryd's peak while exporting (its
//! peak counter is reset just before), and ferryctl's peak. `--quick` uses
//! 1,000,000 events; `--events N` picks N; `--verify` writes the export to a
//! file and runs `ferryctl audit verify` on it too (needs the disk space).

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ferry_events::{EventStore, SegmentStore};
use ferry_tests::bench::{ctl, run_sampled, start_ferryd, status_mb};
use ferry_tests::loggen::generate;

/// Most memory an export may add to either process.
const GOAL_MB: f64 = 100.0;

struct Args {
    events: u64,
    verify: bool,
}

fn args() -> Args {
    let mut a = Args {
        events: 10_000_000,
        verify: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--quick" => a.events = 1_000_000,
            "--verify" => a.verify = true,
            "--events" => {
                a.events = it
                    .next()
                    .and_then(|v| v.replace('_', "").parse().ok())
                    .expect("--events takes a number")
            }
            other => panic!("unknown argument {other}; use --quick, --events N, --verify"),
        }
    }
    a
}

fn main() {
    let args = args();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let tmp = tempfile::tempdir().expect("temp dir");
    let data = tmp.path().join("data");
    let socket = tmp.path().join("ferryd.sock");

    let t = Instant::now();
    let head = rt.block_on(async {
        let store = Arc::new(SegmentStore::open(&data.join("log")).expect("open store"));
        generate(store.clone(), args.events).await;
        let head = store.head();
        store.close();
        head
    });
    println!(
        "exportbench: {head} events written in {:.1} s",
        t.elapsed().as_secs_f64()
    );

    let t = Instant::now();
    let mut ferryd = start_ferryd(&data, &socket);
    let pid = ferryd.id();
    let start_s = t.elapsed().as_secs_f64();
    // Let start-up settle (snapshot written, allocator returned memory).
    std::thread::sleep(Duration::from_secs(2));
    let startup_peak = status_mb(pid, "VmHWM");
    let idle = status_mb(pid, "VmRSS");
    // Writing 5 to clear_refs resets the peak to the current resident size.
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").expect("reset peak RSS");

    let out: PathBuf = if args.verify {
        tmp.path().join("export.jsonl")
    } else {
        "/dev/null".into()
    };
    let sink = std::fs::File::create(&out).expect("export sink");
    let t = Instant::now();
    let (status, ctl_peak) = run_sampled(
        ctl(&socket)
            .args(["audit", "export"])
            .stdout(Stdio::from(sink)),
    );
    let export_s = t.elapsed().as_secs_f64();
    assert!(status.success(), "export failed: {status}");
    let export_peak = status_mb(pid, "VmHWM");

    let mut verify = None;
    if args.verify {
        let t = Instant::now();
        let said = tmp.path().join("verify.out");
        let (status, peak) = run_sampled(ctl(&socket).args(["audit", "verify"]).arg(&out).stdout(
            Stdio::from(std::fs::File::create(&said).expect("verify output")),
        ));
        assert!(status.success(), "verify failed: {status}");
        let size = std::fs::metadata(&out).map(|m| m.len()).unwrap_or(0);
        verify = Some((
            t.elapsed().as_secs_f64(),
            peak,
            size,
            std::fs::read_to_string(&said)
                .unwrap_or_default()
                .trim()
                .to_string(),
        ));
    }

    ferry_tests::signal(pid, libc::SIGTERM);
    let _ = ferry_tests::wait_timeout(&mut ferryd, Duration::from_secs(60));

    let ok = |mb: f64| if mb < GOAL_MB { "ok" } else { "MISSED" };
    println!(
        "ferryd start-up (replay of {head} events): {start_s:.1} s, peak RSS {startup_peak:.1} MB"
    );
    println!("ferryd idle after start-up (baseline):     RSS {idle:.1} MB");
    println!(
        "export of {head} events: {export_s:.1} s ({:.0} events/s)",
        head as f64 / export_s
    );
    let added = export_peak - idle;
    println!(
        "ferryd peak RSS while exporting:           {export_peak:.1} MB (+{added:.1} MB over baseline; goal < {GOAL_MB} MB) {}",
        ok(added)
    );
    println!(
        "ferryctl peak RSS (whole process):         {ctl_peak:.1} MB (goal < {GOAL_MB} MB) {}",
        ok(ctl_peak)
    );
    if let Some((s, peak, size, said)) = verify {
        println!(
            "verify of the {:.0} MB file: {s:.1} s, ferryctl peak RSS {peak:.1} MB: {said}",
            size as f64 / 1e6
        );
    }
}
