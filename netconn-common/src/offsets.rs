//! Kernel struct offsets, read from BTF by userspace and handed to the
//! programs as a global.

use core::mem::size_of;

/// Global: byte offsets into kernel structs, read from BTF at load time.
pub const GLOBAL_OFFSETS: &str = "OFFSETS";

/// Kernel struct offsets the programs need, taken from `/sys/kernel/btf/vmlinux`.
///
/// Rust eBPF emits no CO-RE relocations, so userspace resolves them.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Offsets {
    /// `struct sock_common.skc_family` (u16).
    pub skc_family: u32,
    /// `struct sock_common.skc_net` (`possible_net_t`, a `struct net *`).
    pub skc_net: u32,
    /// `struct net.ns.inum` (u32): the netns inode number.
    pub net_inum: u32,
    /// `struct sock.sk_protocol` (u16).
    pub sk_protocol: u32,
    /// `struct sock_common.skc_num` (u16): the local port, non-zero while a
    /// UDP socket is hashed.
    pub skc_num: u32,
    /// `struct sock_common.skc_rcv_saddr` (be32): the local IPv4 address.
    pub skc_rcv_saddr: u32,
    /// `struct sock_common.skc_v6_rcv_saddr` (16 bytes): the local IPv6 address.
    pub skc_v6_rcv_saddr: u32,
    /// `struct inet_sock.inet_sport` (be16): the local port as the state
    /// tracepoint reports it. Unlike `skc_num`, it is still set when an
    /// orphaned socket leaves LAST_ACK.
    pub inet_sport: u32,
    /// `struct sock_common.skc_daddr` (be32), `skc_dport` (be16),
    /// `skc_v6_daddr` (16 bytes): the remote end.
    pub skc_daddr: u32,
    pub skc_dport: u32,
    pub skc_v6_daddr: u32,
    /// `struct tcp_sock`: `srtt_us` (u32, RTT << 3), `total_retrans`
    /// (u32), `bytes_acked` and `bytes_received` (u64).
    pub srtt_us: u32,
    pub total_retrans: u32,
    pub bytes_acked: u32,
    pub bytes_received: u32,
    /// `struct task_struct.group_leader` and `.comm`: the process's name
    /// (its main thread's), not the calling thread's.
    pub group_leader: u32,
    pub task_comm: u32,
    /// `struct sock_common.skc_state` (u8) and `struct
    /// tcp_sock.bpf_sock_ops_cb_flags` (u8): whether the sock_ops program
    /// follows a socket, and in which direction.
    pub skc_state: u32,
    pub sock_ops_cb_flags: u32,
    /// `struct sk_buff.dev` and `struct net_device.nd_net`: the namespace
    /// of a reset sent without a socket.
    pub skb_dev: u32,
    pub dev_nd_net: u32,
    /// `struct sock.sk_err` (int): why a connect failed.
    pub sk_err: u32,
    /// `struct sk_buff.head` (pointer), `.network_header` and
    /// `.transport_header` (u16 offsets from `head`): the headers of the
    /// segment a reset without a socket answers (`port_scan`).
    pub skb_head: u32,
    pub skb_network_header: u32,
    pub skb_transport_header: u32,
}
const _: () = assert!(size_of::<Offsets>() == 100);
