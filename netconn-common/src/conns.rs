//! Connection records (`watch --events`) and the owners of sockets.

use core::mem::size_of;

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
/// A connect that never reached ESTABLISHED (SYN_SENT -> CLOSE), with the
/// socket's error ([`ConnEvent::error`]) and when connect() began
/// ([`ConnEvent::start_ns`]).
pub const CONN_FAILED: u8 = 4;
/// [`ConnEvent::reset`] bits.
pub const RESET_SENT: u8 = 1;
pub const RESET_RECEIVED: u8 = 2;

/// Per-CPU array with one `u64`: connection records (`watch --events`) the
/// ring buffer could not take. Counted apart from [`MAP_LOST`]: they change
/// no count.
pub const MAP_CONN_LOST: &str = "CONN_LOST";

/// Hash of [`Owner`]s of TCP sockets by cookie, from the `connect()` or
/// `listen()` (accepted connections: their listener's) until close.
pub const MAP_OWNERS: &str = "OWNERS";

/// The process behind a socket: tgid and the main thread's name, and when
/// the socket began (`bpf_ktime_get_ns`): `connect()` for a connecting
/// socket, `listen()` for a listener, and for an accepted one the
/// handshake's last ACK (the kernel makes the socket then).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Owner {
    pub pid: u32,
    pub comm: [u8; 16],
    pub _pad: [u8; 4],
    pub start_ns: u64,
}
const _: () = assert!(size_of::<Owner>() == 32);

/// A connection opening (entering ESTABLISHED or LISTEN) or closing
/// (entering CLOSE), with what the kernel knows of it then.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ConnEvent {
    pub cookie: u64,
    pub ts_ns: u64,
    pub bytes_acked: u64,
    pub bytes_received: u64,
    /// [`CONN_FAILED`]: when `connect()` began (`bpf_ktime_get_ns`), 0 if
    /// unknown.
    pub start_ns: u64,
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
    /// [`CONN_OPEN`], [`CONN_CLOSE`], [`CONN_RESET`] or [`CONN_FAILED`].
    pub kind: u8,
    pub oldstate: u8,
    pub newstate: u8,
    /// [`RESET_SENT`] / [`RESET_RECEIVED`] bits seen on the socket.
    pub reset: u8,
    /// [`CONN_FAILED`]: the socket's error (`sk_err`, an errno) when it
    /// closed: ECONNREFUSED, ETIMEDOUT, EHOSTUNREACH..., 0 when the
    /// application gave up.
    pub error: u8,
    pub _pad: [u8; 5],
    pub laddr: [u8; 16],
    pub raddr: [u8; 16],
    pub comm: [u8; 16],
}
const _: () = assert!(size_of::<ConnEvent>() == 120);

#[cfg(feature = "user")]
impl ConnEvent {
    /// Decodes one connection record, checking its length.
    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        crate::kernel::from_record(bytes)
    }
}

#[cfg(feature = "user")]
impl Owner {
    /// The process: pid and name.
    pub fn process(&self) -> (u32, String) {
        (
            self.pid,
            crate::kernel::comm(&self.comm).unwrap_or_default(),
        )
    }
}
