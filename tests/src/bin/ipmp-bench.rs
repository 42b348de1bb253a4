//! ipmp-bench: runs the benchmark sections in order and writes `benchmarks.md` with its SVG
//! plots. Normally started by `cargo xtask bench` (release build, as root, IPMP_BIN_DIR set).
//!
//! A section that fails (or panics) is reported as "not measured" with its error; the run goes
//! on with the next one.

use std::{
    panic::{AssertUnwindSafe, catch_unwind},
    path::PathBuf,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use anyhow::bail;
use clap::Parser;
use ipmp_tests::bench::{
    self, Opts, Section,
    report::{self, Machine, Outcome, RunInfo},
};

/// One section of the report: its `--only` name, its title when it cannot run, its entry point.
struct Entry {
    name: &'static str,
    title: &'static str,
    run: fn(&Opts) -> anyhow::Result<Section>,
}

/// The report's order: program cost, throughput, failover, flows, balance, control plane,
/// aggregate bandwidth.
const SECTIONS: &[Entry] = &[
    Entry {
        name: "prog-cost",
        title: "1. Per-packet cost of the eBPF programs",
        run: bench::prog_cost::run,
    },
    Entry {
        name: "throughput",
        title: "2. Throughput",
        run: bench::throughput::run,
    },
    Entry {
        name: "failover",
        title: "3. Failover",
        run: bench::failover::run,
    },
    Entry {
        name: "flows",
        title: "4. Flows disturbed by a failure and a repair",
        run: bench::flows::run,
    },
    Entry {
        name: "balance",
        title: "5. Balance",
        run: bench::flows::run_balance,
    },
    Entry {
        name: "control",
        title: "6. Control plane",
        run: bench::control::run,
    },
    Entry {
        name: "aggregate",
        title: "7. Aggregate bandwidth",
        run: bench::aggregate::run,
    },
];

#[derive(Parser)]
#[command(about = "ipmp benchmarks: writes DIR/benchmarks.md and its SVG plots (needs root)")]
struct Cli {
    /// The ~2-minute subset: fewer trials, shorter runs (the report says so).
    #[arg(long)]
    quick: bool,
    /// Where benchmarks.md and the plots go.
    #[arg(long, default_value = "docs")]
    out: PathBuf,
    /// Run only these sections (repeatable); see --list.
    #[arg(long, value_name = "NAME")]
    only: Vec<String>,
    /// List the section names and exit.
    #[arg(long)]
    list: bool,
}

fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".to_owned())
}

fn run_one(e: &Entry, opts: &Opts) -> Outcome {
    eprintln!("ipmp-bench: {} ...", e.name);
    let started = Instant::now();
    let section = match catch_unwind(AssertUnwindSafe(|| (e.run)(opts))) {
        Ok(Ok(mut s)) => {
            if s.title.is_empty() {
                s.title = e.title.to_owned();
            }
            s
        }
        Ok(Err(err)) => {
            eprintln!("ipmp-bench: {}: not measured: {err:#}", e.name);
            report::not_measured(e.title, &format!("{err:#}"))
        }
        Err(p) => {
            let msg = format!("panicked: {}", panic_message(p.as_ref()));
            eprintln!("ipmp-bench: {}: {msg}", e.name);
            report::not_measured(e.title, &msg)
        }
    };
    let took = started.elapsed();
    eprintln!("ipmp-bench: {} done in {:.1} s", e.name, took.as_secs_f64());
    Outcome {
        name: e.name.to_owned(),
        section,
        took,
    }
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if cli.list {
        for e in SECTIONS {
            println!("{:<12} {}", e.name, e.title);
        }
        return Ok(());
    }
    for name in &cli.only {
        if !SECTIONS.iter().any(|e| e.name == name) {
            let names: Vec<&str> = SECTIONS.iter().map(|e| e.name).collect();
            bail!("no section {name:?}: choose from {}", names.join(", "));
        }
    }
    if !ipmp_tests::lab::is_root() {
        bail!("the benchmarks build network namespaces and load eBPF programs: run as root");
    }
    ipmp_tests::lab::cleanup_stale();
    let opts = Opts {
        quick: cli.quick,
        out_dir: cli.out.clone(),
    };
    let started_unix = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let started = Instant::now();
    let outcomes: Vec<Outcome> = SECTIONS
        .iter()
        .filter(|e| cli.only.is_empty() || cli.only.iter().any(|n| n == e.name))
        .map(|e| run_one(e, &opts))
        .collect();
    let total = started.elapsed();

    let mut command = String::from("cargo xtask bench");
    if cli.quick {
        command.push_str(" --quick");
    }
    for n in &cli.only {
        command.push_str(&format!(" --only {n}"));
    }
    let info = RunInfo {
        machine: Machine::probe(),
        started_unix,
        quick: cli.quick,
        total,
        commit: std::env::var("IPMP_BENCH_COMMIT")
            .ok()
            .filter(|c| !c.is_empty()),
        command,
    };
    let path = report::write(&cli.out, &info, &outcomes)?;
    print_goals(&outcomes, total);
    println!("ipmp-bench: wrote {}", path.display());
    Ok(())
}

/// The goals table on the terminal: one line per goal.
fn print_goals(outcomes: &[Outcome], total: Duration) {
    println!();
    for o in outcomes {
        if o.section.goals.is_empty() {
            let state = if o.section.body_md.starts_with("**Not measured") {
                "NOT MEASURED"
            } else {
                "(no goals)"
            };
            println!("{:<11} {state}", o.name);
        }
        for g in &o.section.goals {
            let met = match g.met {
                Some(true) => "met",
                Some(false) => "MISSED",
                None => "n/a",
            };
            println!("{:<11} {:<6} {} — {}", o.name, met, g.goal, g.figure);
            if !g.why.is_empty() {
                println!("{:<18} why: {}", "", g.why);
            }
        }
    }
    println!(
        "ipmp-bench: sections took {:.1} s in all",
        total.as_secs_f64()
    );
}
