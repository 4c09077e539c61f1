//! One namespace's live state, the same for a watch of one namespace and
//! of every namespace ([`crate::live::node`]): the namespace (how it is
//! entered, its owner, its totals files) and the base merged from its
//! last snapshot, its mini-sockets as last read and the kernel signature
//! they were read at, its request sockets, its port groups' series, its
//! resyncs. What is done with a snapshot, a mini-socket dump or a resync
//! is done here, once.

use crate::live::listeners::Requests;
use crate::live::ports::PortTracker;
use crate::live::resync::LiveError;
use crate::model::counts::Counts;
use crate::model::merge::{Baseline, merge};
use crate::model::socket::DumpedSocket;
use crate::model::state::{ConnType, TCP_SYN_RECV};
use crate::namespaces::discover::{Namespace, Way};
use crate::namespaces::owner::Owner;
use crate::namespaces::target::{run_in, visit};
use crate::tables::totals::{KernelTotals, TotalsFiles};

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

/// One namespace's live state.
pub struct Space {
    pub ns: Namespace,
    pub owner: Owner,
    /// Its cookie (`SO_NETNS_COOKIE`), never reused where inodes are: a
    /// namespace that dies gives its inode to the next one made.
    pub(super) cookie: Option<u64>,
    /// Owned by the host's user namespace (see [`crate::live::slots`]).
    pub(super) host_users: bool,
    /// The calling thread's namespace ([`Scope::One`]): read from here,
    /// never entered.
    pub(super) here: bool,
    /// The UDP sockets of its first snapshot were told to the programs
    /// (those bound before it was counted); later snapshots need not, and
    /// must not: a socket released meanwhile would stay marked.
    pub(super) seeded: bool,
    /// Its sockstat and snmp files, kept open (see [`TotalsFiles`]).
    totals_files: Option<TotalsFiles>,
    /// What a watch of one namespace keeps too: base, mini-sockets,
    /// requests, port groups, resyncs, whether it moved.
    pub state: SpaceState,
}

impl Space {
    /// A namespace just adopted, not yet snapshotted; `here`: the calling
    /// thread's (read from here, its owner not looked up).
    pub fn new(
        ns: Namespace,
        cookie: Option<u64>,
        host_users: bool,
        here: bool,
        ports: Option<PortTracker>,
    ) -> Self {
        Self {
            state: SpaceState::new(ports),
            cookie,
            totals_files: if here { None } else { totals_files(&ns) },
            owner: if here { Owner::default() } else { ns.owner() },
            ns,
            host_users,
            here,
            seeded: false,
        }
    }

    /// The namespace's kernel totals: from `/proc/PID/net` of a process in
    /// it, or where none is (a namespace only a name or a thread holds)
    /// from a thread that joins it. None when it cannot be read (gone).
    /// The calling thread's must be readable: an error there is the
    /// watch's.
    pub(super) fn totals(&self) -> Result<Option<KernelTotals>, LiveError> {
        if self.here {
            return KernelTotals::read().map(Some).map_err(LiveError::Totals);
        }
        if let Some(files) = &self.totals_files {
            return Ok(files.read().ok());
        }
        Ok(match self.ns.proc_net() {
            Some(dir) => KernelTotals::read_in(&dir).ok(),
            None => self
                .ns
                .open()
                .and_then(|file| visit(&file, KernelTotals::read).ok()?.ok()),
        })
    }

    /// Whether it is the calling thread's namespace ([`Scope::One`]).
    pub fn here(&self) -> bool {
        self.here
    }

    /// How it is entered from the calling thread.
    pub fn way(&self) -> Way<'_> {
        match self.here {
            true => Way::Here,
            false => Way::In(&self.ns),
        }
    }
}

/// A namespace's totals files: from `/proc/PID/net` of a process in it,
/// or from a visit when none is (a namespace only a name holds).
fn totals_files(ns: &Namespace) -> Option<TotalsFiles> {
    match ns.proc_net() {
        Some(dir) => TotalsFiles::open_in(&dir).ok(),
        None => visit(&ns.open()?, || {
            TotalsFiles::open_in(std::path::Path::new("/proc/thread-self/net"))
        })
        .ok()?
        .ok(),
    }
}

/// A namespace's cookie, from a socket opened inside it; None when it
/// cannot be entered.
pub(super) fn cookie_of(ns: &Namespace) -> Option<u64> {
    let file = ns.open()?;
    run_in(&file, crate::ebpf::cgroup::netns_cookie).ok()?.ok()
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
