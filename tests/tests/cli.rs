//! Errors a user can cause: one line, non-zero exit, never a panic.

use std::process::Command;

use netconn_integration::netconn_bin;

fn run(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(netconn_bin())
        .args(args)
        .env("RUST_BACKTRACE", "1")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
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
}

#[test]
fn help_and_version() {
    let (code, stdout, _) = run(&["--help"]);
    assert_eq!(code, 0);
    assert!(stdout.contains("watch") && stdout.contains("snapshot"));
    let (code, stdout, _) = run(&["watch", "--help"]);
    assert_eq!(code, 0);
    assert!(stdout.contains("--interval") && stdout.contains("500ms"));
    let (code, stdout, _) = run(&["--version"]);
    assert_eq!(code, 0);
    assert!(stdout.starts_with("netconn "));
}
