//! One-shot dump of the namespace's TCP and UDP sockets over
//! NETLINK_SOCK_DIAG, the interface `ss` uses (`net/ipv4/inet_diag.c`).
//!
//! Written against the raw ABI (`linux/inet_diag.h`) rather than a netlink
//! crate: each socket costs one fixed 72-byte `inet_diag_msg` read in place,
//! with no per-socket allocation, which is what keeps a 200k-socket dump
//! fast. The dump always covers the namespace of the calling thread.

use std::io;
use std::os::fd::AsFd;

use crate::model::socket::{DumpedSocket, SocketKind, socket_kind};
use crate::model::state::ConnType;
use crate::tables::netlink::{self, NLMSG_HDR};

const NETLINK_SOCK_DIAG: libc::c_int = 4;
const SOCK_DIAG_BY_FAMILY: u16 = 20;
const REQ_LEN: usize = NLMSG_HDR + 56;
const MSG_LEN: usize = 72;
/// `idiag_timer` value inet_twsk_diag_fill() gives time-wait mini-sockets.
const TIMER_TIME_WAIT: u8 = 3;
/// All TCP states 1..=12 (TCP_NEW_SYN_RECV is 12: request sockets), and
/// not 13, TCP_BOUND_INACTIVE: a TCP socket that is only bound (no listen,
/// no connect) is in no connection table, not in /proc/net/tcp, psutil or
/// `ss -ta`, so netconn neither counts nor lists it.
pub const ALL_STATES: u32 = 0x1ffe;
/// The states mini-sockets are in: TIME_WAIT and FIN_WAIT2 (time-wait
/// sockets), SYN_RECV (request sockets). The kernel still walks every
/// socket, but sends only these.
pub const MINI_SOCKET_STATES: u32 = 1 << 6 | 1 << 5 | 1 << 3 | 1 << 12;

/// Dumps the sockets of one conn-type into `out`.
pub fn dump(conn_type: ConnType, out: &mut Vec<DumpedSocket>) -> io::Result<()> {
    dump_states(conn_type, ALL_STATES, out)
}

/// Dumps the sockets of one conn-type in the given states (bit per state
/// code) into `out`.
pub fn dump_states(
    conn_type: ConnType,
    states: u32,
    out: &mut Vec<DumpedSocket>,
) -> io::Result<()> {
    dump_raw(conn_type, states, 0, |msg| {
        if let Some(s) = parse_msg(msg, conn_type) {
            out.push(s);
        }
    })
}

/// `idiag_ext` bit asking for `struct tcp_info` (INET_DIAG_INFO).
pub const EXT_INFO: u8 = 1 << (INET_DIAG_INFO - 1);
/// The attribute carrying `struct tcp_info`.
pub const INET_DIAG_INFO: u16 = 2;

/// Dumps one conn-type, handing each `inet_diag_msg` (with its attributes)
/// to `each`. `ext`: the extensions to ask for (e.g. [`EXT_INFO`]).
pub fn dump_raw(
    conn_type: ConnType,
    states: u32,
    ext: u8,
    mut each: impl FnMut(&[u8]),
) -> io::Result<()> {
    let sock = netlink::socket(libc::SOCK_DGRAM, NETLINK_SOCK_DIAG)?;
    netlink::send(sock.as_fd(), &request(conn_type, states, ext))?;
    netlink::recv_dump(sock.as_fd(), |kind, msg| {
        if kind == SOCK_DIAG_BY_FAMILY {
            each(msg);
        }
    })
}

/// Builds `nlmsghdr` + `inet_diag_req_v2` asking for the sockets of a type
/// in `states`.
fn request(conn_type: ConnType, states: u32, ext: u8) -> [u8; REQ_LEN] {
    let mut req = [0u8; REQ_LEN];
    req[..NLMSG_HDR].copy_from_slice(&netlink::dump_header(REQ_LEN, SOCK_DIAG_BY_FAMILY));
    let body = &mut req[NLMSG_HDR..];
    body[0] = conn_type.family() as u8;
    body[1] = conn_type.protocol();
    body[2] = ext;
    body[4..8].copy_from_slice(&states.to_ne_bytes());
    req
}

/// Parses one `recv()` worth of netlink messages, handing each socket's
/// message to `each`. Returns true at NLMSG_DONE.
pub fn parse_batch(data: &[u8], each: &mut impl FnMut(&[u8])) -> io::Result<bool> {
    netlink::dump_batch(data, &mut |kind, msg| {
        if kind == SOCK_DIAG_BY_FAMILY {
            each(msg);
        }
    })
}

/// Decodes the fixed part of an `inet_diag_msg`.
pub fn parse_msg(msg: &[u8], conn_type: ConnType) -> Option<DumpedSocket> {
    if msg.len() < MSG_LEN {
        return None;
    }
    let state = msg[1];
    let timer = msg[2];
    // inet_diag_sockid starts at 4: sport(be16) dport(be16) src[16] dst[16] if(4) cookie[2 x u32]
    let local_port = u16::from_be_bytes([msg[4], msg[5]]);
    let local_addr = crate::model::state::ip_addr(conn_type.family(), msg[8..24].try_into().ok()?);
    let remote_port = u16::from_be_bytes([msg[6], msg[7]]);
    let remote_addr =
        crate::model::state::ip_addr(conn_type.family(), msg[24..40].try_into().ok()?);
    let c0 = u32::from_ne_bytes(msg[44..48].try_into().ok()?) as u64;
    let c1 = u32::from_ne_bytes(msg[48..52].try_into().ok()?) as u64;
    let inode = u32::from_ne_bytes(msg[68..72].try_into().ok()?);
    let kind = socket_kind(conn_type, state, timer == TIMER_TIME_WAIT);
    // inet_req_diag_fill() reports request sockets as TCP_SYN_RECV already;
    // normalise in case a kernel passes the internal state through.
    let state = if kind == SocketKind::Request {
        crate::model::state::TCP_SYN_RECV
    } else {
        state
    };
    Some(DumpedSocket {
        conn_type,
        state,
        kind,
        cookie: c0 | (c1 << 32),
        local_port,
        local_addr,
        remote_addr,
        remote_port,
        inode,
    })
}

/// Request sockets (SYN_RECV), as the kernel's state mask names them.
pub const REQUEST_STATES: u32 = 1 << 3 | 1 << 12;

/// The remote addresses of the calling thread's namespace's TCP sockets
/// on local port `port` in `states`, with how many sockets each: who is
/// behind an alert on that port.
pub fn peers_of_port(
    port: u16,
    states: u32,
) -> io::Result<std::collections::HashMap<std::net::IpAddr, u32>> {
    let mut out = std::collections::HashMap::new();
    for ct in [ConnType::Tcp, ConnType::Tcp6] {
        dump_raw(ct, states, 0, |msg| {
            let (Some(sport), Some(dst)) = (msg.get(4..6), msg.get(24..40)) else {
                return;
            };
            if u16::from_be_bytes([sport[0], sport[1]]) != port {
                return;
            }
            let dst: [u8; 16] = dst.try_into().expect("16 bytes");
            let addr = crate::model::state::ip_addr(ct.family(), dst);
            *out.entry(addr).or_insert(0) += 1;
        })?;
    }
    Ok(out)
}

/// The calling thread's namespace's time-wait and request sockets (the
/// TCP mini-sockets, which fire no event), and with `udp` every UDP
/// socket (for the port groups' `udp_socket`).
pub fn mini_dump(udp: bool) -> io::Result<Vec<DumpedSocket>> {
    let mut dump = Vec::new();
    for ct in [ConnType::Tcp, ConnType::Tcp6] {
        dump_states(ct, MINI_SOCKET_STATES, &mut dump)?;
    }
    dump.retain(|s| s.kind != SocketKind::Full);
    if udp {
        for ct in [ConnType::Udp, ConnType::Udp6] {
            dump_states(ct, ALL_STATES, &mut dump)?;
        }
    }
    Ok(dump)
}

/// Takes the UDP sockets out of a dump.
pub fn split_udp(dump: &mut Vec<DumpedSocket>) -> Vec<DumpedSocket> {
    let (udp, tcp): (Vec<_>, Vec<_>) = dump.drain(..).partition(|s| !s.conn_type.is_tcp());
    *dump = tcp;
    udp
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tables::netlink::{NLMSG_DONE, NLMSG_ERROR};

    fn msg(state: u8, timer: u8, port: u16, cookie: u64) -> Vec<u8> {
        let mut m = vec![0u8; MSG_LEN];
        m[0] = 2;
        m[1] = state;
        m[2] = timer;
        m[4..6].copy_from_slice(&port.to_be_bytes());
        m[44..48].copy_from_slice(&(cookie as u32).to_ne_bytes());
        m[48..52].copy_from_slice(&((cookie >> 32) as u32).to_ne_bytes());
        m
    }

    fn frame(ty: u16, payload: &[u8]) -> Vec<u8> {
        let len = NLMSG_HDR + payload.len();
        let mut f = vec![0u8; NLMSG_HDR];
        f[0..4].copy_from_slice(&(len as u32).to_ne_bytes());
        f[4..6].copy_from_slice(&ty.to_ne_bytes());
        f.extend_from_slice(payload);
        while !f.len().is_multiple_of(4) {
            f.push(0);
        }
        f
    }

    /// parse_batch() into DumpedSockets, as dump_states() does.
    fn decode(batch: &[u8], ct: ConnType, out: &mut Vec<DumpedSocket>) -> io::Result<bool> {
        parse_batch(batch, &mut |m: &[u8]| out.extend(parse_msg(m, ct)))
    }

    #[test]
    fn decodes_sockets_until_done() {
        let mut batch = frame(SOCK_DIAG_BY_FAMILY, &msg(10, 0, 80, 7));
        batch.extend(frame(
            SOCK_DIAG_BY_FAMILY,
            &msg(6, TIMER_TIME_WAIT, 4000, 1 << 40 | 9),
        ));
        let mut out = Vec::new();
        assert!(!decode(&batch, ConnType::Tcp, &mut out).unwrap());
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].state, 10);
        assert_eq!(out[0].local_port, 80);
        assert_eq!(out[0].kind, SocketKind::Full);
        assert_eq!(out[1].kind, SocketKind::TimeWait);
        assert_eq!(out[1].cookie, 1 << 40 | 9);
        assert!(decode(&frame(NLMSG_DONE, &[0; 4]), ConnType::Tcp, &mut out).unwrap());
    }

    #[test]
    fn netlink_errors_and_truncation_are_errors() {
        let err = frame(NLMSG_ERROR, &(-libc::EPERM).to_ne_bytes());
        let e = decode(&err, ConnType::Tcp, &mut Vec::new()).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EPERM));
        let mut bad = frame(SOCK_DIAG_BY_FAMILY, &msg(1, 0, 1, 1));
        bad[0..4].copy_from_slice(&9999u32.to_ne_bytes());
        assert!(decode(&bad, ConnType::Tcp, &mut Vec::new()).is_err());
    }

    #[test]
    fn request_sockets_count_as_syn_recv() {
        let mut out = Vec::new();
        // As inet_req_diag_fill() reports them (state 3), and as the
        // internal state (12) would be.
        for state in [3, 12] {
            decode(
                &frame(SOCK_DIAG_BY_FAMILY, &msg(state, 1, 80, 3)),
                ConnType::Tcp6,
                &mut out,
            )
            .unwrap();
        }
        for s in &out {
            assert_eq!(s.kind, SocketKind::Request);
            assert_eq!(s.state, crate::model::state::TCP_SYN_RECV);
        }
        assert_eq!(socket_kind(ConnType::Udp, 3, false), SocketKind::Full);
        assert_eq!(socket_kind(ConnType::Tcp, 1, false), SocketKind::Full);
    }
}
