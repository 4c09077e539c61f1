//! `netconn conntrack`: one conntrack record.

use super::CmdError;
use crate::cli::ConntrackArgs;
use crate::config::Config;
use crate::conntrack::Monitor;
use crate::host;
use crate::output::sink::Sink;

pub fn run(args: ConntrackArgs) -> Result<(), CmdError> {
    Config::check_env_text()?;
    let config = Config::load(args.config.as_deref(), |k| std::env::var(k).ok())?;
    let mut sink = Sink::open(args.output.as_deref()).map_err(CmdError::Usage)?;
    let netns = super::own_netns()?;
    let host = host::hostname();
    // Rates need two readings of the counters: the monitor takes the
    // first, the record the second.
    let mut monitor = Monitor::new(false, config.conntrack);
    std::thread::sleep(args.window);
    let time = host::now_rfc3339();
    let reading = monitor.read(&host, netns, &time);
    super::written(sink.write(&reading.record))?;
    match &reading.alert {
        Some(alert) => super::written(sink.write(alert)),
        None => Ok(()),
    }
}
