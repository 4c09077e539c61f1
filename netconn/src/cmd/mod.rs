//! One module per subcommand.

pub mod check;
pub mod conntrack;
pub mod list;
pub mod snapshot;
pub mod watch;

/// An error that ends the program: its message is one line on stderr.
#[derive(Debug, thiserror::Error)]
pub enum CmdError {
    /// The user asked for something impossible (exit 2).
    #[error("{0}")]
    Usage(String),
    /// The kernel or the system failed us (exit 1).
    #[error("{0}")]
    Failed(String),
}

impl CmdError {
    pub fn exit_code(&self) -> i32 {
        match self {
            CmdError::Usage(_) => 2,
            CmdError::Failed(_) => 1,
        }
    }
}

/// A one-shot command's write: a reader that went away (`| head`) is no
/// error, any other failure is.
pub fn written(result: Result<(), crate::output::sink::SinkError>) -> Result<(), CmdError> {
    match result {
        Ok(()) | Err(crate::output::sink::SinkError::Closed) => Ok(()),
        Err(e) => Err(CmdError::Failed(e.to_string())),
    }
}

/// The network namespace this process counts.
pub fn own_netns() -> Result<u32, CmdError> {
    crate::host::netns_inode()
        .map_err(|e| CmdError::Failed(format!("cannot read own network namespace: {e}")))
}

/// Counts of a one-shot dump of every conn-type.
pub fn dump_counts() -> Result<crate::model::counts::Counts, CmdError> {
    crate::tables::snapshot::counts()
        .map_err(|e| CmdError::Failed(format!("cannot dump the socket tables: {e}")))
}
