//! Ephemeral ports: connected sockets per destination whose local port
//! lies in `ip_local_port_range`, counted as they become ESTABLISHED from
//! SYN_SENT and as they close.
//!
//! The sock_ops program (loaded whenever the ports are counted, with or
//! without the TCP metrics) counts a socket when the connect completes and
//! marks it with a callback flag ([`SOCK_OPS_EPHEMERAL_MARK`]); the state
//! program uncounts a marked socket when it closes. No per-socket entry is
//! made: the flag is the socket's own.
//!
//! Sockets connected before netconn are claimed by userspace from
//! its first dump, in [`MAP_EPHEMERAL_MARKED`] (cookie -> its
//! [`Destination`]). Whoever deletes a claim (the state program at the
//! socket's close, or userspace undoing a claim of a socket that closed
//! before it) uncounts it, so a socket is uncounted exactly once. While
//! that first dump is taken ([`EphemeralControl::window`]) the sock_ops
//! program also notes the cookies it counts ([`MAP_EPHEMERAL_WINDOW`]),
//! so that userspace sees which of the sockets it lists are counted
//! already.

use core::mem::size_of;

/// Hash: socket cookie -> [`Destination`] of every socket userspace claimed.
pub const MAP_EPHEMERAL_MARKED: &str = "EPHEMERAL_MARKED";
/// Hash: cookie -> 1 of the sockets the sock_ops program counted while
/// [`EphemeralControl::window`] is set (userspace's first dump).
pub const MAP_EPHEMERAL_WINDOW: &str = "EPHEMERAL_WINDOW";
/// Entries of [`MAP_EPHEMERAL_WINDOW`]: connects during one dump.
pub const EPHEMERAL_MAX_WINDOW: u32 = 1 << 16;
/// Hash: [`DestinationKey`] -> i64 (as u64, wrapping) sockets added minus
/// removed by the programs, per generation.
pub const MAP_EPHEMERAL_COUNTS: &str = "EPHEMERAL_COUNTS";
/// Array with one [`EphemeralControl`], written by userspace.
pub const MAP_EPHEMERAL_CONTROL: &str = "EPHEMERAL_CONTROL";
/// Per-CPU array with one `u64`: sockets left uncounted because a map was
/// full.
pub const MAP_EPHEMERAL_UNTRACKED: &str = "EPHEMERAL_UNTRACKED";
/// Global (u8): non-zero when the programs count ephemeral ports.
pub const GLOBAL_WATCH_EPHEMERAL: &str = "WATCH_EPHEMERAL";

/// The callback flag (`BPF_SOCK_OPS_RTO_CB_FLAG`, whose callback the
/// program ignores) that marks a socket the sock_ops program counted.
pub const SOCK_OPS_EPHEMERAL_MARK: u8 = 1 << 0;

/// Sockets claimed at once (entries of [`MAP_EPHEMERAL_MARKED`]).
pub const EPHEMERAL_MAX_SOCKETS: u32 = 1 << 18;
/// Destinations counted at once, over both generations.
pub const EPHEMERAL_MAX_DESTINATIONS: u32 = 1 << 14;

/// Where a counted socket is connected to, from where.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Destination {
    /// Network namespace inode.
    pub netns: u32,
    pub family: u16,
    /// Remote port, host order.
    pub rport: u16,
    /// Local and remote address (IPv4 in the first four bytes).
    pub laddr: [u8; 16],
    pub raddr: [u8; 16],
}
const _: () = assert!(size_of::<Destination>() == 40);

/// A destination's count in one generation of [`MAP_EPHEMERAL_COUNTS`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct DestinationKey {
    pub dest: Destination,
    /// [`EphemeralControl::generation`] when the program counted.
    pub generation: u8,
    pub _pad: [u8; 7],
}
const _: () = assert!(size_of::<DestinationKey>() == 48);

/// Written by userspace. Each field is changed by a write of its own.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EphemeralControl {
    /// `ip_local_port_range` of the counted namespace.
    pub low: u16,
    pub high: u16,
    /// Generation the program counts into (0 or 1); userspace folds the
    /// other one into its own totals and empties it.
    pub generation: u8,
    /// Non-zero once the range changed while counting: every close is then
    /// looked up, not only those of ports in the current range.
    pub any_port: u8,
    /// Non-zero while userspace takes its first dump: the sock_ops program
    /// also notes the sockets it counts in [`MAP_EPHEMERAL_WINDOW`].
    pub window: u8,
    /// Non-zero while userspace holds claims: the state program looks up
    /// the closes of unmarked sockets.
    pub claims: u8,
}
const _: () = assert!(size_of::<EphemeralControl>() == 8);

/// Whether a socket whose state goes `old -> new` stops being counted: an
/// established socket (or one closing from there) going to CLOSE.
#[inline(always)]
pub fn ephemeral_leaves(old: u8, new: u8) -> bool {
    new == crate::TCP_CLOSE
        && matches!(
            old,
            crate::TCP_ESTABLISHED
                | crate::TCP_FIN_WAIT1
                | crate::TCP_FIN_WAIT2
                | crate::TCP_CLOSE_WAIT
                | crate::TCP_CLOSING
                | crate::TCP_LAST_ACK
        )
}
