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
    /// Each listener's handshakes since it was first seen, by cookie.
    handshakes: HashMap<u64, Handshakes>,
}

/// Handshakes of one listener since it was first seen.
#[derive(Debug, Default, Clone, Copy)]
struct Handshakes {
    started: u64,
    accepted: u64,
    /// Reported as failed so far.
    failed: u64,
}

impl Listeners {
    /// Starts counting drops from now (as the namespace's ListenDrops):
    /// the calling thread's namespace's listeners.
    pub fn start() -> Self {
        Self::from(&listeners::dump().unwrap_or_default())
    }

    /// Starts counting drops from the listeners of a dump.
    pub fn from(now: &[ListenSocket]) -> Self {
        Self {
            drops: now.iter().map(|s| (s.cookie, s.drops)).collect(),
            handshakes: HashMap::new(),
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
            // The listener's figures in the interval: what its inbound
            // keys (its address and port, or any address it serves) hold.
            let own = metrics.map(|m| {
                let mut sum = netconn_common::TcpMetrics::default();
                for (k, figures) in &m.ports {
                    let family = u16::from(k.family);
                    let ct = if family == netconn_common::AF_INET {
                        ConnType::Tcp
                    } else {
                        ConnType::Tcp6
                    };
                    let addr = crate::model::state::ip_addr(family, k.addr);
                    if k.direction == netconn_common::DIRECTION_INBOUND
                        && serves(l, ct, addr, k.port)
                    {
                        sum.merge(figures);
                    }
                }
                sum
            });
            let accepted = own.map(|m| m.accepted);
            let started = own.map(|m| m.requests);
            // Handshakes that never completed: begun, minus completed,
            // minus still waiting, since the listener was first seen.
            // Counted as they become known, never twice, never below 0.
            let failed = started.zip(accepted).map(|(started, accepted)| {
                let h = self.handshakes.entry(l.cookie).or_default();
                h.started += u64::from(started);
                h.accepted += u64::from(accepted);
                let known = h
                    .started
                    .saturating_sub(h.accepted + u64::from(syn_backlog));
                let new = known.saturating_sub(h.failed);
                h.failed += new;
                new as u32
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
                handshakes_started: started,
                handshakes_failed: failed,
                drops: l.drops.wrapping_sub(before),
            });
        }
        self.drops = now.iter().map(|s| (s.cookie, s.drops)).collect();
        self.handshakes
            .retain(|cookie, _| now.iter().any(|l| l.cookie == *cookie));
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
            uid: 0,
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

/// The `new_listener` alert: listeners on an address and port that did not
/// listen at the first reading and are not allowed, from one reading to
/// the next (a listener that comes and goes within an interval is not
/// seen).
#[derive(Debug)]
pub struct NewListeners {
    allowed: Vec<crate::config::Entry>,
    /// (ip version, address, port) listening at the first reading.
    known: Option<std::collections::HashSet<(u8, IpAddr, u16)>>,
    /// Alerts that hold, by the same key: the warning record, kept for
    /// its clear.
    active: HashMap<(u8, IpAddr, u16), crate::output::alert::ListenerAlert>,
}

impl NewListeners {
    pub fn new(allowed: Vec<crate::config::Entry>) -> Self {
        Self {
            allowed,
            known: None,
            active: HashMap::new(),
        }
    }

    fn allowed(&self, addr: IpAddr, port: u16) -> bool {
        use crate::config::Entry;
        self.allowed.iter().any(|e| match *e {
            Entry::Port(p) | Entry::EachAddress(p) => p == port,
            Entry::AddrPort(a, p) => p == port && a == addr,
        })
    }

    /// One reading of the namespace's listeners: the alert records it
    /// makes (a warning per new listener, a clear per one gone).
    pub fn check(
        &mut self,
        now: &[ListenSocket],
        owner: impl Fn(u64) -> Option<(u32, String)>,
        host: &str,
        netns: u32,
        time: &str,
    ) -> Vec<crate::output::alert::ListenerAlert> {
        let key = |l: &ListenSocket| {
            let version = if l.conn_type == ConnType::Tcp { 4 } else { 6 };
            (version, l.addr, l.port)
        };
        let Some(known) = &self.known else {
            self.known = Some(now.iter().map(key).collect());
            return Vec::new();
        };
        let mut out = Vec::new();
        let listening: std::collections::HashSet<_> = now.iter().map(key).collect();
        // Who opened a port is the first thing asked of a new listener:
        // where the programs did not record it (no --events), the
        // processes' descriptors are walked for its socket, once per
        // reading and only when a listener is new (listen() is rare).
        let mut walked: Option<std::collections::HashMap<u32, (u32, String)>> = None;
        for l in now {
            let k = key(l);
            if known.contains(&k) || self.allowed(l.addr, l.port) || self.active.contains_key(&k) {
                continue;
            }
            let owner = owner(l.cookie).or_else(|| {
                (walked.get_or_insert_with(crate::tables::procs::processes))
                    .get(&l.inode)
                    .cloned()
            });
            let alert = crate::output::alert::ListenerAlert {
                head: crate::output::alert::AlertHead {
                    kind: "alert",
                    alert: crate::model::alert::Kind::NewListener,
                    status: "warning",
                    time: time.to_owned(),
                    host: host.to_owned(),
                    netns,
                    owner: None,
                },
                addr: l.addr,
                port: l.port,
                ip_version: k.0,
                pid: owner.as_ref().map(|o| o.0),
                comm: owner.map(|o| o.1),
                uid: l.uid,
                since: time.to_owned(),
            };
            out.push(alert.clone());
            self.active.insert(k, alert);
        }
        let gone: Vec<_> = self
            .active
            .keys()
            .filter(|k| !listening.contains(k))
            .copied()
            .collect();
        for k in gone {
            if let Some(mut alert) = self.active.remove(&k) {
                alert.head.status = "clear";
                alert.head.time = time.to_owned();
                out.push(alert);
            }
        }
        out
    }
}

#[cfg(test)]
mod alert_tests {
    use super::*;

    fn listener(addr: &str, port: u16, cookie: u64) -> ListenSocket {
        ListenSocket {
            conn_type: ConnType::Tcp,
            addr: addr.parse().unwrap(),
            port,
            accept_queue: 0,
            backlog: 128,
            drops: 0,
            cookie,
            inode: 1,
            uid: 1000,
        }
    }

    #[test]
    fn new_listeners_warn_once_and_clear_when_gone() {
        use crate::config::Entry;
        let mut a = NewListeners::new(vec![Entry::Port(8080)]);
        let owner = |c: u64| (c == 3).then(|| (42, "nc".to_owned()));
        let start = [listener("0.0.0.0", 22, 1)];
        assert!(
            a.check(&start, owner, "h", 1, "t0").is_empty(),
            "the start is known"
        );
        let now = [
            listener("0.0.0.0", 22, 1),
            listener("0.0.0.0", 8080, 2),
            listener("127.0.0.1", 4444, 3),
        ];
        let alerts = a.check(&now, owner, "h", 1, "t1");
        assert_eq!(alerts.len(), 1, "{alerts:?}");
        assert_eq!((alerts[0].port, alerts[0].head.status), (4444, "warning"));
        assert_eq!((alerts[0].pid, alerts[0].uid), (Some(42), 1000));
        // Once per listener while it listens.
        assert!(a.check(&now, owner, "h", 1, "t2").is_empty());
        let cleared = a.check(&start, owner, "h", 1, "t3");
        assert_eq!(cleared.len(), 1);
        assert_eq!(
            (
                cleared[0].head.status,
                cleared[0].since.as_str(),
                cleared[0].head.time.as_str()
            ),
            ("clear", "t1", "t3")
        );
        // The start's own listener closing is no alert.
        assert!(a.check(&[], owner, "h", 1, "t4").is_empty());
    }
}
