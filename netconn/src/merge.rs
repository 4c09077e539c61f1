//! Merging the kernel's event counts with a socket-table dump.
//!
//! # The rule
//!
//! The kernel counts every TCP state transition into a matrix selected by an
//! *epoch*. To (re)synchronise, userspace starts a new epoch with a zeroed
//! matrix and the journal on (each event is also sent, with its socket cookie,
//! through the ring buffer), waits for programs of the old epoch to finish,
//! dumps the socket tables, then turns the journal off. So:
//!
//! * every event of an older epoch happened before the dump began: the dump
//!   reflects it;
//! * every event of the current epoch is in the matrix, and those that could
//!   have raced the dump are in the journal, keyed by cookie (the same value
//!   sock_diag reports as `idiag_cookie`).
//!
//! live = base + effect(matrix of the current epoch), where base is the dump
//! with one correction: for each socket with journal events in the current
//! epoch, the dump's observation of it is replaced by the state it had
//! *before its first event of the epoch*. Whether the dump saw that socket
//! before, between or after those events no longer matters: the events'
//! effects telescope, so the socket ends up counted in the state its last
//! event left it in. Nothing is counted twice and nothing is missed, provided
//! the journal is complete (`lost == 0`; otherwise the caller resyncs).
//!
//! # What a transition means
//!
//! Counted states are those in which a socket sits in the kernel's socket
//! tables (what `/proc/net/tcp` and `ss` list). `CLOSE` is outside: sockets
//! enter the tables from it (`connect`, `listen`) and leave to it. A child
//! socket's first event is `LISTEN -> SYN_RECV`: the clone starts as a copy of
//! its listener (`inet_csk_clone_lock`) but was never a listener, so that
//! `LISTEN` is outside too.

use std::collections::HashMap;

use netconn_common::{FAMILIES, STATES, StateEvent, Transitions, transition_slot};

use crate::counts::Counts;
use crate::sockdiag::DumpedSocket;
use crate::state::{ConnType, SocketKind, TCP_CLOSE, TCP_LISTEN, TCP_NEW_SYN_RECV, TCP_SYN_RECV};

/// The state a socket was counted in before `old -> new`, if any.
pub fn counted_before(old: u8, new: u8) -> Option<u8> {
    match (old, new) {
        (TCP_LISTEN, TCP_SYN_RECV) => None,
        (old, _) => counted_after(old),
    }
}

/// The state a socket is counted in after entering `new`, if any.
pub fn counted_after(new: u8) -> Option<u8> {
    match new {
        0 | TCP_CLOSE => None,
        s if s >= TCP_NEW_SYN_RECV => None,
        s => Some(s),
    }
}

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
    for (fam, conn_type) in [ConnType::Tcp, ConnType::Tcp6]
        .into_iter()
        .enumerate()
        .take(FAMILIES)
    {
        for old in 0..STATES {
            for new in 0..STATES {
                let n = t.counts[transition_slot(fam, old, new)];
                if n != 0 {
                    apply_transition(&mut counts, conn_type, old as u8, new as u8, n as i64);
                }
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
    pub counts: Counts,
    pub stats: MergeStats,
}

/// How a full TCP socket in the dump is counted, for comparison with events.
fn dumped_tcp_state(s: &DumpedSocket) -> Option<u8> {
    match s.kind {
        // A dumped socket in CLOSE is between tcp_set_state() and unhash:
        // outside the tables as far as events are concerned.
        SocketKind::Full => counted_after(s.state),
        // Time-wait and request mini-sockets are separate objects: the full
        // socket a time-wait one inherited its cookie from is gone.
        SocketKind::TimeWait | SocketKind::Request => None,
    }
}

/// Builds the baseline from a dump and the journal (see the module docs).
/// Journal events of other epochs or other namespaces are ignored.
pub fn merge(dump: &[DumpedSocket], journal: &[StateEvent], epoch: u32, netns: u32) -> Baseline {
    // Events of this epoch, per socket, in arrival order. The ring buffer
    // keeps one socket's events in order: they happen under its lock.
    let mut per_socket: HashMap<u64, Vec<&StateEvent>> = HashMap::new();
    let mut stats = MergeStats::default();
    for e in journal.iter().filter(|e| e.epoch == epoch && e.netns == netns) {
        stats.journal_events += 1;
        per_socket.entry(e.cookie).or_default().push(e);
    }

    let mut counts = Counts::default();
    let mut dumped: HashMap<u64, Option<u8>> = HashMap::with_capacity(per_socket.len());
    for s in dump {
        let full_tcp = s.conn_type.is_tcp() && s.kind == SocketKind::Full;
        if full_tcp && per_socket.contains_key(&s.cookie) {
            // Counted below from its journal; remember what the dump saw.
            dumped.insert(s.cookie, dumped_tcp_state(s));
            continue;
        }
        if full_tcp && dumped_tcp_state(s).is_none() {
            continue; // transient CLOSE, see dumped_tcp_state()
        }
        counts.add(s.conn_type, s.state, 1);
    }

    for (cookie, events) in &per_socket {
        let first = events[0];
        let Some(conn_type) = ConnType::tcp_for_family(first.family) else {
            continue;
        };
        let before = counted_before(first.oldstate, first.newstate);
        if let Some(s) = before {
            counts.add(conn_type, s, 1);
        }
        let seen = dumped.get(cookie).copied().flatten();
        if seen != before {
            stats.corrected_sockets += 1;
        }
        let passes_through = std::iter::once(before)
            .chain(events.iter().map(|e| counted_after(e.newstate)))
            .any(|s| s == seen);
        if !passes_through {
            stats.inconsistent_sockets += 1;
        }
    }
    Baseline { counts, stats }
}

#[cfg(test)]
mod tests;
