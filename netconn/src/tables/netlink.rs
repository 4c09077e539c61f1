//! The netlink plumbing sock_diag and ctnetlink share: sockets, dump
//! requests, and walking messages and attributes.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

/// `struct nlmsghdr`.
pub const NLMSG_HDR: usize = 16;
pub const NLMSG_ERROR: u16 = 2;
pub const NLMSG_DONE: u16 = 3;
const NLM_F_REQUEST: u16 = 1;
const NLM_F_DUMP: u16 = 0x300;

/// A netlink socket of `protocol` (`NETLINK_SOCK_DIAG`...), `kind` being
/// `SOCK_DGRAM` or `SOCK_RAW`.
pub fn socket(kind: libc::c_int, protocol: libc::c_int) -> io::Result<OwnedFd> {
    // SAFETY: plain socket(2); the fd is owned right away.
    let fd = unsafe { libc::socket(libc::AF_NETLINK, kind | libc::SOCK_CLOEXEC, protocol) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh fd nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Sets a SOL_SOCKET option (`SO_RCVBUF`, `SO_RCVTIMEO`...) to `value`.
/// Best effort, as its callers treat it: a refused option leaves the
/// kernel's default.
pub fn set_socket_option<T>(sock: BorrowedFd, name: libc::c_int, value: &T) {
    // SAFETY: `value` is valid for size_of::<T>() bytes for the call.
    unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            name,
            (value as *const T).cast(),
            std::mem::size_of::<T>() as libc::socklen_t,
        )
    };
}

/// The header of a dump request of message type `kind`, `len` bytes in
/// all (header included).
pub fn dump_header(len: usize, kind: u16) -> [u8; NLMSG_HDR] {
    let mut h = [0u8; NLMSG_HDR];
    h[0..4].copy_from_slice(&(len as u32).to_ne_bytes());
    h[4..6].copy_from_slice(&kind.to_ne_bytes());
    h[6..8].copy_from_slice(&(NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes());
    h[8..12].copy_from_slice(&1u32.to_ne_bytes()); // sequence
    h
}

/// Sends a request to the kernel.
pub fn send(sock: BorrowedFd, req: &[u8]) -> io::Result<()> {
    // SAFETY: sockaddr_nl zeroed is the kernel's address (pid 0).
    let mut kernel: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
    kernel.nl_family = libc::AF_NETLINK as u16;
    // SAFETY: buffer and address are valid for the given lengths.
    let sent = unsafe {
        libc::sendto(
            sock.as_raw_fd(),
            req.as_ptr().cast(),
            req.len(),
            0,
            (&kernel as *const libc::sockaddr_nl).cast(),
            std::mem::size_of::<libc::sockaddr_nl>() as u32,
        )
    };
    if sent < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The (type, payload) messages of one datagram; a message running past
/// the datagram is an error.
pub fn messages(buf: &[u8]) -> impl Iterator<Item = io::Result<(u16, &[u8])>> {
    let mut rest = buf;
    std::iter::from_fn(move || {
        if rest.len() < NLMSG_HDR {
            return None;
        }
        let len = u32::from_ne_bytes(rest[0..4].try_into().unwrap()) as usize;
        let kind = u16::from_ne_bytes([rest[4], rest[5]]);
        if len < NLMSG_HDR || len > rest.len() {
            rest = &[];
            return Some(Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "truncated netlink message",
            )));
        }
        let payload = &rest[NLMSG_HDR..len];
        // Messages are 4-byte aligned.
        rest = rest.get((len + 3) & !3..).unwrap_or_default();
        Some(Ok((kind, payload)))
    })
}

/// The (type, payload) attributes in `buf` (nlattr or rtattr: the same
/// layout); the nested and byte-order flags are masked off the type.
pub fn attrs(buf: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    let mut rest = buf;
    std::iter::from_fn(move || {
        if rest.len() < 4 {
            return None;
        }
        let len = u16::from_ne_bytes([rest[0], rest[1]]) as usize;
        let kind = u16::from_ne_bytes([rest[2], rest[3]]) & 0x3fff;
        if len < 4 || len > rest.len() {
            return None;
        }
        let payload = &rest[4..len];
        rest = rest.get((len + 3) & !3..).unwrap_or_default();
        Some((kind, payload))
    })
}

/// The payload of the first attribute of type `kind`.
pub fn attr(buf: &[u8], kind: u16) -> Option<&[u8]> {
    attrs(buf).find(|(k, _)| *k == kind).map(|(_, p)| p)
}

/// One datagram of a dump: each data message goes to `each` as (type,
/// payload). True at NLMSG_DONE; an NLMSG_ERROR with a code is the error.
pub fn dump_batch(data: &[u8], each: &mut impl FnMut(u16, &[u8])) -> io::Result<bool> {
    for message in messages(data) {
        let (kind, payload) = message?;
        match kind {
            NLMSG_DONE => return Ok(true),
            NLMSG_ERROR => {
                let errno = payload
                    .get(0..4)
                    .map(|b| i32::from_ne_bytes(b.try_into().unwrap()))
                    .unwrap_or(0);
                if errno != 0 {
                    return Err(io::Error::from_raw_os_error(-errno));
                }
            }
            _ => each(kind, payload),
        }
    }
    Ok(false)
}

/// Receives the answer to a dump request until NLMSG_DONE.
pub fn recv_dump(sock: BorrowedFd, mut each: impl FnMut(u16, &[u8])) -> io::Result<()> {
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        // SAFETY: buf is valid for buf.len() bytes.
        let n = unsafe { libc::recv(sock.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n < 0 {
            let err = io::Error::last_os_error();
            if err.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(err);
        }
        if dump_batch(&buf[..n as usize], &mut each)? {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attributes_are_walked_aligned_and_flags_masked() {
        // type 1 (nested flag set), 1 byte of payload, padded to 8; type 2.
        let buf = [5u8, 0, 1, 0x80, 42, 0, 0, 0, 6, 0, 2, 0, 7, 8, 0, 0];
        let all: Vec<(u16, &[u8])> = attrs(&buf).collect();
        assert_eq!(all, [(1, &[42u8][..]), (2, &[7u8, 8][..])]);
        assert_eq!(attr(&buf, 2), Some(&[7u8, 8][..]));
        assert_eq!(attr(&buf[..6], 2), None);
    }
}
