//! The kernel time netconn's programs take per connection, side by side
//! with bpftrace on the same tracepoint in the same runs, with an empty
//! program there (the cost of a program run that does nothing, which every
//! program pays on every run), and with a netconn built with every program
//! returning at once: what the hooks it attaches cost before any work
//! (`cargo xtask bench --kernel`).

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::lab::{Guard, Paths, median};

pub const HEADING: &str = "## Kernel time per connection";

/// Rounds of each mode, alternated; the medians are kept.
const ROUNDS: usize = 3;

/// bpftrace's count-only program: what a user would write to count state
/// changes.
const COUNT_ONLY: &str = "tracepoint:sock:inet_sock_set_state { @[args->newstate] = count(); }";

/// A program on the same tracepoint that does nothing: what running a
/// program at all costs.
const EMPTY: &str = "tracepoint:sock:inet_sock_set_state { }";

#[derive(Clone)]
pub struct ProgramCost {
    pub name: String,
    pub ns_per_run: f64,
    /// Its kernel time divided by the connections the churn made.
    pub ns_per_connection: f64,
}

impl ProgramCost {
    fn runs_per_connection(&self) -> f64 {
        if self.ns_per_run > 0.0 {
            self.ns_per_connection / self.ns_per_run
        } else {
            0.0
        }
    }
}

/// One churn's figures: netconn's programs, bpftrace's, the empty one's,
/// and the daemon's own.
struct Sample {
    netconn: Vec<ProgramCost>,
    bpftrace: ProgramCost,
    empty: ProgramCost,
    daemon: Daemon,
}

/// The daemon's CPU per connection, and (`--events`) the connection
/// records it wrote per connection and those it lost.
#[derive(Clone, Copy, Default)]
struct Daemon {
    ns_per_connection: f64,
    records_per_connection: f64,
    records_lost: f64,
}

/// One mode's figures over its rounds.
pub struct Mode {
    /// Per program, medians over the rounds (a program that did not run in
    /// a round counts 0 ns per connection there).
    pub programs: Vec<ProgramCost>,
    /// Median over the rounds of all programs' time per connection.
    pub total: f64,
    /// Median over the rounds of that total against bpftrace's in the same
    /// run.
    pub ratio: f64,
    /// Medians over the rounds of the daemon's figures; the records lost,
    /// summed.
    daemon: Daemon,
}

impl Mode {
    fn of(samples: &[Sample]) -> Self {
        let mut names: Vec<&str> = samples
            .iter()
            .flat_map(|s| s.netconn.iter().map(|p| p.name.as_str()))
            .collect();
        names.sort_unstable();
        names.dedup();
        let find = |s: &Sample, name: &str| s.netconn.iter().find(|p| p.name == name).cloned();
        let programs = names
            .into_iter()
            .map(|name| ProgramCost {
                name: name.to_owned(),
                ns_per_run: median(
                    samples
                        .iter()
                        .filter_map(|s| find(s, name))
                        .map(|p| p.ns_per_run)
                        .filter(|t| *t > 0.0)
                        .collect(),
                ),
                ns_per_connection: median(
                    samples
                        .iter()
                        .map(|s| find(s, name).map_or(0.0, |p| p.ns_per_connection))
                        .collect(),
                ),
            })
            .collect();
        Self {
            programs,
            total: median(samples.iter().map(|s| total(&s.netconn)).collect()),
            ratio: median(
                samples
                    .iter()
                    .map(|s| total(&s.netconn) / s.bpftrace.ns_per_connection)
                    .collect(),
            ),
            daemon: Daemon {
                ns_per_connection: median(
                    samples.iter().map(|s| s.daemon.ns_per_connection).collect(),
                ),
                records_per_connection: median(
                    samples
                        .iter()
                        .map(|s| s.daemon.records_per_connection)
                        .collect(),
                ),
                records_lost: samples.iter().map(|s| s.daemon.records_lost).sum(),
            },
        }
    }

    fn runs(&self, part: &str) -> f64 {
        self.programs
            .iter()
            .filter(|p| p.name.contains(part))
            .map(ProgramCost::runs_per_connection)
            .sum()
    }
}

/// The three modes' figures, and bpftrace's and the empty program's over
/// all the rounds.
pub struct KernelCost {
    /// `netconn watch`.
    pub watch: Mode,
    /// `netconn watch --no-tcp-metrics`.
    pub lean: Mode,
    /// `netconn watch` built with `NETCONN_EBPF_EMPTY`: each program
    /// returns at once, so only its hook's cost is left.
    pub emptied: Mode,
    /// `netconn watch --events`: a record at each connection's open and
    /// close.
    pub events: Mode,
    /// Median over the rounds of `--events`' total against `watch`'s in
    /// the same round.
    pub events_ratio: f64,
    pub bpftrace: ProgramCost,
    pub empty: ProgramCost,
}

impl KernelCost {
    /// What the hooks cost under the runs `mode` makes: each program's
    /// emptied cost per run times its runs per connection in that mode
    /// (with the TCP metrics the sock_ops program also runs for the RTT
    /// samples they ask for, which an emptied one does not).
    pub fn floor(&self, mode: &Mode) -> f64 {
        mode.programs
            .iter()
            .map(|p| {
                let per_run = self
                    .emptied
                    .programs
                    .iter()
                    .find(|e| e.name == p.name && e.ns_per_run.is_finite())
                    .map_or(0.0, |e| e.ns_per_run);
                per_run * p.runs_per_connection()
            })
            .sum()
    }
}

fn total(programs: &[ProgramCost]) -> f64 {
    programs.iter().map(|p| p.ns_per_connection).sum()
}

/// Measures `ROUNDS` rounds of the three modes, alternated: `watch`,
/// `watch --no-tcp-metrics`, and `watch` of the build `emptied` (see
/// [`KernelCost::emptied`]).
pub fn measure(paths: &Paths, emptied: &str) -> Result<KernelCost> {
    let mut full = Vec::new();
    let mut lean = Vec::new();
    let mut floor = Vec::new();
    let mut events = Vec::new();
    for round in 0..ROUNDS {
        for (binary, args, into, mode) in [
            (paths.netconn.as_str(), &[][..], &mut full, "watch"),
            (
                paths.netconn.as_str(),
                &["--no-tcp-metrics"][..],
                &mut lean,
                "--no-tcp-metrics",
            ),
            (emptied, &[][..], &mut floor, "emptied"),
            (
                paths.netconn.as_str(),
                &["--events"][..],
                &mut events,
                "--events",
            ),
        ] {
            let s = sample(paths, binary, args)?;
            eprintln!(
                "xtask bench: kernel round {} {mode}: netconn {:.0} ns, bpftrace {:.0} ns, empty program {:.0} ns per connection",
                round + 1,
                total(&s.netconn),
                s.bpftrace.ns_per_connection,
                s.empty.ns_per_connection,
            );
            into.push(s);
        }
    }
    let events_ratio = median(
        events
            .iter()
            .zip(&full)
            .map(|(e, w)| total(&e.netconn) / total(&w.netconn))
            .collect(),
    );
    let over_all = |f: fn(&Sample) -> &ProgramCost| {
        let all = || full.iter().chain(&lean).chain(&floor).chain(&events).map(f);
        ProgramCost {
            name: all().next().map(|p| p.name.clone()).unwrap_or_default(),
            ns_per_run: median(all().map(|p| p.ns_per_run).collect()),
            ns_per_connection: median(all().map(|p| p.ns_per_connection).collect()),
        }
    };
    Ok(KernelCost {
        watch: Mode::of(&full),
        lean: Mode::of(&lean),
        emptied: Mode::of(&floor),
        events: Mode::of(&events),
        events_ratio,
        bpftrace: over_all(|s| &s.bpftrace),
        empty: over_all(|s| &s.empty),
    })
}

/// Kernel time of each program over one 5 s churn, from the kernel's own
/// BPF statistics (kernel.bpf_stats_enabled), with netconn (the binary
/// `netconn`, `watch` with `args`), bpftrace's count-only program and an
/// empty one all attached; and the daemon's CPU and records.
fn sample(paths: &Paths, netconn: &str, args: &[&str]) -> Result<Sample> {
    let restore = crate::lab::bpf_stats_on()?;
    let ns = crate::lab::netns("stats")?;
    let file = crate::lab::Scratch::new("stats");
    let mut cmd = crate::lab::watch_cmd(netconn, &ns, false);
    cmd.args(["--interval", "1h"])
        .args(args)
        .arg("--output")
        .arg(&file.0);
    let watch = crate::lab::spawn_writing(cmd, &file.0)?;
    let loaded = crate::lab::program_ids()?;
    let counting = bpftrace(COUNT_ONLY)?;
    let with_count = loaded_beyond(&loaded)?;
    let empty = bpftrace(EMPTY)?;
    let with_empty = loaded_beyond(&with_count)?;
    let pid = watch.0.id();
    let cpu = crate::lab::cpu_seconds(pid)?;
    let connections = crate::lab::churn_connections(paths, &ns)?;
    // The records of the churn's last connections reach the file within
    // the daemon's drain period.
    std::thread::sleep(Duration::from_millis(300));
    let cpu = crate::lab::cpu_seconds(pid)? - cpu;
    let cost = |(name, t, n): (String, f64, f64)| ProgramCost {
        name,
        ns_per_run: t / n.max(1.0),
        ns_per_connection: t / connections,
    };
    // Every netconn program (kernel names are cut at 15 bytes).
    let netconn: Vec<ProgramCost> = crate::lab::program_run_times()?
        .into_iter()
        .map(cost)
        .collect();
    // A tool's programs (those loaded between two listings), added up:
    // bpftrace may load helpers besides its probe.
    let added = |name: &str, ids: BTreeSet<u64>| -> Result<ProgramCost> {
        let (t, n) = crate::lab::run_times_of(&ids)?
            .into_iter()
            .fold((0.0, 0.0), |(t, n), p| (t + p.1, n + p.2));
        Ok(cost((name.to_owned(), t, n)))
    };
    // bpftrace's figures before it stops (its programs go with it).
    let bpftrace = added("bpftrace", &with_count - &loaded)?;
    let empty_program = added("empty program", &with_empty - &with_count)?;
    drop(empty);
    drop(counting);
    // Stopped (SIGTERM): its last counts record says what the ring lost.
    drop(watch);
    let text = std::fs::read_to_string(&file.0).unwrap_or_default();
    let records = text.matches(r#""type":"conn""#).count() as f64;
    let lost = text
        .lines()
        .rev()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|r| r["type"] == "counts")
        .and_then(|r| r["conn_records_lost"].as_f64())
        .unwrap_or(0.0);
    let sample = Sample {
        netconn,
        bpftrace,
        empty: empty_program,
        daemon: Daemon {
            ns_per_connection: cpu * 1e9 / connections,
            records_per_connection: records / connections,
            records_lost: lost,
        },
    };
    drop(restore);
    Ok(sample)
}

/// The ids of every loaded program, once some beyond `before` are there:
/// bpftrace says it attaches before its programs are loaded.
pub fn loaded_beyond(before: &BTreeSet<u64>) -> Result<BTreeSet<u64>> {
    for _ in 0..500 {
        let now = crate::lab::program_ids()?;
        if now.difference(before).next().is_some() {
            // Its helper programs, if any, load with it.
            std::thread::sleep(Duration::from_millis(200));
            return crate::lab::program_ids();
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    bail!("bpftrace loaded no program in 10 s")
}

/// bpftrace's count-only program, attached.
pub fn bpftrace_count_only() -> Result<Guard> {
    bpftrace(COUNT_ONLY)
}

/// bpftrace running `program`, attached.
fn bpftrace(program: &str) -> Result<Guard> {
    let mut child = Command::new("bpftrace")
        .args(["-e", program])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .context("bpftrace")?;
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    // "Attaching 1 probe..." means attached; anything else, it failed.
    let first = lines.next().and_then(Result::ok).unwrap_or_default();
    let guard = Guard(child);
    if !first.starts_with("Attaching") {
        bail!("bpftrace did not attach: {first:?}");
    }
    // Its output is a map printed at exit; nothing to read meanwhile.
    std::thread::spawn(move || lines.for_each(drop));
    Ok(guard)
}

/// The section: a table per program, the totals against bpftrace, and
/// what the hooks alone cost.
pub fn render(k: &KernelCost, command: &str) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{HEADING}\n\n`{command}`: kernel time of each program (`kernel.bpf_stats_enabled`: the kernel's own run time and run count of every program) over a 5 s loopback churn (`netconn-churn churn --threads 4`, 10 state events per connection) in a fresh namespace, with bpftrace's count-only `{COUNT_ONLY}` and an empty program (`{EMPTY}`) attached to the same tracepoint in the same runs (their figures: medians over all the runs); medians of {ROUNDS} rounds of each of `netconn watch`, `netconn watch --no-tcp-metrics` and `netconn watch` built with `NETCONN_EBPF_EMPTY=1` (\"emptied\": every program returns at once, so what is left is the cost of the hooks netconn attaches), alternated. Names as the kernel cuts them. Every state event runs both state programs; TCP sockets also pass the UDP programs' create, connect and release hooks, which return at once.\n\n| program | ns per run | runs per connection | ns per connection | `--no-tcp-metrics`: ns per run | ns per connection | emptied: ns per run | ns per connection |\n| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
    );
    let cells = |p: Option<&ProgramCost>| match p {
        Some(p) => format!("{:.0} | {:.0}", p.ns_per_run, p.ns_per_connection),
        None => " | ".into(),
    };
    let find = |of: &Mode, name: &str| of.programs.iter().find(|q| q.name == name).cloned();
    let row = |s: &mut String, p: &ProgramCost, others: bool| {
        let (lean, emptied) = match others {
            true => (find(&k.lean, &p.name), find(&k.emptied, &p.name)),
            false => (None, None),
        };
        let _ = writeln!(
            s,
            "| `{}` | {:.0} | {:.1} | {:.0} | {} | {} |",
            p.name,
            p.ns_per_run,
            p.runs_per_connection(),
            p.ns_per_connection,
            cells(lean.as_ref()),
            cells(emptied.as_ref()),
        );
    };
    for p in &k.watch.programs {
        row(&mut s, p, true);
    }
    let (watch, lean, emptied) = (&k.watch, &k.lean, &k.emptied);
    let _ = writeln!(
        s,
        "| **netconn, all** (median of each round's total) | | | **{:.0}** | | **{:.0}** | | **{:.0}** |",
        watch.total, lean.total, emptied.total
    );
    row(&mut s, &k.bpftrace, false);
    row(&mut s, &k.empty, false);
    let theirs = k.bpftrace.ns_per_connection;
    let their_runs = k.bpftrace.runs_per_connection();
    let (floor_watch, floor_lean) = (k.floor(watch), k.floor(lean));
    let _ = writeln!(
        s,
        "\nAll together: **{:.0} ns of kernel time per connection**, **{:.2}x bpftrace count-only** ({theirs:.0} ns; each ratio is the median of the rounds' own, netconn against bpftrace in the same run); without the TCP metrics {:.0} ns, {:.2}x.\n\nWhat the hooks alone cost: emptied, netconn's programs take **{:.0} ns per connection ({:.2}x bpftrace)** in {:.1} runs, where bpftrace runs {their_runs:.1}. An empty program takes {:.0} ns per run on the tracepoint, an emptied cgroup socket program about {:.0} (the kernel's statistics time the call itself). Under the runs each mode makes (each program's emptied cost per run times its runs there), the hooks cost {floor_watch:.0} ns per connection with the TCP metrics ({:.2}x bpftrace) and {floor_lean:.0} ns without ({:.2}x). Above these floors netconn's programs do {:.0} ns of work per connection with the TCP metrics and {:.0} ns without; bpftrace's program does {:.0} ns.\n\n{:.0} of the runs per connection (the backup's) are the price of exactness: the kernel skips a tracing program that fires while it already runs on the same CPU (a softirq interrupting it), so a second program on the tracepoint counts what the first missed (see `netconn-ebpf/src/main.rs`); bpftrace's count-only program loses those events. The sock_ops program runs on every callback the kernel makes for every TCP socket once any sock_ops program is attached ({:.0} per connection emptied, where it sets no flag; {:.0} with the TCP metrics, which ask for RTT samples), whether or not the callback feeds a figure.",
        watch.total,
        watch.ratio,
        lean.total,
        lean.ratio,
        emptied.total,
        emptied.ratio,
        emptied.runs(""),
        k.empty.ns_per_run,
        find(emptied, "netconn_udp_create").map_or(f64::NAN, |p| p.ns_per_run),
        floor_watch / theirs,
        floor_lean / theirs,
        watch.total - floor_watch,
        lean.total - floor_lean,
        theirs - their_runs * k.empty.ns_per_run,
        watch.runs("state_b"),
        emptied.runs("tcp_ops"),
        watch.runs("tcp_ops"),
    );
    let events = &k.events;
    let _ = writeln!(
        s,
        "\nWith `--events` (a record at each socket's open and close; a loopback connection is two sockets): **{:.0} ns of kernel time per connection, {:.2}x `watch`** (each round's own ratio), the state program {:.0} ns per run; the daemon's CPU **{:.2} µs per connection** for {:.1} records (`watch`: {:.2} µs), {:.0} records lost over the rounds.",
        events.total,
        k.events_ratio,
        find(events, "netconn_state_change").map_or(f64::NAN, |p| p.ns_per_run),
        events.daemon.ns_per_connection / 1000.0,
        events.daemon.records_per_connection,
        watch.daemon.ns_per_connection / 1000.0,
        events.daemon.records_lost,
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cost(name: &str, ns_per_run: f64, runs: f64) -> ProgramCost {
        ProgramCost {
            name: name.to_owned(),
            ns_per_run,
            ns_per_connection: ns_per_run * runs,
        }
    }

    fn sample(netconn: Vec<ProgramCost>, bpftrace_ns: f64) -> Sample {
        Sample {
            netconn,
            bpftrace: cost("bpftrace", bpftrace_ns / 10.0, 10.0),
            empty: cost("empty program", 30.0, 10.0),
            daemon: Daemon::default(),
        }
    }

    #[test]
    fn a_program_missing_from_a_round_counts_zero_there() {
        let rounds = [
            sample(vec![cost("state", 100.0, 10.0)], 1000.0),
            sample(
                vec![cost("state", 110.0, 10.0), cost("rare", 500.0, 0.1)],
                1000.0,
            ),
            sample(vec![cost("state", 120.0, 10.0)], 1000.0),
        ];
        let mode = Mode::of(&rounds);
        let names: Vec<&str> = mode.programs.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["rare", "state"]);
        let rare = &mode.programs[0];
        // Its time per run from the round it ran in; per connection, the
        // median of 0, 50 and 0.
        assert_eq!(rare.ns_per_run, 500.0);
        assert_eq!(rare.ns_per_connection, 0.0);
        assert_eq!(mode.programs[1].ns_per_connection, 1100.0);
    }

    #[test]
    fn totals_and_ratios_are_each_rounds_own() {
        // A slow round for both tools: the ratio stays what each round
        // says, where medians taken apart would pair figures of different
        // rounds.
        let rounds = [
            sample(vec![cost("state", 100.0, 10.0)], 1000.0),
            sample(vec![cost("state", 300.0, 10.0)], 3000.0),
            sample(vec![cost("state", 150.0, 10.0)], 750.0),
        ];
        let mode = Mode::of(&rounds);
        assert_eq!(mode.total, 1500.0);
        assert_eq!(mode.ratio, 1.0);
    }

    #[test]
    fn the_floor_counts_each_modes_own_runs() {
        let one = |programs: Vec<ProgramCost>| Mode::of(&[sample(programs, 1000.0)]);
        let k = KernelCost {
            // The TCP metrics' RTT samples: sock_ops runs 13 times, not 9.
            watch: one(vec![cost("state", 110.0, 10.0), cost("ops", 80.0, 13.0)]),
            lean: one(vec![cost("state", 105.0, 10.0), cost("ops", 40.0, 9.0)]),
            emptied: one(vec![
                cost("state", 30.0, 10.0),
                cost("ops", 32.0, 9.0),
                cost("rst", 200.0, 0.0),
            ]),
            events: one(vec![cost("state", 600.0, 10.0)]),
            events_ratio: 2.0,
            bpftrace: cost("bpftrace", 100.0, 10.0),
            empty: cost("empty program", 30.0, 10.0),
        };
        assert_eq!(k.floor(&k.watch), 30.0 * 10.0 + 32.0 * 13.0);
        assert_eq!(k.floor(&k.lean), 30.0 * 10.0 + 32.0 * 9.0);
        assert_eq!(k.emptied.runs("ops"), 9.0);
    }
}
