//! Where records go: stdout or a file, one JSON object per line.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

pub enum Sink {
    Stdout(io::Stdout),
    File { file: File, path: PathBuf },
}

/// Writing failed; `Closed` means the reader went away (e.g. `| head`).
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("output closed")]
    Closed,
    #[error("cannot write to {path}: {source}")]
    Write {
        path: String,
        #[source]
        source: io::Error,
    },
}

impl Sink {
    /// Stdout, or `path` opened for appending (created if missing): for
    /// NDJSON records, which add up.
    pub fn open(path: Option<&Path>) -> Result<Self, String> {
        Self::open_with(path, OpenOptions::new().create(true).append(true))
    }

    /// Stdout, or `path` created or emptied: for a whole document (a
    /// table, a JSON array) that a second run must replace, not extend.
    pub fn create(path: Option<&Path>) -> Result<Self, String> {
        Self::open_with(
            path,
            OpenOptions::new().create(true).write(true).truncate(true),
        )
    }

    fn open_with(path: Option<&Path>, options: &OpenOptions) -> Result<Self, String> {
        match path {
            None if crate::host::stdout_was_closed() => {
                Err("stdout is closed; nothing could be written (use --output FILE)".into())
            }
            None => Ok(Self::Stdout(io::stdout())),
            Some(p) => refuse_planted_link(p)
                .and_then(|()| options.open(p))
                .map(|file| Self::File {
                    file,
                    path: p.to_owned(),
                })
                .map_err(|e| format!("cannot open --output {}: {e}", p.display())),
        }
    }

    /// Writes one record as one line and flushes it, so a pipeline sees
    /// every record as soon as it is made.
    pub fn write(&mut self, record: &impl serde::Serialize) -> Result<(), SinkError> {
        let mut line = serde_json::to_vec(record).expect("JSON values always serialize");
        line.push(b'\n');
        self.write_bytes(&line)
    }

    /// Writes text as it is (tables for people).
    pub fn write_bytes(&mut self, line: &[u8]) -> Result<(), SinkError> {
        let (result, path) = match self {
            Self::Stdout(out) => {
                let mut lock = out.lock();
                (
                    lock.write_all(line).and_then(|_| lock.flush()),
                    "stdout".to_owned(),
                )
            }
            Self::File { file, path } => (file.write_all(line), path.display().to_string()),
        };
        result.map_err(|source| {
            if source.kind() == io::ErrorKind::BrokenPipe {
                SinkError::Closed
            } else {
                SinkError::Write { path, source }
            }
        })
    }
}

/// Refuses `path` when it is a symlink made by neither root nor the owner
/// of what it points to, as the kernel's `protected_symlinks` rule would
/// (it is off on some hosts): a link another user planted where root's
/// output goes would have root write to a file of the planter's choosing.
pub fn refuse_planted_link(path: &Path) -> io::Result<()> {
    use std::os::unix::fs::MetadataExt;
    let Ok(link) = std::fs::symlink_metadata(path) else {
        return Ok(());
    };
    if !link.file_type().is_symlink() {
        return Ok(());
    }
    let target_owner = std::fs::metadata(path).ok().map(|m| m.uid());
    if link.uid() == 0 || Some(link.uid()) == target_owner {
        return Ok(());
    }
    Err(io::Error::new(
        io::ErrorKind::PermissionDenied,
        format!(
            "a symlink made by uid {} (not root, not the owner of its target): not followed",
            link.uid()
        ),
    ))
}
