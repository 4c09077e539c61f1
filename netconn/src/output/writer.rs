//! The daemon's output: records go through a bounded queue to a thread of
//! their own, so a reader that stalls (a stuck log shipper, `| less` left
//! open, a full disk) never delays the interval loop, signals, the counts
//! socket or the ring-buffer drain.
//!
//! Promises:
//! - a record is a whole line or nothing: to a pipe a line is written only
//!   once the pipe has room for all of it (so a stop while the reader
//!   stalls never leaves half a line), and a failed write to a file is
//!   truncated back to where the line began;
//! - what cannot be written (queue full, disk full, I/O error) is counted
//!   ([`Writer::dropped`], reported as `output_dropped` in counts records)
//!   and each episode is one line on stderr, when it starts and when it
//!   ends;
//! - a closed reader (EPIPE, e.g. `| head`) ends the watch, as before;
//! - [`Writer::reopen`] (SIGUSR1) reopens `--output` for log rotation.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::{AsRawFd, BorrowedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Bytes of records waiting at most: past it new records are dropped and
/// counted. A counts record is a few hundred bytes to a few hundred KiB
/// (with many port groups), so this holds minutes of a stalled reader.
pub const QUEUE_BYTES: usize = 16 << 20;

/// `NETCONN_OUTPUT_QUEUE_BYTES`: the queue's bound in bytes, 4096 to 1 GiB
/// (tests shrink it to make it overflow); anything else is an error.
pub fn queue_bytes() -> Result<usize, String> {
    let Ok(v) = std::env::var("NETCONN_OUTPUT_QUEUE_BYTES") else {
        return Ok(QUEUE_BYTES);
    };
    v.parse::<usize>()
        .ok()
        .filter(|b| (4096..=1 << 30).contains(b))
        .ok_or_else(|| {
            format!(
                "NETCONN_OUTPUT_QUEUE_BYTES: expected a number of bytes from 4096 to 1073741824 (1 GiB), got {v:?}"
            )
        })
}

/// How often a writer waiting for pipe room looks again.
const ROOM_POLL: Duration = Duration::from_millis(2);

/// Where the lines go.
enum Target {
    Stdout,
    File(PathBuf),
}

enum Msg {
    /// Whole lines, and how many: written with one write.
    Lines(Vec<u8>, u64),
    Reopen,
}

/// A batch holds at most this many bytes (one line may be longer): it
/// must fit an empty pipe (64 KiB by default) so that it is written
/// whole.
const BATCH_BYTES: usize = 16 * 1024;

/// State shared by the loop and the writer thread.
#[derive(Default)]
struct Shared {
    /// Bytes queued and not yet written.
    queued: AtomicUsize,
    /// Records dropped since start (queue full or write failed).
    dropped: AtomicU64,
    /// The reader closed the output (EPIPE): the watch ends.
    closed: AtomicBool,
    /// The thread has written or dropped everything it was given.
    done: Mutex<bool>,
    done_cv: Condvar,
    /// A dropping episode is under way (for one stderr line per episode).
    dropping: AtomicBool,
}

pub struct Writer {
    tx: Option<Sender<Msg>>,
    /// See [`queue_bytes`].
    limit: usize,
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
    log: crate::output::log::Log,
}

/// What the loop does after handing over a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    Go,
    /// The reader went away: stop, exit 0.
    Closed,
}

/// Why the output cannot be opened (a usage error: exit 2).
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("cannot open --output {path}: {source}")]
    File {
        path: String,
        #[source]
        source: io::Error,
    },
    #[error("stdout is closed; nothing could be written (use --output FILE)")]
    StdoutClosed,
    #[error("{0}")]
    Queue(String),
}

/// Opens `path` for appending (created if missing, mode 0640), not
/// through a planted symlink (see [`crate::output::sink::refuse_planted_link`]).
fn open_append(path: &Path) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    crate::output::sink::refuse_planted_link(path)?;
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o640)
        .open(path)
}

impl Writer {
    /// Starts the writer thread for stdout or `path`.
    pub fn start(path: Option<&Path>, log: crate::output::log::Log) -> Result<Self, OpenError> {
        let limit = queue_bytes().map_err(OpenError::Queue)?;
        let (target, out) = match path {
            None => {
                if crate::host::stdout_was_closed() {
                    return Err(OpenError::StdoutClosed);
                }
                (Target::Stdout, Out::Stdout)
            }
            Some(p) => {
                let file = open_append(p).map_err(|source| OpenError::File {
                    path: p.display().to_string(),
                    source,
                })?;
                (Target::File(p.to_owned()), Out::File(file))
            }
        };
        let (tx, rx) = channel();
        let shared = Arc::new(Shared::default());
        let thread = std::thread::Builder::new()
            .name("netconn-output".into())
            .spawn({
                let shared = shared.clone();
                let log = log.clone();
                move || run(rx, target, out, &shared, &log)
            })
            .expect("spawning the output thread");
        Ok(Self {
            tx: Some(tx),
            limit,
            shared,
            thread: Some(thread),
            log,
        })
    }

    /// Queues one record (a JSON line is added its newline). Never blocks.
    pub fn send(&self, record: &impl serde::Serialize) -> Flow {
        self.queue(serde_json::to_vec(record).expect("records always serialize"))
    }

    /// Queues one line of text (line protocol), as [`Writer::send`].
    pub fn send_text(&self, text: &str) -> Flow {
        self.queue(text.as_bytes().to_vec())
    }

    fn queue(&self, mut line: Vec<u8>) -> Flow {
        if self.shared.closed.load(Ordering::Acquire) {
            return Flow::Closed;
        }
        line.push(b'\n');
        if !self.admit(line.len()) {
            return Flow::Go;
        }
        if let Some(tx) = &self.tx {
            let _ = tx.send(Msg::Lines(line, 1));
        }
        Flow::Go
    }

    /// Counts a line of `len` bytes as queued, if the queue has room for
    /// it; else counts it dropped.
    fn admit(&self, len: usize) -> bool {
        let queued = self.shared.queued.fetch_add(len, Ordering::AcqRel);
        if queued + len > self.limit {
            self.shared.queued.fetch_sub(len, Ordering::AcqRel);
            drop_one(&self.shared, &self.log, "the output is not being read");
            return false;
        }
        true
    }

    /// A batch of records queued as one message and written with one
    /// write: what a drain of the connection ring gives, where a message
    /// and a write per record cost more than the records themselves.
    pub fn batch(&self) -> Batch<'_> {
        Batch {
            writer: self,
            buf: Vec::new(),
            lines: 0,
        }
    }

    /// Records dropped since start.
    pub fn dropped(&self) -> u64 {
        self.shared.dropped.load(Ordering::Acquire)
    }

    /// Reopens `--output` (after the records queued before).
    pub fn reopen(&self) {
        if let Some(tx) = &self.tx {
            let _ = tx.send(Msg::Reopen);
        }
    }

    /// Lets the thread write what is queued, for at most `patience`; what
    /// it has not written by then is lost with the process (never half a
    /// line: see the module doc).
    pub fn finish(mut self, patience: Duration) {
        self.tx = None;
        let deadline = Instant::now() + patience;
        let mut done = self.shared.done.lock().expect("writer state");
        while !*done {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                let queued = self.shared.queued.load(Ordering::Acquire);
                self.log.line(format!(
                    "netconn: the output is not being read; {queued} bytes of records left unwritten at exit"
                ));
                return;
            }
            done = self
                .shared
                .done_cv
                .wait_timeout(done, left)
                .expect("writer state")
                .0;
        }
        drop(done);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Records for one write (see [`Writer::batch`]); each is held against
/// the queue's limit as [`Writer::send`] holds one. Queued when full and
/// when flushed or dropped.
pub struct Batch<'w> {
    writer: &'w Writer,
    buf: Vec<u8>,
    lines: u64,
}

impl Batch<'_> {
    pub fn push(&mut self, record: &impl serde::Serialize) -> Flow {
        if self.writer.shared.closed.load(Ordering::Acquire) {
            return Flow::Closed;
        }
        let start = self.buf.len();
        serde_json::to_writer(&mut self.buf, record).expect("records always serialize");
        self.buf.push(b'\n');
        if !self.writer.admit(self.buf.len() - start) {
            self.buf.truncate(start);
            return Flow::Go;
        }
        self.lines += 1;
        if self.buf.len() >= BATCH_BYTES {
            self.flush();
        }
        Flow::Go
    }

    /// Queues what the batch holds.
    pub fn flush(&mut self) {
        if self.lines == 0 {
            return;
        }
        let buf = std::mem::take(&mut self.buf);
        let lines = std::mem::take(&mut self.lines);
        if let Some(tx) = &self.writer.tx {
            let _ = tx.send(Msg::Lines(buf, lines));
        }
    }
}

impl Drop for Batch<'_> {
    fn drop(&mut self) {
        self.flush();
    }
}

/// Counts a dropped record; the first of an episode says so on stderr.
fn drop_one(shared: &Shared, log: &crate::output::log::Log, why: &str) {
    drop_some(shared, log, why, 1);
}

/// Counts `n` dropped records, as [`drop_one`].
fn drop_some(shared: &Shared, log: &crate::output::log::Log, why: &str, n: u64) {
    shared.dropped.fetch_add(n, Ordering::AcqRel);
    if !shared.dropping.swap(true, Ordering::AcqRel) {
        log.line(format!(
            "netconn: {why}; dropping records (counted in output_dropped) until it recovers"
        ));
    }
}

/// The end of an episode, once a record got through again.
fn recovered(shared: &Shared, log: &crate::output::log::Log) {
    if shared.dropping.swap(false, Ordering::AcqRel) {
        log.line(format!(
            "netconn: output recovered; {} records dropped since start",
            shared.dropped.load(Ordering::Acquire)
        ));
    }
}

enum Out {
    Stdout,
    File(File),
}

impl Out {
    fn fd(&self) -> BorrowedFd<'_> {
        use std::os::fd::AsFd;
        match self {
            // SAFETY: fd 1 stays open for the life of the process (Rust's
            // runtime puts /dev/null there if it was closed).
            Self::Stdout => unsafe { BorrowedFd::borrow_raw(1) },
            Self::File(f) => f.as_fd(),
        }
    }
}

/// The writer thread: lines in order until the loop hangs up.
fn run(
    rx: Receiver<Msg>,
    target: Target,
    mut out: Out,
    shared: &Shared,
    log: &crate::output::log::Log,
) {
    let mut kind = kind_of(&out);
    while let Ok(msg) = rx.recv() {
        match msg {
            Msg::Reopen => {
                if let Target::File(path) = &target {
                    match open_append(path) {
                        Ok(f) => {
                            out = Out::File(f);
                            kind = kind_of(&out);
                        }
                        Err(e) => log.line(format!(
                            "netconn: cannot reopen --output {}: {e}; still writing to the old file",
                            path.display()
                        )),
                    }
                }
            }
            Msg::Lines(lines, n) => {
                let result = write_line(&mut out, kind, &lines);
                shared.queued.fetch_sub(lines.len(), Ordering::AcqRel);
                match result {
                    Ok(()) => recovered(shared, log),
                    Err(e) if e.kind() == io::ErrorKind::BrokenPipe => {
                        shared.closed.store(true, Ordering::Release);
                        break;
                    }
                    Err(e) => drop_some(shared, log, &format!("cannot write the output ({e})"), n),
                }
            }
        }
    }
    *shared.done.lock().expect("writer state") = true;
    shared.done_cv.notify_all();
}

/// The file type (`S_IFIFO`, `S_IFREG`...) behind the output, taken when it
/// is opened: not per line, which at full churn is 100k+ lines a second.
fn kind_of(out: &Out) -> libc::mode_t {
    nix::sys::stat::fstat(out.fd()).map_or(0, |st| st.st_mode & libc::S_IFMT)
}

/// Writes whole lines (one, or a batch's) or nothing. To a pipe, a batch
/// goes in pieces of whole lines that each fit the pipe (a pipe may be
/// as small as a page), each once the pipe has room for it: a reader
/// never sees half a line.
fn write_line(out: &mut Out, kind: libc::mode_t, line: &[u8]) -> io::Result<()> {
    if kind == libc::S_IFIFO {
        use nix::fcntl::{FcntlArg, fcntl};
        let size = fcntl(out.fd(), FcntlArg::F_GETPIPE_SZ).map_or(usize::MAX, |s| s as usize);
        for piece in whole_line_pieces(line, size) {
            wait_for_pipe_room(out.fd(), piece.len())?;
            match out {
                Out::Stdout => io::stdout().lock().write_all(piece)?,
                Out::File(f) => f.write_all(piece)?,
            }
        }
        return Ok(());
    }
    let fd = out.fd();
    // Where the line starts in a regular file, to take a partial one back.
    let start = match kind {
        libc::S_IFREG => nix::sys::stat::fstat(fd).map_err(io::Error::from)?.st_size,
        _ => 0,
    };
    let result = match out {
        Out::Stdout => io::stdout().lock().write_all(line),
        Out::File(f) => f.write_all(line),
    };
    if result.is_err() && kind == libc::S_IFREG {
        // ENOSPC or EIO after part of the line: take the part back, so
        // the file holds whole records only.
        let _ = nix::unistd::ftruncate(out.fd(), start);
    }
    result
}

/// `lines` (whole lines) cut at line ends into pieces of at most `max`
/// bytes; a line longer than `max` is a piece of its own.
fn whole_line_pieces(lines: &[u8], max: usize) -> Vec<&[u8]> {
    let mut pieces = Vec::new();
    let mut start = 0;
    let mut end = 0;
    for line in lines.split_inclusive(|b| *b == b'\n') {
        if end > start && end - start + line.len() > max {
            pieces.push(&lines[start..end]);
            start = end;
        }
        end += line.len();
    }
    if end > start {
        pieces.push(&lines[start..end]);
    }
    pieces
}

/// Waits until the pipe behind `fd` has room for `len` bytes, so the write
/// that follows copies the whole line at once. A line larger than the
/// pipe grows the pipe if it can (up to /proc/sys/fs/pipe-max-size), else
/// it is written as it comes.
fn wait_for_pipe_room(fd: BorrowedFd<'_>, len: usize) -> io::Result<()> {
    use nix::fcntl::{FcntlArg, fcntl};
    let Ok(mut size) = fcntl(fd, FcntlArg::F_GETPIPE_SZ) else {
        return Ok(());
    };
    if len > size as usize {
        match fcntl(fd, FcntlArg::F_SETPIPE_SZ(len as libc::c_int)) {
            Ok(grown) if grown >= len as i32 => size = grown,
            _ => return Ok(()),
        }
    }
    loop {
        let mut unread: libc::c_int = 0;
        // SAFETY: FIONREAD writes one int to the pointer given.
        if unsafe { fionread(fd.as_raw_fd(), &mut unread) }.is_err() {
            return Ok(());
        }
        if (size - unread) as usize >= len {
            return Ok(());
        }
        if reader_gone(fd) {
            return Err(io::ErrorKind::BrokenPipe.into());
        }
        std::thread::sleep(ROOM_POLL);
    }
}

// The bytes waiting in a pipe.
nix::ioctl_read_bad!(fionread, libc::FIONREAD, libc::c_int);

/// The pipe's read end is closed (POLLERR on the write end).
fn reader_gone(fd: BorrowedFd<'_>) -> bool {
    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    let mut fds = [PollFd::new(fd, PollFlags::POLLOUT)];
    poll(&mut fds, PollTimeout::ZERO).is_ok()
        && fds[0]
            .revents()
            .is_some_and(|r| r.contains(PollFlags::POLLERR))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(path: &Path) -> Vec<String> {
        std::fs::read_to_string(path)
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    #[test]
    fn writes_lines_in_order_and_reopens() {
        let dir = std::env::temp_dir().join(format!("netconn-writer-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("out.ndjson");
        let log = crate::output::log::Log::stderr();
        let w = Writer::start(Some(&path), log).unwrap();
        for i in 0..3 {
            assert_eq!(w.send(&serde_json::json!({ "n": i })), Flow::Go);
        }
        // Rotation: the file is moved away, then reopened.
        let rotated = dir.join("out.ndjson.1");
        // Wait until the three are written before moving the file.
        let t0 = Instant::now();
        while lines(&path).len() < 3 && t0.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(5));
        }
        std::fs::rename(&path, &rotated).unwrap();
        w.reopen();
        w.send(&serde_json::json!({ "n": 3 }));
        w.finish(Duration::from_secs(5));
        assert_eq!(lines(&rotated), [r#"{"n":0}"#, r#"{"n":1}"#, r#"{"n":2}"#]);
        assert_eq!(lines(&path), [r#"{"n":3}"#]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_batch_goes_to_a_pipe_in_pieces_of_whole_lines() {
        let lines = b"aaaa\nbb\ncccccccc\nd\n";
        let pieces = whole_line_pieces(lines, 8);
        assert_eq!(
            pieces,
            [&b"aaaa\nbb\n"[..], &b"cccccccc\n"[..], &b"d\n"[..]],
            "the long line alone, the others packed up to the size"
        );
        assert_eq!(whole_line_pieces(lines, 1 << 20), [&lines[..]]);
        assert!(whole_line_pieces(b"", 8).is_empty());
    }

    #[test]
    fn a_batch_writes_whole_lines_in_order_and_drops_past_the_limit() {
        let dir = std::env::temp_dir().join(format!("netconn-writer-b-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("out.ndjson");
        let w = Writer::start(Some(&path), crate::output::log::Log::stderr()).unwrap();
        // Several batches' worth: flushed as they fill, the rest on drop.
        let n = 3 * BATCH_BYTES / 20;
        {
            let mut batch = w.batch();
            for i in 0..n {
                assert_eq!(batch.push(&serde_json::json!({ "n": i })), Flow::Go);
            }
        }
        w.send(&serde_json::json!({ "after": true }));
        // Past the queue's limit a record is dropped, not queued.
        {
            let mut batch = w.batch();
            let big = serde_json::json!({ "pad": "x".repeat(QUEUE_BYTES) });
            assert_eq!(batch.push(&big), Flow::Go);
        }
        assert_eq!(w.dropped(), 1);
        w.finish(Duration::from_secs(5));
        let got = lines(&path);
        let want: Vec<String> = (0..n)
            .map(|i| format!(r#"{{"n":{i}}}"#))
            .chain([r#"{"after":true}"#.to_owned()])
            .collect();
        assert_eq!(got, want);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_full_queue_drops_and_counts_without_blocking() {
        // A pipe nobody reads: the thread stalls on the first line that
        // does not fit, the queue fills, and send() keeps returning at once.
        let dir = std::env::temp_dir().join(format!("netconn-writer-q-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let fifo = dir.join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        // Hold the read end open without reading.
        let reader = std::thread::spawn({
            let fifo = fifo.clone();
            move || File::open(fifo).unwrap()
        });
        let writer = Writer::start(Some(&fifo), crate::output::log::Log::stderr()).unwrap();
        let held = reader.join().unwrap();
        let big = serde_json::json!({ "pad": "x".repeat(1 << 20) });
        let t0 = Instant::now();
        let n = QUEUE_BYTES / (1 << 20) + 8;
        for _ in 0..n {
            assert_eq!(writer.send(&big), Flow::Go);
        }
        assert!(t0.elapsed() < Duration::from_secs(2), "send blocked");
        assert!(writer.dropped() >= 7, "dropped {}", writer.dropped());
        writer.finish(Duration::from_millis(10));
        drop(held);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
