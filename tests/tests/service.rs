//! netconn as a service: the systemd unit (checked by systemd-analyze, its
//! capability set enough for eBPF and each capability needed), the
//! Kubernetes DaemonSet (valid against the Kubernetes schema, its
//! capabilities and arguments enough for `--all-namespaces`), and the
//! Debian package (installed, its files in place, its service's command
//! run as the unit runs it, removed).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use netconn_integration::{netconn_bin, require_root};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn unit_text() -> String {
    std::fs::read_to_string(root().join("netconn/dist/netconn.service")).unwrap()
}

/// The value of a `Key=` line of the unit.
fn unit_value(unit: &str, key: &str) -> String {
    unit.lines()
        .find_map(|l| l.strip_prefix(&format!("{key}=")))
        .unwrap_or_else(|| panic!("no {key}= in the unit"))
        .to_owned()
}

/// `CAP_BPF CAP_NET_ADMIN` as setpriv's `bpf,net_admin`.
fn setpriv_caps(caps: &[String]) -> String {
    caps.iter()
        .map(|c| format!("+{}", c.trim_start_matches("CAP_").to_lowercase()))
        .collect::<Vec<_>>()
        .join(",")
}

/// `cmd` with exactly `caps` (root's capabilities cut to that bounding
/// set, none inherited, no new privileges: what the unit gives).
fn with_caps(caps: &[String], program: &Path, args: &[&str]) -> Output {
    let bounding = format!("-all,{}", setpriv_caps(caps));
    Command::new("setpriv")
        .args([
            "--bounding-set",
            &bounding,
            "--inh-caps=-all",
            "--no-new-privs",
        ])
        .arg(program)
        .args(args)
        .output()
        .expect("setpriv runs")
}

fn source_of(out: &Output) -> String {
    let text = String::from_utf8_lossy(&out.stdout);
    let first: serde_json::Value = serde_json::from_str(text.lines().next().unwrap_or("null"))
        .unwrap_or_else(|e| panic!("{e}: {text}"));
    first["source"].as_str().unwrap_or_default().to_owned()
}

#[test]
fn the_units_capabilities_are_enough_and_each_is_needed() {
    require_root();
    let caps: Vec<String> = unit_value(&unit_text(), "CapabilityBoundingSet")
        .split_whitespace()
        .map(str::to_owned)
        .collect();
    assert!(!caps.is_empty());
    let out = with_caps(&caps, &netconn_bin(), &["watch", "-n", "1"]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(source_of(&out), "ebpf", "{out:?}");
    for left_out in &caps {
        let fewer: Vec<String> = caps.iter().filter(|c| *c != left_out).cloned().collect();
        let out = with_caps(&fewer, &netconn_bin(), &["watch", "-n", "1"]);
        assert_eq!(source_of(&out), "poll", "without {left_out}: {out:?}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("eBPF unavailable"),
            "without {left_out}: {out:?}"
        );
    }
}

/// The DaemonSet: valid against the Kubernetes schema (kubernetes-validate,
/// strict), and its capabilities and arguments run `--all-namespaces`
/// with eBPF.
#[test]
fn the_daemonset_is_valid_and_its_capabilities_suffice() {
    require_root();
    let manifest = root().join("netconn/dist/kubernetes/daemonset.yaml");
    let validate = root().join("target/tools/venv/bin/kubernetes-validate");
    let out = Command::new(&validate)
        .arg("--strict")
        .arg(&manifest)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "{}: {e} (cargo xtask setup installs it)",
                validate.display()
            )
        });
    assert!(out.status.success(), "{out:?}");
    // A manifest with a wrong type must not pass: the validator works.
    let text = std::fs::read_to_string(&manifest).unwrap();
    let broken = std::env::temp_dir().join("netconn-daemonset-broken.yaml");
    std::fs::write(
        &broken,
        text.replace("containerPort: 9470", "containerPort: \"x\""),
    )
    .unwrap();
    let out = Command::new(&validate)
        .arg("--strict")
        .arg(&broken)
        .output()
        .unwrap();
    assert!(!out.status.success(), "a broken manifest passed");
    let _ = std::fs::remove_file(broken);

    // Its capabilities: the `add:` list.
    let add = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("add: "))
        .expect("capabilities add");
    let caps: Vec<String> = add
        .trim_matches(['[', ']'])
        .split(',')
        .map(|c| format!("CAP_{}", c.trim().trim_matches('"')))
        .collect();
    // Its arguments: the `args:` list, one per line.
    let args: Vec<&str> = text
        .lines()
        .skip_while(|l| l.trim() != "args:")
        .skip(1)
        .map_while(|l| l.trim().strip_prefix("- "))
        .collect();
    assert_eq!(args[0], "watch", "{args:?}");
    let output = std::env::temp_dir().join("netconn-daemonset.ndjson");
    let _ = std::fs::remove_file(&output);
    let mut run: Vec<&str> = args.clone();
    // Records where the test can read them, one round.
    let at = run.iter().position(|a| *a == "--output").expect("--output");
    run[at + 1] = output.to_str().unwrap();
    run.extend(["-n", "1"]);
    let out = with_caps(&caps, &netconn_bin(), &run);
    assert!(out.status.success(), "{out:?}");
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let records = std::fs::read_to_string(&output).unwrap();
    let host: serde_json::Value = records
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|r| r["type"] == "host")
        .expect("a host record");
    assert_eq!(host["source"], "ebpf", "{host}");
    let _ = std::fs::remove_file(output);
}

/// Removes the package (and what its service wrote) however the test
/// ends.
struct Installed;

impl Drop for Installed {
    fn drop(&mut self) {
        let _ = Command::new("dpkg").args(["--purge", "netconn"]).output();
        let _ = std::fs::remove_dir_all("/var/log/netconn");
    }
}

#[test]
fn the_package_installs_a_working_service() {
    require_root();
    let deb = std::env::var("NETCONN_DEB")
        .expect("NETCONN_DEB: the package to install (cargo xtask test builds it)");
    let _installed = Installed;
    let out = Command::new("dpkg").args(["-i", &deb]).output().unwrap();
    assert!(out.status.success(), "dpkg -i: {out:?}");
    for file in [
        "/usr/bin/netconn",
        "/usr/lib/systemd/system/netconn.service",
        "/etc/default/netconn",
        "/usr/share/man/man1/netconn.1.gz",
        "/usr/share/bash-completion/completions/netconn",
        "/usr/share/zsh/vendor-completions/_netconn",
        "/usr/share/fish/vendor_completions.d/netconn.fish",
    ] {
        assert!(Path::new(file).exists(), "{file} not installed");
    }
    // The unit as installed: systemd-analyze finds nothing to say (it also
    // checks that the binary and the man page exist).
    let out = Command::new("systemd-analyze")
        .args(["verify", "/usr/lib/systemd/system/netconn.service"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The man page renders; bash knows the completions.
    let out = Command::new("man")
        .args(["-P", "cat", "netconn"])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("real-time connection tracker"),
        "{out:?}"
    );
    // A page per subcommand, as the main page's SEE ALSO names them.
    for (page, says) in [
        ("netconn-watch", "--all-namespaces"),
        ("netconn-check", "--netns"),
    ] {
        let out = Command::new("man")
            .args(["-P", "cat", page])
            .output()
            .unwrap();
        assert!(out.status.success(), "man {page}: {out:?}");
        assert!(
            String::from_utf8_lossy(&out.stdout).contains(says),
            "man {page}: {out:?}"
        );
    }
    let out = Command::new("bash")
        .args([
            "-c",
            "source /usr/share/bash-completion/completions/netconn && complete -p netconn",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");

    // The service's command, as systemd would run it: ExecStart with
    // NETCONN_ARGS from the options file, the unit's capabilities, no new
    // privileges, its logs directory.
    let unit = std::fs::read_to_string("/usr/lib/systemd/system/netconn.service").unwrap();
    let caps: Vec<String> = unit_value(&unit, "CapabilityBoundingSet")
        .split_whitespace()
        .map(str::to_owned)
        .collect();
    let exec = unit_value(&unit, "ExecStart");
    let defaults = std::fs::read_to_string("/etc/default/netconn").unwrap();
    let netconn_args = defaults
        .lines()
        .find_map(|l| l.strip_prefix("NETCONN_ARGS="))
        .expect("NETCONN_ARGS")
        .trim_matches('"');
    let line = exec.replace("$NETCONN_ARGS", netconn_args);
    let mut words = line.split_whitespace();
    let program = words.next().unwrap();
    let mut args: Vec<&str> = words.collect();
    args.extend(["-n", "1"]);
    std::fs::create_dir_all("/var/log/netconn").unwrap();
    let out = with_caps(&caps, Path::new(program), &args);
    assert!(out.status.success(), "{line}: {out:?}");
    let log =
        std::fs::read_to_string("/var/log/netconn/netconn.ndjson").expect("the service's log");
    let first: serde_json::Value = serde_json::from_str(log.lines().next().unwrap()).unwrap();
    assert_eq!(first["type"], "counts", "{first}");
    assert_eq!(first["source"], "ebpf", "{first}");
}
