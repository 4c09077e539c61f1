//! `netconn check`: the Nagios/Icinga plugin.

use std::time::Duration;

use crate::cli::CheckArgs;
use crate::model::counts::Counts;
use crate::plugin::check::{Spec, report};
use crate::plugin::nagios::{Range, Status, threshold};

/// How long to wait for a running daemon before dumping instead.
const DAEMON_TIMEOUT: Duration = Duration::from_secs(2);

/// Prints the plugin's line and returns its state (the exit code).
pub fn run(args: CheckArgs) -> Status {
    let asked = match crate::plugin::args::parse(&args.options) {
        Ok(asked) => asked,
        Err(e) => {
            return say(
                &format!("netconn check: {e} (see netconn check --help)"),
                Status::Unknown,
            );
        }
    };
    if asked.help {
        use clap::CommandFactory;
        let mut cli = crate::cli::Cli::command();
        let help = cli
            .find_subcommand_mut("check")
            .map(|c| c.render_long_help().to_string())
            .unwrap_or_default();
        // Help and version are no state: exit 0 (the plugin exits 3, a side
        // effect of catching argparse's exit); a reader that stops early
        // (`| head`) is no failure.
        use std::io::Write;
        let _ = writeln!(std::io::stdout(), "{}", help.trim_end());
        return Status::Ok;
    }
    if asked.version {
        let text = format!(
            "netconn check: v{} (a drop-in for the Linuxfabrik network-connections plugin v2026071201)",
            env!("CARGO_PKG_VERSION")
        );
        return say(&text, Status::Ok);
    }
    if let Some(target) = &asked.netns {
        let entered = target
            .parse::<crate::namespaces::target::Target>()
            .and_then(|t| t.enter().map_err(|e| e.to_string()));
        if let Err(e) = entered {
            return say(&format!("netconn check: {e}"), Status::Unknown);
        }
    }
    let range = |spec: &Option<String>| -> Result<Option<Range>, String> {
        spec.as_deref().map_or(Ok(None), threshold)
    };
    let (warning, critical) = match (range(&asked.warning), range(&asked.critical)) {
        (Ok(w), Ok(c)) => (w, c),
        // The plugin's message, as it prints it: alone, UNKNOWN.
        (Err(e), _) | (_, Err(e)) => return say(&e, Status::Unknown),
    };
    let spec = Spec {
        conn_types: asked.conn_types,
        conn_status: asked.conn_status,
        warning,
        critical,
        always_ok: asked.always_ok,
        no_perfdata: asked.no_perfdata,
    };
    if asked.alerts {
        let (text, status) = match alerts() {
            Ok(records) => crate::plugin::check::alerts_report(&records, &spec),
            Err(reason) => (reason, Status::Unknown),
        };
        return say(&text, status);
    }
    let (text, status) = match counts() {
        Ok(counts) => report(&counts, &spec),
        Err(reason) => (reason, Status::Unknown),
    };
    say(&text, status)
}

/// The active alerts of the namespace's running watch (or of a watch of
/// every namespace, this namespace's): only a daemon knows them.
fn alerts() -> Result<Vec<serde_json::Value>, String> {
    use crate::live::serve::Request;
    let netns = super::own_netns().map_err(|e| e.to_string())?;
    ask_daemons(
        netns,
        |_| Request::Alerts,
        |answer| {
            Some(
                answer
                    .lines()
                    .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
                    .filter(|r| r["netns"] == netns)
                    .collect(),
            )
        },
    )
    .ok_or_else(|| {
        format!(
            "netconn check: UNKNOWN: no running netconn watch serves this namespace ({netns}); alerts come from one"
        )
    })
}

/// Asks the daemons that can answer for namespace `netns`, in turn: its
/// own watch, then a watch of every namespace (`request(true)` is what
/// that one is asked). The first answer `read` takes wins; `None` when no
/// daemon answers (none running, not root, a stale socket) or none of
/// their answers is taken.
fn ask_daemons<T>(
    netns: u32,
    request: impl Fn(bool) -> crate::live::serve::Request,
    read: impl Fn(String) -> Option<T>,
) -> Option<T> {
    use crate::live::serve::{node_socket_path, query, socket_path};
    [(socket_path(netns), false), (node_socket_path(), true)]
        .into_iter()
        .find_map(|(path, node)| read(query(&path, request(node), DAEMON_TIMEOUT).ok()?))
}

/// Prints the plugin's line; when stdout cannot take it (closed, a full
/// disk) the state is UNKNOWN, said on stderr: a plugin whose output is
/// lost must not report OK.
fn say(text: &str, status: Status) -> Status {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    if crate::host::stdout_was_closed() {
        eprintln!("netconn check: UNKNOWN: stdout is closed");
        return Status::Unknown;
    }
    match writeln!(out, "{text}").and_then(|()| out.flush()) {
        Ok(()) => status,
        Err(e) => {
            eprintln!("netconn check: UNKNOWN: cannot write to stdout: {e}");
            Status::Unknown
        }
    }
}

/// The running daemon's live counts, or a dump's.
fn counts() -> Result<Counts, String> {
    let netns = super::own_netns().map_err(|e| e.to_string())?;
    if let Some(live) = from_daemon(netns) {
        return Ok(live);
    }
    super::dump_counts().map_err(|e| e.to_string())
}

/// The live counts of the namespace's own daemon, or of a daemon counting
/// every namespace. `None` when none answers (none running, not root, a
/// stale socket) or its answer is not a counts record: the caller dumps
/// instead.
pub fn from_daemon(netns: u32) -> Option<Counts> {
    use crate::live::serve::Request;
    ask_daemons(
        netns,
        |node| {
            if node {
                Request::CountsOf(netns)
            } else {
                Request::Counts
            }
        },
        |answer| {
            let record: serde_json::Value = serde_json::from_str(answer.trim()).ok()?;
            // A daemon that counts another namespace (a socket name
            // planted in /run/netconn before root's daemon tightened it)
            // is not believed.
            if record["netns"] != netns {
                return None;
            }
            Counts::from_json(&record["connections"])
        },
    )
}
