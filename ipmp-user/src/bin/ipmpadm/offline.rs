//! `ipmpadm offline IF`: take a member out of service (Solaris `if_mpadm -d`).

use std::path::Path;

use ipmp::{
    cli::ipmpadm::MemberArgs as Args,
    control::{self, Request},
};

pub fn run(socket: &Path, args: &Args) -> anyhow::Result<()> {
    let request = Request::Offline {
        interface: args.interface.clone(),
    };
    let message = control::request_blocking(socket, &request)?.into_message()?;
    println!("{message}");
    Ok(())
}
