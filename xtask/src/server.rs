//! A real server (`cargo xtask bench --server`): Debian's nginx (one
//! worker, `return 200`) in a fresh namespace, loaded by wrk (one thread,
//! 32 connections) with a connection per request (`Connection: close`) and
//! with kept-alive connections, and iperf3's bulk transfer (one stream),
//! under each mode in turn: nothing attached,
//! `watch`, `watch --no-tcp-metrics`, `watch --events`, `watch
//! --all-namespaces` and bpftrace's count-only program. Alternated rounds;
//! the requests lost are each round's own against its run with nothing
//! attached (wall-clock rates swing on a shared machine), and beside them
//! the figures that do not swing: kernel time per request and the
//! daemon's CPU per request.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::lab::{Guard, Netns, Paths, median};

pub const HEADING: &str = "## A real server";

const ROUNDS: usize = 3;
const SECONDS: u32 = 8;
const PORT: u16 = 8088;

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Nothing,
    Watch,
    Lean,
    Events,
    All,
    Bpftrace,
}

impl Mode {
    const ALL: [Self; 6] = [
        Self::Nothing,
        Self::Watch,
        Self::Lean,
        Self::Events,
        Self::All,
        Self::Bpftrace,
    ];

    fn label(self) -> &'static str {
        match self {
            Self::Nothing => "nothing attached",
            Self::Watch => "`watch`",
            Self::Lean => "`watch --no-tcp-metrics`",
            Self::Events => "`watch --events`",
            Self::All => "`watch --all-namespaces`",
            Self::Bpftrace => "bpftrace count-only",
        }
    }
}

/// What loads the namespace.
#[derive(Clone, Copy, PartialEq)]
enum Load {
    /// wrk against nginx; `close`: a connection per request.
    Http { close: bool },
    /// iperf3, one stream: bulk data.
    Bulk,
}

impl Load {
    fn name(self) -> &'static str {
        match self {
            Self::Http { close: true } => "a connection per request (`Connection: close`)",
            Self::Http { close: false } => "kept-alive connections",
            Self::Bulk => "bulk transfer (iperf3, one stream)",
        }
    }

    /// What a rate counts, and what the figures are per.
    fn units(self) -> (&'static str, &'static str) {
        match self {
            Self::Http { .. } => ("requests/s", "request"),
            Self::Bulk => ("Gbit/s", "MiB"),
        }
    }
}

/// One load run's figures.
struct Run {
    rate: f64,
    /// Kernel time of the mode's programs per unit (request, MiB).
    kernel_ns: f64,
    /// The daemon's CPU per unit.
    daemon_ns: f64,
}

/// A workload's rows: per mode, medians over the rounds.
pub struct Workload {
    load: Load,
    rows: Vec<(Mode, Row)>,
}

struct Row {
    rate: f64,
    /// Each round's own penalty against its run with nothing attached, %.
    lost: Vec<f64>,
    kernel_ns: f64,
    daemon_ns: f64,
}

pub fn measure(paths: &Paths) -> Result<Vec<Workload>> {
    let ns = crate::lab::netns("server")?;
    // Removed however the bench ends, after nginx (dropped before it).
    let dir = crate::lab::Scratch::new("nginx");
    let nginx = nginx(&ns, &dir.0)?;
    let iperf3 = iperf3_server(&ns)?;
    let mut out = Vec::new();
    for load in [
        Load::Http { close: true },
        Load::Http { close: false },
        Load::Bulk,
    ] {
        let mut runs: Vec<Vec<Run>> = Mode::ALL.iter().map(|_| Vec::new()).collect();
        for round in 0..ROUNDS {
            for (i, mode) in Mode::ALL.iter().enumerate() {
                let r = run(paths, &ns, *mode, load)?;
                let (rate, per) = load.units();
                eprintln!(
                    "xtask bench: server, {}, round {} {}: {:.1} {rate}, {:.0} ns kernel, {:.2} µs daemon per {per}",
                    load.name(),
                    round + 1,
                    mode.label(),
                    r.rate,
                    r.kernel_ns,
                    r.daemon_ns / 1000.0
                );
                runs[i].push(r);
            }
        }
        let base: Vec<f64> = runs[0].iter().map(|r| r.rate).collect();
        let rows = Mode::ALL
            .iter()
            .zip(&runs)
            .map(|(mode, rs)| {
                (
                    *mode,
                    Row {
                        rate: median(rs.iter().map(|r| r.rate).collect()),
                        lost: rs
                            .iter()
                            .zip(&base)
                            .map(|(r, b)| (1.0 - r.rate / b) * 100.0)
                            .collect(),
                        kernel_ns: median(rs.iter().map(|r| r.kernel_ns).collect()),
                        daemon_ns: median(rs.iter().map(|r| r.daemon_ns).collect()),
                    },
                )
            })
            .collect();
        out.push(Workload { load, rows });
    }
    drop((nginx, iperf3));
    Ok(out)
}

/// nginx serving `return 200` on PORT in `ns`, one worker, its files in
/// `dir`.
fn nginx(ns: &Netns, dir: &std::path::Path) -> Result<Guard> {
    std::fs::create_dir_all(dir)?;
    let conf = dir.join("nginx.conf");
    let d = dir.display();
    std::fs::write(
        &conf,
        format!(
            "worker_processes 1;\ndaemon off;\npid {d}/nginx.pid;\nerror_log {d}/error.log;\n\
             events {{ worker_connections 4096; }}\n\
             http {{\n  access_log off;\n  client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n  \
             fastcgi_temp_path {d}/fastcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n  \
             keepalive_requests 1000000;\n  \
             server {{ listen 127.0.0.1:{PORT} backlog=4096; location / {{ return 200 \"ok\\n\"; }} }}\n}}\n"
        ),
    )?;
    let guard = Guard(
        ns.cmd("nginx")
            .args(["-c"])
            .arg(&conf)
            .args(["-p"])
            .arg(dir)
            .spawn()
            .context("nginx")?,
    );
    for _ in 0..100 {
        let up = ns
            .cmd("wrk")
            .args(["-t1", "-c1", "-d1s", &format!("http://127.0.0.1:{PORT}/")])
            .output()?;
        if String::from_utf8_lossy(&up.stdout).contains("Requests/sec") {
            return Ok(guard);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    bail!("nginx did not answer on port {PORT}")
}

fn run(paths: &Paths, ns: &Netns, mode: Mode, load: Load) -> Result<Run> {
    let _stats = crate::lab::bpf_stats_on()?;
    let file = crate::lab::Scratch::new("server");
    // The mode's programs (by id) and daemon.
    let loaded = crate::lab::program_ids()?;
    let (guard, pid): (Option<Guard>, Option<u32>) = match mode {
        Mode::Nothing => (None, None),
        Mode::Bpftrace => {
            let g = crate::kernelcost::bpftrace_count_only()?;
            crate::kernelcost::loaded_beyond(&loaded)?;
            (Some(g), None)
        }
        _ => {
            let mut cmd = crate::lab::watch_cmd(&paths.netconn, ns, mode == Mode::All);
            cmd.args(["--interval", "1s", "--output"]).arg(&file.0);
            match mode {
                Mode::Lean => {
                    cmd.arg("--no-tcp-metrics");
                }
                Mode::Events => {
                    cmd.arg("--events");
                }
                _ => {}
            }
            let g = crate::lab::spawn_writing(cmd, &file.0)?;
            let pid = g.0.id();
            (Some(g), Some(pid))
        }
    };
    let ids: BTreeSet<u64> = &crate::lab::program_ids()? - &loaded;
    let totals = || -> Result<f64> {
        Ok(crate::lab::run_times_of(&ids)?
            .into_iter()
            .map(|p| p.1)
            .sum())
    };
    let cpu = || pid.map_or(Ok(0.0), crate::lab::cpu_seconds);
    let (t0, c0) = (totals()?, cpu()?);
    let (rate, units) = match load {
        Load::Http { close } => http(ns, close)?,
        Load::Bulk => bulk(ns)?,
    };
    let (t1, c1) = (totals()?, cpu()?);
    drop(guard);
    Ok(Run {
        rate,
        kernel_ns: (t1 - t0) / units,
        daemon_ns: (c1 - c0) * 1e9 / units,
    })
}

/// wrk against nginx: requests/s and requests made.
fn http(ns: &Netns, close: bool) -> Result<(f64, f64)> {
    let mut wrk = ns.cmd("wrk");
    wrk.args(["-t1", "-c32", &format!("-d{SECONDS}s")]);
    if close {
        wrk.args(["-H", "Connection: close"]);
    }
    let out = wrk.arg(format!("http://127.0.0.1:{PORT}/")).output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let requests = text
        .lines()
        .find_map(|l| l.trim().split(" requests in ").next()?.parse::<f64>().ok())
        .filter(|n| *n > 0.0)
        .with_context(|| format!("wrk: {text}"))?;
    let rate = text
        .lines()
        .find_map(|l| l.strip_prefix("Requests/sec:")?.trim().parse::<f64>().ok())
        .with_context(|| format!("wrk: {text}"))?;
    Ok((rate, requests))
}

/// iperf3's server on PORT + 1 in `ns`, serving one test after another.
fn iperf3_server(ns: &Netns) -> Result<Guard> {
    Ok(Guard(
        ns.cmd("iperf3")
            .args(["-s", "-p", &(PORT + 1).to_string()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .context("iperf3")?,
    ))
}

/// iperf3, one stream for SECONDS: Gbit/s and MiB received.
fn bulk(ns: &Netns) -> Result<(f64, f64)> {
    let mut tries = 0;
    let out = loop {
        let out = ns
            .cmd("iperf3")
            .args(["-c", "127.0.0.1", "-p", &(PORT + 1).to_string(), "-J"])
            .args(["-t", &SECONDS.to_string()])
            .output()?;
        tries += 1;
        // The server may not listen yet (the first run): it says so at once.
        if out.status.success() || tries == 50 {
            break out;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).context("iperf3 -J")?;
    let received = &v["end"]["sum_received"];
    let (bytes, bps) = (
        received["bytes"].as_f64(),
        received["bits_per_second"].as_f64(),
    );
    match (bytes, bps) {
        (Some(b), Some(r)) if b > 0.0 => Ok((r / 1e9, b / f64::from(1 << 20))),
        _ => bail!(
            "iperf3 moved nothing: {}",
            String::from_utf8_lossy(&out.stdout)
        ),
    }
}

pub fn render(workloads: &[Workload], command: &str) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{HEADING}\n\n`{command}`: Debian's nginx-light (one worker, `return 200`, access log off) in a fresh namespace, loaded by `wrk -t1 -c32 -d{SECONDS}s` from the same namespace, and `iperf3` (one stream, {SECONDS} s) there, under each mode in turn, {ROUNDS} alternated rounds (the `--all-namespaces` watch runs on the host). Requests lost: each round's own rate against its run with nothing attached, median and spread, since wall-clock rates swing by ±10 % on this shared 2-core machine. Beside them, the figures that do not swing: the kernel time of the mode's programs per request or MiB (`kernel.bpf_stats_enabled`; with a connection per request, per connection) and the daemon's CPU per request or MiB (`/proc/PID/task/*/schedstat`)."
    );
    for w in workloads {
        let (rate, per) = w.load.units();
        let _ = writeln!(
            s,
            "\n### {}\n\n| mode | {rate} (median) | lost (median, min..max) | kernel time per {per} | daemon CPU per {per} |\n| --- | ---: | ---: | ---: | ---: |",
            w.load.name()
        );
        for (mode, r) in &w.rows {
            let lost = if *mode == Mode::Nothing {
                "-".to_owned()
            } else {
                let lo = r.lost.iter().copied().fold(f64::INFINITY, f64::min);
                let hi = r.lost.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                format!("{:.1} % ({lo:.1}..{hi:.1})", median(r.lost.clone()))
            };
            let kernel = match mode {
                Mode::Nothing => "-".to_owned(),
                _ => format!("{:.0} ns", r.kernel_ns),
            };
            let daemon = match mode {
                Mode::Nothing | Mode::Bpftrace => "-".to_owned(),
                _ => format!("{:.2} µs", r.daemon_ns / 1000.0),
            };
            let _ = writeln!(
                s,
                "| {} | {} | {lost} | {kernel} | {daemon} |",
                mode.label(),
                match w.load {
                    Load::Bulk => format!("{:.1}", r.rate),
                    Load::Http { .. } => format!("{:.0}", r.rate),
                }
            );
        }
    }
    s
}
