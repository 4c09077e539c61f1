//! Listener saturation: each listening socket's accept queue, backlog,
//! request sockets, accepted handshakes and drops in the interval records,
//! and its queue in `list`, against `ss -lnt` and the namespace's
//! ListenDrops.

use std::time::Duration;

use netconn_integration::{Netns, TempFile, Watch, stdout_of};
use serde_json::Value;

/// `ss -lntH` for one port: (Recv-Q, Send-Q).
fn ss_queue(ns: &Netns, port: u16) -> (u64, u64) {
    let out = ns.run_cmd("ss", &["-lntH", &format!("sport = :{port}")]);
    let cols: Vec<&str> = out.split_whitespace().collect();
    assert!(cols.len() >= 3, "ss -lnt: {out:?}");
    (cols[1].parse().unwrap(), cols[2].parse().unwrap())
}

#[test]
fn a_full_accept_queue_shows_on_its_listener() {
    let ns = Netns::new();
    let (mut watch, _) = Watch::start(&ns, &["--interval", "500ms", "--events"]);
    let worker = ns.worker();
    // A listener with backlog 4 that never accepts, and 30 connects.
    let (port, _held) = worker.exec(|| {
        use socket2::{Domain, Socket, Type};
        let l = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
        l.bind(
            &"127.0.0.1:0"
                .parse::<std::net::SocketAddr>()
                .unwrap()
                .into(),
        )
        .unwrap();
        l.listen(4).unwrap();
        let addr = l.local_addr().unwrap();
        let clients: Vec<Socket> = (0..30)
            .map(|_| {
                let c = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
                c.set_nonblocking(true).unwrap();
                let _ = c.connect(&addr);
                c
            })
            .collect();
        (addr.as_socket().unwrap().port(), (l, clients))
    });
    // Let the clients' SYNs and final ACKs be retried and dropped.
    std::thread::sleep(Duration::from_millis(1500));
    let mut drops = 0u64;
    let mut listen_drops = 0u64;
    let mut last: Option<Value> = None;
    for _ in 0..4 {
        let record = watch.next_record(Duration::from_secs(30));
        listen_drops += record["tcp_metrics"]["listen_drops"].as_u64().unwrap();
        let ours = record["listeners"]
            .as_array()
            .unwrap_or_else(|| panic!("no listeners: {record}"))
            .iter()
            .find(|l| l["port"] == port)
            .cloned();
        if let Some(l) = ours {
            drops += l["drops"].as_u64().unwrap();
            last = Some(l);
        }
    }
    let l = last.expect("the listener is listed");
    let (recv_q, send_q) = ss_queue(&ns, port);
    assert_eq!(l["accept_queue"], recv_q, "{l}");
    assert_eq!(l["backlog"], send_q, "{l}");
    assert_eq!(l["backlog"], 4);
    assert_eq!(l["accept_queue"], 5, "a full queue holds backlog + 1: {l}");
    assert_eq!(l["pid"], std::process::id());
    assert_eq!(l["addr"], "127.0.0.1");
    assert!(l["accepted"].as_u64().is_some(), "{l}");
    assert!(drops > 0, "no drops on a full listener");
    // Every ListenDrops of the namespace is also one of the listener's;
    // the listener also counts the final ACKs it discards.
    assert!(listen_drops > 0);
    assert!(drops >= listen_drops, "{drops} < {listen_drops}");

    // `list` shows the same queue.
    let rows: Value = serde_json::from_slice(&stdout_of(ns.netconn(&["list", "--json"]))).unwrap();
    let row = rows
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["state"] == "LISTEN" && r["lport"] == port)
        .expect("the listener in list");
    let (recv_q, send_q) = ss_queue(&ns, port);
    assert_eq!(
        (row["accept_queue"].clone(), row["backlog"].clone()),
        (recv_q.into(), send_q.into())
    );
}

/// Without `--events` too, a new listener names the process that opened
/// it (read from the processes' descriptors when it appears).
#[test]
fn a_new_listener_names_its_process_without_events() {
    use std::net::TcpListener;
    let ns = Netns::new();
    let worker = ns.worker();
    let (mut watch, _) = Watch::start(&ns, &["--interval", "300ms", "--no-tcp-metrics"]);
    let _new = worker.exec(|| TcpListener::bind("127.0.0.1:7002").unwrap());
    let alert = watch.next_of("alert", Duration::from_secs(30));
    assert_eq!(alert["alert"], "new_listener", "{alert}");
    assert_eq!(alert["port"], 7002, "{alert}");
    assert_eq!(alert["pid"], std::process::id(), "{alert}");
    let comm = std::fs::read_to_string("/proc/self/comm").unwrap();
    assert_eq!(alert["comm"], comm.trim_end(), "{alert}");
}

/// `new_listener`: a warning when a socket listens where nothing listened
/// at the start (and nothing is allowed), with its process and user; a
/// clear when it stops.
#[test]
fn a_new_listener_is_an_alert_until_it_stops() {
    use std::net::TcpListener;
    let ns = Netns::new();
    let config = TempFile::new("alerts.toml", "[alerts.listeners]\nallow = [\"7000\"]\n");
    let worker = ns.worker();
    let _old = worker.exec(|| TcpListener::bind("127.0.0.1:6000").unwrap());
    let (mut watch, _) = Watch::start(
        &ns,
        &["--interval", "300ms", "--events", "--config", config.arg()],
    );
    let new = worker.exec(|| {
        (
            TcpListener::bind("127.0.0.1:7000").unwrap(),
            TcpListener::bind("[::1]:7001").unwrap(),
        )
    });
    let alert = watch.next_of("alert", Duration::from_secs(30));
    assert_eq!(alert["alert"], "new_listener", "{alert}");
    assert_eq!(alert["status"], "warning");
    assert_eq!(alert["port"], 7001, "only the one not allowed: {alert}");
    assert_eq!(alert["addr"], "::1");
    assert_eq!(alert["ip_version"], 6);
    assert_eq!(alert["pid"], std::process::id());
    // SAFETY: getuid has no preconditions.
    assert_eq!(alert["uid"], unsafe { libc::getuid() });
    // `check --alerts` asks the watch.
    let check = |ns: &Netns| {
        let out = ns.netconn(&["check", "--alerts"]).output().unwrap();
        (
            String::from_utf8_lossy(&out.stdout).trim_end().to_owned(),
            out.status.code(),
        )
    };
    let (text, code) = check(&ns);
    assert_eq!(code, Some(1), "{text}");
    assert!(
        text.starts_with("new_listener [::1]:7001 [WARNING]|'alerts_warning'=1"),
        "{text}"
    );
    worker.exec(move || drop(new));
    let clear = watch.next_of("alert", Duration::from_secs(30));
    assert_eq!(clear["status"], "clear", "{clear}");
    assert_eq!(clear["port"], 7001);
    assert_eq!(clear["since"], alert["since"]);
    let (text, code) = check(&ns);
    assert_eq!(
        (text.as_str(), code),
        (
            "No active alerts|'alerts_warning'=0 'alerts_critical'=0",
            Some(0)
        )
    );
    // Without a watch there is no one to ask: UNKNOWN.
    drop(watch);
    let (text, code) = check(&ns);
    assert_eq!(code, Some(3), "{text}");
    assert!(text.contains("no running netconn watch"), "{text}");
}

/// Handshakes begun and never completed, on their listener: raw SYNs whose
/// SYN-ACKs are dropped (their request sockets expire after one
/// retransmission), beside a listener whose connects complete.
#[test]
fn handshakes_that_never_complete_count_on_their_listener() {
    let ns = Netns::new();
    let in_ns = |args: &[&str]| ns.exec_ok(args);
    in_ns(&["sysctl", "-q", "-w", "net.ipv4.tcp_synack_retries=1"]);
    netconn_integration::drop_synacks(&ns, "tcp sport 9100");
    let worker = ns.worker();
    let listeners = worker.exec(|| {
        (
            std::net::TcpListener::bind("127.0.0.1:9100").unwrap(),
            std::net::TcpListener::bind("127.0.0.1:9200").unwrap(),
        )
    });
    let (mut watch, _) = Watch::start(&ns, &["--interval", "500ms"]);
    netconn_integration::raw_syns(&ns, 9100, 100, "127.0.0.3");
    let _clients = worker.exec(|| {
        (0..5)
            .map(|_| std::net::TcpStream::connect("127.0.0.1:9200").unwrap())
            .collect::<Vec<_>>()
    });
    // Long enough for the request sockets to expire (1 s, then 2 s).
    let mut sums: std::collections::BTreeMap<u64, (u64, u64, u64)> = Default::default();
    let mut last_backlog = 0;
    for _ in 0..14 {
        let record = watch.next_record(Duration::from_secs(30));
        for l in record["listeners"].as_array().unwrap() {
            let port = l["port"].as_u64().unwrap();
            let e = sums.entry(port).or_default();
            e.0 += l["handshakes_started"].as_u64().unwrap();
            e.1 += l["accepted"].as_u64().unwrap();
            e.2 += l["handshakes_failed"].as_u64().unwrap();
            if port == 9100 {
                last_backlog = l["syn_backlog"].as_u64().unwrap();
            }
        }
    }
    assert_eq!(last_backlog, 0, "the request sockets expired");
    assert_eq!(
        sums[&9100],
        (100, 0, 100),
        "9100: started, accepted, failed"
    );
    assert_eq!(sums[&9200], (5, 5, 0), "9200: started, accepted, failed");
    drop(listeners);
}
