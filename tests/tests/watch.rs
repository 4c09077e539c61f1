//! `netconn watch` keeps exact counts from kernel events.

use netconn_integration::{Netns, Watch, mix, table_of, truth};

#[test]
fn counts_built_after_start_equal_truth() {
    let ns = Netns::new();
    let (mut watch, first) = Watch::start(&ns, &["--interval", "200ms"]);
    assert_eq!(first["source"], "ebpf", "first record: {first}");
    assert_eq!(table_of(&first), truth(&ns), "empty namespace");

    let worker = ns.worker();
    let held = worker.exec(|| mix::build(7));
    let record = watch.fresh_record();
    let want = truth(&ns);
    assert_eq!(table_of(&record), want);
    assert_eq!(record["lost_events"], 0);
    assert_eq!(record["source"], "ebpf");

    // Tear half of it down: counts follow.
    worker.exec(move || drop(held));
    let record = watch.fresh_record();
    assert_eq!(table_of(&record), truth(&ns));
}

#[test]
fn sockets_from_before_start_and_changes_after_are_both_counted() {
    let ns = Netns::new();
    let worker = ns.worker();
    let early = worker.exec(|| mix::build(11));
    let (mut watch, first) = Watch::start(&ns, &["--interval", "200ms"]);
    assert_eq!(table_of(&first), truth(&ns));

    let late = worker.exec(|| mix::build(12));
    worker.exec(move || drop(early));
    let record = watch.fresh_record();
    assert_eq!(table_of(&record), truth(&ns));
    drop(late);
}

#[test]
fn other_namespaces_do_not_leak_in() {
    let watched = Netns::new();
    let other = Netns::new();
    let (mut watch, _) = Watch::start(&watched, &["--interval", "200ms"]);
    let worker = other.worker();
    let held = worker.exec(|| mix::build(13));
    let record = watch.fresh_record();
    assert!(!truth(&other).is_empty());
    assert_eq!(table_of(&record), truth(&watched));
    assert!(table_of(&record).is_empty(), "{record}");
    drop(held);
}

/// UDP sockets older than netconn: bound ones are closed, unbound ones
/// bind by sendto() and connect() (autobind) after it started. Live
/// counts follow without a resync.
#[test]
fn udp_sockets_from_before_start_are_followed_live() {
    use socket2::{Domain, SockAddr, Socket, Type};
    use std::net::{SocketAddr, UdpSocket};

    let ns = Netns::new();
    let worker = ns.worker();
    let addrs: [SocketAddr; 2] = ["127.0.0.1:0".parse().unwrap(), "[::1]:0".parse().unwrap()];
    let (bound, unbound) = worker.exec(move || {
        let bound: Vec<UdpSocket> = (0..6)
            .map(|i| UdpSocket::bind(addrs[i % 2]).unwrap())
            .collect();
        let unbound: Vec<Socket> = (0..6)
            .map(|i| Socket::new(Domain::for_address(addrs[i % 2]), Type::DGRAM, None).unwrap())
            .collect();
        (bound, unbound)
    });
    let (mut watch, first) = Watch::start(&ns, &["--interval", "200ms"]);
    assert_eq!(table_of(&first), truth(&ns));

    let held = worker.exec(move || {
        let mut bound = bound;
        bound.truncate(2);
        for (i, s) in unbound.iter().enumerate() {
            let mut peer = addrs[i % 2];
            peer.set_port(9);
            if i < 3 {
                s.send_to(b"x", &SockAddr::from(peer)).unwrap();
            } else {
                s.connect(&SockAddr::from(peer)).unwrap();
            }
        }
        (bound, unbound)
    });
    let record = watch.fresh_record();
    let want = truth(&ns);
    assert_eq!(table_of(&record), want);
    assert_eq!(
        want.values().sum::<i64>(),
        8,
        "2 bound + 6 autobound: {want:?}"
    );
    assert_eq!(record["resyncs"], 0, "{record}");
    drop(held);
}
