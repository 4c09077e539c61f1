//! What a network namespace belongs to, as far as the node itself can tell
//! (no container runtime or API server is asked): the cgroup of a process
//! in it, and what that path names by the conventions of the runtimes and
//! of the kubelet's two cgroup drivers.

use serde::Serialize;

/// A namespace's owner; every field is absent when the node cannot tell.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Owner {
    /// Its names under /run/netns (`ip netns add`), first one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub netns_name: Option<String>,
    /// The cgroup v2 path of the process chosen (see [`pick`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cgroup: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub runtime: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub container_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub k8s_pod_uid: Option<String>,
    /// The pod's host name: its UTS namespace's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub k8s_pod_name: Option<String>,
    /// The mounted service-account namespace file, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub k8s_namespace: Option<String>,
    /// A few processes in the namespace, lowest first.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub pids: Vec<u32>,
    /// Their command names, one for each pid (empty for one gone).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub comm: Vec<String>,
}

impl Owner {
    /// A short name for a table: the pod, the container, the namespace's
    /// name or its first process, in that order; "-" when none is known.
    pub fn label(&self) -> String {
        label(&Labelled {
            pod: self.k8s_pod_name.as_deref(),
            k8s_namespace: self.k8s_namespace.as_deref(),
            runtime: self.runtime,
            container_id: self.container_id.as_deref(),
            netns_name: self.netns_name.as_deref(),
            process: self
                .pids
                .first()
                .copied()
                .zip(self.comm.first().map(String::as_str)),
        })
    }

    /// The same label from an owner as a record carries it (JSON).
    pub fn label_of(owner: &serde_json::Value) -> String {
        let s = |key: &str| owner.get(key).and_then(serde_json::Value::as_str);
        let first = |key: &str| owner.get(key).and_then(|v| v.get(0));
        label(&Labelled {
            pod: s("k8s_pod_name"),
            k8s_namespace: s("k8s_namespace"),
            runtime: s("runtime"),
            container_id: s("container_id"),
            netns_name: s("netns_name"),
            process: first("pids")
                .and_then(serde_json::Value::as_u64)
                .and_then(|p| u32::try_from(p).ok())
                .zip(first("comm").and_then(serde_json::Value::as_str)),
        })
    }
}

/// What an owner's label is made of.
struct Labelled<'a> {
    pod: Option<&'a str>,
    k8s_namespace: Option<&'a str>,
    runtime: Option<&'a str>,
    container_id: Option<&'a str>,
    netns_name: Option<&'a str>,
    process: Option<(u32, &'a str)>,
}

fn label(o: &Labelled<'_>) -> String {
    if let Some(pod) = o.pod {
        return match o.k8s_namespace {
            Some(ns) => format!("pod:{ns}/{pod}"),
            None => format!("pod:{pod}"),
        };
    }
    if let (Some(rt), Some(id)) = (o.runtime, o.container_id) {
        return format!("{rt}:{}", id.chars().take(12).collect::<String>());
    }
    if let Some(name) = o.netns_name {
        return format!("netns:{name}");
    }
    match o.process {
        Some((pid, comm)) => format!("{pid}/{comm}"),
        None => "-".into(),
    }
}

/// What a cgroup path names.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CgroupNames {
    pub runtime: Option<&'static str>,
    pub container_id: Option<String>,
    pub k8s_pod_uid: Option<String>,
}

fn is_container_id(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// systemd's unit-name escaping (`\x2d` for `-`), undone.
fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find("\\x") {
        out.push_str(&rest[..i]);
        let hex = rest.get(i + 2..i + 4);
        match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
            Some(b) => {
                out.push(b as char);
                rest = &rest[i + 4..];
            }
            None => {
                out.push_str("\\x");
                rest = &rest[i + 2..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// Reads a cgroup v2 path (as `/proc/PID/cgroup` shows it after `0::`).
pub fn parse_cgroup(path: &str) -> CgroupNames {
    let mut names = CgroupNames::default();
    let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
    for (i, part) in parts.iter().enumerate() {
        // Kubernetes pods: kubepods[-qos]-pod<uid>.slice (systemd driver,
        // dashes turned to underscores), or kubepods/[qos/]pod<uid>.
        if let Some(slice) = part.strip_suffix(".slice")
            && slice.starts_with("kubepods")
            && let Some(uid) = slice.rsplit('-').next().and_then(|p| p.strip_prefix("pod"))
        {
            names.k8s_pod_uid = Some(uid.replace('_', "-"));
        } else if let Some(uid) = part.strip_prefix("pod")
            && parts[..i].contains(&"kubepods")
        {
            names.k8s_pod_uid = Some(uid.to_owned());
        }
        // Scopes of the runtimes (systemd driver).
        if let Some(scope) = part.strip_suffix(".scope") {
            const SCOPES: [(&str, &str); 4] = [
                ("docker-", "docker"),
                ("cri-containerd-", "containerd"),
                ("crio-", "cri-o"),
                ("libpod-", "podman"),
            ];
            for (prefix, runtime) in SCOPES {
                if let Some(id) = scope.strip_prefix(prefix)
                    && is_container_id(id)
                {
                    names.runtime = Some(runtime);
                    names.container_id = Some(id.to_owned());
                }
            }
            if let Some(machine) = scope.strip_prefix("machine-") {
                names.runtime = Some("systemd-nspawn");
                names.container_id = Some(unescape(machine));
            }
        }
        // cgroupfs driver: /docker/<id>, /kubepods/.../pod<uid>/<id>.
        if is_container_id(part) && i > 0 {
            if parts[i - 1] == "docker" {
                names.runtime = Some("docker");
                names.container_id = Some((*part).to_owned());
            } else if parts[i - 1].starts_with("pod") && names.k8s_pod_uid.is_some() {
                names.container_id = Some((*part).to_owned());
            }
        }
        if let Some(name) = part.strip_prefix("lxc.payload.") {
            names.runtime = Some("lxc");
            names.container_id = Some(name.to_owned());
        }
    }
    names
}

/// Of the processes in a namespace, `(pid, cgroup)` lowest pid first, the
/// one whose cgroup says the most: a pod's infrastructure ("pause")
/// container starts before the pod's others, and a shell that `ip netns
/// exec` started says less than the container the namespace was made for.
pub fn pick(cgroups: &[(u32, String)]) -> Option<&(u32, String)> {
    let score = |c: &str| {
        let n = parse_cgroup(c);
        u8::from(n.container_id.is_some()) * 2 + u8::from(n.k8s_pod_uid.is_some())
    };
    let best = cgroups.iter().map(|(_, c)| score(c)).max()?;
    cgroups.iter().find(|(_, c)| score(c) == best)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "4f1c6a8e0c2b0d9e7a6b5c4d3e2f1a0b9c8d7e6f5a4b3c2d1e0f9a8b7c6d5e4f";

    fn names(runtime: Option<&'static str>, id: Option<&str>, pod: Option<&str>) -> CgroupNames {
        CgroupNames {
            runtime,
            container_id: id.map(str::to_owned),
            k8s_pod_uid: pod.map(str::to_owned),
        }
    }

    #[test]
    fn runtimes_by_their_scopes_and_folders() {
        let cases = [
            (
                format!("/system.slice/docker-{ID}.scope"),
                names(Some("docker"), Some(ID), None),
            ),
            (
                format!("/docker/{ID}"),
                names(Some("docker"), Some(ID), None),
            ),
            (
                format!("/machine.slice/libpod-{ID}.scope/container"),
                names(Some("podman"), Some(ID), None),
            ),
            (
                format!("/machine.slice/crio-{ID}.scope"),
                names(Some("cri-o"), Some(ID), None),
            ),
            (
                "/machine.slice/machine-web\\x2d1.scope/payload".into(),
                names(Some("systemd-nspawn"), Some("web-1"), None),
            ),
            (
                "/lxc.payload.db1/init.scope".into(),
                names(Some("lxc"), Some("db1"), None),
            ),
            (
                "/user.slice/user-0.slice/session-3.scope".into(),
                names(None, None, None),
            ),
            ("/".into(), names(None, None, None)),
            // Not a full id: not taken for one.
            (
                "/system.slice/docker-abc.scope".into(),
                names(None, None, None),
            ),
            // The runtimes' monitors are not the container.
            (
                format!("/machine.slice/crio-conmon-{ID}.scope"),
                names(None, None, None),
            ),
        ];
        for (path, want) in cases {
            assert_eq!(parse_cgroup(&path), want, "{path}");
        }
    }

    #[test]
    fn kubernetes_pods_with_both_cgroup_drivers() {
        let systemd = format!(
            "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod0f5c_1e2d_4a3b_9c8d_7e6f5a4b3c2d.slice/cri-containerd-{ID}.scope"
        );
        let uid = "0f5c-1e2d-4a3b-9c8d-7e6f5a4b3c2d";
        assert_eq!(
            parse_cgroup(&systemd),
            names(Some("containerd"), Some(ID), Some(uid))
        );
        // Guaranteed pods have no QoS level.
        let guaranteed = "/kubepods.slice/kubepods-pod0f5c_1e2d_4a3b_9c8d_7e6f5a4b3c2d.slice";
        assert_eq!(parse_cgroup(guaranteed), names(None, None, Some(uid)));
        let cgroupfs = format!("/kubepods/burstable/pod{uid}/{ID}");
        assert_eq!(parse_cgroup(&cgroupfs), names(None, Some(ID), Some(uid)));
        let cgroupfs = format!("/kubepods/pod{uid}/{ID}");
        assert_eq!(parse_cgroup(&cgroupfs), names(None, Some(ID), Some(uid)));
        // "pod" outside kubepods is nobody's pod.
        assert_eq!(
            parse_cgroup("/system.slice/podman.service"),
            names(None, None, None)
        );
    }

    #[test]
    fn the_process_that_names_the_container_is_picked() {
        let shell = (10, "/user.slice/user-0.slice/session-1.scope".to_owned());
        let container = (20, format!("/system.slice/docker-{ID}.scope"));
        let later = (30, format!("/system.slice/docker-{ID}.scope"));
        let cgroups = [shell.clone(), container.clone(), later];
        assert_eq!(pick(&cgroups), Some(&container));
        assert_eq!(pick(std::slice::from_ref(&shell)), Some(&shell));
        assert_eq!(pick(&[]), None);
    }

    #[test]
    fn escapes_are_undone_and_bad_ones_kept() {
        assert_eq!(unescape("a\\x2db"), "a-b");
        assert_eq!(unescape("a\\xzz"), "a\\xzz");
        assert_eq!(unescape("end\\x"), "end\\x");
    }
}
