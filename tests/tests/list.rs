//! `netconn list`: rows equal /proc/net, directions, processes and the
//! kernel's tcp_info (as `ss -tin` shows it), in two namespaces joined by
//! a veth pair so that inbound and outbound are not local.

use std::collections::BTreeMap;
use std::net::{TcpListener, TcpStream, UdpSocket};

use netconn_integration::{Netns, Watch, ss_tcp_info, stdout_of, truth, veth};
use serde_json::Value;

#[test]
fn rows_directions_processes_and_tcp_info() {
    let a = Netns::new();
    let b = Netns::new();
    veth(&a, &b, 77);
    let in_b = b.worker();
    let remote = in_b.exec(|| TcpListener::bind("10.77.0.2:9090").unwrap());
    let in_a = a.worker();
    let held = in_a.exec(|| {
        let l = TcpListener::bind("10.77.0.1:8080").unwrap();
        let out: Vec<TcpStream> = (0..2)
            .map(|_| TcpStream::connect("10.77.0.2:9090").unwrap())
            .collect();
        let lo = TcpListener::bind("127.0.0.1:0").unwrap();
        let local = TcpStream::connect(lo.local_addr().unwrap()).unwrap();
        let local_peer = lo.accept().unwrap().0;
        let udp = UdpSocket::bind("10.77.0.1:5353").unwrap();
        (l, out, lo, local, local_peer, udp)
    });
    let clients = in_b.exec(|| {
        (0..3)
            .map(|_| TcpStream::connect("10.77.0.1:8080").unwrap())
            .collect::<Vec<_>>()
    });
    // Let the handshakes and delayed ACKs settle before comparing.
    std::thread::sleep(std::time::Duration::from_millis(300));

    let rows = list_json(&a, &["--processes"]);
    let ss = ss_tcp_info(&a, &[]);

    // Same sockets as /proc/net, per conn-type and state.
    let mut got = BTreeMap::new();
    for r in &rows {
        *got.entry((
            r["proto"].as_str().unwrap().to_owned(),
            r["state"].as_str().unwrap().to_owned(),
        ))
        .or_insert(0i64) += 1;
    }
    assert_eq!(got, truth(&a));

    let comm = std::fs::read_to_string("/proc/self/comm").unwrap();
    let dir = |pred: &dyn Fn(&Value) -> bool| -> Vec<String> {
        rows.iter()
            .filter(|r| pred(r))
            .map(|r| r["direction"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(dir(&|r| r["state"] == "LISTEN"), ["listen", "listen"]);
    assert_eq!(dir(&|r| r["proto"] == "udp"), ["listen"]);
    // Accepted from b: the kernel queued them, nobody accepted yet; still
    // connections to our listening port.
    assert_eq!(
        dir(&|r| r["lport"] == 8080 && r["raddr"] == "10.77.0.2"),
        vec!["inbound"; 3]
    );
    assert_eq!(dir(&|r| r["rport"] == 9090), vec!["outbound"; 2]);
    assert_eq!(dir(&|r| r["raddr"] == "127.0.0.1"), vec!["local"; 2]);
    for r in &rows {
        // Sockets the test holds: its pid and comm. Queued, not yet
        // accepted connections belong to no file descriptor.
        let queued = r["lport"] == 8080 && r["raddr"] == "10.77.0.2";
        if !queued {
            assert_eq!(r["pid"], std::process::id(), "{r}");
            assert_eq!(r["comm"], comm.trim_end(), "{r}");
        }
        assert_eq!(r["namespace"], "container");
        if r["proto"] == "tcp" && r["state"] == "ESTABLISHED" {
            let local = format!(
                "{}:{} {}:{}",
                r["laddr"].as_str().unwrap(),
                r["lport"],
                r["raddr"].as_str().unwrap(),
                r["rport"]
            );
            let want = ss[&local];
            assert_eq!(r["rtt_us"], want.rtt_us, "{local}: {r}");
            assert_eq!(r["retrans"], want.retrans, "{local}: {r}");
        }
    }

    // Aggregated: the three inbound connections form one group.
    let out = stdout_of(a.netconn(&["list", "--aggregate", "--json", "--processes"]));
    let groups: Value = serde_json::from_slice(&out).unwrap();
    let inbound = groups
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["direction"] == "inbound")
        .expect("an inbound group");
    assert_eq!(
        (inbound["port"].as_u64(), inbound["sockets"].as_u64()),
        (Some(8080), Some(3))
    );
    drop((held, clients, remote));
}

/// `netconn list --json ARGS` in `ns`: its rows.
fn list_json(ns: &Netns, args: &[&str]) -> Vec<Value> {
    let out = stdout_of(ns.netconn(&[&["list", "--json"], args].concat()));
    match serde_json::from_slice(&out).unwrap() {
        Value::Array(rows) => rows,
        other => panic!("not an array: {other}"),
    }
}

/// Without `--processes`, the owners come from the namespace's running
/// `watch --events`: the sockets it saw connect, listen or be accepted,
/// and how long ago each began.
#[test]
fn a_running_watch_names_the_processes_it_saw() {
    let ns = Netns::new();
    let worker = ns.worker();
    let older = worker.exec(|| TcpListener::bind("127.0.0.1:7000").unwrap());
    let (watch, _) = Watch::start(&ns, &["--interval", "1h", "--events"]);
    let before = std::time::Instant::now();
    let newer = worker.exec(|| {
        let l = TcpListener::bind("127.0.0.1:7001").unwrap();
        let c = TcpStream::connect("127.0.0.1:7001").unwrap();
        let a = l.accept().unwrap().0;
        (l, c, a)
    });
    let comm = std::fs::read_to_string("/proc/self/comm").unwrap();
    let made = before.elapsed();
    std::thread::sleep(std::time::Duration::from_millis(1200));
    let rows = list_json(&ns, &[]);
    // Ages lie between the sleep and the whole time since before.
    let span = (1200..=before.elapsed().as_millis() as u64 + 1, made);
    let of = |pred: &dyn Fn(&Value) -> bool| -> Vec<&Value> {
        rows.iter().filter(|r| pred(r)).collect()
    };
    let older_rows = of(&|r| r["lport"] == 7000);
    assert_eq!(older_rows.len(), 1);
    assert!(older_rows[0]["pid"].is_null(), "{}", older_rows[0]);
    assert!(older_rows[0]["age_ms"].is_null(), "{}", older_rows[0]);
    let newer_rows = of(&|r| r["lport"] == 7001 || r["rport"] == 7001);
    assert_eq!(newer_rows.len(), 3, "listener, client, accepted");
    for r in newer_rows {
        assert_eq!(r["pid"], std::process::id(), "{r}");
        assert_eq!(r["comm"], comm.trim_end(), "{r}");
        let age = r["age_ms"]
            .as_u64()
            .unwrap_or_else(|| panic!("no age: {r}"));
        assert!(span.0.contains(&age), "age {age} outside {span:?}: {r}");
    }
    // The names came from the daemon: without it, none.
    drop(watch);
    assert!(list_json(&ns, &[]).iter().all(|r| r["pid"].is_null()));
    drop((older, newer));
}

/// `list --output FILE` writes a complete document: a second run replaces
/// the first (appending left two JSON arrays, invalid JSON).
#[test]
fn output_file_holds_one_whole_listing() {
    let ns = Netns::new();
    let worker = ns.worker();
    let held = worker.exec(|| TcpListener::bind("127.0.0.1:0").unwrap());
    let file = std::env::temp_dir().join(format!("netconn-list-{}.json", ns.name));
    let path = file.to_str().unwrap();
    for _ in 0..2 {
        stdout_of(ns.netconn(&["list", "--json", "--output", path]));
    }
    let text = std::fs::read_to_string(&file).unwrap();
    std::fs::remove_file(&file).unwrap();
    let rows: Vec<Value> = serde_json::from_str(&text).expect("one JSON array");
    assert_eq!(rows.len(), 1, "{text}");
    drop(held);
}
