//! Lines for people on stderr, written by a thread of their own: a stderr
//! that nobody reads (a stuck pipe) must not stop the daemon either. Lines
//! beyond a small backlog are dropped; they are diagnostics, not records.

use std::io::Write;
use std::sync::mpsc::{SyncSender, sync_channel};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// Lines waiting at most.
const BACKLOG: usize = 64;

#[derive(Clone)]
pub struct Log {
    tx: SyncSender<String>,
    /// Lines queued and not yet written.
    pending: Arc<(Mutex<usize>, Condvar)>,
}

impl Log {
    /// Starts the thread that writes to stderr.
    pub fn stderr() -> Self {
        let (tx, rx) = sync_channel::<String>(BACKLOG);
        let pending = Arc::new((Mutex::new(0usize), Condvar::new()));
        let written = pending.clone();
        std::thread::Builder::new()
            .name("netconn-log".into())
            .spawn(move || {
                for line in rx {
                    let _ = writeln!(std::io::stderr().lock(), "{line}");
                    let (count, cv) = &*written;
                    *count.lock().expect("log state") -= 1;
                    cv.notify_all();
                }
            })
            .expect("spawning the log thread");
        Self { tx, pending }
    }

    /// Queues one line; never blocks.
    pub fn line(&self, line: String) {
        let (count, _) = &*self.pending;
        let mut n = count.lock().expect("log state");
        if self.tx.try_send(line).is_ok() {
            *n += 1;
        }
    }

    /// Waits until the queued lines are written, for at most `patience`
    /// (before exit: a stderr nobody reads does not hold the exit up).
    pub fn flush(&self, patience: Duration) {
        let deadline = Instant::now() + patience;
        let (count, cv) = &*self.pending;
        let mut n = count.lock().expect("log state");
        while *n > 0 {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return;
            }
            n = cv.wait_timeout(n, left).expect("log state").0;
        }
    }
}
