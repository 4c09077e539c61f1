//! With `watch --events`: owners of TCP sockets (which `netconn list` also
//! asks the daemon for) and connection records: an event when a TCP socket
//! opens (enters ESTABLISHED, or LISTEN) and when it closes (enters CLOSE
//! from a state it was counted in), with its addresses, the process behind
//! it and, at close, the kernel's figures for it. Owners cost a hash
//! insert and delete per socket (about 1.4 µs of kernel time per
//! connection at full churn), hence not in plain counting.
//!
//! The process is taken only where the state change runs in the process's
//! own context: `connect()` (CLOSE -> SYN_SENT) and `listen()` (CLOSE ->
//! LISTEN). A listener's process is remembered by namespace and port and handed to the
//! connections accepted on it (LISTEN -> SYN_RECV, in softirq, where the
//! current task is unrelated and never read).

use aya_ebpf::{
    bindings::{
        BPF_F_NO_PREALLOC, BPF_RB_AVAIL_DATA, BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP,
        BPF_RB_RING_SIZE,
    },
    helpers::{
        bpf_get_current_comm, bpf_get_current_pid_tgid, bpf_get_current_task,
        bpf_get_socket_cookie, bpf_ktime_get_ns,
    },
    macros::{btf_tracepoint, map},
    maps::{HashMap, LruHashMap, PerCpuArray, RingBuf},
    programs::BtfTracePointContext,
};
use netconn_common::{
    CONN_CLOSE, CONN_FAILED, CONN_OPEN, CONN_RESET, ConnEvent, Owner, RESET_RECEIVED, RESET_SENT,
    TCP_CLOSE, TCP_CLOSE_WAIT, TCP_CLOSING, TCP_ESTABLISHED, TCP_FIN_WAIT1, TCP_FIN_WAIT2,
    TCP_LAST_ACK, TCP_LISTEN, TCP_SYN_RECV, TCP_SYN_SENT,
};

use crate::{bump, probe, read, sock_addr};

/// Owners of sockets, by cookie, from connect/listen/accept until close:
/// memory for live sockets only (not preallocated), up to a million.
#[map]
static OWNERS: HashMap<u64, Owner> = HashMap::with_max_entries(1 << 20, BPF_F_NO_PREALLOC);

/// Owners of listeners, by namespace and local port ([`listener_key`]):
/// pods that all listen on 8080 are each their own.
#[map]
static LISTENERS: LruHashMap<u64, Owner> = LruHashMap::with_max_entries(1 << 12, 0);

/// A listener's key: its namespace's inode above its port.
#[inline(always)]
fn listener_key(netns: u32, lport: u16) -> u64 {
    (u64::from(netns) << 16) | u64::from(lport)
}

/// Reset bits seen per socket, by cookie.
#[map]
static RESETS: LruHashMap<u64, u8> = LruHashMap::with_max_entries(1 << 16, 0);

#[map]
static CONN_EVENTS: RingBuf = RingBuf::with_byte_size(1024 * 1024, 0);

/// How a record is submitted: the reader is woken only once a quarter of
/// the ring waits. It drains at least every 20 ms anyway
/// (`netconn::cmd::watch::DRAIN_EVERY`), so a wake-up per record (an
/// irq_work here, a poll return and a drain of one record there) bought
/// nothing but cost; three quarters of the ring stay free for the 20 ms.
/// The ring's size is the one loaded (`NETCONN_CONN_RING_BYTES`).
#[inline(always)]
fn submit_flags() -> u64 {
    let size = CONN_EVENTS.query(u64::from(BPF_RB_RING_SIZE));
    if CONN_EVENTS.query(u64::from(BPF_RB_AVAIL_DATA)) >= size / 4 {
        u64::from(BPF_RB_FORCE_WAKEUP)
    } else {
        u64::from(BPF_RB_NO_WAKEUP)
    }
}

/// Connection records the ring buffer could not take. Apart from the
/// counting programs' losses: a record lost here changes no count, so it
/// must not make userspace resync.
#[map]
static CONN_LOST: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

/// Whether a socket leaving `old` for CLOSE had been reported open (or
/// existed before netconn started in a state only an open socket has).
fn was_open(old: u8) -> bool {
    matches!(
        old,
        TCP_ESTABLISHED
            | TCP_FIN_WAIT1
            | TCP_FIN_WAIT2
            | TCP_CLOSE_WAIT
            | TCP_LAST_ACK
            | TCP_LISTEN
            | TCP_CLOSING
    )
}

/// The calling process: its pid (tgid) and its name, the main thread's
/// comm (a worker thread may be named otherwise).
#[inline(always)]
fn current_owner() -> Owner {
    // SAFETY: no preconditions; the task is read with the fault-safe helper.
    let task = unsafe { bpf_get_current_task() };
    let leader: u64 = probe(task, offset!(group_leader)).unwrap_or(0);
    let comm = if leader != 0 {
        probe(leader, offset!(task_comm)).unwrap_or([0; 16])
    } else {
        bpf_get_current_comm().unwrap_or([0; 16])
    };
    Owner {
        pid: (bpf_get_current_pid_tgid() >> 32) as u32,
        comm,
        _pad: [0; 4],
        start_ns: 0,
    }
}

/// What the state program already read of the socket.
pub struct Socket {
    /// The tracepoint's BTF-typed argument, and its address as a number.
    pub sk: *const u8,
    pub addr: u64,
    pub netns: u32,
    pub family: u16,
    pub lport: u16,
}

/// Called for every counted TCP state change of a socket.
#[inline(always)]
pub fn on_state(sock: &Socket, old: u8, new: u8) -> Result<(), i32> {
    let Socket {
        sk,
        addr,
        netns,
        family,
        lport,
    } = *sock;
    // SAFETY: the tracepoint's own BTF-typed socket argument.
    let cookie = || unsafe { bpf_get_socket_cookie(sk as *mut _) };
    match (old, new) {
        (TCP_CLOSE, TCP_SYN_SENT) => {
            let owner = Owner {
                // SAFETY: no preconditions.
                start_ns: unsafe { bpf_ktime_get_ns() },
                ..current_owner()
            };
            let _ = OWNERS.insert(cookie(), owner, 0);
            return Ok(());
        }
        (TCP_LISTEN, TCP_SYN_RECV) => {
            // SAFETY: a value of this map, copied out at once.
            if let Some(owner) = unsafe { LISTENERS.get(listener_key(netns, lport)) }.copied() {
                let owner = Owner {
                    // SAFETY: no preconditions.
                    start_ns: unsafe { bpf_ktime_get_ns() },
                    ..owner
                };
                let _ = OWNERS.insert(cookie(), owner, 0);
            }
            return Ok(());
        }
        _ => {}
    }
    let kind = match (old, new) {
        (TCP_SYN_SENT, TCP_ESTABLISHED) | (TCP_SYN_RECV, TCP_ESTABLISHED) => CONN_OPEN,
        (TCP_CLOSE, TCP_LISTEN) => {
            let owner = Owner {
                // SAFETY: no preconditions.
                start_ns: unsafe { bpf_ktime_get_ns() },
                ..current_owner()
            };
            let _ = OWNERS.insert(cookie(), owner, 0);
            let _ = LISTENERS.insert(listener_key(netns, lport), owner, 0);
            CONN_OPEN
        }
        (o, TCP_CLOSE) if was_open(o) => CONN_CLOSE,
        // A connect that failed or was given up.
        (TCP_SYN_SENT, TCP_CLOSE) => CONN_FAILED,
        // A child that never completed its handshake (Fast Open).
        (TCP_SYN_RECV, TCP_CLOSE) => {
            let _ = OWNERS.remove(cookie());
            return Ok(());
        }
        _ => return Ok(()),
    };
    let cookie = cookie();
    let Some(mut entry) = CONN_EVENTS.reserve::<ConnEvent>(0) else {
        bump(CONN_LOST.get_ptr_mut(0));
        return Ok(());
    };
    // Filled in place: a ConnEvent on the stack would not fit the 512
    // bytes BPF programs get.
    let e = entry.as_mut_ptr();
    // SAFETY: `e` is the reserved record, zeroed first so every field and
    // padding byte is defined; field writes through the raw pointer.
    unsafe {
        core::ptr::write_bytes(e, 0, 1);
        (*e).cookie = cookie;
        (*e).ts_ns = bpf_ktime_get_ns();
        (*e).netns = netns;
        (*e).family = family;
        (*e).lport = lport;
        (*e).kind = kind;
        (*e).oldstate = old;
        (*e).newstate = new;
        (*e).rport = u16::from_be(read::<u16>(sk, offset!(skc_dport)).unwrap_or(0));
        (*e).laddr = sock_addr(
            sk,
            family,
            offset!(skc_rcv_saddr),
            offset!(skc_v6_rcv_saddr),
        )
        .unwrap_or([0; 16]);
        (*e).raddr =
            sock_addr(sk, family, offset!(skc_daddr), offset!(skc_v6_daddr)).unwrap_or([0; 16]);
        if let Some(owner) = OWNERS.get_ptr(cookie) {
            (*e).pid = (*owner).pid;
            (*e).comm = (*owner).comm;
            (*e).start_ns = (*owner).start_ns;
        }
        (*e).rtt_us = probe::<u32>(addr, offset!(srtt_us)).unwrap_or(0) >> 3;
        (*e).total_retrans = probe(addr, offset!(total_retrans)).unwrap_or(0);
        (*e).bytes_acked = probe(addr, offset!(bytes_acked)).unwrap_or(0);
        (*e).bytes_received = probe(addr, offset!(bytes_received)).unwrap_or(0);
        if kind == CONN_CLOSE || kind == CONN_FAILED {
            (*e).reset = RESETS.get(cookie).copied().unwrap_or(0);
        }
        if kind == CONN_FAILED {
            // An errno, 0..=133.
            (*e).error = read::<i32>(sk, offset!(sk_err)).unwrap_or(0) as u8;
        }
    }
    entry.submit(submit_flags());
    if kind == CONN_CLOSE || kind == CONN_FAILED {
        let _ = OWNERS.remove(cookie);
        let _ = RESETS.remove(cookie);
    }
    Ok(())
}

/// A reset on `sk`: counted in the metrics, and marked on the socket for
/// its close record with `watch --events`.
#[inline(always)]
fn on_reset(ctx: &BtfTracePointContext, bit: u8) {
    let sk: *const u8 = ctx.arg(0);
    crate::metrics::on_reset(ctx, sk, bit == RESET_SENT);
    // SAFETY: see crate::count.
    if unsafe { core::ptr::read_volatile(&crate::WATCH_CONNS) } != 0 {
        mark_reset(sk, bit);
    }
}

#[inline(always)]
fn mark_reset(sk: *const u8, bit: u8) {
    if sk.is_null() {
        return;
    }
    // SAFETY: a non-null BTF-typed socket argument.
    let cookie = unsafe { bpf_get_socket_cookie(sk as *mut _) };
    // SAFETY: a value of this map, copied out at once.
    let seen = unsafe { RESETS.get(cookie) }.copied().unwrap_or(0);
    let _ = RESETS.insert(cookie, seen | bit, 0);
    if let Some(mut entry) = CONN_EVENTS.reserve::<ConnEvent>(0) {
        let e = entry.as_mut_ptr();
        // SAFETY: the reserved record, zeroed, then two fields set.
        unsafe {
            core::ptr::write_bytes(e, 0, 1);
            (*e).cookie = cookie;
            (*e).kind = CONN_RESET;
            (*e).reset = bit;
        }
        entry.submit(submit_flags());
    }
}

/// `tcp_receive_reset(struct sock *sk)`.
#[btf_tracepoint(function = "tcp_receive_reset")]
pub fn netconn_rst_in(ctx: BtfTracePointContext) -> i32 {
    emptied_returns!(0);
    on_reset(&ctx, RESET_RECEIVED);
    0
}

/// `tcp_send_reset(const struct sock *sk, const struct sk_buff *skb, ...)`;
/// `sk` is NULL for resets sent without a socket, and may be a time-wait
/// or request socket.
#[btf_tracepoint(function = "tcp_send_reset")]
pub fn netconn_rst_out(ctx: BtfTracePointContext) -> i32 {
    emptied_returns!(0);
    on_reset(&ctx, RESET_SENT);
    0
}
