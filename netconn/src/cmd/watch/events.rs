//! `--events`: the thread that turns the kernel's connection events into
//! records, and what it learns of the namespaces from the watch's loop
//! (their listeners and addresses, to read directions by, and owners).

use std::collections::HashSet;
use std::net::IpAddr;

use crate::cmd::CmdError;
use crate::live::conns::ConnRecords;
use crate::live::space::Space;
use crate::model::state::ConnType;
use crate::namespaces::owner::Owner;
use crate::namespaces::target::run_in;
use crate::output::writer::{Flow, Writer};

/// Streamed events are applied at least this often, so the ring buffer
/// never fills between records.
pub(super) const DRAIN_EVERY: std::time::Duration = std::time::Duration::from_millis(20);

/// What `--events` reads directions by, in the calling thread's namespace:
/// the ports listening now (for connections older than the watch) and the
/// namespace's addresses (for "local").
fn listeners_and_locals() -> std::io::Result<(Vec<u16>, HashSet<IpAddr>)> {
    let mut listeners = Vec::new();
    for ct in [ConnType::Tcp, ConnType::Tcp6] {
        crate::tables::sockdiag::dump_states(
            ct,
            1 << crate::model::state::TCP_LISTEN,
            &mut listeners,
        )?;
    }
    let locals = crate::tables::addresses::local_addresses()?;
    Ok((listeners.iter().map(|s| s.local_port).collect(), locals))
}

/// What the thread of `--events` learns of the namespaces.
pub(super) enum News {
    /// A namespace to read directions by, with its owner (with
    /// `--all-namespaces`).
    Seen {
        netns: u32,
        listening: Vec<u16>,
        locals: HashSet<IpAddr>,
        owner: Option<Owner>,
    },
    Owner(u32, Owner),
    Gone(u32),
}

impl News {
    /// A namespace's listeners and addresses, read from inside it. Another
    /// namespace that cannot be entered gets none (directions then go by
    /// handshakes only); the calling thread's must be readable.
    pub fn seen(space: &Space) -> Result<Self, CmdError> {
        let (listening, locals) = if space.here() {
            listeners_and_locals().map_err(CmdError::system("cannot prepare --events"))?
        } else {
            space
                .ns
                .open()
                .and_then(|file| run_in(&file, listeners_and_locals).ok()?.ok())
                .unwrap_or_default()
        };
        Ok(Self::Seen {
            netns: space.ns.inode,
            listening,
            locals,
            owner: (!space.here()).then(|| space.owner.clone()),
        })
    }

    fn apply(self, records: &mut ConnRecords) {
        match self {
            Self::Seen {
                netns,
                listening,
                locals,
                owner,
            } => {
                records.know_namespace(netns, listening, locals);
                if let Some(owner) = owner {
                    records.set_owner(netns, owner);
                }
            }
            Self::Owner(netns, owner) => records.set_owner(netns, owner),
            Self::Gone(netns) => records.forget_namespace(netns),
        }
    }
}

/// The thread of `--events`: waits for connection records in the kernel's
/// ring buffer and hands them to the writer, apart from the loop, whose
/// dumps (a resync, the mini-sockets under churn) would otherwise leave
/// the ring undrained long enough to fill. Until `stop`, then once more.
/// What the loop learns of the namespaces (`heard`) is applied before
/// each batch.
pub(super) fn write_conn_records(
    mut ring: crate::ebpf::ConnRing,
    heard: std::sync::mpsc::Receiver<News>,
    host: &str,
    out: &Writer,
    stop: &std::sync::atomic::AtomicBool,
) {
    use std::sync::atomic::Ordering;
    let mut records = ConnRecords::new([], Default::default());
    let mut events = Vec::new();
    loop {
        let last = stop.load(Ordering::Acquire);
        for news in heard.try_iter() {
            news.apply(&mut records);
        }
        events.clear();
        ring.drain(&mut events);
        let now = crate::live::conns::monotonic_ns();
        let mut batch = out.batch();
        for record in records.batch(&events, host, now, |e| {
            crate::live::conns::wall_time(e.ts_ns)
        }) {
            if batch.push(&record) == Flow::Closed {
                return;
            }
        }
        drop(batch);
        if last {
            return;
        }
        ring.wait(DRAIN_EVERY);
    }
}
