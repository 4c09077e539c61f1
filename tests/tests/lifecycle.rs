//! Start-up and shut-down: records on signals, --count, nothing left attached.

use netconn_integration::{Netns, Watch, table_of, truth};

/// Programs of netconn currently loaded (kernel names are cut at 15
/// bytes). A program that is unloaded has no attachment left.
fn netconn_programs() -> usize {
    aya::programs::loaded_programs()
        .filter_map(Result::ok)
        .filter(|p| p.name_as_str().is_some_and(|n| n.starts_with("netconn_")))
        .count()
}

/// Two on the state tracepoint, eight UDP lifecycle programs, and the
/// TCP metrics' four (sock_ops, two resets, SYN-ACK retransmissions).
const PROGRAMS: usize = 14;

/// The kernel frees a detached tracing program after an RCU grace period,
/// so the count settles a little after the process is gone.
fn settled_programs(want: usize) -> usize {
    let mut n = netconn_programs();
    for _ in 0..500 {
        if n == want {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
        n = netconn_programs();
    }
    n
}

#[test]
fn signals_write_a_final_record_and_detach() {
    // Serialised with other tests by `cargo xtask test` (--test-threads=1),
    // so no other netconn program is loaded meanwhile.
    let base = settled_programs(0);
    for signal in [libc::SIGINT, libc::SIGTERM] {
        let ns = Netns::new();
        let (watch, _) = Watch::start(&ns, &["--interval", "1h"]);
        assert_eq!(netconn_programs(), base + PROGRAMS);
        let (rest, status) = watch.stop(signal);
        assert!(status.success(), "exit status {status}");
        assert_eq!(rest.len(), 1, "one final record: {rest:?}");
        assert_eq!(table_of(&rest[0]), truth(&ns));
        assert_eq!(
            settled_programs(base),
            base,
            "program still loaded after exit"
        );
    }
}

/// `--no-tcp-metrics`: only the counting programs and the sock_ops
/// program that marks the sockets counted for the ephemeral ports (none
/// with `--no-ephemeral-ports` too), and records without `tcp_metrics`,
/// in port group series too.
#[test]
fn without_tcp_metrics_only_the_counting_programs_run() {
    let base = settled_programs(0);
    let ns = Netns::new();
    let lean = ["watch", "--interval", "1h", "--no-tcp-metrics"];
    let (watch, _) = Watch::start_cmd(ns.netconn(&[&lean[..], &["--no-ephemeral-ports"]].concat()));
    assert_eq!(netconn_programs(), base + PROGRAMS - 4);
    let (_, status) = watch.stop(libc::SIGTERM);
    assert!(status.success());
    assert_eq!(settled_programs(base), base);
    let mut cmd = ns.netconn(&lean);
    cmd.env("NETCONN_ADDR_PORTS", r#"["80"]"#);
    let (watch, first) = Watch::start_cmd(cmd);
    assert_eq!(netconn_programs(), base + PROGRAMS - 3);
    assert!(first.get("tcp_metrics").is_none(), "{first}");
    let series = first["ports"].as_array().expect("the group's series");
    assert!(!series.is_empty(), "{first}");
    assert!(
        series.iter().all(|s| s.get("tcp_metrics").is_none()),
        "{first}"
    );
    let (rest, status) = watch.stop(libc::SIGTERM);
    assert!(status.success());
    assert_eq!(table_of(&rest[0]), truth(&ns));
    assert_eq!(settled_programs(base), base);
}

#[test]
fn count_stops_after_n_records() {
    let ns = Netns::new();
    let out = ns
        .netconn(&["watch", "--interval", "100ms", "--count", "3"])
        .output()
        .expect("run");
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let records = of_type(&text);
    // Each interval: a counts record, then a conntrack record.
    assert_eq!(records["counts"].len(), 3, "{text}");
    assert_eq!(records["conntrack"].len(), 3, "{text}");
    for r in &records["counts"] {
        assert_eq!(r["source"], "ebpf");
        assert!(r["time"].as_str().unwrap().ends_with('Z'));
    }
}

/// NDJSON records grouped by their "type".
fn of_type(text: &str) -> std::collections::BTreeMap<String, Vec<serde_json::Value>> {
    let mut out = std::collections::BTreeMap::<String, Vec<serde_json::Value>>::new();
    for line in text.lines() {
        let r: serde_json::Value = serde_json::from_str(line).expect("JSON");
        let kind = r["type"].as_str().expect("type").to_owned();
        out.entry(kind).or_default().push(r);
    }
    out
}

#[test]
fn output_file_gets_the_records() {
    let ns = Netns::new();
    let path = std::env::temp_dir().join(format!("netconn-test-{}.ndjson", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let out = ns
        .netconn(&[
            "watch",
            "-i",
            "100ms",
            "-n",
            "2",
            "--output",
            path.to_str().unwrap(),
        ])
        .output()
        .expect("run");
    assert!(out.status.success());
    assert!(out.stdout.is_empty());
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::remove_file(&path).unwrap();
    assert_eq!(of_type(&text)["counts"].len(), 2);
}

#[test]
fn without_ebpf_it_says_why_and_polls() {
    let ns = Netns::new();
    let out = ns
        .netconn_unprivileged(&["watch", "-i", "100ms", "-n", "2"])
        .output()
        .expect("run");
    assert!(out.status.success());
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    assert!(
        stderr.contains("eBPF unavailable") && stderr.contains("polling"),
        "{stderr}"
    );
    // The cause is said once (aya's errors already print their source).
    let parts: Vec<&str> = stderr.split(": ").map(str::trim).collect();
    for pair in parts.windows(2) {
        assert_ne!(pair[0], pair[1], "repeated: {stderr}");
    }
    let text = String::from_utf8(out.stdout).unwrap();
    let records = of_type(&text);
    assert_eq!(records["counts"].len(), 2);
    for r in &records["counts"] {
        assert_eq!(r["source"], "poll");
    }
}
