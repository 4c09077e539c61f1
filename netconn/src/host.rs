//! Facts about where netconn runs: namespace, host name, time.

use std::os::unix::fs::MetadataExt;
use std::time::SystemTime;

/// Inode of the network namespace of the calling thread (what `ip netns
/// identify` and `lsns` show; the tracepoint filter compares against it).
pub fn netns_inode() -> std::io::Result<u32> {
    Ok(std::fs::metadata("/proc/thread-self/ns/net")?.ino() as u32)
}

/// The host name (of this UTS namespace).
pub fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: buf is valid for its length; gethostname NUL-terminates or
    // truncates within it.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return String::from("unknown");
    }
    let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

/// Now, as RFC 3339 UTC with milliseconds.
pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_millis(SystemTime::now()).to_string()
}
