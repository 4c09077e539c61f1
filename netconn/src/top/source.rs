//! Where `netconn top` gets its figures: the namespace's running `watch`,
//! or the `watch --all-namespaces` daemon, over their root-only sockets
//! (the records of their last interval); without either, one dump of the
//! socket tables per refresh.

use std::path::PathBuf;
use std::time::Duration;

use crate::live::serve::{Request, node_socket_path, query, socket_path};

/// How long an answer may take.
const ASK_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a watch of top's own has to load and serve.
const START_WITHIN: Duration = Duration::from_secs(15);

/// Where the figures come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A running watch's socket; `node`: the watch of every namespace.
    Daemon { path: PathBuf, node: bool },
    /// The socket of a watch top started for itself ([`OwnWatch`]).
    Own { path: PathBuf },
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
    pub fn find(netns: u32, all: bool) -> Self {
        let candidates = if all {
            vec![(node_socket_path(), true)]
        } else {
            vec![(socket_path(netns), false), (node_socket_path(), true)]
        };
        candidates
            .into_iter()
            .find(|(path, _)| query(path, Request::Alerts, ASK_TIMEOUT).is_ok())
            .map_or(Self::Poll, |(path, node)| Self::Daemon { path, node })
    }

    /// One line for the top of the screen.
    pub fn describe(&self, netns: u32) -> String {
        match self {
            Self::Daemon { node: true, .. } => {
                "eBPF: the watch of every namespace (node.sock)".to_owned()
            }
            Self::Daemon { node: false, .. } => {
                format!("eBPF: the running watch of namespace {netns}")
            }
            Self::Own { .. } => format!(
                "a watch of its own: none ran for namespace {netns}, so top started one (it stops with top)"
            ),
            Self::Poll => {
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
            Self::Daemon { path, .. } | Self::Own { path } => {
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
            Self::Poll => {
                // The counts of one dump, as `snapshot` takes them.
                let counts = crate::tables::snapshot::counts()
                    .map_err(|e| format!("cannot dump the socket tables: {e}"))?;
                let record = crate::output::record::CountsRecord::new(
                    host,
                    crate::output::record::Source::Poll,
                    netns,
                    &counts,
                );
                let records = crate::live::serve::counts_line(&record);
                Ok(Fetched {
                    records: String::from_utf8_lossy(&records).into_owned(),
                    alerts: String::new(),
                })
            }
        }
    }
}

/// A `netconn watch --interval 1s` of top's namespace that top started
/// because none ran: it counts from the kernel's events (or polls, when
/// eBPF is not to be had) and serves its socket like any watch, and is
/// stopped with top (SIGTERM from its drop, or from the kernel when top
/// dies).
pub struct OwnWatch(std::process::Child);

impl OwnWatch {
    /// Starts it and waits until it answers; None when it cannot serve
    /// (not root: `/run/netconn` is root's) or does not in time.
    pub fn start(netns: u32) -> Option<(Self, Source)> {
        use std::os::unix::process::CommandExt;
        use std::process::Stdio;
        let exe = std::env::current_exe().ok()?;
        let mut cmd = std::process::Command::new(exe);
        cmd.args(["watch", "--interval", "1s"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // SAFETY: prctl is async-signal-safe; nothing else runs before exec.
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut own = Self(cmd.spawn().ok()?);
        let path = socket_path(netns);
        let t0 = std::time::Instant::now();
        while t0.elapsed() < START_WITHIN {
            if query(&path, Request::Alerts, ASK_TIMEOUT).is_ok() {
                return Some((own, Source::Own { path }));
            }
            if !matches!(own.0.try_wait(), Ok(None)) {
                return None;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        None
    }
}

impl Drop for OwnWatch {
    /// SIGTERM (it detaches its programs and removes its socket), a
    /// SIGKILL if it has not gone within 5 s.
    fn drop(&mut self) {
        let pid = self.0.id() as libc::pid_t;
        // SAFETY: a signal to our own child, not yet reaped.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let t0 = std::time::Instant::now();
        while t0.elapsed() < Duration::from_secs(5) {
            if !matches!(self.0.try_wait(), Ok(None)) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
