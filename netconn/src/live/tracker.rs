//! Live counts: the kernel program's transition matrix on top of a merged
//! snapshot. The merge rule itself is in [`crate::model::merge`]; this module runs
//! the resync protocol described there against the real kernel.

use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::sleep;
use std::time::Duration;

use netconn_common::Control;

use crate::ebpf::{Features, Losses, Probe, ProbeError};
use crate::live::ephemeral::{EphemeralError, EphemeralPorts, EphemeralReading};
use crate::live::ports::{Groups, PortTracker};
use crate::live::space::{
    Correction, REASON_LOST, REASON_RECONCILE, Signature, SpaceState, signature,
};
use crate::model::counts::Counts;
use crate::model::merge::matrix_effect;
use crate::model::socket::DumpedSocket;
use crate::model::state::ConnType;
use crate::tables::sockdiag;
use crate::tables::totals::KernelTotals;

use crate::ebpf::probe::quiesce;

/// The control-word changes around a dump (steps 1 to 4 of the rule in
/// [`crate::model::merge`]): journal on, the new epoch, `dump`, journal
/// off, each change given time to reach every program run.
pub(crate) fn journal_window<T>(
    probe: &mut Probe,
    epoch: u8,
    next: u8,
    dump: impl FnOnce() -> T,
) -> Result<T, ProbeError> {
    let current = probe.control();
    let control = |epoch, journal| Control {
        epoch,
        journal,
        ..current
    };
    probe.set_control(control(epoch, 1))?;
    quiesce();
    probe.set_control(control(next, 1))?;
    quiesce();
    let dumped = dump();
    probe.set_control(control(next, 0))?;
    // Programs that read the old word finish and submit their events.
    quiesce();
    Ok(dumped)
}

/// Whether `delta` (live totals minus the kernel's; None: unreadable),
/// `first` as read already, is non-zero and holds still over
/// [`RECONCILE_SAMPLES`] readings.
pub(crate) fn steady_disagreement(
    first: Option<[i64; 5]>,
    mut delta: impl FnMut() -> Result<Option<[i64; 5]>, TrackerError>,
) -> Result<bool, TrackerError> {
    if first.is_none() || first == Some([0; 5]) {
        return Ok(false);
    }
    for _ in 1..RECONCILE_SAMPLES {
        sleep(RECONCILE_SPACING);
        if delta()? != first {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Attempts at a resync whose journal lost events before giving up.
const RESYNC_ATTEMPTS: u32 = 3;

#[derive(Debug, thiserror::Error)]
pub enum TrackerError {
    #[error(transparent)]
    Probe(#[from] ProbeError),
    #[error("socket dump (sock_diag) failed: {0}")]
    Dump(#[source] std::io::Error),
    #[error("reading /proc/net/sockstat or snmp failed: {0}")]
    Totals(#[source] std::io::Error),
    #[error(transparent)]
    Ephemeral(#[from] EphemeralError),
}

pub struct Tracker {
    probe: Probe,
    netns: u32,
    /// The namespace's state: base, mini-sockets, requests, port groups,
    /// last correction (the same as each namespace's of a node).
    state: SpaceState,
    /// Snapshots taken, every attempt (the first ones excepted).
    resyncs: u64,
    /// Loss counters as they stood when the current base was merged.
    synced: Losses,
    /// Reused buffer for streamed events.
    stream: Vec<netconn_common::StateEvent>,
    /// The TCP metrics' reader, when their programs are loaded.
    metrics: Option<crate::live::metrics::Reader>,
    /// Connection records (`--events`) are on.
    conns: bool,
    /// Ephemeral ports per destination.
    ephemeral: Option<EphemeralPorts>,
}

/// How often, and how far apart, a disagreement with the kernel's totals
/// is sampled before it counts: under churn the two are never read at the
/// same instant, so only a difference that holds still is an error.
const RECONCILE_SAMPLES: usize = 3;
const RECONCILE_SPACING: Duration = Duration::from_millis(20);

impl Tracker {
    /// Loads and attaches the program for namespace `netns`, then takes the
    /// first snapshot. Programs are attached before the dump. With port
    /// groups, their ports' events are streamed from the start.
    pub fn start(netns: u32, groups: Groups, features: Features) -> Result<Tracker, TrackerError> {
        let features = Features {
            port_groups: !groups.is_empty(),
            ..features
        };
        let (conns, tcp_metrics) = (features.conns, features.tcp_metrics);
        let mut probe = Probe::load(netns, false, features)?;
        let ephemeral = match probe.take_ephemeral() {
            Some(maps) => Some(EphemeralPorts::start(maps, netns)?),
            None => None,
        };
        let ports = if groups.is_empty() {
            None
        } else {
            probe.watch_ports(&groups.watched_ports())?;
            Some(PortTracker::new(groups))
        };
        let mut tracker = Tracker {
            probe,
            netns,
            state: SpaceState::new(ports),
            resyncs: 0,
            synced: Losses::default(),
            stream: Vec::new(),
            metrics: tcp_metrics.then(crate::live::metrics::Reader::default),
            conns,
            ephemeral,
        };
        tracker.resync()?;
        // The first snapshot is the start, not a correction.
        tracker.resyncs = 0;
        // Its dump and claims are gone; a daemon should not keep the pages.
        // SAFETY: malloc_trim has no preconditions.
        unsafe { libc::malloc_trim(0) };
        Ok(tracker)
    }

    /// Takes a new snapshot and merges it with the event stream. A pass
    /// during which the journal dropped an event, or an event went
    /// uncounted, is repeated; if none of the attempts is clean, the last
    /// merge is kept and [`Tracker::maintain`] tries again later.
    pub fn resync(&mut self) -> Result<(), TrackerError> {
        for _ in 0..RESYNC_ATTEMPTS {
            let before = self.probe.losses()?;
            // Read before the dump: a mini-socket that changes between
            // the dump and this reading (a FIN turning an orphaned
            // FIN_WAIT2 into TIME_WAIT) must show as a changed signature.
            let totals = KernelTotals::read().map_err(TrackerError::Totals)?;
            self.snapshot_once()?;
            let after = self.probe.losses()?;
            // The snapshot just read the mini-sockets: no need to again
            // until the kernel shows a change since it began.
            self.state.mini_signature = self.mini_signature_with(&totals)?;
            self.resyncs += 1;
            if after.journal == before.journal && after.uncounted() == before.uncounted() {
                self.synced = after;
                return Ok(());
            }
        }
        Ok(())
    }

    /// Repairs the counts when the kernel failed to hand over an event, or
    /// when the live totals of full sockets disagree, steadily, with the
    /// kernel's own (see [`crate::tables::totals`]). Returns whether it
    /// resynced.
    pub fn maintain(&mut self) -> Result<bool, TrackerError> {
        // One reading of the kernel's totals serves both checks.
        let totals = KernelTotals::read().map_err(TrackerError::Totals)?;
        let first = totals.delta(&self.full_counts()?);
        let reason = if self.probe.lost_since(self.synced)? {
            REASON_LOST
        } else if steady_disagreement(Some(first), || self.totals_delta().map(Some))? {
            REASON_RECONCILE
        } else {
            self.refresh_mini_sockets_with(&totals)?;
            return Ok(false);
        };
        self.corrected_resync(reason)?;
        Ok(true)
    }

    /// Resyncs and records what that changed.
    pub fn corrected_resync(&mut self, reason: &'static str) -> Result<(), TrackerError> {
        let before = self.counts()?;
        self.resync()?;
        let after = self.counts()?;
        self.state.last_correction = Some(Correction {
            time: crate::host::now_rfc3339(),
            reason,
            delta: after - before,
        });
        Ok(())
    }

    /// Time-wait and request mini-sockets fire no state event (they appear
    /// in tcp_time_wait() and on a SYN, change substate and expire on
    /// their own timers), so they are re-read with a dump filtered to their
    /// states when the kernel shows that something could have changed
    /// them, and while request sockets are left: one that expires (its
    /// SYN-ACKs unanswered, `inet_csk_reqsk_queue_drop()` from the
    /// request timer) moves none of the counters of the signature.
    pub fn refresh_mini_sockets(&mut self) -> Result<(), TrackerError> {
        self.refresh_mini_sockets_with(&KernelTotals::read().map_err(TrackerError::Totals)?)
    }

    /// The same with the kernel's totals as just read.
    fn refresh_mini_sockets_with(&mut self, totals: &KernelTotals) -> Result<(), TrackerError> {
        let signature = self.mini_signature_with(totals)?;
        if !self.state.needs_mini_dump(signature) {
            return Ok(());
        }
        let with_udp = self.state.ports.is_some();
        let dump = crate::tables::sockdiag::mini_dump(with_udp).map_err(TrackerError::Dump)?;
        let tcp = self.state.set_mini(dump, signature);
        if let Some(e) = &mut self.ephemeral {
            e.set_mini(&tcp);
        }
        Ok(())
    }

    /// The signature with kernel totals read earlier. The events are
    /// read now: every event that makes or ends a mini-socket also moves
    /// the time-wait count or the segments received.
    fn mini_signature_with(&self, k: &KernelTotals) -> Result<Signature, TrackerError> {
        let epoch = self.probe.control().epoch;
        let events: u64 = self.probe.read_matrix(epoch)?.counts.iter().sum();
        Ok(signature(k, events))
    }

    /// Live full-socket totals minus the kernel's: TCP IPv4 sockets, TCP
    /// IPv6 sockets, ESTABLISHED + CLOSE_WAIT, UDP IPv4 and IPv6 sockets.
    fn totals_delta(&self) -> Result<[i64; 5], TrackerError> {
        let live = self.full_counts()?;
        let k = KernelTotals::read().map_err(TrackerError::Totals)?;
        Ok(k.delta(&live))
    }

    pub fn last_correction(&self) -> Option<&Correction> {
        self.state.last_correction.as_ref()
    }

    /// One pass of the protocol in [`crate::model::merge`]: journal on, new epoch,
    /// dump, journal off, merge. A thread drains the journal meanwhile, so
    /// a small ring buffer holds up under the fastest churn.
    fn snapshot_once(&mut self) -> Result<(), TrackerError> {
        let Control { epoch, .. } = self.probe.control();
        let next = epoch.wrapping_add(1);
        self.probe.zero_matrix(next)?;
        let mut journal = self
            .probe
            .take_journal()
            .expect("the journal is back after every snapshot");
        let stop = AtomicBool::new(false);
        let (dumped, events) = std::thread::scope(|scope| {
            let drainer = scope.spawn(|| journal.drain_until(&stop));
            let dumped = self.journal_window(epoch, next);
            stop.store(true, Ordering::Release);
            (dumped, drainer.join().expect("journal drain thread"))
        });
        self.probe.put_journal(journal);
        let dumped = dumped?;
        if let Some(e) = &mut self.ephemeral {
            e.settle(&events)?;
        }
        if self.probe.control().udp_known == 0 {
            // The UDP sockets bound before the programs came (see the
            // eBPF crate's udp module).
            let udp = dumped.iter().filter(|s| !s.conn_type.is_tcp());
            self.probe.know_udp_sockets(udp.map(|s| s.cookie))?;
        }
        self.state.merged(&dumped, &events, next, self.netns);
        Ok(())
    }

    /// Applies the events streamed for watched ports since the last call.
    /// Called often enough that the ring buffer never fills (the watch loop
    /// every 20 ms) and before every reading.
    pub fn drain_stream(&mut self) {
        let Some(ports) = &mut self.state.ports else {
            return;
        };
        self.stream.clear();
        self.probe.drain(&mut self.stream);
        let epoch = self.probe.control().epoch;
        for e in self
            .stream
            .iter()
            .filter(|e| e.epoch == epoch && e.netns == self.netns)
        {
            ports.apply(e);
        }
    }

    /// The connection records' ring buffer (`watch --events`), for the
    /// thread that drains it; the first call only.
    pub fn take_conn_events(&mut self) -> Option<crate::ebpf::ConnRing> {
        self.probe.conns_mut().take_ring()
    }

    /// Connection records the kernel could not hand over, since start;
    /// None when started without them.
    pub fn conn_records_lost(&self) -> Result<Option<u64>, TrackerError> {
        match self.conns {
            true => Ok(Some(self.probe.conns().records_lost()?)),
            false => Ok(None),
        }
    }

    /// Request sockets by listening address and port, as last read.
    pub fn requests(&self) -> &crate::live::listeners::Requests {
        &self.state.requests
    }

    pub fn has_port_groups(&self) -> bool {
        self.state.ports.is_some()
    }

    /// The port groups' series, when configured, with their TCP metrics
    /// when given.
    pub fn port_series(
        &mut self,
        metrics: Option<&crate::live::metrics::Interval>,
    ) -> Option<Vec<crate::output::figures::PortSeries>> {
        self.drain_stream();
        let ports = self.state.ports.as_ref()?;
        let series = metrics.map(|m| m.by_series(ports.groups()));
        Some(ports.series(series.as_ref()))
    }

    /// The process behind one socket (pid, comm), if the programs
    /// recorded it (`watch --events`).
    pub fn owner_of(&self, cookie: u64) -> Option<(u32, String)> {
        self.probe.conns().owner_of(cookie)
    }

    /// A reader of the processes behind the TCP sockets the programs saw
    /// connect, listen or be accepted, for the clients' thread (`list`
    /// asks, and is answered without the loop).
    pub fn owners_reader(&self) -> Result<crate::ebpf::conns::OwnersReader, TrackerError> {
        Ok(self.probe.conns().owners_reader()?)
    }

    /// The TCP metrics since the last call (since start, the first time);
    /// None when started without them.
    pub fn tcp_metrics(&mut self) -> Result<Option<crate::live::metrics::Interval>, TrackerError> {
        match self.metrics.as_mut() {
            Some(reader) => Ok(Some(reader.next(&mut self.probe)?)),
            None => Ok(None),
        }
    }

    /// The control-word changes around the dump; returns the dump.
    fn journal_window(&mut self, epoch: u8, next: u8) -> Result<Vec<DumpedSocket>, TrackerError> {
        let ephemeral = &mut self.ephemeral;
        journal_window(&mut self.probe, epoch, next, || {
            // sock_diag, not /proc/net: the merge needs the cookies.
            let mut dump = Vec::new();
            ConnType::ALL
                .into_iter()
                .try_for_each(|ct| sockdiag::dump(ct, &mut dump))
                .map_err(TrackerError::Dump)?;
            // Claimed while the journal is on (see EphemeralPorts::adopt).
            if let Some(e) = ephemeral {
                e.adopt(&dump)?;
            }
            Ok(dump)
        })?
    }

    /// Current counts: full TCP sockets and UDP sockets live from the
    /// kernel, TCP mini-sockets as [`Tracker::maintain`] last read them.
    pub fn counts(&self) -> Result<Counts, TrackerError> {
        Ok(self.state.counts(self.live()?))
    }

    /// Full TCP and UDP sockets only: what the events move.
    fn full_counts(&self) -> Result<Counts, TrackerError> {
        Ok(self.state.base.full + self.live()?)
    }

    /// The full sockets' changes the kernel counted since the base.
    fn live(&self) -> Result<Counts, TrackerError> {
        let epoch = self.probe.control().epoch;
        Ok(matrix_effect(&self.probe.read_matrix(epoch)?))
    }

    /// Events the kernel could not hand over since start: journal entries
    /// dropped, and state changes no program counted.
    pub fn lost_events(&self) -> Result<u64, TrackerError> {
        Ok(self.probe.lost_events()?)
    }

    /// Ephemeral ports: the range and every destination, most sockets
    /// first, and the sockets left out of the counts. `listening`: the
    /// ports listeners have now.
    pub fn ephemeral(
        &mut self,
        listening: &std::collections::HashSet<u16>,
    ) -> Result<Option<EphemeralReading>, TrackerError> {
        let Some(e) = &mut self.ephemeral else {
            return Ok(None);
        };
        let (range, destinations) = e.read(listening)?;
        Ok(Some(EphemeralReading::new(
            range,
            destinations,
            Some(e.untracked()?),
        )))
    }

    /// Snapshots taken after the first one.
    pub fn resyncs(&self) -> u64 {
        self.resyncs
    }
}
