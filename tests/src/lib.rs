//! Helpers for netconn's root integration tests.
//!
//! Each test makes its own network namespace ([`Netns`], removed on drop,
//! also when the test panics), builds sockets inside it from a thread that
//! joined it ([`Netns::run`]), runs the real `netconn` binary in it, and
//! compares with the kernel's truth read by [`truth`], a parser independent
//! of netconn's own.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::Value;

pub mod cgroups;
pub mod churn;
pub mod mix;

/// The netconn binary under test (`cargo xtask test` sets NETCONN_BIN).
pub fn netconn_bin() -> PathBuf {
    if let Ok(p) = std::env::var("NETCONN_BIN") {
        return PathBuf::from(p);
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let release = root.join("target/release/netconn");
    assert!(
        release.exists(),
        "no netconn binary: run the tests with `cargo xtask test`, or set NETCONN_BIN"
    );
    release
}

/// What `bpftool -j ARGS` prints, parsed: the kernel's own view of the
/// loaded programs and maps (run times, recursion misses, map contents).
pub fn bpftool_json(args: &[&str]) -> Result<Value, String> {
    let out = Command::new("bpftool")
        .arg("-j")
        .args(args)
        .output()
        .map_err(|e| format!("bpftool: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "bpftool {args:?}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    serde_json::from_slice(&out.stdout).map_err(|e| format!("bpftool {args:?}: not JSON ({e})"))
}

/// Panics unless running as root: these tests need netns and BPF.
pub fn require_root() {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid, 0,
        "integration tests need root (netns, BPF): run `cargo xtask test` as root"
    );
}

static NEXT: AtomicU32 = AtomicU32::new(0);
static SWEEP: std::sync::Once = std::sync::Once::new();

/// Namespaces a test (or a benchmark) made are removed on drop, but not
/// when its process was killed (a hung test stopped by hand or a
/// timeout): remove those of processes that no longer exist, once per
/// test binary.
fn sweep_dead_namespaces() {
    let Ok(entries) = std::fs::read_dir("/var/run/netns") else {
        return;
    };
    for name in entries
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
    {
        // netconn-test-PID-N or netconn-bench-TAG-PID-N (Netns::try_named),
        // nothing else.
        let mut parts = name.rsplitn(3, '-');
        let (Some(n), Some(pid), Some(prefix)) = (parts.next(), parts.next(), parts.next()) else {
            continue;
        };
        let ours = prefix == "netconn-test" || prefix.starts_with("netconn-bench-");
        let (Ok(pid), Ok(_)) = (pid.parse::<i32>(), n.parse::<u32>()) else {
            continue;
        };
        if !ours {
            continue;
        }
        // SAFETY: signal 0 only checks that the process exists.
        let alive = unsafe { libc::kill(pid, 0) } == 0
            || std::io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH);
        if !alive {
            let _ = Command::new("ip").args(["netns", "del", &name]).status();
        }
    }
}

/// A file for one test in the temporary directory (a configuration, a
/// DataKit file), removed when dropped, also when the test fails.
pub struct TempFile(PathBuf);

impl TempFile {
    /// `netconn-NAME-PID-N` holding `text`.
    pub fn new(name: &str, text: &str) -> Self {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("netconn-{name}-{}-{n}", std::process::id()));
        std::fs::write(&path, text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        Self(path)
    }

    pub fn path(&self) -> &std::path::Path {
        &self.0
    }

    /// The path as an argument.
    pub fn arg(&self) -> &str {
        self.0.to_str().expect("a UTF-8 temporary path")
    }

    /// Replaces its text.
    pub fn write(&self, text: &str) {
        std::fs::write(&self.0, text).unwrap_or_else(|e| panic!("{}: {e}", self.0.display()));
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// A network namespace made for one test, with `lo` up.
pub struct Netns {
    pub name: String,
}

impl Netns {
    /// A namespace for one test (`netconn-test-PID-N`); panics when it
    /// cannot be made.
    pub fn new() -> Self {
        require_root();
        SWEEP.call_once(sweep_dead_namespaces);
        Self::try_named("test").unwrap_or_else(|e| panic!("{e}"))
    }

    /// A namespace `netconn-KIND-PID-N` with `lo` up, removed on drop (the
    /// benchmarks' too).
    pub fn try_named(kind: &str) -> Result<Self, String> {
        let name = format!(
            "netconn-{kind}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        try_run("ip", &["netns", "add", &name])?;
        let ns = Self { name };
        try_run("ip", &["-n", &ns.name, "link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// `ip netns exec NAME PROGRAM`, for the caller to add arguments to.
    pub fn cmd(&self, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name, program]);
        c
    }

    /// The namespace's inode number (what netconn's records call `netns`).
    pub fn inode(&self) -> u64 {
        std::fs::metadata(format!("/run/netns/{}", self.name))
            .map(|m| std::os::unix::fs::MetadataExt::ino(&m))
            .unwrap()
    }

    /// Runs `f` on a new thread that has joined this namespace; sockets it
    /// creates live in the namespace.
    pub fn run<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        let path = format!("/var/run/netns/{}", self.name);
        std::thread::spawn(move || {
            enter(&path);
            f()
        })
        .join()
        .expect("namespace thread panicked")
    }

    /// A thread living in the namespace that runs jobs sent to it, so that
    /// sockets built by one job stay open for the next.
    pub fn worker(&self) -> Worker {
        let path = format!("/var/run/netns/{}", self.name);
        let (tx, rx) = mpsc::channel::<Box<dyn FnOnce() + Send>>();
        let handle = std::thread::spawn(move || {
            enter(&path);
            for job in rx {
                job();
            }
        });
        Worker {
            tx: Some(tx),
            handle: Some(handle),
        }
    }

    /// One of the namespace's own counters: `prefix` is `Tcp:` (in
    /// `/proc/net/snmp`) or `TcpExt:` (in `/proc/net/netstat`).
    pub fn counter(&self, file: &str, prefix: &str, key: &str) -> u64 {
        let text = self.run_cmd("cat", &[file]);
        let mut lines = text.lines().filter(|l| l.starts_with(prefix));
        let (header, values) = (lines.next().unwrap(), lines.next().unwrap());
        let at = header
            .split_whitespace()
            .position(|h| h == key)
            .unwrap_or_else(|| panic!("no {key} in {file}"));
        values.split_whitespace().nth(at).unwrap().parse().unwrap()
    }

    /// Runs `cmd ARGS` in the namespace and returns its stdout; panics if
    /// it fails.
    pub fn run_cmd(&self, cmd: &str, args: &[&str]) -> String {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", &self.name, cmd]).args(args);
        String::from_utf8(stdout_of(command)).expect("utf-8 output")
    }

    /// Runs `ARGS...` in the namespace (`ip netns exec`); panics if it
    /// fails.
    pub fn exec_ok(&self, args: &[&str]) {
        let mut all = vec!["netns", "exec", &self.name];
        all.extend_from_slice(args);
        run_ok("ip", &all);
    }

    /// `netconn ARGS...` in the namespace as nobody, with no capabilities
    /// (setpriv drops them inside `ip netns exec`).
    pub fn netconn_unprivileged(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args([
            "netns",
            "exec",
            &self.name,
            "setpriv",
            "--reuid=65534",
            "--regid=65534",
        ])
        .args(["--clear-groups", "--inh-caps=-all", "--bounding-set=-all"])
        .arg(netconn_bin())
        .args(args);
        cmd
    }

    /// `ip netns exec NAME netconn ARGS...`
    pub fn netconn(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name])
            .arg(netconn_bin())
            .args(args);
        cmd
    }
}

/// Runs a command (e.g. from [`Netns::netconn`]) and returns its stdout;
/// panics with the command and its stderr if it fails.
pub fn stdout_of(mut cmd: Command) -> Vec<u8> {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

impl Default for Netns {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

fn enter(path: &str) {
    let f = std::fs::File::open(path).unwrap_or_else(|e| panic!("open {path}: {e}"));
    // SAFETY: setns on a valid namespace fd; affects only this thread.
    let rc = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
    assert_eq!(rc, 0, "setns {path}: {}", std::io::Error::last_os_error());
}

/// See [`Netns::worker`].
pub struct Worker {
    tx: Option<mpsc::Sender<Box<dyn FnOnce() + Send>>>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl Worker {
    /// A worker in the test's own namespace (the host's).
    pub fn here() -> Self {
        let (tx, rx) = mpsc::channel::<Box<dyn FnOnce() + Send>>();
        let handle = std::thread::spawn(move || {
            for job in rx {
                job();
            }
        });
        Self {
            tx: Some(tx),
            handle: Some(handle),
        }
    }

    /// Runs `f` in the namespace thread and returns its result.
    pub fn exec<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        let (tx, rx) = mpsc::channel();
        self.tx
            .as_ref()
            .unwrap()
            .send(Box::new(move || {
                let _ = tx.send(f());
            }))
            .expect("worker gone");
        rx.recv().expect("worker job panicked")
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        drop(self.tx.take());
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

pub fn run_ok(cmd: &str, args: &[&str]) {
    try_run(cmd, args).unwrap_or_else(|e| panic!("{e}"));
}

/// Runs `cmd ARGS`; an error says which command failed and how.
pub fn try_run(cmd: &str, args: &[&str]) -> Result<(), String> {
    let status = Command::new(cmd)
        .args(args)
        .status()
        .map_err(|e| format!("{cmd}: {e}"))?;
    match status.success() {
        true => Ok(()),
        false => Err(format!("{cmd} {args:?} failed: {status}")),
    }
}

/// Counts keyed by (conn-type, state name), zeros left out.
pub type Table = BTreeMap<(String, String), i64>;

/// State names by the hex code /proc/net/tcp prints (include/net/tcp_states.h).
const PROC_STATES: [(&str, &str); 11] = [
    ("01", "ESTABLISHED"),
    ("02", "SYN_SENT"),
    ("03", "SYN_RECV"),
    ("04", "FIN_WAIT1"),
    ("05", "FIN_WAIT2"),
    ("06", "TIME_WAIT"),
    ("07", "CLOSE"),
    ("08", "CLOSE_WAIT"),
    ("09", "LAST_ACK"),
    ("0A", "LISTEN"),
    ("0B", "CLOSING"),
];

/// The state name of a /proc/net/tcp state column ("0A": LISTEN).
pub fn proc_state_name(code: &str) -> &'static str {
    PROC_STATES
        .iter()
        .find(|(c, _)| *c == code)
        .unwrap_or_else(|| panic!("unknown state {code}"))
        .1
}

/// Joins `a` and `b` with a veth pair, 10.`net`.0.1/24 in `a` and
/// 10.`net`.0.2/24 in `b`: traffic between them is neither loopback nor
/// local to either.
pub fn veth(a: &Netns, b: &Netns, net: u8) {
    run_ok(
        "ip",
        &[
            "-n", &a.name, "link", "add", "nc0", "type", "veth", "peer", "name", "nc1", "netns",
            &b.name,
        ],
    );
    for (ns, dev, host) in [(a, "nc0", 1), (b, "nc1", 2)] {
        let addr = format!("10.{net}.0.{host}/24");
        run_ok("ip", &["-n", &ns.name, "addr", "add", &addr, "dev", dev]);
        run_ok("ip", &["-n", &ns.name, "link", "set", dev, "up"]);
    }
}

/// What `ss -tin` shows of one connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SsInfo {
    /// Smoothed RTT, microseconds (ss prints milliseconds).
    pub rtt_us: u64,
    /// The smallest RTT the kernel measured (`minrtt`), microseconds.
    pub min_rtt_us: u64,
    pub bytes_acked: u64,
    /// Total retransmitted segments (the second number of `retrans:a/b`).
    pub retrans: u64,
}

/// `ss -tinH ARGS` in `ns`: "local remote" -> figures.
pub fn ss_tcp_info(ns: &Netns, args: &[&str]) -> BTreeMap<String, SsInfo> {
    let out = ns.run_cmd("ss", &[&["-tinH"], args].concat());
    let mut info = BTreeMap::new();
    let mut lines = out.lines();
    while let (Some(head), Some(detail)) = (lines.next(), lines.next()) {
        let cols: Vec<&str> = head.split_whitespace().collect();
        let field = |key: &str| {
            detail
                .split_whitespace()
                .find_map(|w| w.strip_prefix(key))
                .map(|v| v.split('/').map(str::to_owned).collect::<Vec<_>>())
        };
        let ms = |key| field(key).map(|v| (v[0].parse::<f64>().unwrap() * 1000.0).round() as u64);
        let rtt = ms("rtt:");
        info.insert(
            format!("{} {}", cols[3], cols[4]),
            SsInfo {
                rtt_us: rtt.unwrap_or(0),
                min_rtt_us: ms("minrtt:").unwrap_or(0),
                bytes_acked: field("bytes_acked:").map_or(0, |v| v[0].parse().unwrap()),
                retrans: field("retrans:").map_or(0, |v| v[1].parse().unwrap()),
            },
        );
    }
    info
}

/// The kernel's truth for the namespace of `ns`, from /proc/net.
pub fn truth(ns: &Netns) -> Table {
    ns.run(|| {
        let mut t = Table::new();
        for ct in ["tcp", "tcp6", "udp", "udp6"] {
            let path = format!("/proc/thread-self/net/{ct}");
            let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
            for line in text.lines().skip(1) {
                let st = line.split_whitespace().nth(3).expect("state column");
                let name = if ct.starts_with("udp") {
                    "NONE"
                } else {
                    proc_state_name(st)
                };
                *t.entry((ct.to_owned(), name.to_owned())).or_default() += 1;
            }
        }
        t
    })
}

/// The `connections` of a counts record as a [`Table`].
pub fn table_of(record: &Value) -> Table {
    let mut t = Table::new();
    let conns = record["connections"]
        .as_object()
        .unwrap_or_else(|| panic!("no connections in {record}"));
    for (ct, states) in conns {
        for (state, n) in states.as_object().expect("states object") {
            let n = n.as_i64().expect("integer count");
            if n != 0 {
                t.insert((ct.clone(), state.clone()), n);
            }
        }
    }
    t
}

/// Keeps only the given states.
pub fn only(table: &Table, states: &[&str]) -> Table {
    table
        .iter()
        .filter(|((_, s), _)| states.contains(&s.as_str()))
        .map(|(k, v)| (k.clone(), *v))
        .collect()
}

/// A listener on a free loopback port of the calling thread's namespace
/// and `n` connections to it, both ends held: (listener, clients,
/// accepted).
pub fn pairs(
    n: usize,
) -> (
    std::net::TcpListener,
    Vec<std::net::TcpStream>,
    Vec<std::net::TcpStream>,
) {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let clients = (0..n)
        .map(|_| std::net::TcpStream::connect(addr).unwrap())
        .collect();
    let accepted = (0..n).map(|_| l.accept().unwrap().0).collect();
    (l, clients, accepted)
}

/// Spawns `cmd` with its stdout piped and waits for its first line, which
/// must be `ready` (a script says so once its sockets or mounts are
/// made).
pub fn spawn_ready(cmd: &mut Command) -> Child {
    let mut child = cmd.stdout(Stdio::piped()).spawn().unwrap();
    let mut ready = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut ready)
        .unwrap();
    assert_eq!(ready.trim(), "ready", "{cmd:?}");
    child
}

/// A running `netconn watch`, killed on drop.
pub struct Watch {
    pub child: Child,
    lines: mpsc::Receiver<String>,
    /// Every record read so far, of any type.
    log: Vec<Value>,
}

impl Watch {
    /// Starts `netconn watch ARGS` in `ns` and waits for its first record
    /// (which means the program is attached and the snapshot merged).
    pub fn start(ns: &Netns, args: &[&str]) -> (Self, Value) {
        Self::start_cmd(ns.netconn(&[&["watch"], args].concat()))
    }

    /// Like [`Watch::start`], for a command built by the caller.
    pub fn start_cmd(cmd: Command) -> (Self, Value) {
        let mut w = Self::start_raw(cmd);
        let first = w.next_record(Duration::from_secs(60));
        (w, first)
    }

    /// Starts a command built by the caller without waiting for anything
    /// (its lines may not be netconn's records: `--format line`).
    pub fn start_raw(mut cmd: Command) -> Self {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn netconn watch");
        let stdout: ChildStdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Self {
            child,
            lines,
            log: Vec::new(),
        }
    }

    /// The next line as written; panics after `timeout`.
    pub fn next_line(&mut self, timeout: Duration) -> String {
        match self.lines.recv_timeout(timeout) {
            Ok(line) => line,
            Err(_) => {
                let _ = self.child.kill();
                let out = self.child.wait_with_output_stderr();
                panic!("no line from netconn watch within {timeout:?}; stderr: {out}");
            }
        }
    }

    /// The next counts record, parsed; panics after `timeout` (a liveness
    /// bound, not a speed assertion).
    pub fn next_record(&mut self, timeout: Duration) -> Value {
        self.next_of("counts", timeout)
    }

    /// The next record of type `kind` ("counts", "conntrack", "alert").
    pub fn next_of(&mut self, kind: &str, timeout: Duration) -> Value {
        loop {
            let record = self.next_any(timeout);
            if record["type"] == kind {
                return record;
            }
        }
    }

    /// The next record of any type, or None after `timeout`.
    pub fn try_next(&mut self, timeout: Duration) -> Option<Value> {
        let line = self.lines.recv_timeout(timeout).ok()?;
        let record: Value =
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        self.log.push(record.clone());
        Some(record)
    }

    fn next_any(&mut self, timeout: Duration) -> Value {
        let line = self.next_line(timeout);
        let record: Value =
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        self.log.push(record.clone());
        record
    }

    /// A record computed after this call: drops what is queued, and the one
    /// that may already be on its way through the pipe.
    /// The next record of any type.
    pub fn next_any_record(&mut self, timeout: Duration) -> Value {
        self.next_any(timeout)
    }

    /// `watch --all-namespaces`: the records of one interval, up to and
    /// without its closing "host" record, and that record.
    pub fn next_round(&mut self, timeout: Duration) -> (Vec<Value>, Value) {
        let mut round = Vec::new();
        loop {
            let record = self.next_any(timeout);
            if record["type"] == "host" {
                return (round, record);
            }
            round.push(record);
        }
    }

    pub fn fresh_record(&mut self) -> Value {
        while self.lines.try_recv().is_ok() {}
        let _in_flight = self.next_record(Duration::from_secs(60));
        self.next_record(Duration::from_secs(60))
    }

    /// `watch --all-namespaces`: the counts record of namespace `inode`
    /// from a round computed after this call.
    pub fn fresh_record_of(&mut self, inode: u64) -> Value {
        while self.lines.try_recv().is_ok() {}
        let _in_flight = self.next_round(Duration::from_secs(60));
        loop {
            let record = self.next_record(Duration::from_secs(60));
            if record["netns"] == inode {
                return record;
            }
        }
    }

    /// Sends `signal` to netconn (`ip netns exec` execs it: same pid).
    pub fn signal(&self, signal: i32) {
        // SAFETY: kill on our own child's pid.
        unsafe { libc::kill(self.child.id() as i32, signal) };
    }

    /// Sends `signal` and returns the records written after it and the exit
    /// status.
    pub fn stop(self, signal: i32) -> (Vec<Value>, std::process::ExitStatus) {
        let (rest, status) = self.stop_with_rest(signal);
        (
            rest.into_iter().filter(|r| r["type"] == "counts").collect(),
            status,
        )
    }

    /// Sends `signal` and returns every record netconn wrote since it
    /// started, of any type, and the exit status.
    pub fn stop_all(mut self, signal: i32) -> (Vec<Value>, std::process::ExitStatus) {
        let mut log = std::mem::take(&mut self.log);
        let (rest, status) = self.stop_with_rest(signal);
        log.extend(rest);
        (log, status)
    }

    fn stop_with_rest(mut self, signal: i32) -> (Vec<Value>, std::process::ExitStatus) {
        // `ip netns exec` execs netconn, so the child pid is netconn's.
        // SAFETY: kill on our own child's pid.
        unsafe { libc::kill(self.child.id() as i32, signal) };
        let status = self.child.wait().expect("wait netconn");
        let mut rest = Vec::new();
        while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(5)) {
            rest.push(serde_json::from_str(&line).expect("JSON record"));
        }
        (rest, status)
    }
}

trait StderrText {
    fn wait_with_output_stderr(&mut self) -> String;
}

impl StderrText for Child {
    fn wait_with_output_stderr(&mut self) -> String {
        use std::io::Read;
        let _ = self.wait();
        let mut s = String::new();
        if let Some(mut e) = self.stderr.take() {
            let _ = e.read_to_string(&mut s);
        }
        s
    }
}

impl Drop for Watch {
    /// SIGTERM first, so netconn detaches and removes its counts socket as
    /// a user's Ctrl-C would; SIGKILL only if it does not exit in 5 s.
    fn drop(&mut self) {
        // SAFETY: kill on our own child's pid.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        for _ in 0..250 {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Drops, in `ns`, the SYN-ACKs that come back in (`matching`: more of
/// the rule, e.g. `tcp sport 80`): request sockets stay (dropping them on
/// output would free them at once). The rule goes with the namespace.
pub fn drop_synacks(ns: &Netns, matching: &str) {
    ns.exec_ok(&["nft", "add", "table", "inet", "netconn_synack"]);
    ns.exec_ok(&[
        "nft",
        "add",
        "chain",
        "inet",
        "netconn_synack",
        "in",
        "{ type filter hook input priority 0; }",
    ]);
    let rule = format!("{matching} tcp flags & (syn | ack) == syn | ack drop");
    ns.exec_ok(&["nft", "add", "rule", "inet", "netconn_synack", "in", &rule]);
}

/// `count` raw SYNs (hping3, 2 ms apart) from `source` to 127.0.0.1:`port`
/// in `ns`.
pub fn raw_syns(ns: &Netns, port: u16, count: u32, source: &str) {
    let (port, count) = (port.to_string(), count.to_string());
    ns.exec_ok(&[
        "hping3",
        "-q",
        "-I",
        "lo",
        "-S",
        "-p",
        &port,
        "-c",
        &count,
        "-i",
        "u2000",
        "-a",
        source,
        "127.0.0.1",
    ]);
}

/// Makes conntrack track the namespace's flows.
pub fn track(ns: &Netns) {
    let nft = |args: &[&str]| {
        let mut all = vec!["netns", "exec", &ns.name, "nft"];
        all.extend_from_slice(args);
        run_ok("ip", &all);
    };
    nft(&["add", "table", "inet", "netconn_test"]);
    nft(&[
        "add",
        "chain",
        "inet",
        "netconn_test",
        "input",
        "{ type filter hook input priority 0 ; }",
    ]);
    nft(&[
        "add",
        "rule",
        "inet",
        "netconn_test",
        "input",
        "ct",
        "state",
        "established,related",
        "accept",
    ]);
}

/// The namespace's conntrack table count, as the kernel reports it.
pub fn conntrack_count(ns: &Netns) -> u64 {
    ns.run(|| {
        std::fs::read_to_string("/proc/sys/net/netfilter/nf_conntrack_count")
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    })
}

/// Where a test keeps what it saw on a screen (a terminal's capture, a
/// browser's screenshot) for people to look at: `target/test-screenshots/NAME`.
pub fn screenshot_path(name: &str) -> PathBuf {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/test-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}
