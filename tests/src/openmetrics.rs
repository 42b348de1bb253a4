//! A strict reader of the OpenMetrics text format, for checking ipmpd's metrics endpoint:
//! every line a HELP, TYPE, UNIT or sample line; every family with HELP and TYPE before its
//! samples and never split; sample names the family's name plus a suffix its type allows;
//! no series twice; histogram buckets cumulative with `+Inf` equal to `_count`; `# EOF` last.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{Context as _, anyhow, bail, ensure};

/// One sample line.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// One metric family: its descriptor and samples.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Family {
    pub kind: String,
    pub help: String,
    pub unit: Option<String>,
    pub samples: Vec<Sample>,
}

/// A parsed exposition, families by name.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Exposition {
    pub families: BTreeMap<String, Family>,
}

impl Exposition {
    /// The value of sample `name` with exactly `labels`.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let want: BTreeMap<String, String> = labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        self.families
            .values()
            .flat_map(|f| &f.samples)
            .find(|s| s.name == name && s.labels == want)
            .map(|s| s.value)
    }
}

const KINDS: [&str; 8] = [
    "counter",
    "gauge",
    "histogram",
    "gaugehistogram",
    "summary",
    "info",
    "stateset",
    "unknown",
];

fn suffixes(kind: &str) -> &'static [&'static str] {
    match kind {
        "counter" => &["_total", "_created"],
        "histogram" => &["_bucket", "_count", "_sum", "_created"],
        "gaugehistogram" => &["_bucket", "_gcount", "_gsum"],
        "summary" => &["", "_count", "_sum", "_created"],
        "info" => &["_info"],
        _ => &[""],
    }
}

fn is_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn is_label_name(s: &str) -> bool {
    is_name(s) && !s.contains(':')
}

fn parse_value(s: &str) -> anyhow::Result<f64> {
    match s {
        "+Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        "NaN" => Ok(f64::NAN),
        _ if s.chars().all(|c| c.is_ascii_digit() || "+-.eE".contains(c)) && !s.is_empty() => {
            s.parse().with_context(|| format!("bad number `{s}`"))
        }
        _ => bail!("bad number `{s}`"),
    }
}

/// `name="value",...` up to the closing brace; returns the labels and the rest after `}`.
fn parse_labels(s: &str) -> anyhow::Result<(BTreeMap<String, String>, &str)> {
    let mut labels = BTreeMap::new();
    let mut rest = s;
    if let Some(after) = rest.strip_prefix('}') {
        return Ok((labels, after));
    }
    loop {
        let (name, after) = rest
            .split_once("=\"")
            .ok_or_else(|| anyhow!("label without =\" in `{s}`"))?;
        ensure!(is_label_name(name), "bad label name `{name}`");
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            match chars.next() {
                Some((_, '\\')) => match chars.next() {
                    Some((_, '\\')) => value.push('\\'),
                    Some((_, '"')) => value.push('"'),
                    Some((_, 'n')) => value.push('\n'),
                    other => bail!("bad escape {other:?} in label {name}"),
                },
                Some((i, '"')) => break i,
                Some((_, '\n')) => bail!("raw newline in label {name}"),
                Some((_, c)) => value.push(c),
                None => bail!("unterminated value of label {name}"),
            }
        };
        ensure!(
            labels.insert(name.to_owned(), value).is_none(),
            "label {name} given twice"
        );
        rest = &after[end + 1..];
        if let Some(after) = rest.strip_prefix('}') {
            return Ok((labels, after));
        }
        rest = rest
            .strip_prefix(',')
            .ok_or_else(|| anyhow!("expected , or }} after label {name}"))?;
    }
}

fn parse_sample(line: &str) -> anyhow::Result<Sample> {
    let name_end = line.find(['{', ' ']).unwrap_or(line.len());
    let name = &line[..name_end];
    ensure!(is_name(name), "bad metric name `{name}`");
    let (labels, rest) = match line[name_end..].strip_prefix('{') {
        Some(after) => parse_labels(after)?,
        None => (BTreeMap::new(), &line[name_end..]),
    };
    let rest = rest
        .strip_prefix(' ')
        .ok_or_else(|| anyhow!("no space before the value"))?;
    let mut parts = rest.split(' ');
    let value = parse_value(parts.next().unwrap_or(""))?;
    if let Some(ts) = parts.next() {
        parse_value(ts).context("timestamp")?;
    }
    ensure!(parts.next().is_none(), "trailing text after the value");
    Ok(Sample {
        name: name.to_owned(),
        labels,
        value,
    })
}

/// Parses `text` strictly; the error names the line.
pub fn parse(text: &str) -> anyhow::Result<Exposition> {
    let body = text
        .strip_suffix("# EOF\n")
        .or_else(|| text.strip_suffix("# EOF"))
        .ok_or_else(|| anyhow!("the exposition does not end with `# EOF`"))?;
    let mut out = Exposition::default();
    let mut current: Option<String> = None;
    let mut closed: BTreeSet<String> = BTreeSet::new();
    let mut series: BTreeSet<(String, Vec<(String, String)>)> = BTreeSet::new();
    for (n, line) in body.lines().enumerate() {
        let at = || format!("line {}: `{line}`", n + 1);
        if let Some(comment) = line.strip_prefix("# ") {
            let mut parts = comment.splitn(3, ' ');
            let (Some(what), Some(name)) = (parts.next(), parts.next()) else {
                bail!("{}: incomplete comment", at());
            };
            let arg = parts.next().unwrap_or("");
            ensure!(is_name(name), "{}: bad family name", at());
            if current.as_deref() != Some(name) {
                if let Some(prev) = current.take() {
                    closed.insert(prev);
                }
                ensure!(!closed.contains(name), "{}: family {name} split", at());
                current = Some(name.to_owned());
            }
            let f = out.families.entry(name.to_owned()).or_default();
            ensure!(f.samples.is_empty(), "{}: descriptor after samples", at());
            match what {
                "HELP" => {
                    ensure!(f.help.is_empty(), "{}: second HELP", at());
                    ensure!(!arg.is_empty(), "{}: empty HELP", at());
                    f.help = arg.to_owned();
                }
                "TYPE" => {
                    ensure!(f.kind.is_empty(), "{}: second TYPE", at());
                    ensure!(KINDS.contains(&arg), "{}: unknown type", at());
                    f.kind = arg.to_owned();
                }
                "UNIT" => {
                    ensure!(f.unit.is_none(), "{}: second UNIT", at());
                    ensure!(
                        name.ends_with(&format!("_{arg}")),
                        "{}: family name must end with its unit",
                        at()
                    );
                    f.unit = Some(arg.to_owned());
                }
                _ => bail!("{}: unknown comment", at()),
            }
            continue;
        }
        let sample = parse_sample(line).with_context(at)?;
        let family = current
            .as_deref()
            .ok_or_else(|| anyhow!("{}: sample before any TYPE", at()))?;
        let f = out
            .families
            .get_mut(family)
            .ok_or_else(|| anyhow!("{}: no family", at()))?;
        ensure!(
            !f.help.is_empty() && !f.kind.is_empty(),
            "{}: family {family} lacks HELP or TYPE",
            at()
        );
        let suffix = sample
            .name
            .strip_prefix(family)
            .ok_or_else(|| anyhow!("{}: sample of another family than {family}", at()))?;
        ensure!(
            suffixes(&f.kind).contains(&suffix),
            "{}: suffix `{suffix}` not allowed for a {}",
            at(),
            f.kind
        );
        ensure!(
            suffix != "_bucket" || sample.labels.contains_key("le"),
            "{}: bucket without le",
            at()
        );
        ensure!(
            f.kind != "counter" || sample.value >= 0.0,
            "{}: negative counter",
            at()
        );
        let key = (
            sample.name.clone(),
            sample
                .labels
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        );
        ensure!(series.insert(key), "{}: duplicate series", at());
        f.samples.push(sample);
    }
    for (name, f) in &out.families {
        ensure!(
            !f.help.is_empty() && !f.kind.is_empty(),
            "family {name} lacks HELP or TYPE"
        );
        if f.kind == "histogram" {
            check_histogram(name, f)?;
        }
    }
    Ok(out)
}

/// A sample's labels, sorted (without `le` for histogram buckets).
type SeriesKey = Vec<(String, String)>;

/// Buckets cumulative per series, ending with `+Inf` equal to `_count`.
fn check_histogram(name: &str, f: &Family) -> anyhow::Result<()> {
    let mut by_series: BTreeMap<SeriesKey, Vec<(f64, f64)>> = BTreeMap::new();
    let mut counts = BTreeMap::new();
    for s in &f.samples {
        let mut labels = s.labels.clone();
        let le = labels.remove("le");
        let key: SeriesKey = labels.into_iter().collect();
        if s.name.ends_with("_bucket") {
            let le = parse_value(le.as_deref().unwrap_or(""))?;
            by_series.entry(key).or_default().push((le, s.value));
        } else if s.name.ends_with("_count") {
            counts.insert(key, s.value);
        }
    }
    for (key, buckets) in &by_series {
        ensure!(
            buckets
                .windows(2)
                .all(|w| w[0].0 < w[1].0 && w[0].1 <= w[1].1),
            "{name} {key:?}: buckets not ascending and cumulative"
        );
        let last = buckets.last().ok_or_else(|| anyhow!("{name}: no bucket"))?;
        ensure!(last.0.is_infinite(), "{name} {key:?}: no +Inf bucket");
        ensure!(
            counts.get(key) == Some(&last.1),
            "{name} {key:?}: +Inf bucket differs from _count"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "# HELP a_total_x A.\n# TYPE a_total_x counter\na_total_x_total{l=\"v\\\"\"} 1\n\
# HELP h_seconds H.\n# TYPE h_seconds histogram\n# UNIT h_seconds seconds\n\
h_seconds_sum 0.5\nh_seconds_count 2\nh_seconds_bucket{le=\"0.1\"} 1\nh_seconds_bucket{le=\"+Inf\"} 2\n# EOF\n";

    #[test]
    fn a_valid_exposition_parses() {
        let e = parse(GOOD).unwrap();
        assert_eq!(e.value("a_total_x_total", &[("l", "v\"")]), Some(1.0));
        assert_eq!(e.families["h_seconds"].unit.as_deref(), Some("seconds"));
    }

    #[test]
    fn every_rule_is_enforced() {
        let broken = [
            ("no EOF", GOOD.replace("# EOF\n", "")),
            ("no HELP", GOOD.replace("# HELP a_total_x A.\n", "")),
            ("no TYPE", GOOD.replace("# TYPE a_total_x counter\n", "")),
            (
                "bad suffix",
                GOOD.replace("a_total_x_total{", "a_total_x_count{"),
            ),
            (
                "duplicate",
                GOOD.replace(
                    "h_seconds_count 2\n",
                    "h_seconds_count 2\nh_seconds_count 2\n",
                ),
            ),
            (
                "not cumulative",
                GOOD.replace("le=\"0.1\"} 1", "le=\"0.1\"} 3"),
            ),
            (
                "inf differs",
                GOOD.replace("h_seconds_count 2", "h_seconds_count 3"),
            ),
            ("bad escape", GOOD.replace("v\\\"", "v\\t")),
            (
                "bad value",
                GOOD.replace("h_seconds_sum 0.5", "h_seconds_sum x"),
            ),
            ("unknown comment", GOOD.replace("# HELP a", "# NOTE a")),
            (
                "unit mismatch",
                GOOD.replace("# UNIT h_seconds seconds", "# UNIT h_seconds bytes"),
            ),
            (
                "split family",
                format!(
                    "{}# HELP a_total_x A.\n# EOF\n",
                    GOOD.trim_end_matches("# EOF\n")
                ),
            ),
            ("text after EOF", format!("{GOOD}x 1\n")),
            (
                "negative counter",
                GOOD.replace("_total{l=\"v\\\"\"} 1", "_total{l=\"v\\\"\"} -1"),
            ),
        ];
        for (what, text) in broken {
            assert_ne!(text, GOOD, "{what}: the mutation did not apply");
            assert!(parse(&text).is_err(), "{what} was accepted:\n{text}");
        }
    }
}
