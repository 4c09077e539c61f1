//! Counting: the state tracepoint's programs, their transition matrix and
//! control word, the journal of state events, and the port groups' bitmap.

use core::mem::size_of;

use crate::*;

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

/// Per-CPU array with one `u64`: events the backup program counted because
/// the primary was skipped for them.
pub const MAP_RESCUED: &str = "RESCUED";

/// Array of 1024 `u64`: a bitmap of the local ports whose TCP sockets'
/// events are always pushed into the ring buffer (port groups).
pub const MAP_WATCHED_PORTS: &str = "WATCHED_PORTS";
/// Words in [`MAP_WATCHED_PORTS`].
pub const WATCHED_PORT_WORDS: u32 = 65536 / 64;

/// Global: network namespace inode to count (0 = every namespace).
pub const GLOBAL_TARGET_NETNS: &str = "TARGET_NETNS";
/// Global: the same namespace's cookie (`SO_NETNS_COOKIE`), which is what
/// the cgroup programs can read (0 = every namespace).
pub const GLOBAL_TARGET_NETNS_COOKIE: &str = "TARGET_NETNS_COOKIE";
/// Global (u8): non-zero when port groups are configured. Without them the
/// programs skip reading the local port (the verifier prunes the branch:
/// read-only globals are known at load).
pub const GLOBAL_WATCH_PORTS: &str = "WATCH_PORTS";

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

/// Global (u8): non-zero in `watch --all-namespaces`: every namespace is
/// counted into its own matrix in [`MAP_NS_TRANSITIONS`] instead of the
/// per-CPU [`MAP_TRANSITIONS`].
pub const GLOBAL_ALL_NAMESPACES: &str = "ALL_NAMESPACES";
/// Per-CPU hash of [`NsKey`] -> [`NsCounts`]: one per tracked namespace
/// and epoch parity, created and removed by userspace (allocated only
/// then: about 1 KiB per namespace and CPU).
pub const MAP_NS_TRANSITIONS: &str = "NS_TRANSITIONS";
/// Hash of namespace cookie -> inode (`--all-namespaces`), written by
/// userspace for every namespace it adopts: the sock_ops program can
/// read a socket's namespace cookie with one helper call, its inode only
/// through the kernel socket (three).
pub const MAP_NETNS_OF_COOKIE: &str = "NETNS_OF_COOKIE";

/// Namespaces `watch --all-namespaces` tracks at most.
pub const MAX_NAMESPACES: u32 = 512;

/// The state a socket was counted in before `old -> new`, if any (see the
/// merge rule in netconn's `model::merge`: a child socket's first event
/// `LISTEN -> SYN_RECV` leaves no listener).
#[inline(always)]
pub fn counted_before(old: u8, new: u8) -> Option<u8> {
    if old == TCP_LISTEN && new == TCP_SYN_RECV {
        return None;
    }
    counted_after(old)
}

/// The state a socket is counted in after entering `new`, if any: the
/// states in which a socket sits in the kernel's socket tables; request
/// sockets (SYN_RECV) fire no event and are read from dumps.
#[inline(always)]
pub fn counted_after(new: u8) -> Option<u8> {
    if new == 0 || new == TCP_CLOSE || new == TCP_SYN_RECV || new >= TCP_NEW_SYN_RECV {
        None
    } else {
        Some(new)
    }
}

/// One namespace's counts in one epoch (`--all-namespaces`): the net
/// change per conn-type and state, as [`counted_before`] and
/// [`counted_after`] say (two's complement: summed over CPUs with
/// wrapping, read as signed), and the events counted. The transition
/// matrix would be 8 KiB per namespace and CPU; this is 520 bytes.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct NsCounts {
    pub delta: [u64; NS_DELTA_SLOTS],
    pub events: u64,
}
/// Slots of [`NsCounts::delta`]: conn-type x state.
pub const NS_DELTA_SLOTS: usize = CONN_TYPES * STATES;
const _: () = assert!(size_of::<NsCounts>() == NS_DELTA_SLOTS * 8 + 8);

/// Slot of a conn-type's state in [`NsCounts::delta`].
#[inline(always)]
pub fn delta_slot(conn_index: usize, state: u8) -> usize {
    (conn_index & (CONN_TYPES - 1)) * STATES + (state as usize & (STATES - 1))
}

/// Key of [`MAP_NS_TRANSITIONS`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct NsKey {
    /// Network namespace inode.
    pub netns: u32,
    /// Epoch parity (0 or 1).
    pub parity: u32,
}
const _: () = assert!(size_of::<NsKey>() == 8);

#[cfg(feature = "user")]
impl StateEvent {
    /// Decodes one journal record, checking its length.
    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        crate::kernel::from_record(bytes)
    }
}
