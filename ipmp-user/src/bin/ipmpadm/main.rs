//! ipmpadm: administer ipmpd — take members offline and back online (like Solaris
//! `if_mpadm -d` / `-r`), reload the configuration, and show a status summary.

mod offline;
mod online;
mod reload;
mod status;

use std::process::ExitCode;

use clap::{Parser as _, error::ErrorKind};
use ipmp::cli::ipmpadm::{Cli, Command};

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) => {
            print!("{e}");
            return ExitCode::SUCCESS;
        }
        Err(e) if e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            eprint!("{e}");
            return ExitCode::FAILURE;
        }
        Err(e) => {
            eprintln!("ipmpadm: {} (see ipmpadm --help)", ipmp::cli::one_line(&e));
            return ExitCode::FAILURE;
        }
    };
    let result = match &cli.command {
        Command::Status(args) => status::run(&cli.socket, args),
        Command::Offline(args) => offline::run(&cli.socket, args),
        Command::Online(args) => online::run(&cli.socket, args),
        Command::Reload => reload::run(&cli.socket),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ipmpadm: {e:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use ipmp::control::DEFAULT_SOCKET;

    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("ipmpadm").chain(args.iter().copied()))
    }

    #[test]
    fn subcommands_and_global_socket() {
        let cli = parse(&["offline", "m0", "--socket", "/tmp/x.sock"]).unwrap();
        assert_eq!(cli.socket, PathBuf::from("/tmp/x.sock"));
        assert!(matches!(cli.command, Command::Offline(ref a) if a.interface == "m0"));
        let cli = parse(&["--socket", "/tmp/y.sock", "status", "--json"]).unwrap();
        assert_eq!(cli.socket, PathBuf::from("/tmp/y.sock"));
        assert!(matches!(cli.command, Command::Status(ref a) if a.json));
        let cli = parse(&["reload"]).unwrap();
        assert_eq!(cli.socket, PathBuf::from(DEFAULT_SOCKET));
        assert_eq!(
            ipmp::cli::one_line(&parse(&["offline"]).unwrap_err()),
            "the following required arguments were not provided: <INTERFACE>"
        );
        assert!(parse(&["frobnicate"]).is_err());
    }
}
