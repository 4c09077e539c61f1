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
#![no_std]
#![no_main]

use aya_ebpf::{
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

#[btf_tracepoint(function = "inet_sock_set_state")]
pub fn netconn_state_change(ctx: BtfTracePointContext) -> i32 {
    let _ = try_state_change(&ctx);
    0
}

#[inline(always)]
fn read<T>(base: *const u8, offset: u32) -> Result<T, i32> {
    // SAFETY: bpf_probe_read_kernel copes with any address; offsets come from
    // the running kernel's BTF.
    unsafe { bpf_probe_read_kernel(base.wrapping_add(offset as usize) as *const T) }
}

fn try_state_change(ctx: &BtfTracePointContext) -> Result<(), i32> {
    let sk: *const u8 = ctx.arg(0);
    let oldstate: i32 = ctx.arg(1);
    let newstate: i32 = ctx.arg(2);
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
    let epoch = (control.epoch & 1) as u32;
    if let Some(t) = TRANSITIONS.get_ptr_mut(epoch) {
        let slot = transition_slot(fam, oldstate as usize, newstate as usize);
        // SAFETY: per-CPU value, and the program does not run twice at once on
        // one CPU (the kernel skips nested runs and counts them as misses).
        unsafe {
            if let Some(c) = (*t).counts.get_mut(slot) {
                *c += 1;
            }
        }
    }

    if control.journal != 0 {
        match EVENTS.reserve::<StateEvent>(0) {
            Some(mut entry) => {
                entry.write(StateEvent {
                    // SAFETY: `sk` is the tracepoint's own socket argument,
                    // a BTF-typed pointer the verifier accepts here.
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
            None => {
                if let Some(lost) = LOST.get_ptr_mut(0) {
                    // SAFETY: per-CPU value, see above.
                    unsafe { *lost += 1 };
                }
            }
        }
    }
    Ok(())
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}
