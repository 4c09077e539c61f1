//! Ephemeral ports: connected sockets per destination whose local port
//! lies in `ip_local_port_range`, counted by the state program as they
//! become ESTABLISHED from SYN_SENT and as they close.
//!
//! A socket is counted once, by whoever claims it in [`MAP_EPHEMERAL_MARKED`]
//! (cookie -> its [`Destination`]): the program when it sees the socket
//! connect, or userspace for a socket its first dump found connected. The
//! program's close path deletes the entry and counts -1 only if the delete
//! succeeded; userspace undoes its own entries the same way, so a socket is
//! uncounted exactly once whichever side sees it go.

use core::mem::size_of;

/// Hash: socket cookie -> [`Destination`] of every counted socket.
pub const MAP_EPHEMERAL_MARKED: &str = "EPHEMERAL_MARKED";
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

/// Sockets counted at once (entries of [`MAP_EPHEMERAL_MARKED`]).
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
    pub _pad: [u8; 2],
}
const _: () = assert!(size_of::<EphemeralControl>() == 8);

/// Whether a socket whose state goes `old -> new` starts holding its port
/// towards a destination as far as the count goes: an outbound socket
/// connecting (the kernel gives it its port between its SYN_SENT event and
/// this one).
#[inline(always)]
pub fn ephemeral_enters(old: u8, new: u8) -> bool {
    old == crate::TCP_SYN_SENT && new == crate::TCP_ESTABLISHED
}

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
