//! One namespace's live state, the same for a watch of one namespace and
//! of every namespace ([`crate::live::node`]): the base merged from its
//! last snapshot, its mini-sockets as last read and the kernel signature
//! they were read at, its request sockets, its port groups' series, its
//! resyncs. What is done with a snapshot, a mini-socket dump or a resync
//! is done here, once.

use crate::live::listeners::Requests;
use crate::live::ports::PortTracker;
use crate::model::counts::Counts;
use crate::model::merge::{Baseline, merge};
use crate::model::socket::DumpedSocket;
use crate::model::state::{ConnType, TCP_SYN_RECV};
use crate::tables::totals::KernelTotals;

/// What a resync changed in the live counts.
#[derive(Debug, Clone)]
pub struct Correction {
    pub time: String,
    /// Why netconn resynced.
    pub reason: &'static str,
    /// after - before, per conn-type and state.
    pub delta: Counts,
}

/// Resync reasons, as records show them.
pub const REASON_LOST: &str = "lost_events";
pub const REASON_RECONCILE: &str = "kernel_totals";
pub const REASON_REQUESTED: &str = "requested";

/// What the kernel showed when the mini-sockets were read: (time-wait
/// sockets, events counted this epoch, segments received). Unchanged, the
/// mini-sockets are too (see [`SpaceState::needs_mini_dump`]).
pub type Signature = (i64, u64, i64);

/// The signature of `totals` and the epoch's `events`.
pub fn signature(totals: &KernelTotals, events: u64) -> Signature {
    (totals.time_wait, events, totals.in_segs)
}

#[derive(Debug)]
pub struct SpaceState {
    /// Full sockets as merged from the last snapshot.
    pub base: Baseline,
    /// TCP time-wait and request sockets, from the last filtered dump.
    pub mini_tcp: Counts,
    /// The signature when they were read.
    pub mini_signature: Signature,
    /// Request sockets by listening address and port, as last read.
    pub requests: Requests,
    /// Port groups' series, when configured.
    pub ports: Option<PortTracker>,
    /// Snapshots after the first.
    pub resyncs: u64,
    /// The last resync: when, why, what it changed.
    pub last_correction: Option<Correction>,
    /// The signature at the last interval.
    seen: Option<Signature>,
    /// Whether a socket changed state or a segment was received in the
    /// last interval (or it cannot be told): when not, nothing a listener
    /// shows (the set of listeners, their queues, the listen drops) can
    /// have changed but `accept()` emptying a queue.
    pub moved: bool,
}

impl SpaceState {
    pub fn new(ports: Option<PortTracker>) -> Self {
        Self {
            base: Baseline::default(),
            mini_tcp: Counts::default(),
            mini_signature: (-1, 0, -1),
            requests: Requests::default(),
            ports,
            resyncs: 0,
            last_correction: None,
            seen: None,
            moved: true,
        }
    }

    /// Takes a snapshot's sockets merged with the journal's `events`
    /// (epoch `next`, namespace `netns`): the new base, and with it the
    /// mini-sockets and request sockets the snapshot read.
    pub fn merged(
        &mut self,
        sockets: &[DumpedSocket],
        events: &[netconn_common::StateEvent],
        next: u8,
        netns: u32,
    ) {
        if let Some(ports) = &mut self.ports {
            ports.rebuild(sockets, events, next, netns);
        }
        self.requests = crate::live::listeners::requests(sockets);
        self.base = merge(sockets, events, next, netns);
        self.mini_tcp = self.base.mini;
        self.moved = true;
    }

    /// Time-wait and request mini-sockets fire no state event (they appear
    /// in tcp_time_wait() and on a SYN, change substate and expire on their
    /// own timers), so they are re-read with a dump filtered to their
    /// states when the kernel shows that something could have changed
    /// them, and while request sockets are left: one that expires (its
    /// SYN-ACKs unanswered, `inet_csk_reqsk_queue_drop()` from the request
    /// timer) moves none of the counters of the signature.
    pub fn needs_mini_dump(&self, now: Signature) -> bool {
        let requests = [ConnType::Tcp, ConnType::Tcp6]
            .iter()
            .any(|ct| self.mini_tcp.get(*ct, TCP_SYN_RECV) != 0);
        now != self.mini_signature || requests
    }

    /// Takes a mini-socket dump (TCP time-wait and request sockets, and
    /// with port groups the UDP sockets) read at signature `now`; returns
    /// its TCP part.
    pub fn set_mini(&mut self, mut dump: Vec<DumpedSocket>, now: Signature) -> Vec<DumpedSocket> {
        let udp = crate::tables::sockdiag::split_udp(&mut dump);
        self.mini_tcp = Counts::from_dump(&dump);
        self.requests = crate::live::listeners::requests(&dump);
        if let Some(ports) = &mut self.ports {
            ports.set_mini(&dump);
            ports.set_udp(&udp);
        }
        self.mini_signature = now;
        dump
    }

    /// Notes the interval's signature (None: unreadable), and whether it
    /// moved since the last one.
    pub fn note_interval(&mut self, now: Option<Signature>) {
        self.moved = now.is_none() || now != self.seen;
        self.seen = now;
    }

    /// Records a resync for `reason` that changed the counts by `delta`.
    pub fn corrected(&mut self, reason: &'static str, delta: Counts, time: String) {
        self.resyncs += 1;
        self.last_correction = Some(Correction {
            time,
            reason,
            delta,
        });
    }

    /// The counts now, with `live` the full sockets' changes since the
    /// base (the kernel's current epoch).
    pub fn counts(&self, live: Counts) -> Counts {
        self.base.full + live + self.mini_tcp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mini_sockets_are_read_again_when_the_kernel_moved_or_requests_wait() {
        let mut s = SpaceState::new(None);
        s.set_mini(Vec::new(), (0, 5, 100));
        assert!(!s.needs_mini_dump((0, 5, 100)));
        assert!(
            s.needs_mini_dump((1, 5, 100)),
            "a time-wait socket came or went"
        );
        assert!(s.needs_mini_dump((0, 6, 100)), "an event");
        assert!(s.needs_mini_dump((0, 5, 101)), "a segment received");
        // A request socket left: read again until it is gone.
        s.mini_tcp.add(ConnType::Tcp, TCP_SYN_RECV, 1);
        assert!(s.needs_mini_dump((0, 5, 100)));
    }

    #[test]
    fn an_interval_moved_when_its_signature_changed_or_is_unknown() {
        let mut s = SpaceState::new(None);
        s.note_interval(Some((0, 1, 2)));
        assert!(s.moved, "the first");
        s.note_interval(Some((0, 1, 2)));
        assert!(!s.moved);
        s.note_interval(Some((0, 1, 3)));
        assert!(s.moved);
        s.note_interval(None);
        assert!(s.moved);
    }

    #[test]
    fn corrections_count_and_keep_the_last() {
        let mut s = SpaceState::new(None);
        let mut delta = Counts::default();
        delta.add(ConnType::Tcp, 1, 2);
        s.corrected("requested", delta, "t1".into());
        s.corrected("kernel_totals", Counts::default(), "t2".into());
        assert_eq!(s.resyncs, 2);
        let last = s.last_correction.as_ref().unwrap();
        assert_eq!((last.reason, last.time.as_str()), ("kernel_totals", "t2"));
    }
}
