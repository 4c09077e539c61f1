//! `netconn top` in a real terminal (tmux, on a server of its own): the
//! table on screen equals the kernel's, follows a change, and `q` leaves
//! the terminal as it was.

use std::process::Command;
use std::time::{Duration, Instant};

use netconn_integration::{Netns, Table, Watch, mix, netconn_bin, truth};

/// Keeps a screen for people to look at (see `screenshot_path`).
fn keep(screen: &str, name: &str) {
    std::fs::write(netconn_integration::screenshot_path(name), screen).unwrap();
}

/// A tmux server of the test's own, killed on drop.
struct Tmux {
    socket: String,
}

impl Tmux {
    /// A session running a shell, `width` x `height`.
    fn start(width: u16, height: u16) -> Self {
        let tmux = Self {
            socket: format!("netconn-test-{}", std::process::id()),
        };
        tmux.ok(&[
            "new-session",
            "-d",
            "-x",
            &width.to_string(),
            "-y",
            &height.to_string(),
            "env",
            "-i",
            "TERM=xterm-256color",
            "PATH=/usr/sbin:/usr/bin:/sbin:/bin",
            "PS1=$ ",
            "bash",
            "--norc",
            "--noprofile",
        ]);
        tmux
    }

    fn run(&self, args: &[&str]) -> std::process::Output {
        Command::new("tmux")
            .args(["-L", &self.socket])
            .args(args)
            .output()
            .expect("tmux runs")
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "tmux {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Types `text` and Enter.
    fn line(&self, text: &str) {
        self.ok(&["send-keys", "-t", "0", "-l", text]);
        self.ok(&["send-keys", "-t", "0", "Enter"]);
    }

    fn key(&self, key: &str) {
        self.ok(&["send-keys", "-t", "0", key]);
    }

    /// What the pane shows now.
    fn screen(&self) -> String {
        self.ok(&["capture-pane", "-p", "-t", "0"])
    }

    /// A pane variable (`#{alternate_on}`...).
    fn var(&self, name: &str) -> String {
        self.ok(&["display-message", "-p", "-t", "0", &format!("#{{{name}}}")])
            .trim()
            .to_owned()
    }

    /// Waits until the screen satisfies `want`; the last screen.
    fn until(&self, what: &str, timeout: Duration, want: impl Fn(&str) -> bool) -> String {
        let t0 = Instant::now();
        loop {
            let screen = self.screen();
            if want(&screen) {
                return screen;
            }
            assert!(
                t0.elapsed() < timeout,
                "{what} not on screen within {timeout:?}:\n{screen}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.run(&["kill-server"]);
    }
}

/// The per-state table on a screen: the figure of each conn-type in each
/// state row (`-` and zeros left out, changes beside them ignored).
fn table_on(screen: &str) -> Table {
    let states: Vec<&str> = (1..=11)
        .map(|code| netconn_integration::proc_state_name(&format!("{code:02X}")))
        .chain(["NONE"])
        .collect();
    let mut t = Table::new();
    for line in screen.lines() {
        let line = line.trim_start_matches(['│', ' ']);
        let Some(state) = states.iter().find(|s| line.starts_with(&format!("{s} "))) else {
            continue;
        };
        let figures: Vec<&str> = line[state.len()..]
            .split(|c: char| c.is_whitespace() || c == '│')
            // A change is signed: `+3`, `-2` (a lone `-`: no such cell).
            .filter(|w| !w.is_empty() && !w.starts_with('+'))
            .filter(|w| !(w.starts_with('-') && w.len() > 1))
            .take(4)
            .collect();
        for (ct, figure) in ["tcp", "tcp6", "udp", "udp6"].iter().zip(figures) {
            if let Ok(n) = figure.parse::<i64>()
                && n != 0
            {
                t.insert((ct.to_string(), state.to_string()), n);
            }
        }
    }
    t
}

#[test]
fn top_shows_the_kernels_table_follows_it_and_leaves_a_clean_terminal() {
    let ns = Netns::new();
    let worker = ns.worker();
    let held = worker.exec(|| mix::build(57));
    let (mut watch, _) = Watch::start(&ns, &["--interval", "1s"]);
    watch.fresh_record();
    let tmux = Tmux::start(160, 48);
    tmux.line(&format!(
        "ip netns exec {} {} top; echo EXIT=$?",
        ns.name,
        netconn_bin().display()
    ));
    let want = truth(&ns);
    let screen = tmux.until("the kernel's table", Duration::from_secs(20), |s| {
        table_on(s) == want
    });
    assert!(screen.contains("eBPF: the running watch"), "{screen}");
    keep(&screen, "top-overview.txt");
    assert_eq!(
        tmux.var("alternate_on"),
        "1",
        "top draws on the alternate screen"
    );

    // More connections: the screen follows without a key.
    let more = worker.exec(|| netconn_integration::pairs(5));
    let want = truth(&ns);
    tmux.until(
        "the table after 5 more connections",
        Duration::from_secs(20),
        |s| table_on(s) == want,
    );

    // The connections view lists them; a filter keeps one port's.
    tmux.key("2");
    let port = more.0.local_addr().unwrap().port().to_string();
    let screen = tmux.until("the connections view", Duration::from_secs(10), |s| {
        s.contains("Connections of netns") && s.contains(&format!(":{port}"))
    });
    keep(&screen, "top-connections.txt");
    tmux.key("/");
    for c in port.chars() {
        tmux.key(&c.to_string());
    }
    tmux.key("Enter");
    let screen = tmux.until("the filtered list", Duration::from_secs(10), |s| {
        s.contains("11 shown")
    });
    assert!(screen.contains(&format!("filter: {port}")), "{screen}");

    // A resize is drawn at the new size.
    tmux.ok(&["resize-window", "-t", "0", "-x", "120", "-y", "40"]);
    tmux.key("1");
    tmux.until(
        "the overview at 120 columns",
        Duration::from_secs(10),
        |s| s.lines().next().is_some_and(|l| l.contains("Overview")) && s.lines().count() <= 40,
    );

    // q: exit 0, the main screen back, the cursor shown.
    tmux.key("q");
    let screen = tmux.until("the shell after q", Duration::from_secs(10), |s| {
        s.lines().any(|l| l.starts_with("EXIT="))
    });
    assert!(screen.lines().any(|l| l == "EXIT=0"), "{screen}");
    assert_eq!(tmux.var("alternate_on"), "0", "the main screen is back");
    assert_eq!(tmux.var("cursor_flag"), "1", "the cursor is shown again");
    assert!(
        !screen.contains("ESTABLISHED"),
        "top's screen is gone:\n{screen}"
    );
    // The shell reads lines again (no raw mode left behind).
    tmux.line("echo typed-$((1+2))");
    tmux.until("the shell's echo", Duration::from_secs(5), |s| {
        s.contains("typed-3")
    });
    drop((held, more));
}

/// Waits until `path` is gone (a watch stopped and removed its socket).
fn gone(path: &str, what: &str) {
    let t0 = Instant::now();
    while std::path::Path::new(path).exists() {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "{what}: {path} still there"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// No daemon: top starts a watch of its own (root), stopped with it
/// however top ends (q, Ctrl-C, SIGTERM, a hung-up terminal); without
/// root it dumps the tables itself; without a terminal it says so.
#[test]
fn top_without_a_daemon_counts_by_itself_and_cleans_up() {
    let ns = Netns::new();
    let worker = ns.worker();
    let _held = worker.exec(|| mix::build(58));
    let socket = format!("/run/netconn/netns-{}.sock", ns.inode());
    let top = format!("ip netns exec {} {} top", ns.name, netconn_bin().display());
    let tmux = Tmux::start(150, 45);
    tmux.line(&format!("NO_COLOR=1 {top}; echo EXIT=$?"));
    let want = truth(&ns);
    let screen = tmux.until(
        "the table of top's own watch",
        Duration::from_secs(30),
        |s| table_on(s) == want && s.contains("(counting: ebpf)"),
    );
    assert!(screen.contains("a watch of its own"), "{screen}");
    assert!(
        std::path::Path::new(&socket).exists(),
        "it serves check meanwhile"
    );
    // Ctrl-C leaves as q does, and its watch with it.
    tmux.key("C-c");
    let screen = tmux.until("the shell after Ctrl-C", Duration::from_secs(10), |s| {
        s.lines().any(|l| l.starts_with("EXIT="))
    });
    assert!(screen.lines().any(|l| l == "EXIT=0"), "{screen}");
    assert_eq!(tmux.var("alternate_on"), "0");
    gone(&socket, "top's watch after Ctrl-C");

    // SIGTERM leaves as q does.
    tmux.line(&format!("{top}; echo EXIT=$?"));
    tmux.until("top again", Duration::from_secs(30), |s| {
        s.contains("(counting: ebpf)")
    });
    let shell = tmux.var("pane_pid");
    let pid = String::from_utf8(
        Command::new("pgrep")
            .args(["-P", &shell, "netconn"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    let pid: i32 = pid.trim().parse().expect("top's pid");
    // SAFETY: a signal to the test's own child's child.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let screen = tmux.until("the shell after SIGTERM", Duration::from_secs(10), |s| {
        s.lines().filter(|l| l.starts_with("EXIT=")).count() == 2
    });
    assert_eq!(
        screen.lines().filter(|l| *l == "EXIT=0").count(),
        2,
        "{screen}"
    );
    assert_eq!(tmux.var("alternate_on"), "0");
    gone(&socket, "top's watch after SIGTERM");

    // Without root: no watch of its own can serve; top dumps.
    tmux.line(&format!(
        "ip netns exec {} setpriv --reuid=65534 --regid=65534 --clear-groups --inh-caps=-all --bounding-set=-all {} top; echo EXIT=$?",
        ns.name,
        netconn_bin().display()
    ));
    let screen = tmux.until("the dumped table", Duration::from_secs(30), |s| {
        table_on(s) == want && s.contains("polling: no watch runs")
    });
    assert!(!screen.contains("a watch of its own"), "{screen}");
    tmux.key("q");
    tmux.until("the shell after q", Duration::from_secs(10), |s| {
        s.lines().filter(|l| l.starts_with("EXIT=")).count() == 3
    });

    // The terminal hangs up (its window closed): top goes at once
    // (crossterm alone would spin on the end of file), its watch too.
    tmux.line(&format!("exec {top}"));
    tmux.until("top in the pane's process", Duration::from_secs(30), |s| {
        s.contains("(counting: ebpf)")
    });
    let pid = tmux.var("pane_pid");
    drop(tmux);
    let t0 = Instant::now();
    while std::path::Path::new(&format!("/proc/{pid}")).exists() {
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "top still runs after its terminal hung up"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    gone(&socket, "top's watch after a hang-up");

    // Not a terminal: one line, exit 2.
    let out = ns.netconn(&["top"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("needs a terminal"), "{err}");
}

#[test]
fn top_of_every_namespace_lists_them_and_opens_one() {
    let ns = Netns::new();
    let worker = ns.worker();
    let held = worker.exec(|| mix::build(59));
    let inode = ns.inode();
    let mut cmd = Command::new(netconn_bin());
    cmd.args(["watch", "--all-namespaces", "-i", "1s"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let (mut watch, _) = Watch::start_cmd(cmd);
    watch.fresh_record_of(inode);
    let tmux = Tmux::start(160, 60);
    tmux.line(&format!("{} top -A; echo EXIT=$?", netconn_bin().display()));
    let want = truth(&ns);
    let total: i64 = want.values().sum();
    // Its row: the namespace, its name as owner, its total.
    let row = |s: &str| {
        s.lines()
            .find(|l| l.contains(&format!("│{inode} ")))
            .map(str::to_owned)
    };
    let screen = tmux.until("the namespace's row", Duration::from_secs(20), |s| {
        row(s).is_some_and(|r| {
            let cells: Vec<&str> = r.split_whitespace().collect();
            cells.contains(&format!("netns:{}", ns.name).as_str())
                && cells.contains(&total.to_string().as_str())
        })
    });
    assert!(screen.contains("the watch of every namespace"), "{screen}");
    keep(&screen, "top-namespaces.txt");
    // Down to it, Enter: its overview, equal to the kernel's.
    let rows: Vec<&str> = screen
        .lines()
        .skip_while(|l| !l.contains("NETNS"))
        .skip(1)
        .collect();
    let at = rows
        .iter()
        .position(|l| l.contains(&format!("│{inode} ")))
        .unwrap();
    for _ in 0..at {
        tmux.key("Down");
    }
    tmux.key("Enter");
    tmux.until("the namespace's overview", Duration::from_secs(10), |s| {
        s.contains(&format!("netns {inode}")) && table_on(s) == want
    });
    // Its connections: dumped from inside it, every one of its sockets.
    tmux.key("2");
    tmux.until(
        "the namespace's connections",
        Duration::from_secs(10),
        |s| s.contains(&format!("Connections of netns {inode} — {total} shown")),
    );
    tmux.key("q");
    let screen = tmux.until("the shell after q", Duration::from_secs(10), |s| {
        s.lines().any(|l| l.starts_with("EXIT="))
    });
    assert!(screen.lines().any(|l| l == "EXIT=0"), "{screen}");
    drop(held);
}
