//! ipmpadm's command line: `ipmpadm [--socket PATH] status|offline|online|reload`.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::control::DEFAULT_SOCKET;

#[derive(Debug, Parser)]
#[command(
    name = "ipmpadm",
    version,
    about = "Administer ipmpd: offline/online members, reload, status",
    after_help = "offline, online and reload need root. Exit status: 0 on success, 1 on error."
)]
pub struct Cli {
    /// ipmpd's control socket
    #[arg(long, global = true, value_name = "PATH", default_value = DEFAULT_SOCKET)]
    pub socket: PathBuf,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Summarize groups, members, buckets and data addresses
    Status(StatusArgs),
    /// Take a member out of service; its traffic moves to the other members (if_mpadm -d)
    Offline(MemberArgs),
    /// Put an offlined member back in service (if_mpadm -r)
    Online(MemberArgs),
    /// Make ipmpd reread its configuration
    Reload,
}

#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    /// Print ipmpd's full snapshot as JSON
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
pub struct MemberArgs {
    /// The member interface, e.g. m0
    pub interface: String,
}
