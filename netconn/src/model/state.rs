//! Connection types and state names.
//!
//! State codes are the kernel's (`include/net/tcp_states.h`); names are the
//! ones psutil and the Nagios network-connections checks print.

use std::fmt;

use netconn_common::{AF_INET, AF_INET6};

pub use netconn_common::{
    TCP_CLOSE, TCP_CLOSE_WAIT, TCP_CLOSING, TCP_ESTABLISHED, TCP_FIN_WAIT1, TCP_FIN_WAIT2,
    TCP_LAST_ACK, TCP_LISTEN, TCP_NEW_SYN_RECV, TCP_SYN_RECV, TCP_SYN_SENT, TCP_TIME_WAIT,
};

/// `psutil` names, indexed by kernel state code; 0 and 12+ have none.
const NAMES: [&str; 12] = [
    "",
    "ESTABLISHED",
    "SYN_SENT",
    "SYN_RECV",
    "FIN_WAIT1",
    "FIN_WAIT2",
    "TIME_WAIT",
    "CLOSE",
    "CLOSE_WAIT",
    "LAST_ACK",
    "LISTEN",
    "CLOSING",
];

/// Name of a TCP state code, `None` for codes with no public name.
pub fn tcp_state_name(code: u8) -> Option<&'static str> {
    NAMES
        .get(code as usize)
        .copied()
        .filter(|name| !name.is_empty())
}

/// Every TCP state name, in kernel order.
pub fn tcp_state_names() -> impl Iterator<Item = &'static str> {
    NAMES.iter().copied().filter(|n| !n.is_empty())
}

// The kernel's address layout, read where the wire types are.
pub use netconn_common::{ip_addr, ip_version};

/// `1.2.3.4:80` or `[::1]:80`.
pub fn endpoint(addr: std::net::IpAddr, port: u16) -> String {
    std::net::SocketAddr::new(addr, port).to_string()
}

/// UDP sockets have no state; psutil calls it NONE.
pub const UDP_STATE: &str = "NONE";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ConnType {
    Tcp,
    Tcp6,
    Udp,
    Udp6,
}

impl ConnType {
    pub const ALL: [Self; 4] = [Self::Tcp, Self::Tcp6, Self::Udp, Self::Udp6];

    pub fn name(self) -> &'static str {
        match self {
            Self::Tcp => "tcp",
            Self::Tcp6 => "tcp6",
            Self::Udp => "udp",
            Self::Udp6 => "udp6",
        }
    }

    pub fn family(self) -> u16 {
        match self {
            Self::Tcp | Self::Udp => AF_INET,
            Self::Tcp6 | Self::Udp6 => AF_INET6,
        }
    }

    pub fn protocol(self) -> u8 {
        if self.is_tcp() {
            libc::IPPROTO_TCP as u8
        } else {
            libc::IPPROTO_UDP as u8
        }
    }

    pub fn is_tcp(self) -> bool {
        matches!(self, Self::Tcp | Self::Tcp6)
    }

    /// Conn-type of a socket's address family and protocol number.
    pub fn of(family: u16, protocol: u16) -> Option<Self> {
        netconn_common::conn_index(family, protocol).map(|i| Self::ALL[i])
    }

    /// Index 0..4, for dense tables.
    pub fn index(self) -> usize {
        self as usize
    }

    /// Name of a state of this conn-type; UDP's only state is NONE.
    pub fn state_name(self, code: u8) -> Option<&'static str> {
        if self.is_tcp() {
            tcp_state_name(code)
        } else {
            Some(UDP_STATE)
        }
    }
}

impl fmt::Display for ConnType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_match_psutil() {
        assert_eq!(tcp_state_name(1), Some("ESTABLISHED"));
        assert_eq!(tcp_state_name(8), Some("CLOSE_WAIT"));
        assert_eq!(tcp_state_name(11), Some("CLOSING"));
        assert_eq!(tcp_state_name(0), None);
        assert_eq!(tcp_state_name(12), None);
        assert_eq!(tcp_state_names().count(), 11);
        assert_eq!(ConnType::Udp6.state_name(7), Some("NONE"));
    }
}
