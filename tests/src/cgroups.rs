//! Cgroups shaped like a container runtime's or a kubelet's, made under
//! the cgroup v2 root for one test, with processes started in them.

use std::path::PathBuf;
use std::process::{Child, Command};

use crate::Netns;

/// The cgroup2 mount (hybrid hosts have it under /sys/fs/cgroup/unified).
pub fn cgroup2_root() -> PathBuf {
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap();
    mounts
        .lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.get(2) == Some(&"cgroup2")).then(|| f[1].into())
        })
        .expect("a cgroup2 mount")
}

/// Cgroups made for a test (removed, deepest first, on drop) and the
/// processes put in them (killed first).
#[derive(Default)]
pub struct Cgroups {
    made: Vec<PathBuf>,
    children: Vec<Child>,
}

impl Cgroups {
    /// Makes `path` under the cgroup2 root (each missing level).
    pub fn make(&mut self, path: &str) -> PathBuf {
        let mut dir = cgroup2_root();
        for part in path.split('/') {
            dir.push(part);
            if !dir.exists() {
                std::fs::create_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
                self.made.push(dir.clone());
            }
        }
        dir
    }

    /// Starts `sleep` in namespace `ns` with a UTS namespace of its own
    /// named `hostname`, inside cgroup `path`; returns its pid.
    pub fn start(&mut self, ns: &Netns, hostname: &str, path: &str) -> u32 {
        self.start_script(
            ns,
            &["--uts"],
            path,
            &format!("hostname {hostname} && echo ready && exec sleep 60"),
        )
    }

    /// Runs `unshare UNSHARE sh -c SCRIPT` in namespace `ns`, waits for the
    /// script to print `ready`, then moves it into cgroup `path`; returns
    /// its pid (the script should end with an `exec`).
    pub fn start_script(&mut self, ns: &Netns, unshare: &[&str], path: &str, script: &str) -> u32 {
        let dir = self.make(path);
        let child = crate::spawn_ready(
            Command::new("ip")
                .args(["netns", "exec", &ns.name, "unshare"])
                .args(unshare)
                .args(["sh", "-c", script]),
        );
        let pid = child.id();
        std::fs::write(dir.join("cgroup.procs"), pid.to_string()).unwrap();
        self.children.push(child);
        pid
    }
}

impl Drop for Cgroups {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        for dir in self.made.iter().rev() {
            let _ = std::fs::remove_dir(dir);
        }
    }
}
