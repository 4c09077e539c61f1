//! Where `netconn top` gets its figures: the namespace's running `watch`,
//! or the `watch --all-namespaces` daemon, over their root-only sockets
//! (the records of their last interval); without either, one dump of the
//! socket tables per refresh.

use std::path::PathBuf;
use std::time::Duration;

use crate::live::serve::{Request, node_socket_path, query, socket_path};
use crate::model::counts::Counts;
use crate::model::state::ConnType;

/// How long an answer may take.
const ASK_TIMEOUT: Duration = Duration::from_secs(2);

/// Where the figures come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A running watch's socket; `node`: the watch of every namespace.
    Daemon { path: PathBuf, node: bool },
    /// No daemon: a dump of the tables at each refresh.
    Poll,
}

/// What one refresh brought: the records of an interval (JSON lines) and
/// the active alerts (JSON lines).
#[derive(Debug, Default)]
pub struct Fetched {
    pub records: String,
    pub alerts: String,
}

impl Source {
    /// The daemon that counts namespace `netns` (`all`: the one that
    /// counts every namespace), else polling.
    pub fn find(netns: u32, all: bool) -> Source {
        let candidates = if all {
            vec![(node_socket_path(), true)]
        } else {
            vec![(socket_path(netns), false), (node_socket_path(), true)]
        };
        candidates
            .into_iter()
            .find(|(path, _)| query(path, Request::Alerts, ASK_TIMEOUT).is_ok())
            .map_or(Source::Poll, |(path, node)| Source::Daemon { path, node })
    }

    /// One line for the top of the screen.
    pub fn describe(&self, netns: u32) -> String {
        match self {
            Source::Daemon { node: true, .. } => {
                "eBPF: the watch of every namespace (node.sock)".to_owned()
            }
            Source::Daemon { node: false, .. } => {
                format!("eBPF: the running watch of namespace {netns}")
            }
            Source::Poll => {
                format!(
                    "polling: no watch runs for namespace {netns}; a dump of its tables each refresh"
                )
            }
        }
    }

    /// The figures now: the daemon's last interval, or a dump (`host`
    /// and `netns` name the record made of it).
    pub fn fetch(&self, host: &str, netns: u32) -> Result<Fetched, String> {
        match self {
            Source::Daemon { path, .. } => {
                let ask = |request| {
                    query(path, request, ASK_TIMEOUT).map_err(|e| {
                        format!("the daemon at {} did not answer: {e}", path.display())
                    })
                };
                Ok(Fetched {
                    records: ask(Request::Records)?,
                    alerts: ask(Request::Alerts)?,
                })
            }
            Source::Poll => {
                let mut sockets = Vec::new();
                for ct in ConnType::ALL {
                    crate::tables::snapshot::dump(ct, &mut sockets)
                        .map_err(|e| format!("cannot dump the socket tables: {e}"))?;
                }
                let counts = Counts::from_dump(&sockets);
                let record = crate::output::record::CountsRecord::new(
                    host,
                    crate::output::record::Source::Poll,
                    netns,
                    &counts,
                );
                let mut records = Vec::new();
                crate::live::serve::push_line(
                    &mut records,
                    &record.at(&crate::host::now_rfc3339()),
                );
                Ok(Fetched {
                    records: String::from_utf8_lossy(&records).into_owned(),
                    alerts: String::new(),
                })
            }
        }
    }
}
