//! UDP sockets, which fire no state event: programs on the socket lifecycle
//! hooks of the cgroup v2 root (every socket of the host passes them).
//!
//! A UDP socket is in the tables `/proc/net/udp` and `ss -u` list while it
//! is hashed, i.e. bound to a local port:
//!
//! * explicitly by `bind()`: `post_bind4/6` run after a successful bind
//!   (a zero port there means `IP_BIND_ADDRESS_NO_PORT`: not hashed yet);
//! * by autobind, which has no hook of its own. It happens in `connect()`
//!   right after the `connect4/6` hook when the socket has no port yet, and
//!   in `sendmsg()` right before the `sendmsg4/6` hook (unconnected sends);
//! * until `close()`: `sock_release` runs before the socket is unhashed.
//!
//! `UDP_SOCKETS` remembers, per socket, whether it was counted in, so that
//! a socket is counted in once and out once whichever hooks it passes.
//! Sockets created since load get their entry in `sock_create`; userspace
//! adds the ones its first snapshot listed (and says so in `Control`), so
//! an older socket missing from the map that sends was not bound then. A
//! socket older than the programs and without an entry is counted out on
//! release when its local port is set. What this cannot see is repaired by
//! the reconciliation with `/proc/net/sockstat`: an old socket that
//! autobinds while the first snapshot is taken, and a connected socket
//! whose `connect(AF_UNSPEC)` unhashes it before close.
//!
//! Every program allows the operation: netconn only watches.

use aya_ebpf::{
    EbpfContext,
    bindings::{BPF_F_NO_PREALLOC, BPF_NOEXIST},
    helpers::bpf_get_socket_cookie,
    macros::{cgroup_sock, cgroup_sock_addr, map},
    maps::HashMap,
    programs::{SockAddrContext, SockContext},
};
use netconn_common::{
    IPPROTO_UDP, UDP_COUNTED as COUNTED, UDP_HASHED, UDP_NOT_COUNTED as NOT_COUNTED, UDP_UNHASHED,
};

use crate::{
    ALL_NAMESPACES, CONTROL, LOST, TARGET_NETNS, Transition, bump, in_scope, probe, tally,
};

/// What a cgroup program returns to let the operation go on.
const ALLOW: i32 = 1;
const UDP: u32 = IPPROTO_UDP as u32;

/// UDP sockets by cookie: [`COUNTED`] or not. An entry lives from
/// `sock_create` (or userspace's first snapshot) to `sock_release`.
#[map]
static UDP_SOCKETS: HashMap<u64, u8> = HashMap::with_max_entries(1 << 20, BPF_F_NO_PREALLOC);

#[inline(always)]
fn cookie(ctx: &impl EbpfContext) -> u64 {
    // SAFETY: both context types are accepted by the helper.
    unsafe { bpf_get_socket_cookie(ctx.as_ptr()) }
}

/// One slot per CPU to turn a socket pointer into a plain number.
#[map]
static SCRATCH: aya_ebpf::maps::PerCpuArray<u64> =
    aya_ebpf::maps::PerCpuArray::with_max_entries(1, 0);

/// `sk` as a number the verifier lets us add offsets to: it refuses any
/// arithmetic on a socket pointer, even with a constant, but lets a root
/// program store a pointer in a map and read it back as a scalar.
#[inline(always)]
fn launder(sk: u64) -> u64 {
    match SCRATCH.get_ptr_mut(0) {
        Some(slot) => unsafe {
            // SAFETY: a per-CPU value; volatile so the round trip stays.
            core::ptr::write_volatile(slot, sk);
            core::ptr::read_volatile(slot)
        },
        None => 0,
    }
}

/// The namespace of the socket under a cgroup program's context: the
/// target's (events of other namespaces are dropped before this point),
/// or with every namespace counted, read from the kernel's socket (the
/// context's `bpf_sock` is its `struct sock`).
#[inline(always)]
fn netns_of(sk: u64) -> u32 {
    // SAFETY: see crate::count.
    let (all, target) = unsafe {
        (
            core::ptr::read_volatile(&ALL_NAMESPACES),
            core::ptr::read_volatile(&TARGET_NETNS),
        )
    };
    if all == 0 {
        return target;
    }
    probe::<u64>(launder(sk), offset!(skc_net))
        .and_then(|net| probe::<u32>(net, offset!(net_inum)))
        .unwrap_or(0)
}

#[inline(always)]
fn udp_transition(sk: u64, family: u32, old: u8, new: u8) -> Transition {
    Transition {
        netns: netns_of(sk),
        family: family as u16,
        protocol: IPPROTO_UDP,
        old,
        new,
        lport: 0,
        laddr: [0; 16],
        watched: false,
    }
}

/// Counts a socket into the tables unless it already is. With
/// `only_known`, sockets older than the programs are left alone.
#[inline(always)]
fn enter(ctx: &impl EbpfContext, sk: u64, family: u32, only_known: bool) {
    let cookie = cookie(ctx);
    match UDP_SOCKETS.get_ptr_mut(cookie) {
        // SAFETY: a value of this map; the socket's lock serialises hooks.
        Some(v) if unsafe { *v } == COUNTED => return,
        Some(v) => unsafe { *v = COUNTED },
        None if only_known => return,
        None => {
            if UDP_SOCKETS.insert(cookie, COUNTED, 0).is_err() {
                bump(LOST.get_ptr_mut(0));
            }
        }
    }
    tally(udp_transition(sk, family, UDP_UNHASHED, UDP_HASHED), || {
        cookie
    });
}

#[cgroup_sock(sock_create)]
pub fn netconn_udp_create(ctx: SockContext) -> i32 {
    emptied_returns!(ALLOW);
    // SAFETY: the context's own fields.
    if unsafe { (*ctx.sock).protocol } == UDP
        && in_scope(&ctx)
        && UDP_SOCKETS
            .insert(cookie(&ctx), NOT_COUNTED, BPF_NOEXIST.into())
            .is_err()
    {
        bump(LOST.get_ptr_mut(0));
    }
    ALLOW
}

#[inline(always)]
fn on_bind(ctx: &SockContext) -> i32 {
    // SAFETY: the context's own fields; src_port is readable in post_bind.
    let (protocol, port, family) = unsafe {
        let sk = &*ctx.sock;
        (sk.protocol, sk.src_port, sk.family)
    };
    if protocol == UDP && port != 0 && in_scope(ctx) {
        enter(ctx, ctx.sock as u64, family, false);
    }
    ALLOW
}

#[cgroup_sock(post_bind4)]
pub fn netconn_udp_bind4(ctx: SockContext) -> i32 {
    emptied_returns!(ALLOW);
    on_bind(&ctx)
}

#[cgroup_sock(post_bind6)]
pub fn netconn_udp_bind6(ctx: SockContext) -> i32 {
    emptied_returns!(ALLOW);
    on_bind(&ctx)
}

#[inline(always)]
fn on_connect(ctx: &SockAddrContext) -> i32 {
    // SAFETY: the context's own fields and its socket.
    let (protocol, family, port, sk) = unsafe {
        let a = &*ctx.sock_addr;
        let sk = a.__bindgen_anon_1.sk;
        let port = if sk.is_null() { 1 } else { (*sk).src_port };
        (a.protocol, a.family, port, sk as u64)
    };
    // No local port yet: connect() autobinds right after this hook.
    if protocol == UDP && port == 0 && in_scope(ctx) {
        enter(ctx, sk, family, false);
    }
    ALLOW
}

#[cgroup_sock_addr(connect4)]
pub fn netconn_udp_connect4(ctx: SockAddrContext) -> i32 {
    emptied_returns!(ALLOW);
    on_connect(&ctx)
}

#[cgroup_sock_addr(connect6)]
pub fn netconn_udp_connect6(ctx: SockAddrContext) -> i32 {
    emptied_returns!(ALLOW);
    on_connect(&ctx)
}

#[inline(always)]
fn on_sendmsg(ctx: &SockAddrContext) -> i32 {
    // SAFETY: the context's own fields.
    let (protocol, family, sk) = unsafe {
        let a = &*ctx.sock_addr;
        (a.protocol, a.family, a.__bindgen_anon_1.sk as u64)
    };
    // The socket is hashed by now (autobind runs before this hook). One
    // missing from the map is older than the programs: until userspace has
    // listed the ones that were bound then, it may be one of those.
    if protocol == UDP && in_scope(ctx) {
        let known = CONTROL.get(0).is_some_and(|c| c.udp_known != 0);
        enter(ctx, sk, family, !known);
    }
    ALLOW
}

#[cgroup_sock_addr(sendmsg4)]
pub fn netconn_udp_sendmsg4(ctx: SockAddrContext) -> i32 {
    emptied_returns!(ALLOW);
    on_sendmsg(&ctx)
}

#[cgroup_sock_addr(sendmsg6)]
pub fn netconn_udp_sendmsg6(ctx: SockAddrContext) -> i32 {
    emptied_returns!(ALLOW);
    on_sendmsg(&ctx)
}

/// The socket's local port, read from the kernel's `struct sock` (the
/// release hook's context does not expose it).
#[inline(always)]
fn local_port(ctx: &SockContext) -> Option<u16> {
    probe(ctx.sock as u64, offset!(skc_num)).ok()
}

#[cgroup_sock(sock_release)]
pub fn netconn_udp_release(ctx: SockContext) -> i32 {
    emptied_returns!(ALLOW);
    // SAFETY: the context's own fields.
    let (protocol, family) = unsafe { ((*ctx.sock).protocol, (*ctx.sock).family) };
    if protocol != UDP || !in_scope(&ctx) {
        return ALLOW;
    }
    let cookie = cookie(&ctx);
    // SAFETY: a value of this map, copied out before the entry goes.
    let counted = match unsafe { UDP_SOCKETS.get(cookie) }.copied() {
        Some(v) => {
            let _ = UDP_SOCKETS.remove(cookie);
            v == COUNTED
        }
        // Older than the programs: in the tables iff it has a port.
        None => match local_port(&ctx) {
            Some(port) => port != 0,
            None => {
                bump(LOST.get_ptr_mut(0));
                false
            }
        },
    };
    if counted {
        tally(
            udp_transition(ctx.sock as u64, family, UDP_HASHED, UDP_UNHASHED),
            || cookie,
        );
    }
    ALLOW
}
