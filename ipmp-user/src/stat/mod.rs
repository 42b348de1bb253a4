//! ipmpstat output, as pure functions from a [`Snapshot`] to text.
//!
//! The table engine follows Solaris' ofmt (libinetutil), which ipmpstat uses:
//! - every field has a width that includes the one-space separator; values are left-aligned and
//!   the last field is never padded;
//! - a value wider than its field pushes the rest of the line right, and later fields give up
//!   their spare padding until the columns line up again;
//! - an empty value prints as `--`; the header is printed once, before the first row (no rows,
//!   no output, as in Solaris);
//! - parsable mode (`-P`): no header, values joined by `:`, empty values print nothing, and `:`
//!   and `\` inside a value are escaped with `\` — except with a single field, where there is
//!   no separator to protect (ofmt prints the value verbatim).
//!
//! Without `-o`, a mode shows its fields in order while their summed widths fit 80 columns.

pub mod addr;
mod fields;
pub mod group;
pub mod iface;
pub mod probe;
pub mod target;

use crate::control::Snapshot;

use fields::pretty;
pub use fields::{Field, Names, Row, StatError, display_addr};

/// Width of the terminal the default field set must fit in.
pub const DEFAULT_COLUMNS: usize = 80;

/// Printed for an empty value in human output.
pub const EMPTY: &str = "--";

/// The ipmpstat modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `-a`: data addresses.
    Address,
    /// `-g`: groups.
    Group,
    /// `-i`: member interfaces.
    Interface,
    /// `-p`: probes (streamed).
    Probe,
    /// `-t`: probe targets.
    Target,
}

impl Mode {
    pub fn fields(self) -> &'static [Field] {
        match self {
            Mode::Address => addr::FIELDS,
            Mode::Group => group::FIELDS,
            Mode::Interface => iface::FIELDS,
            Mode::Probe => probe::FIELDS,
            Mode::Target => target::FIELDS,
        }
    }

    pub fn flag(self) -> &'static str {
        match self {
            Mode::Address => "-a",
            Mode::Group => "-g",
            Mode::Interface => "-i",
            Mode::Probe => "-p",
            Mode::Target => "-t",
        }
    }
}

/// The fields chosen for output, and how to print them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selection {
    mode: Mode,
    /// Indices into the mode's fields, in output order (repeats allowed, as in ofmt).
    indices: Vec<usize>,
    parsable: bool,
}

impl Selection {
    /// Chooses the fields of `mode` from a `-o` list (`None`: the 80-column default).
    pub fn new(mode: Mode, spec: Option<&str>, parsable: bool) -> Result<Self, StatError> {
        let fields = mode.fields();
        let Some(spec) = spec else {
            if parsable {
                return Err(StatError::ParsableNeedsFields);
            }
            return Ok(Selection {
                mode,
                indices: default_fields(fields),
                parsable,
            });
        };
        let names: Vec<&str> = spec
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .collect();
        if names.is_empty() {
            return Err(StatError::NoFields);
        }
        if names.iter().any(|n| n.eq_ignore_ascii_case("all")) {
            if parsable {
                return Err(StatError::ParsableAll);
            }
            if names.len() == 1 {
                return Ok(Selection {
                    mode,
                    indices: (0..fields.len()).collect(),
                    parsable,
                });
            }
        }
        let mut indices = Vec::with_capacity(names.len());
        let mut bad = Vec::new();
        for name in names {
            match fields
                .iter()
                .position(|f| f.name.eq_ignore_ascii_case(name))
            {
                Some(i) => indices.push(i),
                None => bad.push(name.to_owned()),
            }
        }
        if !bad.is_empty() {
            return Err(StatError::UnknownFields {
                bad,
                mode: mode.flag(),
                valid: fields
                    .iter()
                    .map(|f| f.name.to_ascii_lowercase())
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        }
        Ok(Selection {
            mode,
            indices,
            parsable,
        })
    }

    pub fn mode(&self) -> Mode {
        self.mode
    }

    pub fn parsable(&self) -> bool {
        self.parsable
    }

    /// Names of the chosen fields, in output order.
    pub fn names(&self) -> Vec<&'static str> {
        let fields = self.mode.fields();
        self.indices
            .iter()
            .filter_map(|&i| fields.get(i))
            .map(|f| f.name)
            .collect()
    }

    /// Renders `rows` (each holding a value per field of the mode, in field order).
    pub fn render(&self, rows: &[Row]) -> String {
        let fields = self.mode.fields();
        let mut out = String::new();
        if rows.is_empty() {
            return out;
        }
        if self.parsable {
            for row in rows {
                let escape = self.indices.len() > 1;
                for (k, &i) in self.indices.iter().enumerate() {
                    if k > 0 {
                        out.push(':');
                    }
                    push_escaped(&mut out, value(row, i), escape);
                }
                out.push('\n');
            }
            return out;
        }
        let widths: Vec<usize> = self
            .indices
            .iter()
            .map(|&i| fields.get(i).map_or(0, |f| f.width))
            .collect();
        let header: Vec<&str> = self
            .indices
            .iter()
            .map(|&i| fields.get(i).map_or("", |f| f.name))
            .collect();
        push_human_line(&mut out, &widths, &header);
        for row in rows {
            let values: Vec<&str> = self
                .indices
                .iter()
                .map(|&i| match value(row, i) {
                    "" => EMPTY,
                    v => v,
                })
                .collect();
            push_human_line(&mut out, &widths, &values);
        }
        out
    }
}

fn value(row: &Row, i: usize) -> &str {
    row.get(i).map_or("", String::as_str)
}

/// The leading fields of `fields` whose summed widths fit [`DEFAULT_COLUMNS`].
pub fn default_fields(fields: &[Field]) -> Vec<usize> {
    let mut used = 0;
    fields
        .iter()
        .take_while(|f| {
            used += f.width;
            used <= DEFAULT_COLUMNS
        })
        .enumerate()
        .map(|(i, _)| i)
        .collect()
}

fn push_escaped(out: &mut String, value: &str, escape: bool) {
    for c in value.chars() {
        if escape && (c == ':' || c == '\\') {
            out.push('\\');
        }
        out.push(c);
    }
}

/// One human line of values in fields of `widths`, with ofmt's overflow catch-up.
fn push_human_line(out: &mut String, widths: &[usize], values: &[&str]) {
    // Columns the line currently runs past where the next field should start.
    let mut overflow = 0usize;
    for (k, (&width, value)) in widths.iter().zip(values).enumerate() {
        if k + 1 == values.len() {
            out.push_str(value);
            break;
        }
        let len = value.chars().count();
        if len + overflow >= width {
            // No room even without padding: one space, and remember the excess.
            overflow = overflow + len + 1 - width;
            out.push_str(value);
            out.push(' ');
            continue;
        }
        let mut width = width;
        if overflow > 0 {
            let give = overflow.min(width - len);
            overflow -= give;
            width -= give;
        }
        out.push_str(value);
        out.extend(std::iter::repeat_n(' ', width - len));
    }
    out.push('\n');
}

/// Formats the selection's mode for a snapshot (every mode but [`Mode::Probe`], which streams).
pub fn format(snapshot: &Snapshot, selection: &Selection, names: &Names) -> String {
    let rows = match selection.mode {
        Mode::Address => addr::rows(snapshot, names),
        Mode::Group => group::rows(snapshot),
        Mode::Interface => iface::rows(snapshot),
        Mode::Target => target::format_rows(&target::rows(snapshot), names),
        Mode::Probe => Vec::new(),
    };
    selection.render(&rows)
}

/// The part of `snapshot` that `mode` shows, as pretty JSON ending in a newline (addresses
/// numeric, fields in declaration order).
pub fn json(mode: Mode, snapshot: &Snapshot) -> serde_json::Result<String> {
    match mode {
        Mode::Address => addr::json(snapshot),
        Mode::Group => group::json(snapshot),
        Mode::Interface => iface::json(snapshot),
        Mode::Target => target::json(snapshot),
        Mode::Probe => pretty::<[u8]>(&[]),
    }
}

/// Numeric addresses `mode` would print, for the caller to look up names for (without `-n`).
pub fn addresses_to_name(mode: Mode, snapshot: &Snapshot) -> Vec<String> {
    let mut out: Vec<String> = match mode {
        Mode::Address => snapshot
            .groups
            .iter()
            .flat_map(|g| g.addresses.iter().map(|a| a.address.clone()))
            .collect(),
        Mode::Target => target::rows(snapshot)
            .into_iter()
            .flat_map(|r| r.testaddr.into_iter().chain(r.targets))
            .collect(),
        Mode::Group | Mode::Interface | Mode::Probe => Vec::new(),
    };
    out.sort();
    out.dedup();
    out
}

#[cfg(test)]
pub(crate) mod testdata;

#[cfg(test)]
mod tests;
