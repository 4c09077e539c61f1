//! Connection records (`watch --events`): the kernel's open/close events
//! turned into `"type":"conn"` NDJSON records (what `tcplife` prints, for
//! a pipeline). Memory: one entry per connection opened while watching,
//! dropped at its close.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;

use netconn_common::{
    CONN_CLOSE, CONN_FAILED, CONN_OPEN, CONN_RESET, ConnEvent, FAILURE_NAMES, RESET_RECEIVED,
    RESET_SENT, failure_reason,
};

use crate::model::socket::{Direction, comm, is_local};
use crate::model::state::{ip_addr, ip_version};
use crate::output::conn::{CloseFigures, ConnRecord, FailedFigures};

use crate::model::state::{
    TCP_CLOSE_WAIT as CLOSE_WAIT, TCP_CLOSING as CLOSING, TCP_ESTABLISHED as ESTABLISHED,
    TCP_FIN_WAIT1 as FIN_WAIT1, TCP_FIN_WAIT2 as FIN_WAIT2, TCP_LAST_ACK as LAST_ACK,
    TCP_LISTEN as LISTEN, TCP_SYN_RECV as SYN_RECV, TCP_SYN_SENT as SYN_SENT,
};

/// Why a connection closed.
pub fn close_reason(old: u8, reset: u8) -> &'static str {
    if reset & RESET_RECEIVED != 0 {
        "rst_received"
    } else if reset & RESET_SENT != 0 {
        "rst_sent"
    } else {
        match old {
            // Both sides sent their FIN: the orderly end.
            FIN_WAIT2 | LAST_ACK | CLOSING => "fin",
            LISTEN => "listener_closed",
            // Left an open state without FINs or a reset: the kernel gave
            // up (retransmission or keepalive timeout).
            ESTABLISHED | CLOSE_WAIT | FIN_WAIT1 => "timeout",
            _ => "other",
        }
    }
}

/// The name of an errno a failed connect ends with.
pub fn errno_name(errno: u8) -> Option<&'static str> {
    Some(match i32::from(errno) {
        0 => return None,
        libc::ECONNREFUSED => "ECONNREFUSED",
        libc::ETIMEDOUT => "ETIMEDOUT",
        libc::EHOSTUNREACH => "EHOSTUNREACH",
        libc::ENETUNREACH => "ENETUNREACH",
        libc::EHOSTDOWN => "EHOSTDOWN",
        libc::ENETDOWN => "ENETDOWN",
        libc::ECONNRESET => "ECONNRESET",
        libc::EACCES => "EACCES",
        libc::EPERM => "EPERM",
        libc::EPROTO => "EPROTO",
        _ => "other",
    })
}

/// Milliseconds between two `bpf_ktime_get_ns` stamps, to the microsecond.
fn millis(from_ns: u64, to_ns: u64) -> f64 {
    let ms = to_ns.saturating_sub(from_ns) as f64 / 1e6;
    (ms * 1000.0).round() / 1000.0
}

/// How long a close that would read "timeout" waits for the reset that
/// may follow it.
pub const RESET_WAIT_NS: u64 = 20_000_000;

/// Now on the clock `bpf_ktime_get_ns()` reads (CLOCK_MONOTONIC).
pub fn monotonic_ns() -> u64 {
    let now = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
        .expect("CLOCK_MONOTONIC is always there");
    now.tv_sec() as u64 * 1_000_000_000 + now.tv_nsec() as u64
}

/// What is remembered of an open connection.
struct Open {
    ts_ns: u64,
    direction: Direction,
}

/// Turns events into records.
pub struct ConnRecords {
    open: HashMap<u64, Open>,
    /// Closes that would read "timeout", held until their reset arrives
    /// or [`RESET_WAIT_NS`] has passed: an abort (`SO_LINGER` 0, close with
    /// unread data) moves the socket to CLOSE first and sends its RST
    /// after, and the two records can reach userspace in different
    /// drains (a drain can even find the reset's record reserved but not
    /// yet committed).
    pending: Vec<(ConnEvent, String)>,
    /// Resets seen in this batch and the previous one, by cookie.
    resets: HashMap<u64, u8>,
    older_resets: HashMap<u64, u8>,
    /// Per namespace (`--all-namespaces`), what directions are read by;
    /// events of any other namespace use `fallback` (a single watch: its
    /// own namespace).
    spaces: HashMap<u32, Directions>,
    fallback: Directions,
    /// What each namespace belongs to (`--all-namespaces`).
    owners: HashMap<u32, crate::namespaces::owner::Owner>,
}

/// A namespace's listening ports and addresses.
#[derive(Default)]
struct Directions {
    /// Local ports with a listener (from the start's dump, then events).
    listening: HashMap<u16, u32>,
    locals: HashSet<IpAddr>,
}

impl Directions {
    fn new(listening: impl IntoIterator<Item = u16>, locals: HashSet<IpAddr>) -> Self {
        let mut l = HashMap::new();
        for p in listening {
            *l.entry(p).or_default() += 1;
        }
        Self {
            listening: l,
            locals,
        }
    }
}

impl ConnRecords {
    /// Records of one namespace: the ports listening and the addresses it
    /// has now.
    pub fn new(listening: impl IntoIterator<Item = u16>, locals: HashSet<IpAddr>) -> Self {
        Self {
            open: HashMap::new(),
            pending: Vec::new(),
            resets: HashMap::new(),
            older_resets: HashMap::new(),
            spaces: HashMap::new(),
            fallback: Directions::new(listening, locals),
            owners: HashMap::new(),
        }
    }

    /// Namespace `netns`'s listening ports and addresses, and its owner
    /// (`--all-namespaces`: one `ConnRecords` for every namespace).
    pub fn know_namespace(
        &mut self,
        netns: u32,
        listening: impl IntoIterator<Item = u16>,
        locals: HashSet<IpAddr>,
    ) {
        self.spaces
            .insert(netns, Directions::new(listening, locals));
    }

    /// What namespace `netns` belongs to, for its records.
    pub fn set_owner(&mut self, netns: u32, owner: crate::namespaces::owner::Owner) {
        self.owners.insert(netns, owner);
    }

    /// Forgets a namespace that is gone.
    pub fn forget_namespace(&mut self, netns: u32) {
        self.spaces.remove(&netns);
        self.owners.remove(&netns);
    }

    fn space(&mut self, netns: u32) -> &mut Directions {
        self.spaces.get_mut(&netns).unwrap_or(&mut self.fallback)
    }

    /// Connections open and remembered (memory).
    pub fn tracked(&self) -> usize {
        self.open.len()
    }

    fn direction(&mut self, e: &ConnEvent, raddr: IpAddr) -> Direction {
        let space = self.space(e.netns);
        let local = is_local(raddr, &space.locals);
        match (e.oldstate, e.newstate) {
            (_, LISTEN) => Direction::Listen,
            _ if e.kind == CONN_CLOSE && e.oldstate == LISTEN => Direction::Listen,
            _ if local => Direction::Local,
            (SYN_RECV, ESTABLISHED) => Direction::Inbound,
            (SYN_SENT, ESTABLISHED) => Direction::Outbound,
            // Opened before netconn started: by its local port.
            _ if space.listening.contains_key(&e.lport) => Direction::Inbound,
            _ => Direction::Outbound,
        }
    }

    /// The records of one batch of events (in kernel order); `now_ns` is
    /// the monotonic clock the events' stamps use (`bpf_ktime_get_ns`),
    /// `time` gives an event's RFC 3339 time. Closes that may still learn
    /// of a reset come out with a later batch.
    pub fn batch<'a>(
        &mut self,
        events: &[ConnEvent],
        host: &'a str,
        now_ns: u64,
        time: impl Fn(&ConnEvent) -> String,
    ) -> Vec<ConnRecord<'a>> {
        self.older_resets = std::mem::take(&mut self.resets);
        for e in events.iter().filter(|e| e.kind == CONN_RESET) {
            *self.resets.entry(e.cookie).or_default() |= e.reset;
        }
        let mut out = Vec::new();
        for (mut e, t) in std::mem::take(&mut self.pending) {
            e.reset |= self.reset_seen(e.cookie);
            let waited = now_ns.saturating_sub(e.ts_ns) >= RESET_WAIT_NS;
            if e.reset != 0 || waited {
                out.push(self.record(&e, host, &t));
            } else {
                self.pending.push((e, t));
            }
        }
        for e in events.iter().filter(|e| e.kind != CONN_RESET) {
            let mut e = *e;
            e.reset |= self.reset_seen(e.cookie);
            if e.kind == CONN_CLOSE && close_reason(e.oldstate, e.reset) == "timeout" {
                self.pending.push((e, time(&e)));
            } else {
                out.push(self.record(&e, host, &time(&e)));
            }
        }
        out
    }

    fn reset_seen(&self, cookie: u64) -> u8 {
        self.resets.get(&cookie).copied().unwrap_or(0)
            | self.older_resets.get(&cookie).copied().unwrap_or(0)
    }

    /// The record for one event; `time` is the event's, RFC 3339.
    pub fn record<'a>(&mut self, e: &ConnEvent, host: &'a str, time: &str) -> ConnRecord<'a> {
        let laddr = ip_addr(e.family, e.laddr);
        let raddr = ip_addr(e.family, e.raddr);
        let opened = match e.kind {
            CONN_CLOSE => self.open.remove(&e.cookie),
            _ => None,
        };
        let direction = match (&opened, e.kind) {
            (Some(o), _) => o.direction,
            // A connect that never got through: ours, or to this host.
            (None, CONN_FAILED) if is_local(raddr, &self.space(e.netns).locals) => Direction::Local,
            (None, CONN_FAILED) => Direction::Outbound,
            (None, _) => self.direction(e, raddr),
        };
        if e.kind == CONN_OPEN {
            self.open.insert(
                e.cookie,
                Open {
                    ts_ns: e.ts_ns,
                    direction,
                },
            );
            if e.newstate == LISTEN {
                *self.space(e.netns).listening.entry(e.lport).or_default() += 1;
            }
        } else if e.oldstate == LISTEN {
            let listening = &mut self.space(e.netns).listening;
            if let Some(n) = listening.get_mut(&e.lport) {
                *n -= 1;
                if *n == 0 {
                    listening.remove(&e.lport);
                }
            }
        }
        ConnRecord {
            kind: "conn",
            event: match e.kind {
                CONN_OPEN => "open",
                CONN_FAILED => "failed",
                _ => "close",
            },
            time: time.to_owned(),
            host,
            proto: "tcp",
            ip_version: ip_version(e.family),
            laddr,
            lport: e.lport,
            raddr,
            rport: e.rport,
            direction: direction.name(),
            pid: (e.pid != 0).then_some(e.pid),
            comm: comm(&e.comm),
            netns: e.netns,
            namespace: crate::host::namespace_class(e.netns),
            owner: self.owners.get(&e.netns).cloned(),
            failed: (e.kind == CONN_FAILED).then(|| FailedFigures {
                reason: FAILURE_NAMES[failure_reason(i32::from(e.error))],
                error: errno_name(e.error),
                duration_ms: (e.start_ns != 0).then(|| millis(e.start_ns, e.ts_ns)),
                syn_retrans: e.total_retrans,
            }),
            close: (e.kind == CONN_CLOSE).then(|| CloseFigures {
                duration_ms: opened.map(|o| millis(o.ts_ns, e.ts_ns)),
                bytes_sent: e.bytes_acked,
                bytes_received: e.bytes_received,
                rtt_us: e.rtt_us,
                retrans: e.total_retrans,
                close_reason: close_reason(e.oldstate, e.reset),
            }),
        }
    }
}

/// RFC 3339 wall time of a `bpf_ktime_get_ns()` (CLOCK_MONOTONIC) stamp.
pub fn wall_time(ts_ns: u64) -> String {
    let ago = std::time::Duration::from_nanos(monotonic_ns().saturating_sub(ts_ns));
    let at = std::time::SystemTime::now() - ago;
    humantime::format_rfc3339_millis(at).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use netconn_common::AF_INET;
    use serde_json::Value;

    fn json(r: ConnRecord) -> Value {
        serde_json::to_value(r).unwrap()
    }

    fn ev(kind: u8, old: u8, new: u8, raddr: [u8; 4], lport: u16, ts: u64) -> ConnEvent {
        let mut r = [0u8; 16];
        r[..4].copy_from_slice(&raddr);
        let mut l = [0u8; 16];
        l[..4].copy_from_slice(&[10, 0, 0, 1]);
        let mut comm = [0u8; 16];
        comm[..4].copy_from_slice(b"curl");
        ConnEvent {
            cookie: 7,
            ts_ns: ts,
            kind,
            oldstate: old,
            newstate: new,
            family: AF_INET,
            lport,
            rport: 443,
            laddr: l,
            raddr: r,
            pid: 42,
            comm,
            // Not the host's namespace: a container's.
            netns: 12345,
            bytes_acked: 100,
            rtt_us: 55,
            ..Default::default()
        }
    }

    #[test]
    fn reasons() {
        assert_eq!(close_reason(FIN_WAIT2, 0), "fin");
        assert_eq!(close_reason(LAST_ACK, 0), "fin");
        assert_eq!(close_reason(ESTABLISHED, RESET_RECEIVED), "rst_received");
        assert_eq!(close_reason(ESTABLISHED, RESET_SENT), "rst_sent");
        assert_eq!(close_reason(ESTABLISHED, 0), "timeout");
        assert_eq!(close_reason(LISTEN, 0), "listener_closed");
    }

    #[test]
    fn open_then_close_carries_direction_and_duration() {
        let mut r = ConnRecords::new([], HashSet::from(["10.0.0.1".parse().unwrap()]));
        let open = json(r.record(
            &ev(
                CONN_OPEN,
                SYN_SENT,
                ESTABLISHED,
                [192, 0, 2, 7],
                40000,
                1_000_000,
            ),
            "h",
            "t",
        ));
        assert_eq!(open["direction"], "outbound");
        assert_eq!(open["comm"], "curl");
        assert_eq!(open["pid"], 42);
        assert_eq!(open["namespace"], "container");
        assert!(open.get("rtt_us").is_none());
        assert_eq!(r.tracked(), 1);
        let close = json(r.record(
            &ev(CONN_CLOSE, FIN_WAIT2, 7, [192, 0, 2, 7], 40000, 3_500_000),
            "h",
            "t",
        ));
        assert_eq!(close["direction"], "outbound");
        assert_eq!(close["duration_ms"], 2.5);
        assert_eq!(close["bytes_sent"], 100);
        assert_eq!(close["rtt_us"], 55);
        assert_eq!(close["close_reason"], "fin");
        assert_eq!(r.tracked(), 0);
    }

    #[test]
    fn a_reset_after_the_close_names_the_reason() {
        let mut r = ConnRecords::new([], HashSet::new());
        let close = ev(CONN_CLOSE, ESTABLISHED, 7, [192, 0, 2, 7], 40000, 5);
        let rst = ConnEvent {
            cookie: 7,
            kind: CONN_RESET,
            reset: RESET_SENT,
            ..Default::default()
        };
        // The close waits for a later batch, where the reset is, even
        // when a batch without it comes between.
        assert!(r.batch(&[close], "h", 6, |_| "t".into()).is_empty());
        assert!(r.batch(&[], "h", 7, |_| "t".into()).is_empty());
        let out = r.batch(&[rst], "h", 8, |_| "t".into());
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].close.unwrap().close_reason, "rst_sent");
        // No reset: a timeout, once the wait is over.
        let other = ConnEvent { cookie: 8, ..close };
        assert!(r.batch(&[other], "h", 6, |_| "t".into()).is_empty());
        assert!(
            r.batch(&[], "h", 4 + RESET_WAIT_NS, |_| "t".into())
                .is_empty()
        );
        let out = r.batch(&[], "h", 5 + RESET_WAIT_NS, |_| "t".into());
        assert_eq!(out[0].close.unwrap().close_reason, "timeout");
    }

    #[test]
    fn connections_from_before_start_and_local_peers() {
        let mut r = ConnRecords::new([8080], HashSet::from(["10.0.0.1".parse().unwrap()]));
        // Accepted before netconn started: inbound by its port, no duration.
        let close = json(r.record(
            &ev(CONN_CLOSE, LAST_ACK, 7, [192, 0, 2, 9], 8080, 5),
            "h",
            "t",
        ));
        assert_eq!(close["direction"], "inbound");
        assert_eq!(close["duration_ms"], Value::Null);
        let local = json(r.record(
            &ev(CONN_OPEN, SYN_SENT, ESTABLISHED, [10, 0, 0, 1], 40001, 5),
            "h",
            "t",
        ));
        assert_eq!(local["direction"], "local");
        let lo = json(r.record(
            &ev(CONN_OPEN, SYN_RECV, ESTABLISHED, [127, 0, 0, 1], 8080, 5),
            "h",
            "t",
        ));
        assert_eq!(lo["direction"], "local");
        let listen = json(r.record(&ev(CONN_OPEN, 7, LISTEN, [0, 0, 0, 0], 9000, 5), "h", "t"));
        assert_eq!(listen["direction"], "listen");
    }
}
