//! What the packaging reads from `dist/ipmpd.service`: its paths for an install under
//! /usr/sbin; the tests also compare the capabilities it grants with the DaemonSet's.

use anyhow::{Context as _, bail};

/// Where the checked-in unit expects the binaries.
const UNIT_SBIN: &str = "/usr/local/sbin/";

/// The unit with its binaries under `sbin` (e.g. "/usr/sbin/") instead of /usr/local/sbin/.
pub fn unit_for_sbin(unit: &str, sbin: &str) -> anyhow::Result<String> {
    let moved = unit.replace(UNIT_SBIN, sbin);
    if !moved.contains(&format!("ExecStart={sbin}ipmpd")) {
        bail!(
            "dist/ipmpd.service starts ipmpd neither from {UNIT_SBIN} nor from {sbin}: \
             update UNIT_SBIN in xtask/src/dist.rs"
        );
    }
    Ok(moved)
}

/// The checked-in unit file's text.
pub fn read_unit(root: &std::path::Path) -> anyhow::Result<String> {
    let path = root.join("dist/ipmpd.service");
    std::fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use yaml_rust2::{Yaml, YamlLoader};

    use super::*;
    use crate::bench::workspace_root;

    /// The capabilities of every `CapabilityBoundingSet=` line of a unit, in order, e.g.
    /// `CAP_NET_ADMIN`. An inverted set (`~CAP_...`) is refused: it cannot be compared.
    pub fn unit_capabilities(unit: &str) -> anyhow::Result<Vec<String>> {
        let mut caps = Vec::new();
        for line in unit.lines() {
            let Some(value) = line.trim().strip_prefix("CapabilityBoundingSet=") else {
                continue;
            };
            if value.trim_start().starts_with('~') {
                bail!("CapabilityBoundingSet={value} is inverted: list the capabilities granted");
            }
            if value.trim().is_empty() {
                // An empty assignment resets the list.
                caps.clear();
            }
            caps.extend(value.split_whitespace().map(str::to_owned));
        }
        if caps.is_empty() {
            bail!("the unit has no CapabilityBoundingSet=");
        }
        Ok(caps)
    }

    #[test]
    fn unit_paths_and_capabilities() {
        let unit = "[Service]\nExecStart=/usr/local/sbin/ipmpd --config /etc/ipmp/ipmpd.toml\n\
                    CapabilityBoundingSet=CAP_NET_ADMIN CAP_BPF\nCapabilityBoundingSet=CAP_NET_RAW\n";
        assert_eq!(
            unit_for_sbin(unit, "/usr/sbin/").unwrap().lines().nth(1),
            Some("ExecStart=/usr/sbin/ipmpd --config /etc/ipmp/ipmpd.toml")
        );
        assert!(unit_for_sbin("ExecStart=/opt/ipmpd", "/usr/sbin/").is_err());
        let already = "ExecStart=/usr/sbin/ipmpd\n";
        assert_eq!(unit_for_sbin(already, "/usr/sbin/").unwrap(), already);
        assert_eq!(
            unit_capabilities(unit).unwrap(),
            ["CAP_NET_ADMIN", "CAP_BPF", "CAP_NET_RAW"]
        );
        assert_eq!(
            unit_capabilities("CapabilityBoundingSet=CAP_BPF\nCapabilityBoundingSet=\nCapabilityBoundingSet=CAP_NET_RAW").unwrap(),
            ["CAP_NET_RAW"]
        );
        assert!(unit_capabilities("CapabilityBoundingSet=~CAP_SYS_ADMIN").is_err());
        assert!(unit_capabilities("[Service]\n").is_err());
    }

    #[test]
    fn checked_in_unit_installs_under_usr_sbin() {
        let unit = unit_for_sbin(&read_unit(&workspace_root()).unwrap(), "/usr/sbin/").unwrap();
        assert!(unit.contains("/usr/sbin/ipmpd"), "{unit}");
        assert!(!unit.contains("/usr/local"), "{unit}");
    }

    fn load_yaml(path: &str) -> Vec<Yaml> {
        let path = workspace_root().join(path);
        let text = std::fs::read_to_string(&path).unwrap();
        YamlLoader::load_from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    fn strs(y: &Yaml) -> Vec<&str> {
        y.as_vec()
            .map(|v| v.iter().filter_map(Yaml::as_str).collect())
            .unwrap_or_default()
    }

    #[test]
    fn daemonset_matches_the_unit() {
        let docs = load_yaml("dist/kubernetes/ipmpd-daemonset.yaml");
        let kind = |k: &str| {
            docs.iter()
                .find(|d| d["kind"].as_str() == Some(k))
                .unwrap_or_else(|| panic!("no {k} in the manifest"))
        };
        let ds = kind("DaemonSet");
        assert_eq!(ds["apiVersion"].as_str(), Some("apps/v1"));
        let pod = &ds["spec"]["template"]["spec"];
        assert_eq!(pod["hostNetwork"].as_bool(), Some(true), "hostNetwork");
        let grace = pod["terminationGracePeriodSeconds"].as_i64().unwrap();
        assert!(
            (1..=300).contains(&grace),
            "terminationGracePeriodSeconds {grace}"
        );
        let labels = &ds["spec"]["template"]["metadata"]["labels"];
        assert_eq!(
            ds["spec"]["selector"]["matchLabels"], *labels,
            "selector matches the pod labels"
        );

        let containers = pod["containers"].as_vec().unwrap();
        assert_eq!(containers.len(), 1);
        let c = &containers[0];
        let image = c["image"].as_str().unwrap();
        assert!(
            image.ends_with(&format!(":{}", env!("CARGO_PKG_VERSION"))),
            "the image tag {image} is not the workspace version"
        );
        let command = strs(&c["command"]);
        assert_eq!(command.first(), Some(&"/usr/sbin/ipmpd"), "{command:?}");
        let security = &c["securityContext"];
        assert_eq!(security["privileged"].as_bool(), Some(false), "privileged");
        assert_eq!(security["allowPrivilegeEscalation"].as_bool(), Some(false));
        assert_eq!(strs(&security["capabilities"]["drop"]), ["ALL"]);
        let added: BTreeSet<String> = strs(&security["capabilities"]["add"])
            .into_iter()
            .map(|c| format!("CAP_{}", c.trim_start_matches("CAP_")))
            .collect();
        let unit: BTreeSet<String> = unit_capabilities(&read_unit(&workspace_root()).unwrap())
            .unwrap()
            .into_iter()
            .collect();
        assert_eq!(
            added, unit,
            "capabilities differ from dist/ipmpd.service's CapabilityBoundingSet"
        );

        let liveness = strs(&c["livenessProbe"]["exec"]["command"]);
        assert!(
            liveness.first().is_some_and(|p| p.ends_with("ipmpstat")) && liveness.contains(&"-g"),
            "liveness {liveness:?}"
        );

        // Each mount names a volume of the pod; bpffs and the config are among them.
        let volumes = pod["volumes"].as_vec().unwrap();
        let volume = |name: &str| {
            volumes
                .iter()
                .find(|v| v["name"].as_str() == Some(name))
                .unwrap_or_else(|| panic!("no volume {name}"))
        };
        let mounts = c["volumeMounts"].as_vec().unwrap();
        let mount = |path: &str| {
            let m = mounts
                .iter()
                .find(|m| m["mountPath"].as_str() == Some(path))
                .unwrap_or_else(|| panic!("nothing mounted at {path}"));
            volume(m["name"].as_str().unwrap())
        };
        let bpffs = mount("/sys/fs/bpf");
        assert_eq!(bpffs["hostPath"]["path"].as_str(), Some("/sys/fs/bpf"));
        let config = mount("/etc/ipmp");
        let map_name = config["configMap"]["name"].as_str().unwrap();
        let map = kind("ConfigMap");
        assert_eq!(map["metadata"]["name"].as_str(), Some(map_name));
        let toml_text = map["data"]["ipmpd.toml"].as_str().unwrap();
        let parsed: toml::Table = toml::from_str(toml_text).unwrap();
        assert!(parsed["group"].as_array().is_some_and(|g| !g.is_empty()));
        let run = mount("/run/ipmp");
        assert_eq!(run["hostPath"]["path"].as_str(), Some("/run/ipmp"));
        // The container's /proc/sys is read-only: ipmpd writes the node's network sysctls
        // through a writable mount of them, named on its command line.
        let at = command
            .iter()
            .position(|a| *a == "--proc-sys-net")
            .and_then(|i| command.get(i + 1))
            .unwrap_or_else(|| panic!("no --proc-sys-net DIR in {command:?}"));
        let sysctls = mount(at);
        assert_eq!(sysctls["hostPath"]["path"].as_str(), Some("/proc/sys/net"));
        assert!(
            mounts
                .iter()
                .all(|m| m["mountPath"].as_str() != Some(at)
                    || m["readOnly"].as_bool() != Some(true)),
            "{at} is mounted read-only"
        );
        for m in mounts {
            volume(m["name"].as_str().unwrap());
        }
    }

    #[test]
    fn containerfile_installs_the_package() {
        let path = workspace_root().join("dist/Containerfile");
        let text = std::fs::read_to_string(&path).unwrap();
        // One instruction per logical line (a trailing backslash continues it).
        let joined = text.replace("\\\n", " ");
        let instructions: Vec<&str> = joined
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .collect();
        assert!(
            instructions
                .first()
                .is_some_and(|l| l.starts_with("FROM debian:12")),
            "{instructions:?}"
        );
        assert!(
            instructions
                .iter()
                .any(|l| l.starts_with("COPY") && l.contains("target/deb/ipmp_")),
            "the image installs the package `cargo xtask deb` builds"
        );
        assert!(
            instructions
                .iter()
                .any(|l| l.starts_with("RUN") && l.contains("apt-get install"))
        );
        assert!(
            instructions
                .iter()
                .any(|l| l.starts_with("ENTRYPOINT") && l.contains("\"/usr/sbin/ipmpd\"")),
            "{instructions:?}"
        );
    }
}
