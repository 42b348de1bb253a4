//! The command lines of the tools (ipmpd, ipmpstat, ipmpadm) as clap definitions, so that the
//! binaries parse with them and [`pages`] renders man pages and shell completions from them.

pub mod ipmpadm;
pub mod ipmpd;
pub mod ipmpstat;
pub mod pages;

/// clap's message without the "error: " prefix and the usage that follows the blank line, so
/// that a usage error is one line like every other error of the tools.
pub fn one_line(e: &clap::Error) -> String {
    let text = e.to_string();
    let message: Vec<&str> = text
        .lines()
        .take_while(|l| !l.trim().is_empty())
        .map(str::trim)
        .collect();
    let message = message.join(" ");
    message
        .strip_prefix("error: ")
        .unwrap_or(&message)
        .to_owned()
}
