//! `watch --events`: a record when a connection opens and when it closes,
//! with the process, the direction and, at close, the kernel's figures,
//! which must agree with `ss -tin` taken just before the close.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

use netconn_integration::{Netns, SsInfo, Watch, ss_tcp_info, veth};
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
