//! The DataKit drop-in: DataKit's own netstat.conf and ENV_INPUT_NETSTAT_*
//! variables, and `watch --format datakit|line` writing its `netstat` and
//! `netstat_port` measurements, whose fields equal the namespace's truth.

use std::net::{TcpListener, TcpStream, UdpSocket};
use std::process::Stdio;
use std::time::Duration;

use netconn_integration::{Netns, TempFile, Watch, truth};
use serde_json::Value;

/// DataKit's netstat.conf as DataKit's sample writes it.
const NETSTAT_CONF: &str = r#"
[[inputs.netstat]]
  ##(Optional) Collect interval, default is 10 seconds
  interval = '1s'

[[inputs.netstat.addr_ports]]
  ports = ["8080"]
[inputs.netstat.addr_ports.tags]
  service = "http"

[inputs.netstat.tags]
  some_tag = "some_value"
"#;

/// A watch of `ns` with DataKit's file and a DataKit variable.
fn watch(ns: &Netns, conf: &TempFile, format: &str) -> Watch {
    let mut cmd = ns.netconn(&["watch", "--config", conf.arg(), "--format", format]);
    cmd.env("ENV_INPUT_NETSTAT_TAGS", "env_tag=from_env")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    Watch::start_raw(cmd)
}

#[test]
fn datakits_file_variables_and_measurements() {
    let ns = Netns::new();
    let conf = TempFile::new("datakit.conf", NETSTAT_CONF);
    let worker = ns.worker();
    let _held = worker.exec(|| {
        let l = TcpListener::bind("127.0.0.1:8080").unwrap();
        let c: Vec<TcpStream> = (0..3)
            .map(|_| TcpStream::connect("127.0.0.1:8080").unwrap())
            .collect();
        let s: Vec<TcpStream> = (0..3).map(|_| l.accept().unwrap().0).collect();
        let u = (
            UdpSocket::bind("127.0.0.1:8080").unwrap(),
            UdpSocket::bind("127.0.0.1:0").unwrap(),
        );
        (l, c, s, u)
    });
    let truth = truth(&ns);
    let n = |ct: &str, state: &str| {
        truth
            .get(&(ct.to_owned(), state.to_owned()))
            .copied()
            .unwrap_or(0)
    };

    let mut w = watch(&ns, &conf, "datakit");
    let mut points: Vec<Value> = Vec::new();
    while points.len() < 2 {
        let line = w.next_line(Duration::from_secs(30));
        points.push(serde_json::from_str(&line).unwrap_or_else(|e| panic!("{line}: {e}")));
    }
    let netstat = &points[0];
    assert_eq!(netstat["measurement"], "netstat", "{netstat}");
    assert_eq!(netstat["tags"]["ip_version"], "4");
    assert_eq!(netstat["tags"]["some_tag"], "some_value");
    assert_eq!(netstat["tags"]["env_tag"], "from_env");
    assert!(netstat["tags"]["host"].is_string());
    let fields = &netstat["fields"];
    assert_eq!(fields["tcp_established"], n("tcp", "ESTABLISHED"));
    assert_eq!(fields["tcp_listen"], n("tcp", "LISTEN"));
    assert_eq!(fields["udp_socket"], n("udp", "NONE"));
    assert_eq!(fields["udp_socket"], 2);
    assert_eq!(fields["tcp_none"], 0);
    assert!(fields.get("pid").is_none(), "netstat has no pid: {netstat}");
    assert!(netstat["time"].as_i64().unwrap() > 1_700_000_000_000_000_000);

    let port = &points[1];
    assert_eq!(port["measurement"], "netstat_port", "{port}");
    assert_eq!(port["tags"]["addr_port"], "8080");
    assert_eq!(port["tags"]["service"], "http");
    assert_eq!(port["tags"]["ip_version"], "4");
    // The server ends (local port 8080), the listener, the UDP socket.
    assert_eq!(port["fields"]["tcp_established"], 3);
    assert_eq!(port["fields"]["tcp_listen"], 1);
    assert_eq!(port["fields"]["udp_socket"], 1);
    assert_eq!(port["fields"]["pid"], 0);
    drop(w);

    // The same points in line protocol.
    let mut w = watch(&ns, &conf, "line");
    let line = w.next_line(Duration::from_secs(30));
    assert!(line.starts_with("netstat,"), "{line}");
    assert!(line.contains(",ip_version=4,"), "{line}");
    assert!(
        line.contains(&format!("tcp_established={}i", n("tcp", "ESTABLISHED"))),
        "{line}"
    );
    let line = w.next_line(Duration::from_secs(30));
    assert!(line.starts_with("netstat_port,addr_port=8080,"), "{line}");
    assert!(line.contains("udp_socket=1i"), "{line}");
}

/// Entries DataKit accepts are accepted (DataKit's own older sample has
/// `"0"`; `*:8081` in `ports` and `127.0.0.1:*` in `ports_match` match
/// nothing there): the watch runs, names each such entry once on stderr,
/// and its series are those DataKit's would be.
#[test]
fn datakits_lenient_entries_run_and_are_named() {
    let ns = Netns::new();
    let conf = TempFile::new(
        "datakit-lenient.conf",
        "[[inputs.netstat]]\ninterval = '1s'\n\
         [[inputs.netstat.addr_ports]]\nports = [\"8080\", \"0\", \"*:8081\"]\n\
         [[inputs.netstat.addr_ports]]\nports_match = [\"127.0.0.1:*\", \"*:9090\"]\n",
    );
    let worker = ns.worker();
    let _held = worker.exec(|| {
        let a = TcpListener::bind("127.0.0.1:8081").unwrap();
        let b = TcpListener::bind("127.0.0.1:9090").unwrap();
        (a, b)
    });
    let out = ns
        .netconn(&["watch", "--config", conf.arg(), "--count", "1"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("\"*:8081\" matches no socket"), "{err}");
    assert!(err.contains("\"127.0.0.1:*\" is skipped"), "{err}");
    let text = String::from_utf8_lossy(&out.stdout);
    let record: Value =
        serde_json::from_str(text.lines().next().expect("a record")).expect("a counts record");
    let series: Vec<&str> = record["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["addr_port"].as_str().unwrap())
        .collect();
    // 8081 is in no series (as in DataKit); *:9090 one per address.
    assert!(series.contains(&"127.0.0.1:9090"), "{series:?}");
    assert!(!series.iter().any(|s| s.contains("8081")), "{series:?}");
}
