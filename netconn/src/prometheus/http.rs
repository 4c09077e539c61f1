//! The smallest HTTP/1.1 server that serves `GET /metrics`. Connections
//! are kept alive between scrapes, as Prometheus expects: a scraper that
//! reconnected every time would leave a TIME_WAIT socket per scrape in the
//! very tables netconn counts. It runs on the watch's runtime, each client
//! on a task of its own with deadlines, at most [`MAX_CLIENTS`] at once,
//! so no client, slow or silent, can hold up the loop that owns the counts
//! (it only ever builds a page). A scrape the loop does not answer at once
//! while it is busy with an interval's work gets the last page it made
//! ([`LastPage`], [`Busy::fresh_or_last`]).

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::live::serve::{Board, Busy};
use crate::prometheus::page::{Format, Page};
use crate::prometheus::web::Web;

/// Most clients served at once (see [`serve`] for the one past it).
pub const MAX_CLIENTS: usize = 16;
/// A client has this long to send its first request, and to take a page.
pub const CLIENT_DEADLINE: Duration = Duration::from_secs(5);
/// A kept-alive connection may wait this long for its next request
/// (longer than any sensible scrape interval).
pub const IDLE: Duration = Duration::from_secs(300);
/// The longest request head read; a longer one is refused.
const MAX_HEAD: usize = 16 * 1024;

/// The page the loop made last, where the clients' thread reads it.
#[derive(Default)]
pub struct LastPage {
    busy: Busy,
    page: std::sync::Mutex<Option<Page>>,
    /// A scrape got the last page: the loop makes a new one at the end of
    /// its interval.
    missed: std::sync::atomic::AtomicBool,
}

impl LastPage {
    /// For a loop that says when it is `busy`.
    pub fn new(busy: &Busy) -> LastPage {
        LastPage {
            busy: busy.clone(),
            ..LastPage::default()
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Page>> {
        self.page.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Keeps `page`, the page the loop just made.
    pub fn keep(&self, page: Page) {
        *self.lock() = Some(page);
    }

    /// Whether the loop should make a page for the board at the end of its
    /// interval: none made yet, or scrapes took the last one since.
    pub fn wanted(&self) -> bool {
        use std::sync::atomic::Ordering;
        self.missed.swap(false, Ordering::Relaxed) || self.lock().is_none()
    }

    /// The last page, encoded (None: the loop made none yet).
    fn last(&self, format: Format) -> Option<String> {
        let page = self.lock().clone()?;
        self.missed
            .store(true, std::sync::atomic::Ordering::Relaxed);
        Some(page.encode(format))
    }
}

/// A scrape, handed to the loop that owns the counts, which sends the
/// page back through `reply`.
pub struct Scrape {
    pub format: Format,
    pub reply: tokio::sync::oneshot::Sender<String>,
}

/// Binds `addr` (before the programs load, so a port in use is reported
/// at once). Outside or inside the runtime.
pub fn bind(addr: SocketAddr) -> io::Result<std::net::TcpListener> {
    let listener = std::net::TcpListener::bind(addr)?;
    listener.set_nonblocking(true)?;
    Ok(listener)
}

/// Accepts scrapers on a task of its own, each on a task of its own with
/// deadlines, at most [`MAX_CLIENTS`] at once; their scrapes come out of
/// the returned receiver. Must be called inside the runtime.
///
/// A new client is never refused or kept waiting because others are idle:
/// when every slot is taken, the client that has waited longest for a
/// request of its own (a kept-alive scraper between scrapes, or one that
/// never sent anything) is closed and gives its slot; only when all are
/// being answered does the newcomer get `503` at once. `web`: TLS and
/// basic authentication (`--web-config-file`).
pub fn serve(
    listener: std::net::TcpListener,
    web: Option<std::sync::Arc<Web>>,
    last: std::sync::Arc<LastPage>,
    board: Board,
) -> io::Result<tokio::sync::mpsc::Receiver<Scrape>> {
    use std::sync::Arc;
    let listener = tokio::net::TcpListener::from_std(listener)?;
    let (scrapes, rx) = tokio::sync::mpsc::channel(MAX_CLIENTS);
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CLIENTS));
    // Browsers' event streams: slots of their own.
    let streams = Arc::new(tokio::sync::Semaphore::new(crate::web::MAX_STREAMS));
    // The connection list names addresses and processes: served only where
    // nobody else reaches it, or behind basic authentication.
    let list_connections = listener.local_addr()?.ip().is_loopback()
        || web.as_ref().is_some_and(|w| w.authenticates());
    let listing = Arc::new(crate::web::Listing::default());
    let waiting = Waiting::default();
    tokio::spawn(async move {
        let mut id = 0u64;
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                // Out of descriptors, say: do not spin.
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            };
            let slot = match slots.clone().try_acquire_owned() {
                Ok(slot) => slot,
                Err(_) => match waiting.evict_longest() {
                    // It returns at once and gives its slot back.
                    true => {
                        match tokio::time::timeout(CLIENT_DEADLINE, slots.clone().acquire_owned())
                            .await
                        {
                            Ok(Ok(slot)) => slot,
                            _ => {
                                tokio::spawn(busy(stream));
                                continue;
                            }
                        }
                    }
                    false => {
                        tokio::spawn(busy(stream));
                        continue;
                    }
                },
            };
            id += 1;
            let (web, scrapes, waiting) = (web.clone(), scrapes.clone(), waiting.clone());
            let last = last.clone();
            let (board, streams, listing) = (board.clone(), streams.clone(), listing.clone());
            let me = Waiter { id, waiting };
            tokio::spawn(async move {
                let tls = web.as_ref().and_then(|w| w.tls.clone());
                let mut slot = Some(slot);
                let shared = Shared {
                    web: web.as_deref(),
                    me: &me,
                    last: &last,
                    board: &board,
                    streams: &streams,
                    listing: list_connections.then_some(&*listing),
                };
                let _ = match tls {
                    Some(acceptor) => {
                        // The handshake has the first request's deadline.
                        match tokio::time::timeout(CLIENT_DEADLINE, acceptor.accept(stream)).await {
                            Ok(Ok(stream)) => client(stream, scrapes, &shared, &mut slot).await,
                            _ => Ok(()),
                        }
                    }
                    None => client(stream, scrapes, &shared, &mut slot).await,
                };
                me.done();
                drop(slot);
            });
        }
    });
    Ok(rx)
}

/// A waiting client: its id, and what tells it to close.
type WaitingClient = (u64, tokio::sync::oneshot::Sender<()>);

/// The clients waiting for a request of their own, longest first.
#[derive(Clone, Default)]
struct Waiting(std::sync::Arc<std::sync::Mutex<std::collections::VecDeque<WaitingClient>>>);

impl Waiting {
    /// Tells the client that has waited longest to close; false when none
    /// is waiting (every slot is being answered).
    fn evict_longest(&self) -> bool {
        let mut queue = self.0.lock().expect("waiting clients");
        while let Some((_, stop)) = queue.pop_front() {
            if stop.send(()).is_ok() {
                return true;
            }
        }
        false
    }
}

/// One client's place among the waiting.
struct Waiter {
    id: u64,
    waiting: Waiting,
}

impl Waiter {
    /// Waits in line until a request comes; the receiver fires when a
    /// newcomer needs the slot.
    fn wait(&self) -> tokio::sync::oneshot::Receiver<()> {
        let (stop, evicted) = tokio::sync::oneshot::channel();
        let mut queue = self.waiting.0.lock().expect("waiting clients");
        queue.retain(|(id, _)| *id != self.id);
        queue.push_back((self.id, stop));
        evicted
    }

    /// Out of line: a request came, or it is done.
    fn done(&self) {
        let mut queue = self.waiting.0.lock().expect("waiting clients");
        queue.retain(|(id, _)| *id != self.id);
    }
}

/// The answer to a client past the bound while every slot is answering:
/// `503` at once rather than a wait.
async fn busy(mut stream: tokio::net::TcpStream) {
    let answer = response(
        "503 Service Unavailable",
        "text/plain",
        "busy: every connection is being answered; try again\n",
        false,
        false,
    );
    let _ = tokio::time::timeout(CLIENT_DEADLINE, stream.write_all(&answer)).await;
}

/// What a request asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Asked {
    /// The page, in this format; `head`: without the body (HEAD).
    Metrics { format: Format, head: bool },
    /// A file of the page (`/`, its script and style); `head`: without
    /// the body.
    Page { path: String, head: bool },
    /// The page's live stream of records (`/events`).
    Events,
    /// The daemon's namespace's sockets, as JSON (`/connections`).
    Connections,
    /// Status line and a one-line body.
    Refused(&'static str, &'static str),
}

/// A request head read: what it asks, and whether the connection stays
/// open after the answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub asked: Asked,
    pub keep_alive: bool,
    /// The `Authorization` header's value, as sent.
    pub authorization: Option<String>,
    /// Bytes of body that follow the head (`Content-Length`), read and
    /// dropped before the next request.
    pub body: u64,
}

/// The longest request body skipped; a longer one is refused.
const MAX_BODY: u64 = 64 * 1024;

/// Reads a request head: its request line, `Accept` and `Connection`.
pub fn parse(head: &str) -> Request {
    let mut lines = head.split("\r\n");
    let mut parts = lines.next().unwrap_or_default().split(' ');
    let (method, target, version) = (parts.next(), parts.next(), parts.next());
    let refused = |status, body| Request {
        asked: Asked::Refused(status, body),
        keep_alive: false,
        authorization: None,
        body: 0,
    };
    let (Some(method), Some(target), Some(version)) = (method, target, version) else {
        return refused("400 Bad Request", "bad request line\n");
    };
    if !version.starts_with("HTTP/1.") {
        return refused("505 HTTP Version Not Supported", "HTTP/1.x only\n");
    }
    let header = |wanted: &str| {
        head.split("\r\n").skip(1).find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.trim()
                .eq_ignore_ascii_case(wanted)
                .then(|| value.trim().to_ascii_lowercase())
        })
    };
    // Connection's tokens (a comma-separated list, any case).
    let connection = header("connection").unwrap_or_default();
    let token = |t: &str| connection.split(',').any(|c| c.trim() == t);
    // HTTP/1.1 keeps the connection unless told not to; 1.0 only if asked.
    let keep_alive = if token("close") {
        false
    } else if token("keep-alive") {
        true
    } else {
        version == "HTTP/1.1"
    };
    // A body: skipped when its length is given and small; a chunked one
    // (or any other coding) is not taken, and the connection closes, so a
    // body is never read as the next request.
    if header("transfer-encoding").is_some() {
        return refused(
            "501 Not Implemented",
            "request bodies in a transfer coding are not taken\n",
        );
    }
    let body = match header("content-length").map(|n| n.parse::<u64>()) {
        None => 0,
        Some(Ok(n)) if n <= MAX_BODY => n,
        Some(Ok(_)) => return refused("413 Content Too Large", "request body too large\n"),
        Some(Err(_)) => return refused("400 Bad Request", "bad Content-Length\n"),
    };
    let path = target.split('?').next().unwrap_or_default();
    let bodiless = method == "HEAD";
    let asked = match (method, path) {
        ("GET" | "HEAD", "/metrics") => Asked::Metrics {
            format: Format::of_accept(header("accept").as_deref()),
            head: bodiless,
        },
        ("GET", "/events") => Asked::Events,
        ("GET", "/connections") => Asked::Connections,
        ("GET" | "HEAD", path) if crate::web::asset(path).is_some() => Asked::Page {
            path: path.to_owned(),
            head: bodiless,
        },
        (_, "/metrics" | "/events" | "/connections" | "/" | "/app.js" | "/app.css") => {
            Asked::Refused("405 Method Not Allowed", "GET only\n")
        }
        _ => Asked::Refused(
            "404 Not Found",
            "netconn serves /metrics, and its page at /\n",
        ),
    };
    let authorization = head.split("\r\n").skip(1).find_map(|l| {
        let (name, value) = l.split_once(':')?;
        name.trim()
            .eq_ignore_ascii_case("authorization")
            .then(|| value.trim().to_owned())
    });
    Request {
        asked,
        keep_alive,
        authorization,
        body,
    }
}

/// Reads and drops `n` bytes of body: first what `buf` holds already, then
/// from `stream`.
async fn skip_body<S: tokio::io::AsyncRead + Unpin>(
    stream: &mut S,
    buf: &mut Vec<u8>,
    n: u64,
) -> io::Result<()> {
    let held = usize::try_from(n).unwrap_or(usize::MAX).min(buf.len());
    buf.drain(..held);
    let mut left = n - held as u64;
    let mut chunk = [0u8; 4096];
    while left > 0 {
        let want = usize::try_from(left).unwrap_or(usize::MAX).min(chunk.len());
        let got = stream.read(&mut chunk[..want]).await?;
        if got == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        left -= got as u64;
    }
    Ok(())
}

/// The answer to a request without the credentials `--web-config-file`
/// asks for.
fn unauthorized(keep: bool) -> Vec<u8> {
    let mut out = response(
        "401 Unauthorized",
        "text/plain",
        "unauthorized\n",
        false,
        keep,
    );
    let at = out
        .windows(2)
        .position(|w| w == b"\r\n")
        .expect("a status line")
        + 2;
    out.splice(at..at, *b"WWW-Authenticate: Basic realm=\"netconn\"\r\n");
    out
}

/// The response to a request.
fn response(status: &str, content_type: &str, body: &str, head: bool, keep: bool) -> Vec<u8> {
    response_with(status, content_type, "", body, head, keep)
}

/// The same with `headers` (lines ending in CRLF) besides.
fn response_with(
    status: &str,
    content_type: &str,
    headers: &str,
    body: &str,
    head: bool,
    keep: bool,
) -> Vec<u8> {
    let connection = if keep { "keep-alive" } else { "close" };
    let mut out = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: {connection}\r\n{headers}\r\n",
        body.len()
    )
    .into_bytes();
    if !head {
        out.extend_from_slice(body.as_bytes());
    }
    out
}

/// Reads the next request head from `stream` into `buf` (which may hold
/// the start of it already); returns the head and leaves what follows it
/// in `buf`. `None`: the client closed between requests.
async fn read_head<S: tokio::io::AsyncRead + Unpin>(
    stream: &mut S,
    buf: &mut Vec<u8>,
) -> io::Result<Option<String>> {
    let mut chunk = [0u8; 1024];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).into_owned();
            buf.drain(..end + 4);
            return Ok(Some(head));
        }
        if buf.len() > MAX_HEAD {
            return Err(io::ErrorKind::InvalidData.into());
        }
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return if buf.is_empty() {
                Ok(None)
            } else {
                Err(io::ErrorKind::UnexpectedEof.into())
            };
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// One client: each request within its deadline (the first within
/// [`CLIENT_DEADLINE`], later ones within [`IDLE`]), the page from the
/// loop, written within the deadline; until it closes or asks to.
/// What every client of the server shares.
struct Shared<'a> {
    web: Option<&'a Web>,
    me: &'a Waiter,
    last: &'a LastPage,
    board: &'a Board,
    streams: &'a std::sync::Arc<tokio::sync::Semaphore>,
    /// The connection list, where it may be served.
    listing: Option<&'a crate::web::Listing>,
}

async fn client<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(
    mut stream: S,
    scrapes: tokio::sync::mpsc::Sender<Scrape>,
    shared: &Shared<'_>,
    slot: &mut Option<tokio::sync::OwnedSemaphorePermit>,
) -> io::Result<()> {
    let Shared {
        web,
        me,
        last,
        board,
        streams,
        listing,
    } = *shared;
    use tokio::time::timeout;
    let late = |_| io::Error::from(io::ErrorKind::TimedOut);
    let mut buf = Vec::new();
    let mut wait = CLIENT_DEADLINE;
    loop {
        let evicted = me.wait();
        let head = tokio::select! {
            head = timeout(wait, read_head(&mut stream, &mut buf)) => head,
            // A newcomer needs the slot: the idle connection gives way
            // (a scraper reconnects for its next scrape).
            _ = evicted => return Ok(()),
        };
        me.done();
        let (answer, keep) = match head {
            Err(e) => return Err(late(e)),
            Ok(Ok(None)) => return Ok(()),
            Ok(Err(e)) if e.kind() == io::ErrorKind::InvalidData => (
                response(
                    "431 Request Header Fields Too Large",
                    "text/plain",
                    "request head too large\n",
                    false,
                    false,
                ),
                false,
            ),
            Ok(Err(e)) => return Err(e),
            Ok(Ok(Some(head))) => {
                let Request {
                    asked,
                    keep_alive,
                    authorization,
                    body,
                } = parse(&head);
                timeout(CLIENT_DEADLINE, skip_body(&mut stream, &mut buf, body))
                    .await
                    .map_err(late)??;
                let allowed = web.is_none_or(|w| w.allows(authorization.as_deref()));
                let answer = match asked {
                    _ if !allowed => unauthorized(keep_alive),
                    Asked::Refused(status, body) => {
                        response(status, "text/plain", body, false, keep_alive)
                    }
                    Asked::Page { path, head } => {
                        let asset = crate::web::asset(&path).expect("a file of the page");
                        response_with(
                            "200 OK",
                            asset.content_type,
                            crate::web::PAGE_HEADERS,
                            asset.body,
                            head,
                            keep_alive,
                        )
                    }
                    Asked::Connections => match listing {
                        None => response(
                            "403 Forbidden",
                            "text/plain",
                            "the connection list is served on a loopback address, or with basic authentication (--web-config-file)\n",
                            false,
                            keep_alive,
                        ),
                        Some(listing) => match timeout(CLIENT_DEADLINE, listing.get()).await {
                            Ok(Ok(json)) => response_with(
                                "200 OK",
                                "application/json",
                                "Cache-Control: no-store\r\n",
                                &String::from_utf8_lossy(&json),
                                false,
                                keep_alive,
                            ),
                            _ => response(
                                "503 Service Unavailable",
                                "text/plain",
                                "cannot dump the socket tables now\n",
                                false,
                                keep_alive,
                            ),
                        },
                    },
                    Asked::Events => {
                        // A slot of the streams' own, and the scrapers'
                        // given back: a browser tab never holds one.
                        let Ok(streaming) = streams.clone().try_acquire_owned() else {
                            let busy = response(
                                "503 Service Unavailable",
                                "text/plain",
                                "too many event streams\n",
                                false,
                                false,
                            );
                            timeout(CLIENT_DEADLINE, stream.write_all(&busy))
                                .await
                                .map_err(late)??;
                            return Ok(());
                        };
                        drop(slot.take());
                        let streamed =
                            crate::web::stream(&mut stream, board, CLIENT_DEADLINE).await;
                        drop(streaming);
                        return streamed;
                    }
                    Asked::Metrics { format, head } => {
                        let (reply, page) = tokio::sync::oneshot::channel();
                        let gone = || io::Error::from(io::ErrorKind::BrokenPipe);
                        use tokio::sync::mpsc::error::TrySendError;
                        let page = match scrapes.try_send(Scrape { format, reply }) {
                            Ok(()) => (last.busy)
                                .fresh_or_last(page, || last.last(format))
                                .await
                                .map_err(|_| gone())?,
                            // As many scrapes wait as the loop takes: the
                            // last page, when there is one.
                            Err(TrySendError::Full(_)) => last.last(format).ok_or_else(gone)?,
                            Err(TrySendError::Closed(_)) => return Err(gone()),
                        };
                        response("200 OK", format.content_type(), &page, head, keep_alive)
                    }
                };
                (answer, keep_alive)
            }
        };
        timeout(CLIENT_DEADLINE, stream.write_all(&answer))
            .await
            .map_err(late)??;
        if !keep {
            return timeout(CLIENT_DEADLINE, stream.shutdown())
                .await
                .map_err(late)?;
        }
        wait = IDLE;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A server whose loop is busy and never answers, with a last page
    /// of `netconn_test` = `value`: (runtime, address, its last page,
    /// the scrapes' receiver, the busy guard's owner).
    fn busy_server(
        value: i64,
    ) -> (
        tokio::runtime::Runtime,
        std::net::SocketAddr,
        std::sync::Arc<LastPage>,
        tokio::sync::mpsc::Receiver<Scrape>,
        Busy,
    ) {
        use crate::prometheus::page::{Family, Value};
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let listener = bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = listener.local_addr().unwrap();
        let busy = Busy::default();
        let last = std::sync::Arc::new(LastPage::new(&busy));
        assert!(last.wanted(), "none made yet");
        last.keep(Page(vec![
            Family::new("netconn_test", "A test.").with(vec![], Value::Gauge(value)),
        ]));
        assert!(!last.wanted(), "made, and nobody took it");
        let scrapes =
            rt.block_on(async { serve(listener, None, last.clone(), Board::default()).unwrap() });
        (rt, addr, last, scrapes, busy)
    }

    /// Writes `request` on a new connection to `addr`; all it answers.
    fn exchange(addr: std::net::SocketAddr, request: &[u8]) -> String {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(request).unwrap();
        let mut answer = String::new();
        s.read_to_string(&mut answer).unwrap();
        answer
    }

    #[test]
    fn a_request_body_is_never_read_as_the_next_request() {
        let (_rt, addr, _last, _scrapes, busy) = busy_server(7);
        let _working = busy.working();
        // Two requests on one connection, the first with a body that
        // looks like a request of its own.
        let answers = exchange(
            addr,
            b"GET /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 21\r\n\r\nGET /nothing HTTP/1.1\
              GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        );
        assert_eq!(answers.matches("HTTP/1.1 200 OK").count(), 2, "{answers}");
        assert!(!answers.contains("404"), "{answers}");
    }

    #[test]
    fn a_busy_loop_leaves_scrapes_to_the_last_page() {
        let (_rt, addr, last, _scrapes, busy) = busy_server(42);
        // The loop is busy and never answers.
        let _working = busy.working();
        let answer = exchange(
            addr,
            b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        );
        assert!(answer.starts_with("HTTP/1.1 200 OK"), "{answer}");
        assert!(answer.contains("netconn_test 42"), "{answer}");
        assert!(last.wanted(), "a scrape took the last page: make a new one");
        assert!(!last.wanted());
    }

    #[test]
    fn requests() {
        let get = "GET /metrics HTTP/1.1\r\nHost: x\r\nAccept: application/openmetrics-text;version=1.0.0,text/plain;q=0.5";
        assert_eq!(
            parse(get),
            Request {
                asked: Asked::Metrics {
                    format: Format::OpenMetrics,
                    head: false
                },
                keep_alive: true,
                authorization: None,
                body: 0,
            }
        );
        assert_eq!(
            parse("HEAD /metrics?x=1 HTTP/1.0\r\nHost: x"),
            Request {
                asked: Asked::Metrics {
                    format: Format::Text,
                    head: true
                },
                keep_alive: false,
                authorization: None,
                body: 0,
            }
        );
        assert!(!parse("GET /metrics HTTP/1.1\r\nConnection: Close").keep_alive);
        assert!(parse("GET /metrics HTTP/1.0\r\nConnection: keep-alive").keep_alive);
        // Connection is a list of tokens, not a substring.
        assert!(parse("GET /metrics HTTP/1.1\r\nConnection: keep-alive, Upgrade").keep_alive);
        assert!(parse("GET /metrics HTTP/1.1\r\nConnection: x-closed-caption").keep_alive);
        assert!(!parse("GET /metrics HTTP/1.1\r\nConnection: Upgrade, close").keep_alive);
        // Bodies: a given length is skipped; a coded one is refused.
        assert_eq!(parse("GET /metrics HTTP/1.1\r\nContent-Length: 5").body, 5);
        assert!(matches!(
            parse("GET /metrics HTTP/1.1\r\nTransfer-Encoding: chunked").asked,
            Asked::Refused("501 Not Implemented", _)
        ));
        assert!(matches!(
            parse("GET /metrics HTTP/1.1\r\nContent-Length: 99999999").asked,
            Asked::Refused("413 Content Too Large", _)
        ));
        let asked = |head| parse(head).asked;
        assert!(matches!(
            asked("GET /nothing HTTP/1.1"),
            Asked::Refused("404 Not Found", _)
        ));
        assert!(matches!(
            asked("GET /?x=1 HTTP/1.1"),
            Asked::Page { ref path, head: false } if path == "/"
        ));
        assert_eq!(asked("GET /events HTTP/1.1"), Asked::Events);
        assert_eq!(asked("GET /connections HTTP/1.1"), Asked::Connections);
        assert!(matches!(
            asked("POST / HTTP/1.1"),
            Asked::Refused("405 Method Not Allowed", _)
        ));
        assert!(matches!(
            asked("POST /metrics HTTP/1.1"),
            Asked::Refused("405 Method Not Allowed", _)
        ));
        assert!(matches!(
            asked("garbage"),
            Asked::Refused("400 Bad Request", _)
        ));
        assert!(matches!(
            asked("GET /metrics SPDY/3"),
            Asked::Refused("505 HTTP Version Not Supported", _)
        ));
    }
}
