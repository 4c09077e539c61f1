//! Other namespaces than netconn's own: `--netns` on every subcommand, by
//! name, path and pid, from the host namespace (no `ip netns exec`).

use std::net::{TcpListener, TcpStream, UdpSocket};
use std::process::{Command, Stdio};
use std::time::Duration;

use netconn_integration::cgroups::Cgroups;
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

#[test]
fn list_all_namespaces_names_containers_and_pods() {
    const ID: &str = "9a3f0c1d2e4b5a6978877665544332211000ffeeddccbbaa0099887766554433";
    const ID2: &str = "1111222233334444555566667777888899990000aaaabbbbccccddddeeeeffff";
    let uid = "5e2d8c1a-3b4f-4e6a-9d7c-0a1b2c3d4e5f";
    let docker = Netns::new();
    let pod = Netns::new();
    let mut cgroups = Cgroups::default();
    let docker_pid = cgroups.start(&docker, "web-1", &format!("system.slice/docker-{ID}.scope"));
    // A second process of the same name: one name per pid.
    let second = cgroups.start(&docker, "web-1", &format!("system.slice/docker-{ID}.scope"));
    let pod_path = format!(
        "kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{}.slice/cri-containerd-{ID2}.scope",
        uid.replace('-', "_")
    );
    cgroups.start(&pod, "api-7d9f8b-x2x4q", &pod_path);
    // Sockets in each, so that each has rows.
    let (in_docker, in_pod) = (docker.worker(), pod.worker());
    let _held = (
        in_docker.exec(|| TcpListener::bind("127.0.0.1:8080").unwrap()),
        in_pod.exec(|| UdpSocket::bind("0.0.0.0:5353").unwrap()),
    );

    let rows = json(netconn(&["list", "--all-namespaces", "--json"]));
    let rows = rows.as_array().unwrap();
    let of =
        |ns: &Netns| -> Vec<&Value> { rows.iter().filter(|r| r["netns"] == ns.inode()).collect() };
    let d = of(&docker);
    assert_eq!(d.len(), 1, "{d:?}");
    assert_eq!(d[0]["lport"], 8080);
    assert_eq!(d[0]["namespace"], "container");
    let owner = &d[0]["owner"];
    assert_eq!(owner["runtime"], "docker", "{owner}");
    assert_eq!(owner["container_id"], ID);
    assert_eq!(owner["netns_name"], docker.name.as_str());
    assert_eq!(
        owner["pids"],
        serde_json::json!([docker_pid, second]),
        "{owner}"
    );
    assert_eq!(
        owner["comm"],
        serde_json::json!(["sleep", "sleep"]),
        "{owner}"
    );
    assert!(owner.get("k8s_pod_uid").is_none(), "{owner}");

    let p = of(&pod);
    assert_eq!(p.len(), 1, "{p:?}");
    let owner = &p[0]["owner"];
    assert_eq!(owner["runtime"], "containerd", "{owner}");
    assert_eq!(owner["container_id"], ID2);
    assert_eq!(owner["k8s_pod_uid"], uid);
    assert_eq!(owner["k8s_pod_name"], "api-7d9f8b-x2x4q");
    assert_eq!(owner["cgroup"], format!("/{pod_path}"));

    // The host's own sockets are the system's.
    let own = std::fs::metadata("/proc/self/ns/net")
        .map(|m| std::os::unix::fs::MetadataExt::ino(&m))
        .unwrap();
    assert!(
        rows.iter()
            .filter(|r| r["netns"] == own)
            .all(|r| r["namespace"] == "system")
    );

    // The table names them too.
    let table = String::from_utf8(stdout_of(netconn(&["list", "-A"]))).unwrap();
    assert!(table.contains(&format!("docker:{}", &ID[..12])), "{table}");
    assert!(table.contains("pod:api-7d9f8b-x2x4q"), "{table}");
}

/// The counts records of a round, by namespace inode.
fn by_netns(round: &[Value]) -> std::collections::BTreeMap<u64, &Value> {
    round
        .iter()
        .filter(|r| r["type"] == "counts")
        .map(|r| (r["netns"].as_u64().unwrap(), r))
        .collect()
}

#[test]
fn all_namespaces_each_exact_and_followed_as_they_come_and_go() {
    use netconn_integration::{Table, churn, mix};
    let spaces: Vec<Netns> = (0..5).map(|_| Netns::new()).collect();
    let workers: Vec<_> = spaces.iter().map(Netns::worker).collect();
    let mut held: Vec<Option<mix::Held>> = workers
        .iter()
        .enumerate()
        .map(|(i, w)| Some(w.exec(move || mix::build(11 + i as u64))))
        .collect();
    let mut cmd = netconn(&["watch", "--all-namespaces", "-i", "500ms"]);
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let (mut watch, _) = Watch::start_cmd(cmd);
    let timeout = Duration::from_secs(60);

    // A seeded churn in two namespaces at once.
    let churned: Vec<(mix::Held, churn::Stats)> = std::thread::scope(|s| {
        let runs: Vec<_> = workers[..2]
            .iter()
            .enumerate()
            .map(|(i, w)| {
                s.spawn(move || {
                    w.exec(move || churn::run(7 + i as u64, 1500, Duration::from_secs(15)))
                })
            })
            .collect();
        runs.into_iter().map(|r| r.join().unwrap()).collect()
    });
    for (_, stats) in &churned {
        assert!(stats.connects > 100, "too little churn: {stats:?}");
    }

    // A sixth namespace, made while netconn runs.
    let sixth = Netns::new();
    let sixth_worker = sixth.worker();
    let _sixth_held = sixth_worker.exec(|| mix::build(99));
    let sixth_inode = sixth.inode();
    let mut news = Vec::new();
    for _ in 0..20 {
        let (round, _) = watch.next_round(timeout);
        news.extend(round.into_iter().filter(|r| r["type"] == "netns"));
        if news.iter().any(|r| r["netns"] == sixth_inode) {
            break;
        }
    }
    let new = news
        .iter()
        .find(|r| r["netns"] == sixth_inode)
        .unwrap_or_else(|| panic!("no netns record for the sixth namespace: {news:?}"));
    assert_eq!(new["event"], "new");
    assert_eq!(new["owner"]["netns_name"], sixth.name.as_str());

    // One namespace deleted while it runs: its sockets closed, its
    // thread gone, its name removed.
    let fifth_inode = spaces[4].inode();
    drop(held[4].take());
    let mut workers = workers;
    drop(workers.pop());
    let mut spaces = spaces;
    drop(spaces.pop());
    let mut last = None;
    for _ in 0..20 {
        let (round, _) = watch.next_round(timeout);
        let gone = round.iter().position(|r| {
            r["type"] == "netns" && r["event"] == "gone" && r["netns"] == fifth_inode
        });
        if let Some(at) = gone {
            // Its last counts come right before the news.
            last = Some((round[at - 1].clone(), round[at].clone()));
            break;
        }
    }
    let (last_counts, _) = last.expect("no gone record for the deleted namespace");
    assert_eq!(last_counts["type"], "counts");
    assert_eq!(last_counts["netns"], fifth_inode);

    // At rest, every namespace equals its own /proc/net, and the host
    // record is the sum of all.
    let mut checked: Vec<(&Netns, u64)> = spaces.iter().map(|n| (n, n.inode())).collect();
    checked.push((&sixth, sixth_inode));
    for (ns, _) in &checked {
        ns.run(mix::settle);
    }
    let mut mismatch = String::new();
    for attempt in 0..5 {
        let (round, host) = watch.next_round(timeout);
        let records = by_netns(&round);
        assert!(
            !records.contains_key(&fifth_inode),
            "the deleted namespace is still counted"
        );
        mismatch.clear();
        for (ns, inode) in &checked {
            let record = records
                .get(inode)
                .unwrap_or_else(|| panic!("no record for {}", ns.name));
            assert_eq!(record["namespace"], "container");
            assert_eq!(record["owner"]["netns_name"], ns.name.as_str());
            let want: Table = truth(ns);
            if table_of(record) != want {
                mismatch += &format!(
                    "\n{}: netconn {:?} /proc {:?}",
                    ns.name,
                    table_of(record),
                    want
                );
            }
        }
        let mut sum = Table::new();
        for r in records.values() {
            for (k, v) in table_of(r) {
                *sum.entry(k).or_default() += v;
            }
        }
        assert_eq!(table_of(&host), sum, "host record is not the sum");
        assert_eq!(host["namespaces"], records.len());
        assert_eq!(host["lost_events"], 0, "{host}");
        if mismatch.is_empty() {
            assert!(attempt < 5);
            break;
        }
    }
    assert!(
        mismatch.is_empty(),
        "namespaces differ from /proc:{mismatch}"
    );
    drop(churned);
    drop(held);
}

#[test]
fn all_namespaces_by_polling_too() {
    use netconn_integration::mix;
    let spaces: Vec<Netns> = (0..3).map(|_| Netns::new()).collect();
    let workers: Vec<_> = spaces.iter().map(Netns::worker).collect();
    let _held: Vec<mix::Held> = workers
        .iter()
        .enumerate()
        .map(|(i, w)| w.exec(move || mix::build(31 + i as u64)))
        .collect();
    let mut cmd = netconn(&["watch", "-A", "--poll", "-i", "300ms"]);
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let (mut watch, first) = Watch::start_cmd(cmd);
    assert_eq!(first["source"], "poll", "{first}");
    let mut last = String::new();
    for _ in 0..5 {
        let (round, host) = watch.next_round(Duration::from_secs(30));
        assert_eq!(host["source"], "poll");
        let records = by_netns(&round);
        last.clear();
        for ns in &spaces {
            let record = records[&ns.inode()];
            if table_of(record) != truth(ns) {
                last += &format!("\n{}: {record}", ns.name);
            }
        }
        if last.is_empty() {
            break;
        }
    }
    assert!(last.is_empty(), "{last}");
}

/// Asks the daemon on `socket` one request line; its whole answer.
fn ask(socket: &str, line: &str) -> String {
    let mut stream = std::os::unix::net::UnixStream::connect(socket).expect("connect");
    std::io::Write::write_all(&mut stream, line.as_bytes()).unwrap();
    std::io::read_to_string(stream).unwrap()
}

#[test]
fn a_node_daemon_answers_for_every_namespace() {
    use netconn_integration::mix;
    let ns = Netns::new();
    let worker = ns.worker();
    let _held = worker.exec(|| mix::build(41));
    let inode = ns.inode();
    let mut cmd = netconn(&["watch", "-A", "-i", "1h"]);
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let (watch, _) = Watch::start_cmd(cmd);
    let socket = "/run/netconn/node.sock";
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(socket)
            .expect("node socket")
            .permissions(),
    );
    assert_eq!(mode & 0o777, 0o600, "root only");

    let want = truth(&ns);
    let answer = ask(socket, &format!("counts {inode}\n"));
    let record: Value = serde_json::from_str(answer.trim()).expect("a JSON record");
    assert_eq!(record["source"], "ebpf", "{record}");
    assert_eq!(record["netns"], inode);
    assert_eq!(record["owner"]["netns_name"], ns.name.as_str());
    assert_eq!(table_of(&record), want);
    // A namespace it does not count: an empty answer.
    assert_eq!(ask(socket, "counts 1\n"), "");

    // check --netns asks it.
    let out = netconn(&["check", "--netns", &ns.name]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let established = want
        .get(&("tcp".to_owned(), "ESTABLISHED".to_owned()))
        .copied()
        .unwrap_or(0);
    let perfdata = text.split_once('|').map_or("", |(_, p)| p);
    assert!(
        perfdata
            .split_whitespace()
            .any(|item| item == format!("'tcp_ESTABLISHED'={established}")),
        "{text} vs {want:?}"
    );

    let (_, status) = watch.stop(libc::SIGTERM);
    assert!(status.success());
    assert!(
        !std::path::Path::new(socket).exists(),
        "socket removed on exit"
    );
}

#[test]
fn all_namespaces_events_carry_each_namespace_and_its_directions() {
    use netconn_integration::veth;
    use std::net::TcpStream;
    let a = Netns::new();
    let b = Netns::new();
    veth(&a, &b, 78);
    let (in_a, in_b) = (a.worker(), b.worker());
    let listener = in_a.exec(|| TcpListener::bind("10.78.0.1:8080").unwrap());
    let listener = std::sync::Arc::new(listener);
    let accept = |l: &std::sync::Arc<TcpListener>| {
        let l = l.clone();
        in_a.exec(move || l.accept().unwrap().0)
    };
    // A connection older than the watch: its close is told by the
    // namespace's listening ports (8080 listens in a, not in b).
    let old_client = in_b.exec(|| TcpStream::connect("10.78.0.1:8080").unwrap());
    let old_server = accept(&listener);

    let mut cmd = netconn(&["watch", "-A", "--events", "-i", "300ms"]);
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let (mut watch, _) = Watch::start_cmd(cmd);
    let new_client = in_b.exec(|| TcpStream::connect("10.78.0.1:8080").unwrap());
    let new_server = accept(&listener);
    let old_port = in_b.exec(move || {
        let port = old_client.local_addr().unwrap().port();
        drop(old_client);
        port
    });
    in_a.exec(move || drop(old_server));

    let (ia, ib) = (a.inode(), b.inode());
    let mut conns: Vec<Value> = Vec::new();
    let wanted = |conns: &[Value]| {
        let closes = conns.iter().filter(|c| c["event"] == "close").count();
        let opens = conns.iter().filter(|c| c["event"] == "open").count();
        closes >= 2 && opens >= 2
    };
    for _ in 0..20 {
        let (round, host) = watch.next_round(Duration::from_secs(30));
        assert_eq!(host["conn_records_lost"], 0, "{host}");
        conns.extend(
            round
                .into_iter()
                .filter(|r| r["type"] == "conn" && (r["netns"] == ia || r["netns"] == ib)),
        );
        if wanted(&conns) {
            break;
        }
    }
    let find = |netns: u64, event: &str| -> &Value {
        conns
            .iter()
            .find(|c| c["netns"] == netns && c["event"] == event)
            .unwrap_or_else(|| panic!("no {event} in {netns}: {conns:#?}"))
    };
    let (open_a, open_b) = (find(ia, "open"), find(ib, "open"));
    assert_eq!(open_a["direction"], "inbound", "{open_a}");
    assert_eq!(open_a["lport"], 8080);
    assert_eq!(open_a["owner"]["netns_name"], a.name.as_str());
    assert_eq!(open_b["direction"], "outbound", "{open_b}");
    assert_eq!(open_b["rport"], 8080);
    assert_eq!(open_b["owner"]["netns_name"], b.name.as_str());
    assert_eq!(open_b["namespace"], "container");
    let (close_a, close_b) = (find(ia, "close"), find(ib, "close"));
    // Opened before the watch: directions from each namespace's listeners.
    assert_eq!(close_a["direction"], "inbound", "{close_a}");
    assert_eq!(close_a["duration_ms"], Value::Null);
    assert_eq!(close_b["direction"], "outbound", "{close_b}");
    assert_eq!(close_b["lport"], old_port);
    drop((new_client, new_server));
}

/// Pods that all listen on one port: the connections each accepts carry
/// its own listener's process, not the last one to call listen() on that
/// port anywhere on the node.
#[test]
fn listeners_on_one_port_in_two_namespaces_keep_their_own_process() {
    use std::net::TcpStream;
    let (a, b) = (Netns::new(), Netns::new());
    let mut cmd = netconn(&["watch", "-A", "--events", "-i", "300ms"]);
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let (mut watch, _) = Watch::start_cmd(cmd);
    let script = "import socket, sys\n\
                  s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n\
                  s.bind(('127.0.0.1', 8080)); s.listen()\n\
                  print('ready', flush=True); c, _ = s.accept(); sys.stdin.read()\n";
    let mut server = netconn_integration::spawn_ready(
        a.cmd("python3").args(["-c", script]).stdin(Stdio::piped()),
    );
    // The same port in b, listened on later, by this process.
    let in_b = b.worker();
    let _b_listener = in_b.exec(|| TcpListener::bind("127.0.0.1:8080").unwrap());
    let in_a = a.worker();
    let _client = in_a.exec(|| TcpStream::connect("127.0.0.1:8080").unwrap());
    let ia = a.inode();
    let mut accepted = None;
    for _ in 0..20 {
        let (round, _) = watch.next_round(Duration::from_secs(30));
        accepted = round.into_iter().find(|r| {
            r["type"] == "conn"
                && r["event"] == "open"
                && r["netns"] == ia
                && r["lport"] == 8080
                && r["direction"] != "listen"
        });
        if accepted.is_some() {
            break;
        }
    }
    let accepted = accepted.expect("no open record for the accepted connection");
    let _ = server.kill();
    let _ = server.wait();
    assert_eq!(accepted["pid"], server.id(), "{accepted}");
    assert_eq!(accepted["comm"], "python3", "{accepted}");
}

/// The `-A` daemon with `--events` gives `list` the processes behind the
/// sockets of a namespace that has no watch of its own; SIGHUP resyncs
/// every namespace, and each record says so for itself.
#[test]
fn a_node_daemon_gives_owners_and_says_each_resync() {
    use std::net::TcpStream;
    let ns = Netns::new();
    let mut cmd = netconn(&["watch", "-A", "-i", "300ms", "--events"]);
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let (mut watch, _) = Watch::start_cmd(cmd);
    let inode = ns.inode();
    // Adopted first, then sockets it sees made.
    let _ = watch.fresh_record_of(inode);
    let worker = ns.worker();
    let _held = worker.exec(|| {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let a = l.accept().unwrap().0;
        (l, c, a)
    });
    let out = netconn(&["list", "--netns", &ns.name, "--json"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let rows: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(rows.len(), 3, "{rows:?}");
    for r in &rows {
        assert_eq!(r["pid"], std::process::id(), "{r}");
    }

    // SIGHUP: every namespace resynced once, each record its own.
    let before = watch.fresh_record_of(inode);
    assert_eq!(before["resyncs"], 0, "{before}");
    assert!(before["last_correction"].is_null(), "{before}");
    watch.signal(libc::SIGHUP);
    let mut after = None;
    for _ in 0..20 {
        let (round, host) = watch.next_round(Duration::from_secs(30));
        if host["resyncs"] == 1 {
            after = Some(round);
            break;
        }
    }
    let round = after.expect("no resync after SIGHUP");
    let counts: Vec<&Value> = round.iter().filter(|r| r["type"] == "counts").collect();
    assert!(counts.len() >= 2, "{round:?}");
    for r in counts {
        assert_eq!(r["resyncs"], 1, "{r}");
        assert_eq!(r["last_correction"]["reason"], "requested", "{r}");
        if r["netns"] == inode {
            // At rest: the resync changed nothing there.
            assert_eq!(r["last_correction"]["delta"], serde_json::json!({}), "{r}");
        }
    }
}

#[test]
fn all_namespaces_conntrack_per_namespace() {
    use netconn_integration::{conntrack_count, track};
    let tracked = Netns::new();
    let untracked = Netns::new();
    track(&tracked);
    let worker = tracked.worker();
    let _flows = worker.exec(|| netconn_integration::pairs(4));
    let want = conntrack_count(&tracked);
    assert!(want >= 4, "{want}");
    let mut cmd = netconn(&["watch", "-A", "-i", "300ms"]);
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let (mut watch, _) = Watch::start_cmd(cmd);
    let (round, _) = watch.next_round(Duration::from_secs(30));
    let of = |ns: &Netns| -> &Value {
        round
            .iter()
            .find(|r| r["type"] == "conntrack" && r["netns"] == ns.inode())
            .unwrap_or_else(|| panic!("no conntrack record for {}: {round:?}", ns.name))
    };
    let t = of(&tracked);
    assert_eq!(t["count"], conntrack_count(&tracked), "{t}");
    assert_eq!(t["count"], want);
    let u = of(&untracked);
    assert_eq!(u["count"], 0, "{u}");
    assert_eq!(conntrack_count(&untracked), 0);
    assert_eq!(t["entries"]["tcp"], want, "{t}");
    assert!(t.get("note").is_none(), "{t}");
    assert!(u["note"].is_string(), "no rule needs conntrack there: {u}");

    // New flows reach each namespace's entries by its own events (no
    // dump per interval), and a rule added later is seen by nftables'
    // own announcement.
    let _more = worker.exec(|| netconn_integration::pairs(3));
    track(&untracked);
    let now = conntrack_count(&tracked);
    assert!(now >= want + 3, "{now}");
    let mut seen = None;
    for _ in 0..20 {
        let (round, _) = watch.next_round(Duration::from_secs(30));
        let find = |ns: &Netns| {
            round
                .iter()
                .find(|r| r["type"] == "conntrack" && r["netns"] == ns.inode())
                .cloned()
                .unwrap()
        };
        let (t, u) = (find(&tracked), find(&untracked));
        if t["entries"]["tcp"] == now && u.get("note").is_none() {
            seen = Some(t);
            break;
        }
    }
    let t = seen.expect("the new flows and the new rule were never seen");
    assert_eq!(t["count"], now, "{t}");
    assert!(t["events"]["new"]["tcp"].as_u64().unwrap() >= 3, "{t}");
}

/// `-A` with TCP metrics: each namespace's figures are its own.
#[test]
fn all_namespaces_tcp_metrics_per_namespace() {
    use std::io::{Read, Write};
    use std::net::TcpStream;
    let busy = Netns::new();
    let idle = Netns::new();
    let snmp = |ns: &Netns, key: &str| ns.counter("/proc/net/snmp", "Tcp:", key);
    let mut cmd = netconn(&["watch", "-A", "-i", "300ms"]);
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let (mut watch, _) = Watch::start_cmd(cmd);
    let rsts_before = snmp(&busy, "OutRsts");
    let worker = busy.worker();
    let (port, _listener) = worker.exec(|| {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        for _ in 0..4 {
            let mut c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
            let (mut s, _) = l.accept().unwrap();
            c.write_all(&[7; 50_000]).unwrap();
            let mut buf = vec![0; 50_000];
            s.read_exact(&mut buf).unwrap();
        }
        assert!(TcpStream::connect("127.0.0.1:9").is_err());
        (port, l)
    });
    let rsts = snmp(&busy, "OutRsts") - rsts_before;
    let (ib, ii) = (busy.inode(), idle.inode());
    let mut sum = std::collections::BTreeMap::<(u64, &str), u64>::new();
    let mut accepted_on_port = 0;
    for _ in 0..6 {
        let (round, _) = watch.next_round(Duration::from_secs(30));
        for r in round.iter().filter(|r| r["type"] == "counts") {
            let netns = r["netns"].as_u64().unwrap();
            if netns != ib && netns != ii {
                continue;
            }
            let m = &r["tcp_metrics"];
            *sum.entry((netns, "samples")).or_default() += m["rtt_us"]["count"].as_u64().unwrap();
            *sum.entry((netns, "refused")).or_default() +=
                m["failed_connects"]["refused"].as_u64().unwrap();
            *sum.entry((netns, "accepted")).or_default() += m["accepted"].as_u64().unwrap();
            *sum.entry((netns, "resets_sent")).or_default() += m["resets_sent"].as_u64().unwrap();
            if netns == ib {
                for l in r["listeners"].as_array().unwrap() {
                    if l["port"] == port {
                        accepted_on_port += l["accepted"].as_u64().unwrap();
                    }
                }
            }
        }
    }
    let get = |netns, k| sum.get(&(netns, k)).copied().unwrap_or(0);
    assert!(get(ib, "samples") > 0, "{sum:?}");
    assert_eq!(get(ib, "refused"), 1, "{sum:?}");
    assert_eq!(get(ib, "accepted"), 4, "{sum:?}");
    assert_eq!(accepted_on_port, 4, "the listener's own count");
    assert_eq!(
        get(ib, "resets_sent"),
        rsts,
        "OutRsts of the busy namespace"
    );
    for k in ["samples", "refused", "accepted", "resets_sent"] {
        assert_eq!(get(ii, k), 0, "idle namespace {k}: {sum:?}");
    }
}

/// A namespace that dies gives its inode to the next one made; the new
/// one is a new namespace (gone, then new, counted from its own
/// snapshot), not the old one's counts carried on.
#[test]
fn a_reused_inode_is_a_new_namespace() {
    use std::net::TcpStream;
    // The daemon keeps files and sockets of each namespace open, which
    // keeps it alive until the daemon finds it gone (no process, no name:
    // at its next walk of /proc, at most 5 s apart) and lets go; only then
    // can the kernel give its inode to another. (Were a namespace not held,
    // the cookie check tells a new one from the old one all the same.)
    let mut cmd = netconn(&["watch", "-A", "-i", "3s"]);
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let (mut watch, _) = Watch::start_cmd(cmd);
    let hold = |ns: &Netns, n: usize| {
        let w = ns.worker();
        let held = w.exec(move || {
            let l = TcpListener::bind("127.0.0.1:0").unwrap();
            let c: Vec<TcpStream> = (0..n)
                .map(|_| TcpStream::connect(l.local_addr().unwrap()).unwrap())
                .collect();
            let a: Vec<TcpStream> = (0..n).map(|_| l.accept().unwrap().0).collect();
            (l, c, a)
        });
        (w, held)
    };
    // Until the kernel hands a dead namespace's inode to the next one.
    for _ in 0..10 {
        let old = Netns::new();
        let old_inode = old.inode();
        let (w, held) = hold(&old, 3);
        // Counted first.
        for _ in 0..10 {
            let (round, _) = watch.next_round(Duration::from_secs(30));
            if round
                .iter()
                .any(|r| r["type"] == "counts" && r["netns"] == old_inode)
            {
                break;
            }
        }
        drop((held, w));
        drop(old);
        // The kernel frees a namespace's inode in its cleanup work, a
        // moment (under load, seconds) after the last reference goes (the
        // daemon's, up to a walk later), and then hands it to the next
        // namespace made: make them until one gets it, for up to 12 s.
        let started = std::time::Instant::now();
        let mut new = Netns::new();
        while new.inode() != old_inode && started.elapsed() < Duration::from_secs(12) {
            drop(new);
            std::thread::sleep(Duration::from_millis(50));
            new = Netns::new();
        }
        if new.inode() != old_inode {
            continue;
        }
        let (w, held) = hold(&new, 1);
        let mut news = Vec::new();
        let mut last = None;
        for _ in 0..20 {
            let (round, _) = watch.next_round(Duration::from_secs(30));
            news.extend(
                round
                    .iter()
                    .filter(|r| r["type"] == "netns" && r["netns"] == old_inode)
                    .cloned(),
            );
            last = round
                .into_iter()
                .find(|r| r["type"] == "counts" && r["netns"] == old_inode);
            let renamed = last
                .as_ref()
                .is_some_and(|r| r["owner"]["netns_name"] == new.name.as_str());
            if renamed && last.as_ref().is_some_and(|r| table_of(r) == truth(&new)) {
                break;
            }
        }
        let events: Vec<&Value> = news.iter().map(|r| &r["event"]).collect();
        assert_eq!(events, ["gone", "new"], "{news:?}");
        assert_eq!(news[1]["owner"]["netns_name"], new.name.as_str());
        let last = last.expect("the new namespace is counted");
        assert_eq!(table_of(&last), truth(&new), "{last}");
        drop((held, w));
        return;
    }
    panic!("the kernel never reused an inode in 10 tries of 12 s");
}
