//! Bad exports give one clear error naming the file, line and field.

use ferry_exchange::preflight::{self, LoadError};

fn load(name: &str, text: &[u8]) -> (tempfile::TempDir, Result<usize, LoadError>) {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join(name);
    std::fs::write(&path, text).unwrap();
    let r = preflight::load_sources(&path).map(|v| v.len());
    (tmp, r)
}

fn err(name: &str, text: &str) -> String {
    let (_tmp, r) = load(name, text.as_bytes());
    let e = r.expect_err("should be refused").to_string();
    e.split_once(&format!("{name}: "))
        .map(|(_, m)| m.to_string())
        .unwrap_or(e)
}

const HEAD: &str = "PrimarySmtpAddress,ExchangeGuid,LegacyExchangeDN,EmailAddresses\n";

#[test]
fn bad_guid_names_line_and_field() {
    let text = format!(
        "{HEAD}a@s.example,00000000-0000-4000-8000-000000000001,/o=O/cn=a,\nb@s.example,not-a-guid,/o=O/cn=b,\n"
    );
    assert_eq!(
        err("s.csv", &text),
        "line 3: ExchangeGuid: \"not-a-guid\" is not a GUID"
    );
}

#[test]
fn type_line_counts_in_line_numbers() {
    let text = format!(
        "#TYPE Deserialized.Mailbox\n{HEAD}a@s.example,00000000-0000-4000-8000-000000000001,,\n"
    );
    assert_eq!(err("s.csv", &text), "line 3: LegacyExchangeDN: empty");
}

#[test]
fn short_row_is_refused() {
    let text = format!("{HEAD}a@s.example,00000000-0000-4000-8000-000000000001\n");
    assert_eq!(
        err("s.csv", &text),
        "line 2: 2 fields where the header has 4"
    );
}

#[test]
fn missing_column_and_empty_file() {
    assert_eq!(
        err("s.csv", "PrimarySmtpAddress,ExchangeGuid\na@s.example,\n"),
        "no LegacyExchangeDN column"
    );
    assert_eq!(err("s.csv", HEAD), "holds no records");
    assert_eq!(
        err("s.csv", "PrimarySmtpAddress;ExchangeGuid\n"),
        "line 1: not a comma-separated export (one column only)"
    );
}

#[test]
fn unexpanded_collection_is_explained() {
    let text = format!(
        "{HEAD}a@s.example,00000000-0000-4000-8000-000000000001,/o=O/cn=a,Microsoft.Exchange.Data.ProxyAddressCollection\n"
    );
    assert_eq!(
        err("s.csv", &text),
        "line 2: EmailAddresses: holds the type name Microsoft.Exchange.Data.ProxyAddressCollection, \
         not the values; export it with @{n='EmailAddresses';e={$_.EmailAddresses -join ';'}}"
    );
}

#[test]
fn json_errors_name_the_object() {
    assert_eq!(
        err(
            "s.json",
            r#"[{"PrimarySmtpAddress":"a@s.example","ExchangeGuid":"x","LegacyExchangeDN":"/o=O"}]"#
        ),
        "object 1: ExchangeGuid: \"x\" is not a GUID"
    );
    assert!(err("s.json", "[{\"a\": 1},").starts_with("line 1: invalid JSON"));
}

#[test]
fn utf16_export_with_single_object_loads() {
    // Windows PowerShell's `ConvertTo-Json > file` writes UTF-16LE.
    let json = r#"{"PrimarySmtpAddress":"zoë@s.example","ExchangeGuid":{"Guid":"00000000-0000-4000-8000-000000000001"},"LegacyExchangeDN":"/o=O/cn=z","EmailAddresses":["SMTP:zoë@s.example","X500:/o=Old/cn=z"],"GrantSendOnBehalfTo":null}"#;
    let mut bytes = vec![0xFF, 0xFE];
    bytes.extend(json.encode_utf16().flat_map(u16::to_le_bytes));
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("s.json");
    std::fs::write(&path, bytes).unwrap();
    let s = preflight::load_sources(&path).unwrap();
    assert_eq!(s.len(), 1);
    assert_eq!(s[0].primary_smtp, "zoë@s.example");
    assert_eq!(s[0].email_addresses.len(), 2);
    assert!(s[0].delegates.is_empty());
}

#[test]
fn unreadable_file() {
    let e = preflight::load_targets(std::path::Path::new("/nonexistent/t.csv")).unwrap_err();
    assert!(matches!(e, LoadError::Io { .. }), "{e}");
}
