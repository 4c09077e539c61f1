//! `--netns NAME|PATH|pid:PID`: the namespace a subcommand works in,
//! entered before anything else happens, so that every socket, dump and
//! `/proc/net` read (and every thread started later) is in it, as under
//! `ip netns exec`.

use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

use nix::sched::{CloneFlags, setns};

/// Where `ip netns add` puts its names.
pub const NAMED_DIR: &str = "/run/netns";

/// A network namespace named on the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A name under [`NAMED_DIR`].
    Name(String),
    /// A file that is a network namespace (`/proc/PID/ns/net`, a bind mount).
    Path(PathBuf),
    /// The namespace of a running process.
    Pid(u32),
}

impl std::str::FromStr for Target {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        if let Some(pid) = s.strip_prefix("pid:") {
            return match pid.parse::<u32>() {
                Ok(p) if p > 0 => Ok(Self::Pid(p)),
                _ => Err(format!("expected pid:PID with a process id, got {s:?}")),
            };
        }
        if s.is_empty() {
            return Err("expected a namespace name, a path or pid:PID".into());
        }
        if s.contains('/') {
            return Ok(Self::Path(PathBuf::from(s)));
        }
        if s == "." || s == ".." {
            return Err(format!("{s:?} is not a namespace name"));
        }
        Ok(Self::Name(s.to_owned()))
    }
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Name(n) => write!(f, "{n}"),
            Self::Path(p) => write!(f, "{}", p.display()),
            Self::Pid(p) => write!(f, "pid:{p}"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    #[error("--netns {0}: no network namespace of that name under {NAMED_DIR} (see ip netns list)")]
    NoName(Target),
    #[error("--netns {0}: no such process")]
    NoProcess(Target),
    #[error("--netns {0}: {1}")]
    Open(Target, #[source] std::io::Error),
    #[error("--netns {0}: not a network namespace")]
    NotNetns(Target),
    #[error("--netns {0}: cannot enter it (root needed): {1}")]
    Enter(Target, #[source] nix::Error),
}

impl Target {
    /// The namespace's file.
    pub fn path(&self) -> PathBuf {
        match self {
            Self::Name(n) => PathBuf::from(NAMED_DIR).join(n),
            Self::Path(p) => p.clone(),
            Self::Pid(p) => PathBuf::from(format!("/proc/{p}/ns/net")),
        }
    }

    /// Opens the namespace's file.
    pub fn open(&self) -> Result<File, TargetError> {
        File::open(self.path()).map_err(|e| match (self, e.kind()) {
            (Self::Name(_), std::io::ErrorKind::NotFound) => TargetError::NoName(self.clone()),
            (Self::Pid(_), std::io::ErrorKind::NotFound) => TargetError::NoProcess(self.clone()),
            _ => TargetError::Open(self.clone(), e),
        })
    }

    /// Moves the calling thread into the namespace; threads it starts
    /// later are born there. Returns the namespace's inode.
    pub fn enter(&self) -> Result<u32, TargetError> {
        let file = self.open()?;
        let inode = file.metadata().map(|m| m.ino() as u32).unwrap_or(0);
        setns(&file, CloneFlags::CLONE_NEWNET).map_err(|e| match e {
            nix::Error::EINVAL => TargetError::NotNetns(self.clone()),
            e => TargetError::Enter(self.clone(), e),
        })?;
        Ok(inode)
    }
}

/// Runs `f` on a thread of its own that has joined the namespace in
/// `file`, and returns what it returns: the caller stays where it is.
pub fn run_in<T: Send>(file: &File, f: impl FnOnce() -> T + Send) -> Result<T, nix::Error> {
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                setns(file, CloneFlags::CLONE_NEWNET)?;
                Ok(f())
            })
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}

/// Runs `f` on the calling thread inside the namespace in `file`, then
/// moves the thread back where it was (also when `f` panics): no thread is
/// made, so a namespace visited every interval costs two `setns` instead
/// of a thread's start and end. What `f` opens stays in the namespace;
/// only for callers that create no socket of their own meanwhile.
pub fn visit<T>(file: &File, f: impl FnOnce() -> T) -> Result<T, nix::Error> {
    let home = File::open("/proc/thread-self/ns/net")
        .map_err(|e| nix::Error::from_raw(e.raw_os_error().unwrap_or(libc::EIO)))?;
    setns(file, CloneFlags::CLONE_NEWNET)?;
    /// Moves the thread home on drop.
    struct Back(File);
    impl Drop for Back {
        fn drop(&mut self) {
            if setns(&self.0, CloneFlags::CLONE_NEWNET).is_err() {
                // A thread left in another namespace would count and
                // serve there: better no daemon than a wrong one.
                std::process::abort();
            }
        }
    }
    let _back = Back(home);
    Ok(f())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_paths_and_pids() {
        assert_eq!("web".parse(), Ok(Target::Name("web".into())));
        assert_eq!(
            "/proc/1/ns/net".parse(),
            Ok(Target::Path("/proc/1/ns/net".into()))
        );
        assert_eq!("./ns".parse(), Ok(Target::Path("./ns".into())));
        assert_eq!("pid:42".parse(), Ok(Target::Pid(42)));
        for bad in ["", "pid:", "pid:0", "pid:x", "pid:-1", ".", ".."] {
            assert!(bad.parse::<Target>().is_err(), "{bad:?}");
        }
        assert_eq!(
            Target::Name("web".into()).path(),
            PathBuf::from("/run/netns/web")
        );
        assert_eq!(Target::Pid(7).path(), PathBuf::from("/proc/7/ns/net"));
        assert_eq!(Target::Pid(7).to_string(), "pid:7");
    }
}
