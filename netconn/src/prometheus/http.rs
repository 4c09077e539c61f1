//! The HTTP/1.1 server of the metrics endpoint and its page, on hyper's
//! HTTP/1 connections (request parsing, bodies, keep-alive and HEAD are
//! hyper's). Connections are kept alive between scrapes, as Prometheus
//! expects: a scraper that reconnected every time would leave a TIME_WAIT
//! socket per scrape in the very tables netconn counts. It runs on the
//! watch's runtime, each client on a task of its own with deadlines, at
//! most [`MAX_CLIENTS`] at once, so no client, slow or silent, can hold up
//! the loop that owns the counts (it only ever builds a page). A scrape the
//! loop does not answer at once while it is busy with an interval's work
//! gets the last page it made ([`LastPage`], [`Busy::fresh_or_last`]).

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, combinators::BoxBody};
use hyper::body::{Frame, Incoming};
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::AsyncWriteExt;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};

use crate::live::serve::{Board, Busy};
use crate::prometheus::page::{Exposition, Page};
use crate::prometheus::web::Web;

/// Most clients served at once (see [`serve`] for the one past it).
pub const MAX_CLIENTS: usize = 16;
/// A client has this long to send its first request, and to take a page.
pub const CLIENT_DEADLINE: Duration = Duration::from_secs(5);
/// A kept-alive connection may wait this long for its next request
/// (longer than any sensible scrape interval).
pub const IDLE: Duration = Duration::from_secs(300);
/// The longest request head read; a longer one is refused (hyper's
/// smallest buffer is 8 KiB).
const MAX_HEAD: usize = 16 * 1024;
/// How long a connection closed (for a newcomer, or past its deadline)
/// may take to finish the answer it is writing.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

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
    pub fn new(busy: &Busy) -> Self {
        Self {
            busy: busy.clone(),
            ..Self::default()
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
    fn last(&self, format: Exposition) -> Option<String> {
        let page = self.lock().clone()?;
        self.missed
            .store(true, std::sync::atomic::Ordering::Relaxed);
        Some(page.encode(format))
    }
}

/// A scrape, handed to the loop that owns the counts, which sends the
/// page back through `reply`.
pub struct Scrape {
    pub format: Exposition,
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
    web: Option<Arc<Web>>,
    last: Arc<LastPage>,
    board: Board,
) -> io::Result<tokio::sync::mpsc::Receiver<Scrape>> {
    let listener = tokio::net::TcpListener::from_std(listener)?;
    let (scrapes, rx) = tokio::sync::mpsc::channel(MAX_CLIENTS);
    let slots = Arc::new(Semaphore::new(MAX_CLIENTS));
    // The connection list names addresses and processes: served only where
    // nobody else reaches it, or behind basic authentication.
    let list_connections = listener.local_addr()?.ip().is_loopback()
        || web.as_ref().is_some_and(|w| w.authenticates());
    let shared = Arc::new(Shared {
        web,
        scrapes,
        last,
        board,
        // Browsers' event streams: slots of their own.
        streams: Arc::new(Semaphore::new(crate::web::MAX_STREAMS)),
        listing: list_connections.then(Default::default),
    });
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
                // It closes at once and gives its slot back.
                Err(_) if waiting.evict_longest() => {
                    match tokio::time::timeout(CLIENT_DEADLINE, slots.clone().acquire_owned()).await
                    {
                        Ok(Ok(slot)) => slot,
                        _ => {
                            tokio::spawn(busy(stream));
                            continue;
                        }
                    }
                }
                Err(_) => {
                    tokio::spawn(busy(stream));
                    continue;
                }
            };
            id += 1;
            let me = Arc::new(Waiter {
                id,
                waiting: waiting.clone(),
                evicted: Arc::new(Notify::new()),
            });
            tokio::spawn(connection(stream, shared.clone(), slot, me));
        }
    });
    Ok(rx)
}

/// What every client of the server shares.
struct Shared {
    web: Option<Arc<Web>>,
    scrapes: tokio::sync::mpsc::Sender<Scrape>,
    last: Arc<LastPage>,
    board: Board,
    streams: Arc<Semaphore>,
    /// The connection list, where it may be served.
    listing: Option<crate::web::Listing>,
}

/// A waiting client: its id, and what tells it to close.
type WaitingClient = (u64, Arc<Notify>);

/// The clients waiting for a request of their own, longest first.
#[derive(Clone, Default)]
struct Waiting(Arc<Mutex<std::collections::VecDeque<WaitingClient>>>);

impl Waiting {
    fn lock(&self) -> std::sync::MutexGuard<'_, std::collections::VecDeque<WaitingClient>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Tells the client that has waited longest to close; false when none
    /// is waiting (every slot is being answered).
    fn evict_longest(&self) -> bool {
        match self.lock().pop_front() {
            Some((_, evicted)) => {
                evicted.notify_one();
                true
            }
            None => false,
        }
    }
}

/// One client's place among the waiting.
struct Waiter {
    id: u64,
    waiting: Waiting,
    /// Fires when a newcomer needs its slot.
    evicted: Arc<Notify>,
}

impl Waiter {
    /// Waits in line until a request comes.
    fn wait(&self) {
        let mut queue = self.waiting.lock();
        queue.retain(|(id, _)| *id != self.id);
        queue.push_back((self.id, self.evicted.clone()));
    }

    /// Out of line: a request came, or it is done.
    fn done(&self) {
        self.waiting.lock().retain(|(id, _)| *id != self.id);
    }
}

/// The answer to a client past the bound while every slot is answering:
/// `503` at once rather than a wait.
async fn busy(mut stream: tokio::net::TcpStream) {
    let body = "busy: every connection is being answered; try again\n";
    let answer = format!(
        "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = tokio::time::timeout(CLIENT_DEADLINE, stream.write_all(answer.as_bytes())).await;
}

/// One client: the TLS handshake when configured (within the first
/// request's deadline), then its HTTP connection.
async fn connection(
    stream: tokio::net::TcpStream,
    shared: Arc<Shared>,
    slot: OwnedSemaphorePermit,
    me: Arc<Waiter>,
) {
    let slot = Arc::new(Mutex::new(Some(slot)));
    match shared.web.as_ref().and_then(|w| w.tls.clone()) {
        Some(acceptor) => {
            if let Ok(Ok(stream)) =
                tokio::time::timeout(CLIENT_DEADLINE, acceptor.accept(stream)).await
            {
                http(TokioIo::new(stream), shared, slot, me.clone()).await;
            }
        }
        None => http(TokioIo::new(stream), shared, slot, me.clone()).await,
    }
    me.done();
}

/// Where a connection is, for its deadlines and for eviction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Waiting for a request: evicted for a newcomer, closed past its
    /// deadline.
    Waiting,
    /// A request is being answered (the page asked of the loop).
    Answering,
    /// Its answer is being handed to the client, within
    /// [`CLIENT_DEADLINE`].
    Writing,
    /// It serves an event stream: no deadline, never evicted.
    Streaming,
}

struct State {
    phase: Phase,
    /// Requests answered so far.
    answered: u64,
    /// When the phase began.
    since: Instant,
}

/// A connection's state, however a holder panicked.
fn lock(s: &Mutex<State>) -> std::sync::MutexGuard<'_, State> {
    s.lock().unwrap_or_else(|e| e.into_inner())
}

/// Moves a connection to `phase`, and says so to its task.
fn enter(state: &Mutex<State>, changed: &Notify, phase: Phase) {
    let mut s = lock(state);
    s.phase = phase;
    s.since = Instant::now();
    drop(s);
    changed.notify_one();
}

/// One client's HTTP connection: the first request within
/// [`CLIENT_DEADLINE`], later ones within [`IDLE`], each answer handed over
/// within [`CLIENT_DEADLINE`], closed earlier when a newcomer needs its
/// slot while it waits; until it closes or asks to.
async fn http<I>(
    io: I,
    shared: Arc<Shared>,
    slot: Arc<Mutex<Option<OwnedSemaphorePermit>>>,
    me: Arc<Waiter>,
) where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let state = Arc::new(Mutex::new(State {
        phase: Phase::Waiting,
        answered: 0,
        since: Instant::now(),
    }));
    let changed = Arc::new(Notify::new());
    // Its event stream ended: the connection closes with it.
    let ended = Arc::new(Notify::new());
    me.wait();
    let service = {
        let (state, changed, me, ended) =
            (state.clone(), changed.clone(), me.clone(), ended.clone());
        hyper::service::service_fn(move |request| {
            let (shared, slot) = (shared.clone(), slot.clone());
            let (state, changed, me, ended) =
                (state.clone(), changed.clone(), me.clone(), ended.clone());
            async move {
                me.done();
                enter(&state, &changed, Phase::Answering);
                let (response, streaming) = answer(request, &shared, &slot, &ended).await;
                lock(&state).answered += 1;
                if streaming {
                    enter(&state, &changed, Phase::Streaming);
                    return Ok::<_, Infallible>(response);
                }
                enter(&state, &changed, Phase::Writing);
                // Once hyper has taken the whole body, it waits in line.
                let (parts, body) = response.into_parts();
                let body = Tracked {
                    body,
                    end: Some(Box::new(move || {
                        if lock(&state).phase == Phase::Writing {
                            me.wait();
                            enter(&state, &changed, Phase::Waiting);
                        }
                    })),
                };
                Ok(Response::from_parts(parts, body.boxed()))
            }
        })
    };
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .keep_alive(true)
        .title_case_headers(true)
        .header_read_timeout(IDLE)
        .max_buf_size(MAX_HEAD);
    let conn = builder.serve_connection(io, service);
    tokio::pin!(conn);
    loop {
        let deadline = {
            let s = lock(&state);
            let patience = match s.phase {
                Phase::Waiting if s.answered == 0 => Some(CLIENT_DEADLINE),
                Phase::Waiting => Some(IDLE),
                Phase::Writing => Some(CLIENT_DEADLINE),
                Phase::Answering | Phase::Streaming => None,
            };
            patience.map(|p| s.since + p)
        };
        tokio::select! {
            _ = conn.as_mut() => return,
            _ = changed.notified() => {}
            _ = ended.notified() => break,
            // A newcomer needs the slot (a scraper reconnects for its
            // next scrape). One that began a request meanwhile passes the
            // eviction on to the next in line.
            _ = me.evicted.notified() => {
                if lock(&state).phase == Phase::Waiting {
                    break;
                }
                me.waiting.evict_longest();
            }
            _ = tokio::time::sleep_until(deadline.unwrap_or_else(Instant::now).into()), if deadline.is_some() => break,
        }
    }
    // Closed at once between requests; an answer being written may finish.
    conn.as_mut().graceful_shutdown();
    let _ = tokio::time::timeout(CLOSE_GRACE, conn).await;
}

/// A whole answer's body that says when hyper has taken all of it (and
/// dropped it).
struct Tracked {
    body: Body,
    end: Option<Box<dyn FnOnce() + Send + Sync>>,
}

impl Drop for Tracked {
    fn drop(&mut self) {
        if let Some(end) = self.end.take() {
            end();
        }
    }
}

impl hyper::body::Body for Tracked {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        std::pin::Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.body.size_hint()
    }
}

/// The body of every answer: whole, or an event stream.
type Body = BoxBody<Bytes, Infallible>;

/// An answer of `status` with a whole `body`.
fn whole(status: StatusCode, content_type: &'static str, body: impl Into<Bytes>) -> Response<Body> {
    let mut response = Response::new(Full::new(body.into()).boxed());
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

/// The same with headers `extra` (name, value) besides.
fn with_headers(
    mut response: Response<Body>,
    extra: &[(&'static str, &'static str)],
) -> Response<Body> {
    for (name, value) in extra {
        response.headers_mut().insert(
            header::HeaderName::from_static(name),
            HeaderValue::from_static(value),
        );
    }
    response
}

/// An event stream's body: what its task sends.
struct Events(tokio::sync::mpsc::Receiver<Bytes>);

impl hyper::body::Body for Events {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.0.poll_recv(cx).map(|b| b.map(|b| Ok(Frame::data(b))))
    }
}

/// What a request asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Asked {
    /// The page, in this format.
    Metrics(Exposition),
    /// A file of the page (`/`, its script and style).
    Page(String),
    /// The page's live stream of records (`/events`).
    Events,
    /// The daemon's namespace's sockets, as JSON (`/connections`).
    Connections,
    /// Status and a one-line body.
    Refused(StatusCode, &'static str),
}

/// What a request with this method, path and `Accept` asks for.
pub fn route(method: &Method, path: &str, accept: Option<&str>) -> Asked {
    let (get, head) = (method == Method::GET, method == Method::HEAD);
    match path {
        "/metrics" if get || head => Asked::Metrics(Exposition::of_accept(accept)),
        "/events" if get => Asked::Events,
        "/connections" if get => Asked::Connections,
        path if (get || head) && crate::web::asset(path).is_some() => Asked::Page(path.to_owned()),
        "/metrics" | "/events" | "/connections" | "/" | "/app.js" | "/app.css" => {
            Asked::Refused(StatusCode::METHOD_NOT_ALLOWED, "GET only\n")
        }
        _ => Asked::Refused(
            StatusCode::NOT_FOUND,
            "netconn serves /metrics, and its page at /\n",
        ),
    }
}

/// The answer to one request, and whether it is an event stream (which
/// gives its slot back: a browser tab never holds one).
async fn answer(
    request: Request<Incoming>,
    shared: &Shared,
    slot: &Mutex<Option<OwnedSemaphorePermit>>,
    ended: &Arc<Notify>,
) -> (Response<Body>, bool) {
    let value = |name| {
        request
            .headers()
            .get(name)
            .and_then(|v: &HeaderValue| v.to_str().ok())
    };
    if !shared
        .web
        .as_ref()
        .is_none_or(|w| w.allows(value(header::AUTHORIZATION)))
    {
        let refused = whole(StatusCode::UNAUTHORIZED, "text/plain", "unauthorized\n");
        return (
            with_headers(refused, &[("www-authenticate", "Basic realm=\"netconn\"")]),
            false,
        );
    }
    let accept = value(header::ACCEPT).map(str::to_ascii_lowercase);
    let text = |status, body: &'static str| whole(status, "text/plain", body);
    let response = match route(request.method(), request.uri().path(), accept.as_deref()) {
        Asked::Refused(status, body) => text(status, body),
        Asked::Page(path) => {
            let asset = crate::web::asset(&path).expect("a file of the page");
            with_headers(
                whole(StatusCode::OK, asset.content_type, asset.body),
                crate::web::PAGE_HEADERS,
            )
        }
        Asked::Connections => match &shared.listing {
            None => text(
                StatusCode::FORBIDDEN,
                "the connection list is served on a loopback address, or with basic authentication (--web-config-file)\n",
            ),
            Some(listing) => match tokio::time::timeout(CLIENT_DEADLINE, listing.get()).await {
                Ok(Ok(json)) => with_headers(
                    whole(StatusCode::OK, "application/json", json.to_vec()),
                    &[("cache-control", "no-store")],
                ),
                _ => text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "cannot dump the socket tables now\n",
                ),
            },
        },
        Asked::Events => {
            // A slot of the streams' own, and the scrapers' given back.
            let Ok(streaming) = shared.streams.clone().try_acquire_owned() else {
                let busy = text(StatusCode::SERVICE_UNAVAILABLE, "too many event streams\n");
                return (with_headers(busy, &[("connection", "close")]), false);
            };
            drop(slot.lock().unwrap_or_else(|e| e.into_inner()).take());
            let (out, body) = tokio::sync::mpsc::channel(1);
            let (board, ended) = (shared.board.clone(), ended.clone());
            tokio::spawn(async move {
                crate::web::stream(out, &board, CLIENT_DEADLINE).await;
                drop(streaming);
                // The connection closes with it.
                ended.notify_one();
            });
            let mut response = Response::new(Events(body).boxed());
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/event-stream"),
            );
            let headers = [
                ("cache-control", "no-store"),
                ("x-accel-buffering", "no"),
                ("connection", "close"),
            ];
            return (with_headers(response, &headers), true);
        }
        Asked::Metrics(format) => {
            let (reply, page) = tokio::sync::oneshot::channel();
            use tokio::sync::mpsc::error::TrySendError;
            let last = &shared.last;
            let page = match shared.scrapes.try_send(Scrape { format, reply }) {
                Ok(()) => (last.busy)
                    .fresh_or_last(page, || last.last(format))
                    .await
                    .ok(),
                // As many scrapes wait as the loop takes: the last page,
                // when there is one.
                Err(TrySendError::Full(_)) => last.last(format),
                Err(TrySendError::Closed(_)) => None,
            };
            match page {
                Some(page) => whole(StatusCode::OK, format.content_type(), page),
                None => text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "no page yet: the watch is starting or stopping; try again\n",
                ),
            }
        }
    };
    (response, false)
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
    fn routes() {
        let om = "application/openmetrics-text;version=1.0.0,text/plain;q=0.5";
        assert_eq!(
            route(&Method::GET, "/metrics", Some(om)),
            Asked::Metrics(Exposition::OpenMetrics)
        );
        assert_eq!(
            route(&Method::HEAD, "/metrics", None),
            Asked::Metrics(Exposition::Text)
        );
        assert!(matches!(
            route(&Method::GET, "/nothing", None),
            Asked::Refused(StatusCode::NOT_FOUND, _)
        ));
        assert_eq!(route(&Method::GET, "/", None), Asked::Page("/".into()));
        assert_eq!(route(&Method::GET, "/events", None), Asked::Events);
        assert_eq!(
            route(&Method::GET, "/connections", None),
            Asked::Connections
        );
        for path in ["/", "/metrics", "/events"] {
            assert!(matches!(
                route(&Method::POST, path, None),
                Asked::Refused(StatusCode::METHOD_NOT_ALLOWED, _)
            ));
        }
    }

    /// What hyper does for us, as the hand-written server did: a body in a
    /// transfer coding is read, not taken as the next request; a request
    /// line that is not HTTP/1.x, or garbage, is refused.
    #[test]
    fn chunked_bodies_and_garbage() {
        let (_rt, addr, _last, _scrapes, busy) = busy_server(3);
        let _working = busy.working();
        let answers = exchange(
            addr,
            b"POST /metrics HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n\
              15\r\nGET /nothing HTTP/1.1\r\n0\r\n\r\n\
              GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        );
        assert!(answers.starts_with("HTTP/1.1 405"), "{answers}");
        assert!(answers.contains("HTTP/1.1 200 OK"), "{answers}");
        assert!(!answers.contains("404"), "{answers}");
        let garbage = exchange(addr, b"garbage\r\n\r\n");
        assert!(garbage.starts_with("HTTP/1.1 400"), "{garbage}");
    }

    /// HEAD gets the headers of the page without its body.
    #[test]
    fn head_has_no_body() {
        let (_rt, addr, _last, _scrapes, busy) = busy_server(5);
        let _working = busy.working();
        let answer = exchange(
            addr,
            b"HEAD /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        );
        assert!(answer.starts_with("HTTP/1.1 200 OK"), "{answer}");
        assert!(!answer.contains("netconn_test"), "{answer}");
    }
}
