//! Ephemeral ports per destination against `ss`, in a namespace whose
//! `ip_local_port_range` the test narrows: sockets connected before
//! netconn started and after, closed into TIME_WAIT, churned; the
//! `port_exhaustion` alert raised and cleared.

use std::collections::{BTreeMap, HashSet};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use netconn_integration::{Netns, Watch};
use serde_json::Value;

/// (laddr, raddr, rport) -> (in_use, time_wait), from `ss -tan`: sockets
/// on a local port of `low..=high` that no listener has, connected
/// (every state but SYN-SENT, SYN-RECV and LISTEN).
type Truth = BTreeMap<(String, String, u16), (u64, u64)>;

fn split(endpoint: &str) -> (String, u16) {
    let (addr, port) = endpoint.rsplit_once(':').unwrap();
    let addr = addr.trim_start_matches('[').trim_end_matches(']');
    (addr.to_owned(), port.parse().unwrap())
}

fn truth(ns: &Netns, low: u16, high: u16) -> Truth {
    let out = ns.run_cmd("ss", &["-tanH"]);
    let rows: Vec<Vec<&str>> = out
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    let listening: HashSet<u16> = rows
        .iter()
        .filter(|r| r[0] == "LISTEN")
        .map(|r| split(r[3]).1)
        .collect();
    let mut t = Truth::new();
    for r in &rows {
        if matches!(r[0], "LISTEN" | "SYN-SENT" | "SYN-RECV") {
            continue;
        }
        let ((laddr, lport), (raddr, rport)) = (split(r[3]), split(r[4]));
        if !(low..=high).contains(&lport) || listening.contains(&lport) {
            continue;
        }
        let e = t.entry((laddr, raddr, rport)).or_default();
        e.0 += 1;
        if r[0] == "TIME-WAIT" {
            e.1 += 1;
        }
    }
    t
}

fn reported(record: &Value) -> Truth {
    let e = &record["ephemeral_ports"];
    assert_eq!(e["others"]["destinations"], 0, "{e}");
    e["top"]
        .as_array()
        .unwrap_or_else(|| panic!("no ephemeral_ports: {record}"))
        .iter()
        .map(|d| {
            let key = (
                d["laddr"].as_str().unwrap().to_owned(),
                d["raddr"].as_str().unwrap().to_owned(),
                d["rport"].as_u64().unwrap() as u16,
            );
            let value = (
                d["in_use"].as_u64().unwrap(),
                d["time_wait"].as_u64().unwrap(),
            );
            (key, value)
        })
        .collect()
}

/// Reads records until one equals `ss` read right after it (the sockets
/// may still be settling when the record is made); panics with both after
/// `limit`.
fn agrees(watch: &mut Watch, ns: &Netns, low: u16, high: u16, limit: Duration) -> Value {
    let start = Instant::now();
    loop {
        let record = watch.next_record(Duration::from_secs(30));
        let (ours, kernel) = (reported(&record), truth(ns, low, high));
        if ours == kernel {
            return record;
        }
        assert!(
            start.elapsed() < limit,
            "ephemeral_ports {ours:?} != ss {kernel:?}"
        );
    }
}

fn narrow(ns: &Netns, low: u16, high: u16) {
    ns.exec_ok(&[
        "sysctl",
        "-qw",
        &format!("net.ipv4.ip_local_port_range={low} {high}"),
    ]);
}

#[test]
fn ninety_percent_of_the_range_to_one_destination_warns_until_time_wait_expires() {
    let ns = Netns::new();
    let (low, high) = (40000, 40199);
    narrow(&ns, low, high);
    let worker = ns.worker();
    // Never accepting: a backlog the 180 connects fit in.
    let server = worker.exec(|| {
        use socket2::{Domain, Socket, Type};
        let l = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
        let at: SocketAddr = "127.0.0.1:9000".parse().unwrap();
        l.bind(&at.into()).unwrap();
        l.listen(1024).unwrap();
        l
    });
    let connect = |n: usize| {
        worker.exec(move || {
            let to: SocketAddr = "127.0.0.1:9000".parse().unwrap();
            (0..n)
                .map(|_| TcpStream::connect(to).unwrap())
                .collect::<Vec<_>>()
        })
    };
    // 30 connected before netconn starts (claimed from its first dump),
    // 150 after (counted by the programs).
    let mut clients = connect(30);
    let (mut watch, _) = Watch::start(&ns, &["--interval", "500ms"]);
    clients.extend(connect(150));
    let record = agrees(&mut watch, &ns, low, high, Duration::from_secs(10));
    let e = &record["ephemeral_ports"];
    assert_eq!(e["range"], serde_json::json!([low, high]));
    assert_eq!(e["size"], 200);
    assert_eq!(e["untracked"], 0);
    let top = &e["top"][0];
    assert_eq!(
        (&top["raddr"], &top["rport"], &top["in_use"]),
        (
            &Value::from("127.0.0.1"),
            &Value::from(9000),
            &Value::from(180)
        )
    );
    assert_eq!(top["utilization"], 0.9);
    let alert = watch.next_of("alert", Duration::from_secs(30));
    assert_eq!(alert["alert"], "port_exhaustion", "{alert}");
    assert_eq!(alert["status"], "warning", "{alert}");
    assert_eq!(
        (alert["in_use"].as_u64(), alert["size"].as_u64()),
        (Some(180), Some(200))
    );
    assert_eq!(alert["raddr"], "127.0.0.1");
    assert_eq!(alert["rport"], 9000);

    // The clients close first, then the server: the clients' ports stay
    // held in TIME_WAIT.
    let accepted = worker.exec({
        let l = server.try_clone().unwrap();
        move || (0..180).map(|_| l.accept().unwrap().0).collect::<Vec<_>>()
    });
    drop(clients);
    std::thread::sleep(Duration::from_millis(200));
    drop(accepted);
    let record = agrees(&mut watch, &ns, low, high, Duration::from_secs(10));
    assert_eq!(reported(&record).values().next(), Some(&(180, 180)));
    // Time-wait sockets expire after 60 s; the alert clears then.
    let start = Instant::now();
    loop {
        let r = watch.next_any_record(Duration::from_secs(30));
        if r["type"] == "alert" {
            assert_eq!(r["alert"], "port_exhaustion", "{r}");
            assert_eq!(r["status"], "clear", "only the clear may follow: {r}");
            assert_eq!(r["in_use"], 0, "{r}");
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(120), "never cleared");
    }
    let record = agrees(&mut watch, &ns, low, high, Duration::from_secs(10));
    assert!(reported(&record).is_empty());
    drop(server);
}

/// The sock_ops program counts connects and marks the sockets, with the
/// TCP metrics on and without them (it then does nothing else).
#[test]
fn churn_leaves_every_destination_equal_to_ss_at_rest() {
    churn_case(&[]);
}

#[test]
fn churn_without_tcp_metrics_leaves_every_destination_equal_to_ss_at_rest() {
    churn_case(&["--no-tcp-metrics"]);
}

fn churn_case(extra: &[&str]) {
    let ns = Netns::new();
    let (low, high) = (30000, 60999);
    narrow(&ns, low, high);
    let worker = ns.worker();
    // Long-lived connections before start, to two destinations.
    let (held, servers) = worker.exec(|| {
        let servers: Vec<TcpListener> = (0..3)
            .map(|i| TcpListener::bind(format!("127.0.0.1:{}", 9100 + i)).unwrap())
            .collect();
        let held: Vec<TcpStream> = (0..40)
            .map(|i| TcpStream::connect(format!("127.0.0.1:{}", 9100 + i % 2)).unwrap())
            .collect();
        (held, servers)
    });
    let (mut watch, _) = Watch::start(&ns, &[&["--interval", "500ms"], extra].concat());
    // Churn to three destinations: some closed by the client (TIME_WAIT
    // on its side), some reset (no TIME_WAIT), some closed by the server
    // (TIME_WAIT on the listener's port, not ephemeral).
    let addrs: Vec<SocketAddr> = servers.iter().map(|s| s.local_addr().unwrap()).collect();
    let servers = std::sync::Arc::new(servers);
    let accepted = {
        let servers = servers.clone();
        worker.exec(move || {
            let mut kept = Vec::new();
            for round in 0..600usize {
                let to = addrs[round % 3];
                let c = TcpStream::connect(to).unwrap();
                let (s, _) = servers[round % 3].accept().unwrap();
                match round % 3 {
                    0 => drop(c),
                    1 => {
                        socket2::SockRef::from(&c)
                            .set_linger(Some(Duration::ZERO))
                            .unwrap();
                        drop(c)
                    }
                    _ => {
                        drop(s);
                        kept.push(c);
                        continue;
                    }
                }
                kept.push(s);
            }
            kept
        })
    };
    // Half of the long-lived ones go too.
    let held: Vec<TcpStream> = held.into_iter().skip(20).collect();
    std::thread::sleep(Duration::from_millis(500));
    let record = agrees(&mut watch, &ns, low, high, Duration::from_secs(10));
    let e = &record["ephemeral_ports"];
    assert_eq!(e["untracked"], 0);
    assert!(
        reported(&record).len() >= 3,
        "three destinations in use: {e}"
    );
    drop((held, accepted, servers));
}
