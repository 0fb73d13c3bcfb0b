//! Records as source mailboxes and target MailUsers: the columns each
//! needs, multi-valued fields, GUIDs and flags.

use std::path::Path;

use uuid::Uuid;

use super::input::{LoadError, Raw, Record, parse_records};
use super::{SourceMailbox, TargetMailUser};

struct Reader<'a> {
    path: &'a Path,
    rec: &'a Record,
}

impl Reader<'_> {
    fn err(&self, field: &'static str, message: impl Into<String>) -> LoadError {
        LoadError::Field {
            path: self.path.to_path_buf(),
            at: self.rec.at,
            field,
            message: message.into(),
        }
    }

    fn text(&self, field: &'static str) -> Result<Option<String>, LoadError> {
        match self.rec.fields.get(&field.to_ascii_lowercase()) {
            None => Ok(None),
            Some(Raw::Text(s)) => {
                let s = s.trim();
                Ok((!s.is_empty()).then(|| s.to_string()))
            }
            Some(Raw::List(v)) if v.len() <= 1 => Ok(v
                .first()
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())),
            Some(Raw::List(_)) => Err(self.err(field, "holds a list where one value belongs")),
        }
    }

    fn required(&self, field: &'static str) -> Result<String, LoadError> {
        self.text(field)?.ok_or_else(|| self.err(field, "empty"))
    }

    fn list(&self, field: &'static str) -> Result<Vec<String>, LoadError> {
        let values: Vec<String> = match self.rec.fields.get(&field.to_ascii_lowercase()) {
            None => return Ok(Vec::new()),
            Some(Raw::Text(s)) => s.split(';').map(|v| v.trim().to_string()).collect(),
            Some(Raw::List(v)) => v.iter().map(|v| v.trim().to_string()).collect(),
        };
        let values: Vec<String> = values.into_iter().filter(|v| !v.is_empty()).collect();
        // Export-Csv of an unexpanded collection writes its type name.
        if let [one] = values.as_slice()
            && (one.starts_with("System.") || one.starts_with("Microsoft."))
            && !one.contains(':')
            && !one.contains('@')
        {
            return Err(self.err(
                field,
                format!(
                    "holds the type name {one}, not the values; export it with \
                     @{{n='{field}';e={{$_.{field} -join ';'}}}}"
                ),
            ));
        }
        Ok(values)
    }

    fn guid(&self, field: &'static str) -> Result<Option<Uuid>, LoadError> {
        match self.text(field)? {
            None => Ok(None),
            Some(s) => {
                let g = Uuid::parse_str(&s)
                    .map_err(|_| self.err(field, format!("{s:?} is not a GUID")))?;
                // Exchange shows an unset GUID as all zeros.
                Ok((!g.is_nil()).then_some(g))
            }
        }
    }

    fn flag(&self, field: &'static str) -> Result<bool, LoadError> {
        match self.text(field)?.as_deref().map(str::to_ascii_lowercase) {
            None => Ok(false),
            Some(v) if v == "true" || v == "1" => Ok(true),
            Some(v) if v == "false" || v == "0" => Ok(false),
            Some(v) => Err(self.err(field, format!("{v:?} is neither True nor False"))),
        }
    }

    /// `PrimarySmtpAddress`, without an `SMTP:` prefix; it must be an address.
    fn primary(&self) -> Result<String, LoadError> {
        let primary = address(&self.required("PrimarySmtpAddress")?);
        if !primary.contains('@') {
            return Err(self.err(
                "PrimarySmtpAddress",
                format!("{primary:?} is not an address"),
            ));
        }
        Ok(primary)
    }

    fn has(&self, field: &str) -> bool {
        self.rec.fields.contains_key(&field.to_ascii_lowercase())
    }
}

fn require_columns(
    path: &Path,
    recs: &[Record],
    columns: &[&'static str],
) -> Result<(), LoadError> {
    let first = &recs[0];
    for c in columns {
        if !first.fields.contains_key(&c.to_ascii_lowercase()) {
            return Err(LoadError::MissingColumn {
                path: path.to_path_buf(),
                column: c,
            });
        }
    }
    Ok(())
}

fn address(s: &str) -> String {
    s.strip_prefix("SMTP:")
        .or_else(|| s.strip_prefix("smtp:"))
        .unwrap_or(s)
        .to_string()
}

/// Loads the source tenant's mailboxes from a CSV or JSON export.
pub fn load_sources(path: &Path) -> Result<Vec<SourceMailbox>, LoadError> {
    let recs = parse_records(path)?;
    require_columns(
        path,
        &recs,
        &["PrimarySmtpAddress", "ExchangeGuid", "LegacyExchangeDN"],
    )?;
    recs.iter()
        .map(|rec| {
            let r = Reader { path, rec };
            let primary = r.primary()?;
            let mut archive_guid = r.guid("ArchiveGuid")?;
            // A disabled archive keeps its GUID; the status says if it exists.
            if r.has("ArchiveStatus")
                && let Some(status) = r.text("ArchiveStatus")?
                && !status.eq_ignore_ascii_case("Active")
            {
                archive_guid = None;
            }
            let mut delegates = r.list("GrantSendOnBehalfTo")?;
            delegates.extend(r.list("Delegates")?);
            Ok(SourceMailbox {
                primary_smtp: primary,
                alias: r.text("Alias")?,
                name: r.text("Name")?,
                display_name: r.text("DisplayName")?,
                exchange_guid: r.guid("ExchangeGuid")?,
                archive_guid,
                legacy_dn: r.required("LegacyExchangeDN")?,
                email_addresses: r.list("EmailAddresses")?,
                delegates,
                batch: match r.text("Batch")? {
                    Some(b) => Some(b),
                    None => r.text("BatchName")?,
                },
            })
        })
        .collect()
}

/// Loads the target tenant's MailUsers from a CSV or JSON export.
pub fn load_targets(path: &Path) -> Result<Vec<TargetMailUser>, LoadError> {
    let recs = parse_records(path)?;
    require_columns(path, &recs, &["PrimarySmtpAddress"])?;
    recs.iter()
        .map(|rec| {
            let r = Reader { path, rec };
            let primary = r.primary()?;
            let licensed =
                r.flag("SKUAssigned")? || r.flag("IsLicensed")? || !r.list("Licenses")?.is_empty();
            Ok(TargetMailUser {
                primary_smtp: primary,
                alias: r.text("Alias")?,
                external_email_address: r.text("ExternalEmailAddress")?.map(|a| address(&a)),
                exchange_guid: r.guid("ExchangeGuid")?,
                archive_guid: r.guid("ArchiveGuid")?,
                email_addresses: r.list("EmailAddresses")?,
                licensed,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guid(n: u128) -> Option<Uuid> {
        Some(Uuid::from_u128(n))
    }

    #[test]
    fn disabled_archive_needs_no_archive_guid() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("s.csv");
        std::fs::write(
            &path,
            "PrimarySmtpAddress,ExchangeGuid,LegacyExchangeDN,ArchiveGuid,ArchiveStatus\n\
             a@s.example,00000000-0000-4000-8000-000000000001,/o=O/cn=a,00000000-0000-4000-8000-000000000002,None\n\
             b@s.example,00000000-0000-4000-8000-000000000003,/o=O/cn=b,00000000-0000-4000-8000-000000000004,Active\n",
        )
        .unwrap();
        let s = load_sources(&path).unwrap();
        assert_eq!(s[0].archive_guid, None);
        assert_eq!(s[1].archive_guid, guid(0x4000_8000_0000_0000_0004));
    }
}
