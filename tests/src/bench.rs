//! What the benchmarks share: memory read from `/proc`, and ferryd and
//! ferryctl started as an administrator would.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The number after `name` on the command line (`--fill 5000`), or
/// `default` when it is not given.
pub fn arg(name: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map(|v| {
            v.parse()
                .unwrap_or_else(|_| panic!("{name} takes a number"))
        })
        .unwrap_or(default)
}

/// A `/proc/PID/status` field in MB (VmRSS, VmHWM).
pub fn status_mb(pid: u32, field: &str) -> f64 {
    try_status_mb(pid, field).unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

/// Runs `cmd` to its end, sampling its peak resident memory (VmHWM, which
/// exec resets; getrusage would count the pre-exec copy of this process).
/// Returns its exit status and that peak in MB.
pub fn run_sampled(cmd: &mut Command) -> (std::process::ExitStatus, f64) {
    let mut child = cmd.spawn().expect("spawn");
    let pid = child.id();
    let mut peak = 0.0f64;
    loop {
        if let Some(mb) = try_status_mb(pid, "VmHWM") {
            peak = peak.max(mb);
        }
        if let Some(s) = child.try_wait().expect("wait") {
            return (s, peak);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

pub fn try_status_mb(pid: u32, field: &str) -> Option<f64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb: f64 = text
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())?;
    Some(kb / 1024.0)
}

pub fn ctl(socket: &Path) -> Command {
    let mut c = Command::new(crate::bin("ferryctl"));
    c.arg("--socket").arg(socket).stdin(Stdio::null());
    c
}

pub fn start_ferryd(data: &Path, socket: &Path) -> Child {
    let mut child = Command::new(crate::bin("ferryd"))
        .arg("--data-dir")
        .arg(data)
        .arg("--socket")
        .arg(socket)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn ferryd");
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let ok = ctl(socket)
            .arg("status")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if ok {
            return child;
        }
        if let Ok(Some(s)) = child.try_wait() {
            panic!("ferryd exited at start: {s}");
        }
        assert!(Instant::now() < deadline, "ferryd did not start in 10 min");
        std::thread::sleep(Duration::from_millis(200));
    }
}
