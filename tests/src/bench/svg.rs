//! Hand-written SVG plots for the benchmark report: grouped bars and line plots.
//!
//! No dependencies, deterministic output (same input → same bytes), every text escaped. Numbers are
//! printed with fixed decimals so the files diff cleanly between runs.

use std::fmt::Write as _;

/// Default width; bar charts with many bars grow wider.
const W: f64 = 720.0;
const H: f64 = 400.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 170.0;
const TOP: f64 = 40.0;
const BOTTOM: f64 = 60.0;

/// Colour-blind friendly palette (Okabe–Ito), cycled by series index.
const PALETTE: [&str; 8] = [
    "#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000",
];

/// Escapes text for SVG character data and attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            // XML 1.0 forbids most control characters even when escaped.
            c if (c as u32) < 0x20 && c != '\t' && c != '\n' && c != '\r' => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

fn colour(i: usize) -> &'static str {
    PALETTE[i % PALETTE.len()]
}

/// A "nice" axis: 0 (or the data minimum) to a round maximum, with round tick steps.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Axis {
    lo: f64,
    hi: f64,
    step: f64,
}

impl Axis {
    fn new(lo: f64, hi: f64) -> Axis {
        let (mut lo, mut hi) = if lo.is_finite() && hi.is_finite() {
            (lo, hi)
        } else {
            (0.0, 1.0)
        };
        if hi <= lo {
            // A flat series still needs a visible range.
            let pad = if lo == 0.0 { 1.0 } else { lo.abs() * 0.1 };
            lo -= if lo == 0.0 { 0.0 } else { pad };
            hi += pad;
        }
        let step = nice_step((hi - lo) / 5.0);
        let lo = (lo / step).floor() * step;
        let hi = (hi / step).ceil() * step;
        Axis { lo, hi, step }
    }

    fn ticks(&self) -> Vec<f64> {
        let n = ((self.hi - self.lo) / self.step).round() as i64;
        (0..=n).map(|i| self.lo + i as f64 * self.step).collect()
    }

    /// Fraction 0..1 of the way from `lo` to `hi`.
    fn frac(&self, v: f64) -> f64 {
        if self.hi > self.lo {
            ((v - self.lo) / (self.hi - self.lo)).clamp(0.0, 1.0)
        } else {
            0.0
        }
    }
}

/// 1, 2 or 5 times a power of ten, at least `raw`.
fn nice_step(raw: f64) -> f64 {
    if !(raw.is_finite() && raw > 0.0) {
        return 1.0;
    }
    let mag = 10f64.powf(raw.log10().floor());
    let norm = raw / mag;
    let m = if norm <= 1.0 {
        1.0
    } else if norm <= 2.0 {
        2.0
    } else if norm <= 5.0 {
        5.0
    } else {
        10.0
    };
    m * mag
}

/// Tick label: as few decimals as the step needs, SI suffix for large values.
fn tick_label(v: f64, step: f64) -> String {
    let a = v.abs();
    let (v, step, suffix) = if a >= 1e9 {
        (v / 1e9, step / 1e9, "G")
    } else if a >= 1e6 {
        (v / 1e6, step / 1e6, "M")
    } else if a >= 1e4 {
        (v / 1e3, step / 1e3, "k")
    } else {
        (v, step, "")
    };
    let decimals = if step >= 1.0 || step <= 0.0 {
        0
    } else {
        (-step.log10().floor()) as usize
    };
    let s = format!("{v:.decimals$}{suffix}");
    // "-0" looks like a bug in a plot.
    if s.starts_with("-0") && s.trim_start_matches(['-', '0', '.']).is_empty() {
        s[1..].to_string()
    } else {
        s
    }
}

/// Value label above a bar: three significant digits.
fn value_label(v: f64) -> String {
    let a = v.abs();
    if a >= 1e9 {
        format!("{:.2}G", v / 1e9)
    } else if a >= 1e6 {
        format!("{:.2}M", v / 1e6)
    } else if a >= 1e4 {
        format!("{:.1}k", v / 1e3)
    } else if a >= 100.0 {
        format!("{v:.0}")
    } else if a >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

fn header(out: &mut String, w: f64, title: &str) {
    let _ = write!(
        out,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w:.0}\" height=\"{H:.0}\" \
         viewBox=\"0 0 {w:.0} {H:.0}\" font-family=\"sans-serif\" font-size=\"12\">\n\
         <rect x=\"0\" y=\"0\" width=\"{w:.0}\" height=\"{H:.0}\" fill=\"#ffffff\"/>\n\
         <text x=\"{:.1}\" y=\"24\" text-anchor=\"middle\" font-size=\"15\" font-weight=\"bold\">{}</text>\n",
        w / 2.0,
        escape(title)
    );
}

/// Y axis with grid lines and tick labels, plus the rotated axis label.
fn y_axis(out: &mut String, w: f64, axis: &Axis, label: &str) {
    let plot_h = H - TOP - BOTTOM;
    for t in axis.ticks() {
        let y = TOP + plot_h * (1.0 - axis.frac(t));
        let _ = writeln!(
            out,
            "<line x1=\"{LEFT:.1}\" y1=\"{y:.1}\" x2=\"{:.1}\" y2=\"{y:.1}\" stroke=\"#dddddd\"/>\n\
             <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
            w - RIGHT,
            LEFT - 6.0,
            y + 4.0,
            escape(&tick_label(t, axis.step))
        );
    }
    let _ = writeln!(
        out,
        "<line x1=\"{LEFT:.1}\" y1=\"{TOP:.1}\" x2=\"{LEFT:.1}\" y2=\"{:.1}\" stroke=\"#000000\"/>\n\
         <line x1=\"{LEFT:.1}\" y1=\"{:.1}\" x2=\"{:.1}\" y2=\"{:.1}\" stroke=\"#000000\"/>\n\
         <text x=\"16\" y=\"{:.1}\" text-anchor=\"middle\" transform=\"rotate(-90 16 {:.1})\">{}</text>",
        H - BOTTOM,
        H - BOTTOM,
        w - RIGHT,
        H - BOTTOM,
        TOP + plot_h / 2.0,
        TOP + plot_h / 2.0,
        escape(label)
    );
}

fn legend(out: &mut String, w: f64, names: &[&str], line: bool) {
    let x = w - RIGHT + 14.0;
    for (i, name) in names.iter().enumerate() {
        let y = TOP + 8.0 + i as f64 * 18.0;
        if line {
            let _ = writeln!(
                out,
                "<line x1=\"{x:.1}\" y1=\"{y:.1}\" x2=\"{:.1}\" y2=\"{y:.1}\" stroke=\"{}\" stroke-width=\"2\"/>",
                x + 14.0,
                colour(i)
            );
        } else {
            let _ = writeln!(
                out,
                "<rect x=\"{x:.1}\" y=\"{:.1}\" width=\"12\" height=\"12\" fill=\"{}\"/>",
                y - 6.0,
                colour(i)
            );
        }
        let _ = writeln!(
            out,
            "<text x=\"{:.1}\" y=\"{:.1}\">{}</text>",
            x + 20.0,
            y + 4.0,
            escape(name)
        );
    }
}

/// Splits `text` at spaces into lines of at most `max_chars` characters (a longer word stays
/// whole on its own line); at most three lines, the last one taking the rest.
fn wrap(text: &str, max_chars: usize) -> Vec<String> {
    let mut lines: Vec<String> = Vec::new();
    for word in text.split_whitespace() {
        let full = lines.len() == 3;
        match lines.last_mut() {
            Some(l) if full || l.chars().count() + 1 + word.chars().count() <= max_chars => {
                l.push(' ');
                l.push_str(word);
            }
            _ => lines.push(word.to_string()),
        }
    }
    lines
}

/// Series names in order of first appearance across groups.
fn series_names(groups: &[(String, Vec<(String, f64)>)]) -> Vec<&str> {
    let mut names: Vec<&str> = Vec::new();
    for (_, bars) in groups {
        for (name, _) in bars {
            if !names.contains(&name.as_str()) {
                names.push(name);
            }
        }
    }
    names
}

/// Grouped bar chart: one group per x category, one bar per `(series name, value)`, a legend.
///
/// A series keeps its colour and slot across groups; a group may omit a series. Non-finite values
/// are drawn as missing. The y axis starts at 0 (or below, for negative values).
pub fn bars(title: &str, y_label: &str, groups: &[(String, Vec<(String, f64)>)]) -> String {
    let names = series_names(groups);
    let values = groups
        .iter()
        .flat_map(|(_, b)| b.iter().map(|(_, v)| *v))
        .filter(|v| v.is_finite());
    let (mut lo, mut hi) = (0.0f64, 0.0f64);
    for v in values {
        lo = lo.min(v);
        hi = hi.max(v);
    }
    let axis = Axis::new(lo, hi);

    // Wide enough for every bar to be seen and every group label to fit in a few lines.
    let per_group = (names.len() as f64 * 26.0).max(80.0);
    let w = W.max(LEFT + RIGHT + per_group * groups.len() as f64);
    let mut out = String::new();
    header(&mut out, w, title);
    y_axis(&mut out, w, &axis, y_label);

    let plot_w = w - LEFT - RIGHT;
    let plot_h = H - TOP - BOTTOM;
    let group_w = plot_w / groups.len().max(1) as f64;
    let bar_w = (group_w * 0.8) / names.len().max(1) as f64;
    let zero_y = TOP + plot_h * (1.0 - axis.frac(0.0));
    for (g, (group, bars)) in groups.iter().enumerate() {
        let gx = LEFT + g as f64 * group_w;
        for (name, v) in bars {
            let Some(slot) = names.iter().position(|n| n == name) else {
                continue;
            };
            if !v.is_finite() {
                continue;
            }
            let x = gx + group_w * 0.1 + slot as f64 * bar_w;
            let vy = TOP + plot_h * (1.0 - axis.frac(*v));
            let (y, h) = if vy < zero_y {
                (vy, zero_y - vy)
            } else {
                (zero_y, vy - zero_y)
            };
            let _ = writeln!(
                out,
                "<rect x=\"{x:.1}\" y=\"{y:.1}\" width=\"{:.1}\" height=\"{h:.1}\" fill=\"{}\">\
                 <title>{}</title></rect>",
                (bar_w - 2.0).max(1.0),
                colour(slot),
                escape(&format!("{group} / {name}: {}", value_label(*v)))
            );
            // Value labels only where they fit.
            if bar_w >= 22.0 {
                let _ = writeln!(
                    out,
                    "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\" font-size=\"10\">{}</text>",
                    x + (bar_w - 2.0) / 2.0,
                    y - 3.0,
                    escape(&value_label(*v))
                );
            }
        }
        // About 6.5 px per character at 12 px: wrap the label to the group's width.
        let max_chars = ((group_w - 6.0) / 6.5).max(4.0) as usize;
        for (i, line) in wrap(group, max_chars).iter().enumerate() {
            let _ = writeln!(
                out,
                "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>",
                gx + group_w / 2.0,
                H - BOTTOM + 18.0 + 14.0 * i as f64,
                escape(line)
            );
        }
    }
    legend(&mut out, w, &names, false);
    out.push_str("</svg>\n");
    out
}

/// Line plot with axes, ticks and a legend; one polyline (with point markers when sparse) per
/// series. Non-finite points are skipped.
pub fn lines(
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[(String, Vec<(f64, f64)>)],
) -> String {
    let pts = || {
        series
            .iter()
            .flat_map(|(_, p)| p.iter().copied())
            .filter(|(x, y)| x.is_finite() && y.is_finite())
    };
    let (mut xlo, mut xhi, mut ylo, mut yhi) = (f64::INFINITY, f64::NEG_INFINITY, 0.0f64, 0.0f64);
    for (x, y) in pts() {
        xlo = xlo.min(x);
        xhi = xhi.max(x);
        ylo = ylo.min(y);
        yhi = yhi.max(y);
    }
    if !xlo.is_finite() {
        (xlo, xhi) = (0.0, 1.0);
    }
    let xaxis = Axis::new(xlo, xhi);
    let yaxis = Axis::new(ylo, yhi);

    let mut out = String::new();
    header(&mut out, W, title);
    y_axis(&mut out, W, &yaxis, y_label);

    let plot_w = W - LEFT - RIGHT;
    let plot_h = H - TOP - BOTTOM;
    for t in xaxis.ticks() {
        let x = LEFT + plot_w * xaxis.frac(t);
        let _ = writeln!(
            out,
            "<line x1=\"{x:.1}\" y1=\"{:.1}\" x2=\"{x:.1}\" y2=\"{:.1}\" stroke=\"#000000\"/>\n\
             <text x=\"{x:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>",
            H - BOTTOM,
            H - BOTTOM + 5.0,
            H - BOTTOM + 18.0,
            escape(&tick_label(t, xaxis.step))
        );
    }
    let _ = writeln!(
        out,
        "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>",
        LEFT + plot_w / 2.0,
        H - 14.0,
        escape(x_label)
    );
    for (i, (_, points)) in series.iter().enumerate() {
        let finite: Vec<(f64, f64)> = points
            .iter()
            .copied()
            .filter(|(x, y)| x.is_finite() && y.is_finite())
            .collect();
        let coords: Vec<String> = finite
            .iter()
            .map(|(x, y)| {
                format!(
                    "{:.1},{:.1}",
                    LEFT + plot_w * xaxis.frac(*x),
                    TOP + plot_h * (1.0 - yaxis.frac(*y))
                )
            })
            .collect();
        if coords.is_empty() {
            continue;
        }
        let _ = writeln!(
            out,
            "<polyline fill=\"none\" stroke=\"{}\" stroke-width=\"1.5\" points=\"{}\"/>",
            colour(i),
            coords.join(" ")
        );
        if coords.len() <= 40 {
            for c in &coords {
                let (cx, cy) = c.split_once(',').unwrap_or(("0", "0"));
                let _ = writeln!(
                    out,
                    "<circle cx=\"{cx}\" cy=\"{cy}\" r=\"2.5\" fill=\"{}\"/>",
                    colour(i)
                );
            }
        }
    }
    let names: Vec<&str> = series.iter().map(|(n, _)| n.as_str()).collect();
    legend(&mut out, W, &names, true);
    out.push_str("</svg>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal XML well-formedness check: balanced tags, quoted attributes, no raw `&`/`<` in
    /// text, and exactly one root element.
    fn assert_well_formed(svg: &str) {
        let mut stack: Vec<String> = Vec::new();
        let mut roots = 0;
        let b = svg.as_bytes();
        let mut i = 0;
        while i < b.len() {
            match b[i] {
                b'<' => {
                    let end = svg[i..].find('>').expect("unterminated tag") + i;
                    let tag = &svg[i + 1..end];
                    assert!(!tag.contains('<'), "'<' inside tag: {tag}");
                    if let Some(name) = tag.strip_prefix('/') {
                        let open = stack.pop().expect("close without open");
                        assert_eq!(open, name.trim(), "mismatched close");
                    } else {
                        let self_closing = tag.ends_with('/');
                        let name = tag
                            .trim_end_matches('/')
                            .split_whitespace()
                            .next()
                            .expect("tag name")
                            .to_string();
                        // Attributes: every `=` is followed by a quoted value.
                        let quotes = tag.matches('"').count();
                        assert_eq!(quotes % 2, 0, "unbalanced quotes in {tag}");
                        assert_eq!(tag.matches("=\"").count() * 2, quotes, "bad attr in {tag}");
                        if stack.is_empty() {
                            roots += 1;
                        }
                        if !self_closing {
                            stack.push(name);
                        }
                    }
                    i = end + 1;
                }
                b'&' => {
                    let semi = svg[i..].find(';').expect("raw &") + i;
                    let ent = &svg[i + 1..semi];
                    assert!(
                        ["amp", "lt", "gt", "quot", "apos"].contains(&ent),
                        "unknown entity {ent}"
                    );
                    i = semi + 1;
                }
                b'>' => panic!("raw > at {i}"),
                _ => i += 1,
            }
        }
        assert!(stack.is_empty(), "unclosed: {stack:?}");
        assert_eq!(roots, 1, "one root element");
        assert!(svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""));
    }

    fn sample_groups() -> Vec<(String, Vec<(String, f64)>)> {
        vec![
            (
                "2 members".into(),
                vec![("ipmp".into(), 9.5), ("nexthop".into(), 8.25)],
            ),
            (
                "4 members".into(),
                vec![("ipmp".into(), 9.1), ("plain".into(), 10.0)],
            ),
        ]
    }

    #[test]
    fn bars_well_formed_with_legend_and_values() {
        let svg = bars("Throughput", "Gbit/s", &sample_groups());
        assert_well_formed(&svg);
        // Three series in order of first appearance, one bar each where present.
        assert_eq!(svg.matches("<rect").count(), 1 + 4 + 3);
        assert!(svg.contains(">ipmp</text>") && svg.contains(">plain</text>"));
        assert!(svg.contains(">9.50</text>") && svg.contains(">10.0</text>"));
        assert!(svg.contains(">2 members</text>"));
    }

    #[test]
    fn lines_well_formed_with_ticks() {
        let series = vec![
            (
                "m0".to_string(),
                (0..100).map(|i| (i as f64, (i % 10) as f64)).collect(),
            ),
            ("m1".to_string(), vec![(0.0, 3.0), (99.0, 7.0)]),
        ];
        let svg = lines("Timeline", "ms", "packets/ms", &series);
        assert_well_formed(&svg);
        assert_eq!(svg.matches("<polyline").count(), 2);
        // Sparse series get point markers, dense ones do not.
        assert_eq!(svg.matches("<circle").count(), 2);
        assert!(svg.contains(">100</text>"), "x axis reaches a round 100");
    }

    #[test]
    fn text_is_escaped() {
        let nasty = "a<b & \"c\" 'd'>\u{1}";
        let groups = vec![(nasty.to_string(), vec![(nasty.to_string(), 1.0)])];
        let svg = bars(nasty, nasty, &groups);
        assert_well_formed(&svg);
        assert!(!svg.contains("a<b"));
        assert!(svg.contains("a&lt;b &amp; &quot;c&quot; &apos;d&apos;&gt; "));
        let svg = lines(
            nasty,
            nasty,
            nasty,
            &[(nasty.to_string(), vec![(0.0, 1.0)])],
        );
        assert_well_formed(&svg);
    }

    #[test]
    fn deterministic() {
        let a = bars("t", "y", &sample_groups());
        let b = bars("t", "y", &sample_groups());
        assert_eq!(a, b);
        let s = vec![("x".to_string(), vec![(0.5, 1.0), (2.0, 3.5)])];
        assert_eq!(lines("t", "x", "y", &s), lines("t", "x", "y", &s));
    }

    #[test]
    fn empty_and_degenerate_inputs_still_draw() {
        assert_well_formed(&bars("empty", "y", &[]));
        assert_well_formed(&lines("empty", "x", "y", &[]));
        let flat = vec![("f".to_string(), vec![(1.0, 5.0), (1.0, 5.0)])];
        assert_well_formed(&lines("flat", "x", "y", &flat));
        let bad = vec![(
            "g".to_string(),
            vec![("nan".to_string(), f64::NAN), ("neg".to_string(), -2.0)],
        )];
        let svg = bars("bad", "y", &bad);
        assert_well_formed(&svg);
        assert!(!svg.contains("NaN") && !svg.contains("inf"));
    }

    #[test]
    fn long_labels_wrap_and_many_bars_widen() {
        assert_eq!(
            wrap("TC IPv4 TCP on-link", 11),
            vec!["TC IPv4 TCP", "on-link"]
        );
        assert_eq!(wrap("a b c d e", 1), vec!["a", "b", "c d e"]);
        assert_eq!(wrap("", 5), Vec::<String>::new());
        let groups: Vec<(String, Vec<(String, f64)>)> = (0..8)
            .map(|g| {
                (
                    format!("TC IPv{g} TCP off-link"),
                    vec![("a".into(), 1.0), ("b".into(), 2.0), ("c".into(), 3.0)],
                )
            })
            .collect();
        let svg = bars("t", "y", &groups);
        assert_well_formed(&svg);
        assert!(
            !svg.contains("width=\"720\""),
            "8 groups of 3 bars widen the plot"
        );
        assert!(svg.contains(">off-link</text>"));
    }

    #[test]
    fn axis_and_labels() {
        assert_eq!(nice_step(0.7), 1.0);
        assert_eq!(nice_step(1.3), 2.0);
        assert_eq!(nice_step(30.0), 50.0);
        let a = Axis::new(0.0, 9.3);
        assert_eq!((a.lo, a.hi, a.step), (0.0, 10.0, 2.0));
        assert_eq!(a.ticks().len(), 6);
        assert_eq!(tick_label(2_500_000.0, 500_000.0), "2.5M");
        assert_eq!(tick_label(0.25, 0.05), "0.25");
        assert_eq!(tick_label(-0.0, 1.0), "0");
        assert_eq!(value_label(1234.0), "1234");
        assert_eq!(value_label(0.123), "0.12");
    }
}
