//! The TCP metrics' maps, kept by the probe and lent to the metrics
//! reader ([`crate::live::metrics::Reader`]): totals, per port, per
//! namespace and per peer, each in two slots the programs alternate
//! between (the slot in use is in the probe's control, see
//! [`super::Probe::flip_metrics`]).

use aya::Ebpf;
use aya::maps::{MapData, PerCpuArray, PerCpuHashMap, PerCpuValues};
use netconn_common::{
    MAP_METRICS_NS, MAP_METRICS_PORTS, MAP_METRICS_TOTAL, MAP_PEERS, MAP_PEERS_LOST, MetricsKey,
    TcpMetrics,
};

use super::error::{ProbeError, map_error};
use super::maps::{counter, on_every_cpu, removed, take_map};

pub struct MetricsMaps {
    total: PerCpuArray<MapData, TcpMetrics>,
    ports: PerCpuHashMap<MapData, MetricsKey, TcpMetrics>,
    /// Each namespace's TCP metrics (`--all-namespaces`).
    namespaces: PerCpuHashMap<MapData, MetricsKey, TcpMetrics>,
    /// Connections per peer and epoch, and those the map had no room for.
    peers: PerCpuHashMap<MapData, MetricsKey, u32>,
    peers_lost: PerCpuArray<MapData, u64>,
}

impl MetricsMaps {
    pub(super) fn take(ebpf: &mut Ebpf) -> Result<Self, ProbeError> {
        Ok(Self {
            total: take_map(ebpf, MAP_METRICS_TOTAL)?,
            ports: take_map(ebpf, MAP_METRICS_PORTS)?,
            namespaces: take_map(ebpf, MAP_METRICS_NS)?,
            peers: take_map(ebpf, MAP_PEERS)?,
            peers_lost: take_map(ebpf, MAP_PEERS_LOST)?,
        })
    }

    /// The namespace's TCP metrics in slot `parity`, summed over CPUs.
    pub fn total(&self, parity: u8) -> Result<TcpMetrics, ProbeError> {
        let per_cpu = self
            .total
            .get(&u32::from(parity & 1), 0)
            .map_err(map_error(MAP_METRICS_TOTAL))?;
        Ok(merged(per_cpu.iter()))
    }

    /// Zeroes the namespace's slot `parity` (only while the programs add
    /// to the other).
    pub fn zero_total(&mut self, parity: u8) -> Result<(), ProbeError> {
        let values = on_every_cpu(TcpMetrics::default())?;
        self.total
            .set(u32::from(parity & 1), values, 0)
            .map_err(map_error(MAP_METRICS_TOTAL))
    }

    /// The per-port TCP metrics in slot `parity`, summed over CPUs.
    pub fn ports(&self, parity: u8) -> Result<Vec<(MetricsKey, TcpMetrics)>, ProbeError> {
        slot_entries(&self.ports, MAP_METRICS_PORTS, parity, |c| merged(c.iter()))
    }

    /// Removes a per-port entry (of a slot the programs do not add to).
    pub fn remove_port(&mut self, key: &MetricsKey) -> Result<(), ProbeError> {
        removed(MAP_METRICS_PORTS, self.ports.remove(key))
    }

    /// Each namespace's TCP metrics in slot `parity` (`--all-namespaces`),
    /// summed over CPUs.
    pub fn namespaces(&self, parity: u8) -> Result<Vec<(MetricsKey, TcpMetrics)>, ProbeError> {
        slot_entries(&self.namespaces, MAP_METRICS_NS, parity, |c| {
            merged(c.iter())
        })
    }

    /// Removes a namespace's entry once read.
    pub fn remove_namespace(&mut self, key: &MetricsKey) -> Result<(), ProbeError> {
        removed(MAP_METRICS_NS, self.namespaces.remove(key))
    }

    /// Connections per peer in slot `parity`, summed over CPUs.
    pub fn peers(&self, parity: u8) -> Result<Vec<(MetricsKey, u32)>, ProbeError> {
        slot_entries(&self.peers, MAP_PEERS, parity, |per_cpu| {
            per_cpu.iter().sum()
        })
    }

    /// Removes a peer's entry once read.
    pub fn remove_peer(&mut self, key: &MetricsKey) -> Result<(), ProbeError> {
        removed(MAP_PEERS, self.peers.remove(key))
    }

    /// Connections whose peer found the map full, in slot `parity`; the
    /// slot is zeroed (only while the programs add to the other).
    pub fn take_peers_lost(&mut self, parity: u8) -> Result<u64, ProbeError> {
        let index = u32::from(parity & 1);
        let lost = counter(&self.peers_lost, index, MAP_PEERS_LOST)?;
        self.peers_lost
            .set(index, on_every_cpu(0u64)?, 0)
            .map_err(map_error(MAP_PEERS_LOST))?;
        Ok(lost)
    }
}

/// The entries of a per-CPU metrics hash in slot `parity`, summed over
/// CPUs; an entry evicted during the walk is skipped.
fn slot_entries<V: aya::Pod>(
    map: &PerCpuHashMap<MapData, MetricsKey, V>,
    name: &'static str,
    parity: u8,
    sum: impl Fn(&PerCpuValues<V>) -> V,
) -> Result<Vec<(MetricsKey, V)>, ProbeError> {
    let mut out = Vec::new();
    for entry in map.iter() {
        let (key, per_cpu) = match entry {
            Ok(e) => e,
            Err(aya::maps::MapError::KeyNotFound) => continue,
            Err(e) => return Err(map_error(name)(e)),
        };
        if key.epoch == parity & 1 {
            out.push((key, sum(&per_cpu)));
        }
    }
    Ok(out)
}

/// TCP metrics of every CPU, added up.
fn merged<'a>(per_cpu: impl Iterator<Item = &'a TcpMetrics>) -> TcpMetrics {
    let mut sum = TcpMetrics::default();
    per_cpu.for_each(|m| sum.merge(m));
    sum
}
