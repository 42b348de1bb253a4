//! Man pages and shell completions, rendered from the tools' clap definitions and from the
//! documented example configuration. `cargo xtask man` writes them under `dist/`; a unit test
//! fails when the checked-in copies differ from what the code renders.

use std::io;

use clap::CommandFactory as _;
use clap_complete::Shell;

use super::{ipmpadm, ipmpd, ipmpstat};
use crate::{config, control};

/// One rendered file, at `path` relative to the workspace root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    pub path: String,
    pub text: Vec<u8>,
}

/// Where the pages and completions live, relative to the workspace root.
pub const MAN_DIR: &str = "dist/man";
pub const COMPLETIONS_DIR: &str = "dist/completions";

/// The tools, each with its clap command.
fn tools() -> [clap::Command; 3] {
    [
        ipmpd::Cli::command(),
        ipmpstat::Cli::command(),
        ipmpadm::Cli::command(),
    ]
}

const SEE_ALSO: [&str; 4] = ["ipmpd(8)", "ipmpstat(8)", "ipmpadm(8)", "ipmpd.toml(5)"];

/// Every page and completion script: `config_example` is the text of `config/ipmpd.toml`.
pub fn render_all(config_example: &str) -> io::Result<Vec<Page>> {
    let mut pages = Vec::new();
    for cmd in tools() {
        let name = cmd.get_name().to_owned();
        pages.push(Page {
            path: format!("{MAN_DIR}/{name}.8"),
            text: man_page(cmd.clone())?,
        });
        for (shell, file) in [
            (Shell::Bash, format!("{name}.bash")),
            (Shell::Zsh, format!("_{name}")),
            (Shell::Fish, format!("{name}.fish")),
        ] {
            let mut text = Vec::new();
            clap_complete::generate(shell, &mut cmd.clone(), &name, &mut text);
            pages.push(Page {
                path: format!("{COMPLETIONS_DIR}/{file}"),
                text,
            });
        }
    }
    pages.push(Page {
        path: format!("{MAN_DIR}/ipmpd.toml.5"),
        text: config_page(config_example).into_bytes(),
    });
    Ok(pages)
}

/// A tool's page in section 8, with FILES (ipmpd) and SEE ALSO added to what clap_mangen writes.
fn man_page(cmd: clap::Command) -> io::Result<Vec<u8>> {
    let name = cmd.get_name().to_owned();
    let mut text = Vec::new();
    clap_mangen::Man::new(cmd)
        .section("8")
        .manual("System Administration")
        .render(&mut text)?;
    let mut tail = String::new();
    if name == "ipmpd" {
        tail.push_str(&format!(
            ".SH FILES\n.TP\n{}\nthe configuration, see ipmpd.toml(5)\n.TP\n{}\n\
             pinned maps and program links (bpffs)\n.TP\n{}\n\
             the control socket ipmpstat and ipmpadm talk to\n",
            config::DEFAULT_PATH,
            ipmp_common::PIN_DIR,
            control::DEFAULT_SOCKET
        ));
    }
    tail.push_str(&see_also(&format!("{name}(8)")));
    text.extend_from_slice(tail.as_bytes());
    Ok(text)
}

fn see_also(own: &str) -> String {
    let others: Vec<String> = SEE_ALSO
        .iter()
        .filter(|p| **p != own)
        .map(|p| {
            let (page, section) = p.trim_end_matches(')').split_once('(').unwrap_or((p, ""));
            format!(".BR {page} ({section})")
        })
        .collect();
    format!(".SH \"SEE ALSO\"\n{}\n", others.join(",\n"))
}

/// One line of a comment block: prose, or (indented in the file) kept as it is.
enum Line {
    Prose(String),
    Verbatim(String),
}

/// ipmpd.toml(5) from the documented example configuration: each `# ---- title ----` comment
/// becomes a section, each table a subsection, each key (set or commented out) an entry with
/// the comment above it, and the settings without their comments an EXAMPLE at the end.
/// Tables that repeat (the second member) are described once.
pub fn config_page(example: &str) -> String {
    let version = env!("CARGO_PKG_VERSION");
    let mut out = format!(
        ".TH IPMPD.TOML 5 \"\" \"ipmp {version}\" \"File Formats\"\n\
         .SH NAME\nipmpd.toml \\- configuration of ipmpd, the IP network multipathing daemon\n\
         .SH SYNOPSIS\n{}\n.SH DESCRIPTION\n",
        config::DEFAULT_PATH
    );
    let mut pending: Vec<Line> = Vec::new();
    // The entry being written: keys set one after the other share the comment above them.
    let mut entry: Option<Entry> = None;
    let mut tables_seen: Vec<&str> = Vec::new();
    let mut skipping = false;
    let mut prefix = String::new();
    let mut lines = example.lines();
    while let Some(line) = lines.next() {
        let trimmed = line.trim();
        let key = if let Some(comment) = trimmed.strip_prefix('#') {
            let comment = comment.strip_prefix(' ').unwrap_or(comment);
            if let Some(table) = table_header(comment) {
                // A table left out of the example: an entry of its own, and its keys by their
                // dotted names up to the next blank line.
                prefix = format!("{table}.");
                Some((comment.to_owned(), comment.to_owned(), true))
            } else {
                key_line(comment).map(|key| (format!("{prefix}{key}"), comment.to_owned(), true))
            }
        } else {
            key_line(trimmed).map(|key| {
                let mut setting = trimmed.to_owned();
                // A value that spans lines (an array) ends where its brackets balance.
                while depth(&setting) > 0 {
                    let Some(next) = lines.next() else { break };
                    setting.push('\n');
                    setting.push_str(next);
                }
                (key.to_owned(), setting, false)
            })
        };
        if let Some((key, setting, commented)) = key {
            if skipping {
                continue;
            }
            match &mut entry {
                Some(open) if pending.is_empty() => open.add(&key, setting),
                _ => {
                    if let Some(done) = entry.take() {
                        done.write(&mut out);
                    }
                    let mut open = Entry {
                        description: std::mem::take(&mut pending),
                        keys: Vec::new(),
                        settings: Vec::new(),
                        commented,
                    };
                    open.add(&key, setting);
                    entry = Some(open);
                }
            }
            continue;
        }
        if let Some(done) = entry.take() {
            done.write(&mut out);
        }
        if trimmed.is_empty() || trimmed.starts_with('[') || trimmed.starts_with("# ----") {
            prefix.clear();
        }
        if trimmed.is_empty() {
            paragraph(&mut out, &mut pending);
        } else if let Some(title) = trimmed.strip_prefix("# ----") {
            paragraph(&mut out, &mut pending);
            skipping = false;
            let title = title.trim_matches(|c: char| c == '-' || c.is_whitespace());
            out.push_str(&format!(".SH \"{}\"\n", title.to_uppercase()));
        } else if let Some(comment) = trimmed.strip_prefix('#') {
            let comment = comment.strip_prefix(' ').unwrap_or(comment);
            if comment.starts_with(' ') {
                pending.push(Line::Verbatim(comment.to_owned()));
            } else {
                pending.push(Line::Prose(comment.to_owned()));
            }
        } else if trimmed.starts_with('[') {
            skipping = tables_seen.contains(&trimmed);
            if !skipping {
                tables_seen.push(trimmed);
                out.push_str(&format!(".SS \"{trimmed}\"\n"));
                paragraph(&mut out, &mut pending);
            }
        }
    }
    if let Some(done) = entry.take() {
        done.write(&mut out);
    }
    paragraph(&mut out, &mut pending);
    out.push_str(".SH EXAMPLE\nThe settings above, without their comments:\n.PP\n.nf\n.RS 4\n");
    for line in example.lines() {
        let trimmed = line.trim();
        if !trimmed.is_empty() && !trimmed.starts_with('#') {
            out.push_str(&roff_line(line));
            out.push('\n');
        }
    }
    out.push_str(".RE\n.fi\n");
    out.push_str(&see_also("ipmpd.toml(5)"));
    out
}

/// The key of a `key = ...` line where key is a bare TOML key.
fn key_line(line: &str) -> Option<&str> {
    let (key, _) = line.split_once(" = ")?;
    bare_key(key).then_some(key)
}

/// The name of a `[table]` header line (not an array of tables).
fn table_header(line: &str) -> Option<&str> {
    let name = line.strip_prefix('[')?.strip_suffix(']')?;
    name.split('.').all(bare_key).then_some(name)
}

fn bare_key(key: &str) -> bool {
    !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// Open brackets minus closed ones, ignoring strings.
fn depth(text: &str) -> i32 {
    let mut depth = 0;
    let mut in_string = false;
    for c in text.chars() {
        match c {
            '"' => in_string = !in_string,
            '[' | '{' if !in_string => depth += 1,
            ']' | '}' if !in_string => depth -= 1,
            _ => {}
        }
    }
    depth
}

/// One described entry: its keys, the comment above them and their settings in the example.
struct Entry {
    description: Vec<Line>,
    keys: Vec<String>,
    settings: Vec<String>,
    /// Commented out in the example.
    commented: bool,
}

impl Entry {
    fn add(&mut self, key: &str, setting: String) {
        self.keys.push(key.to_owned());
        self.settings.push(setting);
    }

    fn write(mut self, out: &mut String) {
        out.push_str(&format!(".TP\n.B {}\n", self.keys.join(", ")));
        body(out, &mut self.description);
        let note = if self.commented {
            "Not set in the example; to set it:"
        } else {
            "In the example:"
        };
        out.push_str(&format!(".sp\n{note}\n.nf\n"));
        for line in self.settings.iter().flat_map(|s| s.lines()) {
            out.push_str(&roff_line(line));
            out.push('\n');
        }
        out.push_str(".fi\n");
    }
}

fn paragraph(out: &mut String, pending: &mut Vec<Line>) {
    if !pending.is_empty() {
        out.push_str(".PP\n");
        body(out, pending);
    }
}

/// The pending comment lines: prose filled, indented lines kept as they are.
fn body(out: &mut String, pending: &mut Vec<Line>) {
    let mut verbatim = false;
    for line in pending.drain(..) {
        match line {
            Line::Prose(text) => {
                if verbatim {
                    out.push_str(".fi\n");
                    verbatim = false;
                }
                out.push_str(&roff_line(&text));
            }
            Line::Verbatim(text) => {
                if !verbatim {
                    out.push_str(".nf\n");
                    verbatim = true;
                }
                out.push_str(&roff_line(&text));
            }
        }
        out.push('\n');
    }
    if verbatim {
        out.push_str(".fi\n");
    }
}

/// A line of text safe for roff: backslashes escaped, no leading control character.
fn roff_line(text: &str) -> String {
    let text = text.replace('\\', "\\e");
    if text.starts_with(['.', '\'']) {
        format!("\\&{text}")
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use super::*;

    fn root() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
    }

    fn rendered() -> Vec<Page> {
        let example = std::fs::read_to_string(root().join("config/ipmpd.toml")).unwrap();
        render_all(&example).unwrap()
    }

    #[test]
    fn checked_in_pages_and_completions_match_the_code() {
        let pages = rendered();
        let mut stale = Vec::new();
        for page in &pages {
            match std::fs::read(root().join(&page.path)) {
                Ok(text) if text == page.text => {}
                Ok(_) => stale.push(format!("{} differs", page.path)),
                Err(e) => stale.push(format!("{}: {e}", page.path)),
            }
        }
        for dir in [MAN_DIR, COMPLETIONS_DIR] {
            for file in std::fs::read_dir(root().join(dir)).unwrap() {
                let name = file.unwrap().file_name();
                let path = format!("{dir}/{}", name.to_string_lossy());
                if !pages.iter().any(|p| p.path == path) {
                    stale.push(format!("{path} is not generated any more"));
                }
            }
        }
        assert!(
            stale.is_empty(),
            "man pages and completions are out of date with the CLI or config/ipmpd.toml \
             (run `cargo xtask man` and commit the result):\n  {}",
            stale.join("\n  ")
        );
    }

    #[test]
    fn every_tool_has_a_page_and_three_completions() {
        let pages = rendered();
        for tool in ["ipmpd", "ipmpstat", "ipmpadm"] {
            for path in [
                format!("{MAN_DIR}/{tool}.8"),
                format!("{COMPLETIONS_DIR}/{tool}.bash"),
                format!("{COMPLETIONS_DIR}/_{tool}"),
                format!("{COMPLETIONS_DIR}/{tool}.fish"),
            ] {
                let page = pages.iter().find(|p| p.path == path).unwrap();
                let text = String::from_utf8(page.text.clone()).unwrap();
                assert!(text.contains(tool), "{path} does not name {tool}");
            }
        }
        let ipmpd = pages.iter().find(|p| p.path.ends_with("ipmpd.8")).unwrap();
        let ipmpd = String::from_utf8(ipmpd.text.clone()).unwrap();
        for wanted in [
            "\\-\\-check",
            "\\-\\-cleanup",
            "\\-\\-pin\\-dir",
            ".SH FILES",
            "ipmpd.toml (5)",
        ] {
            assert!(ipmpd.contains(wanted), "ipmpd.8 lacks {wanted}:\n{ipmpd}");
        }
    }

    #[test]
    fn config_page_describes_each_key_once() {
        let example = "\
# Top.

# ---- daemon-wide settings ----

# Seconds.
# Default 1.
a_key = 1

# Optional.
# b_key = \"x\"

# Two keys, one comment.
c_key = 2
d_key = 3

# A table, off unless present.
# [extra]
# Its key.
# e_key = 1


# ---- groups ----
# One per group.
[[group]]
# The name.
name = \"g\"
# Routes.
routes = [
    { to = \"default\", via = \"198.51.100.1\" },
]
# Verbatim below:
#   KEEP = 1   # as is
[[group]]
name = \"h\"
";
        let page = config_page(example);
        assert!(page.contains(".SH DESCRIPTION\n.PP\nTop.\n"), "{page}");
        assert!(page.contains(".SH \"DAEMON-WIDE SETTINGS\"\n"), "{page}");
        assert!(
            page.contains(
                ".TP\n.B a_key\nSeconds.\nDefault 1.\n.sp\nIn the example:\n.nf\na_key = 1\n.fi\n"
            ),
            "{page}"
        );
        assert!(
            page.contains(
                ".B b_key\nOptional.\n.sp\nNot set in the example; to set it:\n.nf\nb_key = \"x\"\n"
            ),
            "{page}"
        );
        assert!(
            page.contains(".SS \"[[group]]\"\n.PP\nOne per group.\n"),
            "{page}"
        );
        assert!(
            page.contains(
                "routes = [\n    { to = \"default\", via = \"198.51.100.1\" },\n]\n.fi\n"
            ),
            "{page}"
        );
        assert!(page.contains(".nf\n  KEEP = 1   # as is\n.fi\n"), "{page}");
        // The second [[group]] is in the example, not described again.
        assert_eq!(page.matches(".B name\n").count(), 1, "{page}");
        assert!(page.contains(".SH EXAMPLE\n"), "{page}");
        assert!(page.contains("name = \"h\"\n"), "{page}");
    }

    #[test]
    fn roff_control_characters_are_escaped() {
        assert_eq!(roff_line(".hidden"), "\\&.hidden");
        assert_eq!(roff_line("'quoted"), "\\&'quoted");
        assert_eq!(roff_line("a \\ b"), "a \\e b");
    }
}
