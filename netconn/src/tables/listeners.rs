//! The listening TCP sockets with their queues, from a sock_diag dump
//! filtered to LISTEN: the kernel walks only its listening hash, not the
//! connections, so this is cheap at any table size. What `ss -lntm` shows:
//! the accept queue (`Recv-Q`), its limit (`Send-Q`) and the listener's
//! drop counter (`d` in skmem).

use std::io;
use std::net::IpAddr;

use crate::model::state::{ConnType, TCP_LISTEN, ip_addr};
use crate::tables::netlink;
use crate::tables::sockdiag::dump_raw;

/// `INET_DIAG_SKMEMINFO`: the socket's memory counters, `u32` each.
const INET_DIAG_SKMEMINFO: u16 = 7;
const EXT_SKMEMINFO: u8 = 1 << (INET_DIAG_SKMEMINFO - 1);
/// `SK_MEMINFO_DROPS`: index of `sk_drops` in those counters.
const SK_MEMINFO_DROPS: usize = 8;

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

/// Parses one `inet_diag_msg` of a listener with its attributes.
pub fn parse(msg: &[u8], conn_type: ConnType) -> Option<ListenSocket> {
    const MSG_LEN: usize = 72;
    let u32_at = |o: usize| Some(u32::from_ne_bytes(msg.get(o..o + 4)?.try_into().ok()?));
    if *msg.get(1)? != TCP_LISTEN {
        return None;
    }
    let port = u16::from_be_bytes(msg.get(4..6)?.try_into().ok()?);
    let addr = ip_addr(conn_type.family(), msg.get(8..24)?.try_into().ok()?);
    let cookie = u64::from(u32_at(44)?) | u64::from(u32_at(48)?) << 32;
    let drops = netlink::attr(msg.get(MSG_LEN..).unwrap_or_default(), INET_DIAG_SKMEMINFO)
        .and_then(|mem| mem.get(SK_MEMINFO_DROPS * 4..SK_MEMINFO_DROPS * 4 + 4))
        .and_then(|b| b.try_into().ok())
        .map_or(0, u32::from_ne_bytes);
    Some(ListenSocket {
        conn_type,
        addr,
        port,
        accept_queue: u32_at(56)?,
        backlog: u32_at(60)?,
        drops,
        cookie,
        inode: u32_at(68)?,
        uid: u32_at(64)?,
    })
}

/// Every listening TCP socket of the calling thread's namespace.
pub fn dump() -> io::Result<Vec<ListenSocket>> {
    let mut out = Vec::new();
    for ct in [ConnType::Tcp, ConnType::Tcp6] {
        dump_raw(ct, 1 << TCP_LISTEN, EXT_SKMEMINFO, |msg| {
            out.extend(parse(msg, ct));
        })?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_queue_backlog_and_drops() {
        let mut msg = vec![0u8; 72];
        msg[0] = libc::AF_INET as u8;
        msg[1] = TCP_LISTEN;
        msg[4..6].copy_from_slice(&8080u16.to_be_bytes());
        msg[8..12].copy_from_slice(&[127, 0, 0, 1]);
        msg[44..48].copy_from_slice(&7u32.to_ne_bytes());
        msg[56..60].copy_from_slice(&5u32.to_ne_bytes());
        msg[60..64].copy_from_slice(&4u32.to_ne_bytes());
        msg[64..68].copy_from_slice(&1000u32.to_ne_bytes());
        msg[68..72].copy_from_slice(&99u32.to_ne_bytes());
        // The SKMEMINFO attribute: nine u32 counters, drops last.
        let mut mem = Vec::new();
        for i in 0..9u32 {
            mem.extend_from_slice(&(if i == 8 { 31 } else { i }).to_ne_bytes());
        }
        msg.extend_from_slice(&((4 + mem.len()) as u16).to_ne_bytes());
        msg.extend_from_slice(&INET_DIAG_SKMEMINFO.to_ne_bytes());
        msg.extend_from_slice(&mem);
        let l = parse(&msg, ConnType::Tcp).unwrap();
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
        msg[1] = 1;
        assert!(parse(&msg, ConnType::Tcp).is_none());
    }

    #[test]
    fn dumps_this_namespace() {
        dump().unwrap();
    }
}
