//! The processes behind sockets, from `/proc/*/fd`: for sockets no
//! program saw created (`list --processes`, a new listener without
//! `--events`).

use std::collections::HashMap;

/// Socket inode -> (pid, comm), from `/proc/*/fd`: the walk that makes
/// `ss -p` slow, hence opt-in. It is a readlink per open file, spread over
/// the CPUs. The lowest pid wins for shared sockets.
pub fn processes() -> HashMap<u32, (u32, String)> {
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return HashMap::new();
    };
    let mut pids: Vec<u32> = procs
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    pids.sort_unstable();
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(8);
    let chunk = pids.len().div_ceil(threads).max(1);
    let parts: Vec<HashMap<u32, (u32, String)>> = std::thread::scope(|scope| {
        let handles: Vec<_> = pids
            .chunks(chunk)
            .map(|part| scope.spawn(move || sockets_of(part)))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_default())
            .collect()
    });
    // Chunks are in pid order: the first chunk's owners win.
    let mut out: HashMap<u32, (u32, String)> = HashMap::new();
    for part in parts {
        for (inode, owner) in part {
            out.entry(inode).or_insert(owner);
        }
    }
    out
}

/// The sockets the processes `pids` (ascending) hold.
fn sockets_of(pids: &[u32]) -> HashMap<u32, (u32, String)> {
    let mut out: HashMap<u32, (u32, String)> = HashMap::new();
    for &pid in pids {
        let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
            continue;
        };
        let mut comm = None;
        for fd in fds.flatten() {
            let Ok(target) = std::fs::read_link(fd.path()) else {
                continue;
            };
            let Some(inode) = target
                .to_str()
                .and_then(|t| t.strip_prefix("socket:["))
                .and_then(|t| t.strip_suffix(']'))
                .and_then(|t| t.parse::<u32>().ok())
            else {
                continue;
            };
            let comm = comm.get_or_insert_with(|| crate::host::comm_of(pid).unwrap_or_default());
            out.entry(inode).or_insert_with(|| (pid, comm.clone()));
        }
    }
    out
}

/// The `/proc/*/fd` walk, when asked for: done at most once however many
/// namespaces are listed (socket inodes are unique on the host).
pub struct Processes {
    wanted: bool,
    found: std::sync::OnceLock<HashMap<u32, (u32, String)>>,
}

impl Processes {
    pub fn new(wanted: bool) -> Self {
        Self {
            wanted,
            found: std::sync::OnceLock::new(),
        }
    }

    pub fn get(&self) -> Option<&HashMap<u32, (u32, String)>> {
        self.wanted.then(|| self.found.get_or_init(processes))
    }
}
