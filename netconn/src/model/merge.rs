//! Merging the kernel's event counts with a socket-table dump.
//!
//! # The rule
//!
//! The kernel counts every TCP state transition, and every UDP socket
//! entering or leaving the tables (as `UDP_UNHASHED <-> UDP_HASHED`), into
//! a matrix selected by an *epoch*. To (re)synchronise, userspace:
//!
//! 1. turns the journal on (each event also goes, with its socket cookie,
//!    through the ring buffer) and waits a grace period;
//! 2. starts epoch E with a zeroed matrix and waits a grace period;
//! 3. dumps the socket tables;
//! 4. turns the journal off and drains it.
//!
//! live = base + effect(matrix of epoch E). The base is the dump, corrected
//! for every socket the journal mentions (the socket cookie is the same value
//! sock_diag reports as `idiag_cookie`): the dump's view of that socket is
//! replaced by its state *at the flip*, i.e. before its first epoch-E event,
//! or, with no epoch-E event, after its last epoch-(E-1) event. Whether the
//! dump saw the socket before, between or after those events no longer
//! matters: the effects telescope, so the socket ends up counted in the state
//! its last event left it in. Journaling from step 1 covers the events of
//! E-1 whose state store or hash change (which come after the tracepoint)
//! could still be in flight when the dump starts. Nothing is counted twice
//! and nothing is missed, provided the journal is complete (no reservation
//! lost; otherwise the caller resyncs).
//!
//! # What a transition means
//!
//! Counted states are those in which a socket sits in the kernel's socket
//! tables (what `/proc/net/tcp` and `ss` list). `CLOSE` is outside: sockets
//! enter the tables from it (`connect`, `listen`) and leave to it. A child
//! socket's first event is `LISTEN -> SYN_RECV`: the clone starts as a copy of
//! its listener (`inet_csk_clone_lock`) but was never a listener, so that
//! `LISTEN` is outside too. `SYN_RECV` is outside for events as well: the
//! handshakes it counts are request sockets, which fire no event and are
//! read from dumps (`sockdiag::socket_kind`); a full socket passes through
//! it only between its clone and ESTABLISHED.

use std::collections::HashMap;

use netconn_common::{STATES, StateEvent, Transitions, UDP_HASHED, transition_slot};

use crate::model::counts::Counts;
use crate::model::socket::{DumpedSocket, SocketKind};
use crate::model::state::ConnType;

pub use netconn_common::{counted_after, counted_before};

/// Adds the effect of `times` occurrences of `old -> new` to `counts`.
pub fn apply_transition(counts: &mut Counts, conn_type: ConnType, old: u8, new: u8, times: i64) {
    if let Some(s) = counted_before(old, new) {
        counts.add(conn_type, s, -times);
    }
    if let Some(s) = counted_after(new) {
        counts.add(conn_type, s, times);
    }
}

/// Per-state deltas of a transition matrix (summed over CPUs).
pub fn matrix_effect(t: &Transitions) -> Counts {
    let mut counts = Counts::default();
    for (index, conn_type) in ConnType::ALL.into_iter().enumerate() {
        for old in 0..STATES {
            for new in 0..STATES {
                let n = t.counts[transition_slot(index, old, new)];
                if n != 0 {
                    apply_transition(&mut counts, conn_type, old as u8, new as u8, n as i64);
                }
            }
        }
    }
    counts
}

/// Per-state deltas as the programs keep them per namespace
/// (`--all-namespaces`: [`netconn_common::NsCounts`], summed over CPUs).
pub fn delta_effect(delta: &[u64; netconn_common::NS_DELTA_SLOTS]) -> Counts {
    let mut counts = Counts::default();
    for (index, conn_type) in ConnType::ALL.into_iter().enumerate() {
        for state in 0..STATES as u8 {
            let n = delta[netconn_common::delta_slot(index, state)] as i64;
            if n != 0 {
                counts.add(conn_type, state, n);
            }
        }
    }
    counts
}

/// Sums per-CPU transition matrices.
pub fn sum_matrices<'a>(per_cpu: impl IntoIterator<Item = &'a Transitions>) -> Transitions {
    let mut sum = Transitions {
        counts: [0; netconn_common::TRANSITION_SLOTS],
    };
    for t in per_cpu {
        for (a, b) in sum.counts.iter_mut().zip(t.counts.iter()) {
            *a = a.wrapping_add(*b);
        }
    }
    sum
}

/// What a merge found, for reporting and for deciding to resync.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MergeStats {
    /// Journal events of the current epoch.
    pub journal_events: u64,
    /// Sockets whose dump entry was corrected.
    pub corrected_sockets: u64,
    /// Sockets whose dumped state is not one their journal passes through:
    /// evidence of a lost event.
    pub inconsistent_sockets: u64,
}

/// The baseline a live count adds the current epoch's matrix to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Baseline {
    /// Full TCP sockets and UDP sockets: the ones events move, and
    /// `sockstat`'s `inuse` counts.
    pub full: Counts,
    /// TCP time-wait and request mini-sockets: no state events.
    pub mini: Counts,
    pub stats: MergeStats,
}

impl Baseline {
    pub fn counts(&self) -> Counts {
        self.full + self.mini
    }
}

/// The state a socket the journal mentions is counted in at the flip to
/// `epoch`: before its first event of `epoch`, or after its last one.
pub fn state_at_flip(events: &[&StateEvent], epoch: u8) -> Option<u8> {
    match events.iter().position(|e| e.epoch == epoch) {
        Some(first) => counted_before(events[first].oldstate, events[first].newstate),
        None => events.last().and_then(|e| counted_after(e.newstate)),
    }
}

/// How a socket in the dump is counted, for comparison with events.
pub fn dumped_state(s: &DumpedSocket) -> Option<u8> {
    match s.kind {
        // Listed means hashed; connected or not, its events say "hashed".
        SocketKind::Full if !s.conn_type.is_tcp() => Some(UDP_HASHED),
        // A dumped socket in CLOSE is between tcp_set_state() and unhash:
        // outside the tables as far as events are concerned.
        SocketKind::Full => counted_after(s.state),
        // Time-wait and request mini-sockets are separate objects: the full
        // socket a time-wait one inherited its cookie from is gone.
        SocketKind::TimeWait | SocketKind::Request => None,
    }
}

/// The journal's events of the merge (epochs `epoch` and `epoch - 1`,
/// namespace `netns`, and what `keep` keeps) per socket, in arrival order:
/// the ring buffer keeps one socket's events in order, as they happen
/// under its lock.
pub fn journal_by_socket(
    journal: &[StateEvent],
    epoch: u8,
    netns: u32,
    keep: impl Fn(&StateEvent) -> bool,
) -> HashMap<u64, Vec<&StateEvent>> {
    let previous = epoch.wrapping_sub(1);
    let mut per_socket: HashMap<u64, Vec<&StateEvent>> = HashMap::new();
    for e in journal
        .iter()
        .filter(|e| (e.epoch == epoch || e.epoch == previous) && e.netns == netns && keep(e))
    {
        per_socket.entry(e.cookie).or_default().push(e);
    }
    per_socket
}

/// Builds the baseline from a dump and the journal (see the module docs).
/// `epoch` is the new epoch E; journal events of other epochs than E and E-1,
/// or of other namespaces, are ignored.
pub fn merge(dump: &[DumpedSocket], journal: &[StateEvent], epoch: u8, netns: u32) -> Baseline {
    let per_socket = journal_by_socket(journal, epoch, netns, |_| true);
    let mut stats = MergeStats {
        journal_events: per_socket.values().map(|v| v.len() as u64).sum(),
        ..MergeStats::default()
    };

    let (mut full, mut mini) = (Counts::default(), Counts::default());
    let mut dumped: HashMap<u64, Option<u8>> = HashMap::with_capacity(per_socket.len());
    for s in dump {
        if s.kind != SocketKind::Full {
            mini.add(s.conn_type, s.state, 1);
        } else if per_socket.contains_key(&s.cookie) {
            // Counted below from its journal; remember what the dump saw.
            dumped.insert(s.cookie, dumped_state(s));
        } else if let Some(state) = dumped_state(s) {
            // Not a transient CLOSE (see dumped_state()).
            full.add(s.conn_type, state, 1);
        }
    }

    for (cookie, events) in &per_socket {
        let Some(conn_type) = ConnType::of(events[0].family, events[0].protocol.into()) else {
            continue;
        };
        let at_flip = state_at_flip(events, epoch);
        if let Some(s) = at_flip {
            full.add(conn_type, s, 1);
        }
        let seen = dumped.get(cookie).copied().flatten();
        if seen != at_flip {
            stats.corrected_sockets += 1;
        }
        // The dump must have seen one of the states the journal passes through.
        let first = events[0];
        let passes_through = std::iter::once(counted_before(first.oldstate, first.newstate))
            .chain(events.iter().map(|e| counted_after(e.newstate)))
            .any(|s| s == seen);
        if !passes_through {
            stats.inconsistent_sockets += 1;
        }
    }
    Baseline { full, mini, stats }
}

#[cfg(test)]
mod tests;
