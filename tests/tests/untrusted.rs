//! What a container or an unprivileged user puts in front of the root
//! daemon does not steer it: files read from a container's root,
//! namespace slots, names printed on a terminal.

use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use netconn_integration::cgroups::Cgroups;
use netconn_integration::{Netns, netconn_bin};
use serde_json::Value;

const SERVICE_ACCOUNT: &str = "var/run/secrets/kubernetes.io/serviceaccount";

/// A kubelet-style cgroup path for pod `n`'s container `c`.
fn pod_path(n: u32, c: char) -> String {
    let uid = format!("{n:08x}_2222_3333_4444_555566667777");
    format!(
        "kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{uid}.slice/cri-containerd-{}.scope",
        c.to_string().repeat(64)
    )
}

/// `netconn list --all-namespaces --json`, given at most `limit` to answer
/// (killed past it: a read that blocks the daemon fails the test rather
/// than hanging it).
fn list_all(limit: Duration) -> Vec<Value> {
    let mut child = Command::new(netconn_bin())
        .args(["list", "--all-namespaces", "--json"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    let mut stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut out = Vec::new();
        std::io::Read::read_to_end(&mut stdout, &mut out).unwrap();
        out
    });
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "list -A: {status}");
            break;
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("list -A did not answer within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = reader.join().unwrap();
    serde_json::from_slice::<Value>(&out)
        .expect("one JSON document")
        .as_array()
        .unwrap()
        .clone()
}

/// The owner `list -A` gives namespace `ns` (it has a listener).
fn owner_of<'a>(rows: &'a [Value], ns: &Netns) -> &'a Value {
    let row = rows
        .iter()
        .find(|r| r["netns"] == ns.inode())
        .unwrap_or_else(|| panic!("no row for {}", ns.name));
    &row["owner"]
}

/// A pod whose service-account file is whatever a hostile container makes
/// of it is not read past its root, its rights, its type or its size: the
/// daemon neither publishes the host's root-only file, nor blocks on a
/// pipe, nor reads a megabyte; and a real image's layout (`/var/run` an
/// absolute link to `/run`, Kubernetes' `..data` links, a pause container
/// first) gives the namespace.
#[test]
fn container_files_are_read_inside_the_container_as_the_container() {
    let scratch = std::env::temp_dir().join(format!("netconn-untrusted-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&scratch);
    std::fs::create_dir_all(&scratch).unwrap();
    let cleanup = Scratch(scratch.clone());
    // A root-only file whose content would pass for a namespace name.
    let secret_dir = scratch.join("secret");
    std::fs::create_dir(&secret_dir).unwrap();
    std::fs::write(secret_dir.join("token"), "topsecret").unwrap();
    std::fs::set_permissions(&secret_dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    let big = scratch.join("big");
    std::fs::write(&big, "a".repeat(1 << 20)).unwrap();

    let mut cgroups = Cgroups::default();
    // Hostile pods: a private mount namespace whose /var is a tmpfs the
    // container fills, then an unprivileged process, as a pod that an
    // ordinary user can start in a delegated cgroup.
    let hostile = |what: &str| {
        format!(
            "mount -t tmpfs x /var && mkdir -p /{SERVICE_ACCOUNT} && {what} && echo ready && \
             exec setpriv --reuid=65534 --regid=65534 --clear-groups sleep 60"
        )
    };
    let file = format!("/{SERVICE_ACCOUNT}/namespace");
    let cases = [
        (
            "symlink to a root-only file",
            format!("ln -s {}/token {file}", secret_dir.display()),
        ),
        ("named pipe", format!("mkfifo {file}")),
        ("a megabyte", format!("ln -s {} {file}", big.display())),
        (
            "not a DNS label",
            format!("printf 'a\\nb\\033[31m' > {file}"),
        ),
    ];
    let spaces: Vec<Netns> = cases.iter().map(|_| Netns::new()).collect();
    let mut held = Vec::new();
    for (i, ((_, what), ns)) in cases.iter().zip(&spaces).enumerate() {
        cgroups.start_script(
            ns,
            &["--mount", "--propagation", "private"],
            &pod_path(i as u32 + 1, 'a'),
            &hostile(what),
        );
        held.push(ns.run(|| TcpListener::bind("127.0.0.1:8080").unwrap()));
    }

    // A real image's root: /var/run -> /run, the kubelet's projected
    // volume with its ..data links; its pause container starts first.
    let real = Netns::new();
    let root = scratch.join("root");
    let account = root.join("run/secrets/kubernetes.io/serviceaccount");
    std::fs::create_dir_all(account.join("..2026_12_07")).unwrap();
    std::fs::write(account.join("..2026_12_07/namespace"), "payments").unwrap();
    std::os::unix::fs::symlink("..2026_12_07", account.join("..data")).unwrap();
    std::os::unix::fs::symlink("..data/namespace", account.join("namespace")).unwrap();
    for dir in ["usr", "var"] {
        std::fs::create_dir_all(root.join(dir)).unwrap();
    }
    std::os::unix::fs::symlink("/run", root.join("var/run")).unwrap();
    for (link, to) in [
        ("bin", "usr/bin"),
        ("lib", "usr/lib"),
        ("lib64", "usr/lib64"),
    ] {
        std::os::unix::fs::symlink(to, root.join(link)).unwrap();
    }
    let pause = cgroups.start(&real, "payments-api-5c7d", &pod_path(99, 'b'));
    let app = cgroups.start_script(
        &real,
        &["--mount", "--propagation", "private"],
        &pod_path(99, 'c'),
        &format!(
            "mount --bind /usr {0}/usr && echo ready && exec chroot {0} /usr/bin/sleep 60",
            root.display()
        ),
    );
    assert!(pause < app);
    held.push(real.run(|| TcpListener::bind("127.0.0.1:8080").unwrap()));

    let started = Instant::now();
    let rows = list_all(Duration::from_secs(30));
    let took = started.elapsed();
    for ((case, _), ns) in cases.iter().zip(&spaces) {
        let owner = owner_of(&rows, ns);
        assert!(owner["k8s_pod_uid"].is_string(), "{case}: {owner}");
        assert!(owner.get("k8s_namespace").is_none(), "{case}: {owner}");
    }
    let owner = owner_of(&rows, &real);
    assert_eq!(owner["k8s_namespace"], "payments", "{owner}");
    assert_eq!(owner["k8s_pod_name"], "payments-api-5c7d", "{owner}");
    // Nothing waited on the pipe (each read is given 200 ms at most).
    assert!(took < Duration::from_secs(10), "list -A took {took:?}");
    drop(held);
    drop(cgroups);
    drop(cleanup);
}

/// Removes a scratch folder on drop.
struct Scratch(std::path::PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Network namespaces an unprivileged user made (`unshare -Urn` as
/// nobody), killed on drop.
struct Hogs(Vec<(std::process::Child, u64)>);

impl Hogs {
    fn start(n: usize) -> Self {
        let own = netns_of(std::process::id());
        let hogs = (0..n)
            .map(|_| {
                let child = Command::new("setpriv")
                    .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
                    .args(["unshare", "-Urn", "sleep", "120"])
                    .spawn()
                    .unwrap();
                let deadline = Instant::now() + Duration::from_secs(10);
                let inode = loop {
                    let inode = netns_of(child.id());
                    if inode != own && inode != 0 {
                        break inode;
                    }
                    assert!(Instant::now() < deadline, "unshare -Urn did not start");
                    std::thread::sleep(Duration::from_millis(10));
                };
                (child, inode)
            })
            .collect();
        Self(hogs)
    }

    fn kill(&mut self, inode: u64) {
        let i = self.0.iter().position(|(_, n)| *n == inode).unwrap();
        let (mut child, _) = self.0.remove(i);
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for Hogs {
    fn drop(&mut self) {
        for (c, _) in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The network namespace of process `pid` (0 when it cannot be read).
fn netns_of(pid: u32) -> u64 {
    std::fs::read_link(format!("/proc/{pid}/ns/net"))
        .ok()
        .and_then(|l| {
            let l = l.to_str()?.to_owned();
            l.strip_prefix("net:[")?.strip_suffix(']')?.parse().ok()
        })
        .unwrap_or(0)
}

/// The network namespaces of the host now, as `watch -A` finds them: of
/// every process, and named under /run/netns.
fn host_namespaces() -> std::collections::BTreeSet<u64> {
    let mut found: std::collections::BTreeSet<u64> = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .map(netns_of)
        .filter(|i| *i != 0)
        .collect();
    use std::os::unix::fs::MetadataExt;
    // A name left unmounted is a plain file of the tmpfs, not a namespace.
    let nsfs = std::fs::metadata("/proc/self/ns/net").unwrap().dev();
    for e in std::fs::read_dir("/run/netns")
        .into_iter()
        .flatten()
        .flatten()
    {
        if let Ok(m) = e.metadata()
            && m.dev() == nsfs
        {
            found.insert(m.ino());
        }
    }
    found
}

/// Unprivileged users' namespaces that fill every slot do not hide a
/// namespace root makes afterwards: it takes one of theirs, which the host
/// record then lists, and theirs is counted again once a slot frees.
#[test]
fn unprivileged_namespaces_cannot_hide_the_hosts() {
    use netconn_integration::Watch;
    let mut hogs = Hogs::start(3);
    // Every slot taken at start, the unprivileged namespaces included
    // (once processes of earlier tests are gone).
    let mut now = host_namespaces();
    for _ in 0..50 {
        std::thread::sleep(Duration::from_millis(200));
        let again = host_namespaces();
        if again == now {
            break;
        }
        now = again;
    }
    let slots = now.len();
    let mut cmd = Command::new(netconn_bin());
    cmd.args(["watch", "--all-namespaces", "-i", "1s", "--no-tcp-metrics"])
        .arg(format!("--max-namespaces={slots}"));
    let (mut watch, _) = Watch::start_cmd(cmd);
    let (_, host) = watch.next_round(Duration::from_secs(60));
    assert_eq!(host["namespaces"], slots, "{host}");
    assert_eq!(host["namespaces_untracked"], 0, "{host} {now:?}");

    let ns = Netns::new();
    let _listener = ns.run(|| TcpListener::bind("127.0.0.1:8080").unwrap());
    let inode = ns.inode();
    let hog_inodes: Vec<u64> = hogs.0.iter().map(|(_, i)| *i).collect();
    let mut seen_new = false;
    let mut evicted = None;
    let mut counted = None;
    for _ in 0..20 {
        let (round, host) = watch.next_round(Duration::from_secs(60));
        for r in &round {
            if r["type"] == "netns" && r["netns"] == inode {
                assert_eq!(r["event"], "new", "{r}");
                seen_new = true;
            }
            if r["type"] == "netns" && r["event"] == "untracked" {
                let n = r["netns"].as_u64().unwrap();
                assert!(
                    hog_inodes.contains(&n),
                    "{r}: not an unprivileged namespace"
                );
                evicted = Some(n);
            }
            if r["type"] == "counts" && r["netns"] == inode {
                counted = Some(r["connections"]["tcp"]["LISTEN"].clone());
            }
        }
        if seen_new && counted.is_some() {
            let n = evicted.expect("an unprivileged namespace gave its slot");
            assert_eq!(host["namespaces"], slots, "{host}");
            assert_eq!(host["namespaces_untracked"], 1, "{host}");
            assert_eq!(host["untracked"], serde_json::json!([n]), "{host}");
            break;
        }
    }
    assert!(seen_new, "root's namespace was never adopted");
    assert_eq!(counted, Some(serde_json::json!(1)));

    // A slot frees: the untracked namespace is counted again.
    let evicted = evicted.unwrap();
    let other = *hog_inodes.iter().find(|i| **i != evicted).unwrap();
    hogs.kill(other);
    let mut readopted = false;
    for _ in 0..20 {
        let (round, host) = watch.next_round(Duration::from_secs(60));
        readopted |= round
            .iter()
            .any(|r| r["type"] == "netns" && r["event"] == "new" && r["netns"] == evicted);
        if readopted {
            assert_eq!(host["namespaces_untracked"], 0, "{host}");
            assert!(host.get("untracked").is_none(), "{host}");
            break;
        }
    }
    assert!(readopted, "the untracked namespace was never retried");
}

/// A process whose name is a terminal escape (as any user may name one,
/// `prctl(PR_SET_NAME)`) cannot retitle or recolour the terminal of root
/// running `list`: the name is printed escaped.
#[test]
fn names_are_escaped_on_a_terminal() {
    use std::io::Write;
    let ns = Netns::new();
    let script = "import ctypes, socket, sys\n\
                  ctypes.CDLL(None).prctl(15, b'\\x1b]0;PWNED\\x07\\x1b[31m', 0, 0, 0)\n\
                  s = socket.socket(); s.bind(('127.0.0.1', 7070)); s.listen()\n\
                  print('ready', flush=True); sys.stdin.read()\n";
    let mut child = netconn_integration::spawn_ready(
        ns.cmd("python3").args(["-c", script]).stdin(Stdio::piped()),
    );
    let out = ns.netconn(&["list", "--processes"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("7070"), "{text}");
    assert!(!text.contains('\x1b') && !text.contains('\x07'), "{text:?}");
    assert!(text.contains("\\x1b]0;PWNED\\x07\\x1b[31m"), "{text}");
    let _ = child.stdin.take().unwrap().write_all(b"");
    let _ = child.kill();
    let _ = child.wait();
}
