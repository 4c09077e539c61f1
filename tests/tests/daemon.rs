//! `netconn watch` as a daemon: no reader, client or signal can freeze it,
//! nobody can feed `check` fake counts, and every figure comes back to the
//! kernel's truth at rest.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use netconn_integration::{Netns, Watch, mix, netconn_bin, only, stdout_of, table_of, truth};
use serde_json::Value;

fn socket_path(ns: &Netns) -> String {
    format!("/run/netconn/netns-{}.sock", ns.inode())
}

/// Runs a bash script in `ns` and in a mount namespace of its own, so that
/// what it mounts (a tmpfs on /run or /mnt) never reaches the host; its
/// stdout.
fn in_private_mounts(ns: &Netns, script: &str) -> String {
    let mut c = Command::new("ip");
    c.args(["netns", "exec", &ns.name, "unshare", "-m"]).args([
        "--propagation",
        "private",
        "bash",
        "-c",
        script,
    ]);
    String::from_utf8(stdout_of(c)).unwrap()
}

/// The lines a script printed after its `== NAME` line, up to the next
/// such line.
fn section(out: &str, name: &str) -> String {
    out.split(&format!("== {name}\n"))
        .nth(1)
        .unwrap_or_else(|| panic!("no {name} section: {out}"))
        .split("\n== ")
        .next()
        .unwrap()
        .to_owned()
}

/// Asks the daemon at `path` for its counts, as `check` does.
fn ask_counts(path: &str) -> Option<Value> {
    let mut s = UnixStream::connect(path).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    s.write_all(b"counts\n").ok()?;
    let mut answer = String::new();
    s.read_to_string(&mut answer).ok()?;
    serde_json::from_str(answer.trim()).ok()
}

fn parse_lines(text: &str) -> Vec<Value> {
    text.lines()
        .map(|l| {
            serde_json::from_str(l).unwrap_or_else(|e| panic!("not a whole record ({e}): {l}"))
        })
        .collect()
}

/// A reader that stops reading: SIGTERM is still honoured at once (the
/// records queued for the stuck reader are given up, never half a line),
/// and while it stalls the interval loop keeps its cadence.
#[test]
fn a_stalled_reader_neither_freezes_the_loop_nor_delays_a_stop() {
    let ns = Netns::new();
    let mut child = ns
        .netconn(&["watch", "--interval", "20ms"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    // The pipe (64 KiB) fills within a second; nothing is read for 2 s.
    std::thread::sleep(Duration::from_secs(2));
    // SAFETY: kill on our own child's pid (`ip netns exec` execs netconn).
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let t0 = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "SIGTERM not honoured while the reader stalls"
        );
        std::thread::sleep(Duration::from_millis(10));
    };
    let waited = t0.elapsed();
    assert!(status.success(), "{status:?}");
    let mut text = String::new();
    stdout.read_to_string(&mut text).unwrap();
    let records = parse_lines(&text);
    // Cadence: the records' own times, 20 ms apart while the pipe was
    // full; a loop blocked on the write would leave a gap of over a second.
    let stamps: Vec<f64> = records
        .iter()
        .filter(|r| r["type"] == "counts")
        .map(|r| seconds_of(r["time"].as_str().unwrap()))
        .collect();
    assert!(stamps.len() > 20, "{} counts records", stamps.len());
    let gap = stamps.windows(2).map(|w| w[1] - w[0]).fold(0.0, f64::max);
    assert!(gap < 0.5, "a {gap:.3} s gap between records");
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert!(stderr.contains("left unwritten at exit"), "{stderr}");
    eprintln!("stopped {waited:?} after SIGTERM");
}

/// Seconds of the day of an RFC 3339 time (`...T12:19:19.179Z`).
fn seconds_of(time: &str) -> f64 {
    let clock = time.split('T').nth(1).unwrap().trim_end_matches('Z');
    let mut parts = clock.split(':');
    let h: f64 = parts.next().unwrap().parse().unwrap();
    let m: f64 = parts.next().unwrap().parse().unwrap();
    let s: f64 = parts.next().unwrap().parse().unwrap();
    h * 3600.0 + m * 60.0 + s
}

/// When the queue for a stalled reader is full, records are dropped, and
/// every one dropped is counted: what arrives plus `output_dropped` is
/// what was made, each line whole.
#[test]
fn records_the_output_cannot_take_are_counted() {
    let ns = Netns::new();
    let mut cmd = ns.netconn(&["watch", "--interval", "20ms", "--count", "150"]);
    cmd.env("NETCONN_OUTPUT_QUEUE_BYTES", "4096");
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    let mut text = String::new();
    stdout.read_to_string(&mut text).unwrap();
    assert!(child.wait().unwrap().success());
    let records = parse_lines(&text);
    let counts: Vec<&Value> = records.iter().filter(|r| r["type"] == "counts").collect();
    let dropped = counts.last().unwrap()["output_dropped"].as_u64().unwrap();
    assert!(
        dropped > 0,
        "nothing dropped: the test did not stall the output"
    );
    // 150 counts records, each followed by a conntrack record.
    assert_eq!(records.len() as u64 + dropped, 300, "lost without a count");
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert!(stderr.contains("dropping records"), "{stderr}");
    assert!(stderr.contains("output recovered"), "{stderr}");
}

/// Clients of the counts socket that connect and say nothing, or dribble
/// a byte now and then, hold no record back; their slots are freed by the
/// deadline and a real client is answered afterwards.
#[test]
fn slow_and_idle_clients_do_not_stop_the_records() {
    let ns = Netns::new();
    let path = socket_path(&ns);
    let (mut watch, _) = Watch::start(&ns, &["--interval", "100ms"]);
    let idle: Vec<UnixStream> = (0..20)
        .filter_map(|_| UnixStream::connect(&path).ok())
        .collect();
    assert!(!idle.is_empty());
    let slow = std::thread::spawn({
        let path = path.clone();
        move || {
            let mut s = UnixStream::connect(&path).unwrap();
            for _ in 0..5 {
                if s.write_all(b"c").is_err() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(900));
            }
        }
    });
    let worker = ns.worker();
    let held = worker.exec(|| mix::build(31));
    let t0 = Instant::now();
    let mut last = Instant::now();
    let mut gap = Duration::ZERO;
    while t0.elapsed() < Duration::from_secs(4) {
        let r = watch.next_record(Duration::from_secs(30));
        gap = gap.max(last.elapsed());
        last = Instant::now();
        assert_eq!(r["lost_events"], 0, "{r}");
    }
    assert!(gap < Duration::from_secs(1), "records stopped for {gap:?}");
    slow.join().unwrap();
    drop(idle);
    let answer = ask_counts(&path).expect("the daemon answers once idle clients are gone");
    assert_eq!(table_of(&answer), truth(&ns));
    drop(held);
}

/// A second watch of a namespace says who serves `check`, and serves it
/// itself once the first one stops.
#[test]
fn a_second_watch_takes_over_serving_when_the_first_stops() {
    let ns = Netns::new();
    let path = socket_path(&ns);
    let (first, _) = Watch::start(&ns, &["--interval", "200ms"]);
    let (mut second, _) = Watch::start(&ns, &["--interval", "200ms"]);
    let (_, status) = first.stop(libc::SIGTERM);
    assert!(status.success());
    let t0 = Instant::now();
    let answer = loop {
        if let Some(a) = ask_counts(&path) {
            break a;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "nobody serves {path}"
        );
        second.next_record(Duration::from_secs(30));
    };
    assert_eq!(answer["source"], "ebpf");
    assert_eq!(table_of(&answer), truth(&ns));
}

/// SIGTERM while the programs are still loading: exit 0, everything
/// detached, and the record there is to report.
#[test]
fn sigterm_during_start_up_still_stops_cleanly() {
    let ns = Netns::new();
    let child = ns
        .netconn(&["watch", "--interval", "10s"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(80));
    // SAFETY: kill on our own child's pid.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let records = parse_lines(&String::from_utf8(out.stdout).unwrap());
    assert!(
        records.iter().any(|r| r["type"] == "counts"),
        "no record: {records:?}"
    );
}

/// Request sockets whose handshake never completes expire on their own
/// timer, which moves no counter netconn watches: the live counts still
/// come back to the truth, at rest, within two intervals.
#[test]
fn expired_request_sockets_leave_the_counts_at_rest() {
    let ns = Netns::new();
    ns.run(|| std::fs::write("/proc/sys/net/ipv4/tcp_synack_retries", "1").unwrap());
    let worker = ns.worker();
    let (listener, port) = worker.exec(|| {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        (l, port)
    });
    // The handshake's last ACK never arrives (dropped on the input side,
    // which keeps the request sockets, see ../shared/platform.md).
    let rule = format!("tcp dport {port} tcp flags == ack drop");
    ns.run_cmd("nft", &["add", "table", "inet", "netconn_test"]);
    ns.run_cmd(
        "nft",
        &[
            "add",
            "chain",
            "inet",
            "netconn_test",
            "input",
            "{ type filter hook input priority 0; }",
        ],
    );
    ns.run_cmd(
        "nft",
        &["add", "rule", "inet", "netconn_test", "input", &rule],
    );
    let (mut watch, _) = Watch::start(&ns, &["--interval", "300ms"]);
    let clients = worker.exec(move || {
        (0..3)
            .map(|_| std::net::TcpStream::connect(("127.0.0.1", port)).unwrap())
            .collect::<Vec<_>>()
    });
    let record = watch.fresh_record();
    let syn_recv = |t: &netconn_integration::Table| only(t, &["SYN_RECV"]).values().sum::<i64>();
    assert_eq!(syn_recv(&truth(&ns)), 3, "the test holds 3 request sockets");
    assert_eq!(syn_recv(&table_of(&record)), 3, "{record}");
    // They expire after one SYN-ACK retransmission (about 3 s).
    let t0 = Instant::now();
    while syn_recv(&truth(&ns)) > 0 {
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "request sockets never expired"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // Two intervals later, at rest.
    let record = watch.fresh_record();
    assert_eq!(table_of(&record), truth(&ns), "{record}");
    drop((clients, listener));
}

/// `check` believes only a daemon running as root: a socket planted in a
/// `/run/netconn` that another user owns is refused by `watch` and not
/// believed by `check`; a symlinked `/run/netconn` is refused. Run in a
/// private mount namespace with its own /run, so the host's is untouched.
#[test]
fn a_foreign_run_directory_and_a_fake_server_are_not_believed() {
    let ns = Netns::new();
    let worker = ns.worker();
    let held = worker.exec(|| netconn_integration::pairs(10));
    let established =
        only(&truth(&ns), &["ESTABLISHED"])[&("tcp".to_owned(), "ESTABLISHED".to_owned())];
    assert_eq!(established, 20);
    let sock = socket_path(&ns);
    // A real counts record, made to say 1 ESTABLISHED.
    let mut fake: Value = serde_json::from_slice(&stdout_of(ns.netconn(&["snapshot"]))).unwrap();
    fake["connections"]["tcp"]["ESTABLISHED"] = 1.into();
    fake["source"] = "ebpf".into();
    let server = r#"
import socket, sys
s = socket.socket(socket.AF_UNIX)
s.bind(sys.argv[1]); s.listen(8)
while True:
    c, _ = s.accept(); c.recv(64); c.sendall(sys.argv[2].encode() + b"\n"); c.close()
"#;
    let script = format!(
        r#"
mount -t tmpfs tmpfs /run
mkdir /run/netconn && chown 65534:65534 /run/netconn
setpriv --reuid=65534 --regid=65534 --clear-groups python3 -c '{server}' {sock} '{fake}' &
for i in $(seq 200); do [ -S {sock} ] && break; sleep 0.05; done
[ -S {sock} ] || echo "no fake server"
echo "== check"
{bin} check -w 5 -c 50; echo "exit $?"
echo "== watch"
{bin} watch --count 1 2>&1 >/dev/null
kill %1
rm -rf /run/netconn; mkdir /run/real; ln -s /run/real /run/netconn
echo "== symlink"
{bin} watch --count 1 2>&1 >/dev/null
"#,
        bin = netconn_bin().display(),
        fake = fake,
    );
    let out = in_private_mounts(&ns, &script);
    let section = |name: &str| section(&out, name);
    let check = section("check");
    assert!(check.contains("tcp ESTABLISHED: 20 [WARNING]"), "{out}");
    assert!(check.contains("exit 1"), "{out}");
    assert!(
        section("watch")
            .contains("refusing to serve counts in /run/netconn: it is owned by uid 65534"),
        "{out}"
    );
    assert!(section("symlink").contains("it is a symlink"), "{out}");
    drop(held);
}

/// A `/run/netconn` that was open to others keeps nothing they planted
/// once root's daemon has tightened it: a link from namespace A's socket
/// name to namespace B's daemon is removed, and `check` in A never prints
/// B's counts (it also believes only an answer for its own namespace).
#[test]
fn entries_planted_in_an_open_run_directory_are_removed() {
    let (a, b) = (Netns::new(), Netns::new());
    let worker = a.worker();
    let held = worker.exec(|| netconn_integration::pairs(10));
    let (sock_a, sock_b) = (socket_path(&a), socket_path(&b));
    let script = format!(
        r#"
exec 3</run/netns/{b}
mount -t tmpfs tmpfs /run
mkdir /run/netconn && chmod 0777 /run/netconn
setpriv --reuid=65534 --regid=65534 --clear-groups ln -s {sock_b} {sock_a}
{bin} watch --netns /dev/fd/3 --interval 1h > /dev/null 2>&1 &
for i in $(seq 200); do [ -S {sock_b} ] && break; sleep 0.05; done
echo "== planted"
[ -L {sock_a} ] && echo "still there" || echo "removed"
stat -c %a /run/netconn
echo "== check"
{bin} check -w 5 -c 50; echo "exit $?"
kill %1; wait
"#,
        b = b.name,
        bin = netconn_bin().display(),
    );
    let out = in_private_mounts(&a, &script);
    let planted = section(&out, "planted");
    assert!(planted.contains("removed"), "{out}");
    assert!(planted.contains("700"), "{out}");
    let check = section(&out, "check");
    assert!(check.contains("tcp ESTABLISHED: 20 [WARNING]"), "{out}");
    drop(held);
}

/// The host's own namespace is "system", whatever its inode on this kernel.
#[test]
fn the_host_namespace_is_labelled_system() {
    netconn_integration::require_root();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let out = stdout_of({
        let mut c = Command::new(netconn_bin());
        c.args(["list", "--json"]);
        c
    });
    let rows: Vec<Value> = serde_json::from_slice(&out).unwrap();
    let row = rows
        .iter()
        .find(|r| r["lport"] == port && r["state"] == "LISTEN")
        .expect("our listener is listed");
    assert_eq!(row["namespace"], "system", "{row}");
    // A listener has no RTT and nothing retransmitted.
    assert!(row["rtt_us"].is_null() && row["retrans"].is_null(), "{row}");
    drop(listener);
}

/// A TCP socket that is only bound is in no connection table: neither
/// counted nor listed (as /proc/net/tcp, psutil and `ss -ta`).
#[test]
fn bound_only_tcp_sockets_are_neither_counted_nor_listed() {
    let ns = Netns::new();
    let worker = ns.worker();
    let (bound, port) = worker.exec(|| {
        let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        s.bind(
            &"127.0.0.1:0"
                .parse::<std::net::SocketAddr>()
                .unwrap()
                .into(),
        )
        .unwrap();
        let port = s.local_addr().unwrap().as_socket().unwrap().port();
        (s, port)
    });
    let rows: Vec<Value> =
        serde_json::from_slice(&stdout_of(ns.netconn(&["list", "--json"]))).unwrap();
    assert!(
        rows.iter().all(|r| r["lport"] != port),
        "bound-only socket listed: {rows:?}"
    );
    let aggregate = String::from_utf8(stdout_of(ns.netconn(&["list", "--aggregate"]))).unwrap();
    assert_eq!(aggregate.lines().count(), 1, "only the header: {aggregate}");
    let snapshot: Value = serde_json::from_slice(&stdout_of(ns.netconn(&["snapshot"]))).unwrap();
    assert_eq!(table_of(&snapshot), truth(&ns));
    assert!(truth(&ns).is_empty());
    drop(bound);
}

/// Records are whole lines, also when the reader reads them one byte at
/// a time (a slow reader is not a stalled one: nothing is dropped).
#[test]
fn a_slow_reader_gets_every_record_whole() {
    let ns = Netns::new();
    let mut child = ns
        .netconn(&["watch", "--interval", "20ms", "--count", "40"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut reader = BufReader::with_capacity(16, child.stdout.take().unwrap());
    let mut lines = Vec::new();
    let mut line = String::new();
    while reader.read_line(&mut line).unwrap() > 0 {
        lines.push(std::mem::take(&mut line));
    }
    assert!(child.wait().unwrap().success());
    let records = parse_lines(&lines.concat());
    assert_eq!(records.len(), 80);
    assert_eq!(records[78]["output_dropped"], 0);
}

/// A full disk: records that cannot be written are dropped and counted,
/// a line written in part is cut off again, counting goes on, and writing
/// resumes when space returns. Then log rotation: SIGUSR1 reopens
/// `--output`. On small tmpfs mounts in a private mount namespace.
#[test]
fn a_full_disk_drops_and_counts_and_sigusr1_reopens() {
    let ns = Netns::new();
    let script = format!(
        r#"
mount -t tmpfs tmpfs /mnt
mkdir /mnt/small && mount -t tmpfs -o size=64k tmpfs /mnt/small
head -c 56000 /dev/zero > /mnt/small/filler 2>/dev/null
{bin} watch --interval 100ms --output /mnt/small/out.ndjson 2>/mnt/err & pid=$!
sleep 1.5
rm /mnt/small/filler
sleep 1
mv /mnt/small/out.ndjson /mnt/small/out.1
kill -USR1 $pid
sleep 0.5
kill -TERM $pid; wait $pid; echo "exit $?"
echo "== old"; cat /mnt/small/out.1
echo "== new"; cat /mnt/small/out.ndjson
echo "== err"; cat /mnt/err
"#,
        bin = netconn_bin().display(),
    );
    let out = in_private_mounts(&ns, &script);
    let section = |name: &str| section(&out, name);
    assert!(out.starts_with("exit 0"), "{out}");
    let err = section("err");
    assert!(err.contains("cannot write the output"), "{err}");
    assert!(err.contains("No space left on device"), "{err}");
    assert!(err.contains("output recovered"), "{err}");
    // Only whole records in the file, and the drops counted in it.
    let old = parse_lines(&section("old"));
    let dropped = old
        .iter()
        .filter(|r| r["type"] == "counts")
        .filter_map(|r| r["output_dropped"].as_u64())
        .max()
        .unwrap();
    assert!(dropped > 0, "{out}");
    // After SIGUSR1 the records go to the new file.
    let new = parse_lines(&section("new"));
    assert!(new.iter().any(|r| r["type"] == "counts"), "{out}");
}

/// 20,000 TIME_WAIT sockets in `ns` (counted and dumped; they stay a
/// minute), made by the worker, which holds their listener.
fn time_wait_sockets(worker: &netconn_integration::Worker) -> std::net::TcpListener {
    worker.exec(|| {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        for _ in 0..20_000 {
            let c = std::net::TcpStream::connect(addr).unwrap();
            let (a, _) = l.accept().unwrap();
            drop(c);
            drop(a);
        }
        l
    })
}

/// Asks `path` `request` until 3 answers came from what the loop last
/// published (timed before they were asked), or 20 s passed; each answer
/// a whole counts record of `ns` equal to the kernel's. The answers from
/// the board.
fn answers_while_busy(ns: &Netns, path: &str, request: &str) -> usize {
    let want = truth(ns);
    let now = || {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        t % 86400.0
    };
    let (mut published, mut asked) = (0, 0);
    let t0 = Instant::now();
    while published < 3 && t0.elapsed() < Duration::from_secs(20) {
        let at = now();
        let mut s = UnixStream::connect(path).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(request.as_bytes()).unwrap();
        let mut text = String::new();
        s.read_to_string(&mut text).unwrap();
        let answer: Value = serde_json::from_str(text.trim()).expect("a whole record");
        asked += 1;
        assert_eq!(answer["type"], "counts", "{answer}");
        assert_eq!(answer["netns"], ns.inode(), "{answer}");
        assert_eq!(table_of(&answer), want, "{answer}");
        if seconds_of(answer["time"].as_str().unwrap()) < at - 0.002 {
            published += 1;
        }
    }
    eprintln!("{published} of {asked} answers from the last published counts");
    published
}

/// While the loop is busy with an interval's work (here `--verify`'s dump
/// of 20,000 sockets, each interval), `check` is not kept waiting: a
/// client the loop does not answer at once gets the counts the loop last
/// published, a whole record equal to the kernel's, timed before it asked.
#[test]
fn a_busy_loop_answers_from_the_last_published_counts() {
    let ns = Netns::new();
    let worker = ns.worker();
    let _l = time_wait_sockets(&worker);
    let (mut watch, _) = Watch::start(&ns, &["--interval", "100ms", "--verify"]);
    watch.fresh_record();
    let published = answers_while_busy(&ns, &socket_path(&ns), "counts\n");
    assert!(published >= 3, "answers waited for the loop");
    // The records went on meanwhile.
    let r = watch.fresh_record();
    assert_eq!(r["verify"]["equal"], true, "{r}");

    // The same from the daemon of every namespace, asked for this one.
    drop(watch);
    let mut cmd = Command::new(netconn_bin());
    cmd.args(["watch", "--all-namespaces", "-i", "100ms", "--verify"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let (mut node, _) = Watch::start_cmd(cmd);
    node.fresh_record_of(ns.inode());
    let request = format!("counts {}\n", ns.inode());
    let published = answers_while_busy(&ns, "/run/netconn/node.sock", &request);
    assert!(
        published >= 3,
        "answers waited for the loop of every namespace"
    );
}
