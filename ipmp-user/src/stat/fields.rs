//! What every mode's output is made of: its fields, rows, host names, the user's errors, and
//! the JSON printer.

use std::collections::BTreeMap;

/// One output column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Field {
    /// Upper-case header; `-o` matches it case-insensitively.
    pub name: &'static str,
    /// Columns, separator included.
    pub width: usize,
}

/// One row: a value per field of the mode, in the mode's field order (`""` for empty).
pub type Row = Vec<String>;

/// Host names for numeric addresses (numeric → name). Empty with `-n`.
pub type Names = BTreeMap<String, String>;

/// `name` for `addr` if `names` has one, else `addr` itself.
pub fn display_addr(names: &Names, addr: &str) -> String {
    names.get(addr).cloned().unwrap_or_else(|| addr.to_owned())
}

/// Errors in what the user asked for.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StatError {
    #[error("unknown output field{}: {} (valid fields for {mode}: {valid})",
        if bad.len() > 1 { "s" } else { "" },
        bad.iter().map(|b| format!("'{b}'")).collect::<Vec<_>>().join(", "))]
    UnknownFields {
        bad: Vec<String>,
        mode: &'static str,
        valid: String,
    },
    #[error("no output fields given to -o")]
    NoFields,
    #[error("output fields must be specified in parsable mode: -P needs -o field[,...]")]
    ParsableNeedsFields,
    #[error("output field 'all' is invalid in parsable mode (-P): name the fields")]
    ParsableAll,
    #[error("probe-based failure detection is disabled on all interfaces")]
    ProbingDisabled,
}

/// Pretty JSON ending in a newline, as every mode's `--json` prints it.
pub(crate) fn pretty<T: serde::Serialize + ?Sized>(value: &T) -> serde_json::Result<String> {
    let mut out = serde_json::to_string_pretty(value)?;
    out.push('\n');
    Ok(out)
}
