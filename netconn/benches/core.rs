//! Userspace hot paths: decoding a ring-buffer record, folding the
//! transition matrix into counts, merging a dump with a journal, rendering
//! a record. Run by `cargo xtask bench` (results in BENCHMARKS.md).

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use netconn::ebpf::probe::decode_event;
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
            (&event as *const StateEvent).cast::<u8>(),
            std::mem::size_of::<StateEvent>(),
        )
    };
    c.bench_function("decode_event", |b| {
        b.iter(|| decode_event(black_box(bytes)))
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
    use netconn::output::figures::{IntervalFigures, ListenFigures, TcpFigures};
    let tcp_metrics = IntervalFigures {
        total: Some(TcpFigures::of(&sampled)),
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
                namespace: None,
                host: "bench",
                source: Source::Ebpf,
                netns: NETNS,
                counts: black_box(&counts),
                lost_events: 0,
                conn_records_lost: None,
                output_dropped: Some(0),
                resyncs: Some(0),
                last_correction: None,
                verify: None,
                tags: None,
                ports: None,
                tcp_metrics: Some(&tcp_metrics),
                listeners: None,
                ephemeral_ports: None,
            };
            serde_json::to_string(&r.at("2026-11-21T12:00:00.000Z")).unwrap()
        })
    });
}

criterion_group!(core, benches);
criterion_main!(core);
