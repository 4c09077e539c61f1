//! `netconn check`: Nagios output, perfdata and exit codes against the
//! kernel's truth, from a dump and from a running daemon.

use std::os::unix::fs::MetadataExt;
use std::process::Output;

use netconn_integration::{Netns, Table, Watch, mix, table_of, truth};

fn check(ns: &Netns, args: &[&str]) -> (String, i32) {
    let Output {
        status,
        stdout,
        stderr,
    } = ns
        .netconn(&[&["check"], args].concat())
        .output()
        .expect("run netconn check");
    assert!(stderr.is_empty(), "a plugin writes stdout only: {stderr:?}");
    let out = String::from_utf8(stdout).expect("utf-8");
    assert_eq!(out.lines().count(), 1, "one line: {out:?}");
    (out.trim_end().to_owned(), status.code().expect("exit code"))
}

/// `'tcp_CLOSE_WAIT'=4;;;; ...` as a table.
fn perfdata(out: &str) -> Table {
    let (_, perf) = out.split_once('|').unwrap_or(("", ""));
    perf.split_whitespace()
        .map(|item| {
            let (label, rest) = item.split_once('=').expect("label=value");
            let label = label.trim_matches('\'');
            let (ct, state) = label.split_once('_').expect("type_STATE");
            let value = rest.split(';').next().unwrap().parse().expect("number");
            ((ct.to_owned(), state.to_owned()), value)
        })
        .collect()
}

/// The counts in the message part, in order: ("tcp", "CLOSE WAIT", 4).
fn message_counts(out: &str) -> Vec<(String, String, i64)> {
    let (msg, _) = out.split_once('|').expect("perfdata");
    msg.split(", ")
        .map(|pair| {
            let (label, n) = pair.split_once(": ").expect("label: n");
            let n = n.split_whitespace().next().unwrap().parse().unwrap();
            let (ct, state) = label.split_once(' ').unwrap();
            (ct.to_owned(), state.to_owned(), n)
        })
        .collect()
}

#[test]
fn output_and_perfdata_equal_truth() {
    let ns = Netns::new();
    let worker = ns.worker();
    let held = worker.exec(|| mix::build(21));
    let (out, code) = check(&ns, &[]);
    let want = truth(&ns);
    assert_eq!(code, 0, "{out}");
    assert_eq!(perfdata(&out), want, "{out}");
    let pairs = message_counts(&out);
    assert_eq!(pairs.len(), want.len());
    assert!(pairs.windows(2).all(|w| w[0].2 >= w[1].2), "sorted: {out}");
    for (ct, state, n) in pairs {
        assert_eq!(want[&(ct, state.replace(' ', "_"))], n, "{out}");
    }

    // Filters: only tcp6 listeners, and a combination nothing matches.
    let (out, _) = check(&ns, &["--conn-type", "tcp6", "--conn-status", "listen"]);
    let tcp6_listen: Table = want
        .iter()
        .filter(|((ct, s), _)| ct == "tcp6" && s == "LISTEN")
        .map(|(k, v)| (k.clone(), *v))
        .collect();
    assert!(!tcp6_listen.is_empty());
    assert_eq!(perfdata(&out), tcp6_listen, "{out}");
    let (out, code) = check(&ns, &["--conn-type", "udp6", "--conn-status", "closing"]);
    assert_eq!(
        (out.as_str(), code),
        (
            "No connections of type \"udp6\" in status \"closing\" found.",
            0
        )
    );
    drop(held);
}

#[test]
fn thresholds_set_the_exit_code() {
    let ns = Netns::new();
    let worker = ns.worker();
    let held = worker.exec(|| mix::build(22));
    let want = truth(&ns);
    let max = *want.values().max().expect("some connections");
    let above = want.values().filter(|n| **n > max - 1).count();
    let below = (max - 1).to_string();

    let (out, code) = check(&ns, &["-w", &below]);
    assert_eq!(code, 1, "{out}");
    assert_eq!(out.matches(" [WARNING]").count(), above, "{out}");
    let (out, code) = check(&ns, &["-w", &below, "-c", &below]);
    assert_eq!(code, 2, "{out}");
    assert_eq!(out.matches(" [CRITICAL]").count(), above, "{out}");
    assert!(!out.contains("[WARNING]"), "critical wins: {out}");
    let (out, code) = check(&ns, &["-w", &max.to_string()]);
    assert_eq!(code, 0, "{out}");
    // Inside-ranges: every count is within 1..=max.
    let (out, code) = check(&ns, &["-c", &format!("@1:{max}")]);
    assert_eq!(code, 2, "{out}");
    assert_eq!(out.matches(" [CRITICAL]").count(), want.len(), "{out}");
    drop(held);
}

#[test]
fn bad_arguments_are_unknown() {
    let ns = Netns::new();
    for (args, says) in [
        (
            &["--conn-type", "sctp"][..],
            "netconn check: argument --conn-type: invalid choice",
        ),
        (
            &["--conn-status", "open"],
            "netconn check: argument --conn-status: invalid choice",
        ),
        (
            &["-w"],
            "netconn check: argument -w/--warning: expected one argument",
        ),
        (
            &["--conn"],
            "netconn check: ambiguous option: --conn could match",
        ),
        // Bad ranges: the plugin's own messages.
        (&["-w", "10:5"], "Start 10 must not be greater than end 5"),
        (&["-c", "abc"], "Range format incorrect"),
        (&["-c", "1:2:3"], "Not using range definition correctly"),
    ] {
        let (out, code) = check(&ns, args);
        assert_eq!(code, 3, "{args:?}: {out}");
        assert!(out.starts_with(says), "{args:?}: {out}");
    }
}

/// What the Linuxfabrik plugin's users (and its Icinga Director command)
/// pass, answered the way the plugin answers (checked side by side with
/// the plugin, v2026071201, on the same sockets).
#[test]
fn the_plugins_invocations_answer_as_the_plugin_does() {
    let ns = Netns::new();
    let worker = ns.worker();
    let held = worker.exec(|| mix::build(24));
    let want = truth(&ns);
    let (plain, code) = check(&ns, &[]);
    assert_eq!(code, 0);
    // Perfdata as the plugin prints it: 'tcp_LISTEN'=2, nothing after.
    let (_, perf) = plain.split_once('|').unwrap();
    for item in perf.split(' ') {
        let (label, n) = item.split_once('=').unwrap();
        assert!(label.starts_with('\'') && label.ends_with('\''), "{item}");
        assert!(n.parse::<i64>().is_ok(), "{item}");
    }
    assert_eq!(perfdata(&plain), want);

    // Unknown options (with or without values) are ignored.
    let (out, code) = check(&ns, &["--bogus", "x", "--timeout=3", "-x"]);
    assert_eq!((out.as_str(), code), (plain.as_str(), 0));
    // The last threshold wins; `none` is no threshold.
    assert_eq!(check(&ns, &["-c", "0", "-c", "none"]).1, 0);
    assert_eq!(check(&ns, &["-w", "none", "-w", "0"]).1, 1);
    // Abbreviated and attached forms.
    assert_eq!(check(&ns, &["--crit=0"]).1, 2);
    assert_eq!(check(&ns, &["-c0"]).1, 2);
    // `@` alone: every count (0 to infinity) is critical; `%` is ignored.
    let (out, code) = check(&ns, &["-c", "@"]);
    assert_eq!(code, 2);
    assert_eq!(out.matches(" [CRITICAL]").count(), want.len(), "{out}");
    assert_eq!(check(&ns, &["-w", "0%"]).1, 1);
    // --always-ok: the marks stay, the exit code is 0, and it says so.
    let (out, code) = check(&ns, &["--always-ok", "-c", "0"]);
    assert_eq!(code, 0, "{out}");
    let (msg, _) = out.split_once('|').unwrap();
    assert!(msg.ends_with(" (always ok)"), "{out}");
    assert!(msg.contains(" [CRITICAL]"), "{out}");
    // --no-perfdata: the text alone, the state unchanged.
    let (out, code) = check(&ns, &["--no-perfdata", "-c", "0"]);
    assert_eq!(code, 2);
    assert!(!out.contains('|'), "{out}");
    let (plain_msg, _) = plain.split_once('|').unwrap();
    let marked: Vec<String> = plain_msg
        .split(", ")
        .map(|pair| format!("{pair} [CRITICAL]"))
        .collect();
    assert_eq!(out, marked.join(", "));
    // -V: a version line, exit 0.
    let (out, code) = check(&ns, &["-V"]);
    assert_eq!(code, 0);
    assert!(out.contains("network-connections"), "{out}");
    drop(held);
}

#[test]
fn a_running_daemon_answers_with_live_counts() {
    let ns = Netns::new();
    let socket = format!("/run/netconn/netns-{}.sock", ns.inode());
    let (watch, _) = Watch::start(&ns, &["--interval", "1h"]);
    let worker = ns.worker();
    let held = worker.exec(|| mix::build(23));
    let want = truth(&ns);

    // What the daemon serves: its live counts (root-only socket).
    let mode = std::fs::metadata(&socket).expect("daemon socket").mode();
    assert_eq!(mode & 0o777, 0o600, "root only");
    let mut stream = std::os::unix::net::UnixStream::connect(&socket).expect("connect");
    std::io::Write::write_all(&mut stream, b"counts\n").unwrap();
    let answer = std::io::read_to_string(stream).unwrap();
    let record: serde_json::Value = serde_json::from_str(answer.trim()).expect("a JSON record");
    assert_eq!(record["source"], "ebpf", "{record}");
    assert_eq!(table_of(&record), want, "{record}");

    // And the check built on it.
    let (out, code) = check(&ns, &[]);
    assert_eq!(code, 0);
    assert_eq!(perfdata(&out), want, "{out}");

    let (_, status) = watch.stop(libc::SIGTERM);
    assert!(status.success());
    assert!(
        !std::path::Path::new(&socket).exists(),
        "socket removed on exit"
    );
    // Without the daemon the check dumps, with the same result.
    let (out, _) = check(&ns, &[]);
    assert_eq!(perfdata(&out), want, "{out}");
    drop(held);
}
