//! Batch CSV files, by Microsoft's rules.
//!
//! Three layouts are recognised by their header:
//! - IMAP migration: `EmailAddress,UserName,Password` (destination address,
//!   source login, source password);
//! - staged migration: `EmailAddress,Password,ForceChangePassword`;
//! - bulk: `SourceEmail,DestinationEmail` and optionally `SourceLogin`,
//!   `SourcePassword`, `DestinationLogin`, `DestinationPassword`.
//!
//! A file is refused, naming the line and reason, when it is empty, not
//! comma-separated, over 2,000 rows, lacks its required header, or has a row
//! whose column count differs from the header. UTF-8, with or without BOM.

/// Microsoft's limit per batch file.
pub const MAX_ROWS: usize = 2000;

/// One row, passwords still in clear (the caller moves them to the secret store).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    /// Line in the file (1 = header).
    pub line: u64,
    pub address: String,
    pub destination_address: String,
    pub source_login: Option<String>,
    pub source_password: Option<String>,
    pub destination_login: Option<String>,
    pub destination_password: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {reason}")]
pub struct CsvError {
    pub line: u64,
    pub reason: String,
}

fn err(line: u64, reason: impl Into<String>) -> CsvError {
    CsvError {
        line,
        reason: reason.into(),
    }
}

#[derive(Clone, Copy)]
enum Layout {
    Imap,
    Staged,
    Bulk,
}

pub fn parse(text: &str) -> Result<Vec<Row>, CsvError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    if text.trim().is_empty() {
        return Err(err(1, "the file is empty"));
    }
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(false)
        .from_reader(text.as_bytes());
    let headers: Vec<String> = reader
        .headers()
        .map_err(|e| err(1, format!("unreadable header: {e}")))?
        .iter()
        .map(|h| h.trim().to_ascii_lowercase())
        .collect();
    if headers.len() == 1 && (headers[0].contains(';') || headers[0].contains('\t')) {
        return Err(err(
            1,
            "the file is not comma-separated (found ';' or tab); save it as CSV with commas",
        ));
    }
    let col = |name: &str| headers.iter().position(|h| h == name);
    let layout = if col("sourceemail").is_some() || col("destinationemail").is_some() {
        for need in ["sourceemail", "destinationemail"] {
            if col(need).is_none() {
                return Err(err(1, format!("bulk layout lacks the {need} column")));
            }
        }
        Layout::Bulk
    } else if col("emailaddress").is_some() && col("username").is_some() {
        if col("password").is_none() {
            return Err(err(1, "IMAP layout lacks the Password column"));
        }
        Layout::Imap
    } else if col("emailaddress").is_some() {
        Layout::Staged
    } else {
        return Err(err(
            1,
            "no required header: expected EmailAddress,UserName,Password or \
             EmailAddress,Password,ForceChangePassword or SourceEmail,DestinationEmail",
        ));
    };

    // The reader's own line count is off after CRLF line ends and blank
    // lines: count the file's lines up to the record's first character.
    let line_of = |pos: Option<&csv::Position>| {
        pos.map_or(0, |p| {
            let bytes = text.as_bytes();
            let mut at = (p.byte() as usize).min(bytes.len());
            while at < bytes.len() && matches!(bytes[at], b'\r' | b'\n') {
                at += 1;
            }
            1 + bytes[..at].iter().filter(|b| **b == b'\n').count() as u64
        })
    };
    let mut rows = Vec::new();
    for rec in reader.records() {
        let rec = rec.map_err(|e| match e.kind() {
            csv::ErrorKind::UnequalLengths {
                pos,
                expected_len,
                len,
            } => err(
                line_of(pos.as_ref()),
                format!("{len} columns where the header has {expected_len}"),
            ),
            _ => err(line_of(e.position()), format!("unreadable row: {e}")),
        })?;
        let line = line_of(rec.position());
        if rec.iter().all(|f| f.trim().is_empty()) {
            continue;
        }
        if rows.len() == MAX_ROWS {
            return Err(err(
                line,
                format!("more than {MAX_ROWS} rows; split the file into batches"),
            ));
        }
        let get = |name: &str| -> Option<String> {
            col(name)
                .and_then(|i| rec.get(i))
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
        };
        let need = |name: &str, label: &str| {
            get(name).ok_or_else(|| err(line, format!("{label} is empty")))
        };
        let row = match layout {
            Layout::Imap => {
                let dest = need("emailaddress", "EmailAddress")?;
                Row {
                    line,
                    address: dest.to_lowercase(),
                    destination_address: dest,
                    source_login: Some(need("username", "UserName")?),
                    source_password: Some(need("password", "Password")?),
                    destination_login: None,
                    destination_password: None,
                }
            }
            Layout::Staged => {
                let addr = need("emailaddress", "EmailAddress")?;
                Row {
                    line,
                    address: addr.to_lowercase(),
                    destination_address: addr,
                    source_login: None,
                    source_password: None,
                    destination_login: None,
                    destination_password: get("password"),
                }
            }
            Layout::Bulk => Row {
                line,
                address: need("sourceemail", "SourceEmail")?.to_lowercase(),
                destination_address: need("destinationemail", "DestinationEmail")?,
                source_login: get("sourcelogin"),
                source_password: get("sourcepassword"),
                destination_login: get("destinationlogin"),
                destination_password: get("destinationpassword"),
            },
        };
        for address in [&row.address, &row.destination_address] {
            if let Some(why) = address_problem(address) {
                return Err(err(line, format!("address {address:?} {why}")));
            }
        }
        if let Some(prev) = rows.iter().find(|r: &&Row| r.address == row.address) {
            return Err(err(
                line,
                format!("{} already appears on line {}", row.address, prev.line),
            ));
        }
        rows.push(row);
    }
    if rows.is_empty() {
        return Err(err(2, "the file has a header but no rows"));
    }
    Ok(rows)
}

/// Why `address` is not a plain `local@domain`, or `None`. An address also
/// names a folder (a Maildir endpoint's user, runbook files), so it must be
/// one harmless file name: no `/`, no NUL or other control character, no
/// leading `.`.
pub fn address_problem(address: &str) -> Option<&'static str> {
    let Some((local, domain)) = address.rsplit_once('@') else {
        return Some("has no '@'");
    };
    if local.is_empty() || domain.is_empty() {
        return Some("has nothing before or after its '@'");
    }
    if address.contains('/') {
        return Some("holds a '/'");
    }
    if address.chars().any(char::is_control) {
        return Some("holds a control character");
    }
    if address.starts_with('.') {
        return Some("starts with '.'");
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_three_layouts() {
        let r = parse("EmailAddress,UserName,Password\nAnna@New.example,anna,pw1\n").unwrap();
        assert_eq!(r[0].address, "anna@new.example");
        assert_eq!(r[0].destination_address, "Anna@New.example");
        assert_eq!(r[0].source_login.as_deref(), Some("anna"));
        assert_eq!(r[0].source_password.as_deref(), Some("pw1"));

        let r = parse("EmailAddress,Password,ForceChangePassword\nb@x.org,Pw,False\n").unwrap();
        assert_eq!(r[0].destination_password.as_deref(), Some("Pw"));
        assert_eq!(r[0].source_login, None);

        let r = parse(
            "\u{feff}SourceEmail,DestinationEmail,SourceLogin,SourcePassword\n\
             \"zoë@old.example\",\"Zoë, Dept@new.example\",zoe,\"p,w\"\n",
        )
        .unwrap();
        assert_eq!(r[0].address, "zoë@old.example");
        assert_eq!(r[0].destination_address, "Zoë, Dept@new.example");
        assert_eq!(r[0].source_password.as_deref(), Some("p,w"));
        assert_eq!(r[0].line, 2);
    }

    #[test]
    fn malformed_files_name_line_and_reason() {
        let e = parse("").unwrap_err();
        assert_eq!((e.line, e.reason.contains("empty")), (1, true));
        let e = parse("EmailAddress;UserName;Password\na@x;b;c\n").unwrap_err();
        assert!(e.reason.contains("not comma-separated"), "{e}");
        let e = parse("Mail,Login\na@x,b\n").unwrap_err();
        assert!(e.reason.contains("no required header"), "{e}");
        let e = parse("SourceEmail,Login\na@x,b\n").unwrap_err();
        assert!(e.reason.contains("destinationemail"), "{e}");
        let e = parse("EmailAddress,UserName,Password\na@x,a,p\nb@x,b\n").unwrap_err();
        assert_eq!(e.line, 3);
        assert!(e.reason.contains("2 columns where the header has 3"), "{e}");
        let e = parse("EmailAddress,UserName,Password\na@x,a,p\na@x,a,p\n").unwrap_err();
        assert!(e.reason.contains("already appears on line 2"), "{e}");

        let mut big = String::from("SourceEmail,DestinationEmail\n");
        for i in 0..2001 {
            big.push_str(&format!("u{i}@a.example,u{i}@b.example\n"));
        }
        let e = parse(&big).unwrap_err();
        assert_eq!(e.line, 2002);
        assert!(e.reason.contains("more than 2000"), "{e}");
        let ok: String = big.lines().take(2001).map(|l| format!("{l}\n")).collect();
        assert_eq!(parse(&ok).unwrap().len(), 2000);
    }

    #[test]
    fn crlf_files_name_their_own_lines() {
        let crlf = "EmailAddress,UserName,Password\r\na@x,a,p\r\n\r\nb@x,b\r\n";
        let e = parse(crlf).unwrap_err();
        assert_eq!(e.line, 4, "{e}");
        let quoted = "\u{feff}SourceEmail,DestinationEmail,SourceLogin\r\n\
                      a@x,a@y,\"lo\r\ngin\"\r\nc@x,c@y,c\r\nc@x,d@y,d\r\n";
        let e = parse(quoted).unwrap_err();
        assert_eq!(e.line, 5, "{e}");
        assert!(e.reason.contains("already appears on line 4"), "{e}");
    }
}
