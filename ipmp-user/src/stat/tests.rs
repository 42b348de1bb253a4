use super::target::{ProbeMode, TargetRow};
use super::testdata::{address, group, member, solaris_snapshot};
use super::*;
use crate::control::{MemberFlags, MemberState, ProbeState};

fn human(mode: Mode, snapshot: &Snapshot) -> String {
    let sel = Selection::new(mode, None, false).unwrap();
    format(snapshot, &sel, &Names::new())
}

fn parsable(mode: Mode, fields: &str, snapshot: &Snapshot) -> String {
    let sel = Selection::new(mode, Some(fields), true).unwrap();
    format(snapshot, &sel, &Names::new())
}

fn row(values: &[&str]) -> Row {
    values.iter().map(|s| (*s).to_owned()).collect()
}

#[test]
fn group_layout_matches_solaris() {
    assert_eq!(
        human(Mode::Group, &solaris_snapshot()),
        "GROUP       GROUPNAME   STATE     FDT       INTERFACES\n\
         ipmp0       ipmp0       degraded  10.00s    net0 (net2) [net1]\n"
    );
}

#[test]
fn address_layout_matches_solaris() {
    assert_eq!(
        human(Mode::Address, &solaris_snapshot()),
        "ADDRESS                   STATE  GROUP       INBOUND     OUTBOUND\n\
         198.51.100.10             up     ipmp0       net0        net0 net1\n\
         198.51.100.11             down   ipmp0       --          --\n"
    );
}

#[test]
fn interface_layout_matches_solaris() {
    assert_eq!(
        human(Mode::Interface, &solaris_snapshot()),
        "INTERFACE   ACTIVE  GROUP       FLAGS     LINK      PROBE     STATE\n\
         net0        yes     ipmp0       --mbM--   up        ok        ok\n\
         net2        no      ipmp0       is-----   up        ok        ok\n\
         net1        no      ipmp0       -------   down      failed    failed\n"
    );
}

#[test]
fn target_layout_matches_illumos_widths() {
    // The reference example uses Solaris 11's MODE width (11); illumos and we use 10.
    let rows = vec![
        TargetRow {
            interface: "net0".into(),
            group: "ipmp0".into(),
            mode: ProbeMode::Routes,
            testaddr: Some("198.51.100.20".into()),
            targets: vec!["198.51.100.1".into(), "198.51.100.2".into()],
        },
        TargetRow {
            interface: "net1".into(),
            group: "ipmp0".into(),
            mode: ProbeMode::Multicast,
            testaddr: Some("198.51.100.21".into()),
            targets: vec!["198.51.100.7".into()],
        },
    ];
    let sel = Selection::new(Mode::Target, None, false).unwrap();
    assert_eq!(
        sel.render(&target::format_rows(&rows, &Names::new())),
        "INTERFACE   MODE      TESTADDR            TARGETS\n\
         net0        routes    198.51.100.20       198.51.100.1 198.51.100.2\n\
         net1        multicast 198.51.100.21       198.51.100.7\n"
    );
}

#[test]
fn targets_from_snapshot_are_disabled_rows_with_the_first_test_address() {
    assert_eq!(
        human(Mode::Target, &solaris_snapshot()),
        "INTERFACE   MODE      TESTADDR            TARGETS\n\
         net0        disabled  198.51.100.20       --\n\
         net2        disabled  --                  --\n\
         net1        disabled  --                  --\n"
    );
    let rows = target::rows(&solaris_snapshot());
    assert!(
        rows.iter()
            .all(|r| r.mode == ProbeMode::Disabled && r.targets.is_empty())
    );
}

#[test]
fn probe_default_fields_hide_rttdev_and_match_solaris() {
    let sel = Selection::new(Mode::Probe, None, false).unwrap();
    assert_eq!(
        sel.names(),
        [
            "TIME",
            "INTERFACE",
            "PROBE",
            "NETRTT",
            "RTT",
            "RTTAVG",
            "TARGET"
        ]
    );
    let rows = vec![
        row(&[
            "0.61s",
            "net0",
            "311",
            "0.31ms",
            "0.40ms",
            "0.35ms",
            "198.51.100.1",
            "0.02ms",
        ]),
        row(&[
            "1.20s",
            "net1",
            "310",
            "",
            "",
            "1.02ms",
            "198.51.100.7",
            "0.10ms",
        ]),
    ];
    assert_eq!(
        sel.render(&rows),
        "TIME      INTERFACE   PROBE  NETRTT    RTT       RTTAVG    TARGET\n\
         0.61s     net0        311    0.31ms    0.40ms    0.35ms    198.51.100.1\n\
         1.20s     net1        310    --        --        1.02ms    198.51.100.7\n"
    );
}

#[test]
fn parsable_example_matches_solaris() {
    assert_eq!(
        parsable(Mode::Group, "group,state,fdt", &solaris_snapshot()),
        "ipmp0:degraded:10.00s\n"
    );
}

#[test]
fn parsable_escapes_separator_and_backslash_and_prints_empty_as_nothing() {
    let mut g = group("ipmp0", vec![member("m0", true, MemberState::Ok)]);
    g.name = r"a\b:c".into();
    g.addresses = vec![address("2001:db8::10", true, Some("m0"), &["m0"])];
    let snap = Snapshot {
        pid: 1,
        version: String::new(),
        uptime_ms: 0,
        groups: vec![g],
    };
    assert_eq!(
        parsable(Mode::Group, "groupname,fdt,group", &snap),
        "a\\\\b\\:c::ipmp0\n"
    );
    assert_eq!(
        parsable(Mode::Address, "address,state", &snap),
        "2001\\:db8\\:\\:10:up\n"
    );
    // One field: nothing to separate, so ofmt prints the value verbatim.
    assert_eq!(parsable(Mode::Address, "address", &snap), "2001:db8::10\n");
    // No header in parsable mode, and nothing at all without rows.
    let empty = Snapshot {
        groups: Vec::new(),
        ..snap
    };
    assert_eq!(parsable(Mode::Group, "group,state", &empty), "");
    assert_eq!(human(Mode::Group, &empty), "");
}

#[test]
fn field_lists_parse_case_insensitively_and_keep_order() {
    let sel = Selection::new(Mode::Interface, Some("State, INTERFACE,flags"), false).unwrap();
    assert_eq!(sel.names(), ["STATE", "INTERFACE", "FLAGS"]);
    let all = Selection::new(Mode::Probe, Some("ALL"), false).unwrap();
    assert_eq!(all.names().len(), probe::FIELDS.len());
    assert_eq!(all.names().last(), Some(&"RTTDEV"));
    assert_eq!(
        human_with(Mode::Group, "state,group", &solaris_snapshot()),
        "STATE     GROUP\ndegraded  ipmp0\n"
    );
}

fn human_with(mode: Mode, fields: &str, snapshot: &Snapshot) -> String {
    let sel = Selection::new(mode, Some(fields), false).unwrap();
    format(snapshot, &sel, &Names::new())
}

#[test]
fn field_list_errors() {
    assert_eq!(
        Selection::new(Mode::Group, Some("group,bogus,nope"), false)
            .unwrap_err()
            .to_string(),
        "unknown output fields: 'bogus', 'nope' (valid fields for -g: group, groupname, state, fdt, interfaces)"
    );
    assert_eq!(
        Selection::new(Mode::Address, Some("inbond"), true)
            .unwrap_err()
            .to_string(),
        "unknown output field: 'inbond' (valid fields for -a: address, state, group, inbound, outbound)"
    );
    assert_eq!(
        Selection::new(Mode::Group, None, true).unwrap_err(),
        StatError::ParsableNeedsFields
    );
    assert_eq!(
        Selection::new(Mode::Group, Some("all"), true).unwrap_err(),
        StatError::ParsableAll
    );
    assert_eq!(
        Selection::new(Mode::Group, Some("group,all"), true).unwrap_err(),
        StatError::ParsableAll
    );
    assert_eq!(
        Selection::new(Mode::Group, Some(" , "), false).unwrap_err(),
        StatError::NoFields
    );
    // "all" mixed with names is not a field name.
    assert!(matches!(
        Selection::new(Mode::Group, Some("group,all"), false),
        Err(StatError::UnknownFields { .. })
    ));
}

#[test]
fn default_fields_fit_80_columns() {
    let f =
        |w: &[usize]| -> Vec<Field> { w.iter().map(|&width| Field { name: "X", width }).collect() };
    assert_eq!(default_fields(&f(&[40, 30, 20])), [0, 1]);
    assert_eq!(default_fields(&f(&[40, 30, 10, 1])), [0, 1, 2]);
    assert_eq!(default_fields(&f(&[81])), Vec::<usize>::new());
    // Solaris' tables: -a and -t fill exactly 80 columns; -p loses RTTDEV.
    for mode in [Mode::Address, Mode::Group, Mode::Interface, Mode::Target] {
        assert_eq!(
            default_fields(mode.fields()).len(),
            mode.fields().len(),
            "{mode:?}"
        );
        assert!(mode.fields().iter().map(|f| f.width).sum::<usize>() <= DEFAULT_COLUMNS);
    }
    assert_eq!(default_fields(probe::FIELDS).len(), probe::FIELDS.len() - 1);
}

#[test]
fn flags_string_positions() {
    assert_eq!(iface::flags(&MemberFlags::default()), "-------");
    let all = MemberFlags {
        inactive: true,
        standby: true,
        v4_multicast: true,
        v4_broadcast: true,
        v6_multicast: true,
        all_down: true,
        duplicate_hwaddr: true,
    };
    assert_eq!(iface::flags(&all), "ismbMdh");
    let one = |set: fn(&mut MemberFlags)| {
        let mut f = MemberFlags::default();
        set(&mut f);
        iface::flags(&f)
    };
    assert_eq!(one(|f| f.inactive = true), "i------");
    assert_eq!(one(|f| f.standby = true), "-s-----");
    assert_eq!(one(|f| f.v4_multicast = true), "--m----");
    assert_eq!(one(|f| f.v4_broadcast = true), "---b---");
    assert_eq!(one(|f| f.v6_multicast = true), "----M--");
    assert_eq!(one(|f| f.all_down = true), "-----d-");
    assert_eq!(one(|f| f.duplicate_hwaddr = true), "------h");
}

#[test]
fn interfaces_brackets() {
    let mut offline = member("m3", false, MemberState::Offline);
    offline.flags.inactive = false;
    let g = group(
        "ipmp1",
        vec![
            member("m0", false, MemberState::Failed),
            member("m1", false, MemberState::Ok),
            offline,
            member("m2", true, MemberState::Unknown),
            member("m4", true, MemberState::Ok),
            // A failed member the daemon still lists as active is unusable all the same.
            member("m5", true, MemberState::Failed),
        ],
    );
    assert_eq!(group::interfaces(&g), "m2 m4 (m1) [m0] [m3] [m5]");
    assert_eq!(group::interfaces(&group("ipmp2", Vec::new())), "");
}

#[test]
fn fdt_is_seconds_with_two_decimals() {
    assert_eq!(group::fdt(10_000), "10.00s");
    assert_eq!(group::fdt(1_428), "1.43s");
    assert_eq!(group::fdt(100), "0.10s");
    assert_eq!(group::fdt(0), "0.00s");
    // No FDT (nothing probes): empty, shown as "--".
    let mut snap = solaris_snapshot();
    snap.groups[0].fdt_ms = None;
    assert!(human(Mode::Group, &snap).contains("degraded  --        net0"));
}

#[test]
fn down_or_unbound_addresses_show_no_interfaces() {
    let mut snap = solaris_snapshot();
    snap.groups[0].addresses = vec![
        // Down: INBOUND and OUTBOUND empty even if the daemon filled them.
        address("198.51.100.12", false, Some("net0"), &["net0"]),
        // Up but bound nowhere (nothing active): both empty.
        address("198.51.100.13", true, None, &["net0"]),
    ];
    let out = human(Mode::Address, &snap);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines[1],
        "198.51.100.12             down   ipmp0       --          --"
    );
    assert_eq!(
        lines[2],
        "198.51.100.13             up     ipmp0       --          --"
    );
}

#[test]
fn names_replace_addresses_and_long_values_push_columns_then_catch_up() {
    let snap = solaris_snapshot();
    let mut names = Names::new();
    names.insert(
        "198.51.100.10".into(),
        "a-rather-long-host-name.example.com".into(),
    );
    let sel = Selection::new(Mode::Address, None, false).unwrap();
    let out = format(&snap, &sel, &names);
    let lines: Vec<&str> = out.lines().collect();
    // 35 characters in a 26-column field: one space, then STATE and GROUP give up padding.
    assert_eq!(
        lines[1],
        "a-rather-long-host-name.example.com up ipmp0 net0        net0 net1"
    );
    // OUTBOUND starts where it would have without the overflow (column 57).
    assert_eq!(lines[1].find("net0 net1"), Some(57));
    assert_eq!(
        lines[2],
        "198.51.100.11             down   ipmp0       --          --"
    );
    assert_eq!(
        addresses_to_name(Mode::Address, &snap),
        ["198.51.100.10", "198.51.100.11"]
    );
    assert_eq!(addresses_to_name(Mode::Target, &snap), ["198.51.100.20"]);
    assert!(addresses_to_name(Mode::Group, &snap).is_empty());
}

#[test]
fn no_line_has_trailing_spaces() {
    for mode in [Mode::Address, Mode::Group, Mode::Interface, Mode::Target] {
        for line in human(mode, &solaris_snapshot()).lines() {
            assert_eq!(line, line.trim_end(), "{mode:?}");
        }
    }
}

#[test]
fn json_parts_per_mode() {
    let snap = solaris_snapshot();
    let json = |mode| -> serde_json::Value {
        let text = json(mode, &snap).unwrap();
        assert!(text.ends_with("}\n]\n"), "{text}");
        serde_json::from_str(&text).unwrap()
    };
    let g = json(Mode::Group);
    assert_eq!(g[0]["interface"], "ipmp0");
    assert_eq!(g[0]["fdt_ms"], 10_000);
    assert_eq!(g[0]["members"], serde_json::json!(["net0", "net2", "net1"]));
    // Declaration order, not alphabetical.
    let text = super::json(Mode::Group, &snap).unwrap();
    assert!(
        text.find("\"interface\"") < text.find("\"fdt_ms\""),
        "{text}"
    );
    let i = json(Mode::Interface);
    assert_eq!(i.as_array().map(Vec::len), Some(3));
    assert_eq!(i[2]["name"], "net1");
    assert_eq!(i[2]["group"], "ipmp0");
    assert_eq!(i[2]["probe"], "failed");
    assert_eq!(i[0]["flags"]["v6_multicast"], true);
    let a = json(Mode::Address);
    assert_eq!(a[0]["address"], "198.51.100.10");
    assert_eq!(a[0]["group"], "ipmp0");
    assert_eq!(a[1]["inbound"], serde_json::Value::Null);
    let t = json(Mode::Target);
    assert_eq!(t[0]["mode"], "disabled");
    assert_eq!(t[0]["testaddr"], "198.51.100.20");
}

#[test]
fn probe_mode_needs_a_probing_member() {
    let mut snap = solaris_snapshot();
    // The Solaris example has probing members.
    assert_eq!(probe::check_probing(&snap), Ok(()));
    for m in &mut snap.groups[0].members {
        m.probe = ProbeState::Disabled;
    }
    assert_eq!(probe::check_probing(&snap), Err(StatError::ProbingDisabled));
    assert_eq!(
        StatError::ProbingDisabled.to_string(),
        "probe-based failure detection is disabled on all interfaces"
    );
}
