//! Parsing ipmpstat's command line (defined in `ipmp::cli::ipmpstat`) and the host names it
//! asks for.

use std::process::ExitCode;

use clap::error::ErrorKind;
pub use ipmp::cli::ipmpstat::Cli;
use ipmp::stat::Names;

/// Host names for `addrs`, or none with `-n`.
pub fn names(cli: &Cli, addrs: &[String]) -> Names {
    if cli.numeric {
        Names::new()
    } else {
        crate::names::lookup(addrs)
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
    use std::path::PathBuf;

    use clap::Parser as _;
    use ipmp::{control::DEFAULT_SOCKET, stat::Mode};

    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("ipmpstat").chain(args.iter().copied()))
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
