//! `watch --events`: a record when a connection opens and when it closes,
//! with the process, the direction and, at close, the kernel's figures,
//! which must agree with `ss -tin` taken just before the close.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

use netconn_integration::{Netns, SsInfo, Watch, ss_tcp_info, stdout_of, veth};
use serde_json::Value;
use socket2::SockRef;

/// `ss -tin` of the connection from `local` in `ns`.
fn ss_figures(ns: &Netns, local: &str) -> SsInfo {
    let all = ss_tcp_info(ns, &["src", local]);
    *all.values()
        .next()
        .unwrap_or_else(|| panic!("ss shows no {local}"))
}

/// The next conn record matching `pred`.
fn next_conn(watch: &mut Watch, pred: impl Fn(&Value) -> bool) -> Value {
    loop {
        let r = watch.next_of("conn", Duration::from_secs(60));
        if pred(&r) {
            return r;
        }
    }
}

#[test]
fn open_and_close_records_agree_with_ss() {
    let a = Netns::new();
    let b = Netns::new();
    veth(&a, &b, 78);
    let in_b = b.worker();
    let remote = in_b.exec(|| TcpListener::bind("10.78.0.2:9090").unwrap());
    let (mut watch, _) = Watch::start(&a, &["--interval", "1h", "--events"]);
    let in_a = a.worker();
    let pid = std::process::id();
    let comm = std::fs::read_to_string("/proc/self/comm")
        .unwrap()
        .trim_end()
        .to_owned();

    // Outbound: a connects to b and sends 200 KB, b reads it all.
    let client = in_a.exec(|| TcpStream::connect("10.78.0.2:9090").unwrap());
    let local = client.local_addr().unwrap().to_string();
    let open = next_conn(&mut watch, |r| r["event"] == "open" && r["rport"] == 9090);
    assert_eq!(open["direction"], "outbound", "{open}");
    assert_eq!(open["pid"], pid, "{open}");
    assert_eq!(open["comm"], comm.as_str(), "{open}");
    assert_eq!(open["laddr"], "10.78.0.1");
    assert_eq!(open["namespace"], "container");
    // b reads on a thread of its own (spawned in b's namespace) while a
    // writes.
    let reader = in_b.exec(move || {
        std::thread::spawn(move || {
            let (mut s, _) = remote.accept().unwrap();
            let mut buf = vec![0u8; 200_000];
            s.read_exact(&mut buf).unwrap();
            (remote, s)
        })
    });
    let mut client = client;
    let client = in_a.exec(move || {
        client.write_all(&vec![7u8; 200_000]).unwrap();
        client
    });
    let served = reader.join().unwrap();
    // Everything acknowledged, then the figures just before the close.
    let mut figures = ss_figures(&a, &local);
    for _ in 0..100 {
        if figures.bytes_acked >= 200_001 {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
        figures = ss_figures(&a, &local);
    }
    // An abortive close (RST): no exchange after ss looked.
    in_a.exec(move || {
        SockRef::from(&client)
            .set_linger(Some(Duration::ZERO))
            .unwrap();
        drop(client);
    });
    let close = next_conn(&mut watch, |r| r["event"] == "close" && r["rport"] == 9090);
    let SsInfo {
        rtt_us: rtt,
        bytes_acked: acked,
        retrans,
        ..
    } = figures;
    assert_eq!(close["bytes_sent"], acked, "{close}");
    // tcp_info counts the SYN and the FIN in bytes_acked; no FIN here.
    assert_eq!(acked, 200_001);
    assert_eq!(close["rtt_us"], rtt, "{close}");
    assert_eq!(close["retrans"], retrans, "{close}");
    assert_eq!(close["close_reason"], "rst_sent", "{close}");
    assert_eq!(close["pid"], pid);
    assert!(close["duration_ms"].as_f64().unwrap() > 0.0, "{close}");

    // Inbound: b connects to a's listener; the accepted connection
    // inherits the listener's process; b closes first (FIN), then a.
    let listener = in_a.exec(|| TcpListener::bind("10.78.0.1:8080").unwrap());
    let listen = next_conn(&mut watch, |r| r["event"] == "open" && r["lport"] == 8080);
    assert_eq!(listen["direction"], "listen");
    let peer = in_b.exec(|| TcpStream::connect("10.78.0.1:8080").unwrap());
    let accepted = in_a.exec(move || (listener.accept().unwrap().0, listener));
    let open = next_conn(&mut watch, |r| {
        r["event"] == "open" && r["lport"] == 8080 && r["raddr"] == "10.78.0.2"
    });
    assert_eq!(open["direction"], "inbound", "{open}");
    assert_eq!(open["pid"], pid, "{open}");
    in_b.exec(move || drop(peer));
    std::thread::sleep(Duration::from_millis(100));
    in_a.exec(move || drop(accepted));
    let close = next_conn(&mut watch, |r| {
        r["event"] == "close" && r["lport"] == 8080 && r["direction"] != "listen"
    });
    assert_eq!(close["close_reason"], "fin", "{close}");
    assert_eq!(close["direction"], "inbound");
    let listener_closed = next_conn(&mut watch, |r| {
        r["event"] == "close" && r["direction"] == "listen"
    });
    assert_eq!(listener_closed["close_reason"], "listener_closed");
    drop(served);
}

/// Connection records the kernel cannot hand over (their ring buffer full)
/// are counted apart: no count depends on them, so they cause no resync.
#[test]
fn lost_connection_records_are_counted_apart_and_cause_no_resync() {
    let ns = Netns::new();
    let mut cmd = ns.netconn(&["watch", "--interval", "200ms", "--events"]);
    // About 34 records fit; a burst of 1,200 does not.
    cmd.env("NETCONN_CONN_RING_BYTES", "4096");
    let (mut watch, _) = Watch::start_cmd(cmd);
    let worker = ns.worker();
    // netconn stopped meanwhile: nobody drains the ring.
    watch.signal(libc::SIGSTOP);
    worker.exec(|| {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        for _ in 0..300 {
            let c = TcpStream::connect(addr).unwrap();
            let (s, _) = l.accept().unwrap();
            drop((c, s));
        }
    });
    watch.signal(libc::SIGCONT);
    let record = watch.fresh_record();
    assert!(
        record["conn_records_lost"].as_u64().unwrap() > 0,
        "{record}"
    );
    assert_eq!(record["lost_events"], 0, "{record}");
    assert_eq!(record["resyncs"], 0, "{record}");
    assert_eq!(
        netconn_integration::table_of(&record),
        netconn_integration::truth(&ns)
    );
}

/// Connects that never reach ESTABLISHED: a `failed` record each, with
/// the reason the kernel gave the application, the process and the SYNs
/// retransmitted; and the interval records count them per reason.
#[test]
fn failed_connects_have_a_record_and_a_count_per_reason() {
    use netconn_integration::run_ok;
    let ns = Netns::new();
    // SYNs to 7001 dropped, to 7002 answered by ICMP host unreachable;
    // one SYN retransmission before a connect times out (about 3 s).
    let nft = |rule: &str| run_ok("ip", &["netns", "exec", &ns.name, "nft", rule]);
    nft("add table inet netconn_failed");
    nft("add chain inet netconn_failed input { type filter hook input priority 0 ; }");
    nft("add rule inet netconn_failed input tcp dport 7001 counter drop");
    nft(
        "add rule inet netconn_failed input tcp dport 7002 reject with icmpx type host-unreachable",
    );
    run_ok(
        "ip",
        &[
            "netns",
            "exec",
            &ns.name,
            "sysctl",
            "-qw",
            "net.ipv4.tcp_syn_retries=1",
        ],
    );
    let (mut watch, _) = Watch::start(&ns, &["--interval", "500ms", "--events"]);
    let worker = ns.worker();
    let kind = |port: u16| {
        worker.exec(move || {
            TcpStream::connect(("127.0.0.1", port))
                .err()
                .map(|e| e.raw_os_error())
        })
    };
    let refused = [kind(9), kind(9)];
    let unreachable = kind(7002);
    let timeout = kind(7001);
    // What the kernel sent: the SYNs the rule dropped, the first one and
    // its retransmissions.
    let listed = String::from_utf8(stdout_of({
        let mut c = std::process::Command::new("ip");
        c.args(["netns", "exec", &ns.name, "nft", "list", "chain", "inet"])
            .args(["netconn_failed", "input"]);
        c
    }))
    .unwrap();
    let syns: u64 = listed
        .split_whitespace()
        .skip_while(|w| *w != "packets")
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no counter in {listed}"));
    let errors = worker.exec(move || {
        // Given up by the application while its SYN is unanswered.
        let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        s.set_nonblocking(true).unwrap();
        let _ = s.connect(
            &"127.0.0.1:7001"
                .parse::<std::net::SocketAddr>()
                .unwrap()
                .into(),
        );
        std::thread::sleep(Duration::from_millis(100));
        drop(s);
        (refused, unreachable, timeout)
    });
    assert_eq!(errors.0, [Some(Some(libc::ECONNREFUSED)); 2]);
    assert_eq!(errors.1, Some(Some(libc::EHOSTUNREACH)));
    assert_eq!(errors.2, Some(Some(libc::ETIMEDOUT)));

    let mut failed: Vec<Value> = Vec::new();
    let mut counted = std::collections::BTreeMap::<String, u64>::new();
    for _ in 0..40 {
        let r = watch.next_any_record(Duration::from_secs(30));
        if r["type"] == "conn" && r["event"] == "failed" {
            failed.push(r);
        } else if r["type"] == "counts" {
            for (reason, n) in r["tcp_metrics"]["failed_connects"].as_object().unwrap() {
                *counted.entry(reason.clone()).or_default() += n.as_u64().unwrap();
            }
            if failed.len() >= 5 && counted.values().sum::<u64>() >= 5 {
                break;
            }
        }
    }
    let of =
        |reason: &str| -> Vec<&Value> { failed.iter().filter(|r| r["reason"] == reason).collect() };
    assert_eq!(of("refused").len(), 2, "{failed:#?}");
    assert_eq!(of("unreachable").len(), 1, "{failed:#?}");
    assert_eq!(of("timeout").len(), 1, "{failed:#?}");
    assert_eq!(of("aborted").len(), 1, "{failed:#?}");
    let pid = std::process::id();
    for r in &failed {
        assert_eq!(r["pid"], pid, "{r}");
        assert_eq!(r["raddr"], "127.0.0.1");
        assert!(r["duration_ms"].as_f64().is_some(), "{r}");
    }
    assert_eq!(of("refused")[0]["error"], "ECONNREFUSED");
    assert_eq!(of("refused")[0]["rport"], 9);
    assert_eq!(of("unreachable")[0]["error"], "EHOSTUNREACH");
    let timeout = of("timeout")[0];
    assert_eq!(timeout["error"], "ETIMEDOUT");
    assert!(syns >= 2, "{listed}");
    assert_eq!(
        timeout["syn_retrans"],
        syns - 1,
        "SYNs sent: {syns}; {timeout}"
    );
    assert!(
        timeout["duration_ms"].as_f64().unwrap() > 2000.0,
        "{timeout}"
    );
    assert_eq!(of("aborted")[0]["error"], Value::Null);
    // The interval records count the same, per reason.
    let want: std::collections::BTreeMap<String, u64> = [
        ("refused", 2),
        ("timeout", 1),
        ("unreachable", 1),
        ("aborted", 1),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    assert_eq!(counted, want);
}
