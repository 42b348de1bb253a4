//! `ipmpadm reload`: make ipmpd reread its configuration.

use std::path::Path;

use ipmp::control::{self, Request};

pub fn run(socket: &Path) -> anyhow::Result<()> {
    let message = control::request_blocking(socket, &Request::Reload)?.into_message()?;
    println!("{message}");
    Ok(())
}
