//! netconn's kernel side.
//!
//! Two programs (a primary and its backup, see below) on the BTF
//! tracepoint `inet_sock_set_state`, which
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
//! same tracepoint still runs in that nested context. The primary marks
//! every event it sees in a per-CPU table (`HANDLED`): the socket's
//! address and the transition, in a slot hashed from the address. The
//! backup, which runs right after
//! it for the same event, looks for the mark: present, the primary handled
//! the event and the mark is cleared; absent, the primary was skipped and
//! the backup counts the event and the rescue. Marks are per socket, not a
//! recency ring, because programs can be preempted: in a ring, the events
//! of other tasks evict a mark before its backup runs. One socket's state
//! changes are serialised by its lock, so only two events in flight at
//! once whose marks share a slot can disturb a mark, and it shows as one
//! kind of error: userspace checks that rescues equal the primary's
//! `recursion_misses`, and any difference triggers a resync. Counters are
//! bumped atomically because a nested run can interrupt the other program
//! between its load and store.
#![no_std]
#![no_main]
// The bpf target has no AtomicU64::fetch_add; the intrinsic lowers to the
// BPF atomic add instruction.
#![allow(internal_features)]
#![feature(core_intrinsics)]
// Map keys and values go to the helpers by reference: passed by value
// (what this lint asks) each would be copied onto the 512-byte BPF stack
// first, and some are larger than the stack can spare.
#![allow(clippy::needless_borrows_for_generic_args)]

use core::intrinsics::{AtomicOrdering, atomic_xadd};

use aya_ebpf::{
    EbpfContext,
    bindings::BPF_F_NO_PREALLOC,
    helpers::{
        bpf_get_netns_cookie, bpf_get_socket_cookie, bpf_ktime_get_ns, bpf_probe_read_kernel,
    },
    macros::{btf_tracepoint, map},
    maps::{Array, HashMap, PerCpuArray, PerCpuHashMap, RingBuf},
    programs::BtfTracePointContext,
};
use netconn_common::{
    AF_INET, Control, IPPROTO_TCP, MAX_NAMESPACES, NsCounts, NsKey, Offsets, StateEvent, TCP_CLOSE,
    TCP_SYN_SENT, Transitions, WATCHED_PORT_WORDS, conn_index, counted_after, counted_before,
    delta_slot, failure_reason, transition_slot,
};

/// One field of [`OFFSETS`], read volatile: the compiler must not fold the
/// zero the global is built with (userspace sets it at load time). One
/// field, not the struct: a volatile read of the whole struct loads all
/// 25 fields each time, which took a fifth of the state program's
/// instructions.
macro_rules! offset {
    ($field:ident) => {
        crate::offset_at(&raw const crate::OFFSETS.$field)
    };
}

/// See [`offset!`].
#[inline(always)]
fn offset_at(field: *const u32) -> u32 {
    // SAFETY: a field of a global, read where it lies.
    unsafe { core::ptr::read_volatile(field) }
}

/// The first statement of every program: in a build with
/// [`netconn_common::EMPTIED`], returns `$allow` at once; in any other
/// build, compiled away.
macro_rules! emptied_returns {
    ($allow:expr) => {
        if netconn_common::EMPTIED {
            return $allow;
        }
    };
}

mod conn;
mod ephemeral;
mod metrics;
mod udp;

/// Network namespace inode to count; 0 counts every namespace.
#[unsafe(no_mangle)]
static TARGET_NETNS: u32 = 0;

/// The same namespace's cookie, for the cgroup programs; 0: every one.
#[unsafe(no_mangle)]
static TARGET_NETNS_COOKIE: u64 = 0;

/// Non-zero: `watch --all-namespaces`, a matrix per namespace.
#[unsafe(no_mangle)]
static ALL_NAMESPACES: u8 = 0;

/// Non-zero: `watch --events` (see the conn module).
#[unsafe(no_mangle)]
static WATCH_CONNS: u8 = 0;

/// Non-zero: the TCP metrics are on (failed connects count into them).
#[unsafe(no_mangle)]
static WATCH_METRICS: u8 = 0;

/// Non-zero: ephemeral ports are counted per destination (see the
/// ephemeral module).
#[unsafe(no_mangle)]
static WATCH_EPHEMERAL: u8 = 0;

/// Non-zero: port groups are configured (see `WATCHED_PORTS`).
#[unsafe(no_mangle)]
static WATCH_PORTS: u8 = 0;

/// Struct offsets from BTF, set by userspace before load.
#[unsafe(no_mangle)]
static OFFSETS: Offsets = Offsets {
    skc_family: 0,
    skc_net: 0,
    net_inum: 0,
    sk_protocol: 0,
    skc_num: 0,
    skc_rcv_saddr: 0,
    skc_v6_rcv_saddr: 0,
    inet_sport: 0,
    skc_daddr: 0,
    skc_dport: 0,
    skc_v6_daddr: 0,
    srtt_us: 0,
    total_retrans: 0,
    bytes_acked: 0,
    bytes_received: 0,
    group_leader: 0,
    task_comm: 0,
    skc_state: 0,
    sock_ops_cb_flags: 0,
    skb_dev: 0,
    dev_nd_net: 0,
    sk_err: 0,
    skb_head: 0,
    skb_network_header: 0,
    skb_transport_header: 0,
};

#[map]
static TRANSITIONS: PerCpuArray<Transitions> = PerCpuArray::with_max_entries(2, 0);

#[map]
static CONTROL: Array<Control> = Array::with_max_entries(1, 0);

/// One namespace's counts per epoch parity and CPU (`--all-namespaces`):
/// per-state deltas rather than the transition matrix, 16 times smaller.
/// Userspace makes the entries when it adopts a namespace (allocated
/// then, not preallocated). Sized at load: 1 entry unless in that mode.
#[map]
static NS_TRANSITIONS: PerCpuHashMap<NsKey, NsCounts> =
    PerCpuHashMap::with_max_entries(2 * MAX_NAMESPACES, BPF_F_NO_PREALLOC);

/// Namespace cookie -> inode of the adopted namespaces.
#[map]
static NETNS_OF_COOKIE: HashMap<u64, u32> = HashMap::with_max_entries(MAX_NAMESPACES, 0);

/// Journal: only written while a snapshot is merged, and drained by
/// userspace while it dumps. 2 MiB hold ~65 ms of the fastest churn here.
#[map]
static EVENTS: RingBuf = RingBuf::with_byte_size(2 * 1024 * 1024, 0);

/// Bitmap of watched local ports (userspace sets it from port groups).
#[map]
static WATCHED_PORTS: Array<u64> = Array::with_max_entries(WATCHED_PORT_WORDS, 0);

#[map]
static LOST: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

#[map]
static RESCUED: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

/// Marks of the events the primary handled: the socket's address and the
/// transition, in a slot hashed from the address.
#[map]
static HANDLED: PerCpuArray<[u64; 2]> = PerCpuArray::with_max_entries(MARK_SLOTS, 0);

/// Slots in `HANDLED` (a power of two): 256 KiB per CPU. A mark only has
/// to survive from the primary's run to the backup's run of the same
/// event; one whose slot another event's mark takes meanwhile (1 in 16384
/// per event that comes between, as when a task is preempted between the
/// two programs) is disturbed: rescues then differ from the primary's
/// misses, and userspace resyncs. With 2048 slots that showed: one lost
/// event per 5 to 10 minutes of maximum churn with `--events`. Hashed from
/// socket addresses, which the slab reuses, the slots in use stay few and
/// in cache (hashed from ports, every event missed the cache).
const MARK_SLOTS: u32 = 1 << 14;

/// Each state program's socket pointer on its way to becoming a number,
/// per CPU: 0 the primary's, 1 the backup's. Neither program runs nested
/// in itself on a CPU, nor interleaved with itself (while a run is
/// preempted the program stays busy there and other tasks' runs are
/// skipped), so nothing writes a program's slot between its store and its
/// load.
#[map]
static ADDRESS: PerCpuArray<u64> = PerCpuArray::with_max_entries(2, 0);

const PRIMARY: u32 = 0;
const BACKUP: u32 = 1;

/// The address of the tracepoint's socket as a number. The verifier
/// allows no arithmetic on the trusted pointer, but lets a program loaded
/// by root store it into a map; read back, it is a number. Cheaper than
/// bpf_probe_read_kernel of the argument ([`arg_address`]), a helper call
/// in both programs on every event.
#[inline(always)]
fn address_of(sk: *const u8, program: u32) -> u64 {
    match ADDRESS.get_ptr_mut(program) {
        // SAFETY: this CPU's slot of this program (see ADDRESS).
        Some(at) => unsafe {
            core::ptr::write_volatile(at, sk as u64);
            core::ptr::read_volatile(at)
        },
        None => 0,
    }
}

#[inline(always)]
fn mark_slot(addr: u64) -> u32 {
    // Fibonacci hashing: socket addresses share their low bits.
    (addr.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> (64 - MARK_SLOTS.trailing_zeros())) as u32
        & (MARK_SLOTS - 1)
}

/// The transition as the second word of a mark: never 0, so a cleared
/// slot matches nothing.
#[inline(always)]
fn transition_key(old: i32, new: i32) -> u64 {
    (1 << 16) | ((old as u64 & 0xff) << 8) | (new as u64 & 0xff)
}

/// Whether the slot holds the mark `[addr, key]`.
#[inline(always)]
fn is_marked(slot: *mut [u64; 2], addr: u64, key: u64) -> bool {
    let words = slot.cast::<u64>();
    // SAFETY: a live per-CPU map value.
    unsafe {
        core::ptr::read_volatile(words) == addr && core::ptr::read_volatile(words.add(1)) == key
    }
}

/// Writes the mark `[addr, key]` into the slot (or `[0, 0]`: cleared).
#[inline(always)]
fn set_mark(slot: *mut [u64; 2], addr: u64, key: u64) {
    let words = slot.cast::<u64>();
    // SAFETY: a live per-CPU map value. Word by word: an array store
    // compiles to a call of a byte-at-a-time memset.
    unsafe {
        core::ptr::write_volatile(words, addr);
        core::ptr::write_volatile(words.add(1), key);
    }
}

/// A port the kernel hands over in network order, as a host-order port.
/// sock_ops' `remote_port` holds it in the upper half of the word on
/// little-endian machines (older kernels: the lower half).
#[inline(always)]
pub fn remote_port(raw: u32) -> u16 {
    let be = if raw > 0xffff {
        (raw >> 16) as u16
    } else {
        raw as u16
    };
    u16::from_be(be)
}

/// Argument `n`'s address as a plain number: the verifier allows no
/// arithmetic (not even a comparison by XOR) on the trusted pointer itself.
#[inline(always)]
fn arg_address(ctx: &BtfTracePointContext, n: usize) -> u64 {
    // SAFETY: the context is the tracepoint's argument array.
    unsafe { bpf_probe_read_kernel((ctx.as_ptr() as *const u64).wrapping_add(n)) }.unwrap_or(0)
}

#[btf_tracepoint(function = "inet_sock_set_state")]
pub fn netconn_state_change(ctx: BtfTracePointContext) -> i32 {
    emptied_returns!(0);
    let sk: *const u8 = ctx.arg(0);
    let (old, new): (i32, i32) = (ctx.arg(1), ctx.arg(2));
    let addr = address_of(sk, PRIMARY);
    if let Some(slot) = HANDLED.get_ptr_mut(mark_slot(addr)) {
        // The primary never runs nested in itself.
        set_mark(slot, addr, transition_key(old, new));
    }
    if count(sk, addr, old, new).is_err() {
        bump(LOST.get_ptr_mut(0));
    }
    0
}

#[btf_tracepoint(function = "inet_sock_set_state")]
pub fn netconn_state_backup(ctx: BtfTracePointContext) -> i32 {
    emptied_returns!(0);
    let sk: *const u8 = ctx.arg(0);
    let (old, new): (i32, i32) = (ctx.arg(1), ctx.arg(2));
    let addr = address_of(sk, BACKUP);
    let Some(slot) = HANDLED.get_ptr_mut(mark_slot(addr)) else {
        return 0;
    };
    if is_marked(slot, addr, transition_key(old, new)) {
        set_mark(slot, 0, 0);
        return 0;
    }
    // The primary never saw this event: it was skipped. A rescue is one
    // only once the event is counted.
    match count(sk, addr, old, new) {
        Ok(()) => bump(RESCUED.get_ptr_mut(0)),
        Err(_) => bump(LOST.get_ptr_mut(0)),
    }
    0
}

/// Adds `n` (wrapping: `u64::MAX` subtracts one) to a map value's slot.
#[inline(always)]
unsafe fn add(at: *mut u64, n: u64) {
    // SAFETY: the caller's: a valid map value slot.
    unsafe { atomic_xadd::<u64, u64, { AtomicOrdering::Relaxed }>(at, n) };
}

#[inline(always)]
fn bump(counter: Option<*mut u64>) {
    if let Some(c) = counter {
        // SAFETY: a valid per-CPU map value, updated atomically because a
        // nested run may interrupt the other program mid-update.
        unsafe { atomic_xadd::<u64, u64, { AtomicOrdering::Relaxed }>(c, 1) };
    }
}

/// A field of a BTF-typed kernel object, loaded directly: the verifier
/// knows the offset (a frozen read-only global) and checks it against the
/// kernel's BTF, and the JIT turns the load into a fault-safe one, so no
/// helper call is needed.
#[inline(always)]
fn read<T: Copy>(base: *const u8, offset: u32) -> Result<T, i32> {
    // SAFETY: see above; offsets come from the running kernel's BTF.
    Ok(unsafe { core::ptr::read_volatile(base.wrapping_add(offset as usize).cast::<T>()) })
}

/// A field read with the fault-safe helper from the object at `addr`: for
/// fields past what the pointer's BTF type covers (`struct sock` for the
/// tracepoint's argument), or where there is no BTF-typed pointer at all.
#[inline(always)]
fn probe<T>(addr: u64, offset: u32) -> Result<T, i32> {
    let at = addr.wrapping_add(u64::from(offset)) as *const T;
    // SAFETY: a fault-safe read; a bad address is an error, not a fault.
    unsafe { bpf_probe_read_kernel(at) }
}

/// An address of `sk` as 16 bytes (IPv4 in the first 4), from the IPv4 or
/// the IPv6 field as `family` says.
#[inline(always)]
fn sock_addr(sk: *const u8, family: u16, v4: u32, v6: u32) -> Result<[u8; 16], i32> {
    if family == AF_INET {
        let a: [u8; 4] = read(sk, v4)?;
        Ok([a[0], a[1], a[2], a[3], 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0])
    } else {
        read(sk, v6)
    }
}

/// The inode of network namespace `net` (a `struct net *`).
#[inline(always)]
fn net_inum(net: *const u8) -> Result<u32, i32> {
    read(net, offset!(net_inum))
}

/// The inode of the network namespace of socket `sk`.
#[inline(always)]
fn sock_netns(sk: *const u8) -> Result<u32, i32> {
    net_inum(read(sk, offset!(skc_net))?)
}

/// Whether namespace `netns` (an inode) is counted: the target, or any
/// when no target is set.
#[inline(always)]
fn is_target(netns: u32) -> bool {
    // SAFETY: see crate::count.
    let target = unsafe { core::ptr::read_volatile(&TARGET_NETNS) };
    target == 0 || netns == target
}

/// The same for programs that have a context but no socket pointer (cgroup
/// programs): by the namespace's cookie.
#[inline(always)]
fn in_scope(ctx: &impl EbpfContext) -> bool {
    // SAFETY: see crate::count.
    let target = unsafe { core::ptr::read_volatile(&TARGET_NETNS_COOKIE) };
    // SAFETY: the cgroup sock, sock_addr and sock_ops contexts are all
    // accepted by the helper.
    target == 0 || unsafe { bpf_get_netns_cookie(ctx.as_ptr()) } == target
}

/// Counts one state change of `sk` and journals it when asked. `addr` is
/// the socket's address as a number (see [`address_of`]), for the paths
/// that read past `struct sock` with the fault-safe helper.
#[inline(always)]
fn count(sk: *const u8, addr: u64, oldstate: i32, newstate: i32) -> Result<(), i32> {
    // MPTCP sockets also go through inet_sk_state_store(); count TCP only.
    let protocol: u16 = read(sk, offset!(sk_protocol))?;
    if protocol != IPPROTO_TCP {
        return Ok(());
    }
    let netns = sock_netns(sk)?;
    if !is_target(netns) {
        return Ok(());
    }
    let family: u16 = read(sk, offset!(skc_family))?;
    // SAFETY: read_volatile keeps the compiler from folding the globals that
    // userspace overrides at load time.
    let (ports, conns) = unsafe {
        (
            core::ptr::read_volatile(&WATCH_PORTS) != 0,
            core::ptr::read_volatile(&WATCH_CONNS) != 0,
        )
    };
    // inet_sport lies in struct inet_sock, past the struct sock the BTF
    // argument is typed as: a direct load is refused, the helper is not.
    let lport = if ports || conns {
        u16::from_be(probe(addr, offset!(inet_sport))?)
    } else {
        0
    };
    let watched = ports
        && lport != 0
        && WATCHED_PORTS
            .get(u32::from(lport / 64))
            .is_some_and(|word| word & (1 << (lport % 64)) != 0);
    let laddr = if watched {
        sock_addr(
            sk,
            family,
            offset!(skc_rcv_saddr),
            offset!(skc_v6_rcv_saddr),
        )?
    } else {
        [0; 16]
    };
    let counted = tally(
        Transition {
            netns,
            family,
            protocol,
            old: oldstate as u8,
            new: newstate as u8,
            lport: if ports { lport } else { 0 },
            laddr,
            watched,
        },
        // SAFETY: `sk` is the tracepoint's own BTF-typed socket argument,
        // which bpf_get_socket_cookie accepts.
        || unsafe { bpf_get_socket_cookie(sk as *mut _) },
    );
    // A connect that failed: why, for the metrics (the record reads it
    // too); a connection that ended. Only where the transition counted:
    // with every namespace, the sock_ops program keys a namespace not
    // adopted yet as 0, which is not read, and slots of such namespaces
    // would fill the map.
    // SAFETY: a volatile read of a global, as for WATCH_PORTS above.
    if counted
        && newstate as u8 == TCP_CLOSE
        && unsafe { core::ptr::read_volatile(&WATCH_METRICS) } != 0
    {
        match oldstate as u8 {
            TCP_SYN_SENT => {
                let error: i32 = read(sk, offset!(sk_err)).unwrap_or(0);
                metrics::on_failed(sk, addr, failure_reason(error), netns);
            }
            s if netconn_common::ended_connection(s) => metrics::on_closed(netns),
            _ => {}
        }
    }
    // SAFETY: as for WATCH_PORTS above.
    if unsafe { core::ptr::read_volatile(&WATCH_EPHEMERAL) } != 0 {
        ephemeral::on_state(
            sk,
            addr,
            netns,
            family,
            (ports || conns).then_some(lport),
            oldstate as u8,
            newstate as u8,
        )?;
    }
    if conns {
        let socket = conn::Socket {
            sk,
            addr,
            netns,
            family,
            lport,
        };
        conn::on_state(&socket, oldstate as u8, newstate as u8)?;
    }
    Ok(())
}

/// One state change of one socket, TCP or UDP.
struct Transition {
    netns: u32,
    family: u16,
    protocol: u16,
    old: u8,
    new: u8,
    lport: u16,
    laddr: [u8; 16],
    /// Streamed whether or not the journal is on (a watched port).
    watched: bool,
}

/// Counts a transition into the current epoch's matrix and, while
/// userspace asks for it or when its port is watched, pushes it into the
/// ring buffer with the socket's cookie (taken only then: the helper call
/// is the costliest part of an event). Whether it was counted: not in a
/// namespace not adopted yet (`--all-namespaces`), whose figures would
/// fill slots nobody reads.
#[inline(always)]
fn tally(t: Transition, cookie: impl FnOnce() -> u64) -> bool {
    let Some(ct) = conn_index(t.family, t.protocol) else {
        return false;
    };
    let control = CONTROL.get(0).copied().unwrap_or_default();
    let slot = transition_slot(ct, t.old as usize, t.new as usize);
    // SAFETY: see crate::count.
    if unsafe { core::ptr::read_volatile(&ALL_NAMESPACES) } != 0 {
        let key = NsKey {
            netns: t.netns,
            parity: u32::from(control.epoch & 1),
        };
        match NS_TRANSITIONS.get_ptr_mut(&key) {
            Some(m) => {
                // SAFETY: slots < NS_DELTA_SLOTS by construction of
                // delta_slot; atomic because the backup may nest.
                unsafe {
                    if let Some(s) = counted_before(t.old, t.new) {
                        add(m.cast::<u64>().add(delta_slot(ct, s)), u64::MAX);
                    }
                    if let Some(s) = counted_after(t.new) {
                        add(m.cast::<u64>().add(delta_slot(ct, s)), 1);
                    }
                    // Only a change detector (the mini-socket signature):
                    // an increment lost to a nested run is harmless, the
                    // run it interrupted counts, so no atomic here.
                    let events = &raw mut (*m).events;
                    core::ptr::write_volatile(events, core::ptr::read_volatile(events) + 1);
                }
            }
            // Not adopted yet: its snapshot, taken after adoption (the
            // scan of /proc finds it), covers this event.
            None => return false,
        }
    } else if let Some(m) = TRANSITIONS.get_ptr_mut(u32::from(control.epoch & 1)) {
        // SAFETY: slot < TRANSITION_SLOTS by construction of transition_slot.
        bump(Some(unsafe { (*m).counts.as_mut_ptr().add(slot) }));
    }
    if control.journal == 0 && !t.watched {
        return true;
    }
    match EVENTS.reserve::<StateEvent>(0) {
        Some(mut entry) => {
            entry.write(StateEvent {
                cookie: cookie(),
                // SAFETY: no preconditions.
                ts_ns: unsafe { bpf_ktime_get_ns() },
                netns: t.netns,
                family: t.family,
                oldstate: t.old,
                newstate: t.new,
                epoch: control.epoch,
                protocol: t.protocol as u8,
                lport: t.lport,
                watched: u8::from(t.watched),
                _pad: [0; 3],
                laddr: t.laddr,
            });
            entry.submit(0);
        }
        None => bump(LOST.get_ptr_mut(0)),
    }
    true
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}
