//! Batch CSV files against their expected outcome, kept beside them as
//! `NAME.golden`. `FERRY_WRITE_GOLDEN=1` rewrites the expectations (then
//! read the diff before committing it).

use std::path::{Path, PathBuf};

use ferryd::csvimport::{self, MAX_ROWS};

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/csv")
}

/// The parse outcome as text; passwords show only whether they are set.
fn render(text: &str) -> String {
    let set = |p: &Option<String>| if p.is_some() { "set" } else { "-" };
    let opt = |s: &Option<String>| s.clone().unwrap_or_else(|| "-".into());
    match csvimport::parse(text) {
        Err(e) => format!("refused: {e}\n"),
        Ok(rows) => {
            let mut out = format!("ok: {} rows\n", rows.len());
            for r in rows.iter().take(3).chain(rows.iter().skip(3).last()) {
                out.push_str(&format!(
                    "line {}: {} -> {}; source login {}, password {}; destination login {}, password {}\n",
                    r.line,
                    r.address,
                    r.destination_address,
                    opt(&r.source_login),
                    set(&r.source_password),
                    opt(&r.destination_login),
                    set(&r.destination_password),
                ));
            }
            out
        }
    }
}

fn rows(n: usize) -> String {
    let mut s = String::from("SourceEmail,DestinationEmail\n");
    for i in 0..n {
        s.push_str(&format!("u{i}@old.example,u{i}@new.example\n"));
    }
    s
}

#[test]
fn every_file_parses_as_its_golden_says() {
    let mut cases: Vec<(String, String)> = std::fs::read_dir(dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "csv"))
        .map(|p| {
            let name = p.file_stem().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read_to_string(&p).unwrap())
        })
        .collect();
    cases.push((format!("rows-{MAX_ROWS}"), rows(MAX_ROWS)));
    cases.push((format!("rows-{}", MAX_ROWS + 1), rows(MAX_ROWS + 1)));
    cases.sort();
    assert!(cases.len() >= 15, "the case files are missing");
    let write = std::env::var_os("FERRY_WRITE_GOLDEN").is_some();
    let mut wrong = Vec::new();
    for (name, text) in &cases {
        let got = render(text);
        let golden = dir().join(format!("{name}.golden"));
        if write {
            std::fs::write(&golden, &got).unwrap();
        }
        let want = std::fs::read_to_string(&golden)
            .unwrap_or_else(|_| panic!("{} is missing", golden.display()));
        if got != want {
            wrong.push(format!("{name}:\n  want {want:?}\n  got  {got:?}"));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}
