//! TCP metrics for counts records: RTT samples as quarter-octave
//! histograms, retransmitted segments, SYN-ACK retransmissions and resets,
//! added up in the kernel (per CPU) for the namespace and per service port.
//!
//! RTT samples and retransmissions come from a sock_ops program at the
//! cgroup v2 root. The kernel calls it for a socket's RTT samples and
//! retransmissions only once the socket carries the callback flags, which
//! the program sets where it sees a socket begin: `connect()`
//! (`TCP_CONNECT_CB`, before the SYN, so its RTT sample and any SYN
//! retransmission count), `listen()` and each accepted connection
//! (`PASSIVE_ESTABLISHED_CB`). Listeners and what they accept also carry a
//! mark flag, so a later callback knows, from the socket alone, whether the
//! service port is the local one (inbound) or the remote one (outbound).
//! Connections established before netconn started carry no flags: they are
//! in the counts, not in these metrics.
//!
//! Figures go into the slot of the current metrics epoch; userspace flips
//! the epoch each interval and reads the slot it left (see
//! `netconn::live::metrics`).

use core::intrinsics::{AtomicOrdering, atomic_xadd};

use aya_ebpf::{
    EbpfContext,
    bindings::{
        BPF_F_NO_PREALLOC, BPF_NOEXIST, BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB,
        BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB, BPF_SOCK_OPS_RETRANS_CB, BPF_SOCK_OPS_RTT_CB,
        BPF_SOCK_OPS_TCP_CONNECT_CB, BPF_SOCK_OPS_TCP_LISTEN_CB, BPF_SOCK_OPS_TIMEOUT_INIT,
    },
    macros::{btf_tracepoint, map, sock_ops},
    maps::{LruPerCpuHashMap, PerCpuArray, PerCpuHashMap},
    programs::{BtfTracePointContext, SockOpsContext},
};
use netconn_common::{
    AF_INET, AF_INET6, DIRECTION_CLOSED_PORT, DIRECTION_INBOUND, DIRECTION_OUTBOUND,
    FAILURE_REASONS, MAX_NAMESPACES, METRICS_PORT_ENTRIES, MetricsKey, PEER_ENTRIES, RTT_BUCKETS,
    SOCK_OPS_FLAGS, SOCK_OPS_INBOUND_MARK, TCP_LISTEN, TCP_NEW_SYN_RECV, TCP_TIME_WAIT, TcpMetrics,
    rtt_bucket, rtt_sampled,
};

use crate::{
    ALL_NAMESPACES, CONTROL, arg_address, in_scope, is_target, net_inum, probe, read, remote_port,
    sock_addr, sock_netns,
};

/// Whether every namespace is counted apart (`--all-namespaces`).
#[inline(always)]
fn per_namespace() -> bool {
    // SAFETY: see crate::count.
    unsafe { core::ptr::read_volatile(&ALL_NAMESPACES) != 0 }
}

#[map]
static METRICS_TOTAL: PerCpuArray<TcpMetrics> = PerCpuArray::with_max_entries(2, 0);

/// Each namespace's figures (`--all-namespaces`), per epoch parity. Sized
/// at load: 1 entry unless in that mode.
#[map]
static METRICS_NS: PerCpuHashMap<MetricsKey, TcpMetrics> =
    PerCpuHashMap::with_max_entries(2 * MAX_NAMESPACES, BPF_F_NO_PREALLOC);

#[map]
static METRICS_PORTS: LruPerCpuHashMap<MetricsKey, TcpMetrics> =
    LruPerCpuHashMap::with_max_entries(METRICS_PORT_ENTRIES, 0);

/// Connections per peer and epoch (see `netconn_common::MAP_PEERS`).
#[map]
static PEERS: PerCpuHashMap<MetricsKey, u32> =
    PerCpuHashMap::with_max_entries(PEER_ENTRIES, BPF_F_NO_PREALLOC);

/// Connections whose peer found `PEERS` full, per epoch parity.
#[map]
static PEERS_LOST: PerCpuArray<u64> = PerCpuArray::with_max_entries(2, 0);

/// Never written: the zeroed value a new `METRICS_PORTS` entry starts from
/// (too large for the 512-byte stack).
#[map]
static ZERO: PerCpuArray<TcpMetrics> = PerCpuArray::with_max_entries(1, 0);

/// What a sock_ops program returns: carry on.
const OK: u32 = 1;

#[inline(always)]
fn epoch() -> u8 {
    CONTROL.get(0).map_or(0, |c| c.metrics_epoch & 1)
}

#[inline(always)]
fn add32(field: *mut u32, n: u32) {
    // SAFETY: a field of a live per-CPU map value; atomic because a nested
    // program (softirq over process context) may update it concurrently.
    unsafe { atomic_xadd::<u32, u32, { AtomicOrdering::Relaxed }>(field, n) };
}

#[inline(always)]
fn add64(field: *mut u64, n: u64) {
    // SAFETY: as add32.
    unsafe { atomic_xadd::<u64, u64, { AtomicOrdering::Relaxed }>(field, n) };
}

/// What one callback adds.
#[derive(Clone, Copy)]
enum Figure {
    Rtt(u32),
    Retrans(u32),
    SynackRetrans,
    ResetSent,
    ResetReceived,
    /// A connect that failed, by [`netconn_common::failure_reason`].
    Failed(usize),
    /// A connection accepted (its handshake completed on a listener).
    Accepted,
    /// A handshake begun: a request socket made.
    Requested,
    /// A connect that reached ESTABLISHED.
    Connected,
    /// A connection that ended.
    Closed,
}

#[inline(always)]
fn apply(m: *mut TcpMetrics, figure: Figure) {
    // SAFETY: `m` is a live per-CPU map value; fields through the pointer.
    unsafe {
        match figure {
            Figure::Rtt(us) => {
                // min/max are plain stores: a nested update racing them can
                // at worst leave the other sample's extreme.
                if (*m).samples == 0 || us < (*m).min_us {
                    (*m).min_us = us;
                }
                if us > (*m).max_us {
                    (*m).max_us = us;
                }
                add64(&raw mut (*m).samples, 1);
                add64(&raw mut (*m).sum_us, u64::from(us));
                // LLVM knows the bucket is in range and drops a mask it
                // can see; the verifier cannot follow the bit arithmetic
                // and needs one: hide the value from the optimiser first.
                let i = core::hint::black_box(rtt_bucket(us)) & (RTT_BUCKETS - 1);
                add32((*m).hist.as_mut_ptr().add(i), 1);
            }
            Figure::Retrans(segs) => add32(&raw mut (*m).retrans, segs),
            Figure::SynackRetrans => add32(&raw mut (*m).synack_retrans, 1),
            Figure::ResetSent => add32(&raw mut (*m).resets_sent, 1),
            Figure::ResetReceived => add32(&raw mut (*m).resets_received, 1),
            Figure::Accepted => add32(&raw mut (*m).accepted, 1),
            Figure::Requested => add32(&raw mut (*m).requests, 1),
            Figure::Connected => add32(&raw mut (*m).connected, 1),
            Figure::Closed => add32(&raw mut (*m).closed, 1),
            Figure::Failed(reason) => {
                let i = core::hint::black_box(reason) & (FAILURE_REASONS - 1);
                add32((*m).failed.as_mut_ptr().add(i), 1);
            }
        }
    }
}

/// Adds a figure to the namespace's slot: the one namespace's, or with
/// every namespace counted, namespace `netns`'s.
#[inline(always)]
fn record_total(figure: Figure, netns: u32) {
    if !per_namespace() {
        if let Some(m) = METRICS_TOTAL.get_ptr_mut(u32::from(epoch())) {
            apply(m, figure);
        }
        return;
    }
    let key = MetricsKey {
        netns,
        epoch: epoch(),
        ..MetricsKey::default()
    };
    let m = match METRICS_NS.get_ptr_mut(&key) {
        Some(m) => m,
        None => {
            let Some(zero) = ZERO.get_ptr(0) else { return };
            // SAFETY: a map value, only read; NOEXIST keeps another CPU's.
            let _ = METRICS_NS.insert(&key, unsafe { &*zero }, u64::from(BPF_NOEXIST));
            match METRICS_NS.get_ptr_mut(&key) {
                Some(m) => m,
                None => return,
            }
        }
    };
    apply(m, figure);
}

/// Adds a figure to the namespace's slot and to the port's.
#[inline(always)]
fn record(key: &mut MetricsKey, figure: Figure) {
    record_total(figure, key.netns);
    record_port(key, figure);
}

/// Adds a figure to the port's slot alone (a figure only listeners
/// report: no namespace total is kept of it).
#[inline(always)]
fn record_port(key: &mut MetricsKey, figure: Figure) {
    key.epoch = epoch();
    let m = match METRICS_PORTS.get_ptr_mut(&*key) {
        Some(m) => m,
        None => {
            let Some(zero) = ZERO.get_ptr(0) else { return };
            // SAFETY: a map value, only read. Another CPU may have created
            // the entry meanwhile: NOEXIST keeps its figures.
            let _ = METRICS_PORTS.insert(&*key, unsafe { &*zero }, u64::from(BPF_NOEXIST));
            match METRICS_PORTS.get_ptr_mut(&*key) {
                Some(m) => m,
                None => return,
            }
        }
    };
    apply(m, figure);
}

/// With a key, [`record`]; without, [`record_total`].
#[inline(always)]
fn record_maybe(key: Option<MetricsKey>, figure: Figure, netns: u32) {
    match key {
        Some(mut k) => record(&mut k, figure),
        None => record_total(figure, netns),
    }
}

#[inline(always)]
fn ops_key(ctx: &SockOpsContext) -> MetricsKey {
    key_of(ctx, ctx.cb_flags() & u32::from(SOCK_OPS_INBOUND_MARK) != 0)
}

/// The namespace of a sock_ops callback's socket (only with every
/// namespace counted apart): its cookie, one helper call, turned into the
/// inode by the table userspace keeps; 0 for a namespace not adopted yet.
#[inline(always)]
fn ops_netns(ctx: &SockOpsContext) -> u32 {
    if !per_namespace() {
        return 0;
    }
    // SAFETY: the sock_ops context is accepted by the helper.
    let cookie = unsafe { aya_ebpf::helpers::bpf_get_netns_cookie(ctx.as_ptr()) };
    // SAFETY: a value of this map, copied out at once.
    unsafe { crate::NETNS_OF_COOKIE.get(&cookie) }
        .copied()
        .unwrap_or(0)
}

#[inline(always)]
fn key_of(ctx: &SockOpsContext, inbound: bool) -> MetricsKey {
    let family = ctx.family() as u16;
    let mut key = MetricsKey {
        family: family as u8,
        netns: ops_netns(ctx),
        ..MetricsKey::default()
    };
    if inbound {
        key.direction = DIRECTION_INBOUND;
        key.port = ctx.local_port() as u16;
        if family == AF_INET {
            let a = ctx.local_ip4().to_ne_bytes();
            key.addr[..4].copy_from_slice(&a);
        } else {
            for (i, w) in ctx.local_ip6().iter().enumerate() {
                key.addr[i * 4..i * 4 + 4].copy_from_slice(&w.to_ne_bytes());
            }
        }
    } else {
        key.direction = DIRECTION_OUTBOUND;
        key.port = remote_port(ctx.remote_port());
    }
    key
}

/// Counts an established connection for its peer: inbound, the remote
/// address on the local port; outbound, the remote address and port.
#[inline(always)]
fn note_peer(ctx: &SockOpsContext, inbound: bool) {
    let family = ctx.family() as u16;
    let mut key = MetricsKey {
        family: family as u8,
        netns: ops_netns(ctx),
        epoch: epoch(),
        ..MetricsKey::default()
    };
    if inbound {
        key.direction = DIRECTION_INBOUND;
        key.port = ctx.local_port() as u16;
    } else {
        key.direction = DIRECTION_OUTBOUND;
        key.port = remote_port(ctx.remote_port());
    }
    if family == AF_INET {
        key.addr[..4].copy_from_slice(&ctx.remote_ip4().to_ne_bytes());
    } else {
        for (i, w) in ctx.remote_ip6().iter().enumerate() {
            key.addr[i * 4..i * 4 + 4].copy_from_slice(&w.to_ne_bytes());
        }
    }
    count_peer(&key);
}

/// Adds one to a peer's entry, making it if needed; a full map is counted.
#[inline(always)]
fn count_peer(key: &MetricsKey) {
    if let Some(n) = PEERS.get_ptr_mut(key) {
        add32(n, 1);
        return;
    }
    // NOEXIST: another CPU may have made the entry meanwhile (then add to
    // this CPU's value of it); any other failure is a full map.
    if PEERS.insert(key, &1, u64::from(BPF_NOEXIST)).is_ok() {
        return;
    }
    match PEERS.get_ptr_mut(key) {
        Some(n) => add32(n, 1),
        None => {
            if let Some(lost) = PEERS_LOST.get_ptr_mut(u32::from(key.epoch)) {
                add64(lost, 1);
            }
        }
    }
}

/// Whether the callback's socket is a full one (not a request socket).
#[inline(always)]
fn full_socket(ctx: &SockOpsContext) -> bool {
    // SAFETY: the context the kernel passed; a field it lets programs read.
    unsafe { (*ctx.ops).is_fullsock != 0 }
}

/// Runs for every callback of every TCP socket of the host (a dozen per
/// connection, most of which it ignores), so the op is looked at first;
/// the namespace only where flags are given: the RTT and retransmission
/// callbacks come only for sockets given them, all in the namespace.
#[sock_ops]
pub fn netconn_tcp_ops(ctx: SockOpsContext) -> u32 {
    emptied_returns!(OK);
    // Without the TCP metrics the program is loaded for the ephemeral
    // ports alone: it marks connected sockets and sets no other flag.
    // SAFETY: see crate::count.
    let metrics = unsafe { core::ptr::read_volatile(&crate::WATCH_METRICS) } != 0;
    match ctx.op() {
        BPF_SOCK_OPS_RTT_CB if metrics => {
            // args[0]: the measured RTT in µs (a long; negative: none).
            // Sampled: a kept-alive connection gives a sample per ACK, and
            // the map work below is most of what a request would cost.
            let mrtt = ctx.arg(0) as i32;
            // SAFETY: the context the kernel passed; a field it lets
            // programs read (converted to a load of tcp_sock.segs_in).
            let segs_in = unsafe { (*ctx.ops).segs_in };
            if mrtt >= 0 && rtt_sampled(segs_in) {
                record(&mut ops_key(&ctx), Figure::Rtt(mrtt as u32));
            }
        }
        BPF_SOCK_OPS_RETRANS_CB if metrics => {
            // args: sequence number, segments, transmit error. The kernel
            // has counted the segments (RetransSegs, tcp_info's
            // total_retrans) before it tried to send them, failed or not:
            // so does netconn.
            record(&mut ops_key(&ctx), Figure::Retrans(ctx.arg(1)));
        }
        BPF_SOCK_OPS_TCP_CONNECT_CB if metrics && in_scope(&ctx) => {
            let _ = ctx.set_cb_flags(i32::from(SOCK_OPS_FLAGS));
        }
        BPF_SOCK_OPS_TCP_LISTEN_CB if metrics && in_scope(&ctx) => {
            let _ = ctx.set_cb_flags(i32::from(SOCK_OPS_FLAGS | SOCK_OPS_INBOUND_MARK));
        }
        BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB if metrics && in_scope(&ctx) => {
            let _ = ctx.set_cb_flags(i32::from(SOCK_OPS_FLAGS | SOCK_OPS_INBOUND_MARK));
            // Opaque to the optimiser: with a constant, LLVM folds the
            // address reads into one pointer computed from the context,
            // which the verifier refuses ("modified ctx ptr").
            record(
                &mut key_of(&ctx, core::hint::black_box(true)),
                Figure::Accepted,
            );
            note_peer(&ctx, core::hint::black_box(true));
        }
        // A request socket's timeout is asked for once, when a SYN makes
        // it (a connecting full socket asks too: not counted).
        BPF_SOCK_OPS_TIMEOUT_INIT if metrics && !full_socket(&ctx) && in_scope(&ctx) => {
            record_port(
                &mut key_of(&ctx, core::hint::black_box(true)),
                Figure::Requested,
            );
        }
        BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB if in_scope(&ctx) => {
            if metrics {
                record_total(Figure::Connected, ops_netns(&ctx));
                note_peer(&ctx, core::hint::black_box(false));
            }
            crate::ephemeral::on_connected(&ctx, metrics);
        }
        _ => {}
    }
    OK
}

/// The namespace of a socket of a tracing program's argument, when it is
/// counted (the target, or any with none set).
#[inline(always)]
fn target_netns(sk: *const u8) -> Option<u32> {
    sock_netns(sk).ok().filter(|n| is_target(*n))
}

/// The metrics key of a full socket the sock_ops program follows, read
/// from the socket itself (tracing programs have no sock_ops context).
#[inline(always)]
fn sock_key(sk: *const u8, addr: u64) -> Option<MetricsKey> {
    let state: u8 = read(sk, offset!(skc_state)).ok()?;
    // Mini sockets end with struct sock_common: no tcp_sock fields.
    if state == TCP_TIME_WAIT || state == TCP_NEW_SYN_RECV {
        return None;
    }
    let flags: u8 = probe(addr, offset!(sock_ops_cb_flags)).ok()?;
    if flags & SOCK_OPS_FLAGS == 0 {
        return None;
    }
    let inbound = flags & SOCK_OPS_INBOUND_MARK != 0;
    listener_or_sock_key(sk, inbound)
}

#[inline(always)]
fn listener_or_sock_key(sk: *const u8, inbound: bool) -> Option<MetricsKey> {
    let family: u16 = read(sk, offset!(skc_family)).ok()?;
    let mut key = MetricsKey {
        family: family as u8,
        netns: if per_namespace() {
            sock_netns(sk).unwrap_or(0)
        } else {
            0
        },
        ..MetricsKey::default()
    };
    if inbound {
        key.direction = DIRECTION_INBOUND;
        key.port = read(sk, offset!(skc_num)).ok()?;
        key.addr = sock_addr(
            sk,
            family,
            offset!(skc_rcv_saddr),
            offset!(skc_v6_rcv_saddr),
        )
        .ok()?;
    } else {
        key.direction = DIRECTION_OUTBOUND;
        key.port = u16::from_be(read(sk, offset!(skc_dport)).ok()?);
    }
    Some(key)
}

/// A reset seen on `sk` (NULL for one sent without a socket: `skb` then
/// tells the namespace).
#[inline(always)]
pub fn on_reset(ctx: &BtfTracePointContext, sk: *const u8, sent: bool) {
    let figure = if sent {
        Figure::ResetSent
    } else {
        Figure::ResetReceived
    };
    if sk.is_null() {
        if sent && let Some(netns) = skb_netns(ctx.arg(1)) {
            record_total(figure, netns);
            note_closed_port(ctx.arg(1), netns);
        }
        return;
    }
    if let Some(netns) = target_netns(sk) {
        record_maybe(sock_key(sk, arg_address(ctx, 0)), figure, netns);
    }
}

/// A reset answering a segment no socket took (a closed port): counted
/// for the segment's source and destination port (`port_scan`), read from
/// its headers.
#[inline(always)]
fn note_closed_port(skb: *const u8, netns: u32) {
    if skb.is_null() {
        return;
    }
    let headers = || -> Result<MetricsKey, i32> {
        let head: u64 = read(skb, offset!(skb_head))?;
        let nh: u16 = read(skb, offset!(skb_network_header))?;
        let th: u16 = read(skb, offset!(skb_transport_header))?;
        let ip = head.wrapping_add(u64::from(nh));
        let version: u8 = probe(ip, 0)?;
        let mut key = MetricsKey {
            netns,
            epoch: epoch(),
            direction: DIRECTION_CLOSED_PORT,
            ..MetricsKey::default()
        };
        if version >> 4 == 4 {
            key.family = AF_INET as u8;
            let source: [u8; 4] = probe(ip, 12)?;
            key.addr[..4].copy_from_slice(&source);
        } else {
            key.family = AF_INET6 as u8;
            key.addr = probe(ip, 8)?;
        }
        let dest: u16 = probe(head.wrapping_add(u64::from(th)), 2)?;
        key.port = u16::from_be(dest);
        Ok(key)
    };
    if let Ok(key) = headers() {
        count_peer(&key);
    }
}

/// A connect of `sk` (at `addr`) that failed (SYN_SENT -> CLOSE, from the
/// state program): counted for the namespace and, as the socket was
/// followed since its connect(), for its service port.
#[inline(always)]
pub fn on_failed(sk: *const u8, addr: u64, reason: usize, netns: u32) {
    record_maybe(sock_key(sk, addr), Figure::Failed(reason), netns);
}

/// A TCP connection that ended (an established-or-later state to CLOSE,
/// from the state program): counted for the namespace.
#[inline(always)]
pub fn on_closed(netns: u32) {
    record_total(Figure::Closed, netns);
}

/// Whether the packet a socketless reset answers came in on a device of
/// the target namespace.
#[inline(always)]
fn skb_netns(skb: *const u8) -> Option<u32> {
    let netns = || -> Result<u32, i32> {
        let dev: *const u8 = read(skb, offset!(skb_dev))?;
        net_inum(read(dev, offset!(dev_nd_net))?)
    };
    // No inode is 0: is_target(0) says that no target is set, so any
    // namespace counts, and only one counted apart needs the packet's.
    if is_target(0) && !per_namespace() {
        return Some(0);
    }
    if skb.is_null() {
        return None;
    }
    netns().ok().filter(|n| is_target(*n))
}

/// `tcp_retransmit_synack(const struct sock *sk, const struct request_sock
/// *req)`: `sk` is the listener.
#[btf_tracepoint(function = "tcp_retransmit_synack")]
pub fn netconn_synack_rtx(ctx: BtfTracePointContext) -> i32 {
    emptied_returns!(0);
    let sk: *const u8 = ctx.arg(0);
    if sk.is_null() {
        return 0;
    }
    let Some(netns) = target_netns(sk) else {
        return 0;
    };
    let listening = read::<u8>(sk, offset!(skc_state)) == Ok(TCP_LISTEN);
    if listening {
        record_maybe(listener_or_sock_key(sk, true), Figure::SynackRetrans, netns);
    } else {
        record_total(Figure::SynackRetrans, netns);
    }
    0
}
