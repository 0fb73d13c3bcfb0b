//! Export files as records: the text encodings PowerShell writes, CSV
//! (`Export-Csv`) and JSON (`ConvertTo-Json`), with each record's location.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

/// Where a record sits in its file, for error messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Location {
    /// CSV line, 1-based, counting the header.
    Line(usize),
    /// JSON object, 1-based.
    Item(usize),
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::Line(n) => write!(f, "line {n}"),
            Location::Item(n) => write!(f, "object {n}"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: not UTF-8 or UTF-16 text; save it as UTF-8")]
    Encoding { path: PathBuf },
    #[error("{path}: holds no records")]
    Empty { path: PathBuf },
    #[error("{path}: {at}: {message}")]
    Format {
        path: PathBuf,
        at: Location,
        message: String,
    },
    #[error("{path}: no {column} column")]
    MissingColumn { path: PathBuf, column: &'static str },
    #[error("{path}: {at}: {field}: {message}")]
    Field {
        path: PathBuf,
        at: Location,
        field: &'static str,
        message: String,
    },
}

/// A field's raw value: CSV text, or a JSON scalar/array.
pub(super) enum Raw {
    Text(String),
    List(Vec<String>),
}

pub(super) struct Record {
    pub(super) at: Location,
    pub(super) fields: HashMap<String, Raw>,
}

fn read_text(path: &Path) -> Result<String, LoadError> {
    let bytes = std::fs::read(path).map_err(|source| LoadError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    // Windows PowerShell 5.1 writes UTF-16LE with Out-File and `>`.
    if let Some(rest) = bytes.strip_prefix(&[0xFF, 0xFE]) {
        let units: Vec<u16> = rest
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .collect();
        return String::from_utf16(&units).map_err(|_| LoadError::Encoding {
            path: path.to_path_buf(),
        });
    }
    let text = String::from_utf8(bytes).map_err(|_| LoadError::Encoding {
        path: path.to_path_buf(),
    })?;
    Ok(text.strip_prefix('\u{FEFF}').unwrap_or(&text).to_string())
}

pub(super) fn parse_records(path: &Path) -> Result<Vec<Record>, LoadError> {
    let text = read_text(path)?;
    let trimmed = text.trim_start();
    let records = if trimmed.starts_with('[') || trimmed.starts_with('{') {
        parse_json(path, trimmed)?
    } else {
        parse_csv(path, &text)?
    };
    if records.is_empty() {
        return Err(LoadError::Empty {
            path: path.to_path_buf(),
        });
    }
    Ok(records)
}

fn parse_csv(path: &Path, text: &str) -> Result<Vec<Record>, LoadError> {
    // Export-Csv without -NoTypeInformation starts with `#TYPE …`.
    let (skipped, body) = match text.strip_prefix("#TYPE") {
        Some(rest) => (1, rest.split_once('\n').map(|(_, b)| b).unwrap_or("")),
        None => (0, text),
    };
    let mut rd = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(false)
        .from_reader(body.as_bytes());
    let fmt_err = |e: csv::Error| {
        let line = e
            .position()
            .map(|p| p.line() as usize + skipped)
            .unwrap_or(0);
        let message = match e.kind() {
            csv::ErrorKind::UnequalLengths {
                expected_len, len, ..
            } => format!("{len} fields where the header has {expected_len}"),
            _ => e.to_string(),
        };
        LoadError::Format {
            path: path.to_path_buf(),
            at: Location::Line(line),
            message,
        }
    };
    let headers: Vec<String> = rd
        .headers()
        .map_err(fmt_err)?
        .iter()
        .map(|h| h.trim().to_ascii_lowercase())
        .collect();
    if headers.len() < 2 {
        return Err(LoadError::Format {
            path: path.to_path_buf(),
            at: Location::Line(1 + skipped),
            message: "not a comma-separated export (one column only)".into(),
        });
    }
    let mut out = Vec::new();
    for row in rd.records() {
        let row = row.map_err(fmt_err)?;
        let line = row.position().map(|p| p.line() as usize).unwrap_or(0) + skipped;
        let fields = headers
            .iter()
            .cloned()
            .zip(row.iter().map(|v| Raw::Text(v.to_string())))
            .collect();
        out.push(Record {
            at: Location::Line(line),
            fields,
        });
    }
    Ok(out)
}

fn parse_json(path: &Path, text: &str) -> Result<Vec<Record>, LoadError> {
    let value: serde_json::Value = serde_json::from_str(text).map_err(|e| LoadError::Format {
        path: path.to_path_buf(),
        at: Location::Line(e.line()),
        message: format!("invalid JSON: {e}"),
    })?;
    let items = match value {
        serde_json::Value::Array(items) => items,
        one @ serde_json::Value::Object(_) => vec![one],
        _ => {
            return Err(LoadError::Format {
                path: path.to_path_buf(),
                at: Location::Item(1),
                message: "expected an array of objects or one object".into(),
            });
        }
    };
    let mut out = Vec::new();
    for (i, item) in items.into_iter().enumerate() {
        let at = Location::Item(i + 1);
        let serde_json::Value::Object(map) = item else {
            return Err(LoadError::Format {
                path: path.to_path_buf(),
                at,
                message: "not an object".into(),
            });
        };
        let mut fields = HashMap::new();
        for (k, v) in map {
            let raw = match json_raw(v) {
                Some(raw) => raw,
                None => {
                    return Err(LoadError::Format {
                        path: path.to_path_buf(),
                        at,
                        message: format!("{k}: nested objects are not understood"),
                    });
                }
            };
            fields.insert(k.to_ascii_lowercase(), raw);
        }
        out.push(Record { at, fields });
    }
    Ok(out)
}

/// A JSON value as text or list. ConvertTo-Json writes a GUID either as a
/// string or as `{"Guid": "…"}` and a proxy address as a string or as an
/// object with `ProxyAddressString`.
fn json_raw(v: serde_json::Value) -> Option<Raw> {
    use serde_json::Value;
    fn scalar(v: Value) -> Option<String> {
        match v {
            Value::Null => Some(String::new()),
            Value::String(s) => Some(s),
            Value::Bool(b) => Some(if b { "True" } else { "False" }.into()),
            Value::Number(n) => Some(n.to_string()),
            Value::Object(mut m) => ["Guid", "ProxyAddressString", "Value"]
                .iter()
                .find_map(|k| m.remove(*k))
                .and_then(scalar),
            Value::Array(_) => None,
        }
    }
    match v {
        Value::Array(items) => items
            .into_iter()
            .map(scalar)
            .collect::<Option<Vec<_>>>()
            .map(Raw::List),
        other => scalar(other).map(Raw::Text),
    }
}
