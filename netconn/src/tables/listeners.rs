//! The listening TCP sockets with their queues, from a sock_diag dump
//! filtered to LISTEN: the kernel walks only its listening hash, not the
//! connections, so this is cheap at any table size. What `ss -lntm` shows:
//! the accept queue (`Recv-Q`), its limit (`Send-Q`) and the listener's
//! drop counter (`d` in skmem).

use std::io;
use std::net::IpAddr;

use netlink_packet_sock_diag::inet::ExtensionFlags;
use netlink_packet_sock_diag::inet::nlas::MemInfo;

use crate::model::state::{ConnType, TCP_LISTEN};
use crate::tables::sockdiag::{DiagMessage, INET_DIAG_SKMEMINFO, dump_each};

/// One listening socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenSocket {
    pub conn_type: ConnType,
    pub addr: IpAddr,
    pub port: u16,
    /// Connections waiting for `accept()` (`sk_ack_backlog`).
    pub accept_queue: u32,
    /// Its limit (`sk_max_ack_backlog`: listen()'s backlog, capped by
    /// `net.core.somaxconn`).
    pub backlog: u32,
    /// `sk_drops`: segments the listener dropped since it was made; every
    /// `ListenDrops` (and so every `ListenOverflows`) of the namespace
    /// bumps the listener's own (`tcp_listendrop()`).
    pub drops: u32,
    pub cookie: u64,
    pub inode: u32,
    /// The user that made it (`idiag_uid`).
    pub uid: u32,
}

/// Reads the message of a listener with its attributes.
pub fn parse(m: &DiagMessage, conn_type: ConnType) -> Option<ListenSocket> {
    let h = &m.header;
    if h.state != TCP_LISTEN {
        return None;
    }
    let drops = m
        .attr(INET_DIAG_SKMEMINFO)
        .and_then(|mem| MemInfo::parse(mem).ok())
        .map_or(0, |mem| mem.drops);
    Some(ListenSocket {
        conn_type,
        addr: h.socket_id.source_address,
        port: h.socket_id.source_port,
        accept_queue: h.recv_queue,
        backlog: h.send_queue,
        drops,
        cookie: m.cookie(),
        inode: h.inode,
        uid: h.uid,
    })
}

/// Every listening TCP socket of the calling thread's namespace.
pub fn dump() -> io::Result<Vec<ListenSocket>> {
    let mut out = Vec::new();
    for ct in [ConnType::Tcp, ConnType::Tcp6] {
        dump_each(ct, 1 << TCP_LISTEN, ExtensionFlags::SKMEMINFO, |m| {
            out.extend(parse(m, ct));
        })?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_queue_backlog_and_drops() {
        use netlink_packet_core::{DefaultNla, Emitable};
        use netlink_packet_sock_diag::inet::{InetResponseHeader, SocketId};
        let mut socket_id = SocketId::new_v4();
        socket_id.source_port = 8080;
        socket_id.source_address = "127.0.0.1".parse().unwrap();
        socket_id.cookie = [7u32.to_ne_bytes(), [0; 4]].concat().try_into().unwrap();
        let mut header = InetResponseHeader {
            family: libc::AF_INET as u8,
            state: TCP_LISTEN,
            timer: None,
            socket_id,
            recv_queue: 5,
            send_queue: 4,
            uid: 1000,
            inode: 99,
        };
        let mut mem = MemInfo::parse(&[0u8; 64]).unwrap();
        mem.drops = 31;
        let msg = |header: &InetResponseHeader| {
            let mut value = vec![0u8; mem.buffer_len()];
            mem.emit(&mut value);
            let nla = DefaultNla::new(INET_DIAG_SKMEMINFO, value);
            let mut m = vec![0u8; header.buffer_len()];
            header.emit(&mut m);
            let mut a = vec![0u8; nla.buffer_len()];
            nla.emit(&mut a);
            m.extend(a);
            m
        };
        let bytes = msg(&header);
        let l = parse(&DiagMessage::parse(&bytes).unwrap(), ConnType::Tcp).unwrap();
        assert_eq!(l.addr, "127.0.0.1".parse::<IpAddr>().unwrap());
        assert_eq!(
            (
                l.port,
                l.accept_queue,
                l.backlog,
                l.drops,
                l.cookie,
                l.inode
            ),
            (8080, 5, 4, 31, 7, 99)
        );
        assert_eq!(l.uid, 1000);
        // Not a listener: nothing.
        header.state = 1;
        let bytes = msg(&header);
        assert!(parse(&DiagMessage::parse(&bytes).unwrap(), ConnType::Tcp).is_none());
        // SK_MEMINFO_DROPS is index 8 of the u32 counters (linux/sock_diag.h),
        // placed by hand.
        let mut counters = [0u8; 36];
        counters[32..36].copy_from_slice(&17u32.to_ne_bytes());
        assert_eq!(MemInfo::parse(&counters).unwrap().drops, 17);
    }

    #[test]
    fn dumps_this_namespace() {
        dump().unwrap();
    }
}
