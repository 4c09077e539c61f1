//! Port groups: per-series counts, live from events, equal /proc/net
//! filtered by local address and port; bad configurations refused.

use std::collections::BTreeMap;
use std::net::{IpAddr, Shutdown, TcpListener, TcpStream};

use netconn_integration::{Netns, TempFile, Watch, mix, proc_state_name};

const CONFIG: &str = r#"
[tags]
suite = "ports"

[[addr_ports]]
ports = ["8080", "127.0.0.1:7070"]
[addr_ports.tags]
service = "web"

[[addr_ports]]
ports_match = ["*:9090"]
"#;

/// (addr_port, ip_version, state) -> count.
type Series = BTreeMap<(String, u64, String), i64>;

/// /proc/net/tcp's address: each 32-bit word's bytes in host order.
fn proc_addr(hex: &str) -> IpAddr {
    let mut b = [0u8; 16];
    for (w, chunk) in hex.as_bytes().chunks(8).enumerate() {
        let word = u32::from_str_radix(std::str::from_utf8(chunk).unwrap(), 16).unwrap();
        b[w * 4..w * 4 + 4].copy_from_slice(&word.to_ne_bytes());
    }
    if hex.len() == 8 {
        IpAddr::from([b[0], b[1], b[2], b[3]])
    } else {
        IpAddr::from(b)
    }
}

/// The configuration's rules, written out for these ports.
fn series_of(addr: IpAddr, port: u16) -> Option<String> {
    let v4 = match addr {
        IpAddr::V6(a) => a.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(addr),
        a => a,
    };
    match port {
        8080 => Some("8080".into()),
        7070 if v4 == IpAddr::from([127, 0, 0, 1]) => Some("127.0.0.1:7070".into()),
        9090 => Some(match addr {
            IpAddr::V4(a) => format!("{a}:9090"),
            IpAddr::V6(a) => format!("[{a}]:9090"),
        }),
        _ => None,
    }
}

fn truth(ns: &Netns) -> Series {
    ns.run(|| {
        let mut t = Series::new();
        for (file, version) in [("tcp", 4), ("tcp6", 6)] {
            let text = std::fs::read_to_string(format!("/proc/thread-self/net/{file}")).unwrap();
            for line in text.lines().skip(1) {
                let cols: Vec<&str> = line.split_whitespace().collect();
                let (addr, port) = cols[1].split_once(':').unwrap();
                let port = u16::from_str_radix(port, 16).unwrap();
                let state = proc_state_name(cols[3]);
                if let Some(s) = series_of(proc_addr(addr), port) {
                    *t.entry((s, version, state.to_owned())).or_default() += 1;
                }
            }
        }
        t
    })
}

fn series(record: &serde_json::Value) -> Series {
    let mut t = Series::new();
    for s in record["ports"].as_array().expect("ports") {
        for (state, n) in s["states"].as_object().unwrap() {
            let n = n.as_i64().unwrap();
            if n != 0 {
                let key = s["addr_port"].as_str().unwrap().to_owned();
                t.insert((key, s["ip_version"].as_u64().unwrap(), state.clone()), n);
            }
        }
    }
    t
}

/// Connections to every listener, some closed by either side, some kept.
fn traffic(listeners: &[TcpListener], rounds: usize) -> Vec<TcpStream> {
    let mut kept = Vec::new();
    for round in 0..rounds {
        for l in listeners {
            let c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
            let (s, _) = l.accept().unwrap();
            match round % 4 {
                0 => kept.extend([c, s]),
                // Server closes first: TIME_WAIT on the watched port.
                1 => {
                    drop(s);
                    mix::wait_for(|| c.peek(&mut [0]).map(|n| n == 0).unwrap_or(true));
                    drop(c);
                }
                // Client closes: CLOSE_WAIT on the server side.
                2 => {
                    c.shutdown(Shutdown::Both).unwrap();
                    kept.push(s);
                }
                _ => drop((c, s)),
            }
        }
    }
    kept
}

#[test]
fn series_equal_proc_net_by_local_port() {
    let ns = Netns::new();
    let config = TempFile::new("ports.toml", CONFIG);
    let worker = ns.worker();
    // Some sockets exist before netconn starts.
    let early = worker.exec(|| {
        let l = TcpListener::bind("127.0.0.1:8080").unwrap();
        let kept = traffic(std::slice::from_ref(&l), 3);
        (l, kept)
    });
    let (mut watch, first) = Watch::start(&ns, &["--interval", "200ms", "--config", config.arg()]);
    assert_eq!(first["source"], "ebpf", "{first}");
    assert_eq!(first["tags"]["suite"], "ports", "{first}");
    assert_eq!(series(&first), truth(&ns), "{first}");

    let late = worker.exec(|| {
        let listeners: Vec<TcpListener> = [
            "[::1]:8080",
            "127.0.0.1:7070",
            "127.0.0.2:7070",
            "127.0.0.1:9090",
            "127.0.0.2:9090",
            "[::1]:9090",
            "127.0.0.1:6060",
        ]
        .iter()
        .map(|a| TcpListener::bind(a).unwrap())
        .collect();
        let kept = traffic(&listeners, 41);
        (listeners, kept)
    });
    worker.exec(move || drop(early));
    ns.run(mix::settle);
    let record = watch.fresh_record();
    let want = truth(&ns);
    assert!(
        want.keys()
            .any(|(s, _, st)| s == "8080" && st == "TIME_WAIT"),
        "{want:?}"
    );
    assert!(
        want.keys().any(|(s, v, _)| s == "[::1]:9090" && *v == 6),
        "{want:?}"
    );
    assert_eq!(series(&record), want, "{record}");
    assert_eq!(record["lost_events"], 0);
    let web = record["ports"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["addr_port"] == "8080")
        .unwrap();
    assert_eq!(web["tags"]["service"], "web");

    worker.exec(move || drop(late));
    let record = watch.fresh_record();
    assert_eq!(series(&record), truth(&ns), "{record}");
    drop(watch);
}

#[test]
fn bad_configuration_is_one_line_and_exit_2() {
    let ns = Netns::new();
    let config = TempFile::new("bad.toml", "");
    for (text, want) in [
        (
            "[[addr_ports]]\nports = [\"80\", \"web\"]\n",
            ":2: addr_ports.ports: \"web\"",
        ),
        ("interval = \"soon\"\n", ":1: interval:"),
        ("[tags]\nx = \"y\"\n[bogus]\n", ":3: unknown field `bogus`"),
    ] {
        config.write(text);
        let out = ns
            .netconn(&["watch", "--config", config.arg()])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{text:?}: {err}");
        assert!(out.stdout.is_empty(), "nothing started: {:?}", out.stdout);
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.contains(config.arg()) && err.contains(want), "{err}");
    }
    // A missing file named on the command line is an error too.
    let out = ns
        .netconn(&["watch", "--config", "/nonexistent/netconn.toml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    // And environment overrides are checked the same way.
    let out = ns
        .netconn(&["watch", "-n", "1"])
        .env("NETCONN_ADDR_PORTS", "80")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("NETCONN_ADDR_PORTS"));
}

/// With `--all-namespaces`, each namespace's record carries its own
/// series, live from the events of its own sockets.
#[test]
fn every_namespace_has_its_own_series() {
    use std::os::unix::fs::MetadataExt;
    let a = Netns::new();
    let b = Netns::new();
    let config = TempFile::new("ports-all.toml", CONFIG);
    let (in_a, in_b) = (a.worker(), b.worker());
    // Before netconn starts: the same ports in both, other traffic.
    let early_a = in_a.exec(|| {
        let l = TcpListener::bind("127.0.0.1:8080").unwrap();
        let kept = traffic(std::slice::from_ref(&l), 3);
        (l, kept)
    });
    let early_b = in_b.exec(|| {
        let l = TcpListener::bind("127.0.0.1:8080").unwrap();
        let kept = traffic(std::slice::from_ref(&l), 9);
        (l, kept)
    });
    let mut cmd = std::process::Command::new(netconn_integration::netconn_bin());
    cmd.args(["watch", "-A", "-i", "200ms", "--config", config.arg()]);
    let (mut watch, _) = Watch::start_cmd(cmd);
    let late = in_a.exec(|| {
        let listeners: Vec<TcpListener> = ["[::1]:9090", "127.0.0.1:7070"]
            .iter()
            .map(|x| TcpListener::bind(x).unwrap())
            .collect();
        let kept = traffic(&listeners, 21);
        (listeners, kept)
    });
    let more_b = in_b.exec(move || traffic(std::slice::from_ref(&early_b.0), 6));
    a.run(mix::settle);
    b.run(mix::settle);
    let inode = |ns: &Netns| {
        std::fs::metadata(format!("/run/netns/{}", ns.name))
            .unwrap()
            .ino()
    };
    let mut last = String::new();
    for _ in 0..5 {
        let (round, _) = watch.next_round(std::time::Duration::from_secs(30));
        last.clear();
        for ns in [&a, &b] {
            let record = round
                .iter()
                .find(|r| r["type"] == "counts" && r["netns"] == inode(ns))
                .unwrap_or_else(|| panic!("no record for {}", ns.name));
            if series(record) != truth(ns) {
                last += &format!("\n{}: {:?} vs {:?}", ns.name, series(record), truth(ns));
            }
        }
        if last.is_empty() {
            break;
        }
    }
    assert!(last.is_empty(), "series differ:{last}");
    drop((early_a, late, more_b));
}

/// DataKit's `udp_socket`: UDP sockets bound to a group's port, per IP
/// version, equal to `ss -uan` for that port, before and after the watch
/// started and after some close.
#[test]
fn udp_sockets_count_in_their_group() {
    use std::net::UdpSocket;
    let ns = Netns::new();
    let config = TempFile::new(
        "udp-ports.toml",
        "[[addr_ports]]\nports = [\"5353\", \"5354\"]\n",
    );
    let worker = ns.worker();
    let before = worker.exec(|| UdpSocket::bind("127.0.0.1:5353").unwrap());
    let (mut watch, first) = Watch::start(&ns, &["--interval", "300ms", "--config", config.arg()]);
    let udp_of = |record: &serde_json::Value, port: &str, version: u64| {
        record["ports"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["addr_port"] == port && s["ip_version"] == version)
            .unwrap_or_else(|| panic!("no {port} v{version}: {record}"))["udp_socket"]
            .as_i64()
            .unwrap()
    };
    let ss_count = |port: u16, v6: bool| {
        let family = if v6 { "-6" } else { "-4" };
        ns.run_cmd("ss", &["-uanH", family, &format!("sport = :{port}")])
            .lines()
            .count() as i64
    };
    assert_eq!(udp_of(&first, "5353", 4), 1, "{first}");
    let after = worker.exec(|| {
        (
            UdpSocket::bind("127.0.0.1:5354").unwrap(),
            UdpSocket::bind("[::1]:5354").unwrap(),
            UdpSocket::bind("127.0.0.2:5354").unwrap(),
            // Not in a group.
            UdpSocket::bind("127.0.0.1:5355").unwrap(),
        )
    });
    watch.next_record(std::time::Duration::from_secs(30));
    let record = watch.next_record(std::time::Duration::from_secs(30));
    assert_eq!(
        udp_of(&record, "5354", 4),
        ss_count(5354, false),
        "{record}"
    );
    assert_eq!(udp_of(&record, "5354", 4), 2);
    assert_eq!(udp_of(&record, "5354", 6), ss_count(5354, true));
    assert_eq!(udp_of(&record, "5354", 6), 1);
    assert_eq!(udp_of(&record, "5353", 4), 1);
    drop(before);
    worker.exec(move || drop(after));
    watch.next_record(std::time::Duration::from_secs(30));
    let record = watch.next_record(std::time::Duration::from_secs(30));
    for (port, v) in [("5353", 4), ("5354", 4), ("5354", 6)] {
        assert_eq!(udp_of(&record, port, v), 0, "{port} v{v}: {record}");
    }
}
