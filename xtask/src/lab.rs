//! What every measurement of `cargo xtask bench` runs in: a network
//! namespace of its own, children stopped on drop, the binaries measured,
//! and a process's memory.

use std::process::Child;
use std::time::Duration;

use anyhow::{Context, Result};

pub use netconn_integration::Netns;

/// A namespace for a benchmark (`netconn-bench-TAG-PID-N`), removed on
/// drop.
pub fn netns(tag: &str) -> Result<Netns> {
    Netns::try_named(&format!("bench-{tag}")).map_err(anyhow::Error::msg)
}

/// A child stopped on drop: SIGTERM, so a netconn watch detaches and
/// removes its counts socket; SIGKILL if it has not exited after 5 s.
pub struct Guard(pub Child);

impl Drop for Guard {
    fn drop(&mut self) {
        // Already reaped (by a try_wait that saw it exit): its pid may
        // belong to another process by now.
        if matches!(self.0.try_wait(), Ok(Some(_))) {
            return;
        }
        // SAFETY: kill on our own child's pid, not reaped yet.
        unsafe { libc::kill(self.0.id() as i32, libc::SIGTERM) };
        for _ in 0..250 {
            if matches!(self.0.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `kernel.bpf_stats_enabled` on (programs' run time and count are kept)
/// until the guard drops, then as it was.
pub fn bpf_stats_on() -> Result<impl Drop> {
    const SYSCTL: &str = "/proc/sys/kernel/bpf_stats_enabled";
    let before = std::fs::read_to_string(SYSCTL)?;
    std::fs::write(SYSCTL, "1")?;
    Ok(scopeguard(move || {
        let _ = std::fs::write(SYSCTL, before.trim());
    }))
}

/// A path in the temp directory, named for this process, removed (file
/// or directory) when dropped: however the bench that uses it ends.
pub struct Scratch(pub std::path::PathBuf);

impl Scratch {
    pub fn new(name: &str) -> Self {
        let path = std::env::temp_dir().join(format!("netconn-{name}-{}", std::process::id()));
        let _ = std::fs::remove_file(&path);
        Self(path)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `netconn watch` in `ns`, or with `all` every namespace's from the host,
/// for the caller to add arguments to.
pub fn watch_cmd(netconn: &str, ns: &Netns, all: bool) -> std::process::Command {
    let mut cmd = if all {
        std::process::Command::new(netconn)
    } else {
        ns.cmd(netconn)
    };
    cmd.arg("watch").args(all.then_some("--all-namespaces"));
    cmd
}

/// Spawns `cmd` (a `netconn watch --output FILE`) and waits until it
/// wrote its first record to `file`: its programs are attached then.
pub fn spawn_writing(mut cmd: std::process::Command, file: &std::path::Path) -> Result<Guard> {
    let mut watch = Guard(cmd.spawn()?);
    let started = std::time::Instant::now();
    while std::fs::metadata(file).map(|m| m.len()).unwrap_or(0) == 0 {
        if let Some(status) = watch.0.try_wait()? {
            anyhow::bail!("netconn watch exited before its first record: {status}");
        }
        if started.elapsed() > std::time::Duration::from_secs(30) {
            anyhow::bail!("netconn watch wrote no record in 30 s");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    Ok(watch)
}

/// Connections a 4-thread, 5 s loopback churn makes in `ns` (at least 1,
/// so that figures can be divided by it): what the kernel-time
/// measurements divide by.
pub fn churn_connections(paths: &Paths, ns: &Netns) -> Result<f64> {
    let out = ns
        .cmd(&paths.churn)
        .args(["churn", "--threads", "4", "--seconds", "5"])
        .output()?;
    let churn: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    Ok(churn["connections"].as_f64().unwrap_or(0.0).max(1.0))
}

/// The median of a set of figures (of two middle ones, their mean; NaN
/// for none).
pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// The binaries measured.
pub struct Paths {
    pub netconn: String,
    pub churn: String,
}

/// A `netconn-churn hold` in `ns` holding `pairs` established pairs (two
/// sockets each), once it says they are ready; they close when it stops.
pub fn hold(paths: &Paths, ns: &Netns, pairs: u64) -> Result<Guard> {
    use std::io::{BufRead, BufReader};
    let mut child = ns
        .cmd(&paths.churn)
        .args(["hold", "--pairs", &pairs.to_string()])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()?;
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line)?;
    let guard = Guard(child);
    anyhow::ensure!(line.trim() == "ready", "holder failed in {}", ns.name);
    Ok(guard)
}

/// Resident memory of a process, KiB.
pub fn rss_kib(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .context("no VmRSS")
}

/// Every netconn program's kernel run time and run count so far (with
/// `kernel.bpf_stats_enabled`), by name (cut at 15 bytes by the kernel),
/// sorted: the two on the state tracepoint, the UDP lifecycle programs
/// (which TCP sockets pass too), the metrics' and connection records'.
pub fn program_run_times() -> Result<Vec<(String, f64, f64)>> {
    run_times(|v| {
        v["name"]
            .as_str()
            .is_some_and(|n| n.starts_with("netconn_"))
    })
}

/// The ids of every loaded program (to tell which ones a tool loads).
pub fn program_ids() -> Result<std::collections::BTreeSet<u64>> {
    let mut ids = std::collections::BTreeSet::new();
    run_times(|v| {
        if let Some(id) = v["id"].as_u64() {
            ids.insert(id);
        }
        false
    })?;
    Ok(ids)
}

/// The same for the programs with these ids (what a tool started between
/// two [`program_ids`] loaded: bpftrace's).
pub fn run_times_of(ids: &std::collections::BTreeSet<u64>) -> Result<Vec<(String, f64, f64)>> {
    run_times(|v| v["id"].as_u64().is_some_and(|id| ids.contains(&id)))
}

fn run_times(
    mut wanted: impl FnMut(&serde_json::Value) -> bool,
) -> Result<Vec<(String, f64, f64)>> {
    let all = netconn_integration::bpftool_json(&["prog", "show"]).map_err(anyhow::Error::msg)?;
    let mut out = Vec::new();
    for v in all.as_array().into_iter().flatten().filter(|v| wanted(v)) {
        let Some(name) = v["name"].as_str() else {
            continue;
        };
        if let (Some(t), Some(n)) = (v["run_time_ns"].as_f64(), v["run_cnt"].as_f64()) {
            out.push((name.to_owned(), t, n));
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

/// CPU time of every thread of `pid` so far, seconds.
pub fn cpu_seconds(pid: u32) -> Result<f64> {
    let mut ns = 0u64;
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))? {
        let text = std::fs::read_to_string(task?.path().join("schedstat")).unwrap_or_default();
        ns += text
            .split_whitespace()
            .next()
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0);
    }
    Ok(ns as f64 / 1e9)
}

/// Runs `f` when dropped.
fn scopeguard(f: impl FnOnce()) -> impl Drop {
    struct Run<F: FnOnce()>(Option<F>);
    impl<F: FnOnce()> Drop for Run<F> {
        fn drop(&mut self) {
            if let Some(f) = self.0.take() {
                f();
            }
        }
    }
    Run(Some(f))
}
