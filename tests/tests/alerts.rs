//! `conn_spike` and `syn_flood` on real traffic in a namespace of the
//! test's own: a steady churn raises nothing, a burst on one port does
//! (naming the burst's source) and clears when it ends; raw SYNs whose
//! SYN-ACKs are dropped raise `syn_flood` naming their source.

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use netconn_integration::{Netns, TempFile, Watch, run_ok};
use serde_json::Value;

/// A listener on `port` in the worker's namespace that accepts and closes
/// everything until `stop`.
fn serve(port: u16, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<()> {
    let l = TcpListener::bind(("127.0.0.1", port)).unwrap();
    l.set_nonblocking(true).unwrap();
    std::thread::spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            match l.accept() {
                Ok((s, _)) => drop(s),
                Err(_) => std::thread::sleep(Duration::from_millis(1)),
            }
        }
    })
}

/// `n` connections to `port` from `source`, one every `every` (bounded:
/// `n` is).
fn churn(port: u16, source: [u8; 4], n: usize, every: Duration) {
    use socket2::{Domain, Socket, Type};
    let to: SocketAddr = ([127, 0, 0, 1], port).into();
    for _ in 0..n {
        let s = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
        s.bind(&SocketAddr::from((source, 0)).into()).unwrap();
        let _ = s.connect(&to.into());
        drop(s);
        std::thread::sleep(every);
    }
}

fn conn_spikes(records: &[Value]) -> Vec<&Value> {
    records
        .iter()
        .filter(|r| r["type"] == "alert" && r["alert"] == "conn_spike")
        .collect()
}

/// Every record the watch wrote within `wait`.
fn records_for(watch: &mut Watch, wait: Duration) -> Vec<Value> {
    let end = Instant::now() + wait;
    let mut out = Vec::new();
    while let Some(left) = end.checked_duration_since(Instant::now()) {
        match watch.try_next(left) {
            Some(r) => out.push(r),
            None => break,
        }
    }
    out
}

#[test]
fn a_burst_on_one_port_is_a_spike_and_a_steady_churn_is_not() {
    let ns = Netns::new();
    let config = TempFile::new(
        "spike.toml",
        "[alerts.conn_spike]\nwindow = \"20s\"\nwarmup = \"5s\"\nmin_rate = 5\n",
    );
    let worker = ns.worker();
    let stop = Arc::new(AtomicBool::new(false));
    let server = {
        let stop = stop.clone();
        worker.exec(move || serve(8080, stop))
    };
    let (mut watch, _) = Watch::start(&ns, &["--interval", "1s", "--config", config.arg()]);
    // A steady churn, 10 connections a second for 60 s, from 127.0.0.1.
    let steady = ns.worker();
    let steady_run = std::thread::spawn(move || {
        steady.exec(|| churn(8080, [127, 0, 0, 1], 600, Duration::from_millis(100)))
    });
    let during = records_for(&mut watch, Duration::from_secs(62));
    steady_run.join().unwrap();
    assert!(
        conn_spikes(&during).is_empty(),
        "a steady churn alerted: {:?}",
        conn_spikes(&during)
    );
    assert!(during.iter().filter(|r| r["type"] == "counts").count() >= 50);

    // A burst: 20 times the rate for 3 s, from 127.0.0.2.
    worker.exec(|| churn(8080, [127, 0, 0, 2], 600, Duration::from_millis(5)));
    let after = records_for(&mut watch, Duration::from_secs(3));
    let raised = conn_spikes(&after);
    let inbound = raised
        .iter()
        .find(|r| r["direction"] == "inbound")
        .expect("the burst raised conn_spike within two intervals");
    assert_eq!(inbound["port"], 8080, "{inbound}");
    assert!(["warning", "critical"].contains(&inbound["status"].as_str().unwrap()));
    assert!(inbound["rate"].as_f64().unwrap() > 5.0 * inbound["baseline"].as_f64().unwrap());
    // Who connected in the burst: the kernel's count per peer.
    assert_eq!(inbound["top_remote"][0]["addr"], "127.0.0.2", "{inbound}");
    // The clients are in the namespace too: their destination spiked.
    let outbound = raised
        .iter()
        .find(|r| r["direction"] == "outbound")
        .expect("an outbound spike to 127.0.0.1:8080");
    assert_eq!(
        (&outbound["addr"], &outbound["port"]),
        (&"127.0.0.1".into(), &8080.into())
    );
    // Back to nothing: the alert clears.
    // Back to nothing: the alert clears (the burst was over when the
    // records above were read; its clear may be among them).
    let mut all = after.clone();
    all.extend(records_for(&mut watch, Duration::from_secs(4)));
    let inbound: Vec<&Value> = conn_spikes(&all)
        .into_iter()
        .filter(|r| r["direction"] == "inbound")
        .collect();
    assert_eq!(
        inbound.last().map(|r| r["status"].clone()),
        Some("clear".into()),
        "{inbound:?}"
    );
    stop.store(true, Ordering::Relaxed);
    server.join().unwrap();
}

#[test]
fn raw_syns_left_unanswered_are_a_syn_flood_naming_their_source() {
    let ns = Netns::new();
    let config = TempFile::new("synflood.toml", "[alerts.syn_flood]\nsyn_recv = 50\n");
    // SYN-ACKs dropped where they come back in: the request sockets stay
    // (dropping them on output would free them at once).
    netconn_integration::drop_synacks(&ns, "");
    let worker = ns.worker();
    let _listener = worker.exec(|| {
        use socket2::{Domain, Socket, Type};
        let l = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
        l.bind(&SocketAddr::from(([127, 0, 0, 1], 9000)).into())
            .unwrap();
        l.listen(1024).unwrap();
        l
    });
    let (mut watch, _) = Watch::start(&ns, &["--interval", "500ms", "--config", config.arg()]);
    // 200 raw SYNs from 127.0.0.3, 2 ms apart.
    netconn_integration::raw_syns(&ns, 9000, 200, "127.0.0.3");
    let records = records_for(&mut watch, Duration::from_secs(3));
    let flood = records
        .iter()
        .find(|r| r["type"] == "alert" && r["alert"] == "syn_flood")
        .unwrap_or_else(|| panic!("no syn_flood in {records:?}"));
    assert_eq!(flood["port"], 9000, "{flood}");
    assert_eq!(flood["addr"], "127.0.0.1");
    assert!(flood["syn_recv"].as_u64().unwrap() >= 50, "{flood}");
    assert_eq!(flood["top_sources"][0]["addr"], "127.0.0.3", "{flood}");
    // `check --alerts` sees it.
    let out = ns.netconn(&["check", "--alerts"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("syn_flood 127.0.0.1:9000"), "{text}");
    assert!(matches!(out.status.code(), Some(1 | 2)), "{text}");
}

#[test]
fn one_address_touching_many_closed_ports_is_a_port_scan() {
    let ns = Netns::new();
    let config = TempFile::new(
        "scan.toml",
        "[alerts.port_scan]\nports = 50\ncritical = 3\nwindow = \"30s\"\n",
    );
    let worker = ns.worker();
    let stop = Arc::new(AtomicBool::new(false));
    let server = {
        let stop = stop.clone();
        worker.exec(move || serve(7000, stop))
    };
    let (mut watch, _) = Watch::start(&ns, &["--interval", "500ms", "--config", config.arg()]);
    worker.exec(|| {
        use socket2::{Domain, Socket, Type};
        // 200 closed ports from 127.0.0.2: each connect is refused.
        for port in 1000..1200u16 {
            let s = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
            s.bind(&SocketAddr::from(([127, 0, 0, 2], 0)).into())
                .unwrap();
            let to: SocketAddr = ([127, 0, 0, 1], port).into();
            assert!(s.connect(&to.into()).is_err(), "port {port} is closed");
        }
        // 200 connections to one open port from 127.0.0.3: no scan.
        churn(7000, [127, 0, 0, 3], 200, Duration::from_millis(1));
    });
    let records = records_for(&mut watch, Duration::from_secs(3));
    let scans: Vec<&Value> = records
        .iter()
        .filter(|r| r["type"] == "alert" && r["alert"] == "port_scan")
        .collect();
    // Only 127.0.0.2 (a warning first, if the ports spanned intervals).
    assert!(!scans.is_empty(), "no port_scan in {records:?}");
    assert!(scans.iter().all(|s| s["addr"] == "127.0.0.2"), "{scans:?}");
    let scan = scans[scans.len() - 1];
    assert_eq!(
        scan["status"], "critical",
        "200 ports: past 3 times 50: {scan}"
    );
    assert_eq!(scan["ports"], 200, "{scan}");
    let sample: Vec<u64> = scan["sample"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_u64().unwrap())
        .collect();
    assert_eq!(sample, (1000..1010).collect::<Vec<u64>>());
    // Active alerts reach the plugin (and the exporter, from the same list).
    let out = ns.netconn(&["check", "--alerts"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("port_scan 127.0.0.2"), "{text}");
    assert_eq!(out.status.code(), Some(2), "critical: {text}");
    stop.store(true, Ordering::Relaxed);
    server.join().unwrap();
}

/// The resident memory of a process, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("VmRSS")
}

/// 100,000 SYNs from 100,000 distinct loopback addresses to a closed port:
/// the kernel's peer table fills, what it has no room for is counted in
/// `peers_untracked`, and netconn's memory stays within its bounds.
#[test]
fn a_flood_of_distinct_sources_stays_within_the_bounds() {
    let ns = Netns::new();
    let (mut watch, _) = Watch::start(&ns, &["--interval", "500ms"]);
    let before = rss_kib(watch.child.id());
    // Raw SYNs from 127.x.y.z (every one a new source) to port 9, where
    // nothing listens: each is answered with a reset.
    let script = r#"
import random, socket, struct
def csum(b):
    if len(b) % 2: b += b'\0'
    s = sum(struct.unpack('!%dH' % (len(b) // 2), b))
    s = (s >> 16) + (s & 0xffff); s += s >> 16
    return ~s & 0xffff
raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
dst = socket.inet_aton('127.0.0.1')
for i in range(100000):
    src = bytes([127, 1 + (i >> 16) % 254, (i >> 8) & 255, i & 255])
    tcp = struct.pack('!HHIIBBHHH', 40000, 9, i, 0, 5 << 4, 0x02, 1024, 0, 0)
    pseudo = src + dst + struct.pack('!BBH', 0, socket.IPPROTO_TCP, len(tcp))
    tcp = tcp[:16] + struct.pack('!H', csum(pseudo + tcp)) + tcp[18:]
    ip = struct.pack('!BBHHHBBH4s4s', 0x45, 0, 20 + len(tcp), i & 0xffff, 0, 64,
                     socket.IPPROTO_TCP, 0, src, dst)
    raw.sendto(ip + tcp, ('127.0.0.1', 0))
"#;
    run_ok("ip", &["netns", "exec", &ns.name, "python3", "-c", script]);
    let records = records_for(&mut watch, Duration::from_secs(3));
    let untracked: u64 = records
        .iter()
        .filter(|r| r["type"] == "counts")
        .map(|r| r["tcp_metrics"]["peers_untracked"].as_u64().unwrap_or(0))
        .sum();
    let resets: u64 = records
        .iter()
        .filter(|r| r["type"] == "counts")
        .map(|r| r["tcp_metrics"]["resets_sent"].as_u64().unwrap_or(0))
        .sum();
    assert!(resets >= 90_000, "the SYNs were answered: {resets} resets");
    // 8192 entries per two intervals: most of 100,000 sources found no room.
    assert!(untracked > 0, "an overflow, counted: {untracked}");
    // No source touched two ports: no scan.
    assert!(
        !records.iter().any(|r| r["alert"] == "port_scan"),
        "a port_scan from single-port sources"
    );
    let after = rss_kib(watch.child.id());
    eprintln!("{resets} resets, {untracked} untracked, RSS {before} -> {after} KiB");
    assert!(
        after < before + 32 * 1024,
        "memory grew from {before} KiB to {after} KiB"
    );
}

/// With `--all-namespaces`, an alert names the namespace and its owner.
#[test]
fn every_namespace_alert_carries_its_owner() {
    let ns = Netns::new();
    let inode = std::fs::metadata(format!("/run/netns/{}", ns.name))
        .map(|m| std::os::unix::fs::MetadataExt::ino(&m))
        .unwrap();
    let mut cmd = std::process::Command::new(netconn_integration::netconn_bin());
    cmd.args(["watch", "--all-namespaces", "-i", "500ms"]);
    let (mut watch, _) = Watch::start_cmd(cmd);
    // Its first visit: what listens then is known.
    let deadline = Instant::now() + Duration::from_secs(30);
    while watch.next_record(Duration::from_secs(30))["netns"] != inode {
        assert!(Instant::now() < deadline, "namespace {inode} never counted");
    }
    let worker = ns.worker();
    let _l = worker.exec(|| TcpListener::bind("127.0.0.1:7007").unwrap());
    let deadline = Instant::now() + Duration::from_secs(30);
    let alert = loop {
        let a = watch.next_of("alert", Duration::from_secs(30));
        if a["netns"] == inode && a["alert"] == "new_listener" {
            break a;
        }
        assert!(Instant::now() < deadline, "no new_listener in {inode}");
    };
    assert_eq!(alert["port"], 7007, "{alert}");
    assert_eq!(alert["owner"]["netns_name"], ns.name.as_str(), "{alert}");
}
