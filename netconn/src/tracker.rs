//! Live counts: the kernel program's transition matrix on top of a merged
//! snapshot. The merge rule itself is in [`crate::merge`]; this module runs
//! the resync protocol described there against the real kernel.

use std::thread::sleep;
use std::time::Duration;

use netconn_common::Control;

use crate::counts::Counts;
use crate::ebpf::{Probe, ProbeError};
use crate::merge::{MergeStats, matrix_effect, merge};
use crate::state::ConnType;
use crate::{snapshot, sockdiag};

/// Long enough for every program run that read the previous control word to
/// finish, and for the state store that follows the tracepoint to land.
const GRACE: Duration = Duration::from_millis(20);
/// Attempts at a resync whose journal lost events before giving up.
const RESYNC_ATTEMPTS: u32 = 3;

#[derive(Debug, thiserror::Error)]
pub enum TrackerError {
    #[error(transparent)]
    Probe(#[from] ProbeError),
    #[error("socket dump (sock_diag) failed: {0}")]
    Dump(#[source] std::io::Error),
    #[error(
        "the event journal overflowed during {RESYNC_ATTEMPTS} snapshots in a row; \
         the socket churn is higher than the ring buffer can absorb"
    )]
    JournalOverflow,
}

pub struct Tracker {
    probe: Probe,
    netns: u32,
    base: Counts,
    resyncs: u64,
    last_merge: MergeStats,
}

impl Tracker {
    /// Loads and attaches the program for namespace `netns`, then takes the
    /// first snapshot. Programs are attached before the dump.
    pub fn start(netns: u32) -> Result<Tracker, TrackerError> {
        let probe = Probe::load(netns)?;
        let mut tracker = Tracker {
            probe,
            netns,
            base: Counts::default(),
            resyncs: 0,
            last_merge: MergeStats::default(),
        };
        tracker.resync()?;
        // The first snapshot is the start, not a correction.
        tracker.resyncs = 0;
        Ok(tracker)
    }

    /// Takes a new snapshot and merges it with the event stream.
    pub fn resync(&mut self) -> Result<(), TrackerError> {
        for _ in 0..RESYNC_ATTEMPTS {
            let lost_before = self.probe.lost()?;
            let (baseline, epoch) = self.snapshot_once()?;
            // Any reservation lost during the window means the journal is
            // incomplete and the merge may be off: take the snapshot again.
            if self.probe.lost()? == lost_before {
                self.base = baseline.counts;
                self.last_merge = baseline.stats;
                self.resyncs += 1;
                debug_assert_eq!(self.probe.control().epoch, epoch);
                return Ok(());
            }
        }
        Err(TrackerError::JournalOverflow)
    }

    /// One pass of the protocol in [`crate::merge`]: journal on, new epoch,
    /// dump, journal off, drain, merge.
    fn snapshot_once(&mut self) -> Result<(crate::merge::Baseline, u8), TrackerError> {
        let Control { epoch, .. } = self.probe.control();
        let next = epoch.wrapping_add(1);
        let mut journal = Vec::new();

        self.probe.zero_matrix(next)?;
        self.probe.set_control(Control {
            epoch,
            journal: 1,
            ..Default::default()
        })?;
        sleep(GRACE);
        self.probe.set_control(Control {
            epoch: next,
            journal: 1,
            ..Default::default()
        })?;
        sleep(GRACE);
        // Drain while we wait for nothing else: keeps the ring buffer small.
        self.probe.drain_events(&mut journal);
        // TCP only: the merge needs sock_diag's cookies; UDP is read apart.
        let mut dump = Vec::new();
        let dumped = [ConnType::Tcp, ConnType::Tcp6]
            .into_iter()
            .try_for_each(|ct| sockdiag::dump(ct, &mut dump))
            .map_err(TrackerError::Dump);
        self.probe.set_control(Control {
            epoch: next,
            journal: 0,
            ..Default::default()
        })?;
        sleep(GRACE);
        self.probe.drain_events(&mut journal);
        dumped?;
        Ok((merge(&dump, &journal, next, self.netns), next))
    }

    /// Current counts. TCP is live from the kernel; UDP sockets emit no
    /// state events, so UDP is read from a fresh dump (two small netlink
    /// requests) until the socket-lifecycle programs count it live.
    pub fn counts(&self) -> Result<Counts, TrackerError> {
        let epoch = self.probe.control().epoch;
        let mut live = self.base + matrix_effect(&self.probe.read_matrix(epoch)?);
        live.set_udp_from(&snapshot::udp_counts().map_err(TrackerError::Dump)?);
        Ok(live)
    }

    /// Events the kernel could not hand over (ring buffer full), since start.
    pub fn lost_events(&self) -> Result<u64, TrackerError> {
        Ok(self.probe.lost()?)
    }

    /// Snapshots taken after the first one.
    pub fn resyncs(&self) -> u64 {
        self.resyncs
    }

    pub fn last_merge(&self) -> MergeStats {
        self.last_merge
    }
}
