//! Scenarios of sockets in many states, built inside a test namespace.
//!
//! All traffic is on the namespace's loopback.

use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, SockAddr, Socket, Type};

/// Sockets held open so their states persist; dropping closes them.
#[derive(Default)]
pub struct Held {
    pub sockets: Vec<Socket>,
    pub streams: Vec<TcpStream>,
    pub listeners: Vec<TcpListener>,
    pub udp: Vec<UdpSocket>,
}

impl Held {
    pub fn extend(&mut self, other: Self) {
        self.sockets.extend(other.sockets);
        self.streams.extend(other.streams);
        self.listeners.extend(other.listeners);
        self.udp.extend(other.udp);
    }
}

pub fn listener(addr: &str) -> TcpListener {
    TcpListener::bind(addr).unwrap_or_else(|e| panic!("bind {addr}: {e}"))
}

/// `n` established pairs to `listener` (client and accepted side).
pub fn established(listener: &TcpListener, n: usize, held: &mut Held) {
    let addr = listener.local_addr().unwrap();
    for _ in 0..n {
        held.streams
            .push(TcpStream::connect(addr).expect("connect"));
        held.streams.push(listener.accept().expect("accept").0);
    }
}

/// A pair where the client half-closes (client FIN_WAIT2, a full socket;
/// server CLOSE_WAIT).
pub fn half_closed(listener: &TcpListener, held: &mut Held) {
    let addr = listener.local_addr().unwrap();
    let client = TcpStream::connect(addr).expect("connect");
    let server = listener.accept().expect("accept").0;
    client
        .shutdown(std::net::Shutdown::Write)
        .expect("shutdown");
    wait_for(|| {
        let mut b = [0u8; 1];
        server.set_nonblocking(true).unwrap();
        let eof = matches!(std::io::Read::read(&mut &server, &mut b), Ok(0));
        server.set_nonblocking(false).unwrap();
        eof
    });
    held.streams.push(client);
    held.streams.push(server);
}

/// A pair the client closes outright: the orphaned client socket becomes a
/// FIN_WAIT2 time-wait mini-socket, the server stays in CLOSE_WAIT.
pub fn orphaned_close(listener: &TcpListener, held: &mut Held) {
    let addr = listener.local_addr().unwrap();
    let client = TcpStream::connect(addr).expect("connect");
    let server = listener.accept().expect("accept").0;
    drop(client);
    held.streams.push(server);
}

/// A connection closed by both sides, client first: TIME_WAIT on the client.
pub fn time_wait(listener: &TcpListener) {
    let addr = listener.local_addr().unwrap();
    let client = TcpStream::connect(addr).expect("connect");
    let server = listener.accept().expect("accept").0;
    drop(client);
    drop(server);
}

/// `n` sockets stuck in SYN_SENT: a listener with backlog 0 and one queued
/// connection drops further SYNs (tcp_conn_request(): accept queue full), so
/// non-blocking connects to it keep retrying in SYN_SENT.
pub fn syn_sent(addr: &str, n: usize, held: &mut Held) {
    let addr: SocketAddr = addr.parse().unwrap();
    let domain = Domain::for_address(addr);
    let l = Socket::new(domain, Type::STREAM, Some(Protocol::TCP)).unwrap();
    l.bind(&SockAddr::from(addr)).unwrap();
    l.listen(0).unwrap();
    let target = SockAddr::from(l.local_addr().unwrap().as_socket().unwrap());
    // Fills the accept queue (never accepted).
    held.streams
        .push(TcpStream::connect(target.as_socket().unwrap()).unwrap());
    for _ in 0..n {
        let c = Socket::new(domain, Type::STREAM, Some(Protocol::TCP)).unwrap();
        c.set_nonblocking(true).unwrap();
        match c.connect(&target) {
            Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
            other => panic!("expected a pending connect, got {other:?}"),
        }
        held.sockets.push(c);
    }
    held.sockets.push(l);
}

/// Two SO_REUSEPORT listeners sharing one address and port.
pub fn reuseport_pair(addr: &str, held: &mut Held) {
    let mut addr: SocketAddr = addr.parse().unwrap();
    for _ in 0..2 {
        let s = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP)).unwrap();
        s.set_reuse_port(true).unwrap();
        s.bind(&SockAddr::from(addr)).unwrap();
        s.listen(16).unwrap();
        // The twin binds the port the first one got.
        addr = s.local_addr().unwrap().as_socket().unwrap();
        held.sockets.push(s);
    }
}

pub fn udp(addr: &str, held: &mut Held) {
    held.udp
        .push(UdpSocket::bind(addr).unwrap_or_else(|e| panic!("bind {addr}: {e}")));
}

/// The mix the issue asks for: listeners, established pairs, CLOSE_WAIT and
/// FIN_WAIT2 (full and orphaned), TIME_WAIT, SYN_SENT, SO_REUSEPORT twins,
/// v4 and v6, UDP. `seed` varies the numbers so no result is hard-coded.
pub fn build(seed: u64) -> Held {
    let n = |k: u64| 1 + ((seed.wrapping_mul(2654435761).wrapping_add(k * 40503)) % 4) as usize;
    let mut held = Held::default();
    let l4 = listener("127.0.0.1:0");
    let l6 = listener("[::1]:0");
    established(&l4, n(1), &mut held);
    established(&l6, n(2), &mut held);
    for _ in 0..n(3) {
        half_closed(&l4, &mut held);
    }
    half_closed(&l6, &mut held);
    orphaned_close(&l4, &mut held);
    time_wait(&l6);
    syn_sent("127.0.0.1:0", n(4), &mut held);
    syn_sent("[::1]:0", 1, &mut held);
    reuseport_pair("127.0.0.1:0", &mut held);
    for _ in 0..n(5) {
        udp("127.0.0.1:0", &mut held);
    }
    udp("[::1]:0", &mut held);
    held.listeners.push(l4);
    held.listeners.push(l6);
    settle();
    held
}

/// Waits until no socket of the calling thread's namespace is in a state
/// that loopback resolves within moments (FIN_WAIT1, LAST_ACK, CLOSING,
/// SYN_RECV), so that the mix is at rest.
pub fn settle() {
    wait_for(|| {
        ["tcp", "tcp6"].iter().all(|ct| {
            let text = std::fs::read_to_string(format!("/proc/thread-self/net/{ct}")).unwrap();
            text.lines().skip(1).all(|l| {
                let st = l.split_whitespace().nth(3).unwrap_or_default();
                !matches!(st, "03" | "04" | "09" | "0B")
            })
        })
    });
}

/// Polls `cond` every 10 ms for at most 10 s (a liveness bound).
pub fn wait_for(mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "condition never held"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}
