//! The running daemon's live state, served on a Unix socket readable by
//! root only, so `netconn check` answers from memory instead of dumping the
//! socket tables, and `netconn list` learns the processes behind the
//! sockets the daemon saw being created.
//!
//! Protocol: connect, write one request line; the daemon answers and
//! closes. The loop that owns the counts answers when it is free; when it
//! is busy with an interval's work longer than [`FRESH_WITHIN`], the
//! client gets what the loop last published on the [`Board`] instead, so
//! no answer waits for the node's work. `counts`: one counts record (a JSON line). `owners`: a line
//! `COOKIE PID COMM` per TCP socket whose process the daemon knows. One
//! socket per network namespace, named by its inode; a `watch
//! --all-namespaces` serves `node.sock`, where `counts INODE` asks for one
//! namespace's record (an empty answer: not counted there).

use std::io::{self, Read};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Directory of the daemons' sockets (mode 0700).
pub const SOCKET_DIR: &str = "/run/netconn";

/// The socket of the daemon counting namespace `netns`.
pub fn socket_path(netns: u32) -> PathBuf {
    Path::new(SOCKET_DIR).join(format!("netns-{netns}.sock"))
}

/// The socket of the daemon counting every namespace.
pub fn node_socket_path() -> PathBuf {
    Path::new(SOCKET_DIR).join("node.sock")
}

/// A listening socket, removed again on drop.
#[derive(Debug)]
pub struct Served {
    pub listener: UnixListener,
    path: PathBuf,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Why the daemon does not serve.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("another netconn watch already serves this namespace at {0}")]
    Taken(PathBuf),
    #[error("cannot serve counts at {0}: {1}")]
    Io(PathBuf, #[source] io::Error),
    #[error(
        "refusing to serve counts in {path}: {why} (remove it, or make it a directory owned by uid {uid})"
    )]
    Unsafe {
        path: PathBuf,
        why: String,
        uid: u32,
    },
}

/// Makes sure the socket directory is ours alone: created 0700 if missing;
/// refused if it is a symlink, not a directory, or owned by another user
/// (who could plant a socket that answers with fake counts); tightened to
/// 0700 if it is ours but open to others, and rid of every entry that is
/// not a socket of ours (planted while it was open).
fn own_dir(dir: &Path) -> Result<(), ServeError> {
    use std::os::unix::fs::MetadataExt;
    let io_err = |e| ServeError::Io(dir.to_owned(), e);
    let uid = nix::unistd::geteuid().as_raw();
    let unsafe_dir = |why: String| ServeError::Unsafe {
        path: dir.to_owned(),
        why,
        uid,
    };
    let meta = match std::fs::symlink_metadata(dir) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(io_err)?;
            std::fs::symlink_metadata(dir).map_err(io_err)?
        }
        Err(e) => return Err(io_err(e)),
    };
    if meta.file_type().is_symlink() {
        return Err(unsafe_dir("it is a symlink".into()));
    }
    if !meta.is_dir() {
        return Err(unsafe_dir("it is not a directory".into()));
    }
    if meta.uid() != uid {
        return Err(unsafe_dir(format!("it is owned by uid {}", meta.uid())));
    }
    if meta.mode() & 0o077 != 0 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(io_err)?;
    }
    // What others may have put there while it was open to them (a link
    // from one namespace's socket name to another's, a socket of their
    // own): only sockets of this user stay.
    for entry in std::fs::read_dir(dir).map_err(io_err)?.flatten() {
        use std::os::unix::fs::FileTypeExt;
        let Ok(m) = std::fs::symlink_metadata(entry.path()) else {
            continue;
        };
        if !m.file_type().is_socket() || m.uid() != uid {
            std::fs::remove_file(entry.path()).map_err(io_err)?;
        }
    }
    Ok(())
}

/// Binds the namespace's socket, replacing a stale one (left by a daemon
/// that was killed) but never a live one.
pub fn bind(path: &Path) -> Result<Served, ServeError> {
    let io_err = |e| ServeError::Io(path.to_owned(), e);
    if let Some(dir) = path.parent() {
        own_dir(dir)?;
    }
    if path.exists() {
        if UnixStream::connect(path).is_ok() {
            return Err(ServeError::Taken(path.to_owned()));
        }
        std::fs::remove_file(path).map_err(io_err)?;
    }
    let listener = UnixListener::bind(path).map_err(io_err)?;
    let served = Served {
        listener,
        path: path.to_owned(),
    };
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(io_err)?;
    served.listener.set_nonblocking(true).map_err(io_err)?;
    Ok(served)
}

/// What a client asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    Counts,
    /// The owners of the TCP sockets the daemon saw begin: `owners`, a
    /// line `COOKIE PID COMM` each; `owners aged` (since the socket age),
    /// `COOKIE PID AGE_MS COMM`, which a daemon from before refuses.
    Owners {
        aged: bool,
    },
    /// The alerts raised and not cleared (`check --alerts`): their last
    /// records, one JSON line each (a watch of every namespace: all of
    /// theirs).
    Alerts,
    /// One namespace's counts, from the daemon counting every namespace.
    CountsOf(u32),
    /// The last interval's records as the NDJSON has them (its counts
    /// record or records, with their figures, and conntrack's; a watch of
    /// every namespace: theirs and the host record), for `netconn top`.
    /// Empty until the loop has made an interval since first asked.
    Records,
}

impl Request {
    fn line(self) -> String {
        match self {
            Self::Counts => "counts\n".into(),
            Self::Owners { aged: false } => "owners\n".into(),
            Self::Owners { aged: true } => "owners aged\n".into(),
            Self::Alerts => "alerts\n".into(),
            Self::Records => "records\n".into(),
            Self::CountsOf(netns) => format!("counts {netns}\n"),
        }
    }

    /// The request a line (without its newline) asks for.
    fn parse(line: &[u8]) -> io::Result<Self> {
        let unknown = || io::Error::new(io::ErrorKind::InvalidInput, "unknown request");
        match line {
            b"counts" => Ok(Self::Counts),
            b"owners" => Ok(Self::Owners { aged: false }),
            b"owners aged" => Ok(Self::Owners { aged: true }),
            b"alerts" => Ok(Self::Alerts),
            b"records" => Ok(Self::Records),
            _ => {
                let netns = line.strip_prefix(b"counts ").ok_or_else(unknown)?;
                let netns = std::str::from_utf8(netns).map_err(|_| unknown())?;
                netns.parse().map(Request::CountsOf).map_err(|_| unknown())
            }
        }
    }

    /// Reads a client's request line (at most 32 bytes).
    async fn read(stream: &mut tokio::net::UnixStream) -> io::Result<Self> {
        use tokio::io::AsyncReadExt;
        let mut line = [0u8; 32];
        let mut len = 0;
        while len < line.len() {
            let n = stream.read(&mut line[len..]).await?;
            if n == 0 {
                break;
            }
            len += n;
            if let Some(end) = line[..len].iter().position(|b| *b == b'\n') {
                return Self::parse(&line[..end]);
            }
        }
        Self::parse(&line[..len])
    }
}

/// Most clients served at once; one more is closed at once, unanswered.
pub const MAX_CLIENTS: usize = 16;
/// A client has this long to send its request, and again to take its
/// answer; the loop that owns the counts never waits for a client.
pub const CLIENT_DEADLINE: Duration = Duration::from_secs(1);
/// How long a client waits for the loop's answer from the counts as they
/// are now before it takes the last published ones.
pub const FRESH_WITHIN: Duration = Duration::from_millis(4);

/// A client's request, handed to the loop that owns the counts, which
/// sends the answer back through `reply`.
pub struct Asked {
    pub request: Request,
    pub reply: tokio::sync::oneshot::Sender<Vec<u8>>,
}

/// Whether the loop is busy with an interval's work (rather than waiting
/// for requests, or answering them): a client it has not answered within
/// [`FRESH_WITHIN`] takes what it last published only then; otherwise the
/// loop is computing an answer, and the client waits for it.
#[derive(Clone, Default)]
pub struct Busy(std::sync::Arc<std::sync::atomic::AtomicBool>);

/// Busy until dropped.
pub struct Working<'a>(&'a Busy);

impl Busy {
    /// The loop starts an interval's work, until the guard is dropped.
    pub fn working(&self) -> Working<'_> {
        self.0.store(true, std::sync::atomic::Ordering::Release);
        Working(self)
    }

    pub fn is(&self) -> bool {
        self.0.load(std::sync::atomic::Ordering::Acquire)
    }

    /// `fresh`'s answer, when the loop gives it; when the loop has not
    /// within [`FRESH_WITHIN`] and is busy with an interval's work,
    /// `last()`'s, if it has one.
    pub async fn fresh_or_last<T>(
        &self,
        mut fresh: tokio::sync::oneshot::Receiver<T>,
        last: impl Fn() -> Option<T>,
    ) -> Result<T, tokio::sync::oneshot::error::RecvError> {
        loop {
            match tokio::time::timeout(FRESH_WITHIN, &mut fresh).await {
                Ok(answer) => return answer,
                Err(_) if self.is() => {
                    if let Some(last) = last() {
                        return Ok(last);
                    }
                }
                // The loop is computing an answer (this one, or another's).
                Err(_) => {}
            }
        }
    }
}

impl Drop for Working<'_> {
    fn drop(&mut self) {
        (self.0)
            .0
            .store(false, std::sync::atomic::Ordering::Release);
    }
}

/// What the loop last computed, where the clients' thread reads it: the
/// answers it gives when the loop is busy. The loop publishes each
/// namespace's counts answer as its interval's work reaches it, the
/// alerts at the end of the interval; `owners` are read from the kernel's
/// map by the clients' thread itself.
#[derive(Clone, Default)]
pub struct Board(std::sync::Arc<BoardInner>);

#[derive(Default)]
struct BoardInner {
    busy: Busy,
    answers: std::sync::Mutex<Answers>,
    owners: std::sync::OnceLock<crate::ebpf::conns::OwnersReader>,
    /// A client asked for the records since the loop last looked.
    records_wanted: std::sync::atomic::AtomicBool,
}

#[derive(Default)]
struct Answers {
    /// `counts` (and `counts INODE`) answers, by namespace inode.
    counts: std::collections::HashMap<u32, Vec<u8>>,
    /// The namespace a plain `counts` asks for: the daemon's own.
    own: u32,
    alerts: Vec<u8>,
    records: Vec<u8>,
}

impl Board {
    /// A board for a daemon in namespace `own`, whose loop says when it is
    /// `busy`.
    pub fn new(own: u32, busy: &Busy) -> Self {
        let board = Self(std::sync::Arc::new(BoardInner {
            busy: busy.clone(),
            ..BoardInner::default()
        }));
        board.answers().own = own;
        board
    }

    fn answers(&self) -> std::sync::MutexGuard<'_, Answers> {
        // A panicked publisher left whole values: still answers.
        self.0.answers.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Namespace `netns`'s counts answer, as the loop computed it now.
    pub fn publish_counts(&self, netns: u32, line: Vec<u8>) {
        self.answers().counts.insert(netns, line);
    }

    /// Forgets the namespaces `keep` refuses (gone, untracked).
    pub fn retain(&self, mut keep: impl FnMut(u32) -> bool) {
        self.answers().counts.retain(|netns, _| keep(*netns));
    }

    /// The alerts answer as of the interval that just ended.
    pub fn publish_alerts(&self, lines: Vec<u8>) {
        self.answers().alerts = lines;
    }

    /// Whether a client asked for the records since the last call: the
    /// loop keeps this interval's records for the board only then.
    pub fn records_wanted(&self) -> bool {
        (self.0.records_wanted).swap(false, std::sync::atomic::Ordering::Relaxed)
    }

    /// The interval's records (JSON lines), as the output has them; an
    /// interval that kept none (nobody asked) clears them, so a client
    /// that comes later never gets an old interval's.
    pub fn publish_records(&self, lines: Vec<u8>) {
        self.answers().records = lines;
    }

    /// Where `owners` are read from (eBPF counting only).
    pub fn set_owners(&self, reader: crate::ebpf::conns::OwnersReader) {
        let _ = self.0.owners.set(reader);
    }

    /// The last interval's records (empty until the loop kept some), and
    /// the loop is asked to keep the next interval's.
    pub fn records(&self) -> Vec<u8> {
        (self.0.records_wanted).store(true, std::sync::atomic::Ordering::Relaxed);
        self.answer(Request::Records).unwrap_or_default()
    }

    /// The last published answer to `request` (None: nothing published
    /// yet for it; the client waits for the loop).
    pub fn answer(&self, request: Request) -> Option<Vec<u8>> {
        let answers = self.answers();
        match request {
            Request::Counts => answers.counts.get(&answers.own).cloned(),
            Request::CountsOf(netns) => answers.counts.get(&netns).cloned(),
            Request::Alerts => Some(answers.alerts.clone()),
            Request::Records => Some(answers.records.clone()),
            Request::Owners { .. } => None,
        }
    }

    /// The `owners` answer, from the kernel's map (empty without eBPF).
    fn owners(&self, aged: bool) -> Vec<u8> {
        let Some(reader) = self.0.owners.get() else {
            return Vec::new();
        };
        let mut text = String::new();
        let now = crate::live::conns::monotonic_ns();
        for (cookie, owner) in reader.owners() {
            let (pid, comm) = owner.process();
            let known = Known {
                pid,
                comm,
                age_ms: (owner.start_ns != 0)
                    .then(|| now.saturating_sub(owner.start_ns) / 1_000_000),
            };
            text.push_str(&owner_line(cookie, &known, aged));
        }
        text.into_bytes()
    }
}

/// A listening socket of the runtime, whatever its family.
pub trait Listening: Send + 'static {
    type Stream: Send + 'static;
    fn next(&self) -> impl std::future::Future<Output = io::Result<Self::Stream>> + Send;
}

impl Listening for tokio::net::UnixListener {
    type Stream = tokio::net::UnixStream;
    async fn next(&self) -> io::Result<Self::Stream> {
        self.accept().await.map(|(s, _)| s)
    }
}

impl Listening for tokio::net::TcpListener {
    type Stream = tokio::net::TcpStream;
    async fn next(&self) -> io::Result<Self::Stream> {
        self.accept().await.map(|(s, _)| s)
    }
}

/// What becomes of a client past the bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WhenFull {
    /// Closed at once, unanswered.
    Close,
    /// Left in the kernel's accept queue until a slot frees.
    Wait,
}

/// Accepts clients on a task of its own, each on a task of its own
/// (`client`, which must bound its own time) with a sender for what it
/// asks, at most `max` at once; what they ask comes out of the returned
/// receiver. Inside the runtime.
pub fn accept_clients<L, M, C, F>(
    listener: L,
    max: usize,
    full: WhenFull,
    client: C,
) -> tokio::sync::mpsc::Receiver<M>
where
    L: Listening,
    M: Send + 'static,
    C: Fn(L::Stream, tokio::sync::mpsc::Sender<M>) -> F + Send + 'static,
    F: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel(max);
    let slots = std::sync::Arc::new(tokio::sync::Semaphore::new(max));
    tokio::spawn(async move {
        loop {
            let waited = match full {
                WhenFull::Wait => match slots.clone().acquire_owned().await {
                    Ok(slot) => Some(slot),
                    Err(_) => return,
                },
                WhenFull::Close => None,
            };
            let stream = match listener.next().await {
                Ok(stream) => stream,
                Err(_) => {
                    // Out of descriptors, say: do not spin.
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            };
            let slot = match waited {
                Some(slot) => slot,
                None => match slots.clone().try_acquire_owned() {
                    Ok(slot) => slot,
                    Err(_) => continue,
                },
            };
            let work = client(stream, tx.clone());
            tokio::spawn(async move {
                work.await;
                drop(slot);
            });
        }
    });
    rx
}

/// Accepts clients of the counts socket, each with deadlines, at most
/// [`MAX_CLIENTS`] at once; the requests the loop answers come out of the
/// returned receiver, the others are answered from `board`. Must be called
/// inside the runtime.
pub fn serve_clients(
    listener: &UnixListener,
    board: &Board,
) -> io::Result<tokio::sync::mpsc::Receiver<Asked>> {
    let listener = tokio::net::UnixListener::from_std(listener.try_clone()?)?;
    let board = board.clone();
    Ok(accept_clients(
        listener,
        MAX_CLIENTS,
        WhenFull::Close,
        move |stream, asked| {
            let board = board.clone();
            async move {
                let _ = client(stream, asked, board).await;
            }
        },
    ))
}

/// One client: its request within the deadline; the answer from the loop
/// (or, when the loop is busy with an interval's work, the last published
/// one: see [`Busy::fresh_or_last`]; `owners`: read here, from the
/// kernel's map); written within the deadline.
async fn client(
    mut stream: tokio::net::UnixStream,
    asked: tokio::sync::mpsc::Sender<Asked>,
    board: Board,
) -> io::Result<()> {
    use tokio::io::AsyncWriteExt;
    use tokio::time::timeout;
    let late = |_| io::Error::from(io::ErrorKind::TimedOut);
    let request = timeout(CLIENT_DEADLINE, Request::read(&mut stream))
        .await
        .map_err(late)??;
    let gone = || io::Error::from(io::ErrorKind::BrokenPipe);
    let answer = if let Request::Owners { aged } = request {
        // A walk of the kernel's map: off the runtime's thread.
        tokio::task::spawn_blocking(move || board.owners(aged))
            .await
            .map_err(|_| gone())?
    } else if request == Request::Records {
        board.records()
    } else if request == Request::Alerts {
        // Alerts change only with an interval's work, which publishes
        // them: the loop has nothing newer.
        board.answer(request).unwrap_or_default()
    } else {
        let (reply, answer) = tokio::sync::oneshot::channel();
        match asked.try_send(Asked { request, reply }) {
            Ok(()) => (board.0.busy)
                .fresh_or_last(answer, || board.answer(request))
                .await
                .map_err(|_| gone())?,
            // The loop has as many requests waiting as it takes: this one
            // is answered from the board, if it can be.
            Err(tokio::sync::mpsc::error::TrySendError::Full(_)) => {
                board.answer(request).ok_or_else(gone)?
            }
            Err(tokio::sync::mpsc::error::TrySendError::Closed(_)) => return Err(gone()),
        }
    };
    timeout(CLIENT_DEADLINE, stream.write_all(&answer))
        .await
        .map_err(late)??;
    Ok(())
}

/// Asks the daemon at `path`; its whole answer. Only a daemon running as
/// root (or as the caller) is believed: anyone else on the socket is an
/// impostor (a socket planted where root's daemon was expected).
pub fn query(path: &Path, request: Request, timeout: Duration) -> io::Result<String> {
    let mut stream = UnixStream::connect(path)?;
    let peer = nix::sys::socket::getsockopt(&stream, nix::sys::socket::sockopt::PeerCredentials)
        .map_err(io::Error::from)?;
    let me = nix::unistd::geteuid().as_raw();
    if peer.uid() != 0 && peer.uid() != me {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!(
                "{} is served by uid {}, not root: not believed",
                path.display(),
                peer.uid()
            ),
        ));
    }
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    io::Write::write_all(&mut stream, request.line().as_bytes())?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer)?;
    Ok(answer)
}

/// Appends `record` to `lines` as one JSON line.
pub fn push_line(lines: &mut Vec<u8>, record: &impl serde::Serialize) {
    serde_json::to_writer(&mut *lines, record).expect("records serialize");
    lines.push(b'\n');
}

/// A counts record as a client gets it: one JSON line, timed now.
pub fn counts_line(record: &crate::output::record::CountsRecord<'_>) -> Vec<u8> {
    let mut line =
        serde_json::to_vec(&record.at(&crate::host::now_rfc3339())).expect("records serialize");
    line.push(b'\n');
    line
}

/// One `owners` answer line.
/// What a daemon knows of a socket it saw begin: its process, and how
/// long ago it began (milliseconds; None: not known).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Known {
    pub pid: u32,
    pub comm: String,
    pub age_ms: Option<u64>,
}

/// One line of an `owners` answer: `COOKIE PID COMM`, or `aged`,
/// `COOKIE PID AGE_MS COMM` (`-` for an unknown age).
pub fn owner_line(cookie: u64, k: &Known, aged: bool) -> String {
    // comm may hold spaces: it comes last and runs to the end of the line.
    let comm = k.comm.replace('\n', " ");
    if aged {
        let age = k.age_ms.map_or_else(|| "-".to_owned(), |a| a.to_string());
        format!("{cookie} {} {age} {comm}\n", k.pid)
    } else {
        format!("{cookie} {} {comm}\n", k.pid)
    }
}

/// Parses an `owners` answer (`aged`: to `owners aged`): cookie -> what
/// the daemon knows.
pub fn parse_owners(text: &str, aged: bool) -> std::collections::HashMap<u64, Known> {
    text.lines()
        .filter_map(|l| {
            let mut parts = l.splitn(if aged { 4 } else { 3 }, ' ');
            let cookie = parts.next()?.parse().ok()?;
            let pid = parts.next()?.parse().ok()?;
            let age_ms = match aged {
                false => None,
                true => match parts.next()? {
                    "-" => None,
                    a => Some(a.parse().ok()?),
                },
            };
            let comm = parts.next().unwrap_or("").to_owned();
            Some((cookie, Known { pid, comm, age_ms }))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serves_clients_past_idle_ones_and_refuses_a_second_daemon() {
        let dir = std::env::temp_dir().join(format!("netconn-serve-test-{}", std::process::id()));
        let path = dir.join("netns-1.sock");
        let served = bind(&path).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        // Idle clients (connected, silent) hold slots but never the loop.
        let idle: Vec<_> = (0..MAX_CLIENTS - 1)
            .map(|_| UnixStream::connect(&path).unwrap())
            .collect();
        let client = std::thread::spawn({
            let path = path.clone();
            move || query(&path, Request::Counts, Duration::from_secs(5)).unwrap()
        });
        let answered = rt.block_on(async {
            let mut asked = serve_clients(&served.listener, &Board::default()).unwrap();
            let a = tokio::time::timeout(Duration::from_secs(5), asked.recv())
                .await
                .expect("the querying client is served while idle ones wait")
                .unwrap();
            assert_eq!(a.request, Request::Counts);
            a.reply.send(b"{\"type\":\"counts\"}\n".to_vec()).unwrap();
            // The client task writes the answer.
            tokio::time::sleep(Duration::from_millis(50)).await;
            client.join().unwrap()
        });
        assert_eq!(answered, "{\"type\":\"counts\"}\n");
        drop(idle);
        assert!(matches!(bind(&path), Err(ServeError::Taken(_))));
        drop(served);
        assert!(!path.exists(), "removed on drop");
        // A stale socket file (daemon killed) is replaced.
        let stale = UnixListener::bind(&path).unwrap();
        drop(stale);
        assert!(path.exists());
        let served = bind(&path).unwrap();
        drop(served);
        let _ = std::fs::remove_dir(&dir);
    }

    #[test]
    fn a_busy_loop_leaves_answers_to_the_board() {
        let dir = std::env::temp_dir().join(format!("netconn-board-test-{}", std::process::id()));
        let path = dir.join("netns-7.sock");
        let served = bind(&path).unwrap();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let busy = Busy::default();
        let board = Board::new(7, &busy);
        let ask = |request| {
            let path = path.clone();
            std::thread::spawn(move || query(&path, request, Duration::from_secs(5)).unwrap())
        };
        let _asked = rt.block_on(async {
            let asked = serve_clients(&served.listener, &board).unwrap();
            board.publish_counts(7, b"seven\n".to_vec());
            board.publish_counts(9, b"nine\n".to_vec());
            board.publish_alerts(b"alert\n".to_vec());
            // The loop is not busy with an interval's work: it is
            // computing an answer, and the client waits for it.
            let waiting = ask(Request::Counts);
            tokio::time::sleep(FRESH_WITHIN * 10).await;
            assert!(!waiting.is_finished(), "answered while the loop was free");
            // Busy now: the waiting client gets the board's.
            let working = busy.working();
            assert_eq!(waiting.join().unwrap(), "seven\n");
            drop(working);
            asked
        });
        // The loop is busy and never answers: the board does.
        let _working = busy.working();
        let answered: Vec<String> = [
            Request::Counts,
            Request::CountsOf(9),
            Request::Alerts,
            Request::Owners { aged: true },
        ]
        .into_iter()
        .map(ask)
        .map(|t| t.join().unwrap())
        .collect();
        assert_eq!(answered, ["seven\n", "nine\n", "alert\n", ""]);
        board.retain(|netns| netns != 9);
        assert_eq!(board.answer(Request::CountsOf(9)), None);
        drop(rt);
        drop(served);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_symlinked_or_foreign_directory_is_refused() {
        let base = std::env::temp_dir().join(format!("netconn-serve-dir-{}", std::process::id()));
        std::fs::create_dir_all(&base).unwrap();
        let real = base.join("real");
        std::fs::create_dir_all(&real).unwrap();
        let link = base.join("link");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        let err = bind(&link.join("netns-1.sock")).unwrap_err();
        assert!(err.to_string().contains("symlink"), "{err}");
        // Ours but open to everyone: tightened to 0700.
        std::fs::set_permissions(&real, std::fs::Permissions::from_mode(0o777)).unwrap();
        let served = bind(&real.join("netns-1.sock")).unwrap();
        use std::os::unix::fs::MetadataExt;
        assert_eq!(std::fs::metadata(&real).unwrap().mode() & 0o777, 0o700);
        drop(served);
        std::fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn requests_round_trip_and_junk_is_refused() {
        for r in [
            Request::Counts,
            Request::Owners { aged: false },
            Request::Owners { aged: true },
            Request::Alerts,
            Request::Records,
            Request::CountsOf(4026532177),
        ] {
            let line = r.line();
            assert_eq!(Request::parse(line.trim_end().as_bytes()).unwrap(), r);
            assert!(line.len() <= 32, "fits the request buffer: {line:?}");
        }
        for junk in [
            &b"count"[..],
            b"counts ",
            b"counts x",
            b"counts -1",
            b"counts 99999999999",
        ] {
            assert!(Request::parse(junk).is_err(), "{junk:?}");
        }
    }

    #[test]
    fn owner_lines_round_trip_names_with_spaces() {
        let worker = Known {
            pid: 7,
            comm: "my worker".into(),
            age_ms: Some(1500),
        };
        let sh = Known {
            pid: 8,
            comm: "sh".into(),
            age_ms: None,
        };
        let text = owner_line(42, &worker, true) + &owner_line(43, &sh, true);
        let owners = parse_owners(&(text + "garbage\n1 2 x comm\n"), true);
        assert_eq!(owners[&42], worker);
        assert_eq!(owners[&43], sh);
        assert_eq!(
            owners.len(),
            2,
            "a line with an age that is no number is dropped"
        );
        // The plain answer, as daemons from before the age give it.
        let plain = owner_line(42, &worker, false);
        assert_eq!(plain, "42 7 my worker\n");
        let owners = parse_owners(&plain, false);
        assert_eq!(owners[&42].comm, "my worker");
        assert_eq!(owners[&42].age_ms, None);
    }
}
