//! `cargo xtask bench`: side-by-side measurements written to `docs/benchmarks.md`.
//!
//! Each section module measures one comparison, both sides in the same run on the same lab, and
//! returns a [`Section`]; the report writer joins them. Benchmarks never fail for being slow: a
//! missed goal is reported with its reason.

pub mod aggregate;
pub mod failover;
pub mod throughput;

pub mod control;
pub mod flows;
pub mod live_cost;
pub mod prog_cost;
pub mod report;
pub mod svg;
pub mod testbed;

use std::path::PathBuf;

/// What the run was asked to do.
#[derive(Debug, Clone)]
pub struct Opts {
    /// The ~2-minute subset: fewer trials, shorter runs; the report says so.
    pub quick: bool,
    /// Where `benchmarks.md` and the SVG plots go (normally `docs/`).
    pub out_dir: PathBuf,
}

impl Opts {
    /// `full` in a full run, `quick` in a quick one: trial counts and durations.
    pub fn pick<T>(&self, full: T, quick: T) -> T {
        if self.quick { quick } else { full }
    }
}

/// One comparison of the report.
#[derive(Debug, Clone, Default)]
pub struct Section {
    pub title: String,
    /// Markdown: tables and prose, linking its plots as `![..](file.svg)`.
    pub body_md: String,
    pub plots: Vec<Plot>,
    /// The goals this section is held against, with the figures measured.
    pub goals: Vec<GoalRow>,
}

/// An SVG written beside the report.
#[derive(Debug, Clone)]
pub struct Plot {
    /// File name only, e.g. `failover-timeline.svg`.
    pub file: String,
    pub svg: String,
}

/// One line of the goals table.
#[derive(Debug, Clone)]
pub struct GoalRow {
    pub goal: String,
    pub figure: String,
    /// `None` when it could not be measured in this run.
    pub met: Option<bool>,
    /// Why a goal is missed (or what limits the measurement); empty when met.
    pub why: String,
}

impl GoalRow {
    /// A goal this run could not measure, and why.
    pub fn unmeasured(goal: impl Into<String>, why: impl Into<String>) -> GoalRow {
        GoalRow {
            goal: goal.into(),
            figure: "—".into(),
            met: None,
            why: why.into(),
        }
    }
}

/// min / median / max over repeated trials.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Summary {
    pub min: f64,
    pub median: f64,
    pub max: f64,
    pub n: usize,
}

impl Summary {
    /// `None` for no samples; NaNs are ignored.
    pub fn of(samples: &[f64]) -> Option<Summary> {
        let mut v: Vec<f64> = samples.iter().copied().filter(|x| !x.is_nan()).collect();
        if v.is_empty() {
            return None;
        }
        v.sort_by(f64::total_cmp);
        let n = v.len();
        let median = if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        };
        Some(Summary {
            min: v[0],
            median,
            max: v[n - 1],
            n,
        })
    }

    /// `min / median / max` with `prec` decimals and a unit, e.g. `1.2 / 1.5 / 3.0 ms`.
    pub fn fmt(&self, prec: usize, unit: &str) -> String {
        let s = format!(
            "{:.prec$} / {:.prec$} / {:.prec$}",
            self.min, self.median, self.max
        );
        if unit.is_empty() {
            s
        } else {
            format!("{s} {unit}")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_odd_even_and_empty() {
        let s = Summary::of(&[3.0, 1.0, 2.0]).expect("samples");
        assert_eq!((s.min, s.median, s.max, s.n), (1.0, 2.0, 3.0, 3));
        let s = Summary::of(&[4.0, 1.0, 2.0, 3.0]).expect("samples");
        assert_eq!(s.median, 2.5);
        assert!(Summary::of(&[]).is_none());
        assert!(Summary::of(&[f64::NAN]).is_none());
        assert_eq!(
            Summary::of(&[1.0, 2.0]).expect("samples").fmt(1, "ms"),
            "1.0 / 1.5 / 2.0 ms"
        );
        assert_eq!(
            Summary::of(&[1.0]).expect("samples").fmt(2, ""),
            "1.00 / 1.00 / 1.00"
        );
    }
}
