//! Load helpers for benchmarks and tests, run inside a test namespace.
//!
//! `netconn-churn churn --threads T --seconds S [--max N]`
//!     loopback connect/close at the highest rate T client threads reach,
//!     bounded by S seconds and N connections; prints one JSON line with
//!     the count and the rate. Each connection makes 10 state events: the
//!     accepted child goes LISTEN > SYN_RECV > ESTABLISHED > FIN_WAIT1 >
//!     FIN_WAIT2 > CLOSE (time-wait, on the server's fixed port, so the
//!     client's ephemeral ports are free again at once), the client CLOSE >
//!     SYN_SENT > ESTABLISHED > CLOSE_WAIT > LAST_ACK > CLOSE. The server
//!     only accepts and closes, so its accept queue never fills (a full one
//!     drops SYNs and stalls clients for the 1 s SYN retransmit).
//!
//! `netconn-churn keepalive --requests N --seconds S`
//!     one kept-alive loopback connection (TCP_NODELAY) carrying N
//!     request/response round trips of 100 bytes each way, bounded by S
//!     seconds; prints one JSON line with the round trips made.
//!
//! `netconn-churn hold --pairs N`
//!     opens N established loopback pairs (2N sockets), prints `ready`, and
//!     holds them until stdin closes or 10 minutes pass.

use std::io::{BufRead, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

fn arg(args: &[String], name: &str, default: u64) -> u64 {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map(|v| {
            v.parse()
                .unwrap_or_else(|_| panic!("{name} takes a number"))
        })
        .unwrap_or(default)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("churn") => churn(
            arg(&args, "--threads", 2) as usize,
            Duration::from_secs(arg(&args, "--seconds", 5).min(600)),
            arg(&args, "--max", u64::MAX),
        ),
        Some("hold") => hold(arg(&args, "--pairs", 1000) as usize),
        Some("keepalive") => keepalive(
            arg(&args, "--requests", 100_000),
            Duration::from_secs(arg(&args, "--seconds", 30).min(600)),
        ),
        _ => {
            eprintln!(
                "usage: netconn-churn churn [--threads T] [--seconds S] [--max N] | keepalive [--requests N] [--seconds S] | hold [--pairs N]"
            );
            std::process::exit(2);
        }
    }
}

fn churn(threads: usize, duration: Duration, max: u64) {
    let done = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let mut handles = Vec::new();
    for _ in 0..threads {
        let listener = listen_deep();
        let addr = listener.local_addr().unwrap();
        // Server side: accept and close at once (the active close).
        let stop_s = stop.clone();
        std::thread::spawn(move || {
            while !stop_s.load(Ordering::Relaxed) {
                drop(listener.accept());
            }
        });
        let (done, stop) = (done.clone(), stop.clone());
        handles.push(std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                if done.fetch_add(1, Ordering::Relaxed) >= max || start.elapsed() >= duration {
                    stop.store(true, Ordering::Relaxed);
                    break;
                }
                match TcpStream::connect(addr) {
                    // Wait for the server's FIN, then close (passive close).
                    Ok(mut s) => {
                        let _ = s.read(&mut [0u8; 16]);
                    }
                    Err(e) => {
                        // Out of ports: back off briefly, bounded by the deadline.
                        eprintln!("connect: {e}");
                        std::thread::sleep(Duration::from_millis(1));
                    }
                }
            }
        }));
    }
    for h in handles {
        h.join().unwrap();
    }
    let secs = start.elapsed().as_secs_f64();
    let n = done
        .load(Ordering::Relaxed)
        .min(max)
        .saturating_sub(threads as u64);
    println!(
        "{{\"connections\":{n},\"seconds\":{secs:.3},\"rate\":{:.0}}}",
        n as f64 / secs
    );
    // Acceptor threads may sit in accept(): exit without joining them.
    std::process::exit(0);
}

fn keepalive(requests: u64, duration: Duration) {
    let listener = listen_deep();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let (mut s, _) = listener.accept().expect("accept");
        s.set_nodelay(true).expect("nodelay");
        let mut buf = [0u8; 100];
        while s.read_exact(&mut buf).is_ok() {
            if s.write_all(&buf).is_err() {
                return;
            }
        }
    });
    let mut c = TcpStream::connect(addr).expect("connect");
    c.set_nodelay(true).expect("nodelay");
    let start = Instant::now();
    let mut buf = [7u8; 100];
    let mut done = 0;
    while done < requests && start.elapsed() < duration {
        c.write_all(&buf).expect("request");
        c.read_exact(&mut buf).expect("response");
        done += 1;
    }
    let secs = start.elapsed().as_secs_f64();
    println!("{{\"requests\":{done},\"seconds\":{secs:.3}}}");
}

/// A loopback listener with a 4096-deep accept queue.
fn listen_deep() -> TcpListener {
    use socket2::{Domain, Socket, Type};
    let s = Socket::new(Domain::IPV4, Type::STREAM, None).expect("socket");
    s.bind(&SocketAddr::from((Ipv4Addr::LOCALHOST, 0)).into())
        .expect("bind");
    s.listen(4096).expect("listen");
    s.into()
}

fn hold(pairs: usize) {
    let listener = listen_deep();
    // A bound UDP socket too, as a small service has.
    let _udp = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind udp");
    let addr: SocketAddr = listener.local_addr().unwrap();
    let mut held = Vec::with_capacity(pairs * 2);
    for _ in 0..pairs {
        held.push(TcpStream::connect(addr).expect("connect"));
        held.push(listener.accept().expect("accept").0);
    }
    println!("ready");
    std::io::stdout().flush().unwrap();
    // Hold until stdin closes (the parent is done) or 10 minutes pass.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = std::io::stdin().lock().lines().count();
        let _ = tx.send(());
    });
    let _ = rx.recv_timeout(Duration::from_secs(600));
    drop(held);
}
