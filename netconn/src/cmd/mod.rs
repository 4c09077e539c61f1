//! One module per subcommand.

pub mod check;
pub mod conntrack;
pub mod docs;
pub mod list;
pub mod snapshot;
pub mod top;
pub mod watch;

use std::io;

use crate::config::ConfigError;
use crate::live::resync::LiveError;
use crate::output::sink::SinkError;
use crate::output::writer::OpenError;

/// An error that ends the program: its message is one line on stderr; its
/// type says whose it is, and so the exit code.
#[derive(Debug, thiserror::Error)]
pub enum CmdError {
    /// A bad configuration file or variable (exit 2).
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// `--output` cannot be opened, or stdout is closed (exit 2).
    #[error(transparent)]
    Output(#[from] OpenError),
    /// Anything else the user asked for that cannot be (exit 2).
    #[error("{0}")]
    Usage(String),
    /// The live counts failed: the kernel programs or a dump (exit 1).
    #[error(transparent)]
    Live(#[from] LiveError),
    /// Writing the output failed (exit 1).
    #[error(transparent)]
    Write(#[from] SinkError),
    /// A dump of the socket tables failed (exit 1).
    #[error("cannot dump the socket tables: {0}")]
    Dump(#[source] io::Error),
    /// Another part of the system failed us (exit 1).
    #[error("{what}: {source}")]
    System {
        what: String,
        #[source]
        source: io::Error,
    },
}

impl CmdError {
    pub fn exit_code(&self) -> i32 {
        match self {
            Self::Config(_) | Self::Output(_) | Self::Usage(_) => 2,
            Self::Live(_) | Self::Write(_) | Self::Dump(_) => 1,
            Self::System { .. } => 1,
        }
    }

    /// A failure of the system, said with what netconn was doing.
    pub fn system(what: impl Into<String>) -> impl Fn(io::Error) -> Self {
        let what = what.into();
        move |source| Self::System {
            what: what.clone(),
            source,
        }
    }
}

/// A one-shot command's write: a reader that went away (`| head`) is no
/// error, any other failure is.
pub fn written(result: Result<(), SinkError>) -> Result<(), CmdError> {
    match result {
        Ok(()) | Err(SinkError::Closed) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// The network namespace this process counts.
pub fn own_netns() -> Result<u32, CmdError> {
    crate::host::netns_inode().map_err(CmdError::system("cannot read own network namespace"))
}

/// Counts of a one-shot dump of every conn-type.
pub fn dump_counts() -> Result<crate::model::counts::Counts, CmdError> {
    crate::tables::snapshot::counts().map_err(CmdError::Dump)
}
