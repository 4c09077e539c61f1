//! A socket as netconn sees it: what a dump of the kernel's tables
//! reports of it ([`DumpedSocket`], [`SocketKind`]), which way it points
//! ([`Direction`]), and the process name the kernel keeps for its owner.
//! Plain data, no I/O.

use std::collections::HashSet;
use std::net::IpAddr;

use crate::model::state::{ConnType, TCP_LISTEN, TCP_NEW_SYN_RECV, TCP_SYN_RECV};

/// One socket as the kernel reported it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DumpedSocket {
    pub conn_type: ConnType,
    /// Kernel state code (`TCP_ESTABLISHED` = 1 ...). UDP reports 7 (CLOSE)
    /// for unconnected and 1 for connected sockets.
    pub state: u8,
    pub kind: SocketKind,
    /// `idiag_cookie`: the same value `bpf_get_socket_cookie` returns.
    pub cookie: u64,
    pub local_port: u16,
    pub local_addr: IpAddr,
    /// The peer (unspecified and 0 for listeners and unconnected sockets).
    pub remote_addr: IpAddr,
    pub remote_port: u16,
    pub inode: u32,
}

#[cfg(test)]
impl DumpedSocket {
    /// A full socket in `state` for tests, all else zero: tests override
    /// what they need with struct update syntax.
    pub fn test(conn_type: ConnType, state: u8) -> Self {
        Self {
            conn_type,
            state,
            kind: SocketKind::Full,
            cookie: 0,
            local_port: 0,
            local_addr: std::net::Ipv4Addr::UNSPECIFIED.into(),
            remote_addr: std::net::Ipv4Addr::UNSPECIFIED.into(),
            remote_port: 0,
            inode: 0,
        }
    }
}

/// What kind of kernel object a dumped socket is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SocketKind {
    /// A full `struct sock`: the only kind that fires state events.
    Full,
    /// A time-wait mini-socket (TIME_WAIT, or FIN_WAIT2 after an orphaned close).
    TimeWait,
    /// A request socket (`TCP_NEW_SYN_RECV`), shown as SYN_RECV.
    Request,
}

/// Which kind of object a dumped TCP entry is. Every SYN_RECV entry counts
/// as a request socket: inet_req_diag_fill() reports request sockets as
/// TCP_SYN_RECV, and a full socket is in SYN_RECV only between its clone
/// and ESTABLISHED (or, with Fast Open, until the final ACK); netconn
/// counts SYN_RECV from dumps for both (see `merge::counted_after`).
pub fn socket_kind(conn_type: ConnType, state: u8, time_wait_timer: bool) -> SocketKind {
    if !conn_type.is_tcp() {
        SocketKind::Full
    } else if time_wait_timer {
        SocketKind::TimeWait
    } else if state == TCP_SYN_RECV || state == TCP_NEW_SYN_RECV {
        SocketKind::Request
    } else {
        SocketKind::Full
    }
}

/// Which way a socket points.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Direction {
    Listen,
    Inbound,
    Outbound,
    /// The peer is an address of this host (namespace).
    Local,
}

impl Direction {
    pub fn name(self) -> &'static str {
        match self {
            Self::Listen => "listen",
            Self::Inbound => "inbound",
            Self::Outbound => "outbound",
            Self::Local => "local",
        }
    }
}

/// Whether `addr` is this namespace's own (loopback, or one of `locals`).
pub fn is_local(addr: IpAddr, locals: &HashSet<IpAddr>) -> bool {
    let a = addr.to_canonical();
    a.is_loopback() || locals.contains(&a) || locals.contains(&addr)
}

/// Direction of a socket: listeners (TCP LISTEN, unconnected UDP),
/// connections to this host's own addresses, connections to one of its
/// listening ports (accepted), and the rest (connected out).
pub fn direction(
    s: &DumpedSocket,
    remote: IpAddr,
    remote_port: u16,
    listening: &HashSet<u16>,
    locals: &HashSet<IpAddr>,
) -> Direction {
    let unconnected = remote_port == 0 && remote.is_unspecified();
    if (s.conn_type.is_tcp() && s.state == TCP_LISTEN) || (!s.conn_type.is_tcp() && unconnected) {
        Direction::Listen
    } else if is_local(remote, locals) {
        Direction::Local
    } else if s.conn_type.is_tcp() && listening.contains(&s.local_port) {
        Direction::Inbound
    } else {
        Direction::Outbound
    }
}

pub use netconn_common::comm;
