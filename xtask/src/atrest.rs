//! Part of `cargo xtask bench --namespaces`: what `watch --all-namespaces`
//! costs a node per namespace per interval, at rest and with churn in one
//! namespace, at 10, 110 (a Kubernetes node's default pod limit) and 500
//! namespaces. Each namespace is shaped like a small pod: a process in it
//! holding a listener, a connection (two sockets) and a bound UDP socket;
//! ten of them with conntrack active (an nftables `ct state` rule).
//!
//! CPU is the daemon's own, summed over its threads from the scheduler's
//! nanosecond account (`/proc/PID/task/*/schedstat`), not ticks.

use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, ensure};

use crate::lab::{Guard, Netns, Paths};

/// Namespace counts measured, growing.
const SIZES: [usize; 3] = [10, 110, 500];
/// Namespaces with conntrack active.
const TRACKED: usize = 10;
/// How long each reading runs, after a warm-up.
const WINDOW: Duration = Duration::from_secs(20);
const WINDOW_SLOW: Duration = Duration::from_secs(60);
const WARM_UP: Duration = Duration::from_secs(4);
/// How long answers are timed, after the CPU window.
const ASKING: Duration = Duration::from_secs(10);

/// One reading.
pub struct Reading {
    pub namespaces: usize,
    pub interval_s: u64,
    pub what: &'static str,
    /// Share of one core.
    pub cpu: f64,
    /// Connections the churn made meanwhile (0 at rest).
    pub connections: f64,
    /// Latencies of `counts INODE` answers on node.sock meanwhile, ms
    /// (p50, p99, max).
    pub answers: (f64, f64, f64),
}

impl Reading {
    /// Daemon CPU per namespace per interval, µs.
    pub fn per_namespace_us(&self, window: Duration) -> f64 {
        let intervals = window.as_secs_f64() / self.interval_s as f64;
        self.cpu * window.as_secs_f64() * 1e6 / intervals / self.namespaces as f64
    }
}

/// A namespace shaped like a small pod (see the module).
struct Pod {
    _holder: Guard,
    ns: Netns,
}

fn pod(paths: &Paths, i: usize) -> Result<Pod> {
    let ns = crate::lab::netns(&format!("rest{i}"))?;
    if i < TRACKED {
        let rules = "add table inet t; add chain inet t c { type filter hook input priority 0; }; \
                     add rule inet t c ct state established,related accept";
        let ok = ns.cmd("nft").arg(rules).status()?.success();
        ensure!(ok, "nft in {}", ns.name);
    }
    let holder = crate::lab::hold(paths, &ns, 1)?;
    Ok(Pod {
        _holder: holder,
        ns,
    })
}

/// `watch --all-namespaces --interval INTERVAL`'s CPU over `window` after
/// a warm-up, while `during` runs (it returns the connections it made).
fn measure(
    paths: &Paths,
    interval_s: u64,
    window: Duration,
    asked: u64,
    during: impl Fn() -> Result<f64>,
) -> Result<(f64, f64, (f64, f64, f64))> {
    let child = Command::new(&paths.netconn)
        .args(["watch", "--all-namespaces", "--interval"])
        .arg(format!("{interval_s}s"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    let guard = Guard(child);
    // Until it serves (adopting and snapshotting 500 namespaces takes a
    // few seconds), then the warm-up.
    let socket = std::path::Path::new("/run/netconn/node.sock");
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while !socket.exists() {
        ensure!(
            std::time::Instant::now() < deadline,
            "watch --all-namespaces did not serve within 120 s"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(WARM_UP);
    let pid = guard.0.id();
    let before = crate::lab::cpu_seconds(pid)?;
    let started = std::time::Instant::now();
    let connections = during()?;
    let rest = window.saturating_sub(started.elapsed());
    std::thread::sleep(rest);
    let used = crate::lab::cpu_seconds(pid)? - before;
    let took = started.elapsed().as_secs_f64();
    // Then, apart (answering costs the daemon CPU of its own), how long
    // answers take while it works; under the same load when there is one.
    let asker = std::thread::spawn(move || ask_for(asked, ASKING));
    let _ = during()?;
    let mut latencies = asker.join().expect("asker")?;
    drop(guard);
    latencies.sort_by(f64::total_cmp);
    ensure!(!latencies.is_empty(), "node.sock answered nothing");
    let at = |q: f64| latencies[((latencies.len() - 1) as f64 * q) as usize];
    Ok((used / took, connections, (at(0.5), at(0.99), at(1.0))))
}

/// Asks node.sock for namespace `inode`'s counts every 13 ms for `window`
/// (as `check --netns` would); each answer's latency, ms.
fn ask_for(inode: u64, window: Duration) -> Result<Vec<f64>> {
    use std::io::{Read, Write};
    let mut latencies = Vec::new();
    let started = std::time::Instant::now();
    while started.elapsed() < window {
        let t = std::time::Instant::now();
        let mut s = std::os::unix::net::UnixStream::connect("/run/netconn/node.sock")?;
        s.write_all(format!("counts {inode}\n").as_bytes())?;
        let mut answer = Vec::new();
        s.read_to_end(&mut answer)?;
        ensure!(!answer.is_empty(), "no counts for namespace {inode}");
        latencies.push(t.elapsed().as_secs_f64() * 1e3);
        std::thread::sleep(Duration::from_millis(13));
    }
    Ok(latencies)
}

pub fn run(paths: &Paths) -> Result<Vec<Reading>> {
    let mut pods: Vec<Pod> = Vec::new();
    let mut readings = Vec::new();
    for size in SIZES {
        while pods.len() < size {
            pods.push(pod(paths, pods.len()).with_context(|| format!("pod {}", pods.len()))?);
        }
        eprintln!("xtask bench: namespaces: {size} at rest");
        let host = 1;
        let asked = pods[size / 2].ns.inode();
        let (cpu, _, answers) = measure(paths, 1, WINDOW, asked, || Ok(0.0))?;
        readings.push(Reading {
            namespaces: size + host,
            interval_s: 1,
            what: "at rest",
            cpu,
            connections: 0.0,
            answers,
        });
        if size == 110 {
            let (cpu, _, answers) = measure(paths, 10, WINDOW_SLOW, asked, || Ok(0.0))?;
            readings.push(Reading {
                namespaces: size + host,
                interval_s: 10,
                what: "at rest",
                cpu,
                connections: 0.0,
                answers,
            });
            let busy = &pods[size - 1].ns;
            let (cpu, connections, answers) = measure(paths, 1, WINDOW, asked, || {
                crate::lab::churn_connections(paths, busy)
            })?;
            readings.push(Reading {
                namespaces: size + host,
                interval_s: 1,
                what: "churn in one (5 s of a 20 s window)",
                cpu,
                connections,
                answers,
            });
        }
    }
    drop(pods);
    Ok(readings)
}

pub fn render(readings: &[Reading]) -> String {
    let mut s = String::from(
        "What a node pays for `watch --all-namespaces` (the daemon's CPU, all threads, from \
         `/proc/PID/task/*/schedstat`): namespaces shaped like small pods (a process holding a \
         listener, a connection and a UDP socket; ten of them with conntrack active through an \
         nftables `ct state` rule), the host's included, TCP metrics on (the default), after a \
         4 s warm-up.\n\n\
         Then, in 10 s of their own (answering costs the daemon CPU of its own; with the same \
         churn where there is one), `counts INODE` asked of node.sock every 13 ms, as `check \
         --netns` asks, answered by the loop when it is free (within 4 ms), else from the counts it last published: its latency \
         p50 / p99 / max.\n\n\
         | namespaces | interval | load | daemon CPU (% of a core) | per namespace per interval | answer p50 / p99 / max |\n\
         | ---: | ---: | --- | ---: | ---: | ---: |\n",
    );
    for r in readings {
        let window = if r.interval_s == 10 {
            WINDOW_SLOW
        } else {
            WINDOW
        };
        s.push_str(&format!(
            "| {} | {} s | {} | {:.2} % | {:.0} µs | {:.1} / {:.1} / {:.1} ms |\n",
            r.namespaces,
            r.interval_s,
            r.what,
            r.cpu * 100.0,
            r.per_namespace_us(window),
            r.answers.0,
            r.answers.1,
            r.answers.2,
        ));
        if r.connections > 0.0 {
            s.push_str(&format!(
                "| | | ({:.0} connections in the busy namespace) | | | |\n",
                r.connections
            ));
        }
    }
    s.push('\n');
    s
}
