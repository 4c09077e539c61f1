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
