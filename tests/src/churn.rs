//! A deterministic, seeded churn driver, run inside a test namespace.
//!
//! Each step picks an operation from a seeded generator, so a failing seed
//! replays. Steps are bounded in count and time; traffic is loopback only.

use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, SockAddr, Socket, Type};

use crate::mix::Held;

/// xorshift64*: deterministic, no dependency.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}

/// What a run did, for the test's messages.
#[derive(Debug, Default, Clone, Copy)]
pub struct Stats {
    pub steps: u64,
    pub connects: u64,
    pub resets: u64,
}

/// Live objects the driver picks from.
#[derive(Default)]
struct Pool {
    listeners: Vec<(TcpListener, bool)>,
    reuse: Vec<Socket>,
    pairs: Vec<(TcpStream, TcpStream)>,
    udp: Vec<UdpSocket>,
}

fn listen(v6: bool) -> TcpListener {
    TcpListener::bind(if v6 { "[::1]:0" } else { "127.0.0.1:0" }).expect("bind")
}

/// Runs `steps` operations (or until `limit` passes), then returns what is
/// still open; dropping it closes the rest.
pub fn run(seed: u64, steps: u64, limit: Duration) -> (Held, Stats) {
    let mut rng = Rng::new(seed);
    let mut pool = Pool::default();
    let mut held = Held::default();
    let mut stats = Stats::default();
    let start = Instant::now();
    for _ in 0..4 {
        let v6 = rng.below(2) == 1;
        pool.listeners.push((listen(v6), v6));
    }
    // A few connects stuck in SYN_SENT, v4 and v6.
    crate::mix::syn_sent("127.0.0.1:0", 1 + rng.below(3) as usize, &mut held);
    crate::mix::syn_sent("[::1]:0", 1, &mut held);

    while stats.steps < steps && start.elapsed() < limit {
        stats.steps += 1;
        match rng.below(100) {
            // Open a connection to a random listener.
            0..=39 => {
                let i = rng.below(pool.listeners.len() as u64) as usize;
                let addr = pool.listeners[i].0.local_addr().unwrap();
                let client = TcpStream::connect(addr).expect("connect");
                let server = pool.listeners[i].0.accept().expect("accept").0;
                pool.pairs.push((client, server));
                stats.connects += 1;
            }
            // Close a connection: client first, server first, or both.
            40..=59 if !pool.pairs.is_empty() => {
                let i = rng.below(pool.pairs.len() as u64) as usize;
                let (client, server) = pool.pairs.swap_remove(i);
                match rng.below(3) {
                    0 => drop((client, server)),
                    1 => drop((server, client)),
                    _ => {
                        // The other side stays open (CLOSE_WAIT / FIN_WAIT2).
                        if rng.below(2) == 0 {
                            drop(client);
                            held.streams.push(server);
                        } else {
                            drop(server);
                            held.streams.push(client);
                        }
                    }
                }
            }
            // Abort with RST (SO_LINGER 0).
            60..=67 if !pool.pairs.is_empty() => {
                let i = rng.below(pool.pairs.len() as u64) as usize;
                let (client, server) = pool.pairs.swap_remove(i);
                let victim = if rng.below(2) == 0 { client } else { server };
                Socket::from(victim)
                    .set_linger(Some(Duration::ZERO))
                    .expect("linger");
                stats.resets += 1;
            }
            // Half-close one side, keep both.
            68..=74 if !pool.pairs.is_empty() => {
                let i = rng.below(pool.pairs.len() as u64) as usize;
                let (client, server) = pool.pairs.swap_remove(i);
                let _ = client.shutdown(Shutdown::Write);
                held.streams.push(client);
                held.streams.push(server);
            }
            // Add a listener, sometimes an SO_REUSEPORT pair.
            75..=81 => {
                let v6 = rng.below(2) == 1;
                if rng.below(2) == 0 {
                    pool.listeners.push((listen(v6), v6));
                } else {
                    let mut addr: SocketAddr =
                        if v6 { "[::1]:0" } else { "127.0.0.1:0" }.parse().unwrap();
                    for _ in 0..2 {
                        let s = Socket::new(
                            Domain::for_address(addr),
                            Type::STREAM,
                            Some(Protocol::TCP),
                        )
                        .unwrap();
                        s.set_reuse_port(true).unwrap();
                        s.bind(&SockAddr::from(addr)).unwrap();
                        s.listen(8).unwrap();
                        addr = s.local_addr().unwrap().as_socket().unwrap();
                        pool.reuse.push(s);
                    }
                }
            }
            // Remove a listener (never the last one).
            82..=86 if pool.listeners.len() > 1 => {
                let i = rng.below(pool.listeners.len() as u64) as usize;
                pool.listeners.swap_remove(i);
            }
            87..=89 if !pool.reuse.is_empty() => {
                let i = rng.below(pool.reuse.len() as u64) as usize;
                pool.reuse.swap_remove(i);
            }
            // UDP sockets come and go, bound by bind(), or by connect()
            // and sendto() (autobind, which has no hook of its own).
            90..=95 => {
                let addr: SocketAddr = if rng.below(2) == 0 {
                    "127.0.0.1:0"
                } else {
                    "[::1]:0"
                }
                .parse()
                .unwrap();
                let udp = match rng.below(3) {
                    0 => UdpSocket::bind(addr).expect("udp bind"),
                    how => {
                        let s = Socket::new(Domain::for_address(addr), Type::DGRAM, None).unwrap();
                        let mut peer = addr;
                        peer.set_port(9);
                        if how == 1 {
                            s.connect(&SockAddr::from(peer)).expect("udp connect");
                        } else {
                            s.send_to(b"churn", &SockAddr::from(peer))
                                .expect("udp sendto");
                        }
                        s.into()
                    }
                };
                pool.udp.push(udp);
            }
            _ if !pool.udp.is_empty() => {
                let i = rng.below(pool.udp.len() as u64) as usize;
                pool.udp.swap_remove(i);
            }
            _ => {}
        }
    }
    held.listeners
        .extend(pool.listeners.into_iter().map(|(l, _)| l));
    held.sockets.extend(pool.reuse);
    for (c, s) in pool.pairs {
        held.streams.push(c);
        held.streams.push(s);
    }
    held.udp.extend(pool.udp);
    (held, stats)
}
