//! Exact counts under churn: after the churn stops, every conn-type and
//! state equals /proc/net, and no event was lost.

use std::time::Duration;

use netconn_integration::{Netns, Table, Watch, bpftool_json, churn, mix, table_of, truth};

/// Waits (bounded) for the namespace to come to rest, then for a record
/// computed after that. "Rest" cannot cover orphaned FIN_WAIT2 sockets,
/// which wait up to 60 s for their peer's FIN and then turn into
/// TIME_WAIT at any moment, possibly between the record and the reading
/// of /proc: a difference that persists over five fresh records is a
/// real one, and is what the caller then sees.
fn at_rest(ns: &Netns, watch: &mut Watch) -> (serde_json::Value, Table) {
    ns.run(mix::settle);
    let mut last = None;
    for _ in 0..5 {
        let record = watch.fresh_record();
        let want = truth(ns);
        if table_of(&record) == want {
            return (record, want);
        }
        last = Some((record, want));
    }
    last.expect("five attempts")
}

/// UDP counts come from the socket lifecycle programs alone: a correction
/// (a resync) would hide a hook that missed sockets.
fn udp_never_corrected(record: &serde_json::Value) {
    let delta = &record["last_correction"]["delta"];
    assert!(
        delta.get("udp").is_none() && delta.get("udp6").is_none(),
        "UDP was corrected: {record}"
    );
}

#[test]
fn seeded_churn_ends_at_the_truth() {
    for seed in [1u64, 2, 3] {
        let ns = Netns::new();
        let (mut watch, _) = Watch::start(&ns, &["--interval", "300ms"]);
        let worker = ns.worker();
        let (held, stats) = worker.exec(move || churn::run(seed, 4000, Duration::from_secs(20)));
        assert!(
            stats.connects > 500,
            "seed {seed}: too little churn: {stats:?}"
        );
        let (record, want) = at_rest(&ns, &mut watch);
        assert_eq!(
            table_of(&record),
            want,
            "seed {seed} ({stats:?}), record {record}"
        );
        assert_eq!(record["lost_events"], 0, "seed {seed}");
        udp_never_corrected(&record);
        // Everything closed: back to the empty table.
        worker.exec(move || drop(held));
        let (record, want) = at_rest(&ns, &mut watch);
        assert_eq!(table_of(&record), want, "seed {seed}");
        udp_never_corrected(&record);
    }
}

#[test]
fn maximum_rate_churn_ends_at_the_truth() {
    let ns = Netns::new();
    let (mut watch, _) = Watch::start(&ns, &["--interval", "500ms"]);
    let out = ns.run_cmd(
        env!("CARGO_BIN_EXE_netconn-churn"),
        &["churn", "--threads", "4", "--seconds", "5"],
    );
    let rate: serde_json::Value = serde_json::from_str(out.trim()).expect("churn output");
    assert!(rate["connections"].as_u64().unwrap() > 10_000, "{rate}");
    let (record, want) = at_rest(&ns, &mut watch);
    assert_eq!(table_of(&record), want, "record {record}");
    assert_eq!(record["lost_events"], 0, "{record}");
}

/// The kernel's count of the primary state program's skipped runs (it
/// fires nested in itself on one CPU, a softirq over a process) and the
/// backup's count of the events it counted in its place, read with
/// bpftool from the programs of the netconn with pid `pid` (others may
/// run on the machine: an installed service).
fn misses_and_rescues(pid: u32) -> (u64, u64) {
    // The ids of the programs that process holds (its descriptors'
    // fdinfo says `prog_id:`; Debian's bpftool shows no pids).
    let ours: Vec<u64> = std::fs::read_dir(format!("/proc/{pid}/fdinfo"))
        .expect("the watch's descriptors")
        .flatten()
        .filter_map(|e| std::fs::read_to_string(e.path()).ok())
        .filter_map(|info| {
            info.lines()
                .find_map(|l| l.strip_prefix("prog_id:"))
                .and_then(|v| v.trim().parse().ok())
        })
        .collect();
    let json = |args: &[&str]| bpftool_json(args).unwrap_or_else(|e| panic!("{e}"));
    // Kernel names are cut at 15 bytes; bpftool shows the whole one when
    // the program has BTF.
    let program = |prefix: &str| -> serde_json::Value {
        let programs = json(&["prog", "show"]);
        let found: Vec<serde_json::Value> = programs
            .as_array()
            .expect("programs")
            .iter()
            .filter(|p| p["name"].as_str().is_some_and(|n| n.starts_with(prefix)))
            .filter(|p| p["id"].as_u64().is_some_and(|id| ours.contains(&id)))
            .cloned()
            .collect();
        assert_eq!(found.len(), 1, "one program of netconn {pid}: {found:?}");
        found.into_iter().next().unwrap()
    };
    // Absent while zero.
    let misses = || {
        program("netconn_state_c")["recursion_misses"]
            .as_u64()
            .unwrap_or(0)
    };
    let rescued = program("netconn_state_b")["map_ids"]
        .as_array()
        .expect("map ids")
        .iter()
        .map(|id| id.as_u64().expect("map id").to_string())
        .find(|id| json(&["map", "show", "id", id])["name"] == "RESCUED")
        .expect("the RESCUED map");
    // One entry, a value per CPU, each as little-endian bytes ("0x..").
    let value = |v: &serde_json::Value| {
        v.as_array()
            .expect("bytes")
            .iter()
            .rev()
            .fold(0u64, |n, b| {
                let b = b.as_str().expect("byte");
                (n << 8) | u64::from_str_radix(b.trim_start_matches("0x"), 16).expect("hex")
            })
    };
    // The programs still run for the host's other sockets: read the
    // misses on both sides of the rescues until nothing moved between.
    for _ in 0..10 {
        let before = misses();
        let entries = json(&["map", "dump", "id", &rescued]);
        let rescues = entries
            .as_array()
            .expect("entries")
            .iter()
            .flat_map(|e| e["values"].as_array().expect("per-CPU values"))
            .map(|v| value(&v["value"]))
            .sum();
        if misses() == before {
            return (before, rescues);
        }
    }
    panic!("the primary kept missing events after the churn");
}

/// Every event the kernel skipped the primary for is counted once by the
/// backup, and no other: a backup that took the primary's events for
/// skipped ones (a mark it cannot find) would count them twice, and one
/// that found marks not meant for it would leave skipped events out (that
/// one shows only in a run with misses: a saturating churn here makes
/// tens to hundreds). The counts at rest are compared too, and no repair
/// for lost events may have mended them (a resync for mini-sockets is
/// another matter).
#[test]
fn every_skipped_event_is_rescued_once() {
    let ns = Netns::new();
    let (mut watch, _) = Watch::start(&ns, &["--interval", "500ms"]);
    let out = ns.run_cmd(
        env!("CARGO_BIN_EXE_netconn-churn"),
        &["churn", "--threads", "4", "--seconds", "10"],
    );
    let (misses, rescues) = misses_and_rescues(watch.child.id());
    assert_eq!(rescues, misses, "after {}", out.trim());
    let (record, want) = at_rest(&ns, &mut watch);
    assert_eq!(table_of(&record), want, "record {record}");
    assert_eq!(record["lost_events"], 0, "{record}");
    assert_ne!(
        record["last_correction"]["reason"], "lost_events",
        "{record}"
    );
}

/// Time-wait sockets expire on their own timers (60 s), with no event:
/// the counts must follow them down.
#[test]
fn counts_stay_exact_while_time_wait_sockets_expire() {
    let ns = Netns::new();
    let (mut watch, _) = Watch::start(&ns, &["--interval", "500ms"]);
    let worker = ns.worker();
    let (held, _) = worker.exec(|| churn::run(4, 1500, Duration::from_secs(20)));
    let (record, want) = at_rest(&ns, &mut watch);
    assert!(
        want.keys().any(|(_, s)| s == "TIME_WAIT"),
        "the churn left no TIME_WAIT: {want:?}"
    );
    assert_eq!(table_of(&record), want);
    // TCP_TIMEWAIT_LEN is 60 s; bounded wait for them to go.
    let start = std::time::Instant::now();
    while truth(&ns).keys().any(|(_, s)| s == "TIME_WAIT") {
        assert!(
            start.elapsed() < Duration::from_secs(90),
            "TIME_WAIT never expired"
        );
        std::thread::sleep(Duration::from_secs(1));
    }
    let (record, want) = at_rest(&ns, &mut watch);
    assert_eq!(table_of(&record), want, "after expiry");
    assert_eq!(record["lost_events"], 0);
    drop(held);
}

/// Request sockets (SYN_RECV) emit no state event: a listener whose
/// clients' final ACKs an nft rule drops keeps them in SYN_RECV.
#[test]
fn syn_recv_request_sockets_are_counted() {
    let ns = Netns::new();
    let (mut watch, _) = Watch::start(&ns, &["--interval", "300ms"]);
    let worker = ns.worker();
    let listener = worker.exec(|| mix::listener("127.0.0.1:0"));
    let port = listener.local_addr().unwrap().port().to_string();
    // Drop bare ACKs to the listener's port: handshakes never complete.
    ns.run_cmd("nft", &["add", "table", "inet", "netconn_test"]);
    ns.run_cmd(
        "nft",
        &["add chain inet netconn_test out { type filter hook output priority 0 ; }"],
    );
    ns.run_cmd(
        "nft",
        &[&format!(
            "add rule inet netconn_test out tcp dport {port} tcp flags & (syn | ack | fin | rst) == ack drop"
        )],
    );
    let clients: Vec<std::net::TcpStream> = worker.exec(move || {
        (0..3)
            .map(|_| {
                std::net::TcpStream::connect(("127.0.0.1", port.parse::<u16>().unwrap())).unwrap()
            })
            .collect()
    });
    let want = truth(&ns);
    assert_eq!(
        want.get(&("tcp".to_owned(), "SYN_RECV".to_owned())),
        Some(&3),
        "the nft rule did not hold the handshakes: {want:?}"
    );
    let record = watch.fresh_record();
    let want: Table = truth(&ns);
    assert_eq!(table_of(&record), want);
    drop((clients, listener));
}

/// A journal too small for the churn overflows during a resync: the loss
/// is reported, the resync is repeated, and once the churn stops the
/// counts are back at the truth.
#[test]
fn forced_journal_loss_is_reported_and_repaired() {
    let ns = Netns::new();
    let mut cmd = ns.netconn(&["watch", "--interval", "300ms"]);
    cmd.env("NETCONN_JOURNAL_BYTES", "4096");
    let (mut watch, _) = Watch::start_cmd(cmd);
    let churner = {
        let bin = env!("CARGO_BIN_EXE_netconn-churn");
        let name = ns.name.clone();
        std::thread::spawn(move || {
            std::process::Command::new("ip")
                .args([
                    "netns",
                    "exec",
                    &name,
                    bin,
                    "churn",
                    "--threads",
                    "4",
                    "--seconds",
                    "4",
                ])
                .output()
                .expect("churn")
        })
    };
    // Resync in the middle of the churn: the 4 KiB journal cannot hold it.
    std::thread::sleep(Duration::from_secs(2));
    watch.signal(libc::SIGHUP);
    churner.join().unwrap();
    let (record, want) = at_rest(&ns, &mut watch);
    assert!(record["lost_events"].as_u64().unwrap() > 0, "{record}");
    assert!(record["resyncs"].as_u64().unwrap() > 0, "{record}");
    assert_eq!(table_of(&record), want, "{record}");
}

/// `watch --verify` shows no difference to a dump at rest after churn.
#[test]
fn verify_shows_no_difference_at_rest_after_churn() {
    let ns = Netns::new();
    let (mut watch, first) = Watch::start(&ns, &["--interval", "300ms", "--verify"]);
    assert_eq!(first["verify"]["equal"], true, "{first}");
    let worker = ns.worker();
    let (held, _) = worker.exec(|| churn::run(5, 2000, Duration::from_secs(20)));
    let (record, want) = at_rest(&ns, &mut watch);
    assert_eq!(record["verify"]["equal"], true, "{record}");
    assert_eq!(record["verify"]["diff"], serde_json::json!({}), "{record}");
    assert_eq!(table_of(&record), want);
    drop(held);
}

/// A FIN that turns an orphaned FIN_WAIT2 into TIME_WAIT while a resync
/// dumps and merges fires no state event: the next reading must still
/// re-read the mini-sockets. Rounds of one such FIN at a random moment of
/// a SIGHUP resync (made long by a few thousand other sockets), each
/// checked against /proc at rest. `all`: with `--all-namespaces`.
fn fin_during_resync(all: bool, rounds: usize) {
    let ns = Netns::new();
    let worker = ns.worker();
    let (_bulk, mut servers) = worker.exec(move || {
        let listener = mix::listener("127.0.0.1:0");
        let mut bulk = mix::Held::default();
        mix::established(&listener, 3000, &mut bulk);
        let mut orphans = mix::Held::default();
        for _ in 0..rounds {
            mix::orphaned_close(&listener, &mut orphans);
        }
        bulk.listeners.push(listener);
        (bulk, orphans.streams)
    });
    ns.run(mix::settle);
    let mut watch = if all {
        let mut cmd = std::process::Command::new(netconn_integration::netconn_bin());
        cmd.args(["watch", "--all-namespaces", "--interval", "300ms"]);
        Watch::start_cmd(cmd).0
    } else {
        Watch::start(&ns, &["--interval", "300ms"]).0
    };
    let inode = ns.inode();
    let mut rng = churn::Rng::new(7);
    for round in 0..rounds {
        watch.signal(libc::SIGHUP);
        std::thread::sleep(Duration::from_millis(rng.below(40)));
        // The server's close sends the FIN the orphaned client waits for.
        drop(servers.pop());
        ns.run(mix::settle);
        let record = if all {
            watch.fresh_record_of(inode)
        } else {
            watch.fresh_record()
        };
        let want = truth(&ns);
        assert_eq!(table_of(&record), want, "round {round}: {record}");
    }
}

#[test]
fn a_time_wait_change_during_a_resync_is_seen() {
    fin_during_resync(false, 30);
}

#[test]
fn a_time_wait_change_during_a_resync_of_every_namespace_is_seen() {
    fin_during_resync(true, 20);
}
