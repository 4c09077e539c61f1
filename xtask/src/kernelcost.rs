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

use crate::lab::{Guard, Paths};

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

/// One churn's figures: netconn's programs, bpftrace's, the empty one's.
struct Sample {
    netconn: Vec<ProgramCost>,
    bpftrace: ProgramCost,
    empty: ProgramCost,
}

/// The medians over the rounds, with and without the TCP metrics, and
/// with every program emptied.
pub struct KernelCost {
    /// `netconn watch`, program by program.
    pub programs: Vec<ProgramCost>,
    /// `netconn watch --no-tcp-metrics`, program by program.
    pub lean: Vec<ProgramCost>,
    /// `netconn watch` built with `NETCONN_EBPF_EMPTY`: each program
    /// returns at once, so only its hook's cost is left.
    pub emptied: Vec<ProgramCost>,
    pub bpftrace: ProgramCost,
    pub empty: ProgramCost,
}

impl KernelCost {
    /// Every netconn program's time per connection, added up.
    pub fn total(&self) -> f64 {
        total(&self.programs)
    }

    pub fn lean_total(&self) -> f64 {
        total(&self.lean)
    }

    pub fn emptied_total(&self) -> f64 {
        total(&self.emptied)
    }
}

fn total(programs: &[ProgramCost]) -> f64 {
    programs.iter().map(|p| p.ns_per_connection).sum()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// Per-program medians over samples (a program absent from a sample is
/// left out of that program's median).
fn medians(samples: &[&[ProgramCost]]) -> Vec<ProgramCost> {
    let Some(first) = samples.first() else {
        return Vec::new();
    };
    first
        .iter()
        .map(|p| {
            let of = |f: fn(&ProgramCost) -> f64| {
                median(
                    samples
                        .iter()
                        .filter_map(|s| s.iter().find(|q| q.name == p.name).map(f))
                        .collect(),
                )
            };
            ProgramCost {
                name: p.name.clone(),
                ns_per_run: of(|q| q.ns_per_run),
                ns_per_connection: of(|q| q.ns_per_connection),
            }
        })
        .collect()
}

/// Measures `ROUNDS` rounds of the three modes, alternated: `watch`,
/// `watch --no-tcp-metrics`, and `watch` of the build `emptied` (see
/// [`KernelCost::emptied`]).
pub fn measure(paths: &Paths, emptied: &str) -> Result<KernelCost> {
    let mut full = Vec::new();
    let mut lean = Vec::new();
    let mut floor = Vec::new();
    for round in 0..ROUNDS {
        for (binary, metrics, into, mode) in [
            (paths.netconn.as_str(), true, &mut full, "watch"),
            (paths.netconn.as_str(), false, &mut lean, "--no-tcp-metrics"),
            (emptied, true, &mut floor, "emptied"),
        ] {
            let s = sample(paths, binary, metrics)?;
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
    let pick = |samples: &[Sample], f: fn(&Sample) -> &ProgramCost| {
        let all: Vec<Vec<ProgramCost>> = samples.iter().map(|s| vec![f(s).clone()]).collect();
        let refs: Vec<&[ProgramCost]> = all.iter().map(Vec::as_slice).collect();
        medians(&refs).remove(0)
    };
    let per_program = |samples: &[Sample]| {
        medians(
            &samples
                .iter()
                .map(|s| s.netconn.as_slice())
                .collect::<Vec<_>>(),
        )
    };
    let k = (per_program(&full), per_program(&lean), per_program(&floor));
    let all: Vec<Sample> = full.into_iter().chain(lean).chain(floor).collect();
    Ok(KernelCost {
        programs: k.0,
        lean: k.1,
        emptied: k.2,
        bpftrace: pick(&all, |s| &s.bpftrace),
        empty: pick(&all, |s| &s.empty),
    })
}

/// Kernel time of each program over one 5 s churn, from the kernel's own
/// BPF statistics (kernel.bpf_stats_enabled), with netconn (the binary
/// `netconn`, its TCP metrics on or off), bpftrace's count-only program
/// and an empty one all attached.
fn sample(paths: &Paths, netconn: &str, metrics: bool) -> Result<Sample> {
    let sysctl = "/proc/sys/kernel/bpf_stats_enabled";
    let before = std::fs::read_to_string(sysctl)?;
    std::fs::write(sysctl, "1")?;
    let restore = scopeguard(|| {
        let _ = std::fs::write(sysctl, before.trim());
    });
    let ns = crate::lab::netns("stats")?;
    let file = std::env::temp_dir().join(format!("netconn-stats-{}.ndjson", std::process::id()));
    let _ = std::fs::remove_file(&file);
    let mut watch = Guard(
        ns.cmd(netconn)
            .args(["watch", "--interval", "1h"])
            .args((!metrics).then_some("--no-tcp-metrics"))
            .arg("--output")
            .arg(&file)
            .spawn()?,
    );
    let started = std::time::Instant::now();
    while std::fs::metadata(&file).map(|m| m.len()).unwrap_or(0) == 0 {
        if let Some(status) = watch.0.try_wait()? {
            bail!("netconn watch exited before its first record: {status}");
        }
        if started.elapsed() > Duration::from_secs(30) {
            bail!("netconn watch wrote no record in 30 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let loaded = crate::lab::program_ids()?;
    let counting = bpftrace(COUNT_ONLY)?;
    let with_count = loaded_beyond(&loaded)?;
    let empty = bpftrace(EMPTY)?;
    let with_empty = loaded_beyond(&with_count)?;
    let connections = crate::lab::churn_connections(paths, &ns)?;
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
    let sample = Sample {
        netconn,
        bpftrace: added("bpftrace", &with_count - &loaded)?,
        empty: added("empty program", &with_empty - &with_count)?,
    };
    drop(empty);
    drop(counting);
    drop(watch);
    drop(restore);
    let _ = std::fs::remove_file(&file);
    Ok(sample)
}

/// The ids of every loaded program, once some beyond `before` are there:
/// bpftrace says it attaches before its programs are loaded.
fn loaded_beyond(before: &BTreeSet<u64>) -> Result<BTreeSet<u64>> {
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
    let find = |of: &[ProgramCost], name: &str| of.iter().find(|q| q.name == name).cloned();
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
    for p in &k.programs {
        row(&mut s, p, true);
    }
    let (total, lean, emptied) = (k.total(), k.lean_total(), k.emptied_total());
    let theirs = k.bpftrace.ns_per_connection;
    let _ = writeln!(
        s,
        "| **netconn, all** | | | **{total:.0}** | | **{lean:.0}** | | **{emptied:.0}** |"
    );
    row(&mut s, &k.bpftrace, false);
    row(&mut s, &k.empty, false);
    let runs = |of: &[ProgramCost], part: &str| -> f64 {
        of.iter()
            .filter(|p| p.name.contains(part))
            .map(ProgramCost::runs_per_connection)
            .sum()
    };
    let floor = k.empty.ns_per_run;
    let their_runs = k.bpftrace.runs_per_connection();
    let _ = writeln!(
        s,
        "\nAll together: **{total:.0} ns of kernel time per connection**, **{:.2}x bpftrace count-only** ({theirs:.0} ns) in the same runs; without the TCP metrics {lean:.0} ns, {:.2}x.\n\nWhat the hooks alone cost: emptied, netconn's programs take **{emptied:.0} ns per connection ({:.2}x bpftrace)** in {:.1} runs, where bpftrace runs {their_runs:.1}. An empty program takes {floor:.0} ns per run on the tracepoint (the kernel's statistics time the call itself). Above these floors, netconn's programs do {:.0} ns of work per connection with the TCP metrics and {:.0} ns without; bpftrace's program does {:.0} ns. {:.0} of the runs per connection (the backup's) are the price of exactness: the kernel skips a tracing program that fires while it already runs on the same CPU (a softirq interrupting it), so a second program on the tracepoint counts what the first missed (see `netconn-ebpf/src/main.rs`); bpftrace's count-only program loses those events. The sock_ops program runs on every callback the kernel makes for every TCP socket once any sock_ops program is attached ({:.0} per connection emptied, where it sets no flag; {:.0} with the TCP metrics, which ask for RTT samples), whether or not the callback feeds a figure.",
        total / theirs,
        lean / theirs,
        emptied / theirs,
        runs(&k.emptied, ""),
        total - emptied,
        lean - emptied,
        theirs - their_runs * floor,
        runs(&k.programs, "state_b"),
        runs(&k.emptied, "tcp_ops"),
        runs(&k.programs, "tcp_ops"),
    );
    s
}
