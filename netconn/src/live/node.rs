//! The live counts of one namespace (`watch`) or of every network
//! namespace of the host at once (`watch --all-namespaces`), by one set of
//! programs: for every namespace they count each one's per-state changes
//! apart (see the eBPF crate), for one in the two global matrices. Each
//! namespace is a [`Space`] with its own snapshot (taken from inside it),
//! merged by the rule in [`crate::model::merge`]; a watch of one namespace
//! is the node fixed to it, where nothing is discovered and the namespace
//! is read from the calling thread (with ephemeral ports, which only a
//! watch of one namespace counts).
//!
//! The epoch and the journal are shared: a snapshot of some namespaces
//! flips the epoch for all, and the others fold the matrix of the epoch
//! that ended into their base once no program can still add to it.
//! Namespaces are found by a walk of /proc and /run/netns, every third
//! interval or every 5 s, whichever is sooner (the programs count nothing
//! for a namespace without a matrix: its snapshot covers its earlier
//! events); one is gone when no process is in it and no name holds it any
//! more.
//!
//! A namespace where nothing moved costs a few reads per interval: its
//! sockstat and snmp files are kept open (see
//! [`crate::tables::totals::TotalsFiles`]), and the time-wait and request
//! sockets, listeners and listen counters are read only when its events or
//! segments received moved (see [`Space::moved`]).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};

use crate::ebpf::{Losses, Probe};
use crate::live::ephemeral::{EphemeralPorts, EphemeralReading};
use crate::live::ports::{Groups, PortTracker};
use crate::live::space::{
    self, REASON_LOST, REASON_RECONCILE, REASON_REQUESTED, Signature, Space, signature,
};
use crate::model::counts::Counts;
use crate::model::socket::DumpedSocket;
use crate::model::state::ConnType;
use crate::namespaces::discover::{self, Namespace};
use crate::namespaces::target::run_in;
use crate::tables::sockdiag;
use crate::tables::totals::KernelTotals;

use crate::live::resync::{LiveError, journal_window, steady_disagreement};

/// Which namespaces a node counts.
#[derive(Debug, Clone, Copy)]
pub enum Scope {
    /// The calling thread's (inode), read from here.
    One(u32),
    /// Every namespace found, `slots` of them counted apart at most (at
    /// most [`netconn_common::MAX_NAMESPACES`]).
    All { slots: u32 },
}

/// How often /proc is walked for namespaces that came, went or changed
/// hands, at most (or every third interval, when that is sooner).
const DISCOVER_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// What changed in the set of namespaces.
pub enum Change {
    /// Adopted and snapshotted: counted from now on.
    New(u32),
    /// Gone, with its last counts and owner.
    Gone(Box<(Space, Counts)>),
    /// Still there, but its slot went to a namespace of the host's users
    /// (see [`crate::live::slots`]); its last counts and owner.
    Untracked(Box<(Space, Counts)>),
}

pub struct Node {
    probe: Probe,
    scope: Scope,
    /// Ephemeral ports per destination ([`Scope::One`] only); read
    /// between two uses of the counts (see [`Node::ephemeral`]).
    ephemeral: Option<std::sync::Mutex<EphemeralPorts>>,
    /// Port groups, counted in every namespace apart.
    groups: Groups,
    /// Reused buffer for streamed events (watched ports).
    stream: Vec<netconn_common::StateEvent>,
    /// The TCP metrics' reader, when their programs are loaded.
    metrics: Option<crate::live::metrics::Reader>,
    /// Connection records (`--events`) are on.
    conns: bool,
    spaces: BTreeMap<u32, Space>,
    /// Namespaces counted apart at most.
    slots: usize,
    /// When /proc was last walked for namespaces.
    discovered: std::time::Instant,
    /// The watch's interval.
    interval: std::time::Duration,
    /// Namespaces found past the bound, with whether the host's users own
    /// them; tried again every interval.
    untracked: BTreeMap<u32, (Namespace, bool)>,
    resyncs: u64,
    synced: Losses,
}

impl Node {
    /// Loads the programs for the namespaces of `scope`, adopts them and
    /// snapshots them all. Programs are attached before the dumps; with
    /// port groups (`groups`, each namespace's series apart), their ports'
    /// events are streamed from the start. `features.conns`: also
    /// connection records (`--events`, see [`Node::take_conn_events`]);
    /// `features.ephemeral` is for [`Scope::One`] only. `interval`: the
    /// watch's.
    pub fn start(
        scope: Scope,
        groups: Groups,
        features: crate::ebpf::Features,
        interval: std::time::Duration,
    ) -> Result<Self, LiveError> {
        let features = crate::ebpf::Features {
            port_groups: !groups.is_empty(),
            ephemeral: features.ephemeral && matches!(scope, Scope::One(_)),
            ..features
        };
        let (mut probe, slots) = match scope {
            Scope::One(netns) => (Probe::load(netns, false, features)?, 1),
            Scope::All { slots } => (Probe::load(0, true, features)?, slots),
        };
        let ephemeral = match (probe.take_ephemeral(), scope) {
            (Some(maps), Scope::One(netns)) => Some(EphemeralPorts::start(maps, netns)?.into()),
            _ => None,
        };
        if !groups.is_empty() {
            probe.watch_ports(&groups.watched_ports())?;
        }
        let tcp_metrics = features.tcp_metrics;
        let mut node = Self {
            probe,
            scope,
            ephemeral,
            groups,
            stream: Vec::new(),
            metrics: tcp_metrics.then(crate::live::metrics::Reader::default),
            conns: features.conns,
            spaces: BTreeMap::new(),
            slots: slots.min(netconn_common::MAX_NAMESPACES) as usize,
            discovered: std::time::Instant::now(),
            interval,
            untracked: BTreeMap::new(),
            resyncs: 0,
            synced: Losses::default(),
        };
        let found = match scope {
            Scope::One(inode) => vec![Namespace {
                inode,
                pids: vec![std::process::id()],
                names: Vec::new(),
            }],
            Scope::All { .. } => discover::scan().into_values().collect(),
        };
        let (adopted, _) = node.adopt(found)?;
        node.snapshot(&adopted)?;
        node.resyncs = 0;
        // Its dumps and claims are gone; a daemon should not keep the pages.
        // SAFETY: malloc_trim has no preconditions.
        unsafe { libc::malloc_trim(0) };
        Ok(node)
    }

    /// Which namespaces it counts.
    pub fn scope(&self) -> Scope {
        self.scope
    }

    /// Gives slots (their matrices) to namespaces `fresh` and to those
    /// untracked so far, by [`crate::live::slots::plan`]; returns the
    /// inodes adopted, and the namespaces whose slots were taken back.
    fn adopt(&mut self, fresh: Vec<Namespace>) -> Result<(Vec<u32>, Vec<Change>), LiveError> {
        use crate::live::slots::{Claim, plan};
        for ns in fresh {
            if !self.spaces.contains_key(&ns.inode) {
                let host_users = ns.owned_by_host_users();
                self.untracked.insert(ns.inode, (ns, host_users));
            }
        }
        let claim = |inode: u32, host_users: bool| Claim { inode, host_users };
        let held: Vec<Claim> = (self.spaces.iter())
            .map(|(i, s)| claim(*i, s.host_users))
            .collect();
        let candidates: Vec<Claim> = (self.untracked.iter())
            .map(|(i, (_, h))| claim(*i, *h))
            .collect();
        let plan = plan(self.slots, &held, &candidates);
        let mut taken = Vec::new();
        for inode in plan.evict {
            let last = self.counts(inode)?;
            self.probe.forget(inode);
            let space = self.spaces.remove(&inode).expect("held");
            let host_users = space.host_users;
            self.untracked.insert(inode, (space.ns.clone(), host_users));
            taken.push(Change::Untracked(Box::new((space, last))));
        }
        let mut adopted = Vec::new();
        for inode in plan.adopt {
            let (ns, host_users) = self.untracked.remove(&inode).expect("a candidate");
            let here = matches!(self.scope, Scope::One(_));
            // Its cookie, from a socket opened inside it (one namespace's
            // programs know theirs).
            let cookie = if here { None } else { space::cookie_of(&ns) };
            if !self.probe.adopt(ns.inode, cookie)? {
                self.untracked.insert(inode, (ns, host_users));
                continue;
            }
            adopted.push(ns.inode);
            let ports = (!self.groups.is_empty()).then(|| PortTracker::new(self.groups.clone()));
            self.spaces
                .insert(ns.inode, Space::new(ns, cookie, host_users, here, ports));
        }
        Ok((adopted, taken))
    }

    /// Snapshots namespaces `dump` (from inside each) and merges each with
    /// the journal; every other namespace folds the epoch that ended into
    /// its base. Repeated while the journal or the counting lost events.
    fn snapshot(&mut self, dump: &[u32]) -> Result<(), LiveError> {
        const ATTEMPTS: u32 = 3;
        let mut dump: Vec<u32> = dump.to_vec();
        for _ in 0..ATTEMPTS {
            let before = self.probe.losses()?;
            self.snapshot_once(&dump)?;
            let after = self.probe.losses()?;
            self.resyncs += 1;
            if after.journal == before.journal && after.uncounted() == before.uncounted() {
                self.synced = after;
                return Ok(());
            }
            // Events were lost meanwhile: in any namespace, so all again.
            dump = self.spaces.keys().copied().collect();
        }
        Ok(())
    }

    fn snapshot_once(&mut self, dump: &[u32]) -> Result<(), LiveError> {
        let current = self.probe.control();
        let (epoch, next) = (current.epoch, current.epoch.wrapping_add(1));
        for inode in self.spaces.keys() {
            self.probe.zero_ns_counts(*inode, next)?;
        }
        let mut journal = self
            .probe
            .take_journal()
            .expect("the journal is back after every snapshot");
        // Read before the dumps (see the single-namespace tracker's resync).
        let mut early: BTreeMap<u32, KernelTotals> = BTreeMap::new();
        for inode in dump {
            if let Some(totals) = match self.spaces.get(inode) {
                Some(space) => space.totals()?,
                None => None,
            } {
                early.insert(*inode, totals);
            }
        }
        let stop = AtomicBool::new(false);
        // Where each is dumped: here, or from a thread inside it.
        let targets: Vec<(u32, Option<Option<std::fs::File>>)> = dump
            .iter()
            .map(|i| match self.spaces.get(i) {
                Some(s) if s.here => (*i, None),
                s => (*i, Some(s.and_then(|s| s.ns.open()))),
            })
            .collect();
        let mut ephemeral = self
            .ephemeral
            .as_mut()
            .map(|e| e.get_mut().unwrap_or_else(|p| p.into_inner()));
        let (dumped, events) = std::thread::scope(|scope| {
            let drainer = scope.spawn(|| journal.drain_until(&stop));
            let dumped = journal_window(&mut self.probe, epoch, next, || {
                let mut dumped = Vec::new();
                for (inode, way) in &targets {
                    let sockets = match way {
                        None => Some(dump_here().map_err(LiveError::Dump)?),
                        Some(file) => file.as_ref().and_then(dump_in),
                    };
                    // Claimed while the journal is on (see
                    // EphemeralPorts::adopt).
                    if let (Some(e), Some(sockets)) = (ephemeral.as_deref_mut(), &sockets) {
                        e.adopt(sockets)?;
                    }
                    dumped.push((*inode, sockets));
                }
                Ok::<_, LiveError>(dumped)
            });
            stop.store(true, Ordering::Release);
            (dumped, drainer.join().expect("journal drain thread"))
        });
        self.probe.put_journal(journal);
        let dumped = dumped??;
        if let Some(e) = &mut self.ephemeral {
            e.get_mut()
                .unwrap_or_else(|p| p.into_inner())
                .settle(&events)?;
        }
        let mut udp = Vec::new();
        let mut merged = BTreeSet::new();
        for (inode, sockets) in dumped {
            // A namespace that went away meanwhile is found gone later.
            let Some(sockets) = sockets else { continue };
            let space = self
                .spaces
                .get_mut(&inode)
                .expect("dumped namespaces are tracked");
            if !space.seeded {
                udp.extend(
                    sockets
                        .iter()
                        .filter(|s| !s.conn_type.is_tcp())
                        .map(|s| s.cookie),
                );
                space.seeded = true;
            }
            space.state.merged(&sockets, &events, next, inode);
            merged.insert(inode);
        }
        // The window's journal also took the streamed events of watched
        // ports in namespaces not dumped: theirs are still to apply.
        for e in events
            .iter()
            .filter(|e| e.watched != 0 && !merged.contains(&e.netns))
        {
            if let Some(ports) = self.ports_of(e.netns) {
                ports.apply(e);
            }
        }
        for (inode, space) in &mut self.spaces {
            if !merged.contains(inode) {
                let (ended, _) = self.probe.read_ns_counts(*inode, epoch)?;
                space.state.base.full = space.state.base.full + ended;
            }
        }
        // The UDP sockets bound before the programs came, or before their
        // namespace was adopted (see the eBPF crate's udp module).
        self.probe.know_udp_sockets(udp.into_iter())?;
        for inode in merged {
            let signature = match early.get(&inode) {
                Some(k) => self.mini_signature_with(inode, k)?,
                None => None,
            };
            if let (Some(s), Some(sig)) = (self.spaces.get_mut(&inode), signature) {
                s.state.mini_signature = sig;
            }
        }
        Ok(())
    }

    /// The signature with kernel totals read before a dump (see
    /// [`SpaceState::needs_mini_dump`]); None when another namespace's
    /// counts cannot be read (it is being forgotten).
    fn mini_signature_with(
        &self,
        inode: u32,
        k: &KernelTotals,
    ) -> Result<Option<Signature>, LiveError> {
        let epoch = self.probe.control().epoch;
        match self.probe.read_ns_counts(inode, epoch) {
            Ok((_, events)) => Ok(Some(signature(k, events))),
            Err(e) if self.spaces.get(&inode).is_some_and(|s| s.here) => Err(e.into()),
            Err(_) => Ok(None),
        }
    }

    /// One namespace's port groups' series, for streamed events.
    fn ports_of(&mut self, inode: u32) -> Option<&mut PortTracker> {
        self.spaces.get_mut(&inode)?.state.ports.as_mut()
    }

    /// Full sockets of one namespace: base and the current epoch's events.
    fn full_counts(&self, inode: u32) -> Result<Counts, LiveError> {
        let space = &self.spaces[&inode];
        let epoch = self.probe.control().epoch;
        Ok(space.state.base.full + self.probe.read_ns_counts(inode, epoch)?.0)
    }

    /// One namespace's counts now.
    pub fn counts(&self, inode: u32) -> Result<Counts, LiveError> {
        let epoch = self.probe.control().epoch;
        let live = self.probe.read_ns_counts(inode, epoch)?.0;
        Ok(self.spaces[&inode].state.counts(live))
    }

    /// Once per interval: finds namespaces that came and went, repairs
    /// losses and drift, re-reads mini-sockets. Returns the changes in the
    /// set of namespaces.
    /// The namespaces found now, when the last walk of /proc is
    /// [`DISCOVER_EVERY`] old (a walk reads a link of every process: on a
    /// node of thousands, milliseconds; a new namespace's sockets are
    /// counted by the programs before it is adopted, and adopting takes a
    /// snapshot of it).
    fn discover_due(&mut self) -> Option<BTreeMap<u32, Namespace>> {
        if let Scope::One(_) = self.scope {
            return None;
        }
        let now = std::time::Instant::now();
        if now.duration_since(self.discovered) < DISCOVER_EVERY.min(3 * self.interval) {
            return None;
        }
        self.discovered = now;
        Some(discover::scan())
    }

    /// Follows the namespaces `found`: those gone, replaced or joined by
    /// other processes, and new ones; returns those adopted and the changes
    /// the slots made.
    #[allow(clippy::type_complexity)]
    fn discover(
        &mut self,
        mut found: BTreeMap<u32, Namespace>,
        changes: &mut Vec<Change>,
    ) -> Result<(Vec<u32>, Vec<Change>), LiveError> {
        // A namespace no process or name holds has no way in: gone.
        let gone: Vec<u32> = self
            .spaces
            .keys()
            .filter(|i| !found.contains_key(i))
            .copied()
            .collect();
        for inode in gone {
            let last = self.counts(inode)?;
            self.probe.forget(inode);
            let space = self.spaces.remove(&inode).expect("tracked");
            changes.push(Change::Gone(Box::new((space, last))));
        }
        self.untracked.retain(|i, _| found.contains_key(i));
        for (inode, (ns, _)) in &mut self.untracked {
            ns.clone_from(&found[inode]);
        }
        let mut replaced = Vec::new();
        for (inode, ns) in &found {
            if let Some(space) = self.spaces.get_mut(inode)
                && (space.ns.pids != ns.pids || space.ns.names != ns.names)
            {
                // Other processes or names: the same namespace joined by
                // others (a container's process often joins after CNI made
                // it), or a new one that got a dead one's inode.
                let cookie = space::cookie_of(ns);
                if cookie.is_some() && space.cookie.is_some() && cookie != space.cookie {
                    replaced.push(*inode);
                    continue;
                }
                space.ns = ns.clone();
                space.owner = ns.owner();
            }
        }
        for inode in replaced {
            // The old one is gone; the new one is adopted below.
            let last = self.counts(inode)?;
            self.probe.forget(inode);
            let space = self.spaces.remove(&inode).expect("tracked");
            changes.push(Change::Gone(Box::new((space, last))));
        }
        let fresh: Vec<Namespace> = found
            .extract_if(.., |i, _| {
                !self.spaces.contains_key(i) && !self.untracked.contains_key(i)
            })
            .map(|(_, ns)| ns)
            .collect();
        self.adopt(fresh)
    }

    pub fn maintain(&mut self) -> Result<Vec<Change>, LiveError> {
        let mut changes = Vec::new();
        let (adopted, taken) = match self.discover_due() {
            Some(found) => self.discover(found, &mut changes)?,
            None => (Vec::new(), Vec::new()),
        };
        changes.extend(taken);
        if self.probe.lost_since(self.synced)? {
            let lost: Vec<(u32, &'static str)> = (self.spaces.keys())
                .filter(|i| !adopted.contains(i))
                .map(|i| (*i, REASON_LOST))
                .collect();
            self.resync(&adopted, &lost)?;
        } else {
            let mut resync = Vec::new();
            for inode in self.spaces.keys().copied().collect::<Vec<_>>() {
                if adopted.contains(&inode) {
                    continue;
                }
                // One reading of the namespace's totals serves both checks.
                let totals = self.spaces[&inode].totals()?;
                let first = match &totals {
                    Some(k) => Some(k.delta(&self.full_counts(inode)?)),
                    None => None,
                };
                let seen = match &totals {
                    Some(k) => self.mini_signature_with(inode, k)?,
                    None => None,
                };
                let space = self.spaces.get_mut(&inode).expect("tracked");
                space.state.note_interval(seen);
                if steady_disagreement(first, || self.totals_delta(inode))? {
                    resync.push((inode, REASON_RECONCILE));
                } else if let Some(k) = totals {
                    self.refresh_mini_sockets_with(inode, &k)?;
                }
            }
            for (inode, _) in &resync {
                if let Some(space) = self.spaces.get_mut(inode) {
                    space.state.moved = true;
                }
            }
            self.resync(&adopted, &resync)?;
        }
        changes.extend(adopted.into_iter().map(Change::New));
        Ok(changes)
    }

    /// Live full-socket totals minus the namespace's own (see the
    /// tracker); None when its files cannot be read.
    fn totals_delta(&self, inode: u32) -> Result<Option<[i64; 5]>, LiveError> {
        let live = self.full_counts(inode)?;
        let Some(k) = self.spaces[&inode].totals()? else {
            return Ok(None);
        };
        Ok(Some(k.delta(&live)))
    }

    /// Re-reads one namespace's time-wait and request sockets when its
    /// kernel counters moved, or while request sockets remain (see
    /// [`SpaceState::needs_mini_dump`]).
    pub fn refresh_mini_sockets(&mut self, inode: u32) -> Result<(), LiveError> {
        let totals = match self.spaces.get(&inode) {
            Some(space) => space.totals()?,
            None => None,
        };
        match totals {
            Some(k) => self.refresh_mini_sockets_with(inode, &k),
            None => Ok(()),
        }
    }

    /// The same with the namespace's totals as just read.
    fn refresh_mini_sockets_with(
        &mut self,
        inode: u32,
        totals: &KernelTotals,
    ) -> Result<(), LiveError> {
        let Some(signature) = self.mini_signature_with(inode, totals)? else {
            return Ok(());
        };
        let space = &self.spaces[&inode];
        if !space.state.needs_mini_dump(signature) {
            return Ok(());
        }
        let with_udp = space.state.ports.is_some();
        let dump = match space.way().visit(|| sockdiag::mini_dump(with_udp)) {
            Some(Ok(dump)) => dump,
            // Here, a failed dump is an error; elsewhere the namespace
            // may be gone, found so at the next walk.
            Some(Err(e)) if space.here => return Err(LiveError::Dump(e)),
            _ => return Ok(()),
        };
        let space = self.spaces.get_mut(&inode).expect("tracked");
        let tcp = space.state.set_mini(dump, signature);
        if let Some(e) = &mut self.ephemeral {
            e.get_mut()
                .unwrap_or_else(|p| p.into_inner())
                .set_mini(&tcp);
        }
        Ok(())
    }

    /// The connection records' ring buffer, for the thread that drains
    /// it; the first call only.
    pub fn take_conn_events(&mut self) -> Option<crate::ebpf::ConnRing> {
        self.probe.conns_mut().take_ring()
    }

    /// Connection records the kernel could not hand over, since start;
    /// None when started without them.
    pub fn conn_records_lost(&self) -> Result<Option<u64>, LiveError> {
        match self.conns {
            true => Ok(Some(self.probe.conns().records_lost()?)),
            false => Ok(None),
        }
    }

    /// Applies the events streamed for watched ports to each namespace's
    /// series. Called often enough that the ring buffer never fills.
    pub fn drain_stream(&mut self) {
        if self.groups.is_empty() {
            return;
        }
        self.stream.clear();
        self.probe.drain(&mut self.stream);
        let epoch = self.probe.control().epoch;
        for e in self.stream.iter().filter(|e| e.epoch == epoch) {
            if let Some(ports) = self
                .spaces
                .get_mut(&e.netns)
                .and_then(|s| s.state.ports.as_mut())
            {
                ports.apply(e);
            }
        }
    }

    /// One namespace's port group series as last drained (None without
    /// groups): for a page made while the interval's work runs.
    pub fn port_series_now(&self, inode: u32) -> Option<Vec<crate::output::figures::PortSeries>> {
        Some(self.spaces.get(&inode)?.state.ports.as_ref()?.series(None))
    }

    /// One namespace's port group series (None without groups), with
    /// their TCP metrics when given.
    pub fn port_series(
        &mut self,
        inode: u32,
        metrics: Option<&crate::live::metrics::Interval>,
    ) -> Option<Vec<crate::output::figures::PortSeries>> {
        self.drain_stream();
        let ports = self.spaces.get(&inode)?.state.ports.as_ref()?;
        let series = metrics.map(|m| m.by_series(ports.groups()));
        Some(ports.series(series.as_ref()))
    }

    /// Each namespace's TCP metrics since the last call (since start, the
    /// first time); None when started without them.
    pub fn tcp_metrics(
        &mut self,
    ) -> Result<Option<std::collections::HashMap<u32, crate::live::metrics::Interval>>, LiveError>
    {
        let Some(reader) = self.metrics.as_mut() else {
            return Ok(None);
        };
        let interval = reader.next(&mut self.probe)?;
        Ok(Some(match self.scope {
            Scope::One(inode) => [(inode, interval)].into(),
            Scope::All { .. } => interval.split(),
        }))
    }

    /// Ephemeral ports ([`Scope::One`]; None otherwise): the range and
    /// every destination, most sockets first, and the sockets left out of
    /// the counts. `listening`: the ports listeners have now.
    pub fn ephemeral(
        &self,
        listening: &std::collections::HashSet<u16>,
    ) -> Result<Option<EphemeralReading>, LiveError> {
        let Some(e) = &self.ephemeral else {
            return Ok(None);
        };
        let mut e = e.lock().unwrap_or_else(|p| p.into_inner());
        let (range, destinations) = e.read(listening)?;
        Ok(Some(EphemeralReading::new(
            range,
            destinations,
            Some(e.untracked()?),
        )))
    }

    /// The process behind one socket (pid, comm), if the programs
    /// recorded it (`--events`).
    pub fn owner_of(&self, cookie: u64) -> Option<(u32, String)> {
        self.probe.conns().owner_of(cookie)
    }

    /// Whether port groups are counted.
    pub fn has_port_groups(&self) -> bool {
        !self.groups.is_empty()
    }

    /// A fresh snapshot of every namespace (SIGHUP).
    pub fn resync_all(&mut self) -> Result<(), LiveError> {
        let all: Vec<(u32, &'static str)> = (self.spaces.keys())
            .map(|i| (*i, REASON_REQUESTED))
            .collect();
        self.resync(&[], &all)
    }

    /// Snapshots namespaces `fresh` (just adopted: their first) and
    /// `again` (each with why) in one pass, and records for each of
    /// `again` what its snapshot changed.
    fn resync(&mut self, fresh: &[u32], again: &[(u32, &'static str)]) -> Result<(), LiveError> {
        if fresh.is_empty() && again.is_empty() {
            return Ok(());
        }
        let before: Vec<(u32, &'static str, Counts)> = again
            .iter()
            .filter_map(|(i, why)| Some((*i, *why, self.counts(*i).ok()?)))
            .collect();
        let dump: Vec<u32> = (fresh.iter().copied())
            .chain(again.iter().map(|a| a.0))
            .collect();
        self.snapshot(&dump)?;
        if again.is_empty() {
            // Only new namespaces: their first snapshot, not a resync.
            self.resyncs -= 1;
        }
        let time = crate::host::now_rfc3339();
        for (inode, reason, before) in before {
            let delta = self.counts(inode)? - before;
            if let Some(space) = self.spaces.get_mut(&inode) {
                space.state.corrected(reason, delta, time.clone());
            }
        }
        Ok(())
    }

    /// A reader of the processes behind the TCP sockets the programs saw
    /// connect, listen or be accepted, for the clients' thread (`list`
    /// asks, and is answered without the loop).
    pub fn owners_reader(&self) -> Result<crate::ebpf::conns::OwnersReader, LiveError> {
        Ok(self.probe.conns().owners_reader()?)
    }

    /// The namespaces counted, by inode.
    pub fn spaces(&self) -> &BTreeMap<u32, Space> {
        &self.spaces
    }

    /// Namespaces found past the bound, by inode.
    pub fn untracked(&self) -> impl ExactSizeIterator<Item = u32> + '_ {
        self.untracked.keys().copied()
    }

    /// Events the kernel could not hand over since start.
    pub fn lost_events(&self) -> Result<u64, LiveError> {
        Ok(self.probe.lost_events()?)
    }

    /// Snapshots taken after the first ones (of every namespace at start,
    /// of each new namespace when it appeared).
    pub fn resyncs(&self) -> u64 {
        self.resyncs
    }
}

/// Every socket of the namespace in `file`, dumped from inside it; None
/// when it cannot be entered or dumped (it went away).
fn dump_in(file: &std::fs::File) -> Option<Vec<DumpedSocket>> {
    run_in(file, dump_here).ok()?.ok()
}

/// Every socket of the calling thread's namespace (sock_diag, not
/// /proc/net: the merge needs the cookies).
fn dump_here() -> std::io::Result<Vec<DumpedSocket>> {
    let mut dump = Vec::new();
    for ct in ConnType::ALL {
        sockdiag::dump(ct, &mut dump)?;
    }
    Ok(dump)
}
