//! Facts about where netconn runs: namespace, host name, time, the standard
//! file descriptors.

use std::os::unix::fs::MetadataExt;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::SystemTime;

/// Inode of the network namespace of the calling thread (what `ip netns
/// identify` and `lsns` show; the tracepoint filter compares against it).
pub fn netns_inode() -> std::io::Result<u32> {
    Ok(std::fs::metadata("/proc/thread-self/ns/net")?.ino() as u32)
}

/// Inode of the host's network namespace: that of PID 1, or, where PID 1's
/// namespaces cannot be read (some VMs and sandboxes hide them even from
/// root), that of PID 2, `kthreadd`, which every kernel starts in the
/// initial namespaces. None when neither can be read (an unprivileged
/// user reading another user's process): then no namespace is called the
/// host's. Read once.
pub fn host_netns() -> Option<u32> {
    static HOST: OnceLock<Option<u32>> = OnceLock::new();
    *HOST.get_or_init(|| {
        ["/proc/1/ns/net", "/proc/2/ns/net"]
            .iter()
            .find_map(|p| std::fs::metadata(p).ok())
            .map(|m| m.ino() as u32)
    })
}

/// "system" for the host's network namespace, "container" for any other.
pub fn namespace_class(netns: u32) -> &'static str {
    if host_netns() == Some(netns) {
        "system"
    } else {
        "container"
    }
}

/// The host name (of this UTS namespace).
pub fn hostname() -> String {
    nix::unistd::gethostname()
        .map(|h| h.to_string_lossy().into_owned())
        .unwrap_or_else(|_| String::from("unknown"))
}

/// Now, as RFC 3339 UTC with milliseconds.
pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_millis(SystemTime::now()).to_string()
}

static STDOUT_CLOSED: AtomicBool = AtomicBool::new(false);

/// Notes whether stdout was closed when netconn started (`>&-`). Rust's
/// runtime has by then put /dev/null, opened read-write, on every closed
/// standard descriptor (so no file opened later can become "stdout"); a
/// shell's `>/dev/null` opens it write-only. Called first thing in `main`.
pub fn guard_std_fds() {
    use nix::fcntl::{FcntlArg, OFlag, fcntl};
    use nix::sys::stat::fstat;
    // SAFETY: fd 1 is open: the runtime made sure of it before main.
    let out = unsafe { std::os::fd::BorrowedFd::borrow_raw(1) };
    let dev_null = std::fs::metadata("/dev/null").ok().map(|m| {
        use std::os::unix::fs::MetadataExt;
        m.rdev()
    });
    let is_null = fstat(out)
        .is_ok_and(|st| st.st_mode & libc::S_IFMT == libc::S_IFCHR && Some(st.st_rdev) == dev_null);
    let read_write = fcntl(out, FcntlArg::F_GETFL)
        .is_ok_and(|f| OFlag::from_bits_truncate(f) & OFlag::O_ACCMODE == OFlag::O_RDWR);
    if is_null && read_write {
        STDOUT_CLOSED.store(true, Ordering::Release);
    }
}

/// Whether stdout was closed at start (see [`guard_std_fds`]).
pub fn stdout_was_closed() -> bool {
    STDOUT_CLOSED.load(Ordering::Acquire)
}

/// The command name of process `pid` (`/proc/PID/comm`).
pub fn comm_of(pid: u32) -> Option<String> {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .ok()
        .map(|c| c.trim_end().to_owned())
}

/// `s` with every control character (C0, DEL, C1) written as an escape
/// (`\x1b`, `\u{9b}`): a name that a process or a container chose
/// (`prctl(PR_SET_NAME)`, a host name, a cgroup), printed on a terminal,
/// cannot move its cursor, retitle or recolour it.
pub fn printable(s: &str) -> std::borrow::Cow<'_, str> {
    if !s.chars().any(char::is_control) {
        return std::borrow::Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            c if (c as u32) < 0x80 && c.is_control() => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            c if c.is_control() => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    std::borrow::Cow::Owned(out)
}

#[cfg(test)]
mod printable_tests {
    use super::printable;

    #[test]
    fn control_characters_are_escaped_and_the_rest_kept() {
        assert_eq!(printable("nginx: worker"), "nginx: worker");
        assert_eq!(
            printable("\x1b]0;PWNED\x07\x1b[31m"),
            "\\x1b]0;PWNED\\x07\\x1b[31m"
        );
        assert_eq!(printable("a\nb\u{9b}c\u{7f}"), "a\\x0ab\\u{9b}c\\x7f");
        assert_eq!(printable("héllo"), "héllo");
    }
}
