//! `ipmpadm online IF`: put an offlined member back in service (Solaris `if_mpadm -r`).

use std::path::Path;

use ipmp::{
    cli::ipmpadm::MemberArgs as Args,
    control::{self, Request},
};

pub fn run(socket: &Path, args: &Args) -> anyhow::Result<()> {
    let request = Request::Online {
        interface: args.interface.clone(),
    };
    let message = control::request_blocking(socket, &request)?.into_message()?;
    println!("{message}");
    Ok(())
}
