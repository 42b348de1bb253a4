//! ipmpstat's command line: `ipmpstat [-n] [-o field[,...] [-P]] -a|-g|-i|-p|-t`, plus `--json`
//! and `--socket`.

use std::path::PathBuf;

use clap::{ArgGroup, Parser};

use crate::{
    control::{self, ControlError, DEFAULT_SOCKET, Snapshot},
    stat::{Mode, Selection, StatError},
};

pub const FIELDS_HELP: &str = "\
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
    pub fn selection(&self) -> Result<Selection, StatError> {
        Selection::new(self.mode(), self.output.as_deref(), self.parsable)
    }

    pub fn snapshot(&self) -> Result<Snapshot, ControlError> {
        control::status_blocking(&self.socket)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
