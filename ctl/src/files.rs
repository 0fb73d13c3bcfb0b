//! Files a command reads to build its request.

use std::path::Path;

use anyhow::{Context, anyhow, bail};

pub fn read_text(path: &Path) -> anyhow::Result<String> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    String::from_utf8(bytes).map_err(|e| {
        anyhow!(
            "{} is not UTF-8 (byte {}); save it as UTF-8",
            path.display(),
            e.utf8_error().valid_up_to()
        )
    })
}

pub fn read_secret(path: &Path) -> anyhow::Result<String> {
    let text = read_text(path)?;
    let first = text.lines().next().unwrap_or("").to_string();
    if first.is_empty() {
        bail!("{} holds no password", path.display());
    }
    Ok(first)
}
