//! netconn's kernel side.
//!
//! One program on the BTF tracepoint `inet_sock_set_state`, which
//! `tcp_set_state()` and `inet_sk_state_store()` fire on every TCP state
//! change (v4 and v6), *before* the new state is stored:
//!
//! ```c
//! TRACE_EVENT(inet_sock_set_state,
//!     TP_PROTO(const struct sock *sk, const int oldstate, const int newstate), ...)
//! ```
//!
//! The BTF form (`tp_btf`) is used rather than the classic tracepoint because
//! it hands us the `struct sock *` itself, which `bpf_get_socket_cookie`
//! accepts: the cookie is the key sock_diag reports too, so userspace can tell
//! exactly which dumped socket an event belongs to. It also skips the perf
//! record the classic tracepoint builds on every call.
//!
//! Per event the program counts the transition in a per-CPU matrix (no
//! userspace work per event) and, only while userspace asks for it, pushes
//! the event into a ring buffer.
//!
//! # No event is skipped
//!
//! The kernel does not run a tracing program nested inside itself: when a
//! softirq (or, where tracepoint callbacks are preemptible, another task)
//! fires the tracepoint on a CPU where the program is already running,
//! `__bpf_trace_run()` skips the nested run and only bumps the program's
//! `recursion_misses`. Under heavy churn that happens many times a second.
//! The guard (`prog->active`) is per program, so a second program on the
//! same tracepoint still runs in that nested context. The primary writes
//! every event it sees into a small per-CPU ring (`HANDLED`); the backup
//! looks its event up there, newest first: found, the primary handled it
//! and the entry is consumed; not found, the primary was skipped and the
//! backup counts the event and the rescue. Userspace checks that rescues
//! equal the primary's `recursion_misses`; any difference, a loss or a
//! double count, triggers a resync. Counters are bumped atomically because a
//! nested run can interrupt the other program between its load and store.
#![no_std]
#![no_main]
// The bpf target has no AtomicU64::fetch_add; the intrinsic lowers to the
// BPF atomic add instruction.
#![allow(internal_features)]
#![feature(core_intrinsics)]

use core::intrinsics::{AtomicOrdering, atomic_xadd};

use aya_ebpf::{
    EbpfContext,
    helpers::{bpf_get_socket_cookie, bpf_ktime_get_ns, bpf_probe_read_kernel},
    macros::{btf_tracepoint, map},
    maps::{Array, PerCpuArray, RingBuf},
    programs::BtfTracePointContext,
};
use netconn_common::{
    Control, IPPROTO_TCP, Offsets, StateEvent, Transitions, family_index, transition_slot,
};

/// Network namespace inode to count; 0 counts every namespace.
#[unsafe(no_mangle)]
static TARGET_NETNS: u32 = 0;

/// Struct offsets from BTF, set by userspace before load.
#[unsafe(no_mangle)]
static OFFSETS: Offsets = Offsets {
    skc_family: 0,
    skc_net: 0,
    net_inum: 0,
    sk_protocol: 0,
};

#[map]
static TRANSITIONS: PerCpuArray<Transitions> = PerCpuArray::with_max_entries(2, 0);

#[map]
static CONTROL: Array<Control> = Array::with_max_entries(1, 0);

#[map]
static EVENTS: RingBuf = RingBuf::with_byte_size(16 * 1024 * 1024, 0);

#[map]
static LOST: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

#[map]
static RESCUED: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

/// Events the primary saw lately on this CPU, for the backup to look up.
#[map]
static HANDLED: PerCpuArray<Handled> = PerCpuArray::with_max_entries(1, 0);

/// Ring size: more than the events a softirq can nest between the
/// primary's and the backup's run for one event.
const RING: usize = 64;

#[repr(C)]
pub struct Handled {
    head: u64,
    /// (socket address, transition) of the newest events.
    events: [[u64; 2]; RING],
}

/// The socket argument's address as a plain number: the verifier allows no
/// arithmetic (not even a comparison by XOR) on the trusted pointer itself.
#[inline(always)]
fn sk_address(ctx: &BtfTracePointContext) -> u64 {
    // SAFETY: the context is the tracepoint's argument array.
    unsafe { bpf_probe_read_kernel(ctx.as_ptr() as *const u64) }.unwrap_or(0)
}

#[inline(always)]
fn transition_key(old: i32, new: i32) -> u64 {
    // Never 0, so a zeroed slot matches nothing.
    (1 << 32) | ((old as u64 & 0xffff) << 16) | (new as u64 & 0xffff)
}

#[btf_tracepoint(function = "inet_sock_set_state")]
pub fn netconn_state_change(ctx: BtfTracePointContext) -> i32 {
    let sk: *const u8 = ctx.arg(0);
    let (old, new): (i32, i32) = (ctx.arg(1), ctx.arg(2));
    if let Some(h) = HANDLED.get_ptr_mut(0) {
        // SAFETY: per-CPU value; the primary never runs nested in itself.
        unsafe {
            let slot = ((*h).head as usize) & (RING - 1);
            (*h).events[slot] = [sk_address(&ctx), transition_key(old, new)];
            (*h).head = (*h).head.wrapping_add(1);
        }
    }
    let _ = count(sk, old, new);
    0
}

#[btf_tracepoint(function = "inet_sock_set_state")]
pub fn netconn_state_backup(ctx: BtfTracePointContext) -> i32 {
    let sk: *const u8 = ctx.arg(0);
    let (old, new): (i32, i32) = (ctx.arg(1), ctx.arg(2));
    let want = [sk_address(&ctx), transition_key(old, new)];
    let Some(h) = HANDLED.get_ptr_mut(0) else {
        return 0;
    };
    // SAFETY: per-CPU value; indices are masked into the ring.
    unsafe {
        let head = (*h).head as usize;
        for i in 1..=RING {
            let slot = head.wrapping_sub(i) & (RING - 1);
            if (*h).events[slot] == want {
                (*h).events[slot] = [0, 0];
                return 0;
            }
        }
    }
    // The primary never saw this event: it was skipped.
    bump(RESCUED.get_ptr_mut(0));
    let _ = count(sk, old, new);
    0
}

#[inline(always)]
fn bump(counter: Option<*mut u64>) {
    if let Some(c) = counter {
        // SAFETY: a valid per-CPU map value, updated atomically because a
        // nested run may interrupt the other program mid-update.
        unsafe { atomic_xadd::<u64, u64, { AtomicOrdering::Relaxed }>(c, 1) };
    }
}

#[inline(always)]
fn read<T>(base: *const u8, offset: u32) -> Result<T, i32> {
    // SAFETY: bpf_probe_read_kernel copes with any address; offsets come from
    // the running kernel's BTF.
    unsafe { bpf_probe_read_kernel(base.wrapping_add(offset as usize) as *const T) }
}

/// Counts one state change of `sk` and journals it when asked.
#[inline(always)]
fn count(sk: *const u8, oldstate: i32, newstate: i32) -> Result<(), i32> {
    // SAFETY: read_volatile keeps the compiler from folding the globals that
    // userspace overrides at load time.
    let offsets = unsafe { core::ptr::read_volatile(&OFFSETS) };
    let target = unsafe { core::ptr::read_volatile(&TARGET_NETNS) };

    // MPTCP sockets also go through inet_sk_state_store(); count TCP only.
    let protocol: u16 = read(sk, offsets.sk_protocol)?;
    if protocol != IPPROTO_TCP {
        return Ok(());
    }
    let net: *const u8 = read(sk, offsets.skc_net)?;
    let netns: u32 = read(net, offsets.net_inum)?;
    if target != 0 && netns != target {
        return Ok(());
    }
    let family: u16 = read(sk, offsets.skc_family)?;
    let Some(fam) = family_index(family) else {
        return Ok(());
    };

    let control = CONTROL.get(0).copied().unwrap_or_default();
    if let Some(t) = TRANSITIONS.get_ptr_mut((control.epoch & 1) as u32) {
        let slot = transition_slot(fam, oldstate as usize, newstate as usize);
        // SAFETY: slot < TRANSITION_SLOTS by construction of transition_slot.
        bump(Some(unsafe { (*t).counts.as_mut_ptr().add(slot) }));
    }

    if control.journal != 0 {
        match EVENTS.reserve::<StateEvent>(0) {
            Some(mut entry) => {
                entry.write(StateEvent {
                    // SAFETY: `sk` is the tracepoint's own BTF-typed socket
                    // argument, which bpf_get_socket_cookie accepts.
                    cookie: unsafe { bpf_get_socket_cookie(sk as *mut _) },
                    ts_ns: unsafe { bpf_ktime_get_ns() },
                    netns,
                    family,
                    oldstate: oldstate as u8,
                    newstate: newstate as u8,
                    epoch: control.epoch,
                    _pad: [0; 7],
                });
                entry.submit(0);
            }
            None => bump(LOST.get_ptr_mut(0)),
        }
    }
    Ok(())
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}
