//! The kernel's own numbers: address families, protocols, TCP states.

/// Conn-types the transition matrix distinguishes: tcp, tcp6, udp, udp6.
pub const CONN_TYPES: usize = 4;
/// TCP states are 1..=13 in the kernel (`include/net/tcp_states.h`); 16 slots.
pub const STATES: usize = 16;
/// Slots in one transition matrix: conn-type x old state x new state.
pub const TRANSITION_SLOTS: usize = CONN_TYPES * STATES * STATES;

pub const AF_INET: u16 = 2;
pub const AF_INET6: u16 = 10;
pub const IPPROTO_TCP: u16 = 6;
pub const IPPROTO_UDP: u16 = 17;

/// TCP states (`include/net/tcp_states.h`).
pub const TCP_ESTABLISHED: u8 = 1;
pub const TCP_SYN_SENT: u8 = 2;
pub const TCP_SYN_RECV: u8 = 3;
pub const TCP_FIN_WAIT1: u8 = 4;
pub const TCP_FIN_WAIT2: u8 = 5;
pub const TCP_TIME_WAIT: u8 = 6;
pub const TCP_CLOSE: u8 = 7;
pub const TCP_CLOSE_WAIT: u8 = 8;
pub const TCP_LAST_ACK: u8 = 9;
pub const TCP_LISTEN: u8 = 10;
pub const TCP_CLOSING: u8 = 11;
/// A request socket (shown as SYN_RECV).
pub const TCP_NEW_SYN_RECV: u8 = 12;

/// 4 for AF_INET, 6 for anything else (AF_INET6).
#[cfg(feature = "user")]
pub fn ip_version(family: u16) -> u8 {
    if family == AF_INET { 4 } else { 6 }
}

/// An address as the kernel lays it out in 16 bytes: IPv4 in the first 4
/// (`family` AF_INET), else IPv6.
#[cfg(feature = "user")]
pub fn ip_addr(family: u16, bytes: [u8; 16]) -> std::net::IpAddr {
    if family == AF_INET {
        std::net::IpAddr::from([bytes[0], bytes[1], bytes[2], bytes[3]])
    } else {
        std::net::IpAddr::from(bytes)
    }
}

/// A task name as the kernel stores it (NUL-padded); None when empty.
#[cfg(feature = "user")]
pub fn comm(bytes: &[u8; 16]) -> Option<String> {
    let end = bytes.iter().position(|b| *b == 0).unwrap_or(bytes.len());
    (end > 0).then(|| String::from_utf8_lossy(&bytes[..end]).into_owned())
}

/// Reads a ring-buffer record of a plain `repr(C)` type, checking its
/// length.
#[cfg(feature = "user")]
pub(crate) fn from_record<T: aya::Pod>(bytes: &[u8]) -> Option<T> {
    if bytes.len() < core::mem::size_of::<T>() {
        return None;
    }
    // SAFETY: length checked; T is Pod (every bit pattern valid), and
    // read_unaligned makes no alignment assumption.
    Some(unsafe { core::ptr::read_unaligned(bytes.as_ptr().cast::<T>()) })
}
