//! `watch --listen`: a real Prometheus server (Debian's), started by the
//! test in a namespace of its own joined to netconn's by a veth pair (so
//! that its queries add no socket to the namespace counted), scrapes
//! netconn; its query API must return the namespace's truth (`/proc/net`,
//! `ss -lnt`), and `promtool check metrics` must find the page clean.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use netconn_integration::{Netns, TempFile, Watch, Worker, truth, veth};
use serde_json::Value;

const NETCONN: &str = "127.0.0.1:9470";
/// netconn's endpoint as Prometheus reaches it, over the veth pair.
const NETCONN_VETH: &str = "10.77.0.1:9470";
const PROMETHEUS: &str = "127.0.0.1:9090";

/// One HTTP/1.0 GET from inside the namespace: (head, body).
fn get(
    worker: &Worker,
    addr: &'static str,
    target: String,
    accept: &'static str,
) -> (String, String) {
    try_get(worker, addr, target, accept).unwrap_or_else(|e| panic!("GET {addr}: {e}"))
}

/// The status code of an answer's head (whichever HTTP/1 version it
/// answers in).
fn status(head: &str) -> &str {
    head.split(' ').nth(1).unwrap_or_default()
}

/// A GET that may find nobody listening yet.
fn try_get(
    worker: &Worker,
    addr: &'static str,
    target: String,
    accept: &'static str,
) -> std::io::Result<(String, String)> {
    worker.exec(move || {
        let mut s = TcpStream::connect(addr)?;
        s.set_read_timeout(Some(Duration::from_secs(10)))?;
        write!(
            s,
            "GET {target} HTTP/1.0\r\nHost: {addr}\r\nAccept: {accept}\r\n\r\n"
        )?;
        let mut text = String::new();
        s.read_to_string(&mut text)?;
        let (head, body) = text.split_once("\r\n\r\n").expect("an HTTP answer");
        Ok((head.to_owned(), body.to_owned()))
    })
}

/// Prometheus in the namespace, stopped and its data removed on drop.
struct Prometheus {
    child: Child,
    dir: std::path::PathBuf,
    /// Its query API's address.
    api: &'static str,
}

impl Prometheus {
    /// Prometheus in `ns` (None: the test's own namespace), serving its API
    /// on `api` and scraping `target` every second; `job`: more of the
    /// scrape job's settings (YAML at its indentation).
    fn start(ns: Option<&Netns>, api: &'static str, target: &str, job: &str) -> Self {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "netconn-prometheus-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let config = dir.join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: netconn\n    static_configs:\n      - targets: ['{target}']\n{job}"
            ),
        )
        .unwrap();
        let mut cmd = match ns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", &ns.name, "prometheus"]);
                c
            }
            None => Command::new("prometheus"),
        };
        let child = cmd
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address={api}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("prometheus (Debian package prometheus) runs");
        Self { child, dir, api }
    }

    /// What the query API answers for `q`: its `data.result`.
    fn result(&self, worker: &Worker, q: &str) -> Value {
        let mut target = String::from("/api/v1/query?query=");
        for b in q.bytes() {
            if b.is_ascii_alphanumeric() || b"_-.".contains(&b) {
                target.push(b as char);
            } else {
                target.push_str(&format!("%{b:02X}"));
            }
        }
        let (head, body) = get(worker, self.api, target, "application/json");
        assert!(head.contains(" 200 "), "{q}: {head}\n{body}");
        let mut v: Value = serde_json::from_str(&body).unwrap();
        v["data"]["result"].take()
    }

    /// An instant query's samples: (labels, value).
    fn query(&self, worker: &Worker, q: &str) -> Vec<(Value, f64)> {
        let result = self.result(worker, q);
        result
            .as_array()
            .unwrap_or_else(|| panic!("{q}: {result}"))
            .iter()
            .map(|s| {
                let value = s["value"][1].as_str().unwrap().parse::<f64>().unwrap();
                (s["metric"].clone(), value)
            })
            .collect()
    }

    /// The one sample of a query.
    fn value(&self, worker: &Worker, q: &str) -> f64 {
        let samples = self.query(worker, q);
        assert_eq!(samples.len(), 1, "{q}: {samples:?}");
        samples[0].1
    }

    /// When the last successful scrape of netconn began (Unix seconds),
    /// from the raw samples of `up`: timestamp() here gives the query's
    /// evaluation time, not the sample's.
    fn last_scrape(&self, worker: &Worker) -> Option<f64> {
        self.result(worker, "up{job=\"netconn\"}[10s]")[0]["values"]
            .as_array()?
            .iter()
            .filter(|s| s[1] == "1")
            .filter_map(|s| s[0].as_f64())
            .reduce(f64::max)
    }

    /// Waits (bounded) until Prometheus holds a scrape of netconn taken
    /// after `after` (Unix seconds).
    fn scraped_after(&self, worker: &Worker, after: f64) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let ready = try_get(worker, self.api, "/-/ready".into(), "*/*");
            if ready.is_ok_and(|(head, _)| head.contains(" 200 "))
                && self.last_scrape(worker).is_some_and(|t| t > after)
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "no scrape of netconn after {after}"
            );
            std::thread::sleep(Duration::from_millis(300));
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

#[test]
fn prometheus_scrapes_the_truth() {
    let ns = Netns::new();
    let worker = ns.worker();
    let scraper = Netns::new();
    veth(&ns, &scraper, 77);
    let scraper_worker = scraper.worker();
    let config = TempFile::new(
        "prom.toml",
        "[[addr_ports]]\nports = [\"8080\"]\n[addr_ports.tags]\nservice = \"web\"\n\"app.kind\" = \"demo\"\n",
    );
    // Connections before the watch starts, and more after.
    let before = worker.exec(|| {
        let l = TcpListener::bind("127.0.0.1:8080").unwrap();
        let clients: Vec<TcpStream> = (0..3)
            .map(|_| TcpStream::connect("127.0.0.1:8080").unwrap())
            .collect();
        let served: Vec<TcpStream> = (0..3).map(|_| l.accept().unwrap().0).collect();
        (l, clients, served)
    });
    let passive_opens = || ns.counter("/proc/net/snmp", "Tcp:", "PassiveOpens");
    let at_start = passive_opens();
    let (mut watch, _) = Watch::start(
        &ns,
        &[
            "--interval",
            "500ms",
            "--listen",
            "0.0.0.0:9470",
            "--config",
            config.arg(),
        ],
    );
    let started = now();
    let prometheus = Prometheus::start(Some(&scraper), PROMETHEUS, NETCONN_VETH, "");
    // Its first scrape opens the connection it then keeps: a handshake on
    // netconn's own port, counted before the connections below.
    prometheus.scraped_after(&scraper_worker, started);
    let opened = passive_opens();
    let after = worker.exec(|| {
        let clients: Vec<TcpStream> = (0..4)
            .map(|_| TcpStream::connect("127.0.0.1:8080").unwrap())
            .collect();
        let udp: Vec<std::net::UdpSocket> = (0..2)
            .map(|_| std::net::UdpSocket::bind("127.0.0.1:0").unwrap())
            .collect();
        (clients, udp)
    });
    // One interval record after the change, so the running totals and
    // the listeners are past it too.
    watch.next_record(Duration::from_secs(30));
    let changed = now();
    prometheus.scraped_after(&scraper_worker, changed);

    let truth = truth(&ns);
    for ((ct, state), n) in &truth {
        let q = format!("netconn_connections{{conn_type=\"{ct}\",state=\"{state}\"}}");
        assert_eq!(prometheus.value(&scraper_worker, &q), *n as f64, "{q}");
    }
    // Every conn-type x state is a series, zeros included, and they add
    // up to the truth's total.
    let all = prometheus.query(&scraper_worker, "netconn_connections");
    assert_eq!(all.len(), 2 * 11 + 2, "{all:?}");
    let total: f64 = all.iter().map(|(_, v)| v).sum();
    assert_eq!(total, truth.values().sum::<i64>() as f64);
    assert_eq!(
        prometheus.value(&scraper_worker, "netconn_info{source=\"ebpf\"}"),
        1.0
    );

    // The port group (sockets whose local port is 8080): the 7 server
    // ends, with the group's tags as labels (a tag name made valid).
    let q = "netconn_port_connections{addr_port=\"8080\",ip_version=\"4\",state=\"ESTABLISHED\",service=\"web\",app_kind=\"demo\"}";
    let ss = ns.run_cmd("ss", &["-tnH", "state", "established", "sport = :8080"]);
    assert_eq!(ss.lines().count(), 7, "{ss}");
    assert_eq!(prometheus.value(&scraper_worker, q), 7.0, "{q}");

    // The listener: its queue and limit as `ss -lnt` shows them (4
    // connections not accepted).
    let ss = ns.run_cmd("ss", &["-lntH", "sport = :8080"]);
    let cols: Vec<&str> = ss.split_whitespace().collect();
    let q = "netconn_listener_accept_queue{addr=\"127.0.0.1\",port=\"8080\"}";
    assert_eq!(
        prometheus.value(&scraper_worker, q),
        cols[1].parse::<f64>().unwrap()
    );
    let q = "netconn_listener_backlog{addr=\"127.0.0.1\",port=\"8080\"}";
    assert_eq!(
        prometheus.value(&scraper_worker, q),
        cols[2].parse::<f64>().unwrap()
    );
    // Handshakes completed since the start: on port 8080, the 4 made
    // after it; in the namespace, also those of the scraper on netconn's
    // port, all of which the kernel's PassiveOpens counts.
    assert_eq!(
        prometheus.value(
            &scraper_worker,
            "sum(netconn_port_tcp_accepted_connections_total{addr_port=\"8080\"})"
        ),
        4.0
    );
    assert_eq!(
        passive_opens(),
        opened + 4,
        "the scraper opened another connection"
    );
    assert_eq!(
        prometheus.value(&scraper_worker, "netconn_tcp_accepted_connections_total"),
        (opened + 4 - at_start) as f64
    );
    assert_eq!(
        prometheus.value(&scraper_worker, "netconn_lost_events_total"),
        0.0
    );

    // Content negotiation, and the text page is clean for promtool.
    let (head, text) = get(&worker, NETCONN, "/metrics".into(), "text/plain");
    assert!(head.contains("text/plain; version=0.0.4"), "{head}");
    let mut check = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool runs");
    check
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = check.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let (head, page) = get(
        &worker,
        NETCONN,
        "/metrics".into(),
        "application/openmetrics-text;version=1.0.0,text/plain;q=0.5",
    );
    assert!(head.contains("application/openmetrics-text"), "{head}");
    assert!(page.ends_with("# EOF\n"));
    let (head, _) = get(&worker, NETCONN, "/nothing".into(), "*/*");
    assert!(status(&head) == "404", "{head}");
    // The page is served beside it, self-contained.
    let (head, page) = get(&worker, NETCONN, "/".into(), "text/html");
    assert!(status(&head) == "200", "{head}");
    assert!(
        head.contains("Content-Security-Policy: default-src 'self'"),
        "{head}"
    );
    assert!(page.contains("<table id=\"states\">"), "{page}");
    // Listening on every address without authentication: the page, not
    // the connection list (addresses and processes).
    let (head, body) = get(&worker, NETCONN, "/connections".into(), "*/*");
    assert!(status(&head) == "403", "{head}");
    assert!(body.contains("loopback"), "{body}");
    drop((before, after));
}

/// A client that connects and says nothing does not hold up the records
/// or other scrapers.
#[test]
fn a_silent_client_blocks_nothing() {
    let ns = Netns::new();
    let worker = ns.worker();
    let (mut watch, _) = Watch::start(&ns, &["--interval", "300ms", "--listen", NETCONN]);
    let silent = worker.exec(|| {
        (0..20)
            .map(|_| TcpStream::connect(NETCONN).unwrap())
            .collect::<Vec<_>>()
    });
    // Past the client bound: the records go on, and a scraper is answered
    // once the silent ones time out.
    for _ in 0..3 {
        watch.next_record(Duration::from_secs(10));
    }
    let (head, body) = get(&worker, NETCONN, "/metrics".into(), "*/*");
    assert!(status(&head) == "200", "{head}");
    assert!(body.contains("netconn_connections{"), "{body}");
    drop(silent);
}

/// Sixteen kept-alive scrapers gone idle (every slot), then twenty
/// clients that never send a request: a new scraper is answered each time
/// (the connection idle longest is closed for it), never kept waiting for
/// minutes behind them (the reads time out after 10 s).
#[test]
fn idle_and_silent_clients_never_delay_a_scrape() {
    let ns = Netns::new();
    let worker = ns.worker();
    let (_watch, _) = Watch::start(&ns, &["--interval", "300ms", "--listen", NETCONN]);
    let idle = worker.exec(|| {
        (0..16)
            .map(|_| {
                let mut s = TcpStream::connect(NETCONN).unwrap();
                s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
                s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
                    .unwrap();
                // Its whole answer, by Content-Length; the connection stays.
                let mut got = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    let n = s.read(&mut chunk).unwrap();
                    assert!(n > 0, "closed before the answer");
                    got.extend_from_slice(&chunk[..n]);
                    let text = String::from_utf8_lossy(&got);
                    if let Some((head, body)) = text.split_once("\r\n\r\n") {
                        let len: usize = head
                            .lines()
                            .find_map(|l| {
                                let (name, value) = l.split_once(':')?;
                                name.eq_ignore_ascii_case("content-length").then_some(value)
                            })
                            .unwrap()
                            .trim()
                            .parse()
                            .unwrap();
                        if body.len() >= len {
                            assert!(!head.to_ascii_lowercase().contains("close"), "{head}");
                            break;
                        }
                    }
                }
                s
            })
            .collect::<Vec<_>>()
    });
    let (head, _) = get(&worker, NETCONN, "/metrics".into(), "*/*");
    assert!(status(&head) == "200", "{head}");
    let silent = worker.exec(|| {
        (0..20)
            .map(|_| TcpStream::connect(NETCONN).unwrap())
            .collect::<Vec<_>>()
    });
    let (head, body) = get(&worker, NETCONN, "/metrics".into(), "*/*");
    assert!(status(&head) == "200", "{head}");
    assert!(body.contains("netconn_connections{"), "{body}");
    drop((idle, silent));
}

/// A free port on the host's loopback (bound, then let go).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `watch --all-namespaces --listen`: one series per namespace, labelled
/// with its inode and name, each equal to that namespace's truth.
#[test]
fn every_namespace_is_a_labelled_series() {
    let spaces: Vec<Netns> = (0..2).map(|_| Netns::new()).collect();
    let workers: Vec<Worker> = spaces.iter().map(Netns::worker).collect();
    let _held: Vec<_> = workers
        .iter()
        .enumerate()
        .map(|(i, w)| {
            w.exec(move || {
                let l = TcpListener::bind("127.0.0.1:7000").unwrap();
                let c: Vec<TcpStream> = (0..=i)
                    .map(|_| TcpStream::connect("127.0.0.1:7000").unwrap())
                    .collect();
                (l, c)
            })
        })
        .collect();
    // netconn and Prometheus in the host's namespace, on its loopback.
    let endpoint = format!("127.0.0.1:{}", free_port());
    let mut cmd = Command::new(netconn_integration::netconn_bin());
    cmd.args([
        "watch",
        "--all-namespaces",
        "-i",
        "500ms",
        "--listen",
        &endpoint,
    ])
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let (mut watch, _) = Watch::start_cmd(cmd);
    let api = Box::leak(format!("127.0.0.1:{}", free_port()).into_boxed_str());
    let prometheus = Prometheus::start(None, api, &endpoint, "");
    // A worker in the host's namespace, for the queries.
    let host = Worker::here();
    watch.next_of("host", Duration::from_secs(30));
    prometheus.scraped_after(&host, now());
    for (ns, established) in spaces.iter().zip([2.0, 4.0]) {
        let inode = ns.inode();
        let truth = truth(ns);
        let q = format!(
            "netconn_connections{{netns=\"{inode}\",netns_name=\"{}\",namespace=\"container\",conn_type=\"tcp\",state=\"ESTABLISHED\"}}",
            ns.name
        );
        assert_eq!(prometheus.value(&host, &q), established, "{q}");
        let all = prometheus.query(&host, &format!("netconn_connections{{netns=\"{inode}\"}}"));
        assert_eq!(all.len(), 2 * 11 + 2, "{all:?}");
        let total: f64 = all.iter().map(|(_, v)| v).sum();
        assert_eq!(total, truth.values().sum::<i64>() as f64, "{}", ns.name);
        let q = format!("netconn_listener_backlog{{netns=\"{inode}\",port=\"7000\"}}");
        assert_eq!(prometheus.value(&host, &q), 128.0, "{q}");
    }
    assert!(prometheus.value(&host, "netconn_namespaces") >= 2.0);
    assert_eq!(prometheus.value(&host, "netconn_lost_events_total"), 0.0);
}

/// `--web-config-file` in the exporter toolkit's format: a real Prometheus
/// scrapes over TLS with its user's password (`up` is 1, the page is
/// netconn's); without the password, with a wrong one, or in plain HTTP,
/// nothing is served.
#[test]
fn tls_and_basic_auth_as_the_exporter_toolkit_configures_them() {
    let ns = Netns::new();
    let dir = std::env::temp_dir().join(format!("netconn-tls-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let made = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt"])
        .args(["ec_paramgen_curve:prime256v1", "-nodes", "-days", "1"])
        .args([
            "-subj",
            "/CN=netconn",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ])
        .args(["-keyout", "key.pem", "-out", "cert.pem"])
        .current_dir(&dir)
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(made.success(), "openssl");
    let hash = bcrypt::hash("s3cret", 4).unwrap();
    // Paths relative to the file, as the toolkit takes them.
    let web = dir.join("web.yml");
    std::fs::write(
        &web,
        format!(
            "tls_server_config:\n  cert_file: cert.pem\n  key_file: key.pem\nbasic_auth_users:\n  prometheus: {hash}\n"
        ),
    )
    .unwrap();
    let (mut watch, _) = Watch::start(
        &ns,
        &[
            "--interval",
            "500ms",
            "--listen",
            NETCONN,
            "--web-config-file",
            web.to_str().unwrap(),
        ],
    );
    let curl = |args: &[&str]| -> (bool, String) {
        let out = ns
            .cmd("curl")
            .args(["-s", "-m", "5", "-o", "-", "-w", "\n%{http_code}"])
            .args(args)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let url = format!("https://{NETCONN}/metrics");
    let ca = dir.join("cert.pem");
    let ca = ca.to_str().unwrap();
    let (_, no_auth) = curl(&["--cacert", ca, &url]);
    assert!(no_auth.ends_with("401"), "{no_auth}");
    let (_, wrong) = curl(&["--cacert", ca, "-u", "prometheus:wrong", &url]);
    assert!(wrong.ends_with("401"), "{wrong}");
    let (_, right) = curl(&["--cacert", ca, "-u", "prometheus:s3cret", &url]);
    assert!(right.ends_with("200"), "{right}");
    assert!(right.contains("netconn_connections{"), "{right}");
    let (plain_ok, plain) = curl(&[&format!("http://{NETCONN}/metrics")]);
    assert!(
        !plain_ok || !plain.ends_with("200"),
        "plain HTTP served: {plain}"
    );

    let job = format!(
        "    scheme: https\n    tls_config:\n      ca_file: {ca}\n    basic_auth:\n      username: prometheus\n      password: s3cret\n"
    );
    let prometheus = Prometheus::start(Some(&ns), PROMETHEUS, NETCONN, &job);
    let worker = ns.worker();
    watch.next_record(Duration::from_secs(30));
    prometheus.scraped_after(&worker, now());
    assert_eq!(prometheus.value(&worker, "up{job=\"netconn\"}"), 1.0);
    assert_eq!(
        prometheus.value(&worker, "netconn_info{source=\"ebpf\"}"),
        1.0
    );
    drop(prometheus);
    std::fs::remove_dir_all(&dir).unwrap();
}
