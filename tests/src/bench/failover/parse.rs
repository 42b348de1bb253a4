//! Pure helpers of the failover section: ipmpd log timestamps, receiver arrival logs, gaps and
//! per-millisecond bins. No I/O, no clock: times are passed in (ns or µs since the Unix epoch).

/// Removes ANSI colour sequences (`ESC [ ... letter`) that tracing writes even into files.
pub fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // CSI: ESC '[' parameters... final byte in '@'..='~'.
            if chars.next() == Some('[') {
                for c in chars.by_ref() {
                    if ('@'..='~').contains(&c) {
                        break;
                    }
                }
            }
            continue;
        }
        out.push(c);
    }
    out
}

/// Days from 1970-01-01 to the given proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The timestamp that starts a tracing-subscriber line, `2025-01-02T03:04:05.123456Z`, in µs
/// since the Unix epoch. Leading whitespace and colour codes must be stripped already.
pub fn log_time_us(line: &str) -> Option<i64> {
    let ts = line.split_whitespace().next()?;
    let ts = ts.strip_suffix('Z')?;
    let (date, time) = ts.split_once('T')?;
    let mut d = date.split('-');
    let (y, mo, da) = (d.next()?, d.next()?, d.next()?);
    let (y, mo, da): (i64, u32, u32) = (y.parse().ok()?, mo.parse().ok()?, da.parse().ok()?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&da) || d.next().is_some() {
        return None;
    }
    let (hms, frac) = time.split_once('.').unwrap_or((time, "0"));
    let mut t = hms.split(':');
    let (h, mi, s): (i64, i64, i64) = (
        t.next()?.parse().ok()?,
        t.next()?.parse().ok()?,
        t.next()?.parse().ok()?,
    );
    if t.next().is_some() || frac.is_empty() || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    // Scale the fraction to microseconds whatever its number of digits.
    let digits = frac.len().min(9);
    let mut frac_us: i64 = frac[..digits].parse().ok()?;
    for _ in digits..6 {
        frac_us *= 10;
    }
    for _ in 6..digits {
        frac_us /= 10;
    }
    let days = days_from_civil(y, mo, da);
    Some(((days * 24 + h) * 60 + mi) * 60_000_000 + s * 1_000_000 + frac_us)
}

/// One line of an ipmpd log: when and what (the message and fields, level and target kept).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    pub at_us: i64,
    pub text: String,
}

/// The timestamped lines of an ipmpd log (others, such as wrapped output, are skipped).
pub fn log_lines(log: &str) -> Vec<LogLine> {
    log.lines()
        .filter_map(|l| {
            let l = strip_ansi(l);
            let at_us = log_time_us(l.trim_start())?;
            Some(LogLine {
                at_us,
                text: l.trim().to_owned(),
            })
        })
        .collect()
}

/// The first line at or after `from_us` for which `pred` holds.
pub fn first_after(
    lines: &[LogLine],
    from_us: i64,
    pred: impl Fn(&str) -> bool,
) -> Option<&LogLine> {
    lines.iter().find(|l| l.at_us >= from_us && pred(&l.text))
}

/// ipmpd's "link state changed" line for `member` going down.
pub fn is_link_down(text: &str, member: &str) -> bool {
    text.contains("link state changed")
        && text.contains(&format!("member={member} "))
        && text.contains("link=Down")
}

/// ipmpd's debug line written right after a batch of map updates (the flip).
pub fn is_maps_updated(text: &str) -> bool {
    text.contains("maps updated")
}

/// ipmpd declaring `member` failed by probes: the prober's "IP interface failure detected on"
/// notice or the group's "<member> failed (Probe)" notice, whichever comes first.
pub fn is_probe_failure(text: &str, member: &str) -> bool {
    text.contains(&format!("IP interface failure detected on {member} "))
        || text.contains(&format!(": {member} failed (Probe)"))
}

/// Any failure ipmpd declared: a member failed (by probes or link) or the group failed.
pub fn is_any_failure(text: &str) -> bool {
    text.contains("IP interface failure detected on")
        || text.contains(" failed (Probe)")
        || text.contains(" failed (LinkDown)")
        || text.contains("group failed")
        || text.contains("all probe targets of group")
}

/// in.mpathd's "Cannot meet requested failure detection time" (the FDT was raised).
pub fn is_fdt_raised(text: &str) -> bool {
    text.contains("cannot meet requested failure detection time")
}

/// The N of ipmpd's "missed sending N probes on (...): the daemon ran late" notice.
pub fn missed_probes(text: &str) -> Option<u64> {
    let rest = text.split("missed sending ").nth(1)?;
    let (n, rest) = rest.split_once(' ')?;
    rest.starts_with("probes").then(|| n.parse().ok())?
}

/// Parses labtool's `--arrivals` file: `SEQ UNIX_NS` per line, in arrival order.
pub fn parse_arrivals(text: &str) -> Option<Vec<(u64, i64)>> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let mut f = l.split_whitespace();
            let seq = f.next()?.parse().ok()?;
            let ns = f.next()?.parse().ok()?;
            f.next().is_none().then_some((seq, ns))
        })
        .collect()
}

/// The outage a failure at `cut_ns` caused at a receiver: the silence between two consecutive
/// arrivals that ends after the cut and across which sequence numbers were lost — the first
/// such after the cut; without any loss, the silence that spans the cut. Silences without loss
/// elsewhere are the receiver (or sender) being scheduled late, not the network.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Outage {
    /// Last arrival before the silence.
    pub last_ns: i64,
    /// First arrival after it: traffic restored.
    pub next_ns: i64,
    /// Sequence numbers skipped across it.
    pub skipped: u64,
}

impl Outage {
    pub fn gap_ms(&self) -> f64 {
        (self.next_ns - self.last_ns) as f64 / 1e6
    }

    /// From the cut to the first arrival after the silence.
    pub fn restored_ms(&self, cut_ns: i64) -> f64 {
        (self.next_ns - cut_ns) as f64 / 1e6
    }
}

/// See [`Outage`]. `arrivals` are (sequence, ns) in arrival order. `None` when nothing arrived
/// after the cut (traffic never came back) or nothing before it (no stream to measure).
pub fn outage(arrivals: &[(u64, i64)], cut_ns: i64) -> Option<Outage> {
    let first_after = arrivals.iter().position(|(_, t)| *t > cut_ns)?;
    if first_after == 0 {
        return None;
    }
    // Highest sequence seen before each arrival: a reordered (late) datagram is no jump.
    let mut max_seq = arrivals[..first_after].iter().map(|(s, _)| *s).max()?;
    let spanning = Outage {
        last_ns: arrivals[first_after - 1].1,
        next_ns: arrivals[first_after].1,
        skipped: 0,
    };
    for w in arrivals[first_after - 1..].windows(2) {
        let (seq, t) = w[1];
        if seq > max_seq + 1 {
            return Some(Outage {
                last_ns: w[0].1,
                next_ns: t,
                skipped: seq - max_seq - 1,
            });
        }
        max_seq = max_seq.max(seq);
    }
    Some(spanning)
}

/// Packets per millisecond: counts of `times_ns` in 1-ms bins from `from_ms` to `to_ms`
/// (exclusive) relative to `origin_ns`, as (bin start in ms, count) points.
pub fn per_ms(times_ns: &[i64], origin_ns: i64, from_ms: i64, to_ms: i64) -> Vec<(f64, f64)> {
    let n = usize::try_from(to_ms - from_ms).unwrap_or(0);
    let mut bins = vec![0u32; n];
    for t in times_ns {
        let ms = (t - origin_ns).div_euclid(1_000_000);
        if let Ok(i) = usize::try_from(ms - from_ms)
            && let Some(b) = bins.get_mut(i)
        {
            *b += 1;
        }
    }
    bins.iter()
        .enumerate()
        .map(|(i, c)| ((from_ms + i as i64) as f64, f64::from(*c)))
        .collect()
}

/// The lowest FDT (ms) that held: it and every larger one tried had no failure and kept the
/// configured FDT. `results` are (FDT ms, failures, FDT raises).
pub fn lowest_clean_fdt(results: &[(u64, u64, u64)]) -> Option<u64> {
    let mut sorted = results.to_vec();
    sorted.sort_unstable();
    let mut lowest = None;
    for (fdt, failures, raises) in sorted.iter().rev() {
        if *failures > 0 || *raises > 0 {
            break;
        }
        lowest = Some(*fdt);
    }
    lowest
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ansi_codes_are_removed() {
        let colored = "\u{1b}[2m2025-01-02T03:04:05.123456Z\u{1b}[0m \u{1b}[32m INFO\u{1b}[0m x";
        assert_eq!(strip_ansi(colored), "2025-01-02T03:04:05.123456Z  INFO x");
        assert_eq!(strip_ansi("plain"), "plain");
    }

    #[test]
    fn log_timestamps_to_unix_micros() {
        assert_eq!(log_time_us("1970-01-01T00:00:00.000001Z INFO x"), Some(1));
        // 2000-03-01 (after a leap day) and a date in 2025, checked against `date -u +%s`.
        assert_eq!(
            log_time_us("2000-03-01T00:00:00.000000Z"),
            Some(951_868_800_000_000)
        );
        assert_eq!(
            log_time_us("2025-06-30T12:34:56.789012Z  INFO ipmp: m0"),
            Some(1_751_286_896_789_012)
        );
        // Other precisions scale.
        assert_eq!(log_time_us("1970-01-01T00:00:01.5Z"), Some(1_500_000));
        assert_eq!(
            log_time_us("1970-01-01T00:00:01.123456789Z"),
            Some(1_123_456)
        );
        for bad in [
            "",
            "ipmpd: error",
            "2025-13-01T00:00:00.0Z",
            "2025-01-01 00:00:00.0",
            "2025-01-01T00:00:00.Z",
        ] {
            assert_eq!(log_time_us(bad), None, "{bad:?}");
        }
    }

    const LOG: &str = "\
\u{1b}[2m2025-06-30T12:00:00.000100Z\u{1b}[0m  INFO ipmp::daemon: ipmpd ready in 80 ms groups=1
2025-06-30T12:00:01.000000Z  INFO ipmp::daemon: link state changed member=m1 link=Down
2025-06-30T12:00:01.000400Z DEBUG ipmp::daemon: maps updated elapsed_us=300 total_writes=9
2025-06-30T12:00:01.000500Z  INFO ipmp::daemon: m1 failed (LinkDown) group=ipmp0
wrapped continuation line
2025-06-30T12:00:02.000000Z  INFO ipmp::daemon: IP interface failure detected on m0 of group ipmp0 (probes lost)
2025-06-30T12:00:02.000010Z  INFO ipmp::daemon: m0 failed (Probe) group=ipmp0
";

    #[test]
    fn log_lines_and_matchers() {
        let lines = log_lines(LOG);
        assert_eq!(lines.len(), 6);
        let t0 = log_time_us("2025-06-30T12:00:00.500000Z").unwrap();
        let down = first_after(&lines, t0, |t| is_link_down(t, "m1")).unwrap();
        assert_eq!(down.at_us - t0, 500_000);
        assert!(first_after(&lines, t0, |t| is_link_down(t, "m0")).is_none());
        let flip = first_after(&lines, down.at_us, is_maps_updated).unwrap();
        assert_eq!(flip.at_us - down.at_us, 400);
        let probe = first_after(&lines, t0, |t| is_probe_failure(t, "m0")).unwrap();
        assert!(probe.text.contains("IP interface failure"));
        assert!(first_after(&lines, t0, |t| is_probe_failure(t, "m1")).is_none());
        assert_eq!(lines.iter().filter(|l| is_any_failure(&l.text)).count(), 3);
        assert!(is_fdt_raised(
            "INFO x: cannot meet requested failure detection time of 25.0 ms on (IPv4 m0)"
        ));
        assert!(!is_link_down(
            "link state changed member=m10 link=Down",
            "m1"
        ));
        assert_eq!(
            missed_probes(
                "2025-06-30T12:00:02Z  WARN ipmp::daemon: missed sending 3 probes on (IPv4 m0): \
                 the daemon ran late"
            ),
            Some(3)
        );
        assert_eq!(missed_probes("missed sending many probes"), None);
        assert_eq!(missed_probes("m0 failed (Probe)"), None);
    }

    #[test]
    fn arrivals_outage_and_bins() {
        let text = "0 1000000\n1 1100000\n2 1200000\n\n5 9200000\n6 9300000\n";
        let a = parse_arrivals(text).unwrap();
        assert_eq!(a.len(), 5);
        assert_eq!(parse_arrivals("1 2 3\n"), None);
        assert_eq!(parse_arrivals("x 2\n"), None);
        // Cut at 1.25 ms: the silence from 1.2 ms to 9.2 ms, seqs 3 and 4 lost.
        let o = outage(&a, 1_250_000).unwrap();
        assert_eq!((o.last_ns, o.next_ns, o.skipped), (1_200_000, 9_200_000, 2));
        assert!((o.gap_ms() - 8.0).abs() < 1e-9);
        assert!((o.restored_ms(1_250_000) - 7.95).abs() < 1e-9);
        // A cut before the stream or after it: nothing to measure.
        assert_eq!(outage(&a, 0), None);
        assert_eq!(outage(&a, 10_000_000), None);
        // A longer silence without loss (a scheduling stall) does not count, before or after
        // the cut; the lossy one after the cut does.
        let b = [
            (0, 0),
            (1, 50_000_000),
            (2, 50_100_000),
            (3, 60_000_000),
            (7, 62_000_000),
            (8, 62_100_000),
        ];
        let o = outage(&b, 50_050_000).unwrap();
        assert_eq!(
            (o.last_ns, o.next_ns, o.skipped),
            (60_000_000, 62_000_000, 3)
        );
        // No loss at all: the silence that spans the cut.
        let c = [(0, 0), (1, 1_000_000), (2, 9_000_000), (3, 9_100_000)];
        let o = outage(&c, 1_500_000).unwrap();
        assert_eq!((o.last_ns, o.next_ns, o.skipped), (1_000_000, 9_000_000, 0));
        // A late (reordered) datagram is not a jump.
        let d = [
            (0, 0),
            (2, 1_000_000),
            (1, 2_000_000),
            (3, 3_000_000),
            (9, 4_000_000),
        ];
        let o = outage(&d, 1_500_000).unwrap();
        assert_eq!((o.last_ns, o.next_ns, o.skipped), (3_000_000, 4_000_000, 5));
        let times: Vec<i64> = a.iter().map(|(_, t)| *t).collect();
        let bins = per_ms(&times, 1_000_000, -1, 10);
        assert_eq!(bins.len(), 11);
        assert_eq!(bins[0], (-1.0, 0.0));
        assert_eq!(bins[1], (0.0, 3.0));
        assert_eq!(bins[9], (8.0, 2.0));
        assert_eq!(bins.iter().map(|b| b.1).sum::<f64>(), 5.0);
    }

    #[test]
    fn lowest_fdt_that_held() {
        assert_eq!(
            lowest_clean_fdt(&[(100, 0, 0), (25, 3, 0), (50, 0, 0), (200, 0, 0)]),
            Some(50)
        );
        // A clean low FDT under a failing higher one does not count.
        assert_eq!(
            lowest_clean_fdt(&[(25, 0, 0), (50, 1, 0), (100, 0, 0)]),
            Some(100)
        );
        // A raised FDT is not held.
        assert_eq!(lowest_clean_fdt(&[(25, 0, 2), (50, 0, 0)]), Some(50));
        assert_eq!(lowest_clean_fdt(&[(200, 1, 0)]), None);
        assert_eq!(lowest_clean_fdt(&[]), None);
    }
}
