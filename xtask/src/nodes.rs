//! `cargo xtask bench --namespaces`: `watch --all-namespaces` against a
//! single-namespace watch and against `ss` run in every namespace: kernel
//! time per connection in each mode, the daemon's CPU per namespace per
//! interval (see the atrest module), the first host record at 100
//! namespaces of 1,000 sockets, and the daemon's memory per namespace.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};

use crate::lab::{Guard, Paths, median, rss_kib};

/// Namespaces and sockets (pairs x 2) per namespace of the scale run.
const NAMESPACES: usize = 100;
const PAIRS: u64 = 500;
/// Rounds of the kernel-cost comparison, alternated.
const COST_ROUNDS: usize = 3;

/// Kernel time per connection of netconn's programs over a 5 s churn in a
/// namespace of its own, with `watch` in that namespace (`all` false) or
/// `watch --all-namespaces` in the host's; `metrics`: TCP metrics on;
/// `ephemeral`: ephemeral ports counted (one namespace only).
fn counting_cost(
    paths: &Paths,
    all: bool,
    metrics: bool,
    ephemeral: bool,
) -> Result<Vec<(String, f64)>> {
    let stats = crate::lab::bpf_stats_on()?;
    let ns = crate::lab::netns("nscost")?;
    let mut cmd = crate::lab::watch_cmd(&paths.netconn, &ns, all);
    if !metrics {
        cmd.arg("--no-tcp-metrics");
    }
    if !ephemeral && !all {
        cmd.arg("--no-ephemeral-ports");
    }
    let watch = start(cmd.args(["--interval", "1h"]))?;
    let connections = crate::lab::churn_connections(paths, &ns)?;
    let costs = crate::lab::program_run_times()?
        .into_iter()
        .map(|(name, t, _)| (name, t / connections))
        .collect();
    drop(watch);
    drop(stats);
    Ok(costs)
}

/// Resident memory of a `watch --all-namespaces` half a second after its
/// first record.
fn daemon_rss(paths: &Paths) -> Result<u64> {
    let watch = start(Command::new(&paths.netconn).args([
        "watch",
        "--all-namespaces",
        "--interval",
        "1h",
    ]))?;
    std::thread::sleep(Duration::from_millis(500));
    rss_kib(watch.0.id())
}

/// Starts a watch and waits for its first record; the rest of its output
/// is read by a thread (a watch whose stdout closes stops).
fn start(cmd: &mut Command) -> Result<Guard> {
    let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::null()).spawn()?;
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let guard = Guard(child);
    let mut line = String::new();
    out.read_line(&mut line)?;
    ensure!(line.contains("\"type\""), "watch wrote no record: {line:?}");
    std::thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));
    Ok(guard)
}

/// Seconds from starting `watch --all-namespaces` until its first host
/// record, the number of namespaces it names, and that record.
fn first_host_record(paths: &Paths) -> Result<(f64, serde_json::Value)> {
    let started = Instant::now();
    let mut child = Command::new(&paths.netconn)
        .args(["watch", "--all-namespaces", "--interval", "1h"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let out = BufReader::new(child.stdout.take().unwrap());
    let guard = Guard(child);
    for line in out.lines() {
        let line = line?;
        if line.starts_with("{\"type\":\"host\"") {
            let took = started.elapsed().as_secs_f64();
            let record: serde_json::Value = serde_json::from_str(&line)?;
            drop(guard);
            return Ok((took, record));
        }
    }
    bail!("watch --all-namespaces wrote no host record")
}

pub struct Result_ {
    single: Vec<(String, f64)>,
    all: Vec<(String, f64)>,
    /// The same with TCP metrics on.
    single_metrics: Vec<(String, f64)>,
    all_metrics: Vec<(String, f64)>,
    /// One namespace without ephemeral ports, TCP metrics off and on.
    single_plain: Vec<(String, f64)>,
    single_metrics_plain: Vec<(String, f64)>,
    first_host: f64,
    namespaces_seen: u64,
    sockets_seen: u64,
    ss_each: f64,
    rss_base_kib: u64,
    rss_kib: u64,
    at_rest: Vec<crate::atrest::Reading>,
}

pub fn run(paths: &Paths) -> Result<Result_> {
    // 1. Kernel time per connection, the two modes alternated.
    let mut single = Vec::new();
    let mut all = Vec::new();
    let mut single_metrics = Vec::new();
    let mut all_metrics = Vec::new();
    let mut single_plain = Vec::new();
    let mut single_metrics_plain = Vec::new();
    for round in 0..COST_ROUNDS {
        single.push(counting_cost(paths, false, false, true)?);
        all.push(counting_cost(paths, true, false, false)?);
        single_plain.push(counting_cost(paths, false, false, false)?);
        single_metrics.push(counting_cost(paths, false, true, true)?);
        all_metrics.push(counting_cost(paths, true, true, false)?);
        single_metrics_plain.push(counting_cost(paths, false, true, false)?);
        eprintln!(
            "xtask bench: namespaces: kernel cost round {} done",
            round + 1
        );
    }
    let medians = |runs: &[Vec<(String, f64)>]| -> Vec<(String, f64)> {
        runs[0]
            .iter()
            .map(|(name, _)| {
                let of = runs
                    .iter()
                    .filter_map(|r| r.iter().find(|p| &p.0 == name).map(|p| p.1))
                    .collect();
                (name.clone(), median(of))
            })
            .collect()
    };
    let (single, all) = (medians(&single), medians(&all));
    let (single_metrics, all_metrics) = (medians(&single_metrics), medians(&all_metrics));
    let (single_plain, single_metrics_plain) =
        (medians(&single_plain), medians(&single_metrics_plain));

    // 2. What a node pays per namespace per interval.
    let at_rest = crate::atrest::run(paths)?;

    // 3. Memory with the host's namespace only, then at scale.
    let rss_base_kib = daemon_rss(paths)?;
    let mut spaces = Vec::new();
    let mut holders = Vec::new();
    for i in 0..NAMESPACES {
        let ns = crate::lab::netns(&format!("node{i}"))?;
        holders.push(crate::lab::hold(paths, &ns, PAIRS)?);
        spaces.push(ns);
    }
    eprintln!(
        "xtask bench: namespaces: {NAMESPACES} x {} sockets ready",
        PAIRS * 2
    );
    // 4. The first host record, against ss -tan in each namespace.
    let mut firsts = Vec::new();
    let mut seen = serde_json::Value::Null;
    for _ in 0..3 {
        let (took, record) = first_host_record(paths)?;
        firsts.push(took);
        seen = record;
    }
    let mut ss_runs = Vec::new();
    for _ in 0..3 {
        let started = Instant::now();
        for ns in &spaces {
            let status = Command::new("ss")
                .args(["-N", &ns.name, "-tan"])
                .stdout(Stdio::null())
                .status()?;
            ensure!(status.success(), "ss -N {} failed", ns.name);
        }
        ss_runs.push(started.elapsed().as_secs_f64());
    }
    let rss = daemon_rss(paths)?;
    drop(holders);
    drop(spaces);
    Ok(Result_ {
        single,
        all,
        single_metrics,
        all_metrics,
        single_plain,
        single_metrics_plain,
        first_host: median(firsts),
        namespaces_seen: seen["namespaces"].as_u64().context("namespaces")?,
        sockets_seen: seen["total"].as_u64().context("total")?,
        ss_each: median(ss_runs),
        rss_base_kib,
        rss_kib: rss,
        at_rest,
    })
}

pub fn render(r: &Result_) -> String {
    let counting = |costs: &[(String, f64)]| costs.iter().map(|c| c.1).sum::<f64>();
    let mut s = String::from("## Every namespace (`watch --all-namespaces`)\n\n");
    s.push_str(
        "`cargo xtask bench --namespaces` (also part of `cargo xtask bench`). Kernel time of the \
         programs per connection of a 4-thread, 5 s loopback churn in one namespace \
         (kernel.bpf_stats_enabled, run_time_ns / connections, median of 3 alternated rounds), \
         with `watch` in that namespace (with and without `--no-ephemeral-ports`: what counting \
         ephemeral ports per destination costs) and with one `watch --all-namespaces` in the \
         host's (which does not count them).\n\n",
    );
    for (title, one, plain, every) in [
        (
            "TCP metrics off (`--no-tcp-metrics`)",
            &r.single,
            &r.single_plain,
            &r.all,
        ),
        (
            "TCP metrics on (the default)",
            &r.single_metrics,
            &r.single_metrics_plain,
            &r.all_metrics,
        ),
    ] {
        s.push_str(&format!(
            "{title}:\n\n| program | one namespace, ns/conn | one namespace, `--no-ephemeral-ports` | every namespace, ns/conn |\n| --- | ---: | ---: | ---: |\n"
        ));
        let of = |runs: &[(String, f64)], name: &str| {
            runs.iter().find(|a| a.0 == name).map_or(f64::NAN, |a| a.1)
        };
        // A program a mode does not load (the sock_ops program without TCP
        // metrics or ephemeral ports) has no figure there.
        let cell = |v: f64| {
            if v.is_nan() {
                "-".to_owned()
            } else {
                format!("{v:.0}")
            }
        };
        for (name, single) in one.iter() {
            let (p, all) = (cell(of(plain, name)), cell(of(every, name)));
            s.push_str(&format!("| `{name}` | {single:.0} | {p} | {all} |\n"));
        }
        let (a, p, b) = (counting(one), counting(plain), counting(every));
        s.push_str(&format!(
            "| **all** | **{a:.0}** | **{p:.0}** ({:+.0} %) | **{b:.0}** ({:+.0} %) |\n\n",
            (p / a - 1.0) * 100.0,
            (b / a - 1.0) * 100.0
        ));
    }
    s.push_str(&crate::atrest::render(&r.at_rest));
    s.push_str(&format!(
        "At {NAMESPACES} namespaces of {} sockets each (+ the host's), the first host record of \
         `watch --all-namespaces` (start, load, snapshot of every namespace from inside it): \
         **{:.3} s** (median of 3; it counted {} namespaces, {} sockets). `ss -tan` run in each \
         of them in turn (`ss -N NS`, no `ip netns exec`): {:.3} s. Daemon memory (RSS): \
         {:.1} MiB with the host's namespace only, {:.1} MiB at {NAMESPACES} namespaces: \
         **{:.0} KiB per namespace** of {} sockets; in the kernel each namespace adds two \
         per-CPU entries of 520 bytes (per-state changes, allocated when it is adopted).\n",
        PAIRS * 2,
        r.first_host,
        r.namespaces_seen,
        r.sockets_seen,
        r.ss_each,
        r.rss_base_kib as f64 / 1024.0,
        r.rss_kib as f64 / 1024.0,
        (r.rss_kib.saturating_sub(r.rss_base_kib)) as f64 / NAMESPACES as f64,
        PAIRS * 2,
    ));
    s
}
