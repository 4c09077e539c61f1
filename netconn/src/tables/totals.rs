//! O(1) totals the kernel keeps per network namespace, to cross-check the
//! live counts without dumping the socket tables.
//!
//! * `/proc/net/sockstat` `TCP: inuse N`: full IPv4 TCP sockets in the hash
//!   tables (listeners and connections; `sock_prot_inuse_add()` in
//!   `__inet_hash()`, `inet_ehash_nolisten()`, `inet_unhash()`), i.e. neither
//!   time-wait nor request mini-sockets. `tw` is the time-wait count, v4 and
//!   v6 together.
//! * `/proc/net/sockstat6` `TCP6: inuse N`: the same for IPv6.
//! * `/proc/net/snmp` `Tcp: ... CurrEstab`: sockets in ESTABLISHED or
//!   CLOSE_WAIT, v4 and v6 together.
//! * `UDP: inuse N` and `UDP6: inuse N` in the same sockstat files: hashed
//!   (bound) UDP sockets, what `/proc/net/udp` and `udp6` list
//!   (`udp_lib_get_port()`, `udp_lib_unhash()`).

use std::io;

/// The totals, read together.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KernelTotals {
    pub tcp_inuse: i64,
    pub tcp6_inuse: i64,
    pub time_wait: i64,
    pub curr_estab: i64,
    pub udp_inuse: i64,
    pub udp6_inuse: i64,
    /// TCP segments received (snmp InSegs): moves with any TCP traffic,
    /// SYNs that only make request sockets included.
    pub in_segs: i64,
}

fn bad(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("unexpected {what}"))
}

/// The value after `key` on the line that starts with `prefix`.
fn field(text: &str, prefix: &str, key: &str) -> Option<i64> {
    let line = text.lines().find(|l| l.starts_with(prefix))?;
    let mut words = line.split_whitespace();
    while let Some(w) = words.next() {
        if w == key {
            return words.next()?.parse().ok();
        }
    }
    None
}

/// The value under `key` in a header/value pair of lines starting with
/// `prefix` (`/proc/net/snmp`'s `Tcp:`, `/proc/net/netstat`'s `TcpExt:`).
pub fn table_field(text: &str, prefix: &str, key: &str) -> Option<i64> {
    let mut tcp = text.lines().filter(|l| l.starts_with(prefix));
    let header = tcp.next()?;
    let values = tcp.next()?;
    let at = header.split_whitespace().position(|h| h == key)?;
    values.split_whitespace().nth(at)?.parse().ok()
}

impl KernelTotals {
    pub fn parse(sockstat: &str, sockstat6: &str, snmp: &str) -> io::Result<Self> {
        Ok(Self {
            tcp_inuse: field(sockstat, "TCP:", "inuse").ok_or_else(|| bad("sockstat"))?,
            time_wait: field(sockstat, "TCP:", "tw").ok_or_else(|| bad("sockstat"))?,
            // No IPv6 in this kernel: no sockets either.
            tcp6_inuse: field(sockstat6, "TCP6:", "inuse").unwrap_or(0),
            curr_estab: table_field(snmp, "Tcp:", "CurrEstab").ok_or_else(|| bad("snmp"))?,
            udp_inuse: field(sockstat, "UDP:", "inuse").ok_or_else(|| bad("sockstat"))?,
            udp6_inuse: field(sockstat6, "UDP6:", "inuse").unwrap_or(0),
            in_segs: table_field(snmp, "Tcp:", "InSegs").ok_or_else(|| bad("snmp"))?,
        })
    }

    /// Live full-socket counts minus these totals: TCP IPv4 sockets, TCP
    /// IPv6 sockets, ESTABLISHED + CLOSE_WAIT, UDP IPv4 and IPv6 sockets.
    pub fn delta(&self, live: &crate::model::counts::Counts) -> [i64; 5] {
        use crate::model::state::ConnType;
        let sum = |ct: ConnType| live.iter().filter(|c| c.0 == ct).map(|c| c.2).sum::<i64>();
        let estab: i64 = live
            .iter()
            .filter(|(ct, s, _)| ct.is_tcp() && (*s == "ESTABLISHED" || *s == "CLOSE_WAIT"))
            .map(|c| c.2)
            .sum();
        [
            sum(ConnType::Tcp) - self.tcp_inuse,
            sum(ConnType::Tcp6) - self.tcp6_inuse,
            estab - self.curr_estab,
            sum(ConnType::Udp) - self.udp_inuse,
            sum(ConnType::Udp6) - self.udp6_inuse,
        ]
    }

    /// Reads the calling thread's namespace.
    pub fn read() -> io::Result<Self> {
        Self::read_in(std::path::Path::new("/proc/thread-self/net"))
    }

    /// Reads the namespace whose `/proc/.../net` directory `dir` is (that
    /// of a process in it: `/proc/PID/net`).
    pub fn read_in(dir: &std::path::Path) -> io::Result<Self> {
        let read = |f: &str| std::fs::read_to_string(dir.join(f));
        Self::parse(
            &read("sockstat")?,
            &read("sockstat6").unwrap_or_default(),
            &read("snmp")?,
        )
    }
}

/// The three files of one namespace, opened once and read again from
/// their start at each reading: a namespace visited every interval costs
/// three reads, not three path walks through `/proc`. An open file keeps
/// reading the namespace it was opened in (the kernel takes the namespace
/// at open), whatever happens to the process whose directory it came from;
/// it also keeps the namespace alive, so its holder drops it when the
/// namespace is found gone.
#[derive(Debug)]
pub struct TotalsFiles {
    sockstat: std::fs::File,
    sockstat6: Option<std::fs::File>,
    snmp: std::fs::File,
}

impl TotalsFiles {
    /// Opens them in `dir` (`/proc/PID/net`, or `/proc/thread-self/net`
    /// from a thread inside the namespace).
    pub fn open_in(dir: &std::path::Path) -> io::Result<Self> {
        let open = |f: &str| std::fs::File::open(dir.join(f));
        Ok(Self {
            sockstat: open("sockstat")?,
            sockstat6: open("sockstat6").ok(),
            snmp: open("snmp")?,
        })
    }

    pub fn read(&self) -> io::Result<KernelTotals> {
        let sockstat = read_from_start(&self.sockstat)?;
        let sockstat6 = match &self.sockstat6 {
            Some(f) => read_from_start(f)?,
            None => String::new(),
        };
        let snmp = read_from_start(&self.snmp)?;
        KernelTotals::parse(&sockstat, &sockstat6, &snmp)
    }
}

/// A /proc file's text, generated anew: read from offset 0 to its end.
pub fn read_from_start(file: &std::fs::File) -> io::Result<String> {
    use std::os::unix::fs::FileExt;
    let mut buf = Vec::with_capacity(4096);
    let mut chunk = [0u8; 4096];
    loop {
        let n = file.read_at(&mut chunk, buf.len() as u64)?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    String::from_utf8(buf).map_err(|_| bad("not text"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SOCKSTAT: &str =
        "sockets: used 8\nTCP: inuse 3 orphan 0 tw 7 alloc 4 mem 48\nUDP: inuse 1 mem 0\n";
    const SOCKSTAT6: &str = "TCP6: inuse 2\nUDP6: inuse 4\nUDPLITE6: inuse 9\n";
    const SNMP: &str = "Ip: Forwarding DefaultTTL\nIp: 1 64\nTcp: RtoAlgorithm RtoMin RtoMax MaxConn ActiveOpens PassiveOpens AttemptFails EstabResets CurrEstab InSegs\nTcp: 1 200 120000 -1 33 2 0 19 5 6710\nUdp: InDatagrams\nUdp: 0\n";

    #[test]
    fn parses_the_three_files() {
        let t = KernelTotals::parse(SOCKSTAT, SOCKSTAT6, SNMP).unwrap();
        assert_eq!(
            t,
            KernelTotals {
                tcp_inuse: 3,
                tcp6_inuse: 2,
                time_wait: 7,
                curr_estab: 5,
                in_segs: 6710,
                udp_inuse: 1,
                udp6_inuse: 4,
            }
        );
    }

    #[test]
    fn missing_fields_are_errors() {
        assert!(KernelTotals::parse("TCP: orphan 0", SOCKSTAT6, SNMP).is_err());
        assert!(KernelTotals::parse(SOCKSTAT, SOCKSTAT6, "Tcp: A B\nTcp: 1 2\n").is_err());
        // A kernel without IPv6 has no sockstat6.
        assert_eq!(
            KernelTotals::parse(SOCKSTAT, "", SNMP).unwrap().tcp6_inuse,
            0
        );
    }

    #[test]
    fn reads_this_namespace() {
        KernelTotals::read().unwrap();
    }

    #[test]
    fn kept_files_read_anew_each_time() {
        use std::net::TcpListener;
        let dir = std::path::Path::new("/proc/thread-self/net");
        let files = TotalsFiles::open_in(dir).unwrap();
        // Equal to a fresh reading (other tests' sockets come and go
        // meanwhile: the two readings agree once nothing moved between).
        let agrees = |files: &TotalsFiles| {
            (0..50).any(|_| files.read().unwrap() == KernelTotals::read().unwrap())
        };
        assert!(agrees(&files));
        let held: Vec<TcpListener> = (0..3)
            .map(|_| TcpListener::bind("127.0.0.1:0").unwrap())
            .collect();
        assert!(agrees(&files));
        assert!(files.read().unwrap().tcp_inuse >= held.len() as i64);
    }
}
