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
/// Per-CPU array with one `u64`: events the backup program counted because
/// the primary was skipped for them.
pub const MAP_RESCUED: &str = "RESCUED";

/// Global: network namespace inode to count (0 = every namespace).
pub const GLOBAL_TARGET_NETNS: &str = "TARGET_NETNS";
/// Global: byte offsets into kernel structs, read from BTF at load time.
pub const GLOBAL_OFFSETS: &str = "OFFSETS";

/// Address families the transition matrix distinguishes.
pub const FAMILIES: usize = 2;
/// TCP states are 1..=13 in the kernel (`include/net/tcp_states.h`); 16 slots.
pub const STATES: usize = 16;
/// Slots in one transition matrix: family x old state x new state.
pub const TRANSITION_SLOTS: usize = FAMILIES * STATES * STATES;

pub const AF_INET: u16 = 2;
pub const AF_INET6: u16 = 10;
pub const IPPROTO_TCP: u16 = 6;

/// Index of a family in the transition matrix, `None` for anything but v4/v6.
#[inline(always)]
pub fn family_index(family: u16) -> Option<usize> {
    match family {
        AF_INET => Some(0),
        AF_INET6 => Some(1),
        _ => None,
    }
}

/// Slot of one transition in [`Transitions::counts`].
#[inline(always)]
pub fn transition_slot(family_index: usize, old: usize, new: usize) -> usize {
    (family_index * STATES + (old & (STATES - 1))) * STATES + (new & (STATES - 1))
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
    pub _pad: [u8; 6],
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
}
const _: () = assert!(size_of::<Offsets>() == 16);

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
    pub oldstate: u8,
    pub newstate: u8,
    /// [`Control::epoch`] the event was counted in.
    pub epoch: u8,
    pub _pad: [u8; 7],
}
const _: () = assert!(size_of::<StateEvent>() == 32);

#[cfg(feature = "user")]
mod user {
    use super::*;
    // SAFETY: all of these are repr(C) with explicit padding and only
    // integer fields, so every bit pattern is valid.
    unsafe impl aya::Pod for Transitions {}
    unsafe impl aya::Pod for Control {}
    unsafe impl aya::Pod for Offsets {}
    unsafe impl aya::Pod for StateEvent {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transition_slots_are_distinct_and_in_range() {
        let mut seen = [false; TRANSITION_SLOTS];
        for f in 0..FAMILIES {
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
    fn only_inet_families_have_an_index() {
        assert_eq!(family_index(AF_INET), Some(0));
        assert_eq!(family_index(AF_INET6), Some(1));
        assert_eq!(family_index(1), None);
    }
}
