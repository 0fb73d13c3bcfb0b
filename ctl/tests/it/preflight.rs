//! `ferryctl preflight cross-tenant` on the crafted exports of ferry-exchange.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../exchange/tests/fixtures")
        .join(name)
}

fn ferryctl(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ferryctl"))
        .args(args)
        .env_remove("FERRY_SOCKET")
        .output()
        .expect("ferryctl runs")
}

fn preflight(source: &str, target: &str, extra: &[&str]) -> Output {
    preflight_files(&fixture(source), &fixture(target), extra)
}

fn preflight_files(s: &Path, t: &Path, extra: &[&str]) -> Output {
    let mut args = vec![
        "preflight",
        "cross-tenant",
        "--source",
        s.to_str().unwrap(),
        "--target",
        t.to_str().unwrap(),
    ];
    args.extend(extra);
    ferryctl(&args)
}

#[test]
fn findings_exit_1_with_a_table() {
    let out = preflight(
        "crafted-source.csv",
        "crafted-target.csv",
        &["--target-domains", "target.example,target.onmicrosoft.com"],
    );
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("licence-before-guid"), "{text}");
    assert!(text.contains("frank@source.example"), "{text}");
    assert!(
        text.trim_end().ends_with(
            "12 source mailboxes, 12 target MailUsers, target domains target.example, \
             target.onmicrosoft.com: 10 findings"
        ),
        "{text}"
    );
}

#[test]
fn json_lists_every_finding() {
    let out = preflight(
        "crafted-source.csv",
        "crafted-target.csv",
        &[
            "--json",
            "--target-domains",
            "target.example,target.onmicrosoft.com",
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let findings = v["findings"].as_array().unwrap();
    assert_eq!(findings.len(), 10);
    let exchange = findings
        .iter()
        .find(|f| f["rule"] == "exchange-guid")
        .unwrap();
    assert_eq!(exchange["object"], "sean.o'brien@source.example");
    assert_eq!(exchange["severity"], "error");
    assert!(exchange["fix"].as_str().unwrap().contains("-ExchangeGuid"));
}

#[test]
fn clean_pair_exits_0() {
    let out = preflight("clean-source.csv", "clean-target.json", &[]);
    assert_eq!(out.status.code(), Some(0), "{:?}", out);
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        text,
        "2 source mailboxes, 2 target MailUsers, target domains target.example, \
         target.onmicrosoft.com: 0 findings\n"
    );
}

#[test]
fn unreadable_input_exits_2_with_one_line() {
    let out = preflight("clean-source.csv", "no-such-file.csv", &[]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with("ferryctl: ") && err.contains("no-such-file.csv"),
        "{err}"
    );
    // A JSON file that is not JSON is refused the same way.
    let tmp = tempfile::tempdir().unwrap();
    let bad = tmp.path().join("bad.json");
    std::fs::write(&bad, "[{\"PrimarySmtpAddress\": ").unwrap();
    let out = preflight_files(&fixture("clean-source.csv"), &bad, &[]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("bad.json: line 1: invalid JSON"), "{err}");
}
