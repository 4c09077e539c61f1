//! Loading, attaching and talking to the kernel program.
//!
//! Dropping a [`Probe`] detaches the program and frees its maps: nothing is
//! pinned, so nothing outlives the process.

use aya::maps::{Array, HashMap, MapData, PerCpuArray, PerCpuHashMap, PerCpuValues, RingBuf};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::thread::sleep;
use std::time::Duration;

use crate::model::counts::Counts;
use aya::programs::{BtfTracePoint, CgroupAttachMode, CgroupSock, CgroupSockAddr, SockOps};
use aya::{Btf, Ebpf, EbpfLoader};
use netconn_common::{
    Control, GLOBAL_ALL_NAMESPACES, GLOBAL_OFFSETS, GLOBAL_TARGET_NETNS,
    GLOBAL_TARGET_NETNS_COOKIE, GLOBAL_WATCH_CONNS, GLOBAL_WATCH_PORTS, MAP_CONN_EVENTS,
    MAP_CONTROL, MAP_EVENTS, MAP_LOST, MAP_NS_TRANSITIONS, MAP_RESCUED, MAP_RESETS,
    MAP_TRANSITIONS, MAP_UDP_SOCKETS, MAP_WATCHED_PORTS, NsCounts, NsKey, Offsets,
    PROG_RESET_RECEIVED, PROG_RESET_SENT, PROG_STATE_BACKUP, PROG_STATE_CHANGE,
    PROG_SYNACK_RETRANS, PROG_TCP_OPS, StateEvent, TRACEPOINT_RESET_RECEIVED,
    TRACEPOINT_RESET_SENT, TRACEPOINT_STATE_CHANGE, TRACEPOINT_SYNACK_RETRANS, TRANSITION_SLOTS,
    Transitions, UDP_PROGRAMS,
};

use super::btf::Btf as BtfReader;
use super::conns::ConnMaps;
use super::metrics::MetricsMaps;

/// The eBPF object built from `netconn-ebpf`.
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/netconn"));

pub use super::error::{AyaError, ProbeError};
use super::error::{VMLINUX_BTF, describe, map_error};
use super::maps::{counter, on_every_cpu, take_map};

/// Struct offsets the program reads, resolved in the kernel's BTF.
pub fn kernel_offsets(vmlinux_btf: &[u8]) -> Result<Offsets, ProbeError> {
    let btf = BtfReader::parse(vmlinux_btf)?;
    Ok(Offsets {
        skc_family: btf.offset_of("sock_common.skc_family")?,
        skc_net: btf.offset_of("sock_common.skc_net")?,
        net_inum: btf.offset_of("net.ns.inum")?,
        sk_protocol: btf.offset_of("sock.sk_protocol")?,
        skc_num: btf.offset_of("sock_common.skc_num")?,
        skc_rcv_saddr: btf.offset_of("sock_common.skc_rcv_saddr")?,
        skc_v6_rcv_saddr: btf.offset_of("sock_common.skc_v6_rcv_saddr")?,
        inet_sport: btf.offset_of("inet_sock.inet_sport")?,
        skc_daddr: btf.offset_of("sock_common.skc_daddr")?,
        skc_dport: btf.offset_of("sock_common.skc_dport")?,
        skc_v6_daddr: btf.offset_of("sock_common.skc_v6_daddr")?,
        srtt_us: btf.offset_of("tcp_sock.srtt_us")?,
        total_retrans: btf.offset_of("tcp_sock.total_retrans")?,
        bytes_acked: btf.offset_of("tcp_sock.bytes_acked")?,
        bytes_received: btf.offset_of("tcp_sock.bytes_received")?,
        group_leader: btf.offset_of("task_struct.group_leader")?,
        task_comm: btf.offset_of("task_struct.comm")?,
        skc_state: btf.offset_of("sock_common.skc_state")?,
        sock_ops_cb_flags: btf.offset_of("tcp_sock.bpf_sock_ops_cb_flags")?,
        skb_dev: btf.offset_of("sk_buff.dev")?,
        dev_nd_net: btf.offset_of("net_device.nd_net")?,
        sk_err: btf.offset_of("sock.sk_err")?,
        skb_head: btf.offset_of("sk_buff.head")?,
        skb_network_header: btf.offset_of("sk_buff.network_header")?,
        skb_transport_header: btf.offset_of("sk_buff.transport_header")?,
    })
}

/// A load failure, told apart: missing privileges, or anything else.
fn load_error(err: impl std::error::Error + Send + Sync + 'static) -> ProbeError {
    let msg = describe(&err);
    let permission = [
        "EPERM",
        "Operation not permitted",
        "EACCES",
        "Permission denied",
    ]
    .iter()
    .any(|p| msg.contains(p));
    if permission {
        ProbeError::Permission(Box::new(err))
    } else {
        ProbeError::Load(Box::new(err))
    }
}

/// Loss counters, each summed since load.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Losses {
    /// Events the journal could not take (ring buffer full, or no cookie).
    pub journal: u64,
    /// Runs of the primary program the kernel skipped (nested on a CPU).
    pub primary_misses: u64,
    /// Of those, events the backup program counted instead.
    pub rescued: u64,
}

impl Losses {
    /// Events no program counted (positive) or counted twice (negative):
    /// the counts are off by these. Zero when every skipped run of the
    /// primary was rescued exactly once.
    pub fn uncounted(&self) -> i64 {
        self.primary_misses as i64 - self.rescued as i64
    }
}

/// What the programs do besides counting states.
#[derive(Debug, Clone, Copy, Default)]
pub struct Features {
    /// Port groups are configured (see [`Probe::watch_ports`]).
    pub port_groups: bool,
    /// Connection records (see [`super::conns`]).
    pub conns: bool,
    /// The TCP metrics' programs (see [`super::metrics`]).
    pub tcp_metrics: bool,
    /// Ephemeral ports per destination (see [`Probe::take_ephemeral`]).
    pub ephemeral: bool,
}

/// The loaded and attached programs with their maps.
pub struct Probe {
    // Field order matters for drop: maps, then the object (which detaches).
    transitions: PerCpuArray<MapData, Transitions>,
    control: Array<MapData, Control>,
    /// Lent to a drain thread while a snapshot is taken.
    events: Option<Journal>,
    lost: PerCpuArray<MapData, u64>,
    rescued: PerCpuArray<MapData, u64>,
    udp_sockets: HashMap<MapData, u64, u8>,
    watched_ports: Array<MapData, u64>,
    conns: ConnMaps,
    /// Ephemeral ports' maps, until the tracker takes them.
    ephemeral: Option<super::ephemeral::EphemeralMaps>,
    metrics: MetricsMaps,
    /// Per-namespace matrices and the namespaces waiting for one
    /// (`--all-namespaces`).
    ns_transitions: PerCpuHashMap<MapData, NsKey, NsCounts>,
    netns_of_cookie: HashMap<MapData, u64, u32>,
    /// The primary program's fd (owned by `_ebpf`), for its misses.
    primary_fd: RawFd,
    current: Control,
    /// Loaded for every namespace, each counted apart; else for one, in
    /// the two global matrices.
    all_namespaces: bool,
    _ebpf: Ebpf,
}

impl Probe {
    /// Loads the programs counting sockets of network namespace `netns`
    /// (the caller's own), or with `all_namespaces` of every namespace,
    /// each in a matrix of its own (see [`Probe::adopt`]), with the
    /// optional `features`, and attaches them.
    pub fn load(netns: u32, all_namespaces: bool, features: Features) -> Result<Self, ProbeError> {
        if netconn_common::EMPTIED {
            eprintln!(
                "netconn: built with NETCONN_EBPF_EMPTY: the kernel programs do nothing, the counts are wrong (a build for measuring the hooks alone)"
            );
        }
        let Features {
            port_groups: watch_ports,
            conns: watch_conns,
            tcp_metrics,
            ephemeral,
        } = features;
        let (netns, netns_cookie) = match all_namespaces {
            true => (0, 0),
            false => (
                netns,
                super::cgroup::netns_cookie().map_err(ProbeError::NetnsCookie)?,
            ),
        };
        // Start-up is mostly BTF parsing (offsets, the attach's copy, and
        // the one EbpfLoader::new() reads and parses itself): the three run
        // side by side.
        let vmlinux_btf = std::fs::read(VMLINUX_BTF).map_err(ProbeError::NoBtf)?;
        let (loader, btf, offsets) = std::thread::scope(|scope| {
            let loader = scope.spawn(EbpfLoader::new);
            let btf = scope.spawn(|| Btf::parse(&vmlinux_btf, aya::Endianness::default()));
            let offsets = kernel_offsets(&vmlinux_btf);
            (loader.join(), btf.join(), offsets)
        });
        let mut loader = loader.map_err(|_| ProbeError::Panicked("loading the kernel BTF"))?;
        let btf = btf
            .map_err(|_| ProbeError::Panicked("parsing the kernel BTF"))?
            .map_err(|e| ProbeError::ParseBtf(Box::new(e)))?;
        let offsets = offsets?;
        drop(vmlinux_btf);
        let watch_flag = u8::from(watch_ports);
        let conns_flag = u8::from(watch_conns);
        let metrics_flag = u8::from(tcp_metrics);
        let all_flag = u8::from(all_namespaces);
        let ephemeral_flag = u8::from(ephemeral);
        loader
            .override_global(GLOBAL_ALL_NAMESPACES, &all_flag, true)
            .override_global(GLOBAL_TARGET_NETNS, &netns, true)
            .override_global(GLOBAL_TARGET_NETNS_COOKIE, &netns_cookie, true)
            .override_global(GLOBAL_OFFSETS, &offsets, true)
            .override_global(GLOBAL_WATCH_PORTS, &watch_flag, true)
            .override_global(GLOBAL_WATCH_CONNS, &conns_flag, true)
            .override_global(netconn_common::GLOBAL_WATCH_METRICS, &metrics_flag, true)
            .override_global(
                netconn_common::GLOBAL_WATCH_EPHEMERAL,
                &ephemeral_flag,
                true,
            );
        if !ephemeral {
            loader.map_max_entries(netconn_common::MAP_EPHEMERAL_MARKED, 1);
            loader.map_max_entries(netconn_common::MAP_EPHEMERAL_COUNTS, 1);
            loader.map_max_entries(netconn_common::MAP_EPHEMERAL_WINDOW, 1);
        }
        if !all_namespaces {
            loader.map_max_entries(MAP_NS_TRANSITIONS, 1);
            loader.map_max_entries(netconn_common::MAP_METRICS_NS, 1);
            loader.map_max_entries(netconn_common::MAP_NETNS_OF_COOKIE, 1);
        }
        if !watch_conns {
            // Unused without --events: the smallest each can be, so that
            // start-up does not allocate and zero megabytes for nothing.
            loader.map_max_entries(MAP_CONN_EVENTS, 4096);
            loader.map_max_entries(MAP_RESETS, 64);
            // A hash's bucket array is allocated whole at creation even
            // without preallocated entries: 16 MiB of kernel memory for a
            // million owners only --events records.
            loader.map_max_entries(netconn_common::MAP_OWNERS, 1);
        }
        // Smaller ring buffers, to make them overflow on purpose (tests).
        if let Ok(Some(bytes)) = ring_bytes_override(RING_OVERRIDES[0]) {
            loader.map_max_entries(MAP_EVENTS, bytes);
        }
        if let (true, Ok(Some(bytes))) = (watch_conns, ring_bytes_override(RING_OVERRIDES[1])) {
            loader.map_max_entries(MAP_CONN_EVENTS, bytes);
        }
        let mut ebpf = loader.load(OBJECT).map_err(load_error)?;
        let root = super::cgroup::open_root().map_err(ProbeError::Cgroup)?;
        let mut primary_fd = None;
        for program in PROGRAMS {
            let wanted = match program.feature {
                Feature::Counting => true,
                Feature::Metrics => tcp_metrics,
                Feature::MetricsOrConns => tcp_metrics || watch_conns,
                Feature::MetricsOrEphemeral => tcp_metrics || ephemeral,
            };
            if !wanted {
                continue;
            }
            match program.hook {
                Hook::TpBtf(tracepoint) => {
                    let fd = attach_tp_btf(&mut ebpf, program.name, tracepoint, &btf)?;
                    if program.name == PROG_STATE_CHANGE {
                        primary_fd = Some(fd);
                    }
                }
                Hook::CgroupRoot => attach_cgroup_programs(&mut ebpf, &root, &[program.name])?,
            }
        }
        let primary_fd =
            primary_fd.ok_or_else(|| ProbeError::MissingProgram(PROG_STATE_CHANGE.into()))?;

        let transitions = take_map(&mut ebpf, MAP_TRANSITIONS)?;
        let control = take_map(&mut ebpf, MAP_CONTROL)?;
        let events: RingBuf<MapData> = take_map(&mut ebpf, MAP_EVENTS)?;
        let lost = take_map(&mut ebpf, MAP_LOST)?;
        let rescued = take_map(&mut ebpf, MAP_RESCUED)?;
        let udp_sockets = take_map(&mut ebpf, MAP_UDP_SOCKETS)?;
        let watched_ports = take_map(&mut ebpf, MAP_WATCHED_PORTS)?;
        let metrics = MetricsMaps::take(&mut ebpf)?;
        let netns_of_cookie = take_map(&mut ebpf, netconn_common::MAP_NETNS_OF_COOKIE)?;
        let ns_transitions = take_map(&mut ebpf, MAP_NS_TRANSITIONS)?;
        let conns = ConnMaps::take(&mut ebpf, watch_conns)?;
        let ephemeral = match ephemeral {
            true => Some(super::ephemeral::EphemeralMaps::take(&mut ebpf)?),
            false => None,
        };
        drop(btf);
        // Parsing BTF three times leaves tens of MiB free but resident in
        // the allocator; a long-running daemon should not keep them.
        // SAFETY: malloc_trim has no preconditions.
        unsafe { libc::malloc_trim(0) };
        Ok(Self {
            transitions,
            control,
            events: Some(Journal(events)),
            lost,
            rescued,
            udp_sockets,
            watched_ports,
            conns,
            ephemeral,
            metrics,
            ns_transitions,
            netns_of_cookie,
            primary_fd,
            current: Control::default(),
            all_namespaces,
            _ebpf: ebpf,
        })
    }

    pub fn losses(&self) -> Result<Losses, ProbeError> {
        // SAFETY: primary_fd is owned by self._ebpf, alive as long as self.
        let fd = unsafe { BorrowedFd::borrow_raw(self.primary_fd) };
        Ok(Losses {
            journal: counter(&self.lost, 0, MAP_LOST)?,
            primary_misses: super::prog_info::recursion_misses(fd)
                .map_err(ProbeError::ProgramInfo)?,
            rescued: counter(&self.rescued, 0, MAP_RESCUED)?,
        })
    }

    pub fn control(&self) -> Control {
        self.current
    }

    /// Writes the control word. Callers change one field at a time (see
    /// [`Control`]).
    pub fn set_control(&mut self, control: Control) -> Result<(), ProbeError> {
        self.control
            .set(0, control, 0)
            .map_err(map_error(MAP_CONTROL))?;
        self.current = control;
        Ok(())
    }

    /// Enters the UDP sockets a snapshot listed as counted, leaving the
    /// entries the programs made alone, then tells the programs that every
    /// socket bound before them is known.
    pub fn know_udp_sockets(
        &mut self,
        cookies: impl Iterator<Item = u64>,
    ) -> Result<(), ProbeError> {
        const BPF_NOEXIST: u64 = 1;
        for cookie in cookies {
            match self
                .udp_sockets
                .insert(cookie, netconn_common::UDP_COUNTED, BPF_NOEXIST)
            {
                Ok(()) => {}
                Err(aya::maps::MapError::SyscallError(e))
                    if e.io_error.raw_os_error() == Some(libc::EEXIST) => {}
                Err(e) => return Err(map_error(MAP_UDP_SOCKETS)(e)),
            }
        }
        self.set_control(Control {
            udp_known: 1,
            ..self.current
        })
    }

    /// Makes the programs stream every TCP event on these local ports.
    pub fn watch_ports(&mut self, ports: &[u16]) -> Result<(), ProbeError> {
        let mut words = [0u64; netconn_common::WATCHED_PORT_WORDS as usize];
        for p in ports {
            words[usize::from(*p / 64)] |= 1 << (p % 64);
        }
        for (i, w) in words.iter().enumerate().filter(|(_, w)| **w != 0) {
            self.watched_ports
                .set(i as u32, w, 0)
                .map_err(map_error(MAP_WATCHED_PORTS))?;
        }
        Ok(())
    }

    /// The connection records' maps (owners, the ring buffer, losses).
    pub fn conns(&self) -> &ConnMaps {
        &self.conns
    }

    /// The same, to take the ring buffer ([`ConnMaps::take_ring`]).
    pub fn conns_mut(&mut self) -> &mut ConnMaps {
        &mut self.conns
    }

    /// The ephemeral ports' maps, for their tracker: the first call only.
    pub fn take_ephemeral(&mut self) -> Option<super::ephemeral::EphemeralMaps> {
        self.ephemeral.take()
    }

    /// Moves the events waiting in the ring buffer into `out` (outside a
    /// snapshot: the streamed events of watched ports).
    pub fn drain(&mut self, out: &mut Vec<StateEvent>) {
        if let Some(j) = self.events.as_mut() {
            j.drain(out);
        }
    }

    /// Transition counts of matrix `epoch & 1`, summed over CPUs.
    fn read_matrix(&self, epoch: u8) -> Result<Transitions, ProbeError> {
        let per_cpu = self
            .transitions
            .get(&u32::from(epoch & 1), 0)
            .map_err(map_error(MAP_TRANSITIONS))?;
        Ok(crate::model::merge::sum_matrices(per_cpu.iter()))
    }

    /// Zeroes matrix `epoch & 1` (only while the kernel counts into the other).
    fn zero_matrix(&mut self, epoch: u8) -> Result<(), ProbeError> {
        let values = on_every_cpu(Transitions {
            counts: [0; TRANSITION_SLOTS],
        })?;
        self.transitions
            .set(u32::from(epoch & 1), values, 0)
            .map_err(map_error(MAP_TRANSITIONS))
    }

    /// Gives namespace `netns` its matrices (`--all-namespaces`): the
    /// programs count its events from now on. False when
    /// [`netconn_common::MAX_NAMESPACES`] are tracked already.
    /// `cookie`: the namespace's cookie (`SO_NETNS_COOKIE`), for the
    /// programs that can read only that.
    pub fn adopt(&mut self, netns: u32, cookie: Option<u64>) -> Result<bool, ProbeError> {
        const BPF_NOEXIST: u64 = 1;
        if !self.all_namespaces {
            // Its one namespace counts in the global matrices.
            return Ok(true);
        }
        if let Some(cookie) = cookie {
            self.netns_of_cookie
                .insert(cookie, netns, 0)
                .map_err(map_error(netconn_common::MAP_NETNS_OF_COOKIE))?;
        }
        for parity in [0, 1] {
            let key = NsKey { netns, parity };
            match self
                .ns_transitions
                .insert(key, zero_ns_counts()?, BPF_NOEXIST)
            {
                Ok(()) => {}
                Err(aya::maps::MapError::SyscallError(e))
                    if e.io_error.raw_os_error() == Some(libc::EEXIST) => {}
                Err(aya::maps::MapError::SyscallError(e))
                    if e.io_error.raw_os_error() == Some(libc::E2BIG) =>
                {
                    self.forget(netns);
                    return Ok(false);
                }
                Err(e) => return Err(map_error(MAP_NS_TRANSITIONS)(e)),
            }
        }
        Ok(true)
    }

    /// Drops namespace `netns`'s matrices (it is gone).
    pub fn forget(&mut self, netns: u32) {
        if !self.all_namespaces {
            return;
        }
        let cookies: Vec<u64> = self
            .netns_of_cookie
            .iter()
            .filter_map(Result::ok)
            .filter(|(_, n)| *n == netns)
            .map(|(c, _)| c)
            .collect();
        for c in cookies {
            let _ = self.netns_of_cookie.remove(&c);
        }
        for parity in [0, 1] {
            let _ = self.ns_transitions.remove(&NsKey { netns, parity });
        }
    }

    /// Namespace `netns`'s counts in epoch `epoch & 1`, summed over CPUs:
    /// the per-state deltas and the events counted. Loaded for one
    /// namespace: the global matrix's.
    pub fn read_ns_counts(&self, netns: u32, epoch: u8) -> Result<(Counts, u64), ProbeError> {
        if !self.all_namespaces {
            let matrix = self.read_matrix(epoch)?;
            let events = matrix.counts.iter().copied().fold(0u64, u64::wrapping_add);
            return Ok((crate::model::merge::matrix_effect(&matrix), events));
        }
        let key = NsKey {
            netns,
            parity: u32::from(epoch & 1),
        };
        let per_cpu = self
            .ns_transitions
            .get(&key, 0)
            .map_err(map_error(MAP_NS_TRANSITIONS))?;
        let mut delta = [0u64; netconn_common::NS_DELTA_SLOTS];
        let mut events = 0u64;
        for cpu in per_cpu.iter() {
            for (sum, d) in delta.iter_mut().zip(cpu.delta.iter()) {
                *sum = sum.wrapping_add(*d);
            }
            events = events.wrapping_add(cpu.events);
        }
        let counts = crate::model::merge::delta_effect(&delta);
        Ok((counts, events))
    }

    /// Zeroes namespace `netns`'s counts of epoch `epoch & 1` (only while
    /// the kernel counts into the other).
    pub fn zero_ns_counts(&mut self, netns: u32, epoch: u8) -> Result<(), ProbeError> {
        if !self.all_namespaces {
            return self.zero_matrix(epoch);
        }
        let key = NsKey {
            netns,
            parity: u32::from(epoch & 1),
        };
        self.ns_transitions
            .insert(key, zero_ns_counts()?, 0)
            .map_err(map_error(MAP_NS_TRANSITIONS))
    }

    /// The TCP metrics' maps (see [`super::metrics`]).
    pub fn metrics(&mut self) -> &mut MetricsMaps {
        &mut self.metrics
    }

    /// Tells the programs to add TCP metrics to slot `parity` from now on.
    pub fn flip_metrics(&mut self, parity: u8) -> Result<(), ProbeError> {
        self.set_control(Control {
            metrics_epoch: parity,
            ..self.control()
        })
    }

    /// Whether an event went uncounted or out of the journal since the
    /// losses were `synced`. A nested run bumps the primary's misses a
    /// moment before the backup counts its rescue: a difference is looked
    /// at again before it is called a loss.
    pub fn lost_since(&self, synced: Losses) -> Result<bool, ProbeError> {
        let in_sync =
            |l: Losses| l.uncounted() == synced.uncounted() && l.journal == synced.journal;
        if in_sync(self.losses()?) {
            return Ok(false);
        }
        std::thread::sleep(std::time::Duration::from_millis(2));
        Ok(!in_sync(self.losses()?))
    }

    /// Events the kernel could not hand over since load: journal entries
    /// dropped, and state changes no program counted.
    pub fn lost_events(&self) -> Result<u64, ProbeError> {
        let l = self.losses()?;
        Ok(l.journal + l.uncounted().unsigned_abs())
    }

    /// Takes the journal out, to drain it from another thread.
    pub fn take_journal(&mut self) -> Option<Journal> {
        self.events.take()
    }

    pub fn put_journal(&mut self, journal: Journal) {
        self.events = Some(journal);
    }
}

/// A namespace's counts, zero on every CPU.
fn zero_ns_counts() -> Result<PerCpuValues<NsCounts>, ProbeError> {
    on_every_cpu(NsCounts {
        delta: [0; netconn_common::NS_DELTA_SLOTS],
        events: 0,
    })
}

/// The ring buffer the programs journal events into.
pub struct Journal(RingBuf<MapData>);

impl Journal {
    /// Moves every event waiting in the ring buffer into `out`.
    pub fn drain(&mut self, out: &mut Vec<StateEvent>) {
        while let Some(item) = self.0.next() {
            if let Some(e) = StateEvent::from_bytes(&item) {
                out.push(e);
            }
        }
    }

    /// Drains every millisecond until `stop` is set, then once more.
    pub fn drain_until(&mut self, stop: &std::sync::atomic::AtomicBool) -> Vec<StateEvent> {
        let mut out = Vec::new();
        while !stop.load(std::sync::atomic::Ordering::Acquire) {
            self.drain(&mut out);
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        self.drain(&mut out);
        out
    }
}

/// Ring buffer sizes for tests that need them to overflow, in bytes, a
/// power of two and a multiple of the page size: `NETCONN_JOURNAL_BYTES`
/// (the journal) and `NETCONN_CONN_RING_BYTES` (connection records).
pub const RING_OVERRIDES: [&str; 2] = ["NETCONN_JOURNAL_BYTES", "NETCONN_CONN_RING_BYTES"];

/// The size `var` (one of [`RING_OVERRIDES`]) asks for. A value that is
/// not one is an error (`watch` checks them before loading).
pub fn ring_bytes_override(var: &str) -> Result<Option<u32>, String> {
    let page = 4096;
    let Ok(v) = std::env::var(var) else {
        return Ok(None);
    };
    // The kernel's memory, charged to netconn: bounded.
    let most = 256 << 20;
    v.parse::<u32>()
        .ok()
        .filter(|b| b.is_power_of_two() && (page..=most).contains(b))
        .map(Some)
        .ok_or_else(|| {
            format!("{var}: expected a power of two from {page} to {most} (256 MiB), got {v:?}")
        })
}

/// Where a program attaches.
#[derive(Debug, Clone, Copy)]
enum Hook {
    /// A BTF tracepoint (`tp_btf`).
    TpBtf(&'static str),
    /// The cgroup v2 root (socket lifecycle hooks, sock_ops).
    CgroupRoot,
}

/// What a program is loaded for.
#[derive(Debug, Clone, Copy)]
enum Feature {
    /// Always: the counts.
    Counting,
    /// The TCP metrics (not with `--no-tcp-metrics`).
    Metrics,
    /// The TCP metrics or the connection records (`--events`).
    MetricsOrConns,
    /// The TCP metrics or the ephemeral ports (the sock_ops program marks
    /// the sockets it counts for them).
    MetricsOrEphemeral,
}

#[derive(Debug, Clone, Copy)]
struct Program {
    name: &'static str,
    hook: Hook,
    feature: Feature,
}

const fn program(name: &'static str, hook: Hook, feature: Feature) -> Program {
    Program {
        name,
        hook,
        feature,
    }
}

/// Every program, in the order they attach: the state tracepoint's
/// primary before its backup (the backup rescues what the primary was
/// skipped for), the UDP lifecycle hooks, then the metrics' and reset
/// programs.
const PROGRAMS: [Program; 14] = {
    use Feature::*;
    use Hook::*;
    [
        program(PROG_STATE_CHANGE, TpBtf(TRACEPOINT_STATE_CHANGE), Counting),
        program(PROG_STATE_BACKUP, TpBtf(TRACEPOINT_STATE_CHANGE), Counting),
        program(UDP_PROGRAMS[0], CgroupRoot, Counting),
        program(UDP_PROGRAMS[1], CgroupRoot, Counting),
        program(UDP_PROGRAMS[2], CgroupRoot, Counting),
        program(UDP_PROGRAMS[3], CgroupRoot, Counting),
        program(UDP_PROGRAMS[4], CgroupRoot, Counting),
        program(UDP_PROGRAMS[5], CgroupRoot, Counting),
        program(UDP_PROGRAMS[6], CgroupRoot, Counting),
        program(UDP_PROGRAMS[7], CgroupRoot, Counting),
        program(PROG_TCP_OPS, CgroupRoot, MetricsOrEphemeral),
        program(
            PROG_SYNACK_RETRANS,
            TpBtf(TRACEPOINT_SYNACK_RETRANS),
            Metrics,
        ),
        program(
            PROG_RESET_RECEIVED,
            TpBtf(TRACEPOINT_RESET_RECEIVED),
            MetricsOrConns,
        ),
        program(
            PROG_RESET_SENT,
            TpBtf(TRACEPOINT_RESET_SENT),
            MetricsOrConns,
        ),
    ]
};

/// Loads and attaches a program on a BTF tracepoint.
fn attach_tp_btf(
    ebpf: &mut Ebpf,
    name: &str,
    tracepoint: &str,
    btf: &Btf,
) -> Result<RawFd, ProbeError> {
    let program = |source| ProbeError::Program {
        name: name.to_owned(),
        source,
    };
    let prog: &mut BtfTracePoint = ebpf
        .program_mut(name)
        .ok_or_else(|| ProbeError::MissingProgram(name.to_owned()))?
        .try_into()
        .map_err(program)?;
    prog.load(tracepoint, btf).map_err(load_error)?;
    prog.attach().map_err(|source| ProbeError::Attach {
        tracepoint: tracepoint.to_owned(),
        source,
    })?;
    Ok(prog.fd().map_err(program)?.as_fd().as_raw_fd())
}

/// Loads cgroup programs (the UDP lifecycle hooks, the TCP metrics'
/// sock_ops) and attaches them at the cgroup v2 root, next to any program
/// already there: aya attaches through BPF links (Linux 5.7+), which always
/// share the cgroup, and the kernel refuses attach flags on them, hence
/// `Single`.
fn attach_cgroup_programs(
    ebpf: &mut Ebpf,
    root: &OwnedFd,
    names: &[&'static str],
) -> Result<(), ProbeError> {
    use aya::programs::Program;
    for &name in names {
        let program = ebpf
            .program_mut(name)
            .ok_or_else(|| ProbeError::MissingProgram(name.to_owned()))?;
        let attach_error = |source| ProbeError::AttachCgroup { name, source };
        match program {
            Program::CgroupSock(p) => {
                let p: &mut CgroupSock = p;
                p.load().map_err(load_error)?;
                p.attach(root, CgroupAttachMode::Single)
                    .map_err(attach_error)?;
            }
            Program::CgroupSockAddr(p) => {
                let p: &mut CgroupSockAddr = p;
                p.load().map_err(load_error)?;
                p.attach(root, CgroupAttachMode::Single)
                    .map_err(attach_error)?;
            }
            Program::SockOps(p) => {
                let p: &mut SockOps = p;
                p.load().map_err(load_error)?;
                p.attach(root, CgroupAttachMode::Single)
                    .map_err(attach_error)?;
            }
            _ => return Err(ProbeError::NotCgroup(name)),
        }
    }
    Ok(())
}

/// Long enough for every program run that read the previous control word to
/// finish, and for the state store that follows the tracepoint to land,
/// where the kernel cannot say so itself (see [`quiesce`]).
const GRACE: Duration = Duration::from_millis(20);
/// After an RCU grace period: the state store that follows the tracepoint
/// (the next instructions of `tcp_set_state()`).
const STORE_MARGIN: Duration = Duration::from_millis(1);

/// Returns once every program run that started before the call has
/// finished. BPF programs run inside RCU read-side sections (tracing ones
/// in `__bpf_trace_run()`, cgroup ones in `bpf_prog_run_array_cg()`), and
/// `membarrier(MEMBARRIER_CMD_GLOBAL)` is `synchronize_rcu()`: a guarantee,
/// and about 8 ms here where a fixed sleep had to guess 20. Kernels that
/// refuse it (nohz_full) get the fixed sleep.
pub fn quiesce() {
    const MEMBARRIER_CMD_GLOBAL: libc::c_long = 1;
    // SAFETY: membarrier takes no pointers.
    let synced = unsafe { libc::syscall(libc::SYS_membarrier, MEMBARRIER_CMD_GLOBAL, 0, 0) } == 0;
    sleep(if synced { STORE_MARGIN } else { GRACE });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decode_checks_length() {
        let e = StateEvent {
            cookie: 42,
            netns: 7,
            oldstate: 1,
            newstate: 4,
            ..Default::default()
        };
        // SAFETY: viewing a plain repr(C) value as bytes.
        let bytes = unsafe {
            std::slice::from_raw_parts(
                std::ptr::from_ref::<StateEvent>(&e).cast::<u8>(),
                std::mem::size_of::<StateEvent>(),
            )
        };
        assert_eq!(StateEvent::from_bytes(bytes), Some(e));
        assert_eq!(StateEvent::from_bytes(&bytes[..47]), None);
    }

    #[test]
    fn every_program_once_the_primary_before_its_backup() {
        let names: Vec<&str> = PROGRAMS.iter().map(|p| p.name).collect();
        let mut unique = names.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), names.len(), "{names:?}");
        assert!(UDP_PROGRAMS.iter().all(|u| names.contains(u)));
        let at = |n| names.iter().position(|p| *p == n).unwrap();
        assert!(at(PROG_STATE_CHANGE) < at(PROG_STATE_BACKUP));
    }
}
