//! Conntrack figures against the kernel's own count, in namespaces where
//! an nft `ct state` rule makes conntrack track flows (or none does).

use std::net::{TcpListener, TcpStream, UdpSocket};
use std::time::Duration;

use netconn_integration::{
    Netns, TempFile, Watch, conntrack_count as kernel_count, stdout_of, track,
};

/// The live entries of a conntrack record, over all protocols.
fn entries_sum(record: &serde_json::Value) -> i64 {
    record["entries"]
        .as_object()
        .unwrap_or_else(|| panic!("no entries: {record}"))
        .values()
        .map(|v| v.as_i64().unwrap())
        .sum()
}

/// TCP connections and UDP flows over loopback, kept open.
fn flows(tcp: usize, udp: usize) -> (TcpListener, Vec<TcpStream>, Vec<UdpSocket>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let mut streams = Vec::new();
    for _ in 0..tcp {
        streams.push(TcpStream::connect(l.local_addr().unwrap()).unwrap());
        streams.push(l.accept().unwrap().0);
    }
    let sink = UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut socks = vec![];
    for _ in 0..udp {
        let s = UdpSocket::bind("127.0.0.1:0").unwrap();
        s.send_to(b"x", sink.local_addr().unwrap()).unwrap();
        socks.push(s);
    }
    socks.push(sink);
    (l, streams, socks)
}

#[test]
fn live_entries_and_events_equal_the_kernel_count() {
    let ns = Netns::new();
    track(&ns);
    let worker = ns.worker();
    // Flows from before start come from the dump, later ones from events.
    let early = worker.exec(|| flows(3, 2));
    let (mut watch, _) = Watch::start(&ns, &["--interval", "200ms"]);
    let late = worker.exec(|| flows(7, 4));
    // Settled: the next record after the flows exist.
    let _ = watch.next_of("conntrack", Duration::from_secs(60));
    let record = watch.next_of("conntrack", Duration::from_secs(60));
    let count = kernel_count(&ns);
    assert_eq!(count, 3 + 2 + 7 + 4, "tracked flows");
    assert_eq!(record["available"], true, "{record}");
    assert_eq!(record["count"], count, "{record}");
    let entries = entries_sum(&record);
    assert_eq!(entries as u64, count, "{record}");
    assert_eq!(record["entries"]["tcp"], 10, "{record}");
    assert_eq!(record["entries"]["udp"], 6, "{record}");
    assert_eq!(record["events"]["new"]["tcp"], 7, "{record}");
    assert_eq!(record["lost_events"], 0);
    assert!(record["max"].as_u64().unwrap() > 0);
    assert!(
        record["stats"].is_object(),
        "rates after two readings: {record}"
    );
    drop((early, late));
}

#[test]
fn untracked_namespace_says_so() {
    let ns = Netns::new();
    let out = ns
        .netconn(&["conntrack", "--window", "100ms"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let record: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one record");
    assert_eq!(record["type"], "conntrack");
    assert_eq!(record["count"], 0, "{record}");
    assert!(
        record["note"].as_str().unwrap().contains("ct state"),
        "{record}"
    );
}

#[test]
fn one_shot_record_and_alert_thresholds() {
    let ns = Netns::new();
    track(&ns);
    let worker = ns.worker();
    let held = worker.exec(|| flows(5, 0));
    let count = kernel_count(&ns);
    // Any tracked flow is above 0.0001 % of the table: a warning.
    let config = TempFile::new(
        "ct.toml",
        "[conntrack]\nclear = 0\nwarning = 0.0001\ncritical = 100\n",
    );
    let out = stdout_of(ns.netconn(&["conntrack", "--window", "100ms", "--config", config.arg()]));
    let text = String::from_utf8(out).unwrap();
    let records: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(records[0]["count"], count, "{text}");
    let util = records[0]["utilization"].as_f64().unwrap();
    let max = records[0]["max"].as_f64().unwrap();
    assert!((util - (count as f64 * 100.0 / max)).abs() < 0.01, "{text}");
    assert_eq!(records.len(), 2, "{text}");
    assert_eq!(records[1]["type"], "alert");
    assert_eq!(records[1]["alert"], "conntrack_full");
    assert_eq!(records[1]["status"], "warning");
    drop(held);
}

/// A socket buffer too small for a burst of NEW events overflows: the loss
/// is counted and a dump repairs the live entries.
#[test]
fn overflow_is_counted_and_repaired() {
    let ns = Netns::new();
    track(&ns);
    let mut cmd = ns.netconn(&["watch", "--interval", "200ms"]);
    cmd.env("NETCONN_CONNTRACK_RCVBUF", "2048");
    let (mut watch, _) = Watch::start_cmd(cmd);
    let worker = ns.worker();
    // TCP flows, then a burst of UDP flows from one socket: sent in a
    // tight loop, their NEW events outrun any reader of a 2 KiB buffer.
    let held = worker.exec(|| {
        let tcp = flows(400, 0);
        let burst = UdpSocket::bind("127.0.0.1:0").unwrap();
        for port in 20_000..22_000u16 {
            burst.send_to(b"x", ("127.0.0.1", port)).unwrap();
        }
        (tcp, burst)
    });
    let count = kernel_count(&ns);
    assert_eq!(count, 2400);
    // At rest the live entries come back to the kernel's count.
    let mut record = watch.next_of("conntrack", Duration::from_secs(60));
    for _ in 0..50 {
        let entries = entries_sum(&record);
        if entries as u64 == count && record["lost_events"].as_u64() > Some(0) {
            break;
        }
        record = watch.next_of("conntrack", Duration::from_secs(60));
    }
    assert!(record["lost_events"].as_u64().unwrap() > 0, "{record}");
    assert!(record["resyncs"].as_u64().unwrap() > 0, "{record}");
    assert_eq!(record["entries"]["tcp"], 400, "{record}");
    assert_eq!(record["entries"]["udp"], 2000, "{record}");
    assert_eq!(record["count"], count);
    drop(held);
}

/// ICMP and ICMPv6 are counted apart, in the one-shot record too; the
/// first record of a watch has rates (over its start-up).
#[test]
fn icmp_and_icmpv6_apart_and_rates_from_the_first_record() {
    let ns = Netns::new();
    track(&ns);
    ns.run_cmd("ping", &["-c", "1", "-W", "2", "127.0.0.1"]);
    ns.run_cmd("ping", &["-6", "-c", "1", "-W", "2", "::1"]);
    let out = stdout_of(ns.netconn(&["conntrack", "--window", "100ms"]));
    let record: serde_json::Value = serde_json::from_slice(&out).expect("one record");
    assert_eq!(record["entries"]["icmp"], 1, "{record}");
    assert_eq!(record["entries"]["icmpv6"], 1, "{record}");
    assert!(record.get("note").is_none(), "{record}");
    let (mut watch, _) = Watch::start(&ns, &["--interval", "1h"]);
    let first = watch.next_of("conntrack", Duration::from_secs(60));
    assert!(first["stats"].is_object(), "{first}");
    assert_eq!(first["entries"]["icmpv6"], 1, "{first}");
}

/// A namespace whose nft rules ask for tracking is not called untracked,
/// even before its first flow.
#[test]
fn a_ct_rule_without_flows_is_not_called_untracked() {
    let ns = Netns::new();
    track(&ns);
    let out = stdout_of(ns.netconn(&["conntrack", "--window", "100ms"]));
    let record: serde_json::Value = serde_json::from_slice(&out).expect("one record");
    assert_eq!(record["count"], 0, "{record}");
    assert!(record.get("note").is_none(), "{record}");
}
