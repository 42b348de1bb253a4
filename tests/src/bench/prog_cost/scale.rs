//! The Scale subsection: the same test runs on one object per configuration, side by side.

use std::fmt::Write as _;

use anyhow::anyhow;
use ipmp_common::{
    Reason,
    packet::{IPPROTO_TCP, IPPROTO_UDP},
};

use crate::bench::{
    GoalRow, Summary,
    testbed::{DATA4, DATA6, Devices, ONLINK4, ONLINK6, Scale, Testbed, in_fresh_netns},
};
use crate::lab::LAB_HASH_SEED;

use super::cases::*;

/// The configurations of the Scale subsection: the smallest, each axis grown alone, and all
/// axes at their largest (16 members in the measured group; the other groups get what is left
/// of `MAX_MEMBERS`).
pub(super) const SCALES: [Scale; 7] = [
    Scale {
        addresses: 1,
        members: 2,
        groups: 1,
    },
    Scale {
        addresses: 16,
        members: 2,
        groups: 1,
    },
    Scale {
        addresses: 256,
        members: 2,
        groups: 1,
    },
    Scale {
        addresses: 1,
        members: 8,
        groups: 1,
    },
    Scale {
        addresses: 1,
        members: 16,
        groups: 1,
    },
    Scale {
        addresses: 1,
        members: 2,
        groups: 8,
    },
    Scale {
        addresses: 256,
        members: 16,
        groups: 8,
    },
];

/// Names of the scale cases, in [`scale_cases`] order.
pub(super) const SCALE_CASES: [&str; 4] = [
    "TC IPv4 TCP on-link",
    "TC IPv6 UDP on-link",
    "TC ingress UDP → IPMP interface",
    "XDP ARP request → reply",
];

/// The first source port from [`SPORT`] whose flow the bed's bucket table gives `member`.
pub(super) fn sport_to(
    bed: &Testbed,
    member: usize,
    key: impl Fn(u16) -> ipmp_common::FlowKey,
) -> anyhow::Result<u16> {
    let n = u32::try_from(bed.table.len())?;
    (SPORT..=u16::MAX)
        .find(|&p| {
            let bucket = ipmp_common::bucket_of(ipmp_common::flow_hash(&key(p), LAB_HASH_SEED), n);
            bed.table.owner(bucket as usize) == Some(member)
        })
        .ok_or_else(|| anyhow!("no source port maps to member {member}"))
}

/// The scale cases of one bed, aimed at its last member: the TC flows hash to it, the
/// inbound packets arrive on it, for the last data address (bound to it).
pub(super) fn scale_cases(bed: &Testbed) -> anyhow::Result<Vec<Case>> {
    let last = bed.members.len() - 1;
    let p4 = sport_to(bed, last, |p| {
        ipmp_common::FlowKey::v4(DATA4.octets(), ONLINK4.octets(), IPPROTO_TCP, p, DPORT)
    })?;
    let p6 = sport_to(bed, last, |p| {
        ipmp_common::FlowKey::v6(DATA6.octets(), ONLINK6.octets(), IPPROTO_UDP, p, DPORT)
    })?;
    let tc = |name, input| tc_case(name, input, Some(last));
    Ok(vec![
        tc(SCALE_CASES[0], tc4_from(p4, ONLINK4, IPPROTO_TCP)),
        tc(SCALE_CASES[1], tc6_from(p6, ONLINK6, IPPROTO_UDP)),
        Case {
            name: SCALE_CASES[2],
            kind: Kind::TcIngress,
            method: Method::Single,
            input: udp_in(bed.mac(last), DATA4),
            verdict: TC_ACT_REDIRECT,
            reason: Some(Reason::RxToIpmp),
            member: Some(last),
        },
        arp_case(SCALE_CASES[3], last),
    ])
}

/// Per configuration of [`SCALES`], then the control (a second object with the smallest
/// configuration): the results of the [`SCALE_CASES`].
pub(super) type ScaleResults = Vec<(Scale, Vec<CaseResult>)>;

/// Every configuration on its own object (own maps) over the same devices, all loaded at
/// once, and a second object with the smallest configuration as a control: what two objects
/// of the same configuration differ by. Each trial times every case of every object, the
/// objects' order rotating from trial to trial.
pub(super) fn measure_scale(plan: &Plan) -> anyhow::Result<ScaleResults> {
    in_fresh_netns(|| {
        let groups = SCALES.iter().map(|s| s.groups).max().unwrap_or(1);
        let members = SCALES.iter().map(Scale::total_members).max().unwrap_or(1);
        let dev = Devices::new(groups - 1, members)?;
        let configs: Vec<Scale> = SCALES.iter().chain(&SCALES[..1]).copied().collect();
        let mut beds = Vec::new();
        for &scale in &configs {
            let mut bed = Testbed::scaled(&dev, scale)?;
            load_all(&mut bed.ebpf)?;
            let cases = scale_cases(&bed)?;
            for c in &cases {
                check_case(&mut bed, c, c.method)?;
            }
            let results = vec![CaseResult::default(); cases.len()];
            beds.push((bed, cases, results));
        }
        let n = beds.len();
        for t in 0..plan.trials {
            for i in 0..n {
                let (bed, cases, results) = &mut beds[(t + i) % n];
                for (c, r) in cases.iter().zip(results.iter_mut()) {
                    time_case(bed, c, c.method, plan, false, t, r)?;
                }
            }
        }
        Ok(configs
            .into_iter()
            .zip(beds)
            .map(|(s, (_, _, r))| (s, r))
            .collect())
    })
}

/// Median of `b` over median of `a` for case `i`, and the same trial's ratios.
pub(super) fn scale_ratio(
    a: &[CaseResult],
    b: &[CaseResult],
    i: usize,
) -> Option<(f64, f64, f64, Vec<f64>)> {
    let (x, y) = (a.get(i)?, b.get(i)?);
    let (sa, sb) = (Summary::of(&x.prog)?, Summary::of(&y.prog)?);
    let paired = x
        .prog
        .iter()
        .zip(&y.prog)
        .map(|(p, q)| q / p.max(0.1))
        .collect();
    Some((sa.median, sb.median, sb.median / sa.median.max(0.1), paired))
}

/// The Scale subsection's markdown and one goal row per case.
pub(super) fn scale_report(
    res: &anyhow::Result<ScaleResults>,
    plan: &Plan,
) -> (String, Vec<GoalRow>) {
    let mut md = String::new();
    let _ = writeln!(md, "### Scale\n");
    let goal_name = |case: &str| {
        format!("{case}: per-packet cost at the largest configuration within 10 % of the smallest")
    };
    let not_measured = |why: String| -> Vec<GoalRow> {
        SCALE_CASES
            .iter()
            .map(|c| GoalRow::unmeasured(goal_name(c), why.clone()))
            .collect()
    };
    let res = match res {
        Ok(r) if r.len() == SCALES.len() + 1 => r,
        Ok(_) => return (md, not_measured("no figures".into())),
        Err(e) => {
            let e = format!("{e:#}").replace('\n', " ");
            let _ = writeln!(md, "**Not measured:** {e}\n");
            return (md, not_measured("not measured".into()));
        }
    };
    let _ = writeln!(
        md,
        "The same test runs at growing configurations, written by ipmpd's writer: the number \
         of data addresses (each an IPv4 and an IPv6 one, spread over the groups and their \
         members), of members in the measured group, and of groups (every group with \
         {} buckets; beside the measured one on the IPMP interface that has the addresses and \
         routes, the others on interfaces of their own, with as many members as the measured \
         group, fewer where that would pass the {} members the maps hold). Each packet is aimed \
         at the last-configured entry: the measured group is written last (the highest group \
         slot), the TC flows' source ports are chosen so they hash to the group's last member \
         (the checked flow; each trial then times a flow of its own, as above), and the inbound packets arrive on that member for the last data address, bound to it; \
         the first run of each checks that member's counter. Every configuration has its own \
         object and maps, all loaded at once over the same devices, with a second object of the \
         smallest configuration as a control (what two loads of the same configuration differ \
         by); each trial times every object in turn (the order rotating), {} trials; *TC* cells \
         are runs of {} repeats, the others {} single runs per trial (as above). ns per packet, \
         min / median / max.\n",
        ipmp::config::DEFAULT_BUCKETS,
        ipmp_common::MAX_MEMBERS,
        plan.trials,
        plan.repeat,
        plan.singles
    );
    let _ = write!(
        md,
        "| data addresses | members | groups | map entries: groups / members / addresses |"
    );
    for c in SCALE_CASES {
        let _ = write!(md, " {c} |");
    }
    let _ = writeln!(
        md,
        "\n|---|---|---|---|{}",
        "---|".repeat(SCALE_CASES.len())
    );
    for (k, (s, r)) in res.iter().enumerate() {
        let again = if k == SCALES.len() {
            " (control: second object)"
        } else {
            ""
        };
        let _ = write!(
            md,
            "| {} | {} | {}{again} | {} / {} / {} |",
            s.addresses,
            s.members,
            s.groups,
            s.groups,
            s.total_members(),
            2 * s.addresses
        );
        for c in r {
            let cell = Summary::of(&c.prog).map_or_else(|| "—".to_string(), |p| p.fmt(1, ""));
            let _ = write!(md, " {cell} |");
        }
        md.push('\n');
    }
    let small = &res[0];
    let large = &res[SCALES.len() - 1];
    let control = &res[SCALES.len()];
    let mut goals = Vec::new();
    let mut large_row = "| largest ÷ smallest (medians) | | | |".to_string();
    let mut control_row = "| control ÷ smallest (medians) | | | |".to_string();
    for (i, name) in SCALE_CASES.iter().enumerate() {
        let ctl = scale_ratio(&small.1, &control.1, i);
        let _ = write!(
            control_row,
            " {} |",
            ctl.as_ref()
                .map_or_else(|| "—".to_string(), |c| format!("{:.3}", c.2))
        );
        let Some((a, b, ratio, paired)) = scale_ratio(&small.1, &large.1, i) else {
            large_row.push_str(" — |");
            continue;
        };
        let _ = write!(large_row, " {ratio:.3} |");
        let spread = Summary::of(&paired).map_or_else(String::new, |p| {
            format!("; per trial {:.2}–{:.2}", p.min, p.max)
        });
        let met = (ratio - 1.0).abs() <= 0.10;
        goals.push(GoalRow {
            goal: goal_name(name),
            figure: format!(
                "{b:.1} ns at {} addresses / {} members / {} groups vs {a:.1} ns at {} / {} / {} \
                 ({:+.1} %{spread})",
                large.0.addresses,
                large.0.members,
                large.0.groups,
                small.0.addresses,
                small.0.members,
                small.0.groups,
                (ratio - 1.0) * 100.0
            ),
            met: Some(met),
            why: if met {
                String::new()
            } else {
                scale_why(ratio, &paired, ctl.map(|c| c.2))
            },
        });
    }
    let _ = writeln!(md, "{large_row}\n{control_row}\n");
    (md, goals)
}

/// Why a scale goal is missed, from the figures: the side-by-side trials and the control.
pub(super) fn scale_why(ratio: f64, paired: &[f64], control: Option<f64>) -> String {
    let within = paired.iter().filter(|r| (**r - 1.0).abs() <= 0.10).count();
    let control = control.map_or_else(String::new, |c| {
        format!(
            "; a second object of the smallest configuration reads {:+.0} % from the first",
            (c - 1.0) * 100.0
        )
    });
    let head = format!(
        "the largest configuration reads {:+.0} %; {within} of {} side-by-side trials were \
         within 10 %{control}",
        (ratio - 1.0) * 100.0,
        paired.len()
    );
    if ratio < 1.0 {
        format!(
            "{head}. More entries cannot make a lookup cheaper: this is the spread between \
             loads and runs on this machine, not the configuration"
        )
    } else if within > 0 {
        format!("{head}: the difference is within the run-to-run spread on this machine")
    } else {
        format!(
            "{head}. The lookups are hash-map lookups (group and member by ifindex, address by \
             key) and an array index, whose work does not depend on the entry count; what \
             grows is the memory the maps take, so the likely cause is cache misses (not \
             verified here)"
        )
    }
}
