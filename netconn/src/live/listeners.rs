//! The listening sockets of interval records: queues from a LISTEN-only
//! dump (cheap at any table size), request sockets from the mini-socket
//! dumps the tracker takes anyway, handshakes completed from the TCP
//! metrics, drops from each listener's own counter.

use std::collections::HashMap;
use std::net::IpAddr;

use crate::live::metrics::Interval;
use crate::model::socket::{DumpedSocket, SocketKind};
use crate::model::state::ConnType;
use crate::output::figures::ListenerFigures;
use crate::tables::listeners::{self, ListenSocket};

/// Request sockets (SYN_RECV) by conn-type, local address and port.
pub type Requests = HashMap<(ConnType, IpAddr, u16), u32>;

/// The request sockets of a dump, by local address and port.
pub fn requests(dump: &[DumpedSocket]) -> Requests {
    let mut out = Requests::new();
    for s in dump.iter().filter(|s| s.kind == SocketKind::Request) {
        *out.entry((s.conn_type, s.local_addr, s.local_port))
            .or_default() += 1;
    }
    out
}

/// Whether a socket at `addr` is one of listener `l`'s: same port, and
/// the listener's address or any (an IPv6 listener on `::` also takes
/// IPv4, as v4-mapped addresses).
fn serves(l: &ListenSocket, conn_type: ConnType, addr: IpAddr, port: u16) -> bool {
    port == l.port
        && (addr == l.addr
            || (l.addr.is_unspecified()
                && (conn_type == l.conn_type || l.conn_type == ConnType::Tcp6)))
}

/// Each listener's drop counter at the last reading, by cookie.
#[derive(Debug, Default)]
pub struct Listeners {
    drops: HashMap<u64, u32>,
}

impl Listeners {
    /// Starts counting drops from now (as the namespace's ListenDrops):
    /// the calling thread's namespace's listeners.
    pub fn start() -> Listeners {
        Listeners::from(&listeners::dump().unwrap_or_default())
    }

    /// Starts counting drops from the listeners of a dump.
    pub fn from(now: &[ListenSocket]) -> Listeners {
        Listeners {
            drops: now.iter().map(|s| (s.cookie, s.drops)).collect(),
        }
    }

    /// The listeners of a dump taken now (`listeners::dump()`), with what
    /// happened to them since the last call. `owner`: the process behind a
    /// socket cookie (from `watch --events`).
    pub fn figures(
        &mut self,
        now: Vec<ListenSocket>,
        requests: &Requests,
        metrics: Option<&Interval>,
        owner: impl Fn(u64) -> Option<(u32, String)>,
    ) -> Vec<ListenerFigures> {
        let mut out = Vec::with_capacity(now.len());
        for l in &now {
            let syn_backlog = requests
                .iter()
                .filter(|((ct, addr, port), _)| serves(l, *ct, *addr, *port))
                .map(|(_, n)| n)
                .sum();
            let accepted = metrics.map(|m| {
                m.ports
                    .iter()
                    .filter(|(k, _)| k.direction == netconn_common::DIRECTION_INBOUND)
                    .filter(|(k, _)| {
                        let family = u16::from(k.family);
                        let ct = if family == netconn_common::AF_INET {
                            ConnType::Tcp
                        } else {
                            ConnType::Tcp6
                        };
                        serves(l, ct, crate::model::state::ip_addr(family, k.addr), k.port)
                    })
                    .map(|(_, m)| m.accepted)
                    .sum()
            });
            // A listener made since the last reading: all its drops are new.
            let before = self.drops.get(&l.cookie).copied().unwrap_or(0);
            let owner = owner(l.cookie);
            out.push(ListenerFigures {
                addr: l.addr,
                port: l.port,
                ip_version: if l.conn_type == ConnType::Tcp { 4 } else { 6 },
                pid: owner.as_ref().map(|o| o.0),
                comm: owner.map(|o| o.1),
                accept_queue: l.accept_queue,
                backlog: l.backlog,
                syn_backlog,
                accepted,
                drops: l.drops.wrapping_sub(before),
            });
        }
        self.drops = now.iter().map(|s| (s.cookie, s.drops)).collect();
        out.sort_by_key(|l| (l.port, l.ip_version, l.addr));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listener(ct: ConnType, addr: &str, port: u16) -> ListenSocket {
        ListenSocket {
            conn_type: ct,
            addr: addr.parse().unwrap(),
            port,
            accept_queue: 0,
            backlog: 128,
            drops: 0,
            cookie: 1,
            inode: 1,
        }
    }

    #[test]
    fn request_sockets_belong_to_the_listener_of_their_port_and_address() {
        let any4 = listener(ConnType::Tcp, "0.0.0.0", 80);
        let lo = "127.0.0.1".parse().unwrap();
        assert!(serves(&any4, ConnType::Tcp, lo, 80));
        assert!(!serves(&any4, ConnType::Tcp, lo, 81));
        assert!(!serves(&any4, ConnType::Tcp6, "::1".parse().unwrap(), 80));
        let one = listener(ConnType::Tcp, "10.0.0.1", 80);
        assert!(!serves(&one, ConnType::Tcp, lo, 80));
        // A dual-stack listener on :: takes IPv4 too.
        let any6 = listener(ConnType::Tcp6, "::", 80);
        assert!(serves(&any6, ConnType::Tcp, lo, 80));
        assert!(serves(&any6, ConnType::Tcp6, "::1".parse().unwrap(), 80));
    }
}
