//! The soak of `cargo xtask bench` (also alone: `cargo xtask bench --soak`):
//! `netconn watch --events` with TCP metrics for ten minutes of maximum
//! churn, read by a reader that stalls now and then. Does the daemon's
//! memory stay flat, do its descriptors stay put, and are its counts the
//! kernel's at the end?

use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Read, Write as _};
use std::os::unix::net::UnixStream;
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::lab::{Guard, Netns, Paths, rss_kib};

/// How long the churn runs.
pub const SOAK_SECONDS: u64 = 600;
/// The reader stalls this long once every `STALL_EVERY`.
const STALL: Duration = Duration::from_secs(10);
const STALL_EVERY: Duration = Duration::from_secs(60);

pub struct Soak {
    pub seconds: u64,
    pub connections: f64,
    pub rss_warm_kib: u64,
    pub rss_end_kib: u64,
    pub rss_max_kib: u64,
    /// The highest RSS of each minute, KiB.
    pub rss_minutes: Vec<u64>,
    pub fds_start: usize,
    pub fds_end: usize,
    pub records: u64,
    pub lost_events: u64,
    pub conn_records_lost: u64,
    pub output_dropped: u64,
    /// Live counts against /proc/net at rest: None when equal, else the
    /// differing (conn-type, state, live, kernel).
    pub diff: Option<Vec<(String, String, i64, i64)>>,
}

/// Open descriptors of a process: the fewest of a few looks, so that a
/// dump's netlink socket, open for a moment, is not taken for a leak.
fn fds(pid: u32) -> Result<usize> {
    let mut fewest = usize::MAX;
    for _ in 0..5 {
        fewest = fewest.min(std::fs::read_dir(format!("/proc/{pid}/fd"))?.count());
        std::thread::sleep(Duration::from_millis(200));
    }
    Ok(fewest)
}

/// The daemon's live counts, from its socket.
fn ask_counts(netns: u64) -> Result<serde_json::Value> {
    let mut s = UnixStream::connect(format!("/run/netconn/netns-{netns}.sock"))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    s.write_all(b"counts\n")?;
    let mut answer = String::new();
    s.read_to_string(&mut answer)?;
    Ok(serde_json::from_str(answer.trim())?)
}

/// /proc/net/{tcp,tcp6,udp,udp6} of the namespace, as (conn-type, state)
/// counts with netconn's state names.
fn kernel_counts(ns: &Netns) -> Result<Vec<(String, String, i64)>> {
    const NAMES: [&str; 12] = [
        "",
        "ESTABLISHED",
        "SYN_SENT",
        "SYN_RECV",
        "FIN_WAIT1",
        "FIN_WAIT2",
        "TIME_WAIT",
        "CLOSE",
        "CLOSE_WAIT",
        "LAST_ACK",
        "LISTEN",
        "CLOSING",
    ];
    let mut out: Vec<(String, String, i64)> = Vec::new();
    for ct in ["tcp", "tcp6", "udp", "udp6"] {
        let text = ns
            .cmd("cat")
            .arg(format!("/proc/net/{ct}"))
            .output()
            .context("cat /proc/net")?
            .stdout;
        for line in String::from_utf8_lossy(&text).lines().skip(1) {
            let st = line.split_whitespace().nth(3).unwrap_or("00");
            let state = if ct.starts_with("udp") {
                "NONE".to_owned()
            } else {
                let code = usize::from_str_radix(st, 16).unwrap_or(0);
                NAMES.get(code).unwrap_or(&"").to_string()
            };
            match out.iter_mut().find(|(c, s, _)| c == ct && *s == state) {
                Some(e) => e.2 += 1,
                None => out.push((ct.to_owned(), state, 1)),
            }
        }
    }
    Ok(out)
}

/// Live minus kernel, the pairs that differ.
fn differences(
    live: &serde_json::Value,
    kernel: &[(String, String, i64)],
) -> Vec<(String, String, i64, i64)> {
    let mut diff = Vec::new();
    if let Some(conns) = live["connections"].as_object() {
        for (ct, states) in conns {
            for (state, n) in states.as_object().into_iter().flatten() {
                let n = n.as_i64().unwrap_or(0);
                let k = kernel
                    .iter()
                    .find(|(c, s, _)| c == ct && s == state)
                    .map_or(0, |e| e.2);
                if n != k {
                    diff.push((ct.clone(), state.clone(), n, k));
                }
            }
        }
    }
    diff
}

pub fn run(paths: &Paths, seconds: u64) -> Result<Soak> {
    let ns = crate::lab::netns("soak")?;
    let mut child = ns
        .cmd(&paths.netconn)
        .args(["watch", "--interval", "1s", "--events"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let pid = child.id();
    let mut lines = BufReader::new(child.stdout.take().context("stdout")?);
    let watch = Guard(child);
    let mut first = String::new();
    lines.read_line(&mut first)?;
    let first: serde_json::Value = serde_json::from_str(&first).context("first record")?;
    let netns = first["netns"].as_u64().context("netns")?;

    // The reader: reads everything, but stalls now and then.
    let records = Arc::new(AtomicU64::new(0));
    let last = Arc::new(Mutex::new(first));
    let reader = std::thread::spawn({
        let records = records.clone();
        let last = last.clone();
        move || {
            let mut since_stall = Instant::now();
            let mut line = String::new();
            while lines.read_line(&mut line).unwrap_or(0) > 0 {
                records.fetch_add(1, Ordering::Relaxed);
                if line.contains("\"type\":\"counts\"")
                    && let Ok(v) = serde_json::from_str(&line)
                {
                    *last.lock().unwrap() = v;
                }
                line.clear();
                if since_stall.elapsed() >= STALL_EVERY {
                    std::thread::sleep(STALL);
                    since_stall = Instant::now();
                }
            }
        }
    });

    let fds_start = fds(pid)?;
    let churn = ns
        .cmd(&paths.churn)
        .args(["churn", "--threads", "4", "--seconds", &seconds.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let started = Instant::now();
    // The highest RSS of each minute: the output queue fills during each
    // stall (up to its bound) and empties after, so minute against minute
    // is what shows a leak.
    let mut minute_max: Vec<u64> = Vec::new();
    while started.elapsed() < Duration::from_secs(seconds) {
        std::thread::sleep(Duration::from_secs(5));
        let rss = rss_kib(pid)?;
        let minute = (started.elapsed().as_secs() / 60) as usize;
        if minute_max.len() <= minute {
            minute_max.resize(minute + 1, 0);
        }
        minute_max[minute] = minute_max[minute].max(rss);
    }
    let out = churn.wait_with_output()?;
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).context("churn output")?;
    let connections = v["connections"].as_f64().unwrap_or(f64::NAN);
    // The second minute (after the warm-up) against the last whole one.
    let whole: Vec<u64> = minute_max.iter().copied().filter(|m| *m > 0).collect();
    let rss_warm = whole.get(1).or(whole.first()).copied().unwrap_or(0);
    let rss_end = whole
        .iter()
        .rev()
        .nth(1)
        .or(whole.last())
        .copied()
        .unwrap_or(0);
    let rss_max = whole.iter().copied().max().unwrap_or(0);
    let fds_end = fds(pid)?;

    // At rest: the daemon's answer against /proc/net; time-wait sockets
    // expire meanwhile, so a difference is looked at again.
    std::thread::sleep(Duration::from_secs(2));
    let mut diff = None;
    for _ in 0..5 {
        let live = ask_counts(netns)?;
        let d = differences(&live, &kernel_counts(&ns)?);
        if d.is_empty() {
            diff = None;
            break;
        }
        diff = Some(d);
        std::thread::sleep(Duration::from_secs(1));
    }
    // Past the last stall, so the last record is a recent one.
    std::thread::sleep(STALL + Duration::from_secs(3));
    let last = last.lock().unwrap().clone();
    drop(watch);
    let _ = reader.join();
    Ok(Soak {
        seconds,
        connections,
        rss_warm_kib: rss_warm,
        rss_minutes: whole.clone(),
        rss_end_kib: rss_end,
        rss_max_kib: rss_max,
        fds_start,
        fds_end,
        records: records.load(Ordering::Relaxed),
        lost_events: last["lost_events"].as_u64().unwrap_or(u64::MAX),
        conn_records_lost: last["conn_records_lost"].as_u64().unwrap_or(u64::MAX),
        output_dropped: last["output_dropped"].as_u64().unwrap_or(u64::MAX),
        diff,
    })
}

/// The BENCHMARKS.md section.
pub fn render(s: &Soak) -> String {
    let growth = (s.rss_end_kib as f64 / s.rss_warm_kib as f64 - 1.0) * 100.0;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "## Soak\n\n`netconn watch --interval 1s --events` (TCP metrics on) for {} s of `netconn-churn churn --threads 4` ({:.0} connections, a `conn` record for each open and close), read by a reader that stops reading for {} s every {} s. Alone: `cargo xtask bench --soak`.\n",
        s.seconds,
        s.connections,
        STALL.as_secs(),
        STALL_EVERY.as_secs()
    );
    let verdict = |ok: bool| if ok { "met" } else { "**missed**" };
    let flat = growth.abs() <= 5.0;
    let _ = writeln!(out, "| figure | value | verdict |\n| --- | --- | --- |");
    let _ = writeln!(
        out,
        "| RSS, highest of the second minute / of the last whole minute / overall (the output queue, up to 16 MiB, fills during each stall) | {} / {} / {} KiB ({growth:+.1} %) | {} |",
        s.rss_warm_kib,
        s.rss_end_kib,
        s.rss_max_kib,
        verdict(flat)
    );
    let minutes: Vec<String> = s
        .rss_minutes
        .iter()
        .map(|k| (k / 1024).to_string())
        .collect();
    let _ = writeln!(
        out,
        "| RSS, highest of each minute (MiB) | {} | |",
        minutes.join(", ")
    );
    let _ = writeln!(
        out,
        "| open descriptors at start / end | {} / {} | {} |",
        s.fds_start,
        s.fds_end,
        verdict(s.fds_end <= s.fds_start)
    );
    let _ = writeln!(
        out,
        "| lost events (what the counts depend on) | {} | {} |",
        s.lost_events,
        verdict(s.lost_events == 0)
    );
    let _ = writeln!(
        out,
        "| connection records the kernel could not hand over (`conn_records_lost`) | {} | |",
        s.conn_records_lost
    );
    let _ = writeln!(
        out,
        "| records read / dropped for the stalled reader (counted in `output_dropped`) | {} / {} | |",
        s.records, s.output_dropped
    );
    let equal = match &s.diff {
        None => "equal".to_owned(),
        Some(d) => format!("differ: {d:?}"),
    };
    let _ = writeln!(
        out,
        "| live counts at rest against /proc/net | {equal} | {} |",
        verdict(s.diff.is_none())
    );
    out
}

/// Puts the soak section into BENCHMARKS.md: replaces the one there, or
/// adds it at the end.
pub fn splice(report: &str, section: &str) -> String {
    splice_at(report, HEADING, section)
}

/// The heading the soak's section starts with.
pub const HEADING: &str = "## Soak\n";

/// Where the section that starts with `heading` lies in `report` (up to
/// the next `## `), if there is one.
fn section_range(report: &str, heading: &str) -> Option<std::ops::Range<usize>> {
    let at = report.find(heading)?;
    let end = report[at + 1..]
        .find("\n## ")
        .map_or(report.len(), |e| at + 1 + e + 1);
    Some(at..end)
}

/// The section that starts with `heading`, if `report` has one.
pub fn section<'a>(report: &'a str, heading: &str) -> Option<&'a str> {
    section_range(report, heading).map(|r| report[r].trim_end_matches('\n'))
}

/// Replaces the section that starts with `heading` (up to the next `## `)
/// with `section`, or appends it.
pub fn splice_at(report: &str, heading: &str, section: &str) -> String {
    match section_range(report, heading) {
        Some(r) => format!("{}{section}\n{}", &report[..r.start], &report[r.end..]),
        None => format!(
            "{}\n{section}",
            report.trim_end_matches('\n').to_owned() + "\n"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_section_is_found_replaced_and_kept() {
        let report = "# B\n\n## One\n\na\n\n## Two\n\nb\n";
        assert_eq!(section(report, "## One"), Some("## One\n\na"));
        assert_eq!(section(report, "## Two"), Some("## Two\n\nb"));
        assert_eq!(section(report, "## Three"), None);
        let replaced = splice_at(report, "## One", "## One\n\nc\n");
        assert_eq!(replaced, "# B\n\n## One\n\nc\n\n## Two\n\nb\n");
        let added = splice_at(report, "## Three", "## Three\n\nd\n");
        assert_eq!(
            added,
            "# B\n\n## One\n\na\n\n## Two\n\nb\n\n## Three\n\nd\n"
        );
    }
}
