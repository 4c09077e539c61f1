use super::*;
use netconn_common::{
    AF_INET, AF_INET6, IPPROTO_TCP, IPPROTO_UDP, TRANSITION_SLOTS, UDP_HASHED, UDP_UNHASHED,
};

use crate::model::state::{
    TCP_CLOSE, TCP_ESTABLISHED, TCP_FIN_WAIT2, TCP_LISTEN, TCP_SYN_RECV, TCP_SYN_SENT,
    TCP_TIME_WAIT,
};

const NETNS: u32 = 4026531840;
const EPOCH: u8 = 1;
use crate::model::state::{
    TCP_CLOSE_WAIT as CLOSE_WAIT, TCP_FIN_WAIT1 as FIN_WAIT1, TCP_LAST_ACK as LAST_ACK,
};

/// A kernel stand-in: applies events to a matrix and a journal, the way the
/// eBPF program does.
struct Kernel {
    matrix: Transitions,
    journal: Vec<StateEvent>,
    journal_on: bool,
    epoch: u8,
}

impl Kernel {
    fn new() -> Self {
        Self {
            matrix: Transitions {
                counts: [0; TRANSITION_SLOTS],
            },
            journal: Vec::new(),
            journal_on: false,
            epoch: 0,
        }
    }

    /// One event. Events of old epochs do not touch the current matrix (it
    /// was zeroed at the flip), which is how `Tracker` uses it.
    fn event(&mut self, netns: u32, family: u16, cookie: u64, old: u8, new: u8) {
        let tcp = ConnType::of(family, IPPROTO_TCP).unwrap();
        self.event_of(netns, tcp, cookie, old, new);
    }

    fn event_of(&mut self, netns: u32, conn_type: ConnType, cookie: u64, old: u8, new: u8) {
        if netns != NETNS {
            return; // filtered in the kernel by TARGET_NETNS
        }
        if self.epoch == EPOCH {
            let slot = transition_slot(conn_type.index(), old as usize, new as usize);
            self.matrix.counts[slot] += 1;
        }
        if self.journal_on {
            self.journal.push(StateEvent {
                cookie,
                netns,
                epoch: self.epoch,
                family: conn_type.family(),
                protocol: conn_type.protocol(),
                oldstate: old,
                newstate: new,
                ..Default::default()
            });
        }
    }

    fn live(&self, dump: &[DumpedSocket]) -> Counts {
        merge(dump, &self.journal, EPOCH, NETNS).counts() + matrix_effect(&self.matrix)
    }
}

fn full(conn_type: ConnType, state: u8, cookie: u64) -> DumpedSocket {
    DumpedSocket {
        cookie,
        ..DumpedSocket::test(conn_type, state)
    }
}

#[test]
fn events_before_the_epoch_are_in_the_dump_only() {
    let mut k = Kernel::new();
    // Before the flip: a connection is established (epoch 0, no journal).
    k.event(NETNS, AF_INET, 1, TCP_CLOSE, TCP_SYN_SENT);
    k.event(NETNS, AF_INET, 1, TCP_SYN_SENT, TCP_ESTABLISHED);
    k.epoch = EPOCH;
    k.journal_on = true;
    let dump = [full(ConnType::Tcp, TCP_ESTABLISHED, 1)];
    let live = k.live(&dump);
    assert_eq!(live.get(ConnType::Tcp, TCP_ESTABLISHED), 1);
    assert_eq!(live.total(), 1);
}

#[test]
fn event_racing_the_dump_counts_once_whether_the_dump_saw_it_or_not() {
    for dump_saw_new_state in [false, true] {
        let mut k = Kernel::new();
        k.epoch = EPOCH;
        k.journal_on = true;
        k.event(NETNS, AF_INET, 7, TCP_ESTABLISHED, FIN_WAIT1);
        let state = if dump_saw_new_state {
            FIN_WAIT1
        } else {
            TCP_ESTABLISHED
        };
        let live = k.live(&[full(ConnType::Tcp, state, 7)]);
        assert_eq!(
            live.get(ConnType::Tcp, FIN_WAIT1),
            1,
            "saw new: {dump_saw_new_state}"
        );
        assert_eq!(live.get(ConnType::Tcp, TCP_ESTABLISHED), 0);
    }
}

#[test]
fn events_after_the_dump_come_from_the_matrix_alone() {
    let mut k = Kernel::new();
    k.epoch = EPOCH;
    k.journal_on = true;
    let dump = [full(ConnType::Tcp6, TCP_LISTEN, 3)];
    k.journal_on = false; // dump finished, journal off
    k.event(NETNS, AF_INET6, 3, TCP_LISTEN, TCP_CLOSE);
    k.event(NETNS, AF_INET6, 4, TCP_CLOSE, TCP_SYN_SENT);
    let live = k.live(&dump);
    assert_eq!(live.get(ConnType::Tcp6, TCP_LISTEN), 0);
    assert_eq!(live.get(ConnType::Tcp6, TCP_SYN_SENT), 1);
}

#[test]
fn old_epoch_event_whose_store_lands_after_the_dump_started() {
    // The tracepoint fires before tcp_set_state() stores the state, and
    // connect() hashes the socket later still: a preempted task can make the
    // dump miss an event of the previous epoch.
    let mut k = Kernel::new();
    k.journal_on = true;
    k.event(NETNS, AF_INET, 70, TCP_CLOSE, TCP_SYN_SENT);
    k.epoch = EPOCH;
    let live = k.live(&[]); // the dump did not see socket 70 yet
    assert_eq!(live.get(ConnType::Tcp, TCP_SYN_SENT), 1);
}

#[test]
fn child_socket_first_event_is_not_a_listener_leaving() {
    let mut k = Kernel::new();
    k.epoch = EPOCH;
    k.journal_on = true;
    let dump = [full(ConnType::Tcp, TCP_LISTEN, 10)];
    // Listener 10 accepts a connection: child 11 is cloned from it.
    k.event(NETNS, AF_INET, 11, TCP_LISTEN, TCP_SYN_RECV);
    k.event(NETNS, AF_INET, 11, TCP_SYN_RECV, TCP_ESTABLISHED);
    let live = k.live(&dump);
    assert_eq!(live.get(ConnType::Tcp, TCP_LISTEN), 1);
    assert_eq!(live.get(ConnType::Tcp, TCP_ESTABLISHED), 1);
    assert_eq!(live.get(ConnType::Tcp, TCP_SYN_RECV), 0);
}

#[test]
fn two_reuseport_listeners_on_one_port_are_two_sockets() {
    let mut k = Kernel::new();
    k.epoch = EPOCH;
    k.journal_on = true;
    // Same address and port, different cookies; one closes during the dump.
    let mut a = full(ConnType::Tcp, TCP_LISTEN, 20);
    a.local_port = 8080;
    let b = DumpedSocket { cookie: 21, ..a };
    k.event(NETNS, AF_INET, 21, TCP_LISTEN, TCP_CLOSE);
    let live = k.live(&[a, b]);
    assert_eq!(live.get(ConnType::Tcp, TCP_LISTEN), 1);
}

#[test]
fn events_from_another_namespace_change_nothing() {
    let mut k = Kernel::new();
    k.epoch = EPOCH;
    k.journal_on = true;
    k.event(NETNS + 1, AF_INET, 30, TCP_CLOSE, TCP_LISTEN);
    // Even if one slipped into the journal, merge filters by namespace.
    k.journal.push(StateEvent {
        cookie: 31,
        netns: NETNS + 1,
        epoch: EPOCH,
        family: AF_INET,
        oldstate: TCP_ESTABLISHED,
        newstate: TCP_CLOSE,
        ..Default::default()
    });
    let dump = [full(ConnType::Tcp, TCP_ESTABLISHED, 32)];
    let live = k.live(&dump);
    assert_eq!(live.total(), 1);
    assert_eq!(live.get(ConnType::Tcp, TCP_ESTABLISHED), 1);
}

#[test]
fn time_wait_entry_keeps_its_count_while_the_full_socket_leaves() {
    let mut k = Kernel::new();
    k.epoch = EPOCH;
    k.journal_on = true;
    k.event(NETNS, AF_INET, 40, TCP_FIN_WAIT2, TCP_CLOSE);
    // The dump saw the time-wait mini-socket that inherited cookie 40.
    let tw = DumpedSocket {
        kind: SocketKind::TimeWait,
        ..full(ConnType::Tcp, TCP_TIME_WAIT, 40)
    };
    let live = k.live(&[tw]);
    assert_eq!(live.get(ConnType::Tcp, TCP_TIME_WAIT), 1);
    assert_eq!(live.get(ConnType::Tcp, TCP_FIN_WAIT2), 0);
    let stats = merge(&[tw], &k.journal, EPOCH, NETNS).stats;
    assert_eq!(stats.inconsistent_sockets, 0);
}

#[test]
fn a_dumped_state_the_journal_never_passes_through_is_flagged() {
    let mut k = Kernel::new();
    k.epoch = EPOCH;
    k.journal_on = true;
    k.event(NETNS, AF_INET, 50, TCP_ESTABLISHED, FIN_WAIT1);
    let stats = merge(
        &[full(ConnType::Tcp, LAST_ACK, 50)],
        &k.journal,
        EPOCH,
        NETNS,
    )
    .stats;
    assert_eq!(stats.inconsistent_sockets, 1);
    assert_eq!(stats.journal_events, 1);
}

#[test]
fn transient_close_in_the_dump_is_not_counted() {
    let k = Kernel::new();
    let live = k.live(&[full(ConnType::Tcp, TCP_CLOSE, 60)]);
    assert_eq!(live.total(), 0);
}

/// xorshift64*: deterministic, no dependency.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Lifecycles a socket can go through (first state is where it comes from),
/// with its protocol.
const LIFECYCLES: [(u16, &[u8]); 7] = [
    // active open, active close (ends in time-wait)
    (
        IPPROTO_TCP,
        &[
            TCP_CLOSE,
            TCP_SYN_SENT,
            TCP_ESTABLISHED,
            FIN_WAIT1,
            TCP_FIN_WAIT2,
            TCP_CLOSE,
        ],
    ),
    // accepted child, passive close
    (
        IPPROTO_TCP,
        &[
            TCP_LISTEN,
            TCP_SYN_RECV,
            TCP_ESTABLISHED,
            CLOSE_WAIT,
            LAST_ACK,
            TCP_CLOSE,
        ],
    ),
    // listener
    (IPPROTO_TCP, &[TCP_CLOSE, TCP_LISTEN, TCP_CLOSE]),
    // refused connect
    (IPPROTO_TCP, &[TCP_CLOSE, TCP_SYN_SENT, TCP_CLOSE]),
    // reset while established
    (
        IPPROTO_TCP,
        &[TCP_CLOSE, TCP_SYN_SENT, TCP_ESTABLISHED, TCP_CLOSE],
    ),
    // UDP socket bound (or autobound), then closed
    (IPPROTO_UDP, &[UDP_UNHASHED, UDP_HASHED, UDP_UNHASHED]),
    // UDP socket bound and kept
    (IPPROTO_UDP, &[UDP_UNHASHED, UDP_HASHED]),
];

/// Many sockets, each with a random lifecycle and a random number of steps
/// taken in each phase: before the journal, with the journal on in the old
/// epoch, in the new epoch while the dump runs, and after the journal is off.
/// The dump observes each socket at its own random instant, and may lag
/// behind old-epoch events (a store delayed by preemption). The live count
/// must equal the true final table every time.
#[test]
fn random_interleavings_always_end_at_the_truth() {
    for seed in 1..=300u64 {
        let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        let mut k = Kernel::new();
        // Per socket: family, lifecycle and the steps taken in each phase.
        let sockets: Vec<(ConnType, &[u8], [usize; 4])> = (0..40)
            .map(|_| {
                let (protocol, life) = LIFECYCLES[rng.below(LIFECYCLES.len() as u64) as usize];
                let mut left = life.len() - 1;
                let mut phases = [0; 4];
                for p in &mut phases {
                    *p = rng.below(left as u64 + 1) as usize;
                    left -= *p;
                }
                let family = if rng.below(2) == 0 { AF_INET } else { AF_INET6 };
                (ConnType::of(family, protocol).unwrap(), life, phases)
            })
            .collect();
        let run = |k: &mut Kernel, i: usize, ct: ConnType, life: &[u8], from: usize, n: usize| {
            for step in from..from + n {
                k.event_of(NETNS, ct, i as u64 + 1, life[step], life[step + 1]);
            }
        };

        for (i, (fam, life, [before, ..])) in sockets.iter().enumerate() {
            run(&mut k, i, *fam, life, 0, *before);
        }
        k.journal_on = true;
        for (i, (fam, life, [before, pre, ..])) in sockets.iter().enumerate() {
            run(&mut k, i, *fam, life, *before, *pre);
        }
        k.epoch = EPOCH;
        let mut dump = Vec::new();
        for (i, (fam, life, [before, pre, during, _])) in sockets.iter().enumerate() {
            run(&mut k, i, *fam, life, before + pre, *during);
            // Any step from the journal's start to the end of the window.
            let seen_at = before + rng.below((pre + during) as u64 + 1) as usize;
            observe(&mut dump, i, *fam, life, seen_at);
        }
        k.journal_on = false;
        let mut truth = Counts::default();
        for (i, (fam, life, [before, pre, during, after])) in sockets.iter().enumerate() {
            run(&mut k, i, *fam, life, before + pre + during, *after);
            if let Some(s) = table_state(life, before + pre + during + after) {
                truth.add(*fam, s, 1);
            }
        }
        // Time-wait entries the dump saw stay counted (they emit no events).
        for d in dump.iter().filter(|d| d.kind == SocketKind::TimeWait) {
            truth.add(d.conn_type, TCP_TIME_WAIT, 1);
        }
        let baseline = merge(&dump, &k.journal, EPOCH, NETNS);
        assert_eq!(
            baseline.counts() + matrix_effect(&k.matrix),
            truth,
            "seed {seed}"
        );
        assert_eq!(baseline.stats.inconsistent_sockets, 0, "seed {seed}");
        // Full sockets are exactly the truth without time-wait entries.
        let mut full_truth = truth;
        for d in dump.iter().filter(|d| d.kind == SocketKind::TimeWait) {
            full_truth.add(d.conn_type, TCP_TIME_WAIT, -1);
        }
        assert_eq!(
            baseline.full + matrix_effect(&k.matrix),
            full_truth,
            "seed {seed}"
        );
    }
}

/// The state the tables show for a socket at step `at` of its lifecycle.
fn table_state(life: &[u8], at: usize) -> Option<u8> {
    if at == 0 {
        counted_before(life[0], life[1])
    } else {
        counted_after(life[at])
    }
}

/// Appends what a dump sees of socket `i` at step `at`.
fn observe(dump: &mut Vec<DumpedSocket>, i: usize, conn_type: ConnType, life: &[u8], at: usize) {
    let cookie = i as u64 + 1;
    if let Some(s) = table_state(life, at) {
        // sock_diag lists an unconnected UDP socket in CLOSE.
        let shown = if conn_type.is_tcp() { s } else { TCP_CLOSE };
        dump.push(full(conn_type, shown, cookie));
    } else if conn_type.is_tcp() && at > 0 && life[at] == TCP_CLOSE && life[at - 1] == TCP_FIN_WAIT2
    {
        dump.push(DumpedSocket {
            kind: SocketKind::TimeWait,
            ..full(conn_type, TCP_TIME_WAIT, cookie)
        });
    }
}

/// The per-namespace programs keep per-state deltas instead of the
/// transition matrix: for every transition of every conn-type, the deltas
/// they write (by the shared counted_before/counted_after) mean what the
/// matrix means.
#[test]
fn per_namespace_deltas_mean_what_the_matrix_means() {
    use netconn_common::{NS_DELTA_SLOTS, counted_after, counted_before, delta_slot};
    for ct in 0..netconn_common::CONN_TYPES {
        for old in 0..STATES as u8 {
            for new in 0..STATES as u8 {
                let mut matrix = Transitions {
                    counts: [0; TRANSITION_SLOTS],
                };
                matrix.counts[transition_slot(ct, old as usize, new as usize)] = 3;
                let mut delta = [0u64; NS_DELTA_SLOTS];
                for _ in 0..3 {
                    if let Some(s) = counted_before(old, new) {
                        let d = &mut delta[delta_slot(ct, s)];
                        *d = d.wrapping_add(u64::MAX);
                    }
                    if let Some(s) = counted_after(new) {
                        let d = &mut delta[delta_slot(ct, s)];
                        *d = d.wrapping_add(1);
                    }
                }
                assert_eq!(
                    delta_effect(&delta),
                    matrix_effect(&matrix),
                    "conn-type {ct}: {old} -> {new}"
                );
            }
        }
    }
}
