//! Ephemeral ports: connected sockets per destination whose local port is
//! in the namespace's `ip_local_port_range` (see the common crate's
//! `ephemeral` module for the marks and claims). Two moments of a
//! socket's life count: its connect completing (SYN_SENT -> ESTABLISHED),
//! in the sock_ops program, loaded whenever the ports are counted, which
//! counts the socket and marks it with a callback flag; and its close from
//! an established state, in the state program, which uncounts a marked
//! socket or one userspace claimed (connected before netconn started).

use aya_ebpf::{
    EbpfContext,
    bindings::{BPF_F_NO_PREALLOC, BPF_NOEXIST},
    helpers::bpf_get_socket_cookie,
    macros::map,
    maps::{Array, HashMap, PerCpuArray, PerCpuHashMap},
    programs::SockOpsContext,
};
use netconn_common::{
    AF_INET, Destination, DestinationKey, EPHEMERAL_MAX_DESTINATIONS, EPHEMERAL_MAX_SOCKETS,
    EPHEMERAL_MAX_WINDOW, EphemeralControl, SOCK_OPS_EPHEMERAL_MARK, SOCK_OPS_FLAGS,
    ephemeral_leaves,
};

use crate::{TARGET_NETNS, add, bump, probe, read, sock_addr};

/// The destination of each socket userspace claimed (connected before the
/// programs came), by cookie (not preallocated).
#[map]
static EPHEMERAL_MARKED: HashMap<u64, Destination> =
    HashMap::with_max_entries(EPHEMERAL_MAX_SOCKETS, BPF_F_NO_PREALLOC);

/// Cookies the sock_ops program counted during userspace's first dump.
#[map]
static EPHEMERAL_WINDOW: HashMap<u64, u8> =
    HashMap::with_max_entries(EPHEMERAL_MAX_WINDOW, BPF_F_NO_PREALLOC);

/// Sockets added minus removed per destination and generation, per CPU
/// (a busy destination's count is not bounced between CPUs).
#[map]
static EPHEMERAL_COUNTS: PerCpuHashMap<DestinationKey, u64> =
    PerCpuHashMap::with_max_entries(EPHEMERAL_MAX_DESTINATIONS, BPF_F_NO_PREALLOC);

#[map]
static EPHEMERAL_CONTROL: Array<EphemeralControl> = Array::with_max_entries(1, 0);

/// Sockets a full map kept out of the count (or, at close, out of the
/// removal).
#[map]
static EPHEMERAL_UNTRACKED: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

/// A connect completed (sock_ops `ACTIVE_ESTABLISHED_CB`, in scope):
/// counts the socket if its port is in the range, and marks it (with the
/// TCP metrics' flags when they are on).
#[inline(always)]
pub fn on_connected(ctx: &SockOpsContext, metrics: bool) {
    // SAFETY: see crate::count.
    if unsafe { core::ptr::read_volatile(&crate::WATCH_EPHEMERAL) } == 0 {
        return;
    }
    let control = EPHEMERAL_CONTROL.get(0).copied().unwrap_or_default();
    let lport = ctx.local_port() as u16;
    if control.low == 0 || lport < control.low || lport > control.high {
        return;
    }
    let family = ctx.family() as u16;
    let mut dest = Destination {
        // SAFETY: see crate::count.
        netns: unsafe { core::ptr::read_volatile(&TARGET_NETNS) },
        family,
        rport: crate::remote_port(ctx.remote_port()),
        ..Destination::default()
    };
    // Each field read on its own (volatile): folded into one address
    // computed from the family, the reads are refused by the verifier.
    // SAFETY: fields of the context the kernel passed.
    let ops = ctx.ops;
    if family == AF_INET {
        let (l, r) = unsafe {
            (
                core::ptr::read_volatile(&raw const (*ops).local_ip4),
                core::ptr::read_volatile(&raw const (*ops).remote_ip4),
            )
        };
        dest.laddr[..4].copy_from_slice(&l.to_ne_bytes());
        dest.raddr[..4].copy_from_slice(&r.to_ne_bytes());
    } else {
        for i in 0..4 {
            // SAFETY: as above; i < 4.
            let (l, r) = unsafe {
                (
                    core::ptr::read_volatile(&raw const (*ops).local_ip6[i]),
                    core::ptr::read_volatile(&raw const (*ops).remote_ip6[i]),
                )
            };
            dest.laddr[i * 4..i * 4 + 4].copy_from_slice(&l.to_ne_bytes());
            dest.raddr[i * 4..i * 4 + 4].copy_from_slice(&r.to_ne_bytes());
        }
    }
    // While userspace takes its first dump, it must see what is counted;
    // with no room to say so, the socket is left to it (uncounted here).
    if control.window != 0 {
        // SAFETY: the sock_ops context is accepted by the helper.
        let cookie = unsafe { bpf_get_socket_cookie(ctx.as_ptr()) };
        let one = core::hint::black_box(1u8);
        if EPHEMERAL_WINDOW.insert(&cookie, &one, 0).is_err() {
            bump(EPHEMERAL_UNTRACKED.get_ptr_mut(0));
            return;
        }
    }
    if !count(&dest, control.generation, 1) {
        bump(EPHEMERAL_UNTRACKED.get_ptr_mut(0));
        return;
    }
    // Unmarked, its close would not uncount it: undo the count. The flags
    // other programs gave the socket (another netconn's) stay.
    let flags = ctx.cb_flags()
        | u32::from(SOCK_OPS_EPHEMERAL_MARK)
        | if metrics {
            u32::from(SOCK_OPS_FLAGS)
        } else {
            0
        };
    if ctx.set_cb_flags(flags as i32).is_err() {
        count(&dest, control.generation, u64::MAX);
        bump(EPHEMERAL_UNTRACKED.get_ptr_mut(0));
    }
}

/// One state change of a TCP socket of the counted namespace; `lport`
/// when the caller already read it. Only a close from an established
/// state matters here: the connect was counted by the sock_ops program.
#[inline(always)]
pub fn on_state(
    sk: *const u8,
    addr: u64,
    netns: u32,
    family: u16,
    lport: Option<u16>,
    old: u8,
    new: u8,
) -> Result<(), i32> {
    if !ephemeral_leaves(old, new) {
        return Ok(());
    }
    let control = EPHEMERAL_CONTROL.get(0).copied().unwrap_or_default();
    let flags: u8 = probe(addr, offset!(sock_ops_cb_flags))?;
    if flags & SOCK_OPS_EPHEMERAL_MARK != 0 {
        let dest = Destination {
            netns,
            family,
            rport: u16::from_be(read(sk, offset!(skc_dport))?),
            laddr: sock_addr(
                sk,
                family,
                offset!(skc_rcv_saddr),
                offset!(skc_v6_rcv_saddr),
            )?,
            raddr: sock_addr(sk, family, offset!(skc_daddr), offset!(skc_v6_daddr))?,
        };
        if !count(&dest, control.generation, u64::MAX) {
            bump(EPHEMERAL_UNTRACKED.get_ptr_mut(0));
        }
        return Ok(());
    }
    // Unmarked: only userspace's claims are left to look up.
    if control.claims == 0 {
        return Ok(());
    }
    let lport = match lport {
        Some(p) => p,
        None => u16::from_be(probe(addr, offset!(inet_sport))?),
    };
    let in_range = control.low != 0 && lport >= control.low && lport <= control.high;
    // A socket counted under a range that changed since may lie outside
    // the current one: once the range moved, every close looks.
    if !in_range && control.any_port == 0 {
        return Ok(());
    }
    // SAFETY: the tracepoint's BTF-typed socket (see crate::count).
    let cookie = unsafe { bpf_get_socket_cookie(sk as *mut _) };
    // SAFETY: a copy is taken at once; the entry may go meanwhile.
    let Some(dest) = (unsafe { EPHEMERAL_MARKED.get(&cookie) }).copied() else {
        return Ok(());
    };
    // The delete is the claim: userspace may be undoing the same entry.
    if EPHEMERAL_MARKED.remove(&cookie).is_ok() && !count(&dest, control.generation, u64::MAX) {
        bump(EPHEMERAL_UNTRACKED.get_ptr_mut(0));
    }
    Ok(())
}

/// Adds `n` (wrapping) to the destination's count in `generation`.
#[inline(always)]
fn count(dest: &Destination, generation: u8, n: u64) -> bool {
    let key = DestinationKey {
        dest: *dest,
        generation,
        _pad: [0; 7],
    };
    if EPHEMERAL_COUNTS.get_ptr_mut(&key).is_none() {
        // Another CPU may make it first: then this insert fails, harmlessly.
        // The zero lives on the stack: a constant may be merged into a
        // zero-initialised global of .rodata that userspace overrides.
        let zero = core::hint::black_box(0u64);
        let _ = EPHEMERAL_COUNTS.insert(&key, &zero, u64::from(BPF_NOEXIST));
    }
    match EPHEMERAL_COUNTS.get_ptr_mut(&key) {
        // SAFETY: this CPU's value; atomic, as a program run nested on
        // this CPU may add too.
        Some(at) => {
            unsafe { add(at, n) };
            true
        }
        None => false,
    }
}
