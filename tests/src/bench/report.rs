//! The report writer: `benchmarks.md` (machine, run, goals table, sections) and the SVGs
//! beside it. Rendering is pure ([`render`]); only [`write`] and [`Machine::probe`] do I/O.

use std::{
    fmt::Write as _,
    fs,
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::Context as _;

use super::{GoalRow, Section};

/// The machine the figures come from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Machine {
    pub cpu_model: String,
    /// Logical CPUs the run could use.
    pub cores: usize,
    pub memory: String,
    /// `uname -r`.
    pub kernel: String,
    /// e.g. `Debian GNU/Linux 12 (bookworm)`.
    pub os: String,
    /// Whether the CPUs are virtual (a hypervisor flag in /proc/cpuinfo).
    pub virtualised: bool,
}

impl Machine {
    /// Reads /proc and /etc/os-release; unknown fields stay empty.
    pub fn probe() -> Machine {
        let read = |p: &str| fs::read_to_string(p).unwrap_or_default();
        let cpuinfo = read("/proc/cpuinfo");
        let os = read("/etc/os-release");
        Machine {
            cpu_model: cpu_model(&cpuinfo).unwrap_or_default(),
            cores: std::thread::available_parallelism().map_or(0, usize::from),
            memory: mem_total(&read("/proc/meminfo")).unwrap_or_default(),
            kernel: read("/proc/sys/kernel/osrelease").trim().to_owned(),
            os: os_name(&os).unwrap_or_default(),
            virtualised: cpuinfo
                .lines()
                .any(|l| l.starts_with("flags") && l.split_whitespace().any(|f| f == "hypervisor")),
        }
    }
}

/// `model name` of the first CPU in /proc/cpuinfo.
pub fn cpu_model(cpuinfo: &str) -> Option<String> {
    cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.split_whitespace().collect::<Vec<_>>().join(" "))
}

/// `MemTotal` of /proc/meminfo as GiB with one decimal.
pub fn mem_total(meminfo: &str) -> Option<String> {
    let kib: f64 = meminfo
        .lines()
        .find(|l| l.starts_with("MemTotal:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    Some(format!("{:.1} GiB", kib / (1024.0 * 1024.0)))
}

/// `PRETTY_NAME` of /etc/os-release.
pub fn os_name(os_release: &str) -> Option<String> {
    os_release
        .lines()
        .find_map(|l| l.strip_prefix("PRETTY_NAME="))
        .map(|v| v.trim_matches('"').to_owned())
}

/// What the whole run was.
#[derive(Debug, Clone)]
pub struct RunInfo {
    pub machine: Machine,
    /// Seconds since the Unix epoch when the run started.
    pub started_unix: u64,
    pub quick: bool,
    /// Wall time of all sections (the build excluded).
    pub total: Duration,
    /// The commit measured, when known (`git describe`).
    pub commit: Option<String>,
    /// The command line that regenerates the report.
    pub command: String,
}

/// One section's outcome as the runner saw it.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The `--only` name, e.g. `prog-cost`.
    pub name: String,
    pub section: Section,
    pub took: Duration,
}

/// A section that could not be measured: its title and the error, in place of its figures.
pub fn not_measured(title: &str, error: &str) -> Section {
    Section {
        title: title.to_owned(),
        body_md: format!(
            "**Not measured in this run:** {}\n",
            one_line(error).trim_end()
        ),
        plots: Vec::new(),
        goals: Vec::new(),
    }
}

/// `YYYY-MM-DD HH:MM UTC` of a Unix time (proleptic Gregorian calendar).
pub fn utc_date(unix: u64) -> String {
    let days = (unix / 86_400) as i64;
    let secs = unix % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02} UTC",
        secs / 3600,
        (secs % 3600) / 60
    )
}

/// Year, month, day of a day count since 1970-01-01 (Howard Hinnant's `civil_from_days`).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// Text made safe for one markdown table cell: no newlines, pipes escaped.
pub fn cell(s: &str) -> String {
    one_line(s).replace('|', "\\|")
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn met_cell(g: &GoalRow) -> &'static str {
    match g.met {
        Some(true) => "yes",
        Some(false) => "**no**",
        None => "not measured",
    }
}

fn fmt_duration(d: Duration) -> String {
    let s = d.as_secs();
    if s >= 60 {
        format!("{} min {:02} s", s / 60, s % 60)
    } else {
        format!("{:.1} s", d.as_secs_f64())
    }
}

/// GitHub-style anchor of a heading.
fn anchor(title: &str) -> String {
    title
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            'a'..='z' | '0'..='9' | '-' | '_' => Some(c),
            ' ' => Some('-'),
            c if c.is_alphanumeric() => Some(c),
            _ => None,
        })
        .collect()
}

/// The whole `benchmarks.md`.
pub fn render(info: &RunInfo, outcomes: &[Outcome]) -> String {
    let mut md = String::new();
    let m = &info.machine;
    let _ = writeln!(md, "# ipmp benchmarks\n");
    if info.quick {
        let _ = writeln!(
            md,
            "> **Quick run** (`--quick`): fewer trials and shorter runs than the full suite. \
             The figures show the method works; quote the full run's.\n"
        );
    }
    let _ = writeln!(
        md,
        "Generated by `{}`. Every figure is **min / median / max** over repeated trials \
         (the number of trials is given beside it); both sides of every comparison ran in this \
         run, on this machine, in the same lab topology.\n",
        info.command
    );
    let _ = writeln!(md, "| | |\n|---|---|");
    let _ = writeln!(md, "| Date | {} |", utc_date(info.started_unix));
    if let Some(c) = &info.commit {
        let _ = writeln!(md, "| Commit | `{}` |", cell(c));
    }
    let _ = writeln!(
        md,
        "| Run | {} ({} for the sections, build excluded) |",
        if info.quick { "quick" } else { "full" },
        fmt_duration(info.total)
    );
    let _ = writeln!(
        md,
        "| CPU | {}{} |",
        cell(&m.cpu_model),
        if m.virtualised {
            " (virtual machine)"
        } else {
            ""
        }
    );
    let _ = writeln!(md, "| Cores | {} |", m.cores);
    if !m.memory.is_empty() {
        let _ = writeln!(md, "| Memory | {} |", m.memory);
    }
    let _ = writeln!(md, "| Kernel | {} |", cell(&m.kernel));
    if !m.os.is_empty() {
        let _ = writeln!(md, "| OS | {} |", cell(&m.os));
    }
    md.push('\n');

    let _ = writeln!(md, "## Goals\n");
    let _ = writeln!(md, "| Section | Goal | Measured | Met | Why / notes |");
    let _ = writeln!(md, "|---|---|---|---|---|");
    let mut any = false;
    for o in outcomes {
        let s = &o.section;
        if s.goals.is_empty() {
            // A section without goal rows (it failed, or it has none) still gets a line, so a
            // missing measurement is never silent.
            if s.body_md.starts_with("**Not measured") {
                let _ = writeln!(
                    md,
                    "| [{}](#{}) | | | not measured | {} |",
                    cell(&s.title),
                    anchor(&s.title),
                    cell(
                        s.body_md
                            .trim_start_matches("**Not measured in this run:** ")
                    )
                );
                any = true;
            }
            continue;
        }
        for (i, g) in s.goals.iter().enumerate() {
            // The section's name on its first row only: the table stays narrow.
            let section = if i == 0 {
                format!("[{}](#{})", cell(&s.title), anchor(&s.title))
            } else {
                String::new()
            };
            let _ = writeln!(
                md,
                "| {section} | {} | {} | {} | {} |",
                cell(&g.goal),
                cell(&g.figure),
                met_cell(g),
                cell(&g.why)
            );
            any = true;
        }
    }
    if !any {
        let _ = writeln!(md, "| | | | | no section ran |");
    }
    md.push('\n');

    for o in outcomes {
        let _ = writeln!(md, "## {}\n", one_line(&o.section.title));
        let _ = writeln!(
            md,
            "<sub>`--only {}` · {}</sub>\n",
            o.name,
            fmt_duration(o.took)
        );
        md.push_str(o.section.body_md.trim_end());
        md.push_str("\n\n");
    }
    md
}

/// Writes `<out_dir>/benchmarks.md` and every section's plots; returns the report's path.
pub fn write(out_dir: &Path, info: &RunInfo, outcomes: &[Outcome]) -> anyhow::Result<PathBuf> {
    fs::create_dir_all(out_dir).with_context(|| format!("create {}", out_dir.display()))?;
    for o in outcomes {
        for p in &o.section.plots {
            // Plots go beside the report, never elsewhere.
            if p.file.is_empty() || p.file.contains('/') || p.file.starts_with('.') {
                anyhow::bail!("plot file name {:?} is not a plain file name", p.file);
            }
            let path = out_dir.join(&p.file);
            fs::write(&path, &p.svg).with_context(|| format!("write {}", path.display()))?;
        }
    }
    let path = out_dir.join("benchmarks.md");
    fs::write(&path, render(info, outcomes))
        .with_context(|| format!("write {}", path.display()))?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::Plot;

    fn info(quick: bool) -> RunInfo {
        RunInfo {
            machine: Machine {
                cpu_model: "Some CPU @ 2.0GHz".into(),
                cores: 2,
                memory: "7.8 GiB".into(),
                kernel: "6.18.0".into(),
                os: "Debian GNU/Linux 12 (bookworm)".into(),
                virtualised: true,
            },
            started_unix: 1_700_000_000,
            quick,
            total: Duration::from_secs(125),
            commit: Some("abc1234".into()),
            command: "cargo xtask bench --quick".into(),
        }
    }

    fn outcome(name: &str, title: &str, goals: Vec<GoalRow>) -> Outcome {
        Outcome {
            name: name.into(),
            section: Section {
                title: title.into(),
                body_md: format!("Body of {title}.\n\n![plot]({name}.svg)\n"),
                plots: vec![Plot {
                    file: format!("{name}.svg"),
                    svg: "<svg xmlns=\"http://www.w3.org/2000/svg\"/>".into(),
                }],
                goals,
            },
            took: Duration::from_millis(4200),
        }
    }

    #[test]
    fn dates() {
        assert_eq!(utc_date(0), "1970-01-01 00:00 UTC");
        assert_eq!(utc_date(1_700_000_000), "2023-11-14 22:13 UTC");
        // A leap day.
        assert_eq!(utc_date(951_782_400), "2000-02-29 00:00 UTC");
        assert_eq!(utc_date(1_767_225_599), "2025-12-31 23:59 UTC");
    }

    #[test]
    fn machine_parsers() {
        let cpuinfo = "processor\t: 0\nmodel name\t: Intel(R)  Xeon(R) CPU @ 2.20GHz\nflags\t: fpu hypervisor\n";
        assert_eq!(
            cpu_model(cpuinfo).as_deref(),
            Some("Intel(R) Xeon(R) CPU @ 2.20GHz")
        );
        assert_eq!(
            mem_total("MemTotal:        8048576 kB\nMemFree: 1 kB\n").as_deref(),
            Some("7.7 GiB")
        );
        assert_eq!(
            os_name("NAME=x\nPRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\n").as_deref(),
            Some("Debian GNU/Linux 12 (bookworm)")
        );
        assert_eq!(cpu_model(""), None);
    }

    #[test]
    fn cells_are_one_line_and_escaped() {
        assert_eq!(cell("a | b\nc"), "a \\| b c");
        assert_eq!(
            anchor("1. Per-packet cost (BPF_PROG_TEST_RUN)"),
            "1-per-packet-cost-bpf_prog_test_run"
        );
    }

    #[test]
    fn report_has_header_goals_and_sections_in_order() {
        let goals = vec![
            GoalRow {
                goal: "TC ≤ 3× no-op".into(),
                figure: "1.5 / 1.6 / 1.8 ×".into(),
                met: Some(true),
                why: String::new(),
            },
            GoalRow {
                goal: "XDP ≤ 3× no-op".into(),
                figure: "3.5×".into(),
                met: Some(false),
                why: "the | pipe\nand newline".into(),
            },
        ];
        let outcomes = vec![
            outcome("prog-cost", "1. Per-packet cost", goals),
            Outcome {
                name: "throughput".into(),
                section: not_measured("2. Throughput", "lab failed:\n  no veth"),
                took: Duration::from_secs(1),
            },
            outcome("flows", "4. Flows disturbed", Vec::new()),
        ];
        let md = render(&info(true), &outcomes);
        assert!(md.starts_with("# ipmp benchmarks\n"));
        assert!(md.contains("**Quick run**"));
        assert!(md.contains("| Date | 2023-11-14 22:13 UTC |"));
        assert!(md.contains("| Run | quick (2 min 05 s for the sections, build excluded) |"));
        assert!(md.contains("| CPU | Some CPU @ 2.0GHz (virtual machine) |"));
        assert!(md.contains("| Kernel | 6.18.0 |"));
        assert!(md.contains(
            "| [1. Per-packet cost](#1-per-packet-cost) | TC ≤ 3× no-op | 1.5 / 1.6 / 1.8 × | yes |  |"
        ));
        assert!(md.contains("|  | XDP ≤ 3× no-op | 3.5× | **no** | the \\| pipe and newline |"));
        assert!(md.contains(
            "| [2. Throughput](#2-throughput) | | | not measured | lab failed: no veth |"
        ));
        // Sections in the order given, after the goals.
        let goals_at = md.find("## Goals").expect("goals");
        let p1 = md.find("## 1. Per-packet cost").expect("s1");
        let p2 = md.find("## 2. Throughput").expect("s2");
        let p4 = md.find("## 4. Flows disturbed").expect("s4");
        assert!(goals_at < p1 && p1 < p2 && p2 < p4);
        assert!(md.contains("<sub>`--only prog-cost` · 4.2 s</sub>"));
        assert!(md.contains("**Not measured in this run:** lab failed: no veth"));
        // Every table row has the same number of unescaped pipes as its header.
        for line in md
            .lines()
            .filter(|l| l.starts_with("| [") || l.starts_with("|  |"))
        {
            let pipes = line.matches('|').count() - line.matches("\\|").count();
            assert_eq!(pipes, 6, "{line}");
        }
        let full = render(&info(false), &outcomes);
        assert!(!full.contains("Quick run"));
        assert!(full.contains("| Run | full"));
    }

    #[test]
    fn write_puts_report_and_plots_in_out_dir() {
        let dir = std::env::temp_dir().join(format!("ipmp-report-test-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let outcomes = vec![outcome("flows", "4. Flows", Vec::new())];
        let path = write(&dir, &info(false), &outcomes).expect("write");
        assert_eq!(path, dir.join("benchmarks.md"));
        assert!(
            fs::read_to_string(&path)
                .expect("md")
                .contains("## 4. Flows")
        );
        assert!(dir.join("flows.svg").is_file());
        // A plot name with a directory part is refused rather than written elsewhere.
        let mut bad = outcome("x", "x", Vec::new());
        bad.section.plots[0].file = "../evil/".into();
        assert!(write(&dir, &info(false), &[bad]).is_err());
        fs::remove_dir_all(&dir).expect("cleanup");
    }
}
