//! Fallback socket dump from `/proc/net/{tcp,tcp6,udp,udp6}`, for kernels
//! without sock_diag for a protocol (`CONFIG_INET_DIAG`/`INET_UDP_DIAG`).
//! It carries no socket cookie, so it can seed counts but not a merge.

use std::io;

use crate::model::socket::DumpedSocket;
use crate::model::state::{ConnType, TCP_TIME_WAIT};

/// `tr` (timer) column value /proc shows for time-wait sockets.
const TIMER_TIME_WAIT: &str = "03";

pub fn path(conn_type: ConnType) -> String {
    format!("/proc/thread-self/net/{}", conn_type.name())
}

/// Reads every socket of one conn-type from the calling thread's namespace.
pub fn dump(conn_type: ConnType, out: &mut Vec<DumpedSocket>) -> io::Result<()> {
    let text = std::fs::read_to_string(path(conn_type))?;
    parse(&text, conn_type, out)
}

/// Parses the text of a `/proc/net/tcp`-style table.
pub fn parse(text: &str, conn_type: ConnType, out: &mut Vec<DumpedSocket>) -> io::Result<()> {
    let bad = |line: &str| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("unexpected line in /proc/net/{conn_type}: {line:?}"),
        )
    };
    for line in text.lines().skip(1) {
        // sl local rem st tx:rx tr:when retrnsmt uid timeout inode ...
        let cols: Vec<&str> = line.split_whitespace().collect();
        if cols.len() < 10 {
            return Err(bad(line));
        }
        let state = u8::from_str_radix(cols[3], 16).map_err(|_| bad(line))?;
        let (addr, port) = cols[1].split_once(':').ok_or_else(|| bad(line))?;
        let local_port = u16::from_str_radix(port, 16).map_err(|_| bad(line))?;
        let local_addr = parse_addr(addr).ok_or_else(|| bad(line))?;
        let (raddr, rport) = cols[2].split_once(':').ok_or_else(|| bad(line))?;
        let remote_port = u16::from_str_radix(rport, 16).map_err(|_| bad(line))?;
        let remote_addr = parse_addr(raddr).ok_or_else(|| bad(line))?;
        let inode = cols[9].parse().map_err(|_| bad(line))?;
        let timer = cols[5].split(':').next().unwrap_or_default();
        let time_wait = timer == TIMER_TIME_WAIT || state == TCP_TIME_WAIT;
        let kind = crate::model::socket::socket_kind(conn_type, state, time_wait);
        out.push(DumpedSocket {
            conn_type,
            state,
            kind,
            cookie: 0,
            local_port,
            local_addr,
            remote_addr,
            remote_port,
            inode,
        });
    }
    Ok(())
}

/// An address as /proc/net prints it: the bytes of each 32-bit word in
/// host order, as hex (8 digits for IPv4, 32 for IPv6).
fn parse_addr(hex: &str) -> Option<std::net::IpAddr> {
    let mut bytes = [0u8; 16];
    let words = hex.len() / 8;
    if !hex.len().is_multiple_of(8) || !(words == 1 || words == 4) {
        return None;
    }
    for w in 0..words {
        let word = u32::from_str_radix(hex.get(w * 8..w * 8 + 8)?, 16).ok()?;
        bytes[w * 4..w * 4 + 4].copy_from_slice(&word.to_ne_bytes());
    }
    let family = if words == 1 {
        netconn_common::AF_INET
    } else {
        netconn_common::AF_INET6
    };
    Some(crate::model::state::ip_addr(family, bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::socket::SocketKind;

    const TCP: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 12345 1 0000000000000000 100 0 0 10 0
   1: 0100007F:C350 0100007F:1F90 06 00000000:00000000 03:00001770 00000000     0        0 0 3 0000000000000000
   2: 0100007F:1F90 0100007F:C351 03 00000000:00000000 01:00000064 00000000     0        0 0 1 0000000000000000
";

    #[test]
    fn parses_states_ports_and_minisockets() {
        let mut out = Vec::new();
        parse(TCP, ConnType::Tcp, &mut out).unwrap();
        assert_eq!(out.len(), 3);
        assert_eq!(
            (out[0].state, out[0].local_port, out[0].inode),
            (10, 8080, 12345)
        );
        assert_eq!(out[0].local_addr, std::net::Ipv4Addr::LOCALHOST);
        assert_eq!(out[0].kind, SocketKind::Full);
        assert_eq!(out[1].kind, SocketKind::TimeWait);
        assert_eq!(out[2].kind, SocketKind::Request);
    }

    #[test]
    fn ipv6_addresses_in_proc_word_order() {
        // ::1 as /proc/net/tcp6 prints it on a little-endian host.
        let hex = format!(
            "{:08X}{:08X}{:08X}{:08X}",
            0,
            0,
            0,
            u32::from_ne_bytes([0, 0, 0, 1])
        );
        assert_eq!(parse_addr(&hex), Some(std::net::Ipv6Addr::LOCALHOST.into()));
        assert_eq!(parse_addr("0100007"), None);
        assert_eq!(parse_addr("zz00007F"), None);
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let mut out = Vec::new();
        assert!(parse("header\nnot a socket line\n", ConnType::Udp, &mut out).is_err());
        assert!(
            parse(
                "header\n 0: x:zz y 0Q a b c d e f\n",
                ConnType::Tcp,
                &mut out
            )
            .is_err()
        );
    }

    #[test]
    fn reads_this_namespace() {
        for ct in ConnType::ALL {
            let mut out = Vec::new();
            dump(ct, &mut out).unwrap();
        }
    }
}
