//! Connection tracking (netfilter conntrack) health of the namespace.
//!
//! No kernel hook is possible for conntrack here (no kprobes, no netfilter
//! tracepoints), so: table size from `/proc/sys/net/netfilter/
//! nf_conntrack_{count,max}` (O(1), per namespace), per-CPU counters from
//! `/proc/net/stat/nf_conntrack`, and live NEW / DESTROY events per
//! protocol from the ctnetlink multicast groups. Entries per protocol are
//! counted from one ctnetlink dump plus the events; a lost event (ENOBUFS
//! on the socket) is counted and repaired by a new dump, never silent.

use crate::alerts::Hysteresis;
use crate::model::alert::Kind;
use std::collections::BTreeMap;
use std::io;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use netlink_packet_netfilter::conntrack::{ConntrackMessage, ConntrackMessageType};
use netlink_packet_netfilter::nftables::{NfTablesMessage, RuleMessage};
use netlink_packet_netfilter::{
    NetfilterHeader, NetfilterMessage, NetfilterMessageInner, NetfilterProtoFamily,
    NetfilterSubsystem,
};
use netlink_sys::Socket;
use netlink_sys::protocols::NETLINK_NETFILTER;

use crate::config::Thresholds;
use crate::output::conntrack::{
    AlertRecord, AlertThresholds, ConntrackRecord, Events, LiveFigures, Table,
};

use crate::tables::netlink;

const PROC_STAT: &str = "/proc/thread-self/net/stat/nf_conntrack";
const COUNT: &str = "/proc/sys/net/netfilter/nf_conntrack_count";
const MAX: &str = "/proc/sys/net/netfilter/nf_conntrack_max";

/// `/proc/net/stat/nf_conntrack`: counters summed over CPUs (`entries`,
/// the same global value on each line, is taken once).
pub fn parse_stats(text: &str) -> Option<BTreeMap<String, u64>> {
    let mut lines = text.lines();
    let names: Vec<&str> = lines.next()?.split_whitespace().collect();
    let mut sums: BTreeMap<String, u64> = BTreeMap::new();
    let mut cpus = 0;
    for line in lines.filter(|l| !l.trim().is_empty()) {
        let values: Vec<&str> = line.split_whitespace().collect();
        if values.len() != names.len() {
            return None;
        }
        for (name, v) in names.iter().zip(values) {
            let v = u64::from_str_radix(v, 16).ok()?;
            let sum = sums.entry((*name).to_owned()).or_default();
            if *name == "entries" {
                *sum = v;
            } else {
                *sum += v;
            }
        }
        cpus += 1;
    }
    (cpus > 0).then_some(sums)
}

/// Per-second rates between two counter readings (`entries` is a level,
/// not a counter, and is left out).
pub fn rates(
    before: &BTreeMap<String, u64>,
    after: &BTreeMap<String, u64>,
    seconds: f64,
) -> BTreeMap<String, f64> {
    after
        .iter()
        .filter(|(k, _)| k.as_str() != "entries")
        .map(|(k, v)| {
            let d = v.saturating_sub(before.get(k).copied().unwrap_or(*v)) as f64;
            let rate = if seconds > 0.0 { d / seconds } else { 0.0 };
            (k.clone(), (rate * 100.0).round() / 100.0)
        })
        .collect()
}

/// Protocol names entries are counted under.
fn proto_name(proto: u8) -> &'static str {
    match proto {
        6 => "tcp",
        17 => "udp",
        1 => "icmp",
        58 => "icmpv6",
        132 => "sctp",
        _ => "other",
    }
}

/// Live figures from ctnetlink.
#[derive(Debug, Default, Clone)]
pub struct Live {
    /// Entries per protocol: the last dump plus NEW minus DESTROY.
    pub entries: BTreeMap<&'static str, i64>,
    /// Events seen since start, per kind and protocol.
    pub new: BTreeMap<&'static str, u64>,
    pub destroy: BTreeMap<&'static str, u64>,
    /// Times the socket overflowed (events lost) since start.
    pub lost: u64,
    /// Dumps taken after the first (after an overflow, or when the live
    /// entries disagree steadily with the kernel's count).
    pub resyncs: u64,
    /// Set by a reading that found such a disagreement.
    pub resync_requested: bool,
}

const NFNLGRP_CONNTRACK_NEW: u32 = 1;
const NFNLGRP_CONNTRACK_DESTROY: u32 = 3;
// The attributes read in place (`linux/netfilter/nfnetlink_conntrack.h`):
// the crate's typed parse builds every attribute of every entry, see
// message_protocol().
const CTA_TUPLE_ORIG: u16 = 1;
const CTA_TUPLE_PROTO: u16 = 2;
const CTA_PROTO_NUM: u16 = 1;
/// The `nfgenmsg` ahead of a netfilter message's attributes.
const NFGENMSG_LEN: usize = 4;

/// A ctnetlink socket; subscribed to `groups` when given.
fn netlink_socket(groups: &[u32]) -> io::Result<Socket> {
    let sock = netlink::subscribed(NETLINK_NETFILTER, groups)?;
    // A large buffer makes overflows rare; they are handled anyway.
    // NETCONN_CONNTRACK_RCVBUF shrinks it, for tests that need overflows.
    let size: libc::c_int = std::env::var("NETCONN_CONNTRACK_RCVBUF")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(4 << 20);
    // Best effort: a refused size leaves the kernel's default.
    let _ = sock.set_rx_buf_sz(size);
    Ok(sock)
}

/// Asks for a dump of a netfilter subsystem's objects: `nfgenmsg` for
/// both families (AF_UNSPEC), NFNETLINK_V0, no attributes.
fn request_dump(sock: &Socket, inner: impl Into<NetfilterMessageInner>) -> io::Result<()> {
    let header = NetfilterHeader::new(NetfilterProtoFamily::Unspec, 0, 0);
    let message = NetfilterMessage::new(header, inner);
    let kind = netlink_packet_core::NetlinkSerializable::message_type(&message);
    netlink::request_dump(sock, kind, &message)
}

/// The protocol number of a conntrack message's original tuple. Read in
/// place: with `netlink-packet-netfilter`'s typed parse each entry costs
/// a dozen allocations (see BENCHMARKS.md), at every event and for every
/// entry of a dump that can hold millions.
pub fn message_protocol(payload: &[u8]) -> Option<u8> {
    let tuple = netlink::attr(payload.get(NFGENMSG_LEN..)?, CTA_TUPLE_ORIG)?;
    let proto = netlink::attr(tuple, CTA_TUPLE_PROTO)?;
    netlink::attr(proto, CTA_PROTO_NUM)?.first().copied()
}

/// Entries per protocol, from a ctnetlink dump of the namespace's table.
pub fn dump_entries() -> io::Result<BTreeMap<&'static str, i64>> {
    let sock = netlink_socket(&[])?;
    request_dump(&sock, ConntrackMessage::Get(Vec::new()))?;
    let mut entries = BTreeMap::new();
    netlink::recv_dump(&sock, |_, payload| {
        if let Some(p) = message_protocol(payload) {
            *entries.entry(proto_name(p)).or_default() += 1;
        }
    })?;
    Ok(entries)
}

const NFTA_RULE_EXPRESSIONS: u16 = 4;
const NFTA_LIST_ELEM: u16 = 1;
const NFTA_EXPR_NAME: u16 = 1;
/// nftables expressions that make the namespace's conntrack track flows
/// (each takes a reference on it, `nf_ct_netns_get()`).
const CONNTRACK_EXPRESSIONS: [&[u8]; 7] = [
    b"ct",
    b"nat",
    b"masq",
    b"redir",
    b"connlimit",
    b"flow_offload",
    b"synproxy",
];

/// The names of the expressions of one nftables rule message. Read in
/// place too: the crate's typed parse of a rule also types each
/// expression's data, and rejects the whole rule when it cannot; only
/// the names matter here.
fn rule_expressions(payload: &[u8]) -> impl Iterator<Item = &[u8]> {
    let exprs = payload
        .get(NFGENMSG_LEN..)
        .and_then(|a| netlink::attr(a, NFTA_RULE_EXPRESSIONS))
        .unwrap_or_default();
    netlink::attrs(exprs)
        .filter(|(k, _)| *k == NFTA_LIST_ELEM)
        .filter_map(|(_, elem)| netlink::attr(elem, NFTA_EXPR_NAME))
        .map(|name| name.split(|b| *b == 0).next().unwrap_or_default())
}

/// Whether an nftables rule of the namespace needs conntrack (a `ct`, NAT,
/// `connlimit`... expression); None when nftables cannot be asked. Rules
/// of the legacy iptables are not seen.
pub fn nft_needs_conntrack() -> Option<bool> {
    let sock = netlink::socket(NETLINK_NETFILTER).ok()?;
    let rules = RuleMessage {
        attributes: Vec::new(),
    };
    request_dump(&sock, NfTablesMessage::GetRule(rules)).ok()?;
    let mut needs = false;
    netlink::recv_dump(&sock, |_, payload| {
        needs |= rule_expressions(payload).any(|n| CONNTRACK_EXPRESSIONS.contains(&n));
    })
    .ok()?;
    Some(needs)
}

/// Listens to NEW and DESTROY events on a thread of its own, which must
/// be in the counted namespace when this is called (the socket is).
pub fn listen() -> io::Result<Arc<Mutex<Live>>> {
    let sock = netlink_socket(&[NFNLGRP_CONNTRACK_NEW, NFNLGRP_CONNTRACK_DESTROY])?;
    let live = Arc::new(Mutex::new(Live {
        entries: dump_entries()?,
        ..Default::default()
    }));
    let shared = Arc::clone(&live);
    std::thread::Builder::new()
        .name("conntrack-events".into())
        .spawn(move || event_loop(sock, &shared))?;
    Ok(live)
}

/// How often the event thread looks for a resync request when idle.
const POLL_REQUESTS: std::time::Duration = std::time::Duration::from_millis(200);

fn event_loop(sock: Socket, live: &Mutex<Live>) {
    use nix::sys::socket::{setsockopt, sockopt::ReceiveTimeout};
    let timeout = nix::sys::time::TimeVal::new(0, POLL_REQUESTS.as_micros() as i64);
    // Without it the thread still works, only looks for requests later.
    let _ = setsockopt(&sock, ReceiveTimeout, &timeout);
    let mut buf = Vec::with_capacity(256 * 1024);
    loop {
        if live.lock().expect("conntrack state").resync_requested {
            resync(&sock, &mut buf, live);
        }
        buf.clear();
        if let Err(err) = sock.recv(&mut buf, 0) {
            match err.raw_os_error() {
                // Events were dropped: count it and recount the table.
                Some(libc::ENOBUFS) => {
                    live.lock().expect("conntrack state").lost += 1;
                    resync(&sock, &mut buf, live);
                }
                Some(libc::EAGAIN | libc::EINTR) => {}
                _ => return,
            }
            continue;
        }
        apply(&buf, &mut live.lock().expect("conntrack state"));
    }
}

/// Counts the NEW and DESTROY events of one datagram into `l`; true when
/// it also carried an nftables change (rules added or removed).
fn apply(buf: &[u8], l: &mut Live) -> bool {
    let mut rules_changed = false;
    for (kind, payload) in netlink::messages(buf).map_while(Result::ok) {
        match NetfilterSubsystem::from((kind >> 8) as u8) {
            NetfilterSubsystem::Conntrack => {}
            NetfilterSubsystem::NfTables => {
                rules_changed = true;
                continue;
            }
            _ => continue,
        }
        let Some(proto) = message_protocol(payload).map(proto_name) else {
            continue;
        };
        match ConntrackMessageType::from(kind as u8) {
            ConntrackMessageType::New => {
                *l.new.entry(proto).or_default() += 1;
                *l.entries.entry(proto).or_default() += 1;
            }
            ConntrackMessageType::Delete => {
                *l.destroy.entry(proto).or_default() += 1;
                *l.entries.entry(proto).or_default() -= 1;
            }
            _ => {}
        }
    }
    rules_changed
}

/// ctnetlink events read by the caller at each reading instead of by a
/// thread of their own (`--all-namespaces`): a socket made inside the
/// namespace stays in it, so a namespace costs one non-blocking receive
/// per interval, where a dump walks the host-wide table (milliseconds,
/// under the table's bucket locks, for every namespace). The same socket
/// hears nftables announce rule changes, so that whether a rule needs
/// conntrack is asked again only then.
struct Polled {
    sock: Socket,
    /// nf_conntrack_count, nf_conntrack_max and stat/nf_conntrack, opened
    /// inside the namespace and read again from their start: a sysctl or
    /// a /proc/net file keeps the namespace it was opened in.
    files: [std::fs::File; 3],
    live: Live,
    buf: Vec<u8>,
    /// Whether a rule needs conntrack, as last asked; None: to ask.
    rules: Option<Option<bool>>,
}

/// nftables' multicast group (`NFNLGRP_NFTABLES`): rule set changes.
const NFNLGRP_NFTABLES: u32 = 7;

impl Polled {
    /// Subscribes, then counts the entries: by a dump only when the
    /// kernel's count says there are any.
    fn open() -> io::Result<Self> {
        let sock = netlink_socket(&[
            NFNLGRP_CONNTRACK_NEW,
            NFNLGRP_CONNTRACK_DESTROY,
            NFNLGRP_NFTABLES,
        ])?;
        let entries = match read_number(COUNT) {
            Ok(0) => BTreeMap::new(),
            _ => dump_entries()?,
        };
        let files = [
            std::fs::File::open(COUNT)?,
            std::fs::File::open(MAX)?,
            std::fs::File::open(PROC_STAT)?,
        ];
        Ok(Self {
            sock,
            files,
            live: Live {
                entries,
                ..Default::default()
            },
            buf: Vec::with_capacity(64 * 1024),
            rules: None,
        })
    }

    /// Takes every event queued since the last call; an overflow is
    /// counted and repaired by a dump, as a resync request is.
    fn drain(&mut self) {
        loop {
            self.buf.clear();
            match self.sock.recv(&mut self.buf, libc::MSG_DONTWAIT) {
                Ok(_) => {
                    if apply(&self.buf, &mut self.live) {
                        self.rules = None;
                    }
                }
                Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => {
                    self.live.lost += 1;
                    self.live.resync_requested = true;
                    // Rule changes may be among what was lost.
                    self.rules = None;
                }
                Err(_) => break,
            }
        }
        if self.live.resync_requested {
            let live = Mutex::new(std::mem::take(&mut self.live));
            resync(&self.sock, &mut self.buf, &live);
            self.live = live.into_inner().expect("conntrack state");
        }
    }
}

/// Drops the queued events (the dump that follows includes their effect)
/// and recounts the table.
fn resync(sock: &Socket, buf: &mut Vec<u8>, live: &Mutex<Live>) {
    loop {
        buf.clear();
        match sock.recv(buf, libc::MSG_DONTWAIT) {
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => {}
            Err(_) => break,
        }
    }
    let fresh = dump_entries();
    let mut l = live.lock().expect("conntrack state");
    if let Ok(entries) = fresh {
        l.entries = entries;
        l.resyncs += 1;
        l.resync_requested = false;
    }
}

/// The figures of one conntrack record, and what is needed for the next.
pub struct Monitor {
    live: Option<Arc<Mutex<Live>>>,
    polled: Option<Polled>,
    /// Live entries minus the kernel's count at the last reading, if not 0.
    mismatch: Option<i64>,
    last: Option<(Instant, BTreeMap<String, u64>)>,
    alert: Hysteresis,
}

/// What one reading found.
pub struct TableReading<'a> {
    pub record: ConntrackRecord<'a>,
    /// An alert record, when the level changed.
    pub alert: Option<AlertRecord<'a>>,
}

/// Whether the live entries differ from the kernel's `count` by the same
/// amount as at the last reading (`mismatch`, updated): events racing a
/// dump can count an entry twice or not at all, and such a difference
/// that holds over two readings is repaired by a new dump (the count
/// itself also includes entries not yet confirmed, so a single reading
/// may differ under load).
fn steady_mismatch(mismatch: &mut Option<i64>, l: &Live, count: u64) -> bool {
    let diff = l.entries.values().sum::<i64>() - count as i64;
    let steady = diff != 0 && *mismatch == Some(diff);
    *mismatch = (diff != 0).then_some(diff);
    steady
}

/// The namespace's conntrack counters, when the kernel has them.
fn read_stats() -> Option<BTreeMap<String, u64>> {
    std::fs::read_to_string(PROC_STAT)
        .ok()
        .and_then(|t| parse_stats(&t))
}

fn read_number(path: &str) -> io::Result<u64> {
    parse_number(&std::fs::read_to_string(path)?, path)
}

fn parse_number(text: &str, path: &str) -> io::Result<u64> {
    text.trim()
        .parse()
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, format!("{path}: not a number")))
}

/// A kept file's text, generated anew.
fn read_from_start(file: &std::fs::File) -> io::Result<String> {
    crate::tables::totals::read_from_start(file)
}

impl Monitor {
    /// `events`: also listen to ctnetlink events (the daemon); a one-shot
    /// reading does not.
    pub fn new(events: bool, thresholds: Thresholds) -> Self {
        let live = if events && std::path::Path::new(COUNT).exists() {
            listen().ok()
        } else {
            None
        };
        Self {
            live,
            polled: None,
            mismatch: None,
            // The first record's rates run from here.
            last: read_stats().map(|s| (Instant::now(), s)),
            alert: Hysteresis::new(thresholds),
        }
    }

    /// A monitor whose events are read at each reading, on the caller's
    /// thread (see [`Polled`]); made on a thread inside the namespace.
    pub fn polled(thresholds: Thresholds) -> Self {
        let polled = if std::path::Path::new(COUNT).exists() {
            Polled::open().ok()
        } else {
            None
        };
        Self {
            polled,
            ..Self::new(false, thresholds)
        }
    }

    /// Whether an nftables rule needs conntrack (see
    /// [`nft_needs_conntrack`]); asked only after a change when polled.
    fn rules_need_conntrack(&mut self) -> Option<bool> {
        match &mut self.polled {
            Some(p) => *p.rules.get_or_insert_with(nft_needs_conntrack),
            None => nft_needs_conntrack(),
        }
    }

    /// One record (and an alert record when the level changed).
    pub fn read<'a>(&mut self, host: &'a str, netns: u32, time: &'a str) -> TableReading<'a> {
        let mut record = ConntrackRecord {
            kind: "conntrack",
            time,
            host,
            netns,
            available: false,
            reason: None,
            table: None,
        };
        let number = |i: usize, path: &str| match &self.polled {
            Some(p) => parse_number(&read_from_start(&p.files[i])?, path),
            None => read_number(path),
        };
        let (count, max) = match (number(0, COUNT), number(1, MAX)) {
            (Ok(c), Ok(m)) => (c, m),
            _ => {
                record.reason =
                    Some("conntrack is not loaded (no /proc/sys/net/netfilter/nf_conntrack_count)");
                return TableReading {
                    record,
                    alert: None,
                };
            }
        };
        let exact = if max > 0 {
            count as f64 * 100.0 / max as f64
        } else {
            0.0
        };
        // Percent, to 1/10000 of a percent; alerts compare the exact value.
        let utilization = (exact * 10_000.0).round() / 10_000.0;
        let mut table = Table {
            count,
            max,
            utilization,
            stats: None,
            totals: None,
            entries: None,
            live: None,
            note: None,
        };
        let now = Instant::now();
        let stats = match &self.polled {
            Some(p) => read_from_start(&p.files[2])
                .ok()
                .and_then(|t| parse_stats(&t)),
            None => read_stats(),
        };
        if let Some(stats) = stats {
            table.stats = Some(self.last.as_ref().map(|(then, before)| {
                rates(before, &stats, now.duration_since(*then).as_secs_f64())
            }));
            table.totals = Some(stats.clone());
            self.last = Some((now, stats));
        }
        // Whether any flow was ever seen: events since start, when listening.
        let mut seen_new = false;
        if let Some(p) = &mut self.polled {
            p.drain();
        }
        let live = match (&self.live, &mut self.polled) {
            (Some(live), _) => {
                let mut guard = live.lock().expect("conntrack state");
                let l = guard.clone();
                guard.resync_requested |= steady_mismatch(&mut self.mismatch, &l, count);
                Some(l)
            }
            (None, Some(p)) => {
                p.live.resync_requested |= steady_mismatch(&mut self.mismatch, &p.live, count);
                Some(p.live.clone())
            }
            (None, None) => None,
        };
        if let Some(l) = live {
            seen_new = !l.new.is_empty();
            table.entries = Some(l.entries);
            table.live = Some(LiveFigures {
                events: Events {
                    new: l.new,
                    destroy: l.destroy,
                },
                lost_events: l.lost,
                resyncs: l.resyncs,
            });
        } else if let Ok(entries) = dump_entries() {
            // One-shot: entries per protocol from one dump.
            table.entries = Some(entries);
        }
        // Said only when no flow was seen and no nftables rule asks for
        // tracking (a rule that does, with no traffic yet, is not this).
        if count == 0 && !seen_new && self.rules_need_conntrack() != Some(true) {
            table.note = Some(
                "no tracked connections: conntrack only tracks flows once a rule needs it (e.g. an nft ct state rule)",
            );
        }
        record.available = true;
        record.table = Some(table);
        let t = self.alert.thresholds;
        let alert = self.alert.update(exact).map(|level| AlertRecord {
            kind: "alert",
            time,
            host,
            netns,
            alert: Kind::ConntrackFull,
            status: level.name(),
            utilization,
            thresholds: AlertThresholds {
                warning: t.warn,
                critical: t.crit,
                clear: t.clear,
            },
        });
        TableReading { record, alert }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STAT: &str = "entries  clashres found new invalid ignore delete chainlength insert insert_failed drop early_drop icmp_error  expect_new expect_create expect_delete search_restart
00000005  00000000 00000001 00000000 00000002 0000000a 00000000 00000000 00000003 00000000 00000000 00000000 00000000  00000000 00000000 00000000 00000000
00000005  00000000 00000001 00000000 00000001 00000010 00000000 00000000 00000004 00000000 00000000 00000000 00000000  00000000 00000000 00000000 00000001
";

    #[test]
    fn stats_sum_cpus_but_not_entries() {
        let s = parse_stats(STAT).unwrap();
        assert_eq!(s["entries"], 5);
        assert_eq!(s["found"], 2);
        assert_eq!(s["invalid"], 3);
        assert_eq!(s["ignore"], 26);
        assert_eq!(s["insert"], 7);
        assert_eq!(s["search_restart"], 1);
        assert!(parse_stats("entries found\n1\n").is_none());
        assert!(parse_stats("entries found\n").is_none());
        assert!(parse_stats("entries\nzz\n").is_none());
    }

    #[test]
    fn rates_per_second_without_entries() {
        let a = parse_stats(STAT).unwrap();
        let mut b = a.clone();
        *b.get_mut("insert").unwrap() += 10;
        *b.get_mut("entries").unwrap() += 100;
        let r = rates(&a, &b, 2.0);
        assert_eq!(r["insert"], 5.0);
        assert_eq!(r["found"], 0.0);
        assert!(!r.contains_key("entries"));
    }

    #[test]
    fn expression_names_of_a_rule() {
        use netlink_packet_core::Emitable;
        use netlink_packet_netfilter::nftables::{
            ExpressionAttribute, ListAttribute, RuleAttribute,
        };
        // A rule as the kernel sends it, emitted by the crate.
        let element =
            |name: &str| ListAttribute::Element(vec![ExpressionAttribute::Name(name.to_owned())]);
        let rule = RuleMessage {
            attributes: vec![
                RuleAttribute::Table("filter".into()),
                RuleAttribute::Expressions(vec![element("ct"), element("cmp")]),
            ],
        };
        let header = NetfilterHeader::new(NetfilterProtoFamily::Inet, 0, 0);
        let message = NetfilterMessage::new(header, NfTablesMessage::NewRule(rule));
        let mut payload = vec![0u8; message.buffer_len()];
        message.emit(&mut payload);
        let names: Vec<&[u8]> = rule_expressions(&payload).collect();
        assert_eq!(names, [&b"ct"[..], &b"cmp"[..]]);
        assert_eq!(rule_expressions(&payload[..3]).count(), 0);
    }

    #[test]
    fn protocol_of_a_conntrack_message() {
        use netlink_packet_core::Emitable;
        use netlink_packet_netfilter::conntrack::{
            ConntrackAttribute, IPTuple, ProtoTuple, Protocol, Tuple,
        };
        // An entry as the kernel sends it, emitted by the crate.
        let tuple = |proto| {
            vec![
                Tuple::Ip(vec![
                    IPTuple::SourceAddress("10.0.0.1".parse().unwrap()),
                    IPTuple::DestinationAddress("10.0.0.2".parse().unwrap()),
                ]),
                Tuple::Proto(vec![
                    ProtoTuple::Protocol(proto),
                    ProtoTuple::SourcePort(40000),
                    ProtoTuple::DestinationPort(80),
                ]),
            ]
        };
        let entry = |proto| {
            let ct = ConntrackMessage::New(vec![
                ConntrackAttribute::CtaTupleOrig(tuple(proto)),
                ConntrackAttribute::CtaTupleReply(tuple(proto)),
                ConntrackAttribute::CtaTimeout(120),
            ]);
            let header = NetfilterHeader::new(NetfilterProtoFamily::IPv4, 0, 0);
            let message = NetfilterMessage::new(header, ct);
            let mut payload = vec![0u8; message.buffer_len()];
            message.emit(&mut payload);
            payload
        };
        assert_eq!(message_protocol(&entry(Protocol::Tcp)), Some(6));
        assert_eq!(message_protocol(&entry(Protocol::Udp)), Some(17));
        assert_eq!(message_protocol(&entry(Protocol::Tcp)[..10]), None);
        assert_eq!(proto_name(6), "tcp");
        assert_eq!(proto_name(1), "icmp");
        assert_eq!(proto_name(58), "icmpv6");
    }
}
