//! Types shared by the eBPF programs and the userspace daemon.
//!
//! Every struct here is a wire format between kernel and userspace:
//! `#[repr(C)]`, explicit padding, and a compile-time size check, so both
//! sides agree byte for byte. Map, program and global names are constants so
//! that a typo is a compile error instead of a load failure.
#![no_std]

use core::mem::size_of;

/// Program attached to the BTF tracepoint `inet_sock_set_state`.
pub const PROG_STATE_CHANGE: &str = "netconn_state_change";
/// Kernel function/tracepoint name the program attaches to.
pub const TRACEPOINT_STATE_CHANGE: &str = "inet_sock_set_state";
/// Backup program on the same tracepoint: it counts only the events the
/// kernel skipped the primary for (see the eBPF crate's docs).
pub const PROG_STATE_BACKUP: &str = "netconn_state_backup";

/// Per-CPU array of [`Transitions`], indexed by epoch parity (0 or 1).
pub const MAP_TRANSITIONS: &str = "TRANSITIONS";
/// Array with one [`Control`] entry, written by userspace.
pub const MAP_CONTROL: &str = "CONTROL";
/// Ring buffer of [`StateEvent`] records (journal and per-event mode).
pub const MAP_EVENTS: &str = "EVENTS";
/// Per-CPU array with one `u64`: events the journal could not take (ring
/// buffer full) or a program could not count (a failed read).
pub const MAP_LOST: &str = "LOST";
/// Per-CPU array with one `u64`: connection records (`watch --events`) the
/// ring buffer could not take. Counted apart from [`MAP_LOST`]: they change
/// no count.
pub const MAP_CONN_LOST: &str = "CONN_LOST";
/// Per-CPU array with one `u64`: events the backup program counted because
/// the primary was skipped for them.
pub const MAP_RESCUED: &str = "RESCUED";
/// Hash of the UDP sockets created since load, by socket cookie: whether
/// the programs counted the socket into the UDP tables (see [`UDP_HASHED`]).
pub const MAP_UDP_SOCKETS: &str = "UDP_SOCKETS";

/// Array of 1024 `u64`: a bitmap of the local ports whose TCP sockets'
/// events are always pushed into the ring buffer (port groups).
pub const MAP_WATCHED_PORTS: &str = "WATCHED_PORTS";
/// Words in [`MAP_WATCHED_PORTS`].
pub const WATCHED_PORT_WORDS: u32 = 65536 / 64;

/// Value in [`MAP_UDP_SOCKETS`]: the socket is counted in the tables.
pub const UDP_COUNTED: u8 = 1;
/// Value in [`MAP_UDP_SOCKETS`]: created, not (yet) counted.
pub const UDP_NOT_COUNTED: u8 = 0;

/// UDP socket lifecycle programs, attached at the cgroup v2 root.
pub const PROG_UDP_CREATE: &str = "netconn_udp_create";
pub const PROG_UDP_BIND4: &str = "netconn_udp_bind4";
pub const PROG_UDP_BIND6: &str = "netconn_udp_bind6";
pub const PROG_UDP_CONNECT4: &str = "netconn_udp_connect4";
pub const PROG_UDP_CONNECT6: &str = "netconn_udp_connect6";
pub const PROG_UDP_SENDMSG4: &str = "netconn_udp_sendmsg4";
pub const PROG_UDP_SENDMSG6: &str = "netconn_udp_sendmsg6";
pub const PROG_UDP_RELEASE: &str = "netconn_udp_release";
/// Every UDP program, for loading and attaching.
pub const UDP_PROGRAMS: [&str; 8] = [
    PROG_UDP_CREATE,
    PROG_UDP_BIND4,
    PROG_UDP_BIND6,
    PROG_UDP_CONNECT4,
    PROG_UDP_CONNECT6,
    PROG_UDP_SENDMSG4,
    PROG_UDP_SENDMSG6,
    PROG_UDP_RELEASE,
];

/// Global: network namespace inode to count (0 = every namespace).
pub const GLOBAL_TARGET_NETNS: &str = "TARGET_NETNS";
/// Global: the same namespace's cookie (`SO_NETNS_COOKIE`), which is what
/// the cgroup programs can read (0 = every namespace).
pub const GLOBAL_TARGET_NETNS_COOKIE: &str = "TARGET_NETNS_COOKIE";
/// Global (u8): non-zero when port groups are configured. Without them the
/// programs skip reading the local port (the verifier prunes the branch:
/// read-only globals are known at load).
pub const GLOBAL_WATCH_PORTS: &str = "WATCH_PORTS";
/// Global (u8): non-zero with `watch --events`: the state programs also
/// push connection open/close records into [`MAP_CONN_EVENTS`].
pub const GLOBAL_WATCH_CONNS: &str = "WATCH_CONNS";
/// Ring buffer of [`ConnEvent`] records.
pub const MAP_CONN_EVENTS: &str = "CONN_EVENTS";
/// LRU hash of the reset bits seen per socket cookie, for close records.
pub const MAP_RESETS: &str = "RESETS";
/// Programs on `tcp_receive_reset` / `tcp_send_reset`, marking sockets so
/// close records can say why.
pub const PROG_RESET_RECEIVED: &str = "netconn_rst_in";
pub const PROG_RESET_SENT: &str = "netconn_rst_out";
pub const TRACEPOINT_RESET_RECEIVED: &str = "tcp_receive_reset";
pub const TRACEPOINT_RESET_SENT: &str = "tcp_send_reset";
/// [`ConnEvent::kind`].
pub const CONN_OPEN: u8 = 1;
pub const CONN_CLOSE: u8 = 2;
/// A reset seen on a socket (only `cookie` and `reset` are set): a user
/// abort sets CLOSE before it sends its RST, so the close event comes
/// first and userspace pairs them.
pub const CONN_RESET: u8 = 3;
/// [`ConnEvent::reset`] bits.
pub const RESET_SENT: u8 = 1;
pub const RESET_RECEIVED: u8 = 2;
/// TCP metrics (RTT samples, retransmissions, resets) for counts records:
/// a sock_ops program at the cgroup v2 root and one on the BTF tracepoint
/// `tcp_retransmit_synack`; the reset programs above count too.
pub const PROG_TCP_OPS: &str = "netconn_tcp_ops";
pub const PROG_SYNACK_RETRANS: &str = "netconn_synack_rtx";
pub const TRACEPOINT_SYNACK_RETRANS: &str = "tcp_retransmit_synack";
/// Per-CPU array of two [`TcpMetrics`], the namespace's, indexed by
/// [`Control::metrics_epoch`] parity.
pub const MAP_METRICS_TOTAL: &str = "METRICS_TOTAL";
/// LRU per-CPU hash of [`TcpMetrics`] by [`MetricsKey`]: per service port.
pub const MAP_METRICS_PORTS: &str = "METRICS_PORTS";
/// Entries in [`MAP_METRICS_PORTS`] (both epochs).
pub const METRICS_PORT_ENTRIES: u32 = 2048;
/// [`MetricsKey::direction`]: the local port is the service (a listener,
/// or a connection it accepted), or the remote one (a connect()).
pub const DIRECTION_INBOUND: u8 = 1;
pub const DIRECTION_OUTBOUND: u8 = 2;

/// Callback flags the sock_ops program gives the sockets it follows
/// (`bpf_sock_ops_cb_flags_set`): an RTT callback per RTT sample and a
/// retransmission callback per retransmitted skb.
pub const SOCK_OPS_FLAGS: u8 = (1 << 1) | (1 << 3);
/// The flag a listener and the connections it accepts carry besides
/// [`SOCK_OPS_FLAGS`], so that a later callback knows the direction from
/// the socket itself: `BPF_SOCK_OPS_PARSE_UNKNOWN_HDR_OPT_CB_FLAG`, which
/// only asks for a call when a peer sends a TCP option the kernel does not
/// know (practically never), and the program ignores that call.
pub const SOCK_OPS_INBOUND_MARK: u8 = 1 << 5;

/// RTT histogram buckets: quarter octaves. Values 0..4 µs have a bucket
/// each; above, bucket `4 * (e - 1) + s` holds `[(4 + s) << (e - 2),
/// (5 + s) << (e - 2))` with `e = floor(log2(v))`, so a bucket is at most a
/// quarter of its lower bound wide. Every u32 falls in buckets 0..=123;
/// the array has 128 so that the programs index it with a mask, the bound
/// the verifier follows.
pub const RTT_BUCKETS: usize = 128;

/// The histogram bucket of an RTT sample in microseconds.
#[inline(always)]
pub fn rtt_bucket(us: u32) -> usize {
    if us < 4 {
        return us as usize;
    }
    let e = 31 - us.leading_zeros();
    let sub = (us >> (e - 2)) & 3;
    (4 * (e - 1) + sub) as usize & (RTT_BUCKETS - 1)
}

/// The values bucket `i` (0..=123) holds: `[low, high)`, `high` as u64
/// because the last bucket ends at 2^32.
pub fn rtt_bucket_bounds(i: usize) -> (u32, u64) {
    if i < 4 {
        return (i as u32, i as u64 + 1);
    }
    let e = (i / 4 + 1) as u32;
    let sub = (i % 4) as u64;
    let low = (4 + sub) << (e - 2);
    (low as u32, (5 + sub) << (e - 2))
}

/// TCP figures of one interval slot, per CPU. `min_us` is meaningful only
/// when `samples > 0`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TcpMetrics {
    /// RTT samples (`BPF_SOCK_OPS_RTT_CB`: each measured RTT, as the
    /// kernel feeds its estimator) and their sum.
    pub samples: u64,
    pub sum_us: u64,
    pub min_us: u32,
    pub max_us: u32,
    /// Segments retransmitted (as tcp_info's total_retrans and the SNMP
    /// RetransSegs count them), SYN-ACKs retransmitted, RSTs sent/received.
    pub retrans: u32,
    pub synack_retrans: u32,
    pub resets_sent: u32,
    pub resets_received: u32,
    pub hist: [u32; RTT_BUCKETS],
}
const _: () = assert!(size_of::<TcpMetrics>() == 40 + 4 * RTT_BUCKETS);

impl Default for TcpMetrics {
    fn default() -> Self {
        TcpMetrics {
            samples: 0,
            sum_us: 0,
            min_us: 0,
            max_us: 0,
            retrans: 0,
            synack_retrans: 0,
            resets_sent: 0,
            resets_received: 0,
            hist: [0; RTT_BUCKETS],
        }
    }
}

impl TcpMetrics {
    /// Adds `other`'s figures (another CPU's, another slot's).
    pub fn merge(&mut self, other: &TcpMetrics) {
        if other.samples > 0 {
            if self.samples == 0 || other.min_us < self.min_us {
                self.min_us = other.min_us;
            }
            self.max_us = self.max_us.max(other.max_us);
        }
        self.samples += other.samples;
        self.sum_us += other.sum_us;
        self.retrans += other.retrans;
        self.synack_retrans += other.synack_retrans;
        self.resets_sent += other.resets_sent;
        self.resets_received += other.resets_received;
        for (a, b) in self.hist.iter_mut().zip(other.hist.iter()) {
            *a += b;
        }
    }

    /// What a slot gained since an earlier read of it: the counters'
    /// differences, with the extremes of the samples now in it. A slot
    /// whose counters went down was evicted and made anew since: all it
    /// holds is new.
    pub fn since(&self, earlier: &TcpMetrics) -> TcpMetrics {
        let went_down = self.samples < earlier.samples
            || self.retrans < earlier.retrans
            || self.synack_retrans < earlier.synack_retrans
            || self.resets_sent < earlier.resets_sent
            || self.resets_received < earlier.resets_received
            || self
                .hist
                .iter()
                .zip(earlier.hist.iter())
                .any(|(a, b)| a < b);
        if went_down {
            return *self;
        }
        let mut d = TcpMetrics {
            samples: self.samples - earlier.samples,
            sum_us: self.sum_us.wrapping_sub(earlier.sum_us),
            min_us: self.min_us,
            max_us: self.max_us,
            retrans: self.retrans - earlier.retrans,
            synack_retrans: self.synack_retrans - earlier.synack_retrans,
            resets_sent: self.resets_sent - earlier.resets_sent,
            resets_received: self.resets_received - earlier.resets_received,
            hist: self.hist,
        };
        for (a, b) in d.hist.iter_mut().zip(earlier.hist.iter()) {
            *a -= b;
        }
        if d.samples == 0 {
            d.min_us = 0;
            d.max_us = 0;
        }
        d
    }

    pub fn is_empty(&self) -> bool {
        *self == TcpMetrics::default()
    }
}

/// A service port's metrics slot: inbound (local address and port of a
/// listener and what it accepted) or outbound (remote port, any address).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MetricsKey {
    /// Local address for inbound (IPv4 in the first 4 bytes), zero for
    /// outbound.
    pub addr: [u8; 16],
    pub port: u16,
    /// `AF_INET` or `AF_INET6`, as a byte.
    pub family: u8,
    /// [`DIRECTION_INBOUND`] or [`DIRECTION_OUTBOUND`].
    pub direction: u8,
    /// [`Control::metrics_epoch`] parity the figures were counted in.
    pub epoch: u8,
    pub _pad: [u8; 3],
}
const _: () = assert!(size_of::<MetricsKey>() == 24);

/// Hash of [`Owner`]s of TCP sockets by cookie, from the `connect()` or
/// `listen()` (accepted connections: their listener's) until close.
pub const MAP_OWNERS: &str = "OWNERS";

/// The process behind a socket: tgid and the main thread's name.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Owner {
    pub pid: u32,
    pub comm: [u8; 16],
}
const _: () = assert!(size_of::<Owner>() == 20);

/// Global: byte offsets into kernel structs, read from BTF at load time.
pub const GLOBAL_OFFSETS: &str = "OFFSETS";

/// Conn-types the transition matrix distinguishes: tcp, tcp6, udp, udp6.
pub const CONN_TYPES: usize = 4;
/// TCP states are 1..=13 in the kernel (`include/net/tcp_states.h`); 16 slots.
pub const STATES: usize = 16;
/// Slots in one transition matrix: conn-type x old state x new state.
pub const TRANSITION_SLOTS: usize = CONN_TYPES * STATES * STATES;

pub const AF_INET: u16 = 2;
pub const AF_INET6: u16 = 10;
pub const IPPROTO_TCP: u16 = 6;
pub const IPPROTO_UDP: u16 = 17;

/// TCP states (`include/net/tcp_states.h`).
pub const TCP_ESTABLISHED: u8 = 1;
pub const TCP_SYN_SENT: u8 = 2;
pub const TCP_SYN_RECV: u8 = 3;
pub const TCP_FIN_WAIT1: u8 = 4;
pub const TCP_FIN_WAIT2: u8 = 5;
pub const TCP_TIME_WAIT: u8 = 6;
pub const TCP_CLOSE: u8 = 7;
pub const TCP_CLOSE_WAIT: u8 = 8;
pub const TCP_LAST_ACK: u8 = 9;
pub const TCP_LISTEN: u8 = 10;
pub const TCP_CLOSING: u8 = 11;
/// A request socket (shown as SYN_RECV).
pub const TCP_NEW_SYN_RECV: u8 = 12;

/// UDP sockets have no states; the programs describe a UDP socket entering
/// the tables (hashed: bound, explicitly or by autobind) as a transition
/// `UDP_UNHASHED -> UDP_HASHED`, and leaving them as the reverse, so one
/// matrix, one journal and one merge rule serve both protocols.
pub const UDP_HASHED: u8 = TCP_ESTABLISHED;
pub const UDP_UNHASHED: u8 = TCP_CLOSE;

/// Index of a socket's conn-type in the transition matrix (tcp, tcp6, udp,
/// udp6), `None` for anything else.
#[inline(always)]
pub fn conn_index(family: u16, protocol: u16) -> Option<usize> {
    let fam = match family {
        AF_INET => 0,
        AF_INET6 => 1,
        _ => return None,
    };
    match protocol {
        IPPROTO_TCP => Some(fam),
        IPPROTO_UDP => Some(2 + fam),
        _ => None,
    }
}

/// Slot of one transition in [`Transitions::counts`].
#[inline(always)]
pub fn transition_slot(conn_index: usize, old: usize, new: usize) -> usize {
    ((conn_index & (CONN_TYPES - 1)) * STATES + (old & (STATES - 1))) * STATES
        + (new & (STATES - 1))
}

/// How many times each TCP state transition happened, per family.
///
/// The kernel only ever increments; userspace turns transitions into
/// per-state deltas, because what a transition means (e.g. `LISTEN ->
/// SYN_RECV` is a new child socket, not a listener going away) is policy.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Transitions {
    pub counts: [u64; TRANSITION_SLOTS],
}
const _: () = assert!(size_of::<Transitions>() == TRANSITION_SLOTS * 8);

/// Written by userspace, read by every program run.
///
/// One byte per field, and userspace changes one field per write: a map
/// update is a plain memcpy, so a program may read a write half done, but a
/// single byte is never torn.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Control {
    /// Epoch number (wraps); the kernel counts into [`Transitions`] entry
    /// `epoch & 1`.
    pub epoch: u8,
    /// Non-zero: also push every event into the ring buffer.
    pub journal: u8,
    /// Non-zero once userspace has put every UDP socket of its first
    /// snapshot into the UDP socket map: from then on, a socket missing
    /// there that sends is one that was not bound then.
    pub udp_known: u8,
    /// The TCP metrics slot programs add to ([`MAP_METRICS_TOTAL`] index,
    /// [`MetricsKey::epoch`]), flipped by userspace each interval.
    pub metrics_epoch: u8,
    pub _pad: [u8; 4],
}
const _: () = assert!(size_of::<Control>() == 8);

/// Kernel struct offsets the programs need, taken from `/sys/kernel/btf/vmlinux`.
///
/// Rust eBPF emits no CO-RE relocations, so userspace resolves them.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Offsets {
    /// `struct sock_common.skc_family` (u16).
    pub skc_family: u32,
    /// `struct sock_common.skc_net` (`possible_net_t`, a `struct net *`).
    pub skc_net: u32,
    /// `struct net.ns.inum` (u32): the netns inode number.
    pub net_inum: u32,
    /// `struct sock.sk_protocol` (u16).
    pub sk_protocol: u32,
    /// `struct sock_common.skc_num` (u16): the local port, non-zero while a
    /// UDP socket is hashed.
    pub skc_num: u32,
    /// `struct sock_common.skc_rcv_saddr` (be32): the local IPv4 address.
    pub skc_rcv_saddr: u32,
    /// `struct sock_common.skc_v6_rcv_saddr` (16 bytes): the local IPv6 address.
    pub skc_v6_rcv_saddr: u32,
    /// `struct inet_sock.inet_sport` (be16): the local port as the state
    /// tracepoint reports it. Unlike `skc_num`, it is still set when an
    /// orphaned socket leaves LAST_ACK.
    pub inet_sport: u32,
    /// `struct sock_common.skc_daddr` (be32), `skc_dport` (be16),
    /// `skc_v6_daddr` (16 bytes): the remote end.
    pub skc_daddr: u32,
    pub skc_dport: u32,
    pub skc_v6_daddr: u32,
    /// `struct tcp_sock`: `srtt_us` (u32, RTT << 3), `total_retrans`
    /// (u32), `bytes_acked` and `bytes_received` (u64).
    pub srtt_us: u32,
    pub total_retrans: u32,
    pub bytes_acked: u32,
    pub bytes_received: u32,
    /// `struct task_struct.group_leader` and `.comm`: the process's name
    /// (its main thread's), not the calling thread's.
    pub group_leader: u32,
    pub task_comm: u32,
    /// `struct sock_common.skc_state` (u8) and `struct
    /// tcp_sock.bpf_sock_ops_cb_flags` (u8): whether the sock_ops program
    /// follows a socket, and in which direction.
    pub skc_state: u32,
    pub sock_ops_cb_flags: u32,
    /// `struct sk_buff.dev` and `struct net_device.nd_net`: the namespace
    /// of a reset sent without a socket.
    pub skb_dev: u32,
    pub dev_nd_net: u32,
}
const _: () = assert!(size_of::<Offsets>() == 84);

/// One TCP state change, as pushed into the ring buffer.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StateEvent {
    /// Socket cookie (`bpf_get_socket_cookie`), the same value sock_diag
    /// reports as `idiag_cookie`: the key that ties events to the dump.
    pub cookie: u64,
    /// `bpf_ktime_get_ns()` when the event fired.
    pub ts_ns: u64,
    /// Network namespace inode of the socket.
    pub netns: u32,
    pub family: u16,
    /// Local port (host order) when the event fired; 0 before a connecting
    /// socket got its port, and in journal-only events.
    pub lport: u16,
    pub oldstate: u8,
    pub newstate: u8,
    /// [`Control::epoch`] the event was counted in.
    pub epoch: u8,
    /// `IPPROTO_TCP` or `IPPROTO_UDP` (as a byte).
    pub protocol: u8,
    /// Non-zero: the local port is watched (the event is streamed whether
    /// or not the journal is on, and `lport`/`laddr` are set).
    pub watched: u8,
    pub _pad: [u8; 3],
    /// Local address: 4 bytes for IPv4 (network order), 16 for IPv6.
    pub laddr: [u8; 16],
}
const _: () = assert!(size_of::<StateEvent>() == 48);

/// A connection opening (entering ESTABLISHED or LISTEN) or closing
/// (entering CLOSE), with what the kernel knows of it then.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ConnEvent {
    pub cookie: u64,
    pub ts_ns: u64,
    pub bytes_acked: u64,
    pub bytes_received: u64,
    pub netns: u32,
    /// Process (tgid) that connected or listened, 0 if unknown; accepted
    /// connections inherit their listener's.
    pub pid: u32,
    /// Smoothed RTT in microseconds (`srtt_us >> 3`, as tcp_info's rtt).
    pub rtt_us: u32,
    pub total_retrans: u32,
    pub family: u16,
    pub lport: u16,
    pub rport: u16,
    /// [`CONN_OPEN`] or [`CONN_CLOSE`].
    pub kind: u8,
    pub oldstate: u8,
    pub newstate: u8,
    /// [`RESET_SENT`] / [`RESET_RECEIVED`] bits seen on the socket.
    pub reset: u8,
    pub _pad: [u8; 6],
    pub laddr: [u8; 16],
    pub raddr: [u8; 16],
    pub comm: [u8; 16],
}
const _: () = assert!(size_of::<ConnEvent>() == 112);

#[cfg(feature = "user")]
mod user {
    use super::*;
    // SAFETY: all of these are repr(C) with explicit padding and only
    // integer fields, so every bit pattern is valid.
    unsafe impl aya::Pod for Transitions {}
    unsafe impl aya::Pod for Control {}
    unsafe impl aya::Pod for Offsets {}
    unsafe impl aya::Pod for StateEvent {}
    unsafe impl aya::Pod for ConnEvent {}
    unsafe impl aya::Pod for TcpMetrics {}
    unsafe impl aya::Pod for MetricsKey {}
    unsafe impl aya::Pod for Owner {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transition_slots_are_distinct_and_in_range() {
        let mut seen = [false; TRANSITION_SLOTS];
        for f in 0..CONN_TYPES {
            for o in 0..STATES {
                for n in 0..STATES {
                    let s = transition_slot(f, o, n);
                    assert!(!seen[s], "slot {s} used twice");
                    seen[s] = true;
                }
            }
        }
        assert!(seen.iter().all(|s| *s));
    }

    #[test]
    fn rtt_buckets_hold_their_values_in_order() {
        for v in 1..100_000u32 {
            assert!(rtt_bucket(v) >= rtt_bucket(v - 1), "{v} went back");
        }
        let big = (0..32).flat_map(|b| [(1u32 << b) - 1, 1 << b, (1 << b) + 1]);
        for v in (0..100_000u32).chain(big).chain([u32::MAX]) {
            let i = rtt_bucket(v);
            let (low, high) = rtt_bucket_bounds(i);
            assert!(low <= v && u64::from(v) < high, "{v} not in bucket {i}");
            if i >= 4 {
                assert!(
                    (high - u64::from(low)) * 4 <= u64::from(low),
                    "bucket {i} too wide"
                );
            }
        }
        assert_eq!(rtt_bucket(u32::MAX), 123);
        assert_eq!(rtt_bucket_bounds(123).1, 1 << 32);
        // Adjacent buckets meet.
        for i in 0..123 {
            assert_eq!(
                rtt_bucket_bounds(i).1,
                u64::from(rtt_bucket_bounds(i + 1).0)
            );
        }
    }

    #[test]
    fn only_inet_tcp_and_udp_have_an_index() {
        assert_eq!(conn_index(AF_INET, IPPROTO_TCP), Some(0));
        assert_eq!(conn_index(AF_INET6, IPPROTO_TCP), Some(1));
        assert_eq!(conn_index(AF_INET, IPPROTO_UDP), Some(2));
        assert_eq!(conn_index(AF_INET6, IPPROTO_UDP), Some(3));
        assert_eq!(conn_index(1, IPPROTO_TCP), None);
        assert_eq!(conn_index(AF_INET, 136), None);
    }
}
