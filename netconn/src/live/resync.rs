//! The steps of a resync against the kernel that every namespace's
//! snapshot shares (see [`crate::model::merge`]): the control-word window
//! around a dump, the test that a disagreement with the kernel's totals is
//! real, and what can go wrong while counting live.

use crate::ebpf::ProbeError;
use crate::ebpf::probe::{Probe, quiesce};
use crate::live::ephemeral::EphemeralError;
use netconn_common::Control;

#[derive(Debug, thiserror::Error)]
pub enum LiveError {
    #[error(transparent)]
    Probe(#[from] ProbeError),
    #[error("socket dump (sock_diag) failed: {0}")]
    Dump(#[source] std::io::Error),
    #[error("reading /proc/net/sockstat or snmp failed: {0}")]
    Totals(#[source] std::io::Error),
    #[error(transparent)]
    Ephemeral(#[from] EphemeralError),
}

/// The control-word changes around a dump (steps 1 to 4 of the rule in
/// [`crate::model::merge`]): journal on, the new epoch, `dump`, journal
/// off, each change given time to reach every program run.
pub(super) fn journal_window<T>(
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

/// How often, and how far apart, a disagreement with the kernel's totals
/// is sampled before it counts: under churn the two are never read at the
/// same instant, so only a difference that holds still is an error.
const RECONCILE_SAMPLES: usize = 3;
const RECONCILE_SPACING: std::time::Duration = std::time::Duration::from_millis(20);

/// Whether `delta` (live totals minus the kernel's; None: unreadable),
/// `first` as read already, is non-zero and holds still over
/// [`RECONCILE_SAMPLES`] readings.
pub(super) fn steady_disagreement(
    first: Option<[i64; 5]>,
    mut delta: impl FnMut() -> Result<Option<[i64; 5]>, LiveError>,
) -> Result<bool, LiveError> {
    if first.is_none() || first == Some([0; 5]) {
        return Ok(false);
    }
    for _ in 1..RECONCILE_SAMPLES {
        std::thread::sleep(RECONCILE_SPACING);
        if delta()? != first {
            return Ok(false);
        }
    }
    Ok(true)
}
