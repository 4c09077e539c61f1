//! `netconn list`: one row per socket of the namespace, with direction,
//! TCP metrics (the kernel's `tcp_info`, what `ss -ti` shows) and, on
//! request, the owning process.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io;
use std::net::IpAddr;

use crate::model::socket::{Direction, DumpedSocket, SocketKind, direction};
use crate::model::state::{ConnType, TCP_LISTEN, endpoint};
use crate::output::table::table;
use crate::tables::addresses::local_addresses;
use crate::tables::procs::Processes;
use crate::tables::sockdiag::{self, DiagMessage, INET_DIAG_INFO};
use crate::tables::tcp_info::TcpInfo;
use crate::tables::tcp_info::parse_tcp_info;
use netlink_packet_sock_diag::inet::ExtensionFlags;

/// One socket.
#[derive(Debug, Clone)]
pub struct Row {
    pub socket: DumpedSocket,
    pub remote_addr: IpAddr,
    pub remote_port: u16,
    pub info: Option<TcpInfo>,
    pub direction: Direction,
    pub process: Option<(u32, String)>,
    /// How long ago the socket began (its `connect()`, `listen()` or
    /// handshake), milliseconds: known for the TCP sockets a running `watch --events`
    /// saw begin (the kernel's dumps carry no age).
    pub age_ms: Option<u64>,
    /// A TCP listener's accept queue and its limit (`ss -lnt` Recv-Q and
    /// Send-Q).
    pub queue: Option<(u32, u32)>,
}

/// A socket, its remote end, `tcp_info` and (listeners) queue.
type Detail = (
    DumpedSocket,
    IpAddr,
    u16,
    Option<TcpInfo>,
    Option<(u32, u32)>,
);

/// The remote end and `tcp_info` of a socket's message.
fn detail(m: &DiagMessage, conn_type: ConnType) -> Detail {
    let socket = m.socket(conn_type);
    // For a listener, recv/send queue are its accept queue and backlog.
    let queue = (conn_type.is_tcp() && socket.state == TCP_LISTEN)
        .then_some((m.header.recv_queue, m.header.send_queue));
    let info = m.attr(INET_DIAG_INFO).and_then(parse_tcp_info);
    let (remote_addr, remote_port) = (socket.remote_addr, socket.remote_port);
    (socket, remote_addr, remote_port, info, queue)
}

/// Socket cookie -> what the namespace's running `watch` knows of it, if
/// any (none: an empty map).
fn daemon_owners(netns: u32) -> HashMap<u64, crate::live::serve::Known> {
    use crate::live::serve::{Request, node_socket_path, parse_owners, query, socket_path};
    let ask = |path: &std::path::Path| {
        let asked = |aged| {
            query(
                path,
                Request::Owners { aged },
                std::time::Duration::from_secs(5),
            )
            .map(|t| parse_owners(&t, aged))
        };
        // A daemon from before the socket age refuses `owners aged`: the
        // plain question then (an empty answer is asked again too).
        match asked(true) {
            Ok(owners) if !owners.is_empty() => Ok(owners),
            _ => asked(false),
        }
    };
    // The namespace's own watch, else a watch of every namespace (socket
    // cookies are the host's: its answer covers this namespace too).
    ask(&socket_path(netns))
        .or_else(|_| ask(&node_socket_path()))
        .unwrap_or_default()
}

/// Every socket of the calling thread's namespace. Owners: those a running
/// `watch` of the namespace knows (the sockets it saw connect, listen or be
/// accepted), and with `procs` wanted the `/proc/*/fd` walk for the rest.
pub fn rows(procs: &Processes, netns: u32) -> io::Result<Vec<Row>> {
    let mut raw = Vec::new();
    for ct in ConnType::ALL {
        let ext = if ct.is_tcp() {
            ExtensionFlags::INFO
        } else {
            ExtensionFlags::empty()
        };
        sockdiag::dump_each(ct, sockdiag::ALL_STATES, ext, |m| raw.push(detail(m, ct)))?;
    }
    let listening: HashSet<u16> = raw
        .iter()
        .filter(|(s, ..)| s.conn_type.is_tcp() && s.state == TCP_LISTEN)
        .map(|(s, ..)| s.local_port)
        .collect();
    let locals = local_addresses()?;
    let known = daemon_owners(netns);
    // The walk is for sockets the daemon never saw created; sockets
    // without a file (time-wait, request, not yet accepted) have no owner
    // to find.
    let unknown = raw
        .iter()
        .any(|(s, ..)| s.inode != 0 && !known.contains_key(&s.cookie));
    let procs = if unknown { procs.get() } else { None };
    Ok(raw
        .into_iter()
        .map(|(socket, remote_addr, remote_port, info, queue)| Row {
            queue,
            direction: direction(&socket, remote_addr, remote_port, &listening, &locals),
            process: known
                .get(&socket.cookie)
                .map(|k| (k.pid, k.comm.clone()))
                .or_else(|| procs.and_then(|p| p.get(&socket.inode)).cloned()),
            age_ms: known.get(&socket.cookie).and_then(|k| k.age_ms),
            // A listener has no peer: no RTT, nothing retransmitted.
            info: info.filter(|_| socket.state != TCP_LISTEN),
            socket,
            remote_addr,
            remote_port,
        })
        .collect())
}

fn state_name(s: &DumpedSocket) -> &'static str {
    s.conn_type.state_name(s.state).unwrap_or("UNKNOWN")
}

/// The sockets of one namespace.
pub struct Namespaced {
    pub netns: u32,
    /// What the namespace belongs to (`list --all-namespaces`).
    pub owner: Option<crate::namespaces::owner::Owner>,
    pub rows: Vec<Row>,
}

/// One row as JSON (serialized straight to the output: a `Value` tree of
/// 200k rows costs seconds and hundreds of MiB).
#[derive(serde::Serialize)]
struct RowOut<'a> {
    proto: &'static str,
    state: &'static str,
    laddr: String,
    lport: u16,
    raddr: String,
    rport: u16,
    direction: &'static str,
    pid: Option<u32>,
    comm: Option<&'a str>,
    rtt_us: Option<u32>,
    retrans: Option<u32>,
    bytes_sent: Option<u64>,
    bytes_received: Option<u64>,
    age_ms: Option<u64>,
    /// Listeners: connections waiting for accept() and the queue's limit.
    accept_queue: Option<u32>,
    backlog: Option<u32>,
    inode: u32,
    netns: u32,
    namespace: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    owner: Option<&'a crate::namespaces::owner::Owner>,
    kind: &'static str,
}

/// The rows as one JSON array, written to `out`.
pub fn write_json(lists: &[Namespaced], out: &mut Vec<u8>) {
    use serde::ser::{SerializeSeq, Serializer};
    let mut ser = serde_json::Serializer::new(out);
    let len = lists.iter().map(|l| l.rows.len()).sum();
    let mut seq = ser.serialize_seq(Some(len)).expect("writing to memory");
    for (r, netns, owner) in lists
        .iter()
        .flat_map(|l| l.rows.iter().map(|r| (r, l.netns, l.owner.as_ref())))
    {
        let s = &r.socket;
        let row = RowOut {
            proto: s.conn_type.name(),
            state: state_name(s),
            laddr: s.local_addr.to_string(),
            lport: s.local_port,
            raddr: r.remote_addr.to_string(),
            rport: r.remote_port,
            direction: r.direction.name(),
            pid: r.process.as_ref().map(|p| p.0),
            comm: r.process.as_ref().map(|p| p.1.as_str()),
            rtt_us: r.info.map(|i| i.rtt_us),
            retrans: r.info.map(|i| i.retrans),
            bytes_sent: r.info.map(|i| i.bytes_acked),
            bytes_received: r.info.map(|i| i.bytes_received),
            age_ms: r.age_ms,
            accept_queue: r.queue.map(|q| q.0),
            backlog: r.queue.map(|q| q.1),
            inode: s.inode,
            netns,
            namespace: crate::host::namespace_class(netns),
            owner,
            kind: match s.kind {
                SocketKind::Full => "socket",
                SocketKind::TimeWait => "time_wait",
                SocketKind::Request => "request",
            },
        };
        seq.serialize_element(&row).expect("writing to memory");
    }
    seq.end().expect("writing to memory");
}

/// The port a connection is "about": the local one for listeners and
/// accepted connections, the remote one for connections made.
fn service_port(r: &Row, listening: &HashSet<u16>) -> u16 {
    match r.direction {
        Direction::Listen | Direction::Inbound => r.socket.local_port,
        Direction::Outbound => r.remote_port,
        Direction::Local if listening.contains(&r.socket.local_port) => r.socket.local_port,
        Direction::Local => r.remote_port,
    }
}

/// (direction, process, proto, service port) -> sockets, most first.
/// One group: direction, process, proto, service port, sockets.
pub type Group = (Direction, String, &'static str, u16, usize);

pub fn aggregate(rows: &[Row]) -> Vec<Group> {
    let listening: HashSet<u16> = rows
        .iter()
        .filter(|r| r.direction == Direction::Listen && r.socket.conn_type.is_tcp())
        .map(|r| r.socket.local_port)
        .collect();
    let mut groups: BTreeMap<(Direction, String, &'static str, u16), usize> = BTreeMap::new();
    for r in rows {
        let process = r
            .process
            .as_ref()
            .map(|p| p.1.clone())
            .unwrap_or_else(|| "-".into());
        let key = (
            r.direction,
            process,
            r.socket.conn_type.name(),
            service_port(r, &listening),
        );
        *groups.entry(key).or_default() += 1;
    }
    let mut out: Vec<_> = groups
        .into_iter()
        .map(|((d, p, t, port), n)| (d, p, t, port, n))
        .collect();
    out.sort_by(|a, b| {
        b.4.cmp(&a.4)
            .then_with(|| (a.0, &a.1, a.2, a.3).cmp(&(b.0, &b.1, b.2, b.3)))
    });
    out
}

/// One group of `list --aggregate --json`.
#[derive(serde::Serialize)]
struct GroupOut<'a> {
    direction: &'static str,
    process: &'a str,
    proto: &'static str,
    port: u16,
    sockets: usize,
    /// With --all-namespaces: groups are per namespace.
    #[serde(skip_serializing_if = "Option::is_none")]
    netns: Option<u32>,
}

/// The groups as one JSON array; `netns` set: each namespace's groups
/// (`--all-namespaces`).
pub fn aggregate_json(groups: &[(Option<u32>, Vec<Group>)]) -> Vec<u8> {
    let rows: Vec<GroupOut> = groups
        .iter()
        .flat_map(|(netns, g)| g.iter().map(move |g| (*netns, g)))
        .map(|(netns, (d, p, t, port, n))| GroupOut {
            direction: d.name(),
            process: p,
            proto: t,
            port: *port,
            sockets: *n,
            netns,
        })
        .collect();
    serde_json::to_vec(&rows).expect("rows serialize")
}

/// The columns of a listing (`OWNER` only with `--all-namespaces`).
pub const ROW_HEADER: [&str; 12] = [
    "PROTO",
    "STATE",
    "LOCAL",
    "REMOTE",
    "DIRECTION",
    "PID/COMM",
    "RTT(ms)",
    "RETRANS",
    "QUEUE",
    "AGE(s)",
    "NETNS",
    "OWNER",
];

/// One row's cells under [`ROW_HEADER`] (unescaped), with an `OWNER` cell
/// when `owners`.
pub fn row_cells(r: &Row, l: &Namespaced, owners: bool) -> Vec<String> {
    let s = &r.socket;
    let mut cells = vec![
        s.conn_type.name().to_owned(),
        state_name(s).to_owned(),
        endpoint(s.local_addr, s.local_port),
        endpoint(r.remote_addr, r.remote_port),
        r.direction.name().to_owned(),
        r.process
            .as_ref()
            .map(|(pid, comm)| format!("{pid}/{comm}"))
            .unwrap_or_else(|| "-".into()),
        r.info
            .map(|i| format!("{:.3}", f64::from(i.rtt_us) / 1000.0))
            .unwrap_or_else(|| "-".into()),
        r.info
            .map(|i| i.retrans.to_string())
            .unwrap_or_else(|| "-".into()),
        r.queue
            .map(|(q, b)| format!("{q}/{b}"))
            .unwrap_or_else(|| "-".into()),
        r.age_ms
            .map(|a| format!("{:.1}", a as f64 / 1000.0))
            .unwrap_or_else(|| "-".into()),
        l.netns.to_string(),
    ];
    if owners {
        let label = match (crate::host::namespace_class(l.netns), &l.owner) {
            ("system", _) => "host".into(),
            (_, Some(owner)) => owner.label(),
            (_, None) => "-".into(),
        };
        cells.push(label);
    }
    cells
}

pub fn rows_table(lists: &[Namespaced]) -> String {
    let owners = lists.iter().any(|l| l.owner.is_some());
    let cells: Vec<Vec<String>> = lists
        .iter()
        .flat_map(|l| l.rows.iter().map(move |r| row_cells(r, l, owners)))
        .collect();
    let columns = if owners {
        ROW_HEADER.len()
    } else {
        ROW_HEADER.len() - 1
    };
    table(&ROW_HEADER[..columns], &cells)
}

/// The columns of a grouped listing (`NETNS` only with
/// `--all-namespaces`).
pub const GROUP_HEADER: [&str; 6] = ["DIRECTION", "PROCESS", "PROTO", "PORT", "SOCKETS", "NETNS"];

/// One group's cells under [`GROUP_HEADER`], without `NETNS`.
pub fn group_cells((d, p, t, port, n): &Group) -> Vec<String> {
    vec![
        d.name().to_owned(),
        p.clone(),
        t.to_string(),
        port.to_string(),
        n.to_string(),
    ]
}

pub fn aggregate_table(groups: &[(Option<u32>, Vec<Group>)]) -> String {
    let per_netns = groups.iter().any(|(netns, _)| netns.is_some());
    let cells: Vec<Vec<String>> = groups
        .iter()
        .flat_map(|(netns, g)| g.iter().map(move |g| (*netns, g)))
        .map(|(netns, g)| {
            let mut cells = group_cells(g);
            if per_netns {
                cells.push(netns.map_or_else(String::new, |n| n.to_string()));
            }
            cells
        })
        .collect();
    let columns = GROUP_HEADER.len() - usize::from(!per_netns);
    table(&GROUP_HEADER[..columns], &cells)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sock(ct: ConnType, state: u8, lport: u16) -> DumpedSocket {
        DumpedSocket {
            cookie: 1,
            local_port: lport,
            local_addr: "10.0.0.1".parse().unwrap(),
            inode: 7,
            ..DumpedSocket::test(ct, state)
        }
    }

    #[test]
    fn directions() {
        let listening: HashSet<u16> = [80].into();
        let locals: HashSet<IpAddr> = ["10.0.0.1".parse().unwrap()].into();
        let peer: IpAddr = "10.0.0.2".parse().unwrap();
        let any: IpAddr = "0.0.0.0".parse().unwrap();
        let d = |s: &DumpedSocket, r: IpAddr, rp| direction(s, r, rp, &listening, &locals);
        assert_eq!(
            d(&sock(ConnType::Tcp, TCP_LISTEN, 80), any, 0),
            Direction::Listen
        );
        assert_eq!(
            d(&sock(ConnType::Tcp, 1, 80), peer, 5555),
            Direction::Inbound
        );
        assert_eq!(
            d(&sock(ConnType::Tcp, 1, 40000), peer, 443),
            Direction::Outbound
        );
        assert_eq!(
            d(
                &sock(ConnType::Tcp, 1, 40000),
                "10.0.0.1".parse().unwrap(),
                80
            ),
            Direction::Local
        );
        assert_eq!(
            d(
                &sock(ConnType::Tcp, 1, 40000),
                "127.0.0.5".parse().unwrap(),
                80
            ),
            Direction::Local
        );
        assert_eq!(
            d(
                &sock(ConnType::Tcp6, 1, 40000),
                "::ffff:10.0.0.1".parse().unwrap(),
                80
            ),
            Direction::Local
        );
        assert_eq!(d(&sock(ConnType::Udp, 7, 53), any, 0), Direction::Listen);
        assert_eq!(
            d(&sock(ConnType::Udp, 1, 40000), peer, 53),
            Direction::Outbound
        );
    }
}
