//! The running daemon's live state, served on a Unix socket readable by
//! root only, so `netconn check` answers from memory instead of dumping the
//! socket tables, and `netconn list` learns the processes behind the
//! sockets the daemon saw being created.
//!
//! Protocol: connect, write one request line; the daemon answers and
//! closes. `counts`: one counts record (a JSON line). `owners`: a line
//! `COOKIE PID COMM` per TCP socket whose process the daemon knows. One
//! socket per network namespace, named by its inode.

use std::io::{self, Read};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Directory of the daemons' sockets (mode 0700).
pub const SOCKET_DIR: &str = "/run/netconn";

/// The socket of the daemon counting namespace `netns`.
pub fn socket_path(netns: u32) -> PathBuf {
    Path::new(SOCKET_DIR).join(format!("netns-{netns}.sock"))
}

/// A listening socket, removed again on drop.
pub struct Served {
    pub listener: UnixListener,
    path: PathBuf,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Why the daemon does not serve.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("another netconn watch already serves this namespace at {0}")]
    Taken(PathBuf),
    #[error("cannot serve counts at {0}: {1}")]
    Io(PathBuf, #[source] io::Error),
}

/// Binds the namespace's socket, replacing a stale one (left by a daemon
/// that was killed) but never a live one.
pub fn bind(path: &Path) -> Result<Served, ServeError> {
    let io_err = |e| ServeError::Io(path.to_owned(), e);
    if let Some(dir) = path.parent() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(io_err)?;
    }
    if path.exists() {
        if UnixStream::connect(path).is_ok() {
            return Err(ServeError::Taken(path.to_owned()));
        }
        std::fs::remove_file(path).map_err(io_err)?;
    }
    let listener = UnixListener::bind(path).map_err(io_err)?;
    let served = Served {
        listener,
        path: path.to_owned(),
    };
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(io_err)?;
    served.listener.set_nonblocking(true).map_err(io_err)?;
    Ok(served)
}

/// What a client asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    Counts,
    Owners,
}

impl Request {
    fn line(self) -> &'static str {
        match self {
            Request::Counts => "counts\n",
            Request::Owners => "owners\n",
        }
    }

    /// Reads a client's request line (waiting at most `timeout`).
    pub fn read(stream: &mut UnixStream, timeout: Duration) -> io::Result<Request> {
        stream.set_read_timeout(Some(timeout))?;
        let mut line = Vec::with_capacity(8);
        let mut byte = [0u8; 1];
        while line.len() < 16 {
            if stream.read(&mut byte)? == 0 || byte[0] == b'\n' {
                break;
            }
            line.push(byte[0]);
        }
        match line.as_slice() {
            b"counts" => Ok(Request::Counts),
            b"owners" => Ok(Request::Owners),
            _ => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "unknown request",
            )),
        }
    }
}

/// Asks the daemon at `path`; its whole answer.
pub fn query(path: &Path, request: Request, timeout: Duration) -> io::Result<String> {
    let mut stream = UnixStream::connect(path)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    io::Write::write_all(&mut stream, request.line().as_bytes())?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer)?;
    Ok(answer)
}

/// One `owners` answer line.
pub fn owner_line(cookie: u64, pid: u32, comm: &str) -> String {
    // comm may hold spaces: it comes last and runs to the end of the line.
    format!("{cookie} {pid} {}\n", comm.replace('\n', " "))
}

/// Parses an `owners` answer: cookie -> (pid, comm).
pub fn parse_owners(text: &str) -> std::collections::HashMap<u64, (u32, String)> {
    text.lines()
        .filter_map(|l| {
            let mut parts = l.splitn(3, ' ');
            let cookie = parts.next()?.parse().ok()?;
            let pid = parts.next()?.parse().ok()?;
            Some((cookie, (pid, parts.next().unwrap_or("").to_owned())))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn serves_one_line_and_refuses_a_second_daemon() {
        let dir = std::env::temp_dir().join(format!("netconn-serve-test-{}", std::process::id()));
        let path = dir.join("netns-1.sock");
        let served = bind(&path).unwrap();
        let client = std::thread::spawn({
            let path = path.clone();
            move || query(&path, Request::Counts, Duration::from_secs(5)).unwrap()
        });
        served.listener.set_nonblocking(false).unwrap();
        let (mut conn, _) = served.listener.accept().unwrap();
        assert_eq!(
            Request::read(&mut conn, Duration::from_secs(5)).unwrap(),
            Request::Counts
        );
        conn.write_all(b"{\"type\":\"counts\"}\n").unwrap();
        drop(conn);
        assert_eq!(client.join().unwrap(), "{\"type\":\"counts\"}\n");
        assert!(matches!(bind(&path), Err(ServeError::Taken(_))));
        drop(served);
        assert!(!path.exists(), "removed on drop");
        // A stale socket file (daemon killed) is replaced.
        let stale = UnixListener::bind(&path).unwrap();
        drop(stale);
        assert!(path.exists());
        let served = bind(&path).unwrap();
        drop(served);
        let _ = std::fs::remove_dir(&dir);
    }

    #[test]
    fn owner_lines_round_trip_names_with_spaces() {
        let text = owner_line(42, 7, "my worker") + &owner_line(43, 8, "sh");
        let owners = parse_owners(&(text + "garbage\n"));
        assert_eq!(owners[&42], (7, "my worker".to_owned()));
        assert_eq!(owners[&43], (8, "sh".to_owned()));
        assert_eq!(owners.len(), 2);
    }
}
