//! UDP: the socket lifecycle programs at the cgroup v2 root and how they
//! describe a UDP socket entering and leaving the tables.

use crate::*;

/// Hash of the UDP sockets created since load, by socket cookie: whether
/// the programs counted the socket into the UDP tables (see [`UDP_HASHED`]).
pub const MAP_UDP_SOCKETS: &str = "UDP_SOCKETS";

/// Value in [`MAP_UDP_SOCKETS`]: the socket is counted in the tables.
pub const UDP_COUNTED: u8 = 1;
/// Value in [`MAP_UDP_SOCKETS`]: created, not (yet) counted.
pub const UDP_NOT_COUNTED: u8 = 0;

/// UDP socket lifecycle programs, attached at the cgroup v2 root.
pub const PROG_UDP_CREATE: &str = "netconn_udp_create";
pub const PROG_UDP_BIND4: &str = "netconn_udp_bind4";
pub const PROG_UDP_BIND6: &str = "netconn_udp_bind6";
pub const PROG_UDP_CONNECT4: &str = "netconn_udp_connect4";
pub const PROG_UDP_CONNECT6: &str = "netconn_udp_connect6";
pub const PROG_UDP_SENDMSG4: &str = "netconn_udp_sendmsg4";
pub const PROG_UDP_SENDMSG6: &str = "netconn_udp_sendmsg6";
pub const PROG_UDP_RELEASE: &str = "netconn_udp_release";
/// Every UDP program, for loading and attaching.
pub const UDP_PROGRAMS: [&str; 8] = [
    PROG_UDP_CREATE,
    PROG_UDP_BIND4,
    PROG_UDP_BIND6,
    PROG_UDP_CONNECT4,
    PROG_UDP_CONNECT6,
    PROG_UDP_SENDMSG4,
    PROG_UDP_SENDMSG6,
    PROG_UDP_RELEASE,
];

/// UDP sockets have no states; the programs describe a UDP socket entering
/// the tables (hashed: bound, explicitly or by autobind) as a transition
/// `UDP_UNHASHED -> UDP_HASHED`, and leaving them as the reverse, so one
/// matrix, one journal and one merge rule serve both protocols.
pub const UDP_HASHED: u8 = TCP_ESTABLISHED;
pub const UDP_UNHASHED: u8 = TCP_CLOSE;
