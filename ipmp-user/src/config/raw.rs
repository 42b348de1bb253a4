//! The file's shape as serde reads it, before validation: every key optional, unknown keys
//! refused, and the Solaris `/etc/default/mpathd` keys.

use std::{fmt, net::IpAddr, path::PathBuf};

use serde::{Deserialize, Deserializer};

use super::{model::XdpMode, prefix::Prefix};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    pub(super) failure_detection_time_ms: Option<u64>,
    pub(super) failback: Option<bool>,
    pub(super) control_socket: Option<PathBuf>,
    pub(super) link_flap_max_ups: Option<u32>,
    pub(super) link_flap_window_ms: Option<u64>,
    pub(super) netlink_rcvbuf_bytes: Option<u32>,
    pub(super) metrics: Option<RawMetrics>,
    #[serde(default)]
    pub(super) group: Vec<RawGroup>,
}

/// `[metrics]`: present turns the endpoint on.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMetrics {
    pub(super) listen: Option<String>,
    pub(super) allow_remote: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawGroup {
    pub(super) name: String,
    #[serde(default)]
    pub(super) data_addresses: Vec<Prefix>,
    #[serde(default)]
    pub(super) routes: Vec<RawRoute>,
    #[serde(default)]
    pub(super) xdp_mode: XdpMode,
    pub(super) announce: Option<RawAnnounce>,
    pub(super) buckets: Option<u32>,
    pub(super) hash_seed: Option<u32>,
    #[serde(default)]
    pub(super) probe_targets: Vec<IpAddr>,
    pub(super) xdp_echo: Option<bool>,
    pub(super) link_layer_probes: Option<bool>,
    #[serde(default)]
    pub(super) member: Vec<RawMember>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRoute {
    pub(super) to: RouteDest,
    pub(super) via: IpAddr,
}

/// `to` of a route: `"default"` or a prefix.
#[derive(Debug)]
pub(super) enum RouteDest {
    Default,
    Prefix(Prefix),
}

impl<'de> Deserialize<'de> for RouteDest {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        if text.eq_ignore_ascii_case("default") {
            Ok(Self::Default)
        } else {
            text.parse()
                .map(Self::Prefix)
                .map_err(|e| serde::de::Error::custom(format!("route `to`: {e}, or \"default\"")))
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAnnounce {
    pub(super) count: Option<u32>,
    pub(super) interval_ms: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMember {
    pub(super) name: String,
    pub(super) test_address: Option<Prefix>,
    #[serde(default)]
    pub(super) standby: bool,
}

/// A whole number of milliseconds (an mpathd value).
pub(super) struct Millis(pub(super) u64);

impl<'de> Deserialize<'de> for Millis {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Millis;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a whole number of milliseconds such as 10000")
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Millis, E> {
                Ok(Millis(v))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Millis, E> {
                u64::try_from(v)
                    .map(Millis)
                    .map_err(|_| E::invalid_value(serde::de::Unexpected::Signed(v), &self))
            }
        }
        d.deserialize_u64(V)
    }
}

/// A `yes`/`no` value of an mpathd key (case-insensitive, as Solaris compares them).
pub(super) struct YesNo(pub(super) bool);

impl<'de> Deserialize<'de> for YesNo {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // A visitor, so that the error is raised inside the deserializer and toml attaches
        // the value's position.
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = YesNo;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("the string \"yes\" or \"no\" (Solaris /etc/default/mpathd value)")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<YesNo, E> {
                if v.eq_ignore_ascii_case("yes") {
                    Ok(YesNo(true))
                } else if v.eq_ignore_ascii_case("no") {
                    Ok(YesNo(false))
                } else {
                    Err(E::invalid_value(serde::de::Unexpected::Str(v), &self))
                }
            }
        }
        d.deserialize_str(V)
    }
}

pub(super) const MPATHD_FDT: &str = "FAILURE_DETECTION_TIME";
pub(super) const MPATHD_FAILBACK: &str = "FAILBACK";
pub(super) const MPATHD_TRACK: &str = "TRACK_INTERFACES_ONLY_WITH_GROUPS";

/// Values of the mpathd keys found at the top level.
#[derive(Default)]
pub(super) struct MpathdKeys {
    pub(super) fdt_ms: Option<u64>,
    pub(super) failback: Option<bool>,
}

/// Pulls the mpathd keys (any case) out of the top-level table. Type errors are toml errors
/// with a position; rule problems go to the returned list.
pub(super) fn take_mpathd_keys(
    table: &mut toml::de::DeTable<'_>,
) -> Result<(MpathdKeys, Vec<String>), toml::de::Error> {
    let mut keys = MpathdKeys::default();
    let mut problems = Vec::new();
    for wanted in [MPATHD_FDT, MPATHD_FAILBACK, MPATHD_TRACK] {
        // The all-lowercase `failback` holding a boolean is ipmpd's own key; holding a string it
        // is the mpathd one (mpathd keys are case-insensitive).
        let found: Vec<String> = table
            .iter()
            .filter(|(k, v)| {
                let k: &str = k.get_ref();
                k.eq_ignore_ascii_case(wanted) && !(k == "failback" && v.get_ref().is_bool())
            })
            .map(|(k, _)| k.get_ref().to_string())
            .collect();
        if found.len() > 1 {
            problems.push(format!(
                "{wanted} is given {} times (as {}): keep one",
                found.len(),
                found.join(", ")
            ));
        }
        for key in found {
            let Some(value) = table.remove(key.as_str()) else {
                continue;
            };
            let de = toml::de::ValueDeserializer::from(value);
            match wanted {
                MPATHD_FDT => keys.fdt_ms = Some(Millis::deserialize(de)?.0),
                MPATHD_FAILBACK => keys.failback = Some(YesNo::deserialize(de)?.0),
                _ => {
                    if !YesNo::deserialize(de)?.0 {
                        problems.push(format!(
                            "{key} = \"no\" asks to track interfaces outside groups (the \
                             Solaris anonymous group), which ipmpd does not support: remove \
                             the key or set it to \"yes\""
                        ));
                    }
                }
            }
        }
    }
    Ok((keys, problems))
}
