//! Command-line interface.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::config::parse_interval;

/// eBPF-powered, real-time connection tracker.
///
/// netconn counts the TCP and UDP sockets of the network namespace it runs
/// in, per conn-type (tcp, tcp6, udp, udp6) and state, and prints them as
/// NDJSON: one JSON object per line. `--netns` (or `ip netns exec`) chooses
/// another namespace.
#[derive(Debug, Parser)]
#[command(name = "netconn", version, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// Work in this network namespace instead of netconn's own: a name
    /// under /run/netns (ip netns add), the path of a namespace file
    /// (/proc/PID/ns/net, a bind mount) or pid:PID for a process's.
    #[arg(long, global = true, value_name = "NAME|PATH|pid:PID")]
    pub netns: Option<crate::namespaces::target::Target>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Stream live connection counts, one record per interval.
    ///
    /// Loads the eBPF program (root needed), takes one snapshot of the socket
    /// tables and keeps the counts live from kernel events: no polling of
    /// the TCP tables. Without eBPF it says why on stderr and polls instead
    /// ("source":"poll"). Ctrl-C or SIGTERM writes a final record, detaches
    /// everything and exits 0; SIGHUP makes it take a fresh snapshot.
    Watch(WatchArgs),
    /// Print one counts record from a one-shot dump of the socket tables.
    ///
    /// Needs no eBPF and no privileges.
    Snapshot(SnapshotArgs),
    /// Nagios/Icinga plugin: connection counts per conn-type and state.
    ///
    /// A drop-in for the Linuxfabrik network-connections check: same
    /// options, output and perfdata. Counts come from a running `netconn
    /// watch` of this namespace when there is one (its live counts, from
    /// memory), otherwise from a one-shot dump. With --alerts: the running
    /// watch's active alerts instead. Exit codes: 0 OK, 1 WARNING, 2
    /// CRITICAL (the worst over all pairs), 3 UNKNOWN (bad arguments, or
    /// the kernel could not be read).
    Check(CheckArgs),
    /// Print one conntrack record: table count, max and utilization,
    /// per-second rates of the kernel's conntrack counters over a window.
    ///
    /// `watch` adds such a record every interval, with live NEW/DESTROY
    /// events per protocol from ctnetlink and alert records when the table
    /// fills (warning 90 %, critical 95 %, clear below 85 %; [conntrack]
    /// in the configuration).
    Conntrack(ConntrackArgs),
    /// List the namespace's sockets: one row each, or grouped.
    ///
    /// Columns: proto, state, local and remote address, direction (listen,
    /// inbound = accepted, outbound = connected, local = the peer is this
    /// host), process, smoothed RTT and retransmitted segments (the
    /// kernel's tcp_info, as `ss -ti` shows them), network namespace.
    /// From one dump; needs no eBPF. Processes come from the namespace's
    /// running `watch --events` (the TCP sockets it saw connect, listen or
    /// be accepted), and with --processes from /proc for the others.
    List(ListArgs),
    /// A live view in the terminal: counts by state, rates, TCP metrics,
    /// listeners, alerts, connections.
    ///
    /// Reads the namespace's running `watch` (or the `watch
    /// --all-namespaces` daemon) over its root-only socket and refreshes on
    /// its interval; with no daemon it starts a `watch --interval 1s` of its
    /// own for as long as it runs (without root: dumps the socket tables
    /// itself every second, counts only). Keys: Tab or 1/2/3 switch views (overview,
    /// connections, namespaces); in connections `/` filters (process, port,
    /// address), `s` sorts by the next column, `r` reverses, `a` groups by
    /// direction, process, protocol and port; ↑↓ move; Enter opens a
    /// namespace's overview; `q` or Ctrl-C quits. NO_COLOR turns colours
    /// off.
    Top(TopArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish,
    /// powershell).
    ///
    /// For example `netconn completions bash >
    /// /usr/share/bash-completion/completions/netconn`.
    Completions(CompletionsArgs),
    /// Print the man page (roff), or with --dir write one page per
    /// subcommand too (netconn-watch.1, ...).
    #[command(hide = true)]
    Man(ManArgs),
}

#[derive(Debug, Args)]
pub struct ManArgs {
    /// Write netconn.1 and a page per subcommand into DIR.
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// One JSON array instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Group by direction, process, protocol and service port, with counts.
    #[arg(long)]
    pub aggregate: bool,
    /// Find the processes a running `watch --events` does not know by
    /// walking /proc/*/fd (what makes `ss -p` slow, hence opt-in; root sees
    /// every process).
    #[arg(long, short)]
    pub processes: bool,
    /// Write to FILE (replacing it) instead of stdout.
    #[arg(long, short, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Every network namespace of the host (those with a process in them
    /// or a name under /run/netns), each row with its namespace's owner:
    /// container, pod, cgroup, processes.
    #[arg(long, short = 'A', conflicts_with = "netns")]
    pub all_namespaces: bool,
}

#[derive(Debug, Args)]
pub struct TopArgs {
    /// Every namespace, from the running `watch --all-namespaces`: a row
    /// each (owner, totals, trend), Enter for one's overview.
    #[arg(long, short = 'A', conflicts_with = "netns")]
    pub all_namespaces: bool,
}

#[derive(Debug, Args)]
pub struct ConntrackArgs {
    /// Window the counter rates are measured over.
    #[arg(long, short, value_name = "DURATION", default_value = "1s", value_parser = parse_interval)]
    pub window: Duration,
    /// Append the record to FILE instead of stdout.
    #[arg(long, short, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// TOML configuration (for the [conntrack] alert thresholds).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
}

/// The check's options, as `netconn check --help` lists them (they are
/// read by [`crate::plugin::args`], the way the plugin's argparse reads
/// them).
pub const CHECK_OPTIONS: &str = "\
Options (those of the Linuxfabrik network-connections plugin):
  --conn-type TYPE      Only this conn-type: all, tcp, tcp6, udp, udp6.
                        Repeat it (or separate with commas). Default: all
  --conn-status STATUS  Only this state: all, close, close_wait, closing,
                        established, fin_wait1, fin_wait2, last_ack, listen,
                        none (UDP), syn_recv, syn_sent, time_wait. Repeat it
                        (or separate with commas). Default: all
  -w, --warning RANGE   WARNING range for the count of each conn-type and
                        state: 10, 10:, :, ~:10, 10:20, @10:20, @, 90%:,
                        none. Default: none
  -c, --critical RANGE  CRITICAL range, same forms. Default: none
  --always-ok           Always exit 0 (OK), with \"(always ok)\" in the text.
  --no-perfdata         Leave the performance data out (the state stays).
  --netns NS            Check that network namespace (netconn's own option).
  --alerts              Report the running watch's active alerts instead of
                        the counts: WARNING or CRITICAL by the worst, each
                        alert and what it is about in the text (netconn's
                        own option; UNKNOWN when no watch runs).
  -V, --version         The version.
  -h, --help            This help.

As with the plugin, an option it does not know is ignored, the last -w/-c
wins, long options may be shortened to a unique prefix (--crit), and values
come as `-w 5`, `-w5` or `--warning=5` (a range that starts with a dash
must be attached: `--warning=-5:-1`).";

#[derive(Debug, Args)]
#[command(disable_help_flag = true, disable_version_flag = true,
          override_usage = "netconn check [OPTIONS]",
          after_long_help = CHECK_OPTIONS, after_help = CHECK_OPTIONS)]
pub struct CheckArgs {
    /// The plugin's options (listed below).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, num_args = 0..,
          value_name = "OPTIONS", hide = true)]
    pub options: Vec<String>,
}

/// Time between records unless the command line, `NETCONN_INTERVAL` or the
/// configuration says otherwise.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(10);

#[derive(Debug, Args)]
pub struct WatchArgs {
    /// Time between records, e.g. 500ms, 1s, 10s, 1m [default: 10s, or
    /// NETCONN_INTERVAL, or the configuration's interval].
    #[arg(long, short, value_name = "DURATION", value_parser = parse_interval,
          allow_hyphen_values = true)]
    pub interval: Option<Duration>,
    /// TOML configuration: interval, [tags], [[addr_ports]] port groups
    /// [default: /etc/netconn/netconn.toml if it exists]. NETCONN_INTERVAL,
    /// NETCONN_ADDR_PORTS (a JSON list of ports) and NETCONN_TAGS
    /// (k=v,k=v) override it.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Stop after N counts records (the first, at start, included).
    #[arg(long, short = 'n', value_name = "N", value_parser = parse_count)]
    pub count: Option<u64>,
    /// Append records to FILE instead of stdout.
    #[arg(long, short, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Do not load eBPF: poll the socket tables every interval.
    #[arg(long)]
    pub poll: bool,
    /// Also write a "type":"conn" record when a TCP connection opens and
    /// when it closes (addresses, direction, process; at close duration,
    /// bytes, RTT, retransmits and the reason), as they happen.
    #[arg(long)]
    pub events: bool,
    /// Leave out the TCP metrics (RTT, retransmissions, resets): about
    /// 0.6 to 0.7 µs less kernel time per connection. Their sock_ops program then
    /// asks for no RTT samples and only marks connected sockets for the
    /// ephemeral-port count (with --no-ephemeral-ports too, it is not
    /// loaded). For hosts where connection churn is the bottleneck.
    #[arg(long)]
    pub no_tcp_metrics: bool,
    /// Leave out `ephemeral_ports` and the `port_exhaustion` alert: the
    /// programs then stop counting connections per destination (about
    /// 0.2 µs of kernel time per connection, 0.5 to 0.6 µs with
    /// --no-tcp-metrics, where the sock_ops program is then not loaded).
    #[arg(long)]
    pub no_ephemeral_ports: bool,
    /// Count every network namespace of the host: one counts record per
    /// namespace each interval, with "namespace" (system or container) and
    /// its "owner" (container, pod, cgroup, processes), then a "host"
    /// record with their sum; "netns" records when one appears or goes.
    /// Port groups, TCP metrics, listeners and conntrack are each
    /// namespace's own; with --events, connection records carry the owner.
    #[arg(long, short = 'A', conflicts_with = "netns")]
    pub all_namespaces: bool,
    /// With --all-namespaces: namespaces counted apart at most (1 to 512).
    /// Past it, namespaces of the host's own users (the system, its
    /// containers and pods) take the place of namespaces made inside
    /// unprivileged user namespaces; the host record lists those left
    /// untracked, and each is adopted as soon as a slot frees.
    #[arg(long, value_name = "N", default_value_t = netconn_common::MAX_NAMESPACES,
          value_parser = clap::value_parser!(u32).range(1..=netconn_common::MAX_NAMESPACES as i64),
          requires = "all_namespaces")]
    pub max_namespaces: u32,
    /// Also dump the socket tables each interval and add a "verify" object
    /// with the per-state differences (live - dump). At rest they are zero;
    /// under churn the two readings are moments apart.
    #[arg(long)]
    pub verify: bool,
    /// Serve Prometheus / OpenMetrics metrics at http://ADDR:PORT/metrics
    /// (e.g. 127.0.0.1:9470, or [::]:9470 for every address): the counts
    /// read live at each scrape, the TCP figures as running totals.
    #[arg(long, value_name = "ADDR:PORT", value_parser = parse_listen)]
    pub listen: Option<std::net::SocketAddr>,
    /// With --listen: TLS and basic authentication for the endpoint, from
    /// a file in the Prometheus exporter toolkit's web configuration
    /// format (`tls_server_config` with `cert_file` and `key_file`;
    /// `basic_auth_users` with bcrypt hashes), as node_exporter's
    /// `--web.config.file` takes it.
    #[arg(
        long,
        value_name = "FILE",
        requires = "listen",
        alias = "web.config.file"
    )]
    pub web_config_file: Option<PathBuf>,
    /// What each interval writes: netconn's records (json), DataKit's
    /// netstat and netstat_port measurements as JSON points (datakit), or
    /// the same points in InfluxDB line protocol (line).
    #[arg(long, value_enum, default_value_t = Format::Json,
          conflicts_with_all = ["events", "all_namespaces"])]
    pub format: Format,
}

/// `watch --format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Json,
    Datakit,
    Line,
}

/// `--listen`: an address and a port.
pub fn parse_listen(s: &str) -> Result<std::net::SocketAddr, String> {
    s.parse()
        .map_err(|_| format!("expected ADDR:PORT (127.0.0.1:9470, [::1]:9470), got {s:?}"))
}

#[derive(Debug, Args)]
pub struct SnapshotArgs {
    /// Append the record to FILE instead of stdout.
    #[arg(long, short, value_name = "FILE")]
    pub output: Option<PathBuf>,
}

/// A positive record count.
pub fn parse_count(s: &str) -> Result<u64, String> {
    match s.parse::<u64>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(_) => Err(format!("expected a positive whole number, got {s:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_interval("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_interval("1s"), Ok(Duration::from_secs(1)));
        assert_eq!(parse_interval("1m"), Ok(Duration::from_secs(60)));
        assert!(parse_interval("0s").is_err());
        assert!(parse_interval("10x").is_err());
        assert!(parse_interval("").is_err());
        assert!(parse_interval("-1s").is_err());
        // A negative interval reaches the parser (not "unexpected argument").
        let err = Cli::try_parse_from(["netconn", "watch", "--interval", "-1s"]).unwrap_err();
        assert!(err.to_string().contains("expected a duration"), "{err}");
    }

    #[test]
    fn cli_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn check_hands_its_options_over_as_written() {
        let argv = [
            "netconn",
            "check",
            "--conn-type",
            "tcp,udp",
            "-w",
            "~:10",
            "--bogus",
            "-c",
            "@-5:-1",
            "-V",
            "-h",
            "--netns",
            "x",
        ];
        let cli = Cli::try_parse_from(argv).unwrap();
        let Command::Check(args) = cli.command else {
            panic!("not check");
        };
        assert_eq!(args.options, argv[2..]);
        assert_eq!(cli.netns, None);
    }

    #[test]
    fn count_zero_is_refused() {
        assert!(Cli::try_parse_from(["netconn", "watch", "--count", "0"]).is_err());
        assert!(Cli::try_parse_from(["netconn", "watch", "--count", "2", "-i", "1s"]).is_ok());
    }
}
