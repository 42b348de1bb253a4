//! Command line: `ipmpstat [-n] [-o field[,...] [-P]] -a|-g|-i|-p|-t`, plus `--json` and
//! `--socket`.

use std::{path::PathBuf, process::ExitCode};

use clap::{ArgGroup, Parser, error::ErrorKind};
use ipmp::{
    control::{self, DEFAULT_SOCKET, Snapshot},
    stat::{Mode, Names, Selection},
};

const FIELDS_HELP: &str = "\
Output fields (-o, case-insensitive, or 'all'):
  -a  ADDRESS STATE GROUP INBOUND OUTBOUND
  -g  GROUP GROUPNAME STATE FDT INTERFACES
  -i  INTERFACE ACTIVE GROUP FLAGS LINK PROBE STATE
  -p  TIME INTERFACE PROBE NETRTT RTT RTTAVG TARGET RTTDEV
  -t  INTERFACE MODE TESTADDR TARGETS
Without -o, fields are shown in this order while they fit 80 columns (RTTDEV of -p does not).
-i FLAGS: i inactive, s standby, m IPv4 multicast, b IPv4 broadcast, M IPv6 multicast,
d all addresses down, h offline for a duplicate hardware address; '-' where off.
-g INTERFACES: active members bare, inactive in (), failed or offline in [].
Human output prints '--' for an empty value. Exit status: 0 on success, 1 on error.";

#[derive(Debug, Parser)]
#[command(
    name = "ipmpstat",
    version,
    about = "Show the state of IPMP groups from ipmpd",
    override_usage = "ipmpstat [-n] [-o field[,...] [-P]] -a|-g|-i|-p|-t\n       ipmpstat --json -a|-g|-i|-p|-t",
    after_help = FIELDS_HELP,
    group(ArgGroup::new("mode").required(true).args(["address", "group", "interface", "probe", "target"])),
)]
pub struct Cli {
    /// Data addresses: state, group, inbound (bound) and outbound interfaces
    #[arg(short = 'a')]
    pub address: bool,
    /// Groups: state, failure detection time, member interfaces
    #[arg(short = 'g')]
    pub group: bool,
    /// Member interfaces: active, flags, link, probe and overall state
    #[arg(short = 'i')]
    pub interface: bool,
    /// Probes as they complete, streamed until interrupted (TIME is relative to ipmpstat's start)
    #[arg(short = 'p')]
    pub probe: bool,
    /// Probe mode, test address and probe targets per interface
    #[arg(short = 't')]
    pub target: bool,
    /// Show numeric addresses (no host name lookup)
    #[arg(short = 'n')]
    pub numeric: bool,
    /// Show only these fields, in this order ('all' for every field)
    #[arg(short = 'o', value_name = "FIELD[,...]")]
    pub output: Option<String>,
    /// Parsable output: no header, ':' between fields, ':' and '\' escaped; needs -o (not 'all')
    #[arg(short = 'P')]
    pub parsable: bool,
    /// Print this mode's part of ipmpd's snapshot as JSON (addresses numeric)
    #[arg(long, conflicts_with_all = ["output", "parsable"])]
    pub json: bool,
    /// ipmpd's control socket
    #[arg(long, value_name = "PATH", default_value = DEFAULT_SOCKET)]
    pub socket: PathBuf,
}

impl Cli {
    pub fn mode(&self) -> Mode {
        if self.address {
            Mode::Address
        } else if self.group {
            Mode::Group
        } else if self.interface {
            Mode::Interface
        } else if self.probe {
            Mode::Probe
        } else {
            Mode::Target
        }
    }

    /// The fields to print; checked before ipmpd is asked anything.
    pub fn selection(&self) -> anyhow::Result<Selection> {
        Ok(Selection::new(
            self.mode(),
            self.output.as_deref(),
            self.parsable,
        )?)
    }

    pub fn snapshot(&self) -> anyhow::Result<Snapshot> {
        Ok(control::status_blocking(&self.socket)?)
    }

    /// Host names for `addrs`, or none with `-n`.
    pub fn names(&self, addrs: &[String]) -> Names {
        if self.numeric {
            Names::new()
        } else {
            crate::names::lookup(addrs)
        }
    }
}

/// Help and version go to stdout with status 0; usage errors are one line and status 1.
pub fn parse_error(e: clap::Error) -> ExitCode {
    if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
        print!("{e}");
        return ExitCode::SUCCESS;
    }
    eprintln!(
        "ipmpstat: {} (see ipmpstat --help)",
        ipmp::cli::one_line(&e)
    );
    ExitCode::FAILURE
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("ipmpstat").chain(args.iter().copied()))
    }

    #[test]
    fn help_lists_every_field_of_every_mode() {
        for (flag, mode) in [
            ("-a", Mode::Address),
            ("-g", Mode::Group),
            ("-i", Mode::Interface),
            ("-p", Mode::Probe),
            ("-t", Mode::Target),
        ] {
            let line = FIELDS_HELP
                .lines()
                .find(|l| l.trim_start().starts_with(flag))
                .unwrap();
            let listed: Vec<&str> = line.split_whitespace().skip(1).collect();
            let fields: Vec<&str> = mode.fields().iter().map(|f| f.name).collect();
            assert_eq!(listed, fields, "{flag}");
        }
    }

    #[test]
    fn solaris_style_flag_clusters() {
        let cli = parse(&["-gP", "-o", "group,state,fdt"]).unwrap();
        assert_eq!(cli.mode(), Mode::Group);
        assert!(cli.parsable);
        assert_eq!(cli.output.as_deref(), Some("group,state,fdt"));
        let cli = parse(&["-an"]).unwrap();
        assert_eq!(cli.mode(), Mode::Address);
        assert!(cli.numeric);
        assert_eq!(cli.socket, PathBuf::from(DEFAULT_SOCKET));
        assert_eq!(parse(&["-pn"]).unwrap().mode(), Mode::Probe);
        assert_eq!(parse(&["-nt"]).unwrap().mode(), Mode::Target);
        assert_eq!(
            parse(&["-i", "--socket", "/tmp/s"]).unwrap().socket,
            PathBuf::from("/tmp/s")
        );
    }

    #[test]
    fn exactly_one_mode() {
        assert_eq!(
            parse(&[]).unwrap_err().kind(),
            ErrorKind::MissingRequiredArgument
        );
        assert_eq!(
            parse(&["-a", "-g"]).unwrap_err().kind(),
            ErrorKind::ArgumentConflict
        );
        assert_eq!(
            parse(&["-g", "--json", "-o", "group"]).unwrap_err().kind(),
            ErrorKind::ArgumentConflict
        );
    }

    #[test]
    fn field_errors_come_before_contacting_ipmpd() {
        // The socket does not exist: the field error must win.
        let run = |args: &[&str]| {
            let mut all = args.to_vec();
            all.extend(["--socket", "/nonexistent/ipmpd.sock"]);
            crate::run(&parse(&all).unwrap()).unwrap_err().to_string()
        };
        let err = run(&["-g", "-P"]);
        assert!(err.contains("-P needs -o"), "{err}");
        let err = run(&["-i", "-o", "bogus"]);
        assert!(err.starts_with("unknown output field: 'bogus'"), "{err}");
        let err = run(&["-p", "-o", "rttdev,all"]);
        assert!(err.starts_with("unknown output field: 'all'"), "{err}");
        for mode in ["-a", "-g", "-i", "-p", "-t"] {
            let err = run(&[mode]);
            assert!(
                err.starts_with("cannot reach ipmpd at /nonexistent/ipmpd.sock"),
                "{err}"
            );
        }
    }
}
