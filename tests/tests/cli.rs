//! Errors a user can cause: one line, non-zero exit, never a panic.

use std::process::Command;

use netconn_integration::netconn_bin;

/// Exit code, stdout and stderr of `cmd`, backtraces on (so a panic shows).
fn outcome(mut cmd: Command) -> (i32, String, String) {
    let out = cmd.env("RUST_BACKTRACE", "1").output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

fn run(args: &[&str]) -> (i32, String, String) {
    let mut cmd = Command::new(netconn_bin());
    cmd.args(args);
    outcome(cmd)
}

fn assert_one_line_error(args: &[&str], mentions: &str) {
    let (code, stdout, stderr) = run(args);
    assert_eq!(code, 2, "{args:?}: exit {code}, stderr {stderr}");
    assert!(stdout.is_empty(), "{args:?}: stdout {stdout}");
    assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr}");
    assert!(stderr.starts_with("netconn: "), "{stderr}");
    assert!(
        stderr.contains(mentions),
        "{args:?}: {stderr} lacks {mentions}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn bad_input_is_one_clear_line() {
    assert_one_line_error(&["watch", "--interval", "10x"], "duration");
    assert_one_line_error(&["watch", "--interval", "0s"], "too short");
    assert_one_line_error(&["watch", "--count", "0"], "--count");
    assert_one_line_error(&["watch", "--count", "many"], "--count");
    assert_one_line_error(&["watch", "--bogus"], "--bogus");
    assert_one_line_error(&["frobnicate"], "frobnicate");
    assert_one_line_error(&[], "subcommand");
    assert_one_line_error(
        &["watch", "--output", "/proc/no/such/dir/out.ndjson"],
        "/proc/no/such/dir",
    );
    assert_one_line_error(&["snapshot", "--output", "/"], "--output /");
    assert_one_line_error(&["watch", "--interval", "-1s"], "expected a duration");
    assert_one_line_error(&["watch", "--listen", "9470"], "ADDR:PORT");
}

/// A metrics address that cannot be had: one line, exit 1, before any
/// program loads.
#[test]
fn a_taken_metrics_port_is_one_line() {
    let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = held.local_addr().unwrap().to_string();
    let (code, stdout, stderr) = run(&["watch", "--listen", &addr, "-n", "1"]);
    assert_eq!(code, 1, "exit {code}: {stderr}");
    assert!(stdout.is_empty(), "{stdout}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains(&format!("cannot serve metrics on {addr}")),
        "{stderr}"
    );
}

/// Run with a shell, for redirections.
fn sh(script: &str) -> (i32, String, String) {
    let mut cmd = Command::new("bash");
    cmd.args(["-c", script]).env("NETCONN", netconn_bin());
    outcome(cmd)
}

#[test]
fn a_failing_or_closed_stdout_is_said_never_a_panic() {
    // A Nagios plugin whose line is lost must say UNKNOWN (3).
    let (code, _, stderr) = sh("$NETCONN check > /dev/full");
    assert_eq!(code, 3, "{stderr}");
    assert!(stderr.contains("cannot write to stdout"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    let (code, _, stderr) = sh("$NETCONN check >&-");
    assert_eq!(code, 3, "{stderr}");
    // The others: nothing could be written, one line, exit 2.
    for cmd in ["snapshot", "list", "watch --count 1 --poll"] {
        let (code, _, stderr) = sh(&format!("$NETCONN {cmd} >&-"));
        assert_eq!(code, 2, "{cmd}: {stderr}");
        assert!(stderr.contains("stdout is closed"), "{cmd}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{cmd}: {stderr}");
    }
    // A redirection to /dev/null is a choice, not a closed stdout.
    let (code, _, stderr) = sh("$NETCONN snapshot > /dev/null");
    assert_eq!(code, 0, "{stderr}");
}

#[test]
fn bad_environment_is_one_clear_line() {
    for (var, value) in [
        ("NETCONN_JOURNAL_BYTES", "5000"),
        ("NETCONN_OUTPUT_QUEUE_BYTES", "many"),
        ("NETCONN_ADDR_PORTS", "[\"x\"]"),
        // Unbounded sizes are refused, not allocated.
        ("NETCONN_JOURNAL_BYTES", "2147483648"),
        ("NETCONN_OUTPUT_QUEUE_BYTES", "18446744073709551615"),
    ] {
        let out = Command::new(netconn_bin())
            .args(["watch", "--count", "1", "--poll"])
            .env(var, value)
            .output()
            .unwrap();
        let stderr = String::from_utf8(out.stderr).unwrap();
        assert_eq!(out.status.code(), Some(2), "{var}: {stderr}");
        assert!(stderr.starts_with(&format!("netconn: {var}")), "{stderr}");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
    }
}

/// Inputs that would make the daemon allocate without end or wait
/// forever are refused at once: a configuration that is a device or a
/// pipe, and environment values that are not text.
#[test]
fn unbounded_inputs_are_refused_at_once() {
    use std::os::unix::ffi::OsStrExt;
    let started = std::time::Instant::now();
    assert_one_line_error(
        &["watch", "--count", "1", "--poll", "--config", "/dev/zero"],
        "/dev/zero: not a regular file",
    );
    let fifo = std::env::temp_dir().join(format!("netconn-fifo-{}", std::process::id()));
    let _ = std::fs::remove_file(&fifo);
    let made = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(made.success());
    let fifo_arg = fifo.to_str().unwrap().to_owned();
    let (code, _, stderr) = run(&["watch", "--count", "1", "--poll", "--config", &fifo_arg]);
    let _ = std::fs::remove_file(&fifo);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("not a regular file"), "{stderr}");
    let big = std::env::temp_dir().join(format!("netconn-big-{}.toml", std::process::id()));
    std::fs::write(&big, "#".repeat(2 << 20)).unwrap();
    let (code, _, stderr) = run(&[
        "watch",
        "--count",
        "1",
        "--poll",
        "--config",
        big.to_str().unwrap(),
    ]);
    let _ = std::fs::remove_file(&big);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("larger than 1024 KiB"), "{stderr}");
    assert!(started.elapsed() < std::time::Duration::from_secs(20));
    let out = Command::new(netconn_bin())
        .args(["watch", "--count", "1", "--poll"])
        .env("NETCONN_INTERVAL", std::ffi::OsStr::from_bytes(b"1\xffs"))
        .output()
        .unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert_eq!(stderr.trim(), "netconn: NETCONN_INTERVAL: not UTF-8 text");
}

/// Tags that line protocol or Prometheus cannot carry, a misspelt alert
/// variable and DataKit tags that are not key=value: each said in one
/// line, refused (exit 2) or left out with a warning, never written
/// broken.
#[test]
fn tags_and_variables_that_cannot_be_carried_are_said() {
    let conf = |name: &str, text: &str| {
        let p = std::env::temp_dir().join(format!("netconn-{name}-{}.toml", std::process::id()));
        std::fs::write(&p, text).unwrap();
        p
    };
    let clash = conf("clash", "[tags]\n\"a-b\" = \"1\"\n\"a.b\" = \"2\"\n");
    assert_one_line_error(
        &[
            "watch",
            "--count",
            "1",
            "--poll",
            "--config",
            clash.to_str().unwrap(),
        ],
        "tags \"a-b\" and \"a.b\" both become the Prometheus label \"a_b\"",
    );
    let newline = conf("newline", "[tags]\nd = \"x\\ny\"\n");
    assert_one_line_error(
        &[
            "watch",
            "--count",
            "1",
            "--poll",
            "--config",
            newline.to_str().unwrap(),
        ],
        "control characters",
    );
    // An empty value is left out, with one line saying so.
    let empty = conf("empty", "[tags]\nempty = \"\"\nkept = \"v\"\n");
    let out = Command::new(netconn_bin())
        .args(["watch", "--count", "1", "--poll", "--format", "line"])
        .args(["--config", empty.to_str().unwrap()])
        .env("ENV_INPUT_NETSTAT_TAGS", "garbage,d=1")
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    );
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("tag \"empty\" has an empty value: left out"),
        "{stderr}"
    );
    assert!(
        stderr.contains("ENV_INPUT_NETSTAT_TAGS: \"garbage\" is not key=value"),
        "{stderr}"
    );
    assert!(
        stdout.contains("kept=v") && stdout.contains("d=1"),
        "{stdout}"
    );
    assert!(!stdout.contains("empty="), "{stdout}");
    for p in [clash, newline, empty] {
        let _ = std::fs::remove_file(p);
    }
    // A misspelt alert variable.
    let out = Command::new(netconn_bin())
        .args(["watch", "--count", "1", "--poll"])
        .env("NETCONN_ALERTS_CONN_SPIKE_MIN_RAT", "2")
        .output()
        .unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.starts_with("netconn: NETCONN_ALERTS_CONN_SPIKE_MIN_RAT: no such alert setting"),
        "{stderr}"
    );
    assert!(stderr.contains("CONN_SPIKE_MIN_RATE"), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
}

/// `--output` through a symlink another user planted (pointing at a file
/// of root's) is refused; root's own link is followed.
#[test]
fn output_through_a_planted_symlink_is_refused() {
    use std::os::unix::fs::MetadataExt;
    let dir = std::env::temp_dir().join(format!("netconn-planted-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir(&dir).unwrap();
    let secret = dir.join("root-only");
    std::fs::write(&secret, "before\n").unwrap();
    let planted = dir.join("out.ndjson");
    std::os::unix::fs::symlink(&secret, &planted).unwrap();
    // The link is nobody's.
    std::os::unix::fs::lchown(&planted, Some(65534), Some(65534)).unwrap();
    assert_eq!(std::fs::symlink_metadata(&planted).unwrap().uid(), 65534);
    let arg = planted.to_str().unwrap().to_owned();
    assert_one_line_error(
        &["snapshot", "--output", &arg],
        "a symlink made by uid 65534",
    );
    assert_eq!(std::fs::read_to_string(&secret).unwrap(), "before\n");
    // Root's own link: followed.
    let own = dir.join("own.ndjson");
    std::os::unix::fs::symlink(&secret, &own).unwrap();
    let (code, _, stderr) = run(&["snapshot", "--output", own.to_str().unwrap()]);
    assert_eq!(code, 0, "{stderr}");
    assert!(std::fs::read_to_string(&secret).unwrap().len() > 7);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn help_and_version() {
    let (code, stdout, _) = run(&["--help"]);
    assert_eq!(code, 0);
    assert!(stdout.contains("watch") && stdout.contains("snapshot"));
    let (code, stdout, _) = run(&["watch", "--help"]);
    assert_eq!(code, 0);
    assert!(stdout.contains("--interval") && stdout.contains("500ms"));
    // `help --help` asks for the help: it gets it.
    let (code, stdout, _) = run(&["help", "--help"]);
    assert_eq!(code, 0);
    assert!(stdout.contains("watch"));
    let (code, stdout, _) = run(&["--version"]);
    assert_eq!(code, 0);
    assert!(stdout.starts_with("netconn "));
}
