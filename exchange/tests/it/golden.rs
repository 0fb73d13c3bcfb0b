//! Golden tests: generated runbooks and preflight findings compared exactly
//! with the files under `tests/golden/`. `FERRY_WRITE_GOLDEN=1` rewrites
//! them; review the diff before committing.

use std::path::{Path, PathBuf};

use ferry_exchange::preflight::{self, Options, Rule};
use ferry_exchange::runbook::{self, BatchRunbook, CutoverRunbook, User};

fn dir(sub: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join(sub)
}

fn golden(name: &str, actual: &str) {
    let path = dir("golden").join(name);
    if std::env::var_os("FERRY_WRITE_GOLDEN").is_some() {
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (FERRY_WRITE_GOLDEN=1 creates it)", path.display()));
    if expected != actual {
        let line = expected
            .lines()
            .zip(actual.lines())
            .position(|(a, b)| a != b)
            .map(|i| i + 1)
            .unwrap_or(expected.lines().count().min(actual.lines().count()) + 1);
        panic!(
            "{} differs from the generated text from line {line}:\n{actual}",
            path.display()
        );
    }
}

fn users() -> Vec<User> {
    vec![
        User {
            source: "zoe@source.example".into(),
            destination: "zoë.ångström@target.example".into(),
        },
        User {
            source: "sean.o'brien@source.example".into(),
            destination: "sean.o'brien@target.example".into(),
        },
        User {
            source: "mike@source.example".into(),
            destination: "mike@target.example".into(),
        },
    ]
}

#[test]
fn batch_setup_runbook() {
    let rb = BatchRunbook::new("sales-q1", users(), "mail.source.example");
    golden(
        &runbook::batch_setup_file_name("sales-q1"),
        &runbook::batch_setup(&rb),
    );
}

#[test]
fn cutover_runbooks() {
    for user in &users()[..2] {
        let rb = CutoverRunbook::new("sales-q1", user.clone());
        for r in runbook::cutover(&rb) {
            golden(&r.file_name, &r.text);
        }
    }
}

#[test]
fn every_value_is_quoted() {
    let rb = BatchRunbook::new("o'neil's batch", users(), "smart'host");
    let text = runbook::batch_setup(&rb);
    assert!(text.contains("$group = 'ferry-not-migrated-o''neil''s batch'"));
    assert!(text.contains("$smartHost = 'smart''host'"));
    assert!(text.contains("    'sean.o''brien@target.example',"));
    assert!(!text.contains("o'brien"));
}

fn opts() -> Options {
    Options {
        target_domains: vec!["target.example".into(), "target.onmicrosoft.com".into()],
    }
}

fn render(findings: &[preflight::Finding]) -> String {
    findings.iter().map(|f| format!("{f}\n")).collect()
}

#[test]
fn preflight_crafted_exports_fail_every_rule_once() {
    let sources = preflight::load_sources(&dir("fixtures").join("crafted-source.csv")).unwrap();
    let targets = preflight::load_targets(&dir("fixtures").join("crafted-target.csv")).unwrap();
    assert_eq!(sources.len(), 12);
    assert_eq!(targets.len(), 12);
    let findings = preflight::check(&sources, &targets, &opts());
    golden("preflight-crafted.txt", &render(&findings));
    // Each rule but the batch size (its own test) exactly once.
    for rule in [
        Rule::NoTarget,
        Rule::AmbiguousTarget,
        Rule::ExchangeGuid,
        Rule::ArchiveGuid,
        Rule::LegacyDnX500,
        Rule::X500Proxies,
        Rule::ForeignSmtpProxy,
        Rule::LicenceBeforeGuid,
        Rule::DelegateBatch,
        Rule::DelegateNotMigrated,
    ] {
        let n = findings.iter().filter(|f| f.rule == rule).count();
        assert_eq!(n, 1, "{rule}: {n} findings");
    }
    assert_eq!(findings.len(), 10);
}

#[test]
fn preflight_clean_pair_has_no_findings() {
    let sources = preflight::load_sources(&dir("fixtures").join("clean-source.csv")).unwrap();
    let targets = preflight::load_targets(&dir("fixtures").join("clean-target.json")).unwrap();
    assert_eq!(targets.len(), 2);
    assert!(targets[1].licensed);
    let findings = preflight::check(&sources, &targets, &opts());
    assert_eq!(render(&findings), "");
    // Without --target-domains the tenant's domains come from the export.
    let findings = preflight::check(&sources, &targets, &Options::default());
    assert_eq!(render(&findings), "");
}

#[test]
fn preflight_batch_over_2000() {
    let tmp = tempfile::tempdir().unwrap();
    let mut src = String::from("PrimarySmtpAddress,ExchangeGuid,LegacyExchangeDN,Batch\n");
    let mut tgt =
        String::from("PrimarySmtpAddress,ExternalEmailAddress,ExchangeGuid,EmailAddresses\n");
    for i in 0..2001u32 {
        let guid = format!("00000000-0000-4000-8000-{:012x}", i + 1);
        let dn = format!("/o=Org/cn=Recipients/cn=u{i}");
        src.push_str(&format!("u{i}@source.example,{guid},{dn},big\n"));
        tgt.push_str(&format!(
            "u{i}@target.example,u{i}@source.example,{guid},smtp:u{i}@target.example;x500:{dn}\n"
        ));
    }
    src.push_str("v@source.example,00000000-0000-4000-9000-000000000001,/o=Org/cn=v,small\n");
    tgt.push_str(
        "v@target.example,v@source.example,00000000-0000-4000-9000-000000000001,x500:/o=Org/cn=v\n",
    );
    std::fs::write(tmp.path().join("s.csv"), src).unwrap();
    std::fs::write(tmp.path().join("t.csv"), tgt).unwrap();
    let sources = preflight::load_sources(&tmp.path().join("s.csv")).unwrap();
    let targets = preflight::load_targets(&tmp.path().join("t.csv")).unwrap();
    let findings = preflight::check(&sources, &targets, &opts());
    golden("preflight-batch-size.txt", &render(&findings));
    assert_eq!(findings.len(), 1);
    assert_eq!(findings[0].rule, Rule::BatchSize);
}
