//! TCP metrics: the sock_ops and SYN-ACK programs, RTT histograms, the
//! figures per interval and per service port.

use core::mem::size_of;

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
/// Per-CPU hash of [`MetricsKey`] (direction 0, only `netns` and `epoch`
/// set) -> [`TcpMetrics`]: each namespace's figures in
/// `watch --all-namespaces`, made by the programs on first use and removed
/// by userspace once read, like the ports' entries.
pub const MAP_METRICS_NS: &str = "METRICS_NS";
/// Entries in [`MAP_METRICS_PORTS`] (both epochs).
pub const METRICS_PORT_ENTRIES: u32 = 2048;
/// Per-CPU hash of [`MetricsKey`] -> u32: connections established per
/// peer in one metrics epoch, for the `conn_spike` alert. Inbound: `addr`
/// is the remote address, `port` the local (service) port; outbound:
/// `addr` and `port` are the remote ones. A plain hash, bounded by
/// [`PEER_ENTRIES`]: what finds it full is counted in [`MAP_PEERS_LOST`]
/// (an LRU would forget silently).
pub const MAP_PEERS: &str = "PEERS";
/// Per-CPU array of two u64 (per epoch parity): connections whose peer
/// found [`MAP_PEERS`] full.
pub const MAP_PEERS_LOST: &str = "PEERS_LOST";
/// Entries in [`MAP_PEERS`] (both epochs): about 1 MiB of kernel memory at
/// most, whatever the number of distinct peers.
pub const PEER_ENTRIES: u32 = 8192;
/// [`MetricsKey::direction`]: the local port is the service (a listener,
/// or a connection it accepted), or the remote one (a connect()).
pub const DIRECTION_INBOUND: u8 = 1;
pub const DIRECTION_OUTBOUND: u8 = 2;
/// [`MAP_PEERS`] only: a reset sent for a segment no socket took (a closed
/// port): `addr` is the segment's source, `port` its destination, the
/// value the resets (`port_scan`).
pub const DIRECTION_CLOSED_PORT: u8 = 3;

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

/// A connection's RTT samples netconn takes whatever the sampling: those
/// that come while it has received at most this many segments. A
/// connection per request is sampled whole; long kept-alive connections
/// and bulk transfers are thinned.
pub const RTT_FIRST_SEGMENTS: u32 = 64;
/// After those, about one RTT sample in `2^RTT_SAMPLE_SHIFT` is taken.
pub const RTT_SAMPLE_SHIFT: u32 = 6;

/// Whether the sock_ops program takes the RTT sample of a callback whose
/// socket has received `segs_in` segments: every connection's first ones,
/// then those whose count hashes into one `2^RTT_SAMPLE_SHIFT`th of the
/// range. A socket's samples come at counts in some regular stride (every
/// ACK, every other...); a full integer mix (Wellons' lowbias32, a few ALU
/// instructions) takes about the same share of every stride, where a lone
/// multiplication leaves some strides with long runs never taken. The
/// program still runs for each sample; what it skips is the map work,
/// most of its cost per kept-alive request.
#[inline(always)]
pub const fn rtt_sampled(segs_in: u32) -> bool {
    if segs_in <= RTT_FIRST_SEGMENTS {
        return true;
    }
    let mut x = segs_in;
    x ^= x >> 16;
    x = x.wrapping_mul(0x7feb_352d);
    x ^= x >> 15;
    x = x.wrapping_mul(0x846c_a68b);
    x ^= x >> 16;
    x >> (32 - RTT_SAMPLE_SHIFT) == 0
}

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
    /// Connects that never reached ESTABLISHED, per [`failure_reason`].
    pub failed: [u32; FAILURE_REASONS],
    /// Connections a listener completed the handshake of
    /// (`PASSIVE_ESTABLISHED_CB`): inbound keys only.
    pub accepted: u32,
    /// Handshakes a listener began: request sockets made
    /// (`BPF_SOCK_OPS_TIMEOUT_INIT` on a request socket; a SYN answered
    /// with a cookie makes none). Inbound keys only.
    pub requests: u32,
    /// Connects of the namespace that reached ESTABLISHED
    /// (`ACTIVE_ESTABLISHED_CB`). Namespace slots only.
    pub connected: u32,
    /// Connections of the namespace that ended: a TCP socket that left
    /// ESTABLISHED or a later state (FIN_WAIT1, FIN_WAIT2, CLOSE_WAIT,
    /// LAST_ACK, CLOSING) for CLOSE, whenever it opened (a TIME_WAIT close
    /// counts when the full socket hands over to its mini socket).
    /// Namespace slots only.
    pub closed: u32,
    pub hist: [u32; RTT_BUCKETS],
}
const _: () = assert!(size_of::<TcpMetrics>() == 56 + 4 * FAILURE_REASONS + 4 * RTT_BUCKETS);

/// Whether a TCP socket leaving `old` for CLOSE ends a connection
/// ([`TcpMetrics::closed`]): it had been ESTABLISHED. SYN_SENT is a
/// failed connect, SYN_RECV a handshake that never completed, LISTEN a
/// listener.
#[inline(always)]
pub const fn ended_connection(old: u8) -> bool {
    use crate::kernel::*;
    matches!(
        old,
        TCP_ESTABLISHED
            | TCP_FIN_WAIT1
            | TCP_FIN_WAIT2
            | TCP_TIME_WAIT
            | TCP_CLOSE_WAIT
            | TCP_LAST_ACK
            | TCP_CLOSING
    )
}

/// Global (u8): non-zero when the TCP metrics are on: the state program
/// then counts failed connects into them.
pub const GLOBAL_WATCH_METRICS: &str = "WATCH_METRICS";

/// Why a connect failed: indices of [`TcpMetrics::failed`], and their names.
pub const FAILURE_REASONS: usize = 4;
pub const FAILED_REFUSED: usize = 0;
pub const FAILED_TIMEOUT: usize = 1;
pub const FAILED_UNREACHABLE: usize = 2;
pub const FAILED_ABORTED: usize = 3;
pub const FAILURE_NAMES: [&str; FAILURE_REASONS] = ["refused", "timeout", "unreachable", "aborted"];

/// Why a connect failed, from the socket's error when it left SYN_SENT
/// for CLOSE (the kernel sets `sk_err` before `tcp_done()`):
/// ECONNREFUSED (a RST answered the SYN, or an ICMP port unreachable):
/// refused; ETIMEDOUT (no answer to any SYN): timeout; an ICMP error that
/// says the host or network cannot be reached (or is administratively
/// prohibited): unreachable; no error (the application closed the
/// socket) or ECONNRESET (`connect(AF_UNSPEC)`): aborted.
#[inline(always)]
pub fn failure_reason(sk_err: i32) -> usize {
    const EPERM: i32 = 1;
    const EACCES: i32 = 13;
    const EPROTO: i32 = 71;
    const ENETDOWN: i32 = 100;
    const ENETUNREACH: i32 = 101;
    const ETIMEDOUT: i32 = 110;
    const ECONNREFUSED: i32 = 111;
    const EHOSTDOWN: i32 = 112;
    const EHOSTUNREACH: i32 = 113;
    match sk_err {
        ECONNREFUSED => FAILED_REFUSED,
        ETIMEDOUT => FAILED_TIMEOUT,
        EPERM | EACCES | EPROTO | ENETDOWN | ENETUNREACH | EHOSTDOWN | EHOSTUNREACH => {
            FAILED_UNREACHABLE
        }
        _ => FAILED_ABORTED,
    }
}

impl Default for TcpMetrics {
    fn default() -> Self {
        Self {
            samples: 0,
            sum_us: 0,
            min_us: 0,
            max_us: 0,
            retrans: 0,
            synack_retrans: 0,
            resets_sent: 0,
            resets_received: 0,
            failed: [0; FAILURE_REASONS],
            accepted: 0,
            requests: 0,
            connected: 0,
            closed: 0,
            hist: [0; RTT_BUCKETS],
        }
    }
}

impl TcpMetrics {
    /// Adds `other`'s figures (another CPU's, another slot's).
    pub fn merge(&mut self, other: &Self) {
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
        self.accepted += other.accepted;
        self.requests += other.requests;
        self.connected += other.connected;
        self.closed += other.closed;
        for (a, b) in self.failed.iter_mut().zip(other.failed.iter()) {
            *a += b;
        }
        for (a, b) in self.hist.iter_mut().zip(other.hist.iter()) {
            *a += b;
        }
    }

    /// What a slot gained since an earlier read of it: the counters'
    /// differences, with the extremes of the samples now in it. A slot
    /// whose counters went down was evicted and made anew since: all it
    /// holds is new.
    pub fn since(&self, earlier: &Self) -> Self {
        let went_down = self.samples < earlier.samples
            || self.retrans < earlier.retrans
            || self.synack_retrans < earlier.synack_retrans
            || self.resets_sent < earlier.resets_sent
            || self.resets_received < earlier.resets_received
            || self.accepted < earlier.accepted
            || self.requests < earlier.requests
            || self.connected < earlier.connected
            || self.closed < earlier.closed
            || self
                .failed
                .iter()
                .zip(earlier.failed.iter())
                .any(|(a, b)| a < b)
            || self
                .hist
                .iter()
                .zip(earlier.hist.iter())
                .any(|(a, b)| a < b);
        if went_down {
            return *self;
        }
        let mut d = Self {
            samples: self.samples - earlier.samples,
            sum_us: self.sum_us.wrapping_sub(earlier.sum_us),
            min_us: self.min_us,
            max_us: self.max_us,
            retrans: self.retrans - earlier.retrans,
            synack_retrans: self.synack_retrans - earlier.synack_retrans,
            resets_sent: self.resets_sent - earlier.resets_sent,
            resets_received: self.resets_received - earlier.resets_received,
            failed: self.failed,
            accepted: self.accepted - earlier.accepted,
            requests: self.requests - earlier.requests,
            connected: self.connected - earlier.connected,
            closed: self.closed - earlier.closed,
            hist: self.hist,
        };
        for (a, b) in d.failed.iter_mut().zip(earlier.failed.iter()) {
            *a -= b;
        }
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
        *self == Self::default()
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
    /// The socket's namespace (`--all-namespaces`; 0 otherwise).
    pub netns: u32,
}
const _: () = assert!(size_of::<MetricsKey>() == 28);
