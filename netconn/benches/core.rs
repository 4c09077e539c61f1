//! Userspace hot paths: decoding a ring-buffer record, folding the
//! transition matrix into counts, merging a dump with a journal, rendering
//! a record, reading sock_diag and ctnetlink messages. Run by `cargo xtask
//! bench` (results in BENCHMARKS.md).

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use netconn::model::counts::Counts;
use netconn::model::merge::{matrix_effect, merge};
use netconn::model::socket::DumpedSocket;
use netconn::model::socket::SocketKind;
use netconn::model::state::ConnType;
use netconn::output::record::{CountsRecord, Source};
use netconn_common::{StateEvent, TRANSITION_SLOTS, Transitions, transition_slot};

const NETNS: u32 = 4026531840;

/// A dump of `n` sockets, mostly ESTABLISHED, some listeners and time-wait.
fn dump(n: u64) -> Vec<DumpedSocket> {
    (0..n)
        .map(|i| DumpedSocket {
            conn_type: if i % 4 == 0 {
                ConnType::Tcp6
            } else {
                ConnType::Tcp
            },
            state: match i % 10 {
                0 => 10,
                1 => 6,
                _ => 1,
            },
            kind: if i % 10 == 1 {
                SocketKind::TimeWait
            } else {
                SocketKind::Full
            },
            cookie: i + 1,
            local_port: (i % 50_000) as u16,
            local_addr: std::net::Ipv4Addr::LOCALHOST.into(),
            remote_addr: std::net::Ipv4Addr::LOCALHOST.into(),
            remote_port: 8080,
            inode: i as u32,
        })
        .collect()
}

/// `n` journal events on the first `n` dumped sockets.
fn journal(n: u64) -> Vec<StateEvent> {
    (0..n)
        .map(|i| StateEvent {
            cookie: i + 1,
            netns: NETNS,
            epoch: 1,
            family: if i % 4 == 0 { 10 } else { 2 },
            oldstate: 1,
            newstate: 4,
            ..Default::default()
        })
        .collect()
}

fn benches(c: &mut Criterion) {
    let event = journal(1)[0];
    // SAFETY: viewing a plain repr(C) value as bytes.
    let bytes = unsafe {
        std::slice::from_raw_parts(
            std::ptr::from_ref::<StateEvent>(&event).cast::<u8>(),
            std::mem::size_of::<StateEvent>(),
        )
    };
    c.bench_function("decode_event", |b| {
        b.iter(|| StateEvent::from_bytes(black_box(bytes)))
    });

    let mut m = Transitions {
        counts: [0; TRANSITION_SLOTS],
    };
    for (i, (old, new)) in [
        (7, 2),
        (2, 1),
        (1, 4),
        (4, 5),
        (5, 7),
        (10, 3),
        (3, 1),
        (1, 8),
        (8, 9),
        (9, 7),
    ]
    .into_iter()
    .enumerate()
    {
        m.counts[transition_slot(i % 2, old, new)] = 1_000_000 + i as u64;
    }
    c.bench_function("matrix_effect", |b| b.iter(|| matrix_effect(black_box(&m))));

    let (d, j) = (dump(200_000), journal(10_000));
    c.bench_function("merge_200k_sockets_10k_events", |b| {
        b.iter(|| merge(black_box(&d), black_box(&j), 1, NETNS))
    });

    let counts = Counts::from_dump(&d);
    // TCP metrics as an interval of samples would leave them.
    let mut sampled = netconn_common::TcpMetrics::default();
    for us in (0..10_000u32).map(|i| 20 + i * 7) {
        sampled.samples += 1;
        sampled.sum_us += u64::from(us);
        sampled.hist[netconn_common::rtt_bucket(us)] += 1;
    }
    (sampled.min_us, sampled.max_us, sampled.retrans) = (20, 20 + 9_999 * 7, 12);
    use netconn::output::figures::{IntervalFigures, Lifecycle, ListenFigures, TcpFigures};
    let tcp_metrics = IntervalFigures {
        total: Some(TcpFigures::of(&sampled)),
        lifecycle: Some(Lifecycle::of(&sampled)),
        listen: ListenFigures {
            listen_overflows: 0,
            listen_drops: 0,
            listen_overflows_per_s: 0.0,
            listen_drops_per_s: 0.0,
        },
        top_ports: Some(Vec::new()),
        peers_untracked: Some(0),
    };
    c.bench_function("render_tcp_metrics", |b| {
        b.iter(|| serde_json::to_string(&TcpFigures::of(black_box(&sampled))).unwrap())
    });
    c.bench_function("render_counts_record", |b| {
        b.iter(|| {
            let r = CountsRecord {
                output_dropped: Some(0),
                resyncs: Some(0),
                tcp_metrics: Some(&tcp_metrics),
                ..CountsRecord::new("bench", Source::Ebpf, NETNS, black_box(&counts))
            };
            serde_json::to_string(&r.at("2026-11-21T12:00:00.000Z")).unwrap()
        })
    });
}

/// `n` sock_diag answers as the kernel sends them (emitted by the
/// rust-netlink crate), in one receive buffer.
fn sock_diag_batch(n: u64) -> Vec<u8> {
    use netlink_packet_core::{Emitable, NetlinkHeader};
    use netlink_packet_sock_diag::inet::{InetResponseHeader, SocketId};
    let mut batch = Vec::new();
    for i in 0..n {
        let mut socket_id = SocketId::new_v4();
        socket_id.source_port = (i % 50_000) as u16;
        socket_id.source_address = std::net::Ipv4Addr::LOCALHOST.into();
        socket_id.destination_port = 8080;
        socket_id.destination_address = std::net::Ipv4Addr::LOCALHOST.into();
        socket_id.cookie = (i + 1).to_le_bytes();
        let body = InetResponseHeader {
            family: libc::AF_INET as u8,
            state: 1,
            timer: None,
            socket_id,
            recv_queue: 0,
            send_queue: 0,
            uid: 0,
            inode: i as u32,
        };
        let mut header = NetlinkHeader::default();
        header.length = (header.buffer_len() + body.buffer_len()) as u32;
        header.message_type = netlink_packet_sock_diag::SOCK_DIAG_BY_FAMILY;
        let at = batch.len();
        batch.resize(at + header.length as usize, 0);
        header.emit(&mut batch[at..]);
        body.emit(&mut batch[at + header.buffer_len()..]);
    }
    batch
}

/// A conntrack entry as ctnetlink sends it (emitted by the crate): both
/// tuples, status, timeout, mark, TCP state.
fn conntrack_entry() -> Vec<u8> {
    use netlink_packet_core::Emitable;
    use netlink_packet_netfilter::conntrack::{
        ConntrackAttribute, ConntrackMessage, IPTuple, ProtoInfo, ProtoInfoTCP, ProtoTuple,
        Protocol, Status, Tuple,
    };
    use netlink_packet_netfilter::{NetfilterHeader, NetfilterMessage, NetfilterProtoFamily};
    let tuple = |a: &str, b: &str, sport, dport| {
        vec![
            Tuple::Ip(vec![
                IPTuple::SourceAddress(a.parse().unwrap()),
                IPTuple::DestinationAddress(b.parse().unwrap()),
            ]),
            Tuple::Proto(vec![
                ProtoTuple::Protocol(Protocol::Tcp),
                ProtoTuple::SourcePort(sport),
                ProtoTuple::DestinationPort(dport),
            ]),
        ]
    };
    let entry = ConntrackMessage::New(vec![
        ConntrackAttribute::CtaTupleOrig(tuple("10.0.0.1", "10.0.0.2", 40000, 80)),
        ConntrackAttribute::CtaTupleReply(tuple("10.0.0.2", "10.0.0.1", 80, 40000)),
        ConntrackAttribute::CtaStatus(Status::from_bits_retain(0x19e)),
        ConntrackAttribute::CtaTimeout(431_999),
        ConntrackAttribute::CtaMark(0),
        ConntrackAttribute::CtaProtoInfo(vec![ProtoInfo::TCP(vec![ProtoInfoTCP::State(3)])]),
    ]);
    let header = NetfilterHeader::new(NetfilterProtoFamily::IPv4, 0, 0);
    let message = NetfilterMessage::new(header, entry);
    let mut payload = vec![0u8; message.buffer_len()];
    message.emit(&mut payload);
    payload
}

fn tables(c: &mut Criterion) {
    use netconn::tables::sockdiag::{parse_batch, parse_msg};
    let batch = sock_diag_batch(1000);
    let mut out = Vec::with_capacity(1000);
    c.bench_function("sock_diag_1000_sockets", |b| {
        b.iter(|| {
            out.clear();
            parse_batch(black_box(&batch), &mut |m: &[u8]| {
                out.extend(parse_msg(m, ConnType::Tcp))
            })
            .unwrap();
            out.len()
        })
    });

    // The protocol of a conntrack entry (every event, every entry of a
    // dump): read in place, and by the crate's typed parse.
    let entry = conntrack_entry();
    let kind = 1 << 8; // IPCTNL_MSG_CT_NEW of ctnetlink
    c.bench_function("conntrack_entry_in_place", |b| {
        b.iter(|| netconn::conntrack::message_protocol(black_box(&entry)))
    });
    c.bench_function("conntrack_entry_typed_parse", |b| {
        use netlink_packet_core::ParseableParametrized;
        use netlink_packet_netfilter::NetfilterMessage;
        b.iter(|| NetfilterMessage::parse_with_param(black_box(&entry[..]), kind).unwrap())
    });
}

criterion_group!(core, benches, tables);
criterion_main!(core);
