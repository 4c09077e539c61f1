//! The kernel time netconn's programs take per kept-alive request: one
//! loopback connection carrying round trips, which make no state change
//! but give TCP RTT samples (`cargo xtask bench --keepalive`). Modes:
//! `watch` in the namespace, `watch --no-tcp-metrics` and `watch
//! --all-namespaces` on the host; alternated rounds, medians. (A build whose
//! programs return at once would say nothing here: it gives no socket the
//! RTT callback, so the program would not run at all.)

use std::fmt::Write as _;

use anyhow::{Result, bail};

use crate::lab::{Paths, median};

pub const HEADING: &str = "## Kernel time per kept-alive request";

const ROUNDS: usize = 3;
/// Round trips per sample: enough that the interval's own work (a few
/// program runs) is lost in the division.
const REQUESTS: u64 = 50_000;

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Watch,
    Lean,
    All,
}

impl Kind {
    const ALL: [Self; 3] = [Self::Watch, Self::Lean, Self::All];

    fn label(self) -> &'static str {
        match self {
            Self::Watch => "`watch`",
            Self::Lean => "`watch --no-tcp-metrics`",
            Self::All => "`watch --all-namespaces`",
        }
    }
}

/// One sample: kernel time and program runs per request, daemon CPU per
/// request.
struct Sample {
    ns_per_request: f64,
    runs_per_request: f64,
    daemon_us_per_request: f64,
}

pub struct Row {
    label: &'static str,
    ns_per_request: f64,
    spread: (f64, f64),
    runs_per_request: f64,
    daemon_us_per_request: f64,
}

pub struct KeepAlive {
    rows: Vec<Row>,
    /// Median over the rounds of each round's `-A` figure against its
    /// `watch` one.
    all_ratio: f64,
}

pub fn measure(paths: &Paths) -> Result<KeepAlive> {
    let mut samples: Vec<(Kind, Sample)> = Vec::new();
    for round in 0..ROUNDS {
        for kind in Kind::ALL {
            let s = sample(paths, kind)?;
            eprintln!(
                "xtask bench: kept-alive round {} {}: {:.0} ns, {:.2} runs, {:.2} µs daemon CPU per request",
                round + 1,
                kind.label(),
                s.ns_per_request,
                s.runs_per_request,
                s.daemon_us_per_request
            );
            samples.push((kind, s));
        }
    }
    let of = |kind: Kind| samples.iter().filter(move |s| s.0 == kind).map(|s| &s.1);
    let rows = Kind::ALL
        .iter()
        .map(|&kind| {
            let ns: Vec<f64> = of(kind).map(|s| s.ns_per_request).collect();
            Row {
                label: kind.label(),
                ns_per_request: median(ns.clone()),
                spread: (
                    ns.iter().copied().fold(f64::INFINITY, f64::min),
                    ns.iter().copied().fold(0.0, f64::max),
                ),
                runs_per_request: median(of(kind).map(|s| s.runs_per_request).collect()),
                daemon_us_per_request: median(of(kind).map(|s| s.daemon_us_per_request).collect()),
            }
        })
        .collect();
    let all_ratio = median(
        of(Kind::All)
            .zip(of(Kind::Watch))
            .map(|(a, w)| a.ns_per_request / w.ns_per_request)
            .collect(),
    );
    Ok(KeepAlive { rows, all_ratio })
}

fn sample(paths: &Paths, kind: Kind) -> Result<Sample> {
    let netconn = paths.netconn.as_str();
    let _stats = crate::lab::bpf_stats_on()?;
    let ns = crate::lab::netns("keepalive")?;
    let file = crate::lab::Scratch::new("ka");
    let mut cmd = crate::lab::watch_cmd(netconn, &ns, kind == Kind::All);
    cmd.args(["--interval", "1s", "--output"])
        .arg(&file.0)
        .args((kind == Kind::Lean).then_some("--no-tcp-metrics"));
    let watch = crate::lab::spawn_writing(cmd, &file.0)?;
    let totals = || -> Result<(f64, f64)> {
        Ok(crate::lab::program_run_times()?
            .into_iter()
            .fold((0.0, 0.0), |(t, n), p| (t + p.1, n + p.2)))
    };
    let pid = watch.0.id();
    let (t0, n0) = totals()?;
    let cpu0 = crate::lab::cpu_seconds(pid)?;
    let out = ns
        .cmd(&paths.churn)
        .args(["keepalive", "--requests", &REQUESTS.to_string()])
        .args(["--seconds", "60"])
        .output()?;
    let (t1, n1) = totals()?;
    let cpu1 = crate::lab::cpu_seconds(pid)?;
    let made: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let requests = made["requests"].as_f64().unwrap_or(0.0);
    if requests < 1000.0 {
        bail!(
            "the kept-alive load made {requests} round trips: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    drop(watch);
    Ok(Sample {
        ns_per_request: (t1 - t0) / requests,
        runs_per_request: (n1 - n0) / requests,
        daemon_us_per_request: (cpu1 - cpu0) * 1e6 / requests,
    })
}

pub fn render(k: &KeepAlive, command: &str) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{HEADING}\n\n`{command}`: one loopback connection in a fresh namespace carrying {REQUESTS} round trips of 100 bytes each way (`netconn-churn keepalive`, TCP_NODELAY), under each mode in turn, {ROUNDS} alternated rounds; the kernel time and runs of all of netconn's programs (`kernel.bpf_stats_enabled`) and the daemon's CPU (`/proc/PID/task/*/schedstat`) over the round trips, divided by them. A round trip makes no state change; with the TCP metrics the kernel calls the sock_ops program for each RTT sample, one per ACK of new data at each end (2 per round trip), and the program takes the samples' map work for a connection's first samples and then about one in 2^`RTT_SAMPLE_SHIFT` (`netconn_common::rtt_sampled`). The ns per run of a run that takes no sample is the floor of any per-request cost: see the kernel section's emptied `netconn_tcp_ops`.\n\n| mode | kernel ns per request (median) | min-max | program runs per request | ns per run | daemon CPU per request |\n| --- | ---: | ---: | ---: | ---: | ---: |"
    );
    for r in &k.rows {
        let _ = writeln!(
            s,
            "| {} | {:.0} | {:.0}-{:.0} | {:.2} | {} | {:.2} µs |",
            r.label,
            r.ns_per_request,
            r.spread.0,
            r.spread.1,
            r.runs_per_request,
            // Under a run per hundred requests, the runs are not the
            // requests' (an interval's own work).
            if r.runs_per_request >= 0.01 {
                format!("{:.0}", r.ns_per_request / r.runs_per_request)
            } else {
                "-".to_owned()
            },
            r.daemon_us_per_request
        );
    }
    let _ = writeln!(
        s,
        "\n`--all-namespaces` against `watch`, the median of each round's own ratio: **{:.2}x**.",
        k.all_ratio
    );
    s
}
