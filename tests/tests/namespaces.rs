//! Other namespaces than netconn's own: `--netns` on every subcommand, by
//! name, path and pid, from the host namespace (no `ip netns exec`).

use std::net::{TcpListener, TcpStream, UdpSocket};
use std::process::{Command, Stdio};

use netconn_integration::{Netns, Watch, netconn_bin, stdout_of, table_of, truth};
use serde_json::Value;

/// `netconn ARGS` run in the host namespace.
fn netconn(args: &[&str]) -> Command {
    let mut cmd = Command::new(netconn_bin());
    cmd.args(args);
    cmd
}

fn json(cmd: Command) -> Value {
    serde_json::from_slice(&stdout_of(cmd)).expect("one JSON document")
}

#[test]
fn netns_by_name_path_and_pid_on_every_subcommand() {
    let ns = Netns::new();
    let worker = ns.worker();
    let _held = worker.exec(|| {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let c: Vec<TcpStream> = (0..3)
            .map(|_| TcpStream::connect(l.local_addr().unwrap()).unwrap())
            .collect();
        let a: Vec<TcpStream> = (0..3).map(|_| l.accept().unwrap().0).collect();
        let u = UdpSocket::bind("[::1]:0").unwrap();
        (l, c, a, u)
    });
    let mut sleeper = Command::new("ip")
        .args(["netns", "exec", &ns.name, "sleep", "60"])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let truth = truth(&ns);
    assert_eq!(truth.values().sum::<i64>(), 8, "{truth:?}");
    let inode = std::fs::metadata(format!("/run/netns/{}", ns.name))
        .map(|m| std::os::unix::fs::MetadataExt::ino(&m))
        .unwrap();

    let path = format!("/run/netns/{}", ns.name);
    // `ip netns exec` execs the command: the child's pid is sleep's.
    let pid = format!("pid:{}", sleeper.id());
    for target in [ns.name.as_str(), path.as_str(), pid.as_str()] {
        let snap = json(netconn(&["snapshot", "--netns", target]));
        assert_eq!(table_of(&snap), truth, "snapshot --netns {target}");
        assert_eq!(snap["netns"], inode, "snapshot --netns {target}");

        let rows = json(netconn(&["list", "--json", "--netns", target]));
        assert_eq!(
            rows.as_array().unwrap().len(),
            8,
            "list --netns {target}: {rows}"
        );

        let out = netconn(&["check", "--netns", target]).output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains("'tcp_ESTABLISHED'=6") && text.contains("'udp6_NONE'=1"),
            "check --netns {target}: {text}"
        );

        let ct = json(netconn(&["conntrack", "--netns", target, "-w", "100ms"]));
        assert_eq!(ct["netns"], inode, "conntrack --netns {target}");
    }

    // watch, with the global option before the subcommand.
    let mut cmd = netconn(&["--netns", &ns.name, "watch", "-i", "500ms"]);
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let (watch, first) = Watch::start_cmd(cmd);
    assert_eq!(first["source"], "ebpf", "{first}");
    assert_eq!(first["netns"], inode);
    assert_eq!(table_of(&first), truth);
    drop(watch);
    let _ = sleeper.kill();
    let _ = sleeper.wait();
}

#[test]
fn a_bad_netns_is_one_line_and_a_usage_error() {
    for (target, says) in [
        (
            "no-such-namespace-here",
            "no network namespace of that name",
        ),
        ("pid:4000000000", "no such process"),
        ("/etc/hostname", "not a network namespace"),
        ("pid:x", "expected pid:PID"),
    ] {
        let out = netconn(&["snapshot", "--netns", target]).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{target}: {err}");
        assert_eq!(err.lines().count(), 1, "{target}: {err}");
        assert!(err.contains(says), "{target}: {err}");
        // The plugin says it on stdout, UNKNOWN.
        let out = netconn(&["check", "--netns", target]).output().unwrap();
        assert_eq!(out.status.code(), Some(3), "check {target}");
        assert!(String::from_utf8_lossy(&out.stdout).contains(says));
    }
}
