//! The page beside `/metrics` in a real browser (Debian's chromium, driven
//! by Selenium through chromedriver, `tests/web/page.py`): the per-state
//! table equals the kernel's, follows a change without a reload, and
//! recovers when the daemon restarts; browser streams are bounded apart
//! from the scrapers' slots.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use netconn_integration::{Netns, Table, Watch, mix, truth};
use serde_json::Value;

const ADDR: &str = "127.0.0.1:9471";

/// The browser, in the test's namespace, on the page; killed on drop.
struct Browser {
    child: Child,
    input: Option<ChildStdin>,
    lines: BufReader<ChildStdout>,
}

impl Browser {
    /// `browser`: chromium or firefox.
    fn open(ns: &Netns, browser: &str, shot: &std::path::Path) -> Self {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/web/page.py");
        // The project's virtual environment, where setup installs Selenium.
        let python = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../target/tools/venv/bin/python3"
        );
        let mut child = Command::new("ip")
            .args(["netns", "exec", &ns.name, python, script, browser])
            .arg(format!("http://{ADDR}/"))
            .arg(shot)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            // A group of its own: chromedriver and chromium with it.
            .process_group(0)
            .spawn()
            .expect("python3 runs");
        let input = child.stdin.take().unwrap();
        let lines = BufReader::new(child.stdout.take().unwrap());
        Self {
            child,
            input: Some(input),
            lines,
        }
    }

    fn next(&mut self) -> Value {
        let mut line = String::new();
        let n = self.lines.read_line(&mut line).expect("the browser's line");
        assert!(n > 0, "the browser script ended");
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"))
    }

    fn say(&mut self, what: &str) {
        writeln!(self.input.as_mut().unwrap(), "{what}").unwrap();
    }

    /// Waits until a look at the page satisfies `want`; that look.
    fn until(&mut self, what: &str, timeout: Duration, want: impl Fn(&Value) -> bool) -> Value {
        let t0 = Instant::now();
        loop {
            let look = self.next();
            if want(&look) {
                return look;
            }
            assert!(
                t0.elapsed() < timeout,
                "{what} not on the page within {timeout:?}: {look}"
            );
        }
    }
}

impl Drop for Browser {
    /// End of input: the script quits the browser; what is left of its
    /// group after 10 s is killed.
    fn drop(&mut self) {
        drop(self.input.take());
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_secs(10) {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        // SAFETY: signals to the group this test started.
        unsafe { libc::kill(-(self.child.id() as i32), libc::SIGKILL) };
        let _ = self.child.wait();
    }
}

/// The table as the page reports it (conn-type -> state -> figure).
fn nested(t: &Table) -> Value {
    let mut out = serde_json::Map::new();
    for ((ct, state), n) in t {
        out.entry(ct.clone())
            .or_insert_with(|| Value::Object(Default::default()))
            .as_object_mut()
            .unwrap()
            .insert(state.clone(), (*n).into());
    }
    Value::Object(out)
}

/// GETs `target` on a connection of its own (from the calling thread's
/// namespace): the connection, left open, and its status line's start
/// (`HTTP/1.1 200`).
fn ask(target: &str) -> (TcpStream, String) {
    let mut s = TcpStream::connect(ADDR).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(s, "GET {target} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut head = [0u8; 12];
    s.read_exact(&mut head).unwrap();
    (s, String::from_utf8_lossy(&head).into_owned())
}

fn watch(ns: &Netns) -> Watch {
    let (w, _) = Watch::start(ns, &["--interval", "1s", "--listen", ADDR]);
    w
}

#[test]
fn the_page_in_chromium() {
    the_page_shows_the_kernels_table_live_and_recovers_from_a_restart("chromium");
}

#[test]
fn the_page_in_firefox() {
    the_page_shows_the_kernels_table_live_and_recovers_from_a_restart("firefox");
}

fn the_page_shows_the_kernels_table_live_and_recovers_from_a_restart(name: &str) {
    let ns = Netns::new();
    let worker = ns.worker();
    let held = worker.exec(|| mix::build(61));
    let mut daemon = watch(&ns);
    daemon.fresh_record();
    // Kept for people to look at: target/test-screenshots/page-BROWSER.png.
    let shot = netconn_integration::screenshot_path(&format!("page-{name}.png"));

    let mut browser = Browser::open(&ns, name, &shot);
    assert_eq!(browser.next()["title"], "netconn");

    // The browser's own sockets are in the namespace too: compare with
    // the kernel's truth taken beside each look.
    let matches = |look: &Value, ns: &Netns| look["table"] == nested(&truth(ns));
    let look = browser.until("the kernel's table", Duration::from_secs(30), |l| {
        l["status"] == "live" && matches(l, &ns)
    });
    assert_eq!(
        look["header"],
        serde_json::json!(["state", "tcp", "tcp6", "udp", "udp6"])
    );
    assert_eq!(
        look["namespaces_tab"], false,
        "one namespace: no namespaces view"
    );

    // Five more connections: the page follows, without a reload.
    let before = look["table"]["tcp"]["ESTABLISHED"].as_i64().unwrap_or(0);
    let more = worker.exec(|| netconn_integration::pairs(5));
    let look = browser.until("the table after 5 more", Duration::from_secs(30), |l| {
        matches(l, &ns) && l["table"]["tcp"]["ESTABLISHED"].as_i64().unwrap_or(0) >= before + 10
    });
    assert_eq!(look["status"], "live");

    // The connections view lists them; a filter keeps one port's.
    browser.say("tab connections");
    let port = more.0.local_addr().unwrap().port();
    browser.say(&format!("filter {port}"));
    std::thread::sleep(Duration::from_secs(2));
    browser.say("rows");
    let rows = browser.until("the filtered rows", Duration::from_secs(20), |l| {
        l["rows"].as_array().is_some_and(|r| r.len() == 11)
    });
    for row in rows["rows"].as_array().unwrap() {
        assert!(row.to_string().contains(&format!(":{port}")), "{row}");
    }
    browser.say("tab overview");

    // Streams past the bound are refused; scrapes are not.
    let streams: Vec<(TcpStream, String)> =
        worker.exec(|| (0..3).map(|_| ask("/events")).collect());
    for (_, status) in &streams {
        assert_eq!(status, "HTTP/1.1 200");
    }
    let (fifth, scrape) = worker.exec(|| (ask("/events").1, ask("/metrics").1));
    assert_eq!(
        fifth, "HTTP/1.1 503",
        "a fifth stream (the browser's is one)"
    );
    assert_eq!(scrape, "HTTP/1.1 200");
    // Closed streams give their slots back at once (not when a write
    // fails, seconds later).
    drop(streams);
    std::thread::sleep(Duration::from_millis(300));
    let again: Vec<String> = worker.exec(|| (0..3).map(|_| ask("/events").1).collect());
    assert_eq!(again, ["HTTP/1.1 200"; 3], "the slots of closed streams");

    // The daemon restarts: the page says so, then follows the new one.
    daemon.stop(libc::SIGTERM);
    browser.until(
        "the page noticing the daemon gone",
        Duration::from_secs(20),
        |l| l["status"] != "live",
    );
    drop(more);
    let mut daemon = watch(&ns);
    daemon.fresh_record();
    browser.until(
        "the table from the new daemon",
        Duration::from_secs(30),
        |l| l["status"] == "live" && matches(l, &ns),
    );
    browser.say("shot");
    browser.until("the screenshot", Duration::from_secs(20), |l| {
        l["screenshot"].is_string()
    });
    let png = std::fs::read(&shot).expect("a screenshot");
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 10_000,
        "{} bytes",
        png.len()
    );
    drop((browser, daemon, held));
}
