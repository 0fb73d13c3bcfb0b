//! The committed fuzz corpora (`fuzz/corpus/TARGET/`), replayed through the
//! fuzz targets' bodies on stable: every input a fuzzer once kept, or that
//! once broke a target, stays a test here.

use std::path::Path;

use ferry_tests::fuzzing;

fn replay(target: &str, body: fn(&[u8])) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(target);
    let mut replayed = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let data = std::fs::read(&path).unwrap();
        let run = std::panic::catch_unwind(|| body(&data));
        assert!(run.is_ok(), "{target} panicked on {}", path.display());
        replayed += 1;
    }
    assert!(replayed > 0, "no corpus in {}", dir.display());
}

/// One test per target, named as the target and its corpus folder.
macro_rules! corpus_tests {
    ($($target:ident),*) => {$(
        #[test]
        fn $target() {
            replay(stringify!($target), fuzzing::$target);
        }
    )*};
}

corpus_tests!(
    csv_import,
    control_request,
    imap_response,
    maildir_names,
    schedule_expr,
    audit_verify
);
